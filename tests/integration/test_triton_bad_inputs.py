"""Bad input is an error response, and the same model answers the next valid request."""

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from audio_files import encode, tone
from triton_helpers import GrpcStream, InferenceServerException, array_input, bytes_input, http_client, texts_input

from voicebot import contract as c

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def http(triton):
    client = http_client(triton.http_url)
    yield client
    client.close()  # an open keep-alive connection would hold up the server's shutdown


def valid_transcribe(http):
    data = encode(tone(1.0), 16000, "wav")
    return http.infer(c.TRANSCRIBE.name, [bytes_input(httpclient, c.AUDIO_BYTES, [data])])


BAD_UNARY = {
    "empty audio bytes": (c.TRANSCRIBE.name, lambda: [bytes_input(httpclient, c.AUDIO_BYTES, [b""])], "empty"),
    "random bytes": (
        c.AUDIO_DECODE.name,
        lambda: [bytes_input(httpclient, c.AUDIO_BYTES, [np.random.default_rng(3).bytes(4096)])],
        "not a decodable audio file",
    ),
    "audio over 60 s": (
        c.TRANSCRIBE.name,
        lambda: [bytes_input(httpclient, c.AUDIO_BYTES, [encode(tone(61.0), 16000, "flac")])],
        "60 s limit",
    ),
    "NaN samples": (
        c.WHISPER_STT.name,
        lambda: [array_input(httpclient, c.AUDIO, np.array([0.0, np.nan, 0.1], np.float32), "FP32")],
        "NaN",
    ),
    "Inf samples": (
        c.WHISPER_STT.name,
        lambda: [array_input(httpclient, c.AUDIO, np.array([0.0, np.inf], np.float32), "FP32")],
        "infinite",
    ),
    "int16-scale floats": (
        c.WHISPER_STT.name,
        lambda: [array_input(httpclient, c.AUDIO, np.full(1600, 1200.0, np.float32), "FP32")],
        "[-1, 1]",
    ),
    "raw PCM over 60 s": (
        c.WHISPER_STT.name,
        lambda: [array_input(httpclient, c.AUDIO, np.zeros(16000 * 61, np.float32), "FP32")],
        "limit",
    ),
    "unsupported language": (
        c.WHISPER_STT.name,
        lambda: [
            array_input(httpclient, c.AUDIO, tone(0.5), "FP32"),
            bytes_input(httpclient, c.LANGUAGE, ["fr"]),
        ],
        "English",
    ),
    "empty text to embed": (c.EMBEDDER.name, lambda: [texts_input(httpclient, ["ok", "  "])], "empty"),
    "too much text to embed": (c.EMBEDDER.name, lambda: [texts_input(httpclient, ["x" * 9000])], "over"),
}


@pytest.mark.parametrize("case", sorted(BAD_UNARY))
def test_bad_unary_input_is_an_error_and_the_model_keeps_serving(case, http):
    model, make_inputs, message = BAD_UNARY[case]
    with pytest.raises(InferenceServerException) as info:
        http.infer(model, make_inputs())
    assert message in str(info.value)
    assert "400" in str(info.value.status()) or "INVALID" in str(info.value.status()).upper()
    # The next valid request succeeds.
    assert valid_transcribe(http).as_numpy(c.TRANSCRIPT) is not None
    vectors = http.infer(c.EMBEDDER.name, [texts_input(httpclient, ["fine"])]).as_numpy(c.EMBEDDING)
    assert vectors.shape == (1, 1, c.EMBEDDING_DIM)


def text_inputs(**values):
    return [bytes_input(grpcclient, k, [v]) for k, v in values.items()]


BAD_STREAMS = {
    "llm empty prompt": (c.LLM.name, lambda: text_inputs(text_input="   "), "empty"),
    "llm malformed sampling_parameters": (
        c.LLM.name,
        lambda: text_inputs(text_input="hi", sampling_parameters="{not json"),
        "not valid JSON",
    ),
    "llm unknown sampling key": (
        c.LLM.name,
        lambda: text_inputs(text_input="hi", sampling_parameters='{"temprature": 0.1}'),
        "temprature",
    ),
    "tts empty text": (c.TTS.name, lambda: text_inputs(text=""), "empty"),
    "tts text over the limit": (c.TTS.name, lambda: text_inputs(text="word " * 1000), "over the limit"),
    "tts bad length_scale": (
        c.TTS.name,
        lambda: [
            *text_inputs(text="hello"),
            array_input(grpcclient, c.LENGTH_SCALE, np.array([50.0], np.float32), "FP32"),
        ],
        "length_scale",
    ),
    "voice_answer malformed passages": (
        c.VOICE_ANSWER.name,
        lambda: text_inputs(question="What?", passages="[{broken"),
        "passages is not valid JSON",
    ),
    "voice_answer empty question": (c.VOICE_ANSWER.name, lambda: text_inputs(question=" ", passages="[]"), "empty"),
    "voice_answer malformed sampling_parameters": (
        c.VOICE_ANSWER.name,
        lambda: text_inputs(question="What?", passages="[]", sampling_parameters="[1,2]"),
        "JSON object",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_STREAMS))
def test_bad_streaming_input_is_an_error_and_the_model_keeps_serving(case, triton):
    model, make_inputs, message = BAD_STREAMS[case]
    stream = GrpcStream(triton.grpc_url)
    try:
        with pytest.raises(InferenceServerException) as info:
            stream.collect(model, make_inputs(), [c.TEXT_OUTPUT] if model != c.TTS.name else [c.AUDIO])
        assert message in str(info.value)
        # Same stream, next valid request.
        if model == c.TTS.name:
            got = stream.collect(model, text_inputs(text="All good."), [c.AUDIO, c.SAMPLE_RATE])
            assert got and got[0].audio().size > 0
        elif model == c.LLM.name:
            got = stream.collect(
                model, text_inputs(text_input="Hello", sampling_parameters='{"max_tokens": 3}'), [c.TEXT_OUTPUT]
            )
            assert got
        else:
            passages = json.dumps([{"id": "1", "title": "T", "text": "The sky is blue."}])
            params = json.dumps({"max_tokens": 12})
            got = stream.collect(
                model,
                text_inputs(question="What colour is the sky?", passages=passages, sampling_parameters=params),
                [c.TEXT_OUTPUT, c.AUDIO],
            )
            assert any(r.text() for r in got)
    finally:
        stream.close()
