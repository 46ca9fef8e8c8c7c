"""What one tenant's run is about (``Scope``) and what it has done so far (``Tally``)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared.ports import IncidentSource, Lease
from shared.storage.values import RowVersion

#: table rows a run keeps of those it read or wrote last, so ground the listing reads again
#: (an overflowing slice read again by its sub-slices, a stretch planned again) needs no read
#: (memory: about 400 bytes a row, 4 MiB). Measured on 10,000-incident backfills: keeping 1,000
#: rows, Graph read 392 ids by point reads and legacy 228 (create-first transactions refused by
#: rows the run itself had written 1,000-10,000 rows before); keeping 10,000, only the first
#: answer's 50 and 100
RECENT_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class Scope:
    """The tenant a run is for, its incident source and its lease."""

    tenant: str
    source: IncidentSource
    lease: Lease


@dataclass
class Tally:
    """Mutable counters and state of one tenant's run."""

    tenant: str
    started: float
    pages: int = 0
    listed: int = 0
    stored: int = 0
    slices: int = 0
    splits: int = 0
    quarantined: int = 0
    clamped: int = 0
    recovered: int = 0
    tie_warnings: int = 0
    now: datetime | None = None  # when the listing was planned: every slice is read after it
    start: datetime | None = None
    end: datetime | None = None
    reached: datetime | None = None
    checkpoint: datetime | None = None
    blobs: set[str] = field(default_factory=set)
    calls_at_start: int = 0
    throttled_at_start: int = 0
    complete: bool = False
    stopped: str | None = None
    resume_at: datetime | None = None  # a quota stop: when the next call may start
    alerts: str | None = None
    lag: float | None = None
    lag_warning: bool = False
    etag: str | None = None  # of the checkpoint, as last written
    set_aside: set[str] = field(default_factory=set)  # quarantine blobs of this run
    # write an answer's rows without reading first (``VersionStore``): from the start of a
    # tenant's first run (no checkpoint: nothing stored, as a rule), and in any run once an
    # answer met no stored row, so a run that re-reads stored ground (the overlap, an idle
    # tenant) reads before it writes and writes nothing
    create_first: bool = False
    recent: OrderedDict[str, RowVersion] = field(default_factory=OrderedDict)

    def remember(self, rows: Mapping[str, RowVersion]) -> None:
        """Keep the rows last read or written (at most ``RECENT_ROWS``, the oldest go)."""
        for rid, row in rows.items():
            self.recent[rid] = row
            self.recent.move_to_end(rid)
        while len(self.recent) > RECENT_ROWS:
            self.recent.popitem(last=False)
