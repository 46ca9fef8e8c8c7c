"""Pure parts of partner scale: queue messages, health and ordering, settings, client max wait."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from shared.core.errors import ConfigError, ThrottledError
from shared.core.settings import Settings
from shared.defender.client import DefenderClient, RetryPolicy
from shared.defender.limiter import RateLimiterRegistry
from shared.storage.values import (
    BadMessageError,
    IngestMessage,
    RunState,
    TenantEntry,
    parse_message,
)
from shared.usecases.fanout import TenantStatus, health_of, sort_worst_first
from tests.unit.test_defender_client import FakeAdapter, FakeTime, Reply

ROOT = Path(__file__).resolve().parents[2]
T = "11111111-1111-1111-1111-111111111111"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BASE_ENV = {
    "DEFENDER_TENANT_ID": T,
    "DEFENDER_CLIENT_ID": T,
    "KEY_VAULT_URL": "https://v.vault.azure.net",
    "DATA_STORAGE_ACCOUNT_NAME": "acct",
}


def test_message_round_trip_keeps_the_board_format() -> None:
    """tenant, reason, since (ISO or null): nothing else."""
    since = datetime(2026, 11, 1, tzinfo=UTC)
    message = IngestMessage(T, "backfill", since)
    assert json.loads(message.to_json()) == {
        "tenant": T,
        "reason": "backfill",
        "since": "2026-11-01T00:00:00Z",
    }
    assert parse_message(message.to_json()) == message
    # a body stored base64-encoded by a plain client parses too
    assert parse_message(base64.b64encode(message.to_json().encode()).decode()) == message
    assert parse_message(json.dumps({"tenant": T.upper()})) == IngestMessage(T, "timer", None)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        ('{"tenant": "x"}', "tenant GUID"),
        (json.dumps({"tenant": T, "reason": "later"}), "'reason'"),
        (json.dumps({"tenant": T, "since": "yesterday"}), "'since'"),
        (json.dumps({"tenant": T, "since": 5}), "'since'"),
        (json.dumps({"tenant": T, "extra": 1}), "unknown field"),
    ],
)
def test_bad_messages_are_refused_with_a_reason(body: str, problem: str) -> None:
    with pytest.raises(BadMessageError, match=problem):
        parse_message(body)


def test_markers_and_holds_expire() -> None:
    state = RunState(T, queued_until=NOW + timedelta(minutes=1), hold_until=NOW)
    assert state.queued(NOW) and not state.queued(NOW + timedelta(minutes=2))
    assert not state.held(NOW)  # a hold ends at its time
    assert not RunState(T).queued(NOW) and not RunState(T).held(NOW)


def test_health_from_state() -> None:
    entry = TenantEntry(T)
    ok = RunState(T, last_success_at=NOW, last_result="ok", consent="ok")
    assert health_of(entry, ok, NOW, poisoned=False) == "ok"
    assert health_of(entry, ok, NOW, poisoned=True) == "poisoned"
    assert health_of(TenantEntry(T, enabled=False), ok, NOW, poisoned=True) == "paused"
    held = RunState(T, hold_until=NOW + timedelta(hours=1), hold_reason="poison")
    assert health_of(entry, held, NOW, poisoned=False) == "poisoned"
    assert health_of(entry, RunState(T, consent="missing"), NOW, False) == "consent_required"
    assert health_of(entry, RunState(T, last_result="failed"), NOW, False) == "failing"
    assert health_of(entry, RunState(T, last_result="throttled"), NOW, False) == "throttled"
    assert health_of(entry, RunState(T), NOW, False) == "never_run"


def _row(tenant: str, health: str, lag: float | None) -> TenantStatus:
    return TenantStatus(
        tenant, None, health, "idle", None, lag, None, None, None, 0, "ok", None, None, None,
        None, True,
    )  # fmt: skip


def test_status_is_sorted_worst_first_then_by_lag() -> None:
    rows = [
        _row("a", "ok", 10.0),
        _row("b", "ok", 900.0),
        _row("c", "paused", None),
        _row("d", "consent_required", 5.0),
        _row("e", "poisoned", 1.0),
        _row("f", "never_run", None),
        _row("g", "failing", 3.0),
    ]
    assert [r.tenant for r in sort_worst_first(rows)] == ["e", "g", "d", "f", "b", "a", "c"]


def test_partner_settings_parse_and_report_every_problem() -> None:
    parsed = Settings.from_env(BASE_ENV)
    assert parsed.fanout.mode == "queue" and parsed.fanout.concurrency == 4
    assert parsed.fanout.max_dequeue_count == 5 and parsed.defender.max_retry_wait == 30.0
    inline = Settings.from_env(
        {**BASE_ENV, "INGEST_FANOUT": "INLINE", "INGEST_CONSENT_RETRY_HOURS": "2"}
    )
    assert inline.fanout.mode == "inline" and inline.fanout.consent_retry == timedelta(hours=2)
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE_ENV, "INGEST_FANOUT": "topic", "INGEST_CONCURRENCY": "0"})
    assert len(info.value.problems) == 2
    assert "INGEST_FANOUT" in str(info.value) and "INGEST_CONCURRENCY" in str(info.value)


def test_default_max_dequeue_count_matches_host_json() -> None:
    """The handler's "last attempt" must be the host's: keep the two in step."""
    host = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    assert host["maxDequeueCount"] == Settings.from_env(BASE_ENV).fanout.max_dequeue_count


def _client(handler: object, *, max_wait: float | None, limiter: RateLimiterRegistry | None):  # type: ignore[no-untyped-def]
    adapter = FakeAdapter(handler)  # type: ignore[arg-type]
    session = requests.Session()
    session.mount("https://", adapter)
    t = FakeTime()
    client = DefenderClient(
        session=session,
        token=lambda: "tok",
        api="graph",
        base_url="https://api.example.test",
        retry=RetryPolicy(max_attempts=5, budget=600.0, max_wait=max_wait),
        limiter=limiter,
        tenant="t1",
        sleep=t.sleep,
        monotonic=t.monotonic,
        rng=lambda: 1.0,
    )
    return client, adapter, t


def _throttled(request: requests.PreparedRequest) -> Reply:
    return (
        429,
        {"error": {"code": "TooManyRequests", "message": "slow down"}},
        {"Retry-After": "300"},
    )


def test_a_retry_after_above_max_wait_fails_at_once_and_pauses_the_bucket() -> None:
    """The call does not sleep 300 s: it raises, and the tenant's bucket knows how long."""
    t = FakeTime()
    limiter = RateLimiterRegistry({"incidents": ((50, 60.0),)}, monotonic=t.monotonic)
    client, adapter, clock = _client(_throttled, max_wait=30.0, limiter=limiter)
    client._monotonic = t.monotonic  # one clock for client and limiter
    client._sleep = t.sleep
    with pytest.raises(ThrottledError) as info:
        client.get_incident("1")
    assert info.value.retry_after == 300.0
    assert len(adapter.sent) == 1 and t.slept == []
    assert limiter.wait_estimate("t1") == pytest.approx(300.0)
    # a second call of the same tenant is refused by the paused bucket, without sending
    with pytest.raises(ThrottledError):
        client.get_incident("1")
    assert len(adapter.sent) == 1 and t.slept == []


def test_without_max_wait_the_retry_after_is_slept() -> None:
    """The control: no cap, so the client waits the Retry-After and retries."""
    replies = [_throttled, lambda r: (200, {"id": "1", "displayName": "x", "status": "active",
               "severity": "high", "createdDateTime": "2026-10-01T00:00:00Z",
               "lastUpdateDateTime": "2026-11-01T00:00:00Z"}, {})]  # fmt: skip

    def handler(request: requests.PreparedRequest) -> Reply:
        return replies.pop(0)(request)  # type: ignore[operator, no-any-return]

    client, adapter, t = _client(handler, max_wait=None, limiter=None)
    assert client.get_incident("1").id == "1"
    assert t.slept == [300.0] and len(adapter.sent) == 2
