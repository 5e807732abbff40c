"""The commands as library functions: train a run, evaluate it or a bundle, audit, export."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .compare import is_pa
from .data import Dataset, patient_split
from .features import dataset_features
from .metrics import evaluate_predictions, per_group, plot_reliability, plot_roc
from .recipes import Recipe
from .runs import load_run, read_run_info, save_run
from .train import MORE_SENSITIVE, POSITIVE, TrainedModel, predict_dataset, train

log = logging.getLogger(__name__)

DEFAULT_OPERATING_POINT = "high_sensitivity"


def evaluate_model(model: TrainedModel, dataset: Dataset, *, cache_dir: str | os.PathLike[str] | None = None,
                   plot_dir: str | os.PathLike[str] | None = None, n_boot: int = 1000) -> dict[str, Any]:
    """Validation and test metrics (with patient-bootstrap CIs) at every operating point, per source, PA only."""
    feats, _ = dataset_features(dataset, model.spec, architecture=model.architecture, weights=model.weights,
                                layer=model.cache_layer, cache_dir=cache_dir)
    y_all, pats, srcs = dataset.labels(POSITIVE), dataset.patients(), dataset.sources()
    views = dataset.views()
    ops = {op.name: op.threshold for op in model.operating_points} or {"balanced": 0.5}
    default_thr = ops.get(DEFAULT_OPERATING_POINT, 0.5)
    out: dict[str, Any] = {}
    parts = [("validation", model.split.val), ("test", model.split.test)]
    if model.operating_index:  # films of sources outside training, where the operating points were chosen
        parts.insert(1, ("operating_set", model.operating_index))
    for part, index in parts:
        if not index:
            continue
        idx = np.asarray(index)
        y, p = y_all[idx], model.head_probs(feats[idx])
        res: dict[str, Any] = {"at_operating_points": {
            name: evaluate_predictions(y, p, pats[idx], thr, n_boot=n_boot) for name, thr in ops.items()}}
        res["auroc"] = res["at_operating_points"][next(iter(ops))]["auroc"]
        res["auroc_ci"] = res["at_operating_points"][next(iter(ops))]["auroc_ci"]
        res["ece"] = res["at_operating_points"][next(iter(ops))]["ece"]
        res["accuracy_at_0.5"] = float(((p >= 0.5) == (y == 1)).mean())
        res["by_source"] = per_group(y, p, pats[idx], srcs[idx], default_thr, n_boot=200)
        pa = np.array([is_pa(v) for v in views[idx]])
        if pa.any() and len(set(y[pa].tolist())) == 2:
            res["pa_only"] = evaluate_predictions(y[pa], p[pa], pats[idx][pa], default_thr, n_boot=n_boot)
        out[part] = res
        if plot_dir is not None and len(set(y.tolist())) == 2:
            Path(plot_dir).mkdir(parents=True, exist_ok=True)
            curves = {"all": (y, p)}
            for s in sorted(set(srcs[idx].tolist())):
                m = srcs[idx] == s
                if len(set(y[m].tolist())) == 2:
                    curves[s] = (y[m], p[m])
            plot_roc(Path(plot_dir) / f"roc_{part}.png", curves, title=f"ROC ({part})",
                     points=model.operating_points)
            plot_reliability(Path(plot_dir) / f"reliability_{part}.png", y, p, title=f"Reliability ({part})")
    return out


def train_run(dataset: Dataset, recipe: Recipe, out_dir: str | os.PathLike[str], *,
              architecture: str = "mobilenet", weights: str | None = "imagenet",
              holdout_sources: tuple[str, ...] = (), val_fraction: float = 0.15, test_fraction: float = 0.15,
              seed: int = 0, cache_dir: str | os.PathLike[str] | None = None, audit: bool = False,
              show_progress: bool = False, n_boot: int = 1000,
              input_size: int = 224) -> tuple[TrainedModel, dict[str, Any]]:
    """Split, train, evaluate (and optionally audit); write the run folder. Returns (model, results)."""
    t0 = time.monotonic()
    split = patient_split(dataset, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                          holdout_sources=holdout_sources)
    model = train(dataset, recipe, split, architecture=architecture, weights=weights, cache_dir=cache_dir,
                  seed=seed, show_progress=show_progress, input_size=input_size)
    t_train = time.monotonic() - t0
    results: dict[str, Any] = {"train_seconds": round(t_train, 1)}
    results["evaluation"] = evaluate_model(model, dataset, cache_dir=cache_dir, plot_dir=out_dir, n_boot=n_boot)
    if audit:
        from .audit import run_audit

        results["audit"] = run_audit(model, dataset, cache_dir=cache_dir, seed=seed)
    results["total_seconds"] = round(time.monotonic() - t0, 1)
    save_run(model, out_dir, dataset, results)
    log.info("run written to %s (%.0f s)", out_dir, results["total_seconds"])
    return model, results


def audit_run(run_dir: str | os.PathLike[str], dataset: Dataset, *, weights: str | None = None,
              cache_dir: str | os.PathLike[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """Run the audit on a saved run and store it in its ``run.json``."""
    from .audit import run_audit
    from .runs import RUN_FILE

    model, info = load_run(run_dir, weights=weights)
    res = run_audit(model, dataset, cache_dir=cache_dir, seed=seed)
    info["results"]["audit"] = res
    (Path(run_dir) / RUN_FILE).write_text(json.dumps(info, indent=1, default=float))
    return res


LIMITATIONS = [
    "Decision support only: not a diagnosis. A radiologist or physician must read the film.",
    "Trained on public research collections whose two classes come from different hospitals and "
    "processing pipelines (COVID: BIMCV/PadChest, papers, websites; normal: NIH ChestX-ray14, Shenzhen). "
    "Part of what any such model learns is image style; leave-one-source-out results are reported to "
    "show how much it transfers, and they are lower than the random-split results.",
    "Two classes only (COVID-19 vs no finding): other pathologies (bacterial pneumonia, TB, effusion, "
    "heart failure) were not in training; their p(covid) is undefined and may be high.",
    "Adults only; no pediatric films. Frontal (PA/AP) chest films only; lateral views are not supported.",
    "Operating points were chosen on a validation split of the same collections; sensitivity and "
    "specificity at a new clinic can differ: check them on local cases before relying on a threshold.",
]


#: The last of :data:`LIMITATIONS` for a model whose points were chosen on sources it was not trained on.
NEW_SITE_POINTS_LIMITATION = (
    "The default operating points were chosen on films of hospital collections the model was not trained on "
    "(their training and validation films), not on its own validation films; sensitivity and specificity at a "
    "new clinic can still differ: check them on local cases before relying on a threshold.")


def limitations(model: TrainedModel) -> list[str]:
    """The card's general limitations; the operating-point one says where this model's points were chosen."""
    return LIMITATIONS[:-1] + [NEW_SITE_POINTS_LIMITATION if model.operating_index else LIMITATIONS[-1]]


def new_site_limitations(model: TrainedModel, dataset: Dataset, figures: dict[str, Any],
                         loso: dict[str, Any] | None) -> list[str]:
    """The card's plain statement of what a new site should expect (from the check set and LOSO)."""
    out = []
    if model.recipe.mixed_sources_min:
        srcs = sorted({dataset.records[i].source for i in (*model.split.train, *model.split.val)})
        out.append(f"Trained and validated only on {', '.join(srcs)} (the source(s) holding both classes), so "
                   "that where a film comes from cannot tell its class; every other collection is new to it.")
    chk = (figures.get("check_set") or {}).get("at_operating_points", {}).get(DEFAULT_OPERATING_POINT)
    if chk:
        lo, hi = chk["called_covid_ci"]
        out.append(f"At a hospital it has never seen, expect about {100 * chk['called_covid']:.0f}% of normal films "
                   f"to be called COVID-19 at the default point (measured on {chk['n']} normal films of Japanese "
                   f"hospitals, JSRT, never trained on: 95% CI {100 * lo:.0f}-{100 * hi:.0f}%), not the "
                   "validation figure; calibrate the threshold on local normal films (cxr-screener calibrate).")
    more = (figures.get("check_set") or {}).get("at_operating_points", {}).get(MORE_SENSITIVE)
    op_more = next((op for op in model.operating_points if op.name == MORE_SENSITIVE), None)
    if chk and more and op_more is not None:
        out.append(f"The '{MORE_SENSITIVE}' point (p(covid) >= {op_more.threshold:.3f}, sensitivity >= 0.95 on the "
                   f"model's own validation films) finds more COVID-19 and calls about "
                   f"{100 * more['called_covid']:.0f}% of those JSRT normals COVID-19.")
    summ = (loso or {}).get("new_site_summary") or {}
    if np.isfinite(summ.get("loso_sensitivity_min", np.nan)):
        out.append(f"Sensitivity at the default point on COVID-19 films of sources held out of training: "
                   f"{summ['loso_sensitivity_min']:.2f}-{summ['loso_sensitivity_max']:.2f} over the "
                   "leave-one-source-out folds (pooled held-out COVID-19 films of each fold).")
    return out


