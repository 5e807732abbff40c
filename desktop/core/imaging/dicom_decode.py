"""DICOM pixel decoding: one pydicom plugin per transfer syntax, and reduced-resolution frames.

``decode_pixels`` runs pydicom's decoder with the plugin :data:`DECODER_PLUGINS` names
(python-gdcm only for JPEG Lossless, after its header is validated, because it aborts the
process on some damaged data). ``decode_reduced`` decodes the first frame of a JPEG
Baseline or JPEG 2000 data set at 1/k of its size with Pillow (DCT scaling, JPEG 2000
resolution levels); pydicom's decoders have no reduced mode.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

import numpy as np

from desktop.core.errors import (
    CorruptImageError,
    ImageTooLargeError,
    MissingDecoderError,
    UnsupportedImageError,
)

from .dicom_tags import NATIVE_TRANSFER_SYNTAXES, TRANSFER_SYNTAX_DECODERS, int_tag
from .limits import short
from .types import StudyMetadata

log = logging.getLogger(__name__)

#: The decoder (pydicom plugin) used for each compressed transfer syntax, best first.
#: python-gdcm is used only where nothing else decodes the syntax (JPEG Lossless): on damaged
#: JPEG 2000 data it aborts the whole process (an uncaught C++ exception), so it is never a
#: fallback. Plugins not installed are skipped; none left gives MissingDecoderError.
DECODER_PLUGINS: dict[str, tuple[str, ...]] = {
    "1.2.840.10008.1.2.4.50": ("pillow",),
    "1.2.840.10008.1.2.4.51": ("pillow",),
    "1.2.840.10008.1.2.4.57": ("gdcm",),
    "1.2.840.10008.1.2.4.70": ("gdcm",),
    "1.2.840.10008.1.2.4.80": ("pyjpegls",),
    "1.2.840.10008.1.2.4.81": ("pyjpegls",),
    "1.2.840.10008.1.2.4.90": ("pylibjpeg", "pillow"),
    "1.2.840.10008.1.2.4.91": ("pylibjpeg", "pillow"),
    "1.2.840.10008.1.2.4.201": ("pylibjpeg",),
    "1.2.840.10008.1.2.4.202": ("pylibjpeg",),
    "1.2.840.10008.1.2.4.203": ("pylibjpeg",),
    "1.2.840.10008.1.2.5": ("pylibjpeg", "pydicom"),
}


def choose_plugin(ts: str, label: str | None) -> str:
    """The pydicom decoding plugin for ``ts`` ("" for native data)."""
    if ts in NATIVE_TRANSFER_SYNTAXES:
        return ""
    from pydicom.pixels import get_decoder

    try:
        available = set(get_decoder(ts).available_plugins)
    except Exception:
        available = set()
    for plugin in DECODER_PLUGINS.get(ts, ()):
        if plugin in available:
            return plugin
    name, packages = TRANSFER_SYNTAX_DECODERS.get(ts, ("", ""))
    raise MissingDecoderError(
        label, f"unsupported transfer syntax {ts} ({name}): no decoder installed", f"install {packages}"
    )


def decode_pixels(ds: Any, meta: StudyMetadata, label: str | None) -> np.ndarray:
    ts = meta.transfer_syntax
    name = TRANSFER_SYNTAX_DECODERS.get(ts, NATIVE_TRANSFER_SYNTAXES.get(ts, ("", "")))[0]
    if ts == "1.2.840.10008.1.2.4.51" and (int_tag(ds, "BitsStored", 8) or 8) > 8:
        raise UnsupportedImageError(
            label,
            f"transfer syntax {ts} (JPEG Extended (12-bit)): no bundled decoder reads 12-bit "
            "lossy JPEG (the one that does, pylibjpeg-libjpeg, is GPL)",
            "convert it to an uncompressed, JPEG 2000 or JPEG-LS DICOM",
        )
    plugin = choose_plugin(ts, label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            options: dict[str, Any] = {}
            if meta.number_of_frames > 1:
                options["index"] = 0  # decode the first frame only
            if plugin:
                options["decoding_plugin"] = plugin
            if options:
                ds.pixel_array_options(**options)
            arr = ds.pixel_array
    except NotImplementedError as exc:
        if "decoder" in str(exc).lower() or "plugin" in str(exc).lower():
            raise missing_decoder(label, ts, exc) from exc
        # e.g. "Unknown Value Representation 'UP' in tag (0028,0101)": a damaged header
        raise CorruptImageError(label, f"damaged DICOM ({short(str(exc), 120)})") from exc
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except MemoryError as exc:
        raise ImageTooLargeError(label, "not enough memory to decode this image") from exc
    except BaseException as exc:  # decoders raise anything, Rust ones even panics (BaseException)
        msg = str(exc)
        low = msg.lower()
        if "no pixel data decoders" in low or "missing required dependencies" in low:
            raise missing_decoder(label, ts, exc) from exc
        if "all available plugins" in low:
            msg = msg.split(":", 1)[-1]
        what = f"{name} pixel data" if name and ts not in NATIVE_TRANSFER_SYNTAXES else "DICOM pixel data"
        if isinstance(exc, ValueError) and ("length" in low or "size" in low or "buffer" in low):
            raise CorruptImageError(
                label, f"DICOM pixel data does not match Rows/Columns/Bits ({short(msg)})"
            ) from exc
        raise CorruptImageError(
            label, f"cannot decode the {what}: damaged ({short(msg, 120)})"
        ) from exc
    arr = np.asarray(arr)
    if meta.number_of_frames > 1 and arr.ndim == 3 and arr.shape[0] == meta.number_of_frames:
        arr = arr[0]
    if arr.ndim != 2:
        raise UnsupportedImageError(label, f"pixel data has shape {arr.shape}, expected one 2-D frame")
    return arr


def missing_decoder(label: str | None, ts: str, exc: BaseException) -> MissingDecoderError:
    name, packages = TRANSFER_SYNTAX_DECODERS.get(ts, ("", ""))
    if name:
        return MissingDecoderError(
            label, f"unsupported transfer syntax {ts} ({name})", f"install {packages}"
        )
    return MissingDecoderError(label, f"unsupported transfer syntax {ts or '(none given)'}")




#: Transfer syntaxes whose first frame :func:`decode_reduced` can decode at a reduced size.
JPEG_BASELINE = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")
J2K = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")


def decode_reduced(frame: bytes, ts: str, ds: Any, k: int) -> tuple[np.ndarray, int] | None:
    """The stored values of ``frame`` decoded at 1/s of each side (s <= ``k``), and s.

    JPEG Baseline (8-bit) through libjpeg's DCT scaling (Pillow ``draft``, s up to 8) and
    JPEG 2000 through its resolution levels (Pillow's OpenJPEG ``reduce``, s up to 2**levels).
    Unsigned data only; None when the codec cannot reduce this frame or anything fails, so
    the caller decodes in full (and reports any damage) the usual way.
    """
    from PIL import Image

    from .codestream import j2k_header
    from .resolution import reduced_shape

    rows, cols = int_tag(ds, "Rows") or 0, int_tag(ds, "Columns") or 0
    if k < 2 or (int_tag(ds, "PixelRepresentation", 0) or 0) != 0:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if ts in JPEG_BASELINE:
                if (int_tag(ds, "BitsStored", 8) or 8) > 8:
                    return None
                im = Image.open(io.BytesIO(frame))
                if im.mode != "L" or im.size != (cols, rows):
                    return None
                s = min(k, 8)
                want = reduced_shape((rows, cols), s)
                im.draft(None, (want[1], want[0]))
                im.load()
                arr = np.asarray(im)
                got = next((t for t in (8, 4, 2, 1) if reduced_shape((rows, cols), t) == arr.shape), 0)
                return (arr, got) if got > 1 else None
            if ts in J2K:
                header = j2k_header(frame)
                if header is None:
                    return None
                width, height, precision, signed, levels = header
                if signed or (width, height) != (cols, rows) or not 8 <= precision <= 16:
                    return None
                for level in range(min(k.bit_length() - 1, levels), 0, -1):
                    decoded = _j2k_at_level(frame, level)  # OpenJPEG refuses some levels of some files
                    if decoded is not None:
                        arr = decoded
                        break
                else:
                    return None
                if arr.shape != reduced_shape((rows, cols), 2**level):
                    return None
                if 8 < precision < 16:  # Pillow scales 9..15-bit samples up to 16 bits
                    arr = arr >> np.uint16(16 - precision)
                return _centre_low_pass(arr, 2**level), 2**level
    except Exception as exc:  # the full decode reports damage with the usual messages
        log.debug("reduced decode not used: %s", type(exc).__name__)
    return None


def _centre_low_pass(arr: np.ndarray, s: int) -> np.ndarray:
    """Move a JPEG 2000 low-pass image onto the grid of a box reduction by ``s`` (float32).

    Sample i of the level-L low-pass band is centred on full-resolution pixel i*s, whereas
    the model's resize (and :func:`~.resolution.box_reduce`) takes reduced pixel i as the
    block [i*s, (i+1)*s), centred on i*s + (s-1)/2. Left as it is, that shift of 1.5 pixels
    (s=4) moved p(covid) of the bundled model by 0.05 on an upscaled sample film; shifted
    back by linear interpolation it moves it by < 0.005 (``tests/test_imaging_reduced.py``).
    """
    f = np.float32((s - 1) / (2 * s))
    out = arr.astype(np.float32)
    out[:-1] += f * (out[1:] - out[:-1])
    out[:, :-1] += f * (out[:, 1:] - out[:, :-1])
    return out


def _j2k_at_level(frame: bytes, level: int) -> np.ndarray | None:
    """A JPEG 2000 codestream decoded at resolution level ``level`` (1/2**level), or None."""
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(frame))
        im.reduce = level  # type: ignore[assignment,method-assign]  # Pillow's JPEG 2000 option
        im.load()
    except OSError:
        return None
    return np.asarray(im)


__all__ = [
    "DECODER_PLUGINS",
    "choose_plugin",
    "decode_pixels",
    "decode_reduced",
    "missing_decoder",
]
