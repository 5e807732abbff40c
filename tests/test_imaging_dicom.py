"""One chest X-ray as PNG and as DICOM in many encodings: all render to the same image.

Everything is generated here with pydicom (RLE natively, JPEG-LS with pyjpegls, JPEG 2000
with pylibjpeg-openjpeg): 8/12/16 bits, MONOCHROME1 and 2, with and without a window,
signed pixels with a rescale, multi-frame, LUT sequences.
"""

from __future__ import annotations

import numpy as np
import pytest

from desktop.core.errors import CorruptImageError, UnsupportedImageError
from desktop.core.imaging import Window, XRay, detect_format, load_xray
from tests.hostile import dicom_bytes, png_bytes, quantize, synthetic_chest

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
RLE = "1.2.840.10008.1.2.5"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
JLS_LOSSLESS = "1.2.840.10008.1.2.4.80"
ENCODINGS = [EXPLICIT, IMPLICIT, RLE, J2K_LOSSLESS, JLS_LOSSLESS]

CHEST = synthetic_chest(256, 224, seed=7)


@pytest.fixture(scope="module")
def reference() -> XRay:
    """The chest as a 16-bit PNG: the image every DICOM version must show."""
    return load_xray(png_bytes(quantize(CHEST, 16)), name="chest16.png")


def as_dicom(bits: int, photometric: str, ts: str, window: bool) -> bytes:
    q = quantize(CHEST, bits)
    top = 2**bits - 1
    stored = (top - q.astype(np.int64)).astype(q.dtype) if photometric == "MONOCHROME1" else q
    return dicom_bytes(
        stored,
        bits_stored=bits,
        bits_allocated=8 if bits == 8 else 16,
        photometric=photometric,
        transfer_syntax=ts,
        # A window that covers exactly the stored range (DICOM C.11.2.1.2.1).
        window=(2 ** (bits - 1), 2**bits) if window else None,
    )


CASES = [
    (bits, photometric, ts, window)
    for bits in (8, 12, 16)
    for photometric in ("MONOCHROME2", "MONOCHROME1")
    for ts in ENCODINGS
    for window in (False, True)
    if not (window and ts in (IMPLICIT, J2K_LOSSLESS))  # keep the table CI-sized
]


@pytest.mark.parametrize(("bits", "photometric", "ts", "window"), CASES)
def test_dicom_encodings_render_like_the_png(
    reference: XRay, bits: int, photometric: str, ts: str, window: bool
) -> None:
    data = as_dicom(bits, photometric, ts, window)
    xray = load_xray(data, name=f"chest_{bits}_{photometric}.dcm")
    assert xray.format == "dicom"
    assert xray.metadata.transfer_syntax == ts
    assert xray.bit_depth == bits
    assert xray.invert == (photometric == "MONOCHROME1")
    assert xray.shape == reference.shape
    # Within rounding: half a step of the coarser quantisation, in [0, 1].
    tol = 0.5 / (2**bits - 1) + 0.5 / 65535 + 1e-6
    assert float(np.abs(xray.pixels - reference.pixels).max()) <= tol
    assert int(np.abs(xray.to_uint8().astype(int) - reference.to_uint8().astype(int)).max()) <= 1


@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_lossless_encodings_identical_to_uncompressed(bits: int, photometric: str) -> None:
    ref = load_xray(as_dicom(bits, photometric, EXPLICIT, False))
    for ts in (RLE, J2K_LOSSLESS, JLS_LOSSLESS, IMPLICIT):
        other = load_xray(as_dicom(bits, photometric, ts, False))
        np.testing.assert_array_equal(other.values, ref.values, err_msg=ts)
        np.testing.assert_array_equal(other.pixels, ref.pixels, err_msg=ts)


def test_8bit_dicom_and_8bit_png_identical() -> None:
    q = quantize(CHEST, 8)
    png = load_xray(png_bytes(q))
    for ts in ENCODINGS:
        dcm = load_xray(dicom_bytes(q, transfer_syntax=ts))
        np.testing.assert_array_equal(dcm.to_uint8(), png.to_uint8(), err_msg=ts)
        np.testing.assert_array_equal(dcm.to_uint8(), q, err_msg=ts)


def test_shared_sample_png_same_as_dicom() -> None:
    from tests.conftest import shared_path

    samples = shared_path("data", "samples")
    png_path = sorted(samples.glob("*.png"))[0]
    png = load_xray(png_path)
    q = png.to_uint8()
    for ts in (EXPLICIT, RLE, J2K_LOSSLESS, JLS_LOSSLESS):
        dcm = load_xray(dicom_bytes(q, transfer_syntax=ts, modality="CR"))
        np.testing.assert_array_equal(dcm.to_uint8(), q, err_msg=ts)


