"""The ingestion use case: each tenant's incidents, read by time slices, stored exactly once.

Per tenant, under its lease, oldest first:

1. Recover: blobs an earlier run wrote but did not record in the table (write-ahead journal)
   are recorded first, so they are known before anything is listed.
2. Plan: the listing covers ``[checkpoint - overlap, now - safety lag)`` (first run: the
   lookback; ``--since``: a backfill) and is cut into slices by ``shared.defender.slices``. The
   overlap is not re-read where the run that committed the checkpoint read it lag + overlap
   after its time (a backlog: ``shared.usecases.ingest.window.plan_start``).
3. For each answer: records without an id or last-update time go to quarantine (counted,
   never blocking); future last-update times are clamped to now + ``CLOCK_SKEW`` (logged) so one
   bad clock cannot make a row unbeatable; once an answer of the run met no stored row, the
   next answers are stored create-first (their rows in one atomic create-only transaction, then
   their blobs, the rows noted in the journal: ``_create_first``); otherwise the ids are looked
   up by point reads (rows the run read or wrote lately are known without a read); versions not
   stored yet are noted in the journal, written to blobs, then recorded in the table in
   batched conditional transactions. The cost per answer does not grow with the table
   (``shared.storage.table``).
4. When the answer completed a slice, the checkpoint moves to the slice's end (ETag-guarded,
   never backwards) and the density seen is kept for the next run. ``notify`` (push) hears of
   an answer's new versions before they are stored (step 3; create-first: right after their
   rows are created, before their blobs, see ``_create_first``): once a version is in the
   table it is never new again, so recording it first is what makes a crash unable to lose it.
5. The run stops starting slices before its time budget, or when the API quota is spent for
   longer than a call may wait (``stopped="quota"``, a success), and says how far it got; the
   next run resumes at the checkpoint, so a backlog of any size finishes over successive runs
   and no slice is read twice except the overlap of runs that keep up.

Why nothing is lost (resting only on documented behaviour, see ``shared.defender.slices`` and
``docs/listing.md``): a slice is complete only when one answer for exactly it had no nextLink
and fewer than ``$top`` items (or as many as its ``@odata.count``), so it held every incident
then updated in it; on Graph, a slice older than the late-arrival bound may instead be read
across its pages and is complete when its first page's ``@odata.count`` is matched by as many
distinct incidents read (``PagedRead``: nothing can enter such a slice, so those are all of
them), whichever pages carry the count; slices complete oldest first and the checkpoint never
passes the end of the last complete one, which is at most now minus the safety lag. An update
made visible late (Defender can show an update after the time it records) is read if it became
visible within the safety lag of its time; in steady state (runs keeping up) also if within
lag + overlap, because every run re-reads the overlap before its checkpoint.

Why nothing is stored twice: a version (id, exact last-update text) is written only when the
table holds neither it nor a newer one; blobs are named by the digest of their versions, so a
retry rewrites the same blob; a crash between blobs and table is repaired by the journal before
the next listing; one writer per tenant is enforced by a lease kept alive by a timer and checked
before every write, and a run that loses it stops at once with an error (``lease_lost``).

Faults stay in their tenant: anything raised in one tenant's run, typed or not, becomes that
tenant's failed result with a code; the others go on.

User runs: ``ingest --as-user`` is refused by the CLI (``shared.cli.ingest``): a user's view is
trimmed by Defender RBAC, so it must not move the app's checkpoint, and keeping a checkpoint
per user would store a partial lake; ``incidents list --as-user`` is the way to see a user's view.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared.core.clock import Clock, format_utc, parse_utc
from shared.core.errors import (
    BridgeError,
    ConflictError,
    LeaseLostError,
    ThrottledError,
    TransientError,
    UnexpectedResponseError,
    UpstreamError,
)
from shared.core.invocation import InvocationExecutor
from shared.defender.client import MAX_SKIP, DefenderClient, SlicePage
from shared.defender.model import Incident, normalize
from shared.defender.slices import Item, Listing, PairPasses, SliceRequest
from shared.storage.archive import IncidentArchive, Quarantine, placed, plan, quarantine_name
from shared.storage.batch import TRANSACTION_SIZE
from shared.storage.state import JournalNote, Watermark
from shared.storage.table import IncidentTable, RowVersion, is_stored, version_text
from shared.usecases.ingest.window import plan_start

log = logging.getLogger(__name__)

#: a last-update time later than now plus this is clamped to it (and logged): Defender's clocks
#: and ours agree far better than this, so a later time is a bad record, not skew
CLOCK_SKEW = timedelta(minutes=5)
#: Graph refuses ``$top`` over 50 on /security/incidents (docs/defender-service.md#listing-limits)
GRAPH_INCIDENT_TOP = 50
#: after a filtered ``$expand=alerts`` listing failed with 500 for a tenant, alerts are read
#: apart from incidents for this long before expanding is tried again (elastic/integrations#18144)
EXPAND_RETRY_AFTER = timedelta(hours=24)
#: checkpoint info: when the run that committed the checkpoint planned its listing (see
#: ``shared.usecases.ingest.window.plan_start``)
CHECKPOINT_READ_AT = "checkpointReadAt"
#: table rows a run keeps of those it read or wrote last, so an overflowing slice read again
#: by its sub-slices needs no read (memory: a few hundred KiB)
RECENT_ROWS = 1000


class Lock(Protocol):
    """A per-tenant lease held for the whole run (see ``shared.storage.state.TenantLock``)."""

    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...
    def ensure(self) -> None: ...


class JournalLike(Protocol):
    """Write-ahead note of a page's blobs (see ``shared.storage.state.PageJournal``)."""

    def record(
        self,
        tenant: str,
        blob_names: list[str],
        created: Mapping[str, Sequence[str]] | None = None,
    ) -> None: ...
    def note(self, tenant: str) -> JournalNote: ...
    def clear(self, tenant: str) -> None: ...


