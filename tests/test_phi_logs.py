"""No patient data in logs, messages, results or the audit log.

DICOMs made from a real sample X-ray carry a patient name, ID, birth date,
accession number and institution; ``predict -v`` and ``scan -v`` run over
them (good files, a damaged one, a refused CT) and every output a user or
an admin can see is searched for those values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from desktop.core.paths import audit_log_path
from tests.batch_support import bundle_source, model_name, run_cli, sample_images  # noqa: F401
from tests.dicom_factory import write_chest_dicom

PHI = {
    "PatientName": "Zyxwvut^Qponmlk",
    "PatientID": "PID-4711-XYZ",
    "PatientBirthDate": "19470311",
    "AccessionNumber": "ACC99887766",
    "InstitutionName": "Hospital Qwertyuiop",
    "OtherPatientIDs": "OTHER-55501",
    "ReferringPhysicianName": "Referrer^Mnbvcx",
}
#: Substrings that must never show up (names split at ^, as a viewer would print them).
NEEDLES = ["Zyxwvut", "Qponmlk", "PID-4711", "19470311", "1947-03-11", "ACC99887766", "Qwertyuiop",
           "OTHER-55501", "Mnbvcx"]


def _dicom(path: Path, pixels: np.ndarray, *, modality: str = "CR", truncate: bool = False) -> Path:
    stored = (pixels.astype(np.float32) / 255.0 * 4095).astype(np.uint16)
    data = stored.tobytes()
    return write_chest_dicom(
        path, stored, pixel_data=data[: len(data) // 3] if truncate else None,
        PatientSex="F", StudyDescription="Chest Qwertyuiop follow-up", Modality=modality, **PHI,
    )


@pytest.fixture
def named_dicoms(tmp_path: Path) -> tuple[Path, list[Path]]:
    from PIL import Image

    folder = tmp_path / "studies"
    folder.mkdir()
    with Image.open(sample_images()[-1]) as im:
        pixels = np.asarray(im.convert("L").resize((256, 256)))
    files = [
        _dicom(folder / "study_001.dcm", pixels),
        _dicom(folder / "study_002.dcm", pixels[::-1]),
        _dicom(folder / "study_003_damaged.dcm", pixels, truncate=True),
        _dicom(folder / "study_004_ct.dcm", pixels, modality="CT"),
    ]
    return folder, files


def _assert_clean(text: str, where: str) -> None:
    for needle in NEEDLES:
        assert needle not in text, f"patient data {needle!r} found in {where}"


def test_the_generated_dicoms_really_carry_the_patient_data(named_dicoms: tuple[Path, list[Path]]) -> None:
    from desktop.core.imaging import load_xray

    xray = load_xray(named_dicoms[1][0])
    assert "Zyxwvut" in xray.metadata.patient_name
    assert xray.metadata.patient_id == "PID-4711-XYZ"
    for needle in ("Zyxwvut", "PID-4711"):
        assert needle.encode() in named_dicoms[1][0].read_bytes()


def test_predict_verbose_leaks_no_patient_data(named_dicoms: tuple[Path, list[Path]], model_name: str) -> None:  # noqa: F811
    _, files = named_dicoms
    run = run_cli("-v", "predict", "--model", model_name, *map(str, files))
    assert run.returncode == 1  # the damaged file fails; the CT is rejected by the input gate (issue 16)
    statuses = [line["status"] for line in run.json_lines()]
    assert statuses == ["ok", "ok", "error", "rejected"]
    _assert_clean(run.stdout, "predict stdout")
    _assert_clean(run.stderr, "predict -v stderr")
    _assert_clean(audit_log_path().read_text(), "the audit log")


def test_scan_verbose_leaks_no_patient_data(named_dicoms: tuple[Path, list[Path]], model_name: str, tmp_path: Path) -> None:  # noqa: F811
    folder, _ = named_dicoms
    out = tmp_path / "out"
    run = run_cli("-v", "scan", str(folder), "--model", model_name, "--out", str(out), "--heatmaps")
    assert run.returncode == 1
    _assert_clean(run.stdout, "scan stdout")
    _assert_clean(run.stderr, "scan -v stderr")
    csv_text = (out / "results.csv").read_text()
    assert csv_text.count("\n") == 5
    _assert_clean(csv_text, "results.csv")
    _assert_clean(audit_log_path().read_text(), "the audit log")
    for png in (out / "heatmaps").rglob("*.png"):
        _assert_clean(png.read_bytes().decode("latin-1"), f"heatmap {png.name}")


def test_error_messages_name_the_file_not_the_patient(named_dicoms: tuple[Path, list[Path]]) -> None:
    from desktop.core.errors import CXRError
    from desktop.core.imaging import load_xray

    _, files = named_dicoms
    for bad in files[2:]:
        with pytest.raises(CXRError) as info:
            load_xray(bad)
        assert bad.name in str(info.value)
        _assert_clean(str(info.value), f"the error for {bad.name}")
        _assert_clean(repr(info.value), f"the repr of the error for {bad.name}")
