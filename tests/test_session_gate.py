"""The window's single-image path and folder scan behind the input gate, the OOD flag and the site (no Qt).

The desktop's analysis (:func:`desktop.core.session_work.analyze`) gates a film
as the CLI does: DICOM tags and pixels first, then the learnt check and the OOD
score on the feature map of the one forward pass that also gives Grad-CAM.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from desktop.core.imaging import load_xray
from desktop.core.input_stats import GATE_CLASSES, InputStats, user_stats_path, write_stats
from desktop.core.ood import FLAG_TEXT
from desktop.core.session import Session, choice_for
from desktop.core.session_work import (
    PredictorCache,
    analyze,
    analyze_files,
    resolve_site,
    scan_folder,
)
from tests.dicom_factory import write_chest_dicom

REPO = Path(__file__).resolve().parents[1]
CHEST_PNG = REPO / "assets" / "samples" / "shenzhen__CHNCXR_0001_0.png"


def chest_dicom(path: Path, **tags: Any) -> Path:
    """A real chest film (a sample PNG) as a 12-bit CR DICOM; ``tags`` override PA, adult, chest."""
    from PIL import Image

    if not CHEST_PNG.exists():
        pytest.skip(f"{CHEST_PNG} missing")
    pixels = np.asarray(Image.open(CHEST_PNG).convert("L"), dtype=np.uint16) * 16
    return write_chest_dicom(path, pixels, **{"ViewPosition": "PA", "PatientAge": "045Y", **tags})


def far_ood_stats(k: int) -> dict[str, np.ndarray]:
    """OOD statistics every real film is far from (flagged), without learnt-gate weights."""
    return {
        "ood_mean": np.full(k, 1e3, np.float32),
        "ood_components": np.eye(2, k, dtype=np.float32),
        "ood_variances": np.ones(2, np.float32),
        "ood_residual_variance": np.float32(1.0),
        "ood_threshold": np.float32(5.0),
    }


def install_stats(bundle: Any, arrays: dict[str, np.ndarray]) -> Path:
    """Input statistics for ``bundle``'s model in the (test's own) user folder, where the app looks for them."""
    sha = str(bundle.card.data["sha256"])
    path = user_stats_path(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_stats(InputStats(sha, bundle.card.name, bundle.card.version, arrays), path)


def reject_all_gate(k: int) -> dict[str, np.ndarray]:
    """Learnt-gate weights that call every film "not_xray"."""
    bias = np.zeros(len(GATE_CLASSES), np.float32)
    bias[0], bias[GATE_CLASSES.index("not_xray")] = -10.0, 10.0
    return {
        "gate_mean": np.zeros(k, np.float32),
        "gate_scale": np.ones(k, np.float32),
        "gate_weights": np.zeros((len(GATE_CLASSES), k), np.float32),
        "gate_bias": bias,
        "gate_reject_below": np.float32(0.5),
    }


class Counting:
    """A Predictor that counts its forward passes (and fails on a second way in)."""

    def __init__(self, predictor: Any) -> None:
        self.inner = predictor
        self.runs = 0

    def forward_raw(self, batch: np.ndarray) -> Any:
        self.runs += 1
        return self.inner.forward_raw(batch)

    def explain(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("explain would run the model a second time")

    explain_input = explain

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def predictor() -> Any:
    from desktop.core.inference import Predictor
    from tests.model_fixtures import tiny_bundle_path

    return Predictor(tiny_bundle_path(), threads=1)


@pytest.mark.parametrize(
    ("tags", "code", "text"),
    [({"BodyPartExamined": "HIP"}, "not_chest", "not assessable: hip film"),
     ({"ViewPosition": "LL"}, "not_frontal_chest", "not assessable: lateral view (LL)"),
     ({"PatientAge": "006Y"}, "paediatric", "not assessable: child (age 6)")],
)
def test_a_film_the_tags_reject_gets_no_model_run_and_no_result(
    tmp_path: Path, predictor: Any, tags: dict[str, str], code: str, text: str
) -> None:
    counted = Counting(predictor)
    analysis = analyze(load_xray(chest_dicom(tmp_path / "f.dcm", **tags)), counted, None)
    assert analysis.rejected
    assert (analysis.gate.code, analysis.gate.text) == (code, text)
    assert analysis.prediction is None
    assert analysis.heatmap is None
    assert analysis.heat is None
    assert analysis.caution is None
    assert counted.runs == 0  # refused before the model


def test_a_chest_film_runs_the_model_once_for_result_heatmap_and_ood_flag(tmp_path: Path, predictor: Any) -> None:
    counted = Counting(predictor)
    stats = SimpleNamespace(arrays=far_ood_stats(predictor.feature_shape[2]))
    xray = load_xray(chest_dicom(tmp_path / "chest.dcm"))
    analysis = analyze(xray, counted, "high_sensitivity", stats)
    assert counted.runs == 1
    assert not analysis.rejected
    assert analysis.prediction.operating_point == "high_sensitivity"
    expected, heatmap = predictor.explain(xray, "high_sensitivity")  # the two-pass way gives the same
    assert analysis.prediction.p_covid == pytest.approx(expected.p_covid, abs=1e-6)
    np.testing.assert_allclose(analysis.heatmap.cam, heatmap.cam, atol=1e-5)
    assert analysis.heat is not None
    assert analysis.ood is not None
    assert analysis.ood.flagged
    assert analysis.caution == FLAG_TEXT  # advice: the result stands
    assert analyze(xray, predictor, None).caution is None  # no statistics, no flag


def test_a_heatmap_scan_runs_the_model_once_per_film_too(tmp_path: Path, predictor: Any) -> None:
    """The scan pipeline's explain (heatmaps asked for) with input statistics: gate, OOD and Grad-CAM from
    one forward pass, the same result and map as the two-pass way."""
    from desktop.core.scan.pipeline import ModelView

    counted = Counting(predictor)
    view = ModelView(counted, "high_sensitivity", SimpleNamespace(arrays=far_ood_stats(predictor.feature_shape[2])))
    x = predictor.preprocess(load_xray(chest_dicom(tmp_path / "chest.dcm")))
    pred, heatmap = view.explain(x)
    assert counted.runs == 1
    expected, two_pass = predictor.explain_input(x, "high_sensitivity")
    assert (pred.operating_point, pred.label) == ("high_sensitivity", expected.label)
    assert pred.p_covid == pytest.approx(expected.p_covid, abs=1e-6)
    np.testing.assert_allclose(heatmap.cam, two_pass.cam, atol=1e-5)
    assert view.ood[id(pred)].flagged  # the OOD result of that same pass is kept for the row


def test_the_learnt_gate_rejects_a_png_but_trusts_a_chest_tagged_dicom(tmp_path: Path, predictor: Any) -> None:
    stats = SimpleNamespace(arrays=reject_all_gate(predictor.feature_shape[2]))
    png = analyze(load_xray(CHEST_PNG), predictor, None, stats)
    assert png.rejected
    assert png.gate.code == "not_radiograph"
    assert png.gate.by == "learnt"
    assert png.prediction is None
    dicom = analyze(load_xray(chest_dicom(tmp_path / "chest.dcm")), predictor, None, stats)
    assert not dicom.rejected  # BodyPartExamined CHEST: tags come first and are trusted
    assert dicom.prediction is not None


def test_the_window_state_gives_a_rejected_film_no_result_at_any_operating_point(tmp_path: Path) -> None:
    bundle, cache = discovered_tiny_bundle(), PredictorCache(threads=1)
    session = Session()
    session.set_bundles([bundle])
    hip = chest_dicom(tmp_path / "hip.dcm", BodyPartExamined="HIP")
    (key,) = session.open([hip])
    session.current_path = key
    items = list(analyze_files([key], bundle, session.decision_point, cache))
    assert [kind for kind, _, _ in items] == ["loaded", "analysis"]
    session.loaded(key, items[0][2])
    session.analysed(key, *items[1][2])
    assert session.analysis().rejected
    assert session.prediction() is None
    for op in bundle.card.operating_points:
        session.set_operating_point(op.name)
        assert session.prediction() is None
    assert session.list_label(key).endswith("not assessable")


def discovered_tiny_bundle() -> Any:
    from desktop.core.session_work import discover
    from tests.model_fixtures import tiny_bundle_path

    src = tiny_bundle_path()
    return next(b for b in discover(dirs=[(src.parent, "user")]).bundles if Path(b.path).name == src.name)


def site_profile(bundle: Any, name: str, seed: int) -> Any:
    """A saved, valid profile of site ``name`` for ``bundle`` (40 normals' scores drawn with ``seed``)."""
    from desktop.core import site

    scores = list(np.random.default_rng(seed).beta(2, 5, 40))
    return site.save_profile(site.make_profile(name, bundle, scores, operator="tester"))


def test_a_gui_scan_reads_the_site_profile_and_the_input_statistics(tmp_path: Path) -> None:
    from desktop.core.batch import CancelToken
    from desktop.core.progress import Progress
    from tests.batch_support import make_png

    bundle = discovered_tiny_bundle()
    profile = site_profile(bundle, "Clinic East", 4)
    cache = PredictorCache(threads=1)
    install_stats(bundle, far_ood_stats(cache.get(bundle).feature_shape[2]))
    site, decide_at = resolve_site(bundle, "site:Clinic East")
    assert site.site == "Clinic East"
    assert (decide_at.name, decide_at.threshold) == ("site:Clinic East", pytest.approx(profile.threshold))
    assert resolve_site(bundle, "balanced") == (None, "balanced")

    folder = tmp_path / "films"
    for i in range(3):
        make_png(folder / f"f{i}.png", i, size=96)
    chest_dicom(folder / "hip.dcm", BodyPartExamined="HIP")
    rows = list(scan_folder(str(folder), bundle, "site:Clinic East", cache, tmp_path / "out" / "results.csv",
                            False, CancelToken(), Progress(), "tester", 0, site=site))
    ok = [r for r in rows if r.ok]
    assert len(ok) == 3
    assert all(r.site == "Clinic East" for r in rows)
    assert all(r.operating_point == "site:Clinic East" for r in ok)
    assert all(r.threshold == pytest.approx(profile.threshold) for r in ok)
    assert all(r.label == ("covid" if r.p_covid >= profile.threshold else "normal") for r in ok)
    assert all(r.ood_flag is True for r in ok)  # the bundle's statistics reached the scan
    (hip,) = [r for r in rows if r.rejected]
    assert (hip.reject_code, hip.p_covid) == ("not_chest", None)

    from desktop.core.session import FolderScan

    state = FolderScan(folder, tmp_path / "out" / "results.csv")
    state.load_saved()
    assert state.resume_conflict(choice_for(bundle, decide_at)) is None  # same site, same threshold
    again = site_profile(bundle, "Clinic East", 9)  # calibrated again: another threshold under the same name
    assert again.threshold != pytest.approx(profile.threshold)
    conflict = state.resume_conflict(choice_for(bundle, again.operating_point()))
    assert conflict is not None
    assert "site:Clinic East" in conflict
    assert f"{profile.threshold:.4g}" in conflict
    assert "balanced" in (state.resume_conflict(choice_for(bundle, "balanced")) or "")


def test_an_edited_site_profile_is_refused_before_a_scan(tmp_path: Path) -> None:
    from desktop.core.site import SiteProfileError

    bundle = discovered_tiny_bundle()
    profile = site_profile(bundle, "Clinic West", 4)
    text = profile.path.read_text(encoding="utf-8").replace('"threshold": ', '"threshold": 0.0001, "x": ', 1)
    profile.path.write_text(text, encoding="utf-8")
    with pytest.raises(SiteProfileError, match="changed after it was made"):
        resolve_site(bundle, "site:Clinic West")


def test_a_scan_resumed_after_its_site_was_calibrated_again_is_refused(tmp_path: Path, predictor: Any) -> None:
    """``scan --resume`` (desktop.core.batch.scan) compares the threshold too, not only the operating point's
    name: a site profile calibrated again keeps its name and moves its threshold."""
    from desktop.core.batch import scan
    from desktop.core.errors import OutputError
    from tests.batch_support import make_png

    bundle = discovered_tiny_bundle()
    first = site_profile(bundle, "Clinic West", 4)
    folder, out = tmp_path / "films", tmp_path / "out" / "results.csv"
    for i in range(2):
        make_png(folder / f"f{i}.png", i, size=96)
    assert len(list(scan(folder, predictor, site=first, results_csv=out, workers=0))) == 2
    make_png(folder / "f2.png", 2, size=96)
    before = out.read_bytes()
    again = site_profile(bundle, "Clinic West", 9)
    assert again.threshold != pytest.approx(first.threshold)
    with pytest.raises(OutputError, match="decided at threshold") as err:
        list(scan(folder, predictor, site=again, results_csv=out, resume=True, workers=0))
    assert f"{first.threshold:.4g}" in str(err.value)
    assert f"{again.threshold:.4g}" in str(err.value)
    assert out.read_bytes() == before  # nothing written
    same = site_profile(bundle, "Clinic West", 4)  # the first calibration, saved again: the same threshold
    (row,) = list(scan(folder, predictor, site=same, results_csv=out, resume=True, workers=0))
    assert (row.relpath, row.operating_point) == ("f2.png", "site:Clinic West")
