"""The registry CLI (``tenants add|list|pause|resume|remove``), per-tenant overrides, and the
inline mode of the timer (no queue), against the 50-tenant emulator and Azurite."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from shared.cli import main
from tests.conftest import LocalCloud
from tests.e2e.storage_view import table_rows
from tests.fanout.host import QueueHost, timer_function

pytestmark = pytest.mark.e2e


def cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(list(args), out=out)
    return status, out.getvalue()


def listed() -> dict[str, dict[str, Any]]:
    status, text = cli("tenants", "list", "--json")
    assert status == 0
    return {t["tenant"]: t for t in json.loads(text)["tenants"]}


def test_add_list_pause_resume_remove_with_overrides(
    scale_cloud: LocalCloud, scale_env: dict[str, str]
) -> None:
    """Onboarding rows carry names and overrides; a paused tenant is not queued; the API
    override sends that tenant's calls to the legacy surface."""
    home, legacy, paused = scale_cloud.emulator.tenant_ids[:3]
    assert cli("tenants", "add", legacy, "--name", "Fabrikam", "--api", "legacy")[0] == 0
    assert cli("tenants", "add", paused, "--name", "Paused Inc", "--lookback-days", "3")[0] == 0
    assert cli("tenants", "pause", paused) == (0, f"tenant {paused} paused\n")
    rows = listed()
    assert rows[legacy]["name"] == "Fabrikam" and rows[legacy]["api"] == "legacy"
    assert rows[paused]["enabled"] is False and rows[paused]["lookback_days"] == 3
    assert rows[home]["source"] == "setting"

    host = QueueHost(scale_env["DATA_STORAGE_CONNECTION_STRING"])
    timer_function()(TimerRequest(past_due=False))
    assert sorted(i.tenant for i in host.drain()) == sorted([home, legacy])
    calls = {(r["endpoint"], r["tenant"]) for r in scale_cloud.stats()["requests"] if r["count"]}
    assert ("legacy.incidents.list", legacy) in calls
    assert ("graph.incidents.list", home) in calls
    assert not any(t == paused for _, t in calls)
    assert listed()[legacy]["last_result"] == "ok" and listed()[legacy]["consent"] == "ok"

    status, text = cli("status")
    assert status == 0 and "paused" in text and "Fabrikam" in text

    assert cli("tenants", "resume", paused)[0] == 0
    assert listed()[paused]["enabled"] is True
    assert cli("tenants", "remove", legacy) == (0, f"tenant {legacy} removed\n")
    assert legacy not in listed()


@pytest.mark.parametrize(
    "args",
    [
        ("tenants", "add", "not-a-guid"),
        ("tenants", "add", "11111111-1111-1111-1111-111111111111", "--lookback-days", "999"),
    ],
)
def test_bad_registry_input_is_a_usage_error(scale_env: dict[str, str], args: tuple[str]) -> None:
    assert cli(*args)[0] == 2


def test_pause_of_an_unknown_tenant_is_refused(scale_env: dict[str, str]) -> None:
    assert cli("tenants", "pause", "11111111-1111-1111-1111-111111111111")[0] == 2


def test_inline_mode_ingests_every_tenant_without_the_queue(
    scale_cloud: LocalCloud, scale_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """INGEST_FANOUT=inline: the timer ingests the tenants itself, several at once, records
    their state for ``status``, and queues nothing."""
    from shared.bootstrap import services

    ids = list(scale_cloud.emulator.tenant_ids[:10])
    monkeypatch.setenv("INGEST_FANOUT", "inline")
    monkeypatch.setenv("INGEST_CONCURRENCY", "4")
    monkeypatch.setenv("INGEST_TENANTS", ",".join(ids))
    services.cache_clear()
    timer_function()(TimerRequest(past_due=False))
    conn = scale_env["DATA_STORAGE_CONNECTION_STRING"]
    for tenant in ids:
        truth = scale_cloud.admin("GET", f"truth/{tenant}/incidents?api=graph")["value"]
        assert set(table_rows(conn, tenant)) == {str(i["id"]) for i in truth}
    host = QueueHost(conn)
    assert host.total_count() == 0
    status, text = cli("status", "--json")
    assert status == 0
    assert {t["health"] for t in json.loads(text)["tenants"]} == {"ok"}


def test_inline_timer_does_not_fail_when_a_tenant_stops_for_quota(
    scale_cloud: LocalCloud, scale_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """INGEST_FANOUT=inline, one tenant answering 429 with a Retry-After longer than a call may
    wait: its run stops cleanly (ok, stopped quota, resume_at), the invocation succeeds, the
    others are ingested, and ``status`` shows it throttled, not failing."""
    from shared.bootstrap import services

    ids = list(scale_cloud.emulator.tenant_ids[:4])
    throttled = ids[2]
    scale_cloud.admin(
        "POST",
        "faults",
        {"rate": 1.0, "kinds": ["429"], "retry_after": 300, "tenants": [throttled]},
    )
    monkeypatch.setenv("INGEST_FANOUT", "inline")
    monkeypatch.setenv("INGEST_TENANTS", ",".join(ids))
    services.cache_clear()
    timer_function()(TimerRequest(past_due=False))  # raises if the invocation failed
    conn = scale_env["DATA_STORAGE_CONNECTION_STRING"]
    for tenant in ids:
        if tenant != throttled:
            truth = scale_cloud.admin("GET", f"truth/{tenant}/incidents?api=graph")["value"]
            assert set(table_rows(conn, tenant)) == {str(i["id"]) for i in truth}
    state = services().run_states().get(throttled)
    assert state.last_result == "throttled" and state.last_error is None
    status, text = cli("status", "--json")
    health = {t["tenant"]: t["health"] for t in json.loads(text)["tenants"]}
    assert health[throttled] == "throttled"
    assert {h for t, h in health.items() if t != throttled} == {"ok"}
