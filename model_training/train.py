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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from desktop.core.preprocess import PreprocessSpec

from .backbones import BackboneInit, build_base, default_cut, finetune_plan
from .data import Dataset, Split, check_no_patient_overlap, mixed_sources, restrict_split
from .features import dataset_features
from .heads import apply_head, copy_weights_by_name, needs_pre_pool
from .metrics import OperatingPoint, auroc, choose_operating_points, fit_temperature
from .progress import Progress
from .recipes import Recipe

log = logging.getLogger(__name__)

CLASS_NAMES = ("covid", "normal")
POSITIVE = "covid"
MIN_STRATUM = 100  # source balancing: strata smaller than this are weighted as if this big
OPERATING_SOURCES = ("validation", "new_sites")  # Recipe.operating_sources
COLLAPSE_AUROC = 0.6  # a head whose best validation AUROC stays below this has collapsed
COLLAPSE_RETRIES = 2


class NoTrainingSourceError(ValueError):
    """The recipe's source rule leaves nothing to train on in this split (e.g. a LOSO fold)."""


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
    feature_layer: str = ""        # where cached features are taken ("": ``layer``); earlier when fine-tuning
    finetuned_layers: tuple[str, ...] = ()  # backbone layers whose weights were trained (in ``head``)
    # where the operating points were chosen when not on ``split.val`` (recipe.operating_sources "new_sites")
    operating_index: tuple[int, ...] = ()

    @property
    def operating_set(self) -> np.ndarray:
        """Indices of the films the operating points are chosen on: ``operating_index``, else validation."""
        return np.asarray(self.operating_index or self.split.val, dtype=int)

    @property
    def cache_layer(self) -> str:
        """The backbone layer whose (cached) output ``head`` takes."""
        return self.feature_layer or self.layer

    def layer_features(self, feats: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """Feature maps at ``layer`` (the Grad-CAM layer) from cached features at :attr:`cache_layer`:
        the fine-tuned top layers applied when there are any."""
        if self.cache_layer == self.layer:
            return feats
        import keras

        sub = keras.Model(self.head.inputs[0], self.head.get_layer(self.layer).output)
        return predict_rows(sub, feats, batch_size).astype(np.float16)

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
        copy_weights_by_name(self.head, model)  # the head and, when fine-tuned, the trained top layers
        return model


def top_layer_names(base: Any, start: str, end: str) -> list[str]:
    """The backbone's layers after ``start`` up to and including ``end`` (MobileNet and VGG19 are chains)."""
    names = [layer.name for layer in base.layers]
    for n in (start, end):
        if n not in names:
            raise ValueError(f"no layer {n!r} in the {base.name} backbone")
    i, j = names.index(start), names.index(end)
    if j <= i:
        raise ValueError(f"the fine-tuned blocks must start ({start}) before the cut ({end})")
    return names[i + 1:j + 1]


def build_top_head(base: Any, recipe: Recipe, start: str, layer: str, *, trainable: tuple[str, ...],
                   architecture: str, seed: int = 0) -> Any:
    """Cached features at ``start`` -> copies of the backbone's layers up to ``layer`` (with ``base``'s
    weights; only the layers in ``trainable``, never BatchNormalization, are trained, so it
    keeps its ImageNet statistics and runs in inference mode) -> the head. Layer names are the
    backbone's, so the trained weights go back into the full model by name."""
    import keras

    inp = keras.Input(shape=tuple(base.get_layer(start).output.shape[1:]), name="feature_map")
    x = inp
    for name in top_layer_names(base, start, layer):
        src = base.get_layer(name)
        copy = src.__class__.from_config(src.get_config())
        x = copy(x)
        if src.get_weights():
            copy.set_weights(src.get_weights())
        copy.trainable = name in trainable and not isinstance(copy, keras.layers.BatchNormalization)
    out = apply_head(x, recipe.head, hidden=recipe.hidden, dropout=recipe.dropout, l2=recipe.l2,
                     pre_pool=needs_pre_pool(architecture, recipe.head), seed=seed)
    return keras.Model(inp, out, name=f"top_from_{start}")


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

    shape = x_versions[0].shape[1:]
    for attempt in range(COLLAPSE_RETRIES + 1):
        init_seed = seed + 7919 * attempt
        keras.utils.set_random_seed(init_seed)
        inp = keras.Input(shape=shape, name="pooled_features" if pooled else "feature_map")
        out = apply_head(inp, recipe.head, hidden=recipe.hidden, dropout=recipe.dropout, l2=recipe.l2,
                         pooled_input=pooled, pre_pool=pre_pool, seed=init_seed)
        model = keras.Model(inp, out)
        model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing))
        history = fit_epochs(model, x_versions, y_tr, w_tr, x_val, y_val, epochs=recipe.epochs,
                             batch_size=recipe.batch_size, early_stopping=recipe.early_stopping,
                             patience=recipe.patience, seed=init_seed, show_progress=show_progress)
        if not collapsed(history) or attempt == COLLAPSE_RETRIES:
            break
        log.warning("the head collapsed to a constant output (best validation AUROC %.3f): trained again from "
                    "another initialisation (attempt %d)", max(h.get("val_auroc", 0.5) for h in history), attempt + 2)
    if attempt:
        history = [{**h, "attempt": attempt + 1} for h in history]
    return model, history


