"""The one function that turns an X-ray into a model's input.

Training (``model_training``) and the application both call
:func:`model_input` with the :class:`PreprocessSpec` stored in the model
card, so both see identical pixels.

Steps, in order: optional border crop (fraction of each side), resize to the
model's input size (anti-aliased bilinear on float pixels; ``stretch`` as the
paper does, or ``letterbox`` keeping the aspect ratio), optional intensity
normalisation (``hist``: histogram equalisation; ``zscore``: per-image mean/std
to a fixed mean/std), then the backbone's own input scaling and 3 channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from .imaging import XRay

RESIZE_MODES = ("stretch", "letterbox")
EQUALIZE_MODES = ("none", "hist", "zscore")
#: Backbone input scalings (as keras.applications' preprocess_input does).
NORMALIZATIONS = ("mobilenet", "vgg19", "unit")

# keras.applications.vgg19.preprocess_input ("caffe"): RGB->BGR, minus ImageNet means.
_VGG_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


@dataclass(frozen=True)
class PreprocessSpec:
    """How pixels become a model input; stored in the model card as a dict."""

    height: int = 224
    width: int = 224
    resize: str = "stretch"
    crop: float = 0.0
    equalize: str = "none"
    normalization: str = "mobilenet"
    channels: int = 3
    #: Blank (set to the mean of the rest) the outer band of this fraction of each side...
    mask_border: float = 0.0
    #: ...and the corner squares of this fraction of each side: where text, markers and collimator edges are.
    mask_corner: float = 0.0
    #: Resolution harmonisation: every film is reduced to this size (bilinear, antialiased) and brought back
    #: to the model size, so all sources share the weakest source's sharpness (0: off).
    harmonize: int = 0

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}. Received: resize={self.resize!r}")
        if self.equalize not in EQUALIZE_MODES:
            raise ValueError(f"equalize must be one of {EQUALIZE_MODES}. Received: equalize={self.equalize!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}. Received: normalization={self.normalization!r}"
            )
        if not 0.0 <= self.crop < 0.4:
            raise ValueError(f"crop must be in [0, 0.4). Received: crop={self.crop!r}")
        if self.height < 8 or self.width < 8:
            raise ValueError(f"input size too small. Received: {self.height}x{self.width}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3. Received: channels={self.channels!r}")
        if self.harmonize and not 16 <= self.harmonize <= min(self.height, self.width):
            raise ValueError(f"harmonize must be 0 or 16..{min(self.height, self.width)}. Received: {self.harmonize!r}")
        for name in ("mask_border", "mask_corner"):
            if not 0.0 <= getattr(self, name) < 0.4:
                raise ValueError(f"{name} must be in [0, 0.4). Received: {name}={getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["harmonize"]:  # off: the dict (cards, cache keys) stays as before the option existed
            del d["harmonize"]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessSpec:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown preprocessing keys {sorted(unknown)}")
        return cls(**dict(data))


def display_to_size(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Crop and resize display pixels (float [0, 1], HxW) to the spec's size, float32 [0, 1] (through the
    spec's ``harmonize`` size first when it has one)."""
    img = np.asarray(pixels, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image. Received shape {img.shape}")
    if spec.crop > 0:
        h, w = img.shape
        dy, dx = int(round(h * spec.crop)), int(round(w * spec.crop))
        img = img[dy : h - dy, dx : w - dx]
    img = _resize(img, spec.height, spec.width, spec.resize)
    if spec.harmonize:
        img = _resize_f(_resize_f(img, spec.harmonize, spec.harmonize), spec.width, spec.height)
    return img


def _resize(img: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    if mode == "stretch":
        return _resize_f(img, width, height)
    h, w = img.shape
    scale = min(height / h, width / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = _resize_f(img, nw, nh)
    out = np.zeros((height, width), dtype=np.float32)
    y0, x0 = (height - nh) // 2, (width - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = resized
    return out


def _resize_f(img: np.ndarray, width: int, height: int) -> np.ndarray:
    if img.shape == (height, width):
        return img.astype(np.float32, copy=True)
    pil = Image.fromarray(np.ascontiguousarray(img, dtype=np.float32), mode="F")
    out = pil.resize((width, height), resample=Image.Resampling.BILINEAR, reducing_gap=None)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def border_mask(height: int, width: int, border: float, corner: float) -> np.ndarray:
    """Boolean (H, W): True in the outer ``border`` band and the ``corner`` squares (fractions of each side,
    measured at pixel centres)."""
    yy, xx = np.mgrid[0:height, 0:width]
    fy, fx = (yy + 0.5) / height, (xx + 0.5) / width
    band = (fy < border) | (fy >= 1 - border) | (fx < border) | (fx >= 1 - border)
    corners = ((fy < corner) | (fy >= 1 - corner)) & ((fx < corner) | (fx >= 1 - corner))
    return np.asarray(band | corners)


def mask_edges(img: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The resized image with the spec's border band and corners set to the mean of the rest (no-op
    when the spec masks nothing). Applied before intensity normalisation."""
    if spec.mask_border <= 0 and spec.mask_corner <= 0:
        return img
    blank = border_mask(img.shape[0], img.shape[1], spec.mask_border, spec.mask_corner)
    out = np.array(img, dtype=np.float32, copy=True)
    out[blank] = float(out[~blank].mean()) if (~blank).any() else 0.0
    return out


def equalize(img: np.ndarray, mode: str) -> np.ndarray:
    """Intensity normalisation of a resized float [0, 1] image."""
    if mode == "none":
        return img
    if mode == "hist":
        q = np.clip(np.round(img * 255.0), 0, 255).astype(np.int64)
        hist = np.bincount(q.ravel(), minlength=256).astype(np.float64)
        cdf = np.cumsum(hist)
        nz = cdf[cdf > 0]
        cdf_min = nz[0] if nz.size else 0.0
        denom = max(cdf[-1] - cdf_min, 1.0)
        lut = np.clip((cdf - cdf_min) / denom, 0.0, 1.0).astype(np.float32)
        return lut[q]
    if mode == "zscore":
        mean, std = float(img.mean()), float(img.std())
        out = (img - mean) / max(std, 1e-3) * 0.25 + 0.5
        return np.clip(out, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unknown equalize mode {mode!r}")


def scale_for_backbone(img: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """HxW float [0, 1] -> HxWxC float32 as the backbone expects."""
    x255 = img.astype(np.float32) * 255.0
    if spec.normalization == "mobilenet":
        out = x255 / 127.5 - 1.0
        chans = np.repeat(out[..., None], spec.channels, axis=-1)
    elif spec.normalization == "vgg19":
        if spec.channels != 3:
            raise ValueError("vgg19 normalization needs 3 channels")
        chans = np.repeat(x255[..., None], 3, axis=-1) - _VGG_MEAN_BGR  # gray: BGR == RGB
    else:
        chans = np.repeat(img[..., None], spec.channels, axis=-1)
    return chans.astype(np.float32, copy=False)


def model_input(xray: XRay | np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The model's input (H, W, C) float32 for one X-ray or one display image (HxW in [0, 1])."""
    pixels = xray.pixels if isinstance(xray, XRay) else xray
    img = display_to_size(pixels, spec)
    img = mask_edges(img, spec)
    img = equalize(img, spec.equalize)
    return scale_for_backbone(img, spec)


__all__ = [
    "PreprocessSpec",
    "border_mask",
    "display_to_size",
    "equalize",
    "mask_edges",
    "model_input",
    "scale_for_backbone",
]
