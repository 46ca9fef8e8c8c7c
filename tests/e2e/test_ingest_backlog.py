"""A backlog far larger than one run finishes over repeated time-bounded runs
under quotas scaled down for the test, spending API calls close to the pages it needs.

A dedicated emulator seeds ``INGEST_BACKLOG`` incidents (default 5,000; 100,000 with
``INGEST_BACKLOG=100000``, which takes several minutes) over seven days, with the incident
quotas scaled down 30 times (50 per 2 s, 1,500 per 2 minutes; the client's limiter is set the
same). Runs have a 30 s budget. Peak memory at 10k vs 100k is measured in ``bench/``, not here.
Each run pays a fixed few calls (its first slices, the unsettled tail, slices cut to the time
left near its end), so at this size and budget Graph needs about 1.12-1.15x the pages; at
100,000 in 60 s runs it needs 1.14x (``python -m bench.backlog``). 3,000 in 20 s runs came to
1.22x on a loaded CI machine, which is why the size and budget are not smaller.

The call bound: on Graph, slices older than the late-arrival bound hold up to 500 incidents and
are read across their pages, verified by ``@odata.count`` (``shared.defender.slices``), so a
backfill needs about the pages a perfect reader would: at most 1.2x is asserted. Legacy has no
``$count``: each slice is proved by one short answer, so slices stay below a page, and with
timestamps spread at random (Poisson-like counts) no planner can promise 1.2x there (even
42-item slices without a single overflow cost 50/42 = 1.19x); its bound is loose but still
catches a planner that re-reads pages. See docs/ingestion.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import pytest

from emulator.azurite import Azurite
from emulator.ratelimit import Limit
from testkit.storage_view import archived_lines, duplicates
from tests.conftest import LocalCloud, _clear_storage
from tests.e2e.guarantees import ingest

BACKLOG = int(os.environ.get("INGEST_BACKLOG", "5000"))
PAGE = 50


@pytest.fixture(scope="module")
def backlog_cloud(azurite: Azurite) -> Iterator[LocalCloud]:
    from emulator.server import Emulator, EmulatorConfig

    config = EmulatorConfig(
        seed=31,
        home_incidents=BACKLOG,
        customer_tenants=0,
        quotas={"incidents": (Limit(50, 2), Limit(1500, 120)), "alerts": (Limit(150, 2),)},
    )
    with Emulator(config) as emulator:
        yield LocalCloud(emulator, azurite)


@pytest.mark.e2e
@pytest.mark.parametrize("api", ["graph", "legacy"])
def test_a_backlog_finishes_over_time_bounded_runs(backlog_cloud: LocalCloud, api: str) -> None:
    cloud = backlog_cloud
    cloud.admin("POST", "reset")
    _clear_storage(cloud.azurite.connection_string)
    home = cloud.emulator.home_tenant_id
    env = cloud.app_settings(
        DEFENDER_API=api,
        INGEST_TENANTS=home,
        INGEST_PAGE_SIZE=str(PAGE),
        INGEST_TIME_BUDGET_SECONDS="30",
        INGEST_LOOKBACK_DAYS="8",
        API_RATE_LIMIT_INCIDENTS="50/2,1500/120",
        API_RATE_LIMIT_ALERTS="150/2",
    )
    before = sum(
        r["count"]
        for r in cloud.stats()["requests"]
        if r["endpoint"].endswith("incidents.list") and r["tenant"] == home
    )
    runs = []
    for _ in range(400):
        runs.append(ingest(env))
        if runs[-1]["complete"]:
            break

    assert all(r["ok"] for r in runs), [r for r in runs if not r["ok"]][:1]
    assert runs[-1]["complete"], "the backlog did not finish"
    # how many runs it takes depends on the machine's speed (one fast run can read 5,000 under
    # a 30 s budget); that a run stops at its budget and the next resumes is tested on its own
    # in test_ingest_guarantees.py
    marks = [r["watermark"] for r in runs]
    assert marks == sorted(marks)
    lines = archived_lines(cloud.azurite.connection_string, home)
    assert duplicates(lines) == []
    assert len(lines) == BACKLOG == sum(r["incidents"] for r in runs)
    served = sum(
        r["count"]
        for r in cloud.stats()["requests"]
        if r["endpoint"].endswith("incidents.list") and r["tenant"] == home
    )
    calls = sum(r["api_calls"] for r in runs)
    assert served - before <= calls  # every call we count reached the service at most once
    pages = math.ceil(BACKLOG / PAGE)
    figures = f"{api}: {BACKLOG} incidents, {len(runs)} runs, {calls} calls, {calls / pages:.2f}x"
    # Graph reads slices of up to 500 across their pages (verified by @odata.count): the
    # 1.2x bound holds. Legacy has no $count, so each slice is proved by one short answer and slices
    # stay below a page (Poisson-like counts: no planner can promise 1.2x there, see the
    # module docstring); its bound still catches a planner that re-reads pages.
    assert calls <= (1.2 if api == "graph" else 2.6) * pages, figures
    assert calls > pages, figures  # (a sanity check on the counting itself)