def collapsed(history: list[dict[str, float]]) -> bool:
    """True when no epoch's validation AUROC left chance (the Flatten heads' dead-ReLU collapse: every input
    gets the same output; seen in 1 of 5 cross-fitted ``ours_mixed`` models, docs/results/experiments.md)."""
    aucs = [h["val_auroc"] for h in history if np.isfinite(h.get("val_auroc", np.nan))]
    return bool(aucs) and max(aucs) < COLLAPSE_AUROC


def fit_epochs(model: Any, x_versions: list[np.ndarray], y_tr: np.ndarray, w_tr: np.ndarray, x_val: np.ndarray,
               y_val: np.ndarray, *, epochs: int, batch_size: int, early_stopping: bool, patience: int, seed: int,
               show_progress: bool = False, stage: str = "", start: tuple[float, Any] | None = None,
               ) -> list[dict[str, float]]:
    """Train a compiled model; each epoch draws one version (original or augmented copy) per image.

    With ``early_stopping`` the weights of the epoch with the best validation AUROC are kept;
    ``start`` = (validation AUROC, weights) of the model before this stage, kept if no epoch beats it.
    """
    rng = np.random.default_rng(seed)
    n = len(y_tr)
    target = _onehot(y_tr)
    history: list[dict[str, float]] = []
    best = start if start is not None else (-np.inf, None)
    bad = 0
    for epoch in range(epochs):
        order = rng.permutation(n)
        version = rng.integers(0, len(x_versions), size=n)
        bar = Progress(n, f"{stage}epoch {epoch + 1}/{epochs}", enabled=show_progress)
        losses = []
        for first in range(0, n, batch_size):
            idx = order[first:first + batch_size]
            xb = np.stack([x_versions[v][i] for v, i in zip(version[idx], idx, strict=True)]).astype(np.float32)
            loss = model.train_on_batch(xb, target[idx], sample_weight=w_tr[idx].astype(np.float32))
            losses.append(float(np.asarray(loss).ravel()[0]))
            bar.update(len(idx), loss=float(np.mean(losses)))
        rec: dict[str, float] = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        if stage:
            rec["stage"] = stage.strip(": ")  # type: ignore[assignment]
        if len(y_val) and len(set(y_val.tolist())) == 2:
            pv = predict_rows(model, x_val)[:, 0]
            rec["val_auroc"] = auroc(y_val, pv)
            bar.update(0, val_auroc=rec["val_auroc"])
        bar.close()
        history.append(rec)
        log.info("%sepoch %d: %s", stage, epoch + 1, rec)
        if early_stopping and "val_auroc" in rec:
            if rec["val_auroc"] > best[0] + 1e-5:
                best = (rec["val_auroc"], model.get_weights())
                bad = 0
            else:
                bad += 1
                if bad >= patience:
                    break
    if early_stopping and best[1] is not None:
        model.set_weights(best[1])
    return history


