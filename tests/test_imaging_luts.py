"""The float32 paths kept beside pydicom hold to pydicom: rescale (modality LUT) and windowing.

``desktop.core.imaging.luts.modality_lut`` and ``Window.apply`` compute in float32 where
pydicom's ``apply_modality_lut`` / ``apply_windowing`` use float64 (twice the memory); here
they are compared with pydicom on the real DICOMs of ../shared and on synthetic files.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from desktop.core.imaging import Window, load_xray
from desktop.core.imaging.luts import modality_lut, windows
from tests.hostile import dicom_bytes, quantize, synthetic_chest

CHEST = synthetic_chest(256, 224, seed=9)


def dataset(data: bytes):
    import pydicom

    return pydicom.dcmread(io.BytesIO(data))


def synthetic() -> dict[str, bytes]:
    q12 = quantize(CHEST, 12)
    signed = (q12.astype(np.int32) - 2048).astype(np.int16)
    return {
        "no rescale": dicom_bytes(q12, bits_stored=12, window=(2048, 4096)),
        "slope 2 intercept -1000": dicom_bytes(q12, bits_stored=12, rescale=(2, -1000), window=(3000, 5000)),
        "slope 0.5 intercept 0.25": dicom_bytes(q12, bits_stored=12, rescale=(0.5, 0.25), window=(900, 1500)),
        "signed, intercept 2048": dicom_bytes(
            signed, bits_stored=12, signed=True, rescale=(1, 2048), window=(2048, 4096)
        ),
        "16-bit, slope 0.001": dicom_bytes(quantize(CHEST, 16), rescale=(0.001, -5), window=(30, 60)),
    }


def real_files() -> list[str]:
    from tests.test_dicom_real import NAMES, REFUSED

    return [n for n in NAMES if n not in REFUSED]


def assert_rescale_parity(ds) -> None:
    from pydicom.pixels import apply_modality_lut

    arr = ds.pixel_array
    ours, _, _ = modality_lut(arr, ds)
    ref = apply_modality_lut(arr, ds)
    assert ours.dtype == np.float32
    scale = max(float(np.abs(ref).max()), 1.0)
    np.testing.assert_allclose(ours, ref.astype(np.float64), rtol=1e-6, atol=scale * 1e-7)


@pytest.mark.parametrize("name", sorted(synthetic()))
def test_rescale_matches_pydicom_synthetic(name: str) -> None:
    assert_rescale_parity(dataset(synthetic()[name]))


@pytest.mark.shared
def test_rescale_and_lut_sequences_match_pydicom_real() -> None:
    import pydicom

    from tests.conftest import shared_path

    for name in real_files():
        ds = pydicom.dcmread(shared_path("data", "dicom", name), force=True)
        if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
            from pydicom.uid import ImplicitVRLittleEndian

            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        assert_rescale_parity(ds)


def windowing_reference(values: np.ndarray, ds, window: Window) -> np.ndarray:
    """pydicom's apply_windowing for ``window``, scaled to [0, 1] by its output range."""
    from pydicom.pixels import apply_windowing

    ds.WindowCenter, ds.WindowWidth = f"{window.center:.6f}", f"{window.width:.6f}"
    ds.VOILUTFunction = window.function
    ds.pop("VOILUTSequence", None)
    # pydicom's output range: Bits Stored (or the LUT's bits), through the rescale.
    with np.errstate(over="ignore"):  # pydicom's sigmoid overflows exp() far from the centre
        probe = apply_windowing(np.array([-1e12, 1e12]), ds)
        out = apply_windowing(values.astype(np.float64), ds)
    y_min, y_max = float(probe[0]), float(probe[1])
    return (out - y_min) / (y_max - y_min)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize("name", sorted(synthetic()))
def test_window_matches_pydicom_synthetic(name: str, function: str) -> None:
    data = synthetic()[name]
    ds = dataset(data)
    xray = load_xray(data)
    (base,) = windows(ds)
    window = Window(base.center, base.width, function=function)
    expected = windowing_reference(xray.values, ds, window)
    np.testing.assert_allclose(window.apply(xray.values), expected, atol=2e-6)


@pytest.mark.shared
@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_window_matches_pydicom_real(function: str) -> None:
    import pydicom

    from tests.conftest import shared_path

    checked = 0
    for name in real_files():
        path = shared_path("data", "dicom", name)
        xray = load_xray(path)
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        for preset in xray.presets:
            if preset.width < 2:
                continue
            window = Window(preset.center, preset.width, function=function)
            expected = windowing_reference(xray.values, ds, window)
            np.testing.assert_allclose(window.apply(xray.values), expected, atol=2e-6, err_msg=name)
            checked += 1
    assert checked >= 20
