"""Crashes, lapsed leases, faults and backlogs neither lose nor duplicate.

Everything real: the CLI (in child processes where the process boundary is the point: a
SIGKILL, two runs at once; in this process otherwise), the emulator, Azurite. After the runs,
the store is compared with ``/_emulator/truth`` (``tests.e2e.guarantees``). Sizes:
``INGEST_STRESS=full`` runs the full sizes (20 kills, 50 runs); the default is smaller to keep
``make test`` reasonable, with the same checks.
"""

# ruff: noqa: S311 - seeded pseudo-random choices of when to kill, what to change

from __future__ import annotations

import os
import random
import signal
import time
from datetime import timedelta
from typing import Any

import pytest

from shared.core.clock import parse_utc
from testkit.storage_view import break_lease
from tests.conftest import LocalCloud
from tests.e2e.guarantees import (
    assert_store_matches,
    env_for,
    ingest,
    ingest_process,
    repeated_runs_env,
    truth,
    versions,
)

FULL = os.environ.get("INGEST_STRESS") == "full"
#: the time-budget test's budget: the shortest the settings accept
BUDGET = 10


@pytest.mark.e2e
def test_sigkilled_runs_resume_without_loss_or_duplicates(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """The ingest process is SIGKILLed at random points (20 times with INGEST_STRESS=full),
    with SOC activity between runs; then one clean run: every version once, table = truth."""
    rng = random.Random(20)
    home = app_env["DEFENDER_TENANT_ID"]
    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    env = env_for(app_env)
    # slow answers keep each run listing for a few seconds (a Graph run reads this tenant in
    # about ten requests), so the random kills land mid-run
    cloud.admin("POST", "faults", {"rate": 1.0, "kinds": ["slow"], "slow_seconds": 0.5})
    observed = versions(truth(cloud, home, "graph"))
    kills = 20 if FULL else 8
    killed = 0
    for round_ in range(kills):
        process = ingest_process(env)
        time.sleep(rng.uniform(0.5, 3.0))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.communicate(timeout=60)
        break_lease(conn, home)  # a killed run's lease lapses (here at once, not in 15 s)
        if round_ % 2:
            cloud.admin("POST", "activity", {"tenant": home, "create": 2, "update": 3, "merge": 1})
            observed |= versions(truth(cloud, home, "graph"))
    cloud.admin("POST", "faults", {"rate": 0})
    assert killed >= kills // 2  # most runs really were killed mid-way

    final = ingest(env)

    assert final["ok"] and final["complete"], final
    assert_store_matches(cloud, conn, home, "graph", observed)


@pytest.mark.e2e
def test_two_processes_and_a_lapsed_lease_store_each_version_once(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """Run A holds the tenant; its lease lapses and run B takes the tenant. A notices before
    its next write, stops and reports lease_lost (not "skipped, ok"); B finishes; no version
    is stored twice. A run that finds the tenant held is a normal skip."""
    home = app_env["DEFENDER_TENANT_ID"]
    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    env = env_for(app_env)
    # slow answers keep run A listing well past the moment B starts (this tenant takes A about
    # ten requests on Graph)
    cloud.admin("POST", "faults", {"rate": 1.0, "kinds": ["slow"], "slow_seconds": 1.5})
    first = ingest_process(env)
    time.sleep(4.0)  # A is listing
    held = ingest(env)
    assert held["ok"] and held["skipped"], held  # concurrent runs are normal

    break_lease(conn, home)
    second = ingest_process(env)
    out_a, _ = first.communicate(timeout=300)
    out_b, _ = second.communicate(timeout=300)
    cloud.admin("POST", "faults", {"rate": 0})

    import json

    a = json.loads(out_a)["tenants"][0]
    b = json.loads(out_b)["tenants"][0]
    assert a["ok"] is False and a["error_code"] == "lease_lost", a
    assert b["ok"] and b["complete"], b
    assert_store_matches(cloud, conn, home, "graph", versions(truth(cloud, home, "graph")))


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("api", "count_pages"),
    [("graph", "every"), ("graph", "first"), ("graph", "none"), ("legacy", "none")],
)
def test_runs_with_activity_and_faults_match_the_truth(
    cloud: LocalCloud, app_env: dict[str, str], api: str, count_pages: str
) -> None:
    """Runs with random creates, updates and merges between them, results in an arbitrary
    order, ``@odata.count`` on every page, the first only or none (legacy has none) and 20%
    injected faults (429, 500, resets, truncated bodies): after each run that completed, every
    version that stood still through it is stored; at the end the table equals the truth."""
    rng = random.Random(7)
    home = app_env["DEFENDER_TENANT_ID"]
    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    env = repeated_runs_env(cloud, app_env, api)
    order = {"order": "arbitrary", "order_seed": rng.randint(1, 1000)}
    cloud.admin("POST", "behaviour", {**order, "count_pages": count_pages})
    runs = 50 if FULL else 6
    observed: set[tuple[str, str]] = set()
    must_have: set[tuple[str, str]] = set()
    for _ in range(runs):
        cloud.admin(
            "POST",
            "activity",
            {
                "tenant": home,
                "create": rng.randint(0, 4),
                "update": rng.randint(0, 6),
                "merge": rng.randint(0, 1),
            },
        )
        before = versions(truth(cloud, home, api))
        observed |= before
        cloud.admin(
            "POST",
            "faults",
            {
                "rate": 0.2,
                "kinds": ["429", "500", "reset", "truncated"],
                "seed": rng.randint(1, 10_000),
                "retry_after": 1,
            },
        )
        result = ingest(env)
        cloud.admin("POST", "faults", {"rate": 0})
        if result["ok"] and result["complete"]:
            must_have |= before
    final = ingest(env)
    assert final["ok"] and final["complete"], final
    assert_store_matches(cloud, conn, home, api, observed, must_have)


@pytest.mark.e2e
def test_a_run_stops_at_its_time_budget_and_the_next_goes_on(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """A slow API and a short budget: each run commits some slices, stops cleanly and says how
    far it got; successive runs finish the backlog, each resuming at the last one's checkpoint
    (its stretch was read long after its time: no overlap to re-read), and a run that keeps up
    re-reads the overlap."""
    home = app_env["DEFENDER_TENANT_ID"]
    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    # pages of 20 at 0.5 s each: the tenant's 260 incidents need 13 slow requests (6.5 s),
    # more than the 5 s a run of the shortest budget allowed (10 s) may spend on requests
    # (budget.MARGIN is kept in hand), so the backlog takes at least two runs; longer pages or
    # budgets would only make the same runs slower
    env = env_for(
        app_env,
        INGEST_TIME_BUDGET_SECONDS=str(BUDGET),
        INGEST_OVERLAP_MINUTES="10",
        INGEST_PAGE_SIZE="20",
        # the budget is what this test is about: the quota (50 calls a minute) would end runs
        # as "quota" stops instead and use up the runs this test allows
        # (tests/e2e/test_ingest_quota.py covers quota stops)
        API_RATE_LIMIT_INCIDENTS="100000/1",
        API_RATE_LIMIT_ALERTS="100000/1",
    )
    for family in ("incidents", "alerts"):
        cloud.admin("POST", "quotas", {"family": family, "limits": []})
    cloud.admin("POST", "faults", {"rate": 1.0, "kinds": ["slow"], "slow_seconds": 0.5})
    results: list[dict[str, Any]] = []
    for _ in range(12):
        results.append(ingest(env))
        if results[-1]["complete"]:
            break
    cloud.admin("POST", "faults", {"rate": 0})

    assert all(r["ok"] for r in results), results
    assert len(results) >= 2 and results[-1]["complete"]
    partial = results[0]
    assert partial["stopped"] == "time budget" and partial["slices"] >= 1
    assert partial["duration"] < BUDGET
    marks = [r["watermark"] for r in results]
    assert marks == sorted(set(marks))  # each run went further
    # the backlog's checkpoints are days old: each run starts where the last one stopped
    assert [r["start"] for r in results[1:]] == marks[:-1]
    current = truth(cloud, home, "graph")
    assert sum(r["incidents"] for r in results) == len(current)
    assert_store_matches(cloud, conn, home, "graph", versions(current))
    kept_up = ingest(env)  # the last checkpoint is now - lag: late updates may still show
    assert kept_up["ok"] and kept_up["incidents"] == 0
    assert parse_utc(kept_up["start"]) == parse_utc(marks[-1]) - timedelta(minutes=10)
