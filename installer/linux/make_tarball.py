# ruff: noqa: T201  (a command-line tool: it prints)
"""Pack the Linux bundle: ``dist/CXRScreener-<version>-linux-<arch>.tar.gz`` (+ ``.sha256``).

    python installer/linux/make_tarball.py [--bundle dist/CXRScreener] [--out dist]

The archive holds one folder ``CXRScreener-<version>-linux-<arch>/`` with::

    CXRScreener/            the PyInstaller onedir bundle (run CXRScreener inside)
    install.sh              per-user (default) or --system installation, menu entry, icon
    uninstall.sh
    cxr-screener.desktop    launcher template (install.sh fills in the path)
    cxr-screener.png        icon (from assets/icons/)
    INSTALL.md              docs/INSTALL.md

Modes and symbolic links inside the bundle are kept; entries are sorted and owned by root
with a fixed mtime, so the same bundle gives the same archive.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import platform
import re
import shutil
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def app_version() -> str:
    text = (ROOT / "desktop" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    return match.group(1) if match else "0"


def pick_icon(bundle: Path) -> Path | None:
    """The app icon PNG: assets/icons/ in the bundle (or the source tree), biggest first."""
    for folder in (bundle / "_internal" / "assets" / "icons", ROOT / "assets" / "icons"):
        if folder.is_dir():
            pngs = sorted(folder.glob("*.png"), key=lambda p: (-p.stat().st_size, p.name))
            preferred = [p for p in pngs if "256" in p.name] or pngs
            if preferred:
                return preferred[0]
    return None


def _normalize(info: tarfile.TarInfo, mtime: int) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = mtime
    if info.isdir() or info.mode & 0o111:
        info.mode = 0o755
    elif not info.issym():
        info.mode = 0o644
    return info


def _add_tree(tar: tarfile.TarFile, src: Path, arcname: str, mtime: int) -> None:
    """Add ``src`` recursively; symbolic links stay links (lstat), modes normalised."""
    info = _normalize(tar.gettarinfo(str(src), arcname), mtime)
    if info.isfile():
        with open(src, "rb") as fh:
            tar.addfile(info, fh)
    else:
        tar.addfile(info)
    if info.isdir():
        for child in sorted(src.iterdir()):
            _add_tree(tar, child, f"{arcname}/{child.name}", mtime)


def _add_file(tar: tarfile.TarFile, data: bytes | None, arcname: str, mode: int, mtime: int) -> None:
    """A regular file from bytes, or a directory when ``data`` is None."""
    info = tarfile.TarInfo(arcname)
    if data is None:
        info.type = tarfile.DIRTYPE
        data = b""
    info.size = len(data)
    info.mode = mode
    info.mtime = mtime
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


def make_tarball(bundle: Path, out_dir: Path, *, level: int = 6) -> Path:
    if not (bundle / "CXRScreener").is_file():
        raise SystemExit(f"make_tarball: {bundle}/CXRScreener not found: build the bundle first")
    arch = platform.machine().lower() or "unknown"
    top = f"CXRScreener-{app_version()}-linux-{arch}"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{top}.tar.gz"
    tmp = target.with_suffix(".gz.tmp")
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "1700000000"))
    icon = pick_icon(bundle)
    with open(tmp, "wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, compresslevel=level, mtime=mtime
    ) as gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_file(tar, None, top, 0o755, mtime)
        _add_tree(tar, bundle, f"{top}/CXRScreener", mtime)
        for name, mode in (("install.sh", 0o755), ("uninstall.sh", 0o755),
                           ("cxr-screener.desktop", 0o644)):
            _add_file(tar, (HERE / name).read_bytes(), f"{top}/{name}", mode, mtime)
        install_md = ROOT / "docs" / "INSTALL.md"
        if install_md.is_file():
            _add_file(tar, install_md.read_bytes(), f"{top}/INSTALL.md", 0o644, mtime)
        if icon is not None:
            _add_file(tar, icon.read_bytes(), f"{top}/cxr-screener.png", 0o644, mtime)
        else:
            print("make_tarball: WARNING no icon PNG in assets/icons/: the menu entry has none",
                  file=sys.stderr)
    os.replace(tmp, target)
    digest = hashlib.sha256()
    with open(target, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    (out_dir / f"{top}.tar.gz.sha256").write_text(f"{digest.hexdigest()}  {target.name}\n")
    print(f"wrote {target} ({target.stat().st_size / 1024 / 1024:.1f} MB), sha256 {digest.hexdigest()[:16]}...")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / "CXRScreener")
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--level", type=int, default=6, help="gzip level (1 fast .. 9 small)")
    args = parser.parse_args(argv)
    if shutil.which("tar") is None and sys.platform == "win32":
        print("note: packing on Windows; the archive is meant for Linux", file=sys.stderr)
    make_tarball(args.bundle, args.out, level=args.level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