def model_card_extra(model: TrainedModel, dataset: Dataset, info_results: dict[str, Any],
                     loso: dict[str, Any] | None = None, figures: dict[str, Any] | None = None) -> dict[str, Any]:
    ev = info_results.get("evaluation", {})
    metrics: dict[str, Any] = {k: v for k, v in ev.items()}
    if loso:
        metrics["leave_one_source_out"] = loso
    figures = figures or {}
    new_site = {k: v for k, v in (("check_set", figures.get("check_set")),
                                  ("leave_one_source_out", (loso or {}).get("new_site_summary"))) if v}
    if new_site:
        metrics["new_site"] = new_site
    if figures.get("validation_by_threshold"):
        metrics["validation_by_threshold"] = figures["validation_by_threshold"]
    split_files = model.split.to_dict(dataset)
    return {
        "operating_points": [op.to_dict() for op in model.operating_points],
        "default_operating_point": DEFAULT_OPERATING_POINT if any(
            op.name == DEFAULT_OPERATING_POINT for op in model.operating_points) else None,
        "metrics": metrics,
        "training_data": {"root": Path(dataset.root).name, **dataset.summary(),
                          "train": split_files["train"]["summary"],  # type: ignore[index]
                          "validation": split_files["val"]["summary"],  # type: ignore[index]
                          "test": split_files["test"]["summary"]},  # type: ignore[index]
        "split": split_files,
        "recipe": {**model.recipe.to_dict(), "frozen_backbone": True, "seed": model.seed,
                   "epochs_run": len(model.history),
                   "best_epoch_val_auroc": max((h.get("val_auroc", float("nan")) for h in model.history),
                                               default=None)},
        "audit": info_results.get("audit", {}),
        "limitations": limitations(model) + new_site_limitations(model, dataset, figures, loso),
        "train_seconds": info_results.get("train_seconds"),
        **({"validation_scores": figures["validation_scores"]} if figures.get("validation_scores") else {}),
    }


