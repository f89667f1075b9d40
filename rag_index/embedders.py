"""Embedding backends for the index: Triton's ``embedder`` model, or in-process for offline builds."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from voicebot import contract as c
from voicebot.access import authorize


class TritonEmbedder:
    """Calls the ``embedder`` model over Triton's HTTP API, from any thread.

    tritonclient's HTTP client runs on gevent, whose sockets belong to the thread that made
    them: used from another thread it fails ("Cannot switch to a different thread") or hangs.
    The orchestrator ingests on asyncio's worker threads, so each thread gets its own client.
    """

    def __init__(self, url: str = "127.0.0.1:8000", timeout: float = 60.0, api_token: str | None = None) -> None:
        import tritonclient.http as httpclient

        self._http = httpclient
        self.url = url
        self.api_token = api_token
        self.timeout = timeout
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()

    @property
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._http.InferenceServerClient(self.url, network_timeout=self.timeout, connection_timeout=5)
            authorize(client, self.api_token, "http")
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_model_ready(c.EMBEDDER.name))
        except Exception:
            return False

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def embed(self, texts: list[str]) -> np.ndarray:
        result = self._client.infer(c.EMBEDDER.name, c.EMBEDDER.infer_inputs(self._http, {c.TEXT: texts}))
        return np.asarray(result.as_numpy(c.EMBEDDING)[0], dtype=np.float32)


def _check_no_shadowed_triton() -> None:
    """torch (through transformers) imports the GPU compiler package ``triton`` when it finds
    one; with the project root on sys.path (``python -m`` from the checkout) the top-level
    ``triton/`` folder passes for it and the import fails deep inside transformers."""
    import importlib.util

    spec = importlib.util.find_spec("triton")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    checkout = Path(__file__).resolve().parents[1] / "triton"
    if spec is not None and spec.origin is None and any(Path(p).resolve() == checkout for p in locations):
        raise RuntimeError(
            "the checkout's triton/ folder shadows the package torch imports: run the console script "
            "(.venv/bin/rag-index) or run from another directory instead of `python -m` in the project root"
        )


class LocalEmbedder:
    """The same MiniLM model in this process (no server needed)."""

    def __init__(self, threads: int = 2) -> None:
        _check_no_shadowed_triton()
        from voicebot.engines.embed import EmbedderSettings, SentenceEmbedder
        from voicebot.weights import minilm_dir

        self._engine = SentenceEmbedder(minilm_dir(), EmbedderSettings(threads=threads))

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._engine.encode(texts)


def make_embedder(kind: str, triton_url: str) -> TritonEmbedder | LocalEmbedder:
    """``triton``, ``local``, or ``auto`` (Triton when its embedder is ready, else local)."""
    if kind not in ("auto", "triton", "local"):
        raise ValueError(f"embedder must be auto, triton or local, got {kind!r}")
    if kind in ("auto", "triton"):
        remote = TritonEmbedder(triton_url)
        if remote.is_ready():
            return remote
        if kind == "triton":
            raise RuntimeError(f"Triton's embedder is not ready at {triton_url}; start it with `make run`")
    return LocalEmbedder()
