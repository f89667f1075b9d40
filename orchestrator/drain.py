"""Graceful drain: what a replica does between SIGTERM and its exit.

A load balancer (Kubernetes, a proxy) sends SIGTERM and stops routing to a replica whose
readiness fails. The first SIGTERM (or Ctrl-C) here starts a drain instead of uvicorn's
immediate shutdown, which would cut every WebSocket with 1012 mid-answer:

- ``/readyz`` answers 503 with ``"draining": true``: no new traffic is routed here;
- a new WebSocket is accepted and closed at once with 1012 ("service restart": the client
  reconnects, to another replica); a new chat or OpenAI request gets 503 with Retry-After;
- an open conversation is closed with 1012 as soon as no answer of it is running: a
  running turn finishes and is heard to its end;
- after ``drain_timeout_s`` whatever is left is closed, and uvicorn shuts down as usual.

A second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from starlette.websockets import WebSocket

log = logging.getLogger("voicebot.orchestrator")

WS_SERVICE_RESTART = 1012
DRAIN_REASON = "server restarting; reconnect"
POLL_S = 0.05


class Drain:
    """The open WebSockets of this process, and whether it is draining."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.started = False
        self._open: dict[WebSocket, Callable[[], bool]] = {}

    def begin(self) -> None:
        """Mark the drain started (safe from a signal handler); :meth:`run` does the work."""
        self.started = True

    @contextlib.contextmanager
    def track(self, ws: WebSocket, busy: Callable[[], bool]) -> Iterator[None]:
        """``ws`` is open while in this block; ``busy()`` says whether an answer of it runs."""
        self._open[ws] = busy
        try:
            yield
        finally:
            self._open.pop(ws, None)

    @property
    def open_sessions(self) -> int:
        return len(self._open)

    async def run(self) -> None:
        """Close each conversation once it is idle; give up waiting after ``timeout_s``."""
        self.begin()
        deadline = time.monotonic() + self.timeout_s
        log.info("draining: %d open sessions", len(self._open), extra={"event": "drain"})
        closing: set[asyncio.Task[Any]] = set()
        while self._open and time.monotonic() < deadline:
            for ws, busy in list(self._open.items()):
                if not busy():
                    self._open.pop(ws, None)
                    closing.add(asyncio.create_task(_close(ws)))
            await asyncio.sleep(POLL_S)
        if closing:
            await asyncio.wait(closing, timeout=5)
        left = len(self._open)
        for ws in list(self._open):
            await _close(ws)
        log.info("drained (%d sessions were still answering)", left, extra={"event": "drain"})


async def _close(ws: WebSocket) -> None:
    with contextlib.suppress(Exception):  # the client may be gone already
        await ws.close(WS_SERVICE_RESTART, DRAIN_REASON)
