"""Fast JSON: orjson where it gives exactly what the standard library gives, ``json`` elsewhere.

Writing: profiling a backfill showed the standard library's ``json`` writing every incident as
a sorted NDJSON line at a tenth of the run's CPU; orjson (https://github.com/ijl/orjson) does it
about ten times as fast. It refuses integers beyond 64 bits and non-text keys; those lines fall
back to ``json``, so nothing that was written before is refused or changed now.

Reading (``loads``): decoding the API's answers with ``json`` was a sixth of a Graph backfill's
CPU; orjson decodes them 2-3 times as fast. It is used only where its result is the standard
library's, value for value (checked against orjson 3.13, ``tests/unit/test_jsonio.py``):

- it *refuses* what ``json`` accepts beyond the JSON grammar (``NaN``, ``Infinity``, numbers
  overflowing a double, lone surrogates, a byte-order mark, UTF-16/32 bodies): those bodies are
  decoded again by ``json``, which accepts or refuses them as before;
- it *silently* reads an integer outside [-2**63, 2**64) as a float, which would change an
  unknown field's value: so a body that may hold a number of 19 digits or more
  (``_long_number``: a number can only follow ``[``, ``:`` or ``,`` and blanks, so a run of
  digits inside a string, such as a hash, is told apart; a string that still looks like a
  number only costs the slower path) goes to ``json`` without trying orjson;
- duplicate keys (the last wins, at the first one's place), floats (correctly rounded in both)
  and every other value come out the same.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_LINE = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
#: every digit as "0", every other byte as itself: a run of 19 digits is then one ``find``
_DIGITS_AS_ZERO = bytes(48 if 48 <= c <= 57 else c for c in range(256))
#: 2**63 has 19 digits: a shorter integer is one orjson reads as the standard library does
_LONG_RUN = b"0" * 19
_BLANKS = b" \t\r\n"


def dumps_line(value: Any) -> bytes:
    """One NDJSON line: keys sorted (equal content gives equal bytes), UTF-8, newline ended."""
    try:
        return orjson.dumps(value, option=_LINE)
    except (orjson.JSONEncodeError, TypeError):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return (text + "\n").encode("utf-8")


def loads(body: bytes) -> Any:
    """``json.loads(body)``, decoded by orjson where that gives the same value (see the module
    docstring).

    Raises:
        ValueError: what ``json.loads`` raises for this body (``json.JSONDecodeError``,
            ``UnicodeDecodeError``), or ``RecursionError`` for nesting too deep for it.
    """
    # a body that is not an object or array (a bare number, a BOM) is rare: the standard library
    if body[:1] in (b"{", b"[") and not _long_number(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # outside JSON's grammar, or beyond orjson's limits: json decides
    return json.loads(body)


def _long_number(body: bytes) -> bool:
    """Whether ``body`` may hold a number of 19 digits or more (a run of 19 digits that starts
    where a JSON number can: after ``[``, ``:`` or ``,``, blanks and a minus sign). A scan of a
    300 KB page costs about a tenth of a millisecond (a regular expression cost 1.5-3.5 ms)."""
    digits = body.translate(_DIGITS_AS_ZERO)
    at = digits.find(_LONG_RUN)
    while at != -1:
        before = at - 1
        if before >= 0 and body[before] == 45:  # "-"
            before -= 1
        while before >= 0 and body[before] in _BLANKS:
            before -= 1
        if before < 0 or body[before] in b"[:,":
            return True
        end = at + len(_LONG_RUN)
        while end < len(digits) and digits[end] == 48:
            end += 1
        at = digits.find(_LONG_RUN, end)
    return False
