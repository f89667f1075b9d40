"""Passage KV caches computed ahead of the question: do answers survive, and what is left after release?

Today a spoken turn's prompt is evaluated after the Talk button is released, except for what a
speculative prefill shares with it (``orchestrator/speculation.py``). This measures the next step
that issue 14 names: each chunk's KV cells computed once, ahead of time (at ingest), in the
context of the fixed instruction, and joined at question time by moving them to their place in
the prompt (llama.cpp's K-shift: ``llama_memory_seq_add``). Only the passage labels, the question
and the assistant's header are then evaluated after release.

For each typed eval question, retrieved and trimmed as the ``cpu-quality`` profile serves it
(top 4, 90-word excerpts, the served similarity margin), with Qwen2.5-Coder-1.5B-Instruct:

- ``full``: the prompt after the instruction evaluated at once (a speculation miss; the instruction
  is always cached),
- ``joined``: the same excerpts from their chunk's cached cells (an excerpt is a subset of its
  chunk's sentences, or a window of one long sentence: the cells of the other words are dropped and
  the rest close up),
- ``joined-whole``: the whole chunks from their cached cells (no trimming, more prompt, nothing
  left to evaluate but labels and question),
- ``joined-tailN``: as ``joined``, but the last N words of each excerpt and its newline are
  evaluated after release (they attend to every passage before them), a cheap repair of what
  the cached cells miss.

Each variant's answer is scored as ``make eval`` scores it; time to first token is measured from
the end of the instruction. The cached cells are the instruction's context only: a passage no
longer attends to the passages before it, which is what the answers show.

    .venv/bin/python benchmarks/passage_kv.py [--limit N] [--variants full,joined,joined-whole,joined-tail8]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import eval_set  # noqa: E402
from eval import abstains, check_documents  # noqa: E402
from report import machine  # noqa: E402

from orchestrator.services import passage_title  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.speculation import near_the_best  # noqa: E402
from rag_index import SearchHit, open_store  # noqa: E402
from rag_index.embedders import LocalEmbedder  # noqa: E402
from voicebot.engines.passage_cells import Cells, CellWorks, kept_pieces, open_llama, word_pieces  # noqa: E402
from voicebot.llms import QWEN_1_5B  # noqa: E402
from voicebot.text import PROMPT_FORMATS, Passage, build_prompt, trim_passage  # noqa: E402
from voicebot.weights import llm_gguf  # noqa: E402

TOP_K, WORDS = 4, 90  # triton/profiles/cpu-quality.json


class Prompter:
    """The served ``chatml`` prompt built from pieces, each chunk's cells computed once."""

    def __init__(self, llama) -> None:
        self.llama = llama
        self.works = CellWorks(llama)
        self.cache: dict[tuple[str, int], Cells] = {}
        fmt = PROMPT_FORMATS["chatml"]
        probe = build_prompt("q", [Passage(title="t", text="x")], [], "chatml")
        self.head = probe[: probe.index("[1] ")]  # the instruction up to the first passage
        self.head_tokens = self.tokens(self.head, bos=True)
        self.stop = list(fmt.defaults.stop)
        self.label_1 = self.tokens("[1]")
        # (pieces, served): a prompt tokenized piece by piece against the served prompt's tokens; they
        # differ where a passage's last "." and its newline(s) are one token in the whole prompt
        self.served_tokens: list[tuple[int, int]] = []
        self.compute_s = 0.0

    def tokens(self, text: str, bos: bool = False) -> list[int]:
        return self.llama.tokenize(text.encode(), add_bos=bos, special=True)

    def pieces(self, title: str, text: str) -> list[list[int]]:
        return word_pieces(self.tokens, title, text)

    def tail(self, question: str) -> list[int]:
        prompt = build_prompt(question, [Passage(title="t", text="x")], [], "chatml")
        return self.tokens(prompt[prompt.index("[1] t: x\n") + len("[1] t: x\n") :])

    def chunk(self, hit: SearchHit, title: str) -> Cells:
        """The chunk's cells after the instruction and a first label, computed once (at ingest)."""
        key = (hit.document_id, hit.chunk_id)
        if key not in self.cache:
            began = time.perf_counter()
            self.cache[key] = self.works.compute(self.head_tokens + self.label_1, self.pieces(title, hit.text))
            self.compute_s += time.perf_counter() - began
        return self.cache[key]

    def ingest_cost(self) -> str:
        """What the cached chunks cost to make and to keep (the work ingest would do)."""
        cells = list(self.cache.values())
        if not cells:
            return "No chunk was cached."
        tokens = sum(c.tokens for c in cells)
        size = sum(len(c.state) for c in cells)
        return (
            f"Ingest cost: {len(cells)} chunks of {tokens / len(cells):.0f} tokens on average, computed at "
            f"{tokens / self.compute_s:.0f} tokens/s; their cells take {size / len(cells) / 2**20:.1f} MiB a chunk "
            f"({size / tokens / 1024:.1f} KiB a token, f16 KV)."
        )

    # ------------------------------------------------------------------ one answer

    def answer(self, tokens: list[int]) -> tuple[str, float]:
        """Generate from a prompt whose tokens but the last are in the cache; the text and the
        seconds to the first token (from the caller's start)."""
        first: float | None = None
        text = []
        for out in self.llama.create_completion(
            tokens, max_tokens=96, temperature=0.0, top_k=1, stop=self.stop, stream=True
        ):
            if first is None:
                first = time.perf_counter()
            text.append(out["choices"][0]["text"])
        return "".join(text).strip(), first or time.perf_counter()

    def full(self, question: str, passages: list[tuple[SearchHit, str, str]]) -> tuple[str, float, int]:
        self.works.keep_prefix(self.head_tokens)
        began = time.perf_counter()
        rest = []
        for n, (_hit, title, text) in enumerate(passages, start=1):
            rest += self.tokens(f"[{n}]") + [t for p in self.pieces(title, text) for t in p]
        rest += self.tail(question)
        tokens = self.head_tokens + rest
        self.llama.eval(rest[:-1])
        answer, first = self.answer(tokens)
        served = [Passage(title=title, text=text) for _hit, title, text in passages]
        self.served_tokens.append(
            (len(tokens), len(self.tokens(build_prompt(question, served, [], "chatml"), bos=True)))
        )
        return answer, first - began, len(rest)

    def joined(
        self, question: str, passages: list[tuple[SearchHit, str, str]], tail_words: int = 0
    ) -> tuple[str, float, int, int]:
        """The answer, time to first token, tokens evaluated after release and passages evaluated
        fresh. ``tail_words``: the last words of each passage (and its newline) are evaluated
        again after release instead of taken from the cache, so that they attend to the passages
        before them."""
        for hit, title, _text in passages:
            self.chunk(hit, title)  # computed ahead (at ingest), not timed
        self.works.keep_prefix(self.head_tokens)
        began = time.perf_counter()
        tokens = list(self.head_tokens)
        fresh: list[int] = []  # evaluated, not yet decoded: llama.cpp takes a sequence's tokens
        # only right after its last cell, so what is new is decoded before a chunk's cells follow it
        evaluated, fallback = 0, 0

        def flush() -> None:
            nonlocal evaluated
            if fresh:
                self.works.decode(fresh, len(tokens) - len(fresh))
                evaluated += len(fresh)
                fresh.clear()

        for n, (hit, title, text) in enumerate(passages, start=1):
            label = self.tokens(f"[{n}]")
            fresh += label
            tokens += label
            cells = self.chunk(hit, title)
            keep = kept_pieces(hit.text, text)
            if keep is None:  # not made of the chunk's words (never expected): evaluated fresh
                fallback += 1
                extra = [t for p in self.pieces(title, text) for t in p]
                fresh += extra
                tokens += extra
                continue
            # with a tail: the header always from the cache, the newline never
            cut = max(1, len(keep) - 1 - tail_words) if tail_words else len(keep)
            flush()
            tokens += self.works.place(cells, keep[:cut], len(tokens))
            again = [t for i in keep[cut:] for t in cells.pieces[i]]
            fresh += again
            tokens += again
        tail = self.tail(question)
        fresh += tail[:-1]
        tokens += tail[:-1]
        flush()
        tokens.append(tail[-1])
        self.works.commit(tokens[:-1])
        answer, first = self.answer(tokens)
        return answer, first - began, evaluated + 1, fallback


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions (0: all)")
    parser.add_argument("--variants", default="full,joined,joined-whole")
    parser.add_argument("--out", type=Path, default=None, help="the report (default: benchmarks/results/...)")
    parser.add_argument("--render", type=Path, default=None, help="only write the report again from these raw rows")
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        rows, ingest = (saved["rows"], saved["ingest"]) if isinstance(saved, dict) else (saved, "")
        variants = [k for k, v in rows[0].items() if isinstance(v, dict)]
        args.variants, args.limit = ",".join(variants), 0 if len(rows) == len(eval_set.QUESTIONS) else len(rows)
        report = render(rows, variants, None, args) + (f"\n{ingest}\n" if ingest else "")
        out = args.out or HERE / "results" / (args.render.stem + ".md")
        out.write_text(report)
        print(report)
        print(f"written: {out}")
        return 0
    variants = args.variants.split(",")
    for v in variants:
        if v not in ("full", "joined", "joined-whole") and not (v[11:].isdigit() and v.startswith("joined-tail")):
            parser.error(f"unknown variant {v!r}: full, joined, joined-whole or joined-tailN (N words)")
    margin = Settings.model_fields["passage_margin"].default
    questions = eval_set.QUESTIONS[: args.limit or None]

    llama = open_llama(llm_gguf(QWEN_1_5B), n_ctx=4096, n_threads=2, n_batch=512, verbose=False)
    prompter = Prompter(llama)
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="voicebot-kv-") as work,
        contextlib.closing(open_store(Path(work) / "index", LocalEmbedder())) as index,
    ):
        for path, name in check_documents():
            index.add(name, path.read_bytes())
        for n, q in enumerate(questions, start=1):
            hits = near_the_best(index.search(q.text, TOP_K), margin)
            trimmed = [(h, passage_title(h), trim_passage(q.text, h.text, WORDS)) for h in hits]
            whole = [(h, passage_title(h), h.text) for h in hits]
            row = {"id": q.id, "answerable": q.source is not None, "passage_count": len(hits)}
            for v in variants:
                if v == "full":
                    answer, ttft, evaluated = prompter.full(q.text, trimmed)
                    fallback = 0
                else:
                    passages = whole if v == "joined-whole" else trimmed
                    answer, ttft, evaluated, fallback = prompter.joined(q.text, passages, tail_words(v))
                row[v] = {
                    "answer": answer,
                    "ttft_s": round(ttft, 3),
                    "evaluated": evaluated,
                    "fresh_passages": fallback,
                    "abstained": abstains(answer),
                    "correct": bool(q.source) and not abstains(answer) and eval_set.matches(answer, q),
                }
            rows.append(row)
            marks = "  ".join(
                f"{v}: {'abstained' if row[v]['abstained'] else 'right' if row[v]['correct'] else 'wrong'}"
                f" {row[v]['ttft_s']:.2f} s"
                for v in variants
            )
            print(f"[{n}/{len(questions)}] {q.id}: {marks}", flush=True)
    ingest = prompter.ingest_cost()
    report = render(rows, variants, len(prompter.cache), args) + f"\n{ingest}\n"
    if "full" in variants:
        pieces, served = (sum(c) for c in zip(*prompter.served_tokens, strict=True))
        report += (
            f"\nEvery variant tokenizes a prompt piece by piece (instruction, labels, words, newlines, question), "
            f"so that a chunk's cached tokens are the prompt's: {pieces / len(rows):.0f} tokens a prompt where the "
            f"served prompt has {served / len(rows):.0f} (a passage's last full stop and newlines are one token "
            "there).\n"
        )
    out = args.out or HERE / "results" / f"{dt.date.today()}-{platform.node()}-passage-kv.md"
    out.write_text(report)
    raw = HERE / "results" / "raw" / (out.stem + ".json")
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({"rows": rows, "ingest": ingest}, indent=1))
    print(report)
    print(f"written: {out} (rows: {raw})")
    return 0


