"""Untrusted JSON: depth, numbers and text are bounded before anything recursive runs."""

import json

import pytest

from voicebot.access import restriction_flags, token_problem, triton_key
from voicebot.contract import ErrorCode
from voicebot.jsonsafe import JsonInputError, clean_label, loads, nesting_depth, text_problem


@pytest.mark.parametrize(
    "raw, depth",
    [
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('"[[[[[[["', 0),  # brackets inside a string do not nest
        ('["\\"[[[[", [], {}]', 2),  # nor after an escaped quote
        ("[" * 100 + "]" * 100, 100),
    ],
)
def test_nesting_depth_is_over_a_limit_exactly_when_the_json_is(raw, depth):
    for limit in range(0, 40):
        assert (nesting_depth(raw, limit) > limit) == (depth > limit), limit


@pytest.mark.parametrize(
    "raw, code",
    [
        ("[" * 60_000, ErrorCode.TOO_DEEP),
        ('{"a":' * 40 + "1" + "}" * 40, ErrorCode.TOO_DEEP),
        ('{"n": ' + "9" * 5000 + "}", ErrorCode.BAD_NUMBER),
        ('{"n": 1e' + "9" * 80 + "}", ErrorCode.BAD_NUMBER),
        ('{"n": NaN}', ErrorCode.BAD_JSON),
        ('{"n": -Infinity}', ErrorCode.BAD_JSON),
        ('{"t": "\\ud800"}', ErrorCode.BAD_TEXT),
        ('{"\\udfff": 1}', ErrorCode.BAD_TEXT),
        ('{"t": "a\\u0000b"}', ErrorCode.BAD_TEXT),
        ('{"t": "a\\u009bb"}', ErrorCode.BAD_TEXT),
        (b'{"t": "\xed\xa0\x80"}', ErrorCode.BAD_TEXT),  # a surrogate encoded as UTF-8 bytes
        ('{"t": ', ErrorCode.BAD_JSON),
        ("x" * 2000, ErrorCode.TOO_LARGE),
    ],
)
def test_hostile_json_is_a_specific_client_error(raw, code):
    with pytest.raises(JsonInputError) as info:
        loads(raw, "body", max_bytes=1000 if raw == "x" * 2000 else 1 << 20)
    assert info.value.code == code


def test_ordinary_json_passes_unchanged():
    value = {"text": "Tabs\tand\nnewlines, é, 日本, emoji 🎙", "n": [1, -2.5, 1e10], "ok": True, "none": None}
    assert loads(json.dumps(value), "body", 1 << 20) == value


def test_text_problem_names_the_character():
    assert text_problem("fine\ttext\n") is None
    assert "U+0007" in text_problem("bell\x07")
    assert "surrogate" in text_problem("\ud800")
    assert text_problem("line\nbreak", allow_newlines=False) is not None


def test_clean_label_drops_controls_format_and_bidi_characters():
    assert clean_label("battery\u0000evil\u202e\u200b  name\t\n") == "batteryevil name"
    assert clean_label("<img src=x onerror=alert(1)>") == "<img src=x onerror=alert(1)>"  # inert text, kept
    assert len(clean_label("a" * 1000)) == 300


def test_triton_restriction_flags_close_admin_apis_always_and_client_apis_with_a_token():
    open_flags = restriction_flags(None, admin_key="k")
    assert open_flags == [
        "--http-restricted-api=model-repository,shared-memory,logging,trace:voicebot-admin=k",
        "--grpc-restricted-protocol=model-repository,shared-memory,logging,trace:voicebot-admin=k",
    ]
    guarded = restriction_flags("a-good-token", admin_key="k")
    key = triton_key("a-good-token")
    assert f"--http-restricted-api=inference,metadata,model-config,statistics:voicebot-token={key}" in guarded
    assert not any("a-good-token" in flag for flag in guarded)  # a derived key, never the token itself
    assert triton_key("a-good-token") != triton_key("another-token") and len(key) == 40
    assert restriction_flags(None) != restriction_flags(None)  # the admin key is random per start
    for bad in ("short", "has space in it", "colon:and=equals", "ünïcode-token"):
        assert token_problem(bad)
        with pytest.raises(ValueError):
            restriction_flags(bad)
