"""Nothing lost, whatever a file is called: results.csv, resume, audit log, PDF and GUI table.

File names from CDs, USB sticks and Windows shares may be invalid UTF-8, or
hold carriage returns, line feeds, form feeds, U+2028 or bidi controls. Each
must give one row per file through scan -> interruption -> resume, and come
back from results.csv exactly as it was on disk.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desktop.core.audit import AuditLog, read_audit_log
from desktop.core.batch import ResultsWriter, read_results, scan
from desktop.core.filenames import decode_name, display_name, encode_name
from desktop.core.results import ScanResult
from desktop.core.results_csv import write_results
from tests.test_batch import FakePredictor

POSIX_BYTES = os.name == "posix" and sys.platform != "darwin"  # macOS refuses non-UTF-8 names


def _scan(folder: Path, out: Path, *, resume: bool = False, stop_after: int | None = None,
          audit: AuditLog | None = None) -> list[ScanResult]:
    results = []
    gen = scan(folder, FakePredictor(), results_csv=out / "results.csv", resume=resume, workers=0, audit=audit)
    for r in gen:
        results.append(r)
        if stop_after is not None and len(results) >= stop_after:
            gen.close()  # an interruption between two rows
            break
    return results


def _rows_by_path(csv_path: Path) -> dict[str, int]:
    """How many rows name each path, read with the csv module alone (not our reader)."""
    text = csv_path.read_bytes().decode("utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    counts: dict[str, int] = {}
    for row in reader:
        assert len(row) == len(header), f"bad row {row!r}"
        name = decode_name(row[0][1:] if row[0].startswith("'") and row[0][1:2] in "=+-@\t\r'" else row[0])
        counts[name] = counts.get(name, 0) + 1
    return counts


def _png_bytes(seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:96, 0:96]
    img = (np.sin(xx / (3 + seed % 7)) * 60 + yy + rng.integers(0, 40, (96, 96))).clip(0, 255)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8), mode="L").save(buf, format="PNG")  # a film the input gate accepts
    return buf.getvalue()


def _make(folder: Path, names: list[str]) -> None:
    """A distinct PNG under each name (saved by content: the names need no extension)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (folder / name).write_bytes(_png_bytes(i))


# --------------------------------------------------------------------------
# The three reported cases
# --------------------------------------------------------------------------


