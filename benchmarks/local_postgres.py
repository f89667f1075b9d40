"""A throwaway PostgreSQL 16 with pgvector, for the store's tests and benchmarks: the server the
``pgserver`` wheel bundles (the dev extra), on a Unix socket in a directory of your choosing.

    with local_postgres(Path("/tmp/pg")) as server:
        url = server.new_database()   # postgresql://postgres@/<fresh>?host=/tmp/pg
"""

from __future__ import annotations

import contextlib
import os
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LocalPostgres:
    socket_dir: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def new_database(self) -> str:
        """A fresh, empty database: its URL."""
        import psycopg

        name = f"t{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@contextlib.contextmanager
def local_postgres(directory: Path) -> Iterator[LocalPostgres]:
    """Start PostgreSQL with its data in ``directory``; stop it afterwards."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(directory / "xdg"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR on CI machines
        import pgserver

    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data, cleanup_mode="stop")
    try:
        yield LocalPostgres(str(data))
    finally:
        server.cleanup()
