"""Partner scale: fan tenants out on the ingest queue, ingest one per message, report health.

Three entry points:

- ``tick()``: what the timer does. With ``INGEST_FANOUT=queue`` (the default) it only queues one
  message per enabled tenant on ``defender-ingest`` and returns; with ``inline`` it ingests the
  tenants itself, ``INGEST_CONCURRENCY`` at a time (a single-tenant deployment needs no queue).
- ``handle(text, dequeue_count)``: what the queue trigger does with one message: ingest that
  tenant and decide what happens next (see below).
- ``status()``: every tenant with its last success, lag, last error and queue state, worst first.

**Deduplication across processes.** Each tenant has a run row in the registry table
(``shared.storage.tenants.RunStateStore``) with a "queued" marker (``QueuedUntil``). Queuing a
tenant
first *claims* the marker with a conditional write (insert-if-absent, or merge-if-ETag-matches),
then sends the message; a timer, another instance or ``POST /ingest`` that read the same row
loses the write (409/412) and does not queue. The handler clears the marker when the tenant's
run ends (or extends it when it re-queues the tenant), and the marker expires on its own after
``INGEST_QUEUED_MARKER_MINUTES`` if a worker died with it, so a tenant can never stay stuck.
Should a marker expire while its message still waits, a second message may be queued: the
tenant lock inside ingestion and the version checks keep that to wasted calls, never data.

**What the handler does with a run's result.**

====================  =====================================================================
result                next
====================  =====================================================================
complete              marker cleared, last success recorded
backlog left          re-queued (``continue``) with a short visibility delay
(``complete=False``)
quota stop            the run stopped cleanly (``stopped="quota"``: the next call slot or a
(or throttled)        ``Retry-After`` was further than ``API_MAX_RETRY_WAIT_SECONDS``) and
                      committed what it read: parked, re-queued with visibility delay = until
                      ``resume_at`` (or what is left on the tenant's rate-limit buckets); the
                      invocation succeeds, no thread waits. A throttled failure is parked too
no consent            marked ``Consent=missing`` and held for ``INGEST_CONSENT_RETRY_HOURS``
                      (the timer skips it, then re-probes once); the message is consumed, so
                      the poison queue does not fill up every tick
any other failure     recorded, then raised: the host retries after ``visibilityTimeout``;
                      on the ``maxDequeueCount``-th attempt the tenant is also held for
                      ``INGEST_FAILURE_HOLD_MINUTES`` and reported, and the host moves the
                      message to ``defender-ingest-poison``
====================  =====================================================================

Metrics go through an injected hook (``Metric``); the default writes one log line per metric,
which Application Insights stores as a trace with the tenant in it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from shared.core.clock import Clock, format_utc, parse_utc
from shared.core.errors import BridgeError, StorageError, TenantFailedError
from shared.core.invocation import InvocationExecutor
from shared.core.settings import Settings
from shared.ports import IngestQueue, RunStates, TenantDirectory
from shared.storage.values import (
    REASONS,
    BadMessageError,
    IngestMessage,
    PoisonMessage,
    RunState,
    TenantEntry,
    parse_message,
)
from shared.usecases.ingest import IngestSummary, TenantResult

if TYPE_CHECKING:
    from shared.usecases.ingest import Ingestor

log = logging.getLogger(__name__)

#: error codes meaning "the app is not consented in the tenant" (``ConsentError.code``, and the
#: short spelling older queue messages and results carry)
CONSENT_CODES = frozenset({"consent_required", "consent"})
#: seconds a tenant with backlog left waits before its next slice (lets other tenants in)
CONTINUE_DELAY = 2.0
#: the shortest park of a throttled tenant (a 429 without a usable Retry-After)
MIN_PARK = 5.0
#: threads the timer uses to claim markers and queue messages (storage round trips)
ENQUEUE_THREADS = 8


class Metric(Protocol):
    """A metric sink: ``metric("ingest.incidents", 12, tenant="...")``."""

    def __call__(self, name: str, value: float, *, tenant: str | None = None) -> None: ...


def log_metric(name: str, value: float, *, tenant: str | None = None) -> None:
    """The default metric sink: one structured log line (a trace in Application Insights)."""
    log.info("metric %s=%s tenant=%s", name, value, tenant or "-")


@dataclass(frozen=True, slots=True)
class TickReport:
    """What a timer tick did: tenants queued, skipped (with why) and failed to queue."""

    mode: str
    queued: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    poison: tuple[PoisonMessage, ...] = ()
    summary: IngestSummary | None = None  # inline mode

    @property
    def ok(self) -> bool:
        """No tenant failed to queue (queue mode) or to ingest (inline mode)."""
        return not self.failed and (self.summary is None or self.summary.ok)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the queue handler did with one message."""

    tenant: str | None
    action: str  # done | continue | parked | consent | skipped | dropped | throttled | failed
    delay: float = 0.0
    result: TenantResult | None = None


