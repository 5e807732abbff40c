"""Backbone feature maps computed once and cached (frozen base, no augmentation)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from desktop.core.preprocess import PreprocessSpec

from .data import as_float, model_inputs_from_cache
from .progress import Progress

log = logging.getLogger(__name__)

#: Bump when the way features are computed changes (invalidates runs/cache).
FEATURE_CACHE_VERSION = 3


def extract_features(cut: Any, images: np.ndarray, spec: PreprocessSpec, *, batch_size: int = 64,
                     augment: Callable[[np.ndarray, int], np.ndarray] | None = None,
                     show_progress: bool = False, label: str = "features") -> np.ndarray:
    """(N, h, w, c) float16 feature maps of cached images (N, H, W) through ``cut``.

    ``augment(images_batch, start_index)`` may transform the float [0, 1]
    resized images before equalisation and scaling.
    """
    n = len(images)
    out: np.ndarray | None = None
    bar = Progress(n, label, enabled=show_progress)
    for start in range(0, n, batch_size):
        batch = as_float(images[start:start + batch_size])
        if augment is not None:
            batch = augment(batch, start)
        x = model_inputs_from_cache(batch, spec)
        f = np.asarray(cut(x, training=False))
        if out is None:
            out = np.zeros((n, *f.shape[1:]), dtype=np.float16)
        out[start:start + len(f)] = f.astype(np.float16)
        bar.update(len(f))
    bar.close()
    assert out is not None
    return out


def feature_cache_path(cache_dir: str | os.PathLike[str], **key: object) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"feat_{digest}.npy"


def cached_features(cache_dir: str | os.PathLike[str] | None, compute: Callable[[], np.ndarray],
                    **key: object) -> np.ndarray:
    """Load features from the cache when there, else compute and store them."""
    if cache_dir is None:
        return compute()
    path = feature_cache_path(cache_dir, **key)
    if path.is_file():
        log.info("features from cache %s", path)
        return np.load(path, allow_pickle=False)
    feats = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, feats)
    os.replace(tmp, path)
    (path.with_suffix(".json")).write_text(json.dumps(key, sort_keys=True, default=str, indent=1))
    return feats


def dataset_features(dataset: Any, spec: PreprocessSpec, *, architecture: str, weights: str | None,
                     layer: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                     show_progress: bool = False, augment_seed: int | None = None,
                     augment_kind: str = "none") -> tuple[np.ndarray, Any]:
    """Features of every image of ``dataset`` at ``layer`` (default: the backbone's default cut).

    Returns ``(features, BackboneInit)``. Cached by image hashes, preprocessing,
    backbone, weights file hash, layer and augmentation.
    """
    from .augment import photometric_augmenter
    from .backbones import build_base, cut_model, default_cut, sha256_file
    from .data import image_cache_key, load_images

    base, init = build_base(architecture, weights=weights, input_shape=(spec.height, spec.width, spec.channels))
    layer = layer or default_cut(architecture, init)
    if init.kind == "none":
        cache_dir = None  # random weights: nothing worth caching
    wkey = sha256_file(weights) if weights not in (None, "none", "imagenet") else weights
    images_holder: dict[str, np.ndarray] = {}

    def compute() -> np.ndarray:
        images = load_images(dataset, spec, cache_dir, show_progress=show_progress)
        images_holder["x"] = images
        aug = None
        if augment_seed is not None and augment_kind != "none":
            aug = photometric_augmenter(augment_kind, augment_seed)
        return extract_features(cut_model(base, layer), images, spec, augment=aug,
                                show_progress=show_progress, label=f"features {layer}")

    feats = cached_features(cache_dir, compute, v=FEATURE_CACHE_VERSION, images=image_cache_key(dataset, spec), spec=spec.to_dict(),
                            arch=architecture, weights=wkey, layer=layer, aug=augment_kind,
                            aug_seed=augment_seed)
    return feats, (init, layer)
