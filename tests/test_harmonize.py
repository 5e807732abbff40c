"""Resolution harmonisation (PreprocessSpec.harmonize): the app and training compute the same pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop.core.imaging import load_xray
from desktop.core.preprocess import PreprocessSpec, model_input
from model_training.data import Dataset, Record, load_images, model_inputs_from_cache


def _film(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    img = (rng.uniform(size=(300, 260)) > 0.5).astype(np.uint8) * 200 + 20  # fine texture
    img[100:200, 60:120] = 240
    path = tmp_path / "film.png"
    Image.fromarray(img).save(path)
    return path


def test_harmonized_input_is_the_same_in_app_and_training(tmp_path: Path) -> None:
    path = _film(tmp_path)
    spec = PreprocessSpec(height=64, width=64, equalize="hist", harmonize=24)
    app = model_input(load_xray(path), spec)
    ds = Dataset(root=str(tmp_path), records=(Record(str(path), path.name, "normal", "s", "p"),))
    train = model_inputs_from_cache(load_images(ds, spec, tmp_path / "cache"), spec)[0]
    np.testing.assert_allclose(train, app, atol=2.5 / 255 * 2)  # cache quantises to 256 levels
    plain = model_input(load_xray(path), PreprocessSpec(height=64, width=64, equalize="hist"))
    # the texture is gone: neighbouring pixels differ much less
    assert np.abs(np.diff(app[..., 0], axis=1)).mean() < 0.5 * np.abs(np.diff(plain[..., 0], axis=1)).mean()
    # a different harmonisation is a different cache entry
    other = model_inputs_from_cache(load_images(ds, PreprocessSpec(height=64, width=64, equalize="hist"),
                                                tmp_path / "cache"), spec)[0]
    assert not np.allclose(other, train, atol=0.05)


def test_harmonize_in_the_card_dict_only_when_set() -> None:
    assert "harmonize" not in PreprocessSpec().to_dict()
    spec = PreprocessSpec(harmonize=128)
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="harmonize"):
        PreprocessSpec(harmonize=8)
    with pytest.raises(ValueError, match="harmonize"):
        PreprocessSpec(harmonize=300)
