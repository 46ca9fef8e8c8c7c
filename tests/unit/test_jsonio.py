"""shared.core.jsonio: orjson where it can, the standard library for what orjson refuses."""

from __future__ import annotations

import json

import orjson
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


# What orjson 3.13 does with each: reads the same value (the fast path is taken), reads another
# value silently (must never be taken), or refuses (the standard library decides).
EDGE_BODIES = {
    "20-digit integer above 2**64": b'{"a": 99999999999999999999}',
    "integer just above 2**64": b'{"a": 18446744073709551616}',
    "integer just below -2**63": b'{"a": -9223372036854775809}',
    "negative 20 digits after blanks": b'{"a":\n\t -12345678901234567890}',
    "long integer first in an array": b"[12345678901234567890, 1]",
    "long integer after a comma": b'{"a": 1,"b":123456789012345678901234567890}',
    "long integer with a fraction": b'{"a": 12345678901234567890.5}',
    "2**64 - 1": b'{"a": 18446744073709551615}',
    "-2**63": b'{"a": -9223372036854775808}',
    "duplicate keys": b'{"a": 1, "b": 2, "a": 3}',
    "lone surrogate": b'{"a": "\\ud800"}',
    "surrogate pair": b'{"a": "\\ud83d\\ude00"}',
    "NaN": b'{"a": NaN}',
    "Infinity": b'{"a": -Infinity}',
    "double overflow": b'{"a": 1e400}',
    "double underflow": b'{"a": 1e-1234567890123456789012}',
    "long fraction": b'{"a": 0.1000000000000000055511151231257827}',
    "minus zero": b'{"a": [-0, -0.0]}',
    "byte-order mark": b'\xef\xbb\xbf{"a": 1}',
    "UTF-16": '{"a": "é"}'.encode("utf-16"),
    "hash with a long digit run": b'{"sha256": "89c2809e3befb4c83ce27944650169780512130392a788f"}',
    "digits in a string after a colon": b'{"a": "x:12345678901234567890"}',
}


@pytest.mark.parametrize("body", list(EDGE_BODIES.values()), ids=list(EDGE_BODIES))
def test_loads_gives_exactly_what_the_standard_library_gives(body: bytes) -> None:
    expected = json.loads(body)
    got = jsonio.loads(body)
    assert repr(got) == repr(expected)  # repr: 1 == 1.0 and nan != nan would hide a change


@pytest.mark.parametrize(
    "body",
    [b'{"a": 99999999999999999999}', b"[1, -12345678901234567890]"],
    ids=["above 2**64", "below -2**63"],
)
def test_bodies_orjson_would_read_differently_never_reach_it(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(orjson, "loads", _must_not_be_called)
    assert repr(jsonio.loads(body)) == repr(json.loads(body))


def test_the_fast_path_reads_ordinary_answers() -> None:
    body = b'{"value": [{"id": "12345678901234567890123", "n": 123456789012345678}]}'
    assert not jsonio._long_number(body)  # a long digit run in a string, an 18-digit number
    assert jsonio._long_number(b'{"n": 1234567890123456789}')


@pytest.mark.parametrize(
    "body", [b'{"a": ', b'{"a": 1} x', b'{"a": "\xff"}', b"[" * 5000 + b"]" * 5000]
)
def test_loads_refuses_what_the_standard_library_refuses(body: bytes) -> None:
    with pytest.raises((ValueError, RecursionError)) as expected:
        json.loads(body)
    with pytest.raises(expected.type):
        jsonio.loads(body)


def _must_not_be_called(body: bytes) -> None:
    raise AssertionError("orjson was given a body it would read differently")
