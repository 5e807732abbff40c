"""Run a model bundle with ONNX Runtime: probabilities, decisions and Grad-CAM.

One :class:`Predictor` holds one ONNX Runtime session (CPU). A forward pass
gives both the Grad-CAM layer's feature map and the probabilities, so
:meth:`Predictor.explain` costs one forward pass plus a little numpy (the
head's gradient, :mod:`desktop.core.gradcam`). No TensorFlow anywhere.

A prediction is decision support: ``label`` is the positive class ("covid")
when ``p_covid >= threshold`` of the chosen operating point (the card's
default unless another is named).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import (
    HEAD_FILE,
    ONNX_FILE,
    Bundle,
    DenseLayer,
    OperatingPoint,
    get_bundle,
    load_bundle,
    verify_bytes,
)
from .errors import BundleIntegrityError, ModelError, ModelInputError
from .gradcam import gradcam, head_forward, head_logit_grad
from .imaging import XRay
from .preprocess import PreprocessSpec, border_mask, model_input

log = logging.getLogger(__name__)

#: Images per ONNX Runtime call in :meth:`Predictor.predict`.
DEFAULT_BATCH = 8


@dataclass(frozen=True)
class Prediction:
    """The model's output for one image, with the decision at an operating point."""

    p_covid: float
    label: str
    operating_point: str
    threshold: float
    model: str
    model_version: str
    probabilities: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "p_covid": self.p_covid,
            "model": self.model,
            "model_version": self.model_version,
            "operating_point": self.operating_point,
            "threshold": self.threshold,
            "probabilities": dict(self.probabilities),
        }


@dataclass(frozen=True, eq=False)
class Heatmap:
    """A Grad-CAM map over the model input, and how to put it back on the image.

    ``cam`` is the low-resolution map (h, w) float32 in [0, 1] (the Grad-CAM
    layer's grid); ``raw_max`` its maximum before normalisation (0: the
    model's evidence for the class is nowhere positive and the map is empty).
    ``spec`` is the preprocessing that made the model input, so
    :meth:`upsample` can undo its crop and letterbox.

    ``reference`` puts the map on a fixed scale shared by every image: the raw
    Grad-CAM value (evidence for the class, in logit units per grid cell)
    that counts as 1.0. With it, :meth:`upsample` returns
    ``cam * raw_max / reference`` clipped to [0, 1], so a clear negative with
    little evidence stays near 0 instead of being stretched to full colour.
    :class:`Predictor` sets it (see :func:`gradcam_reference`); ``None`` keeps
    the old per-image scaling (peak = 1) for callers that build maps by hand.
    """

    cam: np.ndarray
    raw_max: float
    class_name: str
    layer: str
    spec: PreprocessSpec
    reference: float | None = None

    @property
    def empty(self) -> bool:
        return not self.raw_max > 0

    @property
    def scale(self) -> float:
        """Factor from the per-image map (peak 1) to the fixed scale (1 when no reference)."""
        if self.reference is None or not self.reference > 0:
            return 1.0
        return float(self.raw_max) / float(self.reference)

    @property
    def peak(self) -> float:
        """The map's maximum on the fixed scale (may exceed 1: the drawn colour saturates)."""
        return self.scale if self.raw_max > 0 else 0.0

    def upsample(self, shape: tuple[int, int]) -> np.ndarray:
        """The map on an image of ``shape`` (H, W): float32 in [0, 1], smooth (bicubic).

        Areas the model did not see (cropped borders, masked edges and corners) are 0.
        On the fixed scale when :attr:`reference` is set.
        """
        region = self._upsample_relative(shape)
        factor = self.scale
        if factor != 1.0:
            region *= np.float32(factor)
            np.clip(region, 0.0, 1.0, out=region)
        return region

    def _upsample_relative(self, shape: tuple[int, int]) -> np.ndarray:
        height, width = int(shape[0]), int(shape[1])
        spec = self.spec
        dy = int(round(height * spec.crop)) if spec.crop > 0 else 0
        dx = int(round(width * spec.crop)) if spec.crop > 0 else 0
        rh, rw = height - 2 * dy, width - 2 * dx
        if spec.resize == "letterbox":
            # the image sits centred in the model input: cut that block out first
            full = _resize(self.cam, spec.height, spec.width)
            scale = min(spec.height / rh, spec.width / rw)
            nh, nw = max(1, round(rh * scale)), max(1, round(rw * scale))
            y0, x0 = (spec.height - nh) // 2, (spec.width - nw) // 2
            region = _resize(full[y0 : y0 + nh, x0 : x0 + nw], rh, rw)
            if spec.mask_border > 0 or spec.mask_corner > 0:
                from PIL import Image

                blank = border_mask(spec.height, spec.width, spec.mask_border, spec.mask_corner)
                block = Image.fromarray(blank[y0 : y0 + nh, x0 : x0 + nw].astype(np.uint8) * 255)
                region[np.asarray(block.resize((rw, rh), Image.Resampling.NEAREST)) > 0] = 0.0
        else:
            region = _resize(self.cam, rh, rw)
            if spec.mask_border > 0 or spec.mask_corner > 0:
                region[border_mask(rh, rw, spec.mask_border, spec.mask_corner)] = 0.0
        if dy == 0 and dx == 0:
            return region
        out = np.zeros((height, width), dtype=np.float32)
        out[dy : dy + rh, dx : dx + rw] = region
        return out


