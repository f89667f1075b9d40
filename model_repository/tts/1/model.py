"""Triton adapter: text -> Piper speech, streamed clause by clause."""

import json
import threading
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from voicebot import contract as c
from voicebot.engines.tts import PiperEngine, PiperSettings
from voicebot.serving import metrics
from voicebot.serving.config import ConfigError, param, read_sidecar, to_dataclass
from voicebot.serving.triton_io import StreamWorkers, input_scalar, input_text
from voicebot.weights import WeightsNotFound, piper_voice


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        try:
            self.max_chars = param(config, "max_chars", 4000)
            settings = to_dataclass(
                PiperSettings, read_sidecar(Path(args["model_repository"]) / args["model_version"]), "tts model.json"
            )
            self.engine = PiperEngine(*piper_voice(), settings)
            max_in_flight = param(config, "max_in_flight", 16)
        except (ConfigError, WeightsNotFound, FileNotFoundError) as exc:
            raise pb_utils.TritonModelException(f"tts: {exc}") from None
        # One onnxruntime session, one synthesis at a time: two at once on 2 cores
        # only slow both (and the LLM beside them).
        self.lock = threading.Lock()
        self.first_audio = metrics.histogram(
            metrics.TTS_FIRST_AUDIO, "Time from request to first audio chunk", args, metrics.LATENCY_BUCKETS
        )
        self.workers = StreamWorkers(pb_utils.Logger.log_error, max_in_flight)

    def execute(self, requests):
        for request in requests:
            self.workers.submit(request, self._speak)
        return None

    def _speak(self, request, is_cancelled):
        began = time.perf_counter()
        text = input_text(request, c.TEXT, self.max_chars)
        speaker = input_scalar(request, c.SPEAKER, int)
        length_scale = input_scalar(request, c.LENGTH_SCALE, float)
        self.engine.check(speaker, length_scale)
        rate = pb_utils.Tensor(c.SAMPLE_RATE, np.array([self.engine.sample_rate], dtype=np.int32))
        first = True
        chunks = self.engine.synthesize(text, speaker, length_scale)
        while not is_cancelled():  # a cancelled request stops before its next clause
            with self.lock:
                samples = next(chunks, None)
            if samples is None:
                return
            if first:
                self.first_audio.observe(time.perf_counter() - began)
                first = False
            yield [pb_utils.Tensor(c.AUDIO, samples.astype(np.int16, copy=False)), rate]

    def finalize(self):
        self.workers.join()
