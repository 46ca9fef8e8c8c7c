"""A spent API quota stops a run cleanly; it does not fail it.

Under Microsoft's default quota (50 incident calls a minute), a backlog needs more calls than
one minute allows, and the next call slot is up to a minute away: longer than a call may wait
(``API_MAX_RETRY_WAIT_SECONDS``, 30 s by default). Each run must then commit what it read and
end ``ok``, ``complete: false``, ``stopped: "quota"``, with ``resume_at`` (when the quota
frees), exit 0, and the next run must resume where it stopped, until the backlog is done.

Scaled down so it runs in seconds: 10 calls per 3 s (the client's limiter and the emulator's
own quota alike) and a 0.5 s longest wait, against ``QUOTA_BACKLOG`` incidents (default 1,000;
``python -m shared ingest`` at 6,000 under the real defaults is reported in docs/benchmarks.md).
A second case leaves the client unlimited, so the emulator's own 429 with a ``Retry-After``
longer than the wait is what stops the run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from emulator.azurite import Azurite
from emulator.ratelimit import Limit
from shared.core.clock import parse_utc
from testkit.storage_view import archived_lines, duplicates
from tests.conftest import LocalCloud, _clear_storage
from tests.e2e.guarantees import ingest_process

BACKLOG = int(os.environ.get("QUOTA_BACKLOG", "1000"))


@pytest.fixture(scope="module")
def quota_cloud(azurite: Azurite) -> Iterator[LocalCloud]:
    from emulator.server import Emulator, EmulatorConfig

    config = EmulatorConfig(
        seed=47,
        home_incidents=BACKLOG,
        customer_tenants=0,
        quotas={"incidents": (Limit(10, 3),), "alerts": (Limit(30, 3),)},
    )
    with Emulator(config) as emulator:
        yield LocalCloud(emulator, azurite)


def _run(env: dict[str, str]) -> tuple[int, dict[str, object]]:
    process = ingest_process(env)
    out, err = process.communicate(timeout=300)
    summary = json.loads(out)
    assert len(summary["tenants"]) == 1, summary
    assert summary["ok"] is summary["tenants"][0]["ok"], summary
    return process.returncode, dict(summary["tenants"][0])


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("api", "client_limit"),
    [("graph", "10/3"), ("legacy", "10/3"), ("graph", "100000/1")],
    ids=["graph-client-limiter", "legacy-client-limiter", "graph-service-429"],
)
def test_a_spent_quota_stops_each_run_cleanly_until_the_backlog_is_done(
    quota_cloud: LocalCloud, api: str, client_limit: str
) -> None:
    cloud = quota_cloud
    cloud.admin("POST", "reset")
    _clear_storage(cloud.azurite.connection_string)
    home = cloud.emulator.home_tenant_id
    env = cloud.app_settings(
        DEFENDER_API=api,
        INGEST_TENANTS=home,
        INGEST_LOOKBACK_DAYS="8",
        API_RATE_LIMIT_INCIDENTS=client_limit,
        API_RATE_LIMIT_ALERTS="100000/1" if client_limit.startswith("100000") else "30/3",
        API_MAX_RETRY_WAIT_SECONDS="0.5",
        API_MAX_ATTEMPTS="3",
    )
    runs: list[dict[str, object]] = []
    for _ in range(60):
        code, result = _run(env)
        ended = datetime.now(UTC)
        runs.append(result)
        assert code == 0, result  # a quota stop is a success: exit 0
        assert result["ok"] and result["error"] is None, result
        if result["complete"]:
            break
        assert result["stopped"] == "quota", result
        assert result["resume_at"] is not None, result
        resume = parse_utc(str(result["resume_at"]))
        # when the quota frees: after the run began, within the quota's window of its end
        assert (resume - ended).total_seconds() <= 3.5, result
        time.sleep(max(0.0, (resume - datetime.now(UTC)).total_seconds()))

    assert runs[-1]["complete"], "the backlog did not finish"
    stopped = [r for r in runs if not r["complete"]]
    assert stopped, "the quota never stopped a run: the test does not test anything"
    assert all(int(str(r["incidents"])) > 0 for r in stopped)  # each stopped run progressed
    marks = [str(r["watermark"]) for r in runs]
    assert marks == sorted(marks)
    lines = archived_lines(cloud.azurite.connection_string, home)
    assert duplicates(lines) == []
    assert len(lines) == BACKLOG == sum(int(str(r["incidents"])) for r in runs)
