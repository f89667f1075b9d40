"""The answer pipeline over two fake streams: order, overlap of speech and generation, stopping, errors."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest

from voicebot.engines.llm import Generation
from voicebot.pipeline import AnswerPipeline, AudioPiece, Grounding, TextPiece
from voicebot.text import ANSWER_DEFAULTS, NO_ANSWER, Passage

PASSAGES = [Passage("Lamp", "The lamp charges in three hours.")]


class FakeLlm:
    """Yields the given deltas one per ``step`` seconds; records what it saw and how it ended."""

    def __init__(
        self, deltas: list[str], step: float = 0.0, fail_after: int | None = None, finish: str = "stop"
    ) -> None:
        self.deltas, self.step, self.fail_after, self.finish = deltas, step, fail_after, finish
        self.prompts: list[str] = []
        self.paces: list[float | None] = []
        self.yielded = 0
        self.finished_at: float | None = None
        self.closed = asyncio.Event()
        self.cancelled = False

    async def __call__(
        self, prompt, params, request_id, cache_key=None, prefill_only=False, pace_cps=None, generation=None
    ):
        self.prompts.append(prompt)
        self.paces.append(pace_cps)
        generation = generation if generation is not None else Generation()
        generation.prompt_tokens = len(prompt.split())  # a word a token
        try:
            for n, delta in enumerate(self.deltas):
                if self.fail_after is not None and n == self.fail_after:
                    raise RuntimeError("generation broke")
                await asyncio.sleep(self.step)
                self.yielded += 1
                generation.output_tokens += 1
                yield delta
            generation.finish_reason = self.finish
            self.finished_at = asyncio.get_running_loop().time()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.closed.set()


class FakeTts:
    """One chunk per clause (its word count as samples), after ``delay`` seconds."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None) -> None:
        self.delay, self.fail_on = delay, fail_on
        self.clauses: list[tuple[str, float]] = []
        self.cancelled = False

    async def __call__(self, clause, request_id):
        self.clauses.append((clause, asyncio.get_running_loop().time()))
        if self.fail_on is not None and len(self.clauses) == self.fail_on:
            raise RuntimeError("speech broke")
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        yield np.full(len(clause.split()), len(self.clauses), dtype=np.int16), 22050


ANSWER = ["The lamp ", "charges in ", "three hours. ", "Use the ", "supplied adapter, ", "not a faster one."]


def collect(pipeline: AnswerPipeline, speak: bool = True, limit: int | None = None) -> list:
    async def run() -> list:
        got = []
        async with contextlib.aclosing(pipeline.run("How long?", PASSAGES, [], ANSWER_DEFAULTS, speak, "t1")) as it:
            async for piece in it:
                got.append(piece)
                if limit is not None and len(got) >= limit:
                    break
        return got

    return asyncio.run(run())


def test_text_comes_in_order_and_every_clause_is_spoken_in_order():
    llm, tts = FakeLlm(ANSWER), FakeTts()
    pieces = collect(AnswerPipeline(llm, tts))
    assert "".join(p.text for p in pieces if isinstance(p, TextPiece)) == "".join(ANSWER)
    audio = [p for p in pieces if isinstance(p, AudioPiece)]
    assert [int(p.samples[0]) for p in audio] == list(range(1, len(tts.clauses) + 1))  # clause order
    assert [c for c, _ in tts.clauses] == [
        "The lamp charges in three hours.",
        "Use the supplied adapter,",
        "not a faster one.",
    ]
    assert all(p.sample_rate == 22050 for p in audio)


def test_the_prompt_is_built_here_with_the_passages_and_the_question():
    llm = FakeLlm(["Three hours."])
    collect(AnswerPipeline(llm, FakeTts()), speak=False)
    assert "The lamp charges in three hours." in llm.prompts[0] and llm.prompts[0].endswith(
        "Question: How long?\nAnswer:"
    )


def test_text_only_answers_never_call_speech():
    tts = FakeTts()
    pieces = collect(AnswerPipeline(FakeLlm(ANSWER), tts), speak=False)
    assert all(isinstance(p, TextPiece) for p in pieces[:-1]) and not tts.clauses


@pytest.mark.parametrize("speak", [True, False])
@pytest.mark.parametrize("finish", ["stop", "length"])
def test_the_last_piece_is_the_llms_counts_and_finish_reason(speak, finish):
    llm = FakeLlm(ANSWER, finish=finish)
    pieces = collect(AnswerPipeline(llm, FakeTts()), speak=speak)
    assert [p for p in pieces if isinstance(p, Generation)] == [pieces[-1]]
    assert pieces[-1] == Generation(len(llm.prompts[0].split()), len(ANSWER), finish)


def test_the_first_clause_is_spoken_before_generation_ends():
    llm, tts = FakeLlm(ANSWER, step=0.05), FakeTts()
    collect(AnswerPipeline(llm, tts))
    first_clause_at = tts.clauses[0][1]
    assert llm.finished_at is not None and first_clause_at < llm.finished_at


