"""Turn .txt, .md, .html and .pdf files into titled sections of plain text."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import PurePath

SUPPORTED = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")


class UnsupportedDocument(ValueError):
    """A file that cannot be read as a document; the message is safe to show a user."""


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
    """Parse by extension; the title falls back to the file's stem."""
    suffix = PurePath(filename).suffix.lower()
    stem = PurePath(filename).stem or "document"
    if suffix not in SUPPORTED:
        raise UnsupportedDocument(f"unsupported file type {suffix or '(none)'!r}; supported: {', '.join(SUPPORTED)}")
    if suffix == ".pdf":
        doc = _parse_pdf(data, stem)
    else:
        text = _decode_text(data)
        if suffix in (".html", ".htm"):
            doc = _parse_html(text, stem)
        elif suffix in (".md", ".markdown"):
            doc = _parse_markdown(text, stem)
        else:
            doc = _parse_plain(text, stem)
    doc.sections = [s for s in doc.sections if s.text.strip()]
    if not doc.sections:
        raise UnsupportedDocument(f"{filename}: no text found")
    return doc


def _decode_text(data: bytes) -> str:
    if b"\x00" in data[:4096]:
        raise UnsupportedDocument("file looks binary, not text")
    for encoding in ("utf-8-sig", "utf-16"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


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


_BLOCKS = ("p", "li", "pre", "td", "th", "blockquote", "dd", "dt", "figcaption")


def _parse_html(text: str, stem: str) -> ParsedDocument:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "nav", "svg"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    body = soup.body or soup
    sections: list[Section] = []
    heading = ""
    paragraphs: list[str] = []
    for element in body.find_all(["h1", "h2", "h3", "h4", "h5", "h6", *_BLOCKS]):
        # Nested blocks (a <p> in an <li>) are read once, through the outer one.
        if element.find_parent(_BLOCKS):
            continue
        words = element.get_text(" ", strip=True)
        if not words:
            continue
        if element.name.startswith("h") and len(element.name) == 2:
            sections.append(Section(heading, "\n\n".join(paragraphs)))
            heading, paragraphs = words, []
            title = title or words
        else:
            paragraphs.append(words)
    sections.append(Section(heading, "\n\n".join(paragraphs)))
    if not any(s.text for s in sections):  # no block markup: take all text
        sections = [Section("", body.get_text("\n", strip=True))]
    return ParsedDocument(title=title or stem, sections=sections)


def _parse_pdf(data: bytes, stem: str) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if not data.startswith(b"%PDF"):
        raise UnsupportedDocument("not a PDF file (missing %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data))
        title = ""
        if reader.metadata is not None and reader.metadata.title:
            title = str(reader.metadata.title).strip()
        sections = [
            Section(f"Page {n}", (page.extract_text() or "").strip()) for n, page in enumerate(reader.pages, start=1)
        ]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise UnsupportedDocument(f"unreadable PDF: {exc}") from None
    return ParsedDocument(title=title or stem, sections=sections)
