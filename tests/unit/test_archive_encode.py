"""The archive's blob bytes: standard gzip of sorted NDJSON, equal for equal content."""

from __future__ import annotations

import gzip
import json
from typing import Any

from shared.storage.archive import decode, encode

LINES: list[dict[str, Any]] = [
    {
        "incidentId": n,
        "lastUpdateTime": f"2026-12-05T10:00:{n:02d}.1234567Z",
        "createdTime": "2026-12-05T09:00:00Z",
        "status": "Active",
        "alerts": [{"alertId": f"da{n}", "title": "é" * n}],
        "_api": "legacy",
        "_tenantId": "t",
        "_ingestedAt": "2026-12-05T10:01:00.000000Z",
        "big": 2**70,
    }
    for n in range(1, 40)
]


def test_blobs_are_standard_gzip_of_sorted_ndjson_lines() -> None:
    data = encode(LINES)
    lines = gzip.decompress(data).splitlines()  # the standard library reads zlib-ng's gzip
    assert [json.loads(line) for line in lines] == LINES
    assert all(list(json.loads(line)) == sorted(json.loads(line)) for line in lines)
    assert len(data) < len(b"\n".join(lines)) / 3  # compressed (level 6), not stored


def test_equal_content_gives_equal_bytes_and_reads_back() -> None:
    assert encode(LINES) == encode([dict(reversed(list(line.items()))) for line in LINES])
    assert [i.id for i in decode(encode(LINES))] == [str(n) for n in range(1, 40)]
