"""The ``llm`` contract over a real tritonserver, the engine being vLLM's CPU build for real.

Opt-in (``make test-vllm``): vLLM lives in .venv-vllm and SmolLM2-135M-Instruct is converted
from its packaged GGUF once. The same contract as tests/integration/test_triton_models.py runs
against llama.cpp, plus what is vLLM's own: errors it raises for a request, abort, prefix cache.
"""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from triton_helpers import (
    GrpcStream,
    InferenceServerException,
    generate_stream_sse,
    metric_after_change,
    metric_value,
    tensor,
)

from voicebot import contract as c
from voicebot.serving import metrics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTION = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def llm_inputs(prompt: str, params: dict | str | None = None, stream: bool | None = None) -> list:
    inputs = [tensor(grpcclient, c.LLM, c.TEXT_INPUT, prompt)]
    if stream is not None:
        inputs.append(tensor(grpcclient, c.LLM, c.STREAM, np.array([stream])))
    if params is not None:
        text = params if isinstance(params, str) else json.dumps(params)
        inputs.append(tensor(grpcclient, c.LLM, c.SAMPLING_PARAMETERS, text))
    return inputs


@pytest.fixture
def stream(vllm_triton):
    s = GrpcStream(vllm_triton.grpc_url)
    yield s
    s.close()


def metrics_url(server) -> str:
    return f"{server.options.host}:{server.options.metrics_port}"


def wait_for_log(server, needle: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = server.log_path.read_text(errors="replace")
        if needle in text:
            return text
        time.sleep(0.1)
    pytest.fail(f"{needle!r} not in the server log after {timeout} s:\n{server.log_tail()}")


def test_streams_token_deltas_over_grpc(stream):
    got = stream.collect(c.LLM.name, llm_inputs(QUESTION, {"temperature": 0, "max_tokens": 16}, True), [c.TEXT_OUTPUT])
    assert len(got) >= 2  # deltas as vLLM makes them, not one block
    text = "".join(r.text() for r in got)
    assert not text.startswith(QUESTION)  # a stream leaves the prompt out by default (vllm_backend)
    assert "paris" in text.lower()


def test_non_streaming_is_one_response_with_the_prompt_first(stream):
    got = stream.collect(c.LLM.name, llm_inputs(QUESTION, {"temperature": 0, "max_tokens": 8}), [c.TEXT_OUTPUT])
    assert len(got) == 1
    text = got[0].text()
    assert text.startswith(QUESTION) and len(text) > len(QUESTION)
    excluded = stream.collect(
        c.LLM.name,
        [
            *llm_inputs(QUESTION, {"temperature": 0, "max_tokens": 8}),
            tensor(grpcclient, c.LLM, c.EXCLUDE_INPUT_IN_OUTPUT, np.array([True])),
        ],
        [c.TEXT_OUTPUT],
    )
    assert excluded[0].text() == text[len(QUESTION) :]  # greedy: the same answer, without the prompt


def test_http_generate_stream(vllm_triton):
    events = generate_stream_sse(
        vllm_triton.http_url,
        c.LLM.name,
        {
            c.TEXT_INPUT: QUESTION,
            "stream": True,
            c.SAMPLING_PARAMETERS: json.dumps({"temperature": 0, "max_tokens": 8}),
        },
    )
    assert len(events) >= 2 and all(c.TEXT_OUTPUT in e for e in events)
    assert "paris" in "".join(e[c.TEXT_OUTPUT] for e in events).lower()


def test_cancel_stops_generation_within_about_a_token(vllm_triton):
    url = metrics_url(vllm_triton)
    before = metric_value(url, metrics.LLM_OUTPUT_TOKENS)
    s = GrpcStream(vllm_triton.grpc_url)
    prompt = "<|im_start|>user\nWrite a very long story about a lighthouse.<|im_end|>\n<|im_start|>assistant\n"
    s.send(c.LLM.name, llm_inputs(prompt, {"max_tokens": 2000, "ignore_eos": True}, True), [c.TEXT_OUTPUT])
    seen = 0
    while seen < 3:
        _result, error = s.next(timeout=60)
        assert error is None
        seen += 1
    s.close(cancel=True)
    # The llm counts the deltas it took from the engine when the generation ends: a cancel
    # seen between two deltas leaves only what was already on its way to this client.
    generated = metric_after_change(url, metrics.LLM_OUTPUT_TOKENS, before) - before
    assert seen <= generated <= seen + 8, generated  # measured: seen + 3 (what was already on the wire)
    # ... and vLLM itself stopped: the engine bridge aborted the request in the engine.
    wait_for_log(vllm_triton, "Aborted request(s) voicebot-")


@pytest.mark.parametrize(
    ("prompt", "params", "says"),
    [
        (QUESTION, "{not json", c.SAMPLING_PARAMETERS),
        ("   ", {"max_tokens": 4}, "is empty"),
        ("word " * 4000, {"max_tokens": 4}, "maximum context length is 2048 tokens"),
    ],
    ids=["bad-json", "empty-prompt", "prompt-too-long"],
)
def test_bad_request_gets_a_clear_error_and_the_model_keeps_serving(stream, prompt, params, says):
    with pytest.raises(InferenceServerException) as info:
        stream.collect(c.LLM.name, llm_inputs(prompt, params, True), [c.TEXT_OUTPUT])
    message = info.value.message()
    # The client's fault (INVALID_ARG), not an "internal error: ..." (the engine's vLLM error mapped).
    assert says in message and not message.startswith("internal error"), message
    got = stream.collect(c.LLM.name, llm_inputs(QUESTION, {"temperature": 0, "max_tokens": 8}, True), [c.TEXT_OUTPUT])
    assert "paris" in "".join(r.text() for r in got).lower()


def time_to_first_delta(s: GrpcStream, prompt: str) -> float:
    began = time.monotonic()
    got = s.collect(c.LLM.name, llm_inputs(prompt, {"temperature": 0, "max_tokens": 2}, True), [c.TEXT_OUTPUT])
    assert got
    return got[0].at - began


def test_prefill_only_answers_nothing_and_leaves_the_prompt_in_the_prefix_cache(stream):
    # A prompt no earlier request shared (vLLM's prefix cache is keyed by content).
    passages = " ".join(f"Passage {n}: the lighthouse keeper logs ship {n} at dawn." for n in range(80))
    prefix = f"<|im_start|>system\nRun {uuid.uuid4()}. {passages}<|im_end|>\n<|im_start|>user\n"
    cold = time_to_first_delta(stream, prefix + "Which ship came first?<|im_end|>\n<|im_start|>assistant\n")
    other = prefix.replace("Run ", "Other run ", 1)
    got = stream.collect(
        c.LLM.name,
        llm_inputs(other, {"max_tokens": 64}, True),
        [c.TEXT_OUTPUT],
        parameters={c.LLM_PREFILL_ONLY: True, c.LLM_CACHE_KEY: "session-1"},
    )
    assert got == []  # evaluated into the cache; no text comes back
    warm = time_to_first_delta(stream, other + "Which ship came last?<|im_end|>\n<|im_start|>assistant\n")
    assert warm < cold / 2, (cold, warm)
