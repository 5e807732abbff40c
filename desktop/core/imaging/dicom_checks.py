"""DICOM data sets: bounded reading, metadata, and the checks made before any pixel is decoded.

``read_dataset`` inflates a Deflated Explicit VR data set itself, bounded by what its own
header declares (pydicom would inflate it whole, unbounded); ``check_dicom`` refuses what is
not a grayscale projection radiograph; ``check_pixel_data`` holds Rows x Columns x frames x
Bits Allocated against the bytes present and each compressed frame to a whole codestream.
"""

from __future__ import annotations

import io
import logging
import warnings
import zlib
from typing import Any, BinaryIO, cast

from desktop.core.errors import (
    CorruptImageError,
    ImageLoadError,
    ImageTooLargeError,
    UnsupportedImageError,
)

from . import limits
from .codestream import check_codestream
from .dicom_tags import NATIVE_TRANSFER_SYNTAXES, TRANSFER_SYNTAX_DECODERS, int_tag, text
from .limits import short
from .types import StudyMetadata

log = logging.getLogger(__name__)

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


DEFLATED = "1.2.840.10008.1.2.1.99"
#: Bytes inflated first, to read the header that bounds the rest.
_INFLATE_HEAD = 256 * 1024
_INFLATE_CHUNK = 4 * 1024 * 1024
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def read_dataset(data: bytes, label: str | None) -> Any:
    """The pydicom data set of ``data``; a Deflated data set is inflated here, bounded."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            meta_end, ts = _file_meta_end(data)
            if ts == DEFLATED:
                ds = _read_deflated(data, meta_end, label)
            else:
                ds = pydicom.dcmread(io.BytesIO(data), force=True)
        check_element_lengths(ds, label)
        return ds
    except ImageLoadError:
        raise
    except InvalidDicomError as exc:
        raise CorruptImageError(label, f"invalid DICOM ({exc})") from exc
    except zlib.error as exc:
        raise CorruptImageError(label, f"damaged deflated DICOM ({short(str(exc), 100)})") from exc
    except (EOFError, OSError) as exc:
        raise CorruptImageError(label, "truncated DICOM") from exc
    except RecursionError as exc:
        raise CorruptImageError(label, "DICOM sequences nested too deeply") from exc
    except Exception as exc:
        raise CorruptImageError(label, f"damaged DICOM ({type(exc).__name__}: {exc})") from exc


def _file_meta_end(data: bytes) -> tuple[int, str]:
    """(offset after the File Meta group, its Transfer Syntax UID) of a file with a preamble; (0, "") otherwise."""
    if data[128:132] != b"DICM":
        return 0, ""
    pos, end, ts = 132, len(data), ""
    while pos + 8 <= end and int.from_bytes(data[pos : pos + 2], "little") == 0x0002:
        element = int.from_bytes(data[pos + 2 : pos + 4], "little")
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            length, head = int.from_bytes(data[pos + 8 : pos + 12], "little"), 12
        else:
            length, head = int.from_bytes(data[pos + 6 : pos + 8], "little"), 8
        if element == 0x0010:
            ts = data[pos + head : pos + head + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos += head + length
    return pos, ts


def _read_deflated(data: bytes, meta_end: int, label: str | None) -> Any:
    """Read a Deflated Explicit VR Little Endian file, inflating no more than its header declares.

    pydicom inflates the whole data set with ``zlib.decompress`` before reading a tag, so a
    small file can claim gigabytes; here the inflated size is held to the pixel data that
    Rows x Columns x frames x Bits Allocated describe (plus the other elements), and the
    largest accepted image at most.
    """
    import pydicom
    from pydicom.dataset import FileDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset as pydicom_read_dataset

    meta = pydicom.dcmread(io.BytesIO(data[:meta_end]), force=True)  # File Meta only: no inflating
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray(inflater.decompress(data[meta_end:], _INFLATE_HEAD))
    limit = _declared_size(bytes(out))
    while inflater.unconsumed_tail and len(out) <= limit:
        out += inflater.decompress(inflater.unconsumed_tail, min(_INFLATE_CHUNK, limit + 1 - len(out)))
    if len(out) <= limit:
        out += inflater.flush()
    if len(out) > limit:
        raise ImageTooLargeError(
            label,
            f"deflated DICOM inflates to more than {limit / 2**20:.0f} MiB, more than its header "
            "describes (refused as a possible decompression bomb)",
        )
    buffer = DicomBytesIO(bytes(out))
    del out
    dataset = pydicom_read_dataset(cast(BinaryIO, buffer), False, True)
    ds = FileDataset(label or "<bytes>", dataset, data[:128], meta.file_meta, False, True)
    ds.set_original_encoding(False, True, dataset._character_set)
    return ds


def _declared_size(head: bytes) -> int:
    """The most bytes an inflated data set may hold, from the Rows/Columns/... at its start."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset as pydicom_read_dataset

    ceiling = limits.max_inflated_bytes()
    try:
        ds = pydicom_read_dataset(
            cast(BinaryIO, DicomBytesIO(head)), False, True, stop_when=lambda tag, vr, length: tag == 0x7FE00010
        )
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception:  # no readable image header at the start: the general bound
        return ceiling
    declared = (rows * cols * bits + 7) // 8 * max(frames, 1)
    return min(ceiling, len(head) + declared + limits.INFLATE_SLACK_BYTES)


