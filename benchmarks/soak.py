"""`make soak`: a bounded mixed load on the served stack, reporting errors and memory growth.

    .venv/bin/python benchmarks/soak.py [--duration 1800] [--sessions 2] [--max-rss-growth 10]

Each session loops over voice turns (espeak-ng questions streamed in real time), typed turns
(spoken or not) and barge-ins (cancel at the first token or audio, then a typed turn that must
not see anything of the cancelled one); a document worker uploads, lists and deletes its own
documents. After a warm-up the resident memory of every process (orchestrator, tritonserver and
each model's stub) is sampled; the run fails on any error, on a model process that died or was
replaced, or when a process grew more than ``--max-rss-growth`` percent. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import random
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402
import websockets  # noqa: E402
from stack import ServedStack, upload  # noqa: E402
from voice_e2e import voice_turn  # noqa: E402

from voicebot.contract import EventType  # noqa: E402
from voicebot.serving.supervisor import model_stubs, rss_mib  # noqa: E402

TURN_TIMEOUT_S = 180.0


@dataclass
class Tally:
    ops: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    underruns: int = 0  # voice answers' audio chunks that came after the audio before them had played
    spoken_turns: int = 0

    def fail(self, op: str, message: str) -> None:
        self.errors.append(f"{op}: {message}")
        print(f"[soak] ERROR {op}: {message}", file=sys.stderr)


async def receive(ws: websockets.ClientConnection, deadline: float) -> dict | None:
    """The next event (None for an audio frame)."""
    message = await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.1))
    return None if isinstance(message, bytes) else json.loads(message)


async def typed_turn(ws: websockets.ClientConnection, text: str, speak: bool) -> str:
    """One typed turn on an open session; '' when it ended with done, else what went wrong."""
    await ws.send(json.dumps({"type": EventType.TEXT, "text": text, "speak": speak}))
    deadline = time.monotonic() + TURN_TIMEOUT_S
    first = True
    while True:
        event = await receive(ws, deadline)
        if event is None:
            continue
        kind = event["type"]
        if first and kind != EventType.CITATIONS:
            return f"'{kind}' arrived before this turn's citations (left over from an earlier turn?)"
        first = False
        if kind == EventType.ERROR:
            return f"{event['code']}: {event['message']}"
        if kind == EventType.DONE:
            return ""


async def barge_in(ws: websockets.ClientConnection, text: str) -> str:
    """Ask, cancel at the first token or audio, then ask again: the second turn must be clean."""
    await ws.send(json.dumps({"type": EventType.TEXT, "text": text, "speak": True}))
    deadline = time.monotonic() + TURN_TIMEOUT_S
    while True:
        event = await receive(ws, deadline)
        if event is None or event["type"] in (EventType.TOKEN, EventType.DONE):
            break  # an answer is streaming (or already over: cancel must still be acknowledged)
        if event["type"] == EventType.ERROR:
            return f"before the cancel: {event['code']}: {event['message']}"
    await ws.send(json.dumps({"type": EventType.CANCEL}))
    while True:
        event = await receive(ws, deadline)
        if event is not None and event["type"] == EventType.CANCELLED:
            break
    return await typed_turn(ws, text, speak=False)


OPERATIONS = {"voice": 4, "typed": 2, "typed_spoken": 2, "barge_in": 2}  # relative weights


async def run_op(
    op: str, ws: websockets.ClientConnection, url: str, question: str, audio: bytes, tally: Tally | None = None
) -> str:
    """One operation; '' when it went as it should, else what went wrong."""
    try:
        if op == "voice":  # a voice turn opens its own session, as a page reload would
            result = await voice_turn(url, audio, question, 1, timeout=TURN_TIMEOUT_S)
            if tally is not None and result.ok:
                tally.underruns += result.underruns
                tally.spoken_turns += 1
            return "" if result.ok else result.error
        if op == "barge_in":
            return await barge_in(ws, question)
        return await typed_turn(ws, question, speak=op == "typed_spoken")
    except (OSError, TimeoutError, websockets.WebSocketException) as exc:
        return f"{type(exc).__name__}: {exc}"


async def session_worker(url: str, clips: list[tuple[str, bytes]], until: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    async with websockets.connect(url, max_size=1 << 22) as ws:
        while time.monotonic() < until:
            question, audio = rng.choice(clips)
            op = rng.choices(list(OPERATIONS), weights=list(OPERATIONS.values()))[0]
            problem = await run_op(op, ws, url, question, audio, tally)
            tally.ops[op] += 1
            if problem:
                tally.fail(op, problem)


async def warm_up(url: str, clips: list[tuple[str, bytes]], tally: Tally) -> None:
    """Each operation once, then every question answered aloud once, one after the other.

    Piper's and llama.cpp's working memory grows with the longest input they have seen (in-process,
    200 clauses: Piper 254 → ~400 MiB, flat after ~60), so the baseline is taken once every
    question has been through them: growth after that is what a leak would look like.
    """
    async with websockets.connect(url, max_size=1 << 22) as ws:
        for op in OPERATIONS:
            problem = await run_op(op, ws, url, *clips[0])
            if problem:
                tally.fail(f"warm-up {op}", problem)
        for question, audio in clips:
            problem = await run_op("typed_spoken", ws, url, question, audio)
            if problem:
                tally.fail("warm-up typed_spoken", problem)


def speak_longest_clause(grpc_url: str) -> None:
    """Have tts speak the longest clause the pipeline can send it (MAX_CLAUSE_WORDS long words).

    onnxruntime's arena keeps the memory of the longest input Piper has seen (in-process: 267 →
    350 MiB over five clauses with the arena, flat without it but 15–25% slower per clause), so
    an answer with a longer clause than any before raises tts's RSS in one step: a high-water
    mark, bounded by the clause limit, not a leak. Reaching it before the baseline makes growth
    after it mean what it should.
    """
    from voicebot import contract as c
    from voicebot import wire
    from voicebot.text import MAX_CLAUSE_WORDS

    words = ["internationalization", "telecommunications", "electroencephalography", "counterrevolutionaries"]
    clause = " ".join(words[n % len(words)] for n in range(MAX_CLAUSE_WORDS)) + "."

    async def speak() -> None:
        client = wire.grpc_client(grpc_url)
        try:
            bound = TURN_TIMEOUT_S
            async for _ in wire.stream(client, c.TTS, {c.TEXT: clause}, [c.AUDIO], "soak-warm-up", bound, bound):
                pass
        finally:
            await client.close()

    asyncio.run(speak())


def http_json(method: str, url: str) -> tuple[int, dict]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = resp.read()
            return resp.status, json.loads(body) if body else {}
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def document_worker(base: str, until: float, tally: Tally, stop: threading.Event, pause_s: float) -> None:
    """Upload a fresh note, see it listed, delete it, see it gone; again until the end."""
    n = 0
    while time.monotonic() < until and not stop.is_set():
        n += 1
        text = (
            f"Soak note {n}. The lighthouse on pier {n} is painted {('red', 'green', 'blue')[n % 3]} and its keeper "
            f"logs the weather every {n % 5 + 1} hours. Visitors may climb the stairs on weekdays only."
        )
        try:
            created = upload(base, Path(f"soak-{n}.txt"), data=text.encode())
            doc_id = created["document"]["id"]
            status, listing = http_json("GET", f"{base}/v1/documents")
            if status != 200 or doc_id not in {d["id"] for d in listing["documents"]}:
                tally.fail("documents", f"uploaded {doc_id} is not listed ({status})")
            status, _ = http_json("DELETE", f"{base}/v1/documents/{doc_id}")
            if status != 204:
                tally.fail("documents", f"delete of {doc_id} answered {status}")
            _, listing = http_json("GET", f"{base}/v1/documents")
            if doc_id in {d["id"] for d in listing["documents"]}:
                tally.fail("documents", f"deleted {doc_id} is still listed")
        except (OSError, RuntimeError, KeyError) as exc:
            tally.fail("documents", f"{type(exc).__name__}: {exc}")
        tally.ops["upload+delete"] += 1
        stop.wait(pause_s)


class MemorySampler:
    """RSS of every process of the stack, by role, every ``interval_s``."""

    def __init__(self, stack: ServedStack, interval_s: float) -> None:
        assert stack.triton.process is not None and stack.orchestrator is not None
        self.server_pid = stack.triton.process.pid
        self.pids = {"orchestrator": stack.orchestrator.pid, "tritonserver": self.server_pid}
        for stub in model_stubs(self.server_pid).values():
            key = f"stub {stub.model}"
            while key in self.pids:
                key += "+"
            self.pids[key] = stub.pid
        self.interval_s = interval_s
        self.samples: dict[str, list[float]] = {role: [] for role in self.pids}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        for role, pid in self.pids.items():
            value = rss_mib(pid)
            if value is not None:
                self.samples[role].append(value)

    def _run(self) -> None:
        while not self.stop.wait(self.interval_s):
            self.sample()

    def vanished(self) -> list[str]:
        alive = set(model_stubs(self.server_pid))
        return [role for role, pid in self.pids.items() if role.startswith("stub") and pid not in alive]

    def growth(self) -> dict[str, tuple[float, float, float]]:
        """role -> (peak MiB in the first third of the load, peak in the last third, growth %).

        Peaks, not single samples: llama.cpp and Whisper saw-tooth by 50–100 MiB as buffers
        are taken and given back, so two single samples mostly measure where in a tooth they fell.
        A leak raises the peaks; caches that fill early (Piper's grow with the longest clause
        seen) raise only the first third's.
        """
        out = {}
        for role, values in self.samples.items():
            if len(values) >= 3:
                third = max(len(values) // 3, 1)
                first, last = max(values[:third]), max(values[-third:])
                out[role] = (first, last, 100.0 * (last - first) / first)
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of load after the warm-up")
    parser.add_argument("--sessions", type=int, default=2, help="concurrent sessions")
    parser.add_argument("--max-rss-growth", type=float, default=10.0, help="percent a process may grow")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--report", type=Path, default=None, help="write the report (markdown) here")
    args = parser.parse_args(argv)
    if not 10 <= args.duration <= 24 * 3600 or not 1 <= args.sessions <= 16:
        parser.error("--duration must be 10 s … 24 h and --sessions 1 … 16")

    documents = corpus.check_documents()
    work = Path(tempfile.mkdtemp(prefix="voicebot-soak-"))
    clips = [
        (q.text, corpus.pcm(corpus.speak(q.text, work / "speech", f"q{n}"))) for n, q in enumerate(corpus.QUESTIONS)
    ]
    started = dt.datetime.now()
    tally = Tally()
    with ServedStack(work, documents, runtime="soak") as stack:
        # Warm-up: one of each, sequentially, so first-use allocations are not counted as growth.
        warm = Tally()
        asyncio.run(warm_up(stack.ws_url, clips, warm))
        speak_longest_clause(stack.triton.grpc_url)
        document_worker(stack.base, time.monotonic() + 1, warm, threading.Event(), 0)
        if warm.errors:
            print(f"[soak] the warm-up failed: {warm.errors}", file=sys.stderr)
            return 1
        sampler = MemorySampler(stack, args.sample_s)
        sampler.sample()
        sampler.thread.start()
        until = time.monotonic() + args.duration
        print(f"[soak] {args.sessions} sessions + documents for {args.duration:g} s", file=sys.stderr)
        stop_docs = threading.Event()
        docs = threading.Thread(target=document_worker, args=(stack.base, until, tally, stop_docs, 5.0))
        docs.start()

        async def load() -> None:
            await asyncio.gather(
                *(session_worker(stack.ws_url, clips, until, tally, seed) for seed in range(args.sessions))
            )

        try:
            asyncio.run(load())
        finally:
            stop_docs.set()
            docs.join(120)
            sampler.stop.set()
            sampler.thread.join(10)
            sampler.sample()
        vanished = sampler.vanished()
        server_alive = stack.triton.process is not None and stack.triton.process.poll() is None
    elapsed = (dt.datetime.now() - started).total_seconds()
    growth = sampler.growth()
    over = {role: g for role, g in growth.items() if g[2] > args.max_rss_growth}
    if vanished:
        tally.fail("processes", f"model processes died or were replaced: {vanished}")
    if not server_alive:
        tally.fail("processes", "tritonserver exited")
    rows = "\n".join(
        f"| {role} | {min(sampler.samples[role]):.0f} | {a:.0f} | {b:.0f} | {g:+.1f}% |"
        for role, (a, b, g) in sorted(growth.items())
    )
    errors = "\n".join(f"- {e}" for e in tally.errors[:50]) or "none"
    text = f"""# Soak {started:%Y-%m-%d %H:%M} on {platform.node()}

