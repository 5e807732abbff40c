"""What the remote doctor can act on: clinical context, predictive value, no invented values, the original
attached, a full-page film, the heatmap's meaning; and a batch report that reuses what the scan made."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from desktop.core import imaging
from desktop.core.batch import ScanResult
from desktop.core.imaging import load_xray
from desktop.core.overlay import HIDDEN_BELOW_THRESHOLD
from desktop.core.report import (
    BatchItem,
    ReportInfo,
    predictive_values,
    write_batch_report,
    write_study_report,
)
from desktop.core.report_batch import wrap_path
from tests.report_helpers import (
    FakeBundle,
    FakeHeatmap,
    FakePrediction,
    flat,
    pdf_text,
    placed_images,
    write_dicom,
    write_png,
)

WHEN = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def png_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_png(tmp_path_factory.mktemp("png") / "clinic_film.png")


def _report(tmp_path: Path, xray, info: ReportInfo, **kw) -> Path:
    return write_study_report(tmp_path / "r.pdf", xray, kw.pop("prediction", FakePrediction()), FakeHeatmap(),
                              FakeBundle(), info, **kw)


def test_predictive_values_follow_bayes() -> None:
    ppv, npv = predictive_values(0.88, 0.90, 0.10)  # type: ignore[misc]
    assert ppv == pytest.approx(0.088 / (0.088 + 0.09))
    assert npv == pytest.approx(0.81 / (0.81 + 0.012))
    assert predictive_values(None, 0.9, 0.1) is None
    with pytest.raises(ValueError, match="prevalence"):
        ReportInfo(prevalence=10.0)


def test_clinical_context_ppv_and_reply_are_on_page_1(tmp_path: Path, png_path: Path) -> None:
    info = ReportInfo(clinic_name="Posta", clinic_phone="+54 387 555 0101", clinic_email="posta@example.org",
                      symptoms="Cough, fever 5 days", spo2="91", temperature="38.6", urgency="urgent",
                      prevalence=0.10, operator="root", analysed_at=WHEN)
    out = _report(tmp_path, load_xray(png_path), info)
    from pypdf import PdfReader

    page1 = flat(PdfReader(str(out)).pages[0].extract_text())
    for text in ("Urgency urgent", "Cough, fever 5 days", "SpO₂ 91 %", "38.6 °C",
                 "Reply to: phone +54 387 555 0101; e-mail posta@example.org",
                 "a positive is right about 49% of the time", "a negative about 99%"):
        assert text in page1, text
    assert "Operator" not in page1  # "root" is a login, not a person
    assert "Study date not recorded" in page1  # a PNG has no study date: nothing invented
    assert "Architecture" not in page1
    assert "probabilities" not in page1
    assert "Architecture MobileNet" in flat(pdf_text(out))
    assert "…" not in flat(pdf_text(out))  # no row cut mid-word


def test_empty_identifiers_are_left_out(tmp_path: Path, png_path: Path) -> None:
    text = flat(pdf_text(_report(tmp_path, load_xray(png_path), ReportInfo(analysed_at=WHEN))))
    assert "Patient ID" not in text
    assert "Accession" not in text


def test_original_attached_when_allowed_not_when_anonymised(tmp_path: Path) -> None:
    from pypdf import PdfReader

    dcm = write_dicom(tmp_path / "Doe_John.dcm")
    xray = load_xray(dcm)
    out = _report(tmp_path, xray, ReportInfo(attach_original=True, analysed_at=WHEN))
    annots = [a.get_object() for a in PdfReader(str(out)).pages[0].get("/Annots", [])]
    files = [a for a in annots if a.get("/Subtype") == "/FileAttachment"]
    assert len(files) == 1
    spec = files[0]["/FS"]
    assert spec["/F"] == "Doe_John.dcm"
    assert spec["/EF"]["/F"].get_object().get_data() == dcm.read_bytes()
    assert "Original image attached" in flat(pdf_text(out))
    anon = write_study_report(tmp_path / "a.pdf", xray, FakePrediction(), FakeHeatmap(), FakeBundle(),
                              ReportInfo(attach_original=True, analysed_at=WHEN), anonymize=True)
    assert b"/FileAttachment" not in anon.read_bytes()


def test_full_page_film_adds_a_large_film(tmp_path: Path, png_path: Path) -> None:
    out = _report(tmp_path, load_xray(png_path), ReportInfo(full_page_film=True, analysed_at=WHEN))
    big = [im for im in placed_images(out) if im.page == 2]
    assert len(big) == 1
    assert max(big[0].printed_pt) > 500  # the full frame width (A4: 516 pt) or most of its height


def test_negative_heatmap_hidden_unless_asked(tmp_path: Path, png_path: Path) -> None:
    xray = load_xray(png_path)
    neg = FakePrediction(p_covid=0.1, label="normal", probabilities={"covid": 0.1, "normal": 0.9})
    out = _report(tmp_path, xray, ReportInfo(analysed_at=WHEN), prediction=neg)
    assert HIDDEN_BELOW_THRESHOLD in flat(pdf_text(out))
    assert len([im for im in placed_images(out) if im.page == 1]) == 2  # the film twice, no overlay
    shown = write_study_report(tmp_path / "s.pdf", xray, neg, FakeHeatmap(), FakeBundle(),
                               ReportInfo(show_heatmap_below_threshold=True, analysed_at=WHEN))
    text = flat(pdf_text(shown))
    assert "where the model looked" in text
    assert "fixed scale" in text
    assert "lies inside the lung fields" in text


def test_pdf_uses_the_users_colour_map(tmp_path: Path, png_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop.core import report_images

    seen = []
    real = report_images.overlay
    monkeypatch.setattr(report_images, "overlay", lambda g, h, c=None, a=None, f=None: seen.append((c, a)) or real(g, h, c, a, f))
    write_study_report(tmp_path / "r.pdf", load_xray(png_path), FakePrediction(), FakeHeatmap(), FakeBundle(),
                       ReportInfo(analysed_at=WHEN), cmap="cividis", alpha=0.3)
    assert seen == [("cividis", 0.3)]


def test_wrap_path_breaks_at_separators_not_in_the_extension() -> None:
    text = "clinic/2026/march/a_very_long_patient_file_name_from_the_modality_export.dcm"
    lines = wrap_path(text, 90).split("<br/>")
    assert len(lines) > 2
    assert lines[-1].endswith(".dcm")
    assert all(".d" not in line or line.endswith(".dcm") for line in lines)
    assert all(line[-1] in "/_-" for line in lines[:-1])  # broken only after a separator


def _ok(path: Path, p: float, folder: Path, **kw) -> ScanResult:
    return ScanResult(path=str(path), sha256="ab" * 32, status="ok", label="covid" if p >= 0.5 else "normal",
                      p_covid=p, model="m", model_version="1", operating_point="balanced", threshold=0.5,
                      error=None, error_kind=None, relpath=str(path.relative_to(folder)), **kw)


def test_batch_reuses_what_the_scan_made_and_opens_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from desktop.core import overlay

    folder = tmp_path / "in"
    folder.mkdir()
    a = _ok(write_png(folder / "a.png"), 0.9, folder)
    png = tmp_path / "a.png.heatmap.png"
    gray = np.full((200, 180), 120, np.uint8)
    Image.fromarray(overlay.heatmap_panel(gray, np.full((200, 180), 0.8, np.float32))).save(png)
    a = dataclasses.replace(a, heatmap=str(png))
    b = _ok(write_png(folder / "b.png"), 0.2, folder)

    def no_decode(*args, **kw):
        raise AssertionError("the report decoded an input file again")

    class NoModel:
        def explain(self, *args, **kw):
            raise AssertionError("the report ran the model again")

    monkeypatch.setattr(imaging, "load_xray", no_decode)
    items = [BatchItem(a, display=gray), BatchItem(b, display=gray, heatmap=FakeHeatmap())]
    out = write_batch_report(tmp_path / "b.pdf", items, folder=folder, bundle=FakeBundle(), operating_point="balanced",
                             started=WHEN, study_pages=True, predictor=NoModel(), decode_missing=False)
    text = flat(pdf_text(out))
    assert "Heatmap as written by the scan" in text  # a's page shows the scan's PNG
    assert HIDDEN_BELOW_THRESHOLD in text  # b is negative: its map is hidden
    assert text.count("Findings and recommendation") == 2  # one findings box per study page


def test_rejected_films_are_not_assessable_not_chest_results(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    ok = _ok(write_png(folder / "chest.png"), 0.7, folder)
    hip = dataclasses.replace(_ok(write_png(folder / "hip.png"), 0.92, folder), status="rejected", label=None)
    object.__setattr__(hip, "reject_code", "not_frontal_chest")  # the input gate's attribute, before it lands
    out = write_batch_report(tmp_path / "b.pdf", [ok, hip], folder=folder, bundle=FakeBundle(),
                             operating_point="balanced", started=WHEN, study_pages=True, predictor=None)
    text = flat(pdf_text(out))
    assert "Not assessable 1" in text
    assert "not assessable: not frontal chest" in text
    assert "Results (1 images)" in text
    assert "0.920" not in text  # no p(COVID-19) for it
    with pytest.raises(ValueError, match="not assessable"):
        write_study_report(tmp_path / "s.pdf", load_xray(folder / "hip.png"), _Rejected(), FakeHeatmap(),
                           FakeBundle())


@dataclasses.dataclass(frozen=True)
class _Rejected(FakePrediction):
    status: str = "rejected"


def test_batch_fallback_reads_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No heatmaps from the scan: thumbnail, page image and the caller's model run share one read per file."""
    folder = tmp_path / "in"
    folder.mkdir()
    results = [_ok(write_png(folder / f"f{i}.png"), p, folder) for i, p in enumerate((0.9, 0.3, 0.7))]
    opened: list[str] = []
    real = imaging.load_xray
    monkeypatch.setattr(imaging, "load_xray", lambda path, *a, **k: opened.append(Path(path).name) or real(path, *a, **k))
    explained: list[str] = []

    class Model:
        def explain(self, xray, operating_point=None):
            explained.append(xray.name)
            return FakePrediction(), FakeHeatmap()

    write_batch_report(tmp_path / "b.pdf", results, folder=folder, bundle=FakeBundle(), operating_point="balanced",
                       started=WHEN, study_pages=True, predictor=lambda: Model())
    assert sorted(opened) == ["f0.png", "f1.png", "f2.png"]
    assert sorted(explained) == ["f0.png", "f1.png", "f2.png"]


def test_with_heatmap_pngs_attaches_the_scans_pictures(tmp_path: Path) -> None:
    from desktop.core.report_batch import with_heatmap_pngs

    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    a = _ok(write_png(folder / "sub" / "a.png"), 0.9, folder)
    b = _ok(write_png(folder / "b.png"), 0.2, folder)
    heat = tmp_path / "heatmaps" / "sub"
    heat.mkdir(parents=True)
    (heat / "a.png.heatmap.png").write_bytes(b"png")
    items = with_heatmap_pngs([a, b], tmp_path / "heatmaps")
    assert isinstance(items[0], BatchItem)
    assert Path(items[0].heatmap_png) == heat / "a.png.heatmap.png"
    assert items[1] is b  # no picture: left as it is
    assert with_heatmap_pngs([a], None) == [a]