def predict_rows(model: Any, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """``model``'s output for ``x`` in batches, inference mode, float32 inputs."""
    out = [np.asarray(model(x[s:s + batch_size].astype(np.float32), training=False))
           for s in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, *model.outputs[0].shape[1:]), np.float32)


def finetune_top(base: Any, versions: list[np.ndarray], y_tr: np.ndarray, w_tr: np.ndarray, x_val: np.ndarray,
                 y_val: np.ndarray, recipe: Recipe, *, start: str, layer: str, trainable: tuple[str, ...],
                 architecture: str, seed: int, show_progress: bool = False) -> tuple[Any, list[dict[str, float]]]:
    """Two stages on features cached at ``start``: (1) the head alone on the frozen top's pooled features,
    (2) the ``trainable`` top layers and the head together at ``recipe.finetune_lr``."""
    import keras

    if recipe.head != "gap_dense":
        raise ValueError(f"fine-tuning is implemented for the gap_dense head. Received: head={recipe.head!r}")
    keras.utils.set_random_seed(seed)
    top = build_top_head(base, recipe, start, layer, trainable=trainable, architecture=architecture, seed=seed)
    gap = keras.Model(top.inputs[0], keras.layers.GlobalAveragePooling2D()(top.get_layer(layer).output))
    pooled = [predict_rows(gap, v) for v in versions]
    pooled_val = predict_rows(gap, x_val)
    head, history = fit_keras_head(pooled, y_tr, w_tr, pooled_val, y_val, recipe, True, seed, show_progress)
    for h in history:
        h["stage"] = "head"  # type: ignore[assignment]
    copy_weights_by_name(head, top)
    if recipe.finetune_epochs <= 0:
        return top, history
    top.compile(optimizer=keras.optimizers.Adam(recipe.finetune_lr),
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing))
    two_classes = len(y_val) and len(set(y_val.tolist())) == 2
    start_point = (auroc(y_val, predict_rows(top, x_val)[:, 0]), top.get_weights()) if two_classes else None
    history += fit_epochs(top, versions, y_tr, w_tr, x_val, y_val, epochs=recipe.finetune_epochs,
                          batch_size=recipe.finetune_batch_size, early_stopping=recipe.early_stopping,
                          patience=recipe.finetune_patience, seed=seed + 1, show_progress=show_progress,
                          stage="fine-tune: ", start=start_point)
    return top, history


