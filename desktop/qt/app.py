"""Start the desktop application: ``cxr-screener-gui [FILES or FOLDER...]``.

Works as a windowed (frozen) program with no console: logging goes to a file
in the per-user folder, never to a missing stdout/stderr, and an unexpected
exception in the GUI is shown by the error handler instead of killing the
window.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from desktop import __version__

log = logging.getLogger(__name__)

#: Smallest UI font, in points (readable on a 1080p clinic monitor).
MIN_FONT_POINTS = 10.0


def _setup_logging() -> Path | None:
    """Log to ``<user data>/logs/gui.log`` (rotating); to stderr too when there is one."""
    from desktop.core.paths import user_data_dir

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    path: Path | None = user_data_dir() / "logs" / "gui.log"
    try:
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=2_000_000, backupCount=3, encoding="utf-8", errors="backslashreplace"
        )
        handler.setFormatter(fmt)
        root.addHandler(handler)
    except OSError:
        path = None
    for existing in root.handlers:  # e.g. the CLI's stderr handler (``cxr-screener gui``)
        if isinstance(existing, logging.StreamHandler) and not isinstance(existing, logging.FileHandler):
            existing.setLevel(max(existing.level, logging.WARNING))
    if sys.stderr is not None and not any(type(h) is logging.StreamHandler for h in root.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        console.setFormatter(fmt)
        root.addHandler(console)
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    return path


def _icon_path() -> Path | None:
    from desktop.core.paths import assets_dir

    for name in ("cxr-screener-256.png", "cxr-screener.png", "cxr-screener.svg"):
        path = assets_dir() / "icons" / name
        if path.is_file():
            return path
    return None


def create_app(argv: Sequence[str] | None = None) -> object:
    """The QApplication (created once), with name, icon, high-DPI and readable fonts."""
    from PySide6.QtCore import QCoreApplication, Qt
    from PySide6.QtGui import QGuiApplication, QIcon
    from PySide6.QtWidgets import QApplication

    from .qt_settings import APPLICATION, ORGANIZATION

    app = QApplication.instance()
    if app is None:
        # Qt 6 scales for high DPI by default; keep fractional factors (125%, 150%) exact.
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
        )
        app = QApplication([sys.argv[0] if sys.argv else "cxr-screener-gui", *(argv or [])])
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    QCoreApplication.setApplicationVersion(__version__)
    QGuiApplication.setDesktopFileName("cxr-screener")
    icon = _icon_path()
    if icon is not None:
        app.setWindowIcon(QIcon(str(icon)))  # type: ignore[attr-defined]
    font = app.font()  # type: ignore[attr-defined]
    if 0 < font.pointSizeF() < MIN_FONT_POINTS:
        font.setPointSizeF(MIN_FONT_POINTS)
        app.setFont(font)  # type: ignore[attr-defined]
    return app


def _install_excepthook(window: object) -> None:
    """Route exceptions escaping Qt slots to the window's error handler (logged too)."""
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            previous(exc_type, exc, tb)
            return
        log.error("unhandled exception:\n%s", "".join(traceback.format_exception(exc_type, exc, tb)))
        try:
            window.errors.handle(exc.with_traceback(tb))  # type: ignore[attr-defined]
        except Exception:
            log.exception("the error handler failed")

    sys.excepthook = hook


def _smoke_test(window: object, *, expect_results: bool, timeout_s: float = 120.0) -> None:
    """``--smoke-test``: quit once models are loaded and FILES analysed; exit 0 if all went well.

    For installers and frozen builds: proves the window starts, finds its model
    and runs it, without anyone at the screen. The outcome goes to the log and
    (when there is one) to stdout.
    """
    import time

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    w: Any = window
    start = time.monotonic()
    timer = QTimer(w)

    def check() -> None:
        elapsed = time.monotonic() - start
        ready = w._models_known and not w.is_busy() and (not expect_results or w.current_prediction() is not None)
        if not ready and elapsed < timeout_s and not w.errors.history:
            return
        timer.stop()
        ok = ready and bool(w.bundles) and not w.errors.history
        pred = w.current_prediction()
        line = (
            f"smoke test {'passed' if ok else 'FAILED'}: models={[b.name for b in w.bundles]} "
            f"result={None if pred is None else (pred.label, round(pred.p_covid, 4))} "
            f"errors={[e.title for e in w.errors.history]} ({elapsed:.1f} s)"
        )
        log.info("%s", line)
        if sys.stdout is not None:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        QApplication.exit(0 if ok else 1)

    timer.timeout.connect(check)
    timer.start(100)


def main(argv: Sequence[str] | None = None) -> int:
    """Open the window; FILES are opened, a FOLDER is scanned. Returns the exit code."""
    multiprocessing.freeze_support()  # the batch scan's decoder processes in a frozen build
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        if sys.stdout is not None:
            sys.stdout.write(
                "usage: cxr-screener-gui [FILE ...] [FOLDER]\n\n"
                "Open the CXR Screener window; FILEs (PNG, JPEG, DICOM) are opened, a FOLDER is scanned.\n"
                "Settings: $CXR_SCREENER_SETTINGS selects an ini file instead of the user's settings.\n"
                "--smoke-test: quit when the model is loaded (and FILEs analysed); exit 0 if all went well.\n"
            )
        return 0
    if any(a == "--version" for a in args):
        if sys.stdout is not None:
            sys.stdout.write(f"cxr-screener-gui {__version__}\n")
        return 0
    log_path = _setup_logging()
    log.info("CXR Screener %s starting (log: %s)", __version__, log_path)
    try:
        from PySide6.QtCore import QTimer
    except ImportError as exc:  # a core-only installation
        if sys.stderr is not None:
            sys.stderr.write(f"cxr-screener-gui: the desktop window needs PySide6 ({exc})\n")
        return 2

    app = create_app()
    from .qt_main_window import QtMainWindow

    smoke = "--smoke-test" in args
    window = QtMainWindow(show_notice=not smoke)
    _install_excepthook(window)
    window.show()
    files = [a for a in args if not a.startswith("-")]
    if files:
        QTimer.singleShot(0, lambda: window.open_files([os.path.abspath(f) for f in files]))
    if smoke:
        _smoke_test(window, expect_results=bool(files))
    code = int(app.exec())  # type: ignore[attr-defined]
    from .qt_workers import quit_all

    window.batch.cancel_scan()
    if not quit_all(wait_ms=10000):
        log.warning("some background work was still running at exit")
    log.info("CXR Screener exiting (%d)", code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
