"""Why a file could not be read, in words a clinic user can act on.

The loaders' reasons are precise for support ("transfer syntax
1.2.840.10008.1.2.4.51 (JPEG Extended (12-bit)): no bundled decoder reads
12-bit lossy JPEG (the one that does, pylibjpeg-libjpeg, is GPL)"); the
window and the scan table show :func:`plain_error` instead, and keep the
technical reason in the details (and in ``results.csv``).
"""

from __future__ import annotations

import re

#: A DICOM UID (dotted digits) as it appears inside a technical reason.
_UID = re.compile(r"\b\d+(?:\.\d+){3,}\b")

INCOMPLETE = (
    "The file is incomplete: it ends before the end of the image, as after an interrupted copy "
    "or download. Copy it again from where it came from; an incomplete PNG, JPEG or DICOM file cannot be read."
)
NOT_AN_IMAGE = "Check that it is a chest X-ray saved as PNG, JPEG or DICOM."
DEFAULT_ADVICE = "Check that it is a chest X-ray saved as PNG, JPEG or DICOM."


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].upper() + text[1:] if text else text


def is_incomplete(reason: str) -> bool:
    low = reason.lower()
    return "truncated" in low or "ends before" in low or "runs past the end" in low or "end-of-image" in low


def plain_error(kind: str | None, reason: str) -> tuple[str, str]:
    """``(what happened, what to do)`` for a file that could not be read (both plain sentences)."""
    low = reason.lower()
    if is_incomplete(reason):
        return _sentence(reason.split(":")[0] if "transfer syntax" in low else reason), INCOMPLETE
    if "transfer syntax" in low or kind == "missing_decoder":
        what = "This DICOM file stores its image in a compression this application cannot read"
        if "12-bit" in low or "12 bit" in low:
            what += " (12-bit lossy JPEG)"
        return what, (
            "Ask for the image uncompressed, or as JPEG 2000 or JPEG-LS: the PACS or the X-ray unit "
            "can usually export it that way."
        )
    if low.startswith("empty file"):
        return "The file is empty (0 bytes)", "Copy it again from where it came from."
    if kind == "not_an_image":
        return "This file is not a PNG, JPEG or DICOM image (judged by its content, not its name)", NOT_AN_IMAGE
    if kind == "too_large":
        return _sentence(reason), "The file is far larger than a chest X-ray: check that it is the right file."
    return _sentence(_UID.sub("", reason).replace("()", "").replace("  ", " ")), DEFAULT_ADVICE


def plain_text(kind: str | None, reason: str) -> str:
    """One line: ``what happened. What to do.``"""
    what, advice = plain_error(kind, reason)
    return f"{what}. {advice}"


__all__ = ["INCOMPLETE", "is_incomplete", "plain_error", "plain_text"]