def train(dataset: Dataset, recipe: Recipe, split: Split, *, architecture: str = "mobilenet",
          weights: str | None = "imagenet", layer: str | None = None, input_size: int = 224,
          cache_dir: str | os.PathLike[str] | None = None, seed: int = 0,
          show_progress: bool = False) -> TrainedModel:
    """Train ``recipe`` on ``split.train`` (validation: ``split.val``; both restricted to the recipe's mixed
    sources when it sets ``mixed_sources_min``: the model's ``split`` is then the restricted one)."""
    check_no_patient_overlap(dataset, split)
    if recipe.operating_sources not in OPERATING_SOURCES:
        raise ValueError(f"operating_sources must be one of {OPERATING_SOURCES}. "
                         f"Received: operating_sources={recipe.operating_sources!r}")
    operating_index: tuple[int, ...] = ()
    if recipe.mixed_sources_min:
        keep = mixed_sources(dataset, split.train, recipe.mixed_sources_min)
        if not keep:
            raise NoTrainingSourceError(
                f"recipe {recipe.name!r} trains only on sources with >= {recipe.mixed_sources_min} training "
                f"images of each class, and this split has none")
        if recipe.operating_sources == "new_sites":
            operating_index = new_site_operating_set(dataset, split, keep, recipe.operating_min_per_class,
                                                     recipe.operating_source_names)
        split = restrict_split(dataset, split, keep)
    elif recipe.operating_sources == "new_sites":
        raise ValueError("operating_sources='new_sites' needs mixed_sources_min (the sources left out of training)")
    if not split.train:
        raise ValueError("the training split is empty")
    spec = recipe.preprocess(architecture, input_size)
    layer = layer or recipe.layer
    base = None
    trainable: tuple[str, ...] = ()
    cache_layer = layer
    if recipe.finetune_blocks:
        base, init0 = build_base(architecture, weights=weights, input_shape=(spec.height, spec.width, spec.channels))
        layer = layer or default_cut(architecture, init0)
        cache_layer, trainable = finetune_plan(base, architecture, layer, recipe.finetune_blocks)
    feats, (init, cache_layer) = dataset_features(dataset, spec, architecture=architecture, weights=weights,
                                                  layer=cache_layer, cache_dir=cache_dir,
                                                  show_progress=show_progress)
    layer = layer or cache_layer
    versions = [feats]
    for k in range(recipe.augment_copies if recipe.augment != "none" else 0):
        aug, _ = dataset_features(dataset, spec, architecture=architecture, weights=weights, layer=cache_layer,
                                  cache_dir=cache_dir, show_progress=show_progress,
                                  augment_seed=1000 * seed + k + 1, augment_kind=recipe.augment)
        versions.append(aug)
    pooled = recipe.head in ("gap_linear", "gap_dense") and not recipe.finetune_blocks
    tr = np.array(split.train)
    va = np.array(split.val)
    y = dataset.labels(POSITIVE)

    def prep(f: np.ndarray, idx: np.ndarray) -> np.ndarray:
        sub = f[idx]
        return sub.astype(np.float32).mean(axis=(1, 2)) if pooled else sub

    w_tr = sample_weights(dataset, tr, recipe)
    x_val = prep(feats, va) if len(va) else np.zeros((0, *prep(feats, tr[:1]).shape[1:]), np.float32)
    history: list[dict[str, float]] = []
    if recipe.finetune_blocks:
        head, history = finetune_top(base, [v[tr] for v in versions], y[tr], w_tr, x_val, y[va], recipe,
                                     start=cache_layer, layer=layer, trainable=trainable,
                                     architecture=architecture, seed=seed, show_progress=show_progress)
    elif recipe.head == "gap_linear":
        x_tr = np.concatenate([prep(v, tr) for v in versions])
        head = fit_logreg_head(x_tr, np.tile(y[tr], len(versions)), np.tile(w_tr, len(versions)), recipe, seed)
    else:
        head, history = fit_keras_head([prep(v, tr) for v in versions], y[tr], w_tr, x_val, y[va], recipe,
                                       pooled, seed, show_progress,
                                       pre_pool=needs_pre_pool(architecture, recipe.head))
    model = TrainedModel(recipe=recipe, architecture=architecture, weights=weights, init=init, layer=layer,
                         spec=spec, head=head, pooled=pooled, temperature=1.0, operating_points=[],
                         split=split, history=history, seed=seed,
                         feature_layer=cache_layer if cache_layer != layer else "", finetuned_layers=trainable)
    if len(va):
        p_raw = np.asarray(head.predict(x_val, batch_size=512, verbose=0), dtype=np.float64)
        if recipe.temperature_scaling and len(set(y[va].tolist())) == 2:
            if recipe.calibration_bias:
                model.temperature = calibrate_platt(head, p_raw, y[va])
                p_raw = np.asarray(head.predict(x_val, batch_size=512, verbose=0), dtype=np.float64)
            else:
                model.temperature = fit_temperature(np.log(np.clip(p_raw, 1e-12, 1.0)), y[va])
        p_val = temper(p_raw, model.temperature)
        if operating_index:
            op = np.asarray(operating_index)
            model.operating_index = operating_index
            model.operating_points = new_site_points(dataset, op, model.head_probs(feats[op]), va, p_val)
        elif len(set(y[va].tolist())) == 2:
            model.operating_points = choose_operating_points(y[va], p_val, dataset.patients()[va])
    return model


