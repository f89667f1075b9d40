"""Document stores: what every backend shares (:class:`DocumentStore`: dedupe by content,
chunking, embedding, hybrid search fused by reciprocal rank), the embedded default
(:class:`DocumentIndex`: SQLite + FAISS, one machine) and :func:`open_store`, which picks the
backend from a location (a directory, or a ``postgresql://`` URL for
:class:`rag_index.pgstore.PgDocumentStore`, shared by any number of orchestrators).

In the embedded store SQLite is the source of truth and changes only in transactions, so a crash or kill
mid-ingest leaves either the whole document or none of it. The FAISS file is derived:
it is written to a temporary file and renamed into place, tagged with the database's
generation, and rebuilt from SQLite whenever the tags disagree (a kill between the
commit and the save, or another process that changed the index).
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import hashlib
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Protocol

import numpy as np

from voicebot.contract import EMBEDDING_DIM
from voicebot.text import STOPWORDS, iter_words

from .chunking import Chunk, chunk_sections
from .documents import ParsedDocument, parse_document

Parser = Callable[[str, bytes], ParsedDocument]

log = logging.getLogger("voicebot.index")
HNSW_THRESHOLD = 20_000  # below this many chunks exact search is fast enough (and exact)
EMBED_BATCH = 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    source TEXT NOT NULL,
    content_hash TEXT NOT NULL UNIQUE,
    words INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    heading TEXT NOT NULL,
    text TEXT NOT NULL,
    word_start INTEGER NOT NULL,
    word_end INTEGER NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks(document_id);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO state VALUES ('generation', 0);
-- Lexical search beside FAISS: exact numbers, names and section titles are where an
-- embedding alone misses. Kept in step with `chunks` by triggers, inside the same transactions.
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(title, heading, text, tokenize='porter unicode61');
CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, title, heading, text)
    VALUES (new.id, (SELECT title FROM documents WHERE id = new.document_id), new.heading, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN
    DELETE FROM chunks_fts WHERE rowid = old.id;
END;
"""
# Reciprocal rank fusion (Cormack et al., 2009): score = sum of 1 / (RRF_K + rank) over the
# two rankings; 60 is the constant of the paper, insensitive in practice.
RRF_K = 60
CANDIDATES = 24  # how deep each ranking is read before fusing (at least 4 × k)
# Title, heading and body weights for BM25: a question that names a section should find it.
BM25_WEIGHTS = (2.0, 2.0, 1.0)


