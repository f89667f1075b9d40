"""OpenAI-compatible endpoints over the same Triton models and the same answer pipeline.

``/v1/models``, ``/v1/audio/transcriptions``, ``/v1/audio/speech``, ``/v1/chat/completions``
and ``/v1/embeddings``, in OpenAI's request and response shapes, so the ``openai`` SDKs and
the tools built on them (Open WebUI, LibreChat, Home Assistant) work with only ``base_url``
and ``api_key`` set. Chat answers are grounded in the index like every other answer here;
their passages ride in an extra ``citations`` field that clients ignore safely. A request
this pipeline cannot honour (an unknown model, ``n > 1``, tools) gets a 400 that says so,
never a silent approximation. Errors use OpenAI's ``{"error": {...}}`` shape.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from voicebot import jsonsafe
from voicebot.contract import EMBEDDING_DIM, MAX_STT_PROMPT_CHARS, ErrorCode, EventType

from .audio_out import MEDIA_TYPES, VOICES, SpeechEncoder
from .metrics import Metrics
from .protocol import ProtocolError, question_text
from .services import ServiceError
from .session import TurnRunner, turn_stream
from .settings import Settings

log = logging.getLogger("voicebot.openai")

OPENAI_PREFIXES = ("/v1/models", "/v1/audio/", "/v1/chat/completions", "/v1/embeddings", "/v1/realtime")
COMPLETIONS_BODY_BYTES = 256 * 1024
EMBEDDINGS_BODY_BYTES = 1024 * 1024
MAX_SPEECH_CHARS = 4000  # the tts model's own bound
MAX_EMBED_INPUTS = 256  # the embedder model's own bound
MAX_EMBED_CHARS = 8000
MAX_STOP = 4
MAX_MESSAGES = 64
TRANSCRIPTION_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")


@dataclass(frozen=True)
class ModelCard:
    id: str
    task: str  # chat | transcription | speech | embedding
    description: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "model", "created": CREATED, "owned_by": "voicebot"}


CHAT_MODEL = "voicebot"  # also the Realtime model
# Stable ids, whichever weights the deployment profile loads; the aliases are the names stock
# clients send by default (Open WebUI's "whisper-1" and "tts-1", for one).
MODELS = (
    ModelCard(CHAT_MODEL, "chat", "answers from your documents, with citations (the voice_answer pipeline)"),
    ModelCard("voicebot-whisper", "transcription", "faster-whisper through the transcribe ensemble"),
    ModelCard("voicebot-piper", "speech", "Piper text to speech"),
    ModelCard("voicebot-embed", "embedding", f"sentence-transformers, {EMBEDDING_DIM} dimensions"),
)
ALIASES = {
    "whisper-1": "voicebot-whisper",
    "gpt-4o-transcribe": "voicebot-whisper",
    "gpt-4o-mini-transcribe": "voicebot-whisper",
    "tts-1": "voicebot-piper",
    "tts-1-hd": "voicebot-piper",
    "gpt-4o-mini-tts": "voicebot-piper",
    "text-embedding-3-small": "voicebot-embed",
    "text-embedding-ada-002": "voicebot-embed",
}
CREATED = 1_796_169_600  # 2026-12-02: when these ids were fixed


class OpenAIError(StarletteHTTPException):
    """An error rendered in OpenAI's shape; ``code`` is this project's :class:`ErrorCode`."""

    def __init__(
        self,
        status_code: int,
        message: str,
        code: ErrorCode | str = ErrorCode.BAD_REQUEST,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, message, headers=headers)
        self.code = str(code)
        self.param = param


def error_type(status_code: int) -> str:
    if status_code == 401:
        return "authentication_error"
    if status_code == 404:
        return "not_found_error"
    if status_code == 429:
        return "rate_limit_error"
    if status_code >= 500:
        return "server_error"
    return "invalid_request_error"


def openai_error_json(status_code: int, message: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status_code), "param": param, "code": code}}


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PREFIXES)


def _status_for(code: str) -> int:
    """An upstream failure's HTTP status: the client's fault (400) or the server's (503/504)."""
    if code in (ErrorCode.OVERLOADED, ErrorCode.TOO_MANY_SESSIONS):
        return 429
    if code in (ErrorCode.UPSTREAM_STALLED, ErrorCode.TURN_TIMEOUT):
        return 504
    if code in (ErrorCode.UPSTREAM_UNAVAILABLE, ErrorCode.INTERNAL):
        return 503
    return 400


