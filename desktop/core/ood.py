"""Out-of-distribution score: how unlike the training films one film is.

The score is the Mahalanobis distance of the film's pooled backbone features
(global average of the Grad-CAM layer's feature map, the ONNX output
``features``) to the training films' features, computed in the space of the
leading principal components with Ledoit-Wolf shrinkage of their variances,
plus the residual outside those components scaled by its mean variance.
The statistics come from :mod:`desktop.core.input_stats` (made by
``scripts/bundle_stats.py``, bound to the model's sha256); the flag fires
above the validation films' 99th percentile.

A flag is advice, never a refusal: the result is shown with
:data:`FLAG_TEXT`.

Hand-written rather than ``sklearn.covariance.LedoitWolf`` at run time: the
application does not ship scikit-learn, and the distance is three lines of
numpy once the statistics are stored. Fitting (:func:`fit_ood`, used by the
stats script only) uses scikit-learn's Ledoit-Wolf shrinkage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: What the GUI, the PDF and the CLI say for a flagged film.
FLAG_TEXT = "unlike the films the model was trained on: read with more caution"


@dataclass(frozen=True)
class OODResult:
    """The score of one film and whether it is above the threshold."""

    score: float
    threshold: float

    @property
    def flagged(self) -> bool:
        return bool(self.score > self.threshold)

    @property
    def text(self) -> str | None:
        return FLAG_TEXT if self.flagged else None


def pooled(feature_maps: np.ndarray) -> np.ndarray:
    """(N, h, w, k) feature maps -> (N, k) float32 global averages; (N, k) passes through."""
    arr = np.asarray(feature_maps, dtype=np.float32)
    if arr.ndim == 4:
        return arr.mean(axis=(1, 2))
    if arr.ndim == 3:  # one map (h, w, k)
        return arr.mean(axis=(0, 1))[None]
    if arr.ndim == 1:
        return arr[None]
    return arr


def fit_ood(features: np.ndarray, k: int = 64) -> dict[str, np.ndarray]:
    """The statistics of :func:`score` from pooled training features (N, d).

    Ledoit-Wolf shrinkage of the covariance (scikit-learn), then its
    leading ``k`` eigenvectors; the rest is summarised by its mean variance.
    """
    from sklearn.covariance import LedoitWolf

    x = np.asarray(features, dtype=np.float64)
    mean = x.mean(axis=0)
    cov = LedoitWolf().fit(x - mean).covariance_
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    k = int(min(k, x.shape[1] - 1))
    rest = float(vals[k:].mean()) if k < len(vals) else float(vals[-1])
    return {
        "ood_mean": mean.astype(np.float32),
        "ood_components": vecs[:, :k].T.astype(np.float32),
        "ood_variances": vals[:k].astype(np.float32),
        "ood_residual_variance": np.float32(rest),
    }


def score(features: np.ndarray, stats: Mapping[str, np.ndarray] | object) -> np.ndarray | float:
    """Distance of pooled features to the training films (larger: more unusual).

    ``features``: one pooled vector (k,), a batch (N, k) or feature maps
    (N, h, w, k). ``stats``: a mapping with the ``ood_*`` arrays or an
    :class:`~desktop.core.input_stats.InputStats`. Returns a float for one
    vector, else an (N,) array.
    """
    arrays = getattr(stats, "arrays", stats)
    assert isinstance(arrays, Mapping)
    single = np.asarray(features).ndim == 1
    x = pooled(features).astype(np.float64) - np.asarray(arrays["ood_mean"], np.float64)
    comps = np.asarray(arrays["ood_components"], np.float64)
    proj = x @ comps.T
    inside = (proj**2 / np.asarray(arrays["ood_variances"], np.float64)).sum(axis=1)
    resid = np.maximum((x**2).sum(axis=1) - (proj**2).sum(axis=1), 0.0)
    d2 = inside + resid / float(arrays["ood_residual_variance"])
    out = np.sqrt(d2 / x.shape[1])
    return float(out[0]) if single else out


def assess(features: np.ndarray, stats: object | None) -> OODResult | None:
    """The OOD result for one film's features (map or pooled), or None without statistics."""
    if stats is None:
        return None
    arrays = getattr(stats, "arrays", stats)
    assert isinstance(arrays, Mapping)
    if "ood_threshold" not in arrays:
        return None
    value = score(pooled(features)[0], arrays)
    assert isinstance(value, float)
    return OODResult(score=value, threshold=float(arrays["ood_threshold"]))


__all__ = ["FLAG_TEXT", "OODResult", "assess", "fit_ood", "pooled", "score"]
