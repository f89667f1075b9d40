"""Retrieval alone on the eval's questions: recall@k and answer-in-context for each top-k,
passage budget and ranking (dense, lexical fused), in-process and in seconds (no LLM; speech only with --heard).

    .venv/bin/python benchmarks/retrieval_sweep.py [--k 3,4,5] [--words 0,60,80,120] [--margins 0,0.2]
        [--heard] [--store postgresql]

This is how the orchestrator's defaults (``VOICEBOT_TOP_K``, ``VOICEBOT_PASSAGE_WORDS``) were
chosen: the smallest prompt that keeps the answer in context (``--margins``: also leaving out
chunks whose similarity is that far below the best one's, ``VOICEBOT_PASSAGE_MARGIN``). Questions are
the typed text, an upper bound for spoken ones; ``--heard`` retrieves for what Whisper (tiny.en, the
library's titles as its prompt, as served) hears from the eval's espeak-ng clips instead.
``--store postgresql`` runs it on the cluster's store
(pgvector + PostgreSQL full text, on a throwaway local server) instead of SQLite + FAISS.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import contextlib  # noqa: E402

import eval_set  # noqa: E402
from eval import check_documents  # noqa: E402
from local_postgres import local_postgres  # noqa: E402

from orchestrator.speculation import near_the_best  # noqa: E402
from rag_index import open_store  # noqa: E402
from rag_index.embedders import LocalEmbedder  # noqa: E402
from voicebot.text import trim_passage  # noqa: E402


def heard(folder: Path, questions: list[eval_set.EvalQuestion]) -> dict[str, str]:
    """What Whisper hears of each question, spoken in the eval's voices (by the eval's order)."""
    from stt_prompt import question_sets

    from voicebot.engines.stt import WhisperEngine, WhisperSettings
    from voicebot.weights import whisper_model_dir

    prompt, clips = question_sets(folder, ["eval"])["eval"]
    engine = WhisperEngine(whisper_model_dir("tiny.en"), WhisperSettings(model="tiny.en"))
    by_text = {text: engine.transcribe(audio, prompt=prompt).text for text, _voice, audio in clips}
    return {q.id: by_text[q.text] for q in questions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", default="3,4,5", help="top-k values")
    parser.add_argument("--words", default="0,60,80,120", help="passage word budgets (0: whole chunks)")
    parser.add_argument("--margins", default="0", help="similarity margins below the best hit (0: keep all k)")
    parser.add_argument("--heard", action="store_true", help="retrieve for the transcripts of the spoken questions")
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite", help="the store's backend")
    args = parser.parse_args(argv)
    ks = [int(x) for x in args.k.split(",")]
    budgets = [int(x) for x in args.words.split(",")]
    margins = [float(x) for x in args.margins.split(",")]

    with tempfile.TemporaryDirectory(prefix="voicebot-sweep-") as work, contextlib.ExitStack() as stack:
        location: str | Path = Path(work) / "index"
        if args.store == "postgresql":
            location = stack.enter_context(local_postgres(Path(work) / "pg")).new_database()
        index = open_store(location, LocalEmbedder())
        for path, name in check_documents():
            index.add(name, path.read_bytes())
        answerable = [q for q in eval_set.QUESTIONS if q.source]
        asked = {q.id: q.text for q in answerable}
        if args.heard:
            asked = heard(Path(work), answerable)
        lines = [
            f"{len(answerable)} answerable questions ({'heard' if args.heard else 'typed'}), "
            f"{index.chunk_count()} chunks, store: {args.store}",
            "",
            "| ranking | k | margin | words per passage | recall@k | answer in context | prompt words (mean) |",
            "|---|---|---|---|---|---|---|",
        ]
        misses: dict[tuple[str, int, float, int], list[str]] = {}
        for lexical in (False, True):
            for k in ks:
                ranked = {q.id: index.search(asked[q.id], k, lexical=lexical) for q in answerable}
                for margin in margins:
                    hits = {i: near_the_best(h, margin) for i, h in ranked.items()}
                    recall = sum(q.source in {h.source for h in hits[q.id]} for q in answerable)
                    for words in budgets:
                        seen = {
                            q.id: [trim_passage(asked[q.id], h.text, words) for h in hits[q.id]] for q in answerable
                        }
                        found = [q for q in answerable if eval_set.matches(" ".join(seen[q.id]), q)]
                        size = sum(len(" ".join(v).split()) for v in seen.values()) / len(answerable)
                        name = "dense + lexical (RRF)" if lexical else "dense only"
                        misses[(name, k, margin, words)] = [q.id for q in answerable if q not in found]
                        lines.append(
                            f"| {name} | {k} | {margin:g} | {words or 'whole'} | {recall / len(answerable):.0%} "
                            f"| {len(found) / len(answerable):.0%} | {size:.0f} |"
                        )
        index.close()
    print("\n".join(lines))
    print("\nnot in context:")
    for key, ids in misses.items():
        print(f"  {key}: {', '.join(ids) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
