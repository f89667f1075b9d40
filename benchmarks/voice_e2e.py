"""End-to-end voice turns through ``/v1/voice``, as a browser would send them (20 ms frames, real time)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import websockets

from voicebot.contract import STT_SAMPLE_RATE, EventType

FRAME_BYTES = 640  # 20 ms of 16 kHz PCM16


@dataclass
class TurnResult:
    question: str
    concurrency: int
    ok: bool
    error: str = ""
    transcript: str = ""
    cited: list[str] = field(default_factory=list)
    passages: list[str] = field(default_factory=list)  # the cited text, as the model saw it
    scores: list[float] = field(default_factory=list)  # their cosine similarity to the question
    answer: str = ""
    voice_to_first_audio_s: float = -1.0  # stop sent -> first audio byte received
    total_s: float = -1.0  # stop sent -> done received
    server: dict[str, float] = field(default_factory=dict)  # the done event's timings, in ms
    speculation: str = ""  # hit / partial / miss / none (done.speculation)
    prefill_finished: bool = False  # the speculative prefill was done before the answer began
    timeline: list[dict[str, Any]] = field(default_factory=list)  # done.timeline: what ran when
    # Playback as a client would do it (each chunk right after the one before, or on arrival):
    # a chunk that arrives after the audio before it finished playing is an underrun.
    underruns: int = 0
    gap_s: float = 0.0  # silence those underruns put into the answer
    busy_s: float = -1.0  # stop sent -> `busy` received (the turn waited for a slot)
    queue_position: int = 0

    def as_row(self) -> dict[str, Any]:
        return self.__dict__


class Playback:
    """When a client's audio would play: chunks back to back, each no earlier than it arrived."""

    def __init__(self) -> None:
        self.ends_at: float | None = None
        self.underruns = 0
        self.gap_s = 0.0

    def chunk(self, arrived: float, seconds: float) -> None:
        if self.ends_at is not None and arrived > self.ends_at:
            self.underruns += 1
            self.gap_s += arrived - self.ends_at
        self.ends_at = max(self.ends_at or arrived, arrived) + seconds


# A person releases push-to-talk a moment after the last word: this much silence is streamed
# after each clip before `stop` (0 gives the old, harsher measure: stop on the last sample).
RELEASE_S = 0.3


async def voice_turn(
    url: str,
    audio: bytes | None,
    question: str,
    concurrency: int,
    timeout: float = 180,
    release_s: float = RELEASE_S,
) -> TurnResult:
    """One turn on a new connection: ``audio`` streamed in real time, then ``release_s`` of
    silence, or (``None``) the question typed."""
    result = TurnResult(question=question, concurrency=concurrency, ok=False)
    try:
        async with websockets.connect(url, max_size=1 << 22) as ws:
            if audio is None:
                await ws.send(json.dumps({"type": EventType.TEXT, "text": question, "speak": True}))
            else:
                await ws.send(
                    json.dumps({"type": EventType.START, "sample_rate": STT_SAMPLE_RATE, "encoding": "pcm_s16le"})
                )
                began = time.monotonic()
                audio = audio + bytes(int(release_s * STT_SAMPLE_RATE) * 2)
                for n in range(0, len(audio), FRAME_BYTES):
                    await ws.send(audio[n : n + FRAME_BYTES])
                    delay = began + (n // FRAME_BYTES + 1) * 0.02 - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await ws.send(json.dumps({"type": EventType.STOP}))
            stopped = time.monotonic()
            deadline = stopped + timeout
            playback, rate = Playback(), 0
            while True:
                message = await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.1))
                if isinstance(message, bytes):
                    now = time.monotonic()
                    if result.voice_to_first_audio_s < 0:
                        result.voice_to_first_audio_s = now - stopped
                    playback.chunk(now, len(message) / 2 / (rate or 22050))
                    result.underruns, result.gap_s = playback.underruns, playback.gap_s
                    continue
                event = json.loads(message)
                kind = event["type"]
                if kind == EventType.AUDIO:
                    rate = int(event["sample_rate"])
                elif kind == EventType.BUSY:
                    result.busy_s = time.monotonic() - stopped
                    result.queue_position = int(event["position"])
                elif kind == EventType.TRANSCRIPT and event["final"]:
                    result.transcript = event["text"]
                elif kind == EventType.CITATIONS:
                    result.cited = [item["source"] for item in event["items"]]
                    result.passages = [item["text"] for item in event["items"]]
                    result.scores = [item["score"] for item in event["items"]]
                elif kind == EventType.TOKEN:
                    result.answer += event["text"]
                elif kind == EventType.ERROR:
                    result.error = f"{event['code']}: {event['message']}"
                    return result
                elif kind == EventType.DONE:
                    result.total_s = time.monotonic() - stopped
                    result.server = event["timings"]
                    result.speculation = event.get("speculation", "")
                    result.prefill_finished = bool(event.get("prefill_finished", False))
                    result.timeline = event.get("timeline", [])
                    result.ok = True
                    return result
    except (OSError, TimeoutError, websockets.WebSocketException) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


