"""genai-perf against the ``llm`` model: time to first token, inter-token latency, output tokens/s.

genai-perf 0.0.16 lives in its own venv (``.venv-genai``, ~950 MB, made by ``make bench``) and
drives the perf_analyzer of ``.venv-perf``. It talks to ``llm`` as to Triton's vLLM backend
(``--endpoint-type kserve --backend vllm``: same tensor names). It counts tokens with a Hugging
Face tokenizer, which must be local: this module writes Gemma 3's own tokenizer, read from the
packaged GGUF, into the voicebot cache once (its ids match llama.cpp's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from perf import PERF_VENV, perf_env

from voicebot import contract as c
from voicebot.access import GRPC_TOKEN_HEADER
from voicebot.weights import cache_dir, gemma_gguf

ROOT = Path(__file__).resolve().parents[1]
GENAI_VENV = ROOT / ".venv-genai"


def tokenizer_dir() -> Path:
    """Gemma 3's tokenizer as a Hugging Face directory, converted from the GGUF once."""
    target = cache_dir() / "gemma-3-270m-tokenizer"
    if (target / "tokenizer.json").is_file():
        return target
    from transformers import AutoTokenizer  # needs the `gguf` package (bench extra)

    gguf = gemma_gguf()
    print(f"[bench] writing Gemma's tokenizer from {gguf.name} to {target} (once)", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    partial = target.with_name(target.name + ".partial")
    tokenizer.save_pretrained(str(partial))
    partial.rename(target)
    return target


def run_level(
    grpc_url: str,
    out: Path,
    concurrency: int,
    requests: int,
    input_tokens: int,
    output_tokens: int,
    token: str | None = None,
) -> dict:
    """One genai-perf run; ``token``: the server's VOICEBOT_API_TOKEN (sent as Triton's gRPC header)."""
    binary = GENAI_VENV / "bin" / "genai-perf"
    if not binary.is_file():
        raise RuntimeError("genai-perf is not installed: run `make bench` (it builds .venv-genai)")
    artifacts = out / f"genai-perf-c{concurrency}"
    cmd = [
        str(binary),
        "profile",
        "-m",
        c.LLM.name,
        "--endpoint-type",
        "kserve",
        "--backend",
        "vllm",
        "--streaming",
        "-u",
        grpc_url,
        "--tokenizer",
        str(tokenizer_dir()),
        "--synthetic-input-tokens-mean",
        str(input_tokens),
        "--synthetic-input-tokens-stddev",
        "0",
        "--output-tokens-mean",
        str(output_tokens),
        "--output-tokens-mean-deterministic",
        "--concurrency",
        str(concurrency),
        "--request-count",
        str(requests),
        "--warmup-request-count",
        "1",
        "--artifact-dir",
        str(artifacts),
        *(["-H", f"{GRPC_TOKEN_HEADER}:{token}"] if token else []),
    ]
    env = perf_env()
    env["PATH"] = os.pathsep.join([str(PERF_VENV / "bin"), str(GENAI_VENV / "bin"), env.get("PATH", "")])
    print(f"[bench] genai-perf llm (concurrency {concurrency}, {requests} requests)", file=sys.stderr)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=out)
    (out / f"genai-perf-c{concurrency}.log").write_text(done.stdout + done.stderr)
    exports = sorted(artifacts.rglob("*genai_perf.json"))
    if done.returncode != 0 or not exports:
        raise RuntimeError(f"genai-perf failed (concurrency {concurrency}): {done.stderr.strip()[-600:]}")
    result: dict = json.loads(exports[-1].read_text())
    return result


def summarize(results: dict[int, dict]) -> str:
    lines = [
        "| concurrency | TTFT P50 | TTFT P99 | inter-token P50 | output tokens/s (all requests) | requests/s |",
        "|---|---|---|---|---|---|",
    ]
    for level, r in sorted(results.items()):
        ttft, itl = r["time_to_first_token"], r["inter_token_latency"]
        lines.append(
            f"| {level} | {ttft['p50'] / 1000:.2f} s | {ttft['p99'] / 1000:.2f} s | {itl['p50']:.1f} ms | "
            f"{r['output_token_throughput']['avg']:.1f} | {r['request_throughput']['avg']:.2f} |"
        )
    return "\n".join(lines)


INPUT_TOKENS, OUTPUT_TOKENS = 300, 64


def run_all(grpc_url: str, out: Path, quick: bool) -> tuple[str, list[str]]:
    """Concurrency 1 only: with ``--request-count`` (genai-perf's mode) the perf_analyzer of
    tritonclient 2.51 never finished at concurrency 2 against ``llm`` (killed after 300 s; the
    same model at concurrency 2 completes under perf_analyzer's time-window mode, see perf.py)."""
    out.mkdir(parents=True, exist_ok=True)
    results, failures = {}, []
    try:
        results[1] = run_level(grpc_url, out, 1, 6 if quick else 16, INPUT_TOKENS, OUTPUT_TOKENS)
    except (RuntimeError, subprocess.TimeoutExpired, KeyError) as exc:
        failures.append(str(exc))
    return (summarize(results) if results else "not run"), failures
