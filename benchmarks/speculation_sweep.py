"""How much of the final prompt a prefill on a partial question would share, in-process and in
seconds: retrieval and trimming only (no speech, no LLM), on the eval's questions.

    .venv/bin/python benchmarks/speculation_sweep.py [--k 4] [--words 90] [--margin 0.2] [--drop 1,2,3,4]

For each question and each ``--drop`` n, the partial is the typed question without its last n
words (a person still speaking); the final is the whole question. Both retrieve top-k, trim each
chunk for their own question, and the final passages are put in prompt order by
``orchestrator.speculation.stable_order``, with and without keeping the prefill's excerpt of a
chunk (``reuse_excerpts``). It reports the outcomes (hit, partial, miss) and the share of the
final passages' words inside the prefix the two prompts have in common: what a finished prefill
would have saved. Typed partials are an upper bound for heard ones.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import eval_set  # noqa: E402
from eval import check_documents  # noqa: E402

from orchestrator.settings import Settings  # noqa: E402
from orchestrator.speculation import Outcome, Speculation, prompt_passages, stable_order  # noqa: E402
from rag_index import open_store  # noqa: E402
from rag_index.embedders import LocalEmbedder  # noqa: E402


def words(passages: list) -> int:
    return sum(len(p.text.split()) for p in passages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=4, help="top-k (cpu-quality: 4)")
    parser.add_argument("--words", type=int, default=90, help="words per passage (cpu-quality: 90)")
    parser.add_argument(
        "--margin", type=float, default=Settings.model_fields["passage_margin"].default, help="VOICEBOT_PASSAGE_MARGIN"
    )
    parser.add_argument("--drop", default="1,2,3,4", help="words missing from the partial question")
    args = parser.parse_args(argv)
    drops = [int(x) for x in args.drop.split(",")]

    with tempfile.TemporaryDirectory(prefix="voicebot-spec-sweep-") as work:
        index = open_store(Path(work) / "index", LocalEmbedder())
        for path, name in check_documents():
            index.add(name, path.read_bytes())
        questions = eval_set.QUESTIONS
        finals = {
            q.id: prompt_passages(index.search(q.text, args.k), q.text, args.words, args.margin) for q in questions
        }
        lines = [
            f"{len(questions)} questions, top-{args.k} (margin {args.margin:g}), {args.words} words per passage, "
            f"{index.chunk_count()} chunks",
            "",
            "| words missing | excerpt reuse | hit | partial | miss | final passage words in the shared prefix |",
            "|---|---|---|---|---|---|",
        ]
        for drop in drops:
            # The partial's prefill, once per question (None: too short to speculate on).
            prefills = {}
            for q in questions:
                spoken = " ".join(q.text.split()[:-drop])
                prefills[q.id] = (
                    prompt_passages(index.search(spoken, args.k), spoken, args.words, args.margin)
                    if len(spoken.split()) >= 2
                    else None
                )
            for reuse in (False, True):
                outcomes: Counter[Outcome] = Counter()
                shared_words = total_words = 0
                for q in questions:
                    final, prefilled = finals[q.id], prefills[q.id]
                    total_words += words(final)
                    if prefilled is None:
                        outcomes[Outcome.MISS] += 1
                        continue
                    ordered = stable_order(prefilled, final, q.text, reuse=reuse)
                    outcome, shared = Speculation(prefilled, ()).outcome(ordered, ())
                    outcomes[outcome] += 1
                    shared_words += words(ordered[:shared])
                lines.append(
                    f"| {drop} | {'yes' if reuse else 'no'} | {outcomes[Outcome.HIT]} | {outcomes[Outcome.PARTIAL]} "
                    f"| {outcomes[Outcome.MISS]} | {shared_words / total_words:.0%} |"
                )
        index.close()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
