"""One way for tests to write a small, valid chest radiograph DICOM.

Every test that needs "a DICOM carrying patient data" builds it here, so the
file structure (file meta, UIDs, image pixel module) is written once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def write_chest_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    bits_stored: int = 12,
    pixel_data: bytes | None = None,
    **tags: Any,
) -> Path:
    """Write ``pixels`` (uint16, values < 2**bits_stored) as an uncompressed MONOCHROME2 CR.

    ``tags`` are DICOM keywords set on the data set (PatientName=..., WindowCenter=...,
    Modality="CT" to make a refused file). ``pixel_data`` replaces the encoded pixels
    (e.g. a truncated copy).
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    arr = np.asarray(pixels, dtype=np.uint16)
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = arr.tobytes() if pixel_data is None else pixel_data
    ds.save_as(path, enforce_file_format=True)
    return path
