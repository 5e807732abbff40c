"""CLI: `calibrate` writes a profile (or refuses), `predict --site` names the site, the gate rejects with a code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.batch_support import bundle_source, make_png, model_name, run_cli, sample_images  # noqa: F401
from tests.dicom_factory import write_chest_dicom


def _normals(folder: Path, n: int) -> Path:
    for i in range(n):
        make_png(folder / f"n{i:03d}.png", 100 + i, size=96)
    return folder


def test_calibrate_then_predict_with_site(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    folder = _normals(tmp_path / "normals", 33)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    write_chest_dicom(folder / "hip.dcm", (np.arange(160 * 160).reshape(160, 160) % 4000).astype(np.uint16),
                      BodyPartExamined="HIP")
    run = run_cli("calibrate", "--site", "Clinic North", "--normals", str(folder), "--model", model_name,
                  "--operator", "tester", "--target-specificity", "0.9")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["normals"] == 33  # the broken file and the hip film are not counted
    assert out["specificity"] >= 0.9
    assert "broken.png" in run.stderr
    assert "could not be read" in run.stderr
    assert "hip.dcm: not_chest" in run.stderr
    profile = json.loads(Path(out["profile"]).read_text())
    assert profile["excluded"] == {"unreadable": 1, "rejected": 1}
    assert profile["operator"] == "tester"
    assert out["threshold_basis"].startswith("site 'Clinic North', 33 local normal films, ")

    again = run_cli("calibrate", "--site", "Clinic North", "--normals", str(folder), "--model", model_name)
    assert again.returncode == 2
    assert "--overwrite" in again.stderr

    film = make_png(tmp_path / "film.png", 7, size=96)
    pred = run_cli("predict", "--model", model_name, "--site", "Clinic North", str(film))
    assert pred.returncode == 0, pred.stderr
    line = json.loads(pred.stdout)
    assert line["site"] == "Clinic North"
    assert line["operating_point"] == "site:Clinic North"
    assert line["threshold"] == pytest.approx(out["threshold"])
    assert line["threshold_basis"] == out["threshold_basis"]
    plain = json.loads(run_cli("predict", "--model", model_name, str(film)).stdout)
    assert plain["site"] is None
    assert plain["threshold_basis"].startswith("no site profile")

    Path(out["profile"]).write_text(Path(out["profile"]).read_text().replace('"operator": "tester"', '"operator": "x"'))
    edited = run_cli("predict", "--model", model_name, "--site", "Clinic North", str(film))
    assert edited.returncode == 2
    assert "changed after it was made" in edited.stderr
    assert edited.stdout == ""


def test_calibrate_refuses_too_few(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    folder = _normals(tmp_path / "few", 12)
    run = run_cli("calibrate", "--site", "X", "--normals", str(folder), "--model", model_name)
    assert run.returncode == 2
    assert "only 12 readable normal film(s)" in run.stderr
    assert "at least 30 are needed" in run.stderr


def test_predict_unknown_site_is_usage_error(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    run = run_cli("predict", "--model", model_name, "--site", "Nowhere", str(make_png(tmp_path / "a.png", 1)))
    assert run.returncode == 2
    assert "no site profile 'Nowhere'" in run.stderr


def test_chest_film_wrapped_as_dicom_rejected_by_tags(tmp_path: Path) -> None:
    """Issue 17's check, with the bundled model: HIP, LL and 006Y come back rejected, no p(covid)."""
    from PIL import Image

    src = next(p for p in sample_images() if p.suffix == ".png")
    pixels = (np.asarray(Image.open(src).convert("L"), np.uint16) * 16).astype(np.uint16)
    files = {
        "hip": write_chest_dicom(tmp_path / "hip.dcm", pixels, BodyPartExamined="HIP"),
        "ll": write_chest_dicom(tmp_path / "ll.dcm", pixels, ViewPosition="LL"),
        "child": write_chest_dicom(tmp_path / "child.dcm", pixels, PatientAge="006Y"),
        "adult": write_chest_dicom(tmp_path / "adult.dcm", pixels, ViewPosition="PA", PatientAge="054Y"),
        "ct": write_chest_dicom(tmp_path / "ct.dcm", pixels, Modality="CT"),
    }
    run = run_cli("predict", *map(str, files.values()))
    assert run.returncode == 0, run.stderr
    lines = {Path(line["file"]).stem: line for line in run.json_lines()}
    expect = {"hip": "not_chest", "ll": "not_frontal_chest", "child": "paediatric", "ct": "not_radiograph"}
    for name, code in expect.items():
        line = lines[name]
        assert line["status"] == "rejected", line
        assert line["reject_code"] == code
        assert line["p_covid"] is None
        assert line["label"] is None
        assert line["reject_reason"].startswith("not assessable: ")
    assert lines["hip"]["reject_reason"] == "not assessable: hip film"
    assert lines["adult"]["status"] == "ok"
    assert lines["adult"]["p_covid"] is not None


def test_report_refuses_rejected_film_and_takes_site(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    hip = write_chest_dicom(tmp_path / "hip.dcm", (np.arange(160 * 160).reshape(160, 160) % 4000).astype(np.uint16),
                            BodyPartExamined="HIP")
    out = tmp_path / "hip.pdf"
    run = run_cli("report", str(hip), "-o", str(out), "--model", model_name)
    assert run.returncode == 1
    assert "not assessable: hip film (not_chest); no chest report written" in run.stderr
    assert not out.exists()
    folder = _normals(tmp_path / "normals", 30)
    assert run_cli("calibrate", "--site", "S", "--normals", str(folder), "--model", model_name).returncode == 0
    film = make_png(tmp_path / "film.png", 5, size=96)
    ok = run_cli("report", str(film), "-o", str(tmp_path / "film.pdf"), "--model", model_name, "--site", "S")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "film.pdf").exists()


