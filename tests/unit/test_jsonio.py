"""shared.core.jsonio: orjson where it can, the standard library for what orjson refuses."""

from __future__ import annotations

import json

import pytest

from shared.core import jsonio


def test_lines_are_sorted_compact_utf8_and_newline_ended() -> None:
    line = jsonio.dumps_line({"b": "é", "a": [1, {"d": None, "c": True}]})
    assert line == '{"a":[1,{"c":true,"d":null}],"b":"é"}\n'.encode()
    assert json.loads(line) == {"b": "é", "a": [1, {"d": None, "c": True}]}


@pytest.mark.parametrize(
    "value",
    [{"big": 2**70}, {"n": -(2**65)}, {1: "a non-text key"}],
    ids=["integer beyond 64 bits", "negative beyond 64 bits", "non-text key"],
)
def test_what_orjson_refuses_is_still_written(value: dict[object, object]) -> None:
    line = jsonio.dumps_line(value)
    assert line.endswith(b"\n")
    assert json.loads(line) == json.loads(json.dumps(value))
