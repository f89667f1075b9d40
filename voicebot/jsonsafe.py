"""JSON from untrusted clients, parsed without handing them the parser.

Python's ``json`` recurses once per nesting level (60,000 ``[`` raise ``RecursionError``),
converts integers of any length (a 5,000-digit one raises ``ValueError`` from the int
limit, after quadratic work), and returns lone UTF-16 surrogates (``"\\ud800"``) as text
that fails later, wherever it is first encoded. :func:`loads` checks size and depth with
one linear scan before parsing, bounds integer literals, and rejects strings that are not
valid Unicode text, so each of those is the client's error with a code that says which.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from .contract import ErrorCode

MAX_DEPTH = 32
MAX_INT_DIGITS = 32
# Characters a question or a document title has no business holding: C0/C1 controls other
# than tab and newlines, and lone surrogates (which cannot be encoded as UTF-8 at all).
_ALLOWED_CONTROLS = frozenset("\t\n\r\f")


class JsonInputError(ValueError):
    """Untrusted JSON that cannot be used; ``code`` is an :class:`ErrorCode`."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def nesting_depth(text: str | bytes, limit: int) -> int:
    """The deepest ``[``/``{`` nesting outside strings, exact up to just past ``limit`` (the scan
    stops there); with fewer brackets than ``limit`` in all, their count, a bound that suffices."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= limit:
        return data.count(b"[") + data.count(b"{")  # cannot be deeper: no byte-by-byte scan
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonInputError(ErrorCode.BAD_NUMBER, f"integer with {len(literal)} digits; at most {MAX_INT_DIGITS}")
    return int(literal)


def _bounded_float(literal: str) -> float:
    if len(literal) > 64:
        raise JsonInputError(ErrorCode.BAD_NUMBER, "number literal over 64 characters")
    return float(literal)


def _reject_constant(name: str) -> Any:
    raise JsonInputError(ErrorCode.BAD_JSON, f"{name} is not JSON")


def text_problem(text: str, allow_newlines: bool = True) -> str | None:
    """Why ``text`` is not clean Unicode text, or None when it is."""
    for ch in text:
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            return f"holds a lone surrogate U+{code:04X} (not valid Unicode text)"
        if (code < 0x20 or 0x7F <= code < 0xA0) and not (allow_newlines and ch in _ALLOWED_CONTROLS):
            return f"holds the control character U+{code:04X}"
    return None


def check_strings(value: Any, what: str) -> None:
    """Every string in a parsed (depth-bounded) value is clean text; else :class:`JsonInputError`."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise JsonInputError(ErrorCode.BAD_TEXT, f"{what} {problem}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            check_strings(item, f"{what}[{n}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_strings(key, f"{what} key")
            check_strings(item, f"{what}.{key}"[:80])


def loads(raw: str | bytes, what: str, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Parse untrusted JSON: bounded size, depth and numbers; clean strings."""
    if len(raw) > max_bytes:
        raise JsonInputError(ErrorCode.TOO_LARGE, f"{what} is {len(raw)} bytes; the limit is {max_bytes}")
    if nesting_depth(raw, max_depth) > max_depth:
        raise JsonInputError(ErrorCode.TOO_DEEP, f"{what} is nested more than {max_depth} levels deep")
    try:
        value = json.loads(raw, parse_int=_bounded_int, parse_float=_bounded_float, parse_constant=_reject_constant)
    except JsonInputError:
        raise
    except UnicodeDecodeError:
        raise JsonInputError(ErrorCode.BAD_TEXT, f"{what} is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise JsonInputError(ErrorCode.BAD_JSON, f"{what} is not valid JSON: {exc.msg} at {exc.pos}") from None
    except (ValueError, RecursionError) as exc:  # anything else the parser refused
        raise JsonInputError(ErrorCode.BAD_JSON, f"{what} is not valid JSON: {type(exc).__name__}") from None
    check_strings(value, what)
    return value


def clean_label(text: str, max_chars: int = 300) -> str:
    """A title or file name fit to display: no control, format or private-use characters,
    no bidirectional overrides, whitespace collapsed, bounded length."""
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if category.startswith("Z") or ch in "\t\n\r":
            kept.append(" ")
        elif category not in ("Cc", "Cf", "Cs", "Co", "Cn"):
            kept.append(ch)
    return " ".join("".join(kept).split())[:max_chars]