@dataclass(frozen=True, slots=True)
class TenantStatus:
    """One line of ``status``."""

    tenant: str
    name: str | None
    health: str  # poisoned | failing | consent_required | throttled | never_run | ok | paused
    queue: str  # poison | running | queued | held | idle
    last_success: str | None
    lag_seconds: float | None
    last_result: str | None
    last_error: str | None
    last_error_code: str | None
    attempts: int
    consent: str
    hold_until: str | None
    watermark: str | None
    api: str | None
    lookback_days: int | None
    enabled: bool

    def to_json(self) -> dict[str, Any]:
        """The ``status --json`` entry."""
        return {
            "tenant": self.tenant,
            "name": self.name,
            "health": self.health,
            "queue": self.queue,
            "last_success": self.last_success,
            "lag_seconds": self.lag_seconds,
            "last_result": self.last_result,
            "last_error": self.last_error,
            "last_error_code": self.last_error_code,
            "attempts": self.attempts,
            "consent": self.consent,
            "hold_until": self.hold_until,
            "watermark": self.watermark,
            "api": self.api,
            "lookback_days": self.lookback_days,
            "enabled": self.enabled,
        }


_HEALTH_RANK = {
    "poisoned": 0,
    "failing": 1,
    "consent_required": 2,
    "throttled": 3,
    "never_run": 4,
    "ok": 5,
    "paused": 6,
}
UNHEALTHY = frozenset({"poisoned", "failing", "consent_required"})


def health_of(entry: TenantEntry, state: RunState, now: datetime, poisoned: bool) -> str:
    """A tenant's health from its registry entry and run state. Pure."""
    if not entry.enabled:
        return "paused"
    if poisoned or (state.hold_reason == "poison" and state.held(now)):
        return "poisoned"
    if state.last_result == "failed":
        return "failing"
    if state.consent == "missing" or state.last_result == "consent_required":
        return "consent_required"
    if state.last_result == "throttled":
        return "throttled"
    if state.last_success_at is None:
        return "never_run"
    return "ok"


def sort_worst_first(rows: Iterable[TenantStatus]) -> list[TenantStatus]:
    """Worst health first; within one health, the longest lag first (never succeeded first)."""
    return sorted(
        rows,
        key=lambda r: (
            _HEALTH_RANK.get(r.health, 99),
            -(r.lag_seconds if r.lag_seconds is not None else float("inf")),
            r.tenant,
        ),
    )


