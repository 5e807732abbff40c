"""Data set reading, decoded-image cache and patient-level splits.

Images are read with :func:`desktop.core.imaging.load_xray` and brought to the
model's size with :func:`desktop.core.preprocess.display_to_size`, the first
step of :func:`desktop.core.preprocess.model_input`; the remaining steps
(``equalize`` and the backbone scaling) are applied per batch by
:func:`model_inputs_from_cache`, so training sees the pixels the app sees
(the cache holds the resized image as uint8, ``round(pixels * 255)``: identical
to the app's pixels with ``equalize="hist"``, which quantises to 256 levels
itself, and within half a grey level otherwise).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from desktop.core.errors import CXRError, ImageLoadError
from desktop.core.imaging import load_xray
from desktop.core.preprocess import (
    PreprocessSpec,
    display_to_size,
    equalize,
    mask_edges,
    scale_for_backbone,
)

from .progress import Progress

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ""}
CLASS_NAMES = ("covid", "normal")


class DatasetError(CXRError):
    """The training folder or its manifest cannot be used."""

    kind = "dataset"


@dataclass(frozen=True)
class Record:
    """One training image: where it is, its label and where it came from."""

    path: str
    filename: str
    label: str
    source: str
    patient_id: str
    view: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class Dataset:
    """The images of a training folder (``records``) and its class names (positive first)."""

    root: str
    records: tuple[Record, ...]
    class_names: tuple[str, ...] = CLASS_NAMES

    def __len__(self) -> int:
        return len(self.records)

    def labels(self, positive: str = "covid") -> np.ndarray:
        """1 for the positive class, 0 otherwise."""
        return np.array([1 if r.label == positive else 0 for r in self.records], dtype=np.int64)

    def sources(self) -> np.ndarray:
        return np.array([r.source for r in self.records])

    def patients(self) -> np.ndarray:
        return np.array([r.patient_id for r in self.records])

    def views(self) -> np.ndarray:
        return np.array([r.view for r in self.records])

    def subset(self, index: Iterable[int]) -> Dataset:
        idx = list(index)
        return replace(self, records=tuple(self.records[i] for i in idx))

    def summary(self) -> dict[str, object]:
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        for (source, label), n in sorted(Counter((r.source, r.label) for r in self.records).items()):
            counts[source][label] = n
        by_label = Counter(r.label for r in self.records)
        return {
            "images": len(self.records),
            "patients": len({r.patient_id for r in self.records}),
            "by_class": dict(sorted(by_label.items())),
            "by_source": dict(counts),
        }


def read_dataset(root: str | os.PathLike[str], manifest: str | os.PathLike[str] | None = None,
                 class_names: Sequence[str] = CLASS_NAMES) -> Dataset:
    """Read ``root/<class>/`` folders and an optional manifest (TSV or CSV).

    The manifest (default ``root/MANIFEST.tsv`` when present) needs the columns
    ``filename`` and ``label``; ``source``, ``patient_id``, ``view`` and ``sha256``
    are used when present. Without a manifest every file is its own patient and
    the source is ``unknown``.
    """
    root_p = Path(root)
    if not root_p.is_dir():
        raise DatasetError(root_p, "training folder not found", "give a folder with covid/ and normal/")
    missing = [c for c in class_names if not (root_p / c).is_dir()]
    if missing:
        raise DatasetError(root_p, f"missing class folder(s) {missing}", f"expected {list(class_names)}")
    if manifest is None and (root_p / "MANIFEST.tsv").is_file():
        manifest = root_p / "MANIFEST.tsv"
    meta: dict[str, dict[str, str]] = {}
    if manifest is not None:
        mpath = Path(manifest)
        if not mpath.is_file():
            raise DatasetError(mpath, "manifest not found")
        text = mpath.read_text(encoding="utf-8")
        delim = "\t" if "\t" in text.splitlines()[0] else ","
        rows = list(csv.DictReader(text.splitlines(), delimiter=delim))
        if not rows or "filename" not in rows[0] or "label" not in rows[0]:
            raise DatasetError(mpath, "manifest needs the columns filename and label")
        meta = {row["filename"]: row for row in rows}
    records = []
    for label in class_names:
        for path in sorted((root_p / label).iterdir()):
            if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            row = meta.get(path.name, {})
            if row and row.get("label", label) != label:
                raise DatasetError(path, f"in folder {label}/ but the manifest says {row['label']!r}")
            records.append(Record(
                path=str(path), filename=path.name, label=label,
                source=row.get("source") or "unknown",
                patient_id=row.get("patient_id") or f"file:{path.name}",
                view=row.get("view", ""), sha256=row.get("sha256", ""),
            ))
    if not records:
        raise DatasetError(root_p, "no images found in the class folders")
    log.info("read %d images from %s", len(records), root_p)
    return Dataset(root=str(root_p), records=tuple(records), class_names=tuple(class_names))


# ---------------------------------------------------------------------------
# Decoded-image cache
# ---------------------------------------------------------------------------


def _size_spec(spec: PreprocessSpec) -> dict[str, object]:
    key: dict[str, object] = {"h": spec.height, "w": spec.width, "resize": spec.resize, "crop": spec.crop}
    if spec.harmonize:  # only when set: the keys of existing caches stay valid
        key["harmonize"] = spec.harmonize
    return key


def _file_sha(record: Record) -> str:
    if record.sha256:
        return record.sha256
    return hashlib.sha256(Path(record.path).read_bytes()).hexdigest()


def image_cache_key(dataset: Dataset, spec: PreprocessSpec) -> str:
    h = hashlib.sha256(json.dumps(_size_spec(spec), sort_keys=True).encode())
    for r in dataset.records:
        h.update(_file_sha(r).encode())
    return h.hexdigest()[:16]


def load_images(dataset: Dataset, spec: PreprocessSpec, cache_dir: str | os.PathLike[str] | None = None,
                *, show_progress: bool = False) -> np.ndarray:
    """(N, H, W) uint8 (``round(pixels * 255)``): every image decoded, cropped and resized as the spec says.

    Cached in ``cache_dir`` keyed by the files' sha256 and the size/crop settings.
    """
    path = None
    if cache_dir is not None:
        cache = Path(cache_dir)
        cache.mkdir(parents=True, exist_ok=True)
        path = cache / f"img8_{image_cache_key(dataset, spec)}.npy"
        if path.is_file():
            arr = np.load(path, allow_pickle=False)
            if arr.shape == (len(dataset), spec.height, spec.width):
                return arr
    out = np.zeros((len(dataset), spec.height, spec.width), dtype=np.uint8)
    bar = Progress(len(dataset), "decode", enabled=show_progress)
    for i, rec in enumerate(dataset.records):
        try:
            xray = load_xray(rec.path)
        except ImageLoadError as exc:
            raise DatasetError(rec.path, f"cannot be read for training: {exc.reason}") from exc
        out[i] = to_uint8(display_to_size(xray.pixels, spec))
        bar.update(1)
    bar.close()
    if path is not None:
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, out)
        os.replace(tmp, path)
    return out


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(img, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def as_float(images: np.ndarray) -> np.ndarray:
    """Cached images (uint8) as float32 in [0, 1]."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    return images.astype(np.float32)