def consuming(pipeline: AnswerPipeline, got: list) -> asyncio.Task:
    """A task reading the pipeline's answer into ``got``, as the model adapter would."""

    async def consume():
        async for piece in pipeline.run("How long?", PASSAGES, [], ANSWER_DEFAULTS, True, "t1"):
            got.append(piece)

    return asyncio.create_task(consume())


def test_stopping_during_generation_cancels_the_llm_and_nothing_follows():
    llm, tts = FakeLlm(ANSWER * 20, step=0.01), FakeTts()

    async def run():
        got = []
        task = consuming(AnswerPipeline(llm, tts), got)
        while len(got) < 3:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        seen = len(got)
        await asyncio.sleep(0.1)  # whatever was still running had its chance to send more
        await asyncio.wait_for(llm.closed.wait(), 1)
        return seen, len(got)

    seen, later = asyncio.run(run())
    assert llm.cancelled and seen == later
    assert llm.yielded < len(ANSWER * 20)


def test_stopping_during_speech_cancels_the_tts_call():
    llm, tts = FakeLlm(ANSWER), FakeTts(delay=5.0)  # speech hangs on the first clause

    async def run():
        got = []
        task = consuming(AnswerPipeline(llm, tts), got)
        while not tts.clauses:
            await asyncio.sleep(0.005)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return got

    got = asyncio.run(run())
    assert tts.cancelled and not any(isinstance(p, AudioPiece) for p in got)


def test_closing_the_stream_early_cancels_what_runs_behind_it():
    llm, tts = FakeLlm(ANSWER * 20, step=0.01), FakeTts()
    assert len(collect(AnswerPipeline(llm, tts), limit=2)) == 2
    assert llm.cancelled


@pytest.mark.parametrize("side", ["generation", "speech"])
def test_an_error_on_either_side_ends_the_answer_with_that_error(side):
    llm = FakeLlm(ANSWER, step=0.01, fail_after=3 if side == "generation" else None)
    tts = FakeTts(fail_on=1 if side == "speech" else None)
    with pytest.raises(RuntimeError, match=f"{side} broke"):
        collect(AnswerPipeline(llm, tts))
    if side == "speech":
        assert llm.closed.is_set()  # generation did not run on behind the failure


class Verdicts(list):
    def __call__(self, outcome, missing):
        self.append((outcome, missing))


def test_a_first_clause_with_an_invented_number_becomes_no_answer_and_stops_generation():
    verdicts = Verdicts()
    llm, tts = FakeLlm(["The lamp ", "listens on port ", "4410. ", "It is ", "fast."] * 20, step=0.01), FakeTts()
    pieces = collect(AnswerPipeline(llm, tts, on_grounding=verdicts))
    assert [p.text for p in pieces if isinstance(p, TextPiece)] == [NO_ANSWER]
    assert [c for c, _ in tts.clauses] == [NO_ANSWER]
    assert verdicts == [(Grounding.ABSTAINED, ["4410"])]
    assert llm.closed.is_set() and llm.yielded < 10  # closed early: the real stream cancels its call
    # The check ended it: a "stop", with the tokens the llm had given by then.
    assert pieces[-1] == Generation(len(llm.prompts[0].split()), llm.yielded, "stop")


def test_a_later_invented_name_ends_the_answer_before_that_clause():
    verdicts = Verdicts()
    tts = FakeTts()
    deltas = ["The lamp charges in three hours. ", "Ask Canberra ", "support for more."]
    pieces = collect(AnswerPipeline(FakeLlm(deltas), tts, on_grounding=verdicts))
    assert "".join(p.text for p in pieces if isinstance(p, TextPiece)) == "The lamp charges in three hours."
    assert [c for c, _ in tts.clauses] == ["The lamp charges in three hours."]
    assert verdicts == [(Grounding.TRUNCATED, ["Canberra"])]


def test_grounded_answers_are_counted_and_the_check_can_be_turned_off():
    verdicts = Verdicts()
    collect(AnswerPipeline(FakeLlm(ANSWER), FakeTts(), on_grounding=verdicts), speak=False)
    assert verdicts == [(Grounding.GROUNDED, [])]
    verdicts.clear()
    pieces = collect(AnswerPipeline(FakeLlm(["Port 4410."]), FakeTts(), grounding=False, on_grounding=verdicts))
    assert [p.text for p in pieces if isinstance(p, TextPiece)] == ["Port 4410."] and verdicts == []


def test_a_sentence_cut_short_by_an_invented_fact_ends_with_no_answer():
    verdicts = Verdicts()
    tts = FakeTts()
    deltas = ["The lamp charges in three hours ", "over its own charging cable, ", "or in 40 minutes on the dock."]
    pieces = collect(AnswerPipeline(FakeLlm(deltas), tts, first_clause_words=6, on_grounding=verdicts))
    text = "".join(p.text for p in pieces if isinstance(p, TextPiece))
    assert text == f"The lamp charges in three hours over its own charging cable, {NO_ANSWER}"
    assert [c for c, _ in tts.clauses][-1] == NO_ANSWER
    assert verdicts == [(Grounding.TRUNCATED, ["40"])]
