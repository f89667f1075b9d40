"""Hostile input against the whole stack, as an attacker on this machine or a web page would send it.

Its own Triton and orchestrator, both guarded by a token. Every attack gets a specific
answer (a code, a status, a documented close) — never ``internal`` — and is followed by a
valid request on the same channel that must succeed; at the end no document is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import websockets
from hostile_files import html_nested, pdf_bomb
from orchestrator_helpers import LiveServer, VoiceClient, make_settings
from triton_helpers import GrpcStream, InferenceServerException, own_server

from rag_index import ParsedDocument, Section
from voicebot import contract as c
from voicebot.access import HTTP_TOKEN_HEADER, authorize, triton_key
from voicebot.contract import ErrorCode
from voicebot.serving.launcher import RUNTIME_DIR, TritonServer

pytestmark = pytest.mark.integration

TOKEN = "hostile-suite-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DATA = Path(__file__).resolve().parents[1] / "data"
DOCS = sorted(p for p in DATA.iterdir() if p.suffix in (".md", ".txt"))


@pytest.fixture(scope="module")
def guarded_triton():
    try:
        server = own_server(RUNTIME_DIR / "hostile", api_token=TOKEN)
    except Exception as exc:
        pytest.fail(f"tritonserver did not start: {exc}")
    yield server
    server.stop()


class SlowParser:
    """The real parser, but a file named ``slow.*`` waits until ``release`` is set."""

    def __init__(self) -> None:
        from rag_index.isolation import BoundedParser

        self.inner = BoundedParser(timeout_s=10, memory_mb=1024)
        self.waiting = threading.Event()
        self.release = threading.Event()

    def __call__(self, filename: str, data: bytes) -> ParsedDocument:
        if filename.startswith("slow."):
            self.waiting.set()
            if not self.release.wait(60):
                raise RuntimeError("never released")
            return ParsedDocument("slow", [Section("", "A slow document about nothing in particular.")])
        return self.inner(filename, data)


@pytest.fixture(scope="module")
def parser():
    return SlowParser()


@pytest.fixture(scope="module")
def server(guarded_triton, tmp_path_factory, parser):
    settings = make_settings(
        guarded_triton,
        tmp_path_factory.mktemp("hostile-index"),
        api_token=TOKEN,
        max_upload_mb=2.0,
        header_timeout_s=1.0,
        body_timeout_s=2.0,
    )
    live = LiveServer(settings, parser=parser).start()
    for doc in DOCS:
        status, body = upload(live, doc.name, doc.read_bytes())
        assert status == 201, body
    yield live
    live.stop()


# ------------------------------------------------------------------ clients


def request(
    server: LiveServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, Any]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", server.settings.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers={**AUTH, **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        if own:
            conn.close()
    try:
        return resp.status, json.loads(raw) if raw else {}
    except ValueError:
        return resp.status, raw.decode(errors="replace")


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, dict[str, str]]:
    boundary = "hostile-boundary-7d1"
    parts = b""
    for name, data in files:
        parts += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode("utf-8", "surrogateescape")
            + data
            + b"\r\n"
        )
    return parts + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload(server: LiveServer, name: str, data: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    body, form = multipart([(name, data)])
    return request(server, "POST", "/v1/documents", body, {**form, **(headers or {})})


def documents(server: LiveServer) -> dict[str, dict]:
    status, listing = request(server, "GET", "/v1/documents")
    assert status == 200, listing
    return {d["id"]: d for d in listing["documents"]}


def chat(server: LiveServer, payload: Any, conn: http.client.HTTPConnection | None = None) -> tuple[int, Any]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return request(server, "POST", "/v1/chat", body, {"Content-Type": "application/json"}, conn)


def sse_events(text: str) -> list[dict]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def ws_url(server: LiveServer) -> str:
    return f"{server.ws_url}?token={TOKEN}"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ------------------------------------------------------------------ WebSocket


def surrogate(text: str) -> str:
    """A JSON text field holding a lone surrogate escape (what json.dumps cannot write)."""
    return json.dumps({"type": "text", "text": "PLACEHOLDER", "speak": False}).replace("PLACEHOLDER", text)


WS_ATTACKS: list[tuple[str, str | bytes, str]] = [
    ("5000-digit integer", '{"type":"start","sample_rate":' + "9" * 5000 + ',"encoding":"pcm_s16le"}', "bad_number"),
    ("60,000 brackets", "[" * 60_000, "too_deep"),
    ("nested objects", '{"a":' * 40 + "1" + "}" * 40, "too_deep"),
    ("lone surrogate", surrogate("\\ud800 When was it?"), "bad_text"),
    ("NUL in the question", surrogate("\\u0000 hello"), "bad_text"),
    ("NaN literal", '{"type":"start","sample_rate":NaN}', "bad_json"),
    ("truncated JSON", '{"type":"text","text":"hi', "bad_json"),
    ("unknown field", '{"type":"stop","now":true}', "bad_event"),
    ("speak as a string", '{"type":"text","text":"hi","speak":"yes"}', "bad_event"),
    ("sample rate as a string", '{"type":"start","sample_rate":"16000"}', "bad_sample_rate"),
    ("sample rate absurd for wav", '{"type":"start","encoding":"wav","sample_rate":1000000000}', "bad_sample_rate"),
    ("text as a list", '{"type":"text","text":["a"]}', "bad_event"),
    ("type not a string", '{"type":5}', "bad_event"),
    ("array, not object", "[1,2,3]", "bad_event"),
    ("control message over 64 KiB", '{"type":"text","text":"' + "a" * 70_000 + '"}', "event_too_large"),
    ("binary frame over the frame limit", b"\x00" * 200_000, "frame_too_large"),
    ("question over the limit", surrogate("x" * 2001), "text_too_long"),
    ("blank question", surrogate(" \\t\\n "), "empty_text"),
]


@pytest.mark.parametrize("name, attack, code", WS_ATTACKS, ids=[a[0] for a in WS_ATTACKS])
def test_websocket_attack_is_a_specific_error_and_the_session_lives(server, name, attack, code):
    async def scenario() -> tuple[str, str]:
        client = await VoiceClient.connect(ws_url(server))
        try:
            await client.ws.send(attack)
            error = (await client.until("error", timeout=30)).of("error")[0]
            await client.send({"type": "cancel"})  # the same session still answers
            await client.until("cancelled", timeout=30)
            return error["code"], error["message"]
        finally:
            await client.close()

    got, message = run(scenario())
    assert got == code, message
    assert got != ErrorCode.INTERNAL


def test_websocket_message_over_the_hard_limit_closes_with_1009_and_the_next_session_works(server):
    async def scenario() -> tuple[int | None, list[str]]:
        ws = await websockets.connect(ws_url(server), max_size=1 << 22)
        await ws.send(b"\x00" * (2 << 20))
        with contextlib.suppress(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30)
        await ws.wait_closed()
        code = ws.close_code
        client = await VoiceClient.connect(ws_url(server))
        try:
            await client.send({"type": "cancel"})
            return code, (await client.until("cancelled")).types()
        finally:
            await client.close()

    code, types = run(scenario())
    assert code == 1009  # documented: over 1 MiB the protocol library closes "message too big"
    assert types == ["cancelled"]


def test_a_question_at_the_character_limit_gets_an_answer_or_a_clear_error(server):
    question = ("How long does the lamp take to charge when the battery is completely empty? " * 30)[:2000]

    async def scenario() -> list[dict]:
        client = await VoiceClient.connect(ws_url(server))
        try:
            await client.send({"type": "text", "text": question, "speak": False})
            log = await client.until("done", "error", timeout=120)
            return [r.event for r in log.items]
        finally:
            await client.close()

    events = run(scenario())
    last = events[-1]
    tokens = "".join(e["text"] for e in events if e["type"] == "token")
    if last["type"] == "done":
        assert tokens.strip(), "a turn that ends in done must have said something"
    else:
        assert last["code"] in (ErrorCode.NO_ANSWER, ErrorCode.INVALID_INPUT), last


def test_websocket_from_a_foreign_origin_host_or_token_is_refused(server):
    async def close_code(url: str, headers: dict[str, str]) -> int | None:
        ws = await websockets.connect(url, additional_headers=headers)
        with contextlib.suppress(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        return ws.close_code

    async def scenario() -> tuple[Any, ...]:
        origin = await close_code(ws_url(server), {"Origin": "http://evil.example"})
        token = await close_code(f"{server.ws_url}?token=%C3%A9t%C3%A9-wrong", {})
        # DNS rebinding: the page's own name in Host, this machine's address underneath.
        sock = socket.create_connection(("127.0.0.1", server.settings.port))
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"ws://evil.example:{server.settings.port}/v1/voice?token={TOKEN}", sock=sock)
        sock.close()
        return origin, token, refused.value.response.status_code

    origin, token, host = run(scenario())
    assert origin == 4403 and token == 4401 and host == 403


# ------------------------------------------------------------------ REST


REST_ATTACKS: list[tuple[str, bytes, int, str]] = [
    ("lone surrogate", b'{"text": "\\ud800 When was it?", "speak": false}', 422, "bad_text"),
    ("lone surrogate in history", b'{"text": "When?", "history": ["\\ud800"]}', 422, "bad_text"),
    ("speak as a string", b'{"text": "When?", "speak": "yes"}', 422, "bad_request"),
    ("unknown field", b'{"text": "When?", "stream": true}', 422, "bad_request"),
    ("deep nesting", b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}", 422, "too_deep"),
    ("not JSON", b"text=hello", 422, "bad_json"),
    ("truncated JSON", b'{"text": "hel', 422, "bad_json"),
    ("a list", b'["When?"]', 422, "bad_request"),
    ("history too long", json.dumps({"text": "When?", "history": ["a"] * 11}).encode(), 422, "bad_request"),
    ("huge integer", b'{"text": "When?", "speak": ' + b"1" * 4000 + b"}", 422, "bad_number"),
    ("question over the limit", json.dumps({"text": "x" * 2001}).encode(), 422, "text_too_long"),
]


@pytest.mark.parametrize("name, body, status, code", REST_ATTACKS, ids=[a[0] for a in REST_ATTACKS])
def test_chat_attack_is_a_specific_4xx_and_the_connection_goes_on(server, name, body, status, code):
    conn = http.client.HTTPConnection("127.0.0.1", server.settings.port, timeout=60)
    try:
        got, reply = chat(server, body, conn)
        assert (got, reply["code"]) == (status, code), reply
        # The same keep-alive connection serves the next request.
        assert request(server, "GET", "/v1/documents", conn=conn)[0] == 200
    finally:
        conn.close()


def test_request_bodies_are_bounded_whatever_their_framing(server):
    status, reply = chat(server, b"{" + b" " * (20 << 20) + b"}")
    assert (status, reply["code"]) == (413, "too_large")
    # No Content-Length: the body is counted as it arrives.
    conn = http.client.HTTPConnection("127.0.0.1", server.settings.port, timeout=60)
    try:
        conn.putrequest("POST", "/v1/chat")
        for key, value in {**AUTH, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}.items():
            conn.putheader(key, value)
        conn.endheaders()
        chunk = b" " * 65536
        with contextlib.suppress(OSError):
            for _ in range(8):
                conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        assert resp.status == 413 and json.loads(resp.read())["code"] == "too_large"
    finally:
        conn.close()
    assert request(server, "GET", "/v1/documents")[0] == 200


def test_slow_clients_are_cut_off(server):
    # Headers dribbled in: the connection is closed once the header deadline (1 s here) passes.
    with socket.create_connection(("127.0.0.1", server.settings.port), timeout=15) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        began = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server, not by our 15 s timeout
        assert time.monotonic() - began < 14
    # A body that never arrives: 408 once the body deadline (2 s here) passes.
    with socket.create_connection(("127.0.0.1", server.settings.port), timeout=15) as sock:
        head = f"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        sock.sendall((head + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{").encode())
        reply = b""
        while chunk := sock.recv(4096):  # the server closes the connection after its answer
            reply += chunk
        reply = reply.decode()
        assert reply.startswith("HTTP/1.1 408") and '"too_slow"' in reply, reply
    # Answered before its body is read (no token here): the connection is closed, not kept
    # open to swallow a body dribbled in at the client's pace.
    auth = f"Authorization: Bearer {TOKEN}\r\n"
    for head in (
        "POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 262144\r\n\r\n{",
        f"POST /v1/chat HTTP/1.1\r\nHost: evil.example\r\n{auth}Content-Length: 9\r\n\r\n{{",
        f"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 9999999\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", server.settings.port), timeout=15) as sock:
            sock.sendall(head.encode())
            reply = b""
            while chunk := sock.recv(4096):  # ends when the server closes; a kept-open socket times out
                reply += chunk
            assert reply.split(b" ", 2)[1] in (b"401", b"413", b"421"), reply[:80]
    assert request(server, "GET", "/v1/documents")[0] == 200


UPLOAD_ATTACKS: list[tuple[str, str, Callable[[], bytes], int, str]] = [
    (
        "PDF whose page inflates to 80 MiB",
        "bomb.pdf",
        lambda: pdf_bomb(80 << 20),
        413,
        "too_large",
    ),
    (
        "random bytes named .txt",
        "noise.txt",
        lambda: np.random.default_rng(7).bytes(50_000),
        415,
        "unsupported_document",
    ),
    ("text blocks nested 4000 deep", "deep.html", lambda: html_nested("blockquote", 4000), 422, "too_deep"),
    ("not a PDF", "fake.pdf", lambda: b"GIF89a" + b"\x00" * 100, 415, "unsupported_document"),
    ("unsupported type", "tool.exe", lambda: b"MZ" + b"\x00" * 100, 415, "unsupported_document"),
    ("empty file", "empty.txt", lambda: b"", 422, "bad_request"),
]


@pytest.mark.parametrize("name, filename, make, status, code", UPLOAD_ATTACKS, ids=[a[0] for a in UPLOAD_ATTACKS])
def test_hostile_document_is_the_clients_error_and_nothing_is_lost(server, name, filename, make, status, code):
    before = documents(server)
    got, reply = upload(server, filename, make())
    assert (got, reply["code"]) == (status, code), reply
    assert documents(server) == before


def test_markup_nested_4000_levels_is_read_in_linear_time(server):
    # 4000 nested <div>s (not text blocks): read in one pass, indexed, searchable.
    got, reply = upload(server, "nested-divs.html", html_nested("div", 4000))
    assert got == 201, reply
    try:
        assert reply["document"]["chunks"] >= 1
    finally:
        assert request(server, "DELETE", f"/v1/documents/{reply['document']['id']}")[0] == 204


def test_a_slow_document_does_not_hold_up_the_others(server, parser):
    results: dict[str, Any] = {}

    def slow_upload() -> None:
        results["slow"] = upload(server, "slow.txt", b"whatever the slow parser returns")

    worker = threading.Thread(target=slow_upload)
    worker.start()
    try:
        assert parser.waiting.wait(30), "the slow upload never reached its parser"
        # Parsing happens outside the ingest lock: a small upload goes through meanwhile.
        status, quick = upload(server, "quick.txt", b"The kettle in the kitchen boils in ninety seconds.")
        assert status == 201, quick
        assert "slow" not in results  # still parsing
    finally:
        parser.release.set()
        worker.join(60)
    assert results["slow"][0] == 201, results["slow"]
    for reply in (quick, results["slow"][1]):
        assert request(server, "DELETE", f"/v1/documents/{reply['document']['id']}")[0] == 204


def test_titles_and_names_lose_control_characters_and_paths(server):
    got, reply = upload(server, "../../etc/battery\u202e\u0007evil<img src=x onerror=alert(1)>.txt", b"Plain words.")
    assert got == 201, reply
    doc = reply["document"]
    try:
        for field in ("title", "source"):
            assert not any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 or ch == "\u202e" for ch in doc[field]), doc
        assert "/" not in doc["source"] and ".." not in doc["source"]
    finally:
        assert request(server, "DELETE", f"/v1/documents/{doc['id']}")[0] == 204


def test_multipart_with_many_files_is_refused(server):
    body, form = multipart([("a.txt", b"one"), ("b.txt", b"two")])
    status, reply = request(server, "POST", "/v1/documents", body, form)
    assert (status, reply["code"]) == (422, "bad_request"), reply


def test_cross_site_writes_and_foreign_hosts_are_refused(server):
    before = documents(server)
    doc = b"Cross-site content that must never be indexed."
    assert upload(server, "x.txt", doc, {"Origin": "http://evil.example"})[1]["code"] == "cross_origin"
    assert upload(server, "x.txt", doc, {"Origin": "null"})[1]["code"] == "cross_origin"
    assert upload(server, "x.txt", doc, {"Sec-Fetch-Site": "cross-site"})[1]["code"] == "cross_origin"
    some_id = next(iter(before))
    status, reply = request(server, "DELETE", f"/v1/documents/{some_id}", headers={"Origin": "http://evil.example"})
    assert (status, reply["code"]) == (403, "cross_origin")
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host.
    status, reply = request(server, "GET", "/v1/documents", headers={"Host": f"evil.example:{server.settings.port}"})
    assert (status, reply["code"]) == (421, "bad_host")
    assert documents(server) == before
    # The server's own page (same origin) may write.
    origin = {"Origin": f"http://127.0.0.1:{server.settings.port}"}
    status, reply = upload(server, "same-origin.txt", b"Same origin writes are fine.", origin)
    assert status == 201, reply
    assert request(server, "DELETE", f"/v1/documents/{reply['document']['id']}", headers=origin)[0] == 204


def test_auth_covers_the_schema_and_survives_odd_tokens(server):
    assert request(server, "GET", "/openapi.json")[0] == 200
    assert request(server, "GET", "/openapi.json", headers={"Authorization": ""})[0] == 401
    assert request(server, "GET", "/docs")[0] == 404  # Swagger UI would need a CDN
    for odd in ("Bearer \u00e9t\u00e9", "Bearer " + "x" * 5000, "Basic abc", "Bearer"):
        status, reply = request(server, "GET", "/v1/documents", headers={"Authorization": odd})
        assert (status, reply["code"]) == (401, "unauthorized"), odd


# ------------------------------------------------------------------ Triton, called directly


def grpc_client(triton: TritonServer) -> Any:
    return authorize(grpcclient.InferenceServerClient(triton.grpc_url), TOKEN, "grpc")


TRITON_ATTACKS: list[tuple[str, str, dict[str, bytes], str]] = [
    (
        "llm: stop nested 2000 deep",
        c.LLM.name,
        {c.TEXT_INPUT: b"Hello", c.SAMPLING_PARAMETERS: b'{"stop": ' + b"[" * 2000 + b"]" * 2000 + b"}"},
        "nested more than",
    ),
    (
        "llm: lone surrogate stop",
        c.LLM.name,
        {c.TEXT_INPUT: b"Hi", c.SAMPLING_PARAMETERS: b'{"stop":["\\ud800"]}'},
        "surrogate",
    ),
    ("llm: invalid UTF-8 prompt", c.LLM.name, {c.TEXT_INPUT: b"\xed\xa0\x80 hi"}, "UTF-8"),
    (
        "voice_answer: passages nested",
        c.VOICE_ANSWER.name,
        {c.QUESTION: b"When?", c.PASSAGES: b"[" * 3000 + b"]" * 3000},
        "nested more than",
    ),
    (
        "voice_answer: history nested",
        c.VOICE_ANSWER.name,
        {c.QUESTION: b"When?", c.PASSAGES: b"[]", c.HISTORY: b'[["' + b"[" * 100 + b'"]]'},
        "history",
    ),
    (
        "voice_answer: passage title not text",
        c.VOICE_ANSWER.name,
        {c.QUESTION: b"When?", c.PASSAGES: b'[{"text": "t", "title": {"a": 1}}]'},
        "title",
    ),
]


@pytest.mark.parametrize("name, model, inputs, message", TRITON_ATTACKS, ids=[a[0] for a in TRITON_ATTACKS])
def test_triton_model_attack_is_invalid_arg_and_the_model_serves_on(guarded_triton, name, model, inputs, message):
    stream = GrpcStream(guarded_triton.grpc_url, token=TOKEN)
    try:
        tensors = c.MODELS_BY_NAME[model].infer_inputs(grpcclient, inputs)
        with pytest.raises(InferenceServerException) as info:
            stream.collect(model, tensors, [c.TEXT_OUTPUT], timeout=60)
        text = str(info.value)  # a stream's error carries its message, not its status
        assert message in text and "internal error" not in text, text
        sampling = b'{"max_tokens": 4, "temperature": 0}'
        valid = c.LLM.infer_inputs(
            grpcclient, {c.TEXT_INPUT: "Question: What is two plus two?\nAnswer:", c.SAMPLING_PARAMETERS: sampling}
        )
        assert stream.collect(c.LLM.name, valid, [c.TEXT_OUTPUT], timeout=60)
    finally:
        stream.close()


def test_triton_http_with_a_truncated_body_keeps_serving(guarded_triton):
    # Triton's own HTTP frontend parses the body (rapidjson) and answers a parse error with 500 —
    # upstream behaviour in 2.51 and later (TritonJson reports it as INTERNAL). What we can hold it
    # to: a specific message, no crash, the next request served.
    conn = http.client.HTTPConnection(*guarded_triton.http_url.split(":"), timeout=30)
    headers = {HTTP_TOKEN_HEADER: triton_key(TOKEN), "Content-Type": "application/json"}
    text = c.EMBEDDER.input(c.TEXT)
    body = json.dumps({"inputs": [{"name": text.name, "shape": [1, 1], "datatype": text.dtype, "data": ["hi"]}]})
    try:
        conn.request("POST", f"/v2/models/{c.EMBEDDER.name}/infer", body[:-12], headers)
        resp = conn.getresponse()
        assert resp.status in (400, 500) and b"failed to parse the request JSON" in resp.read()
    finally:
        conn.close()
    client = grpc_client(guarded_triton)
    try:
        inputs = c.EMBEDDER.infer_inputs(grpcclient, {c.TEXT: ["still serving"]})
        assert client.infer(c.EMBEDDER.name, inputs).as_numpy(c.EMBEDDING).shape == (1, 1, c.EMBEDDING_DIM)
    finally:
        client.close()


# ------------------------------------------------------------------ after all of it


def test_after_every_attack_a_spoken_answer_works_and_no_document_is_lost(server):
    async def scenario() -> list[str]:
        client = await VoiceClient.connect(ws_url(server))
        try:
            await client.send({"type": "text", "text": "How long does the lamp take to charge?", "speak": True})
            return (await client.until("done", "error", timeout=180)).types()
        finally:
            await client.close()

    types = run(scenario())
    assert types[-1] == "done" and "token" in types and "audio" in types, types
    assert sorted(d["source"] for d in documents(server).values()) == sorted(p.name for p in DOCS)