def new_site_operating_set(dataset: Dataset, split: Split, trained_sources: list[str], min_per_class: int,
                           names: tuple[str, ...] = ()) -> tuple[int, ...]:
    """The training and validation films of ``split`` whose source is *not* in ``trained_sources``: films of
    hospitals the model does not learn from, where its operating points are chosen (recipe
    ``operating_sources="new_sites"``), only those of the sources ``names`` when given. Empty (and a
    warning: the validation split is used) when they hold fewer than ``min_per_class`` films of either class."""
    keep = set(trained_sources)
    idx = tuple(i for i in (*split.train, *split.val) if dataset.records[i].source not in keep
                and (not names or dataset.records[i].source in names))
    counts = {c: sum(dataset.records[i].label == c for i in idx) for c in dataset.class_names}
    if min(counts.values(), default=0) < min_per_class:
        log.warning("operating points on the validation split: the sources outside training hold %s films "
                    "(fewer than %d of a class)", counts, min_per_class)
        return ()
    return idx


def new_site_operating_points(dataset: Dataset, index: np.ndarray, p: np.ndarray,
                              n_boot: int | None = None) -> list[OperatingPoint]:
    """:func:`choose_operating_points` on films of sources outside training, each description saying so."""
    y = dataset.labels(POSITIVE)[index]
    srcs = sorted({dataset.records[i].source for i in index})
    where = f"on {len(index)} films of {', '.join(srcs)} (sources not trained on)"
    return [replace(op, description=op.description.replace("on validation", where))
            for op in choose_operating_points(y, p, dataset.patients()[index],
                                              **({} if n_boot is None else {"n_boot": n_boot}))]


#: Name of the extra point of an ``operating_sources="new_sites"`` model: the usual high-sensitivity rule
#: on its own validation films (more COVID-19 found, more normals of a new site flagged).
MORE_SENSITIVE = "more_sensitive"


def in_source_point(validation_points: list[OperatingPoint], points: list[OperatingPoint]) -> list[OperatingPoint]:
    """The validation split's high-sensitivity point as :data:`MORE_SENSITIVE`, for a model whose points were
    chosen on films of sources it was not trained on, when it lies below their high-sensitivity threshold
    (a site that prefers sensitivity can then choose it); empty otherwise."""
    val = next((o for o in validation_points if o.name == "high_sensitivity"), None)
    ref = next((o for o in points if o.name == "high_sensitivity"), None)
    if val is None or ref is None or not val.threshold < ref.threshold:
        return []
    desc = (val.description.replace("on validation", "on the model's own validation films (its training "
                                    "source)")
            + "; finds more COVID-19 than high_sensitivity, and flags more normals of a new site")
    return [replace(val, name=MORE_SENSITIVE, description=desc)]


def new_site_points(dataset: Dataset, index: np.ndarray, p: np.ndarray, val_index: np.ndarray, p_val: np.ndarray,
                    n_boot: int | None = None) -> list[OperatingPoint]:
    """The points of an ``operating_sources="new_sites"`` model: :func:`new_site_operating_points` on the films
    ``index`` (scores ``p``), plus :func:`in_source_point` from its validation films ``val_index`` (``p_val``)
    when they hold both classes. Training and export (``card_figures``) both choose them here."""
    points = new_site_operating_points(dataset, index, p, n_boot)
    val_index = np.asarray(val_index, dtype=int)
    y_val = dataset.labels(POSITIVE)[val_index]
    if len(set(y_val.tolist())) == 2:
        val_points = choose_operating_points(y_val, p_val, dataset.patients()[val_index],
                                             **({} if n_boot is None else {"n_boot": n_boot}))
        points += in_source_point(val_points, points)
    return points


def predict_dataset(model: TrainedModel, dataset: Dataset, index: np.ndarray | None = None, *,
                    cache_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
    """p(covid) for the images of ``dataset`` (all, or ``index``) through cached features."""
    feats, _ = dataset_features(dataset, model.spec, architecture=model.architecture, weights=model.weights,
                                layer=model.cache_layer, cache_dir=cache_dir)
    idx = np.arange(len(dataset)) if index is None else np.asarray(index)
    return model.head_probs(feats[idx])