def describe_backbone(model: TrainedModel) -> str:
    """The card's exact statement of how the backbone was initialised and used."""
    if model.finetuned_layers:
        text = (f"{model.init.text}. The backbone is cut at {model.layer} (the Grad-CAM layer). Fine-tuned on "
                f"the chest X-rays: {', '.join(model.finetuned_layers)} (after {model.cache_layer}; "
                "BatchNormalization layers kept frozen with their initial statistics), after the head alone "
                "had been trained on the frozen features; every other backbone layer kept its initial weights (frozen).")
    else:
        text = (f"{model.init.text}. The backbone is cut at {model.layer} (the Grad-CAM layer) and was frozen "
                "during training (not fine-tuned); only the head was trained.")
    unused = [m for m in model.init.missing if m.split("/")[0] not in _layers_up_to(model)]
    if unused:
        text += (f" The missing tensor(s) {', '.join(unused)} belong to layers after the cut, which are not "
                 "part of this model: every weight of the backbone in this model "
                 + ("was initialised from ImageNet." if model.finetuned_layers else "is ImageNet-pretrained."))
    return text


def _layers_up_to(model: TrainedModel) -> set[str]:
    from .backbones import build_base

    base, _ = build_base(model.architecture, weights=None,
                         input_shape=(model.spec.height, model.spec.width, model.spec.channels))
    names = []
    for layer in base.layers:
        names.append(layer.name)
        if layer.name == model.layer:
            break
    return set(names)


