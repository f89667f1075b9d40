"""Embedding backends for the index: Triton's ``embedder`` model, or in-process for offline builds."""

from __future__ import annotations

import numpy as np

from voicebot import contract as c


class TritonEmbedder:
    """Calls the ``embedder`` model over Triton's HTTP API."""

    def __init__(self, url: str = "127.0.0.1:8000", timeout: float = 60.0) -> None:
        import tritonclient.http as httpclient

        self._http = httpclient
        self._client = httpclient.InferenceServerClient(url, network_timeout=timeout, connection_timeout=5)
        self.url = url

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_model_ready(c.EMBEDDER.name))
        except Exception:
            return False

    def close(self) -> None:
        self._client.close()

    def embed(self, texts: list[str]) -> np.ndarray:
        data = np.array([[t.encode("utf-8") for t in texts]], dtype=np.object_)  # [1, N]: one request
        tensor = self._http.InferInput(c.TEXT, list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data)
        result = self._client.infer(c.EMBEDDER.name, [tensor])
        return np.asarray(result.as_numpy(c.EMBEDDING)[0], dtype=np.float32)


class LocalEmbedder:
    """The same MiniLM model in this process (no server needed)."""

    def __init__(self, threads: int = 2) -> None:
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
