"""Bounded memory and refused nonsense (#20 items 4 and 7).

- A Rescale Slope of 0, NaN or infinity is refused naming the file (it was read as 1).
- A deflated DICOM "bomb" is refused after inflating no more than its header declares.
- ``set_memory_ceiling`` caps a worker process's address space (POSIX), a no-op elsewhere.
- A near-limit (~49 MP) PNG loaded for a scan (``target``) never has a full-size float copy.

Peak memory figures are in ``benchmarks/bench_imaging_memory.py``; these tests assert only
what must hold on any machine.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import textwrap
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from desktop.core.errors import CorruptImageError, ImageTooLargeError
from desktop.core.imaging import load_xray, set_memory_ceiling
from tests.hostile import dicom_bytes, quantize, synthetic_chest

REPO = Path(__file__).resolve().parents[1]
Q12 = quantize(synthetic_chest(128, 112, seed=4), 12)


def with_slope(value: str):
    def edit(ds: object) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns that NaN/inf are not valid DS values
            ds.RescaleSlope = value  # type: ignore[attr-defined]
        ds.RescaleIntercept = "0"  # type: ignore[attr-defined]

    return edit


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("0", r"invalid Rescale Slope 0"),
        ("0.0", r"invalid Rescale Slope 0"),
        ("NaN", r"invalid Rescale Slope nan"),
        ("inf", r"invalid Rescale Slope inf"),
        ("-inf", r"invalid Rescale Slope -inf"),
    ],
)
def test_rescale_slope_zero_nan_inf_refused_naming_the_file(value: str, match: str) -> None:
    data = dicom_bytes(Q12, bits_stored=12, extra=with_slope(value))
    with pytest.raises(CorruptImageError, match=match) as info:
        load_xray(data, name="slope.dcm")
    assert "slope.dcm" in str(info.value)
    assert info.value.kind == "corrupt"


def test_rescale_slope_refused_in_a_reduced_load_too() -> None:
    data = dicom_bytes(quantize(synthetic_chest(1000, 960, seed=1), 12), bits_stored=12, extra=with_slope("0"))
    with pytest.raises(CorruptImageError, match=r"invalid Rescale Slope 0"):
        load_xray(data, name="slope.dcm", target=(224, 224))


def test_empty_or_absent_rescale_slope_is_identity() -> None:
    def empty(ds: object) -> None:
        ds.RescaleSlope = ""  # type: ignore[attr-defined]

    for extra in (None, empty):
        xray = load_xray(dicom_bytes(Q12, bits_stored=12, extra=extra))
        np.testing.assert_array_equal(xray.values, Q12.astype(np.float32))


def test_negative_rescale_slope_still_accepted() -> None:
    xray = load_xray(dicom_bytes(Q12, bits_stored=12, rescale=(-1, 4095)))
    np.testing.assert_array_equal(xray.values, 4095 - Q12.astype(np.float32))


def deflated_bomb(pixel_bytes: int, rows: int = 128, cols: int = 112) -> bytes:
    """A Deflated Explicit VR DICOM declaring rows x cols x 16 bits, whose pixel data inflates to ``pixel_bytes``."""
    import pydicom
    from pydicom.uid import UID

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(np.zeros((rows, cols), np.uint16), bits_stored=12)))
    del ds.PixelData

    def written(ts: str) -> tuple[bytes, int]:
        ds.file_meta.TransferSyntaxUID = UID(ts)
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        raw = buf.getvalue()
        return raw, 132 + 12 + int.from_bytes(raw[140:144], "little")  # preamble, DICM, group length

    plain, plain_meta = written("1.2.840.10008.1.2.1")
    deflated, meta_len = written("1.2.840.10008.1.2.1.99")
    dataset = plain[plain_meta:]  # the data set before deflating
    raw = deflated
    pixel_header = b"\xe0\x7f\x10\x00OW\x00\x00" + pixel_bytes.to_bytes(4, "little")
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [z.compress(dataset + pixel_header)]
    zeros = bytes(16 * 2**20)
    left = pixel_bytes
    while left:
        n = min(left, len(zeros))
        parts.append(z.compress(zeros[:n]))
        left -= n
    parts.append(z.flush())
    return raw[:meta_len] + b"".join(parts)


def test_deflated_dicom_with_honest_size_loads() -> None:
    import pydicom
    from pydicom.uid import UID

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(Q12, bits_stored=12)))
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1.99")
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, implicit_vr=False, little_endian=True, enforce_file_format=True)
    xray = load_xray(buf.getvalue(), name="ok.dcm")
    np.testing.assert_array_equal(xray.values, Q12.astype(np.float32))


def test_deflated_dicom_bomb_refused_without_inflating_it() -> None:
    bomb = deflated_bomb(1024 * 2**20)  # 1 GiB of pixel data behind a 128x112 header
    assert len(bomb) < 2 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match=r"deflated DICOM inflates to more than \d+ MiB") as info:
            load_xray(bomb, name="bomb.dcm")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "bomb.dcm" in str(info.value)
    assert "decompression bomb" in str(info.value)
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB traced"


def test_damaged_deflate_stream_is_a_corrupt_image() -> None:
    bomb = deflated_bomb(4096)
    with pytest.raises(CorruptImageError, match="bad.dcm"):
        load_xray(bomb[:-200] + b"\xff" * 200, name="bad.dcm")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux")
def test_memory_ceiling_caps_the_worker_process() -> None:
    code = textwrap.dedent(
        """
        import resource
        import numpy as np
        from desktop.core.errors import ImageTooLargeError
        from desktop.core.imaging import load_xray, set_memory_ceiling
        from tests.hostile import png_bytes
        assert set_memory_ceiling(1024)
        assert resource.getrlimit(resource.RLIMIT_AS)[0] == 1024 * 2**20
        load_xray(png_bytes(np.zeros((512, 512), np.uint8)))  # still works
        try:
            np.ones(2 * 2**30, dtype=np.uint8)
        except MemoryError:
            print("capped")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "capped"


def test_memory_ceiling_is_a_logged_no_op_without_resource(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "resource", None)  # as on Windows: import fails
    with caplog.at_level(logging.INFO, logger="desktop.core.imaging.memory"):
        assert set_memory_ceiling(2048) is False
    assert "not supported" in caplog.text


def test_memory_ceiling_arguments() -> None:
    assert set_memory_ceiling(None) is False
    with pytest.raises(ValueError, match=r"Received: megabytes=8"):
        set_memory_ceiling(8)


def test_near_limit_png_loaded_for_a_scan_stays_small() -> None:
    """A 7000x7000 8-bit PNG (49 MP, a few hundred KB): the target load makes no 49 MP float copy."""
    from PIL import Image

    img = Image.new("L", (7000, 7000), 40)
    img.paste(200, (1000, 1000, 6000, 6000))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    data = buf.getvalue()
    del img
    assert len(data) < 1 * 2**20
    tracemalloc.start()
    try:
        xray = load_xray(data, name="big.png", target=(224, 224))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert xray.decode_scale == 8
    assert xray.full_shape == (7000, 7000)
    # numpy's copy of the decoded 8-bit image (49 MB) plus stripes; a float32 copy would be 196 MB.
    assert peak < 120 * 2**20, f"{peak / 2**20:.0f} MiB traced"
