"""Turn a file (path or bytes) into an :class:`XRay`: display-ready pixels plus metadata.

One entry point, :func:`load_xray`. The format is detected from the content
(PNG/JPEG signatures, ``DICM`` at byte 128, or a DICOM data set without
preamble), never from the file name.

DICOM is shown as a radiologist's viewer shows it: modality LUT (rescale or
LUT sequence), then VOI LUT (LUT sequence, else the first window
centre/width, else the full stored range), then MONOCHROME1 inversion, so
bones are always white. Colour and non-projection images (CT, MR, ...) are
refused with a clear message.

Hostile files: sizes are checked before anything is decoded (PNG chunks and
CRCs and IHDR size, the JPEG SOF size, DICOM Rows x Columns x frames x Bits
Allocated against the bytes present and MAX_PIXELS, element lengths against the
end of the file), compressed DICOM frames must be complete codestreams, and
each transfer syntax has one decoder (DECODER_PLUGINS): python-gdcm only for
JPEG Lossless, after its header is validated, because it aborts the process on
some damaged data. Every failure is an ImageLoadError subclass naming the file;
``tests/test_hostile.py`` and ``tests/test_fuzz_loader.py`` hold it to that.

Patient data read here (:class:`StudyMetadata`) is never logged: the
dataclass keeps identifying fields out of its ``repr``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import warnings
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .errors import (
    CorruptImageError,
    FileAccessError,
    ImageLoadError,
    ImageTooLargeError,
    MissingDecoderError,
    NotAnImageError,
    UnsupportedImageError,
)

log = logging.getLogger(__name__)

#: Largest image accepted, in pixels (a 43x43 cm detector at 100 um is ~18.5 MP).
MAX_PIXELS = 50_000_000
#: Largest file read into memory.
MAX_FILE_BYTES = 512 * 1024 * 1024

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"

#: DICOM modalities that are projection radiographs (or test patterns) we can show.
PROJECTION_MODALITIES = {"CR", "DX", "DR", "RG", "RF", "XA", "MG", "IO", "PX", "OT", "SC", ""}
#: Modalities that are certainly not a chest radiograph: refused.
REFUSED_MODALITIES = {
    "CT": "CT image",
    "MR": "MR image",
    "PT": "PET image",
    "NM": "nuclear medicine image",
    "US": "ultrasound image",
    "ES": "endoscopy image",
    "XC": "photograph",
    "OP": "ophthalmic photograph",
    "OPT": "ophthalmic tomography",
    "SM": "slide microscopy image",
    "IVUS": "intravascular ultrasound image",
    "OCT": "optical coherence tomography image",
    "SEG": "segmentation object",
    "RTIMAGE": "radiotherapy image",
    "RTDOSE": "radiotherapy dose",
}

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


@dataclass(frozen=True)
class Window:
    """A display window in the image's own units (DICOM centre/width semantics).

    Values at or below ``low`` show black, at or above ``high`` white (before
    MONOCHROME1 inversion, which :class:`XRay` applies). ``function`` is the DICOM
    VOI LUT Function: ``LINEAR`` (the default), ``LINEAR_EXACT`` or ``SIGMOID``
    (PS3.3 C.11.2.1.2-3).
    """

    center: float
    width: float
    name: str = ""
    function: str = "LINEAR"

    @property
    def low(self) -> float:
        if self.function == "LINEAR_EXACT":
            return self.center - max(self.width, 1e-6) / 2.0
        return self.center - 0.5 - (max(self.width, 1.0) - 1.0) / 2.0

    @property
    def high(self) -> float:
        if self.function == "LINEAR_EXACT":
            return self.center + max(self.width, 1e-6) / 2.0
        return self.center - 0.5 + (max(self.width, 1.0) - 1.0) / 2.0

    @classmethod
    def from_range(cls, low: float, high: float, name: str = "") -> Window:
        """The window that maps ``low`` to black and ``high`` to white."""
        width = max(float(high) - float(low), 1e-6) + 1.0
        return cls(center=float(low) + 0.5 + (width - 1.0) / 2.0, width=width, name=name)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Map ``values`` to a new float32 array in [0, 1] (one allocation)."""
        if self.function == "SIGMOID":
            out = np.subtract(values, np.float32(self.center), dtype=np.float32)
            out *= np.float32(-4.0 / max(self.width, 1e-6))
            np.clip(out, -80.0, 80.0, out=out)  # exp stays finite
            np.exp(out, out=out)
            out += np.float32(1.0)
            return np.reciprocal(out, out=out)
        low, high = self.low, self.high
        span = max(high - low, 1e-12)
        out = np.subtract(values, np.float32(low), dtype=np.float32)
        out /= np.float32(span)
        return np.clip(out, 0.0, 1.0, out=out)


