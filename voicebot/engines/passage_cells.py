"""A passage's KV cells computed once and placed anywhere in a later prompt (llama.cpp).

Groundwork for issue 14's next step (``benchmarks/passage_kv.py`` measures it; the engine does
not use it yet): a chunk is evaluated once after the fixed instruction, its cells are saved, and a
prompt that shows the chunk, or an excerpt of it, takes the cells instead of evaluating the text
again. The cells of the words an excerpt leaves out are dropped, the rest close up, and all of
them move to where the passage sits in the prompt: llama.cpp re-rotates the keys of moved cells
(its K-shift) at the next decode. Such a passage attended to the instruction only, never to the
passages before it in the prompt; what that does to answers is what the benchmark measures.

What llama.cpp requires (docs/runtime-notes.md has the details):

- loading a sequence's saved cells clears that sequence first, so cells are loaded into a
  scratch sequence, moved there and then copied into sequence 0: the context needs two sequences
  in one unified KV cache (:func:`open_llama`);
- a batch may hold a sequence's tokens only right after its last cell: new tokens (a label, the
  question) are decoded after the cells before them are in place, never into a gap.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..text import _SENTENCE_SPLIT

SCRATCH = 1  # the sequence cells are loaded into and moved in before they join sequence 0

Tokenize = Callable[[str], list[int]]


def open_llama(path: Path, **kwargs: Any) -> Any:
    """A ``llama_cpp.Llama`` whose context has two sequences over one unified KV cache.
    llama-cpp-python sets ``n_seq_max`` only for embedding models, so its default context
    parameters are widened while it opens (not thread-safe: open contexts one at a time)."""
    import llama_cpp
    from llama_cpp import llama_cpp as low

    original = low.llama_context_default_params

    def two_sequences() -> Any:
        params = original()
        params.n_seq_max, params.kv_unified = 2, True
        return params

    low.llama_context_default_params = two_sequences
    try:
        return llama_cpp.Llama(model_path=str(path), **kwargs)
    finally:
        low.llama_context_default_params = original


def word_pieces(tokenize: Tokenize, title: str, text: str) -> list[list[int]]:
    """A passage line after its label (``[n]``) in pieces: the header, one piece per word, the
    newline. A space-led word tokenizes alone as it does inside its sentence (the tokenizer splits
    before it), so joining the pieces of an excerpt gives nearly the prompt's own tokens."""
    return [tokenize(f" {title}:"), *(tokenize(f" {w}") for w in text.split()), tokenize("\n")]


def sentences_of(text: str) -> list[str]:
    """The sentences of a passage as :func:`voicebot.text.trim_passage` splits them."""
    return [" ".join(s.split()) for s in _SENTENCE_SPLIT.split(text) if s.strip()]


def kept_pieces(chunk: str, excerpt: str) -> list[int] | None:
    """Which of :func:`word_pieces` (0: the header, 1..n: the words, n + 1: the newline) of
    ``chunk`` make ``excerpt``: some of its sentences in order (what ``trim_passage`` keeps), or
    one run of its words (the window of a long sentence); None if it is neither."""
    words, wanted = chunk.split(), excerpt.split()
    keep, at, offset = [0], 0, 0
    for sentence in sentences_of(chunk):
        run = sentence.split()
        if wanted[at : at + len(run)] == run:
            keep += range(offset + 1, offset + 1 + len(run))
            at += len(run)
        offset += len(run)
    if at != len(wanted):
        starts = (i for i in range(len(words) - len(wanted) + 1) if words[i : i + len(wanted)] == wanted)
        found = next(starts, None)
        if found is None:
            return None
        keep = [0, *range(found + 1, found + 1 + len(wanted))]
    return [*keep, len(words) + 1]


def runs(keep: Sequence[int]) -> list[tuple[int, int]]:
    """Ascending indexes as ``(first, last + 1)`` runs: ``[0, 1, 2, 5, 6]`` → ``[(0, 3), (5, 7)]``."""
    out: list[tuple[int, int]] = []
    for i in keep:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


@dataclass(frozen=True)
class Cells:
    """A passage's cells as llama.cpp saved them, and where its pieces' tokens lie among them."""

    state: bytes  # llama_state_seq_get_data of the scratch sequence: these cells only
    base: int  # the position of the first cell
    pieces: tuple[tuple[int, ...], ...]

    @property
    def tokens(self) -> int:
        return sum(len(p) for p in self.pieces)


