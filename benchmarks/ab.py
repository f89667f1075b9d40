"""A/B one change on the served stack, interleaved (A B A B …) in one run, voice turns at concurrency 1.

    .venv/bin/python benchmarks/ab.py --b "instances:whisper_stt=KIND_CPU:2" [--a ""] [--rounds 2] [--turns 4]
        [--concurrency 1]

A variant is a ';'-separated list of ``instances:MODEL=KIND:COUNT`` (the launcher's --instances),
``env:NAME=VALUE`` (orchestrator and Triton environment, e.g. env:VOICEBOT_PARTIAL_INTERVAL_S=30) and
``profile:NAME_OR_PATH`` (a deployment profile, e.g. a JSON file that changes a model's sidecar).
Each round starts the whole stack afresh for each variant, so the two never share a warm cache
or compete for the cores. Prints a Markdown table of P50s per variant.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402
import report  # noqa: E402
from stack import ServedStack  # noqa: E402
from voice_e2e import run_level  # noqa: E402

KEYS = [
    ("stt_ms", "STT"),
    ("llm_first_token_ms", "LLM first token"),
    ("tts_first_audio_ms", "TTS first audio"),
    ("voice_to_first_audio_ms", "voice → first audio"),
    ("total_ms_client", "total"),
]


def parse_variant(text: str) -> tuple[list[str], dict[str, str], str]:
    instances, env, profile = [], {}, "cpu"
    for part in filter(None, (p.strip() for p in text.split(";"))):
        kind, _, value = part.partition(":")
        if kind == "instances" and "=" in value:
            instances.append(value)
        elif kind == "env" and "=" in value:
            name, _, val = value.partition("=")
            env[name] = val
        elif kind == "profile" and value:
            profile = value
        else:
            raise SystemExit(
                f"cannot read variant part {part!r}: use instances:MODEL=KIND:COUNT, env:NAME=VALUE or profile:NAME"
            )
    return instances, env, profile


def table(rows_by_variant: dict[str, list[dict]]) -> str:
    head = "| variant | n | errors | " + " | ".join(f"{label} P50" for _, label in KEYS) + " | speculation |"
    lines = [head, "|" + "---|" * (len(KEYS) + 4)]
    for name, rows in rows_by_variant.items():
        errors = sum(1 for r in rows if not r["ok"])
        cells = [report.fmt_s(report.pct(report.stage_values(rows, key), 50)) for key, _ in KEYS]
        spec = report.speculation_summary(rows)
        lines.append(f"| {name or '(baseline)'} | {len(rows)} | {errors} | " + " | ".join(cells) + f" | {spec} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", default="", help="variant A (default: the defaults)")
    parser.add_argument("--b", required=True, help="variant B")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--turns", type=int, default=4, help="voice turns per session per variant per round")
    parser.add_argument("--concurrency", type=int, default=1, help="sessions at once")
    args = parser.parse_args()
    variants = {args.a: parse_variant(args.a), args.b: parse_variant(args.b)}
    work = Path(tempfile.mkdtemp(prefix="voicebot-ab-"))
    clips = [
        (q.text, corpus.pcm(corpus.speak(q.text, work / "speech", f"q{n}"))) for n, q in enumerate(corpus.QUESTIONS)
    ]
    rows: dict[str, list[dict]] = {name: [] for name in variants}
    for round_no in range(args.rounds):
        for name, (instances, env, profile) in variants.items():
            print(f"[ab] round {round_no + 1}: {name or '(baseline)'}", file=sys.stderr)
            folder = work / f"r{round_no}-{len(rows[name])}-{abs(hash(name))}"
            folder.mkdir()
            with ServedStack(
                folder, corpus.check_documents(), runtime="ab", instances=instances, profile=profile, **env
            ) as stack:
                asyncio.run(run_level(stack.ws_url, clips[:1], 1, 1))  # warm-up, not counted
                offset = round_no * args.turns
                ordered = clips[offset % len(clips) :] + clips[: offset % len(clips)]
                results = asyncio.run(run_level(stack.ws_url, ordered, args.concurrency, args.turns))
                rows[name] += [r.as_row() for r in results]
    print(
        f"A/B: {args.rounds} rounds × {args.turns} voice turns per session and variant, "
        f"concurrency {args.concurrency}, on {report.machine()}\n"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
