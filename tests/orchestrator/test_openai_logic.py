"""The OpenAI-compatible layer's own logic: models, request mapping, subtitles, audio encoding."""

import io
import json

import av
import numpy as np
import pytest

from orchestrator.audio_out import PCM_RATE, SpeechEncoder, resample_pcm16, wav_header
from orchestrator.openai_api import (
    CompletionsBody,
    OpenAIError,
    _completion_inputs,
    error_type,
    finish_reason,
    is_openai_path,
    resolve_model,
    subtitles,
    usage_of,
)
from orchestrator.realtime import realtime_usage
from orchestrator.settings import Settings

RATE = 22050


def tone(seconds: float, rate: int = RATE) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


def settings(**overrides) -> Settings:
    return Settings(_env_file=None, **overrides)


def completion(**fields) -> CompletionsBody:
    return CompletionsBody.model_validate({"model": "voicebot", **fields})


def test_models_resolve_by_id_and_by_the_names_stock_clients_send():
    assert resolve_model("whisper-1", "transcription").id == "voicebot-whisper"
    assert resolve_model("voicebot", "chat").id == "voicebot"
    with pytest.raises(OpenAIError) as unknown:
        resolve_model("gpt-5", "chat")
    assert unknown.value.status_code == 404 and unknown.value.code == "model_not_found"
    with pytest.raises(OpenAIError) as wrong_task:
        resolve_model("tts-1", "chat")
    assert wrong_task.value.status_code == 400 and "voicebot" in wrong_task.value.detail
    with pytest.raises(OpenAIError):
        resolve_model(None, "chat")


def test_error_types_and_paths():
    assert [error_type(s) for s in (400, 401, 404, 429, 503)] == [
        "invalid_request_error",
        "authentication_error",
        "not_found_error",
        "rate_limit_error",
        "server_error",
    ]
    assert is_openai_path("/v1/chat/completions") and is_openai_path("/v1/audio/speech")
    assert not is_openai_path("/v1/chat") and not is_openai_path("/v1/documents")


def test_completion_maps_the_last_user_message_earlier_questions_and_sampling():
    body = completion(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What are  file triggers?"},
            {"role": "assistant", "content": "They run on file changes."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "And when"}, {"type": "text", "text": "do they run?"}],
            },
        ],
        max_tokens=30,
        max_completion_tokens=20,
        temperature=0,
        stop="\n\n",
    )
    question, history, sampling = _completion_inputs(body, settings())
    assert question == "And when do they run?"
    assert history == ["What are file triggers?"]  # system prompts and answers do not enter the prompt
    assert json.loads(sampling) == {"max_tokens": 20, "temperature": 0, "stop": ["\n\n"]}
    _, _, none = _completion_inputs(completion(messages=[{"role": "user", "content": "hi"}]), settings())
    assert none == ""  # the prompt format's own defaults


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"tool_choice": "required"}, "tools"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"messages": [{"role": "assistant", "content": "hello"}]}, "messages"),
        ({"messages": [{"role": "user", "content": " \n "}]}, "messages[-1].content"),
        ({"messages": [{"role": "user", "content": "bad \x00 text"}]}, "messages[-1].content"),
    ],
)
def test_what_the_pipeline_cannot_honour_is_refused(fields, param):
    body = completion(**{"messages": [{"role": "user", "content": "hi"}], **fields})
    with pytest.raises(OpenAIError) as exc:
        _completion_inputs(body, settings())
    assert exc.value.status_code == 400 and exc.value.param == param


def test_usage_and_finish_reason_come_from_the_done_events_counts():
    done = {"type": "done", "usage": {"prompt_tokens": 412, "completion_tokens": 37, "finish_reason": "length"}}
    assert usage_of(done) == {"usage": {"prompt_tokens": 412, "completion_tokens": 37, "total_tokens": 449}}
    assert finish_reason(done) == "length"
    assert realtime_usage(done) == {"usage": {"total_tokens": 449, "input_tokens": 412, "output_tokens": 37}}
    stopped = {"usage": {**done["usage"], "finish_reason": "stop"}}
    assert finish_reason(stopped) == "stop"
    # No counts reported: no usage at all rather than a made-up one, and "stop".
    assert usage_of({"type": "done"}) == {} == realtime_usage({}) and finish_reason({}) == "stop"


def test_history_follows_the_configured_number_of_turns():
    messages = [{"role": "user", "content": f"question {n}"} for n in range(6)]
    _, history, _ = _completion_inputs(completion(messages=messages), settings(history_turns=2))
    assert history == ["question 3", "question 4"]
    _, none, _ = _completion_inputs(completion(messages=messages), settings(history_turns=0))
    assert none == []


def test_subtitles_in_srt_and_vtt():
    segments = [{"start": 0.0, "end": 1.234, "text": " Hello."}, {"start": 61.5, "end": 3725.0, "text": "World"}]
    assert subtitles(segments, "srt") == (
        "1\n00:00:00,000 --> 00:00:01,234\nHello.\n\n2\n00:01:01,500 --> 01:02:05,000\nWorld\n"
    )
    assert subtitles(segments, "vtt").startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.234\nHello.\n")


def decode(data: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        return sum(f.samples for f in container.decode(stream)), stream.rate


@pytest.mark.parametrize("fmt", ["mp3", "opus", "flac", "wav"])
def test_encoders_stream_chunks_into_one_playable_file(fmt):
    encoder = SpeechEncoder(fmt, RATE)
    parts = [encoder.encode(tone(0.5)) for _ in range(4)] + [encoder.finish()]
    samples, rate = decode(b"".join(parts))
    assert abs(samples / rate - 2.0) < 0.1  # two seconds in, two seconds out (codec padding aside)
    if fmt != "opus":  # Ogg holds pages back until they fill; the others give bytes per chunk
        assert parts[0]


def test_pcm_is_24_khz_and_wav_says_its_rate():
    pcm = SpeechEncoder("pcm", RATE).encode(tone(1.0))
    assert len(pcm) // 2 == PCM_RATE
    assert len(resample_pcm16(tone(1.0), RATE, RATE)) == 2 * RATE
    header = wav_header(RATE)
    assert header[:4] == b"RIFF" and int.from_bytes(header[24:28], "little") == RATE and len(header) == 44
    with pytest.raises(ValueError):
        SpeechEncoder("aiff", RATE)


def test_an_encoder_closed_early_releases_its_container():
    encoder = SpeechEncoder("mp3", RATE)
    encoder.encode(tone(0.2))
    encoder.close()
    assert encoder._container is None
    encoder.close()  # twice is fine: a stream can end in more than one way
