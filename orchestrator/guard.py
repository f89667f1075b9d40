"""The orchestrator's front door: which hosts, origins and request sizes it accepts.

A service bound to 127.0.0.1 is still reachable from every web page the user opens: a page
can POST a form to it (no CORS preflight for a simple request), and a DNS-rebinding page
can make its own name resolve to 127.0.0.1 and then read the answers. So, before any route
runs (:class:`EdgeGuard`, pure ASGI):

- the ``Host`` header must name this server (``localhost``, the bind address, or a name in
  ``VOICEBOT_ALLOWED_HOSTS``): a rebinding page sends its own name and is refused;
- a request that changes state (POST, PUT, PATCH, DELETE) from a browser must come from this
  origin or one in ``VOICEBOT_CORS_ORIGINS`` (``Origin``, else Fetch Metadata), the same rule
  the WebSocket follows;
- a body is bounded per route and must arrive within a deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from fastapi import HTTPException
from starlette.datastructures import Headers

from voicebot.contract import ErrorCode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class ApiError(HTTPException):
    """A REST error with an :class:`ErrorCode`; rendered as ``{"detail": ..., "code": ...}``."""

    def __init__(self, status_code: int, code: ErrorCode, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code, message, headers=headers)
        self.code = code


def error_body(code: ErrorCode, message: str) -> bytes:
    return json.dumps({"detail": message, "code": code.value}).encode()


def token_matches(presented: str | None, expected: str | None) -> bool:
    """Constant-time comparison that any presented text survives (non-ASCII included)."""
    if expected is None:
        return True
    if presented is None:
        return False
    return secrets.compare_digest(presented.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def bearer(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    return value[7:].strip() if value[:7].lower() == "bearer " else None


def host_name(host_header: str) -> str:
    """``Host`` without its port, lower-case: ``[::1]:8080`` → ``::1``, ``Example.org.`` → ``example.org``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


class HostPolicy:
    """Which ``Host`` names this server answers to."""

    def __init__(self, bind: str, configured: Iterable[str]) -> None:
        names = {host_name(h) for h in configured if h.strip()}
        self.any = "*" in names
        self.names = set(LOCAL_NAMES) | names
        self.ip_literals = False
        if bind not in WILDCARD_BINDS:
            self.names.add(host_name(bind))
        elif not names:
            # Bound to every interface with nothing configured: any address of this machine by IP
            # (a rebinding attack needs a DNS name), and the machine's own names.
            self.ip_literals = True
            self.names |= {socket.gethostname().lower(), socket.getfqdn().lower()}

    def allows(self, host_header: str | None) -> bool:
        if self.any:
            return True
        if not host_header:
            return False
        name = host_name(host_header)
        if name in self.names:
            return True
        if self.ip_literals:
            try:
                ipaddress.ip_address(name)
            except ValueError:
                return False
            return True
        return False


def same_origin(headers: Headers, allowed_origins: Iterable[str]) -> bool:
    """Whether a browser made this request from this server's own page (or an allowed origin).

    Non-browser clients send neither ``Origin`` nor ``Sec-Fetch-Site`` and pass."""
    origin = headers.get("origin")
    if origin is None:
        return headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    if origin in allowed_origins:
        return True
    scheme, sep, rest = origin.partition("://")
    return bool(sep) and scheme in ("http", "https") and rest.lower() == headers.get("host", "").lower()


class BodyLimits:
    """How many bytes a route's body may have, and how long it may take to arrive."""

    def __init__(self, default: int, per_route: dict[tuple[str, str], int], deadline_s: float) -> None:
        self.default = default
        self.per_route = per_route
        self.deadline_s = deadline_s

    def limit(self, method: str, path: str) -> int:
        return self.per_route.get((method, path), self.default)


class EdgeGuard:
    """ASGI middleware: Host allowlist, no cross-site writes, bounded request bodies."""

    def __init__(self, app: ASGIApp, hosts: HostPolicy, allowed_origins: Iterable[str], limits: BodyLimits) -> None:
        self.app = app
        self.hosts = hosts
        self.allowed_origins = frozenset(allowed_origins)
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not self.hosts.allows(headers.get("host")):
            if scope["type"] == "websocket":  # closed before accept: the handshake fails with 403
                await send({"type": "websocket.close", "code": 1008, "reason": "unknown Host"})
            else:
                await _reply(send, 421, ErrorCode.BAD_HOST, "this server does not answer to that Host name")
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)  # the route checks Origin and closes with its own code
            return
        # Refusals below come before the body is read; the server closes such a connection a few
        # seconds after its answer (orchestrator.server), once the client could read it.
        if scope["method"] not in SAFE_METHODS and not same_origin(headers, self.allowed_origins):
            message = "cross-origin requests may not change anything here"
            await _reply(send, 403, ErrorCode.CROSS_ORIGIN, message)
            return
        limit = self.limits.limit(scope["method"], scope["path"])
        declared = headers.get("content-length")
        if declared is not None and not (declared.isascii() and declared.isdecimal()):
            await _reply(send, 400, ErrorCode.BAD_REQUEST, "Content-Length is not a number")
            return
        if declared is not None and int(declared) > limit:
            await _reply(send, 413, ErrorCode.TOO_LARGE, f"request bodies here are limited to {limit} bytes")
            return
        await _serve_bounded(self.app, scope, receive, send, limit, self.limits.deadline_s)


async def _serve_bounded(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, limit: int, deadline_s: float
) -> None:
    """Run ``app`` on a body of at most ``limit`` bytes that arrives within ``deadline_s``.

    Past either bound the app is told the client left (``http.disconnect``: every body reader
    gives up on that), whatever it answers is dropped, and the client gets 413 or 408. An
    exception raised from ``receive`` instead would reach the route wrapped in other
    middleware's task groups, as a 500."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    seen = 0
    complete = False
    refusal: tuple[int, ErrorCode, str] | None = None
    started = False

    async def bounded_receive() -> Message:
        nonlocal seen, complete, refusal
        if refusal is not None:
            return {"type": "http.disconnect"}
        if complete:
            return await receive()  # the body is in: disconnect notices pass straight through
        try:
            message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
        except TimeoutError:
            refusal = (408, ErrorCode.TOO_SLOW, f"the request body did not arrive within {deadline_s:g} s")
            return {"type": "http.disconnect"}
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                refusal = (413, ErrorCode.TOO_LARGE, f"request bodies here are limited to {limit} bytes")
                return {"type": "http.disconnect"}
            complete = not message.get("more_body", False)
        return message

    async def guarded_send(message: Message) -> None:
        nonlocal started
        if refusal is not None:
            return  # the app's answer to a body it never got
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await app(scope, bounded_receive, guarded_send)
    except Exception:
        if refusal is None:
            raise
    if refusal is not None and not started:
        await _reply(send, *refusal)


async def _reply(send: Send, status: int, code: ErrorCode, message: str) -> None:
    body = error_body(code, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
