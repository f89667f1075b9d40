"""Cancelling a sub-request by id, next to gRPC's own cancellation.

``voice_answer`` gives each of its ``llm``/``tts`` requests an id and, to cancel them, drops a
flag file named after it; ``llm`` and ``tts`` look for the flag between tokens and clauses.
This was how BLS sub-requests got cancelled on Triton 2.51 (no ``ResponseIterator.cancel()``).
Since ``voice_answer`` calls them over gRPC (``loopback.py``), closing its stream cancels them
as well; the flag stays as a second path that costs one ``stat`` per token.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def cancel_dir() -> Path:
    path = Path(os.environ.get("VOICEBOT_CANCEL_DIR") or Path(tempfile.gettempdir()) / "voicebot-cancel")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _flag(request_id: str) -> Path | None:
    if not request_id or not request_id.startswith("bls-"):
        return None  # only ids that voice_answer made can be cancelled this way
    return cancel_dir() / _SAFE.sub("_", request_id)[:128]


def request_cancel(request_id: str) -> None:
    flag = _flag(request_id)
    if flag is not None:
        flag.touch()


def is_flagged(request_id: str) -> bool:
    flag = _flag(request_id)
    return flag is not None and flag.exists()


def clear(request_id: str) -> None:
    flag = _flag(request_id)
    if flag is not None:
        flag.unlink(missing_ok=True)
