"""The one answer path: grounded prompt → streamed tokens → clauses → streamed audio.

Typed and spoken turns, the SSE chat and the WebSocket all come here, through the
``voice_answer`` model (its ``model.py`` only turns tensors into a call of
:meth:`AnswerPipeline.run`). The pipeline knows nothing of Triton: it is given two stream
functions, one for LLM text deltas and one for a clause's audio, so it is tested with small
fakes. Each finished clause goes to speech while generation continues, so the first audio
leaves long before the answer ends.

Text and speech are released a clause at a time, after the grounding check
(:class:`voicebot.text.GroundingCheck`): a clause that states a number, name or identifier
that no passage holds is never shown or spoken (the answer becomes :data:`NO_ANSWER`, or ends
before that clause).

Stopping is one mechanism end to end: whoever consumes :meth:`AnswerPipeline.run` cancels
its task (or closes the generator); the generation and speech tasks are cancelled with it,
and each stream function's own cleanup cancels its request (``llm`` and ``tts`` see
``is_cancelled()`` within a token or a clause). Nothing is yielded after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from .contract import READING_PACE_CPS, SPEECH_PACE_CPS
from .engines.llm import Generation
from .sampling import SamplingParams
from .text import (
    DEFAULT_PROMPT_FORMAT,
    FIRST_CLAUSE_WORDS,
    NO_ANSWER,
    PROMPT_FORMATS,
    ClauseSplitter,
    GroundingCheck,
    Passage,
)


class LlmStream(Protocol):
    """prompt, sampling parameters, request id → text deltas; ``cache_key`` and
    ``prefill_only`` and ``pace_cps`` are the ``llm`` model's request parameters (voicebot/contract.py);
    ``generation``, when given, follows the stream's token counts and finish reason."""

    def __call__(
        self,
        prompt: str,
        params: SamplingParams,
        request_id: str,
        *,
        cache_key: str | None = None,
        prefill_only: bool = False,
        pace_cps: float | None = None,
        generation: Generation | None = None,
    ) -> AsyncGenerator[str, None]: ...


# clause, request id → (int16 samples, sample rate) chunks
TtsStream = Callable[[str, str], AsyncGenerator[tuple[np.ndarray, int], None]]


@dataclass(frozen=True)
class TextPiece:
    text: str


@dataclass(frozen=True)
class AudioPiece:
    samples: np.ndarray  # int16 mono
    sample_rate: int


# The last piece of a finished answer: the llm's counts, and why it ended ("stop" when the
# grounding check ended it).
Piece = TextPiece | AudioPiece | Generation
_DONE = object()


class Grounding(enum.StrEnum):
    """What the grounding check did to one answer (a metric label)."""

    GROUNDED = "grounded"  # every clause's facts are in the passages
    ABSTAINED = "abstained"  # the first clause was not: the answer is NO_ANSWER
    TRUNCATED = "truncated"  # a later clause was not: the answer ends before it


# outcome, the facts no passage holds → None
OnGrounding = Callable[[Grounding, list[str]], None]


