"""Turns and voice sessions: audio in, transcript, citations, streamed tokens and audio out.

A :class:`TurnRunner` runs one turn against the three services and emits events; a
:class:`VoiceSession` holds one WebSocket's state (recording, partial transcripts,
the running turn, history) and turns client events into turns, cancelling the running
one on barge-in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rag_index import SearchHit
from voicebot.contract import STT_SAMPLE_RATE, ErrorCode, EventType

from .admission import Admission, Overloaded
from .logs import turn_id as turn_id_var
from .metrics import Metrics
from .protocol import (
    MAX_EVENT_BYTES,
    PCM_ENCODING,
    Cancel,
    ProtocolError,
    Start,
    Stop,
    TextTurn,
    error_event,
    event,
    parse_client_event,
)
from .services import Answerer, AudioChunk, Generation, Retriever, ServiceError, SpeechToText
from .settings import Settings
from .speculation import (
    Levels,
    Outcome,
    PartialTranscript,
    Span,
    Speculation,
    prompt_passages,
    retrieval_query,
    stable_order,
)

log = logging.getLogger("voicebot.session")

SendEvent = Callable[[dict[str, Any]], Awaitable[None]]
SendAudio = Callable[[dict[str, Any], bytes], Awaitable[None]]
CANCEL_GRACE_S = 2.0


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass
class Services:
    stt: SpeechToText
    retriever: Retriever
    answerer: Answerer


@dataclass
class Spoken:
    """What a session knows of a recording when its turn starts: work done while the user spoke."""

    started: float  # when the recording began (perf_counter): the timeline's zero
    cache_key: str  # the session's: its prefill is kept for its answer
    # The last partial transcript when only silence followed it (awaited if still running), else None.
    reuse: Callable[[], Awaitable[str | None]] | None = None
    speculation: Speculation | None = None
    prefill: asyncio.Task[None] | None = None
    spans: list[Span] = field(default_factory=list)

    def span(self, stage: str, start: float, end: float) -> None:
        self.spans.append(Span(stage, start - self.started, end - self.started))


class TurnRunner:
    """One question, from audio or text, to a finished (or failed) answer."""

    def __init__(self, services: Services, settings: Settings, metrics: Metrics) -> None:
        self.services = services
        self.settings = settings
        self.metrics = metrics
        self.admission = Admission(settings.max_turns, settings.max_queued_turns, metrics)

    async def run(
        self,
        send_event: SendEvent,
        send_audio: SendAudio,
        history: deque[str],
        *,
        text: str | None = None,
        audio: bytes | None = None,
        encoding: str = PCM_ENCODING,
        speak: bool = True,
        began: float | None = None,
        turn_id: str | None = None,
        spoken: Spoken | None = None,
        sampling: str | None = None,
    ) -> None:
        began = began if began is not None else time.perf_counter()
        turn_id = turn_id or uuid.uuid4().hex[:12]
        turn_id_var.set(turn_id)  # this task's context: every log line of the turn carries it
        kind = "voice" if audio is not None else "text"
        timings: dict[str, int] = {}

        async def busy(position: int, estimate_s: float) -> None:
            await send_event(event(EventType.BUSY, position=position, estimate_s=round(estimate_s, 1)))

        try:
            async with asyncio.timeout(self.settings.turn_timeout_s), self.admission.turn(busy) as waited:
                timings["queue_ms"] = _ms(waited)
                admitted = time.perf_counter()  # STT's own time starts here, not at stop
                if audio is not None:
                    text = await spoken.reuse() if spoken is not None and spoken.reuse is not None else None
                    if text is not None:
                        self.metrics.transcript_reused.inc()
                    else:
                        text = await self.services.stt.transcribe(audio, encoding, turn_id)
                    timings["stt_ms"] = _ms(time.perf_counter() - admitted)
                    if spoken is not None:
                        spoken.span("stt", admitted, time.perf_counter())
                    await send_event(event(EventType.TRANSCRIPT, text=text, final=True))
                    if not text:
                        await send_event(
                            error_event(ErrorCode.NO_SPEECH, "No speech was recognised; please try again.")
                        )
                        self.metrics.errors.labels(ErrorCode.NO_SPEECH).inc()
                        self.metrics.turns.labels(kind, "no_speech").inc()
                        return
                else:
                    timings["stt_ms"] = 0
                assert text is not None
                t_retrieval = time.perf_counter()
                query = retrieval_query(history, text)
                hits = await self.services.retriever.retrieve(query, self.settings.top_k, turn_id)
                timings["retrieval_ms"] = _ms(time.perf_counter() - t_retrieval)
                prompt_hits = prompt_passages(hits, text, self.settings.passage_words, self.settings.passage_margin)
                outcome, prefilled = Outcome.NONE, 0
                if spoken is not None:
                    spoken.span("retrieval", t_retrieval, time.perf_counter())
                    outcome, prefilled, prompt_hits = self._speculated(spoken, prompt_hits, history, text)
                await send_event(
                    event(
                        EventType.CITATIONS,
                        items=[
                            {
                                "id": f"{h.document_id}#{h.chunk_id}",
                                "document_id": h.document_id,
                                "title": h.title,
                                "heading": h.heading,
                                "source": h.source,
                                "text": h.text,
                                "score": round(h.score, 4),
                            }
                            for h in prompt_hits
                        ],
                    )
                )
                t_answer = time.perf_counter()
                seq = 0
                answered = False
                cache_key = spoken.cache_key if spoken is not None else None
                # Read before the answer asks for the context: a prefill then gives way to it.
                finished = spoken is not None and spoken.speculation is not None and spoken.speculation.complete
                answer = self.services.answerer.answer(
                    text, prompt_hits, list(history), speak, turn_id, cache_key, sampling
                )
                usage: dict[str, Any] | None = None
                async for item in answer:
                    now = time.perf_counter()
                    if isinstance(item, Generation):
                        usage = {
                            "prompt_tokens": item.prompt_tokens,
                            "completion_tokens": item.output_tokens,
                            "finish_reason": item.finish_reason,
                        }
                    elif isinstance(item, AudioChunk):
                        if "tts_first_audio_ms" not in timings:
                            timings["tts_first_audio_ms"] = _ms(now - t_answer)
                            timings["first_audio_ms"] = _ms(now - began)
                        header = event(EventType.AUDIO, sample_rate=item.sample_rate, encoding=PCM_ENCODING, seq=seq)
                        await send_audio(header, item.pcm)
                        seq += 1
                    else:
                        timings.setdefault("llm_first_token_ms", _ms(now - t_answer))
                        answered = answered or bool(item.text.strip())
                        await send_event(event(EventType.TOKEN, text=item.text))
                if not answered:  # a turn never ends in a silent `done`
                    raise ServiceError(ErrorCode.NO_ANSWER, "The model gave no answer; please ask another way.")
                history.append(text)
                timings["total_ms"] = _ms(time.perf_counter() - began)
                for key in ("llm_first_token_ms", "tts_first_audio_ms", "first_audio_ms"):
                    timings.setdefault(key, -1)  # -1: that stage produced nothing (e.g. speak=false)
                extra: dict[str, Any] = {"usage": usage} if usage is not None else {}
                if spoken is not None:
                    self.metrics.speculation.labels(outcome.value).inc()
                    if timings["first_audio_ms"] >= 0:
                        spoken.span("first_audio", began, began + timings["first_audio_ms"] / 1000)
                    extra |= {
                        "speculation": outcome.value,
                        "prefilled_passages": prefilled,
                        "prefill_finished": finished,  # before the answer began
                        "timeline": [sp.as_ms() for sp in spoken.spans],
                    }
                await send_event(event(EventType.DONE, turn_id=turn_id, timings=timings, **extra))
                self.metrics.observe_timings({k: v for k, v in timings.items() if v >= 0})
                self.metrics.turns.labels(kind, "ok").inc()
                log.info("turn done", extra={"timings": timings})
        except Overloaded as exc:
            if spoken is not None and spoken.prefill is not None:
                spoken.prefill.cancel()  # work for an answer that will not come
            self.metrics.errors.labels(ErrorCode.OVERLOADED).inc()
            self.metrics.turns.labels(kind, "rejected").inc()
            payload = error_event(ErrorCode.OVERLOADED, str(exc))
            await send_event({**payload, "retry_after_s": round(exc.retry_after_s, 1)})
        except ServiceError as exc:
            self.metrics.errors.labels(exc.code).inc()
            self.metrics.turns.labels(kind, "error").inc()
            log.warning("turn failed: %s", exc, extra={"code": exc.code})
            await send_event(error_event(exc.code, str(exc)))
        except TimeoutError:
            self.metrics.errors.labels(ErrorCode.TURN_TIMEOUT).inc()
            self.metrics.turns.labels(kind, "error").inc()
            await send_event(
                error_event(ErrorCode.TURN_TIMEOUT, f"the turn took over {self.settings.turn_timeout_s:g} s")
            )
        except asyncio.CancelledError:
            self.metrics.turns.labels(kind, "cancelled").inc()
            raise
        except Exception as exc:  # a bug or a broken index must not kill the session silently
            self.metrics.errors.labels(ErrorCode.INTERNAL).inc()
            self.metrics.turns.labels(kind, "error").inc()
            log.exception("turn failed")
            await send_event(error_event(ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}"))

    @staticmethod
    def _speculated(
        spoken: Spoken, final: list[SearchHit], history: deque[str], question: str
    ) -> tuple[Outcome, int, list[SearchHit]]:
        """How much of the final passages was prefilled (the outcome and the number of passages
        shared) and the passages in prompt order, those prefilled first. A prefill still running
        for passages the answer will not use is stopped: the answer's own prefill needs the cores."""
        if spoken.speculation is None:
            return Outcome.NONE, 0, final
        ordered = stable_order(spoken.speculation.passages, final, question)
        outcome, shared = spoken.speculation.outcome(ordered, history)
        if outcome == Outcome.MISS and spoken.prefill is not None and not spoken.prefill.done():
            spoken.prefill.cancel()
        return outcome, shared, ordered


