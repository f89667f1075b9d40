"""Parsers that a hostile file cannot turn against the server: linear, bounded, the client's error."""

import time

import numpy as np
import pytest
from hostile_files import pdf_bomb

from rag_index.documents import MAX_BLOCK_DEPTH, UnsupportedDocument, decode_text, parse_document
from rag_index.isolation import BoundedParser
from voicebot.contract import ErrorCode


def test_a_pdf_that_inflates_past_the_cap_is_too_large():
    bomb = pdf_bomb(80 << 20)
    assert len(bomb) < 200_000
    with pytest.raises(UnsupportedDocument) as info:
        parse_document("bomb.pdf", bomb)
    assert info.value.code == ErrorCode.TOO_LARGE


def test_random_bytes_are_not_text_whatever_the_name():
    rng = np.random.default_rng(1)
    for data in (rng.bytes(20_000), bytes(range(1, 32)) * 100, b"\x00" + b"text" * 100):
        with pytest.raises(UnsupportedDocument, match=r"binary|not text"):
            decode_text(data)


def test_real_text_in_several_encodings_is_read():
    assert decode_text("Café au lait".encode()) == "Café au lait"
    assert decode_text("\ufeffBOM first".encode()) == "BOM first"
    assert decode_text("Ünïcode in UTF-16".encode("utf-16")) == "Ünïcode in UTF-16"
    assert decode_text("Fa\u00e7ade \u2013 1252".encode("cp1252")) == "Fa\u00e7ade \u2013 1252"
    assert decode_text(b"Page one\x0cPage two\twith a tab") == "Page one\x0cPage two\twith a tab"


def html(body: str, head: str = "") -> bytes:
    return f"<html><head>{head}</head><body>{body}</body></html>".encode()


def test_html_blocks_left_open_close_like_a_browser_closes_them():
    doc = parse_document("l.html", html("<h1>List</h1><ul><li>one<li>two<li>three</ul><p>a<p>b"))
    assert [(s.heading, s.text) for s in doc.sections] == [("List", "one\n\ntwo\n\nthree\n\na\n\nb")]


def test_html_text_blocks_nested_past_the_bound_are_refused():
    deep = "<blockquote>" * (MAX_BLOCK_DEPTH + 1) + "x" + "</blockquote>" * (MAX_BLOCK_DEPTH + 1)
    with pytest.raises(UnsupportedDocument) as info:
        parse_document("deep.html", html(deep))
    assert info.value.code == ErrorCode.TOO_DEEP


def test_html_parsing_is_linear_in_nesting_depth():
    def seconds(depth: int) -> float:
        page = html("<div>" * depth + "<p>The lamp charges in three hours.</p>" + "</div>" * depth)
        began = time.perf_counter()
        doc = parse_document("n.html", page)
        assert doc.sections[0].text == "The lamp charges in three hours."
        return time.perf_counter() - began

    seconds(100)  # warm-up
    small, large = min(seconds(2000) for _ in range(3)), min(seconds(20_000) for _ in range(3))
    # 10x the depth: linear is ~10x; the old tree walk was ~100x. A ratio in one run, not a clock.
    assert large / small < 30, (small, large)


def test_titles_and_text_lose_control_and_format_characters():
    text = "Body\x07 with\x1b[31m escapes\u0085." + " and plain words" * 50  # a few stray controls in text
    doc = parse_document("evil\u202e\u0007name.txt", text.encode())
    assert doc.title == "evilname"
    assert doc.sections[0].text.startswith("Body  with [31m escapes . and plain words")
    page = parse_document("t.html", html("<p>x</p>", head="<title>A&#x202e;&#7;B&lt;img src=x&gt;</title>"))
    assert page.title == "AB<img src=x>"  # markup in a title is inert text


def test_the_bounded_parser_reports_the_childs_verdict_and_its_own_bounds():
    parser = BoundedParser(timeout_s=30, memory_mb=1024)
    doc = parser("notes.md", b"# Notes\nThe kettle boils in ninety seconds.\n")
    assert doc.title == "Notes" and doc.sections[0].text == "The kettle boils in ninety seconds."
    with pytest.raises(UnsupportedDocument) as info:
        parser("noise.txt", np.random.default_rng(2).bytes(5000))
    assert info.value.code == ErrorCode.UNSUPPORTED_DOCUMENT
    with pytest.raises(UnsupportedDocument) as info:
        BoundedParser(timeout_s=0.01)("notes.md", b"# Notes\n")  # no interpreter starts in 10 ms
    assert info.value.code == ErrorCode.DOCUMENT_TOO_COMPLEX
    with pytest.raises(UnsupportedDocument) as info:
        BoundedParser(timeout_s=30, memory_mb=64)("big.txt", b"word " * (8 << 20))  # 40 MB of text in 64 MB
    assert info.value.code == ErrorCode.TOO_LARGE