class AnswerPipeline:
    """Streams an answer's text and, when asked to speak, its audio clause by clause."""

    def __init__(
        self,
        llm: LlmStream,
        tts: TtsStream,
        first_clause_words: int = FIRST_CLAUSE_WORDS,
        prompt_format: str = DEFAULT_PROMPT_FORMAT,
        grounding: bool = True,
        on_grounding: OnGrounding = lambda outcome, missing: None,
    ) -> None:
        self._llm = llm
        self._tts = tts
        self._first_clause_words = first_clause_words
        self.prompt_format = PROMPT_FORMATS[prompt_format]  # the llm's (voicebot.llms.prompt_format_of)
        self._grounding = grounding
        self._on_grounding = on_grounding

    async def run(
        self,
        question: str,
        passages: Sequence[Passage],
        history: Iterable[str],
        params: SamplingParams,
        speak: bool,
        request_id: str,
        cache_key: str | None = None,
    ) -> AsyncIterator[Piece]:
        """Text pieces in order and, with ``speak``, audio pieces in order, interleaved as they
        come; then the :class:`Generation` of the answer."""
        prompt = self.prompt_format.render(question, passages, history)  # the only place a prompt is built
        check = GroundingCheck(question, passages) if self._grounding else None
        # The engine schedules by how fast the answer is consumed: spoken, or read.
        pace = SPEECH_PACE_CPS if speak else READING_PACE_CPS
        generation = Generation()
        answer = self._checked_clauses(prompt, params, f"{request_id}-llm", check, cache_key, pace, generation)
        if not speak:
            async with contextlib.aclosing(answer) as clauses:
                async for text, _ in clauses:
                    yield TextPiece(text)
            yield replace(generation, finish_reason=generation.finish_reason or "stop")
            return
        out: asyncio.Queue[object] = asyncio.Queue()
        to_speak: asyncio.Queue[str | None] = asyncio.Queue()

        async def generate() -> None:
            try:
                async with contextlib.aclosing(answer) as clauses:
                    async for text, clause in clauses:
                        await out.put(TextPiece(text))
                        await to_speak.put(clause)
            finally:
                await to_speak.put(None)

        async def speak_clauses() -> None:
            n = 0
            while (clause := await to_speak.get()) is not None:
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
            yield replace(generation, finish_reason=generation.finish_reason or "stop")
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def prefill(
        self, passages: Sequence[Passage], history: Iterable[str], request_id: str, cache_key: str | None
    ) -> AsyncIterator[Piece]:
        """Put the prompt up to the question into the engine's KV cache (under ``cache_key``)
        while the user is still speaking: the answer's prompt shares it token for token when
        its passages and history are the same, and then only the question is left to prefill.
        Yields nothing; it is consumed (and cancelled) like :meth:`run`."""
        prefix = self.prompt_format.prefix(passages, history)
        params = replace(self.prompt_format.defaults, max_tokens=1)
        calls = self._llm(prefix, params, f"{request_id}-prefill", cache_key=cache_key, prefill_only=True)
        async with contextlib.aclosing(calls) as nothing:
            async for _ in nothing:
                pass
        return
        yield  # an async generator of no pieces

    async def _clauses(
        self,
        prompt: str,
        params: SamplingParams,
        request_id: str,
        cache_key: str | None,
        pace_cps: float,
        generation: Generation,
    ) -> AsyncGenerator[str, None]:
        splitter = ClauseSplitter(first_max_words=self._first_clause_words)
        deltas = self._llm(prompt, params, request_id, cache_key=cache_key, pace_cps=pace_cps, generation=generation)
        async with contextlib.aclosing(deltas):
            async for delta in deltas:
                for clause in splitter.feed(delta):
                    yield clause
        for clause in splitter.flush():
            yield clause

    async def _checked_clauses(
        self,
        prompt: str,
        params: SamplingParams,
        request_id: str,
        check: GroundingCheck | None,
        cache_key: str | None,
        pace_cps: float,
        generation: Generation,
    ) -> AsyncGenerator[tuple[str, str], None]:
        """(text to show, clause to speak) for each clause of the answer, in order, once it is
        complete and grounded. A first clause that states a number or name no passage holds is
        replaced by :data:`NO_ANSWER`; a later one ends the answer before it, with
        :data:`NO_ANSWER` after a sentence it leaves unfinished. Leaving early closes the ``llm``
        stream, which cancels the generation."""
        n = 0
        sentence_open = False
        clauses_of = self._clauses(prompt, params, request_id, cache_key, pace_cps, generation)
        async with contextlib.aclosing(clauses_of) as clauses:
            async for clause in clauses:
                missing = check.ungrounded(clause) if check is not None else []
                if missing:
                    self._on_grounding(Grounding.ABSTAINED if n == 0 else Grounding.TRUNCATED, missing)
                    if n == 0 or sentence_open:
                        yield (NO_ANSWER if n == 0 else " " + NO_ANSWER), NO_ANSWER
                    return
                yield (clause if n == 0 else " " + clause), clause
                sentence_open = not clause.endswith((".", "!", "?"))
                n += 1
        if check is not None:
            self._on_grounding(Grounding.GROUNDED, [])
