"""Generated test images: a synthetic chest radiograph, valid PNG/JPEG/DICOM bytes, and a
corpus of hostile and broken files.

Nothing here is downloaded or committed as a binary: every file is built from code, so the
imaging, batch and reliability tests (and ``benchmarks/fuzz_loader.py``) can share it.

``generate_corpus(folder)`` writes the hostile corpus and returns ``[(path, expected)]``,
where ``expected`` is the :class:`~desktop.core.errors.ImageLoadError` subclass the loader must
raise for that file, or ``None`` for the few valid control files that must load.
:data:`CORPUS_MATCH` holds, per file name, a regular expression the error message must match.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from desktop.core.errors import (
    CorruptImageError,
    FileAccessError,
    ImageLoadError,
    ImageTooLargeError,
    NotAnImageError,
    UnsupportedImageError,
)

# ---------------------------------------------------------------------------
# A synthetic chest radiograph (bones and mediastinum white, lungs dark)
# ---------------------------------------------------------------------------


def synthetic_chest(height: int = 512, width: int = 448, seed: int = 0) -> np.ndarray:
    """A realistic-looking frontal chest X-ray, float32 in [0, 1], bones white.

    Body outline, two dark lung fields, a bright mediastinum and spine, ribs, clavicles,
    a diaphragm, soft-tissue gradients and a little noise. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    yn = y / height
    xn = (x - width / 2) / (width / 2)  # -1..1, 0 at the midline

    img = np.full((height, width), 0.05, dtype=np.float32)  # air outside the body
    body = (xn / 0.92) ** 2 + ((yn - 0.62) / 0.62) ** 2 < 1.0
    img[body] = 0.55
    # shoulders / upper arms
    for side in (-1, 1):
        arm = ((xn - side * 0.86) / 0.16) ** 2 + ((yn - 0.35) / 0.35) ** 2 < 1.0
        img[arm] = 0.62
    # lungs: dark ellipses, darker towards the top and the lateral side
    lungs = np.zeros_like(img, dtype=bool)
    for side in (-1, 1):
        cx = side * 0.42
        lung = ((xn - cx) / 0.30) ** 2 + ((yn - 0.50) / 0.33) ** 2 < 1.0
        lung &= yn > 0.18
        lungs |= lung
        shade = 0.16 + 0.10 * yn + 0.05 * (1 - np.abs(xn - cx) / 0.3)
        img[lung] = shade[lung]
    # mediastinum and heart (bright, left of the patient = right of the image)
    medi = (np.abs(xn + 0.03) < 0.16 - 0.05 * (yn - 0.2)) & (yn > 0.12) & (yn < 0.78)
    heart = ((xn - 0.12) / 0.28) ** 2 + ((yn - 0.66) / 0.14) ** 2 < 1.0
    img[medi | heart] = 0.70
    # diaphragm: below the lungs bright soft tissue
    dia = body & (yn > 0.80 + 0.04 * np.cos(xn * 3.0))
    img[dia] = 0.66
    # spine: bright column with vertebrae
    spine = np.abs(xn) < 0.07
    vert = 0.06 * (np.sin(yn * 90.0) > 0.6)
    img[spine & body] = np.maximum(img[spine & body], (0.78 + vert)[spine & body])
    # ribs: bright arcs over the lungs
    for k in range(10):
        for side in (-1, 1):
            y0 = 0.22 + k * 0.058
            curve = y0 - 0.05 * np.abs(xn) + 0.30 * xn**2
            rib = (np.abs(yn - curve) < 0.010) & (np.abs(xn) > 0.08) & (np.abs(xn) < 0.80)
            rib &= np.sign(xn) == side
            img[rib & body] += 0.16
    # clavicles
    for side in (-1, 1):
        clav = (np.abs(yn - (0.17 + 0.06 * np.abs(xn))) < 0.012) & (np.abs(xn) > 0.05)
        clav &= (np.abs(xn) < 0.6) & (np.sign(xn) == side)
        img[clav] += 0.2
    # vessels: faint branching texture in the lungs
    texture = rng.normal(0.0, 1.0, (height // 8 + 1, width // 8 + 1)).astype(np.float32)
    tex = np.asarray(
        Image.fromarray(texture).resize((width, height), Image.Resampling.BICUBIC)
    )
    img[lungs] += 0.025 * tex[lungs]
    # blur a little (sum of shifted copies), then noise
    img = (img + np.roll(img, 1, 0) + np.roll(img, -1, 0) + np.roll(img, 1, 1) + np.roll(img, -1, 1)) / 5
    img += rng.normal(0.0, 0.008, img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def quantize(pixels: np.ndarray, bits: int) -> np.ndarray:
    """[0, 1] floats to unsigned integers of ``bits`` bits (uint8 or uint16)."""
    top = 2**bits - 1
    out = np.round(np.clip(pixels, 0.0, 1.0) * top)
    return out.astype(np.uint8 if bits <= 8 else np.uint16)


# ---------------------------------------------------------------------------
# Valid files as bytes
# ---------------------------------------------------------------------------


def png_bytes(image: np.ndarray | Image.Image, **save: object) -> bytes:
    """PNG bytes of an array (uint8 -> L, uint16 -> 16-bit) or a PIL image."""
    im = image if isinstance(image, Image.Image) else _to_pil(image)
    buf = io.BytesIO()
    im.save(buf, format="PNG", **save)
    return buf.getvalue()


def jpeg_bytes(image: np.ndarray | Image.Image, quality: int = 92, **save: object) -> bytes:
    im = image if isinstance(image, Image.Image) else _to_pil(image)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality, **save)
    return buf.getvalue()


def _to_pil(arr: np.ndarray) -> Image.Image:
    if arr.dtype == np.uint16:
        return Image.fromarray(arr.astype(np.uint16))
    if arr.dtype == np.uint8:
        return Image.fromarray(arr)
    return Image.fromarray(quantize(arr, 8))


def dicom_bytes(
    stored: np.ndarray,
    *,
    bits_stored: int | None = None,
    bits_allocated: int | None = None,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    transfer_syntax: str = "1.2.840.10008.1.2.1",
    modality: str = "DX",
    signed: bool = False,
    rescale: tuple[float, float] | None = None,
    extra: Callable[[object], None] | None = None,
) -> bytes:
    """A DICOM Part 10 file holding ``stored`` (2-D integers), in ``transfer_syntax``.

    Compressed syntaxes (RLE, JPEG-LS lossless, JPEG 2000 lossless) are encoded with pydicom's
    own encoders (pylibjpeg-rle / pyjpegls / pylibjpeg-openjpeg). ``extra(ds)`` may edit the data
    set before it is written.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    arr = np.asarray(stored)
    if arr.ndim != 2:
        raise ValueError("stored must be 2-D")
    bits_allocated = bits_allocated or (8 if arr.dtype.itemsize == 1 else 16)
    bits_stored = bits_stored or bits_allocated
    ts = UID(transfer_syntax)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["cxr-test", str(arr.shape)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientName = "Test^Synthetic"
    ds.PatientID = "SYN-0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = "20240101"
    ds.Manufacturer = "CXR Screener tests"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if window is not None:
        ds.WindowCenter = f"{window[0]:g}"
        ds.WindowWidth = f"{window[1]:g}"
    if rescale is not None:
        ds.RescaleSlope = f"{rescale[0]:g}"
        ds.RescaleIntercept = f"{rescale[1]:g}"
    dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16}
    pixels = np.ascontiguousarray(arr.astype(dtype[(bits_allocated, signed)]))
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"
    if ts != ExplicitVRLittleEndian:
        if ts.is_compressed:
            ds.compress(ts, pixels)
        else:
            meta.TransferSyntaxUID = ts
    if extra is not None:
        extra(ds)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# ---------------------------------------------------------------------------
# Low-level edits
# ---------------------------------------------------------------------------


def png_chunks(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(offset, type, body) of every chunk of a PNG."""
    out = []
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        out.append((pos, ctype, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def png_chunk(ctype: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(ctype + body) if crc is None else crc
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc & 0xFFFFFFFF)


def png_with_dimensions(width: int, height: int, depth: int = 8, colour: int = 0) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` (CRC valid) over a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def png_bad_crc(data: bytes, chunk: bytes = b"IDAT") -> bytes:
    """Flip the CRC of the first ``chunk``."""
    for pos, ctype, body in png_chunks(data):
        if ctype == chunk:
            end = pos + 8 + len(body)
            crc = bytes(b ^ 0xFF for b in data[end : end + 4])
            return data[:end] + crc + data[end + 4 :]
    raise ValueError(f"no {chunk!r} chunk")


def jpeg_broken_huffman(data: bytes) -> bytes:
    """Make the first DHT table claim more codes than the standard allows."""
    pos = data.find(b"\xff\xc4")
    if pos < 0:
        raise ValueError("no DHT marker")
    body = bytearray(data)
    # after marker (2) + length (2) + class/id (1): 16 code-length counts
    for i in range(16):
        body[pos + 5 + i] = 0xFF
    return bytes(body)


def dicom_replace(data: bytes, old: bytes, new: bytes, count: int = 1) -> bytes:
    if old not in data:
        raise ValueError(f"{old!r} not found")
    return data.replace(old, new, count)


def _tag(group: int, element: int) -> bytes:
    return struct.pack("<HH", group, element)


def _explicit(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"OF", b"OD", b"OL", b"UC", b"UR", b"OV"):
        return _tag(group, element) + vr + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return _tag(group, element) + vr + struct.pack("<H", len(value)) + value


def dicom_element_after_meta(data: bytes) -> int:
    """Offset of the first data set element after the File Meta group (explicit VR LE)."""
    pos = 132
    while pos + 8 <= len(data):
        group, _element = struct.unpack("<HH", data[pos : pos + 4])
        if group != 0x0002:
            return pos
        (length,) = struct.unpack("<H", data[pos + 6 : pos + 8])
        vr = data[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
            (length,) = struct.unpack("<I", data[pos + 8 : pos + 12])
            pos += 12 + length
        else:
            pos += 8 + length
    return pos


def dicom_insert(data: bytes, element: bytes) -> bytes:
    """Insert raw element bytes right after the File Meta group (order is not checked)."""
    pos = dicom_element_after_meta(data)
    return data[:pos] + element + data[pos:]


def nested_sequences(depth: int) -> bytes:
    """An explicit-VR sequence (0040,A730 Content Sequence) nested ``depth`` times, undefined lengths."""
    open_seq = _tag(0x0040, 0xA730) + b"SQ\x00\x00" + b"\xff\xff\xff\xff"
    open_item = _tag(0xFFFE, 0xE000) + b"\xff\xff\xff\xff"
    close_item = _tag(0xFFFE, 0xE00D) + b"\x00\x00\x00\x00"
    close_seq = _tag(0xFFFE, 0xE0DD) + b"\x00\x00\x00\x00"
    return (open_seq + open_item) * depth + (close_item + close_seq) * depth


# ---------------------------------------------------------------------------
# The hostile corpus
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HostileCase:
    """One corpus file: bytes to write (or a special filesystem object), what must happen."""

    name: str
    data: bytes | None
    expected: type[ImageLoadError] | None
    match: str = ""
    special: str = ""  # "dir", "symlink_loop", "dangling_link", "unreadable"


def small_chest(bits: int = 8, size: tuple[int, int] = (96, 80)) -> np.ndarray:
    return quantize(synthetic_chest(size[0], size[1], seed=1), bits)


def valid_samples() -> dict[str, bytes]:
    """Small valid files of each kind (the seeds of the fuzzing)."""
    img8 = small_chest(8)
    img16 = small_chest(12).astype(np.uint16)
    return {
        "valid.png": png_bytes(img8),
        "valid16.png": png_bytes(quantize(synthetic_chest(96, 80, 1), 16)),
        "valid.jpg": jpeg_bytes(img8),
        "valid.dcm": dicom_bytes(img16, bits_stored=12, window=(2048, 4096)),
        "valid_mono1_rle.dcm": dicom_bytes(
            (4095 - img16).astype(np.uint16), bits_stored=12, photometric="MONOCHROME1",
            transfer_syntax="1.2.840.10008.1.2.5",
        ),
        "valid_j2k.dcm": dicom_bytes(img16, bits_stored=12, transfer_syntax="1.2.840.10008.1.2.4.90"),
        "valid_jls.dcm": dicom_bytes(img16, bits_stored=12, transfer_syntax="1.2.840.10008.1.2.4.80"),
        "valid_jpeg.dcm": dicom_jpeg_baseline(img8),
        **({"valid_jpll.dcm": jpll} if (jpll := dicom_jpeg_lossless(img16, 12)) else {}),
    }


def dicom_jpeg_baseline(img8: np.ndarray) -> bytes:
    """An 8-bit JPEG Baseline DICOM: Pillow's JPEG, encapsulated by pydicom."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    jpg = jpeg_bytes(img8, quality=90)

    def edit(ds: object) -> None:
        ds.PixelData = encapsulate([jpg])  # type: ignore[attr-defined]
        ds["PixelData"].VR = "OB"  # type: ignore[index]
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit  # type: ignore[attr-defined]
        ds.LossyImageCompression = "01"  # type: ignore[attr-defined]

    return dicom_bytes(img8, extra=edit)


def dicom_jpeg_lossless(stored: np.ndarray, bits: int) -> bytes | None:
    """A JPEG Lossless SV1 DICOM transcoded by python-gdcm (None if gdcm is not installed)."""
    try:
        import gdcm  # type: ignore[import-not-found]
    except ImportError:
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "a.dcm"), os.path.join(tmp, "b.dcm")
        Path(src).write_bytes(dicom_bytes(stored, bits_stored=bits))
        reader = gdcm.ImageReader()
        reader.SetFileName(src)
        if not reader.Read():
            return None
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(reader.GetImage())
        if not change.Change():
            return None
        writer = gdcm.ImageWriter()
        writer.SetFileName(dst)
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        if not writer.Write():
            return None
        return Path(dst).read_bytes()


def _truncations(data: bytes, n: int) -> Iterable[int]:
    """``n`` offsets spread over the file (always including the first bytes)."""
    offs = {1, 7, 64, 131}
    offs.update(int(len(data) * k / (n + 1)) for k in range(1, n + 1))
    offs.add(len(data) - 1)
    return sorted(o for o in offs if 0 < o < len(data))


def truncated_expectation(fmt: str, offset: int) -> type[ImageLoadError]:
    """Which error a file of ``fmt`` cut at ``offset`` gives."""
    sig = {"png": 8, "jpeg": 3, "dicom": 132}[fmt]
    return NotAnImageError if offset < sig else CorruptImageError


def hostile_cases(truncation_offsets: int = 8) -> list[HostileCase]:
    """Every hostile case, as data (not yet written)."""
    samples = valid_samples()
    png, jpg, dcm = samples["valid.png"], samples["valid.jpg"], samples["valid.dcm"]
    rng = np.random.default_rng(1234)
    cases: list[HostileCase] = [
        HostileCase("ok_control.png", png, None),
        HostileCase("ok_control.dcm", dcm, None),
        HostileCase("empty.png", b"", NotAnImageError, "empty file"),
        HostileCase("empty.dcm", b"", NotAnImageError, "empty file"),
        HostileCase("random.dcm", rng.bytes(4096), NotAnImageError, "not an image"),
        HostileCase("random.png", rng.bytes(4096), NotAnImageError, "not an image"),
        HostileCase("random.jpg", rng.bytes(300), NotAnImageError, "not an image"),
        HostileCase("text.png", b"hello, this is not an image\n" * 20, NotAnImageError, "not an image"),
        HostileCase("pdf_named.dcm", b"%PDF-1.4\n" + rng.bytes(200), UnsupportedImageError, "PDF"),
        HostileCase("png_bad_crc_idat.png", png_bad_crc(png, b"IDAT"), CorruptImageError, "checksum"),
        HostileCase("png_bad_crc_ihdr.png", png_bad_crc(png, b"IHDR"), CorruptImageError, "checksum"),
        HostileCase(
            "png_100000x100000.png", png_with_dimensions(100000, 100000), ImageTooLargeError,
            r"100000x100000 pixels.*limit",
        ),
        HostileCase(
            "png_100000x1.png", png_with_dimensions(100000, 1), UnsupportedImageError, "too small"
        ),
        HostileCase("png_0x0.png", png_with_dimensions(0, 0), CorruptImageError, "0x0"),
        HostileCase("jpeg_bad_huffman.jpg", jpeg_broken_huffman(jpg), CorruptImageError, "damaged JPEG"),
        HostileCase(
            "jpeg_no_scan.jpg", jpg[: jpg.find(b"\xff\xda")] + b"\xff\xd9", CorruptImageError, "JPEG"
        ),
    ]
    for name, data, fmt in (("png", png, "png"), ("jpg", jpg, "jpeg"), ("dcm", dcm, "dicom")):
        for off in _truncations(data, truncation_offsets):
            exp = truncated_expectation(fmt, off)
            cases.append(
                HostileCase(
                    f"truncated_{off:06d}.{name}", data[:off], exp,
                    "not an image" if exp is NotAnImageError else "truncated|damaged|pixel data",
                )
            )
    cases += dicom_hostile_cases(dcm)
    cases += [
        HostileCase("a_folder.png", None, FileAccessError, "folder", special="dir"),
        HostileCase("loop.dcm", None, FileAccessError, "symbolic link|links", special="symlink_loop"),
        HostileCase("dangling.png", None, FileAccessError, "not found", special="dangling_link"),
        HostileCase("unreadable.png", png, FileAccessError, "permission", special="unreadable"),
    ]
    return cases


def dicom_hostile_cases(dcm: bytes) -> list[HostileCase]:
    """Broken and non-chest DICOM files, from a valid 12-bit one."""
    img16 = small_chest(12).astype(np.uint16)
    rows = struct.pack("<H", img16.shape[0])
    rows_tag = _tag(0x0028, 0x0010) + b"US\x02\x00" + rows
    ba_tag = _tag(0x0028, 0x0100) + b"US\x02\x00" + struct.pack("<H", 16)
    bs_tag = _tag(0x0028, 0x0101) + b"US\x02\x00" + struct.pack("<H", 12)
    ts_explicit = b"1.2.840.10008.1.2.1\x00"
    pixel_tag = _tag(0x7FE0, 0x0010) + b"OW\x00\x00"
    pix_at = dcm.find(pixel_tag)

    def edited(fn: Callable[[object], None]) -> bytes:
        return dicom_bytes(img16, bits_stored=12, extra=fn)

    def no_pixels(ds: object) -> None:
        del ds.PixelData  # type: ignore[attr-defined]

    def ct(ds: object) -> None:
        ds.Modality = "CT"  # type: ignore[attr-defined]

    def mr(ds: object) -> None:
        ds.Modality = "MR"  # type: ignore[attr-defined]

    def many_frames(ds: object) -> None:
        ds.NumberOfFrames = 1000000  # type: ignore[attr-defined]

    rgb = np.stack([small_chest(8)] * 3, axis=-1)

    def colour_us(ds: object) -> None:
        ds.Modality = "US"  # type: ignore[attr-defined]
        ds.SamplesPerPixel = 3  # type: ignore[attr-defined]
        ds.PhotometricInterpretation = "RGB"  # type: ignore[attr-defined]
        ds.PlanarConfiguration = 0  # type: ignore[attr-defined]
        ds.BitsAllocated = ds.BitsStored = 8  # type: ignore[attr-defined]
        ds.HighBit = 7  # type: ignore[attr-defined]
        ds.PixelData = rgb.tobytes()  # type: ignore[attr-defined]

    def colour_dx(ds: object) -> None:
        colour_us(ds)
        ds.Modality = "DX"  # type: ignore[attr-defined]

    huge_len = _tag(0x0009, 0x0010) + b"LO\x04\x00" + b"CXR "
    huge_len += _tag(0x0009, 0x1001) + b"OB\x00\x00" + struct.pack("<I", 0x40000000) + b"\x00" * 64
    return [
        HostileCase("dicom_no_pixel_data.dcm", edited(no_pixels), CorruptImageError, "no pixel data"),
        HostileCase(
            "dicom_rows_too_large.dcm",
            dicom_replace(dcm, rows_tag, rows_tag[:-2] + struct.pack("<H", img16.shape[0] * 4)),
            CorruptImageError, "pixel data",
        ),
        HostileCase(
            "dicom_rows_zero.dcm", dicom_replace(dcm, rows_tag, rows_tag[:-2] + b"\x00\x00"),
            CorruptImageError, "Rows/Columns",
        ),
        HostileCase(
            "dicom_rows_huge.dcm", dicom_replace(dcm, rows_tag, rows_tag[:-2] + b"\xff\xff"),
            CorruptImageError, "pixel data",
        ),
        HostileCase(
            "dicom_bits_stored_gt_allocated.dcm",
            dicom_replace(dcm, bs_tag, bs_tag[:-2] + struct.pack("<H", 24)),
            CorruptImageError, "Bits Stored 24",
        ),
        HostileCase(
            "dicom_bits_allocated_12.dcm",
            dicom_replace(dcm, ba_tag, ba_tag[:-2] + struct.pack("<H", 12)),
            CorruptImageError, "Bits Allocated 12",
        ),
        HostileCase(
            "dicom_unknown_transfer_syntax.dcm",
            dicom_replace(dcm, ts_explicit, b"1.2.3.4.5.6.7.8.9.1\x00"),
            UnsupportedImageError, r"transfer syntax 1\.2\.3\.4\.5\.6\.7\.8\.9\.1",
        ),
        HostileCase(
            "dicom_wrong_vr_rows.dcm",
            dicom_replace(dcm, rows_tag, _tag(0x0028, 0x0010) + b"DS\x02\x00" + b"ab"),
            CorruptImageError, "Rows/Columns",
        ),
        HostileCase(
            "dicom_unknown_vr.dcm",
            dicom_replace(dcm, rows_tag, _tag(0x0028, 0x0010) + b"ZZ\x02\x00" + rows),
            CorruptImageError, "Rows/Columns",
        ),
        HostileCase(
            "dicom_unknown_vr_bits_stored.dcm",
            dicom_replace(dcm, bs_tag, _tag(0x0028, 0x0101) + b"UP\x02\x00" + struct.pack("<H", 12)),
            CorruptImageError, r"damaged DICOM \(Unknown Value Representation 'UP'",
        ),
        HostileCase(
            "dicom_pixel_length_past_eof.dcm",
            dcm[: pix_at + 8] + struct.pack("<I", 0x7FFFFFF0) + dcm[pix_at + 12 :],
            CorruptImageError, r"truncated DICOM: element \(7FE0,0010\) declares 2147483632 bytes",
        ),
        HostileCase(
            "dicom_1GB_declared_length.dcm", dicom_insert(dcm, huge_len), CorruptImageError,
            r"truncated DICOM: element \(0009,1001\) declares 1073741824 bytes",
        ),
        HostileCase(
            "dicom_nested_1000.dcm", dicom_insert(dcm, nested_sequences(1000)), CorruptImageError,
            "nested",
        ),
        HostileCase("dicom_ct.dcm", edited(ct), UnsupportedImageError, "CT image"),
        HostileCase("dicom_mr.dcm", edited(mr), UnsupportedImageError, "MR image"),
        HostileCase("dicom_colour_us.dcm", edited(colour_us), UnsupportedImageError, "ultrasound"),
        HostileCase("dicom_colour_dx.dcm", edited(colour_dx), UnsupportedImageError, "colour image"),
        HostileCase("dicom_million_frames.dcm", edited(many_frames), CorruptImageError, "pixel data"),
    ]


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def generate_corpus(folder: str | os.PathLike[str], truncation_offsets: int = 8) -> list[tuple[Path, type[ImageLoadError] | None]]:
    """Write the hostile corpus into ``folder``; return ``[(path, expected error class or None)]``.

    Special entries: a folder named like an image, a symlink loop, a dangling symlink and an
    unreadable file (``chmod 000``; expected to load when running as root, who reads anyway).
    The error message of each entry matches :data:`CORPUS_MATCH` ``[path.name]``.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    out: list[tuple[Path, type[ImageLoadError] | None]] = []
    for case in hostile_cases(truncation_offsets):
        path = root / case.name
        expected = case.expected
        if case.special == "dir":
            path.mkdir(exist_ok=True)
        elif case.special == "symlink_loop":
            if path.is_symlink():
                path.unlink()
            path.symlink_to(path.name)
        elif case.special == "dangling_link":
            if path.is_symlink():
                path.unlink()
            path.symlink_to("does_not_exist.png")
        else:
            path.write_bytes(case.data or b"")
            if case.special == "unreadable":
                path.chmod(0)
                if is_root():
                    expected = None
        CORPUS_MATCH[case.name] = case.match
        out.append((path, expected))
    return out


#: Regular expression the error message of each corpus file must match (filled by generate_corpus).
CORPUS_MATCH: dict[str, str] = {}



# ---------------------------------------------------------------------------
# Mutations (fuzzing): shared by tests/test_fuzz_loader.py and benchmarks/fuzz_loader.py
# ---------------------------------------------------------------------------

#: Values that tend to break parsers: zero, one, sign and width boundaries, huge lengths.
INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x40000000,
               0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)

#: One mutation: (kind, position as a fraction of the length, argument).
#: Kinds: flip (bit), byte (value), u16 / u32 (value, little or big endian by the sign of
#: the position draw), delete (count), insert (bytes), dup (count), cut.
Mutation = tuple[str, float, int | bytes]


def apply_mutations(data: bytes, ops: Iterable[Mutation], header_bias: int = 2048) -> bytes:
    """Apply ``ops`` in order. Positions below 0.5 fall in the first ``header_bias`` bytes
    (headers are where parsers go wrong), the others anywhere in the file."""
    buf = bytearray(data)
    for kind, where, arg in ops:
        n = len(buf)
        if n == 0:
            buf = bytearray(arg if isinstance(arg, bytes) else b"")
            continue
        if where < 0.5:
            pos = int(where * 2 * min(n, header_bias)) % n
        else:
            pos = int((where - 0.5) * 2 * n) % n
        a = arg if isinstance(arg, int) else 0
        if kind == "flip":
            buf[pos] ^= 1 << (a % 8)
        elif kind == "byte":
            buf[pos] = a & 0xFF
        elif kind in ("u16", "u16be"):
            buf[pos : pos + 2] = (a & 0xFFFF).to_bytes(2, "big" if kind == "u16be" else "little")
        elif kind in ("u32", "u32be"):
            buf[pos : pos + 4] = (a & 0xFFFFFFFF).to_bytes(4, "big" if kind == "u32be" else "little")
        elif kind == "delete":
            del buf[pos : pos + max(a, 1)]
        elif kind == "insert":
            buf[pos:pos] = arg if isinstance(arg, bytes) else bytes([a & 0xFF])
        elif kind == "dup":
            chunk = buf[pos : pos + max(a, 1)]
            buf[pos:pos] = chunk
        elif kind == "cut":
            del buf[max(pos, 1) :]
    return bytes(buf)


MUTATION_KINDS = ("flip", "byte", "u16", "u16be", "u32", "u32be", "delete", "insert", "dup", "cut")


def random_mutations(rng: random.Random, max_ops: int = 6) -> list[Mutation]:
    """Mutations drawn from a :class:`random.Random` (the long fuzz run)."""
    ops: list[Mutation] = []
    for _ in range(rng.randint(1, max_ops)):
        kind = rng.choice(MUTATION_KINDS)
        where = rng.random()
        arg: int | bytes
        if kind in ("u16", "u16be", "u32", "u32be"):
            arg = rng.choice(INTERESTING) if rng.random() < 0.8 else rng.getrandbits(32)
        elif kind == "insert":
            arg = rng.randbytes(rng.choice((1, 2, 4, 16, 300)))
        elif kind in ("delete", "dup"):
            arg = rng.choice((1, 2, 4, 8, 100, 1000))
        else:
            arg = rng.getrandbits(8)
        ops.append((kind, where, arg))
    return ops


__all__ = [
    "CORPUS_MATCH",
    "INTERESTING",
    "MUTATION_KINDS",
    "HostileCase",
    "Mutation",
    "apply_mutations",
    "dicom_bytes",
    "dicom_jpeg_baseline",
    "dicom_jpeg_lossless",
    "generate_corpus",
    "hostile_cases",
    "jpeg_bytes",
    "png_bytes",
    "quantize",
    "random_mutations",
    "synthetic_chest",
    "valid_samples",
]
