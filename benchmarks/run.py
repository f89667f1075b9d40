"""`make bench`: the floor, then the served stack, then a dated report with plots.

    .venv/bin/python benchmarks/run.py [--quick] [--levels 1,2,4,8]

Loopback only; every request loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402
import genai  # noqa: E402
import report  # noqa: E402
from floor import run_floor  # noqa: E402
from stack import ServedStack  # noqa: E402
from voice_e2e import RELEASE_S, run_level  # noqa: E402

from voicebot import contract as c  # noqa: E402
from voicebot.serving.repository import profile_orchestrator_defaults  # noqa: E402


def decode_rate(grpc_url: str, tokens: int = 128) -> float:
    """Tokens/s of a streamed llm request through Triton (first to last token)."""
    from voicebot import wire

    params = json.dumps({"max_tokens": tokens, "ignore_eos": True, "temperature": 0})
    values = {c.TEXT_INPUT: "Write about the sea:", c.STREAM: True, c.SAMPLING_PARAMETERS: params}

    async def stamps() -> list[float]:
        client = wire.grpc_client(grpc_url)
        try:
            return [
                time.perf_counter()
                async for _ in wire.stream(client, c.LLM, values, [c.TEXT_OUTPUT], "decode-rate", 120, 60)
            ]
        finally:
            await client.close()

    got = asyncio.run(stamps())
    return (len(got) - 1) / (got[-1] - got[0]) if len(got) > 2 else float("nan")


def last_committed_report(folder: Path, stem: str, profile: str) -> Path | None:
    """The newest benchmark report in git of the same profile (not an eval, soak or other report),
    other than this run's."""
    import subprocess

    try:
        listed = subprocess.run(
            ["git", "ls-files", "*.md"], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    reports = sorted(
        folder / name
        for name in listed
        if "/" not in name
        and name != f"{stem}.md"
        and "## Latency per stage" in (text := (folder / name).read_text())
        and f"Profile `{profile}`," in text
    )
    return reports[-1] if reports else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer turns (under 10 minutes)")
    parser.add_argument("--levels", default="1,2,4,8", help="concurrency levels")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--no-perf", action="store_true", help="skip perf_analyzer")
    parser.add_argument("--profile", default="cpu", help="deployment profile (triton/profiles)")
    parser.add_argument(
        "--release-s", type=float, default=RELEASE_S, help="silence streamed after each question before stop"
    )
    parser.add_argument("--baseline", type=Path, default=None, help="report to compare with (default: last committed)")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    turns_c1 = 4 if args.quick else 16
    turns_other = 1 if args.quick else 2

    documents = corpus.check_documents()
    work = Path(tempfile.mkdtemp(prefix="voicebot-bench-"))
    clips = [
        (q.text, corpus.pcm(corpus.speak(q.text, work / "speech", f"q{n}"))) for n, q in enumerate(corpus.QUESTIONS)
    ]
    started = dt.datetime.now()

    print(f"[bench] floor: {len(clips)} questions in-process", file=sys.stderr)
    served = {"top_k": 3, "passage_words": 60, **profile_orchestrator_defaults(args.profile)}
    top_k = int(os.environ.get("VOICEBOT_TOP_K", served["top_k"]))
    passage_words = int(os.environ.get("VOICEBOT_PASSAGE_WORDS", served["passage_words"]))
    floor_turns = run_floor(clips, work / "floor-index", documents, top_k, passage_words, args.profile)

    by_level: dict[int, list[dict]] = {}
    walls: dict[int, float] = {}
    perf_table, perf_failures = "not run (--no-perf)", []
    genai_table, genai_failures = "not run (--no-perf)", []
    with ServedStack(work, documents, profile=args.profile) as stack:
        decode = decode_rate(stack.triton.grpc_url)
        asyncio.run(run_level(stack.ws_url, clips[:1], 1, 1, args.release_s))  # warm-up, not counted
        for level in levels:
            per_session = turns_c1 if level == 1 else turns_other
            print(f"[bench] concurrency {level}: {level * per_session} voice turns", file=sys.stderr)
            level_began = time.monotonic()
            results = asyncio.run(run_level(stack.ws_url, clips, level, per_session, args.release_s))
            walls[level] = time.monotonic() - level_began
            by_level[level] = [r.as_row() for r in results]
        if not args.no_perf:
            import perf

            first = corpus.speak(corpus.QUESTIONS[0].text, work / "speech", "q0")
            perf_table, perf_failures = perf.run_all(
                stack.triton.grpc_url,
                args.out / "raw",
                corpus.pcm(first),
                first.read_bytes(),
                corpus.QUESTIONS[0].text,
                args.quick,
            )
            genai_table, genai_failures = genai.run_all(stack.triton.grpc_url, args.out / "raw", args.quick)

    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{started:%Y-%m-%d}-{platform.node() or 'machine'}" + ("" if args.profile == "cpu" else f"-{args.profile}")
    baseline = args.baseline or last_committed_report(args.out, stem, args.profile)
    (args.out / "raw").mkdir(exist_ok=True)  # raw samples stay local (ignored); the report is committed
    (args.out / "raw" / f"{stem}.json").write_text(
        json.dumps({"floor": [t.__dict__ for t in floor_turns], "served": by_level, "decode_tok_s": decode}, indent=1)
    )
    pngs = report.plots(by_level, args.out, stem)
    timeline = report.timeline_plot(by_level.get(1, []), args.out / f"{stem}-timeline.png")
    regression = (
        report.regression_table(by_level, baseline.read_text(), baseline.name)
        if baseline is not None
        else "no earlier report to compare with"
    )
    floor_rows = [t.timings for t in floor_turns]
    expected = {q.text: q.source for q in corpus.QUESTIONS}
    c1_rows = by_level.get(1, [])
    accuracy = sum(1 for r in c1_rows if r["ok"] and r["cited"][:1] == [expected[r["question"]]])
    errors = {level: sum(1 for r in rows if not r["ok"]) for level, rows in by_level.items()}
    text = f"""# Benchmark {started:%Y-%m-%d %H:%M} on {platform.node()} ({report.machine()})

Command: `{" ".join(["benchmarks/run.py", *sys.argv[1:]])}`. Profile `{args.profile}`, top-k {top_k},
{passage_words} words per passage. Documents: {", ".join(d.name for d in documents)}.
{len(clips)} espeak-ng questions (en-us, 130 words/min, 16 kHz) streamed as 20 ms frames in real time through
`/v1/voice`, each followed by {args.release_s:g} s of silence before `stop` (the moment a person takes to
release the button; voice → first audio is measured from `stop`); the floor ran the same models with the same
settings in one process, serially on the whole clip, in this same run, before the served stack started (so the
two never competed for the 2 cores).

## Work while the user speaks (concurrency 1)

{report.speculation_targets(by_level.get(1, []), floor_rows, args.profile)}

Speculation: {report.speculation_summary(by_level.get(1, []))}.

{f"![Timeline]({timeline.name})" if timeline else ""}

## Many voices (concurrency 1 and up)

Voice → first audio P50 against the single-session P50 of this run; underruns as a client plays the
audio (each chunk right after the one before, or when it arrives if that is later); `busy`: turns
that waited for a slot (`VOICEBOT_MAX_TURNS`).

{report.many_voices(by_level, walls)}

## Targets (concurrency 1)

{report.targets_table(by_level, floor_rows, decode)}

## Against the last report

{regression}

## Latency per stage

{report.latency_table(by_level)}

Errors by concurrency: {errors}. First citation from the right document at c=1: {accuracy}/{len(c1_rows)}.

## perf_analyzer (each model alone, gRPC, real speech and text inputs)

{perf_table}
{"" if not perf_failures else "Failures: " + "; ".join(perf_failures)}

## genai-perf (`llm` alone, streaming gRPC: {genai.INPUT_TOKENS} synthetic input tokens, {genai.OUTPUT_TOKENS} out)

{genai_table}
{"" if not genai_failures else "Failures: " + "; ".join(genai_failures)}

## Serving overhead (Triton + orchestrator vs in-process)

{report.overhead_table(by_level.get(1, []), floor_rows)}

![CDF]({pngs[0].name})
![Concurrency]({pngs[1].name})
"""
    path = args.out / f"{stem}.md"
    path.write_text(text)
    print(f"[bench] report: {path}", file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
