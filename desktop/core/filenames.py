"""File names as they travel: stored losslessly, shown readably.

A file name found on disk is a ``str`` that may hold what UTF-8 cannot encode:
on POSIX, bytes that are not UTF-8 (old Windows-written CDs and USB sticks)
arrive as lone surrogates ``U+DC80..U+DCFF`` (Python's ``surrogateescape``);
on Windows a name may hold an unpaired UTF-16 surrogate. A name may also hold
line breaks, form feeds, ``U+2028`` or bidirectional controls. Two functions
per direction:

- :func:`encode_name` / :func:`decode_name`: a *lossless* text form for files
  we write and read back (``results.csv``). Backslash is the escape character:
  ``\\\\`` is a backslash, ``\\xHH`` the undecodable byte ``HH``, ``\\uXXXX`` an
  unpaired surrogate. Every other character is kept as it is (the csv module
  quotes line breaks), so ``decode_name(encode_name(n)) == n`` for every name.
- :func:`display_name`: a *readable* one-line form for people (GUI, PDF, log
  messages): the same escapes for undecodable bytes, and line breaks, other
  control characters and bidirectional overrides shown as escapes, so a name
  can neither break a table row nor display reversed.

Hand-written because no library offers a reversible, readable escape of
surrogates that leaves ordinary non-ASCII names untouched (``backslashreplace``
cannot be decoded back; ``urllib.parse.quote`` escapes every non-ASCII letter).
"""

from __future__ import annotations

import os
import re
import unicodedata

#: Bidirectional embedding/override/isolate controls: shown escaped, never applied.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})")


def _surrogate_escape(ch: str) -> str | None:
    o = ord(ch)
    if 0xDC80 <= o <= 0xDCFF:
        return f"\\x{o - 0xDC00:02x}"
    if 0xD800 <= o <= 0xDFFF:
        return f"\\u{o:04x}"
    return None


def encode_name(name: str) -> str:
    """``name`` as text UTF-8 can hold, reversibly (see the module docstring)."""
    if "\\" not in name and name.isascii():
        return name
    out = []
    for ch in name:
        if ch == "\\":
            out.append("\\\\")
        else:
            out.append(_surrogate_escape(ch) or ch)
    return "".join(out)


def decode_name(text: str) -> str:
    """The inverse of :func:`encode_name`; any other backslash is kept as it is."""
    if "\\" not in text:
        return text

    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        if code == "\\":
            return "\\"
        if code[0] == "x":
            value = int(code[1:], 16)
            return chr(0xDC00 + value) if value >= 0x80 else chr(value)
        return chr(int(code[1:], 16))

    return _ESCAPE.sub(one, text)


def display_name(name: str | os.PathLike[str]) -> str:
    """``name`` readable on one line: undecodable bytes, controls and bidi overrides escaped."""
    text = os.fspath(name)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text.isprintable() and not (_BIDI_CONTROLS & set(text)):
        return text
    out = []
    for ch in text:
        esc = _surrogate_escape(ch)
        if esc is not None:
            out.append(esc)
        elif ch in _BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch) or (
                f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"))
        else:
            out.append(ch)
    return "".join(out)


def utf8_safe(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode escaped (for hashing or encoding names)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join(_surrogate_escape(ch) or ch for ch in text)


__all__ = ["decode_name", "display_name", "encode_name", "utf8_safe"]