class Embedder(Protocol):
    """Texts to L2-normalized float32 vectors of ``EMBEDDING_DIM``."""

    def embed(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class DocumentInfo:
    id: str
    title: str
    source: str
    chunks: int
    words: int
    created: float


@dataclass(frozen=True)
class SearchHit:
    chunk_id: int
    document_id: str
    title: str
    source: str
    heading: str
    text: str
    score: float


def _no_gpu_reason(faiss: Any) -> str:
    if not hasattr(faiss, "StandardGpuResources"):
        return "this faiss has no GPU support (install the gpu extra: faiss-gpu)"
    return "no GPU is visible"


def default_store_location() -> str | Path:
    """``$VOICEBOT_STORE`` (a directory or a ``postgresql://`` URL), else :func:`default_index_dir`."""
    return os.environ.get("VOICEBOT_STORE") or default_index_dir()


def default_index_dir() -> Path:
    """``$VOICEBOT_INDEX_DIR``, else ``~/.local/share/voicebot/index`` (shared by the CLI and the server)."""
    env = os.environ.get("VOICEBOT_INDEX_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "voicebot" / "index"


def safe_source_name(filename: str) -> str:
    """The file's base name only: no directories, no traversal, printable, bounded."""
    name = PurePath(filename.replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable() and ch not in "/\\\x00").strip(". ")
    return name[:200] or "document"


MAX_QUERY_WORDS = 32  # a lexical query is an OR of at most this many content words


def query_words(text: str) -> list[str]:
    """The question's content words, each once, in order: the terms of a lexical query."""
    words = dict.fromkeys(w.strip("'") for w in iter_words(text) if w not in STOPWORDS)
    return [w for w in words if w][:MAX_QUERY_WORDS]


def fts_query(text: str) -> str:
    """An FTS5 query that matches any of the question's content words (each quoted, so no
    word is read as FTS syntax)."""
    return " OR ".join(f'"{w}"' for w in query_words(text))


def lexical_ranking(db: sqlite3.Connection, text: str, depth: int) -> list[int]:
    """Chunk ids by BM25 over title, heading and text, best first."""
    query = fts_query(text)
    if not query:
        return []
    weights = ", ".join(map(str, BM25_WEIGHTS))
    rows = db.execute(
        f"SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY bm25(chunks_fts, {weights}) LIMIT ?",
        (query, depth),
    ).fetchall()
    return [int(r[0]) for r in rows]


def fuse(rankings: list[list[int]], k: int) -> list[int]:
    """The ``k`` best chunk ids by reciprocal rank fusion of ``rankings`` (each best first)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(fused, key=lambda i: (-fused[i], i))[:k]


@dataclass(frozen=True)
class NewDocument:
    """One parsed, chunked and embedded file, ready for a backend to write in one transaction."""

    digest: str
    title: str
    source: str
    words: int
    chunks: list[Chunk]
    vectors: np.ndarray


class DocumentStore(abc.ABC):
    """Add, delete, list and search documents; the same API over every backend. Thread-safe.

    A backend writes a :class:`NewDocument` in one transaction (the same content twice is one
    document, also when two writers race), and gives a dense and a lexical ranking."""

    embedder: Embedder | None
    parse: Parser

    # ------------------------------------------------------------------ a backend's part

    @abc.abstractmethod
    def documents(self, doc_id: str | None = None) -> list[DocumentInfo]:
        """All documents, oldest first (or the one with ``doc_id``)."""

    @abc.abstractmethod
    def document_count(self) -> int: ...

    @abc.abstractmethod
    def chunk_count(self) -> int: ...

    @abc.abstractmethod
    def index_kind(self) -> str:
        """``hnsw`` or ``flat`` (exact): how dense search runs right now."""

    @abc.abstractmethod
    def delete(self, doc_id: str) -> bool: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise when the store cannot serve (readiness)."""

    @abc.abstractmethod
    def _by_digest(self, digest: str) -> DocumentInfo | None: ...

    @abc.abstractmethod
    def _insert(self, doc: NewDocument) -> tuple[DocumentInfo, bool]:
        """Write ``doc`` in one transaction; the existing document when its content is already in."""

    @abc.abstractmethod
    def _rankings(self, vector: np.ndarray, text: str | None, depth: int) -> list[list[int]]:
        """Chunk ids best first: the dense ranking, and the lexical one when ``text`` is given."""

    @abc.abstractmethod
    def _hits(self, chunk_ids: list[int], vector: np.ndarray) -> list[SearchHit]:
        """The chunks in the order given, scored by cosine similarity to ``vector``."""

    # ------------------------------------------------------------------ shared

    def document(self, doc_id: str) -> DocumentInfo | None:
        found = self.documents(doc_id)
        return found[0] if found else None

    def find_duplicate(self, data: bytes) -> DocumentInfo | None:
        """The document already indexed with exactly this content, if any."""
        return self._by_digest(hashlib.sha256(data).hexdigest())

    def search(
        self, query: str | np.ndarray, k: int = 3, text: str | None = None, lexical: bool = True
    ) -> list[SearchHit]:
        """The ``k`` best chunks for a question: dense and lexical rankings fused by reciprocal
        rank. ``query`` is the question or its embedding; with an embedding, ``text`` is the
        question for the lexical side. ``score`` is the cosine similarity."""
        if isinstance(query, str):
            text = query if text is None else text
            vector = self._embed([query])[0]
        else:
            vector = np.asarray(query, dtype=np.float32).reshape(EMBEDDING_DIM)
        depth = max(CANDIDATES, 4 * k)
        rankings = self._rankings(vector, text if lexical and text else None, depth)
        return self._hits(fuse(rankings, k), vector)

    def add(
        self,
        filename: str,
        data: bytes,
        progress: Callable[[int, int], None] | None = None,
        parsed: ParsedDocument | None = None,
    ) -> tuple[DocumentInfo, bool]:
        """Ingest one file; returns ``(document, created)``. The same content twice is one document.

        ``parsed``: the file already parsed (the server parses outside its ingest lock)."""
        digest = hashlib.sha256(data).hexdigest()
        existing = self._by_digest(digest)
        if existing is not None:
            return existing, False
        if parsed is None:
            parsed = self.parse(filename, data)
        chunks = chunk_sections(parsed.sections)
        parts = [np.zeros((0, EMBEDDING_DIM), np.float32)]
        for start in range(0, len(chunks), EMBED_BATCH):
            parts.append(self._embed([c.text for c in chunks[start : start + EMBED_BATCH]]))
            if progress is not None:
                progress(min(start + EMBED_BATCH, len(chunks)), len(chunks))
        doc = NewDocument(
            digest, parsed.title[:300], safe_source_name(filename), parsed.word_count, chunks, np.concatenate(parts)
        )
        return self._insert(doc)

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self.embedder is None:
            raise RuntimeError("this index was opened without an embedder")
        vectors = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        if vectors.shape != (len(texts), EMBEDDING_DIM):
            raise RuntimeError(f"embedder returned shape {vectors.shape}, expected ({len(texts)}, {EMBEDDING_DIM})")
        return vectors


def is_database_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open_store(
    location: str | Path,
    embedder: Embedder | None = None,
    use_gpu: bool = False,
    parse: Parser = parse_document,
) -> DocumentStore:
    """The store at ``location``: a ``postgresql://`` URL (pgvector, shared by every
    orchestrator that names it) or a directory (the embedded SQLite + FAISS index)."""
    if is_database_url(location):
        from .pgstore import PgDocumentStore

        return PgDocumentStore(str(location), embedder, parse=parse)
    return DocumentIndex(Path(location), embedder, use_gpu=use_gpu, parse=parse)


def describe_location(location: str | Path) -> str:
    """``location`` fit for a log line or an error: a database URL without its password."""
    if not is_database_url(location):
        return str(location)
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(str(location))
    if parts.password is None:
        return str(location)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class DocumentIndex(DocumentStore):
    """The embedded store: SQLite + FAISS in one directory. Several processes may share it."""

    def __init__(
        self, path: Path, embedder: Embedder | None = None, use_gpu: bool = False, parse: Parser = parse_document
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.embedder = embedder
        self.parse = parse  # bytes to sections; rag_index.isolation.BoundedParser for untrusted files
        self.use_gpu = use_gpu
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path / "meta.sqlite", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._faiss: Any = None
        self._on_gpu = False
        self._warned_no_gpu = False
        self._generation = -1
        with self._lock:
            self._refresh()
        self._lexical_ready()

    # ------------------------------------------------------------------ reading

    def generation(self) -> int:
        return int(self._db.execute("SELECT value FROM state WHERE key='generation'").fetchone()[0])

    def documents(self, doc_id: str | None = None) -> list[DocumentInfo]:
        """All documents, oldest first (or the one with ``doc_id``)."""
        where, args = ("WHERE d.id = ?", (doc_id,)) if doc_id is not None else ("", ())
        rows = self._db.execute(
            "SELECT d.id, d.title, d.source, COUNT(c.id), d.words, d.created FROM documents d "
            f"LEFT JOIN chunks c ON c.document_id = d.id {where} GROUP BY d.id ORDER BY d.created",
            args,
        ).fetchall()
        return [DocumentInfo(*row) for row in rows]

    def document_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0])

    def index_kind(self) -> str:
        """``hnsw`` or ``flat`` (exact): what FAISS searches with right now."""
        import faiss

        with self._lock:
            self._refresh()
            inner = faiss.downcast_index(self._faiss.index) if hasattr(self._faiss, "index") else self._faiss
        return "hnsw" if isinstance(inner, faiss.IndexHNSW) else "flat"

    def chunk_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def ping(self) -> None:
        self._db.execute("SELECT 1").fetchone()

    def _rankings(self, vector: np.ndarray, text: str | None, depth: int) -> list[list[int]]:
        with self._lock:
            self._refresh()
            if self._faiss is None or self._faiss.ntotal == 0:
                return []
            _, ids = self._faiss.search(vector.reshape(1, EMBEDDING_DIM), min(depth, self._faiss.ntotal))
            dense = [int(i) for i in ids[0] if i >= 0]
            return [dense, lexical_ranking(self._db, text, depth) if text else []]

    def _hits(self, chunk_ids: list[int], vector: np.ndarray) -> list[SearchHit]:
        hits = []
        for chunk_id in chunk_ids:
            row = self._db.execute(
                "SELECT c.id, c.document_id, d.title, d.source, c.heading, c.text, c.embedding FROM chunks c "
                "JOIN documents d ON d.id = c.document_id WHERE c.id = ?",
                (chunk_id,),
            ).fetchone()
            if row is not None:
                chunk, doc, title, source, heading, text, blob = row
                score = float(np.frombuffer(blob, dtype=np.float32) @ vector)
                hits.append(SearchHit(chunk, doc, title, source, heading, text, score))
        return hits

    # ------------------------------------------------------------------ writing

    def _by_digest(self, digest: str) -> DocumentInfo | None:
        existing = self._db.execute("SELECT id FROM documents WHERE content_hash = ?", (digest,)).fetchone()
        return None if existing is None else self.document(existing[0])

    def _insert(self, doc: NewDocument) -> tuple[DocumentInfo, bool]:
        doc_id = uuid.uuid4().hex[:12]
        digest, chunks, vectors = doc.digest, doc.chunks, doc.vectors
        with self._write() as db:
            if db.execute("SELECT 1 FROM documents WHERE content_hash = ?", (digest,)).fetchone():
                # Another writer added it while we were embedding.
                row = db.execute("SELECT id FROM documents WHERE content_hash = ?", (digest,)).fetchone()
                info = self.document(row[0])
                assert info is not None
                return info, False
            db.execute(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?)",
                (doc_id, doc.title, doc.source, digest, doc.words, time.time()),
            )
            ids = []
            for chunk, vector in zip(chunks, vectors, strict=True):
                cur = db.execute(
                    "INSERT INTO chunks (document_id, ordinal, heading, text, word_start, word_end, embedding) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        doc_id,
                        chunk.ordinal,
                        chunk.heading,
                        chunk.text,
                        chunk.word_start,
                        chunk.word_end,
                        vector.astype(np.float32).tobytes(),
                    ),
                )
                ids.append(cur.lastrowid)
            self._faiss_add(np.asarray(ids, dtype=np.int64), vectors)
        info = self.document(doc_id)
        assert info is not None
        return info, True

    def delete(self, doc_id: str) -> bool:
        with self._write() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM chunks WHERE document_id = ?", (doc_id,))]
            deleted = db.execute("DELETE FROM documents WHERE id = ?", (doc_id,)).rowcount
            if not deleted:
                return False
            db.execute("DELETE FROM chunks WHERE document_id = ?", (doc_id,))
            self._faiss_remove(np.asarray(ids, dtype=np.int64))
        return True

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ internals

    def _lexical_ready(self) -> None:
        """Fill the FTS table once for an index written before it existed."""
        if self._db.execute("SELECT 1 FROM state WHERE key = 'fts'").fetchone():
            return
        with self._write() as db:
            if not db.execute("SELECT 1 FROM state WHERE key = 'fts'").fetchone():
                db.execute("DELETE FROM chunks_fts")
                db.execute(
                    "INSERT INTO chunks_fts(rowid, title, heading, text) "
                    "SELECT c.id, d.title, c.heading, c.text FROM chunks c JOIN documents d ON d.id = c.document_id"
                )
                db.execute("INSERT INTO state VALUES ('fts', 1)")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One writer at a time across processes; commit, then save FAISS tagged with the new generation."""
        with self._lock, open(self.path / ".lock", "a+") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                self._refresh()  # include what other processes committed
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("UPDATE state SET value = value + 1 WHERE key = 'generation'")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    self._generation = -1  # in-memory FAISS may hold the rolled-back change
                    self._refresh()
                    raise
                self._generation = self.generation()
                self._save_faiss()
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _faiss_files(self) -> tuple[Path, Path]:
        return self.path / "vectors.faiss", self.path / "vectors.generation"

    def _refresh(self) -> None:
        generation = self.generation()
        if generation == self._generation and self._faiss is not None:
            return
        index_file, tag_file = self._faiss_files()
        loaded = None
        try:
            if int(tag_file.read_text()) == generation:
                import faiss

                loaded = faiss.read_index(str(index_file))
        except (OSError, ValueError, RuntimeError):
            loaded = None
        self._faiss = self._to_device(loaded) if loaded is not None else self._rebuild()
        self._generation = generation

    def _new_faiss(self, expected: int) -> Any:
        import faiss

        inner: Any
        if expected >= HNSW_THRESHOLD:
            inner = faiss.IndexHNSWFlat(EMBEDDING_DIM, 32, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efSearch = 64
        else:
            inner = faiss.IndexFlatIP(EMBEDDING_DIM)
        return faiss.IndexIDMap2(inner)

    def _rebuild(self) -> Any:
        rows = self._db.execute("SELECT id, embedding FROM chunks").fetchall()
        index = self._new_faiss(len(rows))
        if rows:
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), EMBEDDING_DIM)
            index.add_with_ids(vectors, ids)
        return self._to_device(index)

    def _to_device(self, index: Any) -> Any:
        """The index on GPU 0 when asked for and possible (``faiss-gpu`` and a GPU), else as it is."""
        if not self.use_gpu:
            return index
        import faiss

        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
            if not self._warned_no_gpu:
                log.warning("FAISS on GPU was asked for, but %s: searching on the CPU", _no_gpu_reason(faiss))
                self._warned_no_gpu = True
            return index
        self._gpu_resources = faiss.StandardGpuResources()
        self._on_gpu = True
        return faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)

    def _faiss_add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        total = self._faiss.ntotal + len(ids)
        if self._faiss.ntotal < HNSW_THRESHOLD <= total:
            self._faiss = None  # crossing the threshold: rebuilt as HNSW after commit
        elif len(ids):
            self._faiss.add_with_ids(vectors, ids)

    def _faiss_remove(self, ids: np.ndarray) -> None:
        if self._faiss is None or not len(ids):
            return
        try:
            self._faiss.remove_ids(ids)
        except RuntimeError:  # HNSW cannot remove: rebuild after commit
            self._faiss = None

    def _save_faiss(self) -> None:
        import faiss

        if self._faiss is None:
            self._faiss = self._rebuild()
        index_file, tag_file = self._faiss_files()
        cpu_index = faiss.index_gpu_to_cpu(self._faiss) if self._on_gpu else self._faiss
        tmp = index_file.with_suffix(".tmp")
        faiss.write_index(cpu_index, str(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, index_file)
        tag_tmp = tag_file.with_suffix(".tmp")
        tag_tmp.write_text(str(self._generation))
        os.replace(tag_tmp, tag_file)
