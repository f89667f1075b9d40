"""Triton adapter: vLLM-backend-compatible streaming generation over a pluggable engine."""

import json
import time
from pathlib import Path

import triton_python_backend_utils as pb_utils

from voicebot import contract as c
from voicebot.engines.llm import Generation, load_language_model
from voicebot.sampling import parse_sampling_parameters
from voicebot.serving import metrics
from voicebot.serving.config import ConfigError, param, read_sidecar
from voicebot.serving.triton_io import (
    RequestError,
    StreamWorkers,
    bytes_tensor,
    input_scalar,
    input_text,
    request_parameter,
    uint32_tensor,
)
from voicebot.weights import WeightsNotFound


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException("llm must be decoupled (model_transaction_policy { decoupled: true })")
        try:
            self.max_prompt_chars = param(config, "max_prompt_chars", 32000)
            sidecar = read_sidecar(Path(args["model_repository"]) / args["model_version"])
            self.engine = load_language_model(sidecar)
            max_in_flight = param(config, "max_in_flight", 32)
        except (ConfigError, WeightsNotFound, FileNotFoundError, ValueError, TypeError) as exc:
            raise pb_utils.TritonModelException(f"llm: {exc}") from None
        self.ttft = metrics.histogram(
            metrics.LLM_TTFT, "Time from request to first token", args, metrics.LATENCY_BUCKETS
        )
        self.tokens = metrics.counter(metrics.LLM_OUTPUT_TOKENS, "Generated output tokens", args)
        self.workers = StreamWorkers(pb_utils.Logger.log_error, max_in_flight)

    def execute(self, requests):
        for request in requests:
            self.workers.submit(request, self._generate)
        return None

    def _generate(self, request, is_cancelled):
        began = time.perf_counter()
        prompt = input_text(request, c.TEXT_INPUT, self.max_prompt_chars)
        stream = bool(input_scalar(request, c.STREAM, bool, False))
        params = parse_sampling_parameters(
            input_text(request, c.SAMPLING_PARAMETERS, 4096, required=False, allow_empty=True)
        )
        exclude = input_scalar(request, c.EXCLUDE_INPUT_IN_OUTPUT, bool, None)
        # As in Triton's vLLM backend: the prompt is prepended unless excluded, and
        # by default only for non-streaming requests.
        prepend = (not exclude) if exclude is not None else not stream
        cache_key = request_parameter(request, c.LLM_CACHE_KEY, str, None, c.MAX_CACHE_KEY_CHARS)
        pace = request_parameter(request, c.LLM_PACE_CPS, float, None)
        if pace is not None and not 0 < pace <= c.MAX_PACE_CPS:
            raise RequestError(f"request parameter '{c.LLM_PACE_CPS}' must be in (0, {c.MAX_PACE_CPS:g}]")
        if request_parameter(request, c.LLM_PREFILL_ONLY, bool, False):
            # Speculative prefill: the prompt goes into the KV cache, no text comes back.
            self.engine.prefill(prompt, is_cancelled, cache_key)
            return
        extras = Extras(request)
        generation = Generation()
        pieces = []
        count = 0
        try:
            for delta in self.engine.stream(prompt, params, is_cancelled, cache_key, pace, generation):
                if count == 0:
                    self.ttft.observe(time.perf_counter() - began)
                count += 1
                if stream:
                    text = prompt + delta if prepend and count == 1 else delta
                    yield [bytes_tensor(c.TEXT_OUTPUT, [text]), *extras.tensors(generation, final=False)]
                else:
                    pieces.append(delta)
        finally:
            self.tokens.increment(generation.output_tokens)
        if is_cancelled():
            return
        if not stream:
            text = (prompt if prepend else "") + "".join(pieces)
            yield [bytes_tensor(c.TEXT_OUTPUT, [text]), *extras.tensors(generation, final=True)]
        elif extras.wanted:
            # The finish reason is known only once the engine has stopped: a last response with no text.
            yield [bytes_tensor(c.TEXT_OUTPUT, [""]), *extras.tensors(generation, final=True)]

    def finalize(self):
        self.workers.join()
        self.engine.close()


class Extras:
    """vllm_backend's additional outputs that one request asked for (its ``return_*`` inputs)."""

    def __init__(self, request):
        self.finish_reason = bool(input_scalar(request, c.RETURN_FINISH_REASON, bool, False))
        self.input_tokens = bool(input_scalar(request, c.RETURN_NUM_INPUT_TOKENS, bool, False))
        self.output_tokens = bool(input_scalar(request, c.RETURN_NUM_OUTPUT_TOKENS, bool, False))
        self.wanted = self.finish_reason or self.input_tokens or self.output_tokens
        self._sent = 0  # output tokens already reported

    def tensors(self, generation, final):
        out = []
        if self.finish_reason:
            reason = (generation.finish_reason or "stop") if final else c.UNFINISHED
            out.append(bytes_tensor(c.FINISH_REASON, [reason]))
        if self.input_tokens:
            out.append(uint32_tensor(c.NUM_INPUT_TOKENS, generation.prompt_tokens))
        if self.output_tokens:
            new = max(0, generation.output_tokens - self._sent)
            self._sent += new
            out.append(uint32_tensor(c.NUM_OUTPUT_TOKENS, new))
        return out
