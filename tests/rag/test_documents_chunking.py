import io

import pytest

from rag_index.chunking import MAX_WORDS, OVERLAP_WORDS, chunk_sections
from rag_index.documents import Section, UnsupportedDocument, parse_document
from rag_index.store import safe_source_name


def words(n, prefix="w"):
    return " ".join(f"{prefix}{i}" for i in range(n))


def test_markdown_headings_become_sections_and_title():
    doc = parse_document("guide.md", b"# Router Guide\nIntro text.\n\n## Reset\nHold the button.\n")
    assert doc.title == "Router Guide"
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Router Guide", "Intro text."),
        ("Reset", "Hold the button."),
    ]


def test_html_uses_a_real_parser():
    html = b"""<html><head><title>Manual</title><style>p{}</style><script>var x=1;</script></head>
    <body><nav>menu</nav><h1>Setup</h1><p>Plug it <b>in</b>.</p><ul><li><p>Nested</p></li></ul>
    <h2>Reset</h2><p>Hold &amp; wait.</p></body></html>"""
    doc = parse_document("m.html", html)
    assert doc.title == "Manual"
    assert [(s.heading, s.text) for s in doc.sections] == [
        ("Setup", "Plug it in .\n\nNested"),
        ("Reset", "Hold & wait."),
    ]


def test_pdf_text_is_extracted():
    from pypdf import PdfWriter
    from pypdf.generic import DictionaryObject, NameObject, StreamObject

    writer = PdfWriter()
    page = writer.add_blank_page(300, 300)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    content = StreamObject()
    content.set_data(b"BT /F1 12 Tf 20 200 Td (The valve is under the sink.) Tj ET")
    page[NameObject("/Contents")] = writer._add_object(content)
    writer.add_metadata({"/Title": "Plumbing"})
    out = io.BytesIO()
    writer.write(out)
    doc = parse_document("p.pdf", out.getvalue())
    assert doc.title == "Plumbing"
    assert "valve is under the sink" in doc.sections[0].text


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("x.pdf", b"this is not a pdf", "not a PDF"),
        ("x.pdf", b"%PDF-1.4 garbage", "unreadable PDF"),
        ("x.exe", b"MZ", "unsupported file type"),
        ("x.txt", b"   \n  ", "no text"),
        ("x.txt", b"\x00\x01\x02binary", "binary"),
    ],
)
def test_bad_documents_are_clear_errors(name, data, message):
    with pytest.raises(UnsupportedDocument, match=message):
        parse_document(name, data)


def test_chunks_are_bounded_overlap_and_keep_heading():
    sections = [Section("Intro", "\n\n".join(words(90, f"p{n}_") for n in range(6)))]
    chunks = chunk_sections(sections)
    assert len(chunks) >= 2
    for chunk in chunks:
        body = chunk.text.split("\n", 1)[1]
        assert chunk.text.startswith("Intro\n")
        assert len(body.split()) <= MAX_WORDS + OVERLAP_WORDS
    # consecutive chunks overlap
    assert chunks[0].text.split()[-1] in chunks[1].text.split()
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_short_sections_stay_whole_and_long_paragraphs_are_split():
    chunks = chunk_sections([Section("A", "short text"), Section("B", words(700))])
    assert chunks[0].text == "A\nshort text"
    assert all(len(c.text.split()) <= MAX_WORDS + 1 for c in chunks[1:])
    covered = set()
    for c in chunks[1:]:
        covered.update(c.text.split()[1:])
    assert covered == set(words(700).split())  # nothing lost


def test_source_names_cannot_traverse():
    assert safe_source_name("../../etc/passwd") == "passwd"
    assert safe_source_name("..\\..\\boot.ini") == "boot.ini"
    assert safe_source_name("..") == "document"
    assert safe_source_name("a\x00b.txt") == "ab.txt"
