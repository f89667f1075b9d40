"""The benchmark's documents and spoken questions: real Debian docs, espeak-ng voices."""

from __future__ import annotations

import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

DOCUMENTS = [
    Path("/usr/share/doc/base-passwd/users-and-groups.html"),
    Path("/usr/share/doc/dpkg/spec/triggers.txt"),
    Path("/usr/share/doc/dpkg/spec/rootless-builds.txt"),
]


@dataclass(frozen=True)
class Question:
    text: str
    source: str  # the document that holds the answer


QUESTIONS = [
    Question("What is the user ID of the root user?", "users-and-groups.html"),
    Question("Which group can read the log files?", "users-and-groups.html"),
    Question("What is the nobody user used for?", "users-and-groups.html"),
    Question("When are file triggers activated?", "triggers.txt"),
    Question("What does the interest directive do?", "triggers.txt"),
    Question("What is a rootless build?", "rootless-builds.txt"),
    Question("Which field declares that a package needs root to build?", "rootless-builds.txt"),
    Question("Who owns the files in the disk group?", "users-and-groups.html"),
]


def check_documents() -> list[Path]:
    missing = [str(p) for p in DOCUMENTS if not p.is_file()]
    if missing:
        raise SystemExit(f"benchmark documents missing (Debian's base-passwd and dpkg ship them): {missing}")
    return DOCUMENTS


def speak(text: str, folder: Path, name: str, voice: str = "en-us", words_per_minute: int = 130) -> Path:
    """espeak-ng (130 words/min by default), resampled to 16 kHz mono 16-bit."""
    folder.mkdir(parents=True, exist_ok=True)
    raw, out = folder / f"{name}.raw.wav", folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True)
    return out


def pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes())
