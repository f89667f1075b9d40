"""Turn .txt, .md, .html and .pdf files into titled sections of plain text.

Every parser here is linear in its input: uploads come from whoever can reach the server.
HTML goes through a streaming reader over the standard library's tokenizer (no tree, so
no per-element walk up the ancestors: a 4,000-level nesting costs what 4,000 siblings
do), nesting of text blocks is bounded, and PDF streams have a decompression cap. Time
and memory as a whole are bounded by running the parse in a child process
(:mod:`rag_index.isolation`).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import PurePath

from voicebot.contract import ErrorCode
from voicebot.jsonsafe import clean_label

SUPPORTED = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")
MAX_BLOCK_DEPTH = 256
# A PDF stream may inflate to this much, far above any page of text (pypdf's own cap is 75 MB).
MAX_PDF_STREAM_BYTES = 32 * 1024 * 1024
# Text whose share of control characters is above this is binary data, whatever its name.
MAX_CONTROL_SHARE = 0.01
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


class UnsupportedDocument(ValueError):
    """A file that cannot be read as a document; the message is safe to show a user.

    ``code`` says why: an unsupported or unreadable file, one too large once decoded
    (``too_large``), or one whose structure is past the parser's bounds."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.UNSUPPORTED_DOCUMENT) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Section:
    heading: str
    text: str


@dataclass
class ParsedDocument:
    title: str
    sections: list[Section] = field(default_factory=list)

    @property
    def word_count(self) -> int:
        return sum(len(s.text.split()) for s in self.sections)


def parse_document(filename: str, data: bytes) -> ParsedDocument:
    """Parse by extension; the title falls back to the file's stem. Titles and text come out
    free of control characters."""
    suffix = PurePath(filename).suffix.lower()
    stem = PurePath(filename).stem or "document"
    if suffix not in SUPPORTED:
        raise UnsupportedDocument(f"unsupported file type {suffix or '(none)'!r}; supported: {', '.join(SUPPORTED)}")
    if suffix == ".pdf":
        doc = _parse_pdf(data, stem)
    else:
        text = decode_text(data)
        if suffix in (".html", ".htm"):
            doc = _parse_html(text, stem)
        elif suffix in (".md", ".markdown"):
            doc = _parse_markdown(text, stem)
        else:
            doc = _parse_plain(text, stem)
    sections = [Section(clean_label(s.heading), _clean_text(s.text)) for s in doc.sections]
    doc.sections = [s for s in sections if s.text.strip()]
    doc.title = clean_label(doc.title) or clean_label(stem) or "document"
    if not doc.sections:
        raise UnsupportedDocument(f"{clean_label(filename)}: no text found")
    return doc


def _clean_text(text: str) -> str:
    return _CONTROLS.sub(" ", text.replace("\x0c", "\n")).strip()


def decode_text(data: bytes) -> str:
    """Bytes of a text file as text; binary data (whatever the file is called) is refused."""
    if b"\x00" in data and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnsupportedDocument("file looks binary, not text (it holds NUL bytes)")
    candidates = ("utf-16",) if data.startswith((b"\xff\xfe", b"\xfe\xff")) else ("utf-8-sig", "cp1252")
    for encoding in candidates:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise UnsupportedDocument("file is not text in UTF-8, UTF-16 (with a byte-order mark) or Windows-1252")
    controls = len(_CONTROLS.findall(text)) + text.count("\ufffd")
    if text and controls / len(text) > MAX_CONTROL_SHARE:
        raise UnsupportedDocument(f"file looks binary, not text ({controls} control characters in {len(text)})")
    return text


def _parse_plain(text: str, stem: str) -> ParsedDocument:
    return ParsedDocument(title=stem, sections=[Section("", text.strip())])


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _parse_markdown(text: str, stem: str) -> ParsedDocument:
    sections: list[Section] = []
    heading, title = "", ""
    lines: list[str] = []
    for line in text.splitlines():
        match = _MD_HEADING.match(line)
        if match:
            sections.append(Section(heading, "\n".join(lines).strip()))
            heading, lines = match.group(2).strip(), []
            if not title and len(match.group(1)) == 1:
                title = heading
        else:
            lines.append(line)
    sections.append(Section(heading, "\n".join(lines).strip()))
    return ParsedDocument(title=title or stem, sections=sections)


_BLOCKS = frozenset({"p", "li", "pre", "td", "th", "blockquote", "dd", "dt", "figcaption"})
# Blocks that a new one of the same family closes when the markup leaves them open (<p>a<p>b).
_SELF_CLOSING_FAMILY = {"li": {"li"}, "dt": {"dt", "dd"}, "dd": {"dt", "dd"}, "td": {"td", "th"}, "th": {"td", "th"}}
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
# Starting one of these closes an open <p>, as in a browser (the HTML spec's list, in short).
_CLOSES_P = frozenset(
    {"address", "article", "aside", "blockquote", "div", "dl", "fieldset", "figure", "footer", "form", "header"}
    | {"hr", "main", "nav", "ol", "p", "pre", "section", "table", "ul", "li", "dd", "dt", "td", "th"}
    | _HEADINGS
)
# Ending a container closes the items left open inside it (<ul><li>a<li>b</ul>).
_CLOSES_ITEMS = {"ul": {"li"}, "ol": {"li"}, "dl": {"dt", "dd"}, "table": {"td", "th"}, "tr": {"td", "th"}}
_SKIPPED = frozenset({"script", "style", "noscript", "template", "nav", "svg"})


