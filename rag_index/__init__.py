"""The document index: parse, chunk, embed, and search with FAISS + SQLite."""

import voicebot  # noqa: F401  (keeps the checkout's triton/ folder off sys.path before torch loads)

from .chunking import Chunk, chunk_sections
from .documents import ParsedDocument, Section, UnsupportedDocument, parse_document
from .store import DocumentIndex, DocumentInfo, SearchHit, default_index_dir

__all__ = [
    "Chunk",
    "DocumentIndex",
    "DocumentInfo",
    "ParsedDocument",
    "SearchHit",
    "Section",
    "UnsupportedDocument",
    "chunk_sections",
    "default_index_dir",
    "parse_document",
]
