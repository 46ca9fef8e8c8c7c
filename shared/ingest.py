"""The ingestion use case: pull incidents updated since each tenant's watermark into storage.

Per tenant, under its lock: plan the start, page through the API, and for each page drop the
versions already stored, write the rest to the archive, then record them in the latest-state
table. The watermark is saved only after every page is written, so a crash or an error means the
next run reads the same window again (and the version check keeps it from storing twice).
A failure in one tenant is reported for that tenant and never stops the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared.clock import Clock, format_utc
from shared.defender.client import DefenderClient
from shared.defender.model import Incident
from shared.errors import BridgeError, ConflictError
from shared.storage.archive import IncidentArchive, plan
from shared.storage.state import Watermark
from shared.storage.table import IncidentTable, RowVersion
from shared.window import advance, plan_start

log = logging.getLogger(__name__)


class Lock(Protocol):
    """A per-tenant lock held for the whole run (see ``shared.storage.state.TenantLock``)."""

    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...
    def renew(self) -> None: ...


class JournalLike(Protocol):
    """Write-ahead note of a page's blobs (see ``shared.storage.state.PageJournal``)."""

    def record(self, tenant: str, blob_names: list[str]) -> None: ...
    def pending(self, tenant: str) -> list[str]: ...
    def clear(self, tenant: str) -> None: ...


