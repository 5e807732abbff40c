"""Bounded JSON reading: every JSON file the application reads goes through here.

``json.loads`` recurses once per nesting level: a 1000-level nested file
raises ``RecursionError`` (which is not a ``ValueError`` and used to escape
every handler), and a 100 MB file is parsed into ~6x its size in memory.
So before parsing, :func:`read_json` checks

- the size of the file (``max_bytes``, read at most that much plus one byte),
- the nesting depth, with a linear scan of the brackets outside strings
  (:func:`nesting_depth`; no recursion, so it cannot blow the stack),

and raises one :class:`JSONLimitError` (a :class:`~desktop.core.errors.CXRError`)
naming the file and the reason, for a file too large, too deep, not UTF-8 or
not valid JSON. Callers that need their own error class catch it and re-raise
(``ModelCardError`` for model cards).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .errors import CXRError

#: Default limits: a model card is ~200 KB (its split lists every file name); settings are tiny.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_DEPTH = 64

# A complete JSON string (escapes included), written as an unrolled loop: one C-speed pass.
_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET_RE = re.compile(r"[^\[\]{}]+")


class JSONLimitError(CXRError):
    """A JSON file that is too large, too deeply nested, not UTF-8 or not valid JSON."""

    kind = "bad_json"


def nesting_depth(text: str, stop_above: int | None = None) -> int:
    """The deepest bracket nesting of ``text`` (0 for a scalar), brackets inside strings ignored.

    Linear and iterative (safe on hostile input): strings are removed with one
    regex pass, an unterminated string cuts the text there, then only the
    brackets are walked (stopping early once deeper than ``stop_above``).
    ~3 ms for a 170 KB model card.
    """
    rest = _STRING_RE.sub("", text)
    quote = rest.find('"')
    if quote >= 0:
        rest = rest[:quote]
    depth = best = 0
    for ch in _NOT_BRACKET_RE.sub("", rest):
        if ch in "[{":
            depth += 1
            if depth > best:
                best = depth
                if stop_above is not None and best > stop_above:
                    break
        else:
            depth -= 1
    return best


def loads_bounded(
    text: str,
    source: str | os.PathLike[str] | None = None,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_chars: int | None = None,
    allow_nan: bool = True,
) -> Any:
    """``json.loads(text)`` after the depth (and optional length) check; :class:`JSONLimitError` otherwise.

    ``allow_nan=False`` refuses NaN and Infinity (Python writes them; they are not strict
    JSON). Model cards keep them allowed: a metric not measurable on a fold is NaN, and the
    schema refuses a non-finite number wherever one is used (thresholds, temperature).
    """
    where = None if source is None else os.fspath(source)
    if max_chars is not None and len(text) > max_chars:
        raise JSONLimitError(where, f"JSON text too large ({len(text)} characters, limit {max_chars})")
    depth = nesting_depth(text, stop_above=max_depth)
    if depth > max_depth:
        raise JSONLimitError(where, f"JSON nested too deeply (over {max_depth} levels)")

    def _no_constant(name: str) -> float:
        raise ValueError(f"{name} is not valid JSON")

    try:
        if allow_nan:
            return json.loads(text)
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise JSONLimitError(where, f"is not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    except (ValueError, RecursionError) as exc:  # parse_constant, or a depth the scan missed
        raise JSONLimitError(where, f"is not valid JSON ({exc})") from exc


def read_json(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    allow_nan: bool = True,
) -> Any:
    """The JSON document in ``path``, bounded in size and depth.

    Raises :class:`JSONLimitError` (too large, too deep, not UTF-8, not JSON)
    or ``OSError`` (cannot read) - each message names the file.
    """
    p = Path(path)
    with open(p, "rb") as fh:
        raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise JSONLimitError(p, f"file too large for a JSON document (over {max_bytes} bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JSONLimitError(p, "is not UTF-8 text") from exc
    return loads_bounded(text, p, max_depth=max_depth, allow_nan=allow_nan)


__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "JSONLimitError",
    "loads_bounded",
    "nesting_depth",
    "read_json",
]
