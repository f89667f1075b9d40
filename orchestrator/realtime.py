"""``/v1/realtime``: OpenAI's Realtime event protocol over the same voice session as ``/v1/voice``.

A :class:`RealtimeSession` translates. Client events become the native session's (audio
appended is a recording, a commit is ``stop``, ``response.cancel`` is ``cancel``), and the
native session's events become Realtime server events. So a Realtime turn gets everything
a ``/v1/voice`` turn gets: partial transcripts and speculative prefill while audio is
appended, admission, the same cancellation path for barge-in, the same limits.

Push-to-talk (``turn_detection: null``): the client commits the buffer, then asks for a
response. The answer starts at the commit (as ``stop`` starts it natively) and its events
are held until ``response.create`` arrives, so asking costs no latency. A commit that is
never followed by ``response.create`` has its answer dropped when the next audio, text or
``input_audio_buffer.clear`` comes. Audio appended while an answer plays interrupts it, as
pressing the talk button does in the web app. Audio is PCM16 mono at 24 kHz both ways.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from voicebot import jsonsafe
from voicebot.contract import STT_SAMPLE_RATE, EventType

from .audio_out import PCM_RATE, VOICES, resample_pcm16
from .metrics import Metrics
from .openai_api import CHAT_MODEL, ran_out_of_tokens, reported_counts
from .protocol import PCM_ENCODING, ProtocolError, question_text
from .session import TurnRunner, VoiceSession
from .settings import Settings

log = logging.getLogger("voicebot.realtime")

MAX_HELD_BYTES = 8 * 1024 * 1024  # an unrequested answer's events, held for response.create


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def realtime_model_error(model: str) -> dict[str, Any]:
    return {
        "type": "error",
        "event_id": _id("event"),
        "error": {
            "type": "invalid_request_error",
            "code": "model_not_found",
            "message": f"the model {model[:80]!r} does not exist; the Realtime model is {CHAT_MODEL!r}",
            "param": "model",
            "event_id": None,
        },
    }


class RealtimeError(ValueError):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


class RealtimeSession:
    """One ``/v1/realtime`` connection: Realtime events in and out, a :class:`VoiceSession` inside."""

    def __init__(
        self,
        runner: TurnRunner,
        settings: Settings,
        metrics: Metrics,
        send: Callable[[str], Awaitable[None]],
        session_id: str,
    ) -> None:
        self._send = send
        self.max_text_chars = settings.max_text_chars
        # The native session's output comes to this one, to be translated.
        self.voice = VoiceSession(runner, settings, metrics, self._from_voice_text, self._from_voice_bytes, session_id)
        self.session: dict[str, Any] = {
            "type": "realtime",
            "object": "realtime.session",
            "id": _id("sess"),
            "model": CHAT_MODEL,
            "output_modalities": ["audio"],
            "instructions": "",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": PCM_RATE},
                    "transcription": {"model": "voicebot-whisper"},
                    "turn_detection": None,
                },
                "output": {"format": {"type": "audio/pcm", "rate": PCM_RATE}, "voice": VOICES[0], "speed": 1.0},
            },
            "tools": [],
        }
        self.recording = False  # a native recording is open (audio was appended since the last commit)
        self.item_id: str | None = None  # the committed (or created) user item the next response answers
        self.previous_item: str | None = None
        self.pending_text: str | None = None  # a text item waiting for response.create
        self.turn_started = False  # the native turn for ``item_id`` is running (from a commit)
        self.held: list[dict[str, Any]] | None = None  # its events until response.create
        self.held_bytes = 0
        self.response: dict[str, Any] | None = None  # the live response
        self.transcript = ""
        self.citations: list[dict[str, Any]] = []
        self.native_done: dict[str, Any] = {}
        self.out_item: dict[str, Any] = {}
        self.input_seconds = 0.0
        self._canceller: asyncio.Task[None] | None = None
        self._audio_header: dict[str, Any] | None = None

    # ------------------------------------------------------------------ out

    async def emit(self, kind: str, **fields: Any) -> None:
        await self._send(json.dumps({"type": kind, "event_id": _id("event"), **fields}))

    async def error(self, code: str, message: str, param: str | None = None, event_id: str | None = None) -> None:
        await self.emit(
            "error",
            error={
                "type": "invalid_request_error",
                "code": code,
                "message": message,
                "param": param,
                "event_id": event_id,
            },
        )

    async def start(self) -> None:
        await self.emit("session.created", session=self.session)

    # ------------------------------------------------------------------ in

    async def on_text(self, raw: str) -> None:
        try:
            obj = jsonsafe.loads(raw, "event", 1 << 20)
        except jsonsafe.JsonInputError as exc:
            await self.error(str(exc.code), str(exc))
            return
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            await self.error("invalid_event", "an event is a JSON object with a string 'type'")
            return
        kind, event_id = obj["type"], obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
        handler = HANDLERS.get(kind)
        if handler is None:
            await self.error("unknown_event", f"unknown or unsupported event type {kind[:60]!r}", "type", event_id)
            return
        try:
            await handler(self, obj)
        except RealtimeError as exc:
            await self.error(exc.code, str(exc), exc.param, event_id)

    async def _native(self, payload: dict[str, Any]) -> None:
        await self.voice.on_text(json.dumps(payload))

    async def session_update(self, obj: dict[str, Any]) -> None:
        update = obj.get("session")
        if not isinstance(update, dict):
            raise RealtimeError("invalid_value", "session.update needs a 'session' object", "session")
        modalities = update.get("output_modalities", self.session["output_modalities"])
        if modalities not in (["audio"], ["text"]):
            raise RealtimeError(
                "invalid_value", "output_modalities is ['audio'] or ['text']", "session.output_modalities"
            )
        if update.get("tools"):
            raise RealtimeError("unsupported", "tools are not supported by this model", "session.tools")
        audio = update.get("audio") or {}
        inp, out = audio.get("input") or {}, audio.get("output") or {}
        if not isinstance(inp, dict) or not isinstance(out, dict):
            raise RealtimeError("invalid_value", "session.audio.input and .output are objects", "session.audio")
        for where, fmt in (("input", inp.get("format")), ("output", out.get("format"))):
            if fmt is not None and (
                not isinstance(fmt, dict) or fmt.get("type") != "audio/pcm" or fmt.get("rate", PCM_RATE) != PCM_RATE
            ):
                raise RealtimeError(
                    "invalid_value",
                    "audio is PCM16 at 24 kHz: {'type': 'audio/pcm', 'rate': 24000}",
                    f"session.audio.{where}.format",
                )
        if "turn_detection" in inp and inp["turn_detection"] is not None:
            raise RealtimeError(
                "unsupported",
                "only push-to-talk (turn_detection: null) is served; server VAD is not yet",
                "session.audio.input.turn_detection",
            )
        voice = out.get("voice", self.session["audio"]["output"]["voice"])
        if voice not in VOICES:
            raise RealtimeError(
                "invalid_value",
                f"unknown voice {str(voice)[:40]!r}; installed: {', '.join(VOICES)}",
                "session.audio.output.voice",
            )
        self.session["output_modalities"] = modalities
        self.session["audio"]["output"]["voice"] = voice
        # The grounded prompt is the server's own; instructions are kept for the client to read back.
        if isinstance(update.get("instructions"), str):
            self.session["instructions"] = update["instructions"][:4000]
        await self.emit("session.updated", session=self.session)

    async def append(self, obj: dict[str, Any]) -> None:
        audio = obj.get("audio")
        if not isinstance(audio, str):
            raise RealtimeError("invalid_value", "input_audio_buffer.append needs base64 'audio'", "audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise RealtimeError("invalid_value", "'audio' is not valid base64", "audio") from None
        if len(pcm) % 2:
            raise RealtimeError("invalid_value", "PCM16 audio holds whole 16-bit samples", "audio")
        if not self.recording:  # the first audio of a turn: a native recording (interrupting any answer)
            await self._drop_unrequested()
            self.recording = True
            await self._native({"type": EventType.START, "encoding": PCM_ENCODING, "sample_rate": STT_SAMPLE_RATE})
        frame = self.voice.settings.max_frame_bytes
        samples = resample_pcm16(pcm, PCM_RATE, STT_SAMPLE_RATE)
        for offset in range(0, len(samples), frame - frame % 2):
            await self.voice.on_bytes(samples[offset : offset + frame - frame % 2])
            if self.voice.recording is None:  # the native session dropped it (too long): say so once
                self.recording = False
                return

    async def commit(self, obj: dict[str, Any]) -> None:
        if not self.recording or self.voice.recording is None or not self.voice.recording.data:
            self.recording = False
            raise RealtimeError("input_audio_buffer_commit_empty", "the input audio buffer is empty")
        self.recording = False
        self.input_seconds = len(self.voice.recording.data) / (2 * STT_SAMPLE_RATE)
        self.previous_item, self.item_id = self.item_id, _id("item")
        self.pending_text = None
        await self.emit("input_audio_buffer.committed", item_id=self.item_id, previous_item_id=self.previous_item)
        await self.emit(
            "conversation.item.added",
            previous_item_id=self.previous_item,
            item=self._user_item([{"type": "input_audio", "transcript": None}]),
        )
        self.turn_started, self.held, self.held_bytes = True, [], 0
        await self._native({"type": EventType.STOP})

    async def clear(self, obj: dict[str, Any]) -> None:
        if self.recording:
            self.voice.drop_recording()
            self.recording = False
        await self._drop_unrequested()
        await self.emit("input_audio_buffer.cleared")

    async def item_create(self, obj: dict[str, Any]) -> None:
        item = obj.get("item")
        if not isinstance(item, dict) or item.get("type", "message") != "message" or item.get("role") != "user":
            raise RealtimeError("unsupported", "only user messages can be created", "item")
        parts = item.get("content")
        if not isinstance(parts, list) or not parts:
            raise RealtimeError("invalid_value", "item.content is a list of input_text parts", "item.content")
        texts = [
            p["text"]
            for p in parts
            if isinstance(p, dict) and p.get("type") == "input_text" and isinstance(p.get("text"), str)
        ]
        if len(texts) != len(parts):
            raise RealtimeError(
                "unsupported", "item.content takes input_text parts (audio goes through the buffer)", "item.content"
            )
        try:
            text = question_text(" ".join(texts), self.max_text_chars, "item.content")
        except ProtocolError as exc:
            raise RealtimeError(str(exc.code), str(exc), "item.content") from None
        await self._drop_unrequested()
        self.previous_item, self.item_id = self.item_id, _id("item")
        self.pending_text = text
        item_out = self._user_item([{"type": "input_text", "text": text}])
        await self.emit("conversation.item.added", previous_item_id=self.previous_item, item=item_out)
        await self.emit("conversation.item.done", previous_item_id=self.previous_item, item=item_out)

    async def response_create(self, obj: dict[str, Any]) -> None:
        if self.response is not None:
            raise RealtimeError("conversation_already_has_active_response", "a response is already in progress")
        given = obj.get("response")
        options: dict[str, Any] = given if isinstance(given, dict) else {}
        modalities = options.get("output_modalities", self.session["output_modalities"])
        if modalities not in (["audio"], ["text"]):
            raise RealtimeError(
                "invalid_value", "output_modalities is ['audio'] or ['text']", "response.output_modalities"
            )
        if self.pending_text is None and not self.turn_started:
            raise RealtimeError("no_input", "nothing to answer: commit audio or create a user message first")
        # (A committed answer already runs with speech; asked for as text, its audio is not sent.)
        self.response = {
            "id": _id("resp"),
            "object": "realtime.response",
            "status": "in_progress",
            "output_modalities": modalities,
            "output": [],
            "conversation_id": None,
        }
        self.transcript, self.citations, self.native_done = "", [], {}
        self.out_item = {
            "id": _id("item"),
            "type": "message",
            "object": "realtime.item",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        await self.emit("response.created", response=self.response)
        await self.emit(
            "response.output_item.added", response_id=self.response["id"], output_index=0, item=self.out_item
        )
        if self.pending_text is not None:
            text, self.pending_text = self.pending_text, None
            await self._native({"type": EventType.TEXT, "text": text, "speak": modalities == ["audio"]})
            return
        held, self.held = self.held or [], None
        for payload in held:
            await self._translate(payload)

    async def response_cancel(self, obj: dict[str, Any]) -> None:
        if self.response is None and not self.turn_started:
            raise RealtimeError("response_cancel_not_active", "there is no response to cancel")
        await self._native({"type": EventType.CANCEL})

    # ------------------------------------------------------------------ native events -> Realtime

    async def _from_voice_text(self, text: str) -> None:
        payload = json.loads(text)
        if payload.get("type") == EventType.AUDIO:
            self._audio_header = payload  # its PCM follows as the next binary frame
            return
        await self._route(payload)

    async def _from_voice_bytes(self, pcm: bytes) -> None:
        header, self._audio_header = self._audio_header, None
        if header is not None:
            await self._route({**header, "pcm": pcm})

    async def _route(self, payload: dict[str, Any]) -> None:
        kind = payload.get("type")
        if kind == EventType.TRANSCRIPT:
            if payload.get("final"):
                await self.emit(
                    "conversation.item.input_audio_transcription.completed",
                    item_id=self.item_id,
                    content_index=0,
                    transcript=payload["text"],
                    usage={"type": "duration", "seconds": round(self.input_seconds, 3)},
                )
            return
        if kind == EventType.CANCELLED and self.held is not None:
            self.held, self.held_bytes, self.turn_started = None, 0, False
            return
        if self.held is not None:  # the committed turn's answer, not yet asked for
            size = len(payload.get("pcm", b"")) + 256
            self.held_bytes += size
            self.held.append(payload)
            if self.held_bytes > MAX_HELD_BYTES:
                log.info("unrequested answer dropped", extra={"session": self.voice.session_id})
                self.held, self.held_bytes, self.turn_started = None, 0, False
                # This runs inside the turn's own task: its cancellation waits for the task, so it goes apart.
                self._canceller = asyncio.create_task(self.voice.cancel_turn())
            return
        await self._translate(payload)

    async def _translate(self, payload: dict[str, Any]) -> None:
        kind = payload.get("type")
        response = self.response
        if kind == EventType.ERROR:
            if response is None:
                await self.error(str(payload.get("code")), str(payload.get("message")))
                return
            await self.error(str(payload.get("code")), str(payload.get("message")))
            await self._finish(
                "failed", {"type": "failed", "error": {"type": "server_error", "code": payload.get("code")}}
            )
            return
        if kind == EventType.CANCELLED:
            if response is not None:
                await self._finish("cancelled", {"type": "cancelled", "reason": "client_cancelled"})
            self.turn_started = False
            return
        if response is None:
            return  # busy, or a late event of a dropped answer
        ids = {"response_id": response["id"], "item_id": self.out_item["id"], "output_index": 0, "content_index": 0}
        audio_out = response["output_modalities"] == ["audio"]
        if kind == EventType.CITATIONS:
            self.citations = payload.get("items", [])
        elif kind == EventType.TOKEN:
            self.transcript += payload["text"]
            name = "response.output_audio_transcript.delta" if audio_out else "response.output_text.delta"
            await self.emit(name, delta=payload["text"], **ids)
        elif kind == EventType.AUDIO and audio_out:
            pcm = resample_pcm16(payload["pcm"], int(payload["sample_rate"]), PCM_RATE)
            await self.emit("response.output_audio.delta", delta=base64.b64encode(pcm).decode("ascii"), **ids)
        elif kind == EventType.DONE:
            # The native turn's own account (timings, and for speech what speculation did).
            self.native_done = {k: v for k, v in payload.items() if k not in ("type", "turn_id")}
            if audio_out:
                await self.emit("response.output_audio.done", **ids)
                await self.emit("response.output_audio_transcript.done", transcript=self.transcript, **ids)
            else:
                await self.emit("response.output_text.done", text=self.transcript, **ids)
            if ran_out_of_tokens(payload):
                await self._finish("incomplete", {"type": "incomplete", "reason": "max_output_tokens"})
            else:
                await self._finish("completed", None)

    async def _finish(self, status: str, details: dict[str, Any] | None) -> None:
        response, self.response = self.response, None
        self.turn_started = False
        if response is None:
            return
        audio_out = response["output_modalities"] == ["audio"]
        part = (
            {"type": "output_audio", "transcript": self.transcript}
            if audio_out
            else {"type": "output_text", "text": self.transcript}
        )
        item = {**self.out_item, "status": "completed" if status == "completed" else "incomplete", "content": [part]}
        await self.emit("response.output_item.done", response_id=response["id"], output_index=0, item=item)
        done = {
            **response,
            "status": status,
            "status_details": details,
            "output": [item],
            **realtime_usage(self.native_done),
            # Extra fields, ignored by clients that do not know them: the passages, and the native
            # `done` event (its timings, and for speech what speculation did).
            "citations": self.citations,
            "voicebot": self.native_done,
        }
        await self.emit("response.done", response=done)

    async def _drop_unrequested(self) -> None:
        """A committed answer nobody asked for is stopped (the next input supersedes it)."""
        if self.held is not None:
            self.held, self.held_bytes, self.turn_started = None, 0, False
            await self.voice.cancel_turn()

    def _user_item(self, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "type": "message",
            "object": "realtime.item",
            "role": "user",
            "status": "completed",
            "content": content,
        }

    # ------------------------------------------------------------------ the connection (app._serve)

    async def on_bytes(self, data: bytes) -> None:
        await self.error("invalid_event", "binary frames are not part of the Realtime protocol; send JSON events")

    async def reject_oversize(self, item: str | bytes) -> bool:
        return False  # bounded by the WebSocket's own message limit

    def queue_full(self) -> Awaitable[None]:
        return self.error("too_many_queued_events", "too many events waiting; this one was dropped")

    def busy(self) -> bool:
        return self.voice.busy()

    async def close(self) -> None:
        await self.voice.close()


HANDLERS: dict[str, Callable[[RealtimeSession, dict[str, Any]], Awaitable[None]]] = {
    "session.update": RealtimeSession.session_update,
    "input_audio_buffer.append": RealtimeSession.append,
    "input_audio_buffer.commit": RealtimeSession.commit,
    "input_audio_buffer.clear": RealtimeSession.clear,
    "conversation.item.create": RealtimeSession.item_create,
    "response.create": RealtimeSession.response_create,
    "response.cancel": RealtimeSession.response_cancel,
}


def realtime_usage(native_done: dict[str, Any] | None) -> dict[str, Any]:
    """``{"usage": ...}`` of a Realtime response from the native done event's token counts
    (text tokens: the audio is Piper's, not the model's); empty when none were reported."""
    if (counts := reported_counts(native_done)) is None:
        return {}
    prompt, completion = counts
    return {"usage": {"total_tokens": prompt + completion, "input_tokens": prompt, "output_tokens": completion}}
