"""Orchestrator replicas that share nothing but the document store (PostgreSQL + pgvector),
and the drain a replica does on SIGTERM: against the real Triton and a real PostgreSQL."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import psycopg
import pytest
import websockets
from conftest import TRIGGERS_DOC, USERS_DOC
from orchestrator_helpers import LiveServer, VoiceClient, free_port, make_settings

pytestmark = pytest.mark.integration


def upload(base: str, path) -> dict:
    resp = httpx.post(f"{base}/v1/documents", files={"file": (path.name, path.read_bytes())}, timeout=300)
    assert resp.status_code == 201, resp.text
    return resp.json()["document"]


def ask(ws_url: str, question: str) -> list[dict]:
    async def scenario():
        client = await VoiceClient.connect(ws_url)
        try:
            await client.send({"type": "text", "text": question, "speak": False})
            return (await client.until("done", "error")).items
        finally:
            await client.close()

    return [item.event for item in asyncio.run(scenario())]


def test_two_replicas_share_one_document_store_and_readiness_follows_it(
    triton, tmp_path, postgres_server, postgres_url
):
    one = LiveServer(make_settings(triton, tmp_path / "unused-1", store=postgres_url)).start()
    two = LiveServer(make_settings(triton, tmp_path / "unused-2", store=postgres_url)).start()
    try:
        added = upload(one.base, USERS_DOC)
        listed = httpx.get(f"{two.base}/v1/documents", timeout=30).json()
        assert [d["id"] for d in listed["documents"]] == [added["id"]] and listed["search"] == "hnsw"
        # Asked on the other replica, answered from the document the first one ingested.
        events = ask(two.ws_url, "Which user id does root have?")
        citations = next(e for e in events if e["type"] == "citations")["items"]
        assert citations and citations[0]["source"] == USERS_DOC.name and events[-1]["type"] == "done"
        # The same file through the other replica is the same document; a delete there is seen here.
        again = httpx.post(
            f"{two.base}/v1/documents", files={"file": (USERS_DOC.name, USERS_DOC.read_bytes())}, timeout=300
        )
        assert again.status_code == 200 and again.json()["document"]["id"] == added["id"]
        assert httpx.delete(f"{two.base}/v1/documents/{added['id']}", timeout=30).status_code == 204
        assert httpx.get(f"{one.base}/v1/documents", timeout=30).json()["documents"] == []
        ready = httpx.get(f"{one.base}/readyz", timeout=30)
        assert ready.status_code == 200 and ready.json()["index"] == {"open": True, "documents": 0}
        # The database goes away: readiness says so (a load balancer stops routing here).
        name = postgres_url.split("@/", 1)[1].split("?", 1)[0]
        with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        down = httpx.get(f"{one.base}/readyz", timeout=60)
        assert down.status_code == 503 and down.json()["index"]["open"] is False
        assert "document store" in down.json()["index"]["error"]
    finally:
        one.stop()
        two.stop()


def test_sigterm_drains_running_answers_and_turns_new_sessions_away(triton, postgres_url):
    """The real ``voicebot-orchestrator`` process, as Kubernetes stops a pod."""
    port = free_port()
    env = {
        **os.environ,
        "VOICEBOT_PORT": str(port),
        "VOICEBOT_TRITON_GRPC_URL": triton.grpc_url,
        "VOICEBOT_TRITON_HTTP_URL": triton.http_url,
        "VOICEBOT_STORE": postgres_url,
        "VOICEBOT_DRAIN_TIMEOUT_S": "60",
    }
    command = [sys.executable, "-m", "orchestrator", "--log-level", "WARNING"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/v1/voice"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "orchestrator did not start"
            time.sleep(0.2)
        upload(base, TRIGGERS_DOC)

        async def scenario():
            talking = await VoiceClient.connect(ws_url)
            idle = await VoiceClient.connect(ws_url)
            # A spoken answer takes seconds: long enough to look at the replica while it drains.
            await talking.send({"type": "text", "text": "Tell me everything about file triggers in dpkg."})
            await talking.until("token")
            proc.send_signal(signal.SIGTERM)
            async with httpx.AsyncClient() as http:
                for _ in range(50):  # the signal is handled between two of the server's ticks
                    ready = await http.get(f"{base}/readyz", timeout=10)
                    if ready.status_code == 503:
                        break
                    await asyncio.sleep(0.02)
            with pytest.raises(websockets.ConnectionClosed) as idle_closed:
                await idle.receive(timeout=10)  # an idle session is closed at once
            newcomer = await websockets.connect(ws_url)
            with pytest.raises(websockets.ConnectionClosed) as turned_away:
                await newcomer.recv()
            rest = await talking.until("done", "error", timeout=120)  # the running answer finishes
            with pytest.raises(websockets.ConnectionClosed) as talking_closed:
                await talking.receive(timeout=60)
            return ready, idle_closed.value, turned_away.value, rest, talking_closed.value

        ready, idle_closed, turned_away, rest, talking_closed = asyncio.run(scenario())
        assert ready.status_code == 503 and ready.json()["draining"] is True
        assert idle_closed.rcvd.code == turned_away.rcvd.code == talking_closed.rcvd.code == 1012
        assert rest.types()[-1] == "done" and any(r.audio for r in rest.items)
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
