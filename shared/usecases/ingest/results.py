"""What a run tells its caller: each tenant's result, a summary, progress, and the health
``check`` shows from the checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.core.clock import format_utc
from shared.core.errors import BridgeError
from shared.ports import CheckpointStore


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
    store: CheckpointStore, tenants: Sequence[str], *, now: datetime, warn_after: timedelta
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
