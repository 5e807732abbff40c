"""Pseudonyms and anonymised metadata (desktop.core.phi)."""

from __future__ import annotations

import logging
import os
import stat
import sys

import pytest

from desktop.core import phi
from desktop.core.imaging import StudyMetadata

META = StudyMetadata(
    patient_name="Doe^John",
    patient_id="PID-998877",
    patient_sex="M",
    patient_birth_date="19610415",
    patient_age="",
    study_date="20260312",
    study_time="101500",
    accession_number="ACC-4242",
    institution="St Elsewhere Hospital",
    modality="CR",
    view_position="PA",
    body_part="CHEST",
    study_description="Chest PA for John Doe",
)


def test_pseudonym_is_stable_short_and_distinct() -> None:
    a = phi.pseudonym("PID-998877")
    assert a == phi.pseudonym("PID-998877")
    assert a == phi.pseudonym("  PID-998877 ")  # DICOM padding does not change it
    assert a.startswith("ANON-")
    assert len(a) == len("ANON-") + 8
    assert phi.is_pseudonym(a)
    assert phi.pseudonym("PID-998878") != a
    assert phi.pseudonym("") == ""
    assert phi.pseudonym("Doe^John") == phi.pseudonym("Doe John")  # DICOM name as a form shows it
    assert phi.pseudonym(a) == a  # anonymising twice is harmless


def test_pseudonym_depends_on_the_key() -> None:
    assert phi.pseudonym("12345", key=b"k1" * 16) != phi.pseudonym("12345", key=b"k2" * 16)
    assert phi.pseudonym("12345", key=b"k1" * 16) == phi.pseudonym("12345", key=b"k1" * 16)


def test_installation_key_created_once_private_and_reused() -> None:
    key = phi.installation_key()
    path = phi._key_path()
    assert path.is_file()
    assert path.read_bytes().strip() == key
    assert len(key) >= 32
    if not sys.platform.startswith("win"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    phi._key_cache.clear()
    assert phi.installation_key() == key  # read back from the file, not regenerated


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXR_SCREENER_PHI_KEY", "clinic-wide secret")
    a = phi.pseudonym("PID-1")
    monkeypatch.setenv("CXR_SCREENER_PHI_KEY", "another secret")
    assert phi.pseudonym("PID-1") != a


def test_unwritable_home_falls_back_to_app_salt(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("CXR_SCREENER_HOME", str(blocker / "sub"))  # parent is a file
    assert phi.installation_key() == phi._APP_SALT
    assert phi.pseudonym("PID-1").startswith("ANON-")


@pytest.mark.parametrize(
    ("age", "birth", "on", "band"),
    [
        ("045Y", "", "", "40-49 y"),
        ("45", "", "", "40-49 y"),
        ("006M", "", "", "under 1 y"),
        ("003W", "", "", "under 1 y"),
        ("005Y", "", "", "1-9 y"),
        ("090Y", "", "", "90+ y"),
        ("101Y", "", "", "90+ y"),
        ("", "19610415", "20260312", "60-69 y"),
        ("", "19610415", "20210414", "50-59 y"),  # day before the 60th birthday
        ("", "not a date", "", ""),
        ("", "", "", ""),
    ],
)
def test_age_band(age: str, birth: str, on: str, band: str) -> None:
    assert phi.age_band(age, birth, on) == band


def test_anonymize_metadata_removes_every_identifying_value() -> None:
    anon = phi.anonymize_metadata(META)
    text = repr(anon.as_dict())
    for value in phi.identifying_values(META):
        assert value.lower() not in text.lower(), value
    assert anon.patient_id == phi.pseudonym("PID-998877")
    assert anon.accession_number == phi.pseudonym("ACC-4242")
    assert anon.patient_name == ""
    assert anon.patient_birth_date == ""
    assert anon.institution == ""
    assert anon.study_description == ""
    assert anon.study_time == ""
    # kept: what a reader needs clinically
    assert anon.patient_sex == "M"
    assert anon.patient_age == "60-69 y"
    assert anon.study_date == "2026"
    assert (anon.modality, anon.view_position, anon.body_part) == ("CR", "PA", "CHEST")
    assert anon.identifying_values() == [anon.patient_id, anon.accession_number]
    assert phi.anonymize_metadata(anon) == anon  # idempotent


def test_anonymize_without_id_uses_name_then_fallback() -> None:
    by_name = phi.anonymize_metadata(StudyMetadata(patient_name="Doe^John"))
    assert by_name.patient_id == phi.pseudonym("Doe^John")
    by_sha = phi.anonymize_metadata(StudyMetadata(), fallback="ab" * 32)
    assert by_sha.patient_id == phi.pseudonym("ab" * 32)
    assert phi.anonymize_metadata(StudyMetadata()).patient_id == ""


def test_file_label_hides_names_keeps_extension() -> None:
    assert phi.file_label("/data/Doe_John.dcm", anonymize=False) == "Doe_John.dcm"
    label = phi.file_label("/data/Doe_John.dcm", anonymize=True)
    assert label.endswith(".dcm")
    assert "Doe" not in label
    assert phi.is_pseudonym(label[:-4])
    assert label == phi.file_label("/elsewhere/Doe_John.dcm", anonymize=True)
    assert phi.file_label(None, anonymize=True) == ""


def test_identifying_values_and_scrub() -> None:
    values = phi.identifying_values(META, "extra-id")
    assert {"Doe^John", "Doe", "John", "Doe John", "PID-998877", "extra-id"} <= set(values)
    text = "Patient DOE, john (PID-998877) seen at St Elsewhere Hospital"
    out = phi.scrub(text, values)
    for v in ("doe", "john", "PID-998877", "Elsewhere"):
        assert v.lower() not in out.lower()


def test_format_and_parse_dates() -> None:
    assert phi.format_date("19610415") == "1961-04-15"
    assert phi.format_date("1961-04-15") == "1961-04-15"
    assert phi.format_date("sometime") == "sometime"
    assert phi.parse_dicom_date("19610230") is None
    assert phi.sex_label("f") == "Female"


def test_nothing_identifying_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    phi._key_cache.clear()
    with caplog.at_level(logging.DEBUG):
        phi.anonymize_metadata(META)
        phi.pseudonym("PID-998877")
        phi.file_label("Doe_John.dcm", anonymize=True)
    logged = " ".join(r.getMessage() for r in caplog.records)
    for value in phi.identifying_values(META, "Doe_John"):
        assert value not in logged


def test_metadata_repr_keeps_names_out() -> None:
    assert "Doe" not in repr(META)
    assert "PID-998877" not in repr(META)
    assert os.fspath(phi._key_path()).endswith("phi_key")
