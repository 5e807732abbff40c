"""Edge masking in preprocessing: burned-in text, markers and collimator edges cannot reach the model.

Qt-free and TensorFlow-free: this is the part of the model input the app and training share.
"""

from __future__ import annotations

import numpy as np
import pytest

from desktop.core.inference import Heatmap
from desktop.core.preprocess import PreprocessSpec, border_mask, mask_edges, model_input

MASKED = PreprocessSpec(64, 64, equalize="hist", mask_border=0.1, mask_corner=0.2)


def test_border_mask_areas() -> None:
    band = border_mask(100, 100, 0.1, 0.0)
    assert band.sum() == 100 * 100 - 80 * 80
    assert not band[10:90, 10:90].any()
    corners = border_mask(100, 100, 0.0, 0.2)
    assert corners.sum() == 4 * 20 * 20
    assert corners[:20, :20].all()
    assert not corners[:20, 20:80].any()
    assert not border_mask(50, 40, 0.0, 0.0).any()


def test_mask_edges_fills_with_the_mean_of_the_rest() -> None:
    img = np.random.default_rng(0).uniform(size=(64, 64)).astype(np.float32)
    out = mask_edges(img, MASKED)
    blank = border_mask(64, 64, 0.1, 0.2)
    np.testing.assert_allclose(out[blank], img[~blank].mean(), rtol=1e-6)
    np.testing.assert_array_equal(out[~blank], img[~blank])
    plain = PreprocessSpec(64, 64)
    assert mask_edges(img, plain) is img


def test_burned_in_label_at_the_edge_does_not_change_the_model_input() -> None:
    rng = np.random.default_rng(1)
    img = np.clip(rng.normal(0.5, 0.15, size=(256, 256)), 0, 1).astype(np.float32)
    labelled = img.copy()
    labelled[5:20, 5:60] = 1.0      # a white "R" marker / text block in the top-left corner
    labelled[240:252, 100:200] = 0.0  # a black burned-in date line at the bottom edge
    np.testing.assert_array_equal(model_input(img, MASKED), model_input(labelled, MASKED))
    unmasked = PreprocessSpec(64, 64, equalize="hist")
    assert not np.array_equal(model_input(img, unmasked), model_input(labelled, unmasked))


def test_heatmap_is_zero_where_the_model_saw_nothing() -> None:
    heat = Heatmap(cam=np.ones((7, 7), np.float32), raw_max=1.0, class_name="covid", layer="conv", spec=MASKED)
    up = heat.upsample((100, 80))
    assert up[border_mask(100, 80, 0.1, 0.2)].max() == 0.0
    assert up[~border_mask(100, 80, 0.1, 0.2)].min() > 0.5
    # letterbox: a 200x100 image sits in the middle 32 columns of the 64x64 input; the mask is the input's
    spec = PreprocessSpec(64, 64, resize="letterbox", mask_border=0.1, mask_corner=0.2)
    heat = Heatmap(cam=np.ones((7, 7), np.float32), raw_max=1.0, class_name="covid", layer="conv", spec=spec)
    up = heat.upsample((200, 100))
    assert up[:18].max() == 0.0          # top band (6 of 64 input rows)
    assert up[:, :].max() > 0.5
    assert up[100, 50] > 0.5             # the centre is seen


def test_mask_settings_are_validated_and_old_cards_still_load() -> None:
    with pytest.raises(ValueError, match="mask_border"):
        PreprocessSpec(mask_border=0.5)
    with pytest.raises(ValueError, match="mask_corner"):
        PreprocessSpec(mask_corner=-0.1)
    old = {"height": 224, "width": 224, "resize": "stretch", "crop": 0.0, "equalize": "hist",
           "normalization": "mobilenet", "channels": 3}
    spec = PreprocessSpec.from_dict(old)
    assert spec.mask_border == 0.0
    assert spec.mask_corner == 0.0
