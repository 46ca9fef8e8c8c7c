"""Partner scale, through ``app.get_functions()``, the 50-tenant emulator and
Azurite queues: fan-out, poison, consent holds, throttling parks, idle ticks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from testkit.functions_host import QueueHost, timer_function
from testkit.storage_view import table_rows
from tests.conftest import LocalCloud
from tests.fanout.conftest import StorageRequests, register_customers

pytestmark = pytest.mark.e2e


def tick() -> None:
    timer_function()(TimerRequest(past_due=False))


def truth_ids(cloud: LocalCloud, tenant: str) -> set[str]:
    body = cloud.admin("GET", f"truth/{tenant}/incidents?api=graph")
    return {str(i["id"]) for i in body["value"]}


def api_calls(cloud: LocalCloud) -> dict[str | None, int]:
    """Defender/Graph requests answered, by tenant."""
    out: dict[str | None, int] = {}
    for row in cloud.stats()["requests"]:
        if row["endpoint"].startswith(("graph.", "legacy.")):
            out[row["tenant"]] = out.get(row["tenant"], 0) + row["count"]
    return out


def status_json() -> dict[str, Any]:
    import io
    import json

    from shared.cli import main

    out = io.StringIO()
    main(["status", "--json"], out=out)
    return dict(json.loads(out.getvalue()))


def test_fifty_tenants_one_without_consent_one_failing(
    scale_cloud: LocalCloud, scale_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """48 ingested in one tick through the queue; the consent-less one marked and skipped;
    the failing one poisoned and reported; no other invocation fails; no secret in the logs."""
    import logging

    caplog.set_level(logging.INFO)
    ids = register_customers(scale_cloud)
    no_consent, failing = ids[7], ids[23]
    scale_cloud.admin("POST", "consent", {"tenant": no_consent, "consent": False})
    scale_cloud.admin(
        "POST", "faults", {"rate": 1.0, "kinds": ["500"], "tenants": [failing], "seed": 2}
    )
    host = QueueHost(scale_env["DATA_STORAGE_CONNECTION_STRING"])

    tick()
    assert host.total_count() == 50  # the timer only queued
    invocations = host.drain()

    conn = scale_env["DATA_STORAGE_CONNECTION_STRING"]
    healthy = [t for t in ids if t not in (no_consent, failing)]
    for tenant in healthy:
        assert set(table_rows(conn, tenant)) == truth_ids(scale_cloud, tenant), tenant
    others = [i for i in invocations if i.tenant != failing]
    assert all(i.ok for i in others), [i.error for i in others if not i.ok]
    assert sorted(i.tenant for i in others) == sorted(t for t in ids if t != failing)
    failed = [i for i in invocations if i.tenant == failing]
    assert [i.dequeue_count for i in failed] == [1, 2, 3, 4, 5]
    assert not any(i.ok for i in failed)
    assert host.poison_tenants() == [failing]
    assert table_rows(conn, no_consent) == {} and table_rows(conn, failing) == {}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"tenant {failing}: attempt 5 of 5 failed" in logged  # reported with the tenant
    assert f"tenant {no_consent}: the app has no consent there" in logged
    assert f"metric ingest.poisoned=1 tenant={failing}" in logged
    for secret in (scale_cloud.emulator.client_secret, "AccountKey=", "Eby8vdM02xNOcqFl"):
        assert secret not in logged

    report = status_json()
    by_tenant = {t["tenant"]: t for t in report["tenants"]}
    assert by_tenant[no_consent]["health"] == "consent_required"
    assert by_tenant[no_consent]["consent"] == "missing"
    assert "consent" in (by_tenant[no_consent]["last_error"] or "")
    assert by_tenant[failing]["health"] == "poisoned"
    assert by_tenant[failing]["queue"] == "poison"
    assert by_tenant[failing]["last_error_code"] == "upstream_unavailable"
    assert all(by_tenant[t]["health"] == "ok" for t in healthy)
    # worst first: the poisoned tenant, then the one without consent
    assert [t["tenant"] for t in report["tenants"][:2]] == [failing, no_consent]
    assert report["queues"]["poison"] == 1

    # the next tick queues the 48 again, but neither held tenant: no poison every tick
    tick()
    assert host.total_count() == 48
    second = host.drain()
    assert all(i.ok for i in second) and len(second) == 48
    assert host.poison_tenants() == [failing]


def test_requeue_poison_puts_the_message_back_and_lifts_the_hold(
    scale_cloud: LocalCloud, scale_env: dict[str, str]
) -> None:
    """After the fault is gone, ``tenants requeue-poison`` re-queues the tenant and it ingests."""
    import io
    import json

    from shared.cli import main

    ids = register_customers(scale_cloud)
    failing = ids[3]
    scale_cloud.admin("POST", "faults", {"rate": 1.0, "kinds": ["503"], "tenants": [failing]})
    host = QueueHost(scale_env["DATA_STORAGE_CONNECTION_STRING"])
    tick()
    host.drain()
    assert host.poison_tenants() == [failing]
    out = io.StringIO()
    assert main(["tenants", "poison", "--json"], out=out) == 1
    listed = json.loads(out.getvalue())
    assert [p["tenant"] for p in listed["poison"]] == [failing]
    assert listed["poison"][0]["last_error_code"] == "upstream_unavailable"
    assert "503" in (listed["poison"][0]["last_error"] or "")

    out = io.StringIO()
    assert main(["check", "--json", "--tenant", failing], out=out) == 1  # check reports it
    checked = json.loads(out.getvalue())
    assert [p["tenant"] for p in checked["poison"]["poison"]] == [failing]

    scale_cloud.admin("POST", "faults", {"rate": 0})
    out = io.StringIO()
    assert main(["tenants", "requeue-poison", "--json"], out=out) == 0
    assert json.loads(out.getvalue())["requeued"] == [failing]
    assert host.poison_tenants() == []
    again = host.drain()
    assert [(i.tenant, i.ok) for i in again] == [(failing, True)]
    conn = scale_env["DATA_STORAGE_CONNECTION_STRING"]
    assert set(table_rows(conn, failing)) == truth_ids(scale_cloud, failing)


def test_consent_comes_back_after_the_hold(
    scale_cloud: LocalCloud, scale_env: dict[str, str]
) -> None:
    """A tenant without consent is probed once, held, and ingested after consent returns
    and its hold is lifted (``tenants resume``)."""
    from shared.cli import main

    ids = register_customers(scale_cloud)
    tenant = ids[5]
    scale_cloud.admin("POST", "consent", {"tenant": tenant, "consent": False})
    host = QueueHost(scale_env["DATA_STORAGE_CONNECTION_STRING"])
    tick()
    host.drain()
    tokens_refused = [
        r
        for r in scale_cloud.stats()["requests"]
        if r["endpoint"] == "entra.token" and r["tenant"] == tenant and r["status"] >= 400
    ]
    assert sum(r["count"] for r in tokens_refused) >= 1
    before = sum(r["count"] for r in tokens_refused)

    tick()  # held: not queued, Entra not asked again
    invocations = host.drain()
    assert tenant not in {i.tenant for i in invocations}
    refused_now = sum(
        r["count"]
        for r in scale_cloud.stats()["requests"]
        if r["endpoint"] == "entra.token" and r["tenant"] == tenant and r["status"] >= 400
    )
    assert refused_now == before

    scale_cloud.admin("POST", "consent", {"tenant": tenant, "consent": True})
    assert main(["tenants", "resume", tenant]) == 0
    tick()
    host.drain()
    conn = scale_env["DATA_STORAGE_CONNECTION_STRING"]
    assert set(table_rows(conn, tenant)) == truth_ids(scale_cloud, tenant)


def test_a_throttled_tenant_is_parked_and_does_not_delay_the_others(
    scale_cloud: LocalCloud, scale_env: dict[str, str]
) -> None:
    """A tenant answering 429 with Retry-After 300 gets one call, is parked on the queue for
    the Retry-After, and every other tenant is ingested in the same drain."""
    ids = register_customers(scale_cloud)
    throttled = ids[11]
    scale_cloud.admin(
        "POST",
        "faults",
        {"rate": 1.0, "kinds": ["429"], "retry_after": 300, "tenants": [throttled]},
    )
    host = QueueHost(scale_env["DATA_STORAGE_CONNECTION_STRING"], batch_size=4)
    tick()
    started = datetime.now(UTC)
    invocations = host.drain()

    mine = [i for i in invocations if i.tenant == throttled]
    others = [i for i in invocations if i.tenant != throttled]
    assert len(mine) == 1 and mine[0].ok  # parked, not failed: no retry storm, no poison
    assert api_calls(scale_cloud).get(throttled) == 1  # one 429, no waiting retry
    assert len(others) == 49 and all(i.ok for i in others)
    # the drain ended while the parked message is still invisible (Retry-After not over)
    assert host.total_count() == 1 and host.visible_count() == 0
    # the throttled invocation ended before the last of the others began: no worker waited
    assert mine[0].end < max(i.start for i in others)
    report = status_json()
    row = next(t for t in report["tenants"] if t["tenant"] == throttled)
    assert row["health"] == "throttled" and row["queue"] == "queued"
    from shared.bootstrap import services

    state = services().run_states().get(throttled)
    assert state.queued_until is not None
    assert state.queued_until >= started + timedelta(seconds=290)


def test_two_idle_ticks_cost_one_call_per_tenant_and_no_data_writes(
    scale_cloud: LocalCloud, scale_env: dict[str, str], storage_requests: StorageRequests
) -> None:
    """After a first full tick, two ticks with no activity: one API call per tenant per tick,
    no token request, and no storage write but state (run rows, queue, locks)."""
    ids = register_customers(scale_cloud)
    host = QueueHost(scale_env["DATA_STORAGE_CONNECTION_STRING"])
    tick()
    assert all(i.ok for i in host.drain())
    calls_before = api_calls(scale_cloud)
    tokens_before = scale_cloud.token_count("client_credentials")
    storage_requests.calls.clear()

    for _ in range(2):
        tick()
        assert all(i.ok for i in host.drain())

    calls_after = api_calls(scale_cloud)
    assert {t: calls_after.get(t, 0) - calls_before.get(t, 0) for t in ids} == dict.fromkeys(ids, 2)
    assert scale_cloud.token_count("client_credentials") == tokens_before
    writes = storage_requests.writes()
    data = [w for w in writes if not _is_state_write(w)]
    assert data == []
    assert writes  # the markers and queue messages were written (the counter works)
    ticks = 2
    table = [w for w in writes if w[0] == "table"]
    puts = [w for w in writes if w[0] == "queue" and w[1] == "POST"]
    blobs = [w for w in writes if w[0] == "blob"]
    # the marker claimed by the timer and cleared by the handler: two row merges per tick
    assert len(table) == 2 * len(ids) * ticks
    assert all(w[1] == "PATCH" and "PartitionKey='run'" in w[2] for w in table)
    assert len(puts) == len(ids) * ticks  # one message per tenant per tick
    # blob writes are state only: the lock's lease and the checkpoint (which moves to the end of
    # the idle run's one slice); never data, quarantine or the journal
    assert all(
        "/defender-state/locks/" in w[2] or "/defender-state/watermarks/" in w[2] for w in blobs
    )


def _is_state_write(call: tuple[str, str, str]) -> bool:
    service, _, path = call
    if service == "queue":
        return True
    if service == "table":
        return "DefenderTenants" in path and "PartitionKey='run'" in path
    return "/defender-state/locks/" in path or "/defender-state/watermarks/" in path
