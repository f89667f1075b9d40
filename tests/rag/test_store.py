import hashlib
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rag_index import store as store_module
from rag_index.pgstore import PgDocumentStore, StoreUnavailable
from rag_index.store import DocumentIndex, describe_location, open_store
from voicebot.contract import EMBEDDING_DIM


class BagOfWordsEmbedder:
    """Deterministic stand-in for unit tests of index logic: hashed word counts, normalized."""

    def embed(self, texts):
        out = np.zeros((len(texts), EMBEDDING_DIM), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.strip(".,").encode()).hexdigest(), 16) % EMBEDDING_DIM] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture(params=["sqlite", "postgresql"])
def open_index(request, tmp_path):
    """Opens the same store each time it is called (as several processes or replicas do):
    the embedded SQLite + FAISS index, and PostgreSQL + pgvector on a real server."""
    location = request.getfixturevalue("postgres_url") if request.param == "postgresql" else tmp_path / "idx"
    opened = []

    def make(embedder=None):
        opened.append(open_store(location, embedder or BagOfWordsEmbedder()))
        return opened[-1]

    yield make
    for idx in opened:
        idx.close()


@pytest.fixture
def index(open_index):
    return open_index()


def test_add_search_list_delete(index):
    router, _ = index.add("router.md", b"# Router\nHold the reset button for ten seconds to restore factory settings.")
    bread, created = index.add("bread.txt", b"Knead the dough and bake the bread for forty minutes.")
    assert created and {d.id for d in index.documents()} == {router.id, bread.id}
    assert index.document_count() == 2 and index.document(router.id).source == "router.md"
    assert index.document("missing") is None
    hits = index.search("reset button router", k=2)
    assert hits[0].document_id == router.id and hits[0].title == "Router" and hits[0].source == "router.md"
    assert hits[0].score > hits[1].score
    assert index.delete(router.id)
    assert not index.delete(router.id)
    assert [h.document_id for h in index.search("reset button router", k=5)] == [bread.id]


def test_same_content_is_one_document(index):
    first, created1 = index.add("a.txt", b"same words here")
    second, created2 = index.add("b.txt", b"same words here")
    assert created1 and not created2 and first.id == second.id
    assert len(index.documents()) == 1


def test_faiss_file_is_rebuilt_when_stale_or_missing(tmp_path):
    path = tmp_path / "idx"
    idx = DocumentIndex(path, BagOfWordsEmbedder())
    doc, _ = idx.add("a.txt", b"alpha beta gamma")
    idx.close()
    (path / "vectors.faiss").unlink()  # as if killed between the commit and the save
    reopened = DocumentIndex(path, BagOfWordsEmbedder())
    assert reopened.search("alpha beta", k=1)[0].document_id == doc.id
    (path / "vectors.generation").write_text("0")  # stale tag
    again = DocumentIndex(path, BagOfWordsEmbedder())
    assert again.search("alpha beta", k=1)[0].document_id == doc.id


def test_a_second_process_sees_changes(open_index):
    one, two = open_index(), open_index()
    doc, _ = two.add("a.txt", b"lighthouse keeper storm")
    assert one.search("lighthouse storm", k=1)[0].document_id == doc.id
    one.add("b.txt", b"garden tomato soil")
    assert {d.source for d in two.documents()} == {"a.txt", "b.txt"}
    assert len(two.search("garden tomato", k=5)) == 2


def test_hnsw_above_threshold_supports_delete(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "HNSW_THRESHOLD", 5)
    idx = DocumentIndex(tmp_path / "idx", BagOfWordsEmbedder())
    docs = [idx.add(f"d{i}.txt", f"topic{i} words about subject{i}".encode())[0] for i in range(8)]
    assert idx.index_kind() == "hnsw"
    assert idx.search("topic6 subject6", k=1)[0].document_id == docs[6].id
    assert idx.delete(docs[6].id)
    assert all(h.document_id != docs[6].id for h in idx.search("topic6 subject6", k=8))


def test_failed_embedding_commits_nothing(index):
    class Broken:
        def embed(self, texts):
            raise RuntimeError("embedder down")

    index.embedder = Broken()
    with pytest.raises(RuntimeError):
        index.add("x.txt", b"some text")
    assert index.documents() == [] and index.chunk_count() == 0


def document_words() -> list[str]:
    """The vocabulary of the documents in tests/data, for generated files of real words."""
    from conftest import DATA_DIR

    return " ".join(p.read_text() for p in sorted(DATA_DIR.iterdir()) if p.suffix in (".txt", ".md")).split()


