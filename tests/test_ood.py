"""OOD score: larger for unlike films, flag above the threshold, never a refusal, stats bound to the model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from desktop.core import ood
from desktop.core.input_stats import InputStats, load_for, read_stats, user_stats_path, write_stats


def _train(seed: int = 0, n: int = 400, d: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.linspace(3.0, 0.2, d)
    return (rng.normal(size=(n, d)) * scales + 5.0).astype(np.float32)


def test_score_larger_for_unlike_features() -> None:
    x = _train()
    stats = ood.fit_ood(x, k=8)
    inside = ood.score(_train(seed=1, n=200), stats)
    assert isinstance(inside, np.ndarray)
    assert inside.shape == (200,)
    far = x[:50].copy()
    far[:, -1] += 15.0  # off the main axes of variation
    assert np.median(ood.score(far, stats)) > np.percentile(inside, 99)
    one = ood.score(x[0], stats)
    assert isinstance(one, float)


def test_feature_maps_are_pooled() -> None:
    maps = np.random.default_rng(0).random((3, 7, 7, 16)).astype(np.float32)
    assert ood.pooled(maps).shape == (3, 16)
    np.testing.assert_allclose(ood.pooled(maps)[1], maps[1].mean(axis=(0, 1)), rtol=1e-6)


def test_flag_at_threshold_with_caution_text() -> None:
    x = _train()
    stats = ood.fit_ood(x, k=8)
    val = ood.score(_train(seed=2, n=300), stats)
    stats["ood_threshold"] = np.float32(np.percentile(val, 99))
    ok = ood.assess(x[:1], stats)
    assert ok is not None
    assert not ok.flagged
    assert ok.text is None
    odd = x[:1] + 40.0
    res = ood.assess(odd, stats)
    assert res is not None
    assert res.flagged
    assert res.text == "unlike the films the model was trained on: read with more caution"
    assert ood.assess(x[:1], None) is None


def test_stats_file_bound_to_model(tmp_path: Path, tiny_bundle: Path) -> None:
    from desktop.core.bundle import load_bundle

    bundle = load_bundle(tiny_bundle)
    sha = str(bundle.card.data["sha256"])
    arrays = {**ood.fit_ood(_train(), k=4), "ood_threshold": np.float32(3.0)}
    other = InputStats("f" * 64, "other", "1", arrays)
    path = user_stats_path(sha)
    path.parent.mkdir(parents=True)
    write_stats(other, path)
    assert load_for(bundle) is None  # made for another model: not used
    write_stats(InputStats(sha, bundle.card.name, bundle.card.version, arrays, {"x": 1}), path)
    got = load_for(bundle)
    assert got is not None
    assert got.model_sha256 == sha
    assert got.figures == {"x": 1}
    np.testing.assert_allclose(got.arrays["ood_mean"], arrays["ood_mean"])
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not an input statistics file"):
        read_stats(tmp_path / "junk.npz")


def test_screen_flags_but_never_refuses(tmp_path: Path, tiny_bundle: Path) -> None:
    """A film far from the 'training' statistics is flagged and still gets its p(covid)."""
    from desktop.core import gate
    from desktop.core.imaging import load_xray
    from desktop.core.inference import Predictor
    from tests.batch_support import make_png

    predictor = Predictor(tiny_bundle, threads=1)
    k = predictor.feature_shape[2]
    arrays = {
        "ood_mean": np.full(k, 1e3, np.float32),  # every real film is far from this mean
        "ood_components": np.eye(2, k, dtype=np.float32),
        "ood_variances": np.ones(2, np.float32),
        "ood_residual_variance": np.float32(1.0),
        "ood_threshold": np.float32(5.0),
    }
    film = load_xray(make_png(tmp_path / "a.png", 3, size=96))
    (res,) = gate.screen(predictor, [film], stats=SimpleNamespace(arrays=arrays))
    assert res.status == "ok"
    assert res.prediction is not None
    assert res.ood is not None
    assert res.ood.flagged
    assert res.to_dict()["ood_note"] == ood.FLAG_TEXT
