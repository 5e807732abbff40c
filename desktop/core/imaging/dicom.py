"""DICOM radiographs: the data set checked, decoded and mapped to what a radiologist's viewer shows.

Modality LUT (rescale or LUT sequence), then VOI LUT (LUT sequence, else the first window
centre/width, else the full stored range), then MONOCHROME1 inversion, so bones are
always white. Colour and non-projection images (CT, MR, ...) are refused.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from desktop.core.errors import CorruptImageError

from .dicom_checks import check_dicom, check_pixel_data, dicom_metadata, first_frame, read_dataset
from .dicom_decode import J2K, JPEG_BASELINE, decode_pixels, decode_reduced
from .dicom_tags import int_tag
from .luts import modality_lut, voi_lut_sequence, windows
from .resolution import box_reduce, reduced_shape, reduction_factor
from .types import StudyMetadata, Window, XRay

log = logging.getLogger(__name__)


def load_dicom(data: bytes, label: str | None, target: tuple[int, int] | None = None) -> XRay:
    """A DICOM file as an :class:`XRay`; with a ``target``, decoded at a reduced resolution.

    The steps: read the data set (bounded), refuse what is not a grayscale radiograph,
    check the pixel data against the header, decode the first frame (reduced by the codec
    where it can, then box-filtered for the rest), modality LUT, then the default view:
    VOI LUT sequence, else the first window, else the stored range; MONOCHROME1 inverted.
    """
    ds = read_dataset(data, label)
    if not hasattr(ds, "file_meta") or "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        # No File Meta header (a "raw" data set): pydicom guessed the encoding; record it.
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

        if not hasattr(ds, "file_meta") or ds.file_meta is None:
            ds.file_meta = FileMetaDataset()
        ts = ImplicitVRLittleEndian if ds.is_implicit_VR else ExplicitVRLittleEndian
        ds.file_meta.TransferSyntaxUID = ts
    meta = dicom_metadata(ds)
    notes = check_dicom(ds, meta, label)
    notes += check_pixel_data(ds, meta, label)
    rows, cols = int_tag(ds, "Rows") or 0, int_tag(ds, "Columns") or 0
    k = reduction_factor((rows, cols), target)
    arr, scale = _decode_scaled(ds, meta, label, k)
    if arr.shape != reduced_shape((rows, cols), scale):
        raise CorruptImageError(
            label, f"decoded {arr.shape[1]}x{arr.shape[0]} pixels but Rows/Columns say {cols}x{rows}"
        )
    if k > scale:
        arr = box_reduce(arr, k // scale)
    values, range_lo, range_hi = modality_lut(arr, ds, label)
    del arr
    stored = int_tag(ds, "BitsStored", 8) or 8
    invert = meta.photometric == "MONOCHROME1"

    presets = windows(ds)
    data_lo, data_hi = float(values.min()), float(values.max())
    full = Window.from_range(range_lo, range_hi, "Full stored range")
    data_range = Window.from_range(data_lo, data_hi if data_hi > data_lo else data_lo + 1, "Image min-max")

    lut_pixels = voi_lut_sequence(ds, values, notes)
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
        decode_scale=k,
        stored_shape=(rows, cols) if k > 1 else None,
    )


def _decode_scaled(ds: Any, meta: StudyMetadata, label: str | None, k: int) -> tuple[np.ndarray, int]:
    """The first frame's stored values and the scale the codec decoded them at (1: full)."""
    ts = meta.transfer_syntax
    if k > 1 and ts in (*JPEG_BASELINE, *J2K):
        raw = ds.get_item("PixelData").value
        got = decode_reduced(first_frame(raw, max(meta.number_of_frames, 1), label), ts, ds, k)
        if got is not None:
            return got
    return decode_pixels(ds, meta, label), 1




__all__ = ["load_dicom"]
