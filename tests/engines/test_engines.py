"""Engines on the real packaged weights, in this process (no Triton)."""

import time

import numpy as np
import pytest
from conftest import wav_to_float
from speech_corpus import GANNET_PROMPT, GANNET_QUESTION, QUESTIONS

from voicebot.engines.embed import EmbedderSettings, SentenceEmbedder
from voicebot.engines.llm import Generation, load_language_model
from voicebot.engines.stt import WhisperEngine, WhisperSettings
from voicebot.engines.tts import PiperEngine, PiperSettings
from voicebot.sampling import SamplingParams
from voicebot.text import word_error_rate
from voicebot.weights import minilm_dir, piper_voice, whisper_model_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def whisper():
    return WhisperEngine(whisper_model_dir("tiny.en"), WhisperSettings(cpu_threads=2))


@pytest.fixture(scope="module")
def piper():
    return PiperEngine(*piper_voice(), PiperSettings())


def test_whisper_transcribes_speech(whisper, speak):
    refs, hyps = [], []
    for sentence in QUESTIONS:
        result = whisper.transcribe(wav_to_float(speak(sentence)))
        refs.append(sentence)
        hyps.append(result.text)
        assert result.segments and result.segments[0].end > result.segments[0].start
    assert word_error_rate(" ".join(refs), " ".join(hyps)) <= 0.15, hyps


def test_whisper_hears_the_names_its_prompt_gives(whisper, speak):
    audio = wav_to_float(speak(GANNET_QUESTION, 135, "en-gb"))
    assert "gannet" not in whisper.transcribe(audio).text.lower()
    heard = whisper.transcribe(audio, prompt=GANNET_PROMPT).text
    assert word_error_rate(GANNET_QUESTION, heard) == 0.0, heard
    # A prompt never becomes a transcript of its own: silence stays empty.
    assert whisper.transcribe(np.zeros(16000 * 3, np.float32), prompt=GANNET_PROMPT).text == ""


def test_whisper_gives_nothing_for_silence_and_noise(whisper):
    assert whisper.transcribe(np.zeros(16000 * 3, np.float32)).text == ""
    noise = (np.random.default_rng(1).standard_normal(16000 * 3) * 0.003).astype(np.float32)
    assert whisper.transcribe(noise).text == ""


def test_whisper_english_only_model_rejects_other_languages(whisper):
    with pytest.raises(ValueError, match="only transcribes English"):
        whisper.check_language("de")
    with pytest.raises(ValueError, match="ISO code"):
        whisper.check_language("en; drop")


def test_piper_streams_one_chunk_per_clause(piper):
    chunks = list(piper.synthesize("Hello there, this is the first clause of a sentence. And a second one."))
    assert piper.sample_rate == 22050
    assert len(chunks) >= 2
    assert all(c.dtype == np.int16 and c.size > 2000 for c in chunks)
    seconds = sum(c.size for c in chunks) / piper.sample_rate
    assert 2.0 < seconds < 10.0


def test_piper_validates_options(piper):
    with pytest.raises(ValueError, match="length_scale"):
        list(piper.synthesize("hi", length_scale=9.0))
    with pytest.raises(ValueError, match="speaker"):
        list(piper.synthesize("hi", speaker=5))


def test_tts_to_stt_round_trip(piper, whisper):
    from scipy.signal import resample_poly

    text = "Open the settings menu and choose a new language."
    audio = np.concatenate(list(piper.synthesize(text))).astype(np.float32) / 32768.0
    audio16 = resample_poly(audio, 320, 441).astype(np.float32)
    assert word_error_rate(text, whisper.transcribe(audio16).text) <= 0.15


