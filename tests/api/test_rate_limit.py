"""Per-caller rate limits on the routes that call Defender, through both faces: the request
over the limit is a JSON 429 with ``Retry-After`` and reaches no Defender endpoint; other
routes and other callers are not held back."""

from __future__ import annotations

import logging

import pytest

from tests.api.conftest import Answer, Face, caller, setenv, tenants, truth
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
    # two real callers: the face's analyst and another user of the home tenant
    other = caller(cloud, "Incidents.Read", "Tenants.All")
    setenv(monkeypatch, API_CALLER_RATE_LIMIT="1/60")
    assert face.get("/incidents", params={"top": "1"}).status == 200
    _limited(face.get("/incidents", params={"top": "1"}))
    assert face.get("/incidents", params={"top": "1"}, token=other).status == 200
    _limited(face.get("/incidents", params={"top": "1"}, token=other))


def test_limits_are_settings_checked_at_startup(
    face: Face, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A malformed limit is a settings error: 503 to callers (nobody can be authenticated to
    be told more), the setting named in the app's log."""
    setenv(monkeypatch, API_CALLER_RATE_LIMIT="lots")
    with caplog.at_level(logging.ERROR, logger="shared.api.app"):
        answer = face.get("/incidents")
    assert answer.status == 503
    assert "API_CALLER_RATE_LIMIT" not in answer.json()["error"]["message"]
    assert any("API_CALLER_RATE_LIMIT" in r.getMessage() for r in caplog.records)
