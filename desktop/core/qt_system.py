"""Are the system libraries Qt's Linux window plugin (xcb) needs installed? Checked without importing Qt.

PySide6's wheels bring Qt itself but not the X11/XCB helper libraries; on a
fresh Debian/Ubuntu machine the window then fails to start with a message
that names one library (often the wrong one). ``make gui`` runs
``python -m desktop.core.qt_system`` first, which names every missing
library and prints the exact ``apt-get install`` line; ``cxr-screener gui
--diagnose`` reports the same list.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Sequence

#: (shared library, Debian/Ubuntu package) for Qt 6's xcb platform plugin.
QT_SYSTEM_LIBRARIES: tuple[tuple[str, str], ...] = (
    ("libxcb.so.1", "libxcb1"),
    ("libxcb-icccm.so.4", "libxcb-icccm4"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
    ("libxcb-cursor.so.0", "libxcb-cursor0"),
    ("libxcb-image.so.0", "libxcb-image0"),
    ("libxcb-render-util.so.0", "libxcb-render-util0"),
    ("libxcb-shape.so.0", "libxcb-shape0"),
    ("libxcb-randr.so.0", "libxcb-randr0"),
    ("libxcb-xkb.so.1", "libxcb-xkb1"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ("libxkbcommon.so.0", "libxkbcommon0"),
    ("libEGL.so.1", "libegl1"),
    ("libGL.so.1", "libgl1"),
    ("libfontconfig.so.1", "libfontconfig1"),
    ("libdbus-1.so.3", "libdbus-1-3"),
)


def missing_libraries(libraries: Sequence[tuple[str, str]] = QT_SYSTEM_LIBRARIES) -> list[tuple[str, str]]:
    """The (library, package) pairs that cannot be loaded here (always none off Linux)."""
    if not sys.platform.startswith("linux"):
        return []
    missing = []
    for soname, package in libraries:
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing.append((soname, package))
    return missing


def apt_install_line(missing: Sequence[tuple[str, str]]) -> str:
    return "sudo apt-get install " + " ".join(dict.fromkeys(pkg for _, pkg in missing))


def all_packages_line() -> str:
    """The install line for every library (README, docs/INSTALL.md)."""
    return apt_install_line(QT_SYSTEM_LIBRARIES)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 if the window can start; else name the libraries and the install line, exit 1."""
    missing = missing_libraries()
    if not missing:
        return 0
    names = ", ".join(lib for lib, _ in missing)
    sys.stderr.write(
        f"The desktop window needs system libraries that are not installed: {names}.\n"
        f"Install them with:\n\n    {apt_install_line(missing)}\n\n"
        "(Debian/Ubuntu package names; on Fedora use the xcb-util-* and libxkbcommon-x11 packages.)\n"
    )
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
