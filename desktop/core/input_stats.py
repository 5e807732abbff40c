"""A model's input statistics: the learnt gate's weights and the OOD score's statistics.

One ``.npz`` file (read with ``allow_pickle=False``) made by
``scripts/bundle_stats.py`` from the model's own features, bound to the
model's sha256 (a stats file of another model is never used). Looked for in:

1. ``<bundle>/input_stats.npz`` (shipped with the bundle; the card's
   ``files`` pins its sha256 once the bundle is re-pinned, and the bundle
   loader verifies it);
2. ``<user data>/input_stats/<model sha256>.npz`` (made on site by the
   script for a user bundle).

Arrays (float32): ``gate_mean``, ``gate_scale``, ``gate_weights`` (classes x
d), ``gate_bias``, ``gate_reject_below``; ``ood_mean``, ``ood_components``,
``ood_variances``, ``ood_residual_variance``, ``ood_threshold``;
``val_scores_covid`` / ``val_scores_normal`` (the validation films' p(covid),
for expected sensitivity at a site threshold). ``meta``: a JSON string with
``model_sha256``, ``model_name``, ``model_version`` and the figures.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .fileio import atomic_write_bytes
from .paths import user_data_dir

log = logging.getLogger(__name__)

STATS_FILE = "input_stats.npz"
#: Classes of the learnt gate, in the order of ``gate_weights`` rows.
GATE_CLASSES = ("chest", "inverted", "rotated", "other_xray", "not_xray")


@dataclass(frozen=True, eq=False)
class InputStats:
    model_sha256: str
    model_name: str
    model_version: str
    arrays: Mapping[str, np.ndarray]
    figures: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None

    def has(self, *keys: str) -> bool:
        return all(k in self.arrays for k in keys)


def write_stats(stats: InputStats, path: Path, *, overwrite: bool = True) -> Path:
    meta = {
        "model_sha256": stats.model_sha256,
        "model_name": stats.model_name,
        "model_version": stats.model_version,
        "gate_classes": list(GATE_CLASSES),
        "figures": dict(stats.figures),
    }
    buf = io.BytesIO()
    arrays: dict[str, Any] = {k: np.asarray(v) for k, v in stats.arrays.items()}
    arrays["meta"] = np.asarray(json.dumps(meta))
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue(), overwrite=overwrite)


def read_stats(path: Path) -> InputStats:
    """Read a stats file; ValueError with the reason when it is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files if k != "meta"}
            meta = json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not an input statistics file ({exc})") from exc
    if tuple(meta.get("gate_classes", GATE_CLASSES)) != GATE_CLASSES:
        raise ValueError(f"{path}: gate classes {meta.get('gate_classes')} differ from {list(GATE_CLASSES)}")
    return InputStats(
        model_sha256=str(meta["model_sha256"]),
        model_name=str(meta.get("model_name", "")),
        model_version=str(meta.get("model_version", "")),
        arrays=arrays,
        figures=meta.get("figures", {}),
        source=str(path),
    )


def user_stats_path(model_sha256: str) -> Path:
    return user_data_dir() / "input_stats" / f"{model_sha256}.npz"


def load_for(bundle: Any) -> InputStats | None:
    """The statistics for a :class:`~desktop.core.bundle.Bundle` (or a Predictor), or None.

    None (with a warning in the log) when there is no file or it belongs to
    another model: the gate then uses the DICOM tags and pixel checks only,
    and no OOD flag is given.
    """
    bundle = getattr(bundle, "bundle", bundle)  # a Predictor
    sha = str(bundle.card.data["sha256"])
    for path in (Path(bundle.path) / STATS_FILE, user_stats_path(sha)):
        if not path.is_file():
            continue
        try:
            stats = read_stats(path)
        except ValueError as exc:
            log.warning("%s", exc)
            continue
        if stats.model_sha256 != sha:
            log.warning(
                "%s: made for another model (sha256 %s..., this model %s...): not used; "
                "rerun scripts/bundle_stats.py for this model",
                path, stats.model_sha256[:12], sha[:12],
            )
            continue
        if path.parent == Path(bundle.path) and STATS_FILE not in bundle.card.files:
            log.warning("%s: not pinned by the model card (its sha256 is not in 'files'); used, but re-pin "
                        "the bundle", path)
        return stats
    log.info("no input statistics for model %s: learnt gate and OOD flag off", bundle.card.name)
    return None


__all__ = ["GATE_CLASSES", "STATS_FILE", "InputStats", "load_for", "read_stats", "user_stats_path", "write_stats"]
