"""Triton adapter: float32 PCM -> transcript and segments (faster-whisper)."""

import json
import time
from pathlib import Path

import triton_python_backend_utils as pb_utils

from voicebot import contract as c
from voicebot.engines.audio import validate_pcm
from voicebot.engines.stt import WhisperEngine, WhisperSettings
from voicebot.serving import metrics
from voicebot.serving.config import ConfigError, param, positive, read_sidecar, to_dataclass
from voicebot.serving.triton_io import bytes_tensor, input_array, input_text, respond_each
from voicebot.weights import WeightsNotFound, whisper_model_dir


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        model_dir = Path(args["model_repository"]) / args["model_version"]
        try:
            self.max_seconds = positive(c.WHISPER_STT.name, "max_seconds", param(config, "max_seconds", 60.0))
            settings = to_dataclass(WhisperSettings, read_sidecar(model_dir), f"{c.WHISPER_STT.name} model.json")
            self.engine = WhisperEngine(whisper_model_dir(settings.model), settings)
        except (ConfigError, WeightsNotFound, FileNotFoundError) as exc:
            raise pb_utils.TritonModelException(f"{c.WHISPER_STT.name}: {exc}") from None
        self.rtf = metrics.histogram(
            metrics.STT_RTF, "Whisper seconds of compute per second of audio", args, metrics.RTF_BUCKETS
        )

    def execute(self, requests):
        return respond_each(requests, self._transcribe, pb_utils.Logger.log_error)

    def _transcribe(self, request):
        audio = validate_pcm(input_array(request, c.AUDIO), self.max_seconds)
        language = input_text(request, c.LANGUAGE, max_chars=8, required=False)
        prompt = input_text(request, c.PROMPT, max_chars=c.MAX_STT_PROMPT_CHARS, required=False, allow_empty=True)
        began = time.perf_counter()
        result = self.engine.transcribe(audio, language, prompt)
        self.rtf.observe((time.perf_counter() - began) / max(result.audio_seconds, 1e-3))
        return [bytes_tensor(c.TRANSCRIPT, [result.text]), bytes_tensor(c.SEGMENTS, [result.segments_json()])]