Command: `benchmarks/soak.py {" ".join(argv if argv is not None else sys.argv[1:])}` — {args.sessions} sessions and a
document worker for {args.duration:g} s of load ({elapsed:.0f} s with start-up and warm-up).

Operations: {dict(sorted(tally.ops.items()))}. **Errors: {len(tally.errors)}.** Audio underruns (a chunk that
came after the audio before it had finished playing): {tally.underruns} in {tally.spoken_turns} voice answers.

| process | lowest RSS (MiB) | peak RSS, first third (MiB) | peak RSS, last third (MiB) | growth |
|---|---|---|---|---|
{rows}

Goal: no process grows more than {args.max_rss_growth:g}% — {"not met: " + ", ".join(over) if over else "met"}.

Errors:
{errors}
"""
    print(text)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text)
        raw = args.report.parent / "raw"  # raw numbers stay local (ignored); the report may be committed
        raw.mkdir(exist_ok=True)
        (raw / f"{args.report.stem}.json").write_text(
            json.dumps(
                {
                    "ops": tally.ops,
                    "errors": tally.errors,
                    "rss": growth,
                    "rss_samples_mib": sampler.samples,
                    "sample_s": args.sample_s,
                    "duration_s": args.duration,
                }
            )
        )
    return 1 if tally.errors or over else 0


if __name__ == "__main__":
    sys.exit(main())
