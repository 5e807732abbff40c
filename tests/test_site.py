"""Site profiles: threshold rule, binding to the model, tamper, too few films, the sentences."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from desktop.core import site
from desktop.core.bundle import load_bundle
from desktop.core.site import SiteProfileError


@pytest.fixture
def bundle(tiny_bundle: Path) -> Any:
    return load_bundle(tiny_bundle)


def _scores(n: int, seed: int = 0) -> list[float]:
    return list(np.random.default_rng(seed).beta(2, 5, n))


def _fake_bundle(sha: str = "ab" * 32, **card: Any) -> Any:
    data = {"name": "m", "version": "1", "sha256": sha, **card}
    return SimpleNamespace(card=SimpleNamespace(name="m", version="1", data=data, operating_point=lambda _n: None))


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 0.99])
def test_threshold_meets_target_specificity(target: float) -> None:
    s = _scores(57, seed=3)
    thr = site.choose_threshold(s, target)
    spec = float(np.mean(np.asarray(s) < thr))
    assert spec >= target
    # and it is the lowest such threshold: one film less below it would miss the target
    assert float(np.mean(np.asarray(s) < max(v for v in s if v < thr))) < target


def test_profile_round_trip_and_fields(bundle: Any) -> None:
    data = site.make_profile("Clinic North", bundle, _scores(62), operator="dr who", positive_scores=[0.9] * 20 + [0.1] * 2)
    prof = site.save_profile(data)
    assert prof.path is not None
    assert prof.path.parent == site.sites_dir()
    assert "clinic-north" in prof.path.name
    loaded = site.load_profile("Clinic North", bundle)
    d = loaded.data
    assert d["model"] == {"name": bundle.card.name, "version": bundle.card.version, "sha256": bundle.card.data["sha256"]}
    assert d["operator"] == "dr who"
    assert d["normals"]["n"] == 62
    lo, hi = d["normals"]["specificity_ci"]
    assert lo <= d["normals"]["specificity"] <= hi
    assert d["normals"]["specificity"] >= 0.95
    assert d["positives"]["n"] == 22
    assert d["positives"]["sensitivity"] == pytest.approx(20 / 22)
    op = loaded.operating_point()
    assert op.name == "site:Clinic North"
    assert op.threshold == pytest.approx(d["threshold"])


def test_site_name_sanitised_in_file_name(bundle: Any) -> None:
    prof = site.save_profile(site.make_profile("../../etc/Évry clinic #2", bundle, _scores(40)))
    assert prof.path is not None
    assert prof.path.parent == site.sites_dir()
    assert "/" not in prof.path.name[:-5]
    assert ".." not in prof.path.name
    assert site.load_profile("../../etc/Évry clinic #2", bundle).site == "../../etc/Évry clinic #2"


def test_too_few_normals_refused_saying_how_many(bundle: Any) -> None:
    with pytest.raises(SiteProfileError, match=r"only 29 readable normal.*at least 30 are needed.*confidence interval"):
        site.make_profile("X", bundle, _scores(29))
    site.make_profile("X", bundle, _scores(30))  # 30 is enough


def test_hand_edited_profile_refused(bundle: Any) -> None:
    prof = site.save_profile(site.make_profile("X", bundle, _scores(40)))
    assert prof.path is not None
    data = json.loads(prof.path.read_text())
    data["threshold"] = 0.99
    prof.path.write_text(json.dumps(data))
    with pytest.raises(SiteProfileError, match="changed after it was made"):
        site.load_profile("X", bundle)
    listed = site.list_profiles()
    assert isinstance(listed[0], tuple)
    assert "checksum" in listed[0][1]


def test_profile_for_another_model_version_refused(bundle: Any) -> None:
    data = site.make_profile("X", bundle, _scores(40))
    data["model"] = {**data["model"], "version": "0.9", "sha256": "0" * 64}
    site.save_profile(data)  # a consistent file, made for another build of the model
    with pytest.raises(SiteProfileError, match=r"made for model .* 0\.9 .* not for .*refused"):
        site.load_profile("X", bundle)


def test_profile_for_another_model_name_refused(bundle: Any) -> None:
    data = site.make_profile("X", bundle, _scores(40))
    data["model"] = {"name": "other-model", "version": "1", "sha256": "1" * 64}
    site.save_profile(data)
    with pytest.raises(SiteProfileError, match="calibrated for other-model 1, not for model"):
        site.load_profile("X", bundle)
    with pytest.raises(SiteProfileError, match="no site profile 'Y'"):
        site.load_profile("Y", bundle)


def test_remove_profile(bundle: Any) -> None:
    prof = site.save_profile(site.make_profile("X", bundle, _scores(40)))
    assert site.site_names(bundle) == ["X"]
    site.remove_profile(prof)
    assert site.site_names(bundle) == []


def test_threshold_basis_sentence(bundle: Any) -> None:
    prof = site.save_profile(site.make_profile("X", _fake_bundle(validation_scores={"covid": [0.9] * 90 + [0.01] * 10}),
                                               _scores(62)))
    text = site.threshold_basis(prof)
    assert text.startswith(f"site 'X', 62 local normal films, {prof.date}: specificity 0.9")
    assert "; sensitivity estimated from validation 0.90 [" in text
    no = site.threshold_basis(None, bundle)
    assert no.startswith("no site profile; operating point")
    assert "measured on the training sources" in no


def test_expected_sensitivity_sources() -> None:
    b = _fake_bundle(validation_scores={"p_covid": [0.2, 0.6, 0.8, 0.9], "label": ["covid"] * 4})
    exp = site.expected_sensitivity(b, 0.5)
    assert exp is not None
    assert exp["value"] == pytest.approx(0.75)
    assert exp["n"] == 4
    stats = SimpleNamespace(arrays={"val_scores_covid": np.array([0.1, 0.7])})
    exp2 = site.expected_sensitivity(_fake_bundle(), 0.5, stats)
    assert exp2 is not None
    assert exp2["value"] == 0.5
    assert "validation films" in exp2["basis"]
    table = [{"threshold": 0.3, "sensitivity": 0.97}, {"threshold": 0.6, "sensitivity": 0.9}]
    exp3 = site.expected_sensitivity(_fake_bundle(sensitivity_by_threshold=table), 0.45)
    assert exp3 is not None
    assert exp3["value"] == 0.9
    assert site.expected_sensitivity(_fake_bundle(), 0.5) is None
    prof = site.SiteProfile(site.make_profile("Z", _fake_bundle(), _scores(40)))
    assert "sensitivity at this threshold not known" in site.threshold_basis(prof)


def test_claims_text_without_and_with_profile(bundle: Any) -> None:
    real = load_bundle(Path(__file__).resolve().parents[1] / "assets" / "models" / "mobilenet-covid-v1")
    text = site.claims_text(real)
    where = real.card.operating_point(None).measured_on  # model 5.0: films of hospitals it was not trained on
    assert f"Measured {where}: at '{real.card.default_operating_point}'" in text
    assert "leave-one-source-out" in text  # the new-site false-positive rate, from the card
    assert "Calibrate for this site" in text
    # the card's own check-set figure (models 4.0 and later carry it) wins over the stats file's
    stats = SimpleNamespace(figures={"new_site": {"n": 93, "called_covid": 0.5}}, arrays={})
    assert "of 93 normal films of hospitals it has never seen" in site.claims_text(real, stats=stats)
    compact = site.claims_text(real, compact=True)
    assert f"These were measured {where}." in compact
    assert "normal films of hospitals it has never seen" in compact
    prof = site.save_profile(site.make_profile("X", bundle, _scores(40)))
    with_site = site.claims_text(bundle, prof)
    assert "site 'X', 40 local normal films" in with_site
    assert "training sources" not in with_site


def test_resolve(bundle: Any) -> None:
    assert site.resolve(None, bundle) == (None, None)
    site.save_profile(site.make_profile("X", bundle, _scores(40)))
    prof, op = site.resolve("X", bundle)
    assert prof is not None
    assert op is not None
    assert op.threshold == prof.threshold


def test_model_training_card_format() -> None:
    """The keys model_training exports: validation_scores (label 1/0, patient groups), validation_by_threshold,
    metrics.new_site.check_set."""
    vs = {"p_covid": [0.1, 0.2, 0.6, 0.7, 0.8, 0.95], "label": [0, 0, 1, 1, 1, 1], "patient_group": [0, 1, 2, 2, 3, 4]}
    b = _fake_bundle(validation_scores=vs, default_operating_point="high_sensitivity")
    exp = site.expected_sensitivity(b, 0.75)
    assert exp is not None
    assert exp["value"] == pytest.approx(0.5)
    assert exp["n"] == 4
    np.testing.assert_allclose(site.validation_normal_scores(b), [0.1, 0.2])
    table = {"0.50": {"sensitivity": 0.96, "sensitivity_ci": [0.9, 0.99]}, "0.80": {"sensitivity": 0.85}}
    exp2 = site.expected_sensitivity(_fake_bundle(metrics={"validation_by_threshold": table}), 0.7)
    assert exp2 is not None
    assert exp2["value"] == 0.85
    check = {"name": "jsrt", "at_operating_points": {"high_sensitivity": {"n": 93, "called_covid": 0.37,
                                                                          "called_covid_ci": [0.27, 0.47]}}}
    b3 = _fake_bundle(metrics={"new_site": {"check_set": check}}, default_operating_point="high_sensitivity")
    text = site.new_site_false_positives(b3)
    assert text is not None
    assert "37% [27, 47] of 93 normal films of hospitals it has never seen (jsrt)" in text


def test_grouped_bootstrap_is_wider_for_clustered_hits() -> None:
    rng = np.random.default_rng(0)
    hits = np.repeat([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0], 10)
    plain = site._bootstrap_rate(hits, rng)
    grouped = site._bootstrap_rate(hits, rng, groups=np.repeat(np.arange(10), 10))
    assert grouped[1] - grouped[0] > 2 * (plain[1] - plain[0])


def test_claims_say_where_the_operating_point_was_measured() -> None:
    from desktop.core.bundle import OperatingPoint, measured_on
    from desktop.core.report_info import plain_sentence

    desc = "sensitivity >= 0.95 on 598 films of shenzhen, siim (sources not trained on), best specificity"
    op = OperatingPoint("high_sensitivity", 0.788, 0.96, (0.94, 0.98), 0.99, (0.99, 1.0), desc)
    where = "on 598 films of hospitals the model was not trained on (shenzhen, siim)"
    assert op.measured_on == measured_on(desc) == where
    text = site.threshold_basis(None, operating_point=op)
    assert f"measured {where}: sensitivity 0.96" in text
    assert "training sources" not in text
    flagged = plain_sentence(0.9, 0.788, True, {"sensitivity": 0.96, "specificity": 0.99, "description": desc}, "x")
    assert where in flagged
    assert "validation" not in flagged
    missed = plain_sentence(0.1, 0.788, False, {"sensitivity": 0.96, "description": desc}, "x")
    assert where in missed
    assert "validation" not in missed
    # a point chosen on the model's own validation films says so
    val = OperatingPoint("balanced", 0.5, 0.9, None, 0.9, None, "maximises sensitivity + specificity on validation")
    assert val.measured_on == "on the training sources' validation films"
    assert "on the training sources' validation films" in plain_sentence(0.9, 0.5, True, val.__dict__, "balanced")


def test_a_profile_says_when_its_sensitivity_comes_from_films_of_untrained_hospitals() -> None:
    vs = {"p_covid": [0.1, 0.2, 0.6, 0.7, 0.8, 0.95], "label": [0, 0, 1, 1, 1, 1]}
    own = _fake_bundle(validation_scores={**vs, "description": "validation films"})
    new = _fake_bundle(validation_scores={**vs, "description": "... 598 films of shenzhen, siim, sources the "
                                                              "model was not trained on."})
    assert not site.card_scores_are_new_site(own)
    assert site.card_scores_are_new_site(new)
    assert site.reference_films(own) == "validation normals"
    assert site.reference_films(new) == "normals of hospitals not trained on"
    assert site.expected_sensitivity(new, 0.65)["basis"] == site.NEW_SITE_SCORES_BASIS
    assert site.expected_sensitivity(own, 0.65)["basis"] == "the model card's validation scores"
    for bundle, where in ((own, "validation"), (new, "films of hospitals it was not trained on")):
        prof = site.SiteProfile(site.make_profile("X", bundle, _scores(40)))
        assert f"; sensitivity estimated from {where} 1.00 [" in site.threshold_basis(prof)
