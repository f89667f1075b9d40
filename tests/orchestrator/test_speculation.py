"""Speculation logic on its own: prompt order, outcomes, silence; then a session that uses it (fakes)."""

import asyncio
import json
from dataclasses import replace

import numpy as np
from test_session_logic import Client, FakeAnswerer, FakeRetriever

from orchestrator.metrics import Metrics
from orchestrator.session import Services, TurnRunner, VoiceSession
from orchestrator.settings import Settings
from orchestrator.speculation import (
    FRAME_BYTES,
    Levels,
    Outcome,
    Speculation,
    near_the_best,
    prompt_passages,
    reuse_excerpts,
    shared_passages,
    stable_order,
)
from rag_index.store import SearchHit
from voicebot.text import trim_passage


def hit(n, text=None):
    return SearchHit(n, f"doc{n}", "Doc", "doc.txt", "", text or f"passage {n}", 0.5)


def test_stable_order_keeps_prefilled_passages_first_and_only_the_final_set():
    prefilled = [hit(1), hit(2), hit(3)]
    final = [hit(3), hit(4), hit(1)]  # rank order: 3, 4, 1 (2 was dropped)
    assert [h.chunk_id for h in stable_order(prefilled, final, "which passage?")] == [1, 3, 4]
    assert shared_passages(prefilled, stable_order(prefilled, final, "which passage?")) == 1
    # The same chunk cut differently, and the prefill's cut lacks a word of the question that the
    # final cut shows: a different passage, the prompt text differs.
    ordered = stable_order([hit(1, "other words")], [hit(1), hit(2)], "which passage?")
    assert [h.text for h in ordered] == ["passage 1", "passage 2"]
    assert shared_passages([hit(1, "other words")], ordered) == 0


def test_a_chunk_keeps_the_prefilled_cut_when_it_shows_the_final_question_as_much():
    chunk = "The printer listens on port 9100. Call Ann. The printer sleeps after ten minutes."
    partial, final = "what port", "what port does the printer use"
    spoken_cut, final_cut = trim_passage(partial, chunk, 12), trim_passage(final, chunk, 12)
    # The two questions cut the chunk differently: the partial fills its budget with "Call Ann.",
    # the final with the second sentence that names the printer ...
    assert spoken_cut == "The printer listens on port 9100. Call Ann."
    assert final_cut == "The printer listens on port 9100. The printer sleeps after ten minutes."
    prefilled = [hit(1, spoken_cut)]
    ordered = stable_order(prefilled, [hit(2), hit(1, final_cut)], final)
    # ... but the prefilled cut holds every word of the final question that its own cut holds.
    assert [(h.chunk_id, h.text) for h in ordered] == [(1, spoken_cut), (2, "passage 2")]
    assert shared_passages(prefilled, ordered) == 1
    # A final question whose words the prefilled cut lacks gets its own cut.
    sleep = "when does the printer sleep"
    sleep_cut = trim_passage(sleep, chunk, 12)
    assert "sleeps" in sleep_cut
    assert [h.text for h in stable_order(prefilled, [hit(1, sleep_cut)], sleep)] == [sleep_cut]
    # reuse_excerpts never brings in a chunk the current retrieval dropped
    assert reuse_excerpts(prefilled, [hit(2)], final) == [hit(2)]


def test_chunks_far_below_the_best_are_left_out_of_the_prompt():
    scored = [replace(hit(n), score=s) for n, s in ((1, 0.55), (2, 0.7), (3, 0.45), (4, 0.1))]
    # The best similarity need not be the first hit's (fusion ranks by lexical rank too).
    assert [h.chunk_id for h in near_the_best(scored, 0.2)] == [1, 2]
    assert [h.chunk_id for h in near_the_best(scored, 0.3)] == [1, 2, 3]
    assert near_the_best(scored, 0) == scored and near_the_best([], 0.2) == []
    # The first (fused best) is kept however far below the best similarity it is.
    assert [h.chunk_id for h in near_the_best([replace(hit(1), score=0.1), hit(2)], 0.2)] == [1, 2]
    long = replace(hit(1), text="One two three. Four five six.", score=0.6)
    assert [h.text for h in prompt_passages([long, hit(2)], "four", 3, margin=0.05)] == ["Four five six."]


