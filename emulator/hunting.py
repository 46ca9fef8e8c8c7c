"""Advanced hunting for both surfaces over the seeded tables (`emulator.hunting_data`), run by
the KQL subset interpreter (`emulator.kql`).

Legacy `POST /api/advancedhunting/run` `{"Query"}` -> `{"Stats","Schema":[{"Name","Type"}],
"Results"}` (defender-api.md §1.6); Graph `POST /security/runHuntingQuery` `{"Query",
"Timespan"?}` -> `{"@odata.context","schema":[{"name","type"}],"results"}` (§2.5). Data older
than 30 days is out of reach (the documented retention of both APIs); Graph's `Timespan`
narrows the window further. At most 100,000 rows come back (documented limit).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from emulator import hunting_data, kql

MAX_ROWS = 100_000
RETENTION = timedelta(days=30)
_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


class TimespanError(ValueError):
    """A `Timespan` that is not one of the documented ISO-8601 forms."""


def _duration(text: str) -> timedelta | None:
    match = _DURATION.match(text)
    if match is None or text.upper() in ("P", "PT"):
        return None
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return timedelta(
        weeks=parts.get("weeks", 0),
        days=parts.get("days", 0),
        hours=parts.get("hours", 0),
        minutes=parts.get("minutes", 0),
        seconds=parts.get("seconds", 0),
    )


def _instant(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def parse_timespan(text: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The (start, end) of a Graph `Timespan`; 30 days back from now when absent.

    Forms (§2.5): `start/end`, `P30D/end`, `start/P30D`, `P30D`, `start` (start only, until now).

    Raises:
        TimespanError: not one of these forms.
    """
    if text is None or not text.strip():
        return now - RETENTION, now
    text = text.strip()
    if "/" in text:
        left, _, right = text.partition("/")
        start, end = _instant(left), _instant(right)
        left_span, right_span = _duration(left), _duration(right)
        if start and end:
            pass
        elif left_span and end:
            start = end - left_span
        elif start and right_span:
            end = start + right_span
        else:
            raise TimespanError(f"Timespan '{text}' is not a valid ISO-8601 interval")
    else:
        span = _duration(text)
        if span is not None:
            start, end = now - span, now
        else:
            start, end = _instant(text), now
            if start is None:
                raise TimespanError(
                    f"Timespan '{text}' is not an ISO-8601 duration, instant or interval"
                )
    if start > end:
        raise TimespanError(f"Timespan '{text}' ends before it starts")
    return start, end


def build_tables(
    tenant_id: str, alerts: Sequence[Mapping[str, Any]], seeded_at: datetime, seed: int
) -> dict[str, list[dict[str, Any]]]:
    """The tenant's hunting tables (delegates to `hunting_data`)."""
    return hunting_data.build_tables(tenant_id, alerts, seeded_at, seed)


def window(
    tables: Mapping[str, Sequence[Mapping[str, Any]]], start: datetime, end: datetime
) -> dict[str, list[Mapping[str, Any]]]:
    """Only the rows whose `Timestamp` falls in [start, end]."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for name, rows in tables.items():
        out[name] = [
            row
            for row in rows
            if not isinstance(row.get("Timestamp"), datetime) or start <= row["Timestamp"] <= end
        ]
    return out


def run(
    query: str, tables: Mapping[str, Sequence[Mapping[str, Any]]], now: datetime
) -> kql.QueryResult:
    """Run a query with the documented row limit; raises kql.KqlError outside the subset."""
    return kql.run(query, tables, now, max_rows=MAX_ROWS)
