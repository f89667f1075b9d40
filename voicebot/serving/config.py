"""Model configuration: ``config.pbtxt`` parameters and the JSON sidecar, both typed.

Triton switches live in ``config.pbtxt`` ``parameters`` (strings on the wire, read
through :func:`param`); engine settings live in ``<model>/1/model.json`` and map onto
one dataclass through :func:`read_sidecar` and :func:`to_dataclass`, which rejects unknown keys by name.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
SIDECAR = "model.json"


class ConfigError(ValueError):
    """A model's configuration is invalid; the message names the model and the value."""


def param(model_config: dict[str, Any], key: str, default: T) -> T:
    """A ``parameters { key: ... string_value: ... }`` entry, converted to ``default``'s type."""
    entry = model_config.get("parameters", {}).get(key)
    if entry is None:
        return default
    raw = entry.get("string_value", "") if isinstance(entry, dict) else str(entry)
    name = model_config.get("name", "?")
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")  # type: ignore[return-value]
        return type(default)(raw)  # type: ignore[call-arg]
    except (TypeError, ValueError):
        raise ConfigError(f"model {name!r}: parameter {key!r}={raw!r} is not a {type(default).__name__}") from None


def positive(model: str, key: str, value: float) -> float:
    if not value > 0:
        raise ConfigError(f"model {model!r}: parameter {key!r} must be > 0, got {value}")
    return value


def read_sidecar(model_dir: Path) -> dict[str, Any]:
    """The sidecar as a dict (empty when the model has none)."""
    path = Path(model_dir) / SIDECAR
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a JSON object")
    return data


def to_dataclass(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Build ``cls`` from ``values``, naming unknown keys and wrong types."""
    assert dataclasses.is_dataclass(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