class _HtmlText(HTMLParser):
    """Sections of an HTML page, read in one pass: headings start sections, text blocks are
    paragraphs (a block inside another is read as part of the outer one), markup that holds no
    reading text (scripts, styles, navigation, SVG) is skipped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.sections: list[Section] = []
        self._heading = ""
        self._paragraphs: list[str] = []
        self._blocks: list[str] = []  # open text blocks, outermost first
        self._words: list[str] = []  # the paragraph or heading being read
        self._in_heading: str | None = None
        self._in_title = False
        self._title_words: list[str] = []
        self._skipping: dict[str, int] = {}
        self._loose: list[str] = []  # all readable text, for pages without block markup

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in _CLOSES_P and self._blocks and self._blocks[-1] == "p":
            self.handle_endtag("p")
        if tag in _SKIPPED:
            self._skipping[tag] = self._skipping.get(tag, 0) + 1
        elif tag == "title" and not self.title:
            self._in_title = True
        elif tag in _HEADINGS and not self._blocks and self._in_heading is None:
            self._end_paragraph()
            self._in_heading = tag
        elif tag in _BLOCKS:
            family = _SELF_CLOSING_FAMILY.get(tag, set())
            if self._blocks and self._blocks[-1] in family:
                self.handle_endtag(self._blocks[-1])
            if len(self._blocks) >= MAX_BLOCK_DEPTH:
                raise UnsupportedDocument(
                    f"HTML text blocks nested more than {MAX_BLOCK_DEPTH} deep", ErrorCode.TOO_DEEP
                )
            self._blocks.append(tag)

    def handle_endtag(self, tag: str) -> None:
        items = _CLOSES_ITEMS.get(tag)
        if items and self._blocks and self._blocks[-1] in items:
            self.handle_endtag(self._blocks[-1])
        if tag in _SKIPPED:
            if self._skipping.get(tag):
                self._skipping[tag] -= 1
        elif tag == "title":
            if self._in_title:
                self.title = " ".join(self._title_words)
            self._in_title = False
        elif tag == self._in_heading:
            self._end_heading()
        elif tag in _BLOCKS and tag in self._blocks:
            while self._blocks:  # an end tag closes whatever it encloses that was left open
                if self._blocks.pop() == tag:
                    break
            if not self._blocks:
                self._end_paragraph()

    def handle_data(self, data: str) -> None:
        if any(self._skipping.values()):
            return
        words = data.split()
        if not words:
            return
        if self._in_title:
            self._title_words.extend(words)
            return
        self._loose.extend(words)
        if self._in_heading is not None or self._blocks:
            self._words.extend(words)

    def _end_heading(self) -> None:
        text = " ".join(self._words)
        self._words, self._in_heading = [], None
        if text:
            self.sections.append(Section(self._heading, "\n\n".join(self._paragraphs)))
            self._heading, self._paragraphs = text, []
            self.title = self.title or text

    def _end_paragraph(self) -> None:
        if self._words:
            self._paragraphs.append(" ".join(self._words))
        self._words = []

    def finish(self) -> list[Section]:
        self.close()
        if self._in_heading is not None:
            self._end_heading()
        self._blocks.clear()
        self._end_paragraph()
        self.sections.append(Section(self._heading, "\n\n".join(self._paragraphs)))
        if not any(s.text for s in self.sections):  # no block markup: take all text
            return [Section("", " ".join(self._loose))]
        return self.sections


def _parse_html(text: str, stem: str) -> ParsedDocument:
    reader = _HtmlText()
    reader.feed(text)
    sections = reader.finish()
    return ParsedDocument(title=reader.title or stem, sections=sections)


def _parse_pdf(data: bytes, stem: str) -> ParsedDocument:
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import LimitReachedError, PdfReadError

    if not data.startswith(b"%PDF"):
        raise UnsupportedDocument("not a PDF file (missing %PDF header)")
    limits = {
        name: MAX_PDF_STREAM_BYTES
        for name in (
            "zlib_maximum_output_length",
            "lzw_maximum_output_length",
            "run_length_maximum_output_length",
            "brotli_maximum_output_length",
            "array_based_stream_maximum_output_length",
            "maximum_declared_stream_length",
        )
    }
    try:
        with apply_configuration(None, **limits):
            reader = PdfReader(io.BytesIO(data))
            title = ""
            if reader.metadata is not None and reader.metadata.title:
                title = str(reader.metadata.title).strip()
            sections = [
                Section(f"Page {n}", (page.extract_text() or "").strip())
                for n, page in enumerate(reader.pages, start=1)
            ]
    except LimitReachedError as exc:
        raise UnsupportedDocument(f"the PDF inflates past its limit: {exc}", ErrorCode.TOO_LARGE) from None
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise UnsupportedDocument(f"unreadable PDF: {type(exc).__name__}: {str(exc)[:200]}") from None
    return ParsedDocument(title=title or stem, sections=sections)
