"""The input gate: a film the model was not made for gets a reason, not a probability.

``check(xray, features=None, stats=None) -> GateResult`` is a pure function
the pipeline calls twice: before the model (DICOM tags and pixels, cheap)
and, for films that pass, with the model's feature map (the learnt check).
:func:`screen` does both around one ONNX Runtime run for a list of X-rays;
:func:`from_load_error` gives the code of a file that did not load.

Reject codes (stable: they go into JSON, ``results.csv`` and audit logs):

=====================  ==========================================================================
code                   when
=====================  ==========================================================================
``unreadable``         the file could not be read or decoded (damaged, not an image, no decoder)
``not_radiograph``     DICOM Modality CT, MR, US, NM, PT, ... (the loader refuses them), or the
                       learnt check sees a photo, document or graphic
``not_chest``          DICOM BodyPartExamined other than chest (HIP, EXTREMITY, ...), Modality MG,
                       IO or PX (mammogram, dental), or the learnt check sees another body part
``not_frontal_chest``  DICOM ViewPosition lateral or oblique (LL, RL, LATERAL, LAO, ...), or the
                       learnt check sees a film turned on its side or upside down
``paediatric``         DICOM PatientAge under 16 years (or birth date and study date say so)
``too_small``          shorter side under :data:`MIN_SIDE` pixels (the model sees 224x224)
``inverted_or_blank``  no contrast (blank or near-constant), or the learnt check sees the film
                       shown inverted (bones dark)
=====================  ==========================================================================

DICOM tags come first and are trusted: a DICOM whose BodyPartExamined says
chest is not second-guessed by the learnt check (it still goes through the
pixel checks). Modality OT/SC (secondary capture, digitised films) and an
empty Modality are left to the learnt check. PNG and JPEG carry no tags:
the learnt check (a multinomial logistic regression on the pooled backbone
features, classes :data:`~desktop.core.input_stats.GATE_CLASSES`, weights in
the bundle's input statistics) decides; without statistics only the pixel
checks run. Its false-rejection rate on the training collection is in
``benchmarks/results/gate_ood.md``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from .errors import CXRError
from .imaging import REFUSED_MODALITIES, XRay
from .input_stats import GATE_CLASSES
from .ood import OODResult, assess, pooled

log = logging.getLogger(__name__)

#: code -> what it means (the table above, for --help, the GUI and the docs).
REJECT_CODES: Mapping[str, str] = {
    "unreadable": "the file could not be read or decoded",
    "not_radiograph": "not a projection radiograph (CT, MR, ultrasound, photo, document...)",
    "not_chest": "a radiograph of another body part",
    "not_frontal_chest": "not a frontal chest view (lateral, oblique, or turned)",
    "paediatric": "a child under 16: the model was trained on adults",
    "too_small": "too small to assess",
    "inverted_or_blank": "blank, or shown inverted (bones dark)",
}
#: Shorter side below this (pixels): ``too_small`` (thumbnails, icons). The smallest film in the
#: training data is 156 px; 64 leaves room for small exports that still show a chest.
MIN_SIDE = 64
#: Under this age (years): ``paediatric``.
MIN_AGE_YEARS = 16.0
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "LUNGS", "CHEST_LAT", "TORAX", "THORAX_CHEST", "PECHO"})
NOT_FRONTAL_VIEWS = frozenset({"LL", "RL", "LATERAL", "LAT", "LLD", "RLD", "LAO", "RAO", "LPO", "RPO", "OBLIQUE"})
#: Projection modalities that are never chest films.
OTHER_BODY_MODALITIES = {"MG": "mammogram", "IO": "intra-oral (dental) film", "PX": "panoramic dental film"}
#: Learnt-gate class -> code.
LEARNT_CODES = {
    "inverted": ("inverted_or_blank", "inverted image (bones dark)"),
    "rotated": ("not_frontal_chest", "film turned on its side or upside down"),
    "other_xray": ("not_chest", "radiograph of another body part"),
    "not_xray": ("not_radiograph", "not a radiograph (photo, document or graphic)"),
}


@dataclass(frozen=True)
class GateResult:
    """``code`` None: accepted. Otherwise a code of :data:`REJECT_CODES` and a short reason."""

    code: str | None
    reason: str = ""
    by: str = ""  # "dicom" | "pixels" | "learnt" | "load"
    p_chest: float | None = None

    @property
    def rejected(self) -> bool:
        return self.code is not None

    @property
    def text(self) -> str:
        """What the result panel, the table and the PDF show: "not assessable: hip film"."""
        return f"not assessable: {self.reason}" if self.rejected else ""

    def to_dict(self) -> dict[str, Any]:
        return {"reject_code": self.code, "reject_reason": self.reason or None, "gate": self.by or None}


ACCEPTED = GateResult(None)


def _reject(code: str, reason: str, by: str, p_chest: float | None = None) -> GateResult:
    assert code in REJECT_CODES, code
    return GateResult(code, reason, by, p_chest)


# ---------------------------------------------------------------- DICOM tags


def age_years(patient_age: str, birth_date: str = "", study_date: str = "") -> float | None:
    """DICOM AgeString ("006Y", "018M", "003W", "010D") in years; else from the dates; None if unknown."""
    m = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY]?)\s*", patient_age or "", flags=re.I)
    if m:
        n, unit = int(m.group(1)), (m.group(2) or "Y").upper()
        return n / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[unit]
    try:
        b = date(int(birth_date[:4]), int(birth_date[4:6]), int(birth_date[6:8]))
        s = date(int(study_date[:4]), int(study_date[4:6]), int(study_date[6:8]))
    except (ValueError, IndexError):
        return None
    years = (s - b).days / 365.25
    return years if years >= 0 else None


def check_tags(meta: Any) -> GateResult:
    """The DICOM-tag rules for a :class:`~desktop.core.imaging.StudyMetadata`."""
    modality = (meta.modality or "").strip().upper()
    if modality in REFUSED_MODALITIES:
        return _reject("not_radiograph", f"{REFUSED_MODALITIES[modality]} (modality {modality})", "dicom")
    if modality in OTHER_BODY_MODALITIES:
        return _reject("not_chest", OTHER_BODY_MODALITIES[modality], "dicom")
    part = (meta.body_part or "").strip().upper().replace(" ", "_")
    if part and part not in CHEST_BODY_PARTS:
        return _reject("not_chest", f"{part.lower().replace('_', ' ')} film", "dicom")
    view = (meta.view_position or "").strip().upper()
    if view in NOT_FRONTAL_VIEWS:
        return _reject("not_frontal_chest", f"{'oblique' if view.endswith('O') or view == 'OBLIQUE' else 'lateral'} view ({view})", "dicom")
    age = age_years(meta.patient_age, meta.patient_birth_date, meta.study_date)
    if age is not None and age < MIN_AGE_YEARS:
        return _reject("paediatric", f"child (age {age:.0f})" if age >= 1 else "infant", "dicom")
    return ACCEPTED


# ---------------------------------------------------------------- pixels


def check_pixels(pixels: np.ndarray) -> GateResult:
    px = np.asarray(pixels)
    h, w = px.shape[:2]
    if min(h, w) < MIN_SIDE:
        return _reject("too_small", f"image too small ({w}x{h} pixels, at least {MIN_SIDE} needed)", "pixels")
    sample = px[:: max(1, h // 256), :: max(1, w // 256)].astype(np.float32)
    lo, hi = np.percentile(sample, [1, 99])
    if hi - lo < 0.04 or float(sample.std()) < 0.015:
        return _reject("inverted_or_blank", "blank image (no contrast)", "pixels")
    return ACCEPTED


# ---------------------------------------------------------------- learnt


def gate_probabilities(features: np.ndarray, stats: Any) -> np.ndarray | None:
    """(N, len(GATE_CLASSES)) class probabilities of the learnt gate, or None without weights."""
    arrays = getattr(stats, "arrays", stats)
    if not isinstance(arrays, Mapping) or "gate_weights" not in arrays:
        return None
    x = (pooled(features) - arrays["gate_mean"]) / arrays["gate_scale"]
    z = x @ np.asarray(arrays["gate_weights"]).T + np.asarray(arrays["gate_bias"])
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return np.asarray(p / p.sum(axis=1, keepdims=True))


def check_learnt(features: np.ndarray, stats: Any) -> GateResult:
    probs = gate_probabilities(features, stats)
    if probs is None:
        return ACCEPTED
    arrays = getattr(stats, "arrays", stats)
    below = float(arrays.get("gate_reject_below", 0.5))
    p = probs[0]
    p_chest = float(p[0])
    if p_chest >= below:
        return GateResult(None, "", "learnt", p_chest)
    cls = GATE_CLASSES[1 + int(np.argmax(p[1:]))]
    code, reason = LEARNT_CODES[cls]
    return _reject(code, reason, "learnt", p_chest)


def _tags_say_chest(xray: XRay) -> bool:
    part = (xray.metadata.body_part or "").strip().upper().replace(" ", "_")
    return xray.format == "dicom" and part in CHEST_BODY_PARTS


def check(xray: XRay, features: np.ndarray | None = None, *, stats: Any = None,
          passed: GateResult | None = None) -> GateResult:
    """Gate one loaded X-ray: tags, then pixels, then (with ``features`` and ``stats``) the learnt check.

    ``passed``: what an earlier call without features returned for this film (tags and pixels
    passed), so that a caller which needs that verdict before running the model (the GUI's
    ``analyze``) does not check them twice.
    """
    if passed is not None:
        res = passed
    else:
        if xray.format == "dicom":
            res = check_tags(xray.metadata)
            if res.rejected:
                return res
        res = check_pixels(xray.pixels)
    if res.rejected or features is None or stats is None or _tags_say_chest(xray):
        return res
    return check_learnt(features, stats)


def from_load_error(exc: BaseException) -> GateResult:
    """The code of a file that did not load (CT/MR refused by the loader: ``not_radiograph``)."""
    reason = str(getattr(exc, "reason", "") or exc)
    if "radiograph" in reason:  # CT/MR/US..., colour or floating-point DICOM: the loader's own refusals
        return _reject("not_radiograph", reason.split(", expected")[0], "load")
    if "too small" in reason:
        return _reject("too_small", reason, "load")
    return _reject("unreadable", "file could not be read" if isinstance(exc, CXRError) else "file error", "load")


# ---------------------------------------------------------------- one run


@dataclass(frozen=True)
class Screened:
    """A film after the gate: rejected (no prediction) or a prediction with its OOD result."""

    gate: GateResult
    prediction: Any | None  # desktop.core.inference.Prediction
    ood: OODResult | None = None

    @property
    def status(self) -> str:
        return "rejected" if self.gate.rejected else "ok"

    def to_dict(self) -> dict[str, Any]:
        """The gate and OOD fields of a JSON line (``p_covid`` etc. come from the prediction)."""
        out: dict[str, Any] = {"status": self.status, **self.gate.to_dict()}
        if self.gate.rejected:
            out["result"] = self.gate.text
        out["ood_score"] = None if self.ood is None else round(self.ood.score, 4)
        out["ood_flag"] = None if self.ood is None else self.ood.flagged
        if self.ood is not None and self.ood.flagged:
            out["ood_note"] = self.ood.text
        return out


def screen(predictor: Any, xrays: Sequence[XRay], *, stats: Any = None, operating_point: Any = None) -> list[Screened]:
    """Gate, predict and OOD-score X-rays with one ONNX Runtime run per batch of accepted films.

    A rejected film gets no prediction at all (no p(covid) to leak into a
    table or a report).
    """
    op = predictor.operating_point(operating_point)
    out: list[Screened | None] = [None] * len(xrays)
    todo: list[int] = []
    for i, x in enumerate(xrays):
        res = check(x)
        if res.rejected:
            out[i] = Screened(res, None)
        else:
            todo.append(i)
    for start in range(0, len(todo), 8):
        idx = todo[start : start + 8]
        fmap, probs = predictor.forward_raw(np.stack([predictor.preprocess(xrays[i]) for i in idx]))
        for j, i in enumerate(idx):
            res = check(xrays[i], fmap[j : j + 1], stats=stats)
            if res.rejected:
                out[i] = Screened(res, None)
                continue
            out[i] = Screened(res, predictor._prediction(probs[j], op), assess(fmap[j : j + 1], stats))
    return [s for s in out if s is not None]




# ---------------------------------------------------------------- a folder


@dataclass(frozen=True)
class FolderItem:
    """One file of :func:`screen_folder`: ``status`` "ok" (``p_covid``), "rejected" (``code``) or "error"."""

    path: str
    status: str
    p_covid: float | None = None
    code: str | None = None
    reason: str = ""
    ood_flag: bool | None = None


def list_images(folder: str | Any) -> list[Any]:
    """Files under ``folder`` (recursive, sorted, hidden ones skipped); images are told by content later."""
    from pathlib import Path

    root = Path(folder)
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def screen_folder(folder: str | Any, predictor: Any, *, stats: Any = None, cancel: Any = None) -> Any:
    """Yield ``(done, total, FolderItem)`` for every file of ``folder``: load, gate, score.

    A plain generator (run the same by ``calibrate``, the tests and the Qt
    dialog's worker); ``cancel()`` returning True stops it between files.
    """
    from .imaging import load_xray

    files = list_images(folder)
    total = len(files)
    pending: list[tuple[Any, XRay]] = []
    done = 0

    def flush() -> Any:
        nonlocal done
        results = screen(predictor, [x for _, x in pending], stats=stats)
        for (path, _), res in zip(pending, results, strict=True):
            done += 1
            if res.gate.rejected:
                item = FolderItem(str(path), "rejected", code=res.gate.code, reason=res.gate.reason)
            else:
                assert res.prediction is not None
                item = FolderItem(str(path), "ok", p_covid=float(res.prediction.p_covid),
                                  ood_flag=None if res.ood is None else res.ood.flagged)
            yield done, total, item
        pending.clear()

    for path in files:
        if cancel is not None and cancel():
            return
        try:
            xray = load_xray(path)
        except CXRError as exc:
            res = from_load_error(exc)
            done += 1
            status = "error" if res.code == "unreadable" else "rejected"
            yield done, total, FolderItem(str(path), status, code=res.code, reason=str(exc))
            continue
        pending.append((path, xray))
        if len(pending) >= 8:
            yield from flush()
    if pending:
        yield from flush()


__all__ = [
    "ACCEPTED", "MIN_AGE_YEARS", "MIN_SIDE", "REJECT_CODES", "GateResult", "Screened", "age_years", "check",
    "FolderItem", "check_learnt", "check_pixels", "check_tags", "from_load_error", "gate_probabilities",
    "list_images", "screen", "screen_folder",
]
