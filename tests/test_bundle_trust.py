"""The integrity root: the pin of the bundled models, Ed25519 signatures of user bundles, bounded cards.

Tampering cases from the red-team run (issue 20): an edited threshold, swapped
class names and a swapped ONNX graph whose new hash was written into the card
are refused for the bundled model and flagged "unverified" for a user model; a
1000-level nested or a 100 MB card in the user folder is reported and never
stops the commands that use the default model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from desktop.core.bundle import (
    CARD_FILE,
    ONNX_FILE,
    discover_bundles,
    get_bundle,
    load_bundle,
    sha256_file,
)
from desktop.core.bundle.trust import bundle_manifest, pinned_entries
from desktop.core.cli import main as cli_main
from desktop.core.errors import BundleIntegrityError, ModelCardError, UnverifiedBundleError
from desktop.core.paths import user_data_dir, user_models_dir
from model_training.sign import keygen, sign
from tests.model_fixtures import tiny_bundle_path

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "assets" / "models" / "mobilenet-covid-v1"
SAMPLE = REPO / "assets" / "samples" / "shenzhen__CHNCXR_0001_0.png"


def _pin_script() -> Any:
    spec = importlib.util.spec_from_file_location("pin_bundles", REPO / "scripts" / "pin_bundles.py")
    assert spec
    assert spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["pin_bundles"] = mod
    spec.loader.exec_module(mod)
    return mod


def _edit_card(folder: Path, change: Any) -> None:
    data = json.loads((folder / CARD_FILE).read_text())
    change(data)
    (folder / CARD_FILE).write_text(json.dumps(data, indent=2))


def _threshold(d: dict[str, Any]) -> None:
    for op in d["operating_points"]:
        op["threshold"] = 0.999


def _swap_classes(d: dict[str, Any]) -> None:
    d["class_names"] = list(reversed(d["class_names"]))


def _swap_graph(folder: Path) -> None:
    """Replace model.onnx by another model's graph and write its new hash into the card."""
    shutil.copyfile(tiny_bundle_path() / ONNX_FILE, folder / ONNX_FILE)
    digest = sha256_file(folder / ONNX_FILE)

    def change(d: dict[str, Any]) -> None:
        d["files"][ONNX_FILE] = digest
        d["sha256"] = digest

    _edit_card(folder, change)


TAMPERS = {
    "threshold": lambda f: _edit_card(f, _threshold),
    "class_names": lambda f: _edit_card(f, _swap_classes),
    "rehashed_graph": _swap_graph,
}


