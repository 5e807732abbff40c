"""Reduced-resolution decoding (``load_xray(..., target=...)``): same file facts, same prediction.

For every encoding the imaging tests use (PNG 8/16-bit and colour, JPEG, DICOM uncompressed,
implicit VR, RLE, JPEG-LS, JPEG 2000, JPEG Baseline, MONOCHROME1) a large film is loaded in
full and with the bundled model's input size as target: the reduced load keeps the file's
sha256, metadata and default window, has the expected size, and p(covid) of the bundled model
moves by less than 0.02. The real DICOMs of ../shared are held to the same.

The film is a real radiograph of ``assets/samples`` (the one whose p(covid), ~0.84, is the
least saturated) upscaled to 1000x900 and 1800x1800 with a little pixel noise.
``tests.hostile.synthetic_chest`` is not used here: a cartoon of flat regions with
pixel-sharp edges, far from anything the model was trained on, it puts the model where a
small change of blur moves p(covid) by 0.02-0.06 (box-averaging the full decode by 2 does
it alone), which says nothing about decoding.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop.core.imaging import XRay, load_xray
from desktop.core.imaging.resolution import (
    box_reduce,
    parse_target,
    reduced_shape,
    reduction_factor,
    scan_target,
)
from tests.hostile import dicom_bytes, jpeg_bytes, png_bytes, quantize, synthetic_chest

BUNDLED = Path(__file__).resolve().parents[1] / "assets" / "models" / "mobilenet-covid-v1"
TARGET = (224, 224)
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
RLE = "1.2.840.10008.1.2.5"
JLS = "1.2.840.10008.1.2.4.80"
J2K = "1.2.840.10008.1.2.4.90"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
MAX_SHIFT = 0.02

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "samples" / "ieee8023__41182_2020_203_Fig3_HTML.jpg"


def film(height: int, width: int, seed: int) -> np.ndarray:
    """The sample radiograph upscaled (bicubic) to ``height`` x ``width``, float32 [0, 1], noise 0.01."""
    base = load_xray(SAMPLE).pixels
    up = np.asarray(Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC))
    noise = np.random.default_rng(seed).normal(0.0, 0.01, up.shape).astype(np.float32)
    return np.clip(up + noise, 0.0, 1.0)


#: 1000x900 reduces by 2 for a 224 target; 1800x1800 by 4.
SMALL_SHAPE, LARGE_SHAPE = (1000, 900), (1800, 1800)


def jpeg_dicom(gray8: np.ndarray, quality: int = 92, photometric: str = "MONOCHROME2") -> bytes:
    """A JPEG Baseline (process 1) DICOM of an 8-bit image, encoded with Pillow."""
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(gray8, modality="CR", photometric=photometric)))
    buf = io.BytesIO()
    Image.fromarray(gray8).save(buf, "JPEG", quality=quality)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = UID(JPEG_BASELINE)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def rgb_png(gray8: np.ndarray) -> bytes:
    rgb = np.stack([gray8, gray8, np.clip(gray8.astype(int) + 3, 0, 255).astype(np.uint8)], axis=-1)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


#: name -> (bytes, expected decode scale)
@functools.cache
def encodings() -> dict[str, tuple[bytes, int]]:
    """Made once, on first use (not at collection: the JPEG 2000 encodes take seconds)."""
    small, large = film(*SMALL_SHAPE, seed=21), film(*LARGE_SHAPE, seed=22)
    s8, s12, s16 = quantize(small, 8), quantize(small, 12), quantize(small, 16)
    l8, l16 = quantize(large, 8), quantize(large, 16)
    return {
        "png8": (png_bytes(s8), 2),
        "png16": (png_bytes(s16), 2),
        "png_rgb": (rgb_png(s8), 2),
        "jpeg": (jpeg_bytes(l8), 4),
        "dicom_explicit_12": (dicom_bytes(s12, bits_stored=12), 2),
        "dicom_implicit_16": (dicom_bytes(s16, bits_stored=16, transfer_syntax=IMPLICIT), 2),
        "dicom_rle_12_window": (dicom_bytes(s12, bits_stored=12, transfer_syntax=RLE, window=(2048, 4096)), 2),
        "dicom_jpegls_16": (dicom_bytes(s16, bits_stored=16, transfer_syntax=JLS), 2),
        "dicom_j2k_16": (dicom_bytes(l16, bits_stored=16, transfer_syntax=J2K), 4),
        "dicom_j2k_12_mono1": (
            dicom_bytes(
                (4095 - quantize(large, 12)).astype(np.uint16),
                bits_stored=12,
                photometric="MONOCHROME1",
                transfer_syntax=J2K,
            ),
            4,
        ),
        "dicom_jpeg_baseline": (jpeg_dicom(l8), 4),
    }


NAMES = [
    "dicom_explicit_12",
    "dicom_implicit_16",
    "dicom_j2k_12_mono1",
    "dicom_j2k_16",
    "dicom_jpeg_baseline",
    "dicom_jpegls_16",
    "dicom_rle_12_window",
    "jpeg",
    "png16",
    "png8",
    "png_rgb",
]


def test_names_list_every_encoding() -> None:
    assert sorted(encodings()) == NAMES


@pytest.fixture(scope="module")
def predictor():
    from desktop.core.inference import Predictor

    return Predictor(BUNDLED)


def p_covid(predictor, xray: XRay) -> float:
    return predictor.predict(xray)[0].p_covid


def test_target_semantics() -> None:
    assert parse_target(None) is None
    assert parse_target(224) == (224, 224)
    assert parse_target((224, 300)) == (224, 300)
    with pytest.raises(ValueError, match=r"Received: target=0"):
        parse_target(0)
    assert reduction_factor((3000, 2500), TARGET) == 4  # 625 >= 2 x 224 > 312
    assert reduction_factor((3000, 2500), None) == 1
    assert reduction_factor((447, 5000), TARGET) == 1
    assert reduction_factor((1000, 900), TARGET) == 2
    assert reduced_shape((1001, 900), 2) == (501, 450)


def test_box_reduce_is_the_block_mean() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4096, size=(1030, 77)).astype(np.uint16)  # stripes and a ragged edge
    out = box_reduce(a, 4)
    assert out.dtype == np.float32
    assert out.shape == (258, 20)
    whole = a[:1028, :76].astype(np.float64).reshape(257, 4, 19, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(out[:257, :19], whole, rtol=1e-5)
    np.testing.assert_allclose(out[-1, -1], a[1028:, 76:].mean(), rtol=1e-5)  # edge block: own pixels


def test_no_target_is_the_full_decode() -> None:
    data, _ = encodings()["dicom_explicit_12"]
    xray = load_xray(data, target=None)
    assert xray.decode_scale == 1
    assert not xray.reduced
    assert xray.full_shape == xray.shape == SMALL_SHAPE


def test_small_film_is_not_reduced() -> None:
    small = quantize(synthetic_chest(400, 380, seed=1), 8)
    xray = load_xray(png_bytes(small), target=TARGET)
    assert xray.decode_scale == 1
    np.testing.assert_array_equal(xray.pixels, load_xray(png_bytes(small)).pixels)


@pytest.mark.parametrize("name", NAMES)
def test_reduced_decode_keeps_file_facts_and_prediction(predictor, name: str) -> None:
    data, scale = encodings()[name]
    full = load_xray(data, name=f"{name}.bin")
    small = load_xray(data, name=f"{name}.bin", target=TARGET)
    assert small.decode_scale == scale
    assert small.reduced
    assert small.full_shape == full.shape
    assert small.shape == reduced_shape(full.shape, scale)
    assert small.sha256 == full.sha256
    assert small.metadata == full.metadata
    assert small.window == full.window
    assert small.invert == full.invert
    assert small.bit_depth == full.bit_depth
    assert small.pixels.dtype == np.float32
    # The reduced view is the full view, averaged (JPEG 2000's low-pass is not a box, and
    # differs at the film's sharp border: the median, not the mean).
    diff = np.abs(small.pixels - box_reduce(full.pixels, scale))
    assert float(np.median(diff)) < 0.01, name
    # what a scan asks for (desktop.core.imaging.resolution.scan_target): p(covid) barely moves
    scanned = load_xray(data, name=f"{name}.bin", target=scan_target(*TARGET))
    shift = abs(p_covid(predictor, scanned) - p_covid(predictor, full))
    assert shift < MAX_SHIFT, (name, shift)


@pytest.mark.parametrize("name", ["dicom_j2k_16", "dicom_jpeg_baseline"])
def test_codec_reduces_without_a_full_decode(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """JPEG 2000 and JPEG Baseline frames are decoded small by the codec, not decoded in full."""
    from desktop.core.imaging import dicom

    def no_full_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("full decode")

    monkeypatch.setattr(dicom, "decode_pixels", no_full_decode)
    data, scale = encodings()[name]
    assert load_xray(data, target=TARGET).decode_scale == scale


def test_exif_rotated_jpeg_reduced_keeps_orientation() -> None:
    q = quantize(synthetic_chest(1800, 1000, seed=5), 8)
    im = Image.fromarray(q)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92, exif=exif.tobytes())
    full = load_xray(buf.getvalue())
    small = load_xray(buf.getvalue(), target=TARGET)
    assert full.shape == (1000, 1800)
    assert small.full_shape == (1000, 1800)
    assert small.shape == reduced_shape((1000, 1800), small.decode_scale)
    assert small.decode_scale == 2


@pytest.mark.shared
def test_real_dicoms_reduced_prediction_moves_less_than_threshold(predictor) -> None:
    from tests.conftest import shared_path
    from tests.test_dicom_real import NAMES, REFUSED

    reduced = 0
    for name in NAMES:
        if name in REFUSED:
            continue
        path = shared_path("data", "dicom", name)
        full, small = load_xray(path), load_xray(path, target=TARGET)
        assert small.sha256 == full.sha256
        assert small.metadata == full.metadata
        assert small.window == full.window
        reduced += small.reduced
        scanned = load_xray(path, target=scan_target(*TARGET))
        shift = abs(p_covid(predictor, scanned) - p_covid(predictor, full))
        assert shift < MAX_SHIFT, (name, shift)
    assert reduced >= 10


def outcome(data: bytes, name: str, target: tuple[int, int] | None) -> str:
    from desktop.core.errors import ImageLoadError

    try:
        load_xray(data, name=name, target=target)
    except ImageLoadError as exc:
        named = name in str(exc)
        return type(exc).__name__ + ("" if named else " (message does not name the file)")
    return "ok"


def test_hostile_files_give_the_same_error_with_a_target() -> None:
    """The reduced paths (DCT scaling, JPEG 2000 levels, box filter) on damaged files: same refusals.

    The corpus films are ~96x80: a target of 8 makes them reduce by 4.
    """
    from tests.hostile import hostile_cases, valid_samples

    different = []
    for case in hostile_cases():
        if case.data is None:
            continue
        full, reduced = outcome(case.data, case.name, None), outcome(case.data, case.name, (8, 8))
        if full != reduced:
            different.append((case.name, full, reduced))
    for sample, data in valid_samples().items():
        assert outcome(data, sample, (8, 8)) == "ok"
        assert "does not name" not in outcome(b"\x00" * 300, sample, (8, 8))
        for off in range(1, len(data), max(len(data) // 60, 1)):
            name = f"cut_{off}_{sample}"
            full, reduced = outcome(data[:off], name, None), outcome(data[:off], name, (8, 8))
            if full != reduced:
                different.append((name, full, reduced))
    assert not different, different[:10]