@dataclass(frozen=True)
class StudyMetadata:
    """What the file says about the patient and the study.

    Identifying fields are kept out of ``repr`` so that an accidental log
    line or traceback cannot leak them.
    """

    patient_name: str = field(default="", repr=False)
    patient_id: str = field(default="", repr=False)
    patient_sex: str = field(default="", repr=False)
    patient_birth_date: str = field(default="", repr=False)
    patient_age: str = field(default="", repr=False)
    study_date: str = field(default="", repr=False)
    study_time: str = field(default="", repr=False)
    accession_number: str = field(default="", repr=False)
    institution: str = field(default="", repr=False)
    modality: str = ""
    view_position: str = ""
    body_part: str = ""
    manufacturer: str = ""
    study_description: str = field(default="", repr=False)
    photometric: str = ""
    transfer_syntax: str = ""
    number_of_frames: int = 1

    #: Fields that identify a patient (used by anonymisation and log scrubbing).
    IDENTIFYING = (
        "patient_name",
        "patient_id",
        "patient_birth_date",
        "accession_number",
        "institution",
        "study_description",
    )

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def identifying_values(self) -> list[str]:
        """Non-empty identifying strings (for tests and scrubbing)."""
        return [v for k in self.IDENTIFYING if (v := str(getattr(self, k)).strip())]


