"""One tenant's run: plan the listing, read its slices oldest first, store each answer, move the
checkpoint after each completed slice, stop within the time budget or when the quota is spent.

``TenantRun`` holds everything one tenant's run needs (its scope, the planner, the budget, the
writer thread, the counters, the checkpoint it started from), so each step is a method of one
to three arguments. ``Ingestor`` (``shared.usecases.ingest.ingestor``) makes one per tenant.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from shared.core.clock import Clock, format_utc
from shared.core.errors import ThrottledError, TransientError
from shared.core.settings import IngestSettings
from shared.core.surfaces import SKIP_LIMIT
from shared.defender.model import SlicePage, planner_items, read_pair
from shared.defender.slices import Item, Listing, SliceRequest
from shared.ports import CheckpointStore
from shared.usecases.ingest.budget import Budget
from shared.usecases.ingest.checkpoint import Checkpoint
from shared.usecases.ingest.results import IngestProgress, Progress
from shared.usecases.ingest.tally import Scope, Tally
from shared.usecases.ingest.versions import GROUP_SIZE, VersionStore
from shared.usecases.ingest.window import plan_start
from shared.usecases.ingest.writer import Writer

log = logging.getLogger("shared.usecases.ingest")

#: Graph refuses ``$top`` over 50 on /security/incidents (``shared.core.surfaces``)
GRAPH_INCIDENT_TOP = 50
#: a checkpoint is saved at most this often while a run goes on (and always when it ends): a
#: crash re-reads at most this much more, which the dedup check stores nothing of, while a
#: listing of slices below a page (legacy) saved one for every answer
COMMIT_EVERY_SECONDS = 1.0
#: after a filtered ``$expand=alerts`` listing failed with 500 for a tenant, alerts are read
#: apart from incidents for this long before expanding is tried again (elastic/integrations#18144)
EXPAND_RETRY_AFTER = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How every run reads (the settings of the same names; their defaults live with the
    settings' declarations only, so none is written here)."""

    lookback: timedelta
    overlap: timedelta
    page_size: int
    safety_lag: timedelta
    time_budget: timedelta
    lag_warning: timedelta

    @classmethod
    def of(cls, ingest: IngestSettings, *, lookback: timedelta | None = None) -> RunOptions:
        """The options the ingestion settings give (``lookback`` overrides theirs)."""
        return cls(
            lookback=lookback or ingest.lookback,
            overlap=ingest.overlap,
            page_size=ingest.page_size,
            safety_lag=ingest.safety_lag,
            time_budget=ingest.time_budget,
            lag_warning=ingest.lag_warning,
        )


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every tenant's run shares: options, stores, clocks."""

    options: RunOptions
    versions: VersionStore
    checkpoints: CheckpointStore
    clock: Clock
    monotonic: Callable[[], float]


