"""``--diagnose``: what the running application finds, as JSON, for support calls and the smoke tests.

Used by the frozen app (``CXRScreener --diagnose``) and by ``cxr-screener gui
--diagnose`` in a virtual environment. Qt is imported only inside a
``try``: the report must come out on a machine where Qt cannot load (that is
when it is needed), and it then names the missing system libraries.
"""

from __future__ import annotations

import sys

#: Transfer syntaxes whose decoders ``--diagnose`` reports (what pydicom finds, plugins included).
DIAGNOSE_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.51": "JPEG Extended (12-bit)",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.5": "RLE Lossless",
}

def diagnose() -> dict[str, object]:
    """What the running application finds: for support calls and the frozen smoke test."""
    import importlib.metadata
    import platform

    from desktop import __version__
    from desktop.core.paths import assets_dir, user_models_dir

    info: dict[str, object] = {
        "version": __version__,
        "frozen": bool(getattr(sys, "frozen", False)),
        "executable": sys.executable,
        "bundle_dir": getattr(sys, "_MEIPASS", None),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "assets_dir": str(assets_dir()),
        "bundled_models": sorted(
            p.name for p in (assets_dir() / "models").glob("*") if (p / "model_card.json").is_file()
        ),
        "user_models_dir": str(user_models_dir()),
    }
    decoders: dict[str, list[str]] = {}
    try:
        from pydicom.pixels import get_decoder

        for uid, name in DIAGNOSE_SYNTAXES.items():
            decoders[f"{name} ({uid})"] = sorted(get_decoder(uid).available_plugins)
    except Exception as exc:
        decoders["error"] = [repr(exc)]
    info["dicom_decoders"] = decoders
    try:
        from pylibjpeg.utils import get_pixel_data_decoders

        info["pylibjpeg_plugins"] = sorted(get_pixel_data_decoders())
    except Exception as exc:
        info["pylibjpeg_plugins"] = [repr(exc)]
    versions: dict[str, str | None] = {}
    for dist in ("pydicom", "python-gdcm", "pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle",
                 "pyjpegls", "onnxruntime", "numpy", "pillow", "reportlab", "matplotlib",
                 "PySide6-Essentials"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    info["versions"] = versions
    try:
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except Exception as exc:
        info["onnxruntime_providers"] = [repr(exc)]
    try:
        import matplotlib

        info["matplotlib_backend"] = matplotlib.get_backend()
    except Exception as exc:
        info["matplotlib_backend"] = repr(exc)
    try:
        from PySide6.QtCore import QLibraryInfo

        plugins = QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)
        from pathlib import Path

        info["qt_platform_plugins"] = sorted(p.name for p in Path(plugins, "platforms").glob("*"))
    except Exception as exc:
        info["qt_platform_plugins"] = [repr(exc)]
    from desktop.core.qt_system import apt_install_line, missing_libraries

    missing = missing_libraries()
    info["qt_system_libraries_missing"] = [lib for lib, _ in missing]
    if missing:
        info["qt_system_libraries_install"] = apt_install_line(missing)
    return info


def main() -> int:
    import json

    sys.stdout.write(json.dumps(diagnose(), indent=2) + "\n")
    sys.stdout.flush()
    return 0


__all__ = ["DIAGNOSE_SYNTAXES", "diagnose", "main"]
