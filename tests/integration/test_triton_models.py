"""Every model through a real tritonserver, over HTTP and gRPC, with stock tritonclient."""

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from audio_files import encode
from conftest import wav_to_float
from speech_corpus import GANNET_PROMPT, GANNET_QUESTION, QUESTIONS
from triton_helpers import (
    GrpcStream,
    InferenceServerException,
    generate_stream_sse,
    http_client,
    metric_after_change,
    metric_value,
    tensor,
)

from voicebot import contract as c
from voicebot.serving import metrics
from voicebot.text import word_error_rate

pytestmark = pytest.mark.integration

PASSAGES = json.dumps(
    [
        {"id": "d1#0", "title": "France", "text": "Paris is the capital of France. It is famous for the Eiffel Tower."},
        {
            "id": "d2#0",
            "title": "Router manual",
            "text": "Hold the reset button for ten seconds to restore factory settings.",
        },
    ]
)


@pytest.fixture(scope="module")
def http(triton):
    client = http_client(triton.http_url)
    yield client
    client.close()  # an open keep-alive connection would hold up the server's shutdown


@pytest.fixture(scope="module")
def grpc(triton):
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    yield client
    client.close()


@pytest.fixture
def stream(triton):
    s = GrpcStream(triton.grpc_url)
    yield s
    s.close()


def test_all_models_ready_over_both_protocols(http, grpc):
    assert http.is_server_ready() and grpc.is_server_ready()
    for name in c.MODEL_NAMES:
        assert http.is_model_ready(name), name
        assert grpc.is_model_ready(name), name
    meta = http.get_model_metadata(c.LLM.name)
    assert {t["name"] for t in meta["inputs"]} == {t.name for t in c.LLM.inputs}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_transcribe_ensemble_on_speech(protocol, http, grpc, speak):
    module, client = (httpclient, http) if protocol == "http" else (grpcclient, grpc)
    hyps = []
    for question in QUESTIONS:
        data = speak(question).read_bytes()
        result = client.infer(c.TRANSCRIBE.name, [tensor(module, c.AUDIO_DECODE, c.AUDIO_BYTES, data)])
        hyps.append(result.as_numpy(c.TRANSCRIPT)[0].decode())
        segments = json.loads(result.as_numpy(c.SEGMENTS)[0])
        assert segments and {"start", "end", "text", "no_speech_prob"} <= set(segments[0])
    assert word_error_rate(" ".join(QUESTIONS), " ".join(hyps)) <= 0.15, hyps


@pytest.mark.parametrize("fmt", ["webm", "ogg", "mp3", "flac"])
def test_audio_decode_accepts_browser_and_file_formats(fmt, grpc, speak):
    pcm = wav_to_float(speak("Turn the volume down."))
    data = encode(pcm, 16000, fmt)
    result = grpc.infer(c.AUDIO_DECODE.name, [tensor(grpcclient, c.AUDIO_DECODE, c.AUDIO_BYTES, data)])
    audio = result.as_numpy(c.AUDIO)
    assert audio.dtype == np.float32 and abs(audio.size - pcm.size) < 0.1 * pcm.size


def test_whisper_stt_direct_with_language(http, speak):
    audio = wav_to_float(speak("Good morning everyone."))
    result = http.infer(
        c.WHISPER_STT.name,
        [tensor(httpclient, c.WHISPER_STT, c.AUDIO, audio), tensor(httpclient, c.WHISPER_STT, c.LANGUAGE, "en")],
    )
    assert word_error_rate("good morning everyone", result.as_numpy(c.TRANSCRIPT)[0].decode()) <= 0.34


def test_whisper_stt_prompt_names_what_the_audio_is_about(grpc, speak):
    audio = wav_to_float(speak(GANNET_QUESTION, 135, "en-gb"))

    def heard(*extra):
        inputs = [tensor(grpcclient, c.WHISPER_STT, c.AUDIO, audio), *extra]
        return grpc.infer(c.WHISPER_STT.name, inputs).as_numpy(c.TRANSCRIPT)[0].decode()

    assert "gannet" not in heard().lower()
    assert word_error_rate(GANNET_QUESTION, heard(tensor(grpcclient, c.WHISPER_STT, c.PROMPT, GANNET_PROMPT))) == 0
    assert "gannet" not in heard(tensor(grpcclient, c.WHISPER_STT, c.PROMPT, "")).lower()  # empty: no prompt