def _resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    src = np.ascontiguousarray(img, dtype=np.float32)
    if src.shape == (height, width):
        return src.copy()
    pil = Image.fromarray(src, mode="F").resize((width, height), resample=Image.Resampling.BICUBIC)
    return np.clip(np.asarray(pil, dtype=np.float32), 0.0, 1.0)


#: The fixed heatmap scale: 1.0 is evidence that, spread evenly over the whole film, would
#: raise the COVID-19 logit by this much (6 logit units: p(COVID-19) about 0.998 from even odds).
#: With the bundled model a clear negative peaks near 0.15 (nothing drawn from DRAW_FROM = 0.5)
#: and a clear positive near 0.75, with about half its map above 0.5.
REFERENCE_LOGIT = 6.0


def gradcam_reference(card: Any, feature_shape: Sequence[int]) -> float:
    """The raw Grad-CAM value shown as 1.0 on the fixed scale, for a model.

    A card may set its own (``gradcam_reference``, e.g. a high percentile of the
    validation positives' maxima, written at export); otherwise
    :data:`REFERENCE_LOGIT` spread over the ``h x w`` grid. Grad-CAM of the
    logit is, for a pooling + dense head, each cell's share of the logit
    itself, so this reference means the same amount of evidence on every image.
    """
    own = getattr(card, "gradcam_reference", None)
    if own is None and isinstance(getattr(card, "raw", None), Mapping):
        own = card.raw.get("gradcam_reference")
    try:
        value = float(own) if own is not None else 0.0
    except (TypeError, ValueError):
        value = 0.0
    if value > 0 and np.isfinite(value):
        return value
    cells = max(1, int(feature_shape[0]) * int(feature_shape[1]))
    return REFERENCE_LOGIT / cells


def default_threads() -> int:
    """Intra-op threads: every core up to 4 (the policy is :mod:`desktop.core.cpu`)."""
    from .cpu import single_inference_threads

    return single_inference_threads()


