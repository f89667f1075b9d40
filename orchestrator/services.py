"""One interface per modality, and their implementation over Triton's gRPC API (asyncio).

Speech to text, retrieval and the streamed answer are separate so a session can be
tested with small fakes; :class:`TritonServices` implements all three over one client.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from tritonclient.utils import InferenceServerException

from rag_index import DocumentStore, SearchHit
from voicebot import contract as c
from voicebot import wire
from voicebot.engines.llm import Generation
from voicebot.text import MAX_HISTORY, MAX_PASSAGE_CHARS, MAX_PASSAGES

from .protocol import PCM_ENCODING

# A Triton call failed; ``code`` is what the client sees in its error event.
ServiceError = wire.CallError


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class AudioChunk:
    pcm: bytes  # int16 little-endian mono
    sample_rate: int


class SpeechToText(Protocol):
    async def transcribe(self, audio: bytes, encoding: str, request_id: str) -> str: ...


class Retriever(Protocol):
    async def retrieve(self, query: str, k: int, request_id: str) -> list[SearchHit]: ...


def _first_int(result: Any, name: str) -> int:
    value = result.as_numpy(name)
    return int(value.reshape(-1)[0]) if value is not None and value.size else 0


class Answerer(Protocol):
    def answer(
        self,
        question: str,
        passages: Sequence[SearchHit],
        history: Sequence[str],
        speak: bool,
        request_id: str,
        cache_key: str | None = None,
        sampling: str | None = None,
    ) -> AsyncIterator[TextDelta | AudioChunk | Generation]:
        """The answer's text and audio as they come; last, when the answerer reports them, its
        token counts and finish reason."""
        ...

    async def prefill(
        self, question: str, passages: Sequence[SearchHit], history: Sequence[str], request_id: str, cache_key: str
    ) -> None:
        """Put the prompt up to the question into the LLM's cache under ``cache_key``."""
        ...


def passage_title(hit: SearchHit) -> str:
    """What the prompt calls a passage: its document, and its section when that says more."""
    title = hit.title.strip()
    heading = hit.heading.strip()
    if heading and heading.lower() not in title.lower():
        title = f"{title} — {heading}" if title else heading
    return title[:300]


def passages_json(hits: Sequence[SearchHit]) -> str:
    """The ``passages`` input, within what voice_answer takes (``voicebot.text``'s limits)."""
    items = [
        {"id": f"{h.document_id}#{h.chunk_id}", "title": passage_title(h), "text": h.text[:MAX_PASSAGE_CHARS]}
        for h in hits[:MAX_PASSAGES]
    ]
    return json.dumps(items, ensure_ascii=False)


# What the recognizer is told the audio is about: the library's document titles, newest first,
# within this many characters (Whisper keeps the last 223 tokens of its prompt; ~150 here).
LIBRARY_PROMPT_CHARS = 600
LIBRARY_PROMPT_TTL_S = 10.0
_STEM_SEPARATORS = re.compile(r"[-_]+")


def library_prompt(titles: Sequence[str], max_chars: int = LIBRARY_PROMPT_CHARS) -> str:
    """ "Questions about <title>, <title>." for Whisper's initial prompt, or "" for an empty
    library. A title that is a file stem ("apache-license-2.0") is read as words. Titles past
    ``max_chars`` are left out whole."""
    names: list[str] = []
    used = len("Questions about .")
    for raw in titles:
        title = " ".join(raw.split())
        if title and " " not in title:
            title = _STEM_SEPARATORS.sub(" ", title).strip()
        if not title or title in names:
            continue
        cost = len(title) + (2 if names else 0)
        if used + cost > max_chars:
            break
        names.append(title)
        used += cost
    return f"Questions about {', '.join(names)}." if names else ""


