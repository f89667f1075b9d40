"""The document index: parse, chunk, embed, and search with FAISS + SQLite (one machine) or
PostgreSQL + pgvector (a cluster).

Names load on first use, so a child process that only parses (``rag_index.isolation``)
starts without numpy or FAISS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .chunking import Chunk, chunk_sections
    from .documents import ParsedDocument, Section, UnsupportedDocument, parse_document
    from .store import DocumentIndex, DocumentInfo, DocumentStore, SearchHit, default_index_dir, open_store

_WHERE = {
    "Chunk": ".chunking",
    "chunk_sections": ".chunking",
    "ParsedDocument": ".documents",
    "Section": ".documents",
    "UnsupportedDocument": ".documents",
    "parse_document": ".documents",
    "DocumentIndex": ".store",
    "DocumentInfo": ".store",
    "DocumentStore": ".store",
    "open_store": ".store",
    "SearchHit": ".store",
    "default_index_dir": ".store",
}

__all__ = [
    "Chunk",
    "DocumentIndex",
    "DocumentInfo",
    "DocumentStore",
    "ParsedDocument",
    "SearchHit",
    "Section",
    "UnsupportedDocument",
    "chunk_sections",
    "default_index_dir",
    "open_store",
    "parse_document",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'rag_index' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)