class WatermarkStoreLike(Protocol):
    """Loads and saves watermarks (see ``shared.storage.state.WatermarkStore``)."""

    def load(self, tenant: str) -> Watermark: ...
    def save(
        self, tenant: str, value: datetime, *, etag: str | None, saved_at: datetime
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class TenantResult:
    """What one tenant's run did. ``incidents`` counts versions newly stored."""

    tenant: str
    ok: bool
    incidents: int = 0
    pages: int = 0
    api_calls: int = 0
    watermark: str | None = None
    error: str | None = None
    error_code: str | None = None
    skipped: bool = False
    listed: int = 0
    blobs_written: int = 0
    start: str | None = None
    recovered: int = 0

    def to_json(self) -> dict[str, Any]:
        """The summary entry (stable keys of design.md, plus extra detail)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class IngestSummary:
    """The result of a run over several tenants; ``ok`` only if every tenant succeeded."""

    tenants: tuple[TenantResult, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """Whether every tenant succeeded."""
        return all(t.ok for t in self.tenants)

    def to_json(self) -> dict[str, Any]:
        """The ``ingest --json`` document."""
        return {"ok": self.ok, "tenants": [t.to_json() for t in self.tenants]}


Progress = Callable[[str, int, int], None]  # tenant, pages so far, incidents stored so far


class Ingestor:
    """Runs ingestion for tenants with the collaborators it is given.

    Args:
        client_for: builds (or returns the cached) API client of a tenant.
        archive, table, watermarks: the storage ports.
        lock_for: the lock of a tenant.
        clock: now, tz-aware UTC.
        lookback, overlap, page_size: see ``shared.window`` and the settings table.
    """

    def __init__(
        self,
        *,
        client_for: Callable[[str], DefenderClient],
        archive: IncidentArchive,
        table: IncidentTable,
        watermarks: WatermarkStoreLike,
        journal: JournalLike,
        lock_for: Callable[[str], Lock],
        clock: Clock,
        lookback: timedelta,
        overlap: timedelta,
        page_size: int,
    ) -> None:
        self._client_for = client_for
        self._archive = archive
        self._table = table
        self._watermarks = watermarks
        self._journal = journal
        self._lock_for = lock_for
        self._clock = clock
        self._lookback = lookback
        self._overlap = overlap
        self._page_size = page_size

    def run(
        self,
        tenants: Sequence[str],
        *,
        since: datetime | None = None,
        progress: Progress | None = None,
    ) -> IngestSummary:
        """Ingest each tenant in turn; failures are per tenant."""
        return IngestSummary(
            tuple(self.run_tenant(t, since=since, progress=progress) for t in tenants)
        )

    def run_tenant(
        self, tenant: str, *, since: datetime | None = None, progress: Progress | None = None
    ) -> TenantResult:
        """Ingest one tenant; never raises for a failure of that tenant."""
        client: DefenderClient | None = None
        state = _RunState()
        try:
            client = self._client_for(tenant)
            state.calls_at_start = client.api_calls
            with self._lock_for(tenant) as lock:
                return self._ingest(tenant, client, lock, since, state, progress)
        except ConflictError as exc:
            log.info("tenant %s skipped: %s", tenant, exc)
            return state.result(tenant, client, ok=True, skipped=True, error=exc)
        except BridgeError as exc:
            log.warning("tenant %s failed: %s", tenant, exc)
            return state.result(tenant, client, ok=False, error=exc)

    def _ingest(
        self,
        tenant: str,
        client: DefenderClient,
        lock: Lock,
        since: datetime | None,
        state: _RunState,
        progress: Progress | None,
    ) -> TenantResult:
        state.recovered = self._recover(tenant)
        now = self._clock()
        mark = self._watermarks.load(tenant)
        start = plan_start(
            mark.value, now, lookback=self._lookback, overlap=self._overlap, since=since
        )
        state.start = start
        state.watermark = mark.value
        seen_in_run: set[tuple[str, datetime]] = set()
        # rows that could hold a listed version: every listed version was updated >= start
        known = self._table.known_since(tenant, start)
        times: list[datetime] = []
        for page in client.iter_incident_pages(updated_since=start, page_size=self._page_size):
            state.pages += 1
            state.listed += len(page.incidents)
            fresh = _new_versions(page.incidents, seen_in_run, known)
            times.extend(i.last_update for i in page.incidents)
            if fresh:
                ingested_at = self._clock()
                planned = plan(tenant, fresh)
                self._journal.record(tenant, [b.name for b in planned])
                stored = self._archive.upload(tenant, planned, ingested_at)
                state.blobs.update(s.blob_name for s in stored)
                state.stored += self._table.upsert_newer(tenant, stored, ingested_at, known)
            lock.renew()
            if progress is not None:
                progress(tenant, state.pages, state.stored)
        new_mark = advance(mark.value, times)
        if new_mark is not None and new_mark != mark.value:
            self._watermarks.save(tenant, new_mark, etag=mark.etag, saved_at=self._clock())
        if state.blobs:
            self._journal.clear(tenant)
        state.watermark = new_mark
        log.info(
            "tenant %s: %d incidents stored of %d listed in %d pages (%d API calls) since %s",
            tenant,
            state.stored,
            state.listed,
            state.pages,
            client.api_calls - state.calls_at_start,
            format_utc(start),
        )
        return state.result(tenant, client, ok=True)

    def _recover(self, tenant: str) -> int:
        """Record in the table the blobs of a page whose run stopped before recording them.

        Returns:
            how many versions were recovered into the table.
        """
        names = self._journal.pending(tenant)
        if not names:
            return 0
        recovered = 0
        for name in names:
            stored = self._archive.read(name)
            if stored:  # None: the crash came before this blob was written
                recovered += self._table.upsert_newer(tenant, stored, self._clock())
        self._journal.clear(tenant)
        log.warning(
            "tenant %s: an earlier run stopped mid-page; %d stored versions recorded now",
            tenant,
            recovered,
        )
        return recovered


def _new_versions(
    incidents: Sequence[Incident],
    seen_in_run: set[tuple[str, datetime]],
    known: dict[str, RowVersion],
) -> list[Incident]:
    """Versions not yet stored: not read earlier in this run, and newer than the table's."""
    fresh: list[Incident] = []
    for incident in incidents:
        if incident.version in seen_in_run:
            continue  # the list moved while we paged and showed it twice
        seen_in_run.add(incident.version)
        row = known.get(incident.id)
        if row is None or row.last_update < incident.last_update:
            fresh.append(incident)
    return fresh


@dataclass
class _RunState:
    pages: int = 0
    listed: int = 0
    stored: int = 0
    start: datetime | None = None
    watermark: datetime | None = None
    blobs: set[str] = field(default_factory=set)
    calls_at_start: int = 0
    recovered: int = 0

    def result(
        self,
        tenant: str,
        client: DefenderClient | None,
        *,
        ok: bool,
        skipped: bool = False,
        error: BridgeError | None = None,
    ) -> TenantResult:
        return TenantResult(
            tenant=tenant,
            ok=ok,
            incidents=self.stored,
            pages=self.pages,
            api_calls=client.api_calls - self.calls_at_start if client is not None else 0,
            watermark=format_utc(self.watermark) if self.watermark else None,
            error=str(error) if error is not None else None,
            error_code=error.code if error is not None else None,
            skipped=skipped,
            listed=self.listed,
            blobs_written=len(self.blobs),
            start=format_utc(self.start) if self.start else None,
            recovered=self.recovered,
        )
