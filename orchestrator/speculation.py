"""Work done while the user is still speaking: speculative retrieval and prefill, and the
final transcript taken from the last partial when nothing but silence came after it.

On each partial transcript the session retrieves and, when the passages changed, asks the LLM
to prefill the prompt up to the question (instruction, passages, history: every prompt format
puts the question last) under the session's cache key. At release the final retrieval decides
what the answer may use; passages that the prefill already holds keep their place at the front
(:func:`stable_order`), so the answer's prompt shares the longest possible prefix with it and the
engine evaluates only the rest. :class:`Outcome` says how much was reused.

Pure logic (no Triton, no asyncio) so that it is tested on its own; ``session.py`` drives it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from rag_index import SearchHit
from voicebot.contract import STT_SAMPLE_RATE
from voicebot.text import question_words_in, trim_passage

FRAME_SAMPLES = STT_SAMPLE_RATE // 50  # 20 ms
# A frame is silence when it is this far below the recording's speech level (the 95th
# percentile of frame energy), or below an absolute floor (-70 dBFS) for digital silence.
SILENCE_RATIO = 0.05
SILENCE_FLOOR = 10 ** (-70 / 20)


class Outcome(enum.StrEnum):
    """How much of the answer's prompt a speculative prefill had ready."""

    HIT = "hit"  # every passage and the history: once the prefill is done, only the question is left
    PARTIAL = "partial"  # the first passage(s): the rest of the prompt is evaluated at release
    MISS = "miss"  # nothing beyond the fixed instruction
    NONE = "none"  # nothing was speculated (a typed turn, or too short a recording)


def retrieval_query(history: Sequence[str], text: str) -> str:
    """A follow-up ("and the other one?") is retrieved together with the question before it."""
    return f"{history[-1]} {text}" if history else text


def near_the_best(hits: Sequence[SearchHit], margin: float) -> list[SearchHit]:
    """The hits whose similarity is at most ``margin`` below the best one's (the first hit is
    always kept; ``margin`` 0 keeps them all). A chunk far below the best is seldom the answer
    and costs prompt tokens, the larger part of the time to first token on a CPU."""
    if margin <= 0 or not hits:
        return list(hits)
    best = max(h.score for h in hits)
    return [h for n, h in enumerate(hits) if n == 0 or h.score >= best - margin]


def prompt_passages(hits: Sequence[SearchHit], question: str, words: int, margin: float = 0.0) -> list[SearchHit]:
    """The hits as the prompt has them: those :func:`near_the_best`, each chunk trimmed to the
    sentences nearest the question (the citations show exactly these, the passages the model saw)."""
    return [replace(h, text=trim_passage(question, h.text, words)) for h in near_the_best(hits, margin)]


def reuse_excerpts(prefilled: Sequence[SearchHit], current: Sequence[SearchHit], question: str) -> list[SearchHit]:
    """``current`` with each chunk that the prefill also holds given the prefill's excerpt of it,
    when that excerpt holds every word of ``question`` that ``current``'s does. A chunk is trimmed
    to the sentences nearest the question, so the partial "what port does the" and the final
    "what port does the printer use" can cut the same chunk differently; the prefilled cut then
    still shows the final question all it would have seen, and the prompt keeps its cached prefix."""
    held = {(h.document_id, h.chunk_id): h.text for h in prefilled}
    out = []
    for h in current:
        old = held.get((h.document_id, h.chunk_id))
        if (
            old is not None
            and old != h.text
            and question_words_in(question, old) >= question_words_in(question, h.text)
        ):
            h = replace(h, text=old)
        out.append(h)
    return out


def _key(hit: SearchHit) -> tuple[str, int, str]:
    return (hit.document_id, hit.chunk_id, hit.text)


def stable_order(
    prefilled: Sequence[SearchHit], current: Sequence[SearchHit], question: str, reuse: bool = True
) -> list[SearchHit]:
    """``current``'s passages with those the prefill holds first, in the prefill's order, and
    the new ones after them in rank order: the prompt then shares the longest prefix with what
    the engine has cached. The set of chunks is always ``current``'s: nothing the final retrieval
    dropped reaches the prompt; a chunk keeps the prefill's excerpt when :func:`reuse_excerpts`
    says it shows ``question`` as much (``reuse=False``: never, for measuring what that gains)."""
    if reuse:
        current = reuse_excerpts(prefilled, current, question)
    wanted = {_key(h) for h in current}
    kept = [h for h in prefilled if _key(h) in wanted]
    seen = {_key(h) for h in kept}
    return kept + [h for h in current if _key(h) not in seen]