def find_model(name: str) -> ModelCard | None:
    """The model an id or an alias names."""
    return next((m for m in MODELS if m.id == ALIASES.get(name, name)), None)


def resolve_model(name: object, task: str) -> ModelCard:
    if not isinstance(name, str) or not name:
        raise OpenAIError(400, "'model' is required", param="model")
    card = find_model(name)
    if card is None:
        raise OpenAIError(404, f"the model {name[:80]!r} does not exist; GET /v1/models lists them", "model_not_found")
    if card.task != task:
        wanted = ", ".join(m.id for m in MODELS if m.task == task)
        raise OpenAIError(400, f"{card.id} is a {card.task} model; use {wanted}", "model_not_supported", "model")
    return card


class _Body(BaseModel):
    # OpenAI adds fields often; one we do not know is ignored, one we cannot honour is refused below.
    model_config = ConfigDict(extra="ignore", frozen=True)


class SpeechBody(_Body):
    model: str
    input: str = Field(max_length=MAX_SPEECH_CHARS)
    voice: str | dict[str, Any]
    speed: float = Field(1.0, ge=0.5, le=2.0)  # Piper's length_scale bounds (0.5-2.0), inverted
    response_format: Literal["mp3", "opus", "flac", "wav", "pcm"] = "mp3"
    instructions: str | None = None
    stream_format: Literal["audio"] = "audio"


class MessagePart(_Body):
    type: Literal["text"]
    text: str


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[MessagePart] | None = None


class CompletionsBody(_Body):
    model: str
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    logprobs: bool | None = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None


class EmbeddingsBody(_Body):
    model: str
    input: str | list[Any]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


def _parse(shape: type[_Body], raw: bytes, max_bytes: int) -> Any:
    try:
        obj = jsonsafe.loads(raw, "body", max_bytes)
    except jsonsafe.JsonInputError as exc:
        status_code = 413 if exc.code == ErrorCode.TOO_LARGE else 400
        raise OpenAIError(status_code, str(exc), exc.code) from None
    if not isinstance(obj, dict):
        raise OpenAIError(400, "the body must be a JSON object")
    try:
        return shape.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise OpenAIError(400, f"{where}: {first['msg']}", param=where or None) from None


def _clean(text: str, max_chars: int, what: str) -> str:
    try:
        return question_text(text, max_chars, what)
    except ProtocolError as exc:
        raise OpenAIError(400, str(exc), exc.code, what) from None


def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def subtitles(segments: list[dict[str, Any]], fmt: str) -> str:
    """SubRip or WebVTT cues, one per segment."""
    sep = "," if fmt == "srt" else "."
    cues = []
    for n, seg in enumerate(segments, 1):
        times = f"{_timestamp(seg['start'], sep)} --> {_timestamp(seg['end'], sep)}"
        text = str(seg["text"]).strip()
        cues.append(f"{n}\n{times}\n{text}\n" if fmt == "srt" else f"{times}\n{text}\n")
    body = "\n".join(cues)
    return body if fmt == "srt" else f"WEBVTT\n\n{body}"


