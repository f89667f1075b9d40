"""The two document stores at a size one machine's FAISS file would not hold forever: ingest
rate and search latency, embedded (SQLite + FAISS) against the cluster's (PostgreSQL + pgvector,
a throwaway local server), in one run on one machine.

    .venv/bin/python benchmarks/store_search.py [--chunks 20000] [--queries 300] [--replicas 4]

Texts are real words (the vocabulary of tests/data) and the embedder is a hashed bag of words:
what is timed is the stores' own work (writing, HNSW and full-text search, fusion), not a model.
Writes ``benchmarks/results/<date>-<host>-store-search.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from local_postgres import local_postgres  # noqa: E402

from rag_index import open_store  # noqa: E402
from rag_index.store import EMBED_BATCH  # noqa: E402
from voicebot.contract import EMBEDDING_DIM  # noqa: E402

WORDS_PER_DOCUMENT = 2400  # about 20 chunks each


class HashedWords:
    """Deterministic, fast, L2-normalized: a word's hash picks its dimension."""

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), EMBEDDING_DIM), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.blake2b(word.encode(), digest_size=4).hexdigest(), 16) % EMBEDDING_DIM] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def vocabulary() -> list[str]:
    data = HERE.parent / "tests" / "data"
    return " ".join(p.read_text() for p in sorted(data.iterdir()) if p.suffix in (".txt", ".md")).split()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(location: str | Path, chunks: int, queries: int, replicas: int, rng: np.random.Generator) -> dict:
    words = vocabulary()
    store = open_store(location, HashedWords())
    began = time.perf_counter()
    n = 0
    while store.chunk_count() < chunks:
        store.add(f"doc{n}.txt", " ".join(rng.choice(words, WORDS_PER_DOCUMENT)).encode())
        n += 1
    ingest_s = time.perf_counter() - began
    total = store.chunk_count()
    # Questions name terms: 6 distinct words of the vocabulary, each as likely as any other (drawn
    # by frequency instead, nearly every chunk matches a question's words: the lexical worst case).
    distinct = sorted(set(words))
    questions = [" ".join(rng.choice(distinct, 6, replace=False)) for _ in range(queries)]
    vectors = HashedWords().embed(questions)
    latencies, dense = [], []
    for question, vector in zip(questions, vectors, strict=True):
        t = time.perf_counter()
        assert store.search(vector, 3, question)
        latencies.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.search(vector, 3, question, lexical=False)
        dense.append(time.perf_counter() - t)
    # Several replicas (each its own store handle) searching at once.
    handles = [open_store(location, HashedWords()) for _ in range(replicas)]
    done = [0] * replicas

    def search_all(i: int) -> None:
        for question, vector in zip(questions, vectors, strict=True):
            handles[i].search(vector, 3, question)
            done[i] += 1

    t = time.perf_counter()
    threads = [threading.Thread(target=search_all, args=(i,)) for i in range(replicas)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    parallel_s = time.perf_counter() - t
    for h in (store, *handles):
        h.close()
    return {
        "documents": n,
        "chunks": total,
        "ingest_chunks_per_s": total / ingest_s,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
        "dense_p50_ms": percentile(dense, 0.5) * 1000,
        "parallel_qps": sum(done) / parallel_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--replicas", type=int, default=4, help="store handles searching at once")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="voicebot-store-") as work, contextlib.ExitStack() as stack:
        rows["SQLite + FAISS (embedded)"] = measure(
            Path(work) / "index", args.chunks, args.queries, args.replicas, np.random.default_rng(1)
        )
        url = stack.enter_context(local_postgres(Path(work) / "pg")).new_database()
        rows["PostgreSQL 16 + pgvector 0.6 (HNSW, full text)"] = measure(
            url, args.chunks, args.queries, args.replicas, np.random.default_rng(1)
        )
    host = socket.gethostname().split(".")[0]
    lines = [
        f"# Document stores, {date.today().isoformat()} on {host}",
        "",
        f"Command: `benchmarks/store_search.py --chunks {args.chunks} --queries {args.queries} "
        f"--replicas {args.replicas}`. Documents of {WORDS_PER_DOCUMENT} real words, embedded in batches of "
        f"{EMBED_BATCH} by a hashed bag of words (no model: the stores' own work is timed). A search is the "
        "orchestrator's: dense top-24 and lexical top-24, fused, 3 hits with their text. Both stores on this "
        "machine, one after the other; PostgreSQL on a Unix socket with its default settings.",
        "",
        "| store | documents | chunks | ingest (chunks/s) | search P50 | P99 | dense only P50 | "
        f"{args.replicas} handles at once (searches/s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['documents']} | {r['chunks']} | {r['ingest_chunks_per_s']:.0f} | {r['p50_ms']:.1f} ms "
            f"| {r['p99_ms']:.1f} ms | {r['dense_p50_ms']:.1f} ms | {r['parallel_qps']:.0f} |"
        )
    report = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{date.today().isoformat()}-{host}-store-search.md"
    path.write_text(report)
    print(report)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
