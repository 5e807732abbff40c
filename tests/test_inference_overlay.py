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


# --------------------------------------------------------------------------
# The heatmap's fixed meaning (issue 17, item 3)
# --------------------------------------------------------------------------


def test_heatmap_reference_puts_maps_on_one_scale() -> None:
    from desktop.core.inference import Heatmap, gradcam_reference
    from desktop.core.preprocess import PreprocessSpec

    cam = np.zeros((7, 7), np.float32)
    cam[3, 3] = 1.0
    ref = gradcam_reference(object(), (7, 7))
    assert ref == pytest.approx(6.0 / 49)
    weak = Heatmap(cam, raw_max=0.2 * ref, class_name="covid", layer="l", spec=PreprocessSpec(64, 64), reference=ref)
    strong = Heatmap(cam, raw_max=3 * ref, class_name="covid", layer="l", spec=PreprocessSpec(64, 64), reference=ref)
    assert weak.upsample((70, 70)).max() == pytest.approx(0.2, abs=0.02)  # not stretched to full colour
    assert strong.upsample((70, 70)).max() == pytest.approx(1.0)
    assert strong.peak == pytest.approx(3.0)
    relative = Heatmap(cam, raw_max=0.2 * ref, class_name="covid", layer="l", spec=PreprocessSpec(64, 64))
    assert relative.upsample((70, 70)).max() == pytest.approx(1.0, abs=0.02)  # no reference: per-image as before


def test_card_reference_wins() -> None:
    from types import SimpleNamespace

    from desktop.core.inference import gradcam_reference

    assert gradcam_reference(SimpleNamespace(gradcam_reference=0.5), (7, 7)) == 0.5
    assert gradcam_reference(SimpleNamespace(raw={"gradcam_reference": 0.25}), (7, 7)) == 0.25


def test_only_the_upper_range_is_drawn() -> None:
    from desktop.core.overlay import DRAW_FROM

    gray = np.full((10, 30), 0.5, np.float32)
    heat = np.zeros((10, 30), np.float32)
    heat[:, 10:20] = 0.3  # below DRAW_FROM: the film shows untinted
    heat[:, 20:] = 0.9
    out = overlay_rgb(gray, heat, cmap="jet", alpha=0.5, floor=DRAW_FROM)
    film = np.full(3, round(0.5 * 255))
    np.testing.assert_array_equal(out[:, :20], np.broadcast_to(film, (10, 20, 3)))
    assert np.abs(out[:, 20:].astype(int) - film).max() > 40
    panel = heatmap_panel((gray * 255).astype(np.uint8), np.full((10, 30), 0.2, np.float32))
    np.testing.assert_array_equal(panel[:, :30], np.broadcast_to(np.full(3, 127), (10, 30, 3)))  # a weak map tints nothing


def test_inferno_hot_end_stays_visible_on_grey() -> None:
    top = colormap_lut("inferno")[255].astype(int)
    assert top.min() < 200  # not near-white (matplotlib's own end is 252, 255, 164)


def test_lung_fraction_and_its_warning() -> None:
    from desktop.core.overlay import lung_fraction, lung_sentence

    heat = np.zeros((100, 100), np.float32)
    heat[30:60, 15:40] = 1.0  # right lung
    assert lung_fraction(heat) == pytest.approx(1.0)
    heat[:] = 0
    heat[85:100, 40:60] = 1.0  # below the diaphragm, centre
    assert lung_fraction(heat) == pytest.approx(0.0)
    text, warn = lung_sentence(0.2)
    assert warn
    assert "20%" in text
    assert "outside the lungs" in text
    assert lung_fraction(np.zeros((10, 10))) is None
    assert lung_sentence(None) == ("No region had any influence on the COVID-19 score.", False)


def test_bundled_negative_sample_shows_no_colour_and_positive_does() -> None:
    from desktop.core.inference import Predictor
    from desktop.core.overlay import DRAW_FROM
    from desktop.core.paths import assets_dir

    samples = assets_dir() / "samples"
    neg, pos = samples / "shenzhen__CHNCXR_0001_0.png", samples / "ieee8023__12941_2020_358_Fig1_HTML.jpg"
    if not (neg.exists() and pos.exists()):
        pytest.skip("bundled samples missing")
    predictor = Predictor.from_name()
    _, h_neg = predictor.explain(load_xray(neg))
    _, h_pos = predictor.explain(load_xray(pos))
    assert h_neg.upsample((64, 64)).max() < DRAW_FROM  # a clear negative: nothing drawn
    assert h_pos.upsample((64, 64)).max() >= DRAW_FROM
