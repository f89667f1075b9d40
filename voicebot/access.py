"""Who may call Triton: the server's restricted-API flags and the clients' token header.

Triton's own switch (``--http-restricted-api`` / ``--grpc-restricted-protocol``
``<apis>:<key>=<value>``) refuses an API group unless the request carries the header
``<key>: <value>`` (gRPC: ``triton-grpc-protocol-<key>``). The launcher always puts the APIs
nothing here needs — loading models, registering shared memory, changing logging and
tracing — behind a random per-start key; and when ``VOICEBOT_API_TOKEN`` is set, inference,
metadata, model configs and statistics need a key derived from that token (:func:`triton_key`).
Health stays open (probes and readiness). Every client here — the orchestrator, the index's
embedder, ``voice_answer``'s calls to its own server — sends it through a tritonclient plugin,
so no call site spells the header.

Both values sit on tritonserver's command line, which any local user can read
(``/proc/<pid>/cmdline``) unless ``/proc`` is mounted with ``hidepid=2``. Hence the derived key:
the token itself, which also opens the orchestrator's API, never appears there.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import Any

TOKEN_ENV = "VOICEBOT_API_TOKEN"
TOKEN_KEY = "voicebot-token"
HTTP_TOKEN_HEADER = TOKEN_KEY
GRPC_TOKEN_HEADER = f"triton-grpc-protocol-{TOKEN_KEY}"
ADMIN_KEY = "voicebot-admin"
# Never needed by this system; closed to everyone but a holder of the per-start key.
ADMIN_APIS = ("model-repository", "shared-memory", "logging", "trace")
# What the orchestrator, perf_analyzer and genai-perf use; open without a token, else the token's.
CLIENT_APIS = ("inference", "metadata", "model-config", "statistics")
OPEN_APIS = ("health",)
MIN_TOKEN_CHARS = 8


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be used, or None. It goes into Triton's ``<apis>:<key>=<value>``
    flag text and into HTTP headers, so it keeps to characters that mean nothing in either."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"{TOKEN_ENV} must be at least {MIN_TOKEN_CHARS} characters"
    if not all(ch.isascii() and (ch.isalnum() or ch in "-._~+/") for ch in token):
        return f"{TOKEN_ENV} may hold only ASCII letters, digits and -._~+/"
    return None


def triton_key(token: str) -> str:
    """The value Triton checks for the client APIs: an HMAC of the token, not the token."""
    return hmac.new(token.encode(), b"voicebot: triton client APIs", hashlib.sha256).hexdigest()[:40]


def restriction_flags(token: str | None, admin_key: str | None = None) -> list[str]:
    """tritonserver flags: the admin APIs behind ``admin_key`` (random when not given), the
    client APIs behind ``token`` when one is set."""
    if token and (problem := token_problem(token)):
        raise ValueError(problem)
    admin_key = admin_key or secrets.token_urlsafe(24)
    groups = [(ADMIN_APIS, ADMIN_KEY, admin_key)]
    if token:
        groups.append((CLIENT_APIS, TOKEN_KEY, triton_key(token)))
    flags = []
    for apis, key, value in groups:
        spec = f"{','.join(apis)}:{key}={value}"
        flags += [f"--http-restricted-api={spec}", f"--grpc-restricted-protocol={spec}"]
    return flags


class _TokenHeader:
    """tritonclient plugin: adds the token header to every request of one client."""

    def __init__(self, header: str, token: str) -> None:
        self._header = header
        self._token = token

    def __call__(self, request: Any) -> None:
        request.headers[self._header] = self._token


def authorize(client: Any, token: str | None, protocol: str) -> Any:
    """Have a tritonclient client (``protocol`` "grpc" or "http") send the key for ``token``; returns it."""
    if token:
        header = GRPC_TOKEN_HEADER if protocol == "grpc" else HTTP_TOKEN_HEADER
        client.register_plugin(_TokenHeader(header, triton_key(token)))
    return client


def env_token() -> str | None:
    """The token as the launcher hands it to model processes (empty: none)."""
    return os.environ.get(TOKEN_ENV) or None