@pytest.mark.skipif(not POSIX_BYTES, reason="this file system cannot hold a name that is not UTF-8")
def test_name_that_is_not_utf8_is_screened_and_resumed(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _make(folder, ["before.png", os.fsdecode(b"bad\xff\xfe.png"), "z_after.png"])
    out = tmp_path / "out"
    first = _scan(folder, out)
    assert [r.status for r in first] == ["ok"] * 3  # the files after it are screened too
    (folder / "zz_new.png").write_bytes(_png_bytes(99))
    again = _scan(folder, out, resume=True)
    assert [r.relpath for r in again] == ["zz_new.png"]
    names = {r.relpath for r in read_results(out / "results.csv")}
    assert os.fsdecode(b"bad\xff\xfe.png") in names
    assert (folder / os.fsdecode(b"bad\xff\xfe.png")).exists()  # the stored name opens the file
    assert _rows_by_path(out / "results.csv") == dict.fromkeys(names, 1)


def test_name_with_a_carriage_return_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _make(folder, ["a.png", "cr\rname.png"])
    out = tmp_path / "out"
    _scan(folder, out)
    (folder / "b.png").write_bytes(_png_bytes(7))
    again = _scan(folder, out, resume=True)
    assert [r.relpath for r in again] == ["b.png"]
    assert _rows_by_path(out / "results.csv") == {"a.png": 1, "b.png": 1, "cr\rname.png": 1}


@pytest.mark.parametrize("odd", ["lf\nname.png", "ff\x0cname.png", "ls\u2028name.png", "ps\u2029x.png",
                                 "crlf\r\nx.png", 'quo"te,comma.png'])
def test_line_breaking_names_keep_every_row_on_resume(tmp_path: Path, odd: str, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "in"
    _make(folder, ["a.png", odd, "z.png"])
    out = tmp_path / "out"
    _scan(folder, out)
    (folder / "zz.png").write_bytes(_png_bytes(9))
    again = _scan(folder, out, resume=True)
    assert [r.relpath for r in again] == ["zz.png"]  # nothing redone, nothing dropped
    assert "damaged" not in caplog.text
    assert "cut" not in caplog.text
    assert _rows_by_path(out / "results.csv") == {"a.png": 1, odd: 1, "z.png": 1, "zz.png": 1}


def test_torn_tail_is_kept_aside_not_deleted(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _make(folder, ["a.png", "lf\nb.png", "c.png"])
    out = tmp_path / "out"
    _scan(folder, out)
    csv_path = out / "results.csv"
    whole = csv_path.read_bytes()
    cut = whole.rindex(b'"lf\nb') + 4  # a kill inside a quoted field: a line feed, but no row end
    csv_path.write_bytes(whole[:cut])
    writer = ResultsWriter(csv_path, resume=True)
    writer.close()
    assert writer.rows_before == 2
    assert writer.repaired
    assert writer.damaged_copy is not None
    assert writer.damaged_copy.name.startswith("results.csv.damaged-")
    assert writer.damaged_copy.read_bytes() == whole[whole.rindex(b'"lf\nb') : cut]
    _scan(folder, out, resume=True)
    assert _rows_by_path(csv_path) == {"a.png": 1, "lf\nb.png": 1, "c.png": 1}


def test_a_complete_row_that_does_not_parse_is_kept(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _make(folder, ["a.png", "b.png"])
    out = tmp_path / "out"
    _scan(folder, out)
    csv_path = out / "results.csv"
    lines = csv_path.read_bytes().split(b"\r\n")
    edited = b"\r\n".join([lines[0], b"hand,edited\r\nline", *lines[1:]])  # rows after it parse
    csv_path.write_bytes(edited)
    assert {r.relpath for r in read_results(csv_path)} == {"a.png", "b.png"}
    assert _scan(folder, out, resume=True) == []
    assert csv_path.read_bytes().startswith(edited)  # nothing cut off


def _one_safe_line(text: str) -> bool:
    """No line break, control character, lone surrogate or bidi override."""
    import unicodedata

    return not any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in "\u202a\u202b\u202d\u202e\u2066\u2067\u2068"
                   for c in text)


# --------------------------------------------------------------------------
# Any name the OS allows: scan -> interruption at a random point -> resume
# --------------------------------------------------------------------------


def _valid_name(raw: bytes) -> bool:
    return (bool(raw) and b"/" not in raw and b"\x00" not in raw and not raw.startswith(b".")
            and len(raw) <= 200)


_byte_names = st.binary(min_size=1, max_size=24).filter(_valid_name).map(os.fsdecode)
_text_names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\\\x00"),
                      min_size=1, max_size=16).filter(lambda s: _valid_name(os.fsencode(s)))
names_strategy = st.lists(st.one_of(_byte_names, _text_names) if POSIX_BYTES else _text_names,
                          min_size=1, max_size=6, unique_by=lambda s: os.fsencode(s).lower())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=names_strategy, stop=st.integers(0, 6), torn=st.integers(0, 80), data=st.data())
def test_any_names_survive_interruption_and_resume(tmp_path_factory: pytest.TempPathFactory, names: list[str],
                                                   stop: int, torn: int, data: st.DataObject) -> None:
    root = tmp_path_factory.mktemp("names")
    folder, out = root / "in", root / "out"
    try:
        _make(folder, names)
    except OSError:  # a name this file system refuses (too long once encoded, say)
        return
    audit = AuditLog(root / "audit.jsonl", include_file_names=True)
    first = _scan(folder, out, stop_after=max(1, stop), audit=audit)
    csv_path = out / "results.csv"
    if torn and len(first) < len(names):
        # a kill in the middle of the next row's write: a torn tail of up to `torn` bytes
        nxt = data.draw(st.sampled_from(sorted(set(names) - {r.relpath for r in first})))
        row = ScanResult(nxt, "0" * 64, "ok", "covid", 0.5, "fake", "9.9", "default", 0.5, None, None, relpath=nxt)
        buf = io.BytesIO()
        write_results_line = row.csv_row()
        text = io.StringIO()
        csv.writer(text, lineterminator="\r\n").writerow(write_results_line)
        buf.write(text.getvalue().encode("utf-8"))
        with csv_path.open("ab") as fh:
            fh.write(buf.getvalue()[: min(torn, len(buf.getvalue()) - 1)])
    second = _scan(folder, out, resume=True, audit=audit)
    expected = {n.replace(os.sep, "/") for n in os.listdir(folder)}
    assert _rows_by_path(csv_path) == dict.fromkeys(expected, 1)  # one row each: none lost, none twice
    assert {r.relpath for r in read_results(csv_path)} == expected  # names round-trip
    assert {r.relpath for r in first} | {r.relpath for r in second} == expected
    for r in read_results(csv_path, folder=folder):
        assert Path(r.path).is_file()
    logged = {e.get("file_name") for e in read_audit_log(root / "audit.jsonl")}
    assert logged == expected  # the audit log round-trips every name too
    shutil.rmtree(root)


@given(name=st.one_of(_byte_names, _text_names) if POSIX_BYTES else _text_names)
@settings(max_examples=300)
def test_encode_name_round_trips_and_display_is_one_line(name: str) -> None:
    stored = encode_name(name)
    stored.encode("utf-8")  # always storable
    assert decode_name(stored) == name
    shown = display_name(name)
    shown.encode("utf-8")
    assert _one_safe_line(shown)


# --------------------------------------------------------------------------
# Other places a file name travels: the GUI-export CSV, the batch PDF
# --------------------------------------------------------------------------

ODD_NAMES = ["lf\nname.png", "cr\rname.png", "rtl\u202egnp.exe", "=cmd.png", "é ü 中.png"]
if POSIX_BYTES:
    ODD_NAMES.append(os.fsdecode(b"bad\xff\xfe.png"))


def _results(folder: Path) -> list[ScanResult]:
    _make(folder, ODD_NAMES)
    return _scan(folder, folder.parent / "out")


def test_exported_csv_round_trips_odd_names(tmp_path: Path) -> None:
    rows = _results(tmp_path / "in")
    target = write_results(tmp_path / "export.csv", rows)
    assert {r.relpath for r in read_results(target)} == set(ODD_NAMES)
    anon = write_results(tmp_path / "anon.csv", rows, anonymize=True)
    text = anon.read_bytes().decode("utf-8")
    assert "name.png" not in text
    assert "cmd" not in text


def test_batch_pdf_shows_odd_names_readably(tmp_path: Path) -> None:
    pypdf = pytest.importorskip("pypdf")
    from desktop.core.report import write_batch_report
    from tests.report_helpers import FakeBundle

    rows = _results(tmp_path / "in")
    pdf = write_batch_report(tmp_path / "batch.pdf", rows, folder=str(tmp_path / "in"), bundle=FakeBundle(),
                             operating_point=None, started=__import__("datetime").datetime.now().astimezone())
    text = "".join(page.extract_text() for page in pypdf.PdfReader(str(pdf)).pages)
    compact = "".join(text.split())
    assert "lf\\nname.png" in compact
    assert "rtl\\u202egnp.exe" in compact
    if POSIX_BYTES:
        assert "bad\\xff\\xfe.png" in compact


def test_display_name_escapes_breaks_and_overrides() -> None:
    assert display_name("a\nb.png") == "a\\nb.png"
    assert display_name("x\u202egnp.exe") == "x\\u202egnp.exe"
    assert display_name("é 中.png") == "é 中.png"
    assert display_name(os.fsdecode(b"\xff.png")) == "\\xff.png"
    assert all(_one_safe_line(display_name(n)) for n in ODD_NAMES)


@pytest.mark.qt
def test_gui_scan_table_shows_odd_names_on_one_line(tmp_path: Path, qtbot) -> None:  # noqa: ANN001
    pytest.importorskip("PySide6")
    from PySide6.QtCore import Qt

    from desktop.qt.qt_batch import QtResultsModel

    rows = _results(tmp_path / "in")
    model = QtResultsModel()
    model.set_rows(rows)
    shown = [model.data(model.index(i, 0), Qt.ItemDataRole.DisplayRole) for i in range(model.rowCount())]
    assert sorted(shown) == sorted(display_name(n) for n in ODD_NAMES)
    assert all(_one_safe_line(s) for s in shown)
