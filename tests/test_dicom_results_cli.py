"""``--dicom-results DIR`` on ``scan`` and ``report``: one SC and one SR per DICOM film."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from tests.batch_support import bundle_source, make_png, model_name, read_csv, run_cli  # noqa: F401
from tests.listen_support import SC, SR_COMPREHENSIVE, make_films
from tests.test_dicom_results import assert_valid_dicom

pytest.importorskip("highdicom")


def test_scan_dicom_results(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    films = make_films(tmp_path / "in", 2)
    make_png(tmp_path / "in" / "plain.png", seed=1)
    results = tmp_path / "dres"
    r = run_cli("scan", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model", model_name,
                "--dicom-results", str(results), "--anonymize", "--no-progress", "--workers", "0")
    assert r.returncode == 0, r.stderr
    _, rows = read_csv(tmp_path / "out" / "results.csv")
    assert len(rows) == 3
    assert all(row["status"] == "ok" for row in rows)
    written = sorted(results.glob("*.dcm"))
    assert len(written) == 4  # the PNG has no study: no results for it
    classes = sorted(str(assert_valid_dicom(f).SOPClassUID) for f in written)
    assert classes == sorted([SC, SC, SR_COMPREHENSIVE, SR_COMPREHENSIVE])
    studies = {str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID) for f in films}
    for f in written:
        ds = pydicom.dcmread(f)
        assert ds.StudyInstanceUID in studies
        assert str(ds.PatientID).startswith("ANON-")
        assert "Doe" not in str(ds)


def test_report_dicom_results(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    film = make_films(tmp_path / "in", 1)[0]
    results = tmp_path / "dres"
    r = run_cli("report", str(film), "-o", str(tmp_path / "r.pdf"), "--model", model_name,
                "--dicom-results", str(results))
    assert r.returncode == 0, r.stderr
    assert "DICOM results:" in r.stderr
    src = pydicom.dcmread(film, stop_before_pixels=True)
    written = sorted(results.glob("*.dcm"))
    assert [f.name for f in written] == [f"{src.SOPInstanceUID}_SC.dcm", f"{src.SOPInstanceUID}_SR.dcm"]
    sr = assert_valid_dicom(written[1])
    assert model_name in str(sr)
    assert sr.PatientID == src.PatientID
    png = make_png(tmp_path / "x.png", seed=2)
    r = run_cli("report", str(png), "-o", str(tmp_path / "r2.pdf"), "--model", model_name,
                "--dicom-results", str(tmp_path / "none"))
    assert r.returncode == 0
    assert "not a DICOM file" in r.stderr
