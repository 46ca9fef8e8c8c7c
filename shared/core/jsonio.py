"""Fast JSON lines for the archive: orjson, with the standard library for what it refuses.

Profiling a backfill showed the standard library's ``json`` writing every incident as a sorted
NDJSON line at a tenth of the run's CPU; orjson (https://github.com/ijl/orjson) does it about
ten times as fast. It refuses integers beyond 64 bits and non-text keys; those lines fall back
to ``json``, so nothing that was written before is refused or changed now. Parsing stays with
the standard library: orjson reads an integer beyond 64 bits as a float, which would change an
unknown field's value, and parsing was the smaller cost (about 1.5 ms of 12 per Graph page).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_LINE = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE


def dumps_line(value: Any) -> bytes:
    """One NDJSON line: keys sorted (equal content gives equal bytes), UTF-8, newline ended."""
    try:
        return orjson.dumps(value, option=_LINE)
    except (orjson.JSONEncodeError, TypeError):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return (text + "\n").encode("utf-8")
