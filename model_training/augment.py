"""Augmentations of resized float [0, 1] grayscale images (numpy, seeded).

``photometric``: random gamma, contrast/brightness, Gaussian blur or unsharp
sharpening and noise; meant to break the scanner/processing "style" that
differs between sources. ``photometric_strong`` adds :func:`acquisition_style` (resolution loss,
local-contrast processing, grain, JPEG re-encoding). ``photometric_occlude`` adds :func:`occlude_border`
(random bands along the edges and corner patches blanked) so that text, markers and
collimation at the border stop being evidence. ``geometric``: the paper's rotation 10 deg, shifts
0.2, zoom 0.2 (done in Keras during training, see ``train``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

AUGMENT_KINDS = ("none", "geometric", "photometric", "photometric_geometric", "photometric_occlude",
                 "photometric_strong")


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return np.asarray(gaussian_filter(img.astype(np.float32), sigma, mode="nearest"), dtype=np.float32)


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random photometric transform of a float [0, 1] HxW image."""
    x = img.astype(np.float32)
    x = np.clip(x, 0.0, 1.0) ** float(np.exp(rng.uniform(-0.5, 0.5)))  # gamma 0.6-1.65
    lo, hi = np.percentile(x, [rng.uniform(0, 3), rng.uniform(97, 100)])
    x = (x - lo) / max(hi - lo, 1e-3)
    x = x * rng.uniform(0.75, 1.15) + rng.uniform(-0.1, 0.1)
    r = rng.uniform()
    if r < 0.35:
        x = _blur(x, float(rng.uniform(0.4, 1.5)))
    elif r < 0.6:
        amount = float(rng.uniform(0.3, 1.0))
        x = x + amount * (x - _blur(x, float(rng.uniform(0.8, 2.0))))
    if rng.uniform() < 0.5:
        x = x + rng.normal(0.0, rng.uniform(0.005, 0.03), size=x.shape).astype(np.float32)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def acquisition_style(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a different scanner, digitiser or export does to a film, beyond a tone curve (which the
    histogram equalisation that follows undoes anyway): loss of resolution (down- and up-sampling by 1-3x),
    more or less local-contrast processing (unsharp masking at a large radius, as digital radiography
    systems apply and digitised film lacks, with a negative amount for the reverse), grain or noise, and
    lossy JPEG re-encoding. Used by ``photometric_strong`` on top of :func:`photometric`."""
    x = np.clip(img.astype(np.float32), 0.0, 1.0)
    h, w = x.shape
    if rng.uniform() < 0.5:
        f = float(rng.uniform(1.0, 3.0))
        small = Image.fromarray(x, mode="F").resize((max(8, int(w / f)), max(8, int(h / f))),
                                                     Image.Resampling.BILINEAR, reducing_gap=None)
        x = np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    if rng.uniform() < 0.6:
        sigma = float(rng.uniform(3.0, 12.0)) * h / 224.0
        x = x + float(rng.uniform(-0.5, 1.5)) * (x - _blur(x, sigma))
    if rng.uniform() < 0.5:
        x = x + rng.normal(0.0, rng.uniform(0.005, 0.04), size=x.shape).astype(np.float32)
    x = np.clip(x, 0.0, 1.0)
    if rng.uniform() < 0.3:
        import io

        buf = io.BytesIO()
        Image.fromarray(np.round(x * 255).astype(np.uint8)).save(buf, format="JPEG",
                                                                quality=int(rng.integers(30, 91)))
        buf.seek(0)
        x = np.asarray(Image.open(buf), dtype=np.float32) / 255.0
    return x.astype(np.float32)


def occlude_border(img: np.ndarray, rng: np.random.Generator, *, max_band: float = 0.15,
                   p_band: float = 0.5, p_corner: float = 0.5) -> np.ndarray:
    """Blank random edge bands (each edge with probability ``p_band``, up to ``max_band`` of the side)
    and corner squares (each with ``p_corner``, up to 25% of the side) with black, white or the image
    mean, as burned-in labels, markers and collimator edges look; the central lung field is untouched."""
    x = img.astype(np.float32, copy=True)
    h, w = x.shape

    def fill() -> float:
        return float(rng.choice([0.0, 1.0, float(x.mean()), float(rng.uniform())]))

    for edge in range(4):
        if rng.uniform() < p_band:
            k = int(round(rng.uniform(0.02, max_band) * (h if edge < 2 else w)))
            if k:
                if edge == 0:
                    x[:k] = fill()
                elif edge == 1:
                    x[h - k:] = fill()
                elif edge == 2:
                    x[:, :k] = fill()
                else:
                    x[:, w - k:] = fill()
    for cy, cx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        if rng.uniform() < p_corner:
            kh, kw = int(round(rng.uniform(0.05, 0.25) * h)), int(round(rng.uniform(0.05, 0.25) * w))
            ys = slice(0, kh) if cy == 0 else slice(h - kh, h)
            xs = slice(0, kw) if cx == 0 else slice(w - kw, w)
            x[ys, xs] = fill()
    return x


def geometric(img: np.ndarray, rng: np.random.Generator, *, rotation: float = 10.0,
              shift: float = 0.2, zoom: float = 0.2) -> np.ndarray:
    """Rotation, shift and zoom as Keras' ImageDataGenerator(10, 0.2, 0.2, zoom 0.2), nearest fill."""
    h, w = img.shape
    angle = float(rng.uniform(-rotation, rotation))
    tx, ty = rng.uniform(-shift, shift) * w, rng.uniform(-shift, shift) * h
    z = float(rng.uniform(1 - zoom, 1 + zoom))
    pil = Image.fromarray(img.astype(np.float32), mode="F")
    # inverse affine: output (x, y) -> input
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    cx, cy = w / 2, h / 2
    a, b = c * z, s * z
    d, e = -s * z, c * z
    coeffs = (a, b, cx - a * cx - b * cy + tx, d, e, cy - d * cx - e * cy + ty)
    out = pil.transform((w, h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    arr = np.asarray(out, dtype=np.float32)
    return arr


def photometric_augmenter(kind: str, seed: int) -> Callable[[np.ndarray, int], np.ndarray]:
    """``augment(batch, start)`` for :func:`model_training.features.extract_features` (seeded per image)."""
    if kind not in AUGMENT_KINDS:
        raise ValueError(f"augment must be one of {AUGMENT_KINDS}. Received: augment={kind!r}")

    def augment(batch: np.ndarray, start: int) -> np.ndarray:
        out = np.empty_like(batch, dtype=np.float32)
        for i, img in enumerate(batch):
            rng = np.random.default_rng([seed, start + i])
            if kind == "geometric":
                out[i] = np.clip(geometric(img, rng), 0.0, 1.0)
                continue
            x = photometric(img, rng)
            if kind == "photometric_geometric":
                x = geometric(x, rng, rotation=7.0, shift=0.06, zoom=0.1)
            elif kind == "photometric_occlude":
                x = occlude_border(x, rng)
            elif kind == "photometric_strong":
                x = acquisition_style(x, rng)
            out[i] = x
        return out

    return augment
