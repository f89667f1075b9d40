"""How uvicorn serves the app: one configuration for ``make run`` and the tests alike.

Bounds that live below the ASGI app: how long a client may take to send a request's
headers (uvicorn has no such timeout: a client dribbling one header byte at a time would
hold a connection forever), how many connections run at once, the largest WebSocket
message the protocol library reads before it closes the connection (1009), keep-alive and
ping timeouts.
"""

from __future__ import annotations

import asyncio
import signal
from types import FrameType
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .protocol import WS_MAX_MESSAGE_BYTES
from .settings import Settings

LINGER_S = 5.0  # how long an answered request's unread body may go on arriving


class HeadTimeoutH11Protocol(H11Protocol):
    """h11 with a deadline for each request's head, from connect or from the previous response."""

    head_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_response_complete(self) -> None:
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            # Answered before its body was read (401, 404, a refusal): uvicorn would go on
            # discarding whatever the client sends, at the client's pace. Let the rest arrive for
            # a few seconds (a client still sending could not read the answer otherwise), then close.
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(LINGER_S, self._close)
            self.flow.resume_reading()  # reading may have been paused while the body piled up
            return
        super().on_response_complete()
        self._arm_head_timer()

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._cancel_head_timer()  # the WebSocket protocol takes the connection over
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_expired)

    _head_timer: asyncio.TimerHandle | None = None

    def _cancel_head_timer(self) -> None:
        timer = self._head_timer
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        # Still waiting for (the rest of) a request head: drop the connection. A request being
        # served, a body being read (bounded by the app) or an upgraded WebSocket is left alone.
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration for ``app`` under ``settings`` (``overrides``: e.g. log_config)."""
    protocol = type("GuardedH11Protocol", (HeadTimeoutH11Protocol,), {"head_timeout_s": settings.header_timeout_s})
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": protocol,
        "ws": "websockets",
        "ws_max_size": WS_MAX_MESSAGE_BYTES,
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        "timeout_keep_alive": 5,
        "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": 16 * 1024,  # request line and headers
        "server_header": False,
        "log_config": None,
        # After the drain: streaming HTTP answers still running get this long too.
        "timeout_graceful_shutdown": max(settings.drain_timeout_s, 1.0),
        **overrides,
    }
    return uvicorn.Config(app, **options)


class DrainingServer(uvicorn.Server):
    """uvicorn whose first SIGTERM or SIGINT drains the app (``orchestrator/drain.py``) before
    the usual shutdown; a second one shuts down at once. The process then exits with 0 (the
    signal is not raised again after the shutdown, as plain uvicorn does), so whatever wraps
    it (the embedded Triton of ``make run``) stops in order too."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: Any = None  # the drain's concurrent.futures.Future, once started

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        drain = getattr(getattr(self.config.app, "state", None), "drain", None)
        if drain is None or drain.started or self._loop is None or self.should_exit:
            if sig in (signal.SIGINT, signal.SIGTERM) and self.should_exit:
                self.force_exit = True
            self.should_exit = True
            return
        drain.begin()  # from here on readiness fails and new sessions are turned away

        async def drain_then_exit() -> None:
            try:
                await drain.run()
            finally:
                self.should_exit = True

        self._draining = asyncio.run_coroutine_threadsafe(drain_then_exit(), self._loop)