def test_outcomes():
    spec = Speculation([hit(1), hit(2)], ("earlier?",))
    assert spec.outcome([hit(1), hit(2)], ["earlier?"]) == (Outcome.HIT, 2)
    assert spec.holds([hit(1), hit(2)], ["earlier?"]) and not spec.holds([hit(1)], ["earlier?"])
    assert spec.outcome([hit(1), hit(2)], []) == (Outcome.PARTIAL, 2)  # the history changed
    assert spec.outcome([hit(1), hit(3)], ["earlier?"]) == (Outcome.PARTIAL, 1)
    assert spec.outcome([hit(3), hit(1)], ["earlier?"]) == (Outcome.MISS, 0)


def pcm(*parts):
    """Concatenated PCM: ("tone", seconds) or ("silence", seconds), with a little noise floor."""
    rng = np.random.default_rng(0)
    out = []
    for kind, seconds in parts:
        n = int(16000 * seconds)
        noise = rng.normal(0, 30, n)
        signal = 8000 * np.sin(np.arange(n) * 0.05) if kind == "tone" else 0
        out.append((noise + signal).astype("<i2").tobytes())
    return b"".join(out)


def test_levels_tell_silence_after_speech_relative_to_its_loudness():
    audio = pcm(("tone", 1.0), ("silence", 0.5))
    levels = Levels()
    for n in range(0, len(audio), 700):  # odd-sized pieces, as frames arrive
        levels.update(audio[: n + 700])
    assert len(levels.values) == len(audio) // FRAME_BYTES
    assert levels.silent_after(32000) and not levels.silent_after(16000)
    assert levels.speech_ended(since=0, quiet_s=0.3)
    assert not levels.speech_ended(since=32000, quiet_s=0.3)  # no speech since then
    quiet = Levels()
    quiet.update(pcm(("silence", 1.0)))
    assert not quiet.speech_ended(since=0, quiet_s=0.3)


class TwoPhaseSTT:
    """Partial transcripts say ``partial``; the final one ``final`` (and is counted)."""

    def __init__(self, partial, final):
        self.partial, self.final, self.finals, self.partials = partial, final, 0, 0

    async def transcribe(self, audio, encoding, request_id):
        await asyncio.sleep(0.01)
        if request_id.endswith("-partial"):
            self.partials += 1
            return self.partial
        self.finals += 1
        return self.final


class WordRetriever(FakeRetriever):
    """Hits 1 and 2 for questions about lamps, 3 and 4 otherwise."""

    async def retrieve(self, query, k, request_id):
        self.queries.append(query)
        ids = (1, 2) if "lamp" in query else (3, 4)
        return [hit(n) for n in ids][:k]


def talk(stt, audio, settings=None, answerer=None, other_answers=0, retriever=None):
    settings = settings or Settings(_env_file=None, partial_interval_s=0.5)
    answerer = answerer or FakeAnswerer()
    services = Services(stt, retriever or WordRetriever(), answerer)
    client = Client()
    metrics = Metrics()
    runner = TurnRunner(services, settings, metrics)
    session = VoiceSession(runner, settings, metrics, client.send_text, client.send_bytes, "s1")

    async def scenario():
        await session.on_text(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}))
        runner.admission.running = other_answers  # other sessions' turns being answered meanwhile
        for n in range(0, len(audio), 640):
            await session.on_bytes(audio[n : n + 640])
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.1)  # the last partial and its speculation finish
        runner.admission.running = 0
        await session.on_text('{"type": "stop"}')
        await asyncio.wait_for(session.turn, 5)

    asyncio.run(scenario())
    done = client.events[-1]
    assert done["type"] == "done", client.events[-3:]
    return done, answerer, metrics


