"""A training run on disk: ``run.json`` (everything but weights) and ``head.npz`` (the head's weights).

The backbone is frozen, so a run stores only the head; the backbone is rebuilt
from the same initial weights (``imagenet`` or the file whose sha256 is recorded).
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from desktop.core.fileio import atomic_write_bytes
from desktop.core.preprocess import PreprocessSpec

from .backbones import BackboneInit, build_base, finetune_plan, sha256_file
from .data import Dataset, Split
from .heads import apply_head, needs_pre_pool
from .metrics import OperatingPoint
from .recipes import Recipe
from .train import TrainedModel, build_top_head

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
HEAD_FILE = "head.npz"


class RunError(ValueError):
    """A run folder is missing or does not fit."""


def save_run(model: TrainedModel, out_dir: str | os.PathLike[str], dataset: Dataset,
             results: dict[str, Any] | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {f"{layer.name}/{i}": w for layer in model.head.layers for i, w in enumerate(layer.get_weights())}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(out / HEAD_FILE, buf.getvalue(), overwrite=True)
    info = {
        "recipe": model.recipe.to_dict(),
        "architecture": model.architecture,
        "weights": model.weights,
        "weights_sha256": model.init.sha256,
        "init": asdict(model.init),
        "layer": model.layer,
        "feature_layer": model.feature_layer,
        "finetuned_layers": list(model.finetuned_layers),
        "preprocess": model.spec.to_dict(),
        "pooled": model.pooled,
        "feature_shape": list(model.head.inputs[0].shape[1:]),
        "temperature": model.temperature,
        "operating_points": [op.to_dict() for op in model.operating_points],
        "operating_index": list(model.operating_index),
        "split": {"train": list(model.split.train), "val": list(model.split.val), "test": list(model.split.test),
                  "seed": model.split.seed, "description": model.split.description,
                  "files": model.split.to_dict(dataset)},
        "data_root": dataset.root,
        "history": model.history,
        "seed": model.seed,
        "results": results or {},
    }
    atomic_write_bytes(out / RUN_FILE, json.dumps(info, indent=1, default=float).encode(), overwrite=True)
    return out


def read_run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise RunError(f"{run_dir}: not a training run (no {RUN_FILE})")
    info: dict[str, Any] = json.loads(path.read_text())
    return info


def load_run(run_dir: str | os.PathLike[str], *, weights: str | None = None) -> tuple[TrainedModel, dict[str, Any]]:
    """Rebuild the :class:`TrainedModel` of a run (``weights`` overrides the recorded backbone weights path)."""
    import keras

    info = read_run_info(run_dir)
    recipe = Recipe(**info["recipe"])
    w = weights or info["weights"]
    if w not in (None, "none", "imagenet"):
        if not Path(w).is_file():
            raise RunError(f"{run_dir}: backbone weights {w} not found (pass --base-weights)")
        if info.get("weights_sha256") and sha256_file(w) != info["weights_sha256"]:
            raise RunError(f"{w}: not the backbone weights this run was trained with (sha256 differs)")
    feature_layer = info.get("feature_layer", "")
    spec = PreprocessSpec.from_dict(info["preprocess"])
    if feature_layer:  # fine-tuned top layers + head; every weight comes from head.npz
        base, _ = build_base(info["architecture"], weights=None,
                             input_shape=(spec.height, spec.width, spec.channels))
        start, trainable = finetune_plan(base, info["architecture"], info["layer"], recipe.finetune_blocks)
        if start != feature_layer:
            raise RunError(f"{run_dir}: the run's features are cached at {feature_layer}, its recipe says {start}")
        head = build_top_head(base, recipe, feature_layer, info["layer"], trainable=trainable,
                              architecture=info["architecture"], seed=info["seed"])
    else:
        inp = keras.Input(shape=tuple(info["feature_shape"]))
        out = apply_head(inp, recipe.head, hidden=recipe.hidden, dropout=recipe.dropout, l2=recipe.l2,
                         pooled_input=info["pooled"], pre_pool=needs_pre_pool(info["architecture"], recipe.head),
                         seed=info["seed"])
        head = keras.Model(inp, out)
    with np.load(Path(run_dir) / HEAD_FILE, allow_pickle=False) as data:
        for layer in head.layers:
            ws = [data[f"{layer.name}/{i}"] for i in range(len(layer.weights)) if f"{layer.name}/{i}" in data]
            if ws:
                layer.set_weights(ws)
    s = info["split"]
    split = Split(tuple(s["train"]), tuple(s["val"]), tuple(s["test"]), s["seed"], s["description"])
    init = BackboneInit(**{**info["init"], "missing": tuple(info["init"]["missing"])})
    model = TrainedModel(recipe=recipe, architecture=info["architecture"], weights=w, init=init,
                         layer=info["layer"], spec=spec, head=head,
                         pooled=info["pooled"], temperature=float(info["temperature"]),
                         operating_points=[OperatingPoint(**{**op, "sensitivity_ci": tuple(op["sensitivity_ci"]),
                                                             "specificity_ci": tuple(op["specificity_ci"])})
                                           for op in info["operating_points"]],
                         split=split, history=info["history"], seed=info["seed"], feature_layer=feature_layer,
                         finetuned_layers=tuple(info.get("finetuned_layers", ())),
                         operating_index=tuple(info.get("operating_index", ())))
    return model, info
