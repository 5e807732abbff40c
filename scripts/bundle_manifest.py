# ruff: noqa: T201  (a command-line tool: it prints)
"""Inventory of a PyInstaller bundle, and the check that nothing forbidden got in.

    python scripts/bundle_manifest.py dist/CXRScreener \
        --txt dist/CXRScreener-manifest.txt --json benchmarks/results/bundle.json

Lists every file on disk (size) and every Python module inside the executable's archive
(PYZ), sums the size on disk, and exits 1 if TensorFlow, Keras, the training package, the
test suite or test tools are in the bundle. Run it with a Python that has PyInstaller (the
build environment) so that the archive can be read; without it the modules are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

#: Top-level names (module, folder or distribution) that must never be in the app.
FORBIDDEN = frozenset({
    "tensorflow", "tensorboard", "keras", "tf_keras", "tf2onnx", "model_training",
    "tests", "pytest", "_pytest", "pytestqt", "hypothesis",
})
#: Substrings that betray the training stack wherever they appear in a file name.
FORBIDDEN_ANYWHERE = ("tensorflow", "libtensorflow", "/keras/", "keras-")
MB = 1024 * 1024


@dataclass
class Manifest:
    root: Path
    files: list[tuple[str, int]] = field(default_factory=list)  # (relative path, bytes)
    disk_bytes: int = 0
    apparent_bytes: int = 0
    modules: list[str] = field(default_factory=list)
    executables: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _first_name(component: str) -> str:
    """'keras-3.15.0.dist-info' -> 'keras'; 'tests' -> 'tests'; 'numpy.libs' -> 'numpy'."""
    return re.split(r"[-.]", component, maxsplit=1)[0].lower()


def scan_files(root: Path, manifest: Manifest) -> None:
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if path.is_symlink():
                manifest.files.append((rel + " -> " + os.readlink(path), 0))
                continue
            manifest.files.append((rel, st.st_size))
            manifest.apparent_bytes += st.st_size
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                manifest.disk_bytes += getattr(st, "st_blocks", 0) * 512 or st.st_size
            if path.parent == root and (os.access(path, os.X_OK) and path.suffix in ("", ".exe")):
                manifest.executables.append(rel)


def scan_archive(exe: Path, manifest: Manifest) -> None:
    """Module names inside the executable's embedded PYZ."""
    try:
        from PyInstaller.archive.readers import CArchiveReader
    except ImportError:
        manifest.notes.append("PyInstaller not importable here: modules in the archive not listed")
        return
    try:
        pkg = CArchiveReader(str(exe))
    except Exception as exc:
        manifest.notes.append(f"could not read the archive of {exe.name}: {exc}")
        return
    for name, entry in pkg.toc.items():
        if entry[-1] == "z":  # PKG_ITEM_PYZ
            pyz = pkg.open_embedded_archive(name)
            manifest.modules.extend(sorted(pyz.toc))
        elif entry[-1] in ("m", "M", "s"):
            manifest.modules.append(f"{name} (script/module)")


_GLIBC = re.compile(rb"GLIBC_(\d+)\.(\d+)(?:\.(\d+))?")
_ELF_MAGIC = b"\x7fELF"


def _elf_files(root: Path) -> list[Path]:
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as fh:
                if fh.read(4) == _ELF_MAGIC:
                    out.append(path)
    return out


def glibc_requirements(root: Path) -> dict[str, object]:
    """Linux: the highest GLIBC_x.y symbol version any bundled ELF file asks for."""
    best: tuple[int, ...] = (0,)
    where: list[str] = []
    counts: dict[str, int] = {}
    for path in _elf_files(root):
        versions = {tuple(int(g) for g in m.groups() if g is not None)
                    for m in _GLIBC.finditer(path.read_bytes())}
        if not versions:
            continue
        top = max(versions)
        key = ".".join(map(str, top))
        counts[key] = counts.get(key, 0) + 1
        rel = path.relative_to(root).as_posix()
        if top > best:
            best, where = top, [rel]
        elif top == best:
            where.append(rel)
    return {
        "minimum_glibc": ".".join(map(str, best)) if best != (0,) else None,
        "required_by": where[:10],
        "files_by_highest_glibc": dict(sorted(counts.items(), key=lambda kv: tuple(map(int, kv[0].split("."))))),
    }


def system_libraries(root: Path) -> dict[str, object]:
    """Linux: shared libraries the bundle takes from the system (ldd), and any missing here."""
    import shutil

    if shutil.which("ldd") is None:
        return {"note": "ldd not available"}
    internal = root / "_internal"
    dirs = {str(p.parent) for p in internal.rglob("*.so*")} | {str(internal)}
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(sorted(dirs)))
    from_system: dict[str, set[str]] = {}
    missing: dict[str, set[str]] = {}
    root_s = str(root.resolve())
    for path in _elf_files(root):
        try:
            out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env,
                                 timeout=30, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        rel = path.relative_to(root).as_posix()
        for line in out.splitlines():
            line = line.strip()
            if "=>" not in line:
                continue
            name, _, target = line.partition("=>")
            name, target = name.strip(), target.strip()
            if target.startswith("not found"):
                missing.setdefault(name, set()).add(rel)
            elif not target.startswith(root_s) and target.startswith("/"):
                from_system.setdefault(name, set()).add(rel)
    return {
        "from_system": sorted(from_system),
        "missing_here": {k: sorted(v)[:5] for k, v in sorted(missing.items())},
    }


