"""A tenant's checkpoint, typed: what one run leaves the next.

The checkpoint store keeps one JSON document per tenant (``shared.storage.state``): the
checkpoint itself (the end of the last completed slice) and what the next run plans with.
``Checkpoint.parse`` reads it from what the store loaded, tolerating a missing or malformed
field (it is then unknown, as on a first run: every field is an optimisation, never a
guarantee); ``info`` writes it back. Fields this version does not know are kept as they were
(``extra``), so a newer and an older app can take turns on one tenant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.core.clock import format_utc, parse_utc
from shared.storage.values import Watermark

#: incidents per hour the last completed slices held (sizes the next run's first slice)
RATE_PER_HOUR = "ratePerHour"
#: when the run that committed the checkpoint planned its listing (``window.plan_start``)
CHECKPOINT_READ_AT = "checkpointReadAt"
#: when Graph's ``$expand=alerts`` last failed for this tenant (alerts are read apart a while)
EXPAND_FAILED_AT = "expandFailedAt"
#: the slowest request of the last run, in seconds (the time budget plans with it)
SECONDS_PER_PAGE = "secondsPerPage"
#: when a run last finished, and what it did
LAST_SUCCESS = "lastSuccess"
LAST_RUN = "lastRun"
#: written by the store itself on every save
_STORE_FIELDS = ("watermark", "savedAt")
_KNOWN = (RATE_PER_HOUR, CHECKPOINT_READ_AT, EXPAND_FAILED_AT, SECONDS_PER_PAGE, LAST_SUCCESS)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One tenant's checkpoint document.

    Attributes:
        value: the end of the last completed slice (None: never ingested).
        etag: the document's ETag as loaded (None: no document), for the guarded save.
        rate_per_hour: the density of incidents seen (None: unknown).
        read_at: when the run that committed ``value`` planned its listing.
        expand_failed_at: when ``$expand=alerts`` last failed (None: never).
        seconds_per_page: the slowest request of the last run (0: unknown).
        last_success: when a run last finished.
        last_run: what that run did (for operators; never read back).
        extra: fields of a newer version, kept as they were.
    """

    value: datetime | None
    etag: str | None = None
    rate_per_hour: float | None = None
    read_at: datetime | None = None
    expand_failed_at: datetime | None = None
    seconds_per_page: float = 0.0
    last_success: datetime | None = None
    last_run: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, mark: Watermark) -> Checkpoint:
        """The checkpoint the store loaded; malformed fields read as unknown."""
        info = mark.info
        last_run = info.get(LAST_RUN)
        return cls(
            value=mark.value,
            etag=mark.etag,
            rate_per_hour=mark.rate_per_hour,
            read_at=mark.time(CHECKPOINT_READ_AT),
            expand_failed_at=mark.time(EXPAND_FAILED_AT),
            seconds_per_page=seconds(info.get(SECONDS_PER_PAGE)),
            last_success=mark.time(LAST_SUCCESS),
            last_run=dict(last_run) if isinstance(last_run, Mapping) else None,
            extra={
                k: v
                for k, v in info.items()
                if k not in _KNOWN and k != LAST_RUN and k not in _STORE_FIELDS
            },
        )

    def info(self) -> dict[str, Any]:
        """The document's fields besides the checkpoint itself (the store adds ``watermark``
        and ``savedAt``); unknown values are left out."""
        out: dict[str, Any] = dict(self.extra)
        if self.rate_per_hour is not None:
            out[RATE_PER_HOUR] = self.rate_per_hour
        if self.read_at is not None:
            out[CHECKPOINT_READ_AT] = format_utc(self.read_at)
        if self.expand_failed_at is not None:
            out[EXPAND_FAILED_AT] = format_utc(self.expand_failed_at)
        out[SECONDS_PER_PAGE] = round(self.seconds_per_page, 3)
        if self.last_success is not None:
            out[LAST_SUCCESS] = format_utc(self.last_success)
        if self.last_run is not None:
            out[LAST_RUN] = dict(self.last_run)
        return out


def seconds(value: Any) -> float:
    """A stored positive number of seconds under an hour, or 0 (missing or not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if 0 < value < 3600 else 0.0


def moment(value: Any) -> datetime | None:
    """A stored timestamp, or None when missing or malformed."""
    try:
        return parse_utc(value) if isinstance(value, str) else None
    except ValueError:
        return None