class TritonServices:
    """Speech to text, retrieval and answers, all through Triton.

    Every wait on Triton is bounded: a model whose process died mid-request never answers
    (Triton 2.51 does not fail such a request). A unary call and the first piece of a stream
    may wait ``first_response_timeout_s`` (they can queue behind other sessions' work); later
    pieces of a stream ``stall_timeout_s``.
    """

    def __init__(
        self,
        grpc_url: str,
        index: DocumentStore,
        language: str = "en",
        stall_timeout_s: float = 30.0,
        first_response_timeout_s: float = 90.0,
        api_token: str | None = None,
        prompt_with_titles: bool = True,
    ) -> None:
        self.client = wire.grpc_client(grpc_url, api_token)
        self.index = index
        self.language = language
        self.prompt_with_titles = prompt_with_titles
        self._prompt: tuple[float, str] | None = None  # (when it was read, the prompt)
        self.stall_timeout_s = stall_timeout_s
        self.first_response_timeout_s = first_response_timeout_s

    async def close(self) -> None:
        await self.client.close()

    async def ready(self) -> dict[str, bool]:
        states: dict[str, bool] = {}
        for name in c.MODEL_NAMES:
            try:
                states[name] = bool(await self.client.is_model_ready(name, client_timeout=2.0))
            except InferenceServerException:
                states[name] = False
        return states

    def library_changed(self) -> None:
        """A document was added or deleted here: the next recognition prompt reads the titles again."""
        self._prompt = None

    async def recognition_prompt(self) -> str:
        """The library's titles as Whisper's prompt (:func:`library_prompt`), read again after
        a change here (:meth:`library_changed`) and at most ``LIBRARY_PROMPT_TTL_S`` after
        the last read: uploads on other replicas show up within that. A store that cannot be
        read gives no prompt; recognition works without one."""
        if not self.prompt_with_titles:
            return ""
        now = time.monotonic()
        if self._prompt is None or now - self._prompt[0] > LIBRARY_PROMPT_TTL_S:
            try:
                documents = await asyncio.to_thread(self.index.documents)
            except Exception:  # the store's own errors vary by backend; readiness reports them
                documents = []
            newest = sorted(documents, key=lambda d: d.created, reverse=True)
            self._prompt = (now, library_prompt([d.title for d in newest]))
        return self._prompt[1]

    async def transcribe(self, audio: bytes, encoding: str, request_id: str) -> str:
        if encoding == PCM_ENCODING:
            samples = np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768.0
            model, values = c.WHISPER_STT, {c.AUDIO: samples, c.LANGUAGE: self.language}
        else:
            model, values = c.TRANSCRIBE, {c.AUDIO_BYTES: audio}
        if prompt := await self.recognition_prompt():
            values[c.PROMPT] = prompt
        result = await wire.infer(self.client, model, values, [c.TRANSCRIPT], request_id, self.first_response_timeout_s)
        return result.as_numpy(c.TRANSCRIPT).reshape(-1)[0].decode("utf-8").strip()

    async def transcribe_file(
        self, audio: bytes, request_id: str, prompt: str = ""
    ) -> tuple[str, list[dict[str, Any]]]:
        """An encoded file through ``transcribe``: its text and segments (start, end, text,
        no_speech_prob). ``prompt`` is the caller's (OpenAI's transcription ``prompt``); a file
        need not be about the library, so its titles are not added."""
        values: dict[str, object] = {c.AUDIO_BYTES: audio}
        if prompt.strip():
            values[c.PROMPT] = prompt
        result = await wire.infer(
            self.client,
            c.TRANSCRIBE,
            values,
            [c.TRANSCRIPT, c.SEGMENTS],
            request_id,
            self.first_response_timeout_s,
        )
        text = result.as_numpy(c.TRANSCRIPT).reshape(-1)[0].decode("utf-8").strip()
        segments = json.loads(result.as_numpy(c.SEGMENTS).reshape(-1)[0].decode("utf-8") or "[]")
        return text, segments

    async def speak(self, text: str, length_scale: float | None, request_id: str) -> AsyncIterator[AudioChunk]:
        """``tts`` alone: the text's speech, clause by clause as Piper makes it."""
        values: dict[str, object] = {c.TEXT: text}
        if length_scale is not None:
            values[c.LENGTH_SCALE] = np.float32(length_scale)
        async for result in wire.stream(
            self.client,
            c.TTS,
            values,
            [c.AUDIO, c.SAMPLE_RATE],
            request_id,
            self.first_response_timeout_s,
            self.stall_timeout_s,
        ):
            audio = result.as_numpy(c.AUDIO)
            if audio is not None and audio.size:
                rate = int(result.as_numpy(c.SAMPLE_RATE).reshape(-1)[0])
                yield AudioChunk(audio.astype("<i2").tobytes(), rate)

    async def embed(self, texts: list[str], request_id: str) -> np.ndarray:
        result = await wire.infer(
            self.client, c.EMBEDDER, {c.TEXT: texts}, [c.EMBEDDING], request_id, self.first_response_timeout_s
        )
        return np.asarray(result.as_numpy(c.EMBEDDING)[0], dtype=np.float32)

    async def retrieve(self, query: str, k: int, request_id: str) -> list[SearchHit]:
        vector = (await self.embed([query], request_id))[0]
        return await asyncio.to_thread(self.index.search, vector, k, query)

    @staticmethod
    def _answer_inputs(
        question: str, passages: Sequence[SearchHit], history: Sequence[str], cache_key: str | None
    ) -> dict[str, object]:
        values: dict[str, object] = {
            c.QUESTION: question,
            c.PASSAGES: passages_json(passages),
            c.HISTORY: json.dumps(list(history)[-MAX_HISTORY:], ensure_ascii=False),
        }
        if cache_key:
            values[c.CACHE_KEY] = cache_key
        return values

    async def prefill(
        self, question: str, passages: Sequence[SearchHit], history: Sequence[str], request_id: str, cache_key: str
    ) -> None:
        values = {**self._answer_inputs(question, passages, history, cache_key), c.PREFILL: True}
        bound = self.first_response_timeout_s
        async for _ in wire.stream(self.client, c.VOICE_ANSWER, values, [c.TEXT_OUTPUT], request_id, bound, bound):
            pass

    async def answer(
        self,
        question: str,
        passages: Sequence[SearchHit],
        history: Sequence[str],
        speak: bool,
        request_id: str,
        cache_key: str | None = None,
        sampling: str | None = None,
    ) -> AsyncIterator[TextDelta | AudioChunk | Generation]:
        """Every answer, typed or spoken, through ``voice_answer`` (which builds the prompt);
        ``sampling`` is its ``sampling_parameters`` JSON (the prompt format's defaults otherwise)."""
        values = {**self._answer_inputs(question, passages, history, cache_key), c.SPEAK: speak}
        if sampling:
            values[c.SAMPLING_PARAMETERS] = sampling
        outputs = [c.TEXT_OUTPUT, c.AUDIO, c.SAMPLE_RATE] if speak else [c.TEXT_OUTPUT]
        outputs += [c.FINISH_REASON, c.NUM_INPUT_TOKENS, c.NUM_OUTPUT_TOKENS]
        async for result in wire.stream(
            self.client,
            c.VOICE_ANSWER,
            values,
            outputs,
            request_id,
            self.first_response_timeout_s,
            self.stall_timeout_s,
        ):
            reason = result.as_numpy(c.FINISH_REASON)
            if reason is not None and reason.size:  # the answer's last response
                yield Generation(
                    _first_int(result, c.NUM_INPUT_TOKENS),
                    _first_int(result, c.NUM_OUTPUT_TOKENS),
                    reason.reshape(-1)[0].decode("utf-8", errors="replace"),
                )
                continue
            text = result.as_numpy(c.TEXT_OUTPUT)
            if text is not None:
                joined = "".join(x.decode("utf-8", errors="replace") for x in text.reshape(-1))
                if joined:
                    yield TextDelta(joined)
            audio = result.as_numpy(c.AUDIO) if speak else None
            if audio is not None and audio.size:
                rate = int(result.as_numpy(c.SAMPLE_RATE).reshape(-1)[0])
                yield AudioChunk(audio.astype("<i2").tobytes(), rate)