def test_embeddings_are_unit_vectors_and_semantic():
    embedder = SentenceEmbedder(minilm_dir(), EmbedderSettings())
    vectors = embedder.encode(["How do I reset the router?", "Restarting your router", "A recipe for pancakes"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert embedder.encode([]).shape == (0, 384)


@pytest.fixture(scope="module")
def llm():
    # One context: the tests below are about what that context and the prefix store keep.
    engine = load_language_model({"engine": "llama_cpp", "llama_cpp": {"n_ctx": 1024, "parallel": 1}})
    yield engine
    engine.close()


def test_llm_streams_deltas(llm):
    params = SamplingParams(temperature=0.0, max_tokens=12)
    deltas = list(llm.stream("Question: What is the capital of France?\nAnswer:", params, lambda: False))
    assert 1 <= len(deltas) <= 12
    assert "paris" in "".join(deltas).lower()


def test_llm_counts_the_prompt_and_each_generated_token(llm):
    prompt = "Count: one, two, three,"
    generation, seen = Generation(), []
    params = SamplingParams(temperature=0.0, max_tokens=7, ignore_eos=True)
    for _ in llm.stream(prompt, params, lambda: False, generation=generation):
        seen.append(generation.output_tokens)
    assert generation == Generation(llm.count_tokens(prompt), 7, "length")
    assert seen == sorted(seen) and seen[0] >= 1  # counted before each delta is yielded
    stopped = Generation()
    list(llm.stream(prompt, SamplingParams(temperature=0.0, stop=(",",)), lambda: False, generation=stopped))
    assert stopped.finish_reason == "stop" and 1 <= stopped.output_tokens < 16


def test_llm_cancel_stops_generation(llm):
    params = SamplingParams(temperature=0.0, max_tokens=400, ignore_eos=True)
    began = time.perf_counter()
    got = []
    for delta in llm.stream("Count: one, two, three,", params, lambda: len(got) >= 3):
        got.append(delta)
    assert len(got) == 3
    assert time.perf_counter() - began < 5
    # The context is free again at once.
    assert list(llm.stream("Hello", SamplingParams(max_tokens=2, temperature=0.0), lambda: False))


def test_llm_rejects_prompts_over_the_context(llm):
    with pytest.raises(ValueError, match="context holds"):
        list(llm.stream("word " * 3000, SamplingParams(), lambda: False))


def test_llm_abstains_when_the_abstentions_first_token_is_likely_enough(llm, monkeypatch):
    from voicebot.text import NO_ANSWER, Passage, build_prompt

    grounded = build_prompt("What is the capital of France?", [Passage("France", "Paris is the capital of France.")])
    plain = "Question: What is the capital of France?\nAnswer:"
    params = SamplingParams(temperature=0.0, max_tokens=24, stop=("\n",))
    assert "paris" in "".join(llm.stream(grounded, params, lambda: False)).lower()  # the gate is off by default
    monkeypatch.setattr(llm, "abstain_min_p", 1e-9)  # any probability at all: the gate always fires
    before, generation = llm.abstentions, Generation()
    assert "".join(llm.stream(grounded, params, lambda: False, generation=generation)) == NO_ANSWER
    assert llm.abstentions == before + 1
    assert generation.finish_reason == "stop"
    assert generation.output_tokens == llm.count_tokens(grounded + NO_ANSWER) - llm.count_tokens(grounded)
    # A prompt that does not name the abstention is not a grounded question: the gate leaves it be.
    assert "paris" in "".join(llm.stream(plain, params, lambda: False)).lower()
    monkeypatch.setattr(llm, "abstain_min_p", 1.0)  # only a certain abstention
    assert "paris" in "".join(llm.stream(grounded, params, lambda: False)).lower()
    assert llm.abstentions == before + 1


def test_llm_settings_bound_the_abstention_threshold():
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="abstain_min_p"):
            load_language_model({"llama_cpp": {"abstain_min_p": bad}})
    with pytest.raises(ValueError, match="abstain_text"):
        load_language_model({"llama_cpp": {"abstain_min_p": 0.2, "abstain_text": " "}})


PREFIX = (
    "Answer from the passages.\nPassages:\n[1] Lamp: The Lumen lamp charges in three hours over USB-C "
    "and runs for twelve hours on its brightest setting.\n[2] Office: Guests use the network called Harbour.\n"
    "Question:"
)
QUESTION = " How long does the lamp take to charge?\nAnswer:"


def test_llm_prefill_keeps_a_sessions_prefix_across_other_sessions_work(llm):
    params = SamplingParams(temperature=0.0, max_tokens=10, stop=("\n",))
    other = "Question: What is two and two?\nAnswer:"
    cold = "".join(llm.stream(PREFIX + QUESTION, params, lambda: False))
    list(llm.stream(other, params, lambda: False))
    evaluated = llm.prefill(PREFIX, lambda: False, cache_key="alice")
    assert evaluated > 0 and len(llm.store) >= 1
    list(llm.stream(other, params, lambda: False, cache_key="bob"))
    warm = "".join(llm.stream(PREFIX + QUESTION, params, lambda: False, cache_key="alice"))
    prefix_tokens = llm.count_tokens(PREFIX)
    assert llm.last_reused >= prefix_tokens - 1  # alice's prefix came back from the store
    assert warm == cold  # and decodes exactly as a cold prompt does
    # Without the key, bob's prompt is what the context holds: nothing of alice's is reused.
    list(llm.stream(other, params, lambda: False))
    list(llm.stream(PREFIX + QUESTION, params, lambda: False))
    assert llm.last_reused < prefix_tokens // 2


def test_llm_prefill_stops_between_chunks_when_cancelled(llm):
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 1  # after the first chunk

    list(llm.stream("Hello", SamplingParams(max_tokens=1, temperature=0.0), lambda: False))  # a different context
    evaluated = llm.prefill(PREFIX * 3, cancelled, cache_key="carol")
    assert 0 < evaluated <= llm.prefill_chunk


@pytest.fixture(scope="module")
def llm2():
    engine = load_language_model({"engine": "llama_cpp", "llama_cpp": {"n_ctx": 1024, "parallel": 2}})
    yield engine
    engine.close()


def _collect(engine, prompt, params, out, stamps, name, pace=None):
    for delta in engine.stream(prompt, params, lambda: False, pace_cps=pace):
        out.append(delta)
        stamps.append((time.perf_counter(), name))


def test_two_answers_in_flight_take_turns_and_each_decodes_as_if_alone(llm2):
    import threading

    params = SamplingParams(temperature=0.0, max_tokens=80, ignore_eos=True)
    long_prompt, short_prompt = "Write about the sea:", PREFIX + QUESTION
    alone_long = "".join(llm2.stream(long_prompt, params, lambda: False))
    alone_short = "".join(llm2.stream(short_prompt, SamplingParams(temperature=0.0, max_tokens=12), lambda: False))
    got_long, got_short, stamps = [], [], []
    first = threading.Thread(target=_collect, args=(llm2, long_prompt, params, got_long, stamps, "long", 15.0))
    first.start()
    while not got_long:
        time.sleep(0.005)
    short_params = SamplingParams(temperature=0.0, max_tokens=12)
    second = threading.Thread(
        target=_collect, args=(llm2, short_prompt, short_params, got_short, stamps, "short", 15.0)
    )
    second.start()
    first.join(60)
    second.join(60)
    assert "".join(got_long) == alone_long and "".join(got_short) == alone_short  # contexts never mix
    names = [name for _, name in stamps]
    # The late question was answered while the long answer was still being written.
    assert names.index("short") < len(names) - 1 - names[::-1].index("long")
    assert names[-1] == "long"


def test_a_prompt_goes_to_the_context_that_holds_its_prefix(llm2):
    params = SamplingParams(temperature=0.0, max_tokens=4, stop=("\n",))
    list(llm2.stream(PREFIX + QUESTION, params, lambda: False))
    list(llm2.stream("Question: What is two and two?\nAnswer:", params, lambda: False))
    list(llm2.stream(PREFIX + " Which network do guests use?\nAnswer:", params, lambda: False))
    assert llm2.last_reused >= llm2.count_tokens(PREFIX) - 1


def test_an_answer_waiting_for_a_context_stops_when_cancelled(llm2):
    import threading

    params = SamplingParams(temperature=0.0, max_tokens=300, ignore_eos=True)
    stop = threading.Event()
    busy = [threading.Thread(target=lambda: list(llm2.stream("Count:", params, stop.is_set))) for _ in range(2)]
    for th in busy:
        th.start()
    while sum(s.busy for s in llm2._slots) < 2:
        time.sleep(0.005)
    began = time.perf_counter()
    assert list(llm2.stream("Hello", params, lambda: time.perf_counter() - began > 0.2)) == []
    assert time.perf_counter() - began < 2
    stop.set()
    for th in busy:
        th.join(30)
    assert not any(s.busy for s in llm2._slots)
