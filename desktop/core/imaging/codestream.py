"""Codestream validators: is this PNG / JPEG / JPEG 2000 / JPEG Lossless / RLE data whole?

Each check walks the container's own structure (PNG chunks and CRCs, JPEG markers, the
JPEG 2000 main header, an RLE segment table) without decoding pixels, so that a cut or
hostile file is refused with a clear reason before a decoder sees it. Hand-written because
no library exposes these structural checks: Pillow checks only some PNG CRCs and shows a
cut file, and python-gdcm aborts the process on some damaged lossless JPEG headers.
"""

from __future__ import annotations

import re
import zlib

from desktop.core.errors import CorruptImageError

from . import limits
from .source import PNG_SIGNATURE


def check_png(data: bytes, label: str | None) -> None:
    """Walk the PNG chunks: sizes from IHDR, every CRC, a complete IEND.

    Pillow checks CRCs of some chunks only and decodes a file cut after its last
    IDAT; a radiograph that was damaged in transit must not be shown as if intact.
    """
    pos = len(PNG_SIGNATURE)
    first = True
    end = len(data)
    for _ in range(limits.MAX_PNG_CHUNKS):
        if pos + 12 > end:
            raise CorruptImageError(label, "truncated PNG (file ends before the IEND chunk)")
        length = int.from_bytes(data[pos : pos + 4], "big")
        ctype = data[pos + 4 : pos + 8]
        if length > 0x7FFFFFFF or not ctype.isalpha():
            raise CorruptImageError(label, f"damaged PNG (invalid chunk at byte {pos})")
        body_end = pos + 8 + length
        if body_end + 4 > end:
            raise CorruptImageError(
                label, f"truncated PNG ({ctype.decode('ascii')} chunk runs past the end of the file)"
            )
        if first:
            if ctype != b"IHDR" or length != 13:
                raise CorruptImageError(label, "damaged PNG (no IHDR header chunk)")
            width = int.from_bytes(data[pos + 8 : pos + 12], "big")
            height = int.from_bytes(data[pos + 12 : pos + 16], "big")
        crc = int.from_bytes(data[body_end : body_end + 4], "big")
        if zlib.crc32(memoryview(data)[pos + 4 : body_end]) != crc:
            raise CorruptImageError(
                label, f"damaged PNG (checksum error in the {ctype.decode('ascii')} chunk)"
            )
        if first:
            limits.check_size(width, height, label)
            first = False
        if ctype == b"IEND":
            return
        pos = body_end + 4
    raise CorruptImageError(label, f"damaged PNG (more than {limits.MAX_PNG_CHUNKS} chunks)")


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first SOF marker of a JPEG, without decoding; None if not found."""
    pos = 2
    end = len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > end:
                return None
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return width, height
        if marker in (0xD9, 0xDA) or length < 2:
            return None
        pos += 2 + length
    return None


JPEG_FAMILY = {
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
}
J2K_FAMILY = {
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
}


def check_codestream(frame: bytes, ts: str, label: str | None) -> None:
    """Refuse a frame that is not a complete codestream before a decoder sees it.

    A JPEG/JPEG-LS/JPEG 2000 frame starts with its start marker and ends with its
    end marker (padding aside). Decoders handed a cut codestream may show half an
    image, and CharLS can spend tens of seconds on one: a truncated frame is refused.
    """
    if ts == "1.2.840.10008.1.2.5":  # RLE: a 64-byte header of segment offsets
        if len(frame) < 64:
            raise CorruptImageError(label, "damaged RLE pixel data (header cut short)")
        count = int.from_bytes(frame[:4], "little")
        offsets = [int.from_bytes(frame[4 + 4 * i : 8 + 4 * i], "little") for i in range(15)]
        used = offsets[:count]
        if not 1 <= count <= 15 or used[0] != 64 or any(
            b <= a or b > len(frame) for a, b in zip(used, used[1:], strict=False)
        ) or used[-1] >= len(frame):
            raise CorruptImageError(label, "damaged RLE pixel data (invalid segment table)")
        return
    start: tuple[bytes, ...]
    body = frame.rstrip(b"\x00\xff")  # even-length padding: 0x00, or 0xFF fill
    if ts in JPEG_FAMILY:
        name, start = "JPEG", (b"\xff\xd8",)
    elif ts in J2K_FAMILY:
        name, start = "JPEG 2000", (b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  ")
    else:
        return
    if not body.startswith(start):
        raise CorruptImageError(label, f"damaged {name} pixel data (no start-of-image marker)")
    if not body.endswith(b"\xff\xd9"):
        raise CorruptImageError(
            label, f"truncated {name} pixel data (no end-of-image marker)"
        )
    if ts in ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"):
        problem = _jpeg_lossless_problem(body)
        if problem:
            raise CorruptImageError(label, f"damaged JPEG Lossless pixel data ({problem})")


_SCAN_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _huffman_problem(body: bytes, pos: int, end: int, tables: set[int]) -> str:
    """Check the DHT segment body[pos:end] of a lossless JPEG; record the tables it defines."""
    while pos < end:
        if pos + 17 > end:
            return "Huffman table cut short"
        tc_th = body[pos]
        tc, th = tc_th >> 4, tc_th & 0x0F
        if tc != 0 or th > 3:
            return f"invalid Huffman table class/id 0x{tc_th:02x}"
        counts = body[pos + 1 : pos + 17]
        total = sum(counts)
        if total == 0 or total > 17 or pos + 17 + total > end:
            return "invalid Huffman table size"
        code = 0
        for length, count in enumerate(counts, start=1):
            code += count
            if code > (1 << length):
                return "Huffman table has more codes than its code lengths allow"
            code <<= 1
        symbols = body[pos + 17 : pos + 17 + total]
        if any(v > 16 for v in symbols) or len(set(symbols)) != len(symbols):
            return "invalid Huffman table symbols"
        tables.add(th)
        pos += 17 + total
    return ""


def _jpeg_lossless_problem(body: bytes) -> str:
    """Why a JPEG Lossless (process 14) frame is malformed, or "".

    python-gdcm aborts the whole process (an uncaught C++ exception) on some damaged
    lossless JPEG headers, so the header is checked here first: known segments only, one
    SOF3 with one component, valid Huffman tables, a scan that uses a defined table, and
    no stray marker inside the entropy-coded data.
    """
    pos = 2
    end = len(body)
    tables: set[int] = set()
    sof: tuple[int, int, int, int] | None = None
    while True:
        if pos + 4 > end or body[pos] != 0xFF:
            return f"no marker at byte {pos}"
        marker = body[pos + 1]
        length = int.from_bytes(body[pos + 2 : pos + 4], "big")
        seg = pos + 4
        seg_end = pos + 2 + length
        if length < 2 or seg_end > end:
            return f"segment 0x{marker:02x} runs past the end"
        if marker == 0xC3:
            if sof is not None or length != 11:
                return "invalid or repeated SOF3 header"
            precision = body[seg]
            height = int.from_bytes(body[seg + 1 : seg + 3], "big")
            width = int.from_bytes(body[seg + 3 : seg + 5], "big")
            if body[seg + 5] != 1 or body[seg + 7] != 0x11:
                return "not a single-component image"
            if not 2 <= precision <= 16 or height == 0 or width == 0:
                return "invalid SOF3 precision or size"
            sof = (precision, height, width, body[seg + 6])
        elif marker == 0xC4:
            problem = _huffman_problem(body, seg, seg_end, tables)
            if problem:
                return problem
        elif marker == 0xDA:
            if sof is None:
                return "scan before the frame header"
            if length != 8 or body[seg] != 1 or body[seg + 1] != sof[3]:
                return "invalid scan header"
            if body[seg + 2] >> 4 not in tables:
                return "scan uses an undefined Huffman table"
            predictor, point = body[seg + 3], body[seg + 5] & 0x0F
            if not 1 <= predictor <= 7 or body[seg + 4] != 0 or point >= sof[0]:
                return "invalid predictor or point transform"
            stray = _SCAN_MARKER.search(body, seg_end)
            if stray is None or stray.start() != end - 2:
                return "unexpected marker inside the compressed data"
            return ""
        elif marker not in (0xDD, 0xFE) and not 0xE0 <= marker <= 0xEF:
            return f"unexpected marker 0x{marker:02x}"
        pos = seg_end



def j2k_header(frame: bytes) -> tuple[int, int, int, bool, int] | None:
    """(width, height, precision, signed, decomposition levels) of a raw JPEG 2000 codestream.

    Read from the SIZ and COD segments of the main header; None for a JP2 file, more than
    one component or a header this walk does not understand (the caller then decodes in full).
    """
    if not frame.startswith(b"\xff\x4f\xff\x51") or len(frame) < 47:
        return None
    siz = 4  # Lsiz starts here
    lsiz = int.from_bytes(frame[siz : siz + 2], "big")
    xsiz, ysiz, xo, yo = (int.from_bytes(frame[siz + 4 + 4 * i : siz + 8 + 4 * i], "big") for i in range(4))
    components = int.from_bytes(frame[siz + 36 : siz + 38], "big")
    if components != 1 or len(frame) < siz + 41 or xo or yo:
        return None  # (an image offset would put the reduced grid elsewhere)
    ssiz = frame[siz + 38]
    precision, signed = (ssiz & 0x7F) + 1, bool(ssiz & 0x80)
    pos = 2 + 2 + lsiz
    end = min(len(frame), 1 << 16)
    while pos + 4 <= end and frame[pos] == 0xFF:
        marker = frame[pos + 1]
        length = int.from_bytes(frame[pos + 2 : pos + 4], "big")
        if marker == 0x90 or length < 2:  # SOT: the main header ended without a COD
            return None
        if marker == 0x52:
            if pos + 10 > len(frame):
                return None
            return xsiz - xo, ysiz - yo, precision, signed, frame[pos + 9]
        pos += 2 + length
    return None


__all__ = [
    "J2K_FAMILY",
    "JPEG_FAMILY",
    "check_codestream",
    "check_png",
    "j2k_header",
    "jpeg_size",
]
