"""The entry point: :func:`load_xray` reads a file once, sniffs its format and hands it to its loader."""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import replace
from pathlib import Path

from desktop.core.errors import (
    CorruptImageError,
    ImageLoadError,
    ImageTooLargeError,
    NotAnImageError,
    UnsupportedImageError,
)

from .limits import short
from .resolution import parse_target, reduction_factor
from .source import detect_format, other_format, read_file
from .types import XRay


def load_xray(
    source: str | os.PathLike[str] | bytes,
    *,
    name: str | None = None,
    target: int | tuple[int, int] | None = None,
) -> XRay:
    """Read a PNG, JPEG or DICOM radiograph from a path or from bytes.

    ``target`` is the (height, width) the caller will resize the pixels to, e.g. the model
    input ``(spec.height, spec.width)``; None (the default) decodes at full resolution, as
    a viewer or a report needs. With a target, large films are decoded at a reduced
    resolution (see :mod:`desktop.core.imaging`); ``xray.decode_scale`` says by how much.
    ``metadata`` and ``sha256`` are always those of the file.

    Raises a subclass of :class:`~desktop.core.errors.ImageLoadError` naming the file and
    the reason; nothing else is expected to escape (a bad ``target`` is a ValueError).
    """
    wanted = parse_target(target)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label: str | None = name
    else:
        label = os.fspath(source)
        data = read_file(Path(label))
    try:
        xray = _decode(data, label, wanted)
    except ImageLoadError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError(label, "not enough memory to decode this image") from exc
    except RecursionError as exc:
        raise CorruptImageError(label, "structure nested too deeply") from exc
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # a decoder bug or an unforeseen corruption (Rust panics too)
        raise CorruptImageError(label, f"could not decode ({type(exc).__name__}: {short(str(exc), 120)})") from exc
    return replace(xray, sha256=hashlib.sha256(data).hexdigest())


def _decode(data: bytes, label: str | None, target: tuple[int, int] | None) -> XRay:
    if not data:
        raise NotAnImageError(label, "empty file")
    fmt = detect_format(data[:132])
    if fmt in ("png", "jpeg"):
        from .raster import load_pil

        return load_pil(data, label, fmt, _raster_factor(data, fmt, target))
    if fmt == "dicom":
        from .dicom import load_dicom

        with warnings.catch_warnings():
            # pydicom warns (and logs) about every oddity of damaged files as elements are
            # converted; the loader turns what matters into errors or XRay.warnings.
            warnings.simplefilter("ignore")
            return load_dicom(data, label, target)
    other = other_format(data[:16])
    if other:
        raise UnsupportedImageError(label, f"{other} file: not supported", "save it as PNG, JPEG or DICOM")
    raise NotAnImageError(label, "not an image (neither PNG, JPEG nor DICOM by its content)")


def _raster_factor(data: bytes, fmt: str, target: tuple[int, int] | None) -> int:
    """The reduction for a PNG/JPEG, from the size its header declares (1 without a target)."""
    if target is None:
        return 1
    from .codestream import jpeg_size

    if fmt == "png":
        size = (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
    else:
        size = jpeg_size(data) or (0, 0)
    # EXIF may turn the image a quarter: keep the margin whichever way it ends up.
    h, w = size[1], size[0]
    return min(reduction_factor((h, w), target), reduction_factor((w, h), target))


def loaders_available() -> dict[str, bool]:
    """Which optional DICOM decoders import (for ``selftest`` and the About dialog)."""
    out: dict[str, bool] = {}
    for module in ("gdcm", "pylibjpeg", "openjpeg", "rle", "jpeg_ls", "PIL"):
        try:
            __import__(module)
            out[module] = True
        except Exception:
            out[module] = False
    return out


__all__ = ["load_xray", "loaders_available"]