class Predictor:
    """One model, ready to run: ``predict`` a batch, ``explain`` one image with Grad-CAM.

    ``bundle`` is a loaded :class:`~desktop.core.bundle.Bundle` or the path
    of a bundle folder (loaded and verified here). The ONNX file and the
    head weights are read once, their sha256 checked against the card on
    the very bytes used (no window for a swap after verification), and the
    session's inputs and outputs checked against the card: a mismatch is a
    :class:`ModelError`. Thread-safe for concurrent ``predict`` calls (ONNX
    Runtime sessions are).
    """

    def __init__(self, bundle: Bundle | str | os.PathLike[str], threads: int | None = None) -> None:
        import onnxruntime as ort

        if not isinstance(bundle, Bundle):
            bundle = load_bundle(Path(bundle))
        self.bundle = bundle
        card = bundle.card
        self.card = card
        self.spec: PreprocessSpec = card.preprocess
        self.class_names = card.class_names
        self.positive_index = card.positive_index
        self.head = card.head
        onnx_bytes = _read(bundle.path / ONNX_FILE)
        verify_bytes(bundle.path / ONNX_FILE, onnx_bytes, card.files[ONNX_FILE])
        head_bytes = _read(bundle.path / HEAD_FILE)
        verify_bytes(bundle.path / HEAD_FILE, head_bytes, card.files[HEAD_FILE])
        self.head_weights = _load_npz(bundle.path / HEAD_FILE, head_bytes)

        self.threads = threads if threads is not None else default_threads()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types
            raise ModelError(bundle.path / ONNX_FILE, f"ONNX Runtime cannot load the model ({_first_line(exc)})") from exc
        self.feature_shape = self._check_session()
        self._check_head()
        log.info("model %s v%s ready (%d threads)", card.name, card.version, self.threads)

    @classmethod
    def from_name(cls, name: str | None = None, threads: int | None = None) -> Predictor:
        """The named bundle (the default bundle when None) from the models folders."""
        return cls(get_bundle(name), threads=threads)

    # ------------------------------------------------------------------ checks

    def _check_session(self) -> tuple[int, int, int]:
        where = self.bundle.path / ONNX_FILE
        ins = self.session.get_inputs()
        outs = {o.name: o for o in self.session.get_outputs()}
        if len(ins) != 1 or ins[0].name != "input":
            raise ModelError(where, f"expected one input named 'input'. Received: {[i.name for i in ins]}")
        if "features" not in outs or "probs" not in outs:
            raise ModelError(where, f"expected outputs 'features' and 'probs'. Received: {sorted(outs)}")
        shape = list(ins[0].shape)
        want = [self.spec.height, self.spec.width, self.spec.channels]
        if len(shape) != 4 or [_dim(d) for d in shape[1:]] != want:
            raise ModelError(where, f"model input shape {shape} does not match the card's input (N, {want})")
        if ins[0].type != "tensor(float)":
            raise ModelError(where, f"model input must be float32. Received: {ins[0].type}")
        pshape = list(outs["probs"].shape)
        if len(pshape) != 2 or _dim(pshape[1]) != len(self.class_names):
            raise ModelError(where, f"'probs' shape {pshape} does not match {len(self.class_names)} classes")
        fshape = list(outs["features"].shape)
        dims = [_dim(d) for d in fshape[1:]]
        if len(fshape) != 4 or any(d is None for d in dims):
            raise ModelError(where, f"'features' must be (N, h, w, k) with static h, w, k. Received: {fshape}")
        return (int(dims[0]), int(dims[1]), int(dims[2]))  # type: ignore[arg-type]

    def _check_head(self) -> None:
        where = self.bundle.path / HEAD_FILE
        probe = np.zeros((1, *self.feature_shape), dtype=np.float32)
        for layer in self.head:
            if isinstance(layer, DenseLayer):
                for part in ("kernel", "bias"):
                    if f"{layer.name}/{part}" not in self.head_weights:
                        raise ModelError(where, f"missing {layer.name}/{part} for head layer {layer.name!r}")
        try:
            cache = head_forward(probe, self.head, self.head_weights)
        except (ValueError, KeyError) as exc:
            raise ModelError(where, f"the head weights do not fit the card's head ({exc})") from exc
        if cache.probs.shape != (1, len(self.class_names)):
            raise ModelError(where, f"the head gives {cache.probs.shape[1]} outputs for {len(self.class_names)} classes")

    # ------------------------------------------------------------------ inputs

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.spec.height, self.spec.width, self.spec.channels)

    def preprocess(self, xray: XRay | np.ndarray) -> np.ndarray:
        """The model input (H, W, C) for an X-ray (or display pixels HxW in [0, 1])."""
        return model_input(xray, self.spec)

    def _check_batch(self, batch: np.ndarray, source: str | None = None) -> np.ndarray:
        source = source or "model input"
        arr = np.asarray(batch)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or tuple(arr.shape[1:]) != self.input_shape:
            raise ModelInputError(
                source,
                f"model {self.name!r} expects input (N, {', '.join(map(str, self.input_shape))}). "
                f"Received: shape {tuple(arr.shape)}",
                "preprocess with Predictor.preprocess (the card's PreprocessSpec)",
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise ModelInputError(source, f"model input must be floating point. Received: dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise ModelInputError(source, "model input contains NaN or infinite values")
        return arr

    def _inputs(self, xrays: Iterable[XRay | np.ndarray]) -> tuple[np.ndarray, list[str | None]]:
        arrays, sources = [], []
        for x in xrays:
            if isinstance(x, XRay):
                arrays.append(self.preprocess(x))
                sources.append(x.source)
            else:
                a = np.asarray(x)
                arrays.append(self.preprocess(a) if a.ndim == 2 else self._check_batch(a)[0])
                sources.append(None)
        if not arrays:
            return np.zeros((0, *self.input_shape), np.float32), []
        return np.stack(arrays), sources

    # ------------------------------------------------------------------ running

    def forward_raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(features, probs)`` of a preprocessed batch (N, H, W, C): one ONNX Runtime run."""
        arr = self._check_batch(batch)
        feats, probs = self.session.run(["features", "probs"], {"input": arr})
        return feats, probs

    def operating_point(self, name: str | OperatingPoint | None = None) -> OperatingPoint:
        """The named operating point of this model (its default when None)."""
        if isinstance(name, OperatingPoint):
            return name
        return self.card.operating_point(name)

    def decide(self, p_covid: float, operating_point: str | OperatingPoint | None = None) -> str:
        """The label at an operating point: the positive class when ``p_covid >= threshold``."""
        op = self.operating_point(operating_point)
        return self.card.positive_class if p_covid >= op.threshold else self.card.negative_class

    def _prediction(self, probs: np.ndarray, op: OperatingPoint) -> Prediction:
        p = float(probs[self.positive_index])
        return Prediction(
            p_covid=p,
            label=self.card.positive_class if p >= op.threshold else self.card.negative_class,
            operating_point=op.name,
            threshold=op.threshold,
            model=self.card.name,
            model_version=self.card.version,
            probabilities={c: float(v) for c, v in zip(self.class_names, probs, strict=True)},
        )

    def predict_inputs(
        self, batch: np.ndarray, operating_point: str | OperatingPoint | None = None
    ) -> list[Prediction]:
        """Predictions for preprocessed inputs (N, H, W, C), run in chunks of DEFAULT_BATCH."""
        op = self.operating_point(operating_point)
        arr = self._check_batch(batch)
        out: list[Prediction] = []
        for i in range(0, len(arr), DEFAULT_BATCH):
            (probs,) = self.session.run(["probs"], {"input": arr[i : i + DEFAULT_BATCH]})
            out.extend(self._prediction(p, op) for p in probs)
        return out

    def predict(
        self, xrays: Sequence[XRay | np.ndarray] | XRay, operating_point: str | OperatingPoint | None = None
    ) -> list[Prediction]:
        """Predictions for X-rays (or display images HxW, or model inputs HxWxC), in order."""
        items: Sequence[XRay | np.ndarray] = [xrays] if isinstance(xrays, XRay) else xrays
        op = self.operating_point(operating_point)  # unknown name: fail before any work
        out: list[Prediction] = []
        for i in range(0, len(items), DEFAULT_BATCH):
            batch, _ = self._inputs(items[i : i + DEFAULT_BATCH])
            out.extend(self.predict_inputs(batch, op))
        return out

    def _target(self, class_name: str | None) -> str:
        """The class a heatmap explains (default: the positive class); ModelError if the model has none of that name."""
        target = self.card.positive_class if class_name is None else class_name
        if target not in self.class_names:
            raise ModelError(self.bundle.path, f"no class {target!r} in model {self.name!r}", f"classes: {', '.join(self.class_names)}")
        return target

    def explain_input(
        self,
        x: np.ndarray,
        operating_point: str | OperatingPoint | None = None,
        *,
        class_name: str | None = None,
    ) -> tuple[Prediction, Heatmap]:
        """Prediction and Grad-CAM for one preprocessed input (H, W, C).

        The map explains ``class_name`` (default: the positive class, "covid").
        """
        op = self.operating_point(operating_point)
        target = self._target(class_name)
        arr = self._check_batch(x)
        if arr.shape[0] != 1:
            raise ModelInputError("model input", f"explain takes one image. Received: a batch of {arr.shape[0]}")
        feats, probs = self.session.run(["features", "probs"], {"input": arr})
        return self.explain_outputs(feats, probs, op, class_name=target)

    def explain_outputs(
        self,
        feats: np.ndarray,
        probs: np.ndarray,
        operating_point: str | OperatingPoint | None = None,
        *,
        class_name: str | None = None,
    ) -> tuple[Prediction, Heatmap]:
        """Prediction and Grad-CAM from the outputs of one image's forward pass (:meth:`forward_raw`).

        For callers that need the feature map first (the input gate and the OOD
        score read it): the model runs once, the head's gradient is numpy.
        """
        op = self.operating_point(operating_point)
        target = self._target(class_name)
        feats = np.asarray(feats, dtype=np.float32)
        probs = np.asarray(probs, dtype=np.float32)
        if feats.shape != (1, *self.feature_shape) or probs.shape != (1, len(self.class_names)):
            raise ModelInputError(
                "model output", f"explain takes one image's features {(1, *self.feature_shape)} and probabilities. "
                f"Received: {feats.shape} and {probs.shape}",
            )
        cache = head_forward(feats, self.head, self.head_weights)
        grads = head_logit_grad(cache, self.head, self.head_weights, self.class_names.index(target))
        cams, raw_max = gradcam(feats, grads)
        heat = Heatmap(
            cam=cams[0],
            raw_max=float(raw_max[0]),
            class_name=target,
            layer=self.card.gradcam_layer,
            spec=self.spec,
            reference=gradcam_reference(self.card, self.feature_shape),
        )
        return self._prediction(probs[0], op), heat

    def explain(
        self,
        xray: XRay | np.ndarray,
        operating_point: str | OperatingPoint | None = None,
        *,
        class_name: str | None = None,
    ) -> tuple[Prediction, Heatmap]:
        """Prediction and Grad-CAM heatmap for one X-ray: one ONNX Runtime run plus numpy.

        The map explains ``class_name`` (default: the positive class, "covid").
        """
        if isinstance(xray, XRay):
            x = self.preprocess(xray)
        else:
            a = np.asarray(xray)
            x = self.preprocess(a) if a.ndim == 2 else a
        try:
            return self.explain_input(x, operating_point, class_name=class_name)
        except ModelInputError as exc:
            if isinstance(xray, XRay) and exc.path == "model input":
                raise ModelInputError(xray.source, exc.reason, exc.hint) from exc
            raise

    def __repr__(self) -> str:
        return f"Predictor({self.name!r} v{self.version}, {self.bundle.path})"


def _dim(d: Any) -> int | None:
    return int(d) if isinstance(d, int) else None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleIntegrityError(path, f"cannot read ({exc.strerror or exc})") from exc


def _load_npz(path: Path, data: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}
    except (ValueError, OSError, EOFError) as exc:
        raise ModelError(path, f"cannot read head weights ({_first_line(exc)})") from exc


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line[:limit]


__all__ = ["DEFAULT_BATCH", "REFERENCE_LOGIT", "Heatmap", "Prediction", "Predictor", "default_threads",
           "gradcam_reference"]
