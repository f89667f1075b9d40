"""The ``/v1/voice`` and ``/v1/chat`` wire formats: client events and bodies in, server events out.

Everything a client sends is checked here, once, by one pydantic model per shape
(``extra="forbid"``, strict types) after :func:`voicebot.jsonsafe.loads` has bounded its
size, depth, numbers and text. A bad one raises :class:`ProtocolError` with an
:class:`~voicebot.contract.ErrorCode` that becomes an ``error`` event (the session goes on)
or a 4xx body.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from voicebot import jsonsafe
from voicebot.contract import STT_SAMPLE_RATE, ErrorCode, EventType

PCM_ENCODING = "pcm_s16le"
# Containers Triton's audio_decode reads (a browser's MediaRecorder gives webm/ogg opus).
ENCODED = ("webm_opus", "ogg_opus", "wav", "flac", "mp3")
ENCODINGS = (PCM_ENCODING, *ENCODED)
Encoding = Literal["pcm_s16le", "webm_opus", "ogg_opus", "wav", "flac", "mp3"]
MAX_EVENT_BYTES = 64 * 1024
# WebSocket messages up to this size are read and, when over the limits above (a control message
# over MAX_EVENT_BYTES, a frame over VOICEBOT_MAX_FRAME_BYTES), answered with an error event;
# anything larger closes the connection with 1009 "message too big".
WS_MAX_MESSAGE_BYTES = 1 << 20
MAX_HISTORY_ITEMS = 10


class ProtocolError(ValueError):
    """A client event or body the server cannot use; ``code`` is machine-readable."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Start(_Shape):
    type: Literal["start"] = "start"
    sample_rate: int = Field(STT_SAMPLE_RATE, ge=8000, le=192_000)
    encoding: Encoding = "pcm_s16le"

    @model_validator(mode="after")
    def _pcm_rate(self) -> Start:
        if self.encoding == PCM_ENCODING and self.sample_rate != STT_SAMPLE_RATE:
            raise PydanticCustomError(
                ErrorCode.BAD_SAMPLE_RATE.value,
                "pcm_s16le audio must be {rate} Hz mono, got sample_rate={got}",
                {"rate": STT_SAMPLE_RATE, "got": self.sample_rate},
            )
        return self


class Stop(_Shape):
    type: Literal["stop"] = "stop"


class Cancel(_Shape):
    type: Literal["cancel"] = "cancel"


class TextTurn(_Shape):
    type: Literal["text"] = "text"
    text: str
    speak: bool = True


class ChatRequest(_Shape):
    """``POST /v1/chat``: a typed question, optionally spoken, with earlier questions."""

    text: str
    speak: bool = False
    history: list[str] = Field(default_factory=list, max_length=MAX_HISTORY_ITEMS)


ClientEvent = Start | Stop | Cancel | TextTurn
_EVENTS: dict[str, type[_Shape]] = {
    EventType.START: Start,
    EventType.STOP: Stop,
    EventType.CANCEL: Cancel,
    EventType.TEXT: TextTurn,
}
# Which code a failed field earns (anything else: bad_event).
_FIELD_CODES = {"sample_rate": ErrorCode.BAD_SAMPLE_RATE, "encoding": ErrorCode.BAD_ENCODING}


def _validation_error(exc: ValidationError, what: str) -> ProtocolError:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return ProtocolError(ErrorCode.BAD_EVENT, f"{what}: unknown field {where[:40]!r}")
    field = str(first["loc"][0]) if first["loc"] else ""
    try:  # a validator's own error type may name its code (PydanticCustomError)
        code = ErrorCode(first["type"])
    except ValueError:
        code = _FIELD_CODES.get(field, ErrorCode.BAD_EVENT)
    message = first["msg"].removeprefix("Value error, ")
    return ProtocolError(code, f"{what}: {where + ': ' if where else ''}{message}")


def question_text(text: str, max_chars: int, what: str = "text") -> str:
    """A question as the pipeline takes it: clean text, not blank, within ``max_chars``."""
    problem = jsonsafe.text_problem(text)
    if problem:
        raise ProtocolError(ErrorCode.BAD_TEXT, f"{what} {problem}")
    text = " ".join(text.split())
    if not text:
        raise ProtocolError(ErrorCode.EMPTY_TEXT, f"{what} must be a non-empty string")
    if len(text) > max_chars:
        raise ProtocolError(ErrorCode.TEXT_TOO_LONG, f"{what} is limited to {max_chars} characters")
    return text


def _loads(raw: str | bytes, what: str, max_bytes: int) -> Any:
    try:
        return jsonsafe.loads(raw, what, max_bytes)
    except jsonsafe.JsonInputError as exc:
        raise ProtocolError(exc.code, str(exc)) from None


def parse_client_event(raw: str, max_text_chars: int) -> ClientEvent:
    if len(raw) > MAX_EVENT_BYTES:
        raise ProtocolError(ErrorCode.EVENT_TOO_LARGE, f"control messages are limited to {MAX_EVENT_BYTES} bytes")
    obj = _loads(raw, "message", MAX_EVENT_BYTES)
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError(ErrorCode.BAD_EVENT, "message must be a JSON object with a string 'type'")
    shape = _EVENTS.get(obj["type"])
    if shape is None:
        raise ProtocolError(ErrorCode.UNKNOWN_EVENT, f"unknown event type {obj['type'][:40]!r}")
    try:
        message = shape.model_validate(obj)
    except ValidationError as exc:
        raise _validation_error(exc, obj["type"]) from None
    if isinstance(message, TextTurn):
        return message.model_copy(update={"text": question_text(message.text, max_text_chars)})
    return message  # type: ignore[return-value]


def parse_chat_request(raw: bytes, max_text_chars: int, max_bytes: int) -> ChatRequest:
    obj = _loads(raw, "body", max_bytes)
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "body must be a JSON object")
    try:
        body = ChatRequest.model_validate(obj)
    except ValidationError as exc:
        error = _validation_error(exc, "body")
        raise ProtocolError(ErrorCode.BAD_REQUEST, str(error)) from None
    text = question_text(body.text, max_text_chars)
    history = [question_text(h, max_text_chars, f"history[{n}]") for n, h in enumerate(body.history)]
    return body.model_copy(update={"text": text, "history": history})


def event(kind: EventType, **fields: Any) -> dict[str, Any]:
    return {"type": kind.value, **fields}


def error_event(code: ErrorCode, message: str) -> dict[str, Any]:
    return event(EventType.ERROR, code=str(code), message=message)
