"""Advanced hunting for both surfaces over the seeded tables (`emulator.hunting_data`), run by
the KQL subset interpreter (`emulator.kql`).

Legacy `POST /api/advancedhunting/run` `{"Query"}` -> `{"Stats","Schema":[{"Name","Type"}],
"Results"}` (https://learn.microsoft.com/defender-xdr/api-advanced-hunting); Graph
`POST /security/runHuntingQuery` `{"Query", "Timespan"?}` ->
`{"@odata.context","schema":[{"name","type"}],"results"}`
(https://learn.microsoft.com/graph/api/security-security-runhuntingquery). Data older
than 30 days is out of reach (the documented retention of both APIs); Graph's `Timespan`
narrows the window further.

Service limits (`Limits`; https://learn.microsoft.com/defender-xdr/api-advanced-hunting and the
Graph overview https://learn.microsoft.com/graph/api/resources/security-api-overview, "Advanced
hunting quotas"):

- **Rows**: "Results can return up to 100,000 rows." Neither API documents a marker for a cut
  result: the answer simply holds the first 100,000 rows (no flag, no status change), so the
  emulator does the same and a caller can only notice that it got exactly the limit.
- **Timeout**: "If a single request runs for more than 3 minutes, it will time out and return
  an error." The status and wording are not documented (UNCERTAIN): the emulator answers 400
  `BadRequest` "Query execution has exceeded the allowed time limit of 00:03:00 ..." after
  waiting out the limit. A query's run time is simulated (`latency_seconds`, or a
  `// emulator:latency=<seconds>` comment in the query, for tests); the limit is
  `timeout_seconds`.
- **Result size**: over 50 MB (Graph overview; the older page
  https://learn.microsoft.com/defender-endpoint/api/run-advanced-query-api said 124 MB) is
  "HTTP 400 Bad Request with the message 'Query execution has exceeded the allowed result size.
  Optimize your query by limiting the number of results and try again.'"
- **CPU**: "Each tenant is allocated CPU resources ... Queries are blocked if the tenant has
  reached 100% of the allocated resources until after the next 15-minute cycle"; "a 429 ...
  Read the response body to understand the limit you have reached." The emulator charges each
  query its (simulated) run time against `cpu_seconds` per `cpu_cycle_seconds` (None: no CPU
  quota, the default since real allocations depend on tenant size) and answers 429 naming the
  quota, in the shape of the observed call-quota bodies (`code` "429", see
  `emulator.ratelimit`), with `Retry-After` = seconds to the next cycle. The wording is the
  emulator's (UNCERTAIN).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from emulator import hunting_data, kql

MAX_ROWS = 100_000
RETENTION = timedelta(days=30)
#: the documented server-side limit of one request
TIMEOUT_SECONDS = 180.0
#: the documented cap of one result (Graph overview)
MAX_RESULT_BYTES = 50 * 1024 * 1024
RESULT_SIZE_MESSAGE = (
    "Query execution has exceeded the allowed result size. Optimize your query by limiting the "
    "number of results and try again."
)
_LATENCY_HINT = re.compile(r"//\s*emulator:latency=(\d+(?:\.\d+)?)")


@dataclass(frozen=True, slots=True)
class Limits:
    """The service limits the emulator enforces on hunting (see the module docstring)."""

    max_rows: int = MAX_ROWS
    timeout_seconds: float = TIMEOUT_SECONDS
    max_result_bytes: int = MAX_RESULT_BYTES
    latency_seconds: float = 0.0  # simulated run time of every query
    cpu_seconds: float | None = None  # CPU allocation per tenant and cycle; None = unlimited
    cpu_cycle_seconds: float = 900.0  # "the next 15-minute cycle"


def latency(query: str, limits: Limits) -> float:
    """A query's simulated run time: its `// emulator:latency=<s>` hint, else the default."""
    match = _LATENCY_HINT.search(query)
    return float(match.group(1)) if match else limits.latency_seconds


def timeout_message(limits: Limits) -> str:
    total = int(limits.timeout_seconds)
    label = f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"
    return (
        f"Query execution has exceeded the allowed time limit of {label}. Optimize your query "
        "by narrowing the time range or filtering earlier and try again."
    )


class CpuMeter:
    """CPU seconds charged per tenant in fixed cycles of the real monotonic clock (like the
    request quotas, `emulator.ratelimit`)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._used: dict[str, tuple[int, float]] = {}
        self._monotonic = monotonic
        self._origin = monotonic()

    def _cycle(self, cycle_seconds: float) -> tuple[int, float]:
        elapsed = self._monotonic() - self._origin
        index = int(elapsed // cycle_seconds)
        return index, (index + 1) * cycle_seconds - elapsed

    def blocked(self, tenant: str, limits: Limits) -> int | None:
        """Seconds until the next cycle when the tenant used its whole allocation, else None."""
        if limits.cpu_seconds is None:
            return None
        index, left = self._cycle(limits.cpu_cycle_seconds)
        with self._lock:
            cycle, used = self._used.get(tenant, (index, 0.0))
        if cycle == index and used >= limits.cpu_seconds:
            return max(1, math.ceil(left))
        return None

    def charge(self, tenant: str, seconds: float, limits: Limits) -> None:
        """Add a query's run time to the tenant's current cycle."""
        if limits.cpu_seconds is None:
            return
        index, _ = self._cycle(limits.cpu_cycle_seconds)
        with self._lock:
            cycle, used = self._used.get(tenant, (index, 0.0))
            self._used[tenant] = (index, (used if cycle == index else 0.0) + seconds)

    def reset(self) -> None:
        with self._lock:
            self._used.clear()


def cpu_message(limits: Limits) -> str:
    """The 429 message naming the quota (the emulator's wording; see the module docstring)."""
    cpu = int(limits.cpu_seconds or 0)
    cycle = int(limits.cpu_cycle_seconds)

    def label(total: int) -> str:
        return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"

    return (
        f"CPU quota exceeded! maximum allowed {label(cpu)} of query CPU time per "
        f"{label(cycle)}; queries are blocked until the next cycle"
    )


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

    Forms (the runHuntingQuery page's): `start/end`, `P30D/end`, `start/P30D`, `P30D`, `start`
    (start only, until now).

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
    query: str,
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    now: datetime,
    max_rows: int = MAX_ROWS,
) -> kql.QueryResult:
    """Run a query with the row limit; raises kql.KqlError outside the subset."""
    return kql.run(query, tables, now, max_rows=max_rows)
