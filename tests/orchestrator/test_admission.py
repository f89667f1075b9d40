"""Admission control: slots, the queue in order, busy and overloaded (orchestrator/admission.py)."""

import asyncio
import json

import pytest
from test_session_logic import Client, FakeAnswerer, FakeRetriever, FakeSTT

from orchestrator.admission import INITIAL_TURN_S, Admission, Overloaded
from orchestrator.metrics import Metrics
from orchestrator.session import Services, TurnRunner, VoiceSession
from orchestrator.settings import Settings


def test_turns_beyond_capacity_wait_in_order_and_are_told_where_they_stand():
    async def scenario():
        metrics = Metrics()
        admission = Admission(capacity=2, max_queue=4, metrics=metrics)
        order, told = [], []
        release = asyncio.Event()

        async def turn(name):
            async def busy(position, estimate):
                told.append((name, position, estimate))

            async with admission.turn(busy):
                order.append(name)
                await release.wait()

        tasks = [asyncio.create_task(turn(n)) for n in "abcd"]
        await asyncio.sleep(0.01)
        assert order == ["a", "b"] and admission.running == 2 and admission.queued == 2
        assert metrics.turn_queue._value.get() == 2 and metrics.turns_running._value.get() == 2
        release.set()
        await asyncio.gather(*tasks)
        return order, told, admission, metrics

    order, told, admission, metrics = asyncio.run(scenario())
    assert order == ["a", "b", "c", "d"]  # first come, first served
    # Third and fourth: places 1 and 2; two slots free turns twice as fast as one.
    assert told == [("c", 1, INITIAL_TURN_S / 2), ("d", 2, INITIAL_TURN_S)]
    assert admission.running == 0 and admission.queued == 0
    assert metrics.turns_queued._value.get() == 2


def test_a_full_queue_refuses_with_a_retry_hint_and_holds_nothing():
    async def scenario():
        admission = Admission(capacity=1, max_queue=0)

        async def nothing(position, estimate):
            raise AssertionError("no queue place to be told about")

        async with admission.turn(nothing):
            with pytest.raises(Overloaded) as refused:
                async with admission.turn(nothing):
                    pass
        return admission, refused.value

    admission, refused = asyncio.run(scenario())
    assert refused.retry_after_s > 0 and "capacity" in str(refused)
    assert admission.running == 0


def test_a_turn_cancelled_while_queued_leaves_its_place_and_the_next_one_runs():
    async def scenario():
        admission = Admission(capacity=1, max_queue=4)
        release = asyncio.Event()
        ran = []

        async def turn(name):
            async def busy(position, estimate):
                pass

            async with admission.turn(busy):
                ran.append(name)
                await release.wait()

        first = asyncio.create_task(turn("first"))
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(turn("gone"))
        last = asyncio.create_task(turn("last"))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        assert admission.queued == 1
        release.set()
        await asyncio.gather(first, last)
        return ran, admission

    ran, admission = asyncio.run(scenario())
    assert ran == ["first", "last"] and admission.running == 0 and admission.queued == 0


def test_the_estimate_follows_how_long_turns_take():
    async def scenario():
        now = [0.0]
        admission = Admission(capacity=2, max_queue=8, clock=lambda: now[0])

        async def busy(position, estimate):
            pass

        for _ in range(30):
            async with admission.turn(busy):
                now[0] += 1.0
        return admission

    admission = asyncio.run(scenario())
    assert abs(admission.turn_s - 1.0) < 0.05
    assert admission.estimate_s(2) == admission.turn_s and admission.estimate_s(3) == 1.5 * admission.turn_s


def test_a_failed_turn_does_not_move_the_estimate():
    async def scenario():
        now = [0.0]
        admission = Admission(capacity=1, max_queue=1, clock=lambda: now[0])

        async def busy(position, estimate):
            pass

        with pytest.raises(TimeoutError):
            async with admission.turn(busy):
                now[0] += 120.0
                raise TimeoutError
        return admission

    admission = asyncio.run(scenario())
    assert admission.turn_s == INITIAL_TURN_S and admission.running == 0


def test_sessions_over_capacity_hear_busy_at_once_then_their_answer_or_overloaded():
    async def scenario():
        settings = Settings(_env_file=None, max_turns=1, max_queued_turns=1, speculate=False)
        metrics = Metrics()
        runner = TurnRunner(Services(FakeSTT(), FakeRetriever(), FakeAnswerer(delay=0.05)), settings, metrics)
        clients = [Client() for _ in range(3)]
        sessions = [
            VoiceSession(runner, settings, metrics, c.send_text, c.send_bytes, f"s{i}") for i, c in enumerate(clients)
        ]
        for session in sessions:
            await session.on_text(json.dumps({"type": "text", "text": "what is the root user id", "speak": False}))
        await asyncio.gather(*(s.turn for s in sessions))
        return clients, metrics

    (first, second, third), metrics = asyncio.run(scenario())
    assert "busy" not in first.types() and first.types()[-1] == "done"
    busy = next(e for e in second.events if e["type"] == "busy")
    assert busy["position"] == 1 and busy["estimate_s"] > 0
    assert second.types()[0] == "busy" and second.types()[-1] == "done"
    done = second.events[-1]
    assert done["timings"]["queue_ms"] >= 150  # it waited for the first turn's five tokens
    (error,) = [e for e in third.events if e["type"] == "error"]
    assert error["code"] == "overloaded" and error["retry_after_s"] > 0
    assert metrics.turns_rejected._value.get() == 1
