"""Bounded JSON: size and depth limits checked before ``json.loads`` recurses, one clear error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from desktop.core.errors import CXRError
from desktop.core.jsonio import JSONLimitError, loads_bounded, nesting_depth, read_json


def test_depth_scan_counts_brackets_outside_strings_only() -> None:
    assert nesting_depth('{"a": [1, {"b": []}]}') == 4
    assert nesting_depth('"[[[[{{{{"') == 0
    assert nesting_depth(r'{"a": "x\"[[[[", "b": [1]}') == 2
    assert nesting_depth("3.5") == 0


def test_deep_document_refused_without_recursion_error(tmp_path: Path) -> None:
    depth = sys.getrecursionlimit() * 10  # json.loads would raise RecursionError long before
    path = tmp_path / "deep.json"
    path.write_text("[" * depth + "]" * depth)
    with pytest.raises(JSONLimitError, match="nested too deeply \\(over 64 levels\\)") as info:
        read_json(path)
    assert isinstance(info.value, CXRError)
    assert str(path) in str(info.value)


def test_size_limit_checked_before_reading_everything(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    with open(path, "wb") as fh:
        fh.write(b'{"a": "')
        fh.truncate(50 * 1024 * 1024)
    with pytest.raises(JSONLimitError, match="too large"):
        read_json(path, max_bytes=1024 * 1024)


def test_bad_json_and_encoding_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,}')
    with pytest.raises(JSONLimitError, match=r"bad.json: is not valid JSON \(line 1"):
        read_json(bad)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(JSONLimitError, match="not UTF-8"):
        read_json(latin)


def test_nan_allowed_unless_refused() -> None:
    assert json.dumps(loads_bounded('{"x": NaN}')) == '{"x": NaN}'
    with pytest.raises(JSONLimitError, match="NaN"):
        loads_bounded('{"x": NaN}', "s.json", allow_nan=False)


def test_valid_document_round_trips(tmp_path: Path) -> None:
    doc = {"a": [1, 2.5, None, True, {"b": "[not a bracket]"}], "c": "é"}
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert read_json(path) == doc


def test_unterminated_string_does_not_count_its_brackets() -> None:
    assert nesting_depth('{"a": "[[[[[[') == 1
    with pytest.raises(JSONLimitError, match="not valid JSON"):
        loads_bounded('{"a": "' + "[" * 500, "s.json")
