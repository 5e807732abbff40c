"""The imaging core against the real DICOM files of ../shared/data/dicom (skipped without it).

Every file of the manifest renders or is refused as its ``decode_check``/``purpose`` says;
pixel values, orientation (MONOCHROME1 shown with bones white), LUT sequences, the
no-File-Meta implicit VR file and decoder agreement across encodings are pinned.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from desktop.core.errors import UnsupportedImageError
from desktop.core.imaging import Window, XRay, load_xray
from tests.conftest import shared_path

pytestmark = pytest.mark.shared

DICOM = "data/dicom"
NAMES = [
    "focdicom_CR-MONO1-10-chest_nometa_implicitVR.dcm",
    "focdicom_CR-ModalitySequenceLUT_mono1_jpeg_lossless.dcm",
    "pydicom_CT_small_negative_case.dcm",
    "pydicom_mlut_18_modality_LUT_sequence.dcm",
    "pydicom_vlut_04_VOI_LUT_sequence.dcm",
    "rsna_c64d5667_CR_chest_AP_mono2_8bit_jpegbaseline.dcm",
    "wg04_RG1_J2KI_CR_chest_PA_mono1_15bit_j2k_lossy.dcm",
    "wg04_RG1_JLSN_CR_chest_PA_mono1_15bit_jpegls_nearlossless.dcm",
    "wg04_RG2_J2KR_CR_hip_mono2_10bit_j2k_lossless.dcm",
    "wg04_RG2_JLSL_CR_hip_mono2_10bit_jpegls_lossless.dcm",
    "wg04_RG2_JPLL_CR_hip_mono2_10bit_jpeg_lossless_sv1.dcm",
    "wg04_RG2_JPLY_CR_hip_mono2_10bit_jpeg_extended_12bit.dcm",
    "wg04_RG2_RLE_CR_hip_mono2_10bit_rle.dcm",
    "wg04_RG2_UNC_CR_hip_mono2_10bit_explicitLE.dcm",
    "wg04_RG3_JPLL_CR_extremity_mono1_10bit_jpeg_lossless.dcm",
    "wg04_RG3_RLE_CR_extremity_mono1_10bit_rle.dcm",
]

#: Files the loader must refuse, and the message it gives. The 12-bit JPEG Extended file has no
#: shippable decoder (python-gdcm refuses 12-bit JPEG Extended; pylibjpeg-libjpeg is GPL).
REFUSED = {
    "pydicom_CT_small_negative_case.dcm": r"CT image \(modality CT\), expected a radiograph",
    "wg04_RG2_JPLY_CR_hip_mono2_10bit_jpeg_extended_12bit.dcm": (
        r"transfer syntax 1\.2\.840\.10008\.1\.2\.4\.51 \(JPEG Extended \(12-bit\)\)"
    ),
}

_CACHE: dict[str, XRay] = {}


def dicom_file(name: str) -> Path:
    return shared_path(DICOM, name)


def load(name: str) -> XRay:
    """Load once per test session (the WG04 files are 2000x2000: keep the suite fast)."""
    if name not in _CACHE:
        _CACHE[name] = load_xray(dicom_file(name))
    return _CACHE[name]


def manifest() -> list[dict[str, str]]:
    path = shared_path(DICOM, "MANIFEST.tsv")
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def region(p: np.ndarray, r0: float, r1: float, c0: float, c1: float) -> float:
    h, w = p.shape
    return float(p[int(r0 * h) : int(r1 * h), int(c0 * w) : int(c1 * w)].mean())


def test_manifest_lists_the_files_we_test() -> None:
    assert sorted(row["filename"] for row in manifest()) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_file_renders_or_is_refused_as_the_manifest_says(name: str) -> None:
    row = next(r for r in manifest() if r["filename"] == name)
    if name in REFUSED:
        with pytest.raises(UnsupportedImageError, match=REFUSED[name]) as info:
            load_xray(dicom_file(name))
        assert name in str(info.value)  # the message names the file
        negative = "NEGATIVE" in row["purpose"] or row["decode_check"].startswith("DECODE FAILED")
        assert negative
        return
    assert row["decode_check"].startswith("ok"), row["decode_check"]
    xray = load(name)
    rows, cols = int(row["rows"]), int(row["cols"])
    assert xray.shape == (rows, cols)
    assert xray.format == "dicom"
    assert xray.pixels.dtype == np.float32
    assert xray.values.dtype == np.float32
    assert 0.0 <= float(xray.pixels.min())
    assert float(xray.pixels.max()) <= 1.0
    assert float(xray.pixels.std()) > 0.05  # not a blank image
    assert xray.bit_depth == int(row["bits_stored"])
    assert xray.invert == (row["photometric"] == "MONOCHROME1")
    assert xray.metadata.photometric == row["photometric"]
    assert xray.metadata.modality == row["modality"]
    assert len(xray.sha256) == 64
    # decode_check: "ok uint16 0..979": the stored range (before the modality LUT).
    m = re.match(r"ok \w+ (-?\d+)\.\.(-?\d+)", row["decode_check"])
    assert m
    if row["modality_lut_seq"] != "True" and row["rescale"] in ("", "1/0"):
        assert float(xray.values.min()) == float(m.group(1))
        assert float(xray.values.max()) == float(m.group(2))
    if row["window_center"]:
        assert xray.window.center == pytest.approx(float(row["window_center"]))
        assert xray.window.width == pytest.approx(float(row["window_width"]))
    if row["body_part"] not in ("CHEST", "None", ""):
        assert any("not chest" in w for w in xray.warnings)


# Pinned (row, col, stored value after the modality LUT, default display value).
PINS = {
    "focdicom_CR-MONO1-10-chest_nometa_implicitVR.dcm": [
        (0, 0, 0.0, 1.0),
        (220, 220, 285.0, 0.7586),
        (146, 110, 676.0, 0.3763),
    ],
    "rsna_c64d5667_CR_chest_AP_mono2_8bit_jpegbaseline.dcm": [
        (512, 512, 134.0, 0.5255),
        (341, 256, 123.0, 0.4824),
    ],
    "wg04_RG2_UNC_CR_hip_mono2_10bit_explicitLE.dcm": [
        (0, 0, 893.0, 0.8739),
        (1070, 880, 404.0, 0.3959),
        (713, 440, 473.0, 0.4633),
    ],
    "wg04_RG3_RLE_CR_extremity_mono1_10bit_rle.dcm": [
        (0, 0, 0.0, 1.0),
        (880, 880, 306.0, 0.7380),
    ],
    "pydicom_mlut_18_modality_LUT_sequence.dcm": [(0, 0, 32759.0, 0.4999), (170, 128, 19652.0, 0.2999)],
}


@pytest.mark.parametrize("name", sorted(PINS))
def test_pinned_pixel_values(name: str) -> None:
    xray = load(name)
    for r, c, value, shown in PINS[name]:
        assert float(xray.values[r, c]) == value, (r, c)
        assert float(xray.pixels[r, c]) == pytest.approx(shown, abs=6e-5), (r, c)


def test_stored_values_agree_with_pydicom() -> None:
    import pydicom

    name = "wg04_RG2_UNC_CR_hip_mono2_10bit_explicitLE.dcm"
    ref = pydicom.dcmread(dicom_file(name)).pixel_array
    np.testing.assert_array_equal(load(name).values, ref.astype(np.float32))


@pytest.mark.parametrize(
    "name",
    [
        "focdicom_CR-MONO1-10-chest_nometa_implicitVR.dcm",  # MONOCHROME1
        "wg04_RG1_J2KI_CR_chest_PA_mono1_15bit_j2k_lossy.dcm",  # MONOCHROME1
        "wg04_RG1_JLSN_CR_chest_PA_mono1_15bit_jpegls_nearlossless.dcm",  # MONOCHROME1
        "rsna_c64d5667_CR_chest_AP_mono2_8bit_jpegbaseline.dcm",  # MONOCHROME2
    ],
)
def test_chest_orientation_bones_white_lungs_dark(name: str) -> None:
    """Lung fields show darker than the mediastinum and the lower spine, whatever the photometric."""
    p = load(name).pixels
    right_lung = region(p, 0.30, 0.60, 0.20, 0.35)
    left_lung = region(p, 0.30, 0.60, 0.65, 0.80)
    mediastinum = region(p, 0.30, 0.60, 0.45, 0.55)
    lower_spine = region(p, 0.85, 0.95, 0.40, 0.60)
    for lung in (right_lung, left_lung):
        assert mediastinum - lung > 0.1
        assert lower_spine - lung > 0.1


def test_monochrome1_chest_shoulders_brighter_than_lungs() -> None:
    p = load("focdicom_CR-MONO1-10-chest_nometa_implicitVR.dcm").pixels
    shoulders = region(p, 0.05, 0.15, 0.0, 0.15)
    lung = region(p, 0.30, 0.60, 0.20, 0.35)
    assert shoulders > lung + 0.1
    # MONOCHROME1: low stored values are white. The corner (raw 0) shows white.
    xray = load("focdicom_CR-MONO1-10-chest_nometa_implicitVR.dcm")
    assert xray.invert
    assert float(xray.values[0, 0]) == 0.0
    assert float(xray.pixels[0, 0]) == 1.0


def test_monochrome1_render_with_another_window_stays_inverted() -> None:
    xray = load("focdicom_CR-MONO1-10-chest_nometa_implicitVR.dcm")
    wide = xray.render(Window(512, 1024))
    assert wide.dtype == np.float32
    assert float(wide[0, 0]) == 1.0  # raw 0 still white
    np.testing.assert_allclose(xray.render(xray.window), xray.pixels, atol=1e-6)


RG2 = [
    "wg04_RG2_RLE_CR_hip_mono2_10bit_rle.dcm",
    "wg04_RG2_JPLL_CR_hip_mono2_10bit_jpeg_lossless_sv1.dcm",
    "wg04_RG2_J2KR_CR_hip_mono2_10bit_j2k_lossless.dcm",
    "wg04_RG2_JLSL_CR_hip_mono2_10bit_jpegls_lossless.dcm",
]


@pytest.mark.parametrize("name", RG2)
def test_rg2_lossless_encodings_identical_to_uncompressed(name: str) -> None:
    ref = load("wg04_RG2_UNC_CR_hip_mono2_10bit_explicitLE.dcm")
    xray = load(name)
    np.testing.assert_array_equal(xray.values, ref.values)
    np.testing.assert_array_equal(xray.pixels, ref.pixels)
    assert xray.metadata.transfer_syntax != ref.metadata.transfer_syntax


def test_rg3_rle_and_jpeg_lossless_identical() -> None:
    a = load("wg04_RG3_RLE_CR_extremity_mono1_10bit_rle.dcm")
    b = load("wg04_RG3_JPLL_CR_extremity_mono1_10bit_jpeg_lossless.dcm")
    np.testing.assert_array_equal(a.pixels, b.pixels)


def test_rg1_lossy_j2k_and_near_lossless_jpegls_close() -> None:
    a = load("wg04_RG1_J2KI_CR_chest_PA_mono1_15bit_j2k_lossy.dcm").pixels
    b = load("wg04_RG1_JLSN_CR_chest_PA_mono1_15bit_jpegls_nearlossless.dcm").pixels
    diff = np.abs(a - b)
    assert float(diff.mean()) < 0.003
    assert float(np.percentile(diff, 99.9)) < 0.03
    assert float(np.corrcoef(a.ravel()[::7], b.ravel()[::7])[0, 1]) > 0.999


def test_voi_lut_sequence_applied_as_pydicom_does() -> None:
    import pydicom
    from pydicom.pixels import apply_voi_lut

    name = "pydicom_vlut_04_VOI_LUT_sequence.dcm"
    ds = pydicom.dcmread(dicom_file(name))
    bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    expected = apply_voi_lut(ds.pixel_array, ds).astype(np.float64) / (2**bits - 1)
    xray = load(name)
    np.testing.assert_allclose(xray.pixels, expected, atol=1e-6)
    # (This file's LUT is linear; test_imaging_dicom.py checks a non-linear one.)


def test_modality_lut_sequence_applied_as_pydicom_does() -> None:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    name = "pydicom_mlut_18_modality_LUT_sequence.dcm"
    ds = pydicom.dcmread(dicom_file(name))
    expected = apply_modality_lut(ds.pixel_array, ds)
    xray = load(name)
    np.testing.assert_array_equal(xray.values, expected.astype(np.float32))
    assert int(ds.PixelRepresentation) == 1
    assert float(ds.pixel_array.min()) < 0
    assert float(xray.values.min()) >= 0.0  # the LUT's output range


def test_modality_lut_sequence_monochrome1_cr() -> None:
    xray = load("focdicom_CR-ModalitySequenceLUT_mono1_jpeg_lossless.dcm")
    assert xray.invert
    assert xray.bit_depth == 10
    # The LUT says 16-bit output but the image uses 10 bits: shown over its own range.
    assert xray.window.name == "Image min-max"
    assert float(xray.pixels.std()) > 0.15


def test_no_file_meta_implicit_vr_file() -> None:
    name = "focdicom_CR-MONO1-10-chest_nometa_implicitVR.dcm"
    raw = dicom_file(name).read_bytes()
    assert raw[128:132] != b"DICM"  # no preamble, no File Meta
    xray = load_xray(raw, name=name)
    assert xray.metadata.transfer_syntax == "1.2.840.10008.1.2"  # implicit VR little endian
    assert xray.metadata.modality == "CR"
    assert xray.metadata.view_position == "PA"
    assert xray.shape == (440, 440)
    assert xray.source == name


def test_metadata_read_but_identifying_fields_not_in_repr() -> None:
    xray = load("rsna_c64d5667_CR_chest_AP_mono2_8bit_jpegbaseline.dcm")
    meta = xray.metadata
    assert meta.modality == "CR"
    assert meta.body_part == "CHEST"
    assert meta.view_position == "AP"
    assert meta.patient_sex == "F"
    for value in meta.identifying_values():
        assert value not in repr(meta)
        assert value not in repr(xray)
