"""The front door's rules, as pure functions: Host names, same origin, tokens, request bodies."""

import pytest
from starlette.datastructures import Headers

from orchestrator.guard import HostPolicy, host_name, same_origin, token_matches
from orchestrator.protocol import ProtocolError, parse_chat_request
from voicebot.contract import ErrorCode


@pytest.mark.parametrize(
    "header, name",
    [
        ("127.0.0.1:8080", "127.0.0.1"),
        ("[::1]:8080", "::1"),
        ("Example.ORG.", "example.org"),
        ("localhost", "localhost"),
    ],
)
def test_host_name_strips_port_case_and_root_dot(header, name):
    assert host_name(header) == name


def test_host_policy_answers_to_local_names_the_bind_address_and_configured_names():
    local = HostPolicy("127.0.0.1", [])
    assert local.allows("127.0.0.1:8080") and local.allows("localhost:8080") and local.allows("[::1]:8080")
    assert not local.allows("evil.example:8080") and not local.allows(None) and not local.allows("10.0.0.5:8080")
    named = HostPolicy("127.0.0.1", ["voice.example.org"])
    assert named.allows("voice.example.org") and not named.allows("evil.example")
    anywhere = HostPolicy("0.0.0.0", [])  # every interface, nothing configured: IP literals pass, names do not
    assert anywhere.allows("10.0.0.5:8080") and anywhere.allows("[fe80::1]:80") and not anywhere.allows("evil.example")
    assert HostPolicy("127.0.0.1", ["*"]).allows("whatever.example")


def headers(**values: str) -> Headers:
    return Headers({k.replace("_", "-"): v for k, v in values.items()})


def test_same_origin_follows_origin_then_fetch_metadata():
    assert same_origin(headers(host="127.0.0.1:8080"), [])  # curl: neither header
    assert same_origin(headers(host="127.0.0.1:8080", origin="http://127.0.0.1:8080"), [])
    assert not same_origin(headers(host="127.0.0.1:8080", origin="http://evil.example"), [])
    assert not same_origin(headers(host="127.0.0.1:8080", origin="null"), [])
    assert not same_origin(headers(host="127.0.0.1:8080", origin="http://127.0.0.1:3000"), [])
    assert same_origin(headers(host="127.0.0.1:8080", origin="http://127.0.0.1:3000"), ["http://127.0.0.1:3000"])
    assert not same_origin(headers(host="127.0.0.1:8080", sec_fetch_site="cross-site"), [])
    assert not same_origin(headers(host="127.0.0.1:8080", sec_fetch_site="same-site"), [])
    assert same_origin(headers(host="127.0.0.1:8080", sec_fetch_site="same-origin"), [])


def test_token_comparison_survives_any_presented_text():
    assert token_matches(None, None) and token_matches("anything", None)
    assert token_matches("a-good-token", "a-good-token")
    assert not token_matches("\u00e9t\u00e9\ud800", "a-good-token")  # non-ASCII, even a lone surrogate
    assert not token_matches(None, "a-good-token") and not token_matches("", "a-good-token")


@pytest.mark.parametrize(
    "body, code",
    [
        (b'{"text": "\\ud800"}', ErrorCode.BAD_TEXT),
        (b'{"text": "hi", "history": ["\\ud800"]}', ErrorCode.BAD_TEXT),
        (b'{"text": "hi", "speak": "yes"}', ErrorCode.BAD_REQUEST),
        (b'{"text": "hi", "extra": 1}', ErrorCode.BAD_REQUEST),
        (b'{"text": "   "}', ErrorCode.EMPTY_TEXT),
        (b'{"text": "' + b"x" * 101 + b'"}', ErrorCode.TEXT_TOO_LONG),
        (b'{"text": ' + b"[" * 100 + b"]" * 100 + b"}", ErrorCode.TOO_DEEP),
        (b"[1]", ErrorCode.BAD_REQUEST),
    ],
)
def test_chat_bodies_are_checked_by_one_schema(body, code):
    with pytest.raises(ProtocolError) as info:
        parse_chat_request(body, max_text_chars=100, max_bytes=64 * 1024)
    assert info.value.code == code


def test_a_good_chat_body_is_normalised():
    body = parse_chat_request(b'{"text": "  Who  is root? ", "history": ["Before?"]}', 100, 64 * 1024)
    assert (body.text, body.speak, body.history) == ("Who is root?", False, ["Before?"])
