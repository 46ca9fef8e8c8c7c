"""The ingestion use case's entry point: runs tenants, one ``TenantRun`` each, and turns
whatever fails a tenant into that tenant's result (the others go on)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.core.clock import Clock, format_utc
from shared.core.errors import BridgeError, ConflictError, LeaseLostError
from shared.ports import (
    Archive,
    CheckpointStore,
    IncidentSource,
    IncidentTable,
    Journal,
    LeaseFor,
    Notify,
    QuarantineStore,
)
from shared.usecases.ingest.results import IngestSummary, Progress, TenantResult
from shared.usecases.ingest.run import RunContext, RunOptions, TenantRun
from shared.usecases.ingest.tally import Scope, Tally
from shared.usecases.ingest.versions import VersionStore

log = logging.getLogger("shared.usecases.ingest")  # one logger name for the whole use case


@dataclass(frozen=True, slots=True)
class IngestStores:
    """Where ingestion keeps what it read (the storage ports)."""

    archive: Archive
    table: IncidentTable
    checkpoints: CheckpointStore
    journal: Journal
    lease_for: LeaseFor
    quarantine: QuarantineStore | None = None


class Ingestor:
    """Runs ingestion for tenants with the collaborators it is given.

    Args:
        source_for: the incident source of a tenant (its API client).
        stores: the storage ports.
        options: lookback, overlap, page size, safety lag, time budget, lag warning.
        clock: now, tz-aware UTC; ``monotonic``: seconds, for the time budget.
        notify: told ``(tenant, versions, created ids)`` of each answer before its versions
            are stored (``Notify``); it must be quick and must not talk to subscribers.
        observe: told each tenant's result (health telemetry, ``shared.telemetry``).
    """

    def __init__(
        self,
        *,
        source_for: Callable[[str], IncidentSource],
        stores: IngestStores,
        options: RunOptions,
        clock: Clock,
        notify: Notify | None = None,
        observe: Callable[[TenantResult], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source_for = source_for
        self._stores = stores
        self._observe = observe
        self._monotonic = monotonic
        self._context = RunContext(
            options=options,
            versions=VersionStore(
                archive=stores.archive,
                table=stores.table,
                journal=stores.journal,
                quarantine=stores.quarantine,
                notify=notify,
                clock=clock,
            ),
            checkpoints=stores.checkpoints,
            clock=clock,
            monotonic=monotonic,
        )

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
        run: TenantRun | None = None
        tally = Tally(tenant, self._monotonic())
        try:
            source = self._source_for(tenant)
            lease = self._stores.lease_for(tenant)
            run = TenantRun(
                Scope(tenant, source, lease), self._context, since=since, progress=progress
            )
            tally = run.tally
            try:
                lease.__enter__()
            except ConflictError as exc:
                # another run holds the tenant: a normal event, not a failure
                log.info("tenant %s skipped: %s", tenant, exc)
                return self._result(run, ok=True, skipped=True, error=exc)
            try:
                run.ingest()
            finally:
                lease.__exit__(None, None, None)
            return self._result(run, ok=True)
        except LeaseLostError as exc:
            log.error("tenant %s stopped: %s", tenant, exc)
            return self._result(run or tally, ok=False, error=exc)
        except BridgeError as exc:
            log.warning("tenant %s failed: %s", tenant, exc)
            return self._result(run or tally, ok=False, error=exc)
        except Exception as exc:  # a bug or an SDK error outside our hierarchy: this tenant only
            log.exception("tenant %s failed unexpectedly", tenant)
            wrapped = BridgeError(f"unexpected {type(exc).__name__} while ingesting (see the log)")
            wrapped.code = "internal"
            return self._result(run or tally, ok=False, error=wrapped)

    def _result(
        self,
        run: TenantRun | Tally,
        *,
        ok: bool,
        skipped: bool = False,
        error: BridgeError | None = None,
    ) -> TenantResult:
        """The tenant's result from what its run did (a ``Tally`` alone: it failed before its
        source or lease could be had)."""
        source = run.scope.source if isinstance(run, TenantRun) else None
        t = run.tally if isinstance(run, TenantRun) else run
        return TenantResult(
            tenant=t.tenant,
            ok=ok,
            incidents=t.stored,
            pages=t.pages,
            api_calls=source.api_calls - t.calls_at_start if source is not None else 0,
            watermark=format_utc(t.checkpoint) if t.checkpoint else None,
            error=str(error) if error is not None else None,
            error_code=error.code if error is not None else None,
            skipped=skipped,
            listed=t.listed,
            blobs_written=len(t.blobs),
            start=format_utc(t.start) if t.start else None,
            end=format_utc(t.end) if t.end else None,
            reached=format_utc(t.reached) if t.reached else None,
            recovered=t.recovered,
            slices=t.slices,
            splits=t.splits,
            throttled=source.throttled_waits - t.throttled_at_start if source else 0,
            duration=round(self._monotonic() - t.started, 3),
            lag_seconds=None if t.lag is None else round(t.lag, 1),
            lag_warning=t.lag_warning,
            quarantined=t.quarantined,
            clamped=t.clamped,
            complete=t.complete,
            stopped=t.stopped,
            alerts=t.alerts,
            tie_warnings=t.tie_warnings,
            resume_at=format_utc(t.resume_at) if t.resume_at else None,
        )
