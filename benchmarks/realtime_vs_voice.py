"""The same spoken questions through ``/v1/realtime`` and ``/v1/voice``, interleaved on one stack.

    .venv/bin/python benchmarks/realtime_vs_voice.py [--turns 16] [--out benchmarks/results/NAME.md]

Each question is asked once through each endpoint, alternating which goes first, one turn at a
time (concurrency 1), after a warm-up turn of each. First audio is timed from the end of input
(native ``stop``; Realtime ``commit`` + ``response.create``) to the first audio received.
Issue 16's target: Realtime first audio within 10% of native (P50).
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
from voice_e2e import TurnResult, realtime_turn, voice_turn  # noqa: E402

KEYS = [
    ("voice_to_first_audio_ms", "first audio"),
    ("stt_ms", "STT (server)"),
    ("llm_first_token_ms", "LLM first token (server)"),
    ("total_ms_client", "total"),
]


def table(rows: dict[str, list[dict]]) -> str:
    head = (
        "| endpoint | turns | errors | underruns | speculation hits | transcript reused | "
        + " | ".join(f"{label} P50 / P90" for _, label in KEYS)
        + " |"
    )
    lines = [head, "|" + "---|" * (len(KEYS) + 6)]
    for name, items in rows.items():
        cells = [
            f"{report.fmt_s(report.pct(report.stage_values(items, k), 50))} / "
            f"{report.fmt_s(report.pct(report.stage_values(items, k), 90))}"
            for k, _ in KEYS
        ]
        errors = sum(1 for r in items if not r["ok"])
        underruns = sum(r["underruns"] for r in items)
        hits = sum(1 for r in items if r["speculation"] == "hit")
        reused = sum(1 for r in items if r["ok"] and r["server"].get("stt_ms", -1) == 0)
        lines.append(
            f"| {name} | {len(items)} | {errors} | {underruns} | {hits} | {reused} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


async def interleaved(stack: ServedStack, clips: list[tuple[str, bytes]], turns: int) -> dict[str, list[TurnResult]]:
    realtime_url = stack.ws_url.replace("/v1/voice", "/v1/realtime")
    question, audio = clips[0]
    await voice_turn(stack.ws_url, audio, question, 1)  # warm-ups, not counted
    await realtime_turn(realtime_url, audio, question, 1)
    out: dict[str, list[TurnResult]] = {"/v1/voice": [], "/v1/realtime": []}
    for n in range(turns):
        question, audio = clips[n % len(clips)]
        order = ["/v1/voice", "/v1/realtime"] if n % 2 == 0 else ["/v1/realtime", "/v1/voice"]
        for name in order:
            if name == "/v1/voice":
                out[name].append(await voice_turn(stack.ws_url, audio, question, 1))
            else:
                out[name].append(await realtime_turn(realtime_url, audio, question, 1))
        print(f"[realtime-vs-voice] {n + 1}/{turns}", file=sys.stderr)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=16, help="questions, each asked through both endpoints")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="voicebot-realtime-"))
    clips = [
        (q.text, corpus.pcm(corpus.speak(q.text, work / "speech", f"q{n}"))) for n, q in enumerate(corpus.QUESTIONS)
    ]
    (work / "stack").mkdir()
    with ServedStack(work / "stack", corpus.check_documents(), runtime="realtime", profile=args.profile) as stack:
        results = asyncio.run(interleaved(stack, clips, args.turns))
    rows = {name: [r.as_row() for r in items] for name, items in results.items()}
    native = report.pct(report.stage_values(rows["/v1/voice"], "voice_to_first_audio_ms"), 50)
    realtime = report.pct(report.stage_values(rows["/v1/realtime"], "voice_to_first_audio_ms"), 50)
    ratio = realtime / native if native == native and native > 0 else float("nan")
    verdict = "met" if ratio <= 1.10 else "not met"
    text = (
        f"# Realtime against native voice turns (profile {args.profile})\n\n"
        f"`benchmarks/realtime_vs_voice.py --turns {args.turns}`: {args.turns} spoken questions, each through both "
        "endpoints, interleaved, one at a time.\n\n"
        f"{table(rows)}\n\n"
        f"Realtime/native first audio P50: **{ratio:.2f}×** (target ≤ 1.10×: {verdict}).\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
