"""Training package end to end on tiny images with ``weights=None`` backbones (no download).

train -> evaluate -> audit -> export -> load with desktop.core.bundle -> predict with ONNX Runtime,
plus the pieces that decide the science: patient-level splits, held-out sources,
metrics against scikit-learn, patient bootstrap, operating points, temperature,
the partial-weights loader and the paper's head on VGG19.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from desktop.core.bundle import load_bundle  # noqa: E402
from desktop.core.imaging import load_xray  # noqa: E402
from desktop.core.inference import Predictor  # noqa: E402
from desktop.core.preprocess import PreprocessSpec, model_input  # noqa: E402
from model_training import metrics as M  # noqa: E402
from model_training.backbones import build_base, default_cut  # noqa: E402
from model_training.cli import main as cli_main  # noqa: E402
from model_training.data import (  # noqa: E402
    DatasetError,
    check_no_patient_overlap,
    load_images,
    model_inputs_from_cache,
    patient_split,
    read_dataset,
)
from model_training.pipeline import evaluate_bundle, export_run, train_run  # noqa: E402
from model_training.recipes import LINEAR_PROBE, OURS, PAPER  # noqa: E402
from model_training.runs import load_run  # noqa: E402

pytestmark = pytest.mark.tf

SIZE = 32
SOURCES = {"a": ("covid", "normal"), "b": ("covid",), "c": ("normal",)}


def _make_image(rng: np.random.Generator, label: str, h: int, w: int) -> np.ndarray:
    """A 'chest' with two dark lungs; covid images get bright blotches inside the lungs."""
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    img = 0.75 - 0.45 * (np.exp(-(((yy - 0.5) / 0.3) ** 2 + ((xx - 0.3) / 0.12) ** 2))
                         + np.exp(-(((yy - 0.5) / 0.3) ** 2 + ((xx - 0.7) / 0.12) ** 2)))
    if label == "covid":
        for _ in range(4):
            cy, cx = rng.uniform(0.35, 0.65), rng.choice([0.3, 0.7]) + rng.uniform(-0.05, 0.05)
            img += 0.35 * np.exp(-(((yy - cy) / 0.07) ** 2 + ((xx - cx) / 0.05) ** 2))
    img += rng.normal(0, 0.03, size=img.shape)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cxr")
    rng = np.random.default_rng(0)
    rows = []
    n = 0
    for source, labels in SOURCES.items():
        for label in labels:
            (root / label).mkdir(exist_ok=True)
            for i in range(14):
                pid = f"{source}-{label}-{i // 2}"  # two images per patient
                fname = f"{source}__{label}_{i:02d}.png"
                size = (48, 40) if source == "b" else (40, 40)
                Image.fromarray(_make_image(rng, label, *size)).save(root / label / fname)
                view = "PA" if i % 2 == 0 else "AP"
                rows.append({"filename": fname, "label": label, "source": source, "patient_id": pid,
                             "view": view})
                n += 1
    with open(root / "MANIFEST.tsv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    return root


def _small(recipe, **kw):
    return recipe.with_(**{"epochs": 3, "batch_size": 8, "finetune_epochs": 2, "finetune_batch_size": 8, **kw})


# --- data -------------------------------------------------------------------


def test_read_dataset_and_errors(tiny_data: Path, tmp_path: Path) -> None:
    ds = read_dataset(tiny_data)
    assert len(ds) == 14 * 4
    assert set(ds.sources().tolist()) == {"a", "b", "c"}
    assert ds.summary()["patients"] == 28
    with pytest.raises(DatasetError, match="missing class folder"):
        read_dataset(tmp_path)
    (tmp_path / "covid").mkdir()
    (tmp_path / "normal").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        read_dataset(tmp_path)


def test_patient_split_is_by_patient_stratified_and_seeded(tiny_data: Path) -> None:
    ds = read_dataset(tiny_data)
    s1 = patient_split(ds, seed=3)
    s2 = patient_split(ds, seed=3)
    assert s1 == s2
    check_no_patient_overlap(ds, s1)
    assert sorted(s1.train + s1.val + s1.test) == list(range(len(ds)))
    # every (source, class) stratum is represented in each part
    for part in (s1.train, s1.val, s1.test):
        strata = {(ds.records[i].source, ds.records[i].label) for i in part}
        assert len(strata) == 4
    assert patient_split(ds, seed=4) != s1


def test_holdout_source(tiny_data: Path) -> None:
    ds = read_dataset(tiny_data)
    s = patient_split(ds, holdout_sources=["b"], seed=0)
    assert {ds.records[i].source for i in s.test} == {"b"}
    assert not {ds.records[i].source for i in s.train + s.val} & {"b"}
    with pytest.raises(DatasetError, match="unknown holdout source"):
        patient_split(ds, holdout_sources=["zzz"])


def test_cached_pixels_match_model_input(tiny_data: Path, tmp_path: Path) -> None:
    ds = read_dataset(tiny_data)
    for spec in (PreprocessSpec(SIZE, SIZE, equalize="hist", crop=0.05), PreprocessSpec(SIZE, SIZE),
                 PreprocessSpec(SIZE, SIZE, equalize="hist", mask_border=0.1, mask_corner=0.2)):
        cached = model_inputs_from_cache(load_images(ds, spec, tmp_path / "cache")[:5], spec)
        again = model_inputs_from_cache(load_images(ds, spec, tmp_path / "cache")[:5], spec)  # from cache
        direct = np.stack([model_input(load_xray(r.path), spec) for r in ds.records[:5]])
        np.testing.assert_allclose(cached, direct, atol=2e-2)  # float16 cache; hist LUT may shift a bin
        np.testing.assert_array_equal(cached, again)
        assert np.mean(np.abs(cached - direct)) < 2e-3


# --- metrics ----------------------------------------------------------------


def test_auroc_matches_sklearn_and_bootstrap_ci() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.clip(y * 0.3 + rng.normal(0.35, 0.25, 300), 0, 1).round(2)  # ties
    assert M.auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    pats = np.array([f"p{i // 3}" for i in range(300)])
    res = M.evaluate_predictions(y, p, pats, 0.5, n_boot=300)
    lo, hi = res["auroc_ci"]
    assert lo < res["auroc"] < hi
    # resampling patients, not images: one patient per image gives a narrower interval
    res_img = M.evaluate_predictions(y, p, np.arange(300).astype(str), 0.5, n_boot=300)
    assert (hi - lo) > 0.5 * (res_img["auroc_ci"][1] - res_img["auroc_ci"][0])
    assert np.isnan(M.auroc(np.ones(5), np.linspace(0, 1, 5)))


def test_bootstrap_keeps_patients_together() -> None:
    pats = np.array(["a", "a", "a", "b", "c", "c"])
    for idx in M.bootstrap_indices(pats, 50, seed=2):
        counts = {p: int((pats[idx] == p).sum()) for p in "abc"}
        assert counts["a"] % 3 == 0
        assert counts["c"] % 2 == 0


def test_operating_points_meet_their_targets() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(200), np.zeros(200)].astype(int)
    p = np.r_[rng.beta(5, 2, 200), rng.beta(2, 5, 200)]
    ops = {op.name: op for op in M.choose_operating_points(y, p, np.arange(400).astype(str), n_boot=50)}
    assert ops["high_sensitivity"].sensitivity >= 0.95
    assert ops["high_specificity"].specificity >= 0.95
    assert ops["high_sensitivity"].threshold < ops["balanced"].threshold < ops["high_specificity"].threshold
    lo, hi = ops["balanced"].sensitivity_ci
    assert lo <= ops["balanced"].sensitivity <= hi


def test_operating_points_break_ties_towards_the_other_rate() -> None:
    # Every positive at 0.9, normals at 0.1-0.5 and one at 0.6: thresholds just above 0.5 and just above
    # 0.6 both keep sensitivity 1.0 with specificity >= 0.95; the high-specificity point must take the
    # one with the better specificity (1.0), not the lowest threshold (0.95).
    y = np.r_[np.ones(20), np.zeros(20)].astype(int)
    p = np.r_[np.full(20, 0.9), np.linspace(0.1, 0.5, 19), [0.6]]
    ops = {op.name: op for op in M.choose_operating_points(y, p, np.arange(40).astype(str), n_boot=20)}
    assert (ops["high_specificity"].sensitivity, ops["high_specificity"].specificity) == (1.0, 1.0)
    assert (ops["high_sensitivity"].sensitivity, ops["high_sensitivity"].specificity) == (1.0, 1.0)


def test_ece_and_temperature() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 2000)
    y = (rng.uniform(size=2000) < 1 / (1 + np.exp(-z))).astype(int)
    logits = np.stack([z * 3, np.zeros_like(z)], axis=1)  # over-confident by 3x
    t = M.fit_temperature(logits, y)
    assert t == pytest.approx(3.0, rel=0.15)
    assert M.ece(y, M.softmax_p(logits, t)) < M.ece(y, M.softmax_p(logits, 1.0))


# --- backbones --------------------------------------------------------------


def test_npz_weights_partial_are_reported_and_cut(tmp_path: Path) -> None:
    base, _ = build_base("mobilenet", weights=None, input_shape=(SIZE, SIZE, 3))
    arrays = {}
    for layer in base.layers:
        for w in layer.weights:
            wname = w.name.split("/")[-1]
            if layer.name == "conv_pw_13" and wname == "kernel":
                continue  # as in ../shared/weights: the last pointwise kernel is missing
            key = "depthwise_kernel" if wname == "kernel" and "conv_dw" in layer.name else wname
            arrays[f"{layer.name}/{key}"] = np.asarray(w.numpy()) + 0.01
    path = tmp_path / "w.npz"
    np.savez(path, **arrays)
    loaded, init = build_base("mobilenet", weights=str(path), input_shape=(SIZE, SIZE, 3))
    assert init.missing == ("conv_pw_13/kernel",)
    assert "conv_pw_13/kernel" in init.text
    assert "NOT in the file" in init.text
    assert default_cut("mobilenet", init) == "conv_dw_13_relu"
    np.testing.assert_allclose(loaded.get_layer("conv_dw_3").weights[0].numpy(), arrays["conv_dw_3/depthwise_kernel"])
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"conv1/kernel": np.zeros((1, 1, 1, 1), np.float32)})
    with pytest.raises(ValueError, match="shape"):
        build_base("mobilenet", weights=str(bad), input_shape=(SIZE, SIZE, 3))


# --- end to end -------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("run")
    ds = read_dataset(tiny_data)
    recipe = _small(OURS, augment_copies=1, hidden=16, patience=2)
    model, results = train_run(ds, recipe, out, architecture="mobilenet", weights=None, seed=0,
                               audit=True, n_boot=50, input_size=SIZE)
    return ds, out, model, results


def test_train_run_writes_run_with_metrics_plots_and_audit(trained_run) -> None:
    ds, out, model, results = trained_run
    info = json.loads((out / "run.json").read_text())
    assert info["layer"] == "conv_pw_13_relu"
    assert {op["name"] for op in info["operating_points"]} == {"balanced", "high_sensitivity", "high_specificity"}
    ev = results["evaluation"]
    assert {"validation", "test"} <= set(ev)
    assert set(ev["test"]["by_source"]) == {"a", "b", "c"}
    for f in ("roc_validation.png", "reliability_validation.png", "roc_test.png"):
        assert (out / f).stat().st_size > 1000
    audit = results["audit"]
    assert audit["source_probe"]["all"]["accuracy"] is not None
    gm = audit["gradcam_mass"]
    assert 0 <= gm["lung_share"] <= 1 or gm["empty_maps"] > 0
    assert "auroc_masked" in audit["masked_border"]
    stages = [h.get("stage") for h in model.history]
    assert 1 <= stages.count("head") <= 3
    assert stages.count("fine-tune") <= 2  # ours fine-tunes the last two blocks
    assert model.finetuned_layers == ("conv_dw_12", "conv_pw_12", "conv_dw_13", "conv_pw_13")
    # the saved run rebuilds the same head
    again, _ = load_run(out)
    x = np.random.default_rng(0).normal(size=(4, *model.head.inputs[0].shape[1:])).astype(np.float32)
    np.testing.assert_allclose(again.head.predict(x, verbose=0), model.head.predict(x, verbose=0), atol=1e-6)


def test_export_load_predict_matches_training(trained_run, tmp_path: Path) -> None:
    ds, out, model, _ = trained_run
    bundle_dir = export_run(out, ds, tmp_path / "tiny-ours", name="tiny-ours", version="0.1", default=True)
    bundle = load_bundle(bundle_dir)
    card = bundle.card
    assert card.default
    assert card.gradcam_layer == "conv_pw_13_relu"
    assert card.default_operating_point == "high_sensitivity"
    assert "random initialisation" in card.backbone_init
    assert card.preprocess == model.spec
    assert card.split["train"]["files"]
    assert card.audit["gradcam_mass"]
    assert card.temperature == pytest.approx(model.temperature)
    pred = Predictor(bundle_dir)
    idx = np.array(model.split.test[:6])
    got = np.array([pred.predict(load_xray(ds.records[i].path))[0].p_covid for i in idx])
    from model_training.train import predict_dataset

    want = predict_dataset(model, ds, idx)
    np.testing.assert_allclose(got, want, atol=2e-3)  # float16 feature cache vs float32 ONNX
    prediction, heat = pred.explain(load_xray(ds.records[int(idx[0])].path))
    assert heat.cam.ndim == 2
    assert np.isfinite(heat.cam).all()
    assert prediction.p_covid == pytest.approx(float(got[0]), abs=1e-5)
    res = evaluate_bundle(bundle_dir, ds, out_dir=tmp_path / "eval", n_boot=20)
    assert res["overall"]["n"] == len(ds)
    assert (tmp_path / "eval" / "roc.png").is_file()
    with pytest.raises(FileExistsError):
        export_run(out, ds, bundle_dir, name="tiny-ours")


def test_paper_recipe_and_linear_probe(tiny_data: Path, tmp_path: Path) -> None:
    ds = read_dataset(tiny_data)
    split = patient_split(ds, seed=1)
    from model_training.train import train

    paper = train(ds, _small(PAPER), split, weights=None, seed=1, input_size=SIZE)
    layers = [layer.name for layer in paper.full_model().layers if layer.name.startswith("head_")]
    assert layers == ["head_flatten", "head_dense1", "head_dense2", "head_logits"]
    assert len(paper.history) == 3  # no early stopping in the paper recipe
    probe = train(ds, LINEAR_PROBE, split, weights=None, seed=1, input_size=SIZE)
    assert [layer.name for layer in probe.full_model().layers if layer.name.startswith("head_")] == [
        "head_gap", "head_logits"]


def test_vgg19_paper_head_exports(tiny_data: Path, tmp_path: Path) -> None:
    ds = read_dataset(tiny_data)
    run = tmp_path / "vgg"
    model, _ = train_run(ds, _small(PAPER, epochs=1), run, architecture="vgg19", weights=None, n_boot=10,
                         input_size=SIZE)
    assert model.layer == "block5_conv4"
    assert model.spec.normalization == "vgg19"
    bundle = load_bundle(export_run(run, ds, tmp_path / "vgg-b", name="vgg-tiny"))
    assert [h["type"] for h in bundle.card.head][:2] == ["max_pool2d", "flatten"]


def test_cli_train_and_errors(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["train", "--data", str(tiny_data), "--weights", "none", "--recipe", "linear_probe",
                   "--holdout-source", "b", "--input-size", str(SIZE), "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"),
                   "--no-progress"])
    assert rc == 0
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert "held-out source(s) ['b']" in info["split"]["description"]
    assert cli_main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "training folder not found" in capsys.readouterr().err


def test_compare_writes_table_and_merges(tiny_data: Path, tmp_path: Path) -> None:
    from model_training.compare import compare

    ds = read_dataset(tiny_data)
    out = tmp_path / "cmp"
    compare(ds, [LINEAR_PROBE], out_dir=out, weights=None, protocols=["random"], n_boot=20, input_size=SIZE)
    compare(ds, [_small(OURS, augment_copies=0, hidden=8)], out_dir=out, weights=None, protocols=["random"],
            n_boot=20, input_size=SIZE)
    res = json.loads((out / "comparison.json").read_text())
    assert list(res) == ["linear_probe", "ours"]  # the second run kept the first
    md = (out / "comparison.md").read_text()
    assert "| linear_probe | " in md
    assert "| ours | " in md
    assert 0.0 <= res["ours"]["random"]["folds"]["random"]["overall"]["auroc"] <= 1.0


# --- fine-tuning the top layers ----------------------------------------------


def _finetune_recipe():
    # weights=None: the full MobileNet, cut at conv_pw_13_relu; its last block (conv_dw_13, conv_pw_13)
    return _small(OURS, hidden=16, patience=2, augment_copies=1, finetune_blocks=1, finetune_epochs=2,
                  finetune_batch_size=8,
                  finetune_lr=1e-2, early_stopping=False)


def test_finetune_top_trains_only_the_named_layers() -> None:
    from model_training.train import finetune_top

    base, _ = build_base("mobilenet", weights=None, input_shape=(SIZE, SIZE, 3))
    before = {n: [w.copy() for w in base.get_layer(n).get_weights()]
              for n in ("conv_pw_13", "conv_pw_13_bn")}
    # small positive features keep the random-init BatchNorm + ReLU6 out of saturation
    shape = tuple(base.get_layer("conv_dw_13_relu").output.shape[1:])
    feats = np.random.default_rng(0).uniform(0, 0.5, size=(24, *shape)).astype(np.float32)
    y = np.array([0, 1] * 12)
    top, history = finetune_top(base, [feats], y, np.ones(24), feats[:8], y[:8], _finetune_recipe(),
                                start="conv_dw_13_relu", layer="conv_pw_13_relu", trainable=("conv_pw_13",),
                                architecture="mobilenet", seed=0)
    assert [h.get("stage") for h in history] == ["head"] * 3 + ["fine-tune"] * 2
    changed = top.get_layer("conv_pw_13").get_weights()[0]
    assert not np.allclose(changed, before["conv_pw_13"][0])          # trained
    for got, want in zip(top.get_layer("conv_pw_13_bn").get_weights(), before["conv_pw_13_bn"], strict=True):
        np.testing.assert_array_equal(got, want)                      # BatchNorm frozen, statistics kept
    np.testing.assert_array_equal(base.get_layer("conv_pw_13").get_weights()[0], before["conv_pw_13"][0])


def test_finetuned_run_saves_loads_and_exports_the_trained_layers(tiny_data: Path, tmp_path: Path) -> None:
    ds = read_dataset(tiny_data)
    out = tmp_path / "ft"
    model, results = train_run(ds, _finetune_recipe(), out, architecture="mobilenet", weights=None, seed=0,
                               audit=True, n_boot=20, input_size=SIZE)
    assert model.cache_layer == "conv_pw_12_relu"
    assert model.layer == "conv_pw_13_relu"
    assert model.finetuned_layers == ("conv_dw_13", "conv_pw_13")
    assert results["audit"]["source_probe"]["all"]["accuracy"] is not None
    full = model.full_model()
    np.testing.assert_array_equal(full.get_layer("conv_pw_13").get_weights()[0],
                                  model.head.get_layer("conv_pw_13").get_weights()[0])
    again, _ = load_run(out)
    assert again.cache_layer == "conv_pw_12_relu"
    x = np.random.default_rng(1).normal(size=(4, *model.head.inputs[0].shape[1:])).astype(np.float32)
    np.testing.assert_allclose(again.head.predict(x, verbose=0), model.head.predict(x, verbose=0), atol=1e-6)
    bundle_dir = export_run(out, ds, tmp_path / "tiny-ft", name="tiny-ft", version="0.1")
    card = load_bundle(bundle_dir).card
    assert card.gradcam_layer == "conv_pw_13_relu"
    assert "Fine-tuned on the chest X-rays: conv_dw_13, conv_pw_13" in card.backbone_init
    pred = Predictor(bundle_dir)
    idx = np.array(model.split.test[:6])
    got = np.array([pred.predict(load_xray(ds.records[i].path))[0].p_covid for i in idx])
    from model_training.train import predict_dataset

    np.testing.assert_allclose(got, predict_dataset(model, ds, idx), atol=2e-3)


@pytest.mark.parametrize(("arch", "layer", "blocks", "start", "trainable"), [
    ("mobilenet", "conv_dw_13_relu", 2, "conv_pw_11_relu", ("conv_dw_12", "conv_pw_12", "conv_dw_13")),
    ("mobilenet", "conv_pw_13_relu", 1, "conv_pw_12_relu", ("conv_dw_13", "conv_pw_13")),
    ("vgg19", "block5_conv4", 1, "block4_pool", ("block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4")),
])
def test_finetune_plan(arch: str, layer: str, blocks: int, start: str, trainable: tuple[str, ...]) -> None:
    from model_training.backbones import finetune_plan

    base, _ = build_base(arch, weights=None, input_shape=(SIZE, SIZE, 3))
    assert finetune_plan(base, arch, layer, blocks) == (start, trainable)
    with pytest.raises(ValueError, match="finetune_blocks"):
        finetune_plan(base, arch, layer, 99)


def test_training_is_reproducible_with_a_seed(tiny_data: Path) -> None:
    from model_training.train import predict_dataset, train

    ds = read_dataset(tiny_data)
    split = patient_split(ds, seed=3)
    recipe = _finetune_recipe()
    runs = [train(ds, recipe, split, weights=None, seed=s, input_size=SIZE) for s in (3, 3, 4)]
    p = [predict_dataset(m, ds) for m in runs]
    np.testing.assert_allclose(p[0], p[1], atol=1e-5)
    assert [h["loss"] for h in runs[0].history] == pytest.approx([h["loss"] for h in runs[1].history], abs=1e-5)
    assert not np.allclose(p[0], p[2], atol=1e-3)


def test_cli_finetunes_vgg19_block5(tiny_data: Path, tmp_path: Path) -> None:
    rc = cli_main(["train", "--data", str(tiny_data), "--arch", "vgg19", "--weights", "none", "--recipe", "ours",
                   "--finetune-blocks", "1", "--epochs", "1", "--input-size", str(SIZE),
                   "--out", str(tmp_path / "vgg"), "--no-progress"])
    assert rc == 0
    info = json.loads((tmp_path / "vgg" / "run.json").read_text())
    assert info["layer"] == "block5_conv4"
    assert info["feature_layer"] == "block4_pool"
    assert info["finetuned_layers"] == ["block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4"]
    model, _ = load_run(tmp_path / "vgg")
    full = model.full_model()
    np.testing.assert_array_equal(full.get_layer("block5_conv1").get_weights()[0],
                                  model.head.get_layer("block5_conv1").get_weights()[0])


def test_spatial_recipe_exports_and_its_gradcam_matches_gradient_tape(tiny_data: Path, tmp_path: Path) -> None:
    """The bundled recipe's Flatten head (``ours_spatial``) keeps where each feature is: the exported
    bundle predicts as training did, and the app's numpy gradient through Flatten/Dense equals TF's."""
    from desktop.core.gradcam import head_forward, head_logit_grad
    from model_training.recipes import OURS_SPATIAL
    from model_training.train import predict_dataset

    ds = read_dataset(tiny_data)
    size = 64  # 2x2 feature maps: the head has positions to tell apart
    model, _ = train_run(ds, _small(OURS_SPATIAL, augment_copies=1, hidden=8, patience=2), tmp_path / "run",
                         weights=None, n_boot=10, input_size=size)
    assert not model.pooled
    # Tiny data gives a degenerate Platt fit (T = 1); a real temperature must be folded in as well.
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    info["temperature"] = model.temperature = 2.5
    (tmp_path / "run" / "run.json").write_text(json.dumps(info))
    head_names = [layer.name for layer in model.full_model().layers if layer.name.startswith("head_")]
    assert head_names == ["head_flatten", "head_dropout1", "head_dense1", "head_dropout2", "head_logits"]
    bundle_dir = export_run(tmp_path / "run", ds, tmp_path / "b", name="tiny-spatial")
    card = load_bundle(bundle_dir).card
    assert [h["type"] for h in card.head] == ["flatten", "dropout", "dense", "dropout", "dense"]
    pred = Predictor(bundle_dir)
    idx = np.array(model.split.test[:4])
    got = np.array([pred.predict(load_xray(ds.records[i].path))[0].p_covid for i in idx])
    np.testing.assert_allclose(got, predict_dataset(model, ds, idx), atol=2e-3)

    feats = pred.session.run(["features"], {"input": model_input(load_xray(ds.records[int(idx[0])].path).pixels,
                                                                   model.spec)[None]})[0].astype(np.float64)
    grad = head_logit_grad(head_forward(feats, pred.head, pred.head_weights), pred.head, pred.head_weights, 0)
    full = model.full_model()
    x = tf.Variable(feats.astype(np.float32))
    with tf.GradientTape() as tape:
        h = x
        for name in head_names[:-1]:
            h = full.get_layer(name)(h, training=False)
        kernel, bias = full.get_layer("head_logits").get_weights()
        logit = (tf.matmul(h, kernel)[:, 0] + bias[0]) / model.temperature  # the export folds T in
    want = tape.gradient(logit, x).numpy()
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(grad, want, atol=1e-5 * max(1.0, float(np.abs(want).max())))


def test_export_takes_the_loso_results_of_the_runs_own_recipe() -> None:
    from model_training.cli import _loso_summary

    fold = {"held_out": "source a", "overall": {"auroc": 0.9, "confusion": {}}, "by_source": {}}
    comparison = {"ours": {"loso": {"folds": {"F1": {**fold, "overall": {"auroc": 0.5}}}}},
                  "ours_spatial": {"loso": {"folds": {"F1": fold}}}}
    assert _loso_summary(comparison, "ours_spatial")["F1"]["overall"] == {"auroc": 0.9}
    with pytest.raises(ValueError, match="no leave-one-source-out results for recipe 'paper'"):
        _loso_summary(comparison, "paper")