def model_inputs_from_cache(images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The rest of :func:`desktop.core.preprocess.model_input` on cached resized images
    (uint8 from :func:`load_images`, or float [0, 1])."""
    x = as_float(images)
    out = np.empty((len(x), spec.height, spec.width, spec.channels), dtype=np.float32)
    for i, img in enumerate(x):
        out[i] = scale_for_backbone(equalize(mask_edges(img, spec), spec.equalize), spec)
    return out


# ---------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Indices into a dataset; no patient is in two parts."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    seed: int
    description: str

    def to_dict(self, dataset: Dataset) -> dict[str, object]:
        def part(idx: tuple[int, ...]) -> dict[str, object]:
            return {"files": [dataset.records[i].filename for i in idx],
                    "summary": dataset.subset(idx).summary()}
        return {"seed": self.seed, "description": self.description,
                "train": part(self.train), "val": part(self.val), "test": part(self.test)}


def patient_split(dataset: Dataset, *, val_fraction: float = 0.15, test_fraction: float = 0.15,
                  seed: int = 0, holdout_sources: Sequence[str] = (),
                  candidates: Sequence[int] | None = None) -> Split:
    """Split by patient, stratified by (class, source), with a fixed seed.

    ``holdout_sources``: every image of these sources goes to ``test`` (and
    only those); the rest is split into train/val. ``candidates`` restricts the
    split to those indices.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad split fractions. Received: val={val_fraction}, test={test_fraction}")
    known = {r.source for r in dataset.records}
    unknown = [s for s in holdout_sources if s not in known]
    if unknown:
        raise DatasetError(dataset.root, f"unknown holdout source(s) {unknown}", f"sources: {sorted(known)}")
    idx_all = list(range(len(dataset))) if candidates is None else list(candidates)
    held = set(holdout_sources)
    test_idx = [i for i in idx_all if dataset.records[i].source in held]
    rest = [i for i in idx_all if dataset.records[i].source not in held]
    if held:
        test_fraction = 0.0
    # group by patient; a patient's stratum is its first image's (label, source)
    patients: dict[str, list[int]] = defaultdict(list)
    for i in rest:
        patients[dataset.records[i].patient_id].append(i)
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    for pid, members in patients.items():
        r = dataset.records[members[0]]
        strata[(r.label, r.source)].append(pid)
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = list(test_idx)
    for key in sorted(strata):
        pids = sorted(strata[key])
        rng.shuffle(pids)
        n = len(pids)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        if n >= 3 and val_fraction > 0:
            n_val = max(n_val, 1)
        if n >= 3 and test_fraction > 0:
            n_test = max(n_test, 1)
        for j, pid in enumerate(pids):
            part = test if j < n_test else val if j < n_test + n_val else train
            part.extend(patients[pid])
    desc = (f"patient-level, stratified by class and source, seed {seed}; "
            + (f"test = held-out source(s) {sorted(held)}; val {val_fraction:.0%} of the rest"
               if held else f"val {val_fraction:.0%}, test {test_fraction:.0%}"))
    return Split(tuple(sorted(train)), tuple(sorted(val)), tuple(sorted(test)), seed, desc)


def mixed_sources(dataset: Dataset, index: Sequence[int], min_per_class: int) -> list[str]:
    """Sources with at least ``min_per_class`` images of every class among ``index``: where the classes share
    one collection and processing pipeline, so the source cannot tell the class."""
    counts: Counter[tuple[str, str]] = Counter((dataset.records[i].source, dataset.records[i].label) for i in index)
    sources = sorted({s for s, _ in counts})
    return [s for s in sources if all(counts[(s, c)] >= min_per_class for c in dataset.class_names)]


def restrict_split(dataset: Dataset, split: Split, sources: Sequence[str]) -> Split:
    """``split`` with its train and validation parts restricted to ``sources`` (the test part unchanged:
    images of the other sources are then new sites to the model)."""
    keep = set(sources)

    def sub(part: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(i for i in part if dataset.records[i].source in keep)

    return Split(sub(split.train), sub(split.val), split.test, split.seed,
                 split.description + f"; trained and validated on source(s) {sorted(keep)} only")


def check_no_patient_overlap(dataset: Dataset, split: Split) -> None:
    parts = [set(dataset.records[i].patient_id for i in p) for p in (split.train, split.val, split.test)]
    if parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2]:
        raise AssertionError("a patient is in two splits")