@pytest.mark.slow
def test_kill_during_ingest_keeps_every_committed_document(tmp_path):
    src = tmp_path / "docs"
    src.mkdir()
    words = document_words()
    rng = np.random.default_rng(5)
    for n in range(40):  # 40 distinct files of 900 real words each
        (src / f"part{n:02d}.txt").write_text(" ".join(rng.choice(words, 900)))
    index_dir = tmp_path / "idx"
    rag_index_cli = Path(sys.executable).parent / "rag-index"  # the console script, as the README has it
    cmd = [str(rag_index_cli), "--index", str(index_dir), "--embedder", "local", "ingest", str(src)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    db = index_dir / "meta.sqlite"
    deadline = time.monotonic() + 120
    committed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            with sqlite3.connect(db) as conn:
                try:
                    committed = conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
                except sqlite3.OperationalError:
                    committed = 0
        if committed >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    index = DocumentIndex(index_dir, BagOfWordsEmbedder())
    docs = index.documents()
    assert 3 <= len(docs) < 40
    assert all(d.chunks > 0 for d in docs)
    assert index._faiss.ntotal == index.chunk_count()  # every committed chunk is searchable
    first = index.search(np.asarray(index.embedder.embed(["x"])[0]), k=1)
    assert first
    index.close()
    # Ingest again: finishes, and the documents already in are not duplicated.
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("already indexed") >= len(docs)
    assert len(DocumentIndex(index_dir).documents()) == 40


def test_gpu_search_asked_for_on_a_cpu_only_host_falls_back_with_a_warning(tmp_path, caplog):
    import faiss

    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        pytest.fail("this test describes a CPU-only host; on a GPU host the index must move to the GPU")
    with caplog.at_level("WARNING", logger="voicebot.index"):
        idx = DocumentIndex(tmp_path / "idx", BagOfWordsEmbedder(), use_gpu=True)
        doc, _ = idx.add("lamp.txt", b"The lamp charges in three hours with the supplied adapter.")
        assert idx.search("lamp charges", k=1)[0].document_id == doc.id
        idx.close()
    assert "searching on the CPU" in caplog.text


def test_ingest_reports_embedding_progress_per_chunk(index):
    seen = []
    words = " ".join(f"word{i}." for i in range(3000))
    index.add("long.txt", words.encode(), progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] and all(a <= b for (a, _), (b, _) in itertools.pairwise(seen))


class BlindEmbedder:
    """Dense search at its worst: the chunk that holds the answer (it names a VLAN) is
    orthogonal to every question, all other texts point the same way as the questions."""

    def embed(self, texts):
        out = np.zeros((len(texts), EMBEDDING_DIM), np.float32)
        for row, text in enumerate(texts):
            out[row, 1 if "VLAN is" in text else 0] = 1.0
        return out


def test_lexical_ranking_finds_exact_terms_that_dense_search_misses(open_index):
    idx = open_index(BlindEmbedder())
    filler = [
        idx.add(f"f{n}.txt", f"General notes number {n} about nothing in particular.".encode())[0] for n in range(8)
    ]
    target, _ = idx.add("net.md", b"# Printers\nThe printer VLAN is 40 and its gateway is 10.20.40.1.")
    hits = idx.search("Which VLAN do the printers use?", k=3)
    assert hits[0].document_id == target.id and hits[0].heading == "Printers"
    dense_only = idx.search("Which VLAN do the printers use?", k=3, lexical=False)
    assert target.id not in {h.document_id for h in dense_only} and {h.document_id for h in dense_only} <= {
        f.id for f in filler
    }
    assert hits[0].score == 0.0  # score stays the cosine similarity, whichever ranking found the chunk
    # Section titles are searchable too (title and heading weigh more than the text).
    assert idx.search("printers", k=1)[0].document_id == target.id
    idx.delete(target.id)  # the lexical rows go with the chunks, in the same transaction
    assert target.id not in {h.document_id for h in idx.search("VLAN printers gateway", k=3)}
    if isinstance(idx, DocumentIndex):
        assert idx._db.execute("SELECT COUNT(*) FROM chunks_fts").fetchone()[0] == idx.chunk_count()


def test_fts_query_quotes_every_word_and_drops_stopwords():
    assert store_module.fts_query('What is "NEAR" the AND-gate? 10.20') == '"near" OR "gate" OR "10" OR "20"'
    assert store_module.fts_query("what is the") == ""


def test_an_index_from_before_lexical_search_is_filled_once(tmp_path):
    path = tmp_path / "idx"
    idx = DocumentIndex(path, BlindEmbedder())
    idx.add("a.txt", b"The lighthouse keeper logs every storm.")
    idx._db.execute("DELETE FROM chunks_fts")  # as an index written by the previous version
    idx._db.execute("DELETE FROM state WHERE key = 'fts'")
    idx.close()
    reopened = DocumentIndex(path, BlindEmbedder())
    assert reopened._db.execute("SELECT COUNT(*) FROM chunks_fts").fetchone()[0] == reopened.chunk_count()
    assert store_module.lexical_ranking(reopened._db, "lighthouse storm", 5)
    reopened.close()


def test_two_replicas_ingesting_and_deleting_at_once_lose_nothing(open_index):
    """Two orchestrators on one store, each in its own thread: every document one adds is
    there for both; the ones it deletes are gone for both; the same file from both is one."""
    import threading

    one, two = open_index(), open_index()
    shared = b"Both replicas were given this manual about the boiler pressure."
    kept: dict[str, list[str]] = {"one": [], "two": []}
    failures: list[BaseException] = []

    def work(idx, name):
        try:
            for n in range(12):
                doc, _ = idx.add(f"{name}{n}.txt", f"{name} note {n} on subject{n} for {name}".encode())
                if n % 3 == 0:
                    assert idx.delete(doc.id)
                else:
                    kept[name].append(doc.id)
                idx.add("shared.txt", shared)
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(idx, name)) for idx, name in ((one, "one"), (two, "two"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures
    expected = set(kept["one"]) | set(kept["two"])
    for idx in (one, two):
        ids = {d.id for d in idx.documents()}
        assert ids - expected == {idx.find_duplicate(shared).id}  # the shared file, once
        assert expected <= ids and idx.document_count() == len(expected) + 1
    assert one.search("two note 5 subject5", k=1)[0].document_id in kept["two"]


def test_open_store_picks_the_backend_from_the_location(tmp_path, postgres_url):
    assert isinstance(open_store(tmp_path / "idx"), DocumentIndex)
    pg = open_store(postgres_url)
    assert isinstance(pg, PgDocumentStore) and pg.document_count() == 0 and pg.index_kind() == "hnsw"
    pg.close()


def test_a_database_that_is_not_there_is_a_clear_error(tmp_path):
    with pytest.raises(StoreUnavailable, match=r"cannot connect to the document store postgresql://u:\*\*\*@"):
        PgDocumentStore(f"postgresql://u:secret@/db?host={tmp_path}")
    assert describe_location("postgresql://u:secret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert describe_location(tmp_path) == str(tmp_path)


def test_the_postgresql_store_reconnects_after_its_connection_is_cut(postgres_url):
    import psycopg

    idx = PgDocumentStore(postgres_url, BagOfWordsEmbedder())
    doc, _ = idx.add("a.txt", b"lighthouse keeper storm")
    pid = idx._conn.info.backend_pid
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # as a database restart or failover would
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert idx.search("lighthouse storm", k=1)[0].document_id == doc.id
    assert idx._conn.info.backend_pid != pid
    idx.close()


def test_postgresql_dedupes_a_race_it_lost_and_writes_each_document_in_one_transaction(postgres_url):
    one, two = PgDocumentStore(postgres_url, BagOfWordsEmbedder()), PgDocumentStore(postgres_url, BagOfWordsEmbedder())
    data = b"The same file, embedded by two replicas at once."
    real, calls = one._by_digest, []

    def looked_before_two_wrote(digest):  # so both embed it, and one's insert is the second
        calls.append(digest)
        return None if len(calls) == 1 else real(digest)

    one._by_digest = looked_before_two_wrote
    first, created_two = two.add("a.txt", data)
    second, created_one = one.add("b.txt", data)
    assert len(calls) == 2  # the insert lost, and one looked again
    assert created_two and not created_one and first.id == second.id and one.document_count() == 1

    class BrokenAfterSome:
        def embed(self, texts):
            return BagOfWordsEmbedder().embed(texts)[:-1]  # a wrong shape: nothing is written

    one.embedder = BrokenAfterSome()
    with pytest.raises(RuntimeError):
        one.add("c.txt", b"one two three")
    assert one.document_count() == 1 and one.chunk_count() == first.chunks
    one.close()
    two.close()
