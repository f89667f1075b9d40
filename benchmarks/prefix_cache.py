"""Time to first token of the answer prompt with its fixed instruction prefix already in llama.cpp's
KV cache (what every turn after the first gets: llama-cpp-python reuses the longest common prefix
of the previous prompt) against a cold prefill, interleaved, in-process.

    .venv/bin/python benchmarks/prefix_cache.py
"""

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus

from voicebot.engines.llm import load_language_model
from voicebot.sampling import SamplingParams
from voicebot.text import ONESHOT_PREFIX, Passage, build_prompt

ROOT = Path(__file__).resolve().parents[1]
llm = load_language_model(json.loads((ROOT / "model_repository/llm/1/model.json").read_text()))
docs = [p.read_text(errors="replace") for p in corpus.DOCUMENTS]
words = " ".join(docs).split()


def prompt(i):
    passages = [Passage("doc", " ".join(words[(i * 997 + k * 311) % 5000 :][:60])) for k in range(3)]
    return build_prompt(corpus.QUESTIONS[i % 8].text, passages, [])


def ttft(p):
    t = time.perf_counter()
    for _ in llm.stream(p, SamplingParams(max_tokens=1, temperature=0), lambda: False):
        return time.perf_counter() - t


other = "Lorem ipsum " * 150  # a different prompt evicts the shared prefix
res = {"prefix cached": [], "cold": []}
print("prompt tokens", llm.count_tokens(prompt(0)), "prefix tokens", llm.count_tokens(ONESHOT_PREFIX))
for i in range(12):
    ttft(prompt(100 + i))  # leaves the fixed prefix in the cache
    res["prefix cached"].append(ttft(prompt(i)))
    ttft(other)  # the cache now holds nothing of the prefix
    res["cold"].append(ttft(prompt(i + 50)))
for k, v in res.items():
    print(k, f"median {statistics.median(v) * 1000:.0f} ms", [round(x * 1000) for x in v])
