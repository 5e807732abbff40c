"""Lever: a lung-field crop before the classifier, measured offline (experiment, not shipped).

1. Trains a small U-Net (Keras, 128 x 128, CPU: a few minutes) on the JSRT *nodule* films' lung masks
   (``../shared/data/jsrt/lungs``, ``JPCLN*`` only, so the 93 normals stay unseen by every model checked on
   them); reports the Dice on 20 held-back nodule films.
2. Crops every film of ``../shared/data/cxr`` and of the JSRT normals to the box of its two largest lung
   components (8% margin), loaded by the app's own ``load_xray``; a mask that is implausible (lung area
   outside 10-75% of the film, or a box narrower than 35% / lower than 30% of it) keeps the full film, as
   the app would with a warning. The crops go to ``runs/lungcrop/cxr/<class>/`` with a copy of the
   manifest (same source, patient and view columns) and ``runs/lungcrop/jsrt/normal/`` (git-ignored,
   derived, never committed), plus a montage to look at and the fallback rates in ``summary.json``.
3. Then the classifier lever runs through the real pipeline on the crops:

    .venv/bin/python scripts/explore_lungcrop.py            # steps 1-2 (about 5-10 min on 2 cores)
    .venv/bin/python scripts/explore_newsite.py --data runs/lungcrop/cxr \
        --recipe mixed_lung ours_mixed --folds F2,F4        # step 3, JSRT check = runs/lungcrop/jsrt/normal

Shipping it would need the segmenter inside the bundle (ONNX, sha256, its own card section) and run
identically by the app's preprocessing; that is only worth building if the figures say so
(docs/results/experiments.md).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from desktop.core.imaging import load_xray  # noqa: E402

SHARED = Path("../shared/data")
OUT = Path("runs/lungcrop")
SIZE = 128


def unet(size: int = SIZE):  # type: ignore[no-untyped-def]
    import keras
    from keras import layers

    inp = keras.Input((size, size, 1))
    skips, x = [], inp
    for f in (16, 32, 64):
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(128, 3, padding="same", activation="relu")(x)
    for f, s in zip((64, 32, 16), reversed(skips), strict=True):
        x = layers.UpSampling2D()(x)
        x = layers.Concatenate()([x, s])
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
    out = layers.Conv2D(1, 1, activation="sigmoid")(x)
    return keras.Model(inp, out)


def small(a: np.ndarray, size: int = SIZE, nearest: bool = False) -> np.ndarray:
    img = Image.fromarray(np.asarray(a, np.float32), mode="F")
    r = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(img.resize((size, size), r, reducing_gap=None if nearest else 2.0), np.float32)


def norm(a: np.ndarray) -> np.ndarray:
    """Per-film rank normalisation (histogram equalisation) so the film's style matters less."""
    flat = a.ravel()
    ranks = np.empty(flat.size, np.float32)
    ranks[np.argsort(flat, kind="stable")] = np.linspace(0, 1, flat.size, dtype=np.float32)
    return ranks.reshape(a.shape)


def dice(p: np.ndarray, t: np.ndarray) -> float:
    return float(2 * (p & t).sum() / max(p.sum() + t.sum(), 1))