@dataclass(frozen=True, eq=False)
class XRay:
    """A loaded radiograph.

    ``pixels`` is what a viewer shows by default: float32 in [0, 1], bones
    white. ``values`` holds the image in its own units (after the DICOM
    modality LUT, or the PNG/JPEG intensities) for window/level; ``render``
    applies another window to it.
    """

    pixels: np.ndarray
    values: np.ndarray
    bit_depth: int
    window: Window
    presets: tuple[Window, ...]
    invert: bool
    format: str
    metadata: StudyMetadata
    source: str | None = None
    sha256: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    @property
    def name(self) -> str:
        return Path(self.source).name if self.source else "<bytes>"

    def render(self, window: Window | None = None) -> np.ndarray:
        """Display pixels for ``window`` (the default view when None)."""
        if window is None:
            return self.pixels
        out = window.apply(self.values)
        if self.invert:
            np.subtract(np.float32(1.0), out, out=out)
        return out

    def to_uint8(self, window: Window | None = None) -> np.ndarray:
        """8-bit display image (rounded to nearest) for ``window`` (the default view when None)."""
        shown = self.render(window)
        scaled = np.multiply(shown, np.float32(255.0), dtype=np.float32)
        np.rint(scaled, out=scaled)
        return scaled.astype(np.uint8)


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def load_xray(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> XRay:
    """Read a PNG, JPEG or DICOM radiograph from a path or from bytes.

    Raises a subclass of :class:`~desktop.core.errors.ImageLoadError` naming
    the file and the reason; nothing else is expected to escape.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label: str | None = name
    else:
        label = os.fspath(source)
        data = _read_file(Path(label))
    try:
        xray = _decode(data, label)
    except ImageLoadError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError(label, "not enough memory to decode this image") from exc
    except RecursionError as exc:
        raise CorruptImageError(label, "structure nested too deeply") from exc
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # a decoder bug or an unforeseen corruption (Rust panics too)
        raise CorruptImageError(
            label, f"could not decode ({type(exc).__name__}: {_short(str(exc), 120)})"
        ) from exc
    return replace(xray, sha256=hashlib.sha256(data).hexdigest())


def detect_format(head: bytes) -> str | None:
    """``"png"``, ``"jpeg"``, ``"dicom"`` or None, from the first bytes of a file (>= 132)."""
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(JPEG_SIGNATURE):
        return "jpeg"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if _looks_like_raw_dicom(head):
        return "dicom"
    return None


def _looks_like_raw_dicom(head: bytes) -> bool:
    """A DICOM data set without preamble: starts with a plausible (group, element) tag."""
    if len(head) < 8:
        return False
    group = int.from_bytes(head[0:2], "little")
    element = int.from_bytes(head[2:4], "little")
    if group not in (0x0002, 0x0008):
        return False
    if element > 0x1000:
        return False
    vr = head[4:6]
    if vr.isalpha() and vr.isupper():  # explicit VR
        return True
    length = int.from_bytes(head[4:8], "little")  # implicit VR: a sane length
    return length < 1024


def _read_file(path: Path) -> bytes:
    try:
        if path.is_dir():
            raise FileAccessError(path, "is a folder, not a file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageTooLargeError(
                path, f"file is {size / 2**20:.0f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB limit"
            )
        with path.open("rb") as fh:
            # Read what stat() announced (read(n) reserves n bytes up front), then whatever
            # a growing or special file still has, up to the limit.
            data = fh.read(size + 1) if size > 0 else b""
            if len(data) <= size and size > 0:
                return data
            parts = [data]
            total = len(data)
            while total <= MAX_FILE_BYTES:
                chunk = fh.read(min(16 * 2**20, MAX_FILE_BYTES + 1 - total))
                if not chunk:
                    break
                parts.append(chunk)
                total += len(chunk)
            if total > MAX_FILE_BYTES:
                raise ImageTooLargeError(
                    path, f"file is over the {MAX_FILE_BYTES // 2**20} MiB limit"
                )
            return b"".join(parts)
    except FileNotFoundError as exc:
        raise FileAccessError(path, "file not found") from exc
    except PermissionError as exc:
        raise FileAccessError(path, "permission denied: cannot read the file") from exc
    except IsADirectoryError as exc:
        raise FileAccessError(path, "is a folder, not a file") from exc
    except OSError as exc:
        raise FileAccessError(path, f"cannot read the file ({exc.strerror or exc})") from exc


def _decode(data: bytes, label: str | None) -> XRay:
    if not data:
        raise NotAnImageError(label, "empty file")
    fmt = detect_format(data[:132])
    if fmt in ("png", "jpeg"):
        return _load_pil(data, label, fmt)
    if fmt == "dicom":
        with warnings.catch_warnings():
            # pydicom warns (and logs) about every oddity of damaged files as elements are
            # converted; the loader turns what matters into errors or XRay.warnings.
            warnings.simplefilter("ignore")
            return _load_dicom(data, label)
    other = _other_format(data[:16])
    if other:
        raise UnsupportedImageError(
            label, f"{other} file: not supported", "save it as PNG, JPEG or DICOM"
        )
    raise NotAnImageError(label, "not an image (neither PNG, JPEG nor DICOM by its content)")


def _other_format(head: bytes) -> str | None:
    known = {
        b"II*\x00": "TIFF",
        b"MM\x00*": "TIFF",
        b"BM": "BMP",
        b"GIF8": "GIF",
        b"RIFF": "WebP/RIFF",
        b"%PDF": "PDF",
        b"PK\x03\x04": "ZIP",
    }
    for sig, fmt in known.items():
        if head.startswith(sig):
            return fmt
    return None


# --------------------------------------------------------------------------
# PNG / JPEG
# --------------------------------------------------------------------------


#: A PNG of the largest accepted file size has ~65,000 chunks of the usual 8 KiB.
MAX_PNG_CHUNKS = 1_000_000
#: Smallest image accepted on either side, in pixels.
MIN_SIDE = 16


def _check_size(width: int, height: int, label: str | None, bomb_hint: bool = True) -> None:
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


def _check_png(data: bytes, label: str | None) -> None:
    """Walk the PNG chunks: sizes from IHDR, every CRC, a complete IEND.

    Pillow checks CRCs of some chunks only and decodes a file cut after its last
    IDAT; a radiograph that was damaged in transit must not be shown as if intact.
    """
    pos = len(PNG_SIGNATURE)
    first = True
    end = len(data)
    for _ in range(MAX_PNG_CHUNKS):
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
            _check_size(width, height, label)
            first = False
        if ctype == b"IEND":
            return
        pos = body_end + 4
    raise CorruptImageError(label, f"damaged PNG (more than {MAX_PNG_CHUNKS} chunks)")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
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


def _load_pil(data: bytes, label: str | None, fmt: str) -> XRay:
    name = fmt.upper()
    if fmt == "png":
        _check_png(data, label)
    else:
        size = _jpeg_size(data)
        if size is not None:
            _check_size(size[0], size[1], label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im: Image.Image = Image.open(io.BytesIO(data))
            width, height = im.size
            _check_size(width, height, label)
            im.load()
            exif_warn: list[str] = []
            try:
                im = ImageOps.exif_transpose(im) or im
            except Exception:  # broken EXIF: keep the pixels as stored
                exif_warn.append("unreadable EXIF orientation ignored")
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(label, f"refused as a possible decompression bomb ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc)
        if "truncated" in msg.lower() or isinstance(exc, EOFError):
            reason = f"truncated {name}"
        elif "crc" in msg.lower():
            reason = f"damaged {name} (checksum error)"
        elif "cannot identify image file" in msg:
            reason = f"damaged {name} (the image decoder cannot read it)"
        else:
            reason = f"damaged {name} ({_short(msg)})"
        raise CorruptImageError(label, reason) from exc

    values, bit_depth = _pil_to_gray(im)
    maxval = float(2**bit_depth - 1)
    window = Window.from_range(0.0, maxval, "Full range")
    presets = [window]
    lo, hi = float(values.min()), float(values.max())
    if hi > lo and (lo > 0 or hi < maxval):
        presets.append(Window.from_range(lo, hi, "Image min-max"))
    meta = StudyMetadata(modality="", photometric="MONOCHROME2")
    return XRay(
        pixels=window.apply(values),
        values=values,
        bit_depth=bit_depth,
        window=window,
        presets=tuple(presets),
        invert=False,
        format=fmt,
        metadata=meta,
        source=label,
        warnings=tuple(exif_warn),
    )


def _pil_to_gray(im: Image.Image) -> tuple[np.ndarray, int]:
    """Grayscale float32 values in the image's own units, and the bit depth."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im, dtype=np.float32), 16
    if mode == "I":
        arr = np.asarray(im, dtype=np.float32)
        return arr, 16 if arr.max(initial=0) <= 65535 else 32
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        return ((arr - lo) / max(hi - lo, 1e-12) * 65535.0).astype(np.float32), 16
    if mode == "1":
        return np.asarray(im.convert("L"), dtype=np.float32), 8
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel("L"), dtype=np.float32), 8
    if mode in ("RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
        # ITU-R 601 luma, as Pillow's convert("L"), without its rounding to 8 bits.
        gray = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        return np.clip(gray, 0.0, 255.0).astype(np.float32), 8
    return np.asarray(im.convert("L"), dtype=np.float32), 8


# --------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------


def _text(ds: Any, keyword: str) -> str:
    try:
        value = ds.get(keyword, "")
    except Exception:
        return ""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value).strip()


