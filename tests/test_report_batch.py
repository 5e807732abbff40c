"""Batch-scan PDF report: summary, sorted table with thumbnails, failures, anonymisation."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from desktop.core import phi
from desktop.core.batch import ScanResult
from desktop.core.errors import OutputError, OutputExistsError
from desktop.core.report import ReportInfo, write_batch_report
from tests.report_helpers import (
    PATIENT,
    FakeBundle,
    flat,
    pdf_metadata_text,
    pdf_text,
    placed_images,
    raw_streams,
    write_dicom,
    write_png,
)

STARTED = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.timezone.utc)
WHEN = dt.datetime(2026, 11, 26, 8, 5, tzinfo=dt.timezone.utc)


def _ok(path: Path, p: float, folder: Path) -> ScanResult:
    return ScanResult(
        path=str(path), sha256=f"{abs(hash(path.name)):064x}"[:64], status="ok",
        label="covid" if p >= 0.5 else "normal", p_covid=p, model="test-mobilenet", model_version="9.8.7",
        operating_point="balanced", threshold=0.5, error=None, error_kind=None,
        relpath=str(path.relative_to(folder)),
    )


def _failed(path: Path, folder: Path, reason: str) -> ScanResult:
    return ScanResult(
        path=str(path), sha256="", status="error", label=None, p_covid=None, model="test-mobilenet",
        model_version="9.8.7", operating_point="balanced", threshold=0.5, error=f"{path}: {reason}",
        error_kind="corrupt", relpath=str(path.relative_to(folder)),
    )


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ScanResult]]:
    folder = tmp_path_factory.mktemp("scan")
    (folder / "sub").mkdir()
    results = [
        _ok(write_png(folder / "low.png"), 0.07, folder),
        _ok(write_dicom(folder / "sub" / "Doe_John.dcm", shape=(300, 260)), 0.91, folder),
        _ok(write_png(folder / "mid.png", shape=(200, 300)), 0.55, folder),
        _ok(write_dicom(folder / "Roe_Jane.dcm", name="Roe^Jane", pid="PID-111", shape=(280, 280)), 0.32, folder),
    ]
    bad = folder / "Smith_Anna_broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    results.append(_failed(bad, folder, "truncated PNG"))
    return folder, results


def _write(tmp_path: Path, scan, **kw) -> Path:
    folder, results = scan
    return write_batch_report(
        tmp_path / "batch.pdf", results, folder=folder, bundle=FakeBundle(), operating_point="balanced",
        started=STARTED, info=kw.pop("info", ReportInfo(clinic_name="Posta Sanitaria", analysed_at=WHEN)), **kw,
    )


def test_summary_table_and_failures(tmp_path: Path, scan) -> None:
    text = flat(pdf_text(_write(tmp_path, scan)))
    folder, _ = scan
    for e in (
        "Chest X-ray batch report", "Posta Sanitaria", "Scan started 2026-11-26 08:00",
        "test-mobilenet 9.8.7", "balanced (threshold 0.50)",
        "sensitivity", "Images 5", "Flagged (COVID-19 pattern) 2", "Not flagged 2", "Failed (not analysed) 1",
        "Results (4 images)", "Failed files (1)", "Smith_Anna_broken.png", "truncated PNG",
        PATIENT["id"], "PID-111", "Limits of this result", "Page 1 of",
    ):
        assert e in text, e
    assert str(folder) in text.replace(" ", "")  # a long path wraps in its cell
    # sorted by p(COVID-19), highest first
    order = [m.group(1) for m in re.finditer(r"(0\.910|0\.550|0\.320|0\.070)", text)]
    assert order == ["0.910", "0.550", "0.320", "0.070"]
    pos = [text.index(n) for n in ("Doe_John.dcm", "mid.png", "Roe_Jane.dcm", "low.png")]
    assert pos == sorted(pos)
    assert text.count("FLAGGED") == 2


def test_thumbnails_one_per_analysed_image(tmp_path: Path, scan) -> None:
    images = placed_images(_write(tmp_path, scan))
    assert len(images) == 4
    for im in images:
        assert max(im.pixels) <= 128  # small thumbnails keep a 500-image report small
        assert im.dpi >= 150
        assert "DCTDecode" in im.filter


def test_anonymized_batch_has_no_names_ids_or_paths(tmp_path: Path, scan) -> None:
    out = _write(tmp_path, scan, anonymize=True)
    text = flat(pdf_text(out))
    everything = text + pdf_metadata_text(out) + raw_streams(out).decode("latin-1")
    folder, _ = scan
    for value in ("Doe", "John", "Roe", "Jane", "Smith", "Anna", PATIENT["id"], "PID-111", str(folder)):
        assert value not in everything, value
    assert phi.pseudonym(PATIENT["id"]) in text
    assert phi.pseudonym("PID-111") in text
    assert phi.file_label("Doe_John.dcm", anonymize=True) in text
    assert "truncated PNG" in text  # the reason survives, the path does not


def test_study_pages_need_a_predictor(tmp_path: Path, scan, monkeypatch: pytest.MonkeyPatch) -> None:
    """``study_pages`` adds one single-study page per analysed image (Predictor stubbed)."""
    from desktop.core import inference
    from tests.report_helpers import FakeHeatmap, FakePrediction

    class StubPredictor:
        def __init__(self, bundle) -> None:
            self.calls = 0

        def explain(self, xray, operating_point=None):
            return FakePrediction(), FakeHeatmap()

    monkeypatch.setattr(inference, "Predictor", StubPredictor)
    from pypdf import PdfReader

    for sub in ("summary", "anon"):
        (tmp_path / sub).mkdir()
    summary_pages = len(PdfReader(str(_write(tmp_path / "summary", scan))).pages)
    # the report builds no model of its own: it explains with the caller's (nothing else was provided)
    out = _write(tmp_path, scan, study_pages=True, predictor=StubPredictor(None))
    assert len(PdfReader(str(out)).pages) == summary_pages + 4  # one page per analysed image
    anon = _write(tmp_path / "anon", scan, study_pages=True, anonymize=True, predictor=StubPredictor(None))
    assert len(PdfReader(str(anon)).pages) == summary_pages + 4
    images = placed_images(out)
    assert len(images) == 4 + 2 * 4  # thumbnails + X-ray and overlay per study page
    text = flat(pdf_text(out))
    assert text.count("Grad-CAM overlay: where the model looked") == 4
    assert text.count("Findings and recommendation of the reviewing doctor") == 4
    for im in images[4:]:
        assert im.dpi >= 150


def test_empty_and_all_failed(tmp_path: Path, scan) -> None:
    folder, results = scan
    failed = [r for r in results if r.status != "ok"]
    out = write_batch_report(tmp_path / "f.pdf", failed, folder=folder, bundle=FakeBundle(),
                             operating_point=None, started=STARTED)
    text = flat(pdf_text(out))
    assert "No image could be analysed" in text
    assert "Failed (not analysed) 1" in text
    out2 = write_batch_report(tmp_path / "e.pdf", [], folder=folder, bundle=FakeBundle(),
                              operating_point=None, started=STARTED)
    assert "Images 0" in flat(pdf_text(out2))


def test_letter_and_no_overwrite(tmp_path: Path, scan) -> None:
    from pypdf import PdfReader

    out = _write(tmp_path, scan, info=ReportInfo(page_size="Letter"))
    assert float(PdfReader(str(out)).pages[0].mediabox.width) == pytest.approx(612)
    with pytest.raises(OutputExistsError):
        _write(tmp_path, scan)
    _write(tmp_path, scan, overwrite=True)


def test_batch_failure_leaves_no_file(tmp_path: Path, scan, monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop.core import report_pdf

    def boom(self, story) -> None:
        self.filename.write(b"%PDF-1.4 partial")
        raise RuntimeError("simulated layout failure")

    monkeypatch.setattr(report_pdf.ReportDoc, "build_story", boom)
    with pytest.raises(OutputError, match="nothing was written"):
        _write(tmp_path, scan)
    assert list(tmp_path.iterdir()) == []


def test_study_page_for_a_vanished_file_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file removed between the scan and the report: its row has no thumbnail, its page says why."""
    from desktop.core import inference
    from tests.report_helpers import FakeHeatmap, FakePrediction

    made = []

    class StubPredictor:
        def __init__(self, bundle) -> None:
            pass

        def explain(self, xray, operating_point=None):
            made.append(xray.name)
            return FakePrediction(), FakeHeatmap()

    monkeypatch.setattr(inference, "Predictor", StubPredictor)
    folder = tmp_path / "in"
    folder.mkdir()
    keep = _ok(write_png(folder / "keep.png"), 0.8, folder)
    gone = _ok(write_png(folder / "gone.png"), 0.6, folder)
    (folder / "gone.png").unlink()
    out = write_batch_report(tmp_path / "b.pdf", [keep, gone], folder=folder, bundle=FakeBundle(),
                             operating_point="balanced", started=STARTED, study_pages=True,
                             predictor=StubPredictor(None))
    text = flat(pdf_text(out))
    assert "Study page for gone.png could not be made: file not found" in text
    assert made == ["keep.png"]
    assert len(placed_images(out)) == 1 + 2  # one thumbnail, one study page's two images
