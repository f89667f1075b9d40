"""Sentence embeddings (all-MiniLM-L6-v2, 384-d, L2-normalized) with sentence-transformers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract import EMBEDDING_DIM


@dataclass(frozen=True)
class EmbedderSettings:
    threads: int = 1
    batch_size: int = 32
    device: str = "cpu"


class SentenceEmbedder:
    """Encodes texts to unit vectors; cosine similarity is then an inner product."""

    def __init__(self, model_dir: Path, settings: EmbedderSettings) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if not Path(model_dir).is_dir():
            raise FileNotFoundError(f"embedding model directory not found: {model_dir}")
        if settings.device == "cpu":
            torch.set_num_threads(settings.threads)
        self._model = SentenceTransformer(str(model_dir), device=settings.device, local_files_only=True)
        self.settings = settings
        dim = self._model.get_embedding_dimension()
        if dim != EMBEDDING_DIM:
            raise ValueError(f"embedding model gives {dim}-d vectors; the contract says {EMBEDDING_DIM}")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.settings.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
