"""`make eval`'s scoring: reference matching, abstention, and the totals' arithmetic."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import eval as evaluation
import eval_set
from voice_e2e import TurnResult

from voicebot.text import NO_ANSWER


def test_normalize_reads_number_words_and_punctuation_alike():
    assert (
        eval_set.normalize("About THREE hours, with the 10-watt adapter.") == "about 3 hours with the 10 watt adapter"
    )
    assert eval_set.contains("It is version 0.21.", "0 21")
    assert eval_set.contains("It takes three hours", "3 hour")  # a phrase may end inside a word ("hours")
    assert not eval_set.contains("the squadron", "adm")  # but must start at a word boundary


def test_an_answer_matches_when_one_alternative_is_fully_present():
    question = eval_set.q("x", "?", "doc", ("litigation", "filed"), ("lawsuit", "filed"))
    assert eval_set.matches("It ends on the date the litigation is filed.", question)
    assert eval_set.matches("When a lawsuit is filed", question)
    assert not eval_set.matches("It ends when litigation starts.", question)


def test_the_prompts_own_refusal_counts_as_abstaining():
    assert evaluation.abstains(NO_ANSWER)
    assert evaluation.abstains("Sorry, the documents don't mention that.")
    assert not evaluation.abstains("The adm group can read the logs.")


def turn(answer, cited, passages, first_audio=1.0, transcript="", ok=True):
    return TurnResult(
        question="",
        concurrency=1,
        ok=ok,
        transcript=transcript,
        cited=cited,
        passages=passages,
        answer=answer,
        voice_to_first_audio_s=first_audio,
    )


def test_totals_count_accuracy_recall_context_and_abstention_apart():
    adm = eval_set.q("logs", "Which group can read the logs?", "users.html", "adm")
    uid = eval_set.q("uid", "What uid did operator have?", "users.html", "37")
    lamp = eval_set.q("lamp", "How big is the battery?", "lamp.md", "4000")
    none1 = eval_set.q("none-1", "What is the root password?", None)
    none2 = eval_set.q("none-2", "What is the capital of Australia?", None)
    rows = [
        # right, from the right document
        evaluation.score(
            adm,
            "v",
            turn("The adm group.", ["users.html"], ["Group adm reads logs"], 1.0, "Which group can read the logs?"),
            False,
        ),
        # the answer was in context, the model abstained: a false abstention
        evaluation.score(
            uid, "v", turn(NO_ANSWER, ["users.html"], ["It had uid 37."], 2.0, "What uid operator have"), False
        ),
        # retrieval missed the document: wrong, and not in context
        evaluation.score(
            lamp, "v", turn("About 2000 mAh.", ["users.html"], ["nothing"], 3.0, "How big is the battery?"), False
        ),
        # abstained rightly, and invented an answer
        evaluation.score(none1, "v", turn(NO_ANSWER, ["users.html"], ["x"], 4.0, "What is the root password?"), False),
        evaluation.score(
            none2, "v", turn("Canberra.", ["lamp.md"], ["x"], 5.0, "What is the capital of Australia?"), False
        ),
    ]
    t = evaluation.totals(rows)
    assert (t.answerable, t.unanswerable) == (3, 2)
    assert t.accuracy == pytest.approx(1 / 3)
    assert t.recall == pytest.approx(2 / 3)
    assert t.in_context == pytest.approx(2 / 3)
    assert t.abstention_precision == pytest.approx(1 / 2)  # two abstentions, one of them right
    assert t.abstention_recall == pytest.approx(1 / 2)
    assert t.false_abstentions == pytest.approx(1 / 3)
    # one word missing ("did") of 6 + 5 + 5 + 5 + 6 reference words
    assert t.wer == pytest.approx(1 / 27)
    assert t.first_audio_p50_s == 3.0 and t.errors == 0
    report = evaluation.render(
        rows,
        t,
        dict.fromkeys(
            [
                "date",
                "host",
                "machine",
                "profile",
                "language_model",
                "speech_model",
                "top_k",
                "passage_margin",
                "passage_words",
                "mode",
            ],
            "x",
        ),
        "cmd",
    )
    assert "| 3 | 2 | 0.037 | 67% | 67% | 33% | 50% | 50% | 33% |" in report
    assert "**uid**" in report and "**none-2**" in report and "**logs**" not in report


def test_a_failed_turn_is_an_error_and_never_correct():
    adm = eval_set.q("logs", "Which group?", "users.html", "adm")
    row = evaluation.score(adm, "v", turn("adm", ["users.html"], ["adm"], -1.0, ok=False), True)
    assert row.correct is False and evaluation.totals([row]).errors == 1


def test_the_question_set_is_what_the_issue_asks_for():
    answerable = [q for q in eval_set.QUESTIONS if q.source]
    assert len(answerable) >= 40 and len(eval_set.QUESTIONS) - len(answerable) >= 8
    names = {d.name for d in eval_set.DOCUMENTS}
    assert {q.source for q in answerable} <= names
    assert {d.name.rsplit(".", 1)[1] for d in eval_set.DOCUMENTS} >= {"txt", "md", "html", "pdf"}
    assert all(q.expect for q in answerable) and not any(q.expect for q in eval_set.QUESTIONS if not q.source)
    assert len({q.id for q in eval_set.QUESTIONS}) == len(eval_set.QUESTIONS)
    assert len(eval_set.VOICES) >= 3


def test_an_empty_answer_is_an_abstention_not_an_error():
    adm = eval_set.q("logs", "Which group?", "users.html", "adm")
    silent = turn("", ["users.html"], ["adm"], -1.0, ok=False)
    silent.error = "no_answer: The model gave no answer; please ask another way."
    row = evaluation.score(adm, "v", silent, True)
    assert row.abstained and row.correct is False and evaluation.totals([row]).errors == 0