def _sse(payload: dict[str, Any] | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


def openai_router(
    settings: Settings, metrics: Metrics, auth: list[Any], acquire: Callable[[], Callable[[], None]]
) -> APIRouter:
    """The routes; ``acquire`` takes a conversation slot (raising when none is free) and returns
    its release."""
    router = APIRouter(dependencies=auth)

    def count(endpoint: str, outcome: str) -> None:
        metrics.openai_requests.labels(endpoint, outcome).inc()

    @router.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [m.as_json() for m in MODELS]}

    @router.get("/v1/models/{model_id}")
    async def get_model(model_id: str) -> dict[str, Any]:
        card = find_model(model_id)
        if card is None:
            raise OpenAIError(404, f"the model {model_id[:80]!r} does not exist", "model_not_found")
        return card.as_json()

    @router.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        fields, data = await _transcription_form(request, settings)
        resolve_model(fields.get("model"), "transcription")
        fmt = fields.get("response_format") or "json"
        if fmt not in TRANSCRIPTION_FORMATS:
            raise OpenAIError(
                400, f"response_format must be one of {', '.join(TRANSCRIPTION_FORMATS)}", param="response_format"
            )
        language = (fields.get("language") or settings.language).lower()
        if language != settings.language:
            raise OpenAIError(
                400,
                f"this server transcribes {settings.language!r} (VOICEBOT_LANGUAGE), not {language[:8]!r}",
                param="language",
            )
        if "word" in fields["timestamp_granularities"].split(","):
            raise OpenAIError(
                400, "word timestamps are not available; segment timestamps are", param="timestamp_granularities"
            )
        temperature = fields.get("temperature")
        if temperature:
            try:
                if not 0 <= float(temperature) <= 1:
                    raise ValueError
            except ValueError:
                raise OpenAIError(400, "temperature must be a number in [0, 1]", param="temperature") from None
        prompt = fields.get("prompt") or ""
        if len(prompt) > MAX_STT_PROMPT_CHARS:
            raise OpenAIError(400, f"prompt is over {MAX_STT_PROMPT_CHARS} characters", param="prompt")
        stream = (fields.get("stream") or "false").lower() == "true"
        triton = request.app.state.triton
        began = time.perf_counter()
        release = acquire()  # every OpenAI request holds a conversation slot while it runs
        try:
            text, segments = await triton.transcribe_file(data, uuid.uuid4().hex[:12], prompt)
        except ServiceError as exc:
            count("transcriptions", "error")
            raise OpenAIError(_status_for(exc.code), str(exc), exc.code) from None
        finally:
            release()
        metrics.stage_seconds.labels("stt").observe(time.perf_counter() - began)
        count("transcriptions", "ok")
        if stream:

            async def events() -> AsyncIterator[str]:
                for n, seg in enumerate(segments):
                    piece = str(seg["text"]).strip()
                    if piece:
                        yield _sse({"type": "transcript.text.delta", "delta": piece if n == 0 else " " + piece})
                yield _sse({"type": "transcript.text.done", "text": text})

            return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
        if fmt == "text":
            return PlainTextResponse(text + "\n")
        if fmt in ("srt", "vtt"):
            return PlainTextResponse(subtitles(segments, fmt), media_type="text/vtt" if fmt == "vtt" else "text/plain")
        if fmt == "verbose_json":
            duration = max((float(s["end"]) for s in segments), default=0.0)
            items = [
                {
                    "id": n,
                    "start": round(float(s["start"]), 3),
                    "end": round(float(s["end"]), 3),
                    "text": " " + str(s["text"]).strip(),
                    "no_speech_prob": round(float(s.get("no_speech_prob", 0.0)), 4),
                }
                for n, s in enumerate(segments)
            ]
            # OpenAI's field names (two of them are also wire names, spelled only in the contract).
            verbose = dict(
                task="transcribe",
                language="english" if language == "en" else language,
                duration=round(duration, 3),
                text=text,
                segments=items,
            )
            return JSONResponse(verbose)
        return JSONResponse({"text": text})

    @router.post("/v1/audio/speech")
    async def speech(request: Request) -> StreamingResponse:
        body: SpeechBody = _parse(SpeechBody, await request.body(), 64 * 1024)
        resolve_model(body.model, "speech")
        voice = body.voice.get("id") if isinstance(body.voice, dict) else body.voice
        if voice not in VOICES:
            raise OpenAIError(
                400,
                f"unknown voice {str(voice)[:40]!r}; installed voices: {', '.join(VOICES)}",
                "unknown_voice",
                "voice",
            )
        if body.instructions:
            raise OpenAIError(
                400, "Piper voices do not take instructions; leave 'instructions' out", param="instructions"
            )
        text = _clean(body.input, MAX_SPEECH_CHARS, "input")
        triton = request.app.state.triton
        request_id = uuid.uuid4().hex[:12]
        release = acquire()
        chunks = triton.speak(text, 1.0 / body.speed, request_id)
        # The first chunk before the response starts: a failure is then a proper HTTP error.
        try:
            first = await anext(chunks, None)
        except ServiceError as exc:
            count("speech", "error")
            release()
            raise OpenAIError(_status_for(exc.code), str(exc), exc.code) from None
        if first is None:
            count("speech", "error")
            release()
            raise OpenAIError(400, "the input gave no speech", ErrorCode.NO_ANSWER, "input")
        encoder = SpeechEncoder(body.response_format, first.sample_rate)

        async def audio() -> AsyncIterator[bytes]:
            try:
                yield encoder.encode(first.pcm)
                async for chunk in chunks:
                    if data := encoder.encode(chunk.pcm):
                        yield data
                yield encoder.finish()
                count("speech", "ok")
            except ServiceError as exc:  # mid-stream: the audio stops short; the log says why
                count("speech", "error")
                log.warning("speech stream failed: %s", exc, extra={"code": exc.code})
            finally:
                release()
                encoder.close()
                await chunks.aclose()

        return StreamingResponse(
            audio(), media_type=MEDIA_TYPES[body.response_format], background=BackgroundTask(release)
        )

    @router.post("/v1/embeddings")
    async def embeddings(request: Request) -> dict[str, Any]:
        body: EmbeddingsBody = _parse(EmbeddingsBody, await request.body(), EMBEDDINGS_BODY_BYTES)
        card = resolve_model(body.model, "embedding")
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or len(texts) > MAX_EMBED_INPUTS:
            raise OpenAIError(400, f"input must hold 1 to {MAX_EMBED_INPUTS} strings", param="input")
        if not all(isinstance(t, str) for t in texts):
            raise OpenAIError(400, "input must be text; token arrays are not accepted", param="input")
        texts = [_clean(t, MAX_EMBED_CHARS, f"input[{n}]") for n, t in enumerate(texts)]
        if body.dimensions is not None and body.dimensions != EMBEDDING_DIM:
            raise OpenAIError(400, f"this model gives {EMBEDDING_DIM} dimensions only", param="dimensions")
        release = acquire()
        try:
            vectors = await request.app.state.triton.embed(texts, uuid.uuid4().hex[:12])
        except ServiceError as exc:
            count("embeddings", "error")
            raise OpenAIError(_status_for(exc.code), str(exc), exc.code) from None
        finally:
            release()
        count("embeddings", "ok")
        data = []
        for n, vector in enumerate(np.asarray(vectors, dtype=np.float32)):
            value: Any = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode()
                if body.encoding_format == "base64"
                else [float(x) for x in vector]
            )
            data.append({"object": "embedding", "index": n, "embedding": value})
        # Token counts are not reported by the embedder model; usage is left out rather than guessed.
        return {"object": "list", "data": data, "model": card.id}

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body: CompletionsBody = _parse(CompletionsBody, await request.body(), COMPLETIONS_BODY_BYTES)
        card = resolve_model(body.model, "chat")
        question, history, sampling = _completion_inputs(body, settings)
        release = acquire()
        runner: TurnRunner = request.app.state.runner
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        turn = turn_stream(
            runner, deque(history, maxlen=settings.history_turns), text=question, speak=False, sampling=sampling
        )

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": card.id,
                "choices": [choice],
                **extra,
            }

        if not body.stream:
            text, citations, failure, done = "", [], None, {}
            try:
                async for item in turn:
                    kind = item["type"]
                    if kind == EventType.TOKEN:
                        text += item["text"]
                    elif kind == EventType.CITATIONS:
                        citations = item["items"]
                    elif kind == EventType.ERROR:
                        failure = item
                    elif kind == EventType.DONE:
                        done = item
            finally:
                release()
            if failure is not None:
                count("chat_completions", "error")
                headers = (
                    {"Retry-After": str(max(1, round(failure.get("retry_after_s", 1))))}
                    if "retry_after_s" in failure
                    else None
                )
                raise OpenAIError(_status_for(failure["code"]), failure["message"], failure["code"], headers=headers)
            count("chat_completions", "ok")
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": card.id,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text.strip()},
                            "finish_reason": finish_reason(done),
                            "logprobs": None,
                        }
                    ],
                    **usage_of(done),
                    "citations": citations,
                }
            )

        async def events() -> AsyncIterator[str]:
            started = False
            try:
                async for item in turn:
                    kind = item["type"]
                    if kind == EventType.CITATIONS:
                        yield _sse(chunk({"role": "assistant", "content": ""}, citations=item["items"]))
                        started = True
                    elif kind == EventType.TOKEN:
                        yield _sse(chunk({"content": item["text"]}))
                    elif kind == EventType.ERROR:
                        count("chat_completions", "error")
                        yield _sse(openai_error_json(_status_for(item["code"]), item["message"], item["code"]))
                        return
                    elif kind == EventType.DONE:
                        count("chat_completions", "ok")
                        if not started:
                            yield _sse(chunk({"role": "assistant", "content": ""}))
                        yield _sse(chunk({}, finish_reason(item)))
                        if (body.stream_options or {}).get("include_usage") and (usage := usage_of(item)):
                            # As OpenAI streams it: a last chunk with no choices and the usage.
                            yield _sse({**chunk({}), "choices": [], **usage})
                yield _sse("[DONE]")
            finally:
                release()
                await turn.aclose()

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
            background=BackgroundTask(release),  # a stream that never started still frees its slot
        )

    return router


