"""The ``/v1/voice`` wire protocol: parsing client events, building server events.

Client events are validated here, once; a bad one raises :class:`ProtocolError` with a
stable ``code`` that becomes an ``error`` event, and the session goes on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from voicebot.contract import STT_SAMPLE_RATE, EventType

PCM_ENCODING = "pcm_s16le"
# Containers Triton's audio_decode reads (a browser's MediaRecorder gives webm/ogg opus).
ENCODED = ("webm_opus", "ogg_opus", "wav", "flac", "mp3")
ENCODINGS = (PCM_ENCODING, *ENCODED)
MAX_EVENT_BYTES = 64 * 1024


class ProtocolError(ValueError):
    """A client event the server cannot use; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Start:
    sample_rate: int
    encoding: str


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Cancel:
    pass


@dataclass(frozen=True)
class TextTurn:
    text: str
    speak: bool


ClientEvent = Start | Stop | Cancel | TextTurn


def parse_client_event(raw: str, max_text_chars: int) -> ClientEvent:
    if len(raw) > MAX_EVENT_BYTES:
        raise ProtocolError("event_too_large", f"control messages are limited to {MAX_EVENT_BYTES} bytes")
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"message is not valid JSON: {exc.msg}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise ProtocolError("bad_event", "message must be a JSON object with a string 'type'")
    kind = obj["type"]
    if kind == EventType.START:
        encoding = obj.get("encoding", PCM_ENCODING)
        if encoding not in ENCODINGS:
            raise ProtocolError("bad_encoding", f"encoding must be one of {', '.join(ENCODINGS)}")
        rate = obj.get("sample_rate", STT_SAMPLE_RATE)
        if isinstance(rate, bool) or not isinstance(rate, int):
            raise ProtocolError("bad_sample_rate", "sample_rate must be an integer")
        if encoding == PCM_ENCODING and rate != STT_SAMPLE_RATE:
            raise ProtocolError(
                "bad_sample_rate", f"pcm_s16le audio must be {STT_SAMPLE_RATE} Hz mono, got sample_rate={rate}"
            )
        return Start(sample_rate=rate, encoding=encoding)
    if kind == EventType.STOP:
        return Stop()
    if kind == EventType.CANCEL:
        return Cancel()
    if kind == EventType.TEXT:
        text = obj.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ProtocolError("empty_text", "text must be a non-empty string")
        if len(text) > max_text_chars:
            raise ProtocolError("text_too_long", f"text is limited to {max_text_chars} characters")
        speak = obj.get("speak", True)
        if not isinstance(speak, bool):
            raise ProtocolError("bad_event", "speak must be true or false")
        return TextTurn(text=text.strip(), speak=speak)
    raise ProtocolError("unknown_event", f"unknown event type {kind[:40]!r}")


def event(kind: EventType, **fields: Any) -> dict[str, Any]:
    return {"type": kind.value, **fields}


def error_event(code: str, message: str) -> dict[str, Any]:
    return event(EventType.ERROR, code=code, message=message)
