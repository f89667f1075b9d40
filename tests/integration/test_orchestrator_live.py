"""The orchestrator on a real uvicorn, against the real Triton, driven by a websockets client."""

import asyncio
import contextlib
import json
import time

import httpx
import pytest
from audio_files import encode
from conftest import TRIGGERS_DOC, USERS_DOC, wav_to_float
from orchestrator_helpers import LiveServer, TurnLog, VoiceClient, make_settings, pcm_frames
from speech_corpus import GANNET_QUESTION
from triton_helpers import http_client

from voicebot import contract as c

pytestmark = pytest.mark.integration

TOKEN = "integration-test-token"


def http(method: str, url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict | str]:
    resp = httpx.request(method, url, content=data, headers=headers, timeout=120)
    try:
        return resp.status_code, resp.json() if resp.content else {}
    except ValueError:
        return resp.status_code, resp.text


def upload(base: str, filename: str, data: bytes, headers: dict | None = None) -> tuple[int, dict | str]:
    """A multipart upload as any HTTP client sends it (httpx builds the body)."""
    resp = httpx.post(f"{base}/v1/documents", files={"file": (filename, data)}, headers=headers, timeout=300)
    try:
        return resp.status_code, resp.json()
    except ValueError:
        return resp.status_code, resp.text


@pytest.fixture(scope="module")
def server(triton, tmp_path_factory):
    live = LiveServer(make_settings(triton, tmp_path_factory.mktemp("index"), max_upload_mb=1.0)).start()
    for doc in (USERS_DOC, TRIGGERS_DOC):
        status, body = upload(live.base, doc.name, doc.read_bytes())
        assert status == 201, body
    yield live
    live.stop()


def run(coro):
    return asyncio.run(coro)


def test_health_ready_documents_and_metrics(server):
    assert http("GET", f"{server.base}/healthz") == (200, {"status": "ok"})
    status, ready = http("GET", f"{server.base}/readyz")
    assert status == 200 and ready["ready"] and all(ready["models"].values())
    status, listing = http("GET", f"{server.base}/v1/documents")
    assert status == 200 and {d["source"] for d in listing["documents"]} == {USERS_DOC.name, TRIGGERS_DOC.name}
    assert listing["chunks"] >= 4 and listing["search"] == "flat"
    # Uploading the same file again is idempotent.
    status, again = upload(server.base, "copy.html", USERS_DOC.read_bytes())
    assert status == 200 and not again["created"]


def test_spoken_question_streams_every_stage(server, speak):
    frames = pcm_frames(speak("What is the user ID of the root user?"))

    async def scenario() -> TurnLog:
        client = await VoiceClient.connect(server.ws_url)
        try:
            log = await client.speak(frames)
            log.items += (await client.until("done", "error")).items
            return log
        finally:
            await client.close()

    log = run(scenario())
    partials = [e for e in log.of("transcript") if not e["final"]]
    finals = [e for e in log.of("transcript") if e["final"]]
    assert partials, "no partial transcript while speaking"
    assert len(finals) == 1 and "root" in finals[0]["text"].lower()
    citations = log.of("citations")[0]["items"]
    assert citations and citations[0]["source"] == USERS_DOC.name
    assert {"id", "title", "source", "text", "score"} <= set(citations[0])
    assert log.of("token")
    audio = [r for r in log.items if r.event["type"] == "audio"]
    assert audio and all(len(r.audio) > 0 and r.event["sample_rate"] == 22050 for r in audio)
    assert [r.event["seq"] for r in audio] == list(range(len(audio)))
    timings = log.of("done")[0]["timings"]
    for key in ("stt_ms", "retrieval_ms", "llm_first_token_ms", "tts_first_audio_ms", "first_audio_ms", "total_ms"):
        assert timings[key] >= 0, key
    assert timings["stt_ms"] <= timings["first_audio_ms"] <= timings["total_ms"]


def test_encoded_webm_opus_turn(server, speak):
    data = encode(wav_to_float(speak("What is the user ID of the root user?")), 16000, "webm")

    async def scenario() -> TurnLog:
        client = await VoiceClient.connect(server.ws_url)
        try:
            await client.send({"type": "start", "sample_rate": 48000, "encoding": "webm_opus"})
            for i in range(0, len(data), 4000):
                await client.ws.send(data[i : i + 4000])
            await client.send({"type": "stop"})
            return await client.until("done", "error")
        finally:
            await client.close()

    log = run(scenario())
    assert "root" in log.of("transcript")[-1]["text"].lower()
    assert log.of("done")


