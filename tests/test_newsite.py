"""New-site figures (model_training.newsite), the card's validation scores and operating points.

The figures that tell a clinic what to expect must come from sources the model never saw: a tiny
synthetic collection with a source held out checks that they are computed on it alone (and that a test
set sharing a source with training is refused), and a check-set folder checks the JSRT-style figures.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")

from model_training import compare as C  # noqa: E402
from model_training import metrics as M  # noqa: E402
from model_training import newsite as N  # noqa: E402
from model_training import train as T  # noqa: E402
from model_training.card_figures import sensitivity_at  # noqa: E402
from model_training.data import read_dataset  # noqa: E402
from model_training.pipeline import export_run, train_run  # noqa: E402
from model_training.recipes import LINEAR_PROBE, OURS_SPATIAL  # noqa: E402
from tests.test_training import SIZE, _make_image, _small  # noqa: E402

pytestmark = pytest.mark.tf

# source "c" (normals only) and "d" (covid only) are the new site of fold FX
SOURCES = {"a": ("covid", "normal"), "b": ("covid", "normal"), "c": ("normal",), "d": ("covid",)}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cxr4")
    rng = np.random.default_rng(1)
    rows = []
    for source, labels in SOURCES.items():
        for label in labels:
            (root / label).mkdir(exist_ok=True)
            for i in range(12):
                fname = f"{source}__{label}_{i:02d}.png"
                Image.fromarray(_make_image(rng, label, 40, 40)).save(root / label / fname)
                rows.append({"filename": fname, "label": label, "source": source,
                             "patient_id": f"{source}-{label}-{i // 2}", "view": "PA"})
    with open(root / "MANIFEST.tsv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    check = tmp_path_factory.mktemp("jsrt") / "normal"
    check.mkdir()
    for i in range(7):
        Image.fromarray(_make_image(rng, "normal", 48, 48)).save(check / f"jsrt__JPCNN{i:03d}.png")
    return root, check


def test_new_site_figures_by_hand() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.1, 0.1, 0.3, 0.8])
    src = np.array(["x", "x", "x", "x", "x", "x", "y", "y", "y"])
    pats = np.arange(9).astype(str)
    chk = (np.array([0.55, 0.1, 0.2, 0.9]), np.array(["j1", "j2", "j3", "j4"]))
    r = N.new_site_figures(y, p, src, pats, 0.5, train_sources=["a", "b"], check=chk, n_boot=50)
    assert r["held_out_sources"] == ["x", "y"]
    assert r["trained_on"] == ["a", "b"]
    assert r["normals_by_source"]["x"]["called_covid"] == pytest.approx(0.5)   # 0.6 of (0.6, 0.1)
    assert r["normals_by_source"]["y"]["called_covid"] == pytest.approx(1 / 3)
    assert r["normals_by_source"]["y"]["mean_p_covid"] == pytest.approx(0.4)
    assert r["held_out_normals"]["called_covid"] == pytest.approx(2 / 5)
    assert r["held_out_covid_sensitivity"]["sensitivity"] == pytest.approx(0.75)
    assert r["check_set"]["called_covid"] == pytest.approx(0.5)
    lo, hi = r["check_set"]["called_covid_ci"]
    assert 0.0 <= lo <= 0.5 <= hi <= 1.0
    # sensitivity 0.95 of 4 covid films needs all 4: threshold 0.2 -> normals 0.6, 0.3, 0.8 and check 0.55,
    # 0.2, 0.9 are called: 6 of 9
    at = r["at_sensitivity_0.95"]
    assert at["threshold"] == pytest.approx(0.2)
    assert at["all_new_site_normals"] == pytest.approx(6 / 9)
    with pytest.raises(ValueError, match="trained on"):
        N.new_site_figures(y, p, src, pats, 0.5, train_sources=["x"], n_boot=0)
    with pytest.raises(ValueError, match="check set"):
        N.new_site_figures(y, p, src, pats, 0.5, train_sources=["jsrt"], check=chk, n_boot=0)


def test_selection_puts_the_new_site_criterion_before_auroc() -> None:
    low_fpr = {"criterion_fpr_at_sens95": 0.10}
    high_fpr = {"criterion_fpr_at_sens95": 0.30}
    assert N.selection_key(low_fpr, 0.95) < N.selection_key(high_fpr, 0.99)
    assert N.selection_key(low_fpr, 0.99) < N.selection_key(low_fpr, 0.95)
    assert N.selection_key({}, 0.99) > N.selection_key(high_fpr, 0.5)  # not measured: last


def test_loso_fold_figures_come_from_the_held_out_source_only(data, monkeypatch, tmp_path: Path) -> None:
    root, check_dir = data
    ds = read_dataset(root)
    check = N.read_check_set(check_dir)
    assert len(check) == 7
    assert set(check.sources().tolist()) == {"jsrt"}
    monkeypatch.setattr(C, "LOSO_FOLDS", {"FX": ("c", "d")})
    monkeypatch.setattr(C, "TRAIN_ONLY_FOLD", ("F4", "no-such-source"))
    out = C.compare(ds, [LINEAR_PROBE], out_dir=tmp_path / "cmp", weights=None, protocols=["loso", "random"],
                    n_boot=20, input_size=SIZE, check=check)
    ns = out["linear_probe"]["loso"]["folds"]["FX"]["new_site"]
    assert ns["trained_on"] == ["a", "b"]
    assert ns["held_out_sources"] == ["c", "d"]
    assert set(ns["normals_by_source"]) == {"c"}
    assert ns["normals_by_source"]["c"]["n"] == 12
    assert set(ns["covid_by_source"]) == {"d"}
    assert ns["held_out_covid_sensitivity"]["n"] == 12
    assert ns["check_set"]["n"] == 7
    fold = out["linear_probe"]["loso"]["folds"]["FX"]
    assert ns["threshold"] == pytest.approx(fold["overall"]["threshold"])  # the fold's own default point
    # a random split has no held-out source: only the check set is measured
    rnd = out["linear_probe"]["random"]["folds"]["random"]["new_site"]
    assert rnd["held_out_sources"] == []
    assert rnd["check_set"]["n"] == 7
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "What a new site sees" in md
    assert "| 1 | linear_probe |" in md
    assert "jsrt (check set)" in md


def test_high_specificity_is_stricter_than_high_sensitivity_when_both_targets_meet() -> None:
    # as in the bundled model 3.0: at sensitivity >= 0.95 the specificity is already 0.967, so
    # "specificity >= 0.95, best sensitivity" is the same point; the high-specificity point must be stricter
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(300), np.zeros(300)].astype(int)
    p = np.r_[np.linspace(0.3, 1.0, 300), np.linspace(0.0, 0.29, 290), np.linspace(0.35, 0.95, 10)]
    ops = {op.name: op for op in M.choose_operating_points(y, p, np.arange(600).astype(str), n_boot=20)}
    hs, sp = ops["high_sensitivity"], ops["high_specificity"]
    assert 0.95 <= hs.specificity < 0.975  # the situation of the bundled card (0.967)
    assert sp.threshold > hs.threshold
    assert sp.specificity > hs.specificity
    assert sp.specificity >= 0.95
    assert "target rises" in sp.description
    # and with the usual overlap, high_specificity is simply specificity >= 0.95 with the best sensitivity
    p2 = np.r_[rng.beta(5, 2, 300), rng.beta(2, 5, 300)]
    ops2 = {op.name: op for op in M.choose_operating_points(y, p2, np.arange(600).astype(str), n_boot=20)}
    cand = np.unique(p2)
    best = max((p2[y == 1] >= t).mean() for t in cand if (p2[y == 0] < t).mean() >= 0.95)
    assert ops2["high_specificity"].sensitivity == pytest.approx(best)
    assert ops2["high_specificity"].specificity >= 0.95


def test_card_carries_validation_scores_check_set_and_ordered_points(data, tmp_path: Path) -> None:
    root, check_dir = data
    ds = read_dataset(root)
    check = N.read_check_set(check_dir)
    run = tmp_path / "run"
    model, _ = train_run(ds, _small(OURS_SPATIAL, augment_copies=0, hidden=8), run, weights=None, seed=0,
                         n_boot=20, input_size=SIZE)
    bundle = export_run(run, ds, tmp_path / "b", name="tiny", version="0.1", check=check, n_boot=20)
    card = json.loads((bundle / "model_card.json").read_text())
    vs = card["validation_scores"]
    assert len(vs["p_covid"]) == len(vs["label"]) == len(vs["patient_group"]) == len(model.split.val)
    ops = {op["name"]: op for op in card["operating_points"]}
    # the card's scores reproduce its own operating points' sensitivity
    for op in ops.values():
        assert sensitivity_at(vs, op["threshold"]) == pytest.approx(op["sensitivity"])
    assert ops["high_specificity"]["threshold"] >= ops["high_sensitivity"]["threshold"]
    table = card["metrics"]["validation_by_threshold"]
    assert "0.50" in table
    assert len(table["0.50"]["sensitivity_ci"]) == 2
    chk = card["metrics"]["new_site"]["check_set"]
    assert chk["at_operating_points"]["high_sensitivity"]["n"] == 7
    assert "new_site" in (bundle / "MODEL_CARD.md").read_text()


def test_mixed_source_recipe_trains_on_two_class_sources_and_measures_the_rest(data, monkeypatch,
                                                                               tmp_path: Path) -> None:
    from model_training.data import patient_split
    from model_training.train import train

    root, check_dir = data
    ds = read_dataset(root)
    recipe = LINEAR_PROBE.with_(name="mixed", mixed_sources_min=5)
    model = train(ds, recipe, patient_split(ds, seed=0), weights=None, input_size=SIZE)
    trained = {ds.records[i].source for i in (*model.split.train, *model.split.val)}
    assert trained == {"a", "b"}  # c (normals only) and d (covid only) cannot teach the class by source
    assert {ds.records[i].source for i in model.split.test} == {"a", "b", "c", "d"}
    monkeypatch.setattr(C, "LOSO_FOLDS", {"FX": ("a", "b"), "FY": ("c", "d")})
    monkeypatch.setattr(C, "TRAIN_ONLY_FOLD", ("F4", "no-such-source"))
    out = C.compare(ds, [recipe], out_dir=tmp_path / "cmp", weights=None, protocols=["random", "loso"],
                    n_boot=10, input_size=SIZE, check=N.read_check_set(check_dir))
    rnd = out["mixed"]["random"]["folds"]["random"]["new_site"]
    assert rnd["trained_on"] == ["a", "b"]
    assert rnd["held_out_sources"] == ["c", "d"]  # test films of c and d are new sites to this model
    loso = out["mixed"]["loso"]
    assert "FX" in loso["skipped_folds"]  # without a and b nothing is left to train on
    assert loso["folds"]["FY"]["new_site"]["held_out_sources"] == ["c", "d"]


def test_new_site_operating_points_are_chosen_on_sources_outside_training(data, tmp_path: Path) -> None:
    from model_training.data import patient_split
    from model_training.runs import load_run
    from model_training.train import train

    root, check_dir = data
    ds = read_dataset(root)
    recipe = LINEAR_PROBE.with_(name="xsite", mixed_sources_min=5, operating_sources="new_sites",
                                operating_min_per_class=3)
    split = patient_split(ds, seed=0)
    model = train(ds, recipe, split, weights=None, input_size=SIZE)
    op = model.operating_index
    assert op
    assert {ds.records[i].source for i in op} == {"c", "d"}
    assert set(op) <= set(split.train) | set(split.val)  # never the test films
    assert not set(op) & (set(model.split.train) | set(model.split.val) | set(model.split.test))
    # the points are the usual rule applied to those films' scores, and say where they were chosen
    from model_training.train import predict_dataset

    p = predict_dataset(model, ds, np.asarray(op))
    expected = {o.name: o.threshold for o in M.choose_operating_points(ds.labels()[np.asarray(op)], p,
                                                                         ds.patients()[np.asarray(op)])}
    chosen = {o.name: o for o in model.operating_points}
    extra = chosen.pop(T.MORE_SENSITIVE, None)
    assert {k: o.threshold for k, o in chosen.items()} == pytest.approx(expected)
    assert all("c, d (sources not trained on)" in o.description for o in chosen.values())
    # the validation films' own high-sensitivity point is offered too, only where it is more sensitive
    va = np.asarray(model.split.val)
    val_hs = next(o for o in M.choose_operating_points(ds.labels()[va], predict_dataset(model, ds, va),
                                                       ds.patients()[va]) if o.name == "high_sensitivity")
    if val_hs.threshold < expected["high_sensitivity"]:
        assert extra is not None
        assert extra.threshold == pytest.approx(val_hs.threshold)
        assert "own validation films" in extra.description
    else:
        assert extra is None
    # too few films of a class there: the validation split, as before
    few = train(ds, recipe.with_(operating_min_per_class=100), split, weights=None, input_size=SIZE)
    assert few.operating_index == ()
    # named sources only (here "c" alone holds no COVID-19 film: back to validation)
    assert train(ds, recipe.with_(operating_source_names=("c",)), split, weights=None,
                 input_size=SIZE).operating_index == ()
    both = train(ds, recipe.with_(operating_source_names=["c", "d"]), split, weights=None, input_size=SIZE)
    assert both.operating_index == op
    assert both.recipe.operating_source_names == ("c", "d")
    # the run keeps the set; the card's validation scores are those films
    run = tmp_path / "run"
    train_run(ds, recipe, run, weights=None, seed=0, n_boot=10, input_size=SIZE)
    loaded, info = load_run(run)
    assert loaded.operating_index == op
    assert "operating_set" in info["results"]["evaluation"]
    bundle = export_run(run, ds, tmp_path / "b", name="tiny", version="0.1", check=N.read_check_set(check_dir),
                        n_boot=10)
    card = json.loads((bundle / "model_card.json").read_text())
    assert len(card["validation_scores"]["label"]) == len(op)
    # the exported card offers the same points (the more sensitive one re-chosen on validation as well)
    assert {o["name"] for o in card["operating_points"]} == {o.name for o in loaded.operating_points}
    assert set(card["metrics"]["new_site"]["check_set"]["at_operating_points"]) == \
        {o["name"] for o in card["operating_points"]}
    from model_training.pipeline import LIMITATIONS, NEW_SITE_POINTS_LIMITATION

    assert NEW_SITE_POINTS_LIMITATION in card["limitations"]
    assert LIMITATIONS[-1] not in card["limitations"]
    if any(o["name"] == T.MORE_SENSITIVE for o in card["operating_points"]):
        assert any(f"'{T.MORE_SENSITIVE}' point" in line for line in card["limitations"])
    assert "sources the model was not trained on" in card["validation_scores"]["description"]
    with pytest.raises(ValueError, match="operating_sources"):
        train(ds, recipe.with_(operating_sources="elsewhere"), split, weights=None, input_size=SIZE)
    with pytest.raises(ValueError, match="mixed_sources_min"):
        train(ds, LINEAR_PROBE.with_(operating_sources="new_sites"), split, weights=None, input_size=SIZE)


def test_the_more_sensitive_point_is_the_validation_rule_offered_only_below_the_new_site_point() -> None:
    def op(name: str, thr: float) -> M.OperatingPoint:
        return M.OperatingPoint(name, thr, 0.95, 0.9, "sensitivity >= 0.95 on validation, best specificity",
                                (0.9, 1.0), (0.85, 0.95))

    new_site = [op("balanced", 0.8), op("high_sensitivity", 0.79), op("high_specificity", 0.96)]
    (extra,) = T.in_source_point([op("balanced", 0.04), op("high_sensitivity", 0.21)], new_site)
    assert (extra.name, extra.threshold) == (T.MORE_SENSITIVE, 0.21)
    assert "own validation films" in extra.description
    assert "flags more normals" in extra.description
    assert T.in_source_point([op("high_sensitivity", 0.85)], new_site) == []  # not more sensitive: nothing
    assert T.in_source_point([], new_site) == []


def test_new_site_points_add_the_validation_point_and_the_card_says_what_it_costs(data) -> None:
    from types import SimpleNamespace

    from model_training.pipeline import new_site_limitations

    ds = read_dataset(data[0])
    src, y = ds.sources(), ds.labels()
    op = np.flatnonzero(np.isin(src, ["c", "d"]))  # films of sources "not trained on"
    va = np.flatnonzero(np.isin(src, ["a", "b"]))
    # new-site COVID-19 films score high, so their point is high; the validation films' is lower
    p_op = np.where(y[op] == 1, 0.9 + 0.005 * np.arange(len(op)) % 0.09, 0.1)
    p_va = np.where(y[va] == 1, 0.3 + 0.01 * np.arange(len(va)) % 0.2, 0.05)
    points = T.new_site_points(ds, op, p_op, va, p_va, n_boot=10)
    by = {o.name: o for o in points}
    assert set(by) == {"balanced", "high_sensitivity", "high_specificity", T.MORE_SENSITIVE}
    val_hs = next(o for o in M.choose_operating_points(y[va], p_va, ds.patients()[va], n_boot=10)
                  if o.name == "high_sensitivity")
    assert by[T.MORE_SENSITIVE].threshold == pytest.approx(val_hs.threshold)
    assert by[T.MORE_SENSITIVE].threshold < by["high_sensitivity"].threshold
    # no validation films of both classes: the new-site points alone
    assert [o.name for o in T.new_site_points(ds, op, p_op, va[y[va] == 1], p_va[y[va] == 1], n_boot=10)] == \
        ["balanced", "high_sensitivity", "high_specificity"]
    model = SimpleNamespace(recipe=SimpleNamespace(mixed_sources_min=0), operating_points=points)
    chk = {"at_operating_points": {"high_sensitivity": {"n": 93, "called_covid": 0.075, "called_covid_ci": [0.02, 0.13]},
                                   T.MORE_SENSITIVE: {"n": 93, "called_covid": 0.226}}}
    lines = new_site_limitations(model, ds, {"check_set": chk}, None)
    assert any(f"'{T.MORE_SENSITIVE}' point (p(covid) >= {by[T.MORE_SENSITIVE].threshold:.3f}" in line
               and "calls about 23% of those JSRT normals" in line for line in lines)


def test_a_collapsed_head_is_trained_again_from_another_initialisation(monkeypatch) -> None:
    from model_training import train as T

    assert T.collapsed([{"val_auroc": 0.5}, {"val_auroc": 0.5}])
    assert not T.collapsed([{"val_auroc": 0.5}, {"val_auroc": 0.93}])
    assert not T.collapsed([{"loss": 1.0}])  # no validation: nothing to judge
    seeds = []

    def fake_fit(model, *a, seed, **k):
        seeds.append(seed)
        return [{"epoch": 1, "val_auroc": 0.5 if len(seeds) == 1 else 0.9}]

    monkeypatch.setattr(T, "fit_epochs", fake_fit)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = np.array([0, 1] * 4)
    rec = LINEAR_PROBE.with_(head="gap_dense", hidden=4)
    _, history = T.fit_keras_head([x], y, np.ones(8), x, y, rec, pooled=True, seed=3)
    assert len(seeds) == 2
    assert seeds[0] != seeds[1]
    assert history[0]["attempt"] == 2
