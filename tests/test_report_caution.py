"""The out-of-distribution flag reaches the PDFs: a film unlike the training films says so in the study
report's result box, in the batch report's table and on its study pages (as the GUI and results.csv do)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from desktop.core.batch import ScanResult
from desktop.core.imaging import load_xray
from desktop.core.ood import FLAG_TEXT, OODResult
from desktop.core.report import ReportInfo, write_batch_report, write_study_report
from tests.report_helpers import FakeBundle, FakeHeatmap, FakePrediction, flat, pdf_text, write_png

WHEN = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.timezone.utc)
#: FLAG_TEXT as pdf_text reads it back (flat() joins lines; the sentence may wrap)
WORDS = "unlike the films the model was trained on"


def _study(tmp_path: Path, name: str, **kw) -> str:
    xray = load_xray(write_png(tmp_path / f"{name}.png"))
    out = write_study_report(tmp_path / f"{name}.pdf", xray, FakePrediction(), FakeHeatmap(), FakeBundle(),
                             ReportInfo(analysed_at=WHEN), **kw)
    return flat(pdf_text(out))


def test_study_report_says_when_a_film_is_unlike_the_training_films(tmp_path: Path) -> None:
    flagged = OODResult(score=12.0, threshold=5.0)
    assert flagged.text == FLAG_TEXT
    text = _study(tmp_path, "flagged", caution=flagged.text)
    assert f"Note: this film is {WORDS}" in text
    assert "read with more caution" in text
    # a film inside the training films' range, or no statistics at all: nothing is said
    assert WORDS not in _study(tmp_path, "inside", caution=OODResult(score=1.0, threshold=5.0).text)
    assert WORDS not in _study(tmp_path, "plain")


def _row(path: Path, folder: Path, p: float, ood: bool | None) -> ScanResult:
    return ScanResult(path=str(path), sha256=f"{abs(hash(path.name)):064x}"[:64], status="ok",
                      label="covid" if p >= 0.5 else "normal", p_covid=p, model="test-mobilenet",
                      model_version="9.8.7", operating_point="balanced", threshold=0.5, error=None, error_kind=None,
                      relpath=path.name, ood_flag=ood)


def test_batch_report_marks_flagged_rows_and_their_study_pages(tmp_path: Path) -> None:
    folder = tmp_path / "scan"
    folder.mkdir()
    results = [_row(write_png(folder / "odd.png"), folder, 0.9, True),
               _row(write_png(folder / "usual.png"), folder, 0.2, False),
               _row(write_png(folder / "unknown.png"), folder, 0.3, None)]
    # a rejected film is never assessed for OOD, whatever its row says
    results.append(dataclasses.replace(_row(write_png(folder / "hip.png"), folder, 0.0, True), status="rejected",
                                       label=None, p_covid=None, error="not assessable: hip film",
                                       error_kind="rejected", reject_code="not_chest"))

    class Explains:
        def explain(self, xray, operating_point=None):
            return FakePrediction(), FakeHeatmap()

    out = write_batch_report(tmp_path / "batch.pdf", results, folder=folder, bundle=FakeBundle(),
                             operating_point="balanced", started=WHEN, info=ReportInfo(analysed_at=WHEN),
                             study_pages=True, predictor=Explains())
    text = flat(pdf_text(out))
    # once in the table (the odd film's row) and once on its study page
    assert text.count(WORDS) == 2, text
    assert text.count(f"Note: this film is {WORDS}") == 1


@pytest.mark.parametrize(("flag", "said"), [(True, True), (False, False), (None, False)])
def test_caution_of_a_scan_row(tmp_path: Path, flag: bool | None, said: bool) -> None:
    r = _row(write_png(tmp_path / "a.png"), tmp_path, 0.4, flag)
    assert (r.caution == FLAG_TEXT) is said
    assert dataclasses.replace(r, status="error").caution is None