@dataclass
class Recording:
    encoding: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    data: bytearray = field(default_factory=bytearray)
    partial_at: int = 0  # bytes already covered by the last partial transcript
    began: float = field(default_factory=time.perf_counter)
    levels: Levels = field(default_factory=Levels)
    heard: PartialTranscript | None = None  # the last partial that finished
    speculation: Speculation | None = None  # what the last prefill holds
    prefill: asyncio.Task[None] | None = None
    spans: list[Span] = field(default_factory=list)

    def seconds(self) -> float:
        if self.encoding == PCM_ENCODING:
            return len(self.data) / (2 * STT_SAMPLE_RATE)
        return 0.0  # encoded: its length is known once decoded; bytes are bounded instead


class VoiceSession:
    """One WebSocket's conversation. Events in, events out; one bad input never ends it."""

    def __init__(
        self,
        runner: TurnRunner,
        settings: Settings,
        metrics: Metrics,
        send_text: Callable[[str], Awaitable[None]],
        send_bytes: Callable[[bytes], Awaitable[None]],
        session_id: str,
    ) -> None:
        self.runner = runner
        self.settings = settings
        self.metrics = metrics
        self._send_text = send_text
        self._send_bytes = send_bytes
        self.session_id = session_id
        self._send_lock = asyncio.Lock()
        self.history: deque[str] = deque(maxlen=settings.history_turns)
        self.recording: Recording | None = None
        self.turn: asyncio.Task[None] | None = None
        self.partial: asyncio.Task[PartialTranscript | None] | None = None
        self._stray_frames_reported = False
        self._turn_live = False  # false from the moment a turn is cancelled: nothing more of it goes out
        self._prefill: asyncio.Task[None] | None = None  # the last speculative prefill, of any recording

    # ---------------------------------------------------------------- sending

    async def send_event(self, payload: dict[str, Any]) -> None:
        async with self._send_lock:
            await self._send_text(json.dumps(payload))

    async def _turn_event(self, payload: dict[str, Any]) -> None:
        if self._turn_live:
            await self.send_event(payload)

    async def _turn_audio(self, header: dict[str, Any], pcm: bytes) -> None:
        if not self._turn_live:
            return
        async with self._send_lock:  # the header and its binary frame stay adjacent
            await self._send_text(json.dumps(header))
            await self._send_bytes(pcm)

    async def error(self, code: ErrorCode, message: str) -> None:
        self.metrics.errors.labels(code).inc()
        log.info("client error: %s", message, extra={"code": code, "session": self.session_id})
        await self.send_event(error_event(code, message))

    # ---------------------------------------------------------------- client input

    async def start(self) -> None:
        """A new connection: nothing is said until the client speaks (the Realtime one greets)."""

    async def on_text(self, raw: str) -> None:
        try:
            message = parse_client_event(raw, self.settings.max_text_chars)
        except ProtocolError as exc:
            await self.error(exc.code, str(exc))
            return
        if isinstance(message, Start):  # barge-in when an answer is still streaming
            await self._cancel_turn()
            self._stop_prefill()  # an earlier recording's: its passages are moot now
            self.recording = Recording(encoding=message.encoding)
            self._stray_frames_reported = False
        elif isinstance(message, Stop):
            await self._stop()
        elif isinstance(message, Cancel):
            self.recording = None
            self._stop_prefill()
            await self._cancel_turn(always_announce=True)
        elif isinstance(message, TextTurn):
            await self._cancel_turn()
            self.recording = None
            self._start_turn(text=message.text, speak=message.speak)

    async def on_bytes(self, data: bytes) -> None:
        """An audio frame, already within the frame limit (:meth:`reject_oversize` ran before it was queued)."""
        rec = self.recording
        if rec is None:
            if not self._stray_frames_reported:
                self._stray_frames_reported = True
                await self.error(ErrorCode.NO_RECORDING, "audio frame without a 'start' event; send start first")
            return
        if rec.encoding == PCM_ENCODING and len(data) % 2:
            await self.error(ErrorCode.BAD_FRAME, "pcm_s16le frames must hold whole 16-bit samples")
            return
        rec.data.extend(data)
        if rec.encoding == PCM_ENCODING:
            rec.levels.update(rec.data)
        too_long = rec.seconds() > self.settings.max_audio_seconds
        too_big = rec.encoding != PCM_ENCODING and len(rec.data) > self.settings.max_upload_bytes
        if too_long or too_big:
            self.recording = None
            await self.error(
                ErrorCode.AUDIO_TOO_LONG,
                f"a turn is limited to {self.settings.max_audio_seconds:g} s of audio; recording dropped",
            )
            return
        self._maybe_partial(rec)

    async def reject_oversize(self, item: str | bytes) -> bool:
        """A message over its limit is answered here, before it is queued: the queue holds
        ``max_queued_frames`` messages of bounded size, never more."""
        if isinstance(item, str) and len(item) > MAX_EVENT_BYTES:
            await self.error(ErrorCode.EVENT_TOO_LARGE, f"control messages are limited to {MAX_EVENT_BYTES} bytes")
            return True
        if isinstance(item, bytes) and len(item) > self.settings.max_frame_bytes:
            await self.error(
                ErrorCode.FRAME_TOO_LARGE, f"audio frames are limited to {self.settings.max_frame_bytes} bytes"
            )
            return True
        return False

    def queue_full(self) -> Awaitable[None]:
        return self.error(
            ErrorCode.TOO_MANY_QUEUED_FRAMES, f"over {self.settings.max_queued_frames} messages waiting; dropped"
        )

    # ---------------------------------------------------------------- partial transcripts

    def _maybe_partial(self, rec: Recording) -> None:
        if self.partial is not None and not self.partial.done():
            return  # STT is busy: skip this partial rather than queue behind it
        interval_bytes = int(self.settings.partial_interval_s * 2 * STT_SAMPLE_RATE)
        if rec.encoding == PCM_ENCODING:
            # Every interval, unless a prefill has the cores (the two would halve each other's
            # speed on two of them; with partials_stop_prefill the partial stops it); and at once
            # when speech has just stopped, prefill or not: that partial is likely the final
            # transcript, and its passages the final ones.
            # Periodic partials also wait while other sessions' answers are being served: on two
            # cores they slow those answers down, and the end-of-speech one is the one that counts.
            prefilling = rec.prefill is not None and not rec.prefill.done()
            others = self.runner.admission.running > self.settings.speculate_max_turns
            ended = self.settings.reuse_partial and rec.levels.speech_ended(
                rec.partial_at, self.settings.end_of_speech_s
            )
            waits = prefilling and not self.settings.partials_stop_prefill
            due = ended or (len(rec.data) - rec.partial_at >= interval_bytes and not waits and not others)
            stops = (ended and self.settings.end_of_speech_stops_prefill) or self.settings.partials_stop_prefill
        else:
            due = time.perf_counter() - rec.began >= self.settings.partial_interval_s * (rec.partial_at + 1)
        if not due:
            return
        if rec.encoding == PCM_ENCODING and prefilling and stops:
            # The newer transcript goes first. Stopping a prefill loses almost nothing: what it
            # evaluated stays in the engine, and the next one (same passages or not) starts from there.
            rec.prefill.cancel()  # type: ignore[union-attr]
        rec.partial_at = len(rec.data) if rec.encoding == PCM_ENCODING else rec.partial_at + 1
        self.partial = asyncio.create_task(self._partial(rec, bytes(rec.data)))

    async def _partial(self, rec: Recording, audio: bytes) -> PartialTranscript | None:
        began = time.perf_counter()
        try:
            text = await self.runner.services.stt.transcribe(audio, rec.encoding, f"{rec.id}-partial")
        except ServiceError:
            return None  # an incomplete container may not decode yet; the final transcript will
        ended = time.perf_counter()
        rec.spans.append(Span("partial_stt", began - rec.began, ended - rec.began))
        self.metrics.stage_seconds.labels("partial_stt").observe(ended - began)
        heard = PartialTranscript(text, len(audio))
        rec.heard = heard
        if self.recording is rec and text:
            await self.send_event(event(EventType.TRANSCRIPT, text=text, final=False))
            if self.settings.speculate:
                await self._speculate(rec, text)
        return heard

    async def _speculate(self, rec: Recording, text: str) -> None:
        """Retrieve for the partial transcript; when its passages differ from what the last
        prefill holds, prefill them instead (survivors first, so their cache stays useful). Not
        while more than ``speculate_max_turns`` answers run: the cores are theirs then."""
        busy = self.runner.admission.running > self.settings.speculate_max_turns
        if len(text.split()) < self.settings.speculate_min_words or busy:
            return
        began = time.perf_counter()
        history = tuple(self.history)
        try:
            hits = await self.runner.services.retriever.retrieve(
                retrieval_query(history, text), self.settings.top_k, f"{rec.id}-speculate"
            )
        except ServiceError:
            return  # speculation is an optimisation: the final turn retrieves again
        rec.spans.append(Span("speculative_retrieval", began - rec.began, time.perf_counter() - rec.began))
        passages = prompt_passages(hits, text, self.settings.passage_words, self.settings.passage_margin)
        previous = rec.speculation
        if previous is not None:
            passages = stable_order(previous.passages, passages, text)
            running = rec.prefill is not None and not rec.prefill.done()
            if previous.holds(passages, history) and (previous.complete or running):
                return  # the cache holds (or is getting) exactly this prompt prefix
        if rec.prefill is not None and not rec.prefill.done():
            rec.prefill.cancel()  # what it evaluated stays in the engine for the shared prefix
        if self.recording is not rec:
            return
        rec.speculation = Speculation(passages, history)
        rec.prefill = self._prefill = asyncio.create_task(self._prefill_prompt(rec, text, rec.speculation))

    async def _prefill_prompt(self, rec: Recording, text: str, spec: Speculation) -> None:
        began = time.perf_counter()
        try:
            await self.runner.services.answerer.prefill(
                text, spec.passages, list(spec.history), f"{rec.id}-prefill", self.session_id
            )
            spec.complete = True
        except ServiceError as exc:
            log.info("speculative prefill failed: %s", exc, extra={"session": self.session_id})
            return
        finally:
            ended = time.perf_counter()
            rec.spans.append(Span("prefill", began - rec.began, ended - rec.began))
        self.metrics.stage_seconds.labels("prefill").observe(ended - began)

    async def _reusable_transcript(
        self, rec: Recording, pending: asyncio.Task[PartialTranscript | None] | None
    ) -> str | None:
        """The last partial transcript when only silence came after the audio it heard: the
        running one (awaited) or the last finished one; None when the final STT must run."""
        if pending is not None and not pending.done() and rec.levels.silent_after(rec.partial_at):
            heard = await pending
            if heard is not None and heard.text:
                return heard.text
        elif pending is not None and not pending.done():
            pending.cancel()  # its result is moot: the final transcript goes first
        heard = rec.heard
        if heard is not None and heard.text and rec.levels.silent_after(heard.covered):
            return heard.text
        return None

    # ---------------------------------------------------------------- turns

    async def _stop(self) -> None:
        rec, self.recording = self.recording, None
        if rec is None:
            await self.error(ErrorCode.NO_RECORDING, "'stop' without a 'start'")
            return
        if not rec.data:
            await self.error(ErrorCode.EMPTY_AUDIO, "no audio was received between start and stop")
            return
        spoken = Spoken(started=rec.began, cache_key=self.session_id, spans=rec.spans)
        spoken.speculation, spoken.prefill = rec.speculation, rec.prefill
        if rec.encoding == PCM_ENCODING and self.settings.reuse_partial:
            pending = self.partial
            spoken.reuse = lambda: self._reusable_transcript(rec, pending)
        elif self.partial is not None and not self.partial.done():
            self.partial.cancel()  # its result is moot; the final transcript goes first
        self._start_turn(audio=bytes(rec.data), encoding=rec.encoding, spoken=spoken)

    def _start_turn(self, **kwargs: Any) -> None:
        turn_id = uuid.uuid4().hex[:12]
        self._turn_live = True
        self.turn = asyncio.create_task(
            self.runner.run(
                self._turn_event, self._turn_audio, self.history, began=time.perf_counter(), turn_id=turn_id, **kwargs
            ),
            name=f"turn-{turn_id}",
        )

    async def _cancel_turn(self, always_announce: bool = False) -> None:
        """Stop the running turn (its Triton streams are cancelled with it), then say so."""
        task, self.turn = self.turn, None
        running = task is not None and not task.done()
        self._turn_live = False  # from here on nothing of that turn reaches the client
        if task is not None and running:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, CANCEL_GRACE_S)
        if running or always_announce:
            await self.send_event(event(EventType.CANCELLED))

    def drop_recording(self) -> None:
        """Forget the recording in progress (the client cleared it); a running answer goes on."""
        self.recording = None
        self._stop_prefill()

    async def cancel_turn(self) -> None:
        await self._cancel_turn()

    def busy(self) -> bool:
        """An answer of this session is running."""
        return self.turn is not None and not self.turn.done()

    def _stop_prefill(self) -> None:
        if self._prefill is not None and not self._prefill.done():
            self._prefill.cancel()

    async def close(self) -> None:
        self._turn_live = False
        for task in (self.turn, self.partial, self._prefill):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, CANCEL_GRACE_S)


