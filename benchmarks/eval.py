"""`make eval`: answer quality of the served stack on spoken questions over real documents.

    .venv/bin/python benchmarks/eval.py [--profile cpu] [--typed] [--limit N] [--report PATH]

Every question of ``benchmarks/eval_set.py`` is spoken by espeak-ng (three voices and speeds,
in turn), streamed in real time over ``/v1/voice`` on a fresh connection, and scored:

- **WER** of the final transcript against the question (word-level, over all questions' words).
- **Recall@k**: the question's document is among the cited passages.
- **Answer in context**: the passages the model saw (the citations carry exactly those) say what
  a correct answer must say (the same test as below, applied to their text).
- **Accuracy**: the answer says what the reference requires (``eval_set.matches``) and does not
  abstain; over the answerable questions.
- **Abstention**: an answer abstains when it says it could not find the answer (:data:`ABSTAINS`), or
  when the model said nothing (the ``no_answer`` error: the listener is told to ask another way).
  Precision: abstentions that were right (no document answers); recall: unanswerable questions
  abstained on; false abstentions: answerable questions abstained on.
- **First audio**: Stop sent → first audio byte, as a listener waits for it.

Loopback only; each turn is bounded in time. The report goes to
``benchmarks/results/<date>-<host>-eval-<profile>.md`` and its raw rows beside it under ``raw/``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402
import eval_set  # noqa: E402
import report  # noqa: E402
from stack import ServedStack  # noqa: E402
from voice_e2e import RELEASE_S, TurnResult, voice_turn  # noqa: E402

from orchestrator.settings import Settings  # noqa: E402
from voicebot import contract as c  # noqa: E402
from voicebot.contract import ErrorCode  # noqa: E402
from voicebot.llms import DEFAULT_LLM  # noqa: E402
from voicebot.serving.repository import load_profile, profile_orchestrator_defaults  # noqa: E402
from voicebot.text import word_edits  # noqa: E402

# What an answer that abstains says (normalized, eval_set.normalize); the prompt asks for the first.
ABSTAINS = (
    "could not find",
    "couldn t find",
    "cannot find",
    "can t find",
    "not in your documents",
    "no information",
    "not mentioned",
    "do not contain",
    "does not contain",
    "don t contain",
    "doesn t contain",
    "do not mention",
    "don t mention",
    "does not mention",
    "doesn t mention",
)


def abstains(answer: str) -> bool:
    return any(eval_set.contains(answer, phrase) for phrase in ABSTAINS)


@dataclass
class Scored:
    question: eval_set.EvalQuestion
    voice: str
    turn: TurnResult
    wer_errors: int
    wer_words: int
    recalled: bool | None  # None: no document answers the question
    in_context: bool | None
    correct: bool | None
    abstained: bool

    def row(self) -> dict[str, object]:
        return {
            "id": self.question.id,
            "question": self.question.text,
            "source": self.question.source,
            "voice": self.voice,
            "transcript": self.turn.transcript,
            "answer": self.turn.answer,
            "cited": self.turn.cited,
            "scores": self.turn.scores,
            "seen": self.turn.passages,
            "ok": self.turn.ok,
            "error": self.turn.error,
            "wer_errors": self.wer_errors,
            "wer_words": self.wer_words,
            "recalled": self.recalled,
            "in_context": self.in_context,
            "correct": self.correct,
            "abstained": self.abstained,
            "first_audio_s": self.turn.voice_to_first_audio_s,
            "server_ms": self.turn.server,
            "speculation": self.turn.speculation,
            "timeline": self.turn.timeline,
        }


def score(question: eval_set.EvalQuestion, voice: str, turn: TurnResult, typed: bool) -> Scored:
    errors, words = (0, 0) if typed else word_edits(question.text, turn.transcript)
    # The model said nothing and the listener heard "no answer, please ask another way":
    # an abstention, not a failure of the stack.
    silent = turn.error.startswith(f"{ErrorCode.NO_ANSWER}:")
    turn.ok = turn.ok or silent
    abstained = silent or abstains(turn.answer)
    if question.source is None:
        return Scored(question, voice, turn, errors, words, None, None, None, abstained)
    return Scored(
        question,
        voice,
        turn,
        errors,
        words,
        recalled=question.source in turn.cited,
        in_context=eval_set.matches(" ".join(turn.passages), question),
        correct=turn.ok and not abstained and eval_set.matches(turn.answer, question),
        abstained=abstained,
    )


@dataclass(frozen=True)
class Totals:
    answerable: int
    unanswerable: int
    wer: float
    recall: float
    in_context: float
    accuracy: float
    abstention_precision: float
    abstention_recall: float
    false_abstentions: float
    first_audio_p50_s: float
    first_audio_p90_s: float
    errors: int


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def totals(rows: list[Scored]) -> Totals:
    answerable = [r for r in rows if r.question.source is not None]
    unanswerable = [r for r in rows if r.question.source is None]
    abstained = [r for r in rows if r.abstained]
    words = sum(r.wer_words for r in rows)
    audio = sorted(r.turn.voice_to_first_audio_s for r in rows if r.turn.voice_to_first_audio_s >= 0)
    return Totals(
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        wer=sum(r.wer_errors for r in rows) / words if words else float("nan"),
        recall=_share([bool(r.recalled) for r in answerable]),
        in_context=_share([bool(r.in_context) for r in answerable]),
        accuracy=_share([bool(r.correct) for r in answerable]),
        abstention_precision=_share([r.question.source is None for r in abstained]),
        abstention_recall=_share([r.abstained for r in unanswerable]),
        false_abstentions=_share([r.abstained for r in answerable]),
        first_audio_p50_s=statistics.median(audio) if audio else float("nan"),
        first_audio_p90_s=audio[min(len(audio) - 1, int(0.9 * len(audio)))] if audio else float("nan"),
        errors=sum(not r.turn.ok for r in rows),
    )


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.0f}%"


def _wer(x: float) -> str:
    return "n/a" if x != x else f"{x:.3f}"  # typed questions: nothing was heard


def _mark(flag: bool | None) -> str:
    return "–" if flag is None else ("yes" if flag else "**no**")


def speculation_counts(rows: list[Scored]) -> str:
    """``hit 30, partial 5, miss 3, none 0`` over the turns that reported it."""
    seen = [r.turn.speculation for r in rows if r.turn.speculation]
    return ", ".join(f"{o} {seen.count(o)}" for o in ("hit", "partial", "miss", "none")) if seen else "not reported"


def render(rows: list[Scored], t: Totals, setup: dict[str, str], command: str) -> str:
    lines = [
        f"# Eval {setup['date']} on {setup['host']} ({setup['machine']}): profile `{setup['profile']}`",
        "",
        f"Command: `{command}`. LLM `{setup['language_model']}`, Whisper `{setup['speech_model']}`, "
        f"top-k {setup['top_k']} (margin {setup['passage_margin']}), {setup['passage_words']} words per passage, "
        f"questions {setup['mode']}.",
        "",
        "| answerable | unanswerable | WER | recall@k | answer in context | accuracy | abstention precision "
        "| abstention recall | false abstentions | first audio P50 / P90 | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {t.answerable} | {t.unanswerable} | {_wer(t.wer)} | {_pct(t.recall)} | {_pct(t.in_context)} "
        f"| {_pct(t.accuracy)} | {_pct(t.abstention_precision)} | {_pct(t.abstention_recall)} "
        f"| {_pct(t.false_abstentions)} | {t.first_audio_p50_s:.2f} s / {t.first_audio_p90_s:.2f} s | {t.errors} |",
        "",
        f"Speculation during speech (prompt prefix prefilled before release): {speculation_counts(rows)}; "
        f"{setup.get('release_s', '0')} s of silence streamed after each question before `stop`.",
        "",
        "| id | voice | WER | recalled | in context | correct | abstained | speculation | first audio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        wer = f"{r.wer_errors}/{r.wer_words}" if r.wer_words else "–"
        lines.append(
            f"| {r.question.id} | {r.voice} | {wer} | {_mark(r.recalled)} | {_mark(r.in_context)} "
            f"| {_mark(r.correct)} | {'yes' if r.abstained else 'no'} | {r.turn.speculation or '–'} "
            f"| {r.turn.voice_to_first_audio_s:.2f} s |"
        )
    wrong = [r for r in rows if r.correct is False or (r.question.source is None and not r.abstained)]
    lines += ["", "## Wrong answers", ""]
    for r in wrong:
        lines.append(f"- **{r.question.id}** — asked: {r.question.text}  ")
        lines.append(f"  heard: {r.turn.transcript or '(typed)'}  ")
        lines.append(f"  answered: {r.turn.answer.strip() or r.turn.error or '(nothing)'}")
    if not wrong:
        lines.append("none")
    return "\n".join(lines) + "\n"


def check_documents() -> list[tuple[Path, str]]:
    missing = [d for d in eval_set.DOCUMENTS if not d.path.is_file()]
    if missing:
        packages = sorted({d.debian_package for d in missing if d.debian_package})
        raise SystemExit(
            f"eval documents missing: {', '.join(str(d.path) for d in missing)}"
            + (f" (apt-get install {' '.join(packages)}; `make eval` does)" if packages else "")
        )
    return [(d.path, d.name) for d in eval_set.DOCUMENTS]


DEFAULTS = {
    "top_k": Settings.model_fields["top_k"].default,
    "passage_words": Settings.model_fields["passage_words"].default,
    "passage_margin": Settings.model_fields["passage_margin"].default,
}


def describe(profile: str) -> dict[str, str]:
    deploys = load_profile(profile)
    llm = deploys[c.LLM.name].sidecar if c.LLM.name in deploys else {}
    stt = deploys[c.WHISPER_STT.name].sidecar if c.WHISPER_STT.name in deploys else {}
    engine_args = llm.get("engine_args", {})
    return {
        "language_model": str(llm.get("llama_cpp", {}).get("model") or engine_args.get("model") or DEFAULT_LLM),
        "speech_model": str(stt.get("model", "tiny.en")),
    }


def rescore(raw_path: Path, report: Path | None) -> int:
    """The report of a finished run, from its raw rows, with today's scoring."""
    raw = json.loads(raw_path.read_text())
    by_id = {q.id: q for q in eval_set.QUESTIONS}
    rows = []
    for r in raw["rows"]:
        turn = TurnResult(
            question=r["question"],
            concurrency=1,
            ok=r["ok"],
            error=r["error"],
            transcript=r["transcript"],
            cited=r["cited"],
            passages=r["seen"],
            scores=r["scores"],
            answer=r["answer"],
            voice_to_first_audio_s=r["first_audio_s"],
            server=r["server_ms"],
            speculation=r.get("speculation", ""),
            timeline=r.get("timeline", []),
        )
        rows.append(score(by_id[r["id"]], r["voice"], turn, raw["setup"]["mode"] == "typed"))
    command = raw.get("command") or f"benchmarks/eval.py --profile {raw['setup']['profile']}"
    text = render(
        rows, totals(rows), raw["setup"], f"{command}; rescored: benchmarks/eval.py --rescore {raw_path.name}"
    )
    print(text)
    if report is not None:
        report.write_text(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu", help="deployment profile (triton/profiles)")
    parser.add_argument("--typed", action="store_true", help="type the questions instead of speaking them")
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions (a quick look)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds one turn may take")
    parser.add_argument(
        "--release-s", type=float, default=RELEASE_S, help="silence streamed after each question before stop"
    )
    parser.add_argument("--report", type=Path, default=None, help="where to write the report")
    parser.add_argument("--rescore", type=Path, default=None, help="score a run's raw JSON again (no stack)")
    args = parser.parse_args(argv)
    if args.rescore is not None:
        return rescore(args.rescore, args.report)

    documents = check_documents()
    questions = eval_set.QUESTIONS[: args.limit] if args.limit else eval_set.QUESTIONS
    work = Path(tempfile.mkdtemp(prefix="voicebot-eval-"))
    clips: list[bytes | None] = []
    voices = []
    for n, question in enumerate(questions):
        voice, wpm = eval_set.VOICES[n % len(eval_set.VOICES)]
        voices.append(f"{voice} {wpm}")
        clips.append(None if args.typed else corpus.pcm(corpus.speak(question.text, work, question.id, voice, wpm)))
    setup = {
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "host": platform.node(),
        "machine": report.machine(),
        "profile": args.profile,
        **{
            key: os.environ.get(f"VOICEBOT_{key.upper()}", str(value))
            for key, value in {**DEFAULTS, **profile_orchestrator_defaults(args.profile)}.items()
        },
        "mode": "typed" if args.typed else "spoken (espeak-ng, real time)",
        "release_s": f"{args.release_s:g}",
        **describe(args.profile),
    }
    rows: list[Scored] = []
    print(f"[eval] {len(questions)} questions, profile {args.profile}", file=sys.stderr)
    with ServedStack(work, documents, runtime="eval", profile=args.profile) as stack:
        for n, (question, clip) in enumerate(zip(questions, clips, strict=True)):
            turn = asyncio.run(voice_turn(stack.ws_url, clip, question.text, 1, args.timeout, args.release_s))
            scored = score(question, voices[n], turn, args.typed)
            rows.append(scored)
            verdict = (
                "abstained" if scored.abstained else {True: "right", False: "WRONG", None: "answered"}[scored.correct]
            )
            print(
                f"[eval] {n + 1}/{len(questions)} {question.id}: {verdict}: {turn.answer.strip()[:100]}",
                file=sys.stderr,
            )
    result = totals(rows)
    command = "benchmarks/eval.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = render(rows, result, setup, command.strip())
    print(text)
    out = args.report or HERE / "results" / f"{dt.date.today()}-{platform.node()}-eval-{args.profile}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    raw = out.parent / "raw"  # raw rows stay local (ignored)
    raw.mkdir(exist_ok=True)
    (raw / f"{out.stem}.json").write_text(
        json.dumps(
            {"setup": setup, "command": command, "totals": result.__dict__, "rows": [r.row() for r in rows]}, indent=1
        )
    )
    print(f"[eval] report: {out}", file=sys.stderr)
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
