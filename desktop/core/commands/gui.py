"""``cxr-screener gui [FILES...]``: open the desktop window (the same as ``cxr-screener-gui``).

The core never imports Qt: the window's entry point is resolved by name at
run time (:data:`GUI_ENTRY`), so ``cxr-screener`` keeps working, and says
why, on an installation without PySide6.
"""

from __future__ import annotations

import argparse

#: The desktop window's ``main(argv) -> int``, as "module:function".
GUI_ENTRY = "desktop.qt.app:main"
#: ``--diagnose``: the support report (JSON on stdout), as "module:function".
DIAGNOSE_ENTRY = "desktop.qt.qt_diagnose:main"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gui",
        help="open the desktop window",
        description="Open the CXR Screener window. FILES (PNG, JPEG, DICOM) are opened; a FOLDER is scanned.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="X-ray files to open, or a folder to scan")
    p.add_argument(
        "--smoke-test",
        action="store_true",
        help="quit once the model is loaded and FILEs are analysed; exit 0 if all went well (installer checks)",
    )
    p.add_argument(
        "--diagnose",
        action="store_true",
        help="print what the application finds (versions, decoders, Qt plugins, missing system libraries) "
        "as JSON, without opening the window",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import pkgutil
    import sys

    if getattr(args, "diagnose", False):
        return int(pkgutil.resolve_name(DIAGNOSE_ENTRY)())
    import os

    from desktop.core.qt_system import main as check_system

    if os.environ.get("QT_QPA_PLATFORM", "xcb").startswith("xcb") and not os.environ.get("WAYLAND_DISPLAY"):
        check_system()  # a warning naming the missing libraries and the apt-get line; Qt then says why it stops
    try:
        main = pkgutil.resolve_name(GUI_ENTRY)
    except ImportError as exc:
        if sys.stderr is not None:
            sys.stderr.write(f"cxr-screener gui: the desktop window is not available here ({exc}); "
                             "install PySide6 (pip install PySide6-Essentials)\n")
        return 2
    return int(main([*args.files, *(["--smoke-test"] if args.smoke_test else [])]))
