"""How much a model can be right for the wrong reason.

(a) ``source_probe``: a linear probe (logistic regression on the pooled
    backbone features, patient-grouped cross-validation) predicting the image's
    *source*; also within each class, where source is pure shortcut.
(b) ``masked_border``: performance when the outer band and the corners of the
    image (where markers, text and collimation edges are) are blanked.
(c) ``gradcam_mass``: share of the Grad-CAM mass inside a central lung box vs
    the border band and corners (the app's numpy Grad-CAM, on the bundle's head).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from desktop.core.preprocess import PreprocessSpec, border_mask, mask_edges

from .data import Dataset, as_float
from .features import dataset_features, extract_features
from .metrics import auroc, threshold_metrics

log = logging.getLogger(__name__)

#: Regions as fractions of the model input (rows, cols).
LUNG_BOX = (0.15, 0.85, 0.12, 0.88)
BORDER = 0.10
CORNER = 0.20


def region_masks(h: int, w: int) -> dict[str, np.ndarray]:
    """Boolean masks of the central lung box, the border band and the corner squares."""
    yy, xx = np.mgrid[0:h, 0:w]
    fy, fx = (yy + 0.5) / h, (xx + 0.5) / w
    y0, y1, x0, x1 = LUNG_BOX
    lung = (fy >= y0) & (fy < y1) & (fx >= x0) & (fx < x1)
    return {"lung": lung, "border": border_mask(h, w, BORDER, 0.0), "corners": border_mask(h, w, 0.0, CORNER)}


def mask_border(images: np.ndarray) -> np.ndarray:
    """Resized images (N, H, W) in [0, 1] with the border band and corners set to the mean of the rest
    (:func:`desktop.core.preprocess.mask_edges` with the audit's ``BORDER`` and ``CORNER``)."""
    x = as_float(images)
    spec = PreprocessSpec(x.shape[1], x.shape[2], mask_border=BORDER, mask_corner=CORNER)
    return np.stack([mask_edges(img, spec) for img in x]) if len(x) else x.copy()


def source_probe(feats: np.ndarray, dataset: Dataset, *, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Cross-validated accuracy of predicting the source from pooled features (patient-grouped folds)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.preprocessing import StandardScaler

    x = feats.astype(np.float32).mean(axis=(1, 2)) if feats.ndim == 4 else feats.astype(np.float32)
    sources = dataset.sources()
    labels = np.array([r.label for r in dataset.records])
    groups = dataset.patients()

    def cv_acc(mask: np.ndarray) -> dict[str, Any]:
        xs, ys, gs = x[mask], sources[mask], groups[mask]
        classes, counts = np.unique(ys, return_counts=True)
        keep = np.isin(ys, classes[counts >= folds])
        xs, ys, gs = xs[keep], ys[keep], gs[keep]
        if len(np.unique(ys)) < 2:
            return {"n": int(len(ys)), "accuracy": None, "majority": None, "sources": np.unique(ys).tolist()}
        pred = np.empty(len(ys), dtype=object)
        for tr, te in GroupKFold(n_splits=folds).split(xs, ys, gs):
            sc = StandardScaler().fit(xs[tr])
            clf = LogisticRegression(C=0.1, max_iter=2000, random_state=seed)
            clf.fit(sc.transform(xs[tr]), ys[tr])
            pred[te] = clf.predict(sc.transform(xs[te]))
        _, c = np.unique(ys, return_counts=True)
        acc = float((pred == ys).mean())
        return {"n": int(len(ys)), "accuracy": acc, "majority": float(c.max() / c.sum()),
                "balanced_accuracy": float(np.mean([(pred[ys == s] == s).mean() for s in np.unique(ys)])),
                "sources": np.unique(ys).tolist()}

    res = {"all": cv_acc(np.ones(len(x), bool))}
    for lab in sorted(set(labels.tolist())):
        res[f"within_{lab}"] = cv_acc(labels == lab)
    return res


def gradcam_mass(feats: np.ndarray, head: list[dict[str, Any]], head_weights: dict[str, np.ndarray],
                 positive_index: int = 0, size: int = 224, batch: int = 64) -> dict[str, float]:
    """Mean share of Grad-CAM mass (upsampled to ``size``) in the lung box, border band and corners."""
    from PIL import Image

    from desktop.core.gradcam import gradcam, head_forward, head_logit_grad

    masks = region_masks(size, size)
    shares: dict[str, list[float]] = {k: [] for k in masks}
    empty = 0
    for s in range(0, len(feats), batch):
        f = feats[s:s + batch].astype(np.float32)
        cache = head_forward(f, head, head_weights)
        grads = head_logit_grad(cache, head, head_weights, positive_index)
        cams, raw_max = gradcam(f, grads)
        for cam, mx in zip(cams, raw_max, strict=True):
            if not mx > 0:
                empty += 1
                continue
            up = np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize(
                (size, size), Image.Resampling.BICUBIC), dtype=np.float64).clip(0, None)
            total = up.sum()
            if total <= 0:
                empty += 1
                continue
            for k, m in masks.items():
                shares[k].append(float(up[m].sum() / total))
    area = {k: float(m.mean()) for k, m in masks.items()}
    out: dict[str, float] = {f"{k}_share": float(np.mean(v)) if v else float("nan") for k, v in shares.items()}
    out.update({f"{k}_area": a for k, a in area.items()})
    out["empty_maps"] = float(empty)
    return out


def run_audit(model: Any, dataset: Dataset, *, cache_dir: str | os.PathLike[str] | None = None,
              index: np.ndarray | None = None, seed: int = 0) -> dict[str, Any]:
    """All three audits for a :class:`model_training.train.TrainedModel` on ``index`` (default: its test split,
    else validation). (a) uses every image of ``dataset``."""
    from .backbones import build_base, cut_model
    from .data import load_images
    from .export import extract_head
    from .train import POSITIVE

    idx = np.asarray(index if index is not None else (model.split.test or model.split.val))
    feats, _ = dataset_features(dataset, model.spec, architecture=model.architecture, weights=model.weights,
                                layer=model.cache_layer, cache_dir=cache_dir)
    res: dict[str, Any] = {"evaluated_on": f"{len(idx)} images ({'test' if model.split.test else 'validation'} split)"}
    res["source_probe"] = source_probe(model.layer_features(feats), dataset, seed=seed)
    y = dataset.labels(POSITIVE)[idx]
    p_plain = model.head_probs(feats[idx])
    images = load_images(dataset, model.spec, cache_dir)[idx]
    base, _ = build_base(model.architecture, weights=model.weights,
                         input_shape=(model.spec.height, model.spec.width, model.spec.channels))
    masked = extract_features(cut_model(base, model.cache_layer), mask_border(images), model.spec)
    p_masked = model.head_probs(masked)
    thr = {op.name: op.threshold for op in model.operating_points}.get("high_sensitivity", 0.5)
    res["masked_border"] = {
        "region": f"outer {BORDER:.0%} band and {CORNER:.0%} corner squares set to the image mean",
        "auroc_plain": auroc(y, p_plain), "auroc_masked": auroc(y, p_masked),
        "plain": threshold_metrics(y, p_plain, thr), "masked": threshold_metrics(y, p_masked, thr),
        "mean_abs_change_p_covid": float(np.mean(np.abs(p_plain - p_masked))),
    }
    full = model.full_model()
    head, weights = extract_head(full, model.layer, model.temperature)
    res["gradcam_mass"] = gradcam_mass(model.layer_features(feats[idx]), head, weights, size=model.spec.height)
    res["gradcam_mass"]["regions"] = (f"lung box rows {LUNG_BOX[0]:.0%}-{LUNG_BOX[1]:.0%}, cols "
                                      f"{LUNG_BOX[2]:.0%}-{LUNG_BOX[3]:.0%}; border band {BORDER:.0%}; "
                                      f"corners {CORNER:.0%} squares")
    return res
