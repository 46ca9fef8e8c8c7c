"""Fan-out's outcome table (``shared.usecases.fanout.decide``), one row at a time, in
milliseconds."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from shared.core.clock import format_utc
from shared.core.settings import Settings
from shared.storage.values import IngestMessage
from shared.usecases.fanout import MIN_PARK, Decision, decide
from shared.usecases.ingest import TenantResult

T = "11111111-1111-1111-1111-111111111111"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SETTINGS = Settings.from_env(
    {
        "DEFENDER_TENANT_ID": T,
        "DEFENDER_CLIENT_ID": T,
        "KEY_VAULT_URL": "https://v.vault.azure.net",
        "DATA_STORAGE_ACCOUNT_NAME": "acct",
    }
)
TIMER = IngestMessage(T, "timer", None)
BACKFILL = IngestMessage(T, "backfill", NOW - timedelta(days=20))


def _decide(result: TenantResult, msg: IngestMessage | None = TIMER, **kw: object) -> Decision:
    args: dict[str, object] = {
        "now": NOW,
        "msg": msg,
        "dequeue_count": 1,
        "final": False,
        "settings": SETTINGS,
        "park_seconds": 0.0,
        "continue_delay": 2.0,
    }
    args.update(kw)
    return decide(result, **args)  # type: ignore[arg-type]


def test_complete_clears_the_marker_and_records_success() -> None:
    d = _decide(TenantResult(T, ok=True, complete=True, incidents=3, api_calls=2, watermark="w"))
    assert d.action == "done" and d.requeue is None
    assert d.changes["last_result"] == "ok" and d.changes["last_success_at"] == NOW
    assert d.changes["queued_until"] is None and d.changes["watermark"] == "w"
    assert ("ingest.incidents", 3) in d.metrics and ("ingest.api_calls", 2) in d.metrics


def test_backlog_left_continues_soon_and_a_backfill_resumes_where_it_got_to() -> None:
    reached = NOW - timedelta(days=5)
    result = TenantResult(
        T, ok=True, complete=False, reached=reached.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    d = _decide(result, BACKFILL)
    assert d.action == "continue" and d.delay == 2.0
    assert d.requeue == IngestMessage(T, "continue", reached)
    assert d.changes["queued_until"] == NOW + timedelta(seconds=2) + SETTINGS.fanout.queued_marker


def test_backlog_left_inline_is_done_for_this_tick() -> None:
    d = _decide(TenantResult(T, ok=True, complete=False), None)
    assert d.action == "done" and d.requeue is None


def test_quota_stop_parks_until_the_quota_frees() -> None:
    resume = NOW + timedelta(seconds=90)
    result = TenantResult(T, ok=True, stopped="quota", resume_at=format_utc(resume))
    d = _decide(result, park_seconds=10.0)
    assert d.action == "parked" and d.delay == 90.0
    assert d.requeue == IngestMessage(T, "timer", None)
    assert d.changes["last_result"] == "throttled" and d.changes["consent"] == "ok"
    inline = _decide(result, None)
    assert inline.action == "throttled" and inline.requeue is None


def test_quota_stop_without_a_time_parks_at_least_the_minimum() -> None:
    d = _decide(TenantResult(T, ok=True, stopped="quota"), park_seconds=0.5)
    assert d.delay == MIN_PARK


def test_a_run_skipped_for_a_held_lock_clears_the_marker() -> None:
    d = _decide(TenantResult(T, ok=True, skipped=True))
    assert d.action == "skipped" and d.changes["queued_until"] is None and d.requeue is None


@pytest.mark.parametrize("code", ["consent_required", "consent"])
def test_no_consent_holds_the_tenant_and_consumes_the_message(code: str) -> None:
    d = _decide(TenantResult(T, ok=False, error="AADSTS7000229", error_code=code))
    assert d.action == "consent" and d.requeue is None
    assert d.changes["hold_until"] == NOW + SETTINGS.fanout.consent_retry
    assert d.changes["consent"] == "missing" and d.changes["hold_reason"] == "consent"
    assert d.log_level == logging.WARNING and f"tenants resume {T}" in d.log


def test_throttled_failure_is_parked_with_its_original_reason() -> None:
    d = _decide(
        TenantResult(T, ok=False, error="429", error_code="throttled"), BACKFILL, park_seconds=42.0
    )
    assert d.action == "parked" and d.delay == 42.0
    assert d.requeue == BACKFILL
    assert d.changes["last_error_code"] == "throttled"
    inline = _decide(TenantResult(T, ok=False, error_code="throttled"), None)
    assert inline.action == "throttled" and inline.requeue is None


def test_other_failures_are_retried_then_held_on_the_last_attempt() -> None:
    failed = TenantResult(T, ok=False, error="boom", error_code="storage")
    first = _decide(failed, dequeue_count=1)
    assert first.action == "failed" and "hold_until" not in first.changes
    assert first.changes["attempts"] == 1 and ("ingest.failed", 1) in first.metrics
    last = _decide(failed, dequeue_count=5, final=True)
    assert (
        last.action == "failed" and last.changes["hold_until"] == NOW + SETTINGS.fanout.failure_hold
    )
    assert last.changes["hold_reason"] == "poison" and last.log_level == logging.ERROR
    assert ("ingest.poisoned", 1) in last.metrics