def tail_words(variant: str) -> int:
    """``joined-tailN``: N words at each passage's end evaluated after release; other variants: 0."""
    return int(variant.removeprefix("joined-tail")) if variant.startswith("joined-tail") else 0


def render(rows: list[dict], variants: list[str], chunks: int | None, args: argparse.Namespace) -> str:
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]

    def share(values: list[bool]) -> str:
        return f"{sum(values) / len(values):.0%}" if values else "–"

    lines = [
        "# Passage KV caches joined at question time (issue 14)",
        "",
        f"{machine()}; Qwen2.5-Coder-1.5B-Instruct Q4_K_M, llama.cpp, 2 threads; typed eval questions "
        f"({len(answerable)} answerable, {len(unanswerable)} not), top {TOP_K}, {WORDS}-word excerpts, "
        f"margin {Settings.model_fields['passage_margin'].default}"
        + (f"; {chunks} chunks cached" if chunks is not None else "")
        + ". The model's raw "
        "answers, without the served pipeline's grounding check of each clause: compare the variants with each "
        "other, not with `make eval`.",
        "",
        "Command: `.venv/bin/python benchmarks/passage_kv.py"
        + (f" --limit {args.limit}" if args.limit else "")
        + (f" --variants {args.variants}" if args.variants != "full,joined,joined-whole" else "")
        + "`",
        "",
        "| variant | accuracy | abstention recall | false abstentions | tokens evaluated after the instruction (mean) "
        "| time to first token P50 / P90 |",
        "|---|---|---|---|---|---|",
    ]
    for v in variants:
        ttft = sorted(r[v]["ttft_s"] for r in rows)
        p90 = ttft[min(len(ttft) - 1, int(0.9 * len(ttft)))]
        lines.append(
            f"| {v} | {share([r[v]['correct'] for r in answerable])} "
            f"| {share([r[v]['abstained'] for r in unanswerable])} "
            f"| {share([r[v]['abstained'] for r in answerable])} "
            f"| {statistics.mean(r[v]['evaluated'] for r in rows):.0f} "
            f"| {statistics.median(ttft):.2f} s / {p90:.2f} s |"
        )
    fresh = sum(r[v]["fresh_passages"] for r in rows for v in variants if v != "full")
    lines += ["", f"Passages evaluated fresh because they were not made of their chunk's words: {fresh}."]
    if len(variants) > 1:
        base = variants[0]
        lines += ["", f"Answers that differ from `{base}`:", ""]
        for r in rows:
            for v in variants[1:]:
                if r[v]["answer"] != r[base]["answer"]:
                    lines.append(f"- **{r['id']}** {v}: {r[v]['answer']!r} (`{base}`: {r[base]['answer']!r})")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
