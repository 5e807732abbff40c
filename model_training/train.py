"""Training: frozen backbone features (cached) + a head, early stopping, temperature, operating points.

The backbone is frozen in every recipe here, so its features are computed
once per preprocessing/augmentation and the head is trained on that cache:
minutes on a 2-core CPU instead of hours. Augmentation is applied to the
images before the backbone: ``augment_copies`` augmented versions of every
image are pre-computed and each epoch draws one version (or the original) per
training image.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from desktop.core.preprocess import PreprocessSpec

from .backbones import BackboneInit, build_base
from .data import Dataset, Split, check_no_patient_overlap
from .features import dataset_features
from .heads import apply_head, copy_head_weights, needs_pre_pool
from .metrics import OperatingPoint, auroc, choose_operating_points, fit_temperature
from .progress import Progress
from .recipes import Recipe

log = logging.getLogger(__name__)

CLASS_NAMES = ("covid", "normal")
POSITIVE = "covid"
MIN_STRATUM = 100  # source balancing: strata smaller than this are weighted as if this big


@dataclass
class TrainedModel:
    """A trained head on a frozen backbone, with everything the card needs."""

    recipe: Recipe
    architecture: str
    weights: str | None
    init: BackboneInit
    layer: str
    spec: PreprocessSpec
    head: Any                      # keras model: features (pooled or map) -> softmax
    pooled: bool
    temperature: float
    operating_points: list[OperatingPoint]
    split: Split
    history: list[dict[str, float]] = field(default_factory=list)
    seed: int = 0

    def head_probs(self, feats: np.ndarray) -> np.ndarray:
        """p(covid) from cached features (maps or pooled), temperature applied."""
        x = feats.astype(np.float32)
        if self.pooled and x.ndim == 4:
            x = x.mean(axis=(1, 2))
        p = np.asarray(self.head.predict(x, batch_size=256, verbose=0), dtype=np.float64)
        return temper(p, self.temperature)

    def full_model(self) -> Any:
        """The flat functional model: backbone input -> Grad-CAM layer -> head (softmax, untempered)."""
        import keras

        base, _ = build_base(self.architecture, weights=self.weights,
                             input_shape=(self.spec.height, self.spec.width, self.spec.channels))
        x = base.get_layer(self.layer).output
        out = apply_head(x, self.recipe.head, hidden=self.recipe.hidden, dropout=self.recipe.dropout,
                         l2=self.recipe.l2, pre_pool=needs_pre_pool(self.architecture, self.recipe.head),
                         seed=self.seed)
        model = keras.Model(base.input, out, name=f"{self.architecture}_{self.recipe.name}")
        copy_head_weights(self.head, model)
        return model


def temper(p: np.ndarray, temperature: float) -> np.ndarray:
    """p(covid) of softmax(log p / T) for (N, 2) class probabilities (covid first)."""
    logp = np.log(np.clip(p, 1e-12, 1.0))
    z = logp / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e[:, 0] / e.sum(axis=1)


def calibrate_platt(head: Any, p_val: np.ndarray, y_val: np.ndarray) -> float:
    """Platt scaling on validation: p = sigmoid(a * d + b) with d the covid-minus-normal logit.

    Returns the temperature ``1 / a`` and folds the shift ``b`` into the bias of ``head_logits``
    (so the exported model, which divides the last layer by the temperature, gives the calibrated
    probabilities). Class weighting and source balancing shift the prior; a temperature alone cannot
    undo that. Falls back to temperature 1 (no change) when the fit is degenerate.
    """
    from sklearn.linear_model import LogisticRegression

    lp = np.log(np.clip(p_val, 1e-12, 1.0))
    d = (lp[:, 0] - lp[:, 1]).reshape(-1, 1)
    clf = LogisticRegression(C=1e4, max_iter=1000).fit(d, y_val)
    a, b = float(clf.coef_[0, 0]), float(clf.intercept_[0])
    if not (np.isfinite(a) and np.isfinite(b)) or a <= 1e-3:
        log.warning("Platt scaling degenerate (a=%s, b=%s): not applied", a, b)
        return 1.0
    t = 1.0 / a
    layer = head.get_layer("head_logits")
    kernel, bias = layer.get_weights()
    bias = bias + np.array([b * t / 2.0, -b * t / 2.0], dtype=bias.dtype)
    layer.set_weights([kernel, bias])
    log.info("Platt scaling: temperature %.3f, logit shift %.3f", t, b)
    return t


def sample_weights(dataset: Dataset, index: np.ndarray, recipe: Recipe) -> np.ndarray:
    """Per-image training weights: source balancing within each class, then class balancing."""
    recs = [dataset.records[i] for i in index]
    w = np.ones(len(recs), dtype=np.float64)
    labels = np.array([r.label for r in recs])
    if recipe.source_balance:
        strata: dict[tuple[str, str], int] = {}
        for r in recs:
            strata[(r.source, r.label)] = strata.get((r.source, r.label), 0) + 1
        w = np.array([1.0 / max(strata[(r.source, r.label)], MIN_STRATUM) for r in recs])
        for lab in set(labels.tolist()):
            m = labels == lab
            w[m] *= m.sum() / w[m].sum()
    if recipe.class_weight:
        for lab in set(labels.tolist()):
            m = labels == lab
            w[m] *= (len(w) / 2.0) / w[m].sum()
    return w * (len(w) / w.sum())


def _onehot(y: np.ndarray) -> np.ndarray:
    # class index 0 = covid (y == 1), 1 = normal
    return np.stack([y == 1, y == 0], axis=1).astype(np.float32)


def fit_logreg_head(x_tr: np.ndarray, y_tr: np.ndarray, w_tr: np.ndarray, recipe: Recipe, seed: int) -> Any:
    """Logistic regression (sklearn, standardised inputs) folded into a Dense(2, softmax) head."""
    import keras
    from sklearn.linear_model import LogisticRegression

    mu = x_tr.mean(axis=0)
    sd = x_tr.std(axis=0) + 1e-6
    clf = LogisticRegression(C=recipe.logreg_c, max_iter=3000, random_state=seed)
    clf.fit((x_tr - mu) / sd, y_tr, sample_weight=w_tr)
    coef = clf.coef_[0] / sd
    bias = float(clf.intercept_[0] - np.sum(clf.coef_[0] * mu / sd))
    inp = keras.Input(shape=(x_tr.shape[1],), name="pooled_features")
    model = keras.Model(inp, apply_head(inp, "gap_linear", pooled_input=True, l2=0.0, seed=seed))
    kernel = np.stack([coef / 2.0, -coef / 2.0], axis=1).astype(np.float32)
    model.get_layer("head_logits").set_weights([kernel, np.array([bias / 2.0, -bias / 2.0], np.float32)])
    return model


def fit_keras_head(x_versions: list[np.ndarray], y_tr: np.ndarray, w_tr: np.ndarray, x_val: np.ndarray,
                   y_val: np.ndarray, recipe: Recipe, pooled: bool, seed: int,
                   show_progress: bool = False, pre_pool: bool = False) -> tuple[Any, list[dict[str, float]]]:
    """Train the head with Adam on cached features; each epoch draws one version per image."""
    import keras

    keras.utils.set_random_seed(seed)
    shape = x_versions[0].shape[1:]
    inp = keras.Input(shape=shape, name="pooled_features" if pooled else "feature_map")
    out = apply_head(inp, recipe.head, hidden=recipe.hidden, dropout=recipe.dropout, l2=recipe.l2,
                     pooled_input=pooled, pre_pool=pre_pool, seed=seed)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing))
    rng = np.random.default_rng(seed)
    n = len(y_tr)
    target = _onehot(y_tr)
    history: list[dict[str, float]] = []
    best = (-np.inf, None)
    bad = 0
    for epoch in range(recipe.epochs):
        order = rng.permutation(n)
        version = rng.integers(0, len(x_versions), size=n)
        bar = Progress(n, f"epoch {epoch + 1}/{recipe.epochs}", enabled=show_progress)
        losses = []
        for start in range(0, n, recipe.batch_size):
            idx = order[start:start + recipe.batch_size]
            xb = np.stack([x_versions[v][i] for v, i in zip(version[idx], idx, strict=True)]).astype(np.float32)
            loss = model.train_on_batch(xb, target[idx], sample_weight=w_tr[idx].astype(np.float32))
            losses.append(float(np.asarray(loss).ravel()[0]))
            bar.update(len(idx), loss=float(np.mean(losses)))
        rec = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        if len(y_val) and len(set(y_val.tolist())) == 2:
            pv = np.asarray(model.predict(x_val.astype(np.float32), batch_size=512, verbose=0))[:, 0]
            rec["val_auroc"] = auroc(y_val, pv)
            bar.update(0, val_auroc=rec["val_auroc"])
        bar.close()
        history.append(rec)
        log.info("epoch %d: %s", epoch + 1, rec)
        if recipe.early_stopping and "val_auroc" in rec:
            if rec["val_auroc"] > best[0] + 1e-5:
                best = (rec["val_auroc"], model.get_weights())
                bad = 0
            else:
                bad += 1
                if bad >= recipe.patience:
                    break
    if recipe.early_stopping and best[1] is not None:
        model.set_weights(best[1])
    return model, history


def train(dataset: Dataset, recipe: Recipe, split: Split, *, architecture: str = "mobilenet",
          weights: str | None = "imagenet", layer: str | None = None, input_size: int = 224,
          cache_dir: str | os.PathLike[str] | None = None, seed: int = 0,
          show_progress: bool = False) -> TrainedModel:
    """Train ``recipe`` on ``split.train`` (validation: ``split.val``)."""
    check_no_patient_overlap(dataset, split)
    if not split.train:
        raise ValueError("the training split is empty")
    spec = recipe.preprocess(architecture, input_size)
    layer = layer or recipe.layer
    feats, (init, layer) = dataset_features(dataset, spec, architecture=architecture, weights=weights,
                                            layer=layer, cache_dir=cache_dir, show_progress=show_progress)
    versions = [feats]
    for k in range(recipe.augment_copies if recipe.augment != "none" else 0):
        aug, _ = dataset_features(dataset, spec, architecture=architecture, weights=weights, layer=layer,
                                  cache_dir=cache_dir, show_progress=show_progress,
                                  augment_seed=1000 * seed + k + 1, augment_kind=recipe.augment)
        versions.append(aug)
    pooled = recipe.head in ("gap_linear", "gap_dense")
    tr = np.array(split.train)
    va = np.array(split.val)
    y = dataset.labels(POSITIVE)

    def prep(f: np.ndarray, idx: np.ndarray) -> np.ndarray:
        sub = f[idx]
        return sub.astype(np.float32).mean(axis=(1, 2)) if pooled else sub

    w_tr = sample_weights(dataset, tr, recipe)
    x_val = prep(feats, va) if len(va) else np.zeros((0, *prep(feats, tr[:1]).shape[1:]), np.float32)
    if recipe.head == "gap_linear":
        x_tr = np.concatenate([prep(v, tr) for v in versions])
        head = fit_logreg_head(x_tr, np.tile(y[tr], len(versions)), np.tile(w_tr, len(versions)), recipe, seed)
        history: list[dict[str, float]] = []
    else:
        head, history = fit_keras_head([prep(v, tr) for v in versions], y[tr], w_tr, x_val, y[va], recipe,
                                       pooled, seed, show_progress,
                                       pre_pool=needs_pre_pool(architecture, recipe.head))
    model = TrainedModel(recipe=recipe, architecture=architecture, weights=weights, init=init, layer=layer,
                         spec=spec, head=head, pooled=pooled, temperature=1.0, operating_points=[],
                         split=split, history=history, seed=seed)
    if len(va):
        p_raw = np.asarray(head.predict(x_val, batch_size=512, verbose=0), dtype=np.float64)
        if recipe.temperature_scaling and len(set(y[va].tolist())) == 2:
            if recipe.calibration_bias:
                model.temperature = calibrate_platt(head, p_raw, y[va])
                p_raw = np.asarray(head.predict(x_val, batch_size=512, verbose=0), dtype=np.float64)
            else:
                model.temperature = fit_temperature(np.log(np.clip(p_raw, 1e-12, 1.0)), y[va])
        p_val = temper(p_raw, model.temperature)
        if len(set(y[va].tolist())) == 2:
            model.operating_points = choose_operating_points(y[va], p_val, dataset.patients()[va])
    return model


def predict_dataset(model: TrainedModel, dataset: Dataset, index: np.ndarray | None = None, *,
                    cache_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
    """p(covid) for the images of ``dataset`` (all, or ``index``) through cached features."""
    feats, _ = dataset_features(dataset, model.spec, architecture=model.architecture, weights=model.weights,
                                layer=model.layer, cache_dir=cache_dir)
    idx = np.arange(len(dataset)) if index is None else np.asarray(index)
    return model.head_probs(feats[idx])