def export_run(run_dir: str | os.PathLike[str], dataset: Dataset, out_dir: str | os.PathLike[str], *,
               name: str, version: str = "1.0", default: bool = False, overwrite: bool = False,
               weights: str | None = None, loso: dict[str, Any] | None = None,
               cache_dir: str | os.PathLike[str] | None = None, check: Dataset | None = None,
               n_boot: int = 1000, gradcam_reference: float | None = None) -> Path:
    """Export a saved run as a model bundle (ONNX + head + card) with the complete card: the operating
    points re-chosen on validation with the current rule (and the evaluation redone at them when they
    moved), the validation scores, sensitivity by threshold, and the figures on ``check`` (normals of a
    site never trained on). ``gradcam_reference``: the card's Grad-CAM peak for the fixed heatmap scale
    (``desktop.core.inference.gradcam_reference``; None: the application's default rule)."""
    from .card_figures import card_figures
    from .data import load_images, model_inputs_from_cache
    from .export import export_bundle

    model, info = load_run(run_dir, weights=weights)
    before = [(op.name, op.threshold) for op in model.operating_points]
    figures = card_figures(model, dataset, check=check, cache_dir=cache_dir, n_boot=n_boot)
    if [(op.name, op.threshold) for op in model.operating_points] != before:
        log.info("operating points re-chosen on validation: %s", model.operating_points)
        info["results"]["evaluation"] = evaluate_model(model, dataset, cache_dir=cache_dir, n_boot=n_boot)
    full = model.full_model()
    idx = np.asarray((model.split.val or model.split.train)[:8])
    check_inputs = model_inputs_from_cache(load_images(dataset.subset(idx), model.spec, None), model.spec)
    extra = model_card_extra(model, dataset, info["results"], loso, figures)
    if extra["default_operating_point"] is None:
        extra.pop("default_operating_point")
    extra["backbone_weights_sha256"] = model.init.sha256
    if gradcam_reference is not None:
        if not gradcam_reference > 0:
            raise ValueError(f"gradcam_reference must be > 0. Received: gradcam_reference={gradcam_reference!r}")
        extra["gradcam_reference"] = float(gradcam_reference)
    return export_bundle(full, out_dir, name=name, version=version, architecture=model.architecture,
                         backbone_init=describe_backbone(model), preprocess=model.spec, class_names=("covid", "normal"),
                         positive_class=POSITIVE, gradcam_layer=model.layer, temperature=model.temperature,
                         card_extra=extra, default=default, overwrite=overwrite, check_inputs=check_inputs)


def evaluate_bundle(bundle_dir: str | os.PathLike[str], dataset: Dataset, *,
                    out_dir: str | os.PathLike[str] | None = None, n_boot: int = 1000,
                    operating_point: str | None = None) -> dict[str, Any]:
    """Evaluate an exported bundle (ONNX Runtime, as the app runs it) on every image of ``dataset``."""
    from desktop.core.imaging import load_xray
    from desktop.core.inference import Predictor

    pred = Predictor(bundle_dir)
    op = pred.operating_point(operating_point)
    p = np.zeros(len(dataset))
    for i, rec in enumerate(dataset.records):
        p[i] = pred.predict(load_xray(rec.path), op)[0].p_covid
    y, pats, srcs = dataset.labels(POSITIVE), dataset.patients(), dataset.sources()
    res: dict[str, Any] = {"bundle": str(bundle_dir), "operating_point": op.name,
                           "overall": evaluate_predictions(y, p, pats, op.threshold, n_boot=n_boot),
                           "by_source": per_group(y, p, pats, srcs, op.threshold, n_boot=200)}
    pa = np.array([is_pa(v) for v in dataset.views()])
    if pa.any() and len(set(y[pa].tolist())) == 2:
        res["pa_only"] = evaluate_predictions(y[pa], p[pa], pats[pa], op.threshold, n_boot=n_boot)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if len(set(y.tolist())) == 2:
            plot_roc(out / "roc.png", {"all": (y, p)}, title=f"ROC {pred.name}")
            plot_reliability(out / "reliability.png", y, p, title=f"Reliability {pred.name}")
        (out / "evaluation.json").write_text(json.dumps(res, indent=1, default=float))
        with open(out / "predictions.tsv", "w") as fh:
            fh.write("filename\tlabel\tsource\tp_covid\n")
            for rec, pv in zip(dataset.records, p, strict=True):
                fh.write(f"{rec.filename}\t{rec.label}\t{rec.source}\t{pv:.6f}\n")
    return res


__all__ = ["audit_run", "evaluate_bundle", "evaluate_model", "export_run", "predict_dataset", "train_run",
           "read_run_info"]
