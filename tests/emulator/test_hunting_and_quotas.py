"""Advanced hunting on both surfaces, and per-tenant per-family quotas with 429 bodies."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from emulator.server import Emulator
from tests.emulator.conftest import admin


def _post(http: requests.Session, url: str, token: str, body: object) -> requests.Response:
    return http.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_legacy_hunting_shape(emu: Emulator, http: requests.Session, legacy_token: str) -> None:
    """`{"Stats","Schema":[{"Name","Type"}],"Results"}` over the tenant's AlertInfo table."""
    response = _post(
        http,
        f"{emu.url}/api/advancedhunting/run",
        legacy_token,
        {"Query": "AlertInfo | summarize count() by Severity"},
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"Stats", "Schema", "Results"}
    assert body["Schema"] == [
        {"Name": "Severity", "Type": "String"},
        {"Name": "count_", "Type": "Int64"},
    ]
    truth = admin(http, emu, "GET", f"truth/{emu.home_tenant_id}/incidents")["value"]
    alerts = sum(len(i["alerts"]) for i in truth)
    assert sum(row["count_"] for row in body["Results"]) == alerts


def test_graph_hunting_shape_and_timespan(
    emu: Emulator, http: requests.Session, graph_token: str
) -> None:
    """Lower-case `schema`/`results`; Timespan narrows the rows."""
    url = f"{emu.url}/v1.0/security/runHuntingQuery"
    query = "DeviceProcessEvents | count"
    wide = _post(http, url, graph_token, {"Query": query}).json()
    narrow = _post(http, url, graph_token, {"Query": query, "Timespan": "PT6H"}).json()
    assert wide["@odata.context"].endswith("#microsoft.graph.security.huntingQueryResults")
    assert wide["schema"] == [{"name": "Count", "type": "Int64"}]
    assert 0 < narrow["results"][0]["Count"] < wide["results"][0]["Count"]


@pytest.mark.parametrize(
    "body",
    [{"Query": "AlertInfo | join (AlertEvidence) on AlertId"}, {"query": ""}, {"Timespan": "P1D"}],
)
def test_hunting_errors_are_400(
    emu: Emulator, http: requests.Session, legacy_token: str, graph_token: str, body: object
) -> None:
    """Unsupported KQL or a missing query: 400 in each API's error shape."""
    legacy = _post(http, f"{emu.url}/api/advancedhunting/run", legacy_token, body)
    assert legacy.status_code == 400
    assert set(legacy.json()["error"]) == {"code", "message", "target"}
    graph = _post(http, f"{emu.url}/v1.0/security/runHuntingQuery", graph_token, body)
    assert graph.status_code == 400
    assert graph.json()["error"]["code"] == "BadRequest"


def test_bad_timespan_is_400(emu: Emulator, http: requests.Session, graph_token: str) -> None:
    """A Timespan outside the documented ISO-8601 forms is rejected."""
    response = _post(
        http,
        f"{emu.url}/v1.0/security/runHuntingQuery",
        graph_token,
        {"Query": "AlertInfo | take 1", "Timespan": "last week"},
    )
    assert response.status_code == 400


def test_hunting_needs_its_role(emu: Emulator, http: requests.Session) -> None:
    """An identity token without AdvancedHunting.Read.All: 403."""
    token = http.get(
        emu.mi_url,
        params={"api-version": "2019-08-01", "resource": "https://api.security.microsoft.com"},
        headers={"X-IDENTITY-HEADER": emu.identity_header},
        timeout=10,
    ).json()["access_token"]
    response = _post(http, f"{emu.url}/api/advancedhunting/run", token, {"Query": "AlertInfo"})
    assert response.status_code == 403
    assert "AdvancedHunting.Read.All" in response.json()["error"]["message"]


