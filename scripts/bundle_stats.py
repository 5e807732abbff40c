# ruff: noqa: T201  (a command-line tool: it prints)
"""Compute a bundle's input statistics: the input gate's learnt check and the OOD score.

    python scripts/bundle_stats.py --bundle assets/models/mobilenet-covid-v1 \
        --data ../shared/data/cxr --jsrt ../shared/data/jsrt/normal --dicom ../shared/data/dicom \
        --out assets/models/mobilenet-covid-v1/input_stats.npz \
        --results benchmarks/results/gate_ood.json

What it does (about 10 min on 2 shared cores; features are cached in ``runs/bundle-stats``):

1. Runs the bundle's ONNX model on every chest film of ``--data`` (and on each one
   inverted, and a third of them turned 90 degrees), on the JSRT normals (never trained
   on, only measured), on the non-chest DICOM films of ``--dicom`` (hips, extremities,
   dental, test patterns; with crops and flips), and on images it makes: text documents,
   photos (the sample photos matplotlib and scikit-learn ship), smooth colour fields.
   The pooled (global-average) Grad-CAM-layer features are kept.
2. Learnt gate: multinomial logistic regression on the standardised pooled features,
   classes ``chest`` / ``inverted`` / ``rotated`` / ``other_xray`` / ``not_xray``. False
   rejections are measured on ALL chest films out-of-fold (5-fold, grouped by patient) and
   on the JSRT normals (never trained on).
3. OOD: Mahalanobis distance of the pooled features to the training split's films
   (the card's split), in the space of the leading principal components with Ledoit-Wolf
   shrinkage; threshold = the validation split's 99th percentile. How often it fires is
   reported on validation, test, JSRT and per source, with the error rate of flagged and
   unflagged films.
4. Writes ``--out`` (an ``.npz`` read with ``allow_pickle=False`` by
   :mod:`desktop.core.input_stats`; bound to the model's sha256) and the figures to
   ``--results`` (JSON) and its ``.md`` twin.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from desktop.core.imaging import load_xray  # noqa: E402
from desktop.core.inference import Predictor  # noqa: E402
from desktop.core.input_stats import (  # noqa: E402
    GATE_CLASSES,
    InputStats,
    write_stats,
)
from desktop.core.ood import fit_ood, pooled, score  # noqa: E402

BATCH = 16


# ---------------------------------------------------------------- features


class _Runner:
    """Collects (model input, tag) pairs and runs them through the model in batches."""

    def __init__(self, predictor: Predictor) -> None:
        self.p = predictor
        self.pending: list[tuple[np.ndarray, dict]] = []
        self.feats: list[np.ndarray] = []
        self.pcovid: list[float] = []
        self.meta: list[dict] = []

    def add(self, pixels: np.ndarray, **meta: object) -> None:
        self.pending.append((self.p.preprocess(np.asarray(pixels, np.float32)), dict(meta)))
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        batch = np.stack([x for x, _ in self.pending])
        fmap, probs = self.p.forward_raw(batch)
        self.feats.extend(pooled(fmap))
        self.pcovid.extend(float(v) for v in probs[:, self.p.positive_index])
        self.meta.extend(m for _, m in self.pending)
        self.pending = []


def _manifest(folder: Path) -> dict[str, dict[str, str]]:
    path = folder / "MANIFEST.tsv"
    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        return {row["filename"]: row for row in csv.DictReader(fh, delimiter="\t")}


def _synthetic(rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Documents, photos and colour fields, as grey pixels in [0, 1]."""
    from PIL import Image, ImageDraw, ImageFont

    out: list[tuple[str, np.ndarray]] = []
    words = "patient report scan result normal findings chest clinic date signed the of and".split()
    for i in range(60):
        w, h = int(rng.integers(600, 1400)), int(rng.integers(700, 1600))
        img = Image.new("L", (w, h), int(rng.integers(200, 256)))
        draw = ImageDraw.Draw(img)
        size = int(rng.integers(12, 40))
        try:
            font = ImageFont.load_default(size=size)
        except TypeError:  # old Pillow
            font = ImageFont.load_default()
        y = int(rng.integers(20, 80))
        while y < h - size:
            line = " ".join(rng.choice(words, int(rng.integers(3, 12))))
            draw.text((int(rng.integers(10, 60)), y), line, fill=int(rng.integers(0, 80)), font=font)
            y += int(size * rng.uniform(1.2, 2.5))
            if rng.random() < 0.08:  # a table rule or a box
                draw.rectangle([20, y, w - 20, y + int(rng.integers(2, 60))], outline=0, width=2)
        if i % 3 == 0:
            img = img.rotate(float(rng.uniform(-5, 5)), fillcolor=255)
        out.append(("document", np.asarray(img, np.float32) / 255.0))
    import matplotlib
    import sklearn

    photos = [
        Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
        Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg",
        Path(sklearn.__file__).parent / "datasets" / "images" / "flower.jpg",
    ]
    for path in photos:
        if not path.exists():
            continue
        grey = np.asarray(Image.open(path).convert("L"), np.float32) / 255.0
        for _ in range(20):
            out.append(("photo", _crop_flip(grey, rng)))
    for _ in range(40):  # smooth colour fields and shapes (screenshots, slides)
        small = rng.random((int(rng.integers(2, 8)), int(rng.integers(2, 8)))).astype(np.float32)
        field = np.asarray(Image.fromarray(small, mode="F").resize((512, 512), Image.Resampling.BICUBIC))
        field = np.clip(field, 0, 1)
        img = Image.fromarray((field * 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(0, 8))):
            x0, y0 = int(rng.integers(0, 400)), int(rng.integers(0, 400))
            draw.ellipse([x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200))],
                         fill=int(rng.integers(0, 256)))
        out.append(("graphic", np.asarray(img, np.float32) / 255.0))
    return out