def shared_passages(prefilled: Sequence[SearchHit], final: Sequence[SearchHit]) -> int:
    """How many leading passages two prompts have in common."""
    n = 0
    for a, b in zip(prefilled, final, strict=False):
        if _key(a) != _key(b):
            break
        n += 1
    return n


@dataclass
class Span:
    """One piece of work on a turn's timeline, in seconds from the start of the recording."""

    stage: str
    start: float
    end: float

    def as_ms(self) -> dict[str, object]:
        return {"stage": self.stage, "start_ms": round(self.start * 1000), "end_ms": round(self.end * 1000)}


@dataclass
class Speculation:
    """What a recording prefilled: the passages in prompt order and the history it assumed."""

    passages: list[SearchHit]
    history: tuple[str, ...]
    # Its prefill call returned (cancelled ones do not; one that gave way to another session's answer
    # does, early). What a stopped one evaluated stays in the engine either way.
    complete: bool = False

    def outcome(self, final: Sequence[SearchHit], history: Sequence[str]) -> tuple[Outcome, int]:
        """How much the answer's prompt (``final`` in prompt order) shares with this prefill,
        and the number of passages it shares."""
        shared = shared_passages(self.passages, final)
        if self.holds(final, history):
            return Outcome.HIT, shared
        return (Outcome.PARTIAL if shared else Outcome.MISS), shared

    def holds(self, passages: Sequence[SearchHit], history: Sequence[str]) -> bool:
        """Whether this prefill is for exactly these passages and history (finished or not)."""
        return (
            shared_passages(self.passages, passages) == len(self.passages) == len(passages)
            and tuple(history) == self.history
        )


@dataclass
class PartialTranscript:
    """A partial transcript and how much of the recording (in bytes) it heard."""

    text: str
    covered: int


def frame_levels(pcm: bytes | bytearray) -> np.ndarray:
    """RMS level of each whole 20 ms frame of 16-bit PCM, in full-scale units (0..1)."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    frames = len(samples) // FRAME_SAMPLES
    blocks = samples[: frames * FRAME_SAMPLES].reshape(frames, FRAME_SAMPLES)
    return np.sqrt(np.mean(blocks * blocks, axis=1)) if frames else np.zeros(0, dtype=np.float32)


FRAME_BYTES = 2 * FRAME_SAMPLES


@dataclass
class Levels:
    """A recording's frame levels, kept up to date as its audio arrives, and what they say
    about silence: a frame is silent below :data:`SILENCE_RATIO` of the recording's speech
    level (its 95th percentile frame) or below :data:`SILENCE_FLOOR`."""

    values: list[float] = field(default_factory=list)

    def update(self, pcm: bytes | bytearray) -> None:
        """Add the frames of ``pcm`` (the whole recording so far) not measured yet."""
        done = len(self.values) * FRAME_BYTES
        whole = len(pcm) // FRAME_BYTES * FRAME_BYTES
        if whole > done:
            self.values.extend(frame_levels(pcm[done:whole]).tolist())

    def _threshold(self) -> float:
        if not self.values:
            return SILENCE_FLOOR
        return max(float(np.percentile(self.values, 95)) * SILENCE_RATIO, SILENCE_FLOOR)

    def silent_after(self, offset: int) -> bool:
        """Every measured frame from byte ``offset`` on is silence (true when there is none)."""
        tail = self.values[offset // FRAME_BYTES :]
        threshold = self._threshold()
        return all(level < threshold for level in tail)

    def speech_ended(self, since: int, quiet_s: float) -> bool:
        """There was speech after byte ``since`` and the last ``quiet_s`` are silence."""
        quiet = max(1, round(quiet_s * 50))
        start = since // FRAME_BYTES
        if len(self.values) - start <= quiet:
            return False
        threshold = self._threshold()
        recent, before = self.values[-quiet:], self.values[start:-quiet]
        return all(v < threshold for v in recent) and any(v >= threshold for v in before)
