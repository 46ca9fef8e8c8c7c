"""Pure planning of what an ingestion run reads.

A run lists incidents whose last update is at or after ``start`` (there is no upper bound: see
``shared.defender.paging``). ``start`` is the watermark minus an overlap, because Defender can
make an update visible a little after the time it records (user-pains.md §8.2): re-reading the
overlap costs one page at most and the version check drops what was already stored. The first
run starts ``lookback`` ago; a backfill (``since``) starts where it is told.

The new watermark is the newest last-update time the run saw, never older than the previous one.
It is taken from the service's own timestamps, so a skewed local clock cannot open a gap.
"""

from __future__ import annotations

from collections.abc import Iterable
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
) -> datetime:
    """Where this run's listing starts.

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
    return min(_aware(watermark, "watermark") - overlap, now)


def advance(watermark: datetime | None, seen: Iterable[datetime]) -> datetime | None:
    """The watermark after a run that saw versions updated at ``seen``."""
    newest = max(seen, default=None)
    if newest is None:
        return watermark
    if watermark is None:
        return newest
    return max(watermark, newest)
