"""Size limits of the loader, and the checks that apply them before anything is decoded.

The limits are module settings: ``desktop.core.imaging.MAX_PIXELS = n`` (the package
forwards the assignment here) changes them for every later load; the checks read them at
call time.
"""

from __future__ import annotations

from desktop.core.errors import CorruptImageError, ImageTooLargeError, UnsupportedImageError

#: Largest image accepted, in pixels (a 43x43 cm detector at 100 um is ~18.5 MP).
MAX_PIXELS = 50_000_000
#: Largest file read into memory.
MAX_FILE_BYTES = 512 * 1024 * 1024
#: Smallest image accepted on either side, in pixels.
MIN_SIDE = 16
#: A PNG of the largest accepted file size has ~65,000 chunks of the usual 8 KiB.
MAX_PNG_CHUNKS = 1_000_000
#: Slack allowed beyond the pixel data a deflated DICOM declares (its other elements).
INFLATE_SLACK_BYTES = 8 * 1024 * 1024

#: The names ``desktop.core.imaging`` forwards here when they are assigned on the package.
SETTINGS = ("MAX_PIXELS", "MAX_FILE_BYTES", "MIN_SIDE", "MAX_PNG_CHUNKS", "INFLATE_SLACK_BYTES")


def check_size(width: int, height: int, label: str | None, bomb_hint: bool = True) -> None:
    """Refuse absurd or tiny declared sizes before anything is decoded."""
    if width <= 0 or height <= 0:
        raise CorruptImageError(label, f"image declares {width}x{height} pixels")
    if width * height > MAX_PIXELS:
        reason = f"{width}x{height} pixels, over the {MAX_PIXELS / 1e6:.0f} megapixel limit"
        if bomb_hint:
            reason += " (refused as a possible decompression bomb)"
        raise ImageTooLargeError(label, reason)
    if width < MIN_SIDE or height < MIN_SIDE:
        raise UnsupportedImageError(label, f"{width}x{height} pixels: too small for an X-ray")


def max_inflated_bytes() -> int:
    """The most a deflated DICOM data set may inflate to: the largest image at 32 bits, plus slack."""
    return MAX_PIXELS * 4 + INFLATE_SLACK_BYTES


def short(msg: str, limit: int = 160) -> str:
    """``msg`` on one line, cut to ``limit`` characters (decoder messages can be long)."""
    msg = " ".join(msg.split())
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."
