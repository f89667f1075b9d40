"""Admission control: at most ``capacity`` turns run at once, a bounded queue waits in order.

Past capacity a turn is told at once that it waits (a ``busy`` event: its place in the queue and
an estimate of the wait) instead of hearing nothing for many seconds while two cores share more
work than they can finish; past the queue's bound it gets ``overloaded`` with a retry hint. The
estimate is the queue position times the recent turn duration (a moving average of turns that
finished normally), divided by the turns that run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from .metrics import Metrics

OnBusy = Callable[[int, float], Awaitable[None]]  # (1-based queue position, estimated wait in s)

INITIAL_TURN_S = 3.0  # the moving average's start, before any turn finished
SMOOTHING = 0.2


class Overloaded(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"the server is at capacity; retry in about {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class Admission:
    def __init__(
        self, capacity: int, max_queue: int, metrics: Metrics | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity, self.max_queue = capacity, max_queue
        self.metrics, self.clock = metrics, clock
        self.running = 0
        self._queue: deque[asyncio.Future[None]] = deque()
        self.turn_s = INITIAL_TURN_S

    @property
    def queued(self) -> int:
        return len(self._queue)

    def estimate_s(self, position: int) -> float:
        return position * self.turn_s / self.capacity

    def _gauges(self) -> None:
        if self.metrics is not None:
            self.metrics.turns_running.set(self.running)
            self.metrics.turn_queue.set(len(self._queue))

    @contextlib.asynccontextmanager
    async def turn(self, on_busy: OnBusy) -> AsyncIterator[float]:
        """Hold a slot for one turn; yields the seconds it waited for it. Raises
        :class:`Overloaded` when the queue is full (nothing is held then)."""
        began = self.clock()
        if self.running < self.capacity and not self._queue:
            self.running += 1
        elif len(self._queue) >= self.max_queue:
            if self.metrics is not None:
                self.metrics.turns_rejected.inc()
            raise Overloaded(self.estimate_s(len(self._queue) + 1))
        else:
            granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._queue.append(granted)
            self._gauges()
            if self.metrics is not None:
                self.metrics.turns_queued.inc()
            try:
                position = len(self._queue)
                await on_busy(position, self.estimate_s(position))
                await granted  # the slot passes from a finished turn to this one
            except BaseException:
                if granted.done() and not granted.cancelled():
                    self._release()  # it was ours already: hand it on
                else:
                    granted.cancel()
                    with contextlib.suppress(ValueError):
                        self._queue.remove(granted)
                self._gauges()
                raise
        self._gauges()
        started = self.clock()
        try:
            yield started - began
        except BaseException:
            raise  # a failed, timed-out or cancelled turn says nothing about how long turns take
        else:
            self.turn_s += SMOOTHING * ((self.clock() - started) - self.turn_s)
        finally:
            self._release()
            self._gauges()

    def _release(self) -> None:
        while self._queue:
            nxt = self._queue.popleft()
            if not nxt.done():
                nxt.set_result(None)  # the slot stays taken, by the next turn
                return
        self.running -= 1
