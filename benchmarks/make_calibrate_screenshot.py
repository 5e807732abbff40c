"""Screenshot of the "Calibrate for this site..." dialog on a real new site (the JSRT normals).

    QT_QPA_PLATFORM=offscreen python benchmarks/make_calibrate_screenshot.py \
        [--normals ../shared/data/jsrt/normal] [--out docs/screenshots/calibrate_dialog.png]

Screens the folder with the bundled model exactly as the dialog does (its worker), then grabs
the dialog at 760x680. Nothing is saved as a profile.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--normals", default=str(REPO.parent / "shared/data/jsrt/normal"))
    ap.add_argument("--out", type=Path, default=REPO / "docs/screenshots/calibrate_dialog.png")
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("CXR_SCREENER_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / "cxr-shot-home"))
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from desktop.core.bundle import get_bundle
    from desktop.qt.qt_calibrate import QtCalibrateDialog

    app = QApplication.instance() or QApplication([])
    dialog = QtCalibrateDialog(get_bundle(None), operator="screenshot")
    dialog.resize(760, 680)
    dialog.site_edit.setText("JSRT (new site)")
    dialog.normals_edit.setText(args.normals)
    dialog.show()
    dialog.start_screening()
    loop = QEventLoop()
    timer = QTimer()
    timer.timeout.connect(lambda: loop.quit() if not dialog.is_running() else None)
    timer.start(200)
    loop.exec()
    app.processEvents()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    dialog.grab().save(str(args.out))
    sys.stdout.write(f"{args.out}\n")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