def test_the_librarys_titles_are_what_the_recognizer_listens_for(server, speak):
    frames = pcm_frames(speak(GANNET_QUESTION, 135, "en-gb"))

    async def heard() -> list[str]:
        client = await VoiceClient.connect(server.ws_url)
        try:
            log = await client.speak(frames)
            log.items += (await client.until("done", "error")).items
            return [e["text"].lower() for e in log.of("transcript")]
        finally:
            await client.close()

    assert not any("gannet" in t for t in run(heard()))
    status, body = upload(server.base, "printers.md", b"# Gannet printer notes\n\nThe Gannet prints on both sides.\n")
    assert status == 201, body
    try:
        transcripts = run(heard())  # at once: an upload here refreshes the prompt
        assert "gannet" in transcripts[-1], transcripts
    finally:
        assert http("DELETE", f"{server.base}/v1/documents/{body['document']['id']}")[0] == 204


def test_typed_turn_and_a_follow_up_that_uses_history(server):
    async def scenario():
        client = await VoiceClient.connect(server.ws_url)
        try:
            await client.send({"type": "text", "text": "What are file triggers in dpkg?", "speak": False})
            first = await client.until("done", "error")
            await client.send({"type": "text", "text": "And when are they activated?", "speak": False})
            second = await client.until("done", "error")
            return first, second
        finally:
            await client.close()

    first, second = run(scenario())
    assert first.of("done") and first.of("token") and not [r for r in first.items if r.audio]
    assert first.of("citations")[0]["items"][0]["source"] == TRIGGERS_DOC.name
    # The follow-up says nothing about dpkg; the history brings the right document back.
    assert second.of("citations")[0]["items"][0]["source"] == TRIGGERS_DOC.name
    assert second.of("done")[0]["timings"]["first_audio_ms"] == -1  # speak=false


def test_barge_in_cancels_within_500_ms_and_nothing_follows(server):
    async def scenario():
        client = await VoiceClient.connect(server.ws_url)
        try:
            await client.send({"type": "text", "text": "Explain everything about users and groups in Debian."})
            before = await client.until("token")
            await client.send({"type": "cancel"})
            sent = time.monotonic()
            after = await client.until("cancelled", timeout=5)
            latency = after.items[-1].at - sent
            # Nothing of the cancelled turn arrives afterwards; the session still answers.
            await client.send({"type": "text", "text": "Who is root?", "speak": False})
            nxt = await client.until("done", "error")
            return before, after, latency, nxt
        finally:
            await client.close()

    _before, _after, latency, nxt = run(scenario())
    assert latency < 0.5, latency
    assert nxt.types()[0] == "citations", nxt.types()  # no stray token/audio/done of the old turn
    assert nxt.of("done")


def test_bad_inputs_get_errors_and_the_session_still_answers(server):
    bad_steps = [
        ("bad_json", ["{oops"]),
        ("bad_event", ['"just a string"']),
        ("unknown_event", [{"type": "teleport"}]),
        ("bad_sample_rate", [{"type": "start", "sample_rate": 44100, "encoding": "pcm_s16le"}]),
        ("bad_encoding", [{"type": "start", "encoding": "aac"}]),
        ("no_recording", [{"type": "stop"}]),
        ("no_recording", [b"\x00\x00" * 320]),
        ("bad_frame", [{"type": "start"}, b"\x00" * 641]),
        ("frame_too_large", [{"type": "start"}, b"\x00" * 200_000]),
        ("empty_audio", [{"type": "start"}, {"type": "stop"}]),
        ("audio_too_long", [{"type": "start"}] + [b"\x00\x00" * 16000] * 62),
        ("invalid_input", [{"type": "start", "encoding": "webm_opus"}, b"garbage frame bytes" * 10, {"type": "stop"}]),
        ("no_speech", [{"type": "start"}, b"\x00\x00" * 16000, {"type": "stop"}]),
        ("empty_text", [{"type": "text", "text": "   "}]),
        ("text_too_long", [{"type": "text", "text": "x" * 5000}]),
        ("bad_event", [{"type": "text", "text": "hi", "speak": "loud"}]),
        ("event_too_large", ["{" + " " * 70_000 + "}"]),
    ]

    async def scenario():
        client = await VoiceClient.connect(server.ws_url)
        seen = []
        try:
            for expected, steps in bad_steps:
                for step in steps:
                    if isinstance(step, bytes):
                        await client.ws.send(step)
                    else:
                        await client.ws.send(step if isinstance(step, str) else json.dumps(step))
                log = await client.until("error", timeout=60)
                seen.append((expected, log.of("error")[0]["code"]))
                await client.send({"type": "cancel"})  # reset any half-done recording
                await client.until("cancelled")
            await client.send({"type": "text", "text": "Who is root?", "speak": False})
            final = await client.until("done", "error")
            return seen, final
        finally:
            await client.close()

    seen, final = run(scenario())
    assert [code for _, code in seen] == [expected for expected, _ in seen]
    assert final.of("done"), final.types()