def test_silence_gives_an_empty_transcript(http):
    silence = encode(np.zeros(16000 * 2, np.float32), 16000, "wav")
    result = http.infer(c.TRANSCRIBE.name, [tensor(httpclient, c.AUDIO_DECODE, c.AUDIO_BYTES, silence)])
    assert result.as_numpy(c.TRANSCRIPT)[0].decode() == ""


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_embedder(protocol, http, grpc):
    module, client = (httpclient, http) if protocol == "http" else (grpcclient, grpc)
    texts = ["reset the router", "restore factory settings on the router", "bake bread"]
    vectors = client.infer(c.EMBEDDER.name, [tensor(module, c.EMBEDDER, c.TEXT, texts)]).as_numpy(c.EMBEDDING)[0]
    assert vectors.shape == (3, c.EMBEDDING_DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_concurrent_embedder_requests_are_batched_and_answered_each(triton):
    from concurrent.futures import ThreadPoolExecutor

    def one(n):
        client = http_client(triton.http_url)
        try:
            texts = [f"question {n} about routers"] * (1 + n % 3)
            out = client.infer(c.EMBEDDER.name, [tensor(httpclient, c.EMBEDDER, c.TEXT, texts)]).as_numpy(c.EMBEDDING)
            return n, out.shape
        finally:
            client.close()

    with ThreadPoolExecutor(8) as pool:
        shapes = dict(pool.map(one, range(16)))
    assert shapes == {n: (1, 1 + n % 3, c.EMBEDDING_DIM) for n in range(16)}  # each got its own rows back
    stats = http_client(triton.http_url).get_inference_statistics(c.EMBEDDER.name)["model_stats"][0]
    assert int(stats["execution_count"]) < int(stats["inference_count"])  # some executions served several


def test_llm_streams_over_grpc(stream):
    params = json.dumps({"temperature": 0, "max_tokens": 16})
    got = stream.collect(
        c.LLM.name,
        [
            tensor(grpcclient, c.LLM, c.TEXT_INPUT, "Question: What is the capital of France?\nAnswer:"),
            tensor(grpcclient, c.LLM, c.STREAM, np.array([True])),
            tensor(grpcclient, c.LLM, c.SAMPLING_PARAMETERS, params),
        ],
        [c.TEXT_OUTPUT],
    )
    assert len(got) >= 2  # token deltas, not one block
    assert "paris" in "".join(r.text() for r in got).lower()


@pytest.mark.parametrize("max_tokens, stop, reason", [(6, [], "length"), (200, ["\n"], "stop")])
def test_llm_reports_counts_and_finish_reason_as_vllm_backend_does(stream, max_tokens, stop, reason):
    params = json.dumps({"temperature": 0, "max_tokens": max_tokens, "stop": stop})
    asked = [c.RETURN_FINISH_REASON, c.RETURN_NUM_INPUT_TOKENS, c.RETURN_NUM_OUTPUT_TOKENS]
    got = stream.collect(
        c.LLM.name,
        [
            tensor(grpcclient, c.LLM, c.TEXT_INPUT, "Question: What is the capital of France?\nAnswer:"),
            tensor(grpcclient, c.LLM, c.STREAM, np.array([True])),
            tensor(grpcclient, c.LLM, c.SAMPLING_PARAMETERS, params),
            *(tensor(grpcclient, c.LLM, name, np.array([True])) for name in asked),
        ],
        [c.TEXT_OUTPUT, c.FINISH_REASON, c.NUM_INPUT_TOKENS, c.NUM_OUTPUT_TOKENS],
    )
    reasons = [r.result.as_numpy(c.FINISH_REASON)[0].decode() for r in got]
    assert reasons[:-1] == [c.UNFINISHED] * (len(got) - 1) and reasons[-1] == reason
    prompts = {int(r.result.as_numpy(c.NUM_INPUT_TOKENS)[0]) for r in got}
    assert len(prompts) == 1 and 10 <= prompts.pop() <= 20  # the same count on every response
    total = sum(int(r.result.as_numpy(c.NUM_OUTPUT_TOKENS)[0]) for r in got)
    if reason == "length":
        assert total == max_tokens
    else:
        assert 1 <= total < max_tokens


def test_llm_non_streaming_over_grpc_includes_prompt(stream):
    prompt = "Question: What is the capital of France?\nAnswer:"
    got = stream.collect(
        c.LLM.name,
        [
            tensor(grpcclient, c.LLM, c.TEXT_INPUT, prompt),
            tensor(grpcclient, c.LLM, c.SAMPLING_PARAMETERS, '{"max_tokens": 8, "temperature": 0}'),
        ],
        [c.TEXT_OUTPUT],
    )
    assert len(got) == 1 and got[0].text().startswith(prompt)


def test_llm_over_http_generate_stream(triton):
    events = generate_stream_sse(
        triton.http_url,
        c.LLM.name,
        {
            c.TEXT_INPUT: "Question: What is the capital of France?\nAnswer:",
            "stream": True,
            c.SAMPLING_PARAMETERS: json.dumps({"temperature": 0, "max_tokens": 8}),
        },
    )
    assert len(events) >= 2 and all(c.TEXT_OUTPUT in e for e in events)


def test_plain_http_infer_on_a_decoupled_model_is_refused(http):
    with pytest.raises(InferenceServerException):
        http.infer(c.LLM.name, [tensor(httpclient, c.LLM, c.TEXT_INPUT, "hi")])


def test_cancelling_a_long_llm_stream_stops_generation(triton):
    before = metric_value(triton.options.host + f":{triton.options.metrics_port}", metrics.LLM_OUTPUT_TOKENS)
    s = GrpcStream(triton.grpc_url)
    s.send(
        c.LLM.name,
        [
            tensor(grpcclient, c.LLM, c.TEXT_INPUT, "Write a very long story about a lighthouse."),
            tensor(grpcclient, c.LLM, c.STREAM, np.array([True])),
            tensor(grpcclient, c.LLM, c.SAMPLING_PARAMETERS, '{"max_tokens": 2000, "ignore_eos": true}'),
        ],
        [c.TEXT_OUTPUT],
    )
    for _ in range(3):
        _result, error = s.next(timeout=60)
        assert error is None
    s.close(cancel=True)
    # The engine reports its token count when a generation ends: it must end soon after the
    # cancel, far short of the 2000 tokens it was asked for.
    metrics_url = triton.options.host + f":{triton.options.metrics_port}"
    generated = metric_after_change(metrics_url, metrics.LLM_OUTPUT_TOKENS, before) - before
    assert 3 <= generated < 200, generated


def test_tts_streams_clauses_and_round_trips_through_whisper(stream, http):
    from scipy.signal import resample_poly

    text = "Hold the reset button for ten seconds, then wait for the light. The router restarts by itself."
    got = stream.collect(c.TTS.name, [tensor(grpcclient, c.TTS, c.TEXT, text)], [c.AUDIO, c.SAMPLE_RATE])
    assert len(got) >= 2  # one response per clause, sent as each is ready
    rate = int(got[0].result.as_numpy(c.SAMPLE_RATE)[0])
    assert rate == 22050
    audio = np.concatenate([r.audio() for r in got]).astype(np.float32) / 32768.0
    audio16 = resample_poly(audio, 320, 441).astype(np.float32)
    result = http.infer(c.WHISPER_STT.name, [tensor(httpclient, c.WHISPER_STT, c.AUDIO, audio16)])
    assert word_error_rate(text, result.as_numpy(c.TRANSCRIPT)[0].decode()) <= 0.15


def voice_answer_inputs(question: str, passages: str = PASSAGES, params: str | None = None):
    inputs = [
        tensor(grpcclient, c.VOICE_ANSWER, c.QUESTION, question),
        tensor(grpcclient, c.VOICE_ANSWER, c.PASSAGES, passages),
    ]
    if params is not None:
        inputs.append(tensor(grpcclient, c.LLM, c.SAMPLING_PARAMETERS, params))
    return inputs


def test_voice_answer_streams_text_then_audio(stream):
    got = stream.collect(
        c.VOICE_ANSWER.name,
        voice_answer_inputs("What is the capital of France?"),
        [c.TEXT_OUTPUT, c.AUDIO, c.SAMPLE_RATE],
    )
    texts = [r.text() for r in got if r.text() is not None]
    audio = [r for r in got if r.audio() is not None]
    # Text comes a clause at a time (each after the grounding check), before that clause's audio.
    assert texts and "paris" in "".join(texts).lower()
    first_text = next(i for i, r in enumerate(got) if r.text() is not None)
    assert first_text < next(i for i, r in enumerate(got) if r.audio() is not None)
    assert audio and all(int(r.result.as_numpy(c.SAMPLE_RATE)[0]) == 22050 for r in audio)


def test_voice_answer_speaks_before_the_answer_ends(stream):
    # A long answer (no stop, no EOS): the first clause must be spoken while tokens still flow.
    params = json.dumps({"max_tokens": 60, "stop": [], "ignore_eos": True})
    got = stream.collect(
        c.VOICE_ANSWER.name,
        voice_answer_inputs("Tell me about Paris.", params=params),
        [c.TEXT_OUTPUT, c.AUDIO, c.SAMPLE_RATE],
    )
    text_times = [r.at for r in got if r.text() is not None]
    audio_times = [r.at for r in got if r.audio() is not None]
    assert audio_times and text_times
    assert audio_times[0] < text_times[-1]


def test_cancelling_voice_answer_cancels_the_llm(triton):
    metrics_url = triton.options.host + f":{triton.options.metrics_port}"
    before = metric_value(metrics_url, metrics.LLM_OUTPUT_TOKENS)
    s = GrpcStream(triton.grpc_url)
    params = json.dumps({"max_tokens": 1500, "stop": [], "ignore_eos": True})
    s.send(c.VOICE_ANSWER.name, voice_answer_inputs("Tell me about Paris.", params=params), [c.TEXT_OUTPUT, c.AUDIO])
    _result, error = s.next(timeout=60)
    assert error is None
    s.close(cancel=True)  # voice_answer sees it cancelled and cancels its own llm call
    generated = metric_after_change(metrics_url, metrics.LLM_OUTPUT_TOKENS, before) - before
    assert 1 <= generated < 300, generated


def test_voice_answer_under_concurrent_and_cancelled_answers(triton):
    """Four clients at once, every third answer cancelled mid-stream: each other answer must
    finish with text and audio, and no model process may die or wedge. voice_answer used
    BLS here until its stub crashed under this kind of load (see voicebot/serving/loopback.py)."""
    import threading

    from voicebot.serving.supervisor import model_stubs

    stubs_before = set(model_stubs(triton.process.pid))
    params = json.dumps({"max_tokens": 24})
    problems: list[str] = []
    finished = [0]

    def client(seed: int) -> None:
        for n in range(4):
            s = GrpcStream(triton.grpc_url)
            try:
                inputs = voice_answer_inputs(f"Question {seed}-{n}: what is the capital of France?", params=params)
                if (seed + n) % 3 == 0:
                    s.send(c.VOICE_ANSWER.name, inputs, [c.TEXT_OUTPUT, c.AUDIO])
                    _result, error = s.next(timeout=120)
                    if error is not None:
                        problems.append(f"before the cancel: {error}")
                    s.close(cancel=True)
                    continue
                got = s.collect(c.VOICE_ANSWER.name, inputs, [c.TEXT_OUTPUT, c.AUDIO, c.SAMPLE_RATE], timeout=180)
                if not any(r.text() for r in got) or not any(r.audio() is not None for r in got):
                    problems.append(f"answer {seed}-{n} lacks text or audio")
                finished[0] += 1
                s.close()
            except Exception as exc:  # a timeout or an error response: both are failures here
                problems.append(f"answer {seed}-{n}: {type(exc).__name__}: {exc}")
                s.close(cancel=True)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert not problems, problems
    assert finished[0] >= 8
    assert set(model_stubs(triton.process.pid)) == stubs_before
    # And the models still answer afterwards.
    s = GrpcStream(triton.grpc_url)
    try:
        got = s.collect(
            c.VOICE_ANSWER.name,
            voice_answer_inputs("What is the capital of France?", params=params),
            [c.TEXT_OUTPUT, c.AUDIO],
        )
    finally:
        s.close()
    assert any(r.text() for r in got)


def test_custom_metrics_are_exported(triton):
    import urllib.request

    with urllib.request.urlopen(f"http://{triton.options.host}:{triton.options.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    for name in (metrics.STT_RTF, metrics.LLM_TTFT, metrics.LLM_OUTPUT_TOKENS, metrics.TTS_FIRST_AUDIO):
        assert name in text, name
    assert f'{metrics.LLM_TTFT}_bucket{{model="{c.LLM.name}",version="1",le="0.05"}}' in text


def test_index_embedder_client_works_from_any_thread(triton):
    """The orchestrator ingests on asyncio's worker threads; the HTTP client must not care which."""
    from concurrent.futures import ThreadPoolExecutor

    from rag_index.embedders import TritonEmbedder

    embedder = TritonEmbedder(triton.http_url)
    try:
        first = embedder.embed(["the root user has user id 0"])
        with ThreadPoolExecutor(4) as pool:
            others = list(pool.map(lambda _: embedder.embed(["the root user has user id 0"]), range(8)))
    finally:
        embedder.close()
    assert first.shape == (1, c.EMBEDDING_DIM)
    for vectors in others:
        assert np.allclose(vectors, first, atol=1e-5)
