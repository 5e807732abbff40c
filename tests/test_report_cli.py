"""``cxr-screener report``: end to end with a real (tiny, random-weights) model bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from desktop.core import phi
from desktop.core.cli import main
from tests.report_helpers import (
    PATIENT,
    flat,
    pdf_metadata_text,
    pdf_text,
    placed_images,
    write_dicom,
    write_png,
)

MODEL = "report-test-model"


@pytest.fixture(scope="module")
def bundle_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed tiny bundle, else one exported on the spot (needs TensorFlow)."""
    from tests import model_fixtures

    if (model_fixtures.TINY_BUNDLE / "model_card.json").exists():
        return model_fixtures.TINY_BUNDLE
    pytest.importorskip("tensorflow", reason="no committed tiny bundle and no TensorFlow to make one")
    return model_fixtures.make_test_bundle(tmp_path_factory.mktemp("bundles"), "mobilenet", 64, name="tiny-mobilenet")


@pytest.fixture
def model(bundle_src: Path) -> str:
    """Install the bundle in the test-isolated per-user models folder under MODEL."""
    from desktop.core.paths import user_models_dir

    dest = user_models_dir() / MODEL
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(bundle_src, dest)
    card = json.loads((dest / "model_card.json").read_text())
    card["name"] = MODEL
    (dest / "model_card.json").write_text(json.dumps(card))
    return MODEL


@pytest.fixture(scope="module")
def dicom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dicom(tmp_path_factory.mktemp("in") / "Doe_John.dcm", shape=(400, 360))


def test_report_command_writes_a_complete_pdf(tmp_path: Path, model: str, dicom: Path, capsys) -> None:
    out = tmp_path / "report.pdf"
    code = main(["report", str(dicom), "-o", str(out), "--model", model, "--clinic", "Centro de Salud Ñandú",
                 "--clinic-address", "Av. Siempreviva 742\\nSpringfield", "--operator", "Técnica Zoë",
                 "--operating-point", "high_sensitivity"])
    assert code == 0
    assert capsys.readouterr().out.strip() == str(out)
    text = flat(pdf_text(out))
    for e in ("Centro de Salud Ñandú", "Av. Siempreviva 742", "Springfield", "Operator: Técnica Zoë",
              "Doe, John", PATIENT["id"], PATIENT["accession"], "1961-04-15", "CR / PA", "p(COVID-19)",
              "high_sensitivity", "sensitivity 0.95 (95% CI 0.90–0.98)", MODEL, "0.0-test", "MobileNet",
              "Page 1 of 2"):
        assert e in text, e
    assert ("FLAGGED" in text) or ("NOT FLAGGED" in text)
    page1 = [im for im in placed_images(out) if im.page == 1]
    assert len(page1) == 2
    assert all(im.dpi >= 150 for im in page1)


def test_report_command_overrides_and_anonymize(tmp_path: Path, model: str, dicom: Path) -> None:
    out = tmp_path / "anon.pdf"
    code = main(["report", str(dicom), "-o", str(out), "--model", model, "--anonymize",
                 "--patient-name", "Иванов Пётр", "--accession", "ACC-OVERRIDE", "--page-size", "letter"])
    assert code == 0
    everything = flat(pdf_text(out)) + pdf_metadata_text(out)
    for value in ("Иванов", "Doe", "John", PATIENT["id"], PATIENT["accession"], "ACC-OVERRIDE", "1961"):
        assert value not in everything, value
    assert phi.pseudonym(PATIENT["id"]) in everything
    from pypdf import PdfReader

    assert float(PdfReader(str(out)).pages[0].mediabox.height) == pytest.approx(792)


def test_report_command_png_with_patient_fields(tmp_path: Path, model: str) -> None:
    png = write_png(tmp_path / "cxr.png")
    out = tmp_path / "r.pdf"
    assert main(["report", str(png), "-o", str(out), "--model", model, "--patient-name", "Zoë Ñúñez-Łukasz",
                 "--patient-id", "P-7", "--patient-sex", "F", "--birth-date", "1980-03-02",
                 "--study-date", "2026-11-20", "--view", "AP"]) == 0
    text = flat(pdf_text(out))
    for e in ("Zoë Ñúñez-Łukasz", "P-7", "Female", "1980-03-02 (age 46 y)", "2026-11-20", "AP", "cxr.png"):
        assert e in text, e


def test_report_command_is_audited_without_patient_data(tmp_path: Path, model: str, dicom: Path) -> None:
    from desktop.core.audit import read_audit_log

    out = tmp_path / "r.pdf"
    assert main(["report", str(dicom), "-o", str(out), "--model", model, "--operator", "op1"]) == 0
    entries = [e for e in read_audit_log() if e["event"] == "report"]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["model"] == model
    assert entry["operator"] == "op1"
    assert entry["anonymized"] is False
    assert len(entry["output_sha256"]) == 64
    dumped = json.dumps(entries)
    for value in ("Doe", PATIENT["id"], PATIENT["accession"], str(dicom.parent)):
        assert value not in dumped


