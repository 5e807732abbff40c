"""The DICOM results of one film: Secondary Capture and Comprehensive SR (highdicom).

Every object is re-read with pydicom and, where dicom3tools is installed,
checked with ``dciodvfy`` (no "Error" line allowed).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.dicom_factory import write_chest_dicom

pytest.importorskip("highdicom")

DCIODVFY = shutil.which("dciodvfy")


def assert_valid_dicom(path: Path) -> pydicom.Dataset:
    """Re-read ``path`` (pixels decoded for images) and, if available, validate it with dciodvfy."""
    ds = pydicom.dcmread(path)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    if "PixelData" in ds:
        arr = ds.pixel_array
        assert arr.shape[:2] == (ds.Rows, ds.Columns)
    if DCIODVFY:
        proc = subprocess.run([DCIODVFY, "-new", str(path)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
        assert not errors, f"{path.name}: {errors}"
    return ds


def _film(tmp_path: Path, **tags: object) -> Path:
    rng = np.random.default_rng(0)
    px = (rng.random((300, 240)) * 4095).astype(np.uint16)
    base = dict(PatientName="Doe^John", PatientID="P123", PatientBirthDate="19600101", PatientSex="M",
                StudyDate="20240301", StudyTime="101010", AccessionNumber="ACC9", StudyID="7",
                ReferringPhysicianName="Who^Dr", InstitutionName="General Hospital", ViewPosition="PA")
    base.update(tags)
    return write_chest_dicom(tmp_path / "film.dcm", px, bits_stored=12, **base)


def _info(**kw: object):  # type: ignore[no-untyped-def]
    from desktop.core.dicomnet.results import ResultInfo

    args = dict(p_covid=0.734, label="covid", model="mobilenet-covid-v1", model_version="3.0",
                operating_point="high_sensitivity", threshold=0.471, model_sha256="ab" * 32, site="Clinic A")
    args.update(kw)
    return ResultInfo(**args)  # type: ignore[arg-type]


def test_sc_and_sr_in_the_study(tmp_path: Path) -> None:
    from desktop.core.dicomnet.results import read_sr_result, write_results

    film = _film(tmp_path)
    src = pydicom.dcmread(film)
    panel = np.zeros((300, 300, 3), np.uint8)
    w = write_results(film, panel, _info(), tmp_path / "out")
    sc, sr = assert_valid_dicom(w.sc), assert_valid_dicom(w.sr)
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"
    for obj in (sc, sr):
        assert obj.StudyInstanceUID == src.StudyInstanceUID
        assert obj.PatientID == "P123"
        assert str(obj.PatientName) == "Doe^John"
        assert obj.AccessionNumber == "ACC9"
        assert obj.StudyDate == "20240301"
        assert obj.SeriesInstanceUID != src.SeriesInstanceUID
        assert obj.SOPInstanceUID != src.SOPInstanceUID
    assert sc.PhotometricInterpretation == "RGB"
    assert sc.BurnedInAnnotation == "YES"
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert sc.Rows > 300  # the film under the result banner
    assert "not a diagnosis" in sc.ImageComments.lower()
    got = read_sr_result(sr)
    assert got["p_covid"] == pytest.approx(0.734)
    assert got["label_code"] == "COVIDLIKE"
    texts = " | ".join(got["texts"])
    for expected in ("mobilenet-covid-v1", "3.0", "high_sensitivity", "0.471", "ab" * 32, "Clinic A"):
        assert expected in texts
    ref = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert sr.CompletionFlag == "COMPLETE"
    assert sr.VerificationFlag == "UNVERIFIED"


def test_results_are_the_same_objects_when_made_again(tmp_path: Path) -> None:
    from desktop.core.dicomnet.results import write_results

    film = _film(tmp_path)
    panel = np.zeros((300, 300, 3), np.uint8)
    a = write_results(film, panel, _info(), tmp_path / "a")
    b = write_results(film, panel, _info(), tmp_path / "b")
    for x, y in zip(a.paths, b.paths, strict=True):
        dx, dy = pydicom.dcmread(x), pydicom.dcmread(y)
        assert (dx.SOPInstanceUID, dx.SeriesInstanceUID) == (dy.SOPInstanceUID, dy.SeriesInstanceUID)
    other = write_results(film, panel, _info(model_sha256="cd" * 32), tmp_path / "c")
    assert pydicom.dcmread(other.sr).SOPInstanceUID != pydicom.dcmread(a.sr).SOPInstanceUID


def test_anonymized_results_carry_no_patient_data(tmp_path: Path) -> None:
    from desktop.core.dicomnet.results import write_results

    film = _film(tmp_path)
    src = pydicom.dcmread(film)
    w = write_results(film, np.zeros((300, 300, 3), np.uint8), _info(label="normal", p_covid=0.1),
                      tmp_path / "out", anonymize=True)
    for path in w.paths:
        ds = assert_valid_dicom(path)
        dump = str(ds)
        for secret in ("Doe", "John", "P123", "19600101", "ACC9", "General Hospital", "Who^Dr", "101010"):
            assert secret not in dump, secret
        assert ds.PatientID.startswith("ANON-")
        assert ds.StudyDate == "20240101"
        assert ds.StudyInstanceUID == src.StudyInstanceUID
        assert ds.PatientIdentityRemoved == "YES"


def test_burned_in_banner_has_the_result_and_the_disclaimer() -> None:
    from desktop.core.dicomnet.results import burn_in

    panel = np.full((400, 500, 3), 128, np.uint8)
    out = burn_in(panel, _info())
    assert out.shape[1] == 500
    assert out.shape[0] > 400
    banner = out[: out.shape[0] - 400]
    assert (banner == 0).mean() > 0.5
    assert (banner > 200).any()
    assert (banner[..., 0] > 200).any()
    assert (banner[..., 2] < 60).any()
    np.testing.assert_array_equal(out[-400:], panel)
    big = burn_in(np.zeros((3000, 2500, 3), np.uint8), _info())
    assert max(big.shape[:2]) <= 2048 + 200


def test_film_without_uids_is_refused(tmp_path: Path) -> None:
    from desktop.core.dicomnet.results import write_results
    from desktop.core.errors import CXRError

    film = _film(tmp_path)
    ds = pydicom.dcmread(film)
    del ds.StudyInstanceUID
    with pytest.raises(CXRError, match="has no StudyInstanceUID"):
        write_results(ds, np.zeros((10, 10, 3), np.uint8), _info(), tmp_path / "out")


@pytest.mark.skipif(DCIODVFY is None, reason="dicom3tools (dciodvfy) not installed")
def test_dciodvfy_flags_a_broken_object(tmp_path: Path) -> None:
    """The validator used above does catch errors (so a clean run means something)."""
    from desktop.core.dicomnet.results import write_results

    w = write_results(_film(tmp_path), np.zeros((300, 300, 3), np.uint8), _info(), tmp_path / "out")
    ds = pydicom.dcmread(w.sc)
    del ds.Modality
    del ds.PatientID
    bad = tmp_path / "bad.dcm"
    ds.save_as(bad)
    with pytest.raises(AssertionError, match="Error"):
        assert_valid_dicom(bad)