def test_signed_pixels_with_rescale() -> None:
    """12-bit signed stored values -2048..2047, intercept 2048: the same image as unsigned 0..4095."""
    q = quantize(CHEST, 12).astype(np.int32)
    signed = (q - 2048).astype(np.int16)
    for ts in (EXPLICIT, RLE):
        xray = load_xray(dicom_bytes(signed, bits_stored=12, signed=True, rescale=(1, 2048), transfer_syntax=ts))
        np.testing.assert_array_equal(xray.values, q.astype(np.float32))
        unsigned = load_xray(dicom_bytes(q.astype(np.uint16), bits_stored=12))
        np.testing.assert_allclose(xray.pixels, unsigned.pixels, atol=1e-6)


def test_rescale_slope_and_window_in_output_units() -> None:
    q = quantize(CHEST, 12)
    slope, intercept = 2.0, -1000.0
    values = q.astype(np.float32) * slope + intercept
    center, width = 2000.0, 3000.0
    xray = load_xray(dicom_bytes(q, bits_stored=12, rescale=(slope, intercept), window=(center, width)))
    np.testing.assert_allclose(xray.values, values)
    low = center - 0.5 - (width - 1) / 2
    high = center - 0.5 + (width - 1) / 2
    expected = np.clip((values - low) / (high - low), 0, 1)
    np.testing.assert_allclose(xray.pixels, expected, atol=1e-5)
    assert xray.window == Window(center, width, "DICOM window 1")


def test_several_windows_become_presets() -> None:
    q = quantize(CHEST, 12)

    def windows(ds: object) -> None:
        ds.WindowCenter = ["2048", "1000"]  # type: ignore[attr-defined]
        ds.WindowWidth = ["4096", "500"]  # type: ignore[attr-defined]
        ds.WindowCenterWidthExplanation = ["FULL", "LUNG"]  # type: ignore[attr-defined]

    xray = load_xray(dicom_bytes(q, bits_stored=12, extra=windows))
    names = [p.name for p in xray.presets]
    assert names[:2] == ["FULL", "LUNG"]
    assert xray.window.name == "FULL"
    lung = xray.render(xray.presets[1])
    assert float(lung.mean()) > float(xray.pixels.mean())  # narrower, lower window: brighter


def test_no_window_and_small_data_range_shows_min_max() -> None:
    """12-bit data in Bits Stored 16 without a window would show near black over the full range."""
    q = quantize(CHEST, 10)
    xray = load_xray(dicom_bytes(q, bits_stored=16))
    assert xray.window.name == "Image min-max"
    assert float(xray.pixels.max()) == 1.0


def test_nonlinear_voi_lut_sequence() -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    q = quantize(CHEST, 12)
    lut = np.round(65535 * (np.arange(4096) / 4095.0) ** 0.5).astype(np.uint16)  # gamma 0.5

    def voi(ds: object) -> None:
        item = Dataset()
        item.LUTDescriptor = [4096, 0, 16]
        item.LUTData = lut.tobytes()
        item["LUTData"].VR = "OW"
        ds.VOILUTSequence = Sequence([item])  # type: ignore[attr-defined]
        ds.WindowCenter, ds.WindowWidth = "100", "10"  # type: ignore[attr-defined]  # the LUT wins

    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        xray = load_xray(dicom_bytes(q, bits_stored=12, photometric=photometric, extra=voi))
        expected = lut[q].astype(np.float64) / 65535
        if photometric == "MONOCHROME1":
            expected = 1 - expected
        np.testing.assert_allclose(xray.pixels, expected, atol=1e-6)