def test_unreadable_image_fails_cleanly(tmp_path: Path, model: str, capsys) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not an image at all" * 20)
    out = tmp_path / "r.pdf"
    assert main(["report", str(bad), "-o", str(out), "--model", model]) == 1
    err = capsys.readouterr().err
    assert "bad.dcm" in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.dcm"]


def test_missing_image_fails_cleanly(tmp_path: Path, model: str, capsys) -> None:
    out = tmp_path / "r.pdf"
    assert main(["report", str(tmp_path / "nope.png"), "-o", str(out), "--model", model]) == 1
    assert "file not found" in capsys.readouterr().err
    assert not out.exists()


def test_missing_model_fails_cleanly(tmp_path: Path, dicom: Path, capsys) -> None:
    out = tmp_path / "r.pdf"
    assert main(["report", str(dicom), "-o", str(out), "--model", "no-such-model"]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_unknown_operating_point(tmp_path: Path, model: str, dicom: Path, capsys) -> None:
    out = tmp_path / "r.pdf"
    assert main(["report", str(dicom), "-o", str(out), "--model", model, "--operating-point", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert not out.exists()


def test_unwritable_output_fails_before_any_work(tmp_path: Path, model: str, dicom: Path, capsys) -> None:
    out = tmp_path / "no" / "such" / "folder" / "r.pdf"
    assert main(["report", str(dicom), "-o", str(out), "--model", model]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.parent.exists()


def test_existing_output_needs_overwrite(tmp_path: Path, model: str, dicom: Path, capsys) -> None:
    out = tmp_path / "r.pdf"
    out.write_bytes(b"previous")
    assert main(["report", str(dicom), "-o", str(out), "--model", model]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"previous"
    assert main(["report", str(dicom), "-o", str(out), "--model", model, "--overwrite"]) == 0
    assert out.read_bytes().startswith(b"%PDF-")


def test_bad_page_size_is_a_usage_error(tmp_path: Path, dicom: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["report", str(dicom), "-o", str(tmp_path / "r.pdf"), "--page-size", "A3"])
    assert exc.value.code == 2


def test_png_report_says_not_recorded_and_takes_clinical_context(
    tmp_path: Path, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    monkeypatch.delenv("CXR_SCREENER_OPERATOR", raising=False)
    png = write_png(tmp_path / "film.png")
    out = tmp_path / "r.pdf"
    assert main(["report", str(png), "-o", str(out), "--model", model, "--symptoms", "fever 3 days",
                 "--spo2", "93", "--urgency", "urgent", "--prevalence", "5", "--clinic-email", "rx@example.org",
                 "--colormap", "cividis", "--opacity", "0.3", "--attach-original"]) == 0
    text = flat(pdf_text(out))
    assert "Study date not recorded" in text
    assert f"Study date {dt.date.today().isoformat()}" not in text  # never today's date
    assert "Operator" not in text  # no name given: the login is for the audit log only
    for value in ("fever 3 days", "SpO₂ 93 %", "Urgency urgent", "prevalence", "rx@example.org",
                  "Original image attached"):
        assert value in text, value


def test_report_refuses_bad_clinical_options(tmp_path: Path, model: str) -> None:
    png = write_png(tmp_path / "film.png")
    for bad in (["--prevalence", "150"], ["--opacity", "2"], ["--colormap", "rainbowish"]):
        with pytest.raises(SystemExit) as exc:
            main(["report", str(png), "-o", str(tmp_path / "r.pdf"), "--model", model, *bad])
        assert exc.value.code == 2


def test_report_command_prints_the_ood_caution(tmp_path: Path, model: str, dicom: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A film the OOD score flags says so in the PDF's result box (the same gate run as the scan's)."""
    from desktop.core import gate
    from desktop.core.ood import OODResult

    monkeypatch.setattr(gate, "assess", lambda features, stats: OODResult(score=9.0, threshold=1.0))
    out = tmp_path / "odd.pdf"
    assert main(["report", str(dicom), "-o", str(out), "--model", model]) == 0
    assert "Note: this film is unlike the films the model was trained on" in flat(pdf_text(out))
    monkeypatch.setattr(gate, "assess", lambda features, stats: OODResult(score=0.5, threshold=1.0))
    usual = tmp_path / "usual.pdf"
    assert main(["report", str(dicom), "-o", str(usual), "--model", model]) == 0
    assert "unlike the films the model was trained on" not in flat(pdf_text(usual))
