"""Per-caller rate limits on the routes that call Defender, through both faces: the request
over the limit is a JSON 429 with ``Retry-After`` and reaches no Defender endpoint; other
routes and other callers are not held back."""

from __future__ import annotations

import base64
import json

import pytest

from tests.api.conftest import Answer, Face, setenv, tenants, truth
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e


def _limited(answer: Answer) -> None:
    assert answer.status == 429, (answer.status, answer.body[:300])
    body = answer.json()
    assert body["error"]["code"] == "rate_limited" and set(body) == {"error"}
    wait = answer.header("Retry-After")
    assert wait is not None and wait.isdigit() and 1 <= int(wait) <= 60


def _defender_requests(cloud: LocalCloud) -> int:
    return sum(
        row["count"]
        for row in cloud.stats()["requests"]
        if row["endpoint"].startswith(("graph.", "legacy."))
    )


def _caller(oid: str) -> dict[str, str]:
    """An Easy Auth principal with every role (its tenant/object ids make its subject)."""
    roles = ["Incidents.Read", "Incidents.Write", "Hunting.Run", "Ingest.Run", "Tenants.All"]
    claims = [{"typ": "roles", "val": r} for r in roles] + [
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": "t"},
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": oid},
    ]
    data = {"auth_typ": "aad", "role_typ": "roles", "claims": claims}
    return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(data).encode()).decode()}


def test_incident_routes_answer_429_past_the_callers_limit(
    face: Face, cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    setenv(monkeypatch, API_CALLER_RATE_LIMIT="4/60")
    home, _ = tenants(cloud)
    incident = truth(cloud, home)[0]["id"]
    path = f"/incidents/{incident}"
    assert face.get("/incidents", params={"top": "1"}).status == 200
    assert face.get(path).status == 200
    assert face.request("PATCH", path, json_body={"tags": ["x"]}).status == 200
    assert face.request("POST", "/ingest", json_body={}).status == 202
    calls = _defender_requests(cloud)
    for method, route, body in (
        ("GET", "/incidents", None),
        ("GET", path, None),
        ("PATCH", path, {"tags": ["y"]}),
        ("POST", "/ingest", {}),
    ):
        _limited(face.request(method, route, json_body=body))
    assert _defender_requests(cloud) == calls  # the refused requests reached nothing
    # routes that do not call Defender are not counted
    assert face.get("/health").status == 200
    assert face.get("/hunting/templates").status == 200


def test_hunting_has_its_own_allowance(
    face: Face, cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    setenv(monkeypatch, API_CALLER_RATE_LIMIT="1/60", API_CALLER_HUNTING_RATE_LIMIT="2/60")
    body = {"template": "alerts-by-severity", "parameters": {"lookback": "30d", "limit": 5}}
    assert face.request("POST", "/hunting", json_body=body).status == 200
    assert face.request("POST", "/hunting", json_body=body).status == 200
    _limited(face.request("POST", "/hunting", json_body=body))
    assert face.get("/incidents", params={"top": "1"}).status == 200
    _limited(face.get("/incidents", params={"top": "1"}))


def test_each_caller_has_its_own_allowance(
    face: Face, cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    setenv(monkeypatch, API_CALLER_RATE_LIMIT="1/60")
    alice, bob = _caller("alice"), _caller("bob")
    assert face.get("/incidents", params={"top": "1"}, headers=alice).status == 200
    _limited(face.get("/incidents", params={"top": "1"}, headers=alice))
    assert face.get("/incidents", params={"top": "1"}, headers=bob).status == 200
    _limited(face.get("/incidents", params={"top": "1"}, headers=bob))


def test_limits_are_settings_checked_at_startup(
    face: Face, monkeypatch: pytest.MonkeyPatch
) -> None:
    setenv(monkeypatch, API_CALLER_RATE_LIMIT="lots")
    answer = face.get("/incidents")
    assert answer.status == 503
    assert "API_CALLER_RATE_LIMIT" in answer.json()["error"]["message"]