def test_quota_429_bodies_and_retry_after(
    fresh: Emulator, http: requests.Session, legacy_token: str, graph_token: str
) -> None:
    """Over quota: legacy `429` message with the limit, Graph TooManyRequests; Retry-After set."""
    admin(
        http,
        fresh,
        "POST",
        "quotas",
        {"family": "incidents", "limits": [{"calls": 3, "seconds": 2}]},
    )
    auth = {"Authorization": f"Bearer {legacy_token}"}
    codes = [
        http.get(f"{fresh.url}/api/incidents?$top=1", headers=auth, timeout=10) for _ in range(4)
    ]
    assert [c.status_code for c in codes] == [200, 200, 200, 429]
    assert codes[-1].json()["error"]["message"] == (
        "API calls quota exceeded! maximum allowed 3 per 00:00:02"
    )
    assert 1 <= int(codes[-1].headers["Retry-After"]) <= 2
    graph_auth = {"Authorization": f"Bearer {graph_token}"}
    graph = [
        http.get(f"{fresh.url}/v1.0/security/incidents?$top=1", headers=graph_auth, timeout=10)
        for _ in range(4)
    ]
    assert graph[-1].status_code == 429
    assert graph[-1].json()["error"]["code"] == "TooManyRequests"
    assert "Retry-After" in graph[-1].headers
    # Quotas are per tenant: another tenant is unaffected.
    from tests.emulator.conftest import LEGACY_SCOPE, token_for

    other = token_for(http, fresh, LEGACY_SCOPE, tenant=fresh.tenant_ids[1])
    ok = http.get(
        f"{fresh.url}/api/incidents?$top=1",
        headers={"Authorization": f"Bearer {other}"},
        timeout=10,
    )
    assert ok.status_code == 200


def test_quota_holds_under_concurrency(
    fresh: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """8 threads hammering one tenant: never more accepted calls than the window allows."""
    admin(
        http,
        fresh,
        "POST",
        "quotas",
        {"family": "incidents", "limits": [{"calls": 10, "seconds": 1}]},
    )
    auth = {"Authorization": f"Bearer {legacy_token}"}

    def call(_: int) -> tuple[float, int]:
        session = requests.Session()
        session.trust_env = False
        session.verify = str(fresh.ca_path)
        try:
            response = session.get(f"{fresh.url}/api/incidents?$top=1", headers=auth, timeout=10)
            return time.monotonic(), response.status_code
        finally:
            session.close()

    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(60)))
    elapsed = time.monotonic() - start
    accepted = sum(1 for _, status in results if status == 200)
    assert {status for _, status in results} <= {200, 429}
    assert accepted <= 10 * (int(elapsed) + 1)
    stats = admin(http, fresh, "GET", "stats")["requests"]
    counted = sum(
        r["count"] for r in stats if r["endpoint"] == "legacy.incidents.list" and r["status"] == 200
    )
    assert counted == accepted


@pytest.mark.parametrize(
    "body",
    [
        {"family": "nope", "limits": []},
        {"family": "incidents", "limits": [{"calls": 0, "seconds": 1}]},
        {"family": "incidents", "limits": [{"calls": 1}]},
        {"family": "incidents"},
    ],
)
def test_bad_quota_input_is_400(emu: Emulator, http: requests.Session, body: object) -> None:
    """Invalid quota bodies are refused with a message."""
    response = http.post(f"{emu.url}/_emulator/quotas", json=body, timeout=10)
    assert response.status_code == 400


def test_default_quotas_are_microsofts() -> None:
    """Defaults: incidents 50/min + 1500/h, hunting 45/min + 1500/h, alerts 150/min."""
    from emulator.server import EmulatorConfig

    quotas = Emulator(EmulatorConfig()).limiter.quotas()
    assert quotas == {
        "incidents": [{"calls": 50, "seconds": 60}, {"calls": 1500, "seconds": 3600}],
        "hunting": [{"calls": 45, "seconds": 60}, {"calls": 1500, "seconds": 3600}],
        "alerts": [{"calls": 150, "seconds": 60}],
    }
