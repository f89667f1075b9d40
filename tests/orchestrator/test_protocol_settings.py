import json

import pytest
from pydantic import ValidationError

from orchestrator.protocol import Cancel, ProtocolError, Start, Stop, TextTurn, parse_client_event
from orchestrator.settings import Settings


def parse(obj):
    return parse_client_event(obj if isinstance(obj, str) else json.dumps(obj), max_text_chars=100)


def test_valid_events():
    start = parse({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"})
    assert start == Start(sample_rate=16000, encoding="pcm_s16le")
    assert parse({"type": "start", "encoding": "webm_opus", "sample_rate": 48000}) == Start(
        sample_rate=48000, encoding="webm_opus"
    )
    assert parse({"type": "stop"}) == Stop()
    assert parse({"type": "cancel"}) == Cancel()
    assert parse({"type": "text", "text": " hi  there "}) == TextTurn(text="hi there", speak=True)
    assert parse({"type": "text", "text": "hi", "speak": False}) == TextTurn(text="hi", speak=False)


@pytest.mark.parametrize(
    "raw, code",
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_event"),
        ({"kind": "start"}, "bad_event"),
        ({"type": "dance"}, "unknown_event"),
        ({"type": "start", "sample_rate": 44100, "encoding": "pcm_s16le"}, "bad_sample_rate"),
        ({"type": "start", "sample_rate": "16000"}, "bad_sample_rate"),
        ({"type": "start", "encoding": "aac"}, "bad_encoding"),
        ({"type": "text", "text": ""}, "empty_text"),
        ({"type": "text", "text": 5}, "bad_event"),
        ({"type": "text", "text": "x" * 101}, "text_too_long"),
        ({"type": "text", "text": "hi", "speak": "yes"}, "bad_event"),
        ("x" * 70000, "event_too_large"),
    ],
)
def test_bad_events_have_codes(raw, code):
    with pytest.raises(ProtocolError) as info:
        parse(raw)
    assert info.value.code == code


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VOICEBOT_PORT", "9999")
    monkeypatch.setenv("VOICEBOT_API_TOKEN", "s3cret-token")
    monkeypatch.setenv("VOICEBOT_INDEX_DIR", str(tmp_path))
    monkeypatch.setenv("VOICEBOT_MAX_UPLOAD_MB", "2")
    s = Settings(_env_file=None)
    assert (s.port, s.api_token, s.index_dir, s.max_upload_bytes) == (9999, "s3cret-token", tmp_path, 2 * 1024 * 1024)
    assert s.host == "127.0.0.1"  # never all interfaces unless configured


@pytest.mark.parametrize(
    "env",
    [
        {"VOICEBOT_PORT": "0"},
        {"VOICEBOT_API_TOKEN": "short"},
        {"VOICEBOT_MAX_SESSIONS": "0"},
        {"VOICEBOT_LANGUAGE": "en-US; rm"},
        {"VOICEBOT_MAX_AUDIO_SECONDS": "-1"},
    ],
)
def test_bad_settings_are_rejected(monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_blank_token_means_no_auth(monkeypatch):
    monkeypatch.setenv("VOICEBOT_API_TOKEN", "  ")
    assert Settings(_env_file=None).api_token is None
