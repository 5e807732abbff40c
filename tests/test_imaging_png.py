"""PNG and JPEG: bit depths, modes, EXIF orientation, size limits, other formats, the render CLI."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from desktop.core import imaging
from desktop.core.errors import (
    CorruptImageError,
    ImageTooLargeError,
    NotAnImageError,
    OutputExistsError,
    UnsupportedImageError,
)
from desktop.core.imaging import Window, load_xray
from tests.hostile import (
    jpeg_bytes,
    png_bytes,
    png_chunk,
    png_with_dimensions,
    quantize,
    synthetic_chest,
)

CHEST = synthetic_chest(160, 128, seed=3)
Q8 = quantize(CHEST, 8)
Q16 = quantize(CHEST, 16)


def test_png_8bit_gray() -> None:
    xray = load_xray(png_bytes(Q8), name="a.png")
    assert xray.format == "png"
    assert xray.bit_depth == 8
    assert xray.pixels.dtype == np.float32
    np.testing.assert_allclose(xray.pixels, Q8 / 255.0, atol=1e-7)
    np.testing.assert_array_equal(xray.to_uint8(), Q8)
    assert xray.source == "a.png"
    assert not xray.invert


def test_png_16bit_gray_keeps_full_precision() -> None:
    xray = load_xray(png_bytes(Q16))
    assert xray.bit_depth == 16
    np.testing.assert_array_equal(xray.values, Q16.astype(np.float32))
    np.testing.assert_allclose(xray.pixels, Q16 / 65535.0, atol=1e-7)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "1"])
def test_png_modes_give_the_same_gray(mode: str) -> None:
    base = Image.fromarray(Q8)
    if mode == "LA":
        im = base.convert("LA")
        im.putalpha(Image.fromarray(np.full_like(Q8, 128)))  # alpha ignored
    elif mode == "P":
        im = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    elif mode == "1":
        im = base.point(lambda v: 255 if v > 128 else 0).convert("1")
    else:
        im = base.convert(mode)
    xray = load_xray(png_bytes(im), name=f"{mode}.png")
    assert xray.shape == Q8.shape
    expected = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    if mode == "P":
        # An adaptive palette of a gray image holds every gray level (<= 256).
        np.testing.assert_allclose(xray.pixels, expected, atol=1 / 255 + 1e-6)
    else:
        np.testing.assert_allclose(xray.pixels, expected, atol=1e-6)


def test_rgb_colour_to_luma_without_8bit_rounding() -> None:
    rgb = np.zeros((32, 32, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    xray = load_xray(png_bytes(Image.fromarray(rgb)))
    assert float(xray.values[0, 0]) == pytest.approx(200 * 0.299 + 100 * 0.587 + 50 * 0.114, abs=1e-3)


def test_jpeg_gray_and_rgb() -> None:
    gray = load_xray(jpeg_bytes(Q8, quality=95), name="g.jpg")
    assert gray.format == "jpeg"
    assert float(np.abs(gray.pixels - Q8 / 255.0).mean()) < 0.01
    rgb = load_xray(jpeg_bytes(Image.fromarray(Q8).convert("RGB"), quality=95))
    assert float(np.abs(rgb.pixels - gray.pixels).mean()) < 0.01


@pytest.mark.parametrize(("orientation", "k"), [(1, 0), (3, 2), (6, 1), (8, -1)])
def test_exif_orientation_shown_upright(orientation: int, k: int) -> None:
    """A JPEG stored rotated with an EXIF Orientation tag shows upright."""
    upright = np.zeros((160, 96), dtype=np.uint8)
    upright[:40, :30] = 255  # a white block in the top-left corner
    stored = np.rot90(upright, k)  # what a camera writes before tagging the orientation
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = jpeg_bytes(Image.fromarray(np.ascontiguousarray(stored)), quality=95, exif=exif.tobytes())
    xray = load_xray(data, name="rotated.jpg")
    assert xray.shape == upright.shape
    assert float(xray.pixels[:40, :30].mean()) > 0.9
    assert float(xray.pixels[-40:, -30:].mean()) < 0.1


def test_png_over_pixel_limit_refused_before_decoding() -> None:
    # A real decompression bomb: 8000x8000 zero pixels (64 MP) in a ~60 kB file.
    width = height = 8000
    raw = zlib.compress(b"\x00" * ((width + 1) * height), 9)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", raw) + png_chunk(b"IEND", b"")
    assert len(data) < 200_000
    with pytest.raises(ImageTooLargeError, match=r"bomb\.png: 8000x8000 pixels, over the 50 megapixel limit.*decompression bomb"):
        load_xray(data, name="bomb.png")


def test_png_declaring_100000_squared_refused() -> None:
    with pytest.raises(ImageTooLargeError, match=r"100000x100000 pixels"):
        load_xray(png_with_dimensions(100000, 100000), name="huge.png")


def test_jpeg_declaring_huge_size_refused_before_decoding() -> None:
    data = bytearray(jpeg_bytes(Q8))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)
    with pytest.raises(ImageTooLargeError, match=r"30000x30000 pixels"):
        load_xray(bytes(data), name="huge.jpg")


def test_pixel_limit_is_the_module_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imaging, "MAX_PIXELS", 100 * 100)
    with pytest.raises(ImageTooLargeError, match="128x160 pixels"):
        load_xray(png_bytes(Q8), name="a.png")
    load_xray(png_bytes(Q8[:100, :100]), name="b.png")


@pytest.mark.parametrize(("w", "h"), [(8, 8), (15, 200), (200, 15)])
def test_too_small_refused(w: int, h: int) -> None:
    with pytest.raises(UnsupportedImageError, match=rf"{w}x{h} pixels: too small"):
        load_xray(png_bytes(np.zeros((h, w), dtype=np.uint8)), name="tiny.png")
    with pytest.raises(UnsupportedImageError, match="too small"):
        load_xray(jpeg_bytes(np.zeros((h, w), dtype=np.uint8)), name="tiny.jpg")


def test_smallest_accepted() -> None:
    assert load_xray(png_bytes(np.zeros((16, 16), dtype=np.uint8))).shape == (16, 16)


@pytest.mark.parametrize(("fmt", "name"), [("TIFF", "TIFF"), ("BMP", "BMP"), ("GIF", "GIF")])
def test_other_image_formats_refused_by_name(fmt: str, name: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(Q8).save(buf, format=fmt)
    with pytest.raises(UnsupportedImageError, match=rf"x\.png: {name} file: not supported"):
        load_xray(buf.getvalue(), name="x.png")


def test_png_missing_iend_is_truncated() -> None:
    data = png_bytes(Q8)
    with pytest.raises(CorruptImageError, match="truncated PNG"):
        load_xray(data[:-12], name="cut.png")


def test_sha256_of_the_bytes(tmp_path) -> None:
    import hashlib

    data = png_bytes(Q8)
    path = tmp_path / "a.png"
    path.write_bytes(data)
    assert load_xray(path).sha256 == hashlib.sha256(data).hexdigest()
    assert load_xray(path).source == str(path)


def test_render_window_on_png_values() -> None:
    xray = load_xray(png_bytes(Q16))
    w = Window.from_range(10000, 40000)
    out = xray.render(w)
    expected = np.clip((Q16.astype(np.float64) - 10000) / 30000, 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert xray.to_uint8(w).dtype == np.uint8


def test_not_an_image() -> None:
    with pytest.raises(NotAnImageError, match=r"notes\.png: not an image"):
        load_xray(b"just some text, long enough to look like a file\n" * 4, name="notes.png")


# --- the render command -----------------------------------------------------


def test_render_cli_writes_display_png(tmp_path) -> None:
    from desktop.core.cli import main
    from tests.hostile import dicom_bytes

    q = quantize(CHEST, 12)
    src = tmp_path / "chest.dcm"
    src.write_bytes(dicom_bytes(q, bits_stored=12, photometric="MONOCHROME1"))
    out = tmp_path / "out.png"
    assert main(["render", str(src), "-o", str(out)]) == 0
    img = np.asarray(Image.open(out))
    assert img.dtype == np.uint8
    np.testing.assert_array_equal(img, load_xray(src).to_uint8())
    # MONOCHROME1 on disk, bones white in the PNG: high stored values are dark.
    np.testing.assert_array_equal(img, np.round((1 - q / 4095.0) * 255).astype(np.uint8))
    # Window on the command line, and no overwrite unless asked.
    assert main(["render", str(src), "-o", str(out), "--window", "2048", "1000"]) == 2
    assert main(["render", str(src), "-o", str(out), "--window", "2048", "1000", "--overwrite"]) == 0
    windowed = np.asarray(Image.open(out))
    np.testing.assert_array_equal(windowed, load_xray(src).to_uint8(Window(2048, 1000)))


def test_render_cli_bad_input_exit_1_names_file(tmp_path, capsys) -> None:
    from desktop.core.cli import main

    src = tmp_path / "broken.dcm"
    src.write_bytes(b"\x00" * 10)
    assert main(["render", str(src), "-o", str(tmp_path / "o.png")]) == 1
    err = capsys.readouterr().err
    assert "broken.dcm" in err
    assert "not an image" in err
    assert not (tmp_path / "o.png").exists()


def test_render_refuses_existing_output_error_class(tmp_path) -> None:
    from desktop.core.fileio import check_writable

    out = tmp_path / "x.png"
    out.write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        check_writable(out, overwrite=False)


@pytest.mark.parametrize("width", ["0", "-5", "nan"])
def test_render_cli_rejects_bad_window(tmp_path, capsys, width: str) -> None:
    from desktop.core.cli import main

    src = tmp_path / "a.png"
    src.write_bytes(png_bytes(Q8))
    out = tmp_path / "o.png"
    assert main(["render", str(src), "-o", str(out), "--window", "100", width]) == 2
    assert "WIDTH > 0" in capsys.readouterr().err
    assert not out.exists()
