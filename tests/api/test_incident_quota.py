"""``GET /incidents`` spends only the Defender calls its page needs, on both surfaces and in any
order of answers, without losing or repeating an incident: the quota regression (``top=1`` on
the 260-incident home tenant cost 19 calls, the whole tenant listed for every page)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.defender.model import Incident, normalize
from tests.api.conftest import Face, setenv, tenants
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e

SURFACES = ("graph", "legacy")


def _endpoint(api: str) -> str:
    return f"{api}.incidents.list"


@pytest.fixture(params=SURFACES)
def surface(request: pytest.FixtureRequest, face: Face, monkeypatch: pytest.MonkeyPatch) -> str:
    setenv(monkeypatch, DEFENDER_API=str(request.param))
    return str(request.param)


def _truth(cloud: LocalCloud, tenant: str, api: str = "graph") -> list[Incident]:
    """The tenant's incidents as ``api`` shows them (legacy shows Graph's awaitingAction as
    Active), normalized."""
    raw = cloud.admin("GET", f"truth/{tenant}/incidents?api={api}")["value"]
    return [normalize(i, api) for i in raw]  # type: ignore[arg-type]


def _newest_first(incidents: list[Incident]) -> list[str]:
    return [i.id for i in sorted(incidents, key=lambda i: (i.last_update, i.id), reverse=True)]


def _pages(
    face: Face, tenant: str, params: dict[str, str]
) -> Iterator[tuple[list[dict[str, Any]], Any]]:
    answer = face.get("/incidents", params={**params, "tenant": tenant})
    for _ in range(500):
        assert answer.status == 200, answer.body[:300]
        body = answer.json()
        yield body["value"], body.get("nextLink")
        if "nextLink" not in body:
            return
        answer = face.follow(body["nextLink"])
    raise AssertionError("paging never ended")


def test_a_top_1_page_costs_at_most_two_calls(face: Face, cloud: LocalCloud, surface: str) -> None:
    """Newest-first answers (the legacy API's documented order, Graph's observed one): one
    overflowing answer, then the exact cut."""
    home, _ = tenants(cloud)
    before = cloud.request_count(_endpoint(surface), home)
    answer = face.get("/incidents", params={"top": "1", "tenant": home})
    assert answer.status == 200, answer.body
    assert len(answer.json()["value"]) == 1
    assert answer.json()["value"][0]["id"] == _newest_first(_truth(cloud, home, surface))[0]
    assert cloud.request_count(_endpoint(surface), home) - before <= 2


@pytest.mark.parametrize("order", ["newest", "arbitrary"])
def test_paging_the_tenant_lists_each_incident_once_at_a_bounded_cost(
    face: Face, cloud: LocalCloud, surface: str, order: str
) -> None:
    home, _ = tenants(cloud)
    cloud.admin("POST", "behaviour", {"order": order, "order_seed": 5})
    expected = _newest_first(_truth(cloud, home, surface))
    seen: list[str] = []
    costs: list[int] = []
    count = cloud.request_count(_endpoint(surface), home)
    for rows, _ in _pages(face, home, {"top": "40"}):
        now = cloud.request_count(_endpoint(surface), home)
        costs.append(now - count)
        count = now
        seen += [r["id"] for r in rows]
    assert seen == expected  # every incident once, newest first
    assert max(costs) <= 8  # API_INCIDENTS_PAGE_MAX_CALLS
    # 260 incidents in pages of 40: 7 pages; far from 7 listings of the whole tenant (measured:
    # Graph 13 newest-first, 14 arbitrary; legacy 9 and 12)
    assert sum(costs) <= (14 if order == "newest" else 20), costs


def test_updates_while_paging_lose_and_repeat_nothing(
    face: Face, cloud: LocalCloud, surface: str
) -> None:
    """SOC activity after every page Defender serves: updated incidents move in front of the
    cursor (the next listing from the top has them); every other one is listed exactly once."""
    home, _ = tenants(cloud)
    before = {i.id: i.last_update for i in _truth(cloud, home, surface)}
    cloud.admin(
        "POST",
        "behaviour",
        {
            "order": "arbitrary",
            "paging_activity": {"tenant": home, "every": 1, "update": 2, "create": 1},
        },
    )
    seen: list[str] = []
    for rows, _ in _pages(face, home, {"top": "30"}):
        seen += [r["id"] for r in rows]
    cloud.admin("POST", "behaviour", {"paging_activity": None})
    after = {i.id: i.last_update for i in _truth(cloud, home, surface)}
    assert len(seen) == len(set(seen))
    untouched = {i for i, t in before.items() if after.get(i) == t}
    assert untouched <= set(seen)
    assert len(untouched) < len(before)  # the activity did move some


@pytest.mark.parametrize(
    "params",
    [
        [("severity", "high")],
        [("status", "active,inProgress")],
        [("severity", "medium,low"), ("status", "active")],
        [("assignedTo", "__first__")],
    ],
)
def test_filters_page_to_the_same_set_as_the_truth(
    face: Face, cloud: LocalCloud, surface: str, params: list[tuple[str, str]]
) -> None:
    home, _ = tenants(cloud)
    truth = _truth(cloud, home, surface)
    if params[0][0] == "assignedTo":
        owner = next(i.assigned_to for i in truth if i.assigned_to)
        params = [("assignedTo", owner)]

    def wanted(i: Incident) -> bool:
        values = {"severity": i.severity, "status": i.status, "assignedTo": i.assigned_to}
        return all(str(values[name] or "") in value.split(",") for name, value in params)

    expected = _newest_first([i for i in truth if wanted(i)])
    assert expected
    seen: list[str] = []
    for rows, _ in _pages(face, home, {**dict(params), "top": "7"}):
        seen += [r["id"] for r in rows]
    assert seen == expected


def test_a_page_never_spends_more_than_its_call_cap(
    face: Face, cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Legacy filters severity after the answer: a rare severity needs many slices. With a cap
    of 2 every page makes at most 2 calls; short pages carry on where they stopped."""
    home, _ = tenants(cloud)
    setenv(monkeypatch, DEFENDER_API="legacy", API_INCIDENTS_PAGE_MAX_CALLS="2")
    truth = _truth(cloud, home, "legacy")
    rare = min(
        ("informational", "low", "medium", "high"),
        key=lambda s: sum(1 for i in truth if i.severity == s) or 10**6,
    )
    expected = _newest_first([i for i in truth if i.severity == rare])
    seen: list[str] = []
    count = cloud.request_count("legacy.incidents.list", home)
    pages = 0
    for rows, _ in _pages(face, home, {"severity": rare, "top": "5"}):
        now = cloud.request_count("legacy.incidents.list", home)
        assert now - count <= 2
        count = now
        pages += 1
        seen += [r["id"] for r in rows]
    assert seen == expected and pages >= 2
