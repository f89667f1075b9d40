"""``rag-index`` (``.venv/bin/rag-index``): ingest, list, delete and search documents from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .documents import SUPPORTED, UnsupportedDocument
from .embedders import make_embedder
from .isolation import BoundedParser
from .store import DocumentStore, default_store_location, describe_location, open_store


def _files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rag-index", description=__doc__)
    parser.add_argument(
        "--store",
        "--index",
        dest="store",
        default=None,
        help="where the documents live: a directory (the embedded SQLite + FAISS index) or a "
        f"postgresql:// URL (pgvector, shared by a cluster); default $VOICEBOT_STORE or {default_store_location()}",
    )
    parser.add_argument(
        "--embedder",
        default="auto",
        choices=["auto", "triton", "local"],
        help="Triton's embedder model, in-process, or auto (Triton if ready)",
    )
    parser.add_argument("--triton-url", default="127.0.0.1:8000", help="Triton HTTP address")
    sub = parser.add_subparsers(dest="command", required=True)
    ingest = sub.add_parser("ingest", help="add files or folders (.txt .md .html .pdf)")
    ingest.add_argument("paths", nargs="+", type=Path)
    sub.add_parser("list", help="list documents")
    delete = sub.add_parser("delete", help="delete a document by id")
    delete.add_argument("id")
    search = sub.add_parser("search", help="search passages")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=3)
    search.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    location = args.store or default_store_location()

    try:
        needs_embedder = args.command in ("ingest", "search")
        embedder = make_embedder(args.embedder, args.triton_url) if needs_embedder else None
        # Files from anywhere (downloads too) are parsed in a child with bounded time and memory.
        index = open_store(location, embedder, parse=BoundedParser())
        if args.command == "ingest":
            return _ingest(index, _files(args.paths))
        if args.command == "list":
            docs = index.documents()
            for d in docs:
                print(f"{d.id}  {d.chunks:4d} chunks  {d.words:6d} words  {d.source}  — {d.title}")
            print(
                f"{len(docs)} documents, {index.chunk_count()} chunks in {describe_location(location)}", file=sys.stderr
            )
            return 0
        if args.command == "delete":
            if index.delete(args.id):
                print(f"deleted {args.id}")
                return 0
            print(f"error: no document with id {args.id!r}", file=sys.stderr)
            return 1
        hits = index.search(args.query, max(1, min(args.k, 50)))
        if args.json:
            print(json.dumps([h.__dict__ for h in hits], indent=2))
        for n, h in enumerate([] if args.json else hits, start=1):
            print(f"[{n}] {h.score:.3f}  {h.title} ({h.source}){' › ' + h.heading if h.heading else ''}")
            print("    " + h.text.replace("\n", " ")[:300])
        return 0
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _ingest(index: DocumentStore, files: list[Path]) -> int:
    from tqdm import tqdm

    failures = 0
    with tqdm(total=len(files), unit="file", desc="ingest", file=sys.stderr) as bar:
        for path in files:
            bar.set_postfix_str(path.name[:40])

            def chunks_done(done: int, total: int, name: str = path.name[:40]) -> None:
                bar.set_postfix_str(f"{name} ({done}/{total} chunks embedded)")

            try:
                info, created = index.add(path.name, path.read_bytes(), progress=chunks_done)
            except (UnsupportedDocument, OSError) as exc:
                failures += 1
                tqdm.write(f"skipped {path}: {exc}", file=sys.stderr)
            else:
                verb = "added" if created else "already indexed"
                tqdm.write(f"{verb} {info.id}  {info.chunks} chunks  {path}", file=sys.stderr)
            bar.update(1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