def test_scan_rejects_with_code_and_names_the_site(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    from tests.batch_support import read_csv

    normals = _normals(tmp_path / "normals", 30)
    assert run_cli("calibrate", "--site", "Clinic South", "--normals", str(normals), "--model", model_name).returncode == 0
    films = tmp_path / "films"
    make_png(films / "a.png", 1)
    pixels = (np.arange(160 * 160).reshape(160, 160) % 4000).astype(np.uint16)
    write_chest_dicom(films / "hip.dcm", pixels, BodyPartExamined="HIP")
    write_chest_dicom(films / "child.dcm", pixels, PatientAge="006Y")
    write_chest_dicom(films / "ct.dcm", pixels, Modality="CT")
    (films / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    out = tmp_path / "out"
    run = run_cli("scan", str(films), "--out", str(out), "--model", model_name, "--site", "Clinic South",
                  "--no-progress", "--workers", "0")
    assert run.returncode == 1, run.stderr  # the broken file failed; rejected films are not failures
    assert "1 failed, 3 not assessable (input gate)" in run.stderr
    assert "Threshold: site 'Clinic South', 30 local normal films" in run.stderr
    rows = {Path(r["path"]).name: r for r in read_csv(out / "results.csv")[1]}
    assert rows["a.png"]["status"] == "ok"
    assert rows["a.png"]["site"] == "Clinic South"
    assert rows["a.png"]["operating_point"] == "site:Clinic South"
    for name, code in (("hip.dcm", "not_chest"), ("child.dcm", "paediatric"), ("ct.dcm", "not_radiograph")):
        assert rows[name]["status"] == "rejected"
        assert rows[name]["reject_code"] == code
        assert rows[name]["p_covid"] == ""
        assert rows[name]["label"] == ""
        assert rows[name]["site"] == "Clinic South"
    assert rows["hip.dcm"]["error"] == "not assessable: hip film"
    assert rows["broken.png"]["status"] == "error"
    assert rows["broken.png"]["reject_code"] == "unreadable"
    resumed = run_cli("scan", str(films), "--out", str(out), "--model", model_name, "--site", "Clinic South",
                      "--no-progress", "--workers", "0", "--resume")
    assert resumed.returncode == 1, resumed.stderr  # the broken file still fails
    assert "1 more file(s) failed in earlier runs" in resumed.stderr or "1 failed" in resumed.stderr


def test_report_states_what_its_figures_rest_on(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    """Without a profile the PDF quotes the validation figures as such and warns about new sites;
    with one, the site's own figures."""
    from tests.report_helpers import flat, pdf_text

    film = str(sample_images()[0])
    plain = tmp_path / "plain.pdf"
    assert run_cli("report", film, "-o", str(plain), "--model", model_name).returncode == 0
    text = flat(pdf_text(plain))
    assert "measured on the training sources" in text
    assert "Calibrate for this site" in text
    folder = _normals(tmp_path / "normals", 31)
    assert run_cli("calibrate", "--site", "Clinic South", "--normals", str(folder), "--model", model_name).returncode == 0
    sited = tmp_path / "site.pdf"
    assert run_cli("report", film, "-o", str(sited), "--model", model_name, "--site", "Clinic South").returncode == 0
    text = flat(pdf_text(sited))
    assert "Threshold set for this site: site 'Clinic South', 31 local normal films" in text
    assert "measured on the training sources" not in text


def test_batch_report_of_a_site_scan_quotes_the_site(tmp_path: Path, model_name: str) -> None:  # noqa: F811
    """`scan --site X --report` puts the site's threshold and figures in the batch PDF, not the card's."""
    from tests.report_helpers import flat, pdf_text

    normals = _normals(tmp_path / "normals", 30)
    cal = run_cli("calibrate", "--site", "Clinic West", "--normals", str(normals), "--model", model_name)
    assert cal.returncode == 0, cal.stderr
    threshold = json.loads(cal.stdout)["threshold"]
    films = tmp_path / "films"
    make_png(films / "a.png", 1)
    make_png(films / "b.png", 2)
    out = tmp_path / "out"
    run = run_cli("scan", str(films), "--out", str(out), "--model", model_name, "--site", "Clinic West",
                  "--no-progress", "--workers", "0", "--report", str(out / "report.pdf"))
    assert run.returncode == 0, run.stderr
    text = flat(pdf_text(out / "report.pdf"))
    assert "site:Clinic West" in text
    assert f"threshold {threshold:.2f}" in text
    assert "Threshold rests on site 'Clinic West', 30 local normal films" in text
    plain = run_cli("scan", str(films), "--out", str(tmp_path / "plain"), "--model", model_name,
                    "--no-progress", "--workers", "0", "--report", str(tmp_path / "plain" / "report.pdf"))
    assert plain.returncode == 0, plain.stderr
    text = flat(pdf_text(tmp_path / "plain" / "report.pdf"))
    assert "Threshold rests on no site profile; operating point" in text
    assert "measured on the training sources" in text
