"""``python -m model_training {train,evaluate,audit,export,compare,keygen,sign}``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .data import Dataset
from .recipes import BUNDLED, RECIPES, get_recipe

DEFAULT_CACHE = "runs/cache"


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="folder with covid/ and normal/ (and MANIFEST.tsv)")
    p.add_argument("--manifest", default=None, help="manifest TSV/CSV (default: DATA/MANIFEST.tsv if present)")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE, help="decoded-image and feature cache (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check-normals", default=None, metavar="DIR",
                   help="normal films of a site never trained on, for the new-site figures (default: "
                        "DATA/../jsrt/normal when it exists; 'none' to skip)")


def _add_backbone(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=("mobilenet", "vgg19"), default="mobilenet")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--base-weights", default=None,
                   help="local backbone weights: Keras .h5 or .npz of <layer>/<weight> arrays")
    g.add_argument("--weights", dest="weights_kind", choices=("imagenet", "none"), default="imagenet",
                   help="imagenet: Keras' download (default); none: random (tests only)")


def _check_set(args: argparse.Namespace) -> Dataset | None:
    """The check set of ``--check-normals`` (or the shared JSRT normals next to the data), or None."""
    from .newsite import default_check_dir, read_check_set

    if args.check_normals == "none":
        return None
    folder = args.check_normals or default_check_dir(args.data)
    return read_check_set(folder) if folder else None


def _weights(args: argparse.Namespace) -> str | None:
    if getattr(args, "base_weights", None):
        return str(args.base_weights)
    return None if args.weights_kind == "none" else "imagenet"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m model_training", description=__doc__)
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a recipe on a patient-level split; writes a run folder")
    _add_data(t)
    _add_backbone(t)
    t.add_argument("--recipe", choices=sorted(RECIPES), default=BUNDLED,
                   help="default: %(default)s, the bundled model's recipe")
    t.add_argument("--augment", choices=("on", "off"), default=None,
                   help="paper recipe: with (on) or without (off, default) the paper's augmentation")
    t.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    t.add_argument("--finetune-blocks", type=int, default=None, metavar="N",
                   help="override how many backbone blocks before the cut are fine-tuned (0: frozen backbone; "
                        "ours: 2, i.e. MobileNet conv_dw_12..conv_dw_13; for VGG19 1 = block5)")
    t.add_argument("--holdout-source", action="append", default=[], metavar="NAME",
                   help="keep every image of this source for testing (repeatable)")
    t.add_argument("--val-fraction", type=float, default=0.15)
    t.add_argument("--test-fraction", type=float, default=0.15)
    t.add_argument("--audit", action="store_true", help="also run the audit")
    t.add_argument("--input-size", type=int, default=224, help="model input size (default %(default)s)")
    t.add_argument("--out", required=True, help="run folder to write")
    t.add_argument("--export", default=None, metavar="BUNDLE_DIR", help="also export the bundle there")
    t.add_argument("--name", default=None, help="bundle name (with --export)")
    t.add_argument("--default", action="store_true", help="mark the exported bundle as the default model")
    t.add_argument("--overwrite", action="store_true")
    t.add_argument("--no-progress", action="store_true")

    e = sub.add_parser("evaluate", help="evaluate a run (its validation/test split) or a bundle on a data folder")
    g = e.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", help="run folder (from train)")
    g.add_argument("--bundle", help="model bundle folder (evaluated with ONNX Runtime, as in the app)")
    _add_data(e)
    e.add_argument("--base-weights", default=None)
    e.add_argument("--operating-point", default=None)
    e.add_argument("--out", default=None, help="folder for evaluation.json, ROC and reliability PNGs")

    a = sub.add_parser("audit", help="source probe, masked-border performance and Grad-CAM mass of a run")
    a.add_argument("--run", required=True)
    _add_data(a)
    a.add_argument("--base-weights", default=None)

    x = sub.add_parser("export", help="export a run as a model bundle (ONNX + model card)")
    x.add_argument("--run", required=True)
    _add_data(x)
    x.add_argument("--base-weights", default=None)
    x.add_argument("--out", required=True, help="bundle folder, e.g. assets/models/mobilenet-covid-v1")
    x.add_argument("--name", required=True)
    x.add_argument("--version", default="1.0")
    x.add_argument("--default", action="store_true")
    x.add_argument("--overwrite", action="store_true")
    x.add_argument("--loso", default=None, help="comparison.json whose leave-one-source-out results go in the card")
    x.add_argument("--gradcam-reference", type=float, default=None, metavar="PEAK",
                   help="the card's gradcam_reference: the Grad-CAM peak that fills the fixed heatmap scale (e.g. the "
                        "95th percentile of the peaks of COVID-19 training-source films called positive; default: "
                        "the application's rule from the feature-map size)")
    x.add_argument("--sign-key", default=None, metavar="KEY.pem",
                   help="sign the bundle with this Ed25519 private key (python -m model_training keygen)")

    c = sub.add_parser("compare", help="linear probe vs paper vs ours: random split and leave-one-source-out")
    _add_data(c)
    _add_backbone(c)
    c.add_argument("--recipes", default="linear_probe,paper,paper_aug,ours_frozen,ours,ours_spatial,ours_mixed,ours_xsite")
    c.add_argument("--out", required=True)
    c.add_argument("--n-boot", type=int, default=1000)
    c.add_argument("--protocols", default="random,loso", help="random and/or loso (default %(default)s)")
    c.add_argument("--folds", default=None, help="only these LOSO folds, e.g. F4 (default: all)")
    from . import sign as signing

    signing.register(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from desktop.core.errors import CXRError

    from .data import read_dataset

    if args.command in ("keygen", "sign"):
        from . import sign as signing

        try:
            return signing.run(args)
        except (CXRError, ValueError, OSError) as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 2
    try:
        dataset = read_dataset(args.data, args.manifest)
        if args.command == "train":
            return _train(args, dataset)
        if args.command == "evaluate":
            return _evaluate(args, dataset)
        if args.command == "audit":
            from .pipeline import audit_run

            res = audit_run(args.run, dataset, weights=args.base_weights, cache_dir=args.cache_dir, seed=args.seed)
            _say(json.dumps(res, indent=1, default=float))
            return 0
        if args.command == "export":
            from .pipeline import export_run

            loso = None
            if args.loso:
                from .runs import read_run_info

                recipe = read_run_info(args.run)["recipe"]["name"]
                loso = _loso_summary(json.loads(Path(args.loso).read_text()), recipe)
            out = export_run(args.run, dataset, args.out, name=args.name, version=args.version,
                             default=args.default, overwrite=args.overwrite, weights=args.base_weights,
                             loso=loso, cache_dir=args.cache_dir, check=_check_set(args),
                             gradcam_reference=args.gradcam_reference)
            if args.sign_key:
                from .sign import sign as sign_bundle

                _say(f"signed: {sign_bundle(out, args.sign_key)}")
            _say(str(out))
            return 0
        if args.command == "compare":
            from .compare import compare

            recipes = [get_recipe(r.strip()) for r in args.recipes.split(",") if r.strip()]
            compare(dataset, recipes, out_dir=args.out, architecture=args.arch, weights=_weights(args),
                    cache_dir=args.cache_dir, seed=args.seed, n_boot=args.n_boot, show_progress=True,
                    protocols=[p.strip() for p in args.protocols.split(",") if p.strip()],
                    folds=args.folds.split(",") if args.folds else None, check=_check_set(args))
            _say((Path(args.out) / "comparison.md").read_text())
            return 0
    except (CXRError, ValueError, FileExistsError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 1


def _loso_summary(comparison: dict, recipe: str) -> dict:
    """The leave-one-source-out results of ``recipe`` (the exported run's) from a comparison.json."""
    if recipe not in comparison or "loso" not in comparison[recipe]:
        raise ValueError(f"--loso: the comparison has no leave-one-source-out results for recipe {recipe!r} "
                         f"(it has {sorted(comparison)})")
    r = comparison[recipe]["loso"]
    out = {}
    for fold, res in r.get("folds", {}).items():
        out[fold] = {"held_out": res["held_out"], "overall": {k: v for k, v in res["overall"].items()
                                                             if k != "confusion"},
                     "pa_only": res.get("pa_only"), "by_source": res["by_source"]}
        if res.get("new_site"):
            out[fold]["new_site"] = res["new_site"]
    if "pooled_F1_F3" in r:
        out["pooled_F1_F3"] = r["pooled_F1_F3"]
    if any(v.get("new_site") for v in out.values() if isinstance(v, dict)):
        from .newsite import summarize_recipe

        out["new_site_summary"] = summarize_recipe(r.get("folds", {}))
    return out


def _train(args: argparse.Namespace, dataset: object) -> int:
    from .pipeline import export_run, train_run

    recipe = get_recipe(args.recipe)
    if args.augment == "on" and recipe.augment == "none":
        recipe = recipe.with_(augment="geometric", augment_copies=5, name=recipe.name + "_aug")
    elif args.augment == "off":
        recipe = recipe.with_(augment="none", augment_copies=0)
    if args.epochs is not None:
        recipe = recipe.with_(epochs=args.epochs)
    if args.finetune_blocks is not None:
        recipe = recipe.with_(finetune_blocks=args.finetune_blocks)
    weights = _weights(args)
    model, results = train_run(dataset, recipe, args.out, architecture=args.arch, weights=weights,  # type: ignore[arg-type]
                               holdout_sources=tuple(args.holdout_source), val_fraction=args.val_fraction,
                               test_fraction=args.test_fraction, seed=args.seed, cache_dir=args.cache_dir,
                               audit=args.audit, show_progress=not args.no_progress, input_size=args.input_size)
    summary = {part: {"auroc": r["auroc"], "auroc_ci": r["auroc_ci"], "ece": r["ece"]}
               for part, r in results["evaluation"].items()}
    _say(json.dumps({"run": args.out, "train_seconds": results["train_seconds"], **summary}, indent=1))
    if args.export:
        out = export_run(args.out, dataset, args.export, name=args.name or Path(args.export).name,  # type: ignore[arg-type]
                         default=args.default, overwrite=args.overwrite, weights=weights, cache_dir=args.cache_dir,
                         check=_check_set(args))
        _say(str(out))
    return 0


def _evaluate(args: argparse.Namespace, dataset: object) -> int:
    from .pipeline import evaluate_bundle, evaluate_model
    from .runs import load_run

    if args.bundle:
        res = evaluate_bundle(args.bundle, dataset, out_dir=args.out,  # type: ignore[arg-type]
                              operating_point=args.operating_point)
        o = res["overall"]
    else:
        model, _ = load_run(args.run, weights=args.base_weights)
        res = evaluate_model(model, dataset, cache_dir=args.cache_dir, plot_dir=args.out)  # type: ignore[arg-type]
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "evaluation.json").write_text(json.dumps(res, indent=1, default=float))
        part = res.get("test") or res.get("validation") or {}
        ops = part.get("at_operating_points", {})
        o = {**(ops.get("high_sensitivity") or next(iter(ops.values()), {})), "auroc_ci": part.get("auroc_ci")}
    _say(json.dumps({k: o.get(k) for k in ("auroc", "auroc_ci", "ece", "sensitivity", "specificity")},
                    indent=1, default=float))
    return 0


def _say(text: str) -> None:
    """Command output (results) on stdout; diagnostics go through logging."""
    sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()
