"""Pure planning of where an ingestion run's listing starts.

A run lists incidents whose last update is in ``[start, now - safety lag)``, cut into slices by
``shared.defender.slices``. ``start`` is the watermark minus an overlap, because Defender can
make an update visible a little after the time it records
(docs/defender-service.md#late-updates): the version check drops what the re-read finds
already stored. The overlap is re-read only where it can find
something: before the instant the checkpoint's run had already waited lag + overlap past (a
backlog's checkpoint, far behind the run that committed it), every version visible within lag +
overlap of its time had been read, so a run resuming a backlog starts at the checkpoint itself.
The first run starts ``lookback`` ago; a backfill (``since``) starts where it is told.

The checkpoint a run leaves behind is not planned here: it is the end of the prefix of slices
the run read completely (``shared.defender.slices``), moved forward only, after what was read is
stored. See docs/ingestion.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value


def plan_start(
    watermark: datetime | None,
    now: datetime,
    *,
    lookback: timedelta,
    overlap: timedelta,
    since: datetime | None = None,
    settled: datetime | None = None,
) -> datetime:
    """Where this run's listing starts.

    Args:
        settled: the instant before which every version was read at least safety lag +
            overlap after its time (the start of the run that committed the watermark, minus
            the lag and the overlap); the overlap is not re-read before it.

    Raises:
        ValueError: a naive datetime, or ``since`` in the future.
    """
    _aware(now, "now")
    if since is not None:
        if _aware(since, "since") > now:
            raise ValueError("since is in the future")
        return since
    if watermark is None:
        return now - lookback
    start = _aware(watermark, "watermark") - overlap
    if settled is not None:
        start = max(start, min(watermark, _aware(settled, "settled")))
    return min(start, now)