class TenantRun:
    """One tenant's run, under its lease (``ingest`` raises what fails it; the ``Ingestor``
    turns that into the tenant's result)."""

    def __init__(
        self,
        scope: Scope,
        context: RunContext,
        *,
        since: datetime | None,
        progress: Progress | None,
    ) -> None:
        self.scope = scope
        self.tally = Tally(scope.tenant, context.monotonic())
        self.tally.calls_at_start = scope.source.api_calls
        self.tally.throttled_at_start = scope.source.throttled_waits
        self._context = context
        self._since = since
        self._progress = progress
        self._loaded = Checkpoint(None)
        # set by ``_plan``
        self._listing: Listing | None = None
        self._budget: Budget | None = None
        self._top = 0
        self._expand = False
        self._writer: Writer | None = None
        # what the next checkpoint save writes besides the checkpoint (main thread)
        self._expand_failed_at: datetime | None = None
        # set by the writer thread when it commits a slice
        self._read_at: datetime | None = None
        # answers held to be stored together (``_store``), and the checkpoint waiting for them
        self._held: list[SlicePage] = []
        self._held_commit: tuple[datetime, float | None] | None = None
        self._committed_at = context.monotonic()

    # ------------------------------------------------------------------ the run

    def ingest(self) -> None:
        """Recover, plan, read every slice it can, save the checkpoint."""
        scope, versions = self.scope, self._context.versions
        scope.lease.ensure()
        self.tally.recovered = versions.recover(scope)
        listing = self._plan()
        # Fetching and writing overlap: the writer thread stores one answer while the next is
        # fetched. Writes stay in order, one at a time (dedup lookups see every earlier write;
        # a checkpoint is written after its slice's pages), so what is stored, and when the
        # checkpoint moves, is as without the overlap; at most two answers are held.
        self._writer = Writer(f"ingest-{scope.tenant[:8]}")
        try:
            self._read_all(listing)
            self._flush(commit=True)
            self._writer.drain()
        finally:
            self._writer.close()
        self.tally.complete = listing.next() is None
        self.tally.reached = listing.cursor
        if self.tally.blobs:
            versions.finished(scope)
        self._finish(listing)

    def _plan(self) -> Listing:
        """The listing of this run: ``[checkpoint - overlap, now - safety lag)``, cut into
        slices by the planner, with the density and pace the last run left."""
        options, run = self._context.options, self.tally
        loaded = self._loaded = Checkpoint.parse(self._context.checkpoints.load(run.tenant))
        now = self._context.clock()
        upper = now - options.safety_lag
        # the run that committed the checkpoint began at ``read_at``: what lies lag + overlap
        # before that was read long enough after its time for late updates to show, so a
        # backlog resumes at its checkpoint instead of re-reading the overlap every run
        read_at = loaded.read_at
        start = min(
            plan_start(
                loaded.value,
                now,
                lookback=options.lookback,
                overlap=options.overlap,
                since=self._since,
                settled=None if read_at is None else read_at - options.safety_lag - options.overlap,
            ),
            upper,
        )
        run.now, run.start, run.end, run.checkpoint = now, start, upper, loaded.value
        # a tenant without a checkpoint has, as a rule, no rows: its first answers are written
        # create-first instead of being read id by id (100 point reads of a legacy backfill's
        # first answer); where rows exist after all (a checkpoint lost, a run that stopped
        # before its first save) the first create-only transaction is refused as a whole and
        # the run reads first from there (``VersionStore._create_first``)
        run.create_first = loaded.value is None
        graph = self.scope.source.api == "graph"
        self._top = min(options.page_size, GRAPH_INCIDENT_TOP) if graph else options.page_size
        self._listing = Listing(
            start,
            upper,
            page_size=self._top,
            rate_per_hour=loaded.rate_per_hour,
            # Graph gives @odata.count: slices older than the late-arrival bound are read
            # across pages and verified by count (shared.defender.slices); legacy has no count
            paged_items=SKIP_LIMIT if graph else 0,
            settled=upper - options.overlap if graph else None,
        )
        failed = loaded.expand_failed_at
        self._expand_failed_at = failed
        self._expand = graph and (failed is None or now - failed > EXPAND_RETRY_AFTER)
        run.alerts = "embedded" if not graph else "expanded" if self._expand else "separate"
        run.etag = loaded.etag
        self._budget = Budget(
            options.time_budget.total_seconds(),
            started=run.started,
            prior=loaded.seconds_per_page,
            monotonic=self._context.monotonic,
        )
        return self._listing

    def _read_all(self, listing: Listing) -> None:
        """Read slices, oldest first, until the listing ends or the run must stop."""
        budget, run = self._need_budget(), self.tally
        while (request := listing.next(budget.fits(self._top))) is not None:
            began = budget.now()
            if not budget.may_start():
                run.stopped = "time budget"
                return
            try:
                completed = self._read(request)
            except ThrottledError as exc:
                # the quota is spent for longer than a call may wait: commit what was read and
                # stop cleanly; the next run resumes at the checkpoint (the queue worker parks
                # the tenant until ``resume_at``)
                self._quota_stop(exc)
                return
            except TransientError:
                if budget.spent():
                    run.stopped = "time budget"  # the last call ran out of the run's time
                    return
                raise
            if not request.paged:
                budget.measured(began)
            if completed is None:
                run.stopped = "time budget"  # a paged slice stopped between its pages
                return
            if not completed:
                run.splits += 1
                continue
            run.slices += 1
            # saved after the answers held so far are stored (``_flush``)
            self._held_commit = (listing.cursor, listing.rate_per_hour)
            if not self._held:
                self._flush()

    def _read(self, request: SliceRequest) -> bool | None:
        """Read one planned request; whether it completed its slice (None: out of time)."""
        listing = self._need_listing()
        if request.exhaust:
            self._flush()
            self._need_writer().drain()
            page = self._exhaust(request)
            read = listing.reader(request)
            read.add(planner_items(page.items, self.scope.source.api), count=None, linked=False)
            return listing.record(request, read)
        if request.paged:
            return self._read_paged(request)
        page = self._fetch(request)
        self.tally.pages += 1
        self._store(page)
        read = listing.reader(request)
        read.add(
            planner_items(page.items, self.scope.source.api),
            count=page.count,
            linked=page.next_link is not None,
        )
        return listing.record(request, read)

    def _fetch(self, request: SliceRequest) -> SlicePage:
        """One answer for a slice, falling back from ``$expand=alerts`` when it fails
        (docs/defender-service.md#large-expansions)."""
        source, budget = self.scope.source, self._need_budget()
        graph = source.api == "graph"
        try:
            return source.incident_slice(
                request, top=self._top, count=graph, expand=self._expand, deadline=budget.deadline
            )
        except TransientError as exc:
            if not (self._expand and exc.status == 500):
                raise
            self._expand_failed()
            return source.incident_slice(
                request, top=self._top, count=graph, expand=False, deadline=budget.deadline
            )

    def _expand_failed(self) -> None:
        log.warning(
            "tenant %s: a filtered listing with $expand=alerts answers 500 (a known service "
            "limit on large tenants); reading alerts apart from incidents for %s",
            self.tally.tenant,
            EXPAND_RETRY_AFTER,
        )
        self._expand = False
        self._expand_failed_at = self._context.clock()
        self.tally.alerts = "separate"

    def _read_paged(self, request: SliceRequest) -> bool | None:
        """Read a slice across its pages (Graph) and record whether they proved it complete.

        Every page is stored as it comes (its versions are real, whatever the verdict). The
        slice is complete when its first page carried ``@odata.count`` and as many distinct
        incidents of the slice were read (the argument is in ``shared.defender.slices``), or one
        short answer held it; otherwise the planner narrows it. Returns whether it completed,
        or None when the time budget ran out between pages.
        """
        while True:
            try:
                return self._paged_pass(request)
            except TransientError as exc:
                if not (self._expand and exc.status == 500):
                    raise
                self._expand_failed()  # pages stored so far are kept; the slice is read again

    def _paged_pass(self, request: SliceRequest) -> bool | None:
        listing, budget, source = self._need_listing(), self._need_budget(), self.scope.source
        read = listing.reader(request)
        began = budget.now()
        pages = source.slice_pages(
            request, top=self._top, expand=self._expand, deadline=budget.deadline
        )
        for page in pages:
            now = began = budget.measured(began)
            self.tally.pages += 1
            self._store(page)
            more = read.add(
                planner_items(page.items, source.api),
                count=page.count,
                linked=page.next_link is not None,
            )
            if not more:
                break
            if budget.stop_between_pages(now):  # this slice's pages were measured
                # out of time between pages: what was read is stored, and the planner learns
                # the slice's count (the next run plans smaller slices from the density)
                listing.record(request, read)
                return None
            if not budget.rest_fits(
                math.ceil(((read.count or 0) - len(read.seen)) / self._top), now
            ):
                # the rest of this slice would not fit in the time left: split it into slices
                # that do (``Budget.fits``), so this run still completes some
                return listing.record(request, read)
        if read.unstable:
            log.info(
                "tenant %s: pages of one slice repeated incidents (%d distinct of %d counted); "
                "the service's order is not stable between requests, so one page per slice "
                "from now on",
                self.tally.tenant,
                len(read.seen),
                read.count,
            )
        return listing.record(request, read)

    def _exhaust(self, request: SliceRequest) -> SlicePage:
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
        scope, top, run = self.scope, self._top, self.tally
        log.warning(
            "tenant %s: more than %d incidents share the last-update time %s and one creation "
            "time; paging them through links until the pages add up",
            scope.tenant,
            top - 1,
            format_utc(request.start),
        )
        run.tie_warnings += 1
        deadline = self._need_budget().deadline

        def store(page: SlicePage, _: list[Item]) -> None:
            run.pages += 1
            self._context.versions.take(scope, page, run)

        pair = read_pair(
            functools.partial(
                scope.source.exhaust_slice, request, top=top, expand=self._expand, deadline=deadline
            ),
            scope.source.api,
            request.start,
            store,
        )
        if not pair.counted:
            log.warning(
                "tenant %s: no page carried @odata.count; the incidents at %s were taken as "
                "read when two passes found nothing new",
                scope.tenant,
                format_utc(request.start),
            )
        read = list(pair.latest.values())
        return SlicePage(read, None, len(read), top, expanded=self._expand)

    def _store(self, page: SlicePage) -> None:
        """Hold one answer to be stored with the next ones, up to ``GROUP_SIZE`` items
        together (or store it here when its alerts must be read with the source: API calls
        stay on the fetching thread).

        Why together: each stored answer costs the same few storage calls (journal note,
        create-only transaction, blob) whatever its size, about 1.5 ms of CPU each in the
        storage SDKs; answers stored as one share a journal note, and fill their
        transactions (legacy answers of about 63 items would each take one of their own).
        A group of new versions is stored one atomic create-only transaction of up to
        ``TRANSACTION_SIZE`` rows (and its blobs) after another, under one journal note
        (``VersionStore._create_first``). What is held is only in memory: should the run fail
        or crash, the checkpoint has not passed it (``_flush`` saves it after its answers) and
        the next run reads it again.
        """
        writer, versions = self._need_writer(), self._context.versions
        if self.scope.source.api == "graph" and not page.expanded:
            self._flush()
            writer.drain()
            versions.take(self.scope, page, self.tally)
            return
        if self._held_items() + len(page.items) > GROUP_SIZE:
            self._flush()
        self._held.append(page)
        # answers are held only on new ground (written without a read first): a run's first
        # answer when the tenant has a checkpoint, and any after one that met stored rows, are
        # read first, a page of ids at a time (``create_first`` is the writer's; a late view
        # of it only stores one alone)
        if self._held_items() >= GROUP_SIZE or not self.tally.create_first:
            self._flush()

    def _held_items(self) -> int:
        """How many items the held answers hold (a handful of answers: summed when asked)."""
        return sum(len(page.items) for page in self._held)

    def _flush(self, *, commit: bool = False) -> None:
        """Hand the held answers to the writer as one, then the checkpoint of the slices they
        completed when one is waiting and the last was saved ``COMMIT_EVERY_SECONDS`` ago (or
        ``commit``: the run is ending). Writes stay in order: a checkpoint is saved only after
        every answer read before it is stored."""
        writer = self._need_writer()
        if self._held:
            held, self._held = self._held, []
            page = held[0] if len(held) == 1 else _joined(held)
            writer.submit(self._context.versions.take, self.scope, page, self.tally)
        now = self._context.monotonic()
        if self._held_commit is not None and (
            commit or now - self._committed_at >= COMMIT_EVERY_SECONDS
        ):
            cursor, rate = self._held_commit
            self._held_commit, self._committed_at = None, now
            writer.then(self._commit, cursor, rate)

    def _commit(self, cursor: datetime, rate_per_hour: float | None) -> None:
        """After a completed slice's pages are stored: move the checkpoint to its end (ETag-
        guarded, never backwards), show progress (writer thread)."""
        run = self.tally
        if run.checkpoint is None or cursor > run.checkpoint:
            self.scope.lease.ensure()
            self._read_at = run.now
            doc = self._document(rate_per_hour)
            run.etag = self._context.checkpoints.save(
                run.tenant, cursor, etag=run.etag, saved_at=self._context.clock(), info=doc.info()
            )
            run.checkpoint = cursor
        if self._progress is not None and run.start is not None and run.end is not None:
            self._progress(
                IngestProgress(
                    run.tenant,
                    run.slices,
                    run.stored,
                    run.listed,
                    run.start,
                    cursor,
                    run.end,
                    self._context.monotonic() - run.started,
                )
            )

    def _document(self, rate_per_hour: float | None, **changes: Any) -> Checkpoint:
        """The checkpoint document to save now: what was loaded, with this run's facts."""
        budget = self._need_budget()
        return replace(
            self._loaded,
            rate_per_hour=rate_per_hour,
            read_at=self._read_at or self._loaded.read_at,
            expand_failed_at=self._expand_failed_at,
            seconds_per_page=budget.slowest,
            **changes,
        )

    def _quota_stop(self, exc: ThrottledError) -> None:
        """Record a stop for quota: when the next call may start, from the error's wait and
        the source's rate-limit buckets (a ``Retry-After`` pauses them), whichever is later."""
        run = self.tally
        wait = max(exc.retry_after or 0.0, self.scope.source.quota_wait())
        run.stopped = "quota"
        run.resume_at = self._context.clock() + timedelta(seconds=wait) if wait > 0 else None
        log.info(
            "tenant %s: API quota spent (%s); stopping the run cleanly, resuming %s",
            run.tenant,
            exc,
            "when the next run starts"
            if run.resume_at is None
            else f"at {format_utc(run.resume_at)} or later",
        )

    def _finish(self, listing: Listing) -> None:
        """Save the checkpoint with what this run learnt (density, pace, how it ended)."""
        run, context, source = self.tally, self._context, self.scope.source
        options = context.options
        finished = context.clock()
        if run.checkpoint is None:
            # no slice completed (a tiny budget, or nothing to read): keep the listing's start
            # and, above all, the density seen, so the next run's first slice fits a page and
            # every run makes progress
            run.checkpoint = run.start
        calls = source.api_calls - run.calls_at_start
        if run.checkpoint is not None:
            run.lag = (finished - run.checkpoint).total_seconds()
            run.lag_warning = finished - run.checkpoint > options.lag_warning
            if run.lag_warning:
                log.warning(
                    "tenant %s lags: checkpoint %s is %.0f minutes old (threshold %.0f)",
                    run.tenant,
                    format_utc(run.checkpoint),
                    run.lag / 60,
                    options.lag_warning.total_seconds() / 60,
                )
            self.scope.lease.ensure()
            doc = self._document(
                listing.rate_per_hour,
                last_success=finished,
                last_run={
                    "at": format_utc(finished),
                    "complete": run.complete,
                    "stopped": run.stopped,
                    "incidents": run.stored,
                    "apiCalls": calls,
                    "quarantined": run.quarantined,
                    "alerts": run.alerts,
                },
            )
            context.checkpoints.save(
                run.tenant, run.checkpoint, etag=run.etag, saved_at=finished, info=doc.info()
            )
        log.info(
            "tenant %s: %d stored of %d listed, %d slices (%d splits), %d API calls, "
            "checkpoint %s%s",
            run.tenant,
            run.stored,
            run.listed,
            run.slices,
            run.splits,
            calls,
            format_utc(run.checkpoint) if run.checkpoint else "-",
            "" if run.complete else f" (stopped: {run.stopped}; the next run goes on)",
        )

    # ------------------------------------------------------------------ set by _plan

    def _need_listing(self) -> Listing:
        assert self._listing is not None, "planned in _plan"
        return self._listing

    def _need_budget(self) -> Budget:
        assert self._budget is not None, "planned in _plan"
        return self._budget

    def _need_writer(self) -> Writer:
        assert self._writer is not None, "made in ingest"
        return self._writer


def _joined(pages: Sequence[SlicePage]) -> SlicePage:
    """Answers held together, as one answer to store (their items in the order read)."""
    items = [item for page in pages for item in page.items]
    return SlicePage(items, None, None, len(items), expanded=pages[0].expanded)
