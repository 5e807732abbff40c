"""``scan --report`` carries the clinic and operator into the batch PDF header."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from desktop.core.cli import main

REPO = Path(__file__).resolve().parents[1]


def _pdf_text(path: Path) -> str:
    pypdf = pytest.importorskip("pypdf")
    return "\n".join(page.extract_text() or "" for page in pypdf.PdfReader(str(path)).pages)


def test_scan_report_header_has_clinic_and_operator(
    tmp_path: Path, user_models_with_tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXR_SCREENER_ASSETS", str(tmp_path / "no-assets"))  # only the tiny model
    folder = tmp_path / "xrays"
    folder.mkdir()
    for name in ("shenzhen__CHNCXR_0001_0.png", "shenzhen__CHNCXR_0002_0.png"):
        shutil.copy(REPO / "assets" / "samples" / name, folder / name)
    out = tmp_path / "out"
    pdf = tmp_path / "batch.pdf"
    rc = main(["scan", str(folder), "--out", str(out), "--no-progress", "--report", str(pdf),
               "--operator", "Зоя Ñúñez", "--clinic", "Riverside Health Centre",
               "--clinic-address", "1 River Road", "--page-size", "Letter"])
    assert rc == 0
    text = _pdf_text(pdf)
    assert "Riverside Health Centre" in text
    assert "1 River Road" in text
    assert "Зоя Ñúñez" in text
    pypdf = pytest.importorskip("pypdf")
    width, height = (float(v) for v in pypdf.PdfReader(str(pdf)).pages[0].mediabox[2:])
    assert (round(width), round(height)) == (612, 792)  # Letter
