"""Lever 9 of the new-site work: losses that treat every source as a group (group-DRO) or punish features
that tell the source (a source-adversarial head), the two candidates of the issue not measured before.

Both need several sources *per class* in training, so they are run with every training source of the
split (as lever 1's "all" probes), not with ``ours_mixed``'s single source; both act on the cached
global-average-pooled frozen features of the bundled preprocessing (original + 3 photometric copies), so
that they are measured as fast as levers 1 and 8 and against the same baseline (C = 1e-3 logistic probe:
criterion 28.6%, JSRT 45.2% on the random-split model).

- **group-DRO** (Sagawa et al. 2020, "Distributionally robust neural networks"): a logistic regression
  whose loss is the *worst* (source, class) group's, via the online exponentiated-gradient weights of the
  paper (step ``eta``), plus the L2 penalty of the probe's C. A group a shortcut serves (one-class sources)
  has a low loss and gets little weight; the hard groups decide the boundary. Written out in numpy
  because scikit-learn has no group-DRO and the model is one linear layer.
- **source-adversarial head** (DANN; Ganin et al. 2016, with the class-conditional adversary of Li et al.
  2018 so that the class itself is not removed): a 64-unit ReLU layer feeding the COVID-19 classifier and,
  through a gradient-reversal layer of strength ``lam``, one source classifier per class with at least
  two training sources. The layer is pushed to keep the class and lose which collection a film came from
  within a class. Written with TensorFlow's GradientTape: Keras has no gradient-reversal layer.

Every fold's new-site figures come from ``model_training.newsite`` (threshold = the validation-chosen
high-sensitivity point; JSRT normals as the check, never used to choose anything). Output:
docs/results/groups_exploration.json and the lever-1 table.

    .venv/bin/python scripts/explore_groups.py [--dro-eta 0,0.01,0.1] [--adv-lam 0,1,3]   # the runs in experiments.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from explore_newsite import pooled_probe_inputs, table  # noqa: E402

from model_training.metrics import auroc, choose_operating_points  # noqa: E402
from model_training.newsite import (  # noqa: E402
    fold_new_site,
    summarize_recipe,
)
from model_training.recipes import OURS_SPATIAL  # noqa: E402
from model_training.train import sample_weights  # noqa: E402

Fitter = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]], list[np.ndarray]]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def fit_group_dro(x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, c: float, eta: float, steps: int = 800,
                  lr: float = 0.02, seed: int = 0) -> tuple[np.ndarray, float, np.ndarray]:
    """Linear group-DRO on standardised ``x``: returns weights, bias and the final group weights q.

    Loss = sum_g q_g * mean BCE of group g + ||w||^2 / (2 C n) (the scikit-learn C of the probe, per image);
    q_g <- q_g * exp(eta * loss_g), renormalised, each step (eta = 0: groups weighted equally, i.e. source
    and class balanced). Full-batch Adam.
    """
    rng = np.random.default_rng(seed)
    names, g = np.unique(groups, return_inverse=True)
    n, d = x.shape
    w, b = rng.normal(0, 1e-3, d), 0.0
    q = np.full(len(names), 1.0 / len(names))
    lam = 1.0 / (c * n)
    counts = np.bincount(g, minlength=len(names)).astype(np.float64)
    m_w, v_w, m_b, v_b = np.zeros(d), np.zeros(d), 0.0, 0.0
    for t in range(1, steps + 1):
        p = _sigmoid(x @ w + b)
        loss = -(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12))
        g_loss = np.bincount(g, weights=loss, minlength=len(names)) / counts
        q = q * np.exp(eta * g_loss)
        q /= q.sum()
        coef = (q / counts)[g]  # d(sum_g q_g mean_g loss)/d loss_i
        r = coef * (p - y)
        gw, gb = x.T @ r + lam * w, float(r.sum())
        m_w, v_w = 0.9 * m_w + 0.1 * gw, 0.999 * v_w + 0.001 * gw ** 2
        m_b, v_b = 0.9 * m_b + 0.1 * gb, 0.999 * v_b + 0.001 * gb ** 2
        w -= lr * (m_w / (1 - 0.9 ** t)) / (np.sqrt(v_w / (1 - 0.999 ** t)) + 1e-8)
        b -= lr * (m_b / (1 - 0.9 ** t)) / (np.sqrt(v_b / (1 - 0.999 ** t)) + 1e-8)
    return w, b, q


def fit_adversarial(x: np.ndarray, y: np.ndarray, groups: np.ndarray, w_img: np.ndarray, *, lam: float,
                    hidden: int = 64, steps: int = 600, batch: int = 1024, lr: float = 1e-3, l2: float = 1e-3,
                    seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """Class-conditional source-adversarial head on standardised ``x``; returns p(covid) of new features.

    ``groups`` are "source|label" strings; an adversary is trained for each class with >= 2 sources.
    Adam on random mini-batches of ``batch`` images (``steps`` of them: about 70 passes over 8600 rows).
    """
    import tensorflow as tf  # noqa: TID251  (a training script: tf.custom_gradient for the reversal)

    tf.random.set_seed(seed)

    @tf.custom_gradient
    def reverse(h: tf.Tensor) -> tuple[tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]:
        return tf.identity(h), lambda dy: -lam * dy

    src = np.array([s.split("|")[0] for s in groups])
    rng = np.random.default_rng(seed)
    advs = []  # per class with >= 2 sources: (class, source names, each image's source code or -1)
    for lab in (0, 1):
        m = y == lab
        names = np.unique(src[m])
        if len(names) >= 2:
            codes = np.where(m, np.searchsorted(names, src), -1)
            advs.append((lab, names, codes))
    init = tf.keras.initializers.GlorotUniform(seed=seed)
    w1 = tf.Variable(init((x.shape[1], hidden)))
    b1 = tf.Variable(tf.zeros(hidden))
    w2 = tf.Variable(init((hidden, 1)))
    b2 = tf.Variable(tf.zeros(1))
    heads = [(tf.Variable(init((hidden, len(names)))), tf.Variable(tf.zeros(len(names)))) for _, names, _ in advs]
    params = [w1, b1, w2, b2, *[v for h in heads for v in h]]
    opt = tf.keras.optimizers.Adam(lr)
    w_norm = (w_img / w_img.mean()).astype(np.float32)
    for _ in range(steps):
        b = rng.choice(len(x), size=min(batch, len(x)), replace=False)
        xt, yt = tf.constant(x[b], tf.float32), tf.constant(y[b, None], tf.float32)
        with tf.GradientTape() as tape:
            h = tf.nn.relu(xt @ w1 + b1)
            cls = tf.reduce_mean(w_norm[b, None] * tf.nn.sigmoid_cross_entropy_with_logits(yt, h @ w2 + b2))
            adv = tf.constant(0.0)
            for (_, _, codes), (hw, hb) in zip(advs, heads, strict=True):
                sel = np.flatnonzero(codes[b] >= 0)
                if len(sel):
                    adv += tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                        codes[b][sel], reverse(tf.gather(h, sel)) @ hw + hb))
            loss = cls + adv + l2 * (tf.reduce_sum(w1 ** 2) + tf.reduce_sum(w2 ** 2))
        opt.apply_gradients(zip(tape.gradient(loss, params), params, strict=True))

    def predict(e: np.ndarray) -> np.ndarray:
        z = tf.nn.relu(tf.constant(e, tf.float32) @ w1 + b1) @ w2 + b2
        return tf.sigmoid(z).numpy()[:, 0]
    return predict


def standardise(xs_tr: list[np.ndarray], evals: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    x = np.concatenate(xs_tr)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    return (x - mu) / sd, [(e - mu) / sd for e in evals]


def dro_fitter(c: float, eta: float) -> Fitter:
    def fit(xs_tr, y, w, groups, evals):  # type: ignore[no-untyped-def]
        x, ev = standardise(xs_tr, evals)
        reps = len(xs_tr)
        wt, b, q = fit_group_dro(x, np.tile(y, reps), np.tile(groups, reps), c=c, eta=eta)
        fit.q = dict(zip(np.unique(groups).tolist(), np.round(q, 3).tolist(), strict=True))  # type: ignore[attr-defined]
        return [_sigmoid(e @ wt + b) for e in ev]
    return fit


def adv_fitter(lam: float) -> Fitter:
    def fit(xs_tr, y, w, groups, evals):  # type: ignore[no-untyped-def]
        x, ev = standardise(xs_tr, evals)
        reps = len(xs_tr)
        predict = fit_adversarial(x, np.tile(y, reps), np.tile(groups, reps), np.tile(w, reps), lam=lam)
        return [predict(e) for e in ev]
    return fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/cxr")
    ap.add_argument("--dro-eta", default="0,0.01,0.1")
    ap.add_argument("--adv-lam", default="0,1,3")
    ap.add_argument("--c", type=float, default=1e-3, help="inverse L2 strength of the group-DRO probe")
    ap.add_argument("--out", default="docs/results/groups_exploration.json")
    ap.add_argument("--n-boot", type=int, default=200)
    args = ap.parse_args()
    ds, check, base, copies, pc, splits = pooled_probe_inputs(args.data)
    y, src = ds.labels(), ds.sources().astype(str)
    groups = np.array([f"{s}|{lab}" for s, lab in zip(src, y, strict=True)])
    variants: dict[str, Fitter] = {}
    variants.update({f"dro_eta{e:g}_C{args.c:g}": dro_fitter(args.c, e) for e in
                     (float(s) for s in args.dro_eta.split(",") if s)})
    variants.update({f"adversarial_lam{lam:g}": adv_fitter(lam) for lam in
                     (float(s) for s in args.adv_lam.split(",") if s)})
    results: dict = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    for name, fit in variants.items():
        t0 = time.monotonic()
        folds = {}
        for fold, split in splits.items():
            tr, va, te = (np.asarray(p) for p in (split.train, split.val, split.test))
            w = sample_weights(ds, tr, OURS_SPATIAL)
            p_val, p_te, p_chk = fit([base[tr]] + [x[tr] for x in copies], y[tr], w, groups[tr],
                                     [base[va], base[te], pc])
            ops = {o.name: o for o in choose_operating_points(y[va], p_val, ds.patients()[va], n_boot=0)}
            ns = fold_new_site(ds, split, p_te, ops["high_sensitivity"].threshold,
                               check=(p_chk, check.patients()), n_boot=args.n_boot)
            folds[fold] = {"new_site": ns, "val_auroc": auroc(y[va], p_val), "test_auroc": auroc(y[te], p_te),
                           "group_weights": getattr(fit, "q", None),
                           "operating_points": {k: o.to_dict() for k, o in ops.items()}}
            print(name, fold, "JSRT called", round(ns["check_set"]["called_covid"], 3), flush=True)
        summ = summarize_recipe({k: f for k, f in folds.items() if k != "random"}, folds.get("random"))
        results[name] = {"summary": summ, "folds": folds, "seconds": round(time.monotonic() - t0, 1)}
        Path(args.out).write_text(json.dumps(results, indent=1, default=float))
        print(table({name: results[name]}), flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
