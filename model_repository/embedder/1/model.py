"""Triton adapter: texts -> unit-length sentence embeddings."""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from voicebot import contract as c
from voicebot.engines.embed import EmbedderSettings, SentenceEmbedder
from voicebot.serving.config import ConfigError, param, read_sidecar, to_dataclass
from voicebot.serving.triton_io import RequestError, input_array, respond_each
from voicebot.weights import WeightsNotFound, minilm_dir


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        try:
            self.max_texts = param(config, "max_texts", 256)
            self.max_chars = param(config, "max_chars", 8000)
            settings = to_dataclass(
                EmbedderSettings,
                read_sidecar(Path(args["model_repository"]) / args["model_version"]),
                "embedder model.json",
            )
            self.engine = SentenceEmbedder(minilm_dir(), settings)
        except (ConfigError, WeightsNotFound, FileNotFoundError, ValueError) as exc:
            raise pb_utils.TritonModelException(f"embedder: {exc}") from None

    def execute(self, requests):
        return respond_each(requests, self._embed, pb_utils.Logger.log_error)

    def _embed(self, request):
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
        return [pb_utils.Tensor(c.EMBEDDING, self.engine.encode(texts))]
