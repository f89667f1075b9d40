"""The cpu-quality LLM (Qwen2.5-Coder-1.5B-Instruct, assembled from its slice packages) on real
weights: our ChatML prompt is what the model's own chat template renders, and the model answers
from the passages it is given and says so when they do not hold the answer."""

import jinja2
import pytest

from voicebot.engines.llm import load_language_model
from voicebot.llms import QWEN_1_5B
from voicebot.text import NO_ANSWER, PROMPT_FORMATS, Passage, build_prompt
from voicebot.weights import llm_gguf

pytestmark = pytest.mark.slow

LAMP = [
    Passage("Lumen lamp — Charging", "The Lumen lamp has a 4000 mAh battery. A full charge takes about three hours."),
    Passage("Lumen lamp — Warranty", "The lamp carries a two-year warranty against manufacturing faults."),
]


@pytest.fixture(scope="module")
def qwen():
    engine = load_language_model({"llama_cpp": {"model": QWEN_1_5B, "n_ctx": 2048}})
    yield engine
    engine.close()


def test_the_assembled_file_is_the_pinned_gguf():
    path = llm_gguf(QWEN_1_5B, progress=False)
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
    assert path.stat().st_size == 1_117_320_768


def test_chatml_prompt_is_what_the_models_own_template_renders(qwen):
    template = qwen._llama.metadata["tokenizer.chat_template"]
    history = ["How big is the battery?"]
    ours = build_prompt("How long is the warranty?", LAMP, history, "chatml")
    system, rest = ours.split("<|im_end|>\n", 1)
    user = rest.split("<|im_end|>\n", 1)[0]
    messages = [
        {"role": "system", "content": system.removeprefix("<|im_start|>system\n")},
        {"role": "user", "content": user.removeprefix("<|im_start|>user\n")},
    ]
    rendered = jinja2.Environment().from_string(template).render(messages=messages, add_generation_prompt=True)
    assert rendered == ours


def answer(engine, question, passages):
    params = PROMPT_FORMATS["chatml"].defaults
    return "".join(engine.stream(build_prompt(question, passages, [], "chatml"), params, lambda: False)).strip()


def test_answers_from_the_passages(qwen):
    got = answer(qwen, "How big is the lamp's battery?", LAMP)
    assert "4000" in got.replace(",", "") and NO_ANSWER not in got


def test_says_it_could_not_find_what_no_passage_holds(qwen):
    assert answer(qwen, "How much does the Lumen lamp cost?", LAMP) == NO_ANSWER
    assert answer(qwen, "What is the root password?", LAMP) == NO_ANSWER
