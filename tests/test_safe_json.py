"""safe_json.loads: every bad frame is a BadJson (a ValueError), never a RecursionError."""
from __future__ import annotations

import pytest

from server import safe_json


def test_good_json_parses():
    assert safe_json.loads('{"a": [1, {"b": null}]}', max_bytes=100) == {"a": [1, {"b": None}]}
    assert safe_json.loads(b'[1]', max_bytes=100) == [1]


@pytest.mark.parametrize("raw, reason", [
    ("[" * 100_000, "nests deeper"),
    ("[" * 100_000 + "]" * 100_000, "nests deeper"),
    ('{"a":' * 50_000 + "1" + "}" * 50_000, "nests deeper"),
    ("[" * 65 + "]" * 65, "nests deeper"),
    ("{", "not valid JSON"), (b"\xff\xfe", "not valid JSON"), ("1" * 5000, "not valid JSON"),
    ("[1, 2", "not valid JSON"), ("", "not valid JSON"),
])
def test_bad_frames_are_bad_json(raw, reason):
    with pytest.raises(safe_json.BadJson, match=reason):
        safe_json.loads(raw, max_bytes=1_000_000)


def test_size_is_checked_before_parsing():
    with pytest.raises(safe_json.BadJson, match="larger than 10 bytes"):
        safe_json.loads("[" + "1," * 10 + "1]", max_bytes=10)


def test_depth():
    assert safe_json.depth(1, 10) == 0
    assert safe_json.depth([[], {"a": [1]}], 10) == 3
    assert safe_json.loads("[" * 64 + "]" * 64, max_bytes=1000) is not None


def test_brackets_inside_strings_do_not_count_as_nesting():
    """Past the limit in brackets, the values are walked: a shallow frame still passes."""
    code = "x = [[[" * 40 + "]]]" * 40
    assert safe_json.openings(code) > safe_json.MAX_DEPTH
    assert safe_json.loads('{"type": "run", "code": "%s"}' % code, max_bytes=10_000)["code"] == code
