"""Bad input is an error response, and the same model answers the next valid request."""

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from audio_files import encode, tone
from triton_helpers import GrpcStream, InferenceServerException, http_client, tensor

from voicebot import contract as c

LLM, TTS, ANSWER = c.LLM.infer_inputs, c.TTS.infer_inputs, c.VOICE_ANSWER.infer_inputs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def http(triton):
    client = http_client(triton.http_url)
    yield client
    client.close()  # an open keep-alive connection would hold up the server's shutdown


def valid_transcribe(http):
    data = encode(tone(1.0), 16000, "wav")
    return http.infer(c.TRANSCRIBE.name, [tensor(httpclient, c.AUDIO_DECODE, c.AUDIO_BYTES, data)])


BAD_UNARY = {
    "empty audio bytes": (c.TRANSCRIBE.name, lambda: [tensor(httpclient, c.AUDIO_DECODE, c.AUDIO_BYTES, b"")], "empty"),
    "random bytes": (
        c.AUDIO_DECODE.name,
        lambda: [tensor(httpclient, c.AUDIO_DECODE, c.AUDIO_BYTES, np.random.default_rng(3).bytes(4096))],
        "not a decodable audio file",
    ),
    "audio over 60 s": (
        c.TRANSCRIBE.name,
        lambda: [tensor(httpclient, c.AUDIO_DECODE, c.AUDIO_BYTES, encode(tone(61.0), 16000, "flac"))],
        "60 s limit",
    ),
    "NaN samples": (
        c.WHISPER_STT.name,
        lambda: [tensor(httpclient, c.WHISPER_STT, c.AUDIO, np.array([0.0, np.nan, 0.1], np.float32))],
        "NaN",
    ),
    "Inf samples": (
        c.WHISPER_STT.name,
        lambda: [tensor(httpclient, c.WHISPER_STT, c.AUDIO, np.array([0.0, np.inf], np.float32))],
        "infinite",
    ),
    "int16-scale floats": (
        c.WHISPER_STT.name,
        lambda: [tensor(httpclient, c.WHISPER_STT, c.AUDIO, np.full(1600, 1200.0, np.float32))],
        "[-1, 1]",
    ),
    "raw PCM over 60 s": (
        c.WHISPER_STT.name,
        lambda: [tensor(httpclient, c.WHISPER_STT, c.AUDIO, np.zeros(16000 * 61, np.float32))],
        "limit",
    ),
    "unsupported language": (
        c.WHISPER_STT.name,
        lambda: [
            tensor(httpclient, c.WHISPER_STT, c.AUDIO, tone(0.5)),
            tensor(httpclient, c.WHISPER_STT, c.LANGUAGE, "fr"),
        ],
        "English",
    ),
    "recognition prompt over its limit": (
        c.WHISPER_STT.name,
        lambda: [
            tensor(httpclient, c.WHISPER_STT, c.AUDIO, tone(0.5)),
            tensor(httpclient, c.WHISPER_STT, c.PROMPT, "x" * (c.MAX_STT_PROMPT_CHARS + 1)),
        ],
        "over the limit",
    ),
    "empty text to embed": (c.EMBEDDER.name, lambda: [tensor(httpclient, c.EMBEDDER, c.TEXT, ["ok", "  "])], "empty"),
    "too much text to embed": (c.EMBEDDER.name, lambda: [tensor(httpclient, c.EMBEDDER, c.TEXT, ["x" * 9000])], "over"),
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
    vectors = http.infer(c.EMBEDDER.name, [tensor(httpclient, c.EMBEDDER, c.TEXT, ["fine"])]).as_numpy(c.EMBEDDING)
    assert vectors.shape == (1, 1, c.EMBEDDING_DIM)


BAD_STREAMS = {
    "llm empty prompt": (c.LLM.name, lambda: LLM(grpcclient, {c.TEXT_INPUT: "   "}), "empty"),
    "llm malformed sampling_parameters": (
        c.LLM.name,
        lambda: LLM(grpcclient, {c.TEXT_INPUT: "hi", c.SAMPLING_PARAMETERS: "{not json"}),
        "not valid JSON",
    ),
    "llm unknown sampling key": (
        c.LLM.name,
        lambda: LLM(grpcclient, {c.TEXT_INPUT: "hi", c.SAMPLING_PARAMETERS: '{"temprature": 0.1}'}),
        "temprature",
    ),
    "tts empty text": (c.TTS.name, lambda: TTS(grpcclient, {c.TEXT: ""}), "empty"),
    "tts text over the limit": (
        c.TTS.name,
        lambda: TTS(grpcclient, {c.TEXT: "word " * 1000}),
        "over the limit",
    ),
    "tts bad length_scale": (
        c.TTS.name,
        lambda: [
            *TTS(grpcclient, {c.TEXT: "hello"}),
            tensor(grpcclient, c.TTS, c.LENGTH_SCALE, np.array([50.0], np.float32)),
        ],
        c.LENGTH_SCALE,
    ),
    "voice_answer malformed passages": (
        c.VOICE_ANSWER.name,
        lambda: ANSWER(grpcclient, {c.QUESTION: "What?", c.PASSAGES: "[{broken"}),
        "passages is not valid JSON",
    ),
    "voice_answer empty question": (
        c.VOICE_ANSWER.name,
        lambda: ANSWER(grpcclient, {c.QUESTION: " ", c.PASSAGES: "[]"}),
        "empty",
    ),
    "voice_answer malformed sampling_parameters": (
        c.VOICE_ANSWER.name,
        lambda: c.VOICE_ANSWER.infer_inputs(
            grpcclient, {c.QUESTION: "What?", c.PASSAGES: "[]", c.SAMPLING_PARAMETERS: "[1,2]"}
        ),
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
            got = stream.collect(model, TTS(grpcclient, {c.TEXT: "All good."}), [c.AUDIO, c.SAMPLE_RATE])
            assert got and got[0].audio().size > 0
        elif model == c.LLM.name:
            got = stream.collect(
                model,
                LLM(grpcclient, {c.TEXT_INPUT: "Hello", c.SAMPLING_PARAMETERS: '{"max_tokens": 3}'}),
                [c.TEXT_OUTPUT],
            )
            assert got
        else:
            passages = json.dumps([{"id": "1", "title": "T", "text": "The sky is blue."}])
            params = json.dumps({"max_tokens": 12})
            got = stream.collect(
                model,
                c.VOICE_ANSWER.infer_inputs(
                    grpcclient,
                    {c.QUESTION: "What colour is the sky?", c.PASSAGES: passages, c.SAMPLING_PARAMETERS: params},
                ),
                [c.TEXT_OUTPUT, c.AUDIO],
            )
            assert any(r.text() for r in got)
    finally:
        stream.close()