class WatermarkStoreLike(Protocol):
    """Loads and saves checkpoints (see ``shared.storage.state.WatermarkStore``)."""

    def load(self, tenant: str) -> Watermark: ...
    def save(
        self,
        tenant: str,
        value: datetime,
        *,
        etag: str | None,
        saved_at: datetime,
        info: dict[str, Any] | None = None,
    ) -> str: ...


#: ``(tenant, versions about to be stored, ids of those the table has no row of)``: records the
#: change durably and quickly (``shared.usecases.push.outbox``); raising fails the answer before
#: anything
#: of it is stored, so no change is stored without being recorded
Notify = Callable[[str, Sequence[Incident], frozenset[str]], None]


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """Where a tenant's run is, for a progress display."""

    tenant: str
    slices: int
    stored: int
    listed: int
    start: datetime
    cursor: datetime
    end: datetime
    elapsed: float  # seconds

    @property
    def fraction(self) -> float:
        """Share of the listing's time range read so far."""
        total = (self.end - self.start).total_seconds()
        done = (self.cursor - self.start).total_seconds()
        return 1.0 if total <= 0 else max(0.0, min(1.0, done / total))

    @property
    def seconds_left(self) -> float | None:
        """Estimated seconds to the end at the pace so far (None before any progress)."""
        fraction = self.fraction
        if fraction <= 0 or self.elapsed <= 0:
            return None
        return self.elapsed * (1 - fraction) / fraction


Progress = Callable[[IngestProgress], None]


@dataclass(frozen=True, slots=True)
class TenantResult:
    """What one tenant's run did. ``incidents`` counts versions newly stored.

    Stable keys (docs/ingestion.md#run-summary): tenant, ok, incidents, pages, api_calls,
    watermark, error.
    ``watermark`` is the checkpoint after the run; ``complete`` says whether the run reached
    the listing's end (False: it stopped, and the next run resumes at the checkpoint);
    ``stopped`` says why: ``"time budget"``, or ``"quota"`` when the next API call slot (the
    client's limiter, or the service's ``Retry-After``) was further away than a call may wait
    (``API_MAX_RETRY_WAIT_SECONDS``): a quota stop is a success (``ok``), with ``resume_at``
    the time the quota frees (None when unknown); ``reached``: every incident updated in
    ``[start, reached)`` was read (where a backfill resumes).
    """

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
    end: str | None = None
    reached: str | None = None
    recovered: int = 0
    slices: int = 0
    splits: int = 0
    throttled: int = 0
    duration: float = 0.0
    lag_seconds: float | None = None
    lag_warning: bool = False
    quarantined: int = 0
    clamped: int = 0
    complete: bool = False
    stopped: str | None = None
    alerts: str | None = None  # "embedded" (legacy), "expanded", or "separate" (8.5 fallback)
    tie_warnings: int = 0
    resume_at: str | None = None  # stopped == "quota": when the next call may start

    def to_json(self) -> dict[str, Any]:
        """The summary entry (the stable keys of docs/ingestion.md#run-summary, plus extra
        detail)."""
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


@dataclass
class _Run:
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
    # write an answer's rows without reading first (``_create_first``): only once an answer of
    # this run met no stored row, so a run that re-reads stored ground (the overlap, an idle
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


class _Writer:
    """One background thread that stores answers in order while the next one is fetched.

    ``submit`` (an answer's writes) first waits for every task before it, so memory holds at
    most two answers, and raises a failure of theirs on the fetching thread; ``then`` queues a
    small task (a checkpoint) behind them without waiting, so the next fetch still overlaps
    the writes before it.
    """

    def __init__(self, name: str) -> None:
        # the writer logs with the invocation that started the run (shared.core.invocation)
        self._pool = InvocationExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: list[Future[None]] = []
        self._failed = False  # set on the writer thread; tasks after a failure do not run

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self.drain()
        self.then(fn, *args)

    def then(self, fn: Callable[..., None], *args: Any) -> None:
        self._pending.append(self._pool.submit(self._guarded, fn, *args))

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        # a checkpoint queued behind an answer whose writes failed must never move: it would
        # pass versions that were not stored
        if self._failed:
            raise RuntimeError("an earlier write of this run failed")
        try:
            fn(*args)
        except BaseException:
            self._failed = True
            raise

    def drain(self) -> None:
        """Wait for the pending tasks, in order; the first failure is raised here (the tasks
        after a failed one do not run: see ``_guarded``)."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        """End the thread; tasks still in flight (the run is failing) are let finish first,
        so no write outlives the run's lease, and their own failures are not raised over the
        run's."""
        pending, self._pending = self._pending, []
        for future in pending:
            with contextlib.suppress(Exception):
                future.result()
        self._pool.shutdown(wait=True)