def _read_dataset(data: bytes, label: str | None) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
        _check_element_lengths(ds, label)
        return ds
    except ImageLoadError:
        raise
    except InvalidDicomError as exc:
        raise CorruptImageError(label, f"invalid DICOM ({exc})") from exc
    except (EOFError, OSError) as exc:
        raise CorruptImageError(label, "truncated DICOM") from exc
    except RecursionError as exc:
        raise CorruptImageError(label, "DICOM sequences nested too deeply") from exc
    except Exception as exc:
        raise CorruptImageError(label, f"damaged DICOM ({type(exc).__name__}: {exc})") from exc


def _check_element_lengths(ds: Any, label: str | None) -> None:
    """Refuse a data set whose elements declare more bytes than the file holds.

    pydicom keeps reading a truncated file and stores the short value; a declared
    length past the end of the file (a cut file, or a hostile 1 GB length) means
    everything after it is missing or misread.
    """
    for tag in list(ds.keys()):
        try:
            elem = ds.get_item(tag)
        except Exception:
            continue
        length = getattr(elem, "length", None)
        value = getattr(elem, "value", None)
        if (
            isinstance(length, int)
            and length != 0xFFFFFFFF
            and isinstance(value, (bytes, bytearray))
            and len(value) < length
        ):
            where = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
            raise CorruptImageError(
                label,
                f"truncated DICOM: element {where} declares {length} bytes "
                f"but the file ends after {len(value)}",
            )
    # Pixel data that pydicom could not place (e.g. swallowed by a bad length) is reported
    # as missing later by _check_dicom.


