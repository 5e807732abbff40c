"""The training cache stores resized images as uint8; with histogram equalisation that is exact.

No TensorFlow needed: this is the property model_training.data relies on to claim training and the
app see identical pixels.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from desktop.core.preprocess import (
    PreprocessSpec,
    display_to_size,
    equalize,
    model_input,
    scale_for_backbone,
)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), h=st.integers(20, 90), w=st.integers(20, 90),
       crop=st.sampled_from([0.0, 0.05, 0.1]))
def test_uint8_cache_is_exact_for_hist(seed: int, h: int, w: int, crop: float) -> None:
    rng = np.random.default_rng(seed)
    img = np.clip(rng.beta(2, 3, size=(h, w)), 0, 1).astype(np.float32)
    spec = PreprocessSpec(32, 32, crop=crop, equalize="hist")
    direct = model_input(img, spec)
    cached = np.clip(np.round(display_to_size(img, spec) * 255.0), 0, 255).astype(np.uint8)
    via_cache = scale_for_backbone(equalize(cached.astype(np.float32) / np.float32(255.0), "hist"), spec)
    np.testing.assert_array_equal(direct, via_cache)


def test_uint8_cache_within_half_a_grey_level_without_equalisation() -> None:
    img = np.random.default_rng(1).uniform(size=(50, 40)).astype(np.float32)
    spec = PreprocessSpec(32, 32)
    direct = model_input(img, spec)
    cached = np.round(display_to_size(img, spec) * 255.0) / 255.0
    via_cache = scale_for_backbone(cached.astype(np.float32), spec)
    assert np.abs(direct - via_cache).max() <= (0.5 / 255.0) * 2 + 1e-6  # mobilenet scaling doubles the range
