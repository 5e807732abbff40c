"""Binary metrics with patient-level bootstrap CIs, operating points, calibration and plots.

``y`` is 1 for the positive class (covid), ``p`` the model's p(covid).
Bootstrap CIs resample *patients* (all images of a drawn patient come along),
so several films of one patient do not narrow the interval.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

N_BOOT = 1000


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); NaN with one class only."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    ranks = np.empty(len(p), dtype=np.float64)
    # average ranks for ties
    _, first, counts = np.unique(ps, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def confusion(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, int]:
    pred = np.asarray(p) >= threshold
    y = np.asarray(y).astype(bool)
    return {"tp": int((pred & y).sum()), "fn": int((~pred & y).sum()),
            "tn": int((~pred & ~y).sum()), "fp": int((pred & ~y).sum())}


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("nan")


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    c = confusion(y, p, threshold)
    n = sum(c.values())
    return {
        "accuracy": _ratio(c["tp"] + c["tn"], n),
        "sensitivity": _ratio(c["tp"], c["tp"] + c["fn"]),
        "specificity": _ratio(c["tn"], c["tn"] + c["fp"]),
        "ppv": _ratio(c["tp"], c["tp"] + c["fp"]),
        "npv": _ratio(c["tn"], c["tn"] + c["fn"]),
    }


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error of p(covid) over equal-width bins."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if len(y) == 0:
        return float("nan")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            total += m.sum() / len(p) * abs(y[m].mean() - p[m].mean())
    return float(total)


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> list[tuple[float, float, int]]:
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    return [(float(p[bins == b].mean()), float(y[bins == b].mean()), int((bins == b).sum()))
            for b in range(n_bins) if (bins == b).any()]


def _patient_groups(patients: Sequence[str] | np.ndarray) -> list[np.ndarray]:
    _, inverse = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    order = np.argsort(inverse, kind="mergesort")
    counts = np.bincount(inverse)
    return np.split(order, np.cumsum(counts)[:-1])


def bootstrap_indices(patients: Sequence[str] | np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> list[np.ndarray]:
    """Image indices of ``n_boot`` resamples of the patients (with replacement)."""
    groups = _patient_groups(patients)
    rng = np.random.default_rng(seed)
    lengths = np.array([len(g) for g in groups])
    flat = np.concatenate(groups) if groups else np.zeros(0, dtype=int)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if groups else np.zeros(0, dtype=int)
    out = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(groups), size=len(groups))
        if (lengths == 1).all():
            out.append(flat[starts[pick]])
        else:
            out.append(np.concatenate([flat[starts[k]:starts[k] + lengths[k]] for k in pick]))
    return out


def _ci(values: list[float]) -> list[float]:
    v = np.asarray([x for x in values if np.isfinite(x)])
    if v.size == 0:
        return [float("nan"), float("nan")]
    return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]


def evaluate_predictions(y: np.ndarray, p: np.ndarray, patients: Sequence[str] | np.ndarray,
                         threshold: float = 0.5, *, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Point estimates and patient-bootstrap 95% CIs of AUROC and the threshold metrics, plus ECE."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    res: dict[str, Any] = {"n": int(len(y)), "n_positive": int(y.sum()), "n_negative": int((1 - y).sum()),
                           "n_patients": int(len(np.unique(np.asarray(patients).astype(str)))),
                           "threshold": float(threshold)}
    res["auroc"] = auroc(y, p)
    res.update(threshold_metrics(y, p, threshold))
    res["confusion"] = confusion(y, p, threshold)
    res["ece"] = ece(y, p)
    boots: dict[str, list[float]] = {k: [] for k in ("auroc", "accuracy", "sensitivity", "specificity", "ppv", "npv")}
    if n_boot > 0 and len(y) > 1:
        for idx in bootstrap_indices(patients, n_boot, seed):
            yb, pb = y[idx], p[idx]
            boots["auroc"].append(auroc(yb, pb))
            for k, v in threshold_metrics(yb, pb, threshold).items():
                boots[k].append(v)
    for k, vals in boots.items():
        res[f"{k}_ci"] = _ci(vals)
    return res


def per_group(y: np.ndarray, p: np.ndarray, patients: np.ndarray, groups: np.ndarray, threshold: float,
              *, n_boot: int = 300) -> dict[str, dict[str, Any]]:
    out = {}
    for g in sorted(set(groups.tolist())):
        m = groups == g
        r = evaluate_predictions(y[m], p[m], patients[m], threshold, n_boot=n_boot)
        r["mean_p_covid"] = float(np.mean(p[m]))
        out[str(g)] = r
    return out


# ---------------------------------------------------------------------------
# Operating points
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatingPoint:
    name: str
    threshold: float
    sensitivity: float
    specificity: float
    description: str
    sensitivity_ci: tuple[float, float] = (float("nan"), float("nan"))
    specificity_ci: tuple[float, float] = (float("nan"), float("nan"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sensitivity_ci"] = list(self.sensitivity_ci)
        d["specificity_ci"] = list(self.specificity_ci)
        return d


#: Specificity targets of ``high_specificity``, tried in turn until one is above the high-sensitivity point's.
SPECIFICITY_STEPS = (0.975, 0.99, 1.0)


def high_specificity_target(spec_at_high_sensitivity: float, target: float = 0.95) -> float:
    """The specificity ``high_specificity`` must reach on validation: ``target``, unless the high-sensitivity
    point already reaches it; then the first of :data:`SPECIFICITY_STEPS` above that point's specificity (so
    the two points differ as their names promise: the more specific one has the higher threshold).
    Above 1.0 when the high-sensitivity point already has specificity 1.0."""
    for t in (target, *SPECIFICITY_STEPS):
        if t > spec_at_high_sensitivity:
            return float(t)
    return 1.0 + 1e-9


def choose_operating_points(y: np.ndarray, p: np.ndarray, patients: Sequence[str] | np.ndarray, *,
                            target: float = 0.95, n_boot: int = N_BOOT) -> list[OperatingPoint]:
    """Balanced (max Youden J), high-sensitivity (sens >= target, best spec) and high-specificity
    (spec >= target, best sens; a stricter target when the high-sensitivity point already meets it, see
    :func:`high_specificity_target`) thresholds chosen on validation predictions, with patient-bootstrap CIs
    of sensitivity and specificity at each threshold (on the same validation data)."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    cand = np.unique(np.concatenate([p, [0.0, 1.0 + 1e-9]]))
    sens = np.array([(p[y == 1] >= t).mean() for t in cand])
    spec = np.array([(p[y == 0] < t).mean() for t in cand])

    def midpoint(i: int) -> float:
        # halfway to the next lower score keeps the same counts on validation but generalises better
        lower = cand[i - 1] if i > 0 else 0.0
        return float((cand[i] + lower) / 2.0) if i > 0 else float(cand[i])

    j = sens + spec - 1
    i_bal = int(np.argmax(j))

    def best(ok: np.ndarray, first: np.ndarray, second: np.ndarray, default: int) -> int:
        # the best ``first`` among ``ok``; among ties, the best ``second`` (not simply the lowest threshold)
        if not ok.size:
            return default
        top = ok[first[ok] == first[ok].max()]
        return int(top[np.argmax(second[top])])

    i_sens = best(np.where(sens >= target)[0], spec, sens, 0)
    spec_target = high_specificity_target(float(spec[i_sens]), target)
    if spec_target <= 1.0:
        i_spec = best(np.where(spec >= spec_target)[0], sens, spec, len(cand) - 1)
    else:  # validation separates perfectly at the high-sensitivity point: the top of its tie range
        ties = np.where((spec == spec[i_sens]) & (sens == sens[i_sens]))[0]
        i_spec = int(ties.max())
        spec_target = 1.0
    spec_desc = f"specificity >= {spec_target:.3g} on validation, best sensitivity"
    if spec_target > target:
        spec_desc += (f" (the target rises from {target:.2f} because the high-sensitivity point already has "
                      f"specificity {spec[i_sens]:.3f} on validation)")
    specs = [("balanced", i_bal, "maximises sensitivity + specificity on validation"),
             ("high_sensitivity", i_sens, f"sensitivity >= {target:.2f} on validation, best specificity"),
             ("high_specificity", i_spec, spec_desc)]
    out = []
    for name, i, desc in specs:
        thr = midpoint(i)
        ev = evaluate_predictions(y, p, patients, thr, n_boot=n_boot)
        out.append(OperatingPoint(name, thr, ev["sensitivity"], ev["specificity"], desc,
                                  tuple(ev["sensitivity_ci"]), tuple(ev["specificity_ci"])))
    return out


