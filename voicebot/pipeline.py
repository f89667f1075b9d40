"""The one answer path: grounded prompt → streamed tokens → clauses → streamed audio.

Typed and spoken turns, the SSE chat and the WebSocket all come here, through the
``voice_answer`` model (its ``model.py`` only turns tensors into a call of
:meth:`AnswerPipeline.run`). The pipeline knows nothing of Triton: it is given two stream
functions, one for LLM text deltas and one for a clause's audio, so it is tested with small
fakes. Each finished clause goes to speech while generation continues, so the first audio
leaves long before the answer ends.

Stopping is one mechanism end to end: whoever consumes :meth:`AnswerPipeline.run` cancels
its task (or closes the generator); the generation and speech tasks are cancelled with it,
and each stream function's own cleanup cancels its request (``llm`` and ``tts`` see
``is_cancelled()`` within a token or a clause). Nothing is yielded after that.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .sampling import SamplingParams
from .text import DEFAULT_PROMPT_FORMAT, FIRST_CLAUSE_WORDS, PROMPT_FORMATS, ClauseSplitter, Passage

# prompt, sampling parameters, request id → text deltas
LlmStream = Callable[[str, SamplingParams, str], AsyncGenerator[str, None]]
# clause, request id → (int16 samples, sample rate) chunks
TtsStream = Callable[[str, str], AsyncGenerator[tuple[np.ndarray, int], None]]


@dataclass(frozen=True)
class TextPiece:
    text: str


@dataclass(frozen=True)
class AudioPiece:
    samples: np.ndarray  # int16 mono
    sample_rate: int


Piece = TextPiece | AudioPiece
_DONE = object()


class AnswerPipeline:
    """Streams an answer's text and, when asked to speak, its audio clause by clause."""

    def __init__(
        self,
        llm: LlmStream,
        tts: TtsStream,
        first_clause_words: int = FIRST_CLAUSE_WORDS,
        prompt_format: str = DEFAULT_PROMPT_FORMAT,
    ) -> None:
        self._llm = llm
        self._tts = tts
        self._first_clause_words = first_clause_words
        self.prompt_format = PROMPT_FORMATS[prompt_format]  # the llm's (voicebot.llms.prompt_format_of)

    async def run(
        self,
        question: str,
        passages: Sequence[Passage],
        history: Iterable[str],
        params: SamplingParams,
        speak: bool,
        request_id: str,
    ) -> AsyncIterator[Piece]:
        """Text pieces in order and, with ``speak``, audio pieces in order, interleaved as they come."""
        prompt = self.prompt_format.render(question, passages, history)  # the only place a prompt is built
        if not speak:
            async with contextlib.aclosing(self._llm(prompt, params, f"{request_id}-llm")) as deltas:
                async for delta in deltas:
                    yield TextPiece(delta)
            return
        out: asyncio.Queue[object] = asyncio.Queue()
        clauses: asyncio.Queue[str | None] = asyncio.Queue()

        async def generate() -> None:
            splitter = ClauseSplitter(first_max_words=self._first_clause_words)
            try:
                async with contextlib.aclosing(self._llm(prompt, params, f"{request_id}-llm")) as deltas:
                    async for delta in deltas:
                        await out.put(TextPiece(delta))
                        for clause in splitter.feed(delta):
                            await clauses.put(clause)
                for clause in splitter.flush():
                    await clauses.put(clause)
            finally:
                await clauses.put(None)

        async def speak_clauses() -> None:
            n = 0
            while (clause := await clauses.get()) is not None:
                n += 1
                async with contextlib.aclosing(self._tts(clause, f"{request_id}-tts{n}")) as chunks:
                    async for samples, rate in chunks:
                        await out.put(AudioPiece(samples, rate))

        tasks = [asyncio.create_task(generate()), asyncio.create_task(speak_clauses())]
        for task in tasks:
            task.add_done_callback(lambda _: out.put_nowait(_DONE))
        try:
            finished = 0
            while finished < len(tasks):
                item = await out.get()
                if item is _DONE:
                    finished += 1
                    for task in tasks:  # a failed side ends the answer: raise its error now
                        if task.done() and not task.cancelled() and task.exception() is not None:
                            raise task.exception()  # type: ignore[misc]
                    continue
                yield item  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
