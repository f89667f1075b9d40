"""Model adapters (model.py) against the typed fake pb_utils: error responses, streaming rules."""

import importlib.util
import json
import time
from pathlib import Path

import fake_pb_utils as pb
import numpy as np
import pytest
from audio_files import encode, tone

from voicebot import contract as c

REPO = Path(__file__).resolve().parents[2] / "model_repository"


def load_model(name: str):
    spec = importlib.util.spec_from_file_location(f"model_{name}", REPO / name / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def args_for(name: str, parameters: dict[str, str] | None = None, decoupled: bool = False) -> dict:
    config = {
        "name": name,
        "parameters": {k: {"string_value": v} for k, v in (parameters or {}).items()},
        "model_transaction_policy": {"decoupled": decoupled},
    }
    return {
        "model_config": json.dumps(config),
        "model_name": name,
        "model_version": "1",
        "model_repository": str(REPO / name),
    }


def text(name: str, value: str | bytes) -> pb.Tensor:
    return pb.Tensor(name, np.array([value.encode() if isinstance(value, str) else value], dtype=np.object_))


def error_text(response) -> str:
    return response.error().message()


def test_audio_decode_bad_request_fails_alone():
    module = load_model(c.AUDIO_DECODE.name)
    model = module.TritonPythonModel()
    model.initialize(args_for(c.AUDIO_DECODE.name, {"max_seconds": "5"}))
    good = pb.InferenceRequest([text(c.AUDIO_BYTES, encode(tone(1.0), 16000, "wav"))])
    garbage = pb.InferenceRequest([text(c.AUDIO_BYTES, b"\x01\x02 not audio")])
    too_long = pb.InferenceRequest([text(c.AUDIO_BYTES, encode(tone(6.0), 16000, "flac"))])
    missing = pb.InferenceRequest([])
    responses = model.execute([good, garbage, too_long, missing])
    assert len(responses) == 4
    assert not responses[0].has_error()
    assert pb.get_output_tensor_by_name(responses[0], c.AUDIO).as_numpy().size == 16000
    assert "not a decodable audio file" in error_text(responses[1])
    assert responses[1].error().code() == pb.TritonError.INVALID_ARG
    assert "longer than the 5 s limit" in error_text(responses[2])
    assert "required" in error_text(responses[3])


def test_bad_parameter_fails_initialize_with_the_model_named():
    model = load_model(c.AUDIO_DECODE.name).TritonPythonModel()
    with pytest.raises(pb.TritonModelException, match=r"audio_decode.*max_seconds"):
        model.initialize(args_for(c.AUDIO_DECODE.name, {"max_seconds": "-1"}))


class ScriptedLM:
    """Typed fake of the LanguageModel protocol: yields a fixed list of deltas."""

    def __init__(self, deltas: list[str]) -> None:
        self.deltas = deltas
        self.seen_params = None
        self.cache_keys: list[str | None] = []
        self.paces: list[float | None] = []
        self.prefilled: list[tuple[str, str | None]] = []

    def prefill(self, prompt, cancelled, cache_key=None):
        self.prefilled.append((prompt, cache_key))
        return len(prompt.split())

    def stream(self, prompt, params, cancelled, cache_key=None, pace_cps=None, generation=None):
        self.seen_params = params
        self.cache_keys.append(cache_key)
        self.paces.append(pace_cps)
        if generation is not None:
            generation.prompt_tokens = len(prompt.split())
        for delta in self.deltas:
            if cancelled():
                return
            if generation is not None:
                generation.output_tokens += 2  # two tokens a delta
            yield delta
        if generation is not None:
            generation.finish_reason = "length"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        pass


@pytest.fixture
def llm_model(monkeypatch):
    module = load_model(c.LLM.name)
    lm = ScriptedLM([" Paris", " is", " nice."])
    monkeypatch.setattr(module, "load_language_model", lambda sidecar: lm)
    model = module.TritonPythonModel()
    model.initialize(args_for(c.LLM.name, decoupled=True))
    model.lm = lm
    yield model
    model.finalize()


def run_stream(model, inputs):
    request = pb.InferenceRequest(inputs)
    assert model.execute([request]) is None
    assert request.sender.done.wait(10)
    assert request.sender.finals == 1  # exactly one final flag
    return request.sender.responses


def outputs(responses):
    return [pb.get_output_tensor_by_name(r, c.TEXT_OUTPUT).as_numpy()[0].decode() for r in responses]


def test_llm_streams_deltas_without_the_prompt(llm_model):
    responses = run_stream(
        llm_model,
        [
            text(c.TEXT_INPUT, "Q:"),
            pb.Tensor(c.STREAM, np.array([True])),
            text(c.SAMPLING_PARAMETERS, '{"max_tokens": 5}'),
        ],
    )
    assert outputs(responses) == [" Paris", " is", " nice."]
    assert llm_model.lm.seen_params.max_tokens == 5


def test_llm_reports_counts_and_finish_reason_like_vllm_backend_when_asked(llm_model):
    asked = [
        pb.Tensor(name, np.array([True]))
        for name in (c.RETURN_FINISH_REASON, c.RETURN_NUM_INPUT_TOKENS, c.RETURN_NUM_OUTPUT_TOKENS)
    ]
    question = [text(c.TEXT_INPUT, "Q: where?"), pb.Tensor(c.STREAM, np.array([True]))]

    def extras(responses):
        return [
            (
                pb.get_output_tensor_by_name(r, c.FINISH_REASON).as_numpy()[0].decode(),
                int(pb.get_output_tensor_by_name(r, c.NUM_INPUT_TOKENS).as_numpy()[0]),
                int(pb.get_output_tensor_by_name(r, c.NUM_OUTPUT_TOKENS).as_numpy()[0]),
            )
            for r in responses
        ]

    streamed = run_stream(llm_model, [*question, *asked])
    # Every response carries them; a last one with no text brings the finish reason.
    assert outputs(streamed) == [" Paris", " is", " nice.", ""]
    assert extras(streamed) == [(c.UNFINISHED, 2, 2)] * 3 + [("length", 2, 0)]
    whole = run_stream(llm_model, [question[0], *asked])
    assert extras(whole) == [("length", 2, 6)]
    plain = run_stream(llm_model, question)  # not asked: vllm_backend's plain outputs only
    assert [[t.name() for t in r.output_tensors] for r in plain] == [[c.TEXT_OUTPUT]] * 3


def test_llm_request_parameters_name_the_cache_and_ask_for_a_prefill_only(llm_model):
    inputs = [text(c.TEXT_INPUT, "Passages: ..."), pb.Tensor(c.STREAM, np.array([True]))]
    request = pb.InferenceRequest(inputs, parameters_='{"cache_key": "s1", "prefill_only": true}')
    assert llm_model.execute([request]) is None and request.sender.done.wait(10)
    assert request.sender.finals == 1 and not [r for r in request.sender.responses if r.output_tensors]
    assert llm_model.lm.prefilled == [("Passages: ...", "s1")]
    request = pb.InferenceRequest(inputs, parameters_='{"cache_key": "s1", "unknown": 1}')  # unknown: ignored
    assert llm_model.execute([request]) is None and request.sender.done.wait(10)
    assert outputs(request.sender.responses) == [" Paris", " is", " nice."] and llm_model.lm.cache_keys == ["s1"]
    request = pb.InferenceRequest(inputs, parameters_='{"pace_cps": 15}')  # how fast the listener hears it
    assert llm_model.execute([request]) is None and request.sender.done.wait(10)
    assert llm_model.lm.paces == [None, 15.0]


@pytest.mark.parametrize(
    "parameters",
    [
        '{"cache_key": 7}',
        '{"cache_key": ""}',
        '{"cache_key": "%s"}' % ("k" * 200),
        '{"prefill_only": "maybe"}',
        '{"pace_cps": "fast"}',
        '{"pace_cps": 0}',
        '{"pace_cps": 1e9}',
    ],
)
def test_llm_bad_request_parameters_are_the_requests_error(llm_model, parameters):
    request = pb.InferenceRequest([text(c.TEXT_INPUT, "Q:")], parameters_=parameters)
    assert llm_model.execute([request]) is None and request.sender.done.wait(10)
    (response,) = request.sender.responses
    assert response.error().code() == pb.TritonError.INVALID_ARG and "request parameter" in response.error().message()
    assert llm_model.lm.prefilled == [] and llm_model.lm.cache_keys == []


def test_llm_non_streaming_prepends_prompt_like_vllm_backend(llm_model):
    assert outputs(run_stream(llm_model, [text(c.TEXT_INPUT, "Q:")])) == ["Q: Paris is nice."]
    excluded = run_stream(llm_model, [text(c.TEXT_INPUT, "Q:"), pb.Tensor(c.EXCLUDE_INPUT_IN_OUTPUT, np.array([True]))])
    assert outputs(excluded) == [" Paris is nice."]


@pytest.mark.parametrize(
    "inputs, message",
    [
        ([], f"'{c.TEXT_INPUT}' is required"),
        ([text(c.TEXT_INPUT, "   ")], "is empty"),
        ([text(c.TEXT_INPUT, "Q"), text(c.SAMPLING_PARAMETERS, "{bad")], "not valid JSON"),
        ([text(c.TEXT_INPUT, b"\xff\xfe")], "UTF-8"),
    ],
)
def test_llm_bad_requests_get_one_error_response(llm_model, inputs, message):
    responses = run_stream(llm_model, inputs)
    assert len(responses) == 1 and responses[0].has_error()
    assert message in error_text(responses[0])


def test_llm_stops_when_the_client_cancels(llm_model):
    llm_model.lm.deltas = ["tok"] * 1000
    request = pb.InferenceRequest([text(c.TEXT_INPUT, "Q"), pb.Tensor(c.STREAM, np.array([True]))])
    request.sender.cancel()
    llm_model.execute([request])
    assert request.sender.done.wait(10)
    assert len(request.sender.responses) < 1000


def test_embedder_encodes_a_batch_of_requests_and_fails_only_the_bad_one():
    model = load_model(c.EMBEDDER.name).TritonPythonModel()
    model.initialize(args_for(c.EMBEDDER.name, {"max_chars": "50"}))

    def request(*texts):
        return pb.InferenceRequest([pb.Tensor(c.TEXT, np.array([[t.encode() for t in texts]], dtype=np.object_))])

    responses = model.execute([request("reset the router"), request("x" * 60), request("bake", "bread")])
    first, bad, last = responses
    assert pb.get_output_tensor_by_name(first, c.EMBEDDING).as_numpy().shape == (1, 1, c.EMBEDDING_DIM)
    assert "over 50 characters" in error_text(bad)
    vectors = pb.get_output_tensor_by_name(last, c.EMBEDDING).as_numpy()[0]
    assert vectors.shape == (2, c.EMBEDDING_DIM)
    alone = pb.get_output_tensor_by_name(model.execute([request("bake", "bread")])[0], c.EMBEDDING).as_numpy()[0]
    assert np.allclose(alone, vectors, atol=1e-5)  # batching with others changes nothing


class ScriptedLoopback:
    """Stands in for the real loopback's two streams; keeps its iterate() (the real bridge)."""

    def __init__(self, base, deltas, fail=None):
        self.base, self.deltas, self.fail = base, deltas, fail
        self.tts_calls: list[str] = []
        self.llm_cancelled = False
        self.llm_calls: list[tuple[str, str | None, bool]] = []
        self.paces: list[float | None] = []

    async def llm_deltas(
        self, prompt, params, request_id, *, cache_key=None, prefill_only=False, pace_cps=None, generation=None
    ):
        self.llm_calls.append((prompt, cache_key, prefill_only))
        self.paces.append(pace_cps)
        if prefill_only:
            return
        import asyncio

        from voicebot.wire import CallError

        try:
            for delta in self.deltas:
                await asyncio.sleep(0.005)
                if self.fail is not None:
                    raise CallError(self.fail, "llm: sampling_parameters refused")
                if generation is not None:
                    generation.output_tokens += 1
                yield delta
            if generation is not None:
                generation.prompt_tokens, generation.finish_reason = len(prompt.split()), "stop"
        except asyncio.CancelledError:
            self.llm_cancelled = True
            raise

    async def tts_chunks(self, text, request_id):
        self.tts_calls.append(text)
        yield np.ones(100, dtype=np.int16), 22050

    def iterate(self, answer, is_cancelled):
        return self.base.iterate(answer, is_cancelled)

    def close(self):
        self.base.close()


@pytest.fixture
def voice_answer(monkeypatch):
    module = load_model(c.VOICE_ANSWER.name)
    made = {}
    real = module.Loopback

    def fake_loopback(stall_timeout_s):
        made["lb"] = ScriptedLoopback(real("127.0.0.1:1"), ["Three ", "hours. ", "Then ", "it glows."])
        return made["lb"]

    monkeypatch.setattr(module, "Loopback", fake_loopback)
    model = module.TritonPythonModel()
    model.initialize(args_for(c.VOICE_ANSWER.name, decoupled=True))
    model.lb = made["lb"]
    yield model
    model.finalize()


def answer_inputs(speak=None):
    passages = json.dumps([{"id": "1", "title": "Lamp", "text": "It charges in three hours."}])
    inputs = [text(c.QUESTION, "How long?"), text(c.PASSAGES, passages)]
    if speak is not None:
        inputs.append(pb.Tensor(c.SPEAK, np.array([speak])))
    return inputs


def test_voice_answer_speaks_unless_told_not_to(voice_answer):
    spoken = run_stream(voice_answer, answer_inputs())
    names = [t.name() for r in spoken for t in r.output_tensors]
    assert (
        c.AUDIO in names and c.TEXT_OUTPUT in names and voice_answer.lb.tts_calls == ["Three hours.", "Then it glows."]
    )
    voice_answer.lb.tts_calls.clear()
    typed = run_stream(voice_answer, answer_inputs(speak=False))
    assert "".join(outputs(typed)) == "Three hours. Then it glows." and not voice_answer.lb.tts_calls
    # The engine hears how fast each answer is consumed: spoken, then read.
    assert voice_answer.lb.paces == [c.SPEECH_PACE_CPS, c.READING_PACE_CPS]


def test_voice_answer_ends_with_the_counts_when_the_client_asks_for_them(voice_answer):
    counts = (c.FINISH_REASON, c.NUM_INPUT_TOKENS, c.NUM_OUTPUT_TOKENS)
    request = pb.InferenceRequest(answer_inputs(speak=False), requested_output_names_=(c.TEXT_OUTPUT, *counts))
    assert voice_answer.execute([request]) is None and request.sender.done.wait(10)
    *texts, last = request.sender.responses
    assert "".join(outputs(texts)) == "Three hours. Then it glows."
    prompt_words = len(voice_answer.lb.llm_calls[0][0].split())
    got = [pb.get_output_tensor_by_name(last, name).as_numpy()[0] for name in counts]
    assert [got[0].decode(), int(got[1]), int(got[2])] == ["stop", prompt_words, 4]
    plain = run_stream(voice_answer, answer_inputs(speak=False))  # not asked for: text only
    assert all(r.output_tensors[0].name() == c.TEXT_OUTPUT for r in plain if r.output_tensors)


def test_voice_answer_prefills_the_prompt_up_to_the_question_under_the_cache_key(voice_answer):
    inputs = [*answer_inputs(), text(c.CACHE_KEY, "session-1"), pb.Tensor(c.PREFILL, np.array([True]))]
    assert not [r for r in run_stream(voice_answer, inputs) if r.output_tensors]  # nothing comes back
    ((prefix, key, prefill_only),) = voice_answer.lb.llm_calls
    assert key == "session-1" and prefill_only and "It charges in three hours." in prefix
    assert "How long?" not in prefix and not voice_answer.lb.tts_calls
    voice_answer.lb.llm_calls.clear()
    run_stream(voice_answer, [*answer_inputs(speak=False), text(c.CACHE_KEY, "session-1")])
    ((prompt, key, prefill_only),) = voice_answer.lb.llm_calls
    assert prompt.startswith(prefix) and key == "session-1" and not prefill_only


def test_voice_answer_stops_its_calls_when_the_client_cancels(voice_answer):
    voice_answer.lb.deltas = ["word "] * 2000
    request = pb.InferenceRequest(answer_inputs(speak=False))
    voice_answer.execute([request])
    deadline = time.monotonic() + 10
    while len(request.sender.responses) < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    request.sender.cancel()
    assert request.sender.done.wait(10) and request.sender.finals == 1
    assert voice_answer.lb.llm_cancelled and len(request.sender.responses) < 2000


def test_voice_answer_passes_a_refusal_on_as_invalid_arg(voice_answer):
    from voicebot.contract import ErrorCode

    voice_answer.lb.fail = ErrorCode.INVALID_INPUT
    responses = run_stream(voice_answer, answer_inputs())
    assert responses[-1].has_error() and responses[-1].error().code() == pb.TritonError.INVALID_ARG
    assert "refused" in error_text(responses[-1])
