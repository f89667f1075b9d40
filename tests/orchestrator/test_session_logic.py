"""Session logic with small typed fakes of the three services (no Triton): ordering, barge-in, limits."""

import asyncio
import json

import pytest

from orchestrator.metrics import Metrics
from orchestrator.services import AudioChunk, Generation, ServiceError, TextDelta
from orchestrator.session import Services, TurnRunner, VoiceSession
from orchestrator.settings import Settings
from rag_index.store import SearchHit


class FakeSTT:
    def __init__(self, text="what is the root user id", delay=0.0):
        self.text, self.delay, self.calls = text, delay, []

    async def transcribe(self, audio, encoding, request_id):
        self.calls.append(len(audio))
        await asyncio.sleep(self.delay)
        if audio == b"\x00\x00" * 4:
            raise ServiceError("invalid_input", "bad audio")
        return self.text


class FakeRetriever:
    def __init__(self):
        self.queries = []

    async def retrieve(self, query, k, request_id):
        self.queries.append(query)
        return [SearchHit(1, "doc1", "Users", "users.html", "", "root has user id 0", 0.9)][:k]


class FakeAnswerer:
    def __init__(self, tokens=5, delay=0.0, prefill_delay=0.0, finish=None):
        self.tokens, self.delay, self.histories, self.passages = tokens, delay, [], []
        self.finish = finish  # a finish reason: then a Generation ends the answer, as voice_answer's
        self.prefill_delay = prefill_delay
        self.prefills, self.cache_keys = [], []

    async def prefill(self, question, passages, history, request_id, cache_key):
        self.prefills.append(([p.text for p in passages], list(history), cache_key))
        await asyncio.sleep(self.prefill_delay)

    async def answer(self, question, passages, history, speak, request_id, cache_key=None, sampling=None):
        self.cache_keys.append(cache_key)
        self.histories.append(list(history))
        self.passages.append([p.text for p in passages])
        for i in range(self.tokens):
            await asyncio.sleep(self.delay)
            yield TextDelta(f" t{i}")
            if speak and i == 1:
                yield AudioChunk(b"\x01\x00" * 100, 22050)
        if self.finish is not None:
            yield Generation(len(question.split()), self.tokens, self.finish)


class Client:
    """Collects what the session sends, as a browser would see it."""

    def __init__(self):
        self.events, self.frames = [], []

    async def send_text(self, text):
        self.events.append(json.loads(text))

    async def send_bytes(self, data):
        self.frames.append(data)
        self.events.append({"type": "<binary>", "size": len(data)})

    def types(self):
        return [e["type"] for e in self.events]


def make(settings=None, stt=None, answerer=None):
    settings = settings or Settings(_env_file=None, partial_interval_s=0.5, history_turns=2)
    services = Services(stt or FakeSTT(), FakeRetriever(), answerer or FakeAnswerer())
    client = Client()
    session = VoiceSession(
        TurnRunner(services, settings, Metrics()), settings, Metrics(), client.send_text, client.send_bytes, "s1"
    )
    return session, client, services


async def finish(session):
    if session.turn is not None:
        await asyncio.wait_for(session.turn, 5)


def test_voice_turn_event_order():
    async def scenario():
        session, client, services = make()
        await session.on_text(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}))
        for _ in range(60):  # 1.2 s of 20 ms frames
            await session.on_bytes(b"\x00\x01" * 320)
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        await session.on_text('{"type": "stop"}')
        await finish(session)
        return client, services

    client, _services = asyncio.run(scenario())
    types = client.types()
    assert types.count("transcript") >= 2  # at least one partial, then the final
    partial = next(e for e in client.events if e["type"] == "transcript")
    assert partial["final"] is False
    final_at = next(i for i, e in enumerate(client.events) if e["type"] == "transcript" and e["final"])
    assert types[final_at + 1] == "citations"
    assert types[-1] == "done"
    audio_at = types.index("audio")
    assert types[audio_at + 1] == "<binary>"  # header, then its frame
    done = client.events[-1]
    assert set(done["timings"]) == {
        "queue_ms",
        "stt_ms",
        "retrieval_ms",
        "llm_first_token_ms",
        "tts_first_audio_ms",
        "first_audio_ms",
        "total_ms",
    }


def test_barge_in_cancels_and_nothing_of_the_old_turn_follows():
    async def scenario():
        session, client, _ = make(answerer=FakeAnswerer(tokens=200, delay=0.01))
        await session.on_text('{"type": "text", "text": "tell me everything"}')
        while "token" not in client.types():
            await asyncio.sleep(0.005)
        await session.on_text('{"type": "cancel"}')
        cancelled_at = len(client.events)
        await asyncio.sleep(0.2)
        return client, cancelled_at

    client, cancelled_at = asyncio.run(scenario())
    assert client.types()[cancelled_at - 1] == "cancelled"
    assert client.types()[cancelled_at:] == []  # no token or audio after `cancelled`
    assert "done" not in client.types()


def test_start_while_answering_is_barge_in():
    async def scenario():
        session, client, _ = make(answerer=FakeAnswerer(tokens=200, delay=0.01))
        await session.on_text('{"type": "text", "text": "long answer"}')
        await asyncio.sleep(0.05)
        await session.on_text('{"type": "start", "sample_rate": 16000}')
        await asyncio.sleep(0.1)
        return client, session

    client, session = asyncio.run(scenario())
    assert "cancelled" in client.types() and session.recording is not None
    assert client.types()[client.types().index("cancelled") + 1 :] == []