def _crop_flip(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape
    f = rng.uniform(0.55, 1.0)
    ch, cw = max(32, int(h * f)), max(32, int(w * f))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = img[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.3:
        out = np.rot90(out, int(rng.integers(1, 4)))
    return np.ascontiguousarray(out)


def extract(args: argparse.Namespace, predictor: Predictor, cache: Path) -> dict[str, np.ndarray]:
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            print(f"features: cached {cache}")
            return {("file" if k == "fname" else k): z[k] for k in z.files}
    rng = np.random.default_rng(0)
    run = _Runner(predictor)
    data = Path(args.data)
    man = _manifest(data)
    t0 = time.time()
    files = sorted(p for p in data.rglob("*") if p.is_file() and p.name in man)
    unreadable = []
    for i, path in enumerate(files):
        row = man[path.name]
        try:
            xr = load_xray(path)
        except Exception as exc:  # noqa: BLE001 - counted, reported
            unreadable.append(f"{path.name}: {exc}")
            continue
        px = xr.pixels
        run.add(px, kind="chest", file=path.name, source=row["source"], label=row["label"],
                patient=row["patient_id"])
        run.add(1.0 - px, kind="inverted", file=path.name, source=row["source"], label=row["label"],
                patient=row["patient_id"])
        if i % 3 == 0:
            run.add(np.rot90(px, 1 if i % 2 else 3), kind="rotated", file=path.name,
                    source=row["source"], label=row["label"], patient=row["patient_id"])
        if i % 200 == 0:
            print(f"  cxr {i}/{len(files)} {time.time() - t0:.0f}s", flush=True)
    for path in sorted(Path(args.jsrt).glob("*.png")):
        run.add(load_xray(path).pixels, kind="jsrt", file=path.name, source="jsrt", label="normal",
                patient=path.stem)
    dman = _manifest(Path(args.dicom))
    for name, row in sorted(dman.items()):
        if row.get("body_part", "").upper() == "CHEST":
            continue
        try:
            xr = load_xray(Path(args.dicom) / name)
        except Exception as exc:  # noqa: BLE001 - CT, 12-bit JPEG: refused by the loader itself
            print(f"  dicom {name}: refused by the loader ({type(exc).__name__})")
            continue
        kind = "other_xray" if row.get("modality") in ("CR", "DX") else "not_xray"
        run.add(xr.pixels, kind=kind, file=name, source="dicom", label="", patient=name)
        for j in range(24):
            run.add(_crop_flip(xr.pixels, rng), kind=kind, file=f"{name}#{j}", source="dicom", label="",
                    patient=name)
    for j, (what, px) in enumerate(_synthetic(rng)):
        run.add(px, kind="not_xray", file=f"{what}-{j}", source=what, label="", patient=f"{what}-{j}")
    run.flush()
    print(f"features: {len(run.meta)} images in {time.time() - t0:.0f}s; {len(unreadable)} unreadable")
    out = {
        "features": np.asarray(run.feats, np.float32),
        "p_covid": np.asarray(run.pcovid, np.float32),
        **{k: np.asarray([m[k] for m in run.meta]) for k in ("kind", "source", "label", "patient")},
        "fname": np.asarray([m["file"] for m in run.meta]),
        "unreadable": np.asarray(unreadable or [""]),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(str(cache), **out)
    out["file"] = out.pop("fname")
    return out


# ---------------------------------------------------------------- gate


def _fit_lr(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    mu = x.mean(0)
    sd = x.std(0) + 1e-6
    lr = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    lr.fit((x - mu) / sd, y)
    w = np.zeros((len(GATE_CLASSES), x.shape[1]), np.float32)
    b = np.full(len(GATE_CLASSES), -1e4, np.float32)  # classes absent from training never win
    for k, cls in enumerate(lr.classes_):
        w[int(cls)] = lr.coef_[k] if len(lr.classes_) > 2 else (lr.coef_[0] if k else -lr.coef_[0])
        b[int(cls)] = lr.intercept_[k] if len(lr.classes_) > 2 else (lr.intercept_[0] if k else -lr.intercept_[0])
    return mu.astype(np.float32), sd.astype(np.float32), w, b


def _p_chest(x: np.ndarray, mu: np.ndarray, sd: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    z = ((x - mu) / sd) @ w.T + b
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    return p


def fit_gate(feats: dict[str, np.ndarray], c: float, reject_below: float) -> tuple[dict, dict]:
    from sklearn.model_selection import GroupKFold

    kind = feats["kind"]
    train = kind != "jsrt"
    x, y = feats["features"][train], np.asarray([GATE_CLASSES.index(k) if k != "chest" else 0
                                                 for k in kind[train]])
    groups = feats["patient"][train]
    oof = np.zeros((len(x), len(GATE_CLASSES)))
    for tr, te in GroupKFold(n_splits=5).split(x, y, groups):
        oof[te] = _p_chest(x[te], *_fit_lr(x[tr], y[tr], c))
    mu, sd, w, b = _fit_lr(x, y, c)
    chest = y == 0
    rej = oof[:, 0] < reject_below
    jsrt = feats["features"][kind == "jsrt"]
    pj = _p_chest(jsrt, mu, sd, w, b)
    figures: dict = {
        "classes": list(GATE_CLASSES),
        "reject_below_p_chest": reject_below,
        "logreg_C": c,
        "chest_films": int(chest.sum()),
        "false_rejections_oof": int((rej & chest).sum()),
        "false_rejection_rate_oof": float((rej & chest).sum() / chest.sum()),
        "false_rejections_by_source_oof": {
            str(s): int((rej & chest & (feats["source"][train] == s)).sum())
            for s in sorted(set(feats["source"][train][chest]))
        },
        "jsrt_films": int(len(jsrt)),
        "jsrt_false_rejections": int((pj[:, 0] < reject_below).sum()),
        "caught_oof": {k: {"n": int((y == GATE_CLASSES.index(k)).sum()),
                           "rejected": int((rej & (y == GATE_CLASSES.index(k))).sum())}
                       for k in GATE_CLASSES[1:]},
    }
    return {"gate_mean": mu, "gate_scale": sd, "gate_weights": w, "gate_bias": b}, figures


# ---------------------------------------------------------------- OOD


def ood_report(feats: dict[str, np.ndarray], card: dict, k: int) -> tuple[dict, dict]:
    split = card.get("split", {})
    chest = feats["kind"] == "chest"
    files = feats["file"]
    in_train = np.isin(files, split.get("train", {}).get("files", [])) & chest
    in_val = np.isin(files, split.get("val", {}).get("files", [])) & chest
    in_test = np.isin(files, split.get("test", {}).get("files", [])) & chest
    basis = "the card's training split"
    if in_train.sum() < 50:
        in_train, in_val, basis = chest, chest, "all chest films (the card has no split)"
    arrays = fit_ood(feats["features"][in_train], k=k)
    d_all = score(feats["features"], arrays)
    threshold = float(np.percentile(d_all[in_val], 99))
    arrays["ood_threshold"] = np.float32(threshold)
    thr_op = next(op["threshold"] for op in card["operating_points"] if op["name"] == card["default_operating_point"])
    wrong = (feats["p_covid"] >= thr_op) != (feats["label"] == "covid")
    flagged = d_all > threshold

    def block(mask: np.ndarray) -> dict:
        n = int(mask.sum())
        f = mask & flagged
        u = mask & ~flagged
        return {
            "n": n,
            "flagged": int(f.sum()),
            "rate": float(f.sum() / n) if n else None,
            "error_flagged": float(wrong[f].mean()) if f.sum() else None,
            "error_unflagged": float(wrong[u].mean()) if u.sum() else None,
        }

    jsrt = feats["kind"] == "jsrt"
    figures = {
        "new_site": {
            "n": int(jsrt.sum()),
            "called_covid": float((feats["p_covid"][jsrt] >= thr_op).mean()) if jsrt.any() else None,
            "operating_point": card["default_operating_point"],
            "description": "JSRT normal films (14 Japanese hospitals and one US, digitised film; never trained on)",
        },
        "fitted_on": basis,
        "fitted_films": int(in_train.sum()),
        "components": int(arrays["ood_components"].shape[0]),
        "threshold": threshold,
        "threshold_rule": "99th percentile of the validation films' distance",
        "operating_point": card["default_operating_point"],
        "validation": block(in_val),
        "test": block(in_test),
        "jsrt_normals": block(feats["kind"] == "jsrt"),
        "by_source_test_and_val": {
            str(s): block((in_val | in_test) & (feats["source"] == s)) for s in sorted(set(feats["source"][chest]))
        },
        "non_chest_images": {k2: block(feats["kind"] == k2) for k2 in ("inverted", "rotated", "other_xray", "not_xray")},
    }
    return arrays, figures


def val_scores(feats: dict[str, np.ndarray], card: dict) -> dict[str, np.ndarray]:
    val = np.isin(feats["file"], card.get("split", {}).get("val", {}).get("files", [])) & (feats["kind"] == "chest")
    return {
        "val_scores_covid": feats["p_covid"][val & (feats["label"] == "covid")].astype(np.float32),
        "val_scores_normal": feats["p_covid"][val & (feats["label"] == "normal")].astype(np.float32),
    }


def _md(results: dict) -> str:
    g, o = results["gate"], results["ood"]
    lines = [
        "# Input gate and OOD flag: figures",
        "",
        f"Model {results['model']} v{results['model_version']} (sha256 {results['model_sha256'][:12]}...), "
        f"`python scripts/bundle_stats.py` ({results['created']}).",
        "",
        "## Learnt gate (PNG/JPEG and DICOM without decisive tags)",
        "",
        f"- False rejections of chest films, out-of-fold over ALL {g['chest_films']} films of shared/data/cxr: "
        f"**{g['false_rejections_oof']} ({100 * g['false_rejection_rate_oof']:.2f}%)** (goal < 1%); "
        f"by source {g['false_rejections_by_source_oof']}.",
        f"- JSRT normals (never trained on): {g['jsrt_false_rejections']} of {g['jsrt_films']} rejected.",
        "- Caught (out-of-fold): "
        + "; ".join(f"{k} {v['rejected']}/{v['n']}" for k, v in g["caught_oof"].items()),
        "",
        "## OOD flag (Mahalanobis, pooled features)",
        "",
        f"Fitted on {o['fitted_on']} ({o['fitted_films']} films), {o['components']} principal components, "
        f"threshold {o['threshold']:.1f} ({o['threshold_rule']}). Error = wrong call at `{o['operating_point']}`.",
        "",
        "| set | films | flagged | rate | error if flagged | error if not |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, b: dict) -> str:
        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        return f"| {name} | {b['n']} | {b['flagged']} | {f(b['rate'])} | {f(b['error_flagged'])} | {f(b['error_unflagged'])} |"

    lines.append(row("validation", o["validation"]))
    lines.append(row("test", o["test"]))
    lines.append(row("JSRT normals (new site)", o["jsrt_normals"]))
    for s, b in o["by_source_test_and_val"].items():
        lines.append(row(f"source {s} (val+test)", b))
    v, t = o["validation"], o["test"]
    nf = v["flagged"] + t["flagged"]
    if nf:
        ef = ((v["error_flagged"] or 0) * v["flagged"] + (t["error_flagged"] or 0) * t["flagged"]) / nf
        eu = [x for x in (v["error_unflagged"], t["error_unflagged"]) if x is not None]
        lines += ["", f"Do flagged films have higher error? On validation and test, the {nf} flagged films had error "
                  f"{ef:.3f} against {min(eu):.3f}-{max(eu):.3f} for the others: "
                  + ("yes." if ef > max(eu) else "not on these films (too few flagged to say more); the flag is "
                     "advice to read with care, never a refusal.")]
    lines += [
        "",
        "Non-chest images the learnt gate is meant to stop (the OOD flag fires on them too):",
        "; ".join(f"{k} {b['flagged']}/{b['n']}" for k, b in o["non_chest_images"].items()) + ".",
        "",
        f"JSRT normals called COVID-19 at `{o['operating_point']}`: "
        f"{100 * o['new_site']['called_covid']:.1f}% of {o['new_site']['n']} (a new site's false-positive rate), "
        "while the OOD flag fires on almost none of them: the pooled features of these films look like the "
        "training films', so the shift that fools the classifier is not one this distance sees. The flag "
        "catches images unlike chest films (inverted, turned, other body parts) rather than a new hospital's "
        "normal films; only a site calibration (`cxr-screener calibrate`) addresses those.",
    ]
    return "\n".join(lines) + "\n"


def list_in_card(bundle: Path, stats_file: Path) -> None:
    """Add the stats file's sha256 to the bundle card's ``files`` (atomically), so that the application
    checks it like the model's own files."""
    from desktop.core.bundle import CARD_FILE
    from desktop.core.fileio import atomic_write_text
    from desktop.core.hashing import sha256_file

    card_path = bundle / CARD_FILE
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card.setdefault("files", {})[stats_file.name] = sha256_file(stats_file)
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n", overwrite=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=str(ROOT / "assets/models/mobilenet-covid-v1"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/cxr"))
    ap.add_argument("--jsrt", default=str(ROOT.parent / "shared/data/jsrt/normal"))
    ap.add_argument("--dicom", default=str(ROOT.parent / "shared/data/dicom"))
    ap.add_argument("--cache", default=str(ROOT / "runs/bundle-stats"))
    ap.add_argument("--out", help="the stats file to write (.npz); omitted: figures only")
    ap.add_argument("--results", default=str(ROOT / "benchmarks/results/gate_ood.json"))
    ap.add_argument("--components", type=int, default=64)
    ap.add_argument("--C", type=float, default=0.05)
    ap.add_argument("--reject-below", type=float, default=0.5)
    ap.add_argument("--features-only", action="store_true")
    args = ap.parse_args(argv)

    predictor = Predictor(args.bundle, threads=2)
    sha = str(predictor.card.data["sha256"])
    feats = extract(args, predictor, Path(args.cache) / sha[:16] / "features.npz")
    print("kinds:", dict(Counter(feats["kind"].tolist())))
    if args.features_only:
        return 0
    card = predictor.card.to_dict()
    gate_arrays, gate_fig = fit_gate(feats, args.C, args.reject_below)
    ood_arrays, ood_fig = ood_report(feats, card, args.components)
    results = {
        "model": predictor.name, "model_version": predictor.version, "model_sha256": sha,
        "created": time.strftime("%Y-%m-%d"),
        "command": "python scripts/bundle_stats.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "gate": gate_fig, "ood": ood_fig,
    }
    res = Path(args.results)
    res.parent.mkdir(parents=True, exist_ok=True)
    res.write_text(json.dumps(results, indent=1) + "\n")
    res.with_suffix(".md").write_text(_md(results))
    print(_md(results))
    if args.out:
        stats = InputStats(
            model_sha256=sha, model_name=predictor.name, model_version=predictor.version,
            arrays={**gate_arrays, **ood_arrays, **val_scores(feats, card),
                    "gate_reject_below": np.float32(args.reject_below)},
            figures={"gate": gate_fig, "ood": ood_fig, "new_site": ood_fig["new_site"]},
        )
        write_stats(stats, Path(args.out))
        print(f"wrote {args.out}")
        if Path(args.out).resolve().parent == Path(args.bundle).resolve():
            list_in_card(Path(args.bundle), Path(args.out))
            print(f"listed {Path(args.out).name} in the card's files (re-pin: python scripts/pin_bundles.py)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