class CellWorks:
    """Computes, places and extends cells in one :func:`open_llama` context. Sequence 0 is the
    prompt; the caller keeps ``llama.input_ids`` / ``n_tokens`` in step with it (:meth:`commit`)."""

    def __init__(self, llama: Any) -> None:
        import llama_cpp

        if llama_cpp.llama_n_seq_max(llama._ctx.ctx) < 2:
            raise ValueError("passage cells need a context with two sequences (passage_cells.open_llama)")
        self.llama, self.low = llama, llama_cpp
        self.ctx = llama._ctx.ctx
        self.memory = llama_cpp.llama_get_memory(self.ctx)

    def compute(self, prefix: Sequence[int], pieces: Sequence[Sequence[int]]) -> Cells:
        """Evaluate ``pieces`` after ``prefix`` (which sequence 0 holds or gets) and save their
        cells; sequence 0 is left holding ``prefix`` alone."""
        self.keep_prefix(prefix)
        flat = [t for p in pieces for t in p]
        self.llama.eval(flat)
        base = len(prefix)
        low = self.low
        low.llama_memory_seq_cp(self.memory, 0, SCRATCH, base, -1)
        try:
            size = low.llama_state_seq_get_size(self.ctx, SCRATCH)
            buffer = (ctypes.c_uint8 * size)()
            written = low.llama_state_seq_get_data(self.ctx, buffer, size, SCRATCH)
            # string_at copies at once (slicing a ctypes array builds a list of ints first)
            state = ctypes.string_at(buffer, written)
        finally:
            low.llama_memory_seq_rm(self.memory, SCRATCH, -1, -1)
        self.keep_prefix(prefix)
        return Cells(state, base, tuple(tuple(p) for p in pieces))

    def keep_prefix(self, prefix: Sequence[int]) -> None:
        """Sequence 0 holds ``prefix`` and nothing after it (evaluated again only if it differs)."""
        llama, n = self.llama, len(prefix)
        if llama.n_tokens >= n and llama.input_ids[:n].tolist() == list(prefix):
            llama._ctx.kv_cache_seq_rm(-1, n, -1)
            llama.n_tokens = n
            return
        llama.reset()
        llama._ctx.kv_cache_seq_rm(-1, 0, -1)
        llama.eval(list(prefix))

    def place(self, cells: Cells, keep: Sequence[int], at: int) -> list[int]:
        """Put the cells of ``cells.pieces[i]`` for each ``i`` in ``keep`` (ascending) into
        sequence 0, closed up, from position ``at`` (the sequence's end); their tokens."""
        low, mem = self.low, self.memory
        buffer = (ctypes.c_uint8 * len(cells.state)).from_buffer_copy(cells.state)
        if low.llama_state_seq_set_data(self.ctx, buffer, len(cells.state), SCRATCH) != len(cells.state):
            low.llama_memory_seq_rm(mem, SCRATCH, -1, -1)
            raise RuntimeError("llama.cpp refused a passage's saved cells")
        starts = [cells.base]
        for piece in cells.pieces:
            starts.append(starts[-1] + len(piece))
        tokens: list[int] = []
        kept_to = cells.base  # where the kept cells end once closed up
        done = cells.base  # saved positions below this are handled
        for first, last in runs(keep):
            begin, end = starts[first], starts[last]
            if begin > done:
                low.llama_memory_seq_rm(mem, SCRATCH, done, begin)
            if begin != kept_to:  # ascending runs move down into space already freed
                low.llama_memory_seq_add(mem, SCRATCH, begin, end, kept_to - begin)
            kept_to += end - begin
            done = end
            for piece in cells.pieces[first:last]:
                tokens.extend(piece)
        if done < starts[-1]:
            low.llama_memory_seq_rm(mem, SCRATCH, done, starts[-1])
        if at != cells.base:
            low.llama_memory_seq_add(mem, SCRATCH, -1, -1, at - cells.base)
        low.llama_memory_seq_cp(mem, SCRATCH, 0, -1, -1)
        low.llama_memory_seq_rm(mem, SCRATCH, -1, -1)
        return tokens

    def decode(self, tokens: Sequence[int], at: int) -> None:
        """Evaluate ``tokens`` into sequence 0 from position ``at`` (its end), no logits kept."""
        low, size = self.low, self.llama.n_batch
        batch = low.llama_batch_init(size, 0, 1)
        try:
            for start in range(0, len(tokens), size):
                part = tokens[start : start + size]
                for i, token in enumerate(part):
                    batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, at + start + i, 1
                    batch.seq_id[i][0], batch.logits[i] = 0, 0
                batch.n_tokens = len(part)
                if low.llama_decode(self.ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed on a passage prompt")
        finally:
            low.llama_batch_free(batch)

    def commit(self, tokens: Sequence[int]) -> None:
        """Tell ``llama`` that sequence 0 holds ``tokens`` (for its own prefix reuse)."""
        self.llama.input_ids[: len(tokens)] = list(tokens)
        self.llama.n_tokens = len(tokens)