def train_segmenter(rng: np.random.Generator):  # type: ignore[no-untyped-def]
    import keras

    lungs = SHARED / "jsrt" / "lungs"
    names = sorted(p.name for p in (lungs / "images").glob("JPCLN*.png"))
    x = np.stack([norm(small(np.asarray(Image.open(lungs / "images" / n).convert("L"), np.float32) / 255)) for n in names])
    y = np.stack([small(np.asarray(Image.open(lungs / "masks" / n).convert("L"), np.float32) / 255, nearest=True)
                  for n in names]) > 0.5
    order = rng.permutation(len(names))
    val, tr = order[:20], order[20:]

    def augmented(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for i in idx:
            for _ in range(4):
                a = np.clip(x[i] ** float(np.exp(rng.uniform(-0.4, 0.4))), 0, 1)
                dy, dx = rng.integers(-8, 9, 2)
                xs.append(np.roll(a, (dy, dx), (0, 1)))
                ys.append(np.roll(y[i], (dy, dx), (0, 1)))
        return np.stack(xs)[..., None], np.stack(ys)[..., None].astype(np.float32)

    xt, yt = augmented(tr)
    model = unet()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    model.fit(xt, yt, batch_size=16, epochs=25, verbose=2,
              validation_data=(x[val][..., None], y[val][..., None].astype(np.float32)))
    pv = model.predict(x[val][..., None], verbose=0)[..., 0] > 0.5
    d = float(np.mean([dice(pv[k], y[val][k]) for k in range(len(val))]))
    return model, d


def lung_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """(top, bottom, left, right) as fractions, or None when the mask is implausible."""
    from scipy import ndimage

    lab, n = ndimage.label(mask)
    if n == 0:
        return None
    sizes = ndimage.sum(mask, lab, range(1, n + 1))
    keep = np.isin(lab, 1 + np.argsort(sizes)[::-1][:2])
    area = keep.mean()
    ys, xs = np.nonzero(keep)
    h, w = mask.shape
    t, b, left, r = ys.min() / h, (ys.max() + 1) / h, xs.min() / w, (xs.max() + 1) / w
    if not (0.10 <= area <= 0.75) or r - left < 0.35 or b - t < 0.30:
        return None
    mh, mw = 0.08 * (b - t), 0.08 * (r - left)
    return max(0.0, t - mh), min(1.0, b + mh), max(0.0, left - mw), min(1.0, r + mw)


def crop_all(model, files: list[tuple[Path, Path]]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    done = {"cropped": 0, "full_film": 0, "unreadable": 0}
    batch: list[tuple[Path, Path, np.ndarray]] = []

    def flush() -> None:
        if not batch:
            return
        xin = np.stack([norm(small(px)) for _, _, px in batch])[..., None]
        masks = model.predict(xin, verbose=0)[..., 0] > 0.5
        for (_src, dst, px), m in zip(batch, masks, strict=True):
            box = lung_box(m)
            h, w = px.shape
            if box is None:
                done["full_film"] += 1
                out = px
            else:
                done["cropped"] += 1
                t, b, left, r = box
                out = px[int(t * h):max(int(b * h), int(t * h) + 8), int(left * w):max(int(r * w), int(left * w) + 8)]
            img = Image.fromarray(np.round(np.clip(out, 0, 1) * 255).astype(np.uint8))
            if max(img.size) > 512:
                img.thumbnail((512, 512), Image.Resampling.LANCZOS)
            dst.parent.mkdir(parents=True, exist_ok=True)
            img.save(dst)
        batch.clear()

    for src, dst in files:
        try:
            px = np.asarray(load_xray(src).pixels, np.float32)
        except Exception:
            done["unreadable"] += 1
            continue
        batch.append((src, dst, px))
        if len(batch) == 64:
            flush()
    flush()
    return done


def main() -> None:
    rng = np.random.default_rng(0)
    model, d = train_segmenter(rng)
    print(f"segmenter Dice on 20 held-back nodule films: {d:.3f}", flush=True)
    cxr = SHARED / "cxr"
    rows = list(csv.DictReader((cxr / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    files, out_rows = [], []
    for row in rows:
        name = Path(row["filename"]).stem + ".png"
        files.append((cxr / row["label"] / row["filename"], OUT / "cxr" / row["label"] / name))
        out_rows.append({**row, "filename": name, "sha256": ""})
    summary = {"segmenter_dice_heldback_nodule_films": d, "cxr": crop_all(model, files)}
    (OUT / "cxr").mkdir(parents=True, exist_ok=True)
    with open(OUT / "cxr" / "MANIFEST.tsv", "w", newline="", encoding="utf-8") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(out_rows[0]), delimiter="\t")
        wr.writeheader()
        wr.writerows(out_rows)
    jsrt = sorted((SHARED / "jsrt" / "normal").glob("*.png"))
    summary["jsrt_normals"] = crop_all(model, [(p, OUT / "jsrt" / "normal" / p.name) for p in jsrt])
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1))
    picks = [f[1] for f in files[::250]] + [OUT / "jsrt" / "normal" / p.name for p in jsrt[::20]]
    tiles = [np.asarray(Image.open(p).convert("L").resize((160, 160))) for p in picks if p.is_file()]
    Image.fromarray(np.concatenate(tiles, axis=1)).save(OUT / "montage.png")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
