"""Triton adapter: encoded audio bytes -> 16 kHz mono float32 PCM."""

import json

import triton_python_backend_utils as pb_utils

from voicebot import contract as c
from voicebot.engines.audio import decode_audio_bytes
from voicebot.serving.config import ConfigError, param, positive
from voicebot.serving.triton_io import input_bytes, respond_each


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        try:
            self.max_seconds = positive(c.AUDIO_DECODE.name, "max_seconds", param(config, "max_seconds", 60.0))
        except ConfigError as exc:
            raise pb_utils.TritonModelException(str(exc)) from None

    def execute(self, requests):
        return respond_each(requests, self._decode, pb_utils.Logger.log_error)

    def _decode(self, request):
        audio = decode_audio_bytes(input_bytes(request, c.AUDIO_BYTES), self.max_seconds)
        return [pb_utils.Tensor(c.AUDIO, audio)]
