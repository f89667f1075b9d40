"""The shared document store: PostgreSQL with pgvector, for any number of orchestrators.

The same API as the embedded index (:class:`rag_index.store.DocumentStore`), over tables
that every replica reads and writes:

- ``documents`` and ``chunks`` as in SQLite; each chunk's embedding is a ``vector(384)``
  searched by an HNSW index (inner product: the vectors are L2-normalized, so it ranks
  as cosine similarity does);
- the lexical half of hybrid search is PostgreSQL's full text search: a ``tsvector``
  column generated from title and heading (weight A) and text (weight B), a GIN index,
  ranked by ``ts_rank`` (not BM25 as in SQLite: the two backends order some ties
  differently; both find exact numbers, names and section titles);
- one transaction per document; the content hash is UNIQUE, and an insert that loses a
  race to another replica returns that replica's document (``ON CONFLICT DO NOTHING``).

The schema is created on first use (``CREATE ... IF NOT EXISTS``, under an advisory lock so
that replicas starting together do not race) and needs the ``vector`` extension: the
connecting role must be allowed to create it, or an administrator creates it once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from voicebot.contract import EMBEDDING_DIM

from .documents import parse_document
from .store import (
    DocumentInfo,
    DocumentStore,
    Embedder,
    NewDocument,
    Parser,
    SearchHit,
    describe_location,
    query_words,
)

log = logging.getLogger("voicebot.index")
T = TypeVar("T")
SCHEMA_LOCK = 0x766F6963  # pg_advisory_xact_lock key for schema creation ("voic")
HNSW_EF_SEARCH = 64  # candidates HNSW keeps while searching; at least the depth read
CONNECT_TIMEOUT_S = 10
STATEMENT_TIMEOUT_MS = 30_000  # no query holds a connection (and a replica's turn) for longer

_SCHEMA = f"""
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS documents (
    id text PRIMARY KEY,
    title text NOT NULL,
    source text NOT NULL,
    content_hash text NOT NULL UNIQUE,
    words integer NOT NULL,
    created double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id bigserial PRIMARY KEY,
    document_id text NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal integer NOT NULL,
    title text NOT NULL,
    heading text NOT NULL,
    text text NOT NULL,
    word_start integer NOT NULL,
    word_end integer NOT NULL,
    embedding vector({EMBEDDING_DIM}) NOT NULL,
    lexical tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', title), 'A')
        || setweight(to_tsvector('english', heading), 'A')
        || setweight(to_tsvector('english', text), 'B')
    ) STORED
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks (document_id);
CREATE INDEX IF NOT EXISTS chunks_embedding ON chunks USING hnsw (embedding vector_ip_ops);
CREATE INDEX IF NOT EXISTS chunks_lexical ON chunks USING gin (lexical);
"""


class StoreUnavailable(RuntimeError):
    """The database cannot be reached or refused the connection."""


class PgDocumentStore(DocumentStore):
    """Documents in PostgreSQL + pgvector. Thread-safe (one connection, one lock); a broken
    connection (a database restart, a failover) is opened again on the next call."""

    def __init__(self, url: str, embedder: Embedder | None = None, parse: Parser = parse_document) -> None:
        self.url = url
        self.embedder = embedder
        self.parse = parse
        self._lock = threading.RLock()
        self._conn: Any = None
        with self._lock:
            self._connect()

    # ------------------------------------------------------------------ connection

    def _connect(self) -> Any:
        import psycopg
        from pgvector.psycopg import register_vector

        where = describe_location(self.url)
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to the document store {where}: {exc}".strip()) from None
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                conn.execute(_SCHEMA)
            register_vector(conn)
            conn.execute(f"SET hnsw.ef_search = {HNSW_EF_SEARCH}")
        except psycopg.Error as exc:
            conn.close()
            raise StoreUnavailable(f"the document store {where} could not be prepared: {exc}".strip()) from None
        self._conn = conn
        return conn

    def _run(self, work: Callable[[Any], T]) -> T:
        """``work(connection)`` under the lock; once more on a fresh connection when the old one
        broke (a write is one transaction, so a retried write is never half done)."""
        import psycopg

        with self._lock:
            for attempt in (1, 2):
                conn = self._conn if self._conn is not None and not self._conn.closed else self._connect()
                try:
                    return work(conn)
                except psycopg.OperationalError as exc:
                    if not conn.broken:  # a timeout or a refusal: the connection is fine, the call is not
                        raise
                    conn.close()  # the server went away mid-call
                    self._conn = None
                    if attempt == 2:
                        raise StoreUnavailable(f"lost the document store {describe_location(self.url)}: {exc}") from exc
            raise AssertionError("unreachable")

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._run(lambda conn: conn.execute(sql, args).fetchall())

    # ------------------------------------------------------------------ reading

    def ping(self) -> None:
        self._all("SELECT 1")

    def documents(self, doc_id: str | None = None) -> list[DocumentInfo]:
        where, args = ("WHERE d.id = %s", (doc_id,)) if doc_id is not None else ("", ())
        rows = self._all(
            "SELECT d.id, d.title, d.source, COUNT(c.id), d.words, d.created FROM documents d "
            f"LEFT JOIN chunks c ON c.document_id = d.id {where} GROUP BY d.id ORDER BY d.created",
            args,
        )
        return [DocumentInfo(r[0], r[1], r[2], int(r[3]), int(r[4]), float(r[5])) for r in rows]

    def document_count(self) -> int:
        return int(self._all("SELECT COUNT(*) FROM documents")[0][0])

    def chunk_count(self) -> int:
        return int(self._all("SELECT COUNT(*) FROM chunks")[0][0])

    def index_kind(self) -> str:
        return "hnsw"  # pgvector's HNSW index (the planner may still scan a small table exactly)

    def _rankings(self, vector: np.ndarray, text: str | None, depth: int) -> list[list[int]]:
        dense = self._all("SELECT id FROM chunks ORDER BY embedding <#> %s LIMIT %s", (vector, depth))
        words = query_words(text) if text else []
        if not words:
            return [[int(r[0]) for r in dense]]
        # An OR of the words, each parsed by plainto_tsquery (so no word is read as query syntax).
        query = " || ".join(["plainto_tsquery('english', %s)"] * len(words))
        lexical = self._all(
            f"SELECT id FROM chunks, (SELECT {query}) AS q(query) WHERE lexical @@ q.query "
            "ORDER BY ts_rank(lexical, q.query) DESC, id LIMIT %s",
            (*words, depth),
        )
        return [[int(r[0]) for r in dense], [int(r[0]) for r in lexical]]

    def _hits(self, chunk_ids: list[int], vector: np.ndarray) -> list[SearchHit]:
        if not chunk_ids:
            return []
        rows = self._all(
            # <#> is the negative inner product: its negation is the cosine of normalized vectors.
            "SELECT c.id, c.document_id, d.title, d.source, c.heading, c.text, -(c.embedding <#> %s) FROM chunks c "
            "JOIN documents d ON d.id = c.document_id WHERE c.id = ANY(%s)",
            (vector, chunk_ids),
        )
        by_id = {int(r[0]): r for r in rows}
        hits = []
        for chunk_id in chunk_ids:
            if (row := by_id.get(chunk_id)) is not None:  # a chunk deleted meanwhile is left out
                _, doc, title, source, heading, text, score = row
                hits.append(SearchHit(chunk_id, doc, title, source, heading, text, float(score)))
        return hits

    def _by_digest(self, digest: str) -> DocumentInfo | None:
        rows = self._all("SELECT id FROM documents WHERE content_hash = %s", (digest,))
        return self.document(rows[0][0]) if rows else None

    # ------------------------------------------------------------------ writing

    def _insert(self, doc: NewDocument) -> tuple[DocumentInfo, bool]:
        doc_id = uuid.uuid4().hex[:12]

        def write(conn: Any) -> bool:
            with conn.transaction():
                inserted = conn.execute(
                    "INSERT INTO documents VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (content_hash) DO NOTHING RETURNING id",
                    (doc_id, doc.title, doc.source, doc.digest, doc.words, time.time()),
                ).fetchone()
                if inserted is None:
                    return False  # another writer added this content while we embedded it
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO chunks (document_id, ordinal, title, heading, text, word_start, word_end, "
                        "embedding) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        [
                            (doc_id, c.ordinal, doc.title, c.heading, c.text, c.word_start, c.word_end, v)
                            for c, v in zip(doc.chunks, doc.vectors.astype(np.float32), strict=True)
                        ],
                    )
            return True

        created = self._run(write)
        info = self.document(doc_id) if created else self._by_digest(doc.digest)
        if info is None:  # it was deleted again between our write and this read
            raise StoreUnavailable("the document was deleted while it was being added")
        return info, created

    def delete(self, doc_id: str) -> bool:
        # The chunks go with the document (ON DELETE CASCADE), in the same statement.
        return bool(self._all("DELETE FROM documents WHERE id = %s RETURNING id", (doc_id,)))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
