"""vLLM-compatible ``sampling_parameters`` JSON: parsing and validation.

Triton's vLLM backend accepts a JSON object whose values may be numbers or numeric
strings; we accept the same so its clients (and genai-perf) work unchanged, and reject
anything else with a message that names the bad key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from .contract import SAMPLING_PARAMETERS
from .jsonsafe import JsonInputError, loads

MAX_TOKENS_LIMIT = 4096
MAX_SAMPLING_JSON_BYTES = 4096


@dataclass(frozen=True)
class SamplingParams:
    """What a generation may vary. Defaults follow vLLM's ``SamplingParams``."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    max_tokens: int = 16
    min_tokens: int = 0  # EOS is held back until this many tokens (genai-perf sets it with max_tokens)
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    ignore_eos: bool = False

    def to_json(self) -> str:
        """The JSON object the ``llm`` model accepts (unset values left out)."""
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items() if v is not None}
        return json.dumps(values)


_FLOATS = {"temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty"}
_INTS = {"top_k", "max_tokens", "min_tokens", "seed"}
_KNOWN = {f.name for f in fields(SamplingParams)}


class SamplingError(ValueError):
    """Malformed sampling parameters; the message is safe to return to a client."""


def _as_float(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise SamplingError(f"sampling_parameters.{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SamplingError(f"sampling_parameters.{key} must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise SamplingError(f"sampling_parameters.{key} must be finite")
    return number


def _as_int(key: str, value: Any) -> int:
    number = _as_float(key, value)
    if number != int(number):
        raise SamplingError(f"sampling_parameters.{key} must be an integer, got {value!r}")
    return int(number)


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise SamplingError(f"sampling_parameters.{key} must be true or false, got {value!r}")


def _as_stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(s for s in value if s)
    raise SamplingError("sampling_parameters.stop must be a string or a list of strings")


def parse_sampling_parameters(raw: str | bytes | None, defaults: SamplingParams | None = None) -> SamplingParams:
    """Parse the JSON object; missing keys take ``defaults`` (vLLM's when not given)."""
    base = defaults or SamplingParams()
    if raw is None or (isinstance(raw, (str, bytes)) and not raw.strip()):
        return base
    try:
        obj = loads(raw, SAMPLING_PARAMETERS, MAX_SAMPLING_JSON_BYTES, max_depth=3)
    except JsonInputError as exc:
        raise SamplingError(str(exc)) from None
    if not isinstance(obj, dict):
        raise SamplingError("sampling_parameters must be a JSON object")
    unknown = sorted(set(obj) - _KNOWN)
    if unknown:
        raise SamplingError(
            f"unsupported sampling_parameters: {', '.join(unknown)} (supported: {', '.join(sorted(_KNOWN))})"
        )
    values: dict[str, Any] = {}
    for key, value in obj.items():
        if key in _FLOATS:
            values[key] = _as_float(key, value)
        elif key in _INTS:
            values[key] = None if (key == "seed" and value is None) else _as_int(key, value)
        elif key == "stop":
            values[key] = _as_stop(value)
        elif key == "ignore_eos":
            values[key] = _as_bool(key, value)
    params = SamplingParams(**{**base.__dict__, **values})
    _check_ranges(params)
    return params


def _check_ranges(p: SamplingParams) -> None:
    if p.temperature < 0:
        raise SamplingError("sampling_parameters.temperature must be >= 0")
    if not 0 < p.top_p <= 1:
        raise SamplingError("sampling_parameters.top_p must be in (0, 1]")
    if not 0 <= p.min_p <= 1:
        raise SamplingError("sampling_parameters.min_p must be in [0, 1]")
    if p.top_k < -1 or p.top_k == 0:
        raise SamplingError("sampling_parameters.top_k must be -1 (off) or >= 1")
    if not 1 <= p.max_tokens <= MAX_TOKENS_LIMIT:
        raise SamplingError(f"sampling_parameters.max_tokens must be in [1, {MAX_TOKENS_LIMIT}]")
    if not 0 <= p.min_tokens <= p.max_tokens:
        raise SamplingError("sampling_parameters.min_tokens must be in [0, max_tokens]")
    if p.repetition_penalty <= 0:
        raise SamplingError("sampling_parameters.repetition_penalty must be > 0")
    if len(p.stop) > 16 or any(len(s) > 64 for s in p.stop):
        raise SamplingError("sampling_parameters.stop: at most 16 strings of at most 64 characters")
