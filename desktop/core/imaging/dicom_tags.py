"""DICOM vocabulary shared by the checks, the decoder and the LUTs: transfer syntaxes, tag readers."""

from __future__ import annotations

from typing import Any

#: Transfer syntax UID -> (name, pip packages that decode it).
TRANSFER_SYNTAX_DECODERS = {
    "1.2.840.10008.1.2.4.50": ("JPEG Baseline", "pillow"),
    "1.2.840.10008.1.2.4.51": ("JPEG Extended (12-bit)", "pillow (8-bit only)"),
    "1.2.840.10008.1.2.4.57": ("JPEG Lossless", "python-gdcm"),
    "1.2.840.10008.1.2.4.70": ("JPEG Lossless SV1", "python-gdcm"),
    "1.2.840.10008.1.2.4.80": ("JPEG-LS Lossless", "pyjpegls"),
    "1.2.840.10008.1.2.4.81": ("JPEG-LS Near-Lossless", "pyjpegls"),
    "1.2.840.10008.1.2.4.90": ("JPEG 2000 Lossless", "pylibjpeg and pylibjpeg-openjpeg"),
    "1.2.840.10008.1.2.4.91": ("JPEG 2000", "pylibjpeg and pylibjpeg-openjpeg"),
    "1.2.840.10008.1.2.4.201": ("HTJ2K Lossless", "pylibjpeg and pylibjpeg-openjpeg"),
    "1.2.840.10008.1.2.4.202": ("HTJ2K Lossless RPCL", "pylibjpeg and pylibjpeg-openjpeg"),
    "1.2.840.10008.1.2.4.203": ("HTJ2K", "pylibjpeg and pylibjpeg-openjpeg"),
    "1.2.840.10008.1.2.5": ("RLE Lossless", "pylibjpeg-rle (or pydicom's own, slower)"),
}



#: Transfer syntaxes whose pixel data is stored uncompressed (after inflating, for Deflate).
NATIVE_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
}


def text(ds: Any, keyword: str) -> str:
    try:
        value = ds.get(keyword, "")
    except Exception:
        return ""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value).strip()


def int_tag(ds: Any, keyword: str, default: int | None = None) -> int | None:
    try:
        value = ds.get(keyword, default)
        return default if value is None or value == "" else int(value)
    except Exception:
        return default



__all__ = ["NATIVE_TRANSFER_SYNTAXES", "TRANSFER_SYNTAX_DECODERS", "int_tag", "text"]