# ---------------------------------------------------------------------------
# Temperature scaling
# ---------------------------------------------------------------------------


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature T minimising the NLL of softmax(logits / T) on validation (2-class logits, y: 1 = class 0)."""
    logits = np.asarray(logits, dtype=np.float64)
    target = np.where(np.asarray(y) == 1, 0, 1)  # covid is class index 0

    def nll(t: float) -> float:
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(z)), target].mean())

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 400))
    vals = [nll(t) for t in grid]
    best = float(grid[int(np.argmin(vals))])
    # refine
    fine = np.linspace(best * 0.9, best * 1.1, 81)
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


def softmax_p(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """p(class 0 = covid) from 2-class logits."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e[:, 0] / e.sum(axis=1)


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(bool)
    thr = np.unique(p)[::-1]
    tpr = [0.0] + [float((p[y] >= t).mean()) for t in thr]
    fpr = [0.0] + [float((p[~y] >= t).mean()) for t in thr]
    return np.array(fpr), np.array(tpr)


def plot_roc(path: str | os.PathLike[str], curves: dict[str, tuple[np.ndarray, np.ndarray]],
             title: str = "ROC", points: Sequence[OperatingPoint] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    for name, (y, p) in curves.items():
        if len(set(np.asarray(y).tolist())) < 2:
            continue
        fpr, tpr = roc_curve(np.asarray(y), np.asarray(p))
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc(np.asarray(y), np.asarray(p)):.3f})")
    for op in points:
        ax.plot(1 - op.specificity, op.sensitivity, "o", label=f"{op.name} on validation (t={op.threshold:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_reliability(path: str | os.PathLike[str], y: np.ndarray, p: np.ndarray, title: str = "Reliability") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rel = reliability(y, p)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    ax.plot([0, 1], [0, 1], ":", color="grey")
    if rel:
        xs, ys, ns = zip(*rel, strict=True)
        ax.plot(xs, ys, "o-", label=f"ECE {ece(y, p):.3f}")
        for x_, y_, n_ in rel:
            ax.annotate(str(n_), (x_, y_), fontsize=6, textcoords="offset points", xytext=(3, -8))
    ax.set_xlabel("mean predicted p(covid)")
    ax.set_ylabel("observed fraction covid")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