class Ingestor:
    """Runs ingestion for tenants with the collaborators it is given.

    Args:
        client_for: builds (or returns the cached) API client of a tenant.
        archive, table, watermarks, journal, quarantine: the storage ports.
        lock_for: the lease of a tenant.
        clock: now, tz-aware UTC; ``monotonic``: seconds, for the time budget.
        lookback, overlap, page_size, safety_lag, time_budget, lag_warning: see the settings.
        notify: told ``(tenant, versions, created ids)`` of each answer before its versions
            are stored (see ``Notify``); it must be quick and must not talk to subscribers.
        observe: told each tenant's result (health telemetry, ``shared.telemetry``).
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
        quarantine: Quarantine | None = None,
        safety_lag: timedelta = timedelta(seconds=60),
        time_budget: timedelta = timedelta(seconds=480),
        lag_warning: timedelta = timedelta(minutes=60),
        notify: Notify | None = None,
        observe: Callable[[TenantResult], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
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
        self._quarantine = quarantine
        self._safety_lag = safety_lag
        self._budget = time_budget.total_seconds()
        self._lag_warning = lag_warning
        self._notify = notify
        self._observe = observe
        self._monotonic = monotonic

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
        result = self._run_tenant(tenant, since, progress)
        if self._observe is not None:
            try:
                self._observe(result)
            except Exception:  # health reporting never fails ingestion
                log.exception("recording the health of tenant %s failed", tenant)
        return result

    def _run_tenant(
        self, tenant: str, since: datetime | None, progress: Progress | None
    ) -> TenantResult:
        client: DefenderClient | None = None
        run = _Run(tenant, self._monotonic())
        try:
            client = self._client_for(tenant)
            run.calls_at_start = client.api_calls
            run.throttled_at_start = client.throttled_waits
            lock = self._lock_for(tenant)
            try:
                lock.__enter__()
            except ConflictError as exc:
                # another run holds the tenant: a normal event, not a failure
                log.info("tenant %s skipped: %s", tenant, exc)
                return self._result(run, client, ok=True, skipped=True, error=exc)
            try:
                self._ingest(tenant, client, lock, since, run, progress)
            finally:
                lock.__exit__(None, None, None)
            return self._result(run, client, ok=True)
        except LeaseLostError as exc:
            log.error("tenant %s stopped: %s", tenant, exc)
            return self._result(run, client, ok=False, error=exc)
        except BridgeError as exc:
            log.warning("tenant %s failed: %s", tenant, exc)
            return self._result(run, client, ok=False, error=exc)
        except Exception as exc:  # a bug or an SDK error outside our hierarchy: this tenant only
            log.exception("tenant %s failed unexpectedly", tenant)
            wrapped = BridgeError(f"unexpected {type(exc).__name__} while ingesting (see the log)")
            wrapped.code = "internal"
            return self._result(run, client, ok=False, error=wrapped)

    # ------------------------------------------------------------------ the run

    def _ingest(
        self,
        tenant: str,
        client: DefenderClient,
        lock: Lock,
        since: datetime | None,
        run: _Run,
        progress: Progress | None,
    ) -> None:
        lock.ensure()
        run.recovered = self._recover(tenant, lock)
        mark = self._watermarks.load(tenant)
        etag = mark.etag
        now = self._clock()
        upper = now - self._safety_lag
        # the run that committed the checkpoint began at ``checkpointReadAt``: what lies lag +
        # overlap before that was read long enough after its time for late updates to show,
        # so a backlog resumes at its checkpoint instead of re-reading the overlap every run
        read_at = mark.time(CHECKPOINT_READ_AT)
        start = min(
            plan_start(
                mark.value,
                now,
                lookback=self._lookback,
                overlap=self._overlap,
                since=since,
                settled=None if read_at is None else read_at - self._safety_lag - self._overlap,
            ),
            upper,
        )
        run.now, run.start, run.end, run.checkpoint = now, start, upper, mark.value
        graph = client.api == "graph"
        top = min(self._page_size, GRAPH_INCIDENT_TOP) if graph else self._page_size
        listing = Listing(
            start,
            upper,
            page_size=top,
            rate_per_hour=mark.rate_per_hour,
            # Graph gives @odata.count: slices older than the late-arrival bound are read
            # across pages and verified by count (shared.defender.slices); legacy has no count
            paged_items=MAX_SKIP if graph else 0,
            settled=upper - self._overlap if graph else None,
        )
        expand_failed = mark.time("expandFailedAt")
        expand = graph and (expand_failed is None or now - expand_failed > EXPAND_RETRY_AFTER)
        run.alerts = "embedded" if not graph else "expanded" if expand else "separate"
        run.etag = etag
        info: dict[str, Any] = dict(mark.info)
        deadline = run.started + self._budget
        # the slowest request of this run (of the last run until one is measured; kept in the
        # checkpoint): a run starts a request only with twice that left, and sizes paged slices
        # to the pages that fit in half the time left, so a slice never needs more time than a
        # run has and a backlog always moves on
        prior = _positive(info.get("secondsPerPage"))
        slowest = 0.0
        # Fetching and writing overlap: the writer thread stores one answer while the next is
        # fetched. Writes stay in order, one at a time (dedup lookups see every earlier write;
        # a checkpoint is written after its slice's pages), so what is stored, and when the
        # checkpoint moves, is as without the overlap; at most two answers are held.
        writer = _Writer(f"ingest-{tenant[:8]}")
        try:
            while (
                request := listing.next(self._fits(deadline, slowest or prior, top))
            ) is not None:
                began = self._monotonic()
                if deadline - began < max(5.0, 2 * (slowest or prior)):
                    run.stopped = "time budget"
                    break
                completed: bool | None
                try:
                    if request.exhaust:
                        writer.drain()
                        page = self._exhaust(
                            tenant, client, lock, request, top, expand, deadline, run
                        )
                        read = listing.reader(request)
                        read.add(_items(page.items, client.api), count=None, linked=False)
                        completed = listing.record(request, read)
                    elif request.paged:
                        completed, expand, slowest = self._read_paged(
                            tenant, client, lock, listing, request, top, expand, deadline, run,
                            info, writer, slowest,
                        )  # fmt: skip
                    else:
                        page, expand = self._fetch(
                            client, request, top, expand, deadline, run, info
                        )
                        run.pages += 1
                        self._store(writer, tenant, client, lock, page, run)
                        read = listing.reader(request)
                        read.add(
                            _items(page.items, client.api),
                            count=page.count,
                            linked=page.next_link is not None,
                        )
                        completed = listing.record(request, read)
                except ThrottledError as exc:
                    # the quota is spent for longer than a call may wait: commit what was read
                    # and stop cleanly; the next run resumes at the checkpoint (the queue
                    # worker parks the tenant until ``resume_at``)
                    self._quota_stop(client, exc, run)
                    break
                except TransientError:
                    if self._monotonic() >= deadline - 1:
                        run.stopped = "time budget"  # the last call ran out of the run's time
                        break
                    raise
                if not request.paged:
                    slowest = max(slowest, self._monotonic() - began)
                info["secondsPerPage"] = round(slowest, 3)
                if completed is None:
                    run.stopped = "time budget"  # a paged slice stopped between its pages
                    break
                if not completed:
                    run.splits += 1
                    continue
                run.slices += 1
                writer.then(
                    self._commit, tenant, lock, listing.cursor, listing.rate_per_hour, run, info,
                    progress,
                )  # fmt: skip
            writer.drain()
        finally:
            writer.close()
        etag = run.etag
        run.complete = listing.next() is None
        run.reached = listing.cursor
        if run.blobs:
            lock.ensure()
            self._journal.clear(tenant)
        finished = self._clock()
        if run.checkpoint is None:
            # no slice completed (a tiny budget, or nothing to read): keep the listing's start
            # and, above all, the density seen, so the next run's first slice fits a page and
            # every run makes progress
            run.checkpoint = start
        if run.checkpoint is not None:
            run.lag = (finished - run.checkpoint).total_seconds()
            run.lag_warning = finished - run.checkpoint > self._lag_warning
            if run.lag_warning:
                log.warning(
                    "tenant %s lags: checkpoint %s is %.0f minutes old (threshold %.0f)",
                    tenant,
                    format_utc(run.checkpoint),
                    run.lag / 60,
                    self._lag_warning.total_seconds() / 60,
                )
            lock.ensure()
            info["ratePerHour"] = listing.rate_per_hour
            info["lastSuccess"] = format_utc(finished)
            info["lastRun"] = {
                "at": format_utc(finished),
                "complete": run.complete,
                "stopped": run.stopped,
                "incidents": run.stored,
                "apiCalls": client.api_calls - run.calls_at_start,
                "quarantined": run.quarantined,
                "alerts": run.alerts,
            }
            self._watermarks.save(tenant, run.checkpoint, etag=etag, saved_at=finished, info=info)
        log.info(
            "tenant %s: %d stored of %d listed, %d slices (%d splits), %d API calls, "
            "checkpoint %s%s",
            tenant,
            run.stored,
            run.listed,
            run.slices,
            run.splits,
            client.api_calls - run.calls_at_start,
            format_utc(run.checkpoint) if run.checkpoint else "-",
            "" if run.complete else f" (stopped: {run.stopped}; the next run goes on)",
        )

    def _quota_stop(self, client: DefenderClient, exc: ThrottledError, run: _Run) -> None:
        """Record a stop for quota: when the next call may start, from the error's wait and
        the client's rate-limit buckets (a ``Retry-After`` pauses them), whichever is later."""
        wait = max(exc.retry_after or 0.0, client.quota_wait())
        run.stopped = "quota"
        run.resume_at = self._clock() + timedelta(seconds=wait) if wait > 0 else None
        log.info(
            "tenant %s: API quota spent (%s); stopping the run cleanly, resuming %s",
            run.tenant,
            exc,
            "when the next run starts"
            if run.resume_at is None
            else f"at {format_utc(run.resume_at)} or later",
        )

    def _fetch(
        self,
        client: DefenderClient,
        request: SliceRequest,
        top: int,
        expand: bool,
        deadline: float,
        run: _Run,
        info: dict[str, Any],
    ) -> tuple[SlicePage, bool]:
        """One answer for a slice, falling back from ``$expand=alerts`` when it fails
        (docs/defender-service.md#large-expansions)."""
        graph = client.api == "graph"
        try:
            return client.incident_slice(
                request, top=top, count=graph, expand=expand, deadline=deadline
            ), expand
        except TransientError as exc:
            if not (expand and exc.status == 500):
                raise
            self._expand_failed(run, info)
            return client.incident_slice(
                request, top=top, count=graph, expand=False, deadline=deadline
            ), False

    def _expand_failed(self, run: _Run, info: dict[str, Any]) -> None:
        log.warning(
            "tenant %s: a filtered listing with $expand=alerts answers 500 (a known service "
            "limit on large tenants); reading alerts apart from incidents for %s",
            run.tenant,
            EXPAND_RETRY_AFTER,
        )
        info["expandFailedAt"] = format_utc(self._clock())
        run.alerts = "separate"

    def _read_paged(
        self,
        tenant: str,
        client: DefenderClient,
        lock: Lock,
        listing: Listing,
        request: SliceRequest,
        top: int,
        expand: bool,
        deadline: float,
        run: _Run,
        info: dict[str, Any],
        writer: _Writer,
        slowest: float,
    ) -> tuple[bool | None, bool, float]:
        """Read a slice across its pages (Graph) and record whether they proved it complete.

        Every page is stored as it comes (its versions are real, whatever the verdict). The
        slice is complete when its first page carried ``@odata.count`` and as many distinct
        incidents of the slice were read (the argument is in ``shared.defender.slices``), or one
        short answer held it; otherwise the planner narrows it. Returns (completed, or None when
        the time budget ran out between pages; whether ``$expand`` is still used; the slowest
        request seen).
        """
        while True:
            try:
                done, slowest = self._paged_pass(
                    tenant, client, lock, listing, request, top, expand, deadline, run, writer,
                    slowest,
                )  # fmt: skip
                return done, expand, slowest
            except TransientError as exc:
                if not (expand and exc.status == 500):
                    raise
                self._expand_failed(run, info)
                expand = False  # pages stored so far are kept; the slice is read again

    def _paged_pass(
        self,
        tenant: str,
        client: DefenderClient,
        lock: Lock,
        listing: Listing,
        request: SliceRequest,
        top: int,
        expand: bool,
        deadline: float,
        run: _Run,
        writer: _Writer,
        slowest: float,
    ) -> tuple[bool | None, float]:
        read = listing.reader(request)
        began = self._monotonic()
        for page in client.slice_pages(request, top=top, expand=expand, deadline=deadline):
            now = self._monotonic()
            slowest, began = max(slowest, now - began), now
            run.pages += 1
            self._store(writer, tenant, client, lock, page, run)
            more = read.add(
                _items(page.items, client.api), count=page.count, linked=page.next_link is not None
            )
            if not more:
                break
            left = deadline - now
            if left < max(5.0, 2 * slowest):  # this slice's pages were measured
                # out of time between pages: what was read is stored, and the planner learns
                # the slice's count (the next run plans smaller slices from the density)
                listing.record(request, read)
                return None, slowest
            pages_left = math.ceil(((read.count or 0) - len(read.seen)) / top)
            if pages_left * slowest > (left - 5.0) / 2:
                # the rest of this slice would not fit in the time left: split it into slices
                # that do (``_fits``), so this run still completes some
                return listing.record(request, read), slowest
        if read.unstable:
            log.info(
                "tenant %s: pages of one slice repeated incidents (%d distinct of %d counted); "
                "the service's order is not stable between requests, so one page per slice "
                "from now on",
                tenant,
                len(read.seen),
                read.count,
            )
        return listing.record(request, read), slowest

    def _fits(self, deadline: float, slowest: float, top: int) -> int | None:
        """The most incidents a paged slice may hold to be read in half the time left."""
        if slowest <= 0:
            return None  # nothing measured yet
        pages = (deadline - self._monotonic() - 5.0) / (2 * slowest)  # slowest > 0 here
        return max(0, math.floor(pages)) * top

    def _store(
        self,
        writer: _Writer,
        tenant: str,
        client: DefenderClient,
        lock: Lock,
        page: SlicePage,
        run: _Run,
    ) -> None:
        """Hand one answer to the writer (or store it here when its alerts must be read with
        the client: API calls stay on the fetching thread)."""
        if client.api == "graph" and not page.expanded:
            writer.drain()
            self._take(tenant, client, lock, page, run)
        else:
            writer.submit(self._take, tenant, client, lock, page, run)

    def _commit(
        self,
        tenant: str,
        lock: Lock,
        cursor: datetime,
        rate_per_hour: float | None,
        run: _Run,
        info: dict[str, Any],
        progress: Progress | None,
    ) -> None:
        """After a completed slice's pages are stored: move the checkpoint to its end (ETag-
        guarded, never backwards), show progress (writer thread)."""
        if run.checkpoint is None or cursor > run.checkpoint:
            lock.ensure()
            info["ratePerHour"] = rate_per_hour
            if run.now is not None:
                info[CHECKPOINT_READ_AT] = format_utc(run.now)
            run.etag = self._watermarks.save(
                tenant, cursor, etag=run.etag, saved_at=self._clock(), info=dict(info)
            )
            run.checkpoint = cursor
        if progress is not None and run.start is not None and run.end is not None:
            progress(
                IngestProgress(
                    tenant,
                    run.slices,
                    run.stored,
                    run.listed,
                    run.start,
                    cursor,
                    run.end,
                    self._monotonic() - run.started,
                )
            )

    def _exhaust(
        self,
        tenant: str,
        client: DefenderClient,
        lock: Lock,
        request: SliceRequest,
        top: int,
        expand: bool,
        deadline: float,
        run: _Run,
    ) -> SlicePage:
        """Last resort for more than a page at one (last update, created) pair: read it through
        its links, pass after pass, until a pass reads as many distinct incidents as its first
        page counted, or all passes together as many as the very first count, or (with no
        count at all) two passes in a row find nothing new (``PairPasses``). Without a count
        links and offsets may shift while we page, so that is weaker than a slice; it is
        logged as such.

        Raises:
            UnexpectedResponseError: the passes never added up (the run fails, losing nothing;
                the next one tries again).
        """
        log.warning(
            "tenant %s: more than %d incidents share the last-update time %s and one creation "
            "time; paging them through links until the pages add up",
            tenant,
            top - 1,
            format_utc(request.start),
        )
        run.tie_warnings += 1
        passes = PairPasses()
        latest: dict[str, dict[str, Any]] = {}
        while True:
            for page in client.exhaust_slice(request, top=top, expand=expand, deadline=deadline):
                run.pages += 1
                self._take(tenant, client, lock, page, run)
                items = _items(page.items, client.api)
                passes.add(items, count=page.count)
                for (key, _, _), raw in zip(items, page.items, strict=True):
                    if key is not None:
                        latest[key] = raw
            if passes.end_pass():
                break
        if passes.given_up:
            raise UnexpectedResponseError(
                f"incidents at {format_utc(request.start)} kept changing over "
                f"{passes.passes} passes"
            )
        if passes.first is None:
            log.warning(
                "tenant %s: no page carried @odata.count; the incidents at %s were taken as "
                "read when two passes found nothing new",
                tenant,
                format_utc(request.start),
            )
        read = list(latest.values())
        return SlicePage(read, None, len(read), top, expanded=expand)

    def _take(
        self, tenant: str, client: DefenderClient, lock: Lock, page: SlicePage, run: _Run
    ) -> None:
        """Store the versions of one answer that are not stored yet (quarantine the rest)."""
        run.listed += len(page.items)
        now = self._clock()
        incidents: list[Incident] = []
        for raw in page.items:
            try:
                incident = normalize(raw, client.api)
                if not incident.id:
                    raise UnexpectedResponseError("incident with an empty id")
            except UpstreamError as exc:
                self._set_aside(tenant, client, lock, raw, str(exc), now, run)
                continue
            if incident.last_update > now + CLOCK_SKEW:
                log.warning(
                    "tenant %s: incident %s has a last-update time %s in the future; using %s",
                    tenant,
                    incident.id,
                    format_utc(incident.last_update),
                    format_utc(now + CLOCK_SKEW),
                )
                run.clamped += 1
                incident = replace(incident, last_update=now + CLOCK_SKEW)
            incidents.append(incident)
        if not incidents:
            return
        newest: dict[str, Incident] = {}  # one version per id and write: the newest
        for incident in incidents:
            held = newest.get(incident.id)
            if held is None or held.last_update < incident.last_update:
                newest[incident.id] = incident
        alerts_apart = client.api == "graph" and not page.expanded
        # rows this run read or wrote lately need no read: a slice that overflowed is read
        # again at once by its sub-slices (every table write is conditional, so a row changed
        # since by another writer only makes its write refused and read again)
        known = {rid: run.recent[rid] for rid in newest if rid in run.recent}
        unknown = [i for i in newest.values() if i.id not in known]
        if unknown and run.create_first and not alerts_apart and len(unknown) <= TRANSACTION_SIZE:
            created, rows = self._create_first(tenant, lock, unknown, run)
            known.update(rows)
            # rows exist around here (an overlap, updates): read before writing from now on
            run.create_first = created
        elif unknown:
            rows = self._table.lookup(tenant, (i.id for i in unknown))
            known.update(rows)
            # back to writing first once an answer meets no stored row (new ground again)
            run.create_first = not rows
        run.remember(known)
        fresh = [i for i in newest.values() if not is_stored(known.get(i.id), i)]
        if not fresh:
            return
        if alerts_apart:
            fresh = self._with_alerts(client, fresh)  # only for versions to store: API calls
        if self._notify is not None:
            # before anything is stored: a version in the table is never "fresh" again, so a
            # crash after storing it must not be able to lose its change (at least once)
            self._notify(tenant, fresh, frozenset(i.id for i in fresh if i.id not in known))
        lock.ensure()
        ingested_at = self._clock()
        planned = plan(tenant, fresh)
        self._journal.record(tenant, [b.name for b in planned])
        lock.ensure()
        stored = self._archive.upload(tenant, planned, ingested_at)
        run.blobs.update(s.blob_name for s in stored)
        lock.ensure()
        written = self._table.upsert_newer(tenant, stored, ingested_at, known)
        run.remember(known)  # with the ETags of what was just written
        run.stored += len(fresh)
        if written != len(fresh):
            log.info(
                "tenant %s: %d of %d versions were already in the table (another writer)",
                tenant,
                len(fresh) - written,
                len(fresh),
            )

    def _create_first(
        self, tenant: str, lock: Lock, versions: list[Incident], run: _Run
    ) -> tuple[bool, dict[str, RowVersion]]:
        """Store an answer's versions without reading the table first, when none of them has a
        row yet (a backfill, new ground): their rows in one create-only transaction, which is
        atomic and refused if any row exists, then their blobs. Returns (True, the rows
        written) when stored; otherwise (False, the table's rows of these ids, by point
        reads), for the usual path.

        Rows come before their blobs here, so the journal notes the rows too: should the run
        stop in between, the next run deletes the rows whose blob is missing (``_recover``) and
        lists those versions again (the checkpoint has not passed them).
        """
        planned = plan(tenant, versions)
        rows = placed(planned)
        lock.ensure()
        ingested_at = self._clock()
        self._journal.record(
            tenant,
            [b.name for b in planned],
            created={b.name: [i.id for i in b.versions] for b in planned},
        )
        lock.ensure()
        known = self._table.create_new(tenant, rows, ingested_at)
        if known is None:
            known = self._table.lookup(tenant, (v.incident.id for v in rows))
            if not all(_ours(known.get(v.incident.id), v.blob_name, v.incident) for v in rows):
                return False, known  # the table holds some of these ids: nothing was written
            if all(self._archive.exists(b.name) for b in planned):
                return False, known  # the same versions, read again, were stored whole before
            # every row is this write's own and a blob is missing: an earlier attempt of the
            # transaction went through and its answer was lost; the blobs are still to write
        if self._notify is not None:
            # after the rows (only now is it known that every version is new to the store) and
            # before the blobs: a crash in between leaves rows without blobs, which the next
            # run's recovery deletes and lists again, so the change is heard at least once
            self._notify(tenant, versions, frozenset(v.id for v in versions))
        # no lease check between the rows and their blobs: rows once created are completed by
        # their blobs whatever happens to the lease (a run that took the tenant over skips
        # them as stored), while stopping here would leave rows without their versions
        self._archive.upload(tenant, planned, ingested_at)
        run.blobs.update(b.name for b in planned)
        run.stored += len(versions)
        return True, known

    def _with_alerts(self, client: DefenderClient, incidents: list[Incident]) -> list[Incident]:
        """Graph without ``$expand``: attach each incident's alerts, read apart
        (docs/defender-service.md#large-expansions)."""
        alerts, _ = client.alerts_of_incidents([i.id for i in incidents])
        out: list[Incident] = []
        for incident in incidents:
            raw = {**incident.raw, "alerts": alerts.get(incident.id, [])}
            out.append(replace(incident, raw=raw, alert_count=len(raw["alerts"])))
        return out

    def _set_aside(
        self,
        tenant: str,
        client: DefenderClient,
        lock: Lock,
        raw: Any,
        reason: str,
        now: datetime,
        run: _Run,
    ) -> None:
        name = quarantine_name(tenant, raw, now.date().isoformat())
        if name in run.set_aside:
            return  # read again by a later slice of this run: set aside (and counted) once
        run.set_aside.add(name)
        run.quarantined += 1
        log.warning("tenant %s: a record was quarantined: %s", tenant, reason)
        if self._quarantine is not None:
            lock.ensure()
            self._quarantine.put(tenant, client.api, raw, reason, now)

    def _recover(self, tenant: str, lock: Lock) -> int:
        """Record in the table the blobs of a page whose run stopped before recording them.

        Returns:
            how many versions were recovered into the table.
        """
        note = self._journal.note(tenant)
        if not note.blobs:
            return 0
        recovered = forgotten = 0
        for name in note.blobs:
            stored = self._archive.read(name)
            if stored:
                lock.ensure()
                recovered += self._table.upsert_newer(tenant, stored, self._clock())
            elif name in note.created:
                # rows created before a blob that never got written: take them back, so the
                # listing (whose checkpoint has not passed them) stores those versions again
                lock.ensure()
                forgotten += self._table.forget(tenant, name, note.created[name])
        lock.ensure()
        self._journal.clear(tenant)
        log.warning(
            "tenant %s: an earlier run stopped mid-page; %d stored versions recorded now, %d rows "
            "without their blob deleted (their versions are read again)",
            tenant,
            recovered,
            forgotten,
        )
        return recovered

    def _result(
        self,
        run: _Run,
        client: DefenderClient | None,
        *,
        ok: bool,
        skipped: bool = False,
        error: BridgeError | None = None,
    ) -> TenantResult:
        return TenantResult(
            tenant=run.tenant,
            ok=ok,
            incidents=run.stored,
            pages=run.pages,
            api_calls=client.api_calls - run.calls_at_start if client is not None else 0,
            watermark=format_utc(run.checkpoint) if run.checkpoint else None,
            error=str(error) if error is not None else None,
            error_code=error.code if error is not None else None,
            skipped=skipped,
            listed=run.listed,
            blobs_written=len(run.blobs),
            start=format_utc(run.start) if run.start else None,
            end=format_utc(run.end) if run.end else None,
            reached=format_utc(run.reached) if run.reached else None,
            recovered=run.recovered,
            slices=run.slices,
            splits=run.splits,
            throttled=client.throttled_waits - run.throttled_at_start if client else 0,
            duration=round(self._monotonic() - run.started, 3),
            lag_seconds=None if run.lag is None else round(run.lag, 1),
            lag_warning=run.lag_warning,
            quarantined=run.quarantined,
            clamped=run.clamped,
            complete=run.complete,
            stopped=run.stopped,
            alerts=run.alerts,
            tie_warnings=run.tie_warnings,
            resume_at=format_utc(run.resume_at) if run.resume_at else None,
        )


