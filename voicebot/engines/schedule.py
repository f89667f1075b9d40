"""Who gets the next LLM step: earliest deadline first, where the deadline is when a listener runs out.

Several answers share one engine (llama.cpp on two cores). Running them one after another makes the
second listener wait for the first one's whole answer, although speech plays far slower than the
model writes it. So each request holds a :class:`Ticket` that says when its listener needs more
text, and every step (a chunk of prompt or one decoded token) goes to the ticket whose deadline
comes first:

* Until its first clause is written a request is due ``first_clause_s`` after it arrived: a new
  question is served before answers whose listeners still have seconds of audio queued.
* After that, its listener hears ``chars / pace_cps`` seconds of speech from the moment the first
  clause was done; the request is due ``margin_s`` before that audio runs out (the margin is for
  synthesizing the next clause).
* A speculative prefill (work for a question still being spoken) is due ``idle_slack_s`` from now:
  it runs only while every answer has more slack than that.

The engine does not know what the client has played; it estimates from the text and the time,
which over-estimates what is queued only if playback started late. ``pace_cps`` comes from the
caller (``voice_answer`` says how fast its voice speaks) or a default for readers.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..contract import READING_PACE_CPS
from ..text import FIRST_CLAUSE_WORDS, ClauseSplitter

Clock = Callable[[], float]

FIRST_CLAUSE_S = 0.5
MARGIN_S = 0.5
IDLE_SLACK_S = 1.5
# Tokens one request may decode in one step while others wait that are not yet overdue: switching
# contexts every token cost 28% of decode throughput (two answers at once, Gemma-3-270M).
QUANTUM = 8


@dataclass(eq=False)
class Ticket:
    """One request's claim on the engine: its arrival, the listener's pace and the text so far."""

    arrival: float
    pace_cps: float = READING_PACE_CPS
    speculative: bool = False  # a prefill for a question still being spoken
    text: str = ""
    first_clause_at: float | None = None  # when the first clause was complete
    order: int = field(default_factory=itertools.count().__next__)

    def wrote(self, delta: str, now: float) -> None:
        """Account for generated text."""
        self.text += delta
        if self.first_clause_at is None and first_clause_done(self.text):
            self.first_clause_at = now

    def deadline(self, now: float, first_clause_s: float = FIRST_CLAUSE_S, margin_s: float = MARGIN_S) -> float:
        if self.speculative:
            return now + IDLE_SLACK_S
        if self.first_clause_at is None:
            return self.arrival + first_clause_s
        return self.first_clause_at + len(self.text) / self.pace_cps - margin_s


def first_clause_done(text: str) -> bool:
    """Whether ``text`` holds a clause the pipeline would speak already (its own splitter's rule)."""
    return bool(ClauseSplitter(first_max_words=FIRST_CLAUSE_WORDS).feed(text + " "))


def choose(tickets: Iterable[Ticket], now: float) -> Ticket | None:
    """The ticket that gets the next step: earliest deadline, then first come."""
    return min(tickets, key=lambda t: (t.deadline(now), t.arrival, t.order), default=None)


class StepScheduler:
    """Hands out steps one at a time to the threads that ask, by :func:`choose`.

    A thread calls :meth:`step` around each unit of work. The step ends with the choice of the
    next holder among the tickets then waiting, so each decision is made once, under the lock.
    ``decisions`` keeps the last choices (for tests and benchmarks)."""

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self.clock = clock
        self._cond = threading.Condition()
        self._waiting: set[Ticket] = set()
        self._holder: Ticket | None = None  # running a step, or granted the next one
        self._last: Ticket | None = None  # who ran the last step
        self.steps = 0
        self.switches = 0

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def acquire(self, ticket: Ticket, cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Wait for ``ticket``'s turn; False (without the turn) when ``cancelled()`` turns true."""
        with self._cond:
            if self._holder is None and not self._waiting:
                self._holder = ticket
                return True
            self._waiting.add(ticket)
            if self._holder is None:
                self._grant()
            try:
                while self._holder is not ticket:
                    if cancelled():
                        self._waiting.discard(ticket)
                        return False
                    self._cond.wait(0.05)
            except BaseException:  # a failed cancellation check: never leave a turn nobody takes
                self._waiting.discard(ticket)
                if self._holder is ticket:
                    self._holder = None
                    self._grant()
                raise
            return True

    @contextlib.contextmanager
    def step(self, ticket: Ticket, cancelled: Callable[[], bool] = lambda: False) -> Iterator[bool]:
        """One step for ``ticket``: yields whether it got the turn (False: cancelled while waiting)."""
        granted = self.acquire(ticket, cancelled)
        try:
            yield granted
        finally:
            if granted:
                self.release(ticket)

    def release(self, ticket: Ticket) -> None:
        with self._cond:
            if self._holder is ticket:
                self.steps += 1
                if ticket is not self._last:
                    self._last = ticket
                    self.switches += 1
                self._holder = None
                self._grant()

    def _grant(self) -> None:
        now = self.clock()
        chosen = choose(self._waiting, now)
        if chosen is None:
            return
        self._waiting.discard(chosen)
        self._holder = chosen
        self._cond.notify_all()

    def batch_more(self) -> bool:
        """Whether the holder should take another token in the same step: yes while others wait
        and none of them is overdue (a switch costs), no when nobody waits (nothing to save) or
        someone is due now."""
        with self._cond:
            now = self.clock()
            return bool(self._waiting) and all(t.deadline(now) > now for t in self._waiting)
