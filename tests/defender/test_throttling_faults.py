"""Throttling, faults and token safety against the emulator (counts, never durations).

- 500 requests from 8 threads for one tenant with small quotas on both sides: the emulator
  answers no 429 (the client-side limiter kept every window within quota).
- With 30% injected faults (429, 5xx, resets, slow and truncated answers) every operation either
  succeeds or raises a typed error once its budget is spent; none hangs.
- A nextLink to another host is refused, and the emulator's log shows the token never left.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from shared.core.errors import BridgeError, ThrottledError, UnexpectedResponseError
from shared.defender.client import DefenderClient
from shared.defender.operations import IncidentUpdate
from tests.conftest import LocalCloud
from tests.defender.conftest import ClientFactory, truth

pytestmark = pytest.mark.e2e

#: small windows so 500 calls take seconds: 20 calls in any 0.2 s (100/s) on both sides
QUOTA_CALLS, QUOTA_SECONDS = 20, 0.2


def _statuses(cloud: LocalCloud, prefix: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for row in cloud.stats()["requests"]:
        if row["endpoint"].startswith(prefix):
            counts[row["status"]] = counts.get(row["status"], 0) + row["count"]
    return counts


@pytest.mark.parametrize("surface", ["legacy", "graph"])
def test_500_calls_from_8_threads_stay_within_quota(
    make_client: ClientFactory, cloud: LocalCloud, surface: str
) -> None:
    """The limiter, shared by 8 threads, keeps the emulator from ever answering 429."""
    client = make_client(surface, API_RATE_LIMIT_INCIDENTS=f"{QUOTA_CALLS}/{QUOTA_SECONDS}")
    cloud.admin(
        "POST",
        "quotas",
        {"family": "incidents", "limits": [{"calls": QUOTA_CALLS, "seconds": QUOTA_SECONDS}]},
    )
    ids = [i.id for i in client.list_incidents()][:10]
    cloud.admin("POST", "reset")  # forget the listing: count only the 500 below
    cloud.admin(
        "POST",
        "quotas",
        {"family": "incidents", "limits": [{"calls": QUOTA_CALLS, "seconds": QUOTA_SECONDS}]},
    )
    calls = client.api_calls
    with ThreadPoolExecutor(max_workers=8) as pool:
        done = list(pool.map(lambda n: client.get_incident(ids[n % len(ids)]).id, range(500)))
    assert len(done) == 500
    counts = _statuses(cloud, f"{surface}.incidents.get")
    assert counts == {200: 500}, counts  # no 429: never over quota
    assert client.api_calls - calls == 500  # and nothing was retried
    assert client._limiter is not None
    assert client._limiter.bucket(client.tenant, "incidents").waits > 0  # it did hold back


def test_without_the_limiter_the_same_burst_is_throttled(
    make_client: ClientFactory, cloud: LocalCloud
) -> None:
    """Control: with the client's limit far above the emulator's, the same kind of burst gets
    429s, so the test above proves the limiter, not a lenient emulator. (One attempt only: a
    429 then surfaces as a typed ThrottledError instead of being waited out.)"""
    client = make_client("graph", API_RATE_LIMIT_INCIDENTS="100000/1", API_MAX_ATTEMPTS="1")
    ids = [i.id for i in client.list_incidents()][:10]
    cloud.admin("POST", "quotas", {"family": "incidents", "limits": [{"calls": 2, "seconds": 1}]})

    def get(n: int) -> str:
        try:
            return client.get_incident(ids[n % len(ids)]).id
        except ThrottledError:
            return "throttled"

    with ThreadPoolExecutor(max_workers=8) as pool:
        done = list(pool.map(get, range(8)))
    assert "throttled" in done
    assert _statuses(cloud, "graph.incidents.get").get(429, 0) == done.count("throttled")


def _operations(client: DefenderClient, incident: str) -> dict[str, Callable[[], Any]]:
    return {
        "list": lambda: client.list_incidents(limit=30),
        "get": lambda: client.get_incident(incident),
        "update": lambda: client.update_incident(
            incident, IncidentUpdate.parse(status="inProgress", tags=["chaos"])
        ),
        "alerts": lambda: client.list_alerts(limit=20),
        "hunt": lambda: client.hunt("AlertInfo | take 5"),
    }


@pytest.mark.parametrize("surface", ["legacy", "graph"])
def test_with_30_percent_faults_every_operation_ends_typed(
    make_client: ClientFactory, cloud: LocalCloud, surface: str
) -> None:
    """Each operation succeeds or raises a BridgeError; all of them finish."""
    client = make_client(
        surface, API_TIME_BUDGET_SECONDS="3", HTTP_TIMEOUT_SECONDS="2", INGEST_PAGE_SIZE="10"
    )
    incident = _id_of_first(cloud, surface)
    cloud.admin(
        "POST",
        "faults",
        {
            "rate": 0.3,
            "kinds": ["429", "500", "503", "reset", "slow", "truncated"],
            "seed": 5,
            "slow_seconds": 4,
        },
    )
    outcomes: dict[str, int] = {"ok": 0, "typed": 0}
    untyped: list[str] = []
    lock = threading.Lock()

    def run(name: str, op: Callable[[], Any]) -> None:
        try:
            op()
            kind = "ok"
        except BridgeError:
            kind = "typed"
        except Exception as exc:  # noqa: BLE001 - the point is to catch anything untyped
            with lock:
                untyped.append(f"{name}: {type(exc).__name__}: {exc}")
            return
        with lock:
            outcomes[kind] += 1

    threads = [
        threading.Thread(target=run, args=(name, op), daemon=True)
        for _ in range(4)
        for name, op in _operations(client, incident).items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)  # a generous ceiling; budgets are 3 s
    assert not [t for t in threads if t.is_alive()], "an operation hung"
    assert untyped == []
    assert outcomes["ok"] + outcomes["typed"] == len(threads)
    assert outcomes["ok"] > 0  # retries do get through
    print(f"{surface}: {outcomes}")  # noqa: T201 - shown with -s, for the record
    faults = sum(n for s, n in _statuses(cloud, surface).items() if s != 200)
    assert faults > 0  # faults really were injected


def _id_of_first(cloud: LocalCloud, surface: str) -> str:
    raw = truth(cloud, surface)[0]
    return str(raw["incidentId"] if surface == "legacy" else raw["id"])


def test_next_link_to_another_host_is_refused(
    make_client: ClientFactory, cloud: LocalCloud
) -> None:
    """The emulator builds nextLink from the Host header; asking as 'localhost' while the
    client's API base is 127.0.0.1 makes the link point at another host. The client refuses
    it, and the emulator's log shows exactly one bearer request for the listing."""
    base = make_client("graph", INGEST_PAGE_SIZE="5")
    url = cloud.emulator.url
    assert "127.0.0.1" in url, url
    session = requests.Session()
    session.trust_env = False
    session.verify = str(cloud.emulator.ca_path)
    session.headers["Host"] = url.split("://", 1)[1].replace("127.0.0.1", "localhost")
    client = DefenderClient(
        session=session, token=base._token, api="graph", base_url=url, page_size=5
    )
    cloud.admin("POST", "reset")
    with pytest.raises(UnexpectedResponseError, match="another host"):
        client.list_incidents()
    log = [r for r in cloud.admin("GET", "requests") if r["endpoint"] == "graph.incidents.list"]
    assert len(log) == 1 and log[0]["authorization"] == "bearer"