def _dicom_metadata(ds: Any) -> StudyMetadata:
    ts = ""
    try:
        ts = str(ds.file_meta.TransferSyntaxUID)
    except Exception:
        ts = ""
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception:
        frames = 1
    return StudyMetadata(
        patient_name=_text(ds, "PatientName"),
        patient_id=_text(ds, "PatientID"),
        patient_sex=_text(ds, "PatientSex"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_age=_text(ds, "PatientAge"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        accession_number=_text(ds, "AccessionNumber"),
        institution=_text(ds, "InstitutionName"),
        modality=_text(ds, "Modality").upper(),
        view_position=_text(ds, "ViewPosition"),
        body_part=_text(ds, "BodyPartExamined"),
        manufacturer=_text(ds, "Manufacturer"),
        study_description=_text(ds, "StudyDescription"),
        photometric=_text(ds, "PhotometricInterpretation").upper(),
        transfer_syntax=ts,
        number_of_frames=frames,
    )


def _int_tag(ds: Any, keyword: str, default: int | None = None) -> int | None:
    try:
        value = ds.get(keyword, default)
        return default if value is None or value == "" else int(value)
    except Exception:
        return default


def _check_dicom(ds: Any, meta: StudyMetadata, label: str | None) -> list[str]:
    """Refuse what we cannot or should not show; return warnings for what we show anyway."""
    notes: list[str] = []
    if meta.modality in REFUSED_MODALITIES:
        raise UnsupportedImageError(
            label, f"{REFUSED_MODALITIES[meta.modality]} (modality {meta.modality}), expected a radiograph"
        )
    if meta.modality not in PROJECTION_MODALITIES:
        notes.append(f"unusual modality {meta.modality!r} for a chest radiograph")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise CorruptImageError(label, "DICOM has no pixel data")
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        raise UnsupportedImageError(label, "floating-point DICOM pixel data is not a radiograph")
    samples = _int_tag(ds, "SamplesPerPixel", 1)
    photometric = meta.photometric or "MONOCHROME2"
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnsupportedImageError(
            label, f"colour image ({photometric}, {samples} samples per pixel), expected a grayscale radiograph"
        )
    rows = _int_tag(ds, "Rows")
    cols = _int_tag(ds, "Columns")
    if not rows or not cols or rows < 0 or cols < 0:
        raise CorruptImageError(label, "DICOM has no valid Rows/Columns")
    if rows * cols > MAX_PIXELS:
        raise ImageTooLargeError(
            label, f"{cols}x{rows} pixels, over the {MAX_PIXELS / 1e6:.0f} megapixel limit"
        )
    if rows < 16 or cols < 16:
        raise UnsupportedImageError(label, f"{cols}x{rows} pixels: too small for an X-ray")
    allocated = _int_tag(ds, "BitsAllocated")
    stored = _int_tag(ds, "BitsStored", allocated)
    if allocated not in (1, 8, 16, 32):
        raise CorruptImageError(label, f"unsupported Bits Allocated {allocated}")
    if stored is None or stored < 1 or stored > allocated:
        raise CorruptImageError(label, f"Bits Stored {stored} is not within Bits Allocated {allocated}")
    if meta.number_of_frames > 1:
        notes.append(f"multi-frame DICOM ({meta.number_of_frames} frames): showing the first frame")
    body = meta.body_part.upper()
    if body and body not in ("CHEST", "THORAX", "LUNG", "TORSO"):
        notes.append(f"body part {meta.body_part}, not chest")
    return notes


#: Transfer syntaxes whose pixel data is stored uncompressed (after inflating, for Deflate).
NATIVE_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
}


def _check_pixel_data(ds: Any, meta: StudyMetadata, label: str | None) -> list[str]:
    """Before decoding: a known transfer syntax, and native pixel data of the declared size.

    Rows x Columns x frames x Bits Allocated is checked against the bytes actually present,
    so a lying header cannot make the decoder allocate (or read) more than the file holds.
    """
    notes: list[str] = []
    ts = meta.transfer_syntax
    if ts not in NATIVE_TRANSFER_SYNTAXES and ts not in TRANSFER_SYNTAX_DECODERS:
        raise UnsupportedImageError(
            label,
            f"unknown or unsupported transfer syntax {ts or '(none given)'}",
            "convert it to an uncompressed, JPEG 2000 or JPEG-LS DICOM",
        )
    rows = _int_tag(ds, "Rows") or 0
    cols = _int_tag(ds, "Columns") or 0
    allocated = _int_tag(ds, "BitsAllocated") or 16
    frames = max(meta.number_of_frames, 1)
    elem = ds.get_item("PixelData")
    raw = getattr(elem, "value", None)
    if not isinstance(raw, (bytes, bytearray)) or len(raw) == 0:
        raise CorruptImageError(label, "DICOM has no pixel data")
    actual = len(raw)
    if ts in NATIVE_TRANSFER_SYNTAXES:
        if raw[:4] == b"\xfe\xff\x00\xe0":
            log.debug("native transfer syntax but encapsulated-looking pixel data")
        per_frame = (rows * cols * allocated + 7) // 8
        expected = per_frame * frames
        if actual < expected:
            if frames > 1 and actual >= per_frame:
                raise CorruptImageError(
                    label,
                    f"DICOM pixel data holds {actual} bytes but {frames} frames of {cols}x{rows} "
                    f"need {expected} (wrong Number of Frames or a truncated file)",
                )
            raise CorruptImageError(
                label,
                f"DICOM pixel data holds {actual} bytes but Rows/Columns/Bits Allocated "
                f"({rows}x{cols}x{allocated} bits) need {expected} (truncated file or wrong Rows/Columns)",
            )
        row_bytes = max((cols * allocated + 7) // 8, 2)
        if actual - expected >= row_bytes:
            raise CorruptImageError(
                label,
                f"DICOM pixel data holds {actual} bytes, more than Rows/Columns/Bits Allocated "
                f"({rows}x{cols}x{allocated} bits, {frames} frame(s)) describe: {expected} "
                "(wrong Rows/Columns)",
            )
    else:
        if raw[:4] != b"\xfe\xff\x00\xe0":
            raise CorruptImageError(
                label, f"compressed transfer syntax {ts} but the pixel data is not encapsulated"
            )
        _check_codestream(_first_frame(raw, frames, label), ts, label)
    return notes


def _first_frame(raw: bytes | bytearray, frames: int, label: str | None) -> bytes:
    from pydicom.encaps import generate_frames

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return next(generate_frames(bytes(raw) if isinstance(raw, bytearray) else raw, number_of_frames=frames))
    except StopIteration as exc:
        raise CorruptImageError(label, "encapsulated DICOM pixel data holds no frame") from exc
    except Exception as exc:
        raise CorruptImageError(
            label, f"damaged encapsulated DICOM pixel data ({_short(str(exc), 100)})"
        ) from exc


_JPEG_FAMILY = {
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
}
_J2K_FAMILY = {
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
}


def _check_codestream(frame: bytes, ts: str, label: str | None) -> None:
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
    if ts in _JPEG_FAMILY:
        name, start = "JPEG", (b"\xff\xd8",)
    elif ts in _J2K_FAMILY:
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


def _choose_plugin(ts: str, label: str | None) -> str:
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


def _decode_pixels(ds: Any, meta: StudyMetadata, label: str | None) -> np.ndarray:
    ts = meta.transfer_syntax
    name = TRANSFER_SYNTAX_DECODERS.get(ts, NATIVE_TRANSFER_SYNTAXES.get(ts, ("", "")))[0]
    if ts == "1.2.840.10008.1.2.4.51" and (_int_tag(ds, "BitsStored", 8) or 8) > 8:
        raise UnsupportedImageError(
            label,
            f"transfer syntax {ts} (JPEG Extended (12-bit)): no bundled decoder reads 12-bit "
            "lossy JPEG (the one that does, pylibjpeg-libjpeg, is GPL)",
            "convert it to an uncompressed, JPEG 2000 or JPEG-LS DICOM",
        )
    plugin = _choose_plugin(ts, label)
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
            raise _missing_decoder(label, ts, exc) from exc
        # e.g. "Unknown Value Representation 'UP' in tag (0028,0101)": a damaged header
        raise CorruptImageError(label, f"damaged DICOM ({_short(str(exc), 120)})") from exc
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except MemoryError as exc:
        raise ImageTooLargeError(label, "not enough memory to decode this image") from exc
    except BaseException as exc:  # decoders raise anything, Rust ones even panics (BaseException)
        msg = str(exc)
        low = msg.lower()
        if "no pixel data decoders" in low or "missing required dependencies" in low:
            raise _missing_decoder(label, ts, exc) from exc
        if "all available plugins" in low:
            msg = msg.split(":", 1)[-1]
        what = f"{name} pixel data" if name and ts not in NATIVE_TRANSFER_SYNTAXES else "DICOM pixel data"
        if isinstance(exc, ValueError) and ("length" in low or "size" in low or "buffer" in low):
            raise CorruptImageError(
                label, f"DICOM pixel data does not match Rows/Columns/Bits ({_short(msg)})"
            ) from exc
        raise CorruptImageError(
            label, f"cannot decode the {what}: damaged ({_short(msg, 120)})"
        ) from exc
    arr = np.asarray(arr)
    if meta.number_of_frames > 1 and arr.ndim == 3 and arr.shape[0] == meta.number_of_frames:
        arr = arr[0]
    if arr.ndim != 2:
        raise UnsupportedImageError(label, f"pixel data has shape {arr.shape}, expected one 2-D frame")
    return arr


def _short(msg: str, limit: int = 160) -> str:
    msg = " ".join(msg.split())
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def _missing_decoder(label: str | None, ts: str, exc: BaseException) -> MissingDecoderError:
    name, packages = TRANSFER_SYNTAX_DECODERS.get(ts, ("", ""))
    if name:
        return MissingDecoderError(
            label, f"unsupported transfer syntax {ts} ({name})", f"install {packages}"
        )
    return MissingDecoderError(label, f"unsupported transfer syntax {ts or '(none given)'}")


def _modality_lut(arr: np.ndarray, ds: Any) -> tuple[np.ndarray, float, float]:
    """Apply the modality LUT; return values and the output range of the stored values."""
    from pydicom.pixels import apply_modality_lut

    stored = _int_tag(ds, "BitsStored", 16) or 16
    signed = (_int_tag(ds, "PixelRepresentation", 0) or 0) == 1
    if signed:
        smin, smax = -(2 ** (stored - 1)), 2 ** (stored - 1) - 1
    else:
        smin, smax = 0, 2**stored - 1
    if "ModalityLUTSequence" in ds:
        item = ds.ModalityLUTSequence[0]
        out = apply_modality_lut(arr, ds).astype(np.float32)
        lut_bits = _lut_bits(item)
        return out, 0.0, float(2**lut_bits - 1)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    lo, hi = sorted((smin * slope + intercept, smax * slope + intercept))
    if not all(np.isfinite(v) for v in (slope, intercept)) or max(abs(lo), abs(hi)) > 1e30:
        raise ValueError(f"invalid Rescale Slope/Intercept {slope:g}/{intercept:g}")
    out = arr.astype(np.float32)  # the one copy: integers to float32 image units
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)
    return out, float(lo), float(hi)


def _lut_bits(item: Any) -> int:
    try:
        bits = int(item.LUTDescriptor[2])
        return bits if 1 <= bits <= 16 else 16
    except Exception:
        return 16


def _windows(ds: Any) -> list[Window]:
    centers = ds.get("WindowCenter")
    widths = ds.get("WindowWidth")
    if centers is None or widths is None:
        return []
    cs = list(centers) if isinstance(centers, (list, tuple)) or type(centers).__name__ == "MultiValue" else [centers]
    ws = list(widths) if isinstance(widths, (list, tuple)) or type(widths).__name__ == "MultiValue" else [widths]
    names_raw = ds.get("WindowCenterWidthExplanation")
    if names_raw is None:
        names: list[str] = []
    elif isinstance(names_raw, (list, tuple)) or type(names_raw).__name__ == "MultiValue":
        names = [str(n) for n in names_raw]
    else:
        names = [str(names_raw)]
    function = _text(ds, "VOILUTFunction").upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    out = []
    for i, (c, w) in enumerate(zip(cs, ws, strict=False)):
        try:
            cf, wf = float(c), float(w)
        except (TypeError, ValueError):
            continue
        if wf <= 0 or not np.isfinite(cf) or not np.isfinite(wf):
            continue
        label = names[i] if i < len(names) and names[i] else f"DICOM window {i + 1}"
        out.append(Window(cf, wf, label, function))
    return out


def _lut_array(item: Any, little_endian: bool) -> np.ndarray:
    """LUT Data as numbers: pydicom gives a list (US) or raw bytes (OW)."""
    raw = item.LUTData
    if isinstance(raw, (bytes, bytearray)):
        return np.frombuffer(raw, dtype="<u2" if little_endian else ">u2").astype(np.float32)
    return np.asarray(raw, dtype=np.float32).ravel()


def _voi_lut_sequence(ds: Any, values: np.ndarray, notes: list[str]) -> np.ndarray | None:
    """Apply the first VOI LUT of the sequence: float32 [0, 1], or None if absent/invalid."""
    if "VOILUTSequence" not in ds:
        return None
    try:
        item = ds.VOILUTSequence[0]
        desc = item.LUTDescriptor
        n_entries = int(desc[0]) or 65536
        first = int(desc[1])
        if first >= 32768 and (_int_tag(ds, "PixelRepresentation", 0) or 0) == 1:
            first -= 65536  # US-encoded negative first mapped value
        bits = _lut_bits(item)
        little = bool(getattr(ds, "original_encoding", (None, True))[1] in (True, None))
        lut = _lut_array(item, little)
        if lut.size < n_entries:
            raise ValueError(f"{lut.size} entries, descriptor says {n_entries}")
        lut = lut[:n_entries] * np.float32(1.0 / float(2**bits - 1))
        np.clip(lut, 0.0, 1.0, out=lut)
        idx = np.rint(values).astype(np.int64)
        idx -= first
        np.clip(idx, 0, n_entries - 1, out=idx)
        return lut[idx]
    except Exception as exc:
        notes.append("unreadable VOI LUT sequence ignored: using the window instead")
        log.debug("VOI LUT sequence ignored: %s", type(exc).__name__)
        return None


def _load_dicom(data: bytes, label: str | None) -> XRay:
    ds = _read_dataset(data, label)
    if not hasattr(ds, "file_meta") or "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        # No File Meta header (a "raw" data set): pydicom guessed the encoding; record it.
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

        if not hasattr(ds, "file_meta") or ds.file_meta is None:
            ds.file_meta = FileMetaDataset()
        ts = ImplicitVRLittleEndian if ds.is_implicit_VR else ExplicitVRLittleEndian
        ds.file_meta.TransferSyntaxUID = ts
    meta = _dicom_metadata(ds)
    notes = _check_dicom(ds, meta, label)
    notes += _check_pixel_data(ds, meta, label)
    arr = _decode_pixels(ds, meta, label)
    rows, cols = _int_tag(ds, "Rows"), _int_tag(ds, "Columns")
    if arr.shape != (rows, cols):
        raise CorruptImageError(
            label, f"decoded {arr.shape[1]}x{arr.shape[0]} pixels but Rows/Columns say {cols}x{rows}"
        )
    try:
        values, range_lo, range_hi = _modality_lut(arr, ds)
    except ValueError as exc:
        raise CorruptImageError(label, f"damaged modality LUT ({_short(str(exc), 100)})") from exc
    del arr
    stored = _int_tag(ds, "BitsStored", 8) or 8
    invert = meta.photometric == "MONOCHROME1"

    presets = _windows(ds)
    data_lo, data_hi = float(values.min()), float(values.max())
    full = Window.from_range(range_lo, range_hi, "Full stored range")
    data_range = Window.from_range(data_lo, data_hi if data_hi > data_lo else data_lo + 1, "Image min-max")

    lut_pixels = _voi_lut_sequence(ds, values, notes)
    if lut_pixels is not None:
        window = data_range
        pixels = lut_pixels
        notes_window = "VOI LUT sequence"
    elif presets:
        window = presets[0]
        pixels = window.apply(values)
        notes_window = window.name
    else:
        # Full stored range, unless the data clearly uses only a small part of it
        # (e.g. 12-bit data in a 16-bit Bits Stored), which would show near black.
        span = range_hi - range_lo
        if span > 0 and (data_hi - data_lo) < span / 16.0:
            window = data_range
            log.debug("no window and data use a small part of the stored range: showing min-max")
        else:
            window = full
        pixels = window.apply(values)
        notes_window = window.name
    log.debug("DICOM default view: %s", notes_window)
    if invert:
        np.subtract(np.float32(1.0), pixels, out=pixels)
    all_presets = [*presets, full, data_range]
    return XRay(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        values=values,
        bit_depth=int(stored),
        window=window,
        presets=tuple(all_presets),
        invert=invert,
        format="dicom",
        metadata=meta,
        source=label,
        warnings=tuple(notes),
    )


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


__all__ = [
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "StudyMetadata",
    "Window",
    "XRay",
    "detect_format",
    "load_xray",
    "loaders_available",
]