class Fanout:
    """The partner-scale use case, with its collaborators injected (``Services.fanout()``
    wires the real ones).

    Args:
        settings: the app settings (mode, concurrency, marker/hold durations, dequeue count).
        registry: the tenant registry.
        states: the tenants' run rows.
        queue: the ingest queue and its poison queue.
        ingestor_for: the ingestion use case for one tenant (with its overrides).
        park_for: seconds until a tenant may call the API again (its rate-limit buckets).
        running: ids of tenants whose ingestion lock is held right now (for ``status``).
        running_one: whether one tenant's lock is held right now (``tenant_status``; default:
            looked up in ``running()``).
        clock: now, tz-aware UTC.
        metric: the metric sink.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        registry: TenantDirectory,
        states: RunStates,
        queue: IngestQueue,
        ingestor_for: Callable[[TenantEntry], Ingestor],
        park_for: Callable[[str], float],
        running: Callable[[], set[str]] = set,
        running_one: Callable[[str], bool] | None = None,
        clock: Clock,
        metric: Metric = log_metric,
        continue_delay: float = CONTINUE_DELAY,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._states = states
        self._queue = queue
        self._ingestor_for = ingestor_for
        self._park_for = park_for
        self._running = running
        self._running_one = running_one or (lambda tenant: tenant in running())
        self._clock = clock
        self._metric = metric
        self._continue_delay = continue_delay

    # ------------------------------------------------------------------ timer

    def tick(self) -> TickReport:
        """The timer's work: queue every enabled tenant (or ingest them, in inline mode)."""
        if self._settings.fanout.mode == "inline":
            return self.run_inline()
        entries = self._registry.enabled()
        states = self._states.all()
        now = self._clock()
        queued: list[str] = []
        skipped: dict[str, str] = {}
        failed: dict[str, str] = {}

        def offer(entry: TenantEntry) -> tuple[str, str, str | None]:
            tid = entry.tenant_id
            try:
                return tid, self._offer(states.get(tid) or RunState(tid), now, "timer"), None
            except BridgeError as exc:
                return tid, "failed", str(exc)

        # InvocationExecutor: the threads log with the timer invocation's id
        with InvocationExecutor(max_workers=max(1, min(ENQUEUE_THREADS, len(entries)))) as pool:
            for tid, what, error in pool.map(offer, entries):
                if what == "queued":
                    queued.append(tid)
                elif error is not None:
                    failed[tid] = error
                    log.error("tenant %s could not be queued: %s", tid, error)
                else:
                    skipped[tid] = what
        poison = self._report_poison()
        log.info(
            "ingest tick: %d tenant(s) queued, %d skipped, %d failed to queue, %d poison "
            "message(s)",
            len(queued),
            len(skipped),
            len(failed),
            len(poison),
        )
        for tid, why in skipped.items():
            # held tenants are worth a line each; "already queued" is the normal overlap
            level = logging.INFO if why.startswith("held") else logging.DEBUG
            log.log(level, "tenant %s not queued: %s", tid, why)
        self._metric("ingest.tick.queued", len(queued))
        return TickReport("queue", tuple(queued), skipped, failed, tuple(poison))

    def enqueue(self, tenant: str, *, reason: str = "http", since: datetime | None = None) -> str:
        """Queue one tenant now (``POST /ingest``, CLI). Returns ``"queued"`` or why not.

        A backfill (``since``) is queued even when the tenant is already queued: it reads a
        different window; the tenant lock runs the two one after the other.

        Raises:
            StorageError: the marker or the queue could not be written.
        """
        state = self._states.get(tenant)
        return self._offer(state, self._clock(), reason, since=since, force=since is not None)

    def _offer(
        self,
        state: RunState,
        now: datetime,
        reason: str,
        *,
        since: datetime | None = None,
        force: bool = False,
    ) -> str:
        tid = state.tenant_id
        if reason not in REASONS:  # before the marker is claimed: a refusal must leave none
            raise ValueError(f"reason must be one of {', '.join(REASONS)}")
        if not force:
            if state.held(now):
                ends = format_utc(state.hold_until) if state.hold_until else "?"
                return f"held ({state.hold_reason}) until {ends}"
            if state.queued(now):
                return "already queued or running"
        until = now + self._settings.fanout.queued_marker
        if force:
            self._states.update(tid, queued_at=now, queued_until=until, queue_reason=reason)
        elif not self._states.claim(state, until=until, reason=reason):
            return "already queued (another run claimed it first)"
        try:
            self._queue.send(IngestMessage(tid, reason, since))
        except StorageError:
            # give the marker back so the next tick tries again
            self._states.update(tid, queued_until=None)
            raise
        return "queued"

    def _report_poison(self) -> list[PoisonMessage]:
        try:
            poison = self._queue.poison()
        except StorageError as exc:
            log.warning("could not read the poison queue: %s", exc)
            return []
        if poison:
            tenants = sorted({p.tenant or "(unreadable)" for p in poison})
            log.error(
                "%d message(s) in defender-ingest-poison (tenants: %s); see 'python -m shared "
                "status' and re-queue with 'python -m shared tenants requeue-poison'",
                len(poison),
                ", ".join(tenants),
            )
        self._metric("ingest.poison.messages", len(poison))
        return poison

    # ------------------------------------------------------------------ inline mode

    def run_inline(self, tenants: Sequence[str] | None = None) -> TickReport:
        """Ingest the enabled tenants in this process, ``INGEST_CONCURRENCY`` at a time."""
        entries = self._registry.enabled()
        if tenants is not None:
            wanted = set(tenants)
            entries = [e for e in entries if e.tenant_id in wanted]
        states = self._states.all()
        now = self._clock()
        skipped: dict[str, str] = {}
        todo: list[TenantEntry] = []
        for entry in entries:
            state = states.get(entry.tenant_id) or RunState(entry.tenant_id)
            if state.held(now):
                skipped[entry.tenant_id] = f"held ({state.hold_reason})"
            else:
                todo.append(entry)
        workers = max(1, min(self._settings.fanout.concurrency, len(todo)))
        with InvocationExecutor(max_workers=workers) as pool:
            results = list(pool.map(self._ingest_inline, todo))
        return TickReport("inline", skipped=skipped, summary=IngestSummary(tuple(results)))

    def _ingest_inline(self, entry: TenantEntry) -> TenantResult:
        result = self._ingestor_for(entry).run_tenant(entry.tenant_id)
        try:
            self._record(entry.tenant_id, result, dequeue_count=1, final=False)
        except StorageError as exc:
            log.warning("tenant %s: run state not saved: %s", entry.tenant_id, exc)
        return result

    # ------------------------------------------------------------------ queue handler

    def handle(self, text: str | bytes, *, dequeue_count: int = 1) -> Outcome:
        """Ingest the tenant of one queue message (the queue trigger's work).

        Raises:
            TenantFailedError: the run failed in a way worth retrying; the host retries the
                message and finally moves it to the poison queue.
            StorageError: the run state or the queue could not be written (also retried).
        """
        try:
            message = parse_message(text)
        except BadMessageError as exc:
            raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
            log.error("ingest queue: unreadable message moved to the poison queue: %s", exc)
            self._queue.send_poison(raw)
            self._metric("ingest.poison.unreadable", 1)
            return Outcome(None, "dropped")
        tid = message.tenant
        entry = self._registry.get(tid)
        if entry is None or not entry.enabled:
            why = "paused" if entry is not None else "not in the registry"
            log.info("tenant %s not ingested: %s", tid, why)
            self._states.update(tid, queued_until=None)
            return Outcome(tid, "skipped")
        result = self._ingestor_for(entry).run_tenant(tid, since=message.since)
        final = dequeue_count >= self._settings.fanout.max_dequeue_count
        outcome = self._record(tid, result, dequeue_count=dequeue_count, final=final, msg=message)
        if outcome.action == "failed":
            raise TenantFailedError(
                tid, result.error or "ingestion failed", error_code=result.error_code
            )
        return outcome

    def _record(
        self,
        tid: str,
        result: TenantResult,
        *,
        dequeue_count: int,
        final: bool,
        msg: IngestMessage | None = None,
    ) -> Outcome:
        """Save what a run did, re-queue the tenant when needed; returns what happened. What
        to do is ``decide()``'s (pure); this applies it."""
        decision = decide(
            result,
            now=self._clock(),
            msg=msg,
            dequeue_count=dequeue_count,
            final=final,
            settings=self._settings,
            park_seconds=self._park_for(tid),
            continue_delay=self._continue_delay,
        )
        for name, value in decision.metrics:
            self._metric(name, value, tenant=tid)
        self._states.update(tid, **decision.changes)
        if decision.requeue is not None:
            self._queue.send(decision.requeue, delay=decision.delay)
        if decision.log:
            log.log(decision.log_level, "tenant %s: %s", tid, decision.log)
        return Outcome(tid, decision.action, decision.delay, result)

    # ------------------------------------------------------------------ poison, registry

    def requeue_poison(self, tenants: Iterable[str] | None = None) -> dict[str, Any]:
        """Put poison messages back on the ingest queue (all, or those of ``tenants``), one
        per tenant, and lift the tenants' holds. Unreadable messages stay where they are.

        Returns:
            ``{"requeued": [tenant ids], "left": n, "unreadable": n}``.
        """
        wanted = set(tenants) if tenants is not None else None
        now = self._clock()
        requeued: list[str] = []
        left = unreadable = 0
        for poison, receipt in self._queue.drain_poison():
            message = poison.message
            if message is None:
                unreadable += 1
                self._queue.release_poison(receipt)
                continue
            if wanted is not None and message.tenant not in wanted:
                left += 1
                self._queue.release_poison(receipt)
                continue
            if message.tenant not in requeued:
                self._queue.send(message)
                self._states.update(
                    message.tenant,
                    hold_until=None,
                    hold_reason=None,
                    attempts=0,
                    queued_at=now,
                    queued_until=now + self._settings.fanout.queued_marker,
                    queue_reason=message.reason,
                )
                requeued.append(message.tenant)
            self._queue.delete_poison(receipt)
        for tid in requeued:
            log.info("tenant %s: re-queued from the poison queue", tid)
        return {"requeued": requeued, "left": left, "unreadable": unreadable}

    def release_hold(self, tenant: str) -> None:
        """Lift a tenant's hold (consent granted again, or the failure fixed)."""
        self._states.update(tenant, hold_until=None, hold_reason=None)

    # ------------------------------------------------------------------ status

    def status(self) -> tuple[list[TenantStatus], dict[str, Any]]:
        """Every tenant (paused ones too), worst first, and the queues' state."""
        entries = self._registry.entries(include_disabled=True)
        states = self._states.all()
        now = self._clock()
        queues: dict[str, Any] = {}
        poisoned: set[str] = set()
        try:
            peeked = self._queue.poison()
            queues = {
                "pending": self._queue.pending_count(),
                "poison": self._queue.poison_count(),
                "poison_sample": [
                    {"tenant": p.tenant, "problem": p.problem, "dequeue_count": p.dequeue_count}
                    for p in peeked
                ],
            }
            poisoned = {p.tenant for p in peeked if p.tenant}
        except StorageError as exc:
            queues = {"error": str(exc)}
        try:
            running = self._running()
        except BridgeError:
            running = set()
        rows = [
            self._line(e, states.get(e.tenant_id) or RunState(e.tenant_id), now, poisoned, running)
            for e in entries
        ]
        return sort_worst_first(rows), queues

    def tenant_status(self, tenant: str) -> TenantStatus:
        """One tenant's line of ``status`` (a point read of its rows and its lock; the poison
        queue is not peeked: a poisoned run shows as held)."""
        entry = self._registry.get(tenant) or TenantEntry(tenant)
        try:
            running = {tenant} if self._running_one(tenant) else set()
        except BridgeError:
            running = set()
        return self._line(entry, self._states.get(tenant), self._clock(), set(), running)

    @staticmethod
    def _line(
        entry: TenantEntry, state: RunState, now: datetime, poisoned: set[str], running: set[str]
    ) -> TenantStatus:
        tid = entry.tenant_id
        in_poison = tid in poisoned
        if in_poison:
            queue = "poison"
        elif tid in running:
            queue = "running"
        elif state.queued(now):
            queue = "queued"
        elif state.held(now):
            queue = "held"
        else:
            queue = "idle"
        success = state.last_success_at
        return TenantStatus(
            tenant=tid,
            name=entry.display_name,
            health=health_of(entry, state, now, in_poison),
            queue=queue,
            last_success=format_utc(success) if success else None,
            lag_seconds=round((now - success).total_seconds(), 1) if success else None,
            last_result=state.last_result,
            last_error=state.last_error,
            last_error_code=state.last_error_code,
            attempts=state.attempts,
            consent=state.consent,
            hold_until=format_utc(state.hold_until)
            if state.held(now) and state.hold_until
            else None,
            watermark=state.watermark,
            api=entry.api,
            lookback_days=entry.lookback_days,
            enabled=entry.enabled,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What the queue handler does after one tenant's run (``decide``).

    Attributes:
        action: ``Outcome.action``: done | continue | parked | consent | skipped | throttled |
            failed (the handler raises on ``failed``, so the host retries the message).
        delay: seconds before a re-queued message shows (0 when none is sent).
        changes: the update of the tenant's run row (``RunStateStore.update``).
        requeue: the message to send again, or None.
        metrics: ``(name, value)`` pairs for the tenant.
        log: one line about the tenant (after ``tenant <id>: ``), at ``log_level``.
    """

    action: str
    changes: Mapping[str, Any]
    delay: float = 0.0
    requeue: IngestMessage | None = None
    metrics: tuple[tuple[str, float], ...] = ()
    log: str = ""
    log_level: int = logging.INFO


def decide(
    result: TenantResult,
    *,
    now: datetime,
    msg: IngestMessage | None,
    dequeue_count: int,
    final: bool,
    settings: Settings,
    park_seconds: float,
    continue_delay: float = CONTINUE_DELAY,
) -> Decision:
    """The outcome table of the module docstring as a pure function of one run's result.

    Args:
        result: what the tenant's run did.
        now: the time of the decision.
        msg: the queue message that started the run (None: inline mode, nothing to re-queue).
        dequeue_count: how many times the host has handed this message out.
        final: this is the message's last attempt before the poison queue.
        settings: marker, hold and retry durations.
        park_seconds: the tenant's wait on its rate-limit buckets (read by the caller).
        continue_delay: the visibility delay of a backlog continuation.
    """
    counts = (
        ("ingest.api_calls", result.api_calls),
        ("ingest.incidents", result.incidents),
    )
    base: dict[str, Any] = {
        "last_run_at": now,
        "last_incidents": result.incidents,
        "last_api_calls": result.api_calls,
    }
    if result.watermark:
        base["watermark"] = result.watermark
    if result.ok:
        return _decide_ok(result, base, counts, now, msg, settings, park_seconds, continue_delay)
    code = result.error_code or "error"
    failure = {**base, "last_error": result.error, "last_error_code": code, "last_error_at": now}
    if code in CONSENT_CODES:
        hold = now + settings.fanout.consent_retry
        return Decision(
            "consent",
            {
                **failure,
                "last_result": "consent_required",
                "consent": "missing",
                "hold_until": hold,
                "hold_reason": "consent",
                "queued_until": None,
            },
            metrics=(*counts, ("ingest.consent_required", 1)),
            log=(
                f"the app has no consent there; skipped until {format_utc(hold)} (then probed "
                f"once again; 'python -m shared tenants resume {result.tenant}' after granting "
                f"consent): {result.error}"
            ),
            log_level=logging.WARNING,
        )
    if code == "throttled" and msg is not None:
        delay = max(MIN_PARK, park_seconds)
        return Decision(
            "parked",
            {
                **failure,
                "last_result": "throttled",
                "queued_until": now + timedelta(seconds=delay) + settings.fanout.queued_marker,
                "queue_reason": msg.reason,
            },
            delay=delay,
            # the original reason and start: a parked backfill stays a backfill
            requeue=IngestMessage(result.tenant, msg.reason, msg.since),
            metrics=(*counts, ("ingest.throttled", 1)),
            log=f"throttled; parked for {delay:.0f}s",
            log_level=logging.WARNING,
        )
    if code == "throttled":  # inline: nothing to park on; the next tick tries again
        return Decision(
            "throttled",
            {**failure, "last_result": "throttled"},
            metrics=(*counts, ("ingest.throttled", 1)),
        )
    changes: dict[str, Any] = {**failure, "last_result": "failed", "attempts": dequeue_count}
    if final:
        changes.update(
            hold_until=now + settings.fanout.failure_hold, hold_reason="poison", queued_until=None
        )
        return Decision(
            "failed",
            changes,
            metrics=(*counts, ("ingest.poisoned", 1)),
            log=(
                f"attempt {dequeue_count} of {settings.fanout.max_dequeue_count} failed; the "
                "message goes to defender-ingest-poison and the tenant is held until "
                f"{format_utc(now + settings.fanout.failure_hold)}: {result.error}"
            ),
            log_level=logging.ERROR,
        )
    return Decision(
        "failed",
        changes,
        metrics=(*counts, ("ingest.failed", 1)),
        log=f"attempt {dequeue_count} failed ({code}); the queue retries it: {result.error}",
        log_level=logging.WARNING,
    )


def _decide_ok(
    result: TenantResult,
    base: dict[str, Any],
    counts: tuple[tuple[str, float], ...],
    now: datetime,
    msg: IngestMessage | None,
    settings: Settings,
    park_seconds: float,
    continue_delay: float,
) -> Decision:
    """``decide`` for a run that did not fail."""
    ok = {
        **base,
        "consent": "ok",
        "last_error": None,
        "last_error_code": None,
        "attempts": 0,
        "hold_until": None,
        "hold_reason": None,
    }
    if result.skipped:
        return Decision(
            "skipped", {**ok, "last_result": "skipped", "queued_until": None}, metrics=counts
        )
    if result.stopped == "quota" and not result.complete:
        # stopped cleanly because the API quota was spent: what it read is committed; the
        # tenant resumes when the quota frees (parked on the queue: no thread waits)
        delay = max(MIN_PARK, park_seconds)
        if result.resume_at:
            delay = max(delay, (parse_utc(result.resume_at) - now).total_seconds())
        metrics = (*counts, ("ingest.throttled", 1))
        if msg is None:
            return Decision(
                "throttled",
                {**ok, "last_result": "throttled"},
                delay=delay,
                metrics=metrics,
                log="API quota spent; the next tick resumes it",
            )
        return Decision(
            "parked",
            {
                **ok,
                "last_result": "throttled",
                "queued_until": now + timedelta(seconds=delay) + settings.fanout.queued_marker,
                "queue_reason": msg.reason,
            },
            delay=delay,
            # like a backlog continuation, a backfill resumes where this run got to
            requeue=IngestMessage(result.tenant, msg.reason, _resumed(msg, result)),
            metrics=metrics,
            log=f"API quota spent; parked for {delay:.0f}s",
        )
    if not result.complete and msg is not None:
        delay = continue_delay
        return Decision(
            "continue",
            {
                **ok,
                "last_result": "partial",
                "queued_until": now + timedelta(seconds=delay) + settings.fanout.queued_marker,
                "queue_reason": "continue",
            },
            delay=delay,
            requeue=IngestMessage(result.tenant, "continue", _resumed(msg, result)),
            metrics=counts,
            log=f"backlog left; continues in {delay:.0f}s",
        )
    return Decision(
        "done",
        {**ok, "last_result": "ok", "last_success_at": now, "queued_until": None},
        metrics=counts,
        log=(
            f"ok, {result.incidents} stored, {result.api_calls} API calls, "
            f"watermark {result.watermark}"
        ),
    )


def _resumed(msg: IngestMessage, result: TenantResult) -> datetime | None:
    """A backfill resumes where this run got to, not at its own start again (the checkpoint
    only moves forward, so it does not record a backfill's progress)."""
    since = msg.since
    if since is not None and result.reached:
        since = max(since, parse_utc(result.reached))
    return since
