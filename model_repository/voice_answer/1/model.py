"""Triton adapter over the one answer pipeline (``voicebot/pipeline.py``): tensors in, streamed
text and (unless ``speak`` is false) audio out. ``llm`` and ``tts`` are called through this
server's own gRPC port (``voicebot/serving/loopback.py`` says why not BLS)."""

import json
import time
import uuid
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from voicebot import contract as c
from voicebot.engines.llm import Generation
from voicebot.llms import UnknownModel, prompt_format_of
from voicebot.pipeline import AnswerPipeline, Grounding, TextPiece
from voicebot.sampling import parse_sampling_parameters
from voicebot.serving import metrics
from voicebot.serving.config import ConfigError, param, read_sidecar
from voicebot.serving.loopback import Loopback
from voicebot.serving.triton_io import (
    RequestError,
    StreamWorkers,
    bytes_tensor,
    input_scalar,
    input_text,
    uint32_tensor,
)
from voicebot.text import (
    MAX_HISTORY_JSON_BYTES,
    MAX_PASSAGES_JSON_BYTES,
    MAX_QUESTION_CHARS,
    parse_history,
    parse_passages,
)
from voicebot.wire import CallError


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        try:
            max_in_flight = param(config, "max_in_flight", 16)
            stall_timeout_s = param(config, "stall_timeout_s", 120.0)
            # The prompt follows the model that `llm` (beside this model in the repository) serves.
            llm_dir = Path(args["model_repository"]).parent / c.LLM.name / "1"
            prompt_format = prompt_format_of(read_sidecar(llm_dir))
            grounding = param(config, "grounding_check", True)
        except (ConfigError, UnknownModel) as exc:
            raise pb_utils.TritonModelException(f"voice_answer: {exc}") from None
        self.first_audio = metrics.histogram(
            metrics.VOICE_FIRST_AUDIO, "Time from request to first audio chunk", args, metrics.LATENCY_BUCKETS
        )
        self.grounding = metrics.LabelledCounters(
            metrics.ANSWER_GROUNDING,
            "Answers by what the grounding check did (abstained: a first clause with facts no passage holds)",
            args,
            "outcome",
            [g.value for g in Grounding],
        )
        self.loopback = Loopback(stall_timeout_s=stall_timeout_s)
        self.pipeline = AnswerPipeline(
            self.loopback.llm_deltas,
            self.loopback.tts_chunks,
            prompt_format=prompt_format,
            grounding=grounding,
            on_grounding=self._grounded,
        )
        self.workers = StreamWorkers(pb_utils.Logger.log_error, max_in_flight)

    def _grounded(self, outcome, missing):
        self.grounding.increment(outcome.value)
        if missing:
            pb_utils.Logger.log_info(f"voice_answer: answer {outcome.value}, no passage holds {missing[:5]}")

    def execute(self, requests):
        for request in requests:
            self.workers.submit(request, self._answer)
        return None

    def _answer(self, request, is_cancelled):
        began = time.perf_counter()
        question = input_text(request, c.QUESTION, MAX_QUESTION_CHARS)
        passages = parse_passages(input_text(request, c.PASSAGES, MAX_PASSAGES_JSON_BYTES, allow_empty=True) or "[]")
        history = parse_history(
            input_text(request, c.HISTORY, MAX_HISTORY_JSON_BYTES, required=False, allow_empty=True)
        )
        params = parse_sampling_parameters(
            input_text(request, c.SAMPLING_PARAMETERS, 4096, required=False, allow_empty=True),
            self.pipeline.prompt_format.defaults,
        )
        speak = bool(input_scalar(request, c.SPEAK, bool, True))
        cache_key = input_text(request, c.CACHE_KEY, c.MAX_CACHE_KEY_CHARS, required=False)
        request_id = request.request_id() or uuid.uuid4().hex[:12]
        if input_scalar(request, c.PREFILL, bool, False):  # speculation while the user speaks: no output
            answer = self.pipeline.prefill(passages, history, request_id, cache_key)
        else:
            answer = self.pipeline.run(question, passages, history, params, speak, request_id, cache_key)
        # The counts go out only to a client that asked for them (see the contract).
        counts = bool(
            {c.FINISH_REASON, c.NUM_INPUT_TOKENS, c.NUM_OUTPUT_TOKENS} & set(request.requested_output_names())
        )
        first_audio = True
        try:
            for piece in self.loopback.iterate(answer, is_cancelled):
                if isinstance(piece, TextPiece):
                    yield [bytes_tensor(c.TEXT_OUTPUT, [piece.text])]
                    continue
                if isinstance(piece, Generation):
                    if counts:
                        yield [
                            bytes_tensor(c.FINISH_REASON, [piece.finish_reason or "stop"]),
                            uint32_tensor(c.NUM_INPUT_TOKENS, piece.prompt_tokens),
                            uint32_tensor(c.NUM_OUTPUT_TOKENS, piece.output_tokens),
                        ]
                    continue
                if first_audio:
                    self.first_audio.observe(time.perf_counter() - began)
                    first_audio = False
                yield [
                    pb_utils.Tensor(c.AUDIO, piece.samples),
                    pb_utils.Tensor(c.SAMPLE_RATE, np.array([piece.sample_rate], dtype=np.int32)),
                ]
        except CallError as exc:  # llm or tts refused or failed: this request's error, with its kind
            kind = "INVALID_ARG" if exc.code == c.ErrorCode.INVALID_INPUT else "UNAVAILABLE"
            raise RequestError(str(exc), kind) from None

    def finalize(self):
        self.workers.join()
        self.loopback.close()
