"""perf_analyzer on every model, with input data made from real speech and text.

The perf_analyzer that runs on these machines is the one inside tritonclient 2.51 (newer
builds need glibc 2.38); it lives in its own venv (``.venv-perf``, made by ``make bench``)
and needs libb64 (Debian ``libb64-0d``) and libcudart (pip ``nvidia-cuda-runtime-cu12``).
"""

from __future__ import annotations

import base64
import csv
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

from voicebot import contract as c

ROOT = Path(__file__).resolve().parents[1]
PERF_VENV = ROOT / ".venv-perf"

PASSAGES = json.dumps(
    [{"id": "1", "title": "Users and groups", "text": "The root user has user ID 0 and owns the system files."}]
)


def perf_binary() -> Path:
    binary = PERF_VENV / "bin" / "perf_analyzer"
    if not binary.is_file():
        raise SystemExit("perf_analyzer is not installed: run `make bench` (it builds .venv-perf)")
    return binary


def perf_env() -> dict[str, str]:
    libs = [str(p) for p in PERF_VENV.glob("lib/python*/site-packages/nvidia/cuda_runtime/lib")]
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")])
    return env


def input_files(folder: Path, pcm16: bytes, wav: bytes, question: str) -> dict[str, Path]:
    """One JSON input-data file per model (perf_analyzer's format: shapes exclude the batch dim)."""
    audio = (np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0).round(5).tolist()
    # BYTES given as b64 are Triton's serialized form: a little-endian uint32 length, then the bytes.
    encoded = base64.b64encode(struct.pack("<I", len(wav)) + wav).decode()
    params = json.dumps({"max_tokens": 32, "temperature": 0})
    data = {
        c.WHISPER_STT.name: {c.AUDIO: {"content": audio, "shape": [len(audio)]}},
        c.TRANSCRIBE.name: {c.AUDIO_BYTES: {"b64": encoded}},
        c.AUDIO_DECODE.name: {c.AUDIO_BYTES: {"b64": encoded}},
        c.EMBEDDER.name: {c.TEXT: {"content": [question], "shape": [1]}},
        c.TTS.name: {c.TEXT: ["The root user has user ID zero, and owns the system files."]},
        c.LLM.name: {
            c.TEXT_INPUT: [f"Question: {question}\nAnswer:"],
            c.STREAM: [True],
            c.SAMPLING_PARAMETERS: [params],
        },
        c.VOICE_ANSWER.name: {c.QUESTION: [question], c.PASSAGES: [PASSAGES]},
    }
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for model, inputs in data.items():
        path = folder / f"{model}.json"
        path.write_text(json.dumps({"data": [inputs]}))
        files[model] = path
    return files


STREAMING = {m.name for m in c.MODELS if m.decoupled}


def run_model(model: str, data: Path, grpc_url: str, out: Path, concurrency: str, interval_ms: int) -> Path:
    csv_path = out / f"perf-{model}.csv"
    cmd = [
        str(perf_binary()),
        "-m",
        model,
        "-u",
        grpc_url,
        "-i",
        "grpc",
        "--input-data",
        str(data),
        "--concurrency-range",
        concurrency,
        "--measurement-interval",
        str(interval_ms),
        "--max-trials",
        "10",
        "--stability-percentage",
        "25",
        "-f",
        str(csv_path),
    ]
    if model in STREAMING:
        cmd.append("--streaming")
    print(f"[bench] perf_analyzer {model} (concurrency {concurrency})", file=sys.stderr)
    done = subprocess.run(cmd, env=perf_env(), capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        (out / f"perf-{model}.log").write_text(done.stdout + done.stderr)
        raise RuntimeError(f"perf_analyzer failed on {model}: {done.stderr.strip()[-400:]}")
    return csv_path


def summarize(csv_paths: dict[str, Path]) -> str:
    lines = ["| model | concurrency | infer/s | p50 | p90 | p99 |", "|---|---|---|---|---|---|"]
    for model, path in csv_paths.items():
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):

                def ms(key: str, r: dict = row) -> str:
                    return f"{int(r[key]) / 1000:.0f} ms" if r.get(key) else "—"

                lines.append(
                    f"| {model} | {row['Concurrency']} | {float(row['Inferences/Second']):.2f} | "
                    f"{ms('p50 latency')} | {ms('p90 latency')} | {ms('p99 latency')} |"
                )
    return "\n".join(lines)


def run_all(
    grpc_url: str, out: Path, pcm16: bytes, wav: bytes, question: str, quick: bool, models: tuple[str, ...] = ()
) -> tuple[str, list[str]]:
    files = input_files(out / "perf-inputs", pcm16, wav, question)
    concurrency = "1:2" if quick else "1:4"
    interval = 3000 if quick else 5000
    done: dict[str, Path] = {}
    failures = []
    for model in models or [m.name for m in c.MODELS if m.name != c.AUDIO_DECODE.name]:
        try:
            done[model] = run_model(model, files[model], grpc_url, out, concurrency, interval)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            failures.append(f"{model}: {exc}")
    return summarize(done), failures
