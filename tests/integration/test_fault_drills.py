"""Fault drills on a real tritonserver and orchestrator: a model process dies mid-turn, the
server dies mid-session. Each drill ends with a turn that succeeds in the same session.

The server here is this module's own (embedder + llm, the models a typed turn needs), never
the session's shared one: these tests kill it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from orchestrator_helpers import LiveServer, TurnLog, VoiceClient, make_settings
from triton_helpers import own_server

from voicebot import contract as c
from voicebot.serving.launcher import RUNTIME_DIR, TritonServer
from voicebot.serving.supervisor import Supervisor, model_stubs

pytestmark = pytest.mark.integration

QUESTION = {"type": "text", "text": "What is the user ID of root?", "speak": False}
# Long enough for a healthy first clause on the slowest VM seen (a Zen 1 EPYC prefills Gemma's prompt in
# ~2.5 s, and the first turn also pages the weights in), short enough that a drill detects a kill quickly.
STALL_S = 10.0
RECOVERY_BOUND_S = 60.0


def drill_server(models: list[str]) -> TritonServer:
    """A started server of its own with just ``models``."""
    return own_server(RUNTIME_DIR / "drills", models)


@pytest.fixture
def drill_triton() -> Iterator[TritonServer]:
    # Typed turns: retrieval (embedder), then the one answer path (voice_answer, which calls llm).
    server = drill_server([c.EMBEDDER.name, c.LLM.name, c.VOICE_ANSWER.name])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def orchestrator(drill_triton: TritonServer, tmp_path) -> Iterator[LiveServer]:
    settings = make_settings(
        drill_triton, tmp_path / "index", stall_timeout_s=STALL_S, first_response_timeout_s=STALL_S
    )
    live = LiveServer(settings).start()
    try:
        yield live
    finally:
        live.stop()


def readyz(live: LiveServer) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{live.base}/readyz", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def served_ready(live: LiveServer) -> bool:
    """/readyz's view of the two models this server has (it is 503 anyway: the others are absent)."""
    status, body = readyz(live)
    assert status in (200, 503), body
    return all(body["models"][m.name] for m in (c.EMBEDDER, c.LLM, c.VOICE_ANSWER))


def kill_stub(server: TritonServer, model: str) -> int:
    assert server.process is not None
    pids = [s.pid for s in model_stubs(server.process.pid).values() if s.model == model]
    assert pids, f"no stub process for {model}"
    os.kill(pids[0], signal.SIGKILL)
    return pids[0]


async def turn(client: VoiceClient, timeout: float = 60) -> TurnLog:
    await client.send(QUESTION)
    return await client.until("done", "error", timeout=timeout)


async def turn_with_the_llm_killed(client: VoiceClient, server: TritonServer) -> tuple[TurnLog, float]:
    """Ask, kill the llm's stub once the turn has its passages (it is waiting for the llm), expect an error."""
    await client.send(QUESTION)
    await client.until("citations")
    kill_stub(server, c.LLM.name)
    killed = time.monotonic()
    log = await client.until("done", "error", timeout=STALL_S + 30)
    assert log.types()[-1] == "error"
    assert log.of("error")[0]["code"] in ("upstream_stalled", "upstream_unavailable")
    return log, killed


async def turn_until_it_succeeds(client: VoiceClient, bound_s: float) -> tuple[float, int]:
    """Ask again every half second until a turn is done; (seconds it took, failed turns)."""
    began, failures = time.monotonic(), 0
    while time.monotonic() - began < bound_s:
        log = await turn(client)
        if log.types()[-1] == "done":
            return time.monotonic() - began, failures
        failures += 1
        await asyncio.sleep(0.5)
    raise AssertionError(f"no turn succeeded within {bound_s:g} s ({failures} failed)")


def test_model_process_killed_mid_turn(drill_triton: TritonServer, orchestrator: LiveServer) -> None:
    supervisor = Supervisor(drill_triton, interval_s=0.5, progress=None)
    supervisor.take_baseline()
    assert {s.model for s in supervisor._stubs.values()} == {c.EMBEDDER.name, c.LLM.name, c.VOICE_ANSWER.name}

    async def drill() -> None:
        client = await VoiceClient.connect(orchestrator.ws_url)
        try:
            assert (await turn(client)).types()[-1] == "done"

            # 1. The llm's process dies while the turn waits for it. Triton never fails that
            #    request; the orchestrator's stall bound ends the turn with an error.
            log, killed = await turn_with_the_llm_killed(client, drill_triton)
            assert time.monotonic() - killed < STALL_S + 5

            # 2. Left alone, Triton does not bring the model back: turns keep failing, fast.
            log = await turn(client, timeout=STALL_S + 10)
            assert log.of("error") and log.of("error")[0]["code"] == "upstream_unavailable"

            # 3. The supervisor sees the dead process and restarts the server; the same
            #    session's next turn succeeds.
            assert supervisor.problem() is not None and c.LLM.name in supervisor.problem()
            assert await asyncio.to_thread(supervisor.check)
            took, _ = await turn_until_it_succeeds(client, RECOVERY_BOUND_S)
            print(f"\n[drill] stub killed: turn succeeded {took:.1f} s after the restart")
        finally:
            await client.close()

    asyncio.run(drill())