REALTIME_RATE = 24_000


def upsample_to_realtime(pcm16k: bytes) -> bytes:
    """16 kHz PCM16 as Realtime's input (24 kHz), by the orchestrator's own resampler."""
    from orchestrator.audio_out import resample_pcm16

    return resample_pcm16(pcm16k, STT_SAMPLE_RATE, REALTIME_RATE)


async def realtime_turn(
    url: str, audio: bytes, question: str, concurrency: int, timeout: float = 180, release_s: float = RELEASE_S
) -> TurnResult:
    """The same spoken turn through ``/v1/realtime`` (``url`` ends in /v1/realtime): 20 ms
    ``input_audio_buffer.append`` events in real time, then ``release_s`` of silence, ``commit``
    and ``response.create`` back to back, as a push-to-talk client sends them. First audio is
    timed from the commit, as native first audio is timed from ``stop``."""
    import base64

    result = TurnResult(question=question, concurrency=concurrency, ok=False)
    pcm = upsample_to_realtime(audio + bytes(int(release_s * STT_SAMPLE_RATE) * 2))
    frame = REALTIME_RATE * 2 // 50
    try:
        async with websockets.connect(url, max_size=1 << 22) as ws:
            began = time.monotonic()
            for n in range(0, len(pcm), frame):
                chunk = base64.b64encode(pcm[n : n + frame]).decode()
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                delay = began + (n // frame + 1) * 0.02 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await ws.send(json.dumps({"type": "response.create"}))
            stopped = time.monotonic()
            deadline = stopped + timeout
            playback = Playback()
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.1)))
                kind = event["type"]
                if kind == "response.output_audio.delta":
                    now = time.monotonic()
                    if result.voice_to_first_audio_s < 0:
                        result.voice_to_first_audio_s = now - stopped
                    playback.chunk(now, len(event["delta"]) * 3 / 4 / 2 / REALTIME_RATE)
                    result.underruns, result.gap_s = playback.underruns, playback.gap_s
                elif kind == "conversation.item.input_audio_transcription.completed":
                    result.transcript = event["transcript"]
                elif kind == "response.output_audio_transcript.delta":
                    result.answer += event["delta"]
                elif kind == "error":
                    result.error = f"{event['error']['code']}: {event['error']['message']}"
                    return result
                elif kind == "response.done":
                    response = event["response"]
                    result.total_s = time.monotonic() - stopped
                    native = response.get("voicebot", {})  # the native `done` event, as an extra field
                    result.server = native.get("timings", {})
                    result.speculation = native.get("speculation", "")
                    result.prefill_finished = bool(native.get("prefill_finished", False))
                    result.cited = [item["source"] for item in response.get("citations", [])]
                    result.ok = response["status"] == "completed"
                    if not result.ok:
                        result.error = f"response {response['status']}"
                    return result
    except (OSError, TimeoutError, websockets.WebSocketException) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


async def run_level(
    url: str,
    clips: list[tuple[str, bytes]],
    concurrency: int,
    turns_per_session: int,
    release_s: float = RELEASE_S,
) -> list[TurnResult]:
    """``concurrency`` sessions at once, each asking ``turns_per_session`` questions in turn."""

    async def session(offset: int) -> list[TurnResult]:
        out = []
        for k in range(turns_per_session):
            question, audio = clips[(offset + k) % len(clips)]
            out.append(await voice_turn(url, audio, question, concurrency, release_s=release_s))
        return out

    batches = await asyncio.gather(*(session(i) for i in range(concurrency)))
    return [r for batch in batches for r in batch]