@pytest.fixture
def strict(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real policy: unverified bundles refused (conftest allows them for the other tests)."""
    monkeypatch.delenv("CXR_SCREENER_ALLOW_UNVERIFIED", raising=False)


@pytest.fixture
def fake_assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bundled models folder holding a copy of the real, pinned model."""
    models = tmp_path / "assets" / "models"
    shutil.copytree(REAL, models / REAL.name)
    monkeypatch.setenv("CXR_SCREENER_ASSETS", str(tmp_path / "assets"))
    return models / REAL.name


# --------------------------------------------------------------------------- the pin


def test_pin_matches_the_bundled_models() -> None:
    """Fails when assets/models changed without `python scripts/pin_bundles.py` (e.g. after a re-export)."""
    pin = _pin_script()
    reasons = pin.stale_reasons(dict(pinned_entries()), pin.compute_pin())
    assert reasons == [], f"stale pin (run python scripts/pin_bundles.py): {reasons}"


def test_pin_records_every_sample_result() -> None:
    entry = pinned_entries()[REAL.name]
    samples = sorted(p.name for p in (REPO / "assets" / "samples").glob("*") if p.suffix in (".png", ".jpg"))
    assert sorted(entry["selftest"]["samples"]) == samples
    labels = {k: v["label"] for k, v in entry["selftest"]["samples"].items()}
    assert {v for k, v in labels.items() if k.startswith("shenzhen")} == {"normal"}


def test_real_bundled_model_is_pinned(strict: None) -> None:
    bundle = get_bundle(None)
    assert bundle.name == REAL.name
    assert bundle.trust.status == "pinned"
    assert bundle.verified
    assert bundle_manifest(bundle.card, bundle.card_sha256) == pinned_entries()[REAL.name]["files"]


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampered_bundled_model_is_refused(tamper: str, fake_assets: Path) -> None:
    TAMPERS[tamper](fake_assets)
    with pytest.raises(BundleIntegrityError, match="pinned in the application"):
        load_bundle(fake_assets, origin="bundled", verify=False)
    found = discover_bundles()
    assert found.bundles == []
    assert any(isinstance(p, BundleIntegrityError) for p in found.problems)
    with pytest.raises(BundleIntegrityError):
        get_bundle(None)


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampered_copy_in_user_folder_is_unverified(tamper: str, strict: None, monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setenv("CXR_SCREENER_ASSETS", str(tmp_path / "no-assets"))
    folder = user_models_dir() / REAL.name
    shutil.copytree(REAL, folder)
    assert load_bundle(folder, origin="user").trust.status == "pinned"  # an exact copy is as good as the pin
    TAMPERS[tamper](folder)
    with pytest.raises(UnverifiedBundleError, match="unverified bundle"):
        load_bundle(folder, origin="user", verify=False)
    flagged = load_bundle(folder, origin="user", verify=True, allow_unverified_bundle=True)
    assert flagged.trust.status == "unverified"
    assert flagged.trust.label == "unverified bundle"
    assert any("unverified bundle" in w for w in flagged.warnings)


def test_selftest_fails_when_the_model_answers_differently(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from desktop.core.bundle import trust

    entry = json.loads(json.dumps(trust.pinned_entries()[REAL.name]))
    sample = sorted(entry["selftest"]["samples"])[0]
    entry["selftest"]["samples"][sample]["p_covid"] = 0.5
    monkeypatch.setattr(trust, "pinned_entries", lambda: {REAL.name: entry})
    assert cli_main(["selftest", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    bad = [c for c in doc["checks"] if c["check"].endswith("results")]
    assert bad
    assert bad[0]["status"] == "fail"
    assert sample in bad[0]["detail"]


def test_selftest_checks_recorded_results(strict: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["selftest", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (res,) = [c for c in doc["checks"] if c["check"].endswith("results")]
    assert res["status"] == "ok"
    assert "6 sample(s)" in res["detail"]


# --------------------------------------------------------------------------- signatures


@pytest.fixture
def signer(tmp_path: Path) -> tuple[Path, Path]:
    return keygen(tmp_path / "keys" / "engineer")


def _user_tiny() -> Path:
    dest = user_models_dir() / "tiny-mobilenet"
    shutil.copytree(tiny_bundle_path(), dest)
    return dest


def _trust(pub: Path) -> None:
    (user_data_dir() / "trusted_keys").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pub, user_data_dir() / "trusted_keys" / pub.name)


def test_signed_user_bundle_with_trusted_key(strict: None, signer: tuple[Path, Path]) -> None:
    folder = _user_tiny()
    with pytest.raises(UnverifiedBundleError, match="not signed"):
        load_bundle(folder, origin="user")
    sign(folder, signer[0])
    with pytest.raises(UnverifiedBundleError, match="does not trust"):
        load_bundle(folder, origin="user")
    _trust(signer[1])
    bundle = load_bundle(folder, origin="user")
    assert bundle.trust.status == "signed"
    assert bundle.trust.signer
    assert bundle.trust.signer in bundle.trust.label
    assert bundle.warnings == ()  # signature.json is not an "unlisted file"


def test_trusted_key_listed_in_settings(strict: None, signer: tuple[Path, Path]) -> None:
    folder = _user_tiny()
    sign(folder, signer[0])
    (user_data_dir() / "settings.json").write_text(json.dumps({"trusted_public_keys": [signer[1].read_text()]}))
    assert load_bundle(folder, origin="user").trust.status == "signed"


@pytest.mark.parametrize("tamper", ["threshold", "class_names"])
def test_card_edited_after_signing_is_unverified(tamper: str, strict: None, signer: tuple[Path, Path]) -> None:
    folder = _user_tiny()
    sign(folder, signer[0])
    _trust(signer[1])
    TAMPERS[tamper](folder)
    with pytest.raises(UnverifiedBundleError, match="changed after signing"):
        load_bundle(folder, origin="user")


def test_rehashed_graph_after_signing_is_unverified(strict: None, signer: tuple[Path, Path]) -> None:
    folder = _user_tiny()
    sign(folder, signer[0])
    _trust(signer[1])
    other = REAL / ONNX_FILE
    shutil.copyfile(other, folder / ONNX_FILE)
    digest = sha256_file(folder / ONNX_FILE)

    def change(d: dict[str, Any]) -> None:
        d["files"][ONNX_FILE] = digest
        d["sha256"] = digest

    _edit_card(folder, change)
    with pytest.raises(UnverifiedBundleError, match="changed after signing"):
        load_bundle(folder, origin="user", verify=False)


def test_resigned_by_untrusted_key_is_unverified(strict: None, signer: tuple[Path, Path], tmp_path: Path) -> None:
    folder = _user_tiny()
    _trust(signer[1])
    _edit_card(folder, _threshold)
    other_priv, _ = keygen(tmp_path / "keys" / "attacker")
    sign(folder, other_priv)
    with pytest.raises(UnverifiedBundleError, match="does not trust"):
        load_bundle(folder, origin="user")


def test_forged_signature_is_unverified(strict: None, signer: tuple[Path, Path]) -> None:
    folder = _user_tiny()
    sign(folder, signer[0])
    _trust(signer[1])
    doc = json.loads((folder / "signature.json").read_text())
    doc["files"]["model.onnx"] = "0" * 64
    (folder / "signature.json").write_text(json.dumps(doc))
    with pytest.raises(UnverifiedBundleError, match="does not verify"):
        load_bundle(folder, origin="user")


def test_models_command_shows_unverified(strict: None, capsys: pytest.CaptureFixture[str]) -> None:
    _user_tiny()
    assert cli_main(["models", "--json"]) == 1  # refused: listed as a problem with its reason
    doc = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in doc["models"]] == [REAL.name]
    assert doc["models"][0]["trust"]["status"] == "pinned"
    (problem,) = doc["problems"]
    assert problem["kind"] == "model_unverified"
    assert "unverified bundle" in problem["error"]
    assert cli_main(["models", "--json", "--allow-unverified"]) == 0
    doc = json.loads(capsys.readouterr().out)
    tiny = next(m for m in doc["models"] if m["name"] == "tiny-mobilenet")
    assert tiny["trust"]["label"] == "unverified bundle"
    assert cli_main(["--allow-unverified", "models"]) == 0
    assert "integrity: unverified bundle" in capsys.readouterr().out


def test_allow_unverified_setting(strict: None) -> None:
    folder = _user_tiny()
    (user_data_dir() / "settings.json").write_text(json.dumps({"allow_unverified_models": True}))
    assert load_bundle(folder, origin="user").trust.status == "unverified"


def test_sign_cli(strict: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from model_training.cli import main as train_main

    folder = _user_tiny()
    assert train_main(["keygen", "--out", str(tmp_path / "k")]) == 0
    assert train_main(["sign", "--bundle", str(folder), "--key", str(tmp_path / "k.pem")]) == 0
    _trust(tmp_path / "k.pub")
    assert load_bundle(folder, origin="user").trust.status == "signed"
    assert train_main(["keygen", "--out", str(tmp_path / "k")]) == 2  # never overwrites a key


# --------------------------------------------------------------------------- hostile cards


def _nested_card(folder: Path, depth: int) -> None:
    folder.mkdir(parents=True)
    (folder / CARD_FILE).write_text('{"a": ' + "[" * depth + "]" * depth + "}")


def _huge_card(folder: Path, size: int) -> None:
    folder.mkdir(parents=True)
    with open(folder / CARD_FILE, "wb") as fh:
        fh.write(b'{"name": "')
        fh.truncate(size)  # sparse: a 100 MB file without writing 100 MB


@pytest.mark.parametrize("kind", ["nested", "huge"])
def test_hostile_user_card_is_reported_and_default_model_still_works(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = user_models_dir() / f"bad-{kind}"
    if kind == "nested":
        _nested_card(folder, 1000)
        reason = "nested too deeply"
    else:
        _huge_card(folder, 100 * 1024 * 1024)
        reason = "too large"
    with pytest.raises(ModelCardError, match=reason):
        load_bundle(folder, origin="user")
    assert cli_main(["models", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in doc["models"]] == [REAL.name]
    (problem,) = doc["problems"]
    assert reason in problem["error"]
    assert f"bad-{kind}" in problem["error"]
    assert cli_main(["predict", str(SAMPLE)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["status"] == "ok"
    assert line["model"] == REAL.name
    assert cli_main(["selftest", "--json"]) == 1  # the broken bundle is a failed check, not a crash
    doc = json.loads(capsys.readouterr().out)
    statuses = {c["check"]: c["status"] for c in doc["checks"]}
    assert statuses["default model"] == "ok"
    assert any(c["status"] == "fail" and reason in c["detail"] for c in doc["checks"])


# --------------------------------------------------------------------------- shown everywhere


def test_pdf_report_prints_unverified_bundle(tmp_path: Path) -> None:
    from desktop.core.imaging import load_xray
    from desktop.core.report import ReportInfo, write_study_report
    from tests.report_helpers import FakeHeatmap, FakePrediction, flat, pdf_text

    xray = load_xray(SAMPLE)
    folder = _user_tiny()
    unverified = load_bundle(folder, origin="user", allow_unverified_bundle=True)
    out = write_study_report(tmp_path / "u.pdf", xray, FakePrediction(), FakeHeatmap(), unverified, ReportInfo())
    assert "UNVERIFIED BUNDLE" in flat(pdf_text(out))
    pinned = get_bundle(None)
    out = write_study_report(tmp_path / "p.pdf", xray, FakePrediction(), FakeHeatmap(), pinned, ReportInfo())
    text = flat(pdf_text(out))
    assert "UNVERIFIED" not in text
    assert "pinned in the application" in text


def test_gui_model_card_and_model_list_show_unverified(qtbot: Any) -> None:
    from desktop.qt.qt_model_card import QtModelCardDialog

    folder = _user_tiny()
    unverified = load_bundle(folder, origin="user", allow_unverified_bundle=True)
    dialog = QtModelCardDialog(unverified)
    qtbot.addWidget(dialog)
    assert dialog.markdown.startswith("**UNVERIFIED BUNDLE**")
    assert "Trust: **unverified bundle**" in dialog.markdown
    pinned = QtModelCardDialog(get_bundle(None))
    qtbot.addWidget(pinned)
    assert "UNVERIFIED" not in pinned.markdown
    assert "pinned in the application" in pinned.markdown


def test_bundle_and_export_modules_stay_under_600_lines() -> None:
    files = [*sorted((REPO / "desktop" / "core" / "bundle").glob("*.py")), REPO / "desktop" / "core" / "jsonio.py",
             *sorted((REPO / "model_training").glob("export*.py")), *sorted((REPO / "model_training").glob("onnx_*.py")),
             REPO / "model_training" / "sign.py"]  # fmt: skip
    long = {f.name: n for f in files if (n := len(f.read_text(encoding="utf-8").splitlines())) > 600}
    assert long == {}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_or_device_card_is_refused_without_blocking() -> None:
    fifo = user_models_dir() / "fifo-card"
    fifo.mkdir(parents=True)
    os.mkfifo(fifo / CARD_FILE)
    dev = user_models_dir() / "zero-card"
    dev.mkdir()
    (dev / CARD_FILE).symlink_to("/dev/zero")
    found = discover_bundles()
    reasons = sorted(str(p) for p in found.problems)
    assert len(reasons) == 2
    assert all("is not a regular file" in r for r in reasons)
