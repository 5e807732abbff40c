"""Heatmap overlay, colour bar and the rendered PNG (``cxr-screener render --heatmap``)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop.core.imaging import load_xray
from desktop.core.overlay import (
    COLORBLIND_SAFE,
    colorbar_rgb,
    colormap_lut,
    heatmap_panel,
    overlay_rgb,
    render_heatmap_png,
)


def test_overlay_blends_with_alpha() -> None:
    gray = np.linspace(0, 1, 50 * 40, dtype=np.float32).reshape(50, 40)
    heat = np.zeros((50, 40), np.float32)
    heat[:, 20:] = 1.0
    out = overlay_rgb(gray, heat, cmap="jet", alpha=0.0)
    assert out.shape == (50, 40, 3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], np.round(gray * 255).astype(np.uint8))
    full = overlay_rgb(gray, heat, cmap="jet", alpha=1.0)
    lut = colormap_lut("jet")
    np.testing.assert_array_equal(full[0, 0], lut[0])  # low attention: dark blue
    np.testing.assert_array_equal(full[0, 39], lut[255])  # high attention: dark red
    assert full[0, 39, 0] > 100
    assert full[0, 39, 2] < 50
    half = overlay_rgb(gray, heat, alpha=0.45)
    assert np.abs(half.astype(int) - full.astype(int)).max() > 0


def test_overlay_accepts_uint8_and_upsamples_small_heat() -> None:
    gray = np.full((64, 80), 128, np.uint8)
    heat = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    out = overlay_rgb(gray, heat, cmap="cividis")
    assert out.shape == (64, 80, 3)


def test_overlay_rejects_bad_arguments() -> None:
    gray = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="cmap must be one of"):
        overlay_rgb(gray, gray, cmap="rainbowish")
    with pytest.raises(ValueError, match="alpha must be in"):
        overlay_rgb(gray, gray, alpha=1.5)
    with pytest.raises(ValueError, match="2-D"):
        overlay_rgb(np.zeros((8, 8, 3)), gray)


@pytest.mark.parametrize("cmap", ["jet", *COLORBLIND_SAFE])
def test_colorbar_has_high_at_top_and_labels(cmap: str) -> None:
    bar = colorbar_rgb(cmap, height=400, width=100)
    assert bar.shape == (400, 100, 3)
    assert bar.dtype == np.uint8
    lut = colormap_lut(cmap).astype(int)
    column = bar[:, 50].astype(int)
    top = np.argmin(np.abs(column - lut[255]).sum(axis=1))
    bottom = np.argmin(np.abs(column - lut[0]).sum(axis=1))
    assert top < bottom  # high attention at the top
    # text was drawn above and below the bar (dark pixels on the white margins)
    assert (bar[:30] < 100).any()
    assert (bar[-30:] < 100).any()


def test_panel_puts_the_bar_beside_the_overlay() -> None:
    gray = np.zeros((300, 200), np.float32)
    panel = heatmap_panel(gray, np.zeros((4, 4), np.float32))
    assert panel.shape[0] == 300
    assert panel.shape[1] > 200


def test_render_heatmap_png_with_the_default_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user_models_with_tiny: Path
) -> None:
    monkeypatch.setenv("CXR_SCREENER_ASSETS", str(tmp_path / "assets"))  # only the tiny model
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray((rng.random((240, 200)) * 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    xray = load_xray(buf.getvalue(), name="x.png")
    png = render_heatmap_png(xray)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    assert img.mode == "RGB"
    assert img.size[1] == 240
    assert img.size[0] > 200


def test_overlay_never_imports_pyplot() -> None:
    """Agg canvas only: pyplot (and its GUI backend selection) is never imported."""
    import subprocess

    code = (
        "import sys, numpy as np\n"
        "from desktop.core.overlay import colorbar_rgb, overlay_rgb\n"
        "colorbar_rgb('jet', 100, 60); overlay_rgb(np.zeros((8, 8)), np.zeros((8, 8)))\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