def counted(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0


def test_a_partial_that_heard_everything_is_the_final_transcript_and_its_prefill_a_hit():
    stt = TwoPhaseSTT("how long does the lamp charge", "never used")
    done, answerer, metrics = talk(stt, pcm(("tone", 1.2), ("silence", 0.6)))
    assert stt.finals == 0  # the final STT did not run: only silence followed the last partial
    assert done["speculation"] == "hit" and done["prefilled_passages"] == 2 and done["prefill_finished"]
    assert answerer.prefills and answerer.prefills[-1] == (["passage 1", "passage 2"], [], "s1")
    assert answerer.cache_keys == ["s1"]
    stages = {span["stage"] for span in done["timeline"]}
    assert {"partial_stt", "speculative_retrieval", "prefill", "stt", "retrieval"} <= stages
    assert counted(metrics, "voicebot_speculation_total", outcome="hit") == 1
    assert counted(metrics, "voicebot_transcript_reused_total") == 1


def test_speech_after_the_last_partial_means_a_final_stt_and_the_final_passages_decide():
    stt = TwoPhaseSTT("how long does the lamp charge", "which network do guests use")
    # No silence at the end: the last partial did not hear everything.
    done, answerer, _ = talk(stt, pcm(("tone", 1.3)), answerer=FakeAnswerer(prefill_delay=0.5))
    assert stt.finals == 1
    assert done["speculation"] == "miss" and done["prefilled_passages"] == 0
    assert answerer.passages[-1] == ["passage 3", "passage 4"]  # the final retrieval's, never the stale ones


def test_speculation_can_be_turned_off():
    stt = TwoPhaseSTT("how long does the lamp charge", "how long does the lamp charge")
    settings = Settings(_env_file=None, partial_interval_s=0.5, speculate=False, reuse_partial=False)
    done, answerer, _ = talk(stt, pcm(("tone", 1.2), ("silence", 0.6)), settings=settings)
    assert stt.finals == 1 and not answerer.prefills and done["speculation"] == "none"


def test_no_speculation_while_other_answers_run_unless_allowed():
    stt = TwoPhaseSTT("how long does the lamp charge", "how long does the lamp charge")
    done, answerer, _ = talk(stt, pcm(("tone", 1.2), ("silence", 0.6)), other_answers=1)
    assert not answerer.prefills and done["speculation"] == "none"
    # No once-a-second partials either; the end-of-speech one ran and was the transcript.
    assert stt.partials == 1 and stt.finals == 0
    allowed = Settings(_env_file=None, partial_interval_s=0.5, speculate_max_turns=1)
    stt.partials = 0
    done, answerer, _ = talk(stt, pcm(("tone", 1.2), ("silence", 0.6)), settings=allowed, other_answers=1)
    assert answerer.prefills and done["speculation"] == "hit" and stt.partials >= 2


def test_a_prefill_still_running_is_stopped_by_cancel_and_by_closing_the_session():
    settings = Settings(_env_file=None, partial_interval_s=0.5)
    answerer = FakeAnswerer(prefill_delay=30)
    stt = TwoPhaseSTT("how long does the lamp charge", "unused")
    session = VoiceSession(
        TurnRunner(Services(stt, WordRetriever(), answerer), settings, Metrics()),
        settings,
        Metrics(),
        Client().send_text,
        Client().send_bytes,
        "s1",
    )

    async def scenario():
        await session.on_text(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}))
        audio = pcm(("tone", 0.8))
        for n in range(0, len(audio), 640):
            await session.on_bytes(audio[n : n + 640])
            await asyncio.sleep(0.002)
        while session._prefill is None:
            await asyncio.sleep(0.01)
        first = session._prefill
        await session.on_text('{"type": "cancel"}')
        await asyncio.sleep(0)
        assert first.cancelled() or first.cancelling()
        await session.close()

    asyncio.run(scenario())
    assert answerer.prefills  # it had started


def test_periodic_partials_wait_for_a_prefill_unless_they_may_stop_it():
    # A prefill longer than the question: by default the once-a-second partials wait for it ...
    audio = pcm(("tone", 2.5), ("silence", 0.6))
    stt = TwoPhaseSTT("how long does the lamp charge", "unused")
    talk(stt, audio, answerer=FakeAnswerer(prefill_delay=30))
    waited = stt.partials
    # ... with partials_stop_prefill each one stops it, and the prefill resumes after it.
    stopping = Settings(_env_file=None, partial_interval_s=0.5, partials_stop_prefill=True)
    stt.partials = 0
    answerer = FakeAnswerer(prefill_delay=30)
    done, answerer, _ = talk(stt, audio, settings=stopping, answerer=answerer)
    assert stt.partials >= waited + 2
    assert len(answerer.prefills) >= 3  # the same passages prefilled again after each partial
    assert done["speculation"] == "hit" and not done["prefill_finished"]


class FadingRetriever(WordRetriever):
    """WordRetriever's hits, the second far less similar than the first."""

    async def retrieve(self, query, k, request_id):
        hits = await super().retrieve(query, k, request_id)
        return [replace(h, score=0.6 - 0.4 * n) for n, h in enumerate(hits)]


def test_the_margin_leaves_the_far_chunk_out_of_the_prefill_and_the_answer():
    stt = TwoPhaseSTT("how long does the lamp charge", "never used")
    settings = Settings(_env_file=None, partial_interval_s=0.5, passage_margin=0.2)
    done, answerer, _ = talk(stt, pcm(("tone", 1.2), ("silence", 0.6)), settings=settings, retriever=FadingRetriever())
    assert answerer.prefills[-1][0] == ["passage 1"] and answerer.passages[-1] == ["passage 1"]
    assert done["speculation"] == "hit"
