"""Shared fixtures: synthetic speech, the fake pb_utils for adapters, a real tritonserver."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fake_pb_utils

# Model adapters import triton_python_backend_utils at module level; in this process
# (never a Triton stub) that is the typed fake.
sys.modules.setdefault("triton_python_backend_utils", fake_pb_utils)

from voicebot.contract import STT_SAMPLE_RATE  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# Documents the tests use, written for them (never whatever the machine happens to have installed).
DATA_DIR = Path(__file__).resolve().parent / "data"
USERS_DOC = DATA_DIR / "users-and-groups.html"
TRIGGERS_DOC = DATA_DIR / "package-triggers.txt"


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `make test` installs it (apt-get install {name})")
    return path


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def speak(speech_dir: Path) -> Callable[..., Path]:
    """Render text with espeak-ng to a 16 kHz mono WAV file (deterministic)."""
    espeak, sox = _require_tool("espeak-ng"), _require_tool("sox")
    counter = iter(range(10_000))

    def render(text: str, speed: int = 130, voice: str = "en-us") -> Path:
        n = next(counter)
        raw = speech_dir / f"raw{n}.wav"
        out = speech_dir / f"speech{n}.wav"
        subprocess.run([espeak, "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
        subprocess.run([sox, str(raw), "-r", str(STT_SAMPLE_RATE), "-c", "1", "-b", "16", str(out)], check=True)
        return out

    return render


def wav_to_float(path: Path) -> np.ndarray:
    import wave

    with wave.open(str(path), "rb") as wav:
        assert wav.getframerate() == STT_SAMPLE_RATE and wav.getnchannels() == 1
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


@pytest.fixture(scope="session")
def triton() -> Iterator[object]:
    """A real tritonserver on the real model repository, once per test session."""
    from triton_helpers import own_server

    from voicebot.serving.launcher import RUNTIME_DIR

    try:
        server = own_server(RUNTIME_DIR / "test")
    except Exception as exc:
        pytest.fail(f"tritonserver did not start: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real PostgreSQL 16 with pgvector (the ``pgserver`` wheel's own build), on a Unix socket
    in a temporary directory, once per test session."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from local_postgres import local_postgres

    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(local_postgres(tmp_path_factory.mktemp("pg")))
        except Exception as exc:
            pytest.fail(f"PostgreSQL did not start: {exc}")
        yield server


@pytest.fixture
def postgres_url(postgres_server: Any) -> str:
    """A fresh, empty database on the session's PostgreSQL: its ``postgresql://`` URL."""
    return postgres_server.new_database()
