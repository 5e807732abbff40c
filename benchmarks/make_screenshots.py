"""Screenshots of the real window in an X server: main window with a heatmap, batch view, report dialog, model card.

    python benchmarks/make_screenshots.py [--out docs/screenshots] [--sizes 1366x768,1920x1080]

One set per screen size, named ``<view>_<W>x<H>.png``: the window fills the
screen less a task bar and a title bar (``WINDOW_CHROME`` pixels), as a
maximised window on a clinic laptop (1366x768) or a desktop monitor
(1920x1080). Each size runs in its own process with its own ``Xvfb`` screen
of that size (apt-get install xvfb), on the xcb platform (a real X window,
not offscreen); with $DISPLAY set and a single size, that display is used. Uses the
bundled model in assets/models/ when there is one, else the tiny test bundle
(random weights: the screenshots then say so in the model name). Settings and
per-user data go to a temporary folder, never to the user's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


#: Screen sizes shot by default.
SIZES = ("1366x768", "1920x1080")
#: Height a maximised window loses to a task bar (40) and its title bar (28).
WINDOW_CHROME = 68


def start_xvfb(size: str = "1600x1000x24", display: str = ":97") -> subprocess.Popen[bytes] | None:
    if os.environ.get("DISPLAY"):
        return None
    exe = shutil.which("Xvfb")
    if exe is None:
        raise SystemExit("no $DISPLAY and no Xvfb: apt-get install xvfb")
    proc = subprocess.Popen([exe, display, "-screen", "0", size, "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ["DISPLAY"] = display
    time.sleep(1.5)
    if proc.poll() is not None:
        raise SystemExit("Xvfb did not start")
    return proc


def _check_xcb() -> None:
    """Qt aborts the process (no ``finally``) when its xcb plugin cannot load: try it in a child first."""
    from desktop.core.qt_system import apt_install_line, missing_libraries

    missing = missing_libraries()
    if missing:
        raise SystemExit(f"Qt cannot open an X window here; install: {apt_install_line(missing)}")
    probe = subprocess.run([sys.executable, "-c", "from PySide6.QtGui import QGuiApplication; QGuiApplication([])"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        tail = (probe.stderr.strip().splitlines() or ["no output"])[0]
        raise SystemExit(f"Qt cannot open an X window here ({tail})")


def wait_until(cond: Callable[[], bool], timeout: float = 120.0) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(50)

    def check() -> None:
        if cond() or time.monotonic() > deadline:
            loop.quit()

    timer.timeout.connect(check)
    timer.start()
    if not cond():
        loop.exec()
    timer.stop()
    if not cond():
        raise SystemExit("timed out waiting for the window")


def settle(ms: int = 400) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def save(widget: object, path: Path) -> None:
    settle()
    pixmap = widget.grab()  # type: ignore[attr-defined]
    pixmap.save(str(path))
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path} "
          f"({pixmap.width()}x{pixmap.height()})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--sizes", default=",".join(SIZES), help="screen sizes, WxH, comma-separated")
    parser.add_argument("--display", default=":97", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if len(sizes) > 1:  # one process (and one X screen) per size
        for i, size in enumerate(sizes):
            cmd = [sys.executable, __file__, "--out", str(args.out), "--sizes", size, "--display", f":{97 + i}"]
            if subprocess.run(cmd, check=False).returncode != 0:
                return 1
        return 0
    width, height = (int(v) for v in sizes[0].lower().split("x"))

    xvfb = start_xvfb(f"{width}x{height}x24", args.display)
    tmp = Path(tempfile.mkdtemp(prefix="cxr-shots-"))
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    os.environ["CXR_SCREENER_HOME"] = str(tmp / "home")
    try:
        _check_xcb()
        return _shoot(args.out, tmp, width, height)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)


def _shoot(out: Path, tmp: Path, width: int, height: int) -> int:
    from desktop.core.bundle import discover_bundles, model_dirs
    from desktop.qt.app import create_app
    from desktop.qt.qt_main_window import QtMainWindow
    from desktop.qt.qt_settings import AppSettings

    app = create_app()
    settings = AppSettings.from_ini(tmp / "settings.ini")
    settings.notice_accepted = True
    settings.clinic_name = "Riverside Health Centre"
    settings.clinic_address = "1 River Road, Springfield - tel. 555 0100"
    settings.operator = "A. Nurse"

    model_dirs_arg = None
    if not discover_bundles(model_dirs()).bundles:
        tiny = REPO / "tests" / "data"
        print("no bundled model in assets/models: using the tiny test bundle (random weights)")
        model_dirs_arg = [(tiny, "user")]

    samples = REPO / "assets" / "samples"
    covid = samples / "ieee8023__41182_2020_203_Fig4_HTML.jpg"
    normal = samples / "shenzhen__CHNCXR_0001_0.png"
    other = samples / "ieee8023__41182_2020_203_Fig3_HTML.jpg"

    w = QtMainWindow(settings, show_notice=False, model_dirs=model_dirs_arg)
    suffix = f"_{width}x{height}.png"
    w.move(0, 0)
    w.resize(width, height - WINDOW_CHROME)
    w.show()
    wait_until(lambda: w._models_known and not w.is_busy())

    # 1. Main window: three images opened, a positive one shown with its heatmap (a negative's is
    #    held back unless asked for: the tiny bundle calls every sample negative, and then that shows).
    w.open_files([normal, other, covid])
    wait_until(lambda: all(s.analyses for s in w.studies.values()) and not w.is_busy())
    positive = w.current_bundle().card.positive_class
    shown = next((p for p in (covid, other) if w.session.prediction(w.studies[str(p.absolute())]).label == positive),
                 covid)
    w._select_path(str(shown.absolute()))
    wait_until(lambda: w.current_path == str(shown.absolute()) and w.has_analysis())
    save(w, out / ("main_window" + suffix))

    # 2. Report dialog, filled in as a nurse would, with the page-1 preview.
    w.export_report()
    dialog = w.report_dialog
    dialog.patient_name.setText("Jane Example")
    dialog.patient_id.setText("RHC-004217")
    dialog.patient_sex.setCurrentIndex(dialog.patient_sex.findData("F"))
    dialog.age.setText("54Y")
    dialog.view_pos.setText("PA")
    dialog.update_preview()
    settle(1200)
    def preview_done() -> bool:
        worker = dialog._preview_worker
        return dialog.preview_status.text() == "Up to date" and worker is not None and worker.is_done

    wait_until(preview_done)
    settle(800)  # a resize to fit the screen may start one more refresh
    wait_until(preview_done)
    save(dialog, out / ("report_dialog" + suffix))
    dialog.reject()

    # 3. Model card.
    w.show_model_card()
    save(w.card_dialog, out / ("model_card" + suffix))
    w.card_dialog.reject()

    # 4. Batch view: a folder of samples with one damaged file.
    folder = tmp / "clinic_xrays_2024-03"
    (folder / "morning").mkdir(parents=True)
    (folder / "afternoon").mkdir()
    for i, src in enumerate(sorted(p for p in samples.iterdir() if p.suffix.lower() in (".png", ".jpg"))):
        sub = folder / ("morning" if i % 2 else "afternoon")
        shutil.copy(src, sub / f"patient_{i + 1:03d}{src.suffix.lower()}")
    (folder / "afternoon" / "patient_099.dcm").write_bytes(b"DICM" + bytes(200))
    w.scan_folder(str(folder))
    wait_until(lambda: not w.batch.is_running())
    settle(600)
    save(w, out / ("batch_view" + suffix))

    w.close()
    app.processEvents()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