@pytest.mark.parametrize(
    "name, data, expected",
    [
        ("fake.pdf", b"this is not a pdf at all", 415),
        ("../../etc/passwd.txt", b"traversal attempt but plain text content", 201),
        ("huge.txt", b"word " * 300_000, 413),
        ("empty.txt", b"", 422),
        ("program.exe", b"MZ\x90\x00", 415),
    ],
)
def test_bad_uploads_are_4xx_and_traversal_is_harmless(server, name, data, expected):
    status, body = upload(server.base, name, data)
    assert status == expected, body
    if status == 201:
        assert body["document"]["source"] == "passwd.txt"
        assert http("DELETE", f"{server.base}/v1/documents/{body['document']['id']}")[0] == 204


def test_delete_unknown_document_is_404(server):
    assert http("DELETE", f"{server.base}/v1/documents/doesnotexist")[0] == 404


def answers_served(triton, model: str) -> int:
    """How many requests Triton says ``model`` has answered successfully."""
    client = http_client(triton.http_url)
    try:
        stats = client.get_inference_statistics(model)["model_stats"][0]
    finally:
        client.close()  # an open keep-alive connection would hold up the server's shutdown
    return int(stats["inference_stats"]["success"]["count"])


def sse_chat(base: str, payload: dict) -> list[dict]:
    events = []
    with httpx.stream("POST", f"{base}/v1/chat", json=payload, timeout=120) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    return events


def test_chat_sse_carries_the_same_events_through_the_one_answer_path(server, triton):
    before = answers_served(triton, c.VOICE_ANSWER.name)
    llm_before = answers_served(triton, c.LLM.name)
    events = sse_chat(server.base, {"text": "What is the user ID of root?", "speak": True})
    kinds = [e["type"] for e in events]
    assert kinds[0] == "citations" and kinds[-1] == "done" and "token" in kinds
    assert any(e["type"] == "audio" and e["data"] for e in events)
    typed = sse_chat(server.base, {"text": "What is the user ID of root?", "speak": False})
    assert [e["type"] for e in typed][-1] == "done" and not any(e["type"] == "audio" for e in typed)
    # Both went through voice_answer (which called the llm itself): one path, typed or spoken.
    assert answers_served(triton, c.VOICE_ANSWER.name) == before + 2
    assert answers_served(triton, c.LLM.name) == llm_before + 2


def test_four_concurrent_sessions_all_complete(server):
    questions = ["Who is root?", "What is the daemon user?", "What are dpkg triggers?", "What is group staff for?"]

    async def one(question):
        client = await VoiceClient.connect(server.ws_url)
        try:
            await client.send({"type": "text", "text": question, "speak": True})
            return await client.until("done", "error", timeout=240)
        finally:
            await client.close()

    async def scenario():
        return await asyncio.gather(*(one(q) for q in questions))

    logs = run(scenario())
    assert all(log.of("done") for log in logs), [log.types()[-1] for log in logs]


def test_metrics_have_stage_histograms_after_turns(server):
    status, text = http("GET", f"{server.base}/metrics")
    assert status == 200
    assert 'voicebot_stage_seconds_bucket{le="0.01",stage="retrieval"}' in text
    assert 'voicebot_turns_total{kind="voice",outcome="ok"}' in text
    assert "voicebot_index_documents 2.0" in text


@pytest.fixture(scope="module")
def secured(triton, tmp_path_factory):
    live = LiveServer(make_settings(triton, tmp_path_factory.mktemp("secure-index"), api_token=TOKEN)).start()
    yield live
    live.stop()


def test_auth_on_every_endpoint(secured):
    for method, path in [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/v1/documents"),
        ("DELETE", "/v1/documents/x"),
        ("POST", "/v1/chat"),
    ]:
        assert http(method, secured.base + path)[0] == 401, path
        assert http(method, secured.base + path, headers={"Authorization": "Bearer wrong-token"})[0] == 401, path
    assert http("GET", secured.base + "/healthz", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert upload(secured.base, "a.txt", b"some text")[0] == 401

    async def ws_close_code_from(url, origin):
        import websockets

        async with websockets.connect(url, origin=origin) as ws:
            with contextlib.suppress(Exception):
                await ws.recv()
            return ws.close_code

    async def ws_close_code(url):
        client = await VoiceClient.connect(url)
        with contextlib.suppress(Exception):
            await client.ws.recv()
        return client.ws.close_code

    assert run(ws_close_code(secured.ws_url)) == 4401
    # A page on another site cannot open a session, even with the token.
    assert run(ws_close_code_from(secured.ws_url + f"?token={TOKEN}", "http://evil.example")) == 4403
    assert run(ws_close_code(secured.ws_url + "?token=nope")) == 4401

    async def authorized():
        client = await VoiceClient.connect(secured.ws_url + f"?token={TOKEN}")
        try:
            await client.send({"type": "text", "text": "hello", "speak": False})
            return await client.until("done", "error")
        finally:
            await client.close()

    assert run(authorized()).of("done")