@pytest.mark.parametrize("reason", [None, "length"])
def test_done_carries_the_answers_token_counts_when_the_answerer_reports_them(reason):
    async def scenario():
        session, client, _ = make(answerer=FakeAnswerer(tokens=3, finish=reason))
        await session.on_text(json.dumps({"type": "text", "text": "how long does it take", "speak": False}))
        await finish(session)
        return client

    done = asyncio.run(scenario()).events[-1]
    assert done["type"] == "done"
    if reason is None:
        assert "usage" not in done
    else:
        assert done["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "finish_reason": "length"}


def test_history_is_bounded_and_used_for_follow_ups():
    async def scenario():
        answerer = FakeAnswerer(tokens=1)
        session, _client, services = make(answerer=answerer)
        for n in range(4):
            await session.on_text(json.dumps({"type": "text", "text": f"question {n}", "speak": False}))
            await finish(session)
        return session, services, answerer

    session, services, answerer = asyncio.run(scenario())
    assert list(session.history) == ["question 2", "question 3"]
    assert services.retriever.queries[1] == "question 0 question 1"
    assert answerer.histories[3] == ["question 1", "question 2"]


@pytest.mark.parametrize(
    "steps, code",
    [
        ([b"\x00\x00"], "no_recording"),
        (['{"type": "stop"}'], "no_recording"),
        (['{"type": "start"}', b"\x00" * 3], "bad_frame"),
        (['{"type": "start"}', b"\x00" * 70000], "frame_too_large"),
        (['{"type": "start"}', '{"type": "stop"}'], "empty_audio"),
        (['{"type": "start"}', b"\x00\x00" * 4, '{"type": "stop"}'], "invalid_input"),
        (['{"type": "nope"}'], "unknown_event"),
    ],
)
def test_bad_input_is_an_error_event_and_the_session_goes_on(steps, code):
    async def scenario():
        session, client, _ = make()
        for step in steps:
            if await session.reject_oversize(step):  # as the WebSocket loop does, before it queues
                continue
            if isinstance(step, bytes):
                await session.on_bytes(step)
            else:
                await session.on_text(step)
        await finish(session)
        await session.on_text('{"type": "text", "text": "still there?", "speak": false}')
        await finish(session)
        return client

    client = asyncio.run(scenario())
    errors = [e for e in client.events if e["type"] == "error"]
    assert errors and errors[0]["code"] == code
    assert client.types()[-1] == "done"


def test_audio_over_the_limit_is_dropped_with_an_error():
    async def scenario():
        settings = Settings(_env_file=None, max_audio_seconds=1.0)
        session, client, _ = make(settings=settings)
        await session.on_text('{"type": "start"}')
        for _ in range(60):
            await session.on_bytes(b"\x00\x00" * 320)
        await session.on_text('{"type": "stop"}')
        return client, session

    client, session = asyncio.run(scenario())
    codes = [e["code"] for e in client.events if e["type"] == "error"]
    assert codes[0] == "audio_too_long" and "no_recording" in codes  # the stop found nothing left
    assert session.turn is None


def test_prompt_gets_trimmed_passages_and_citations_show_what_the_model_saw():
    long_text = " ".join(f"Filler sentence number {i} about nothing." for i in range(40)) + " Root has user id 0."

    class LongRetriever(FakeRetriever):
        async def retrieve(self, query, k, request_id):
            return [SearchHit(1, "doc1", "Users", "users.html", "", long_text, 0.9)]

    async def scenario():
        answerer = FakeAnswerer(tokens=1)
        settings = Settings(_env_file=None, passage_words=20)
        client = Client()
        runner = TurnRunner(Services(FakeSTT(), LongRetriever(), answerer), settings, Metrics())
        session = VoiceSession(runner, settings, Metrics(), client.send_text, client.send_bytes, "s1")
        await session.on_text('{"type": "text", "text": "What is the user id of root?", "speak": false}')
        await finish(session)
        return client, answerer

    client, answerer = asyncio.run(scenario())
    cited = next(e for e in client.events if e["type"] == "citations")["items"][0]["text"]
    sent = answerer.passages[0][0]
    assert "Root has user id 0." in sent and len(sent.split()) <= 20
    assert cited == sent != long_text


def test_an_unexpected_failure_is_an_error_event_and_the_session_goes_on():
    class BrokenRetriever(FakeRetriever):
        async def retrieve(self, query, k, request_id):
            raise KeyError("index broke")

    async def scenario():
        settings = Settings(_env_file=None)
        client = Client()
        retriever = BrokenRetriever()
        runner = TurnRunner(Services(FakeSTT(), retriever, FakeAnswerer(tokens=1)), settings, Metrics())
        session = VoiceSession(runner, settings, Metrics(), client.send_text, client.send_bytes, "s1")
        await session.on_text('{"type": "text", "text": "hello", "speak": false}')
        await finish(session)
        runner.services.retriever = FakeRetriever()
        await session.on_text('{"type": "text", "text": "again", "speak": false}')
        await finish(session)
        return client

    client = asyncio.run(scenario())
    assert [e["code"] for e in client.events if e["type"] == "error"] == ["internal"]
    assert client.types()[-1] == "done"
