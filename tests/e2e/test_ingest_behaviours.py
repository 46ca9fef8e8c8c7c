"""Ingestion is right under the service behaviours the emulator
can switch on (``/_emulator/behaviour``, board interface 1): results in arbitrary order, SOC
activity between the pages of a listing, ``$expand=alerts`` failing, updates visible late.

``INGEST_STRESS=full`` runs 50 runs; the default runs fewer with the same checks.
"""

# ruff: noqa: S311 - seeded pseudo-random activity is the point of these tests

from __future__ import annotations

import os
import random
import time

import pytest

from tests.conftest import LocalCloud
from tests.e2e.guarantees import (
    assert_store_matches,
    env_for,
    ingest,
    repeated_runs_env,
    truth,
    versions,
)

FULL = os.environ.get("INGEST_STRESS") == "full"


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("api", "faults"), [("graph", False), ("legacy", False), ("graph", True), ("legacy", True)]
)
def test_arbitrary_order_with_activity_during_paging(
    cloud: LocalCloud, app_env: dict[str, str], api: str, faults: bool
) -> None:
    """Runs over results in arbitrary order, with creates, updates and merges between runs and
    between the pages of each listing, ``@odata.count`` on every page, the first only or none
    (drawn for each run) and 20% faults (429, 500, resets, truncated bodies): every version that
    stood still through a completed run is stored; at the end the table equals the truth field
    for field and every version is in the archive exactly once."""
    rng = random.Random(11 if faults else 3)
    home = app_env["DEFENDER_TENANT_ID"]
    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    env = repeated_runs_env(cloud, app_env, api)
    cloud.admin(
        "POST",
        "behaviour",
        {
            "order": "arbitrary",
            "order_seed": rng.randint(1, 1000),
            "paging_activity": {"tenant": home, "every": 2, "create": 1, "update": 2, "merge": 1},
        },
    )
    runs = 50 if FULL else 5
    observed: set[tuple[str, str]] = versions(truth(cloud, home, api))
    must_have: set[tuple[str, str]] = set()
    for _ in range(runs):
        cloud.admin(
            "POST",
            "activity",
            {
                "tenant": home,
                "create": rng.randint(0, 5),
                "update": rng.randint(0, 8),
                "merge": rng.randint(0, 1),
            },
        )
        cloud.admin("POST", "behaviour", {"count_pages": rng.choice(["every", "first", "none"])})
        before = versions(truth(cloud, home, api))
        if faults:
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
        after = versions(truth(cloud, home, api))
        observed |= before | after
        if result["ok"] and result["complete"]:
            must_have |= before & after  # versions that stood still through the run
    cloud.admin("POST", "behaviour", {"paging_activity": None})
    final = ingest(env)
    assert final["ok"] and final["complete"], final
    assert_store_matches(cloud, conn, home, api, observed, must_have)


@pytest.mark.e2e
def test_expand_failure_stores_every_incident_with_its_alerts(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """Graph answers 500 to a filtered $expand=alerts listing for this tenant: every incident is
    still stored with its alerts (read from alerts_v2 by incident id), the summary says so, and
    the next run does not try the failing request again."""
    home = app_env["DEFENDER_TENANT_ID"]
    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    env = env_for(app_env, API_MAX_ATTEMPTS="2")
    cloud.admin("POST", "behaviour", {"expand_failure_tenants": [home]})

    first = ingest(env)

    assert first["ok"] and first["complete"], first
    assert first["alerts"] == "separate"
    current = truth(cloud, home, "graph")
    assert sum(1 for i in current if i["alerts"]) > len(current) / 2  # alerts to compare
    assert_store_matches(cloud, conn, home, "graph", versions(current))  # alerts field for field

    cloud.admin("POST", "activity", {"tenant": home, "create": 3, "update": 2})
    second = ingest(env)
    assert second["ok"] and second["alerts"] == "separate"
    assert second["api_calls"] < first["api_calls"]
    seen = versions(current) | versions(truth(cloud, home, "graph"))
    assert_store_matches(cloud, conn, home, "graph", seen)


@pytest.mark.e2e
def test_late_updates_within_the_overlap_are_stored(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """Updates the API shows only 8 s after their last-update time: a run right after them
    misses them (they are not visible yet) and moves its checkpoint past their time; the next
    run re-reads the overlap (1 minute) and stores them."""
    home = app_env["DEFENDER_TENANT_ID"]
    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    env = env_for(app_env, INGEST_OVERLAP_MINUTES="1", INGEST_SAFETY_LAG_SECONDS="0")
    ingest(env)
    before = versions(truth(cloud, home, "graph"))
    cloud.admin("POST", "behaviour", {"late_arrival_seconds": 8})
    changed = cloud.admin("POST", "activity", {"tenant": home, "create": 2, "update": 4})
    assert changed["created"] and changed["updated"]

    late_versions = versions(truth(cloud, home, "graph")) - versions(
        cloud.admin("GET", f"truth/{home}/incidents?api=graph&visible=true")["value"]
    )
    early = ingest(env)
    assert early["ok"] and late_versions  # some were not visible yet
    _wait_until_visible(cloud, home, late_versions)
    later = ingest(env)

    assert later["ok"] and later["incidents"] >= len(late_versions)
    seen = before | versions(truth(cloud, home, "graph"))
    assert_store_matches(cloud, conn, home, "graph", seen, late_versions)


def _wait_until_visible(cloud: LocalCloud, tenant: str, wanted: set[tuple[str, str]]) -> None:
    """Wait (up to a minute) until the API shows every version in ``wanted``: as long as the
    late arrival takes from their last-update time, and no longer."""
    deadline = time.monotonic() + 60
    while True:
        shown = cloud.admin("GET", f"truth/{tenant}/incidents?api=graph&visible=true")["value"]
        if wanted <= versions(shown):
            return
        assert time.monotonic() < deadline, "late versions never became visible"
        time.sleep(0.2)
