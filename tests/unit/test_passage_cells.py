"""Which cells of a cached chunk make an excerpt of it (voicebot/engines/passage_cells.py)."""

from voicebot.engines.passage_cells import kept_pieces, runs, word_pieces
from voicebot.text import trim_passage

CHUNK = (
    "Chapter 2. Users and Groups\nits spool directories are owned by lp. "
    "The daemon runs as root. Mail is delivered to /var/mail by the group mail."
)


def test_a_whole_chunk_keeps_every_piece():
    n = len(CHUNK.split())
    assert kept_pieces(CHUNK, CHUNK) == list(range(n + 2))  # header, each word, the newline


def test_an_excerpt_of_whole_sentences_keeps_their_words_and_drops_the_rest():
    words = CHUNK.split()
    excerpt = trim_passage("Which group gets the mail?", CHUNK, 16)
    assert excerpt != CHUNK and "mail" in excerpt
    keep = kept_pieces(CHUNK, excerpt)
    assert keep is not None and keep[0] == 0 and keep[-1] == len(words) + 1
    assert " ".join(words[i - 1] for i in keep[1:-1]) == " ".join(excerpt.split())


def test_sentences_that_were_split_at_a_newline_are_found_joined():
    # trim_passage joins the kept sentences with spaces: "Users and Groups" (ended by a newline)
    # and the next sentence read as one sentence in the excerpt
    excerpt = "Users and Groups its spool directories are owned by lp."
    keep = kept_pieces(CHUNK, excerpt)
    assert keep is not None
    assert " ".join(CHUNK.split()[i - 1] for i in keep[1:-1]) == excerpt


def test_a_window_of_one_long_sentence_is_one_run_of_words():
    long = " ".join(f"w{i}" for i in range(50)) + "."
    window = " ".join(f"w{i}" for i in range(10, 30))
    assert kept_pieces(long, window) == [0, *range(11, 31), 51]


def test_an_excerpt_not_made_of_the_chunks_words_is_refused():
    assert kept_pieces(CHUNK, "The daemon runs as nobody.") is None
    assert kept_pieces(CHUNK, "Mail is delivered. The daemon runs as root.") is None  # out of order


def test_runs_group_ascending_indexes():
    assert runs([0, 1, 2, 5, 6, 9]) == [(0, 3), (5, 7), (9, 10)]
    assert runs([]) == []


def test_word_pieces_are_the_header_each_word_and_the_newline():
    pieces = word_pieces(lambda text: [ord(c) for c in text], "Manual", "Charge it.")
    assert pieces == [[ord(c) for c in " Manual:"], [ord(c) for c in " Charge"], [ord(c) for c in " it."], [10]]
