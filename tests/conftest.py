"""Shared fixtures: where ../shared is (skip cleanly without it), an isolated user folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.model_fixtures"]

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CXR_SHARED_DIR", REPO.parent / "shared"))

# Qt tests run without a display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared not available here ({path} missing): real-data test skipped")
    return path


@pytest.fixture
def shared_dicom_dir() -> Path:
    return shared_path("data", "dicom")


@pytest.fixture
def shared_cxr_dir() -> Path:
    return shared_path("data", "cxr")


@pytest.fixture(autouse=True)
def _isolated_user_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep every test out of the real per-user folder (models, audit log, settings)."""
    home = tmp_path_factory.mktemp("cxr_home")
    monkeypatch.setenv("CXR_SCREENER_HOME", str(home))
    # The test bundles are not signed: allow unverified user bundles unless a test says otherwise
    # (tests of the trust rules delete this variable).
    monkeypatch.setenv("CXR_SCREENER_ALLOW_UNVERIFIED", "1")
    return home
