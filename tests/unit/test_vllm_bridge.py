"""The vLLM engine's sync bridge over AsyncLLMEngine, against a small typed fake of vLLM's API.

vLLM itself needs CUDA (or its 3.8 GB CPU build: `make test-vllm` runs the real one, tests/vllm);
this checks our logic: cumulative outputs become deltas, sampling parameters map across,
cancellation aborts the request, request errors are the client's, packaged models are found.
"""

import asyncio
import sys
import time
import types
from dataclasses import dataclass

import pytest

from voicebot.engines.llm import Generation, load_language_model
from voicebot.sampling import SamplingParams
from voicebot.serving.config import ConfigError
from voicebot.weights import WeightsNotFound


@dataclass
class _Completion:  # vLLM's CompletionOutput: cumulative text and token ids
    text: str
    token_ids: list
    finish_reason: str | None = None


@dataclass
class _RequestOutput:
    outputs: list
    prompt_token_ids: list


class FakeAsyncEngine:
    aborted: list

    def __init__(self, args):
        self.args = args
        self.aborted = []
        self.params = None

    @classmethod
    def from_engine_args(cls, args):
        return cls(args)

    async def generate(self, prompt, params, request_id):
        self.params = params
        text, ids = "", []
        words = ["Paris", " is", " lovely", "."] * 50
        for n, word in enumerate(words):
            text += word  # vLLM reports the cumulative text
            ids.append(n)
            await asyncio.sleep(0.001)
            finish = "length" if n == len(words) - 1 else None
            yield _RequestOutput([_Completion(text, list(ids), finish)], prompt_token_ids=prompt.split())

    async def abort(self, request_id):
        self.aborted.append(request_id)

    async def get_tokenizer(self):
        return types.SimpleNamespace(encode=lambda text: text.split())


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.AsyncEngineArgs = lambda **kw: kw
    module.AsyncLLMEngine = FakeAsyncEngine
    module.SamplingParams = lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def test_deltas_and_parameter_mapping(fake_vllm):
    engine = load_language_model({"engine": "vllm", "engine_args": {"model": "/models/x"}})
    try:
        deltas = list(engine.stream("Q", SamplingParams(max_tokens=7, top_k=-1, stop=("\n",)), lambda: False))
        assert deltas[:4] == ["Paris", " is", " lovely", "."]
        assert "".join(deltas) == "Paris is lovely." * 50
        assert engine._engine.params["max_tokens"] == 7 and engine._engine.params["stop"] == ["\n"]
        assert engine.count_tokens("a b c") == 3
    finally:
        engine.close()


def test_the_generation_counts_follow_the_engine(fake_vllm):
    engine = load_language_model({"engine": "vllm", "engine_args": {"model": "/models/x"}})
    try:
        generation, seen = Generation(), []
        for _ in engine.stream("three word prompt", SamplingParams(), lambda: False, generation=generation):
            seen.append((generation.output_tokens, generation.finish_reason))
        assert seen[:3] == [(1, None), (2, None), (3, None)]  # updated before each delta
        assert generation == Generation(prompt_tokens=3, output_tokens=200, finish_reason="length")
    finally:
        engine.close()


def test_cancel_aborts_the_request(fake_vllm):
    engine = load_language_model({"engine": "vllm", "engine_args": {"model": "/models/x"}})
    try:
        got = []
        for delta in engine.stream("Q", SamplingParams(), lambda: len(got) >= 3):
            got.append(delta)
        assert len(got) == 3
        time.sleep(0.05)  # the abort runs on the engine's loop thread
        assert engine._engine.aborted == ["voicebot-0"]
    finally:
        engine.close()


def test_prefill_is_one_greedy_token_that_leaves_the_prompt_in_the_prefix_cache(fake_vllm):
    engine = load_language_model({"engine": "vllm", "engine_args": {"model": "/models/x"}})
    try:
        assert engine.prefill("Passages: a b c", lambda: False, cache_key="s1") == 4  # the fake counts words
        assert engine._engine.params["max_tokens"] == 1 and engine._engine.params["temperature"] == 0.0
    finally:
        engine.close()


def test_vllm_needs_a_model_dir(fake_vllm):
    with pytest.raises(ValueError, match="model"):
        load_language_model({"engine": "vllm", "engine_args": {}})


def test_unknown_engine_is_named():
    with pytest.raises(ValueError, match="unknown llm engine 'tensorrt'"):
        load_language_model({"engine": "tensorrt"})


def test_a_packaged_model_is_found_in_the_cache_when_the_engine_starts(fake_vllm, tmp_path, monkeypatch):
    monkeypatch.setenv("VOICEBOT_CACHE_DIR", str(tmp_path))
    converted = tmp_path / "hf" / "smollm2-135m-instruct"
    converted.mkdir(parents=True)
    (converted / ".converted.json").write_text('{"dtype": "bfloat16"}')
    engine = load_language_model({"engine": "vllm", "packaged_model": "smollm2-135m-instruct", "engine_args": {}})
    try:
        assert engine._engine.args["model"] == str(converted)
    finally:
        engine.close()


def test_a_packaged_model_not_yet_converted_says_how(fake_vllm, tmp_path, monkeypatch):
    monkeypatch.setenv("VOICEBOT_CACHE_DIR", str(tmp_path))
    with pytest.raises(WeightsNotFound, match=r"python -m voicebot\.hf_weights smollm2-135m-instruct"):
        load_language_model({"engine": "vllm", "packaged_model": "smollm2-135m-instruct"})


def test_vllm_sidecar_mistakes_are_named(fake_vllm):
    with pytest.raises(ValueError, match="not both"):
        load_language_model({"engine": "vllm", "packaged_model": "x", "engine_args": {"model": "/m"}})
    with pytest.raises(ConfigError, match="packaged_model"):
        load_language_model({"engine": "vllm", "packaged_model": 7})


def test_a_request_vllm_rejects_is_the_clients_error(fake_vllm, monkeypatch):
    class VLLMClientError(Exception):  # vLLM's base class of request errors (vllm.exceptions), by name
        pass

    async def rejecting(prompt, params, request_id):
        raise VLLMClientError("The decoder prompt cannot be empty")
        yield  # an async generator, as vLLM's

    engine = load_language_model({"engine": "vllm", "engine_args": {"model": "/models/x"}})
    try:
        monkeypatch.setattr(engine._engine, "generate", rejecting)
        with pytest.raises(ValueError, match="cannot be empty"):
            list(engine.stream("", SamplingParams(), lambda: False))
    finally:
        engine.close()
