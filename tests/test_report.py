"""Single-study PDF reports, read back with pypdf (and pdftotext when installed)."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import pytest

from desktop import __version__
from desktop.core import phi
from desktop.core.errors import OutputError, OutputExistsError
from desktop.core.imaging import load_xray
from desktop.core.report import ReportInfo, write_study_report
from tests.report_helpers import (
    CARD,
    PATIENT,
    FakeBundle,
    FakeHeatmap,
    FakePrediction,
    embedded_fonts,
    flat,
    pdf_metadata_text,
    pdf_text,
    pdftotext,
    placed_images,
    raw_streams,
    write_dicom,
    write_png,
)

WHEN = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.timezone.utc)
INFO = ReportInfo(
    clinic_name="Clinica Rural Santa Ana",
    clinic_address="Camino Real 12, 4400 Salta",
    operator="Nurse Ayala",
    analysed_at=WHEN,
)


@pytest.fixture(scope="module")
def dicom_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dicom(tmp_path_factory.mktemp("dcm") / "Doe_John_chest.dcm")


@pytest.fixture(scope="module")
def xray(dicom_path: Path):
    return load_xray(dicom_path)


def _report(tmp_path: Path, xray, *, info: ReportInfo = INFO, name: str = "r.pdf", **kw) -> Path:
    return write_study_report(
        tmp_path / name, xray, kw.pop("prediction", FakePrediction()), FakeHeatmap(), FakeBundle(), info, **kw
    )


def test_every_field_is_in_the_report(tmp_path: Path, xray) -> None:
    out = _report(tmp_path, xray)
    text = flat(pdf_text(out))
    expected = [
        # header
        "Clinica Rural Santa Ana", "Camino Real 12, 4400 Salta", "Operator: Nurse Ayala",
        "Analysed: 2026-11-26 09:30", "Report ID: CXR-20261126-093000-",
        # patient and study (from the DICOM)
        "Doe, John", PATIENT["id"], "Male", "1961-04-15", "age 64 y", "2026-03-12", PATIENT["accession"],
        "CR / PA", "Doe_John_chest.dcm",
        # images
        "X-ray as displayed", "Grad-CAM overlay", "low influence", "high influence",
        # result
        "p(COVID-19)", "0.87", "FLAGGED", "threshold 0.50", "balanced",
        "sensitivity 0.88 (95% CI 0.83–0.92)", "specificity 0.90 (95% CI 0.86–0.93)",
        "The model rates this image",
        # model
        "test-mobilenet 9.8.7", "MobileNet", CARD["sha256"], "AUC 0.95 (95% CI 0.93–0.97)",
        "heldout-source-a", "AUC 0.81 (95% CI 0.75–0.86)", f"CXR Screener {__version__}",
        "source-a",
        # limits
        "not a diagnosis", "Not validated on portable AP images",
        "final decision rests with the clinician",
        # remote doctor
        "Findings and recommendation of the reviewing doctor", "Signature", "Date",
        # pages
        "Page 1 of 2", "Page 2 of 2",
    ]
    missing = [e for e in expected if e not in text]
    assert missing == []


def test_pdftotext_reads_the_same_fields(tmp_path: Path, xray) -> None:
    out = _report(tmp_path, xray)
    text = pdftotext(out)
    if text is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    text = flat(text)
    for e in ("Doe, John", PATIENT["id"], "FLAGGED", "sensitivity 0.88", "Page 2 of 2", "Signature"):
        assert e in text


def test_negative_result_says_what_it_means(tmp_path: Path, xray) -> None:
    pred = FakePrediction(p_covid=0.12, label="normal", operating_point="screening", threshold=0.3,
                          probabilities={"covid": 0.12, "normal": 0.88})
    text = flat(pdf_text(_report(tmp_path, xray, prediction=pred)))
    assert "NOT FLAGGED" in text
    assert "does not rule out COVID-19" in text
    assert "sensitivity 0.95 (95% CI 0.91–0.97)" in text  # the screening point's figures
    assert "missed about 5 of 100" in text


def test_overrides_win_over_dicom(tmp_path: Path, xray) -> None:
    info = ReportInfo(patient_name="Other Person", patient_id="X-1", patient_sex="F", birth_date="1990-01-02",
                      study_date="2026-01-05", accession="", view="AP", analysed_at=WHEN)
    text = flat(pdf_text(_report(tmp_path, xray, info=info)))
    for e in ("Other Person", "X-1", "Female", "1990-01-02", "2026-01-05", "CR / AP"):
        assert e in text
    assert "Doe" not in text.replace("Doe_John_chest.dcm", "")
    assert PATIENT["id"] not in text
    assert PATIENT["accession"] not in text


UNICODE_NAMES = ["Zoë Ñúñez-Łukasz", "Иванов Пётр", "Παπαδόπουλος Γιώργος", "Ørsted Ærø Šťastný"]


@pytest.mark.parametrize("name", UNICODE_NAMES)
def test_unicode_names_survive_the_round_trip(tmp_path: Path, xray, name: str) -> None:
    info = ReportInfo(patient_name=name, clinic_name="Клиника №1", operator="Δρ. Νίκος", analysed_at=WHEN)
    out = _report(tmp_path, xray, info=info)
    text = flat(pdf_text(out))
    assert name in text
    assert "Клиника №1" in text
    assert "Δρ. Νίκος" in text
    poppler = pdftotext(out)
    if poppler is not None:
        assert name in flat(poppler)


def test_fonts_are_embedded(tmp_path: Path, xray) -> None:
    fonts = embedded_fonts(_report(tmp_path, xray))
    assert fonts, "no fonts found"
    assert all(fonts.values()), fonts
    assert any("DejaVuSans" in f for f in fonts)


def test_pdf_metadata_is_set(tmp_path: Path, xray) -> None:
    from pypdf import PdfReader

    meta = PdfReader(str(_report(tmp_path, xray))).metadata
    assert meta.title.startswith("Chest X-ray screening report CXR-20261126-093000-")
    assert meta.author == "Clinica Rural Santa Ana"
    assert "p(COVID-19) 0.87" in meta.subject
    assert "not a diagnosis" in meta.subject
    assert meta.creator == f"CXR Screener {__version__}"


def test_images_are_embedded_sharp_enough(tmp_path: Path, xray) -> None:
    images = placed_images(_report(tmp_path, xray))
    page1 = [im for im in images if im.page == 1]
    assert len(page1) == 2  # the X-ray and the overlay
    gray, overlay = page1
    assert gray.pixels == overlay.pixels
    assert gray.printed_pt == pytest.approx(overlay.printed_pt)
    for im in page1:
        assert im.dpi >= 150, im
        assert im.printed_pt[0] >= 70 * 72 / 25.4  # at least 7 cm wide on paper
        assert "DCTDecode" in im.filter  # JPEG, so the file stays small
        # aspect ratio of the X-ray kept (560 x 640 pixels)
        assert im.printed_pt[0] / im.printed_pt[1] == pytest.approx(560 / 640, rel=0.01)


@pytest.mark.parametrize(("size", "points"), [("A4", (595.28, 841.89)), ("Letter", (612.0, 792.0))])
def test_page_sizes(tmp_path: Path, xray, size: str, points: tuple[float, float]) -> None:
    from pypdf import PdfReader

    out = _report(tmp_path, xray, info=ReportInfo(page_size=size, analysed_at=WHEN))
    reader = PdfReader(str(out))
    for page in reader.pages:
        assert (float(page.mediabox.width), float(page.mediabox.height)) == pytest.approx(points, abs=0.01)
    assert "Page 1 of" in pdf_text(out)


def test_bad_page_size_is_refused() -> None:
    with pytest.raises(ValueError, match="A4 or Letter"):
        ReportInfo(page_size="A3")


# --------------------------------------------------------------------------
# Anonymisation
# --------------------------------------------------------------------------


def test_anonymized_report_has_no_identifying_text_anywhere(tmp_path: Path, xray) -> None:
    out = _report(tmp_path, xray, anonymize=True)
    identifying = phi.identifying_values(xray.metadata, "Doe_John_chest", "1961-04-15", "15.04.1961")
    assert "Doe^John" in identifying
    assert PATIENT["id"] in identifying
    text = flat(pdf_text(out))
    meta = pdf_metadata_text(out)
    raw = raw_streams(out).decode("latin-1")
    poppler = flat(pdftotext(out) or "")
    assert "Clinica Rural Santa Ana" in raw
    assert "Clinica Rural Santa Ana" in meta
    for value in identifying:
        for where, content in (("text", text), ("metadata", meta), ("raw", raw), ("pdftotext", poppler)):
            assert value.lower() not in content.lower(), f"{value!r} found in the {where}"
    # what the doctor still gets
    pseudo = phi.pseudonym(PATIENT["id"])
    assert pseudo in text
    assert "withheld (anonymised)" in text
    assert "age band 60-69 y" in text
    assert "Male" in text
    assert "CR / PA" in text
    assert "2026" in text
    assert phi.file_label("Doe_John_chest.dcm", anonymize=True) in text
    assert "FLAGGED" in text


def test_anonymized_unicode_override_is_withheld_too(tmp_path: Path, xray) -> None:
    info = ReportInfo(patient_name="Иванов Пётр", patient_id="ИД-77", analysed_at=WHEN)
    out = _report(tmp_path, xray, info=info, anonymize=True)
    text = flat(pdf_text(out)) + pdf_metadata_text(out)
    assert "Иванов" not in text
    assert "ИД-77" not in text
    assert phi.pseudonym("ИД-77") in text


def test_report_id_is_not_identifying(tmp_path: Path, xray) -> None:
    out = _report(tmp_path, xray, anonymize=True)
    text = flat(pdf_text(out))
    rid = text.split("Report ID: ")[1].split()[0]
    assert rid.startswith("CXR-20261126-093000-")
    for value in phi.identifying_values(xray.metadata):
        assert value.lower() not in rid.lower()


def test_png_report_works_without_metadata(tmp_path: Path) -> None:
    png = load_xray(write_png(tmp_path / "img.png"))
    text = flat(pdf_text(_report(tmp_path, png)))
    assert "img.png" in text
    assert "FLAGGED" in text
    assert "Name — " in text or "Name —" in text


# --------------------------------------------------------------------------
# Writing: atomic, no overwrite
# --------------------------------------------------------------------------


def test_refuses_to_overwrite_unless_asked(tmp_path: Path, xray) -> None:
    target = tmp_path / "r.pdf"
    target.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="already exists"):
        _report(tmp_path, xray)
    assert target.read_bytes() == b"keep me"
    _report(tmp_path, xray, overwrite=True)
    assert target.read_bytes().startswith(b"%PDF-")


def test_failure_mid_build_leaves_no_file(tmp_path: Path, xray, monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop.core import report_pdf

    calls = {"n": 0}
    original = report_pdf.ProbabilityBar.draw

    def boom(self) -> None:
        calls["n"] += 1
        original(self)
        raise RuntimeError("simulated failure while drawing page 1")

    monkeypatch.setattr(report_pdf.ProbabilityBar, "draw", boom)
    with pytest.raises(OutputError, match="nothing was written"):
        _report(tmp_path, xray)
    assert calls["n"] == 1
    assert list(tmp_path.iterdir()) == []  # neither the PDF nor a temporary file


def test_failure_after_partial_bytes_leaves_no_file(tmp_path: Path, xray, monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop.core import report_pdf

    def partial(self, story) -> None:
        self.filename.write(b"%PDF-1.4\n% half a report")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_pdf.ReportDoc, "build_story", partial)
    with pytest.raises(OutputError, match="disk full"):
        _report(tmp_path, xray)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_survives_a_failed_overwrite(tmp_path: Path, xray, monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop.core import report_pdf

    target = tmp_path / "r.pdf"
    target.write_bytes(b"previous report")

    def fail(self, story) -> None:
        raise MemoryError

    monkeypatch.setattr(report_pdf.ReportDoc, "build_story", fail)
    with pytest.raises(OutputError, match="not enough memory"):
        _report(tmp_path, xray, overwrite=True)
    assert target.read_bytes() == b"previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.pdf"]


def test_unwritable_folder_is_a_clear_error(tmp_path: Path, xray) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        write_study_report(tmp_path / "missing" / "r.pdf", xray, FakePrediction(), FakeHeatmap(), FakeBundle(), INFO)
    if sys.platform.startswith("win") or os.geteuid() == 0:
        return  # root can write anywhere
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            write_study_report(locked / "r.pdf", xray, FakePrediction(), FakeHeatmap(), FakeBundle(), INFO)
    finally:
        locked.chmod(0o700)


def test_output_is_a_folder(tmp_path: Path, xray) -> None:
    with pytest.raises(OutputError, match="is a folder"):
        write_study_report(tmp_path, xray, FakePrediction(), FakeHeatmap(), FakeBundle(), INFO)


def test_markup_in_user_text_is_printed_verbatim(tmp_path: Path, xray) -> None:
    info = ReportInfo(clinic_name="A&B <b>Clinic</b>", operator="x < y & z", patient_name="O'Brien <script>",
                      analysed_at=WHEN)
    text = flat(pdf_text(_report(tmp_path, xray, info=info)))
    assert "A&B <b>Clinic</b>" in text
    assert "x < y & z" in text
    assert "O'Brien <script>" in text


def test_fonts_come_from_assets_first_then_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop.core import report_pdf

    dirs = report_pdf.font_dirs()
    assert dirs[0].parts[-2:] == ("assets", "fonts")
    assert any((d / "DejaVuSans.ttf").is_file() for d in dirs[1:])  # matplotlib's copy
    assets = tmp_path / "assets"
    (assets / "fonts").mkdir(parents=True)
    src = report_pdf._find_font("DejaVuSans.ttf")
    (assets / "fonts" / "DejaVuSans.ttf").write_bytes(src.read_bytes())
    monkeypatch.setenv("CXR_SCREENER_ASSETS", str(assets))
    assert report_pdf._find_font("DejaVuSans.ttf") == assets / "fonts" / "DejaVuSans.ttf"


def test_absurdly_long_fields_do_not_break_the_layout(tmp_path: Path, xray) -> None:
    info = ReportInfo(clinic_name="C" * 5000, clinic_address="line\n" * 200, operator="O" * 3000,
                      patient_name="N" * 10000, patient_id="I" * 2000, accession="A" * 999, analysed_at=WHEN)
    out = _report(tmp_path, xray, info=info)
    text = flat(pdf_text(out))
    assert "NNNN" in text
    assert "N" * 200 not in text  # clipped
    assert "Page 1 of" in text


def test_logs_carry_no_patient_data(tmp_path: Path, xray, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.DEBUG):
        _report(tmp_path, xray, name="Doe_John_report.pdf")
        _report(tmp_path, xray, name="anon.pdf", anonymize=True)
    logged = " ".join(r.getMessage() for r in caplog.records)
    for value in [*phi.identifying_values(xray.metadata), "Doe_John"]:
        assert value not in logged


@pytest.mark.parametrize(
    ("p", "thr", "positive", "expected"),
    [
        (0.4972, 0.5, False, "p = 0.497, below the threshold 0.50"),
        (0.5, 0.5, True, "p = 0.50, at or above the threshold 0.50"),
        (0.91, 0.5, True, "flagged about 88 of 100 COVID-19 images, and also flagged about 10 of 100 normal"),
        (0.10, 0.5, False, "missed about 12 of 100 COVID-19 images"),
        (0.52, 0.5, True, "treat this result as uncertain"),
    ],
)
def test_plain_sentence(p: float, thr: float, positive: bool, expected: str) -> None:
    from desktop.core.report import plain_sentence

    op = {"sensitivity": 0.88, "specificity": 0.9}
    assert expected in plain_sentence(p, thr, positive, op, "balanced")
    assert "not" in plain_sentence(p, thr, positive, {}, "")  # without card figures it still says something