def check_element_lengths(ds: Any, label: str | None) -> None:
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
    # as missing later by check_dicom.


def dicom_metadata(ds: Any) -> StudyMetadata:
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
        patient_name=text(ds, "PatientName"),
        patient_id=text(ds, "PatientID"),
        patient_sex=text(ds, "PatientSex"),
        patient_birth_date=text(ds, "PatientBirthDate"),
        patient_age=text(ds, "PatientAge"),
        study_date=text(ds, "StudyDate"),
        study_time=text(ds, "StudyTime"),
        accession_number=text(ds, "AccessionNumber"),
        institution=text(ds, "InstitutionName"),
        modality=text(ds, "Modality").upper(),
        view_position=text(ds, "ViewPosition"),
        body_part=text(ds, "BodyPartExamined"),
        manufacturer=text(ds, "Manufacturer"),
        study_description=text(ds, "StudyDescription"),
        photometric=text(ds, "PhotometricInterpretation").upper(),
        transfer_syntax=ts,
        number_of_frames=frames,
    )


def check_dicom(ds: Any, meta: StudyMetadata, label: str | None) -> list[str]:
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
    samples = int_tag(ds, "SamplesPerPixel", 1)
    photometric = meta.photometric or "MONOCHROME2"
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnsupportedImageError(
            label, f"colour image ({photometric}, {samples} samples per pixel), expected a grayscale radiograph"
        )
    rows = int_tag(ds, "Rows")
    cols = int_tag(ds, "Columns")
    if not rows or not cols or rows < 0 or cols < 0:
        raise CorruptImageError(label, "DICOM has no valid Rows/Columns")
    if rows * cols > limits.MAX_PIXELS:
        raise ImageTooLargeError(
            label, f"{cols}x{rows} pixels, over the {limits.MAX_PIXELS / 1e6:.0f} megapixel limit"
        )
    if rows < 16 or cols < 16:
        raise UnsupportedImageError(label, f"{cols}x{rows} pixels: too small for an X-ray")
    allocated = int_tag(ds, "BitsAllocated")
    stored = int_tag(ds, "BitsStored", allocated)
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


def check_pixel_data(ds: Any, meta: StudyMetadata, label: str | None) -> list[str]:
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
    rows = int_tag(ds, "Rows") or 0
    cols = int_tag(ds, "Columns") or 0
    allocated = int_tag(ds, "BitsAllocated") or 16
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
        check_codestream(first_frame(raw, frames, label), ts, label)
    return notes


def first_frame(raw: bytes | bytearray, frames: int, label: str | None) -> bytes:
    from pydicom.encaps import generate_frames

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return next(generate_frames(bytes(raw) if isinstance(raw, bytearray) else raw, number_of_frames=frames))
    except StopIteration as exc:
        raise CorruptImageError(label, "encapsulated DICOM pixel data holds no frame") from exc
    except Exception as exc:
        raise CorruptImageError(
            label, f"damaged encapsulated DICOM pixel data ({short(str(exc), 100)})"
        ) from exc