def test_server_killed_mid_session(drill_triton: TritonServer, orchestrator: LiveServer) -> None:
    supervisor = Supervisor(drill_triton, interval_s=0.5, progress=None)
    stop = threading.Event()
    watcher = supervisor.start_thread(stop)

    async def drill() -> None:
        client = await VoiceClient.connect(orchestrator.ws_url)
        try:
            assert (await turn(client)).types()[-1] == "done"
            assert served_ready(orchestrator)

            # A model process dies mid-turn with the supervisor running: the turn errors,
            # the server is restarted without anyone asking, a turn succeeds again.
            log, killed = await turn_with_the_llm_killed(client, drill_triton)
            failed_after = time.monotonic() - killed
            _, failures = await turn_until_it_succeeds(client, RECOVERY_BOUND_S)
            print(
                f"\n[drill] stub killed (supervised): turn failed ({log.of('error')[0]['code']}) after "
                f"{failed_after:.1f} s, answered again {time.monotonic() - killed:.1f} s after the kill "
                f"({failures} turns failed meanwhile)"
            )
            assert supervisor.restart_count == 1

            # The whole server dies: /readyz says so, the supervisor restarts it, the
            # orchestrator reconnects by itself and the same session answers again.
            assert drill_triton.process is not None
            os.kill(drill_triton.process.pid, signal.SIGKILL)
            killed = time.monotonic()
            seen_down = False
            while time.monotonic() - killed < RECOVERY_BOUND_S:
                ready = await asyncio.to_thread(served_ready, orchestrator)
                seen_down = seen_down or not ready
                if seen_down and ready:
                    break
                await asyncio.sleep(0.1)
            assert seen_down, "/readyz never reported the dead server"
            assert served_ready(orchestrator), "the orchestrator did not see the server come back"
            _, failures = await turn_until_it_succeeds(client, RECOVERY_BOUND_S)
            assert failures == 0, "the first turn after /readyz turned green failed"
            print(f"[drill] server killed: ready again and answered {time.monotonic() - killed:.1f} s later")
            assert supervisor.restart_count == 2
        finally:
            await client.close()

    try:
        asyncio.run(drill())
    finally:
        stop.set()
        watcher.join(60)
    assert supervisor.failure is None


def test_dead_pipeline_process_does_not_wedge_the_llm() -> None:
    """voice_answer's process dies mid-answer: the llm request it had open must end with it.

    With BLS it did not (Triton 2.51): the llm kept generating for a parent that was gone and
    every later llm request waited behind it. Over the loopback gRPC stream the dead process's
    connection closes, Triton cancels the request and the llm is free within a token or two.
    """
    import numpy as np
    import tritonclient.grpc as grpcclient
    from triton_helpers import GrpcStream, tensor

    server = drill_server([c.LLM.name, c.TTS.name, c.VOICE_ANSWER.name])
    try:
        endless = json.dumps({"max_tokens": 1500, "stop": [], "ignore_eos": True})
        answer = GrpcStream(server.grpc_url)
        answer.send(
            c.VOICE_ANSWER.name,
            [
                tensor(grpcclient, c.VOICE_ANSWER, c.QUESTION, "Tell me about Paris."),
                tensor(grpcclient, c.VOICE_ANSWER, c.PASSAGES, "[]"),
                tensor(grpcclient, c.LLM, c.SAMPLING_PARAMETERS, endless),
            ],
            [c.TEXT_OUTPUT],
        )
        _result, error = answer.next(timeout=120)
        assert error is None
        kill_stub(server, c.VOICE_ANSWER.name)
        killed = time.monotonic()

        # 1500 tokens would take the llm ~45 s here; a short request must not wait for them.
        llm = GrpcStream(server.grpc_url)
        try:
            inputs = [
                tensor(grpcclient, c.LLM, c.TEXT_INPUT, "The capital of France is"),
                tensor(grpcclient, c.LLM, c.SAMPLING_PARAMETERS, json.dumps({"max_tokens": 4})),
                tensor(grpcclient, c.LLM, c.STREAM, np.array([True])),
            ]
            got = llm.collect(c.LLM.name, inputs, [c.TEXT_OUTPUT], timeout=60)
        finally:
            llm.close()
        took = time.monotonic() - killed
        print(f"\n[drill] voice_answer killed mid-answer: the llm answered another request {took:.1f} s later")
        assert got and took < 15, took
        answer.close(cancel=True)
    finally:
        server.stop(timeout=3)
