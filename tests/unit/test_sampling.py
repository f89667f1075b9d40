import json

import pytest

from voicebot.sampling import SamplingError, SamplingParams, parse_sampling_parameters
from voicebot.text import ANSWER_DEFAULTS


def test_defaults_follow_vllm():
    p = parse_sampling_parameters(None)
    assert (p.temperature, p.top_p, p.max_tokens, p.stop) == (1.0, 1.0, 16, ())


def test_numeric_strings_are_accepted_like_triton_vllm_backend():
    p = parse_sampling_parameters(
        json.dumps({"temperature": "0.2", "max_tokens": "40", "stop": "\n", "ignore_eos": "true"})
    )
    assert p == SamplingParams(temperature=0.2, max_tokens=40, stop=("\n",), ignore_eos=True)


def test_defaults_can_be_supplied():
    p = parse_sampling_parameters('{"max_tokens": 5}', ANSWER_DEFAULTS)
    assert p.max_tokens == 5 and p.temperature == 0.0 and p.stop == ANSWER_DEFAULTS.stop


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{", "not valid JSON"),
        ("[1]", "JSON object"),
        ('{"temprature": 1}', "unsupported sampling_parameters: temprature"),
        ('{"temperature": "hot"}', "must be a number"),
        ('{"temperature": -1}', ">= 0"),
        ('{"max_tokens": 0}', "max_tokens"),
        ('{"max_tokens": 1.5}', "integer"),
        ('{"max_tokens": 100000}', "max_tokens"),
        ('{"top_p": 0}', "top_p"),
        ('{"top_k": 0}', "top_k"),
        ('{"stop": [1]}', "stop"),
        ('{"temperature": true}', "number"),
        ('{"ignore_eos": "maybe"}', "true or false"),
        ('{"max_tokens": 8, "min_tokens": 9}', "min_tokens"),
        ('{"min_tokens": -1}', "min_tokens"),
        ('{"temperature": NaN}', "NaN is not JSON"),
        ('{"temperature": "nan"}', "finite"),
        ('{"stop": ' + "[" * 2000 + "]" * 2000 + "}", "nested more than"),
        ('{"seed": ' + "9" * 100 + "}", "digits"),
        ('{"stop": ["\\ud800"]}', "lone surrogate"),
    ],
)
def test_malformed_parameters_name_the_problem(raw, message):
    with pytest.raises(SamplingError, match=message):
        parse_sampling_parameters(raw)


def test_to_json_round_trips():
    assert parse_sampling_parameters(ANSWER_DEFAULTS.to_json()) == ANSWER_DEFAULTS


def test_min_tokens_holds_eos_back_until_reached():
    import numpy as np

    from voicebot.engines.llm import eos_holder

    hold = eos_holder(eos=1, prompt_tokens=5, min_tokens=3)
    for generated, blocked in ((0, True), (2, True), (3, False), (10, False)):
        scores = hold(np.zeros(5 + generated, dtype=np.int32), np.zeros(4, dtype=np.float32))
        assert bool(scores[1] == float("-inf")) is blocked
        assert np.all(scores[[0, 2, 3]] == 0)


def test_abstention_gate_forces_the_abstention_only_at_the_first_token_and_over_its_threshold():
    import numpy as np

    from voicebot.engines.llm import abstention_gate

    logits = np.array([2.0, 1.0, 0.0], dtype=np.float32)  # token 1: e / (e² + e + 1) = 0.2447
    for min_p, forced in ((0.2, True), (0.244, True), (0.245, False), (0.3, False)):
        fired: list[float] = []
        scores = abstention_gate(1, min_p, prompt_tokens=4, fired=fired)(np.zeros(4, dtype=np.int32), logits.copy())
        assert int(scores.argmax()) == (1 if forced else 0)
        assert np.isneginf(scores[[0, 2]]).all() == forced and scores[1] == 1.0
        assert fired == ([pytest.approx(0.2447, abs=1e-4)] if forced else [])
    later = abstention_gate(1, 0.01, prompt_tokens=4, fired=[])(np.zeros(5, dtype=np.int32), logits.copy())
    assert np.array_equal(later, logits)  # past the first token the answer is the model's