def _ours(row: RowVersion | None, blob_name: str, incident: Incident) -> bool:
    """Whether a row is exactly the one a create-first write of ``incident`` would make."""
    return row is not None and row.blob == blob_name and row.version == version_text(incident)


def _positive(value: Any) -> float:
    """A stored positive number of seconds, or 0 (missing or not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if 0 < value < 3600 else 0.0


def _text(value: Any) -> str | None:
    """An id as text (None when missing or empty)."""
    return None if value is None or value == "" else str(value)


def _items(items: Sequence[Any], api: str) -> list[Item]:
    """What the planner reads of an answer's items: id, last-update and creation times (None
    where missing or unreadable), in the order served."""
    key = "incidentId" if api == "legacy" else "id"
    updated = "lastUpdateTime" if api == "legacy" else "lastUpdateDateTime"
    created = "createdTime" if api == "legacy" else "createdDateTime"
    return [
        (_text(raw.get(key)), _when(raw.get(updated)), _when(raw.get(created)))
        if isinstance(raw, dict)
        else (None, None, None)
        for raw in items
    ]


def _when(value: Any) -> datetime | None:
    """A timestamp the planner can place, or None."""
    if not isinstance(value, str):
        return None
    try:
        return parse_utc(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class TenantHealth:
    """What ``check`` shows of a tenant's ingestion: its last success and its lag."""

    tenant: str
    checkpoint: str | None
    last_success: str | None
    lag_seconds: float | None
    lagging: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``check --json`` entry."""
        return asdict(self)

    def line(self) -> str:
        """One line of the ``check`` table."""
        if self.error:
            return f"{self.tenant:<38} ingestion state unreadable: {self.error}"
        if self.checkpoint is None:
            return f"{self.tenant:<38} never ingested"
        lag = "-" if self.lag_seconds is None else f"{self.lag_seconds / 60:.0f} min"
        flag = "  LAGGING" if self.lagging else ""
        return (
            f"{self.tenant:<38} last success {self.last_success or 'never'}, "
            f"checkpoint {self.checkpoint}, lag {lag}{flag}"
        )


def ingestion_health(
    store: WatermarkStoreLike, tenants: Sequence[str], *, now: datetime, warn_after: timedelta
) -> list[TenantHealth]:
    """Each tenant's last success and lag (now minus checkpoint), from the checkpoints."""
    out: list[TenantHealth] = []
    for tenant in tenants:
        try:
            mark = store.load(tenant)
        except BridgeError as exc:
            out.append(TenantHealth(tenant, None, None, None, False, str(exc)))
            continue
        if mark.value is None:
            out.append(TenantHealth(tenant, None, None, None, False))
            continue
        lag = now - mark.value
        success = mark.time("lastSuccess")
        out.append(
            TenantHealth(
                tenant,
                format_utc(mark.value),
                format_utc(success) if success else None,
                round(lag.total_seconds(), 1),
                lag > warn_after,
            )
        )
    return out
