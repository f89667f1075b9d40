"""The Realtime translator on fake services (no Triton): held answers, drops, cancels, ids."""

import asyncio
import base64
import json

from test_session_logic import FakeAnswerer, FakeRetriever, FakeSTT

from orchestrator.metrics import Metrics
from orchestrator.realtime import RealtimeSession
from orchestrator.session import Services, TurnRunner
from orchestrator.settings import Settings

SPEECH = base64.b64encode(b"\x10\x01" * 24000).decode()  # one second of 24 kHz PCM16


def make(answerer=None):
    settings = Settings(_env_file=None, partial_interval_s=5, speculate=False)
    services = Services(FakeSTT(), FakeRetriever(), answerer or FakeAnswerer())
    events: list[dict] = []

    async def send(text: str) -> None:
        events.append(json.loads(text))

    session = RealtimeSession(TurnRunner(services, settings, Metrics()), settings, Metrics(), send, "rt1")
    return session, events


async def settle(session, events, kind, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not any(e["type"] == kind for e in events):
        assert asyncio.get_running_loop().time() < deadline, [e["type"] for e in events]
        await asyncio.sleep(0.005)


def send(rt, **event):
    return rt.on_text(json.dumps(event))


def test_a_committed_answer_is_held_until_asked_for_then_released_in_order():
    async def scenario():
        session, events = make()
        await session.start()
        await send(session, type="input_audio_buffer.append", audio=SPEECH)
        await send(session, type="input_audio_buffer.commit")
        await asyncio.wait_for(session.voice.turn, 5)  # the answer is complete, and held
        held = [e["type"] for e in events]
        await send(session, type="response.create")
        await session.close()
        return held, events

    held, events = asyncio.run(scenario())
    assert "response.created" not in held and not any(t.startswith("response.output") for t in held)
    assert "conversation.item.input_audio_transcription.completed" in held  # the transcript is not held
    types = [e["type"] for e in events]
    assert types[0] == "session.created" and types[-1] == "response.done"
    created = types.index("response.created")
    assert created < types.index("response.output_audio_transcript.delta") < types.index("response.output_audio.delta")
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["citations"][0]["source"] == "users.html"
    assert done["voicebot"]["timings"]["first_audio_ms"] >= 0 and done["voicebot"]["speculation"] == "none"
    said = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
    assert done["output"][0]["content"][0]["transcript"] == said
    ids = {e["response_id"] for e in events if "response_id" in e}
    assert ids == {done["id"]}
    heard = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")
    assert heard["usage"] == {"type": "duration", "seconds": 1.0}
    committed = next(e for e in events if e["type"] == "input_audio_buffer.committed")
    assert heard["item_id"] == committed["item_id"]


def test_an_answer_never_asked_for_is_dropped_by_the_next_input():
    async def scenario():
        session, events = make(FakeAnswerer(tokens=100, delay=0.01))
        await session.start()
        await send(session, type="input_audio_buffer.append", audio=SPEECH)
        await send(session, type="input_audio_buffer.commit")
        await settle(session, events, "conversation.item.input_audio_transcription.completed")
        first_turn = session.voice.turn
        await send(session, type="input_audio_buffer.clear")
        await send(session, type="response.create")
        await session.close()
        return first_turn, events

    first_turn, events = asyncio.run(scenario())
    assert first_turn.cancelled() or first_turn.done()
    types = [e["type"] for e in events]
    assert "input_audio_buffer.cleared" in types and "response.created" not in types
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "no_input"


def test_cancel_ends_the_response_once_and_a_second_response_waits_its_turn():
    async def scenario():
        session, events = make(FakeAnswerer(tokens=200, delay=0.01))
        await session.start()
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "tell me all"}]}
        await send(session, type="conversation.item.create", item=item)
        await send(session, type="response.create", response={"output_modalities": ["text"]})
        await settle(session, events, "response.output_text.delta")
        await send(session, type="response.create")
        await send(session, type="response.cancel")
        await session.close()
        return events

    events = asyncio.run(scenario())
    errors = [e["error"]["code"] for e in events if e["type"] == "error"]
    assert errors == ["conversation_already_has_active_response"]
    done = [e for e in events if e["type"] == "response.done"]
    assert len(done) == 1 and done[0]["response"]["status"] == "cancelled"
    assert not any(e["type"] == "response.output_audio.delta" for e in events)  # asked for text


def test_bad_events_say_what_is_wrong():
    async def scenario():
        session, events = make()
        for raw in ("[1, 2]", "{not json", json.dumps({"type": "input_audio_buffer.append", "audio": "AAE"})):
            await session.on_text(raw)
        await send(session, type="conversation.item.create", item={"type": "message", "role": "assistant"})
        await send(session, type="session.update", session={"output_modalities": ["audio", "text"]})
        await session.on_bytes(b"\x00\x00")
        await session.close()
        return events

    events = asyncio.run(scenario())
    assert [e["type"] for e in events] == ["error"] * 6
    assert all(e["error"]["message"] for e in events)
