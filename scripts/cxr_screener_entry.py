"""Entry point of the frozen application (PyInstaller, see ``build.spec``).

One executable serves both faces of CXR Screener::

    CXRScreener                       the desktop application (GUI)
    CXRScreener FILE...               the GUI, opening FILE (a double-clicked .dcm arrives so)
    CXRScreener COMMAND [ARGS...]     the command line, same as ``cxr-screener COMMAND``
    CXRScreener --help | --version    the command line's help / version
    CXRScreener --diagnose            JSON for support: bundle, decoders, Qt plugins, runtime

``CXR_SCREENER_STARTUP_PROBE=out.json`` makes the GUI record when its main window is shown
(and, with ``CXR_SCREENER_PROBE_SCREENSHOT=shot.png``, save a screenshot once the files
given on the command line are processed) and quit: the frozen smoke test uses it.

On Windows the bundle also holds ``CXRScreener-cli.exe``, a console build of this same
script, for scripts and terminals: ``CXRScreener.exe`` is a windowed program and has no
stdout/stderr of its own (``sys.stdout is None``). When the windowed executable is given a
command anyway it attaches to the console it was started from, if any; otherwise output
goes nowhere and errors go to the log file (see :func:`_redirect_missing_streams`).

Runs from a source checkout too (``python scripts/cxr_screener_entry.py selftest``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

#: Options that belong to the command line's top-level parser.
CLI_OPTIONS = frozenset({"-h", "--help", "--version", "-v", "--verbose"})
#: Rotate the windowed-mode log file past this size.
LOG_MAX_BYTES = 1_000_000


def wants_cli(argv: Sequence[str]) -> bool:
    """True when the arguments are a command-line invocation, False for the GUI."""
    if not argv:
        return False
    first = argv[0]
    if first in CLI_OPTIONS:
        return True
    if first.startswith("-"):
        return False  # a GUI option (e.g. --screenshot)
    from desktop.core.cli import COMMANDS

    return first in COMMANDS


def _attach_parent_console() -> bool:
    """Windows: reuse the console of the process that started us (cmd, PowerShell)."""
    if sys.platform != "win32":
        return False
    try:
        import ctypes

        if not ctypes.windll.kernel32.AttachConsole(-1):  # ATTACH_PARENT_PROCESS
            return False
        sys.stdout = open("CONOUT$", "w", encoding="utf-8", errors="replace", buffering=1)
        sys.stderr = open("CONOUT$", "w", encoding="utf-8", errors="replace", buffering=1)
        return True
    except Exception:
        return False


def _log_file() -> object | None:
    """The windowed-mode log (tracebacks, warnings), in the per-user data folder."""
    try:
        from desktop.core.paths import user_data_dir

        folder = user_data_dir() / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "stderr.log"
        if path.exists() and path.stat().st_size > LOG_MAX_BYTES:
            os.replace(path, path.with_suffix(".log.1"))
        return open(path, "a", encoding="utf-8", errors="replace", buffering=1)
    except OSError:
        return None


def _redirect_missing_streams(cli: bool) -> None:
    """Windowed builds start with ``sys.stdout``/``sys.stderr`` set to None; give them files.

    print(), argparse and tracebacks then work; logging set up later sees a real stream.
    """
    if sys.stdout is not None and sys.stderr is not None:
        return
    if cli and _attach_parent_console():
        return
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
    if sys.stderr is None:
        sys.stderr = _log_file() or open(os.devnull, "w", encoding="utf-8")


def diagnose() -> dict[str, object]:
    """What the running application finds, for support calls and the frozen smoke test.

    The report itself is :func:`desktop.qt.qt_diagnose.diagnose` (``cxr-screener gui --diagnose``
    prints the same from a virtual environment).
    """
    from desktop.qt.qt_diagnose import diagnose as _diagnose

    return _diagnose()


def run_cli(argv: Sequence[str]) -> int:
    from desktop.core.cli import main

    return int(main(list(argv)))


#: Startup probe (smoke test, benchmarks, support): a JSON file to write the GUI's timings to.
PROBE_ENV = "CXR_SCREENER_STARTUP_PROBE"
#: With the probe: grab the main window into this PNG once the work started by FILE
#: arguments is done (thread pool idle), then quit.
PROBE_SCREENSHOT_ENV = "CXR_SCREENER_PROBE_SCREENSHOT"
_KEEP_ALIVE: list[object] = []
#: Give up waiting for the work after this many seconds (screenshot taken anyway).
PROBE_TIMEOUT_S = 60.0


def _install_startup_probe(out_path: str) -> None:
    """Record when the main window is first shown; optionally screenshot it and quit.

    Uses only the GUI's public ``create_app()`` (which reuses the QApplication created here)
    and a Qt event filter, so the window code needs no test hooks. Times are Unix epoch
    seconds, comparable with the launching process' clock.
    """
    import json
    import time
    from typing import cast

    from PySide6.QtCore import QEvent, QObject, QThreadPool, QTimer
    from PySide6.QtWidgets import QApplication, QMainWindow

    from desktop.qt.app import create_app

    app = create_app()
    record: dict[str, object] = {"t_probe_installed": time.time()}
    screenshot = os.environ.get(PROBE_SCREENSHOT_ENV)

    def write() -> None:
        tmp = out_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2)
        os.replace(tmp, out_path)

    def finish(window: QMainWindow, started: float, idle_since: list[float]) -> None:
        now = time.time()
        busy = QThreadPool.globalInstance().activeThreadCount() > 0
        if busy:
            idle_since.clear()
        elif not idle_since:
            idle_since.append(now)
        settled = bool(idle_since) and now - idle_since[0] >= 0.5 and now - started >= 1.0
        if not settled and now - started < PROBE_TIMEOUT_S:
            QTimer.singleShot(100, lambda: finish(window, started, idle_since))
            return
        record["t_work_done"] = now
        record["timed_out"] = not settled
        record["window_title"] = window.windowTitle()
        if screenshot:
            record["screenshot"] = screenshot if window.grab().save(screenshot) else None
        write()
        QApplication.quit()

    class _Probe(QObject):
        def eventFilter(self, obj: QObject, event: QEvent) -> bool:
            if (
                "t_window_shown" not in record
                and event.type() == QEvent.Type.Show
                and isinstance(obj, QMainWindow)
            ):
                record["t_window_shown"] = time.time()
                record["window_class"] = type(obj).__name__

                def first_idle(window: QMainWindow = obj) -> None:
                    record["t_first_idle"] = time.time()  # after the first layout and paint
                    write()
                    if screenshot:
                        finish(window, time.time(), [])
                    else:
                        QApplication.quit()

                QTimer.singleShot(0, first_idle)
            return False

    qapp = cast("QApplication", app)
    _KEEP_ALIVE.append(_Probe(qapp))
    qapp.installEventFilter(_KEEP_ALIVE[-1])


def run_gui(argv: Sequence[str]) -> int:
    probe = os.environ.get(PROBE_ENV)
    if probe:
        _install_startup_probe(probe)
    from desktop.qt.app import main

    return int(main(list(argv)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--diagnose"]:
        import json

        _redirect_missing_streams(True)
        sys.stdout.write(json.dumps(diagnose(), indent=2) + "\n")
        sys.stdout.flush()
        return 0
    cli = wants_cli(args)
    _redirect_missing_streams(cli)
    return run_cli(args) if cli else run_gui(args)


if __name__ == "__main__":
    # A frozen Windows app re-executes itself for multiprocessing workers; let those through.
    import multiprocessing

    multiprocessing.freeze_support()
    raise SystemExit(main())
