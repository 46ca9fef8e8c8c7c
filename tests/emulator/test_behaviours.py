"""Service limits and behaviours of incident listings: Graph `$top`/`$skip` limits, `$orderby`,
the arbitrary order, `$expand` failures, late arrival and activity during paging. Against the
running emulator, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from emulator.ratelimit import Limit
from emulator.server import Emulator, EmulatorConfig
from tests.emulator.conftest import admin, get_json, token_for

GRAPH_LIST = "/v1.0/security/incidents"
LEGACY_LIST = "/api/incidents"


@pytest.fixture
def reset_after(fresh: Emulator) -> Iterator[Emulator]:
    """`fresh`, whose reset afterwards also restores the configured behaviours."""
    return fresh


def _pages(
    http: requests.Session, emu: Emulator, path: str, token: str, **params: str
) -> tuple[list[dict[str, Any]], int]:
    """Every item of a listing, following nextLink; and the number of pages."""
    items: list[dict[str, Any]] = []
    pages = 0
    response = get_json(http, f"{emu.url}{path}", token, **params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["value"])
        pages += 1
        link = body.get("@odata.nextLink")
        if not link:
            return items, pages
        response = get_json(http, link, token)


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [str(i.get("id", i.get("incidentId"))) for i in items]


def _truth(http: requests.Session, emu: Emulator, api: str, **params: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in {"api": api, **params}.items())
    return list(admin(http, emu, "GET", f"truth/{emu.home_tenant_id}/incidents?{query}")["value"])


def _behaviour(http: requests.Session, emu: Emulator, **changes: Any) -> dict[str, Any]:
    return dict(admin(http, emu, "POST", "behaviour", changes))


# ----------------------------------------------------------------------------- Graph limits


def test_graph_top_over_50_is_the_observed_400(
    fresh: Emulator, http: requests.Session, graph_token: str
) -> None:
    """$top=51 gets the service's words (wazuh/wazuh#27579), in the Graph error shape."""
    response = get_json(http, f"{fresh.url}{GRAPH_LIST}", graph_token, **{"$top": "51"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadRequest"
    assert error["message"] == (
        "The query specified in the URI is not valid. The limit of '50' for Top query has been "
        "exceeded. The value from the incoming request is '51'."
    )
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    ok = get_json(http, f"{fresh.url}{GRAPH_LIST}", graph_token, **{"$top": "50"})
    assert ok.status_code == 200
    assert len(ok.json()["value"]) == 50


def test_graph_default_page_is_50_and_legacy_keeps_100(
    fresh: Emulator, http: requests.Session, graph_token: str, legacy_token: str
) -> None:
    graph = get_json(http, f"{fresh.url}{GRAPH_LIST}", graph_token).json()
    assert len(graph["value"]) == 50
    assert "$skip=50" in graph["@odata.nextLink"]
    legacy = get_json(http, f"{fresh.url}{LEGACY_LIST}", legacy_token, **{"$top": "100"})
    assert legacy.status_code == 200
    assert len(legacy.json()["value"]) == 100


@pytest.mark.parametrize("path", [GRAPH_LIST, "/v1.0/security/alerts_v2"])
def test_graph_skip_over_500_is_400(
    fresh: Emulator, http: requests.Session, graph_token: str, path: str
) -> None:
    """security-error-codes.md: `$skip` has a limit of 500; 500 itself is fine."""
    ok = get_json(http, f"{fresh.url}{path}", graph_token, **{"$skip": "500", "$top": "5"})
    assert ok.status_code == 200
    refused = get_json(http, f"{fresh.url}{path}", graph_token, **{"$skip": "501", "$top": "5"})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "BadRequest"
    assert "The limit of '500' for Skip query has been exceeded" in error["message"]
    assert "'501'" in error["message"]


def test_legacy_has_no_skip_limit(
    fresh: Emulator, http: requests.Session, legacy_token: str
) -> None:
    response = get_json(http, f"{fresh.url}{LEGACY_LIST}", legacy_token, **{"$skip": "600"})
    assert response.status_code == 200
    assert response.json()["value"] == []


# ----------------------------------------------------------------------------- $orderby


@pytest.mark.parametrize(
    ("orderby", "field", "descending"),
    [
        ("lastUpdateDateTime asc", "lastUpdateDateTime", False),
        ("lastUpdateDateTime", "lastUpdateDateTime", False),
        ("lastUpdateDateTime desc", "lastUpdateDateTime", True),
        ("createdDateTime desc", "createdDateTime", True),
        ("createdDateTime asc", "createdDateTime", False),
    ],
)
def test_graph_orderby_is_honoured(
    fresh: Emulator,
    http: requests.Session,
    graph_token: str,
    orderby: str,
    field: str,
    descending: bool,
) -> None:
    """elastic/integrations PR #20348 pages with `$orderby=lastUpdateDateTime asc`."""
    since = (datetime.now().astimezone() - timedelta(days=3)).isoformat(timespec="seconds")
    params = {"$orderby": orderby, "$filter": f"lastUpdateDateTime ge {since}"}
    items, _ = _pages(http, fresh, GRAPH_LIST, graph_token, **params)
    assert len(items) > 50
    keys = [(i[field], int(i["id"])) for i in items]
    assert keys == sorted(keys, reverse=descending)
    expected = {i["id"] for i in _truth(http, fresh, "graph") if i["lastUpdateDateTime"] >= since}
    assert len(expected) == len(items)


@pytest.mark.parametrize(
    "orderby", ["severity desc", "lastUpdateDateTime up", "createdDateTime, lastUpdateDateTime"]
)
def test_graph_bad_orderby_is_400(
    fresh: Emulator, http: requests.Session, graph_token: str, orderby: str
) -> None:
    response = get_json(http, f"{fresh.url}{GRAPH_LIST}", graph_token, **{"$orderby": orderby})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
    assert "$orderby" in response.json()["error"]["message"]


# ----------------------------------------------------------------------------- @odata.count


def _counts(
    http: requests.Session, emu: Emulator, path: str, token: str, **params: str
) -> list[int | None]:
    """``@odata.count`` of each page of a listing, following nextLink."""
    counts: list[int | None] = []
    response = get_json(http, f"{emu.url}{path}", token, **params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        counts.append(body.get("@odata.count"))
        if not body.get("@odata.nextLink"):
            return counts
        response = get_json(http, body["@odata.nextLink"], token)


@pytest.mark.parametrize("path", [GRAPH_LIST, "/v1.0/security/alerts_v2"])
def test_count_on_every_page_the_first_or_none(
    reset_after: Emulator, http: requests.Session, graph_token: str, path: str
) -> None:
    """`count_pages` decides which pages of a `$count=true` listing carry `@odata.count`
    (Microsoft documents `$count` but not which pages carry it); the items are the same."""
    emu = reset_after
    params = {"$count": "true", "$top": "20"}
    every = _counts(http, emu, path, graph_token, **params)
    assert len(every) >= 3 and len(set(every)) == 1 and every[0] is not None
    items, _ = _pages(http, emu, path, graph_token, **params)
    assert every[0] == len(items)
    _behaviour(http, emu, count_pages="first")
    assert _counts(http, emu, path, graph_token, **params) == [every[0]] + [None] * (len(every) - 1)
    _behaviour(http, emu, count_pages="none")
    assert _counts(http, emu, path, graph_token, **params) == [None] * len(every)
    assert _ids(_pages(http, emu, path, graph_token, **params)[0]) == _ids(items)
    _behaviour(http, emu, count_pages="every")
    assert _counts(http, emu, path, graph_token, **{"$top": "20"}) == [None] * len(every)


# ----------------------------------------------------------------------------- arbitrary order


def _is_newest_first(items: list[dict[str, Any]], time_key: str, id_key: str) -> bool:
    keys = [(i[time_key], int(i[id_key])) for i in items]
    return keys == sorted(keys, reverse=True)


def test_arbitrary_order_on_both_surfaces(
    reset_after: Emulator, http: requests.Session, graph_token: str, legacy_token: str
) -> None:
    """Every incident exactly once, in a seeded order that is not newest first, the same on
    every request of one seed; `$orderby` does not bring the time order back."""
    emu = reset_after
    _behaviour(http, emu, order="arbitrary", order_seed=7)
    legacy, _ = _pages(http, emu, LEGACY_LIST, legacy_token)
    graph, _ = _pages(http, emu, GRAPH_LIST, graph_token, **{"$orderby": "lastUpdateDateTime"})
    truth = _truth(http, emu, "legacy")
    assert sorted(_ids(legacy)) == sorted(_ids(truth))
    assert sorted(_ids(graph)) == sorted(_ids(truth))
    assert not _is_newest_first(legacy, "lastUpdateTime", "incidentId")
    assert not _is_newest_first(graph, "lastUpdateDateTime", "id")
    times = [i["lastUpdateDateTime"] for i in graph]
    assert times != sorted(times)
    again, _ = _pages(http, emu, LEGACY_LIST, legacy_token)
    assert _ids(again) == _ids(legacy)
    _behaviour(http, emu, order_seed=8)
    other, _ = _pages(http, emu, LEGACY_LIST, legacy_token)
    assert sorted(_ids(other)) == sorted(_ids(legacy))
    assert _ids(other) != _ids(legacy)
    _behaviour(http, emu, order="newest")
    newest, _ = _pages(http, emu, LEGACY_LIST, legacy_token)
    assert _is_newest_first(newest, "lastUpdateTime", "incidentId")


def test_arbitrary_order_with_a_time_filter(
    reset_after: Emulator, http: requests.Session, legacy_token: str
) -> None:
    emu = reset_after
    truth = _truth(http, emu, "legacy")
    bound = sorted(i["lastUpdateTime"] for i in truth)[len(truth) // 2]
    _behaviour(http, emu, order="arbitrary")
    flt = f"lastUpdateTime ge {bound}"
    items, _ = _pages(http, emu, LEGACY_LIST, legacy_token, **{"$filter": flt, "$top": "20"})
    assert sorted(_ids(items)) == sorted(_ids([i for i in truth if i["lastUpdateTime"] >= bound]))
    assert not _is_newest_first(items, "lastUpdateTime", "incidentId")


# ----------------------------------------------------------------------------- $expand failure


def test_expand_with_filter_fails_for_listed_tenants(
    reset_after: Emulator, http: requests.Session, graph_token: str
) -> None:
    """elastic/integrations#18144: expanded + filtered answers 500; either alone works; the
    alerts stay available from alerts_v2 by incidentId."""
    emu = reset_after
    _behaviour(http, emu, expand_failure_tenants=[emu.home_tenant_id])
    since = "lastUpdateDateTime ge 2000-01-01T00:00:00Z"
    url = f"{emu.url}{GRAPH_LIST}"
    failed = get_json(http, url, graph_token, **{"$expand": "alerts", "$filter": since})
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "InternalServerError"
    assert get_json(http, url, graph_token, **{"$expand": "alerts"}).status_code == 200
    plain = get_json(http, url, graph_token, **{"$filter": since, "$top": "3"})
    assert plain.status_code == 200
    other = emu.tenant_ids[1]
    other_token = token_for(http, emu, "https://graph.microsoft.com/.default", other)
    expanded = get_json(http, url, other_token, **{"$expand": "alerts", "$filter": since})
    assert expanded.status_code == 200
    truth = {i["id"]: i for i in _truth(http, emu, "graph")}
    for incident in plain.json()["value"]:
        alerts, _ = _pages(
            http,
            emu,
            "/v1.0/security/alerts_v2",
            graph_token,
            **{"$filter": f"incidentId eq '{incident['id']}'"},
        )
        expected = truth[incident["id"]]["alerts"]
        assert sorted(a["id"] for a in alerts) == sorted(a["id"] for a in expected)
        assert all(a["incidentId"] == incident["id"] for a in alerts)
    none = get_json(
        http,
        f"{emu.url}/v1.0/security/alerts_v2",
        graph_token,
        **{"$filter": "incidentId eq '1'"},
    )
    assert none.json()["value"] == []


# ----------------------------------------------------------------------------- late arrival


class _Clock:
    """A settable clock for the emulator: late arrival is tested without sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_changes_arrive_late() -> None:
    """A create/update is visible only `late_arrival_seconds` after its lastUpdateTime; until
    then the API shows the previous version (or nothing). `truth` shows the latest versions,
    `truth?visible=true` what the APIs show now."""
    clock = _Clock()
    unlimited: dict[str, tuple[Limit, ...]] = {"incidents": (), "alerts": ()}
    config = EmulatorConfig(seed=4, home_incidents=120, customer_tenants=0, quotas=unlimited)
    with Emulator(config, clock=clock) as emu, requests.Session() as http:
        http.trust_env = False
        http.verify = str(emu.ca_path)
        legacy_token = token_for(http, emu, "https://api.security.microsoft.com/.default")
        graph_token = token_for(http, emu, "https://graph.microsoft.com/.default")
        _behaviour(http, emu, late_arrival_seconds=60)
        result = admin(http, emu, "POST", "activity", {"create": 1, "update": 1})
        new_id, updated_id = result["created"][0], result["updated"][0]
        clock.now += timedelta(seconds=59)
        before = {i["incidentId"]: i for i in _truth(http, emu, "legacy", visible="true")}
        latest = {i["incidentId"]: i for i in _truth(http, emu, "legacy")}
        assert new_id not in before and new_id in latest
        assert before[updated_id]["lastUpdateTime"] < latest[updated_id]["lastUpdateTime"]
        listed, _ = _pages(http, emu, LEGACY_LIST, legacy_token)
        shown = {i["incidentId"]: i for i in listed}
        assert shown == before
        graph, _ = _pages(http, emu, GRAPH_LIST, graph_token)
        assert sorted(int(i["id"]) for i in graph) == sorted(before)
        assert get_json(http, f"{emu.url}{LEGACY_LIST}/{new_id}", legacy_token).status_code == 404
        assert get_json(http, f"{emu.url}{GRAPH_LIST}/{new_id}", graph_token).status_code == 404
        old = get_json(http, f"{emu.url}{LEGACY_LIST}/{updated_id}", legacy_token).json()
        assert old["lastUpdateTime"] == before[updated_id]["lastUpdateTime"]
        clock.now += timedelta(seconds=1)
        listed, _ = _pages(http, emu, LEGACY_LIST, legacy_token)
        assert {i["incidentId"]: i for i in listed} == latest
        assert get_json(http, f"{emu.url}{LEGACY_LIST}/{new_id}", legacy_token).status_code == 200
        assert _truth(http, emu, "legacy", visible="true") == _truth(http, emu, "legacy")


def test_no_late_arrival_by_default(
    fresh: Emulator, http: requests.Session, legacy_token: str
) -> None:
    result = admin(http, fresh, "POST", "activity", {"create": 1})
    new_id = result["created"][0]
    assert get_json(http, f"{fresh.url}{LEGACY_LIST}/{new_id}", legacy_token).status_code == 200


# ----------------------------------------------------------------------------- paging activity


def test_activity_after_every_nth_page(
    reset_after: Emulator, http: requests.Session, legacy_token: str, graph_token: str
) -> None:
    """`paging_activity` applies simulated activity after every `every`-th page served, on
    both surfaces, only for the tenant named."""
    emu = reset_after
    home = emu.home_tenant_id
    _behaviour(http, emu, paging_activity={"tenant": home, "every": 2, "create": 1})
    count = len(_truth(http, emu, "legacy"))
    url = f"{emu.url}{LEGACY_LIST}"
    assert get_json(http, url, legacy_token, **{"$top": "5"}).status_code == 200
    assert len(_truth(http, emu, "legacy")) == count
    assert get_json(http, url, legacy_token, **{"$top": "5"}).status_code == 200
    assert len(_truth(http, emu, "legacy")) == count + 1
    graph_url = f"{emu.url}{GRAPH_LIST}"
    for _ in range(2):
        assert get_json(http, graph_url, graph_token, **{"$top": "5"}).status_code == 200
    assert len(_truth(http, emu, "legacy")) == count + 2
    other = emu.tenant_ids[1]
    other_token = token_for(http, emu, "https://api.security.microsoft.com/.default", other)
    other_count = len(admin(http, emu, "GET", f"truth/{other}/incidents")["value"])
    for _ in range(2):
        assert get_json(http, url, other_token, **{"$top": "5"}).status_code == 200
    assert len(admin(http, emu, "GET", f"truth/{other}/incidents")["value"]) == other_count


def test_activity_during_paging_moves_items_across_pages(
    reset_after: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """With an update after every page, naive `$skip` paging newest-first reads some incident
    twice or misses one: the reason ingestion may not rely on offsets."""
    emu = reset_after
    _behaviour(http, emu, paging_activity={"every": 1, "update": 3})
    truth_before = {i["incidentId"] for i in _truth(http, emu, "legacy")}
    items, _ = _pages(http, emu, LEGACY_LIST, legacy_token, **{"$top": "20"})
    ids = [i["incidentId"] for i in items]
    assert len(ids) != len(set(ids)) or set(ids) != truth_before


# ----------------------------------------------------------------------------- admin API


def test_behaviour_admin_api(reset_after: Emulator, http: requests.Session) -> None:
    emu = reset_after
    shown = admin(http, emu, "GET", "behaviour")
    assert shown == {
        "order": "newest",
        "order_seed": 0,
        "count_pages": "every",
        "expand_failure_tenants": [],
        "late_arrival_seconds": 0.0,
        "paging_activity": None,
    }
    changed = _behaviour(http, emu, order="arbitrary", paging_activity={"every": 3, "merge": 1})
    assert changed["order"] == "arbitrary"
    assert changed["paging_activity"] == {
        "tenant": None,
        "every": 3,
        "create": 0,
        "update": 0,
        "merge": 1,
    }
    assert admin(http, emu, "GET", "behaviour")["order"] == "arbitrary"
    admin(http, emu, "POST", "reset")
    assert admin(http, emu, "GET", "behaviour") == shown


@pytest.mark.parametrize(
    "body",
    [
        {"colour": "red"},
        {"order": "oldest"},
        {"order_seed": "1"},
        {"count_pages": "some"},
        {"count_pages": None},
        {"expand_failure_tenants": "everyone"},
        {"expand_failure_tenants": ["not-a-tenant"]},
        {"late_arrival_seconds": -1},
        {"late_arrival_seconds": True},
        {"paging_activity": {"every": 0}},
        {"paging_activity": {"every": 1, "create": 10_001}},
        {"paging_activity": {"tenant": "nope"}},
        {"paging_activity": {"often": 1}},
        {"paging_activity": 5},
    ],
)
def test_bad_behaviour_is_400(
    fresh: Emulator, http: requests.Session, body: dict[str, Any]
) -> None:
    response = http.post(f"{fresh.url}/_emulator/behaviour", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "BadRequest"
    assert admin(http, fresh, "GET", "behaviour")["order"] == "newest"


def test_config_sets_behaviours_and_reset_restores_them() -> None:
    probe = Emulator(EmulatorConfig(seed=3))
    home = probe.home_tenant_id
    config = EmulatorConfig(
        seed=3,
        home_incidents=30,
        customer_tenants=1,
        customer_incidents=5,
        order="arbitrary",
        order_seed=5,
        count_pages="first",
        expand_failure_tenants=(home,),
        late_arrival_seconds=1.5,
        paging_activity={"every": 4, "update": 2},
    )
    with Emulator(config) as emu:
        session = requests.Session()
        session.trust_env = False
        session.verify = str(emu.ca_path)
        expected = {
            "order": "arbitrary",
            "order_seed": 5,
            "count_pages": "first",
            "expand_failure_tenants": [home],
            "late_arrival_seconds": 1.5,
            "paging_activity": {"tenant": None, "every": 4, "create": 0, "update": 2, "merge": 0},
        }
        assert admin(session, emu, "GET", "behaviour") == expected
        admin(session, emu, "POST", "behaviour", {"order": "newest", "paging_activity": None})
        admin(session, emu, "POST", "reset")
        assert admin(session, emu, "GET", "behaviour") == expected
        session.close()
    with pytest.raises(ValueError, match="order"):
        Emulator(EmulatorConfig(order="oldest"))  # type: ignore[arg-type]
