"""Structured JSON logs; a turn id travels in every record of the turn (and to Triton)."""

from __future__ import annotations

import contextvars
import json
import logging
import time

turn_id: contextvars.ContextVar[str] = contextvars.ContextVar("turn_id", default="")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(time.time(), 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if turn_id.get():
            entry["turn_id"] = turn_id.get()
        for key in ("session", "event", "code", "timings", "document"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("voicebot")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