def test_multiframe_shows_first_frame_with_a_warning() -> None:
    q = quantize(CHEST, 12)
    frames = np.stack([q, 4095 - q, q // 2]).astype(np.uint16)

    def multi(ds: object) -> None:
        ds.NumberOfFrames = 3  # type: ignore[attr-defined]
        ds.PixelData = frames.tobytes()  # type: ignore[attr-defined]

    xray = load_xray(dicom_bytes(q, bits_stored=12, extra=multi), name="multi.dcm")
    np.testing.assert_array_equal(xray.values, q.astype(np.float32))
    assert any("first frame" in w for w in xray.warnings)
    assert xray.metadata.number_of_frames == 3


def test_multiframe_rle_first_frame() -> None:
    from pydicom.uid import RLELossless

    q = quantize(CHEST, 12)
    frames = np.stack([q, 4095 - q]).astype(np.uint16)

    def multi(ds: object) -> None:
        ds.NumberOfFrames = 2  # type: ignore[attr-defined]
        ds.compress(RLELossless, frames)  # type: ignore[attr-defined]

    xray = load_xray(dicom_bytes(q, bits_stored=12, extra=multi))
    np.testing.assert_array_equal(xray.values, q.astype(np.float32))


def test_pixel_data_slightly_longer_is_accepted_much_longer_refused() -> None:
    q = quantize(CHEST, 12)

    def pad(n: int):
        def edit(ds: object) -> None:
            ds.PixelData = q.tobytes() + b"\x00" * n  # type: ignore[attr-defined]

        return edit

    load_xray(dicom_bytes(q, bits_stored=12, extra=pad(2)))  # even padding: fine
    with pytest.raises(CorruptImageError, match=r"more than Rows/Columns"):
        load_xray(dicom_bytes(q, bits_stored=12, extra=pad(q.shape[1] * 2 * 10)), name="long.dcm")


def test_dicom_detected_by_content_not_name(tmp_path) -> None:
    data = as_dicom(12, "MONOCHROME2", EXPLICIT, False)
    path = tmp_path / "looks_like.png"
    path.write_bytes(data)
    assert detect_format(data[:132]) == "dicom"
    assert load_xray(path).format == "dicom"
    png = tmp_path / "image.dcm"
    png.write_bytes(png_bytes(quantize(CHEST, 8)))
    assert load_xray(png).format == "png"


def test_raw_dataset_without_preamble_detected() -> None:
    data = as_dicom(8, "MONOCHROME2", EXPLICIT, False)
    # Drop preamble, "DICM" and the whole File Meta group: a bare explicit VR data set.
    from tests.hostile import dicom_element_after_meta

    raw = data[dicom_element_after_meta(data) :]
    assert detect_format(raw[:132]) == "dicom"
    xray = load_xray(raw, name="raw.dcm")
    np.testing.assert_array_equal(xray.to_uint8(), quantize(CHEST, 8))


@pytest.mark.parametrize("modality", ["CT", "MR", "US", "NM", "PT"])
def test_non_projection_modalities_refused(modality: str) -> None:
    data = dicom_bytes(quantize(CHEST, 12), bits_stored=12, modality=modality)
    with pytest.raises(UnsupportedImageError, match=rf"\(modality {modality}\), expected a radiograph"):
        load_xray(data, name="scan.dcm")


def test_unusual_modality_and_body_part_warn() -> None:
    def hand(ds: object) -> None:
        ds.BodyPartExamined = "HAND"  # type: ignore[attr-defined]

    xray = load_xray(dicom_bytes(quantize(CHEST, 8), modality="XX", extra=hand))
    assert any("unusual modality" in w for w in xray.warnings)
    assert any("HAND" in w for w in xray.warnings)


def test_metadata_fields() -> None:
    xray = load_xray(as_dicom(12, "MONOCHROME2", EXPLICIT, False))
    meta = xray.metadata
    assert meta.patient_name == "Test^Synthetic"
    assert meta.patient_id == "SYN-0001"
    assert meta.patient_birth_date == "19700101"
    assert meta.modality == "DX"
    assert meta.body_part == "CHEST"
    assert meta.view_position == "PA"
    assert "Test^Synthetic" not in repr(xray)
    assert "SYN-0001" not in repr(meta)
    assert set(meta.identifying_values()) >= {"Test^Synthetic", "SYN-0001", "19700101"}


def test_window_semantics_match_dicom() -> None:
    w = Window(center=2048, width=4096)
    assert (w.low, w.high) == (0.0, 4095.0)
    assert Window.from_range(0, 4095) == Window(2048, 4096)
    out = w.apply(np.array([-5, 0, 4095, 5000], dtype=np.float32))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0, 0, 1, 1])
    one = Window(100, 1)  # width 1: a threshold
    np.testing.assert_array_equal(one.apply(np.array([99, 100], dtype=np.float32)), [0, 1])


@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"])
def test_big_endian_and_deflated_transfer_syntaxes(ts: str) -> None:
    import io

    import pydicom

    q = quantize(CHEST, 12)
    ref = load_xray(dicom_bytes(q, bits_stored=12))
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(q, bits_stored=12)))
    big = ts == "1.2.840.10008.1.2.2"
    if big:
        ds.PixelData = q.astype(">u2").tobytes()
    ds.file_meta.TransferSyntaxUID = ts
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, little_endian=not big, implicit_vr=False, force_encoding=True)
    xray = load_xray(buf.getvalue(), name="encoded.dcm")
    assert xray.metadata.transfer_syntax == ts
    np.testing.assert_array_equal(xray.values, ref.values)


@pytest.mark.parametrize("function", ["SIGMOID", "LINEAR_EXACT"])
def test_voi_lut_function(function: str) -> None:
    q = quantize(CHEST, 12)
    center, width = 2000.0, 1500.0

    def voi_function(ds: object) -> None:
        ds.VOILUTFunction = function  # type: ignore[attr-defined]

    xray = load_xray(dicom_bytes(q, bits_stored=12, window=(center, width), extra=voi_function))
    assert xray.window.function == function
    v = q.astype(np.float64)
    if function == "SIGMOID":
        expected = 1.0 / (1.0 + np.exp(-4.0 * (v - center) / width))
    else:
        expected = np.clip((v - (center - width / 2)) / width, 0, 1)
    np.testing.assert_allclose(xray.pixels, expected, atol=2e-6)
    # Re-rendering with the default window gives the default view.
    np.testing.assert_allclose(xray.render(xray.window), xray.pixels, atol=1e-7)
