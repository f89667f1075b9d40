"""Triton adapter: texts -> unit-length sentence embeddings, concurrent requests encoded together."""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from voicebot import contract as c
from voicebot.engines.embed import EmbedderSettings, SentenceEmbedder
from voicebot.serving.config import ConfigError, param, read_sidecar, to_dataclass
from voicebot.serving.triton_io import RequestError, error_response, input_array
from voicebot.weights import WeightsNotFound, minilm_dir


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        try:
            self.max_texts = param(config, "max_texts", 256)
            self.max_chars = param(config, "max_chars", 8000)
            sidecar = read_sidecar(Path(args["model_repository"]) / args["model_version"])
            settings = to_dataclass(EmbedderSettings, sidecar, "embedder model.json")
            self.engine = SentenceEmbedder(minilm_dir(), settings)
        except (ConfigError, WeightsNotFound, FileNotFoundError, ValueError) as exc:
            raise pb_utils.TritonModelException(f"embedder: {exc}") from None

    def execute(self, requests):
        # Validate each request alone (a bad one fails alone), then encode all good texts in one batch.
        texts_per_request = []
        for request in requests:
            try:
                texts_per_request.append(self._texts(request))
            except RequestError as exc:
                texts_per_request.append(exc)
        flat = [t for texts in texts_per_request if isinstance(texts, list) for t in texts]
        try:
            vectors = self.engine.encode(flat)
        except Exception as exc:
            pb_utils.Logger.log_error(f"embedder failed: {exc}")
            return [error_response(f"internal error: {exc}", "INTERNAL") for _ in requests]
        responses, offset = [], 0
        for texts in texts_per_request:
            if isinstance(texts, RequestError):
                responses.append(error_response(str(texts), texts.code))
                continue
            batch = vectors[offset : offset + len(texts)]
            offset += len(texts)
            # Wire shape [1, N, 384]: the leading 1 is the request's own batch dimension.
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(c.EMBEDDING, batch[np.newaxis, ...])]))
        return responses

    def _texts(self, request):
        raw = input_array(request, c.TEXT).reshape(-1)
        if raw.size == 0:
            raise RequestError("text holds no strings")
        if raw.size > self.max_texts:
            raise RequestError(f"at most {self.max_texts} texts per request, got {raw.size}")
        texts = []
        for n, item in enumerate(raw):
            try:
                text = item.decode("utf-8") if isinstance(item, bytes) else str(item)
            except UnicodeDecodeError:
                raise RequestError(f"text[{n}] is not valid UTF-8") from None
            if not text.strip():
                raise RequestError(f"text[{n}] is empty")
            if len(text) > self.max_chars:
                raise RequestError(f"text[{n}] is over {self.max_chars} characters")
            texts.append(text)
        return texts