def check(manifest: Manifest) -> None:
    for rel, _size in manifest.files:
        low = rel.lower()
        parts = low.split(" -> ")[0].split("/")
        inner = parts[1:] if parts and parts[0] == "_internal" else parts
        if inner and _first_name(inner[0]) in FORBIDDEN:
            manifest.problems.append(f"forbidden file: {rel}")
        elif any(tag in "/" + low for tag in FORBIDDEN_ANYWHERE):
            manifest.problems.append(f"forbidden file: {rel}")
    for mod in manifest.modules:
        top = mod.split(" ")[0].split(".")[0]
        if top in FORBIDDEN:
            manifest.problems.append(f"forbidden module: {mod}")
    third_party_tests = [m for m in manifest.modules if re.search(r"\.(tests?|testing)(\.|$)", m)]
    if third_party_tests:
        manifest.notes.append(
            f"{len(third_party_tests)} third-party test/testing modules bundled "
            f"(e.g. {', '.join(third_party_tests[:5])})"
        )


def top_components(files: Iterable[tuple[str, int]], n: int = 20) -> list[tuple[str, int]]:
    sizes: dict[str, int] = {}
    for rel, size in files:
        parts = rel.split(" -> ")[0].split("/")
        if parts[0] == "_internal" and len(parts) > 2:
            key = "/".join(parts[:2])
            if parts[1] in ("PySide6", "assets") and len(parts) > 3:
                key = "/".join(parts[:3])
        else:
            key = "/".join(parts[:2]) if parts[0] == "_internal" else parts[0]
        sizes[key] = sizes.get(key, 0) + size
    return sorted(sizes.items(), key=lambda kv: -kv[1])[:n]


def _git_commit(repo: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )
        return out.stdout.strip() or None
    except OSError:
        return None


def build_manifest(root: Path) -> Manifest:
    manifest = Manifest(root=root)
    if not root.is_dir():
        manifest.problems.append(f"{root}: no such bundle folder")
        return manifest
    scan_files(root, manifest)
    exe_name = "CXRScreener.exe" if (root / "CXRScreener.exe").exists() else "CXRScreener"
    if (root / exe_name).exists():
        scan_archive(root / exe_name, manifest)
    else:
        manifest.problems.append(f"{root}: no {exe_name} executable")
    check(manifest)
    return manifest


def write_outputs(manifest: Manifest, txt: Path | None, json_path: Path | None,
                  extra: dict[str, object] | None = None) -> dict[str, object]:
    summary: dict[str, object] = {
        "bundle": str(manifest.root),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "git_commit": _git_commit(Path(__file__).resolve().parents[1]),
        "size_on_disk_bytes": manifest.disk_bytes,
        "size_on_disk_mb": round(manifest.disk_bytes / MB, 1),
        "size_apparent_mb": round(manifest.apparent_bytes / MB, 1),
        "budget_mb": 350,
        "within_budget": manifest.disk_bytes <= 350 * MB,
        "n_files": len(manifest.files),
        "n_python_modules": len(manifest.modules),
        "executables": manifest.executables,
        "largest_components_mb": {k: round(v / MB, 1) for k, v in top_components(manifest.files)},
        "forbidden_found": manifest.problems,
        "notes": manifest.notes,
    }
    if sys.platform.startswith("linux") and manifest.root.is_dir():
        summary["linux"] = {**glibc_requirements(manifest.root), **system_libraries(manifest.root)}
    if extra:
        summary.update(extra)
    if txt is not None:
        txt.parent.mkdir(parents=True, exist_ok=True)
        lines = [
            f"# CXR Screener bundle manifest: {manifest.root}",
            f"# created {summary['created']}, git {summary['git_commit']}, {summary['platform']}",
            f"# size on disk {summary['size_on_disk_mb']} MB (apparent "
            f"{summary['size_apparent_mb']} MB), {len(manifest.files)} files, "
            f"{len(manifest.modules)} Python modules in the archive",
            *(f"# PROBLEM: {p}" for p in manifest.problems),
            *(f"# note: {n}" for n in manifest.notes),
            "",
            "## files (bytes, path)",
            *(f"{size:>12} {rel}" for rel, size in manifest.files),
            "",
            "## Python modules in the executable's archive",
            *manifest.modules,
            "",
        ]
        tmp = txt.with_suffix(txt.suffix + ".tmp")
        tmp.write_text("\n".join(lines), encoding="utf-8")
        os.replace(tmp, txt)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, json_path)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="the onedir folder, e.g. dist/CXRScreener")
    parser.add_argument("--txt", type=Path, help="full manifest (text)")
    parser.add_argument("--json", type=Path, help="summary (JSON)")
    parser.add_argument("--extra-json", help="JSON object merged into the summary")
    args = parser.parse_args(argv)
    manifest = build_manifest(args.bundle)
    extra = json.loads(args.extra_json) if args.extra_json else None
    summary = write_outputs(manifest, args.txt, args.json, extra)
    print(f"bundle {args.bundle}: {summary['size_on_disk_mb']} MB on disk, "
          f"{summary['n_files']} files, {summary['n_python_modules']} modules")
    for note in manifest.notes:
        print(f"note: {note}")
    if manifest.problems:
        for problem in manifest.problems[:50]:
            print(f"FORBIDDEN: {problem}", file=sys.stderr)
        print("bundle check FAILED: tensorflow/keras/tests/dev tools must not be in the app",
              file=sys.stderr)
        return 1
    print("bundle check ok: no tensorflow, keras, model_training, tests or test tools")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