def ran_out_of_tokens(done: dict[str, Any] | None) -> bool:
    """The turn's ``done`` event says the llm stopped at max_tokens (or the context)."""
    return ((done or {}).get("usage") or {}).get("finish_reason") == "length"


def reported_counts(done: dict[str, Any] | None) -> tuple[int, int] | None:
    """(prompt, completion) tokens from a turn's ``done`` event; None when the answerer reported
    none (no usage is better than a wrong one)."""
    counts = (done or {}).get("usage")
    return (counts["prompt_tokens"], counts["completion_tokens"]) if counts else None


def finish_reason(done: dict[str, Any]) -> str:
    """OpenAI's finish_reason: "length" when the llm ran out of tokens, "stop" otherwise (its
    end, a stop string, the grounding check)."""
    return "length" if ran_out_of_tokens(done) else "stop"


def usage_of(done: dict[str, Any]) -> dict[str, Any]:
    """``{"usage": ...}`` in the chat completion's shape, or empty (see :func:`reported_counts`)."""
    if (counts := reported_counts(done)) is None:
        return {}
    prompt, completion = counts
    return {"usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


def _completion_inputs(body: CompletionsBody, settings: Settings) -> tuple[str, list[str], str]:
    """The question (the last user message), the earlier user questions, and sampling JSON;
    what the pipeline cannot honour is refused."""
    if body.n != 1:
        raise OpenAIError(400, "n must be 1: one grounded answer per request", param="n")
    if body.tools or body.functions or body.tool_choice not in (None, "none"):
        raise OpenAIError(400, "tools and functions are not supported by this model", param="tools")
    if body.logprobs:
        raise OpenAIError(400, "logprobs are not available", param="logprobs")
    if body.response_format not in (None, {"type": "text"}):
        raise OpenAIError(400, "only response_format {'type': 'text'} is supported", param="response_format")
    if body.modalities not in (None, ["text"]):
        raise OpenAIError(400, "chat completions answer in text; speech is /v1/audio/speech", param="modalities")

    def text_of(message: Message) -> str:
        if isinstance(message.content, list):
            return " ".join(part.text for part in message.content)
        return message.content or ""

    last = body.messages[-1]
    if last.role != "user":
        raise OpenAIError(400, "the last message must be the user's question", param="messages")
    question = _clean(text_of(last), settings.max_text_chars, "messages[-1].content")
    # The pipeline's prompt is its own (grounded in the passages): system messages and earlier
    # answers do not enter it; earlier questions steer retrieval and follow-ups, as in a voice session.
    history = (
        [
            _clean(text_of(m), settings.max_text_chars, f"messages[{n}].content")
            for n, m in enumerate(body.messages[:-1])
            if m.role == "user" and text_of(m).strip()
        ][-settings.history_turns :]
        if settings.history_turns
        else []
    )
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stops) > MAX_STOP or any(not s or len(s) > 64 for s in stops):
        raise OpenAIError(400, f"stop takes up to {MAX_STOP} strings of 1 to 64 characters", param="stop")
    sampling: dict[str, Any] = {}
    limit = body.max_completion_tokens or body.max_tokens
    for key, value in (
        ("max_tokens", limit),
        ("temperature", body.temperature),
        ("top_p", body.top_p),
        ("presence_penalty", body.presence_penalty),
        ("frequency_penalty", body.frequency_penalty),
        ("seed", body.seed),
    ):
        if value is not None:
            sampling[key] = value
    if stops:
        sampling["stop"] = stops
    return question, history, json.dumps(sampling) if sampling else ""


async def _transcription_form(request: Request, settings: Settings) -> tuple[dict[str, str], bytes]:
    """The multipart fields (as text) and the audio file, within the upload limit."""
    try:
        form = await request.form(max_files=1, max_fields=16, max_part_size=64 * 1024)
    except StarletteHTTPException as exc:
        raise OpenAIError(400, f"not a usable multipart body: {exc.detail}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise OpenAIError(400, "send the audio as multipart/form-data field 'file'", param="file")
        data = await upload.read(settings.max_upload_bytes + 1)
        pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        fields = dict(pairs)
        # Sent repeated, as `timestamp_granularities[]`: all values kept.
        fields["timestamp_granularities"] = ",".join(v for k, v in pairs if k.startswith("timestamp_granularities"))
    finally:
        await form.close()
    if len(data) > settings.max_upload_bytes:
        raise OpenAIError(413, f"audio files are limited to {settings.max_upload_mb:g} MB", ErrorCode.TOO_LARGE, "file")
    if not data:
        raise OpenAIError(400, "the audio file is empty", param="file")
    return fields, data