def sse_audio(header: dict[str, Any], pcm: bytes) -> dict[str, Any]:
    """The audio event for Server-Sent Events, where no binary frame can follow: base64 inline."""
    return {**header, "data": base64.b64encode(pcm).decode("ascii")}


async def turn_stream(
    runner: TurnRunner, history: deque[str], *, text: str, speak: bool, sampling: str | None = None
) -> AsyncGenerator[dict[str, Any], None]:
    """One typed turn's events as an async iterator (REST streams); closing it early cancels
    the turn and its Triton streams."""
    events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=1024)

    async def send_event(payload: dict[str, Any]) -> None:
        await events.put(payload)

    async def send_audio(header: dict[str, Any], pcm: bytes) -> None:
        await events.put(sse_audio(header, pcm))

    async def produce() -> None:
        try:
            await runner.run(send_event, send_audio, history, text=text, speak=speak, sampling=sampling)
        finally:
            # Never wait here: a cancelled turn whose reader is gone must end.
            with contextlib.suppress(asyncio.QueueFull):
                events.put_nowait(None)

    task = asyncio.create_task(produce())
    try:
        while not (task.done() and events.empty()):
            item = await events.get()
            if item is None:
                break
            yield item
    finally:
        if not task.done():  # the client went away: stop the turn and its Triton streams
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
