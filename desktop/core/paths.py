"""Where things live: bundled assets, the per-user data and models folders.

Works from a source checkout, an installed wheel and a PyInstaller bundle
(``sys._MEIPASS``). ``CXR_SCREENER_HOME`` overrides the per-user folder
(tests use it to stay out of the real home).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "CXRScreener"


def assets_dir() -> Path:
    """The ``assets/`` folder shipped with the application."""
    override = os.environ.get("CXR_SCREENER_ASSETS")
    if override:
        return Path(override)
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "assets"
    return Path(__file__).resolve().parents[2] / "assets"


def user_data_dir() -> Path:
    """Per-user writable folder (settings-independent): models, audit log, scan state."""
    override = os.environ.get("CXR_SCREENER_HOME")
    if override:
        return Path(override)
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / APP_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_NAME
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "cxr-screener"


def bundled_models_dir() -> Path:
    return assets_dir() / "models"


def user_models_dir() -> Path:
    """Retrained bundles dropped here are picked up without rebuilding the app."""
    return user_data_dir() / "models"


def samples_dir() -> Path:
    return assets_dir() / "samples"


def audit_log_path() -> Path:
    return user_data_dir() / "audit.jsonl"
