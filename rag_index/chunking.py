"""Cut sections into retrieval chunks of ~150-250 words along paragraph and sentence bounds."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .documents import Section

TARGET_WORDS = 200
MAX_WORDS = 250
MIN_WORDS = 60
OVERLAP_WORDS = 30

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


@dataclass(frozen=True)
class Chunk:
    """A passage to embed. ``text`` holds the heading first, so retrieval sees it."""

    ordinal: int
    heading: str
    text: str
    word_start: int  # offsets in the document's running word count
    word_end: int


def _units(text: str) -> list[str]:
    """Paragraphs, with over-long ones cut into sentences (and those into word runs)."""
    units: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        if len(paragraph.split()) <= MAX_WORDS:
            units.append(paragraph)
            continue
        for sentence in _SENTENCE.split(paragraph):
            words = sentence.split()
            for i in range(0, len(words), MAX_WORDS):
                units.append(" ".join(words[i : i + MAX_WORDS]))
    return units


def _tail(words: list[str], n: int) -> list[str]:
    return words[-n:] if n and len(words) > n else []


class _Builder:
    """Accumulates one section's words into chunks, carrying an overlap between them."""

    def __init__(self, chunks: list[Chunk], heading: str, offset: int) -> None:
        self.chunks, self.heading, self.start = chunks, heading, offset
        self.current: list[str] = []  # overlap first, then new words
        self.fresh = 0  # words not already in the previous chunk

    def cut(self) -> None:
        self.chunks.append(_make(len(self.chunks), self.heading, self.current, self.start))
        carry = _tail(self.current, OVERLAP_WORDS)
        self.start += len(self.current) - len(carry)
        self.current, self.fresh = carry, 0

    def add(self, words: list[str]) -> None:
        if len(self.current) + len(words) > MAX_WORDS:
            if self.fresh:
                self.cut()
            if len(self.current) + len(words) > MAX_WORDS:  # the overlap itself would overflow: drop it
                self.start += len(self.current)
                self.current = []
        self.current.extend(words)
        self.fresh += len(words)
        if len(self.current) >= TARGET_WORDS:
            self.cut()

    def finish(self) -> None:
        if self.fresh:
            self.chunks.append(_make(len(self.chunks), self.heading, self.current, self.start))


def chunk_sections(sections: Iterable[Section]) -> list[Chunk]:
    chunks: list[Chunk] = []
    offset = 0
    for section in sections:
        units = _units(section.text)
        builder = _Builder(chunks, section.heading, offset)
        for unit in units:
            builder.add(unit.split())
        builder.finish()
        offset += sum(len(u.split()) for u in units)
    return chunks


def _make(ordinal: int, heading: str, words: list[str], start: int) -> Chunk:
    body = " ".join(words)
    text = f"{heading}\n{body}" if heading else body
    return Chunk(ordinal=ordinal, heading=heading, text=text, word_start=start, word_end=start + len(words))
