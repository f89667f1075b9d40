"""Passage cells on a real model (Gemma 3 270M): computed once, placed, moved, closed up."""

import numpy as np
import pytest

from voicebot.engines.passage_cells import CellWorks, kept_pieces, open_llama, word_pieces
from voicebot.weights import gemma_gguf

HEAD = "Answer from the passages.\n\nPassages:\n"
CHUNK = (
    "The Lumen desk lamp has a 4000 mAh battery. A full charge takes three hours with the 10 watt adapter. "
    "The lamp ring glows red when the battery is low. The warranty lasts two years from the date of purchase."
)
TAIL = "\nQuestion: How long does a full charge take?\nAnswer:"


@pytest.fixture(scope="module")
def works():
    llama = open_llama(gemma_gguf(), n_ctx=1024, n_threads=2, n_batch=512, verbose=False)
    yield CellWorks(llama)
    llama.close()


def tokens(works, text, bos=False):
    return works.llama.tokenize(text.encode(), add_bos=bos, special=True)


def next_logits(works, prompt):
    """Sequence 0 holds ``prompt`` but its last token: evaluate that one and return its logits."""
    works.commit(prompt[:-1])
    works.llama.eval(prompt[-1:])
    return last_logits(works)


def last_logits(works):
    # Llama.eval keeps no logits unless logits_all: read the context's own
    llama = works.llama
    return np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),)).copy()


def full_logits(works, prompt):
    works.llama.reset()
    works.llama._ctx.kv_cache_seq_rm(-1, 0, -1)
    works.llama.eval(prompt)
    return last_logits(works)


def test_cells_placed_where_they_were_computed_are_the_evaluation_they_saved(works):
    head = tokens(works, HEAD, bos=True) + tokens(works, "[1]")
    pieces = word_pieces(lambda t: tokens(works, t), "Manual", CHUNK)
    flat = [t for p in pieces for t in p]
    tail = tokens(works, TAIL)
    cells = works.compute(head, pieces)
    assert works.llama.n_tokens == len(head)  # compute leaves the prefix alone in the context
    assert cells.tokens == len(flat) and cells.base == len(head)
    placed = works.place(cells, kept_pieces(CHUNK, CHUNK), len(head))
    assert placed == flat
    works.decode(tail[:-1], len(head) + len(flat))
    joined = next_logits(works, head + flat + tail)
    # The same evaluation without the cells, in the same batches (llama.cpp's results depend on
    # how a prompt is split into batches): the saved cells are exactly what it computed.
    works.llama.reset()
    works.llama._ctx.kv_cache_seq_rm(-1, 0, -1)
    works.llama.eval(head)
    works.llama.eval(flat)
    works.decode(tail[:-1], len(head) + len(flat))
    np.testing.assert_array_equal(joined, next_logits(works, head + flat + tail))


def test_an_excerpt_moved_elsewhere_holds_exactly_its_positions(works):
    import llama_cpp

    head = tokens(works, HEAD, bos=True) + tokens(works, "[1]")
    pieces = word_pieces(lambda t: tokens(works, t), "Manual", CHUNK)
    cells = works.compute(head, pieces)
    excerpt = "A full charge takes three hours with the 10 watt adapter."
    keep = kept_pieces(CHUNK, excerpt)
    # Another passage first, evaluated fresh, so that the excerpt lands 20-odd positions later.
    before = tokens(works, "[1] Notes: The office closes at six.\n[2]")
    works.keep_prefix(tokens(works, HEAD, bos=True))
    start = len(tokens(works, HEAD, bos=True))
    works.decode(before, start)
    at = start + len(before)
    placed = works.place(cells, keep, at)
    memory = llama_cpp.llama_get_memory(works.ctx)
    assert llama_cpp.llama_memory_seq_pos_min(memory, 0) == 0
    assert llama_cpp.llama_memory_seq_pos_max(memory, 0) == at + len(placed) - 1  # closed up, no gap
    assert llama_cpp.llama_memory_seq_pos_max(memory, 1) == -1  # the scratch sequence is empty again
    assert works.llama.detokenize(placed).decode().strip() == f"Manual: {excerpt}"
    prompt = tokens(works, HEAD, bos=True) + before + placed + tokens(works, TAIL)
    works.decode(prompt[at + len(placed) : -1], at + len(placed))
    joined = next_logits(works, prompt)
    full = full_logits(works, prompt)
    # Not equal (the excerpt's cells saw the words it leaves out, not the passage before it), but
    # the same prediction, and logits as close as another batch split gives.
    cosine = float(joined @ full / np.linalg.norm(joined) / np.linalg.norm(full))
    assert int(np.argmax(joined)) == int(np.argmax(full))
    assert cosine > 0.99
