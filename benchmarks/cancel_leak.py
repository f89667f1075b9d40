"""Does stopping an answer leak? ``--calls`` voice_answer calls, each cancelled mid-answer.

    .venv/bin/python benchmarks/cancel_leak.py [--calls 600] [--report benchmarks/results/<date>-<host>-cancel.md]

Half the calls are spoken and cancelled at their first audio chunk, half typed and cancelled at
their first text: the client's stream is cancelled (``voicebot.wire``), voice_answer sees
``is_cancelled()`` and cancels its own ``llm`` and ``tts`` calls. The resident memory of every
model process is sampled throughout; the report gives each one's peak over the first and the
last tenth of the calls. Afterwards one full answer must still come back. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

from voicebot import contract as c
from voicebot import wire
from voicebot.serving.launcher import ServerOptions, TritonServer, free_port
from voicebot.serving.supervisor import model_stubs, rss_mib

RESULTS = Path(__file__).resolve().parent / "results"
PASSAGES = json.dumps([{"id": "1", "title": "Lamp", "text": "The lamp charges in about three hours."}])
QUESTIONS = ["How long does the lamp take to charge?", "What does the ring around the switch show?"]


async def cancelled_call(client: object, n: int) -> None:
    speak = n % 2 == 0
    values = {c.QUESTION: QUESTIONS[n % len(QUESTIONS)], c.PASSAGES: PASSAGES, c.SPEAK: speak}
    outputs = [c.TEXT_OUTPUT, c.AUDIO, c.SAMPLE_RATE] if speak else [c.TEXT_OUTPUT]
    calls = wire.stream(client, c.VOICE_ANSWER, values, outputs, f"cancel-{n}", 120, 60)
    async for result in calls:
        audio = result.as_numpy(c.AUDIO) if speak else None
        if (audio is not None and audio.size) or (not speak and result.as_numpy(c.TEXT_OUTPUT) is not None):
            break  # leaving the stream cancels the call
    await calls.aclose()


async def full_answer(client: object) -> tuple[str, int]:
    values = {c.QUESTION: QUESTIONS[0], c.PASSAGES: PASSAGES, c.SPEAK: True}
    text, samples = "", 0
    async for result in wire.stream(
        client, c.VOICE_ANSWER, values, [c.TEXT_OUTPUT, c.AUDIO, c.SAMPLE_RATE], "after", 120, 60
    ):
        out = result.as_numpy(c.TEXT_OUTPUT)
        text += "".join(x.decode() for x in out.reshape(-1)) if out is not None else ""
        audio = result.as_numpy(c.AUDIO)
        samples += 0 if audio is None else audio.size
    return text, samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--warm-up", type=int, default=20)
    host = platform.node().split(".")[0] or "host"
    parser.add_argument("--report", type=Path, default=RESULTS / f"{dt.date.today()}-{host}-cancel.md")
    args = parser.parse_args(argv)

    ports = [free_port() for _ in range(3)]
    runtime = Path(tempfile.mkdtemp(prefix="voicebot-cancel-"))
    models = [c.VOICE_ANSWER.name, c.LLM.name, c.TTS.name]
    server = TritonServer(
        ServerOptions(http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2], runtime_dir=runtime, models=models)
    )
    samples: dict[str, list[tuple[int, float]]] = {}
    done_calls = [0]
    stop = threading.Event()
    with server:
        server.start(timeout=240)
        assert server.process is not None
        stubs = {stub.model: stub.pid for stub in model_stubs(server.process.pid).values()}
        stubs["tritonserver"] = server.process.pid

        def sample() -> None:
            while not stop.wait(0.25):
                for model, pid in stubs.items():
                    value = rss_mib(pid)
                    if value is not None:
                        samples.setdefault(model, []).append((done_calls[0], value))

        sampler = threading.Thread(target=sample, daemon=True)

        async def run() -> tuple[str, int, float]:
            client = wire.grpc_client(server.grpc_url)
            try:
                for n in range(args.warm_up):
                    await cancelled_call(client, n)
                sampler.start()
                began = time.monotonic()
                for n in range(args.calls):
                    await cancelled_call(client, n)
                    done_calls[0] = n + 1
                    if (n + 1) % 50 == 0:
                        print(f"[cancel] {n + 1}/{args.calls} calls", file=sys.stderr)
                elapsed = time.monotonic() - began
                await asyncio.sleep(2)  # let the last cancellations settle before the final samples
                text, audio = await full_answer(client)
                return text, audio, elapsed
            finally:
                await client.close()

        text, audio, elapsed = asyncio.run(run())
        stop.set()
    tenth = max(args.calls // 10, 1)
    rows = []
    worst = 0.0
    for model, values in sorted(samples.items()):
        first = [v for n, v in values if n <= tenth]
        last = [v for n, v in values if n >= args.calls - tenth]
        if first and last:
            growth = max(last) - max(first)
            worst = max(worst, growth) if model == c.VOICE_ANSWER.name else worst
            rows.append(f"| `{model}` | {max(first):.1f} | {max(last):.1f} | {growth:+.1f} |")
    lines = [
        f"# Cancelled answers: memory ({dt.date.today()}, {host})",
        "",
        f"`.venv/bin/python benchmarks/cancel_leak.py --calls {args.calls}`: {args.calls} voice_answer calls after "
        f"{args.warm_up} warm-up calls, half spoken and cancelled at the first audio, half typed and cancelled at the "
        f"first text, one after another ({elapsed:.0f} s). Peak RSS over the first and the last tenth of the calls:",
        "",
        "| process | first tenth (MiB) | last tenth (MiB) | growth (MiB) |",
        "|---|---|---|---|",
        *rows,
        "",
        f"After them a full spoken answer: {len(text.split())} words, {audio / 22050:.1f} s of audio.",
        f"voice_answer growth {worst:+.1f} MiB over {args.calls} cancelled calls (goal < 5 MiB).",
    ]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if worst < 5 and text.strip() and audio > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
