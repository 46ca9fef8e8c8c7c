"""Legacy `/api/incidents` and Graph `/v1.0/security/incidents` listing, auth and errors."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from emulator.model import ENTITY_KEYS
from emulator.server import Emulator
from tests.emulator.conftest import admin, get_json

LEGACY_INCIDENT_KEYS = {
    "incidentId",
    "redirectIncidentId",
    "incidentName",
    "createdTime",
    "lastUpdateTime",
    "assignedTo",
    "classification",
    "determination",
    "detectionSource",
    "status",
    "severity",
    "tags",
    "comments",
    "alerts",
}
LEGACY_ALERT_KEYS = {
    "alertId", "incidentId", "serviceSource", "creationTime", "lastUpdatedTime", "resolvedTime",
    "firstActivity", "lastActivity", "title", "description", "category", "status", "severity",
    "investigationId", "investigationState", "classification", "determination",
    "detectionSource", "detectorId", "assignedTo", "actorName", "threatFamilyName",
    "mitreTechniques", "devices", "entities",
}  # fmt: skip
GRAPH_INCIDENT_KEYS = {
    "id", "tenantId", "status", "incidentWebUrl", "redirectIncidentId", "displayName",
    "createdDateTime", "lastUpdateDateTime", "assignedTo", "classification", "determination",
    "severity", "customTags", "systemTags", "description", "comments",
    "summary", "priorityScore", "resolvingComment", "lastModifiedBy",  # the newer fields
}  # fmt: skip
PREFER_ALL_MEMBERS = "include-unknown-enum-members"
# Legacy (resource-page) determination -> Graph name of today's schema (alert_determination.py).
DETERMINATIONS = {
    "NotAvailable": "unknown",
    "CompromisedUser": "compromisedAccount",
    "Clean": "notMalicious",
    "InsufficientData": "notEnoughDataToValidate",
    "ConfirmedUserActivity": "confirmedActivity",
}


def _all_pages(
    http: requests.Session, url: str, token: str, prefer: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    headers = {"Authorization": f"Bearer {token}"}
    if prefer:
        headers["Prefer"] = prefer
    while next_url:
        response = http.get(next_url, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["value"])
        pages += 1
        next_url = body.get("@odata.nextLink")
    return items, pages


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_legacy_list_pages_through_every_incident_newest_first(
    emu: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """260 seeded incidents: 3 pages of at most 100, newest first, equal to the truth."""
    items, pages = _all_pages(http, f"{emu.url}/api/incidents", legacy_token)
    assert pages == 3
    assert len(items) == 260
    keys = [(_time(i["lastUpdateTime"]), i["incidentId"]) for i in items]
    assert keys == sorted(keys, reverse=True)
    truth = admin(http, emu, "GET", f"truth/{emu.home_tenant_id}/incidents?api=legacy")["value"]
    assert items == truth


def test_legacy_incidents_carry_every_documented_field(
    emu: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """Every documented legacy field on incidents, alerts and entities (entities with all
    keys)."""
    body = get_json(http, f"{emu.url}/api/incidents", legacy_token).json()
    assert body["@odata.context"].endswith("/api/$metadata#Incidents")
    statuses = set()
    for incident in body["value"]:
        assert set(incident) == LEGACY_INCIDENT_KEYS
        statuses.add(incident["status"])
        for alert in incident["alerts"]:
            assert set(alert) == LEGACY_ALERT_KEYS
            for entity in alert["entities"]:
                assert tuple(entity) == ENTITY_KEYS
            for device in alert["devices"]:
                assert "mdatpDeviceId" in device
    assert {"Active", "Resolved"} <= statuses
    truth = admin(http, emu, "GET", f"truth/{emu.home_tenant_id}/incidents")["value"]
    redirected = [i for i in truth if i["status"] == "Redirected"]
    assert redirected
    ids = {i["incidentId"] for i in truth}
    assert all(i["redirectIncidentId"] in ids for i in redirected)
    assert any(i["comments"] for i in truth)
    assert any(i["tags"] for i in truth)


def test_next_link_stays_on_the_host_the_request_used(
    emu: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """A request to `localhost` gets a `localhost` nextLink carrying $skip and the filter."""
    url = emu.url.replace("127.0.0.1", "localhost")
    response = get_json(
        http,
        f"{url}/api/incidents",
        legacy_token,
        **{"$top": "10", "$filter": "status eq 'Active'"},
    )
    link = response.json()["@odata.nextLink"]
    parts = urlsplit(link)
    assert parts.hostname == "localhost"
    assert "$skip=10" in parts.query
    assert "$top=10" in parts.query
    page2 = get_json(http, link, legacy_token).json()
    assert all(i["status"] == "Active" for i in page2["value"])


@pytest.mark.parametrize(
    ("flt", "check"),
    [
        ("status eq 'Resolved'", lambda i: i["status"] == "Resolved"),
        ("status ne 'Active'", lambda i: i["status"] != "Active"),
        ("assignedTo eq null", lambda i: i["assignedTo"] is None),
        (
            "status eq 'Active' or status eq 'InProgress'",
            lambda i: i["status"] in ("Active", "InProgress"),
        ),
    ],
)
def test_legacy_string_filters(
    emu: Emulator, http: requests.Session, legacy_token: str, flt: str, check: Any
) -> None:
    """status/assignedTo filters with eq/ne, and/or; results equal the truth filtered."""
    items, _ = _all_pages(http, f"{emu.url}/api/incidents?$filter={flt}", legacy_token)
    truth = admin(http, emu, "GET", f"truth/{emu.home_tenant_id}/incidents")["value"]
    assert items == [i for i in truth if check(i)]
    assert items


def test_legacy_time_window_filter(
    emu: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """lastUpdateTime ge/lt with unquoted ISO literals, as the Hello-World script sends them."""
    truth = admin(http, emu, "GET", f"truth/{emu.home_tenant_id}/incidents")["value"]
    pivot = truth[50]["lastUpdateTime"]
    upper = truth[10]["lastUpdateTime"]
    items, _ = _all_pages(
        http,
        f"{emu.url}/api/incidents?$filter=lastUpdateTime ge {pivot} and lastUpdateTime lt {upper}",
        legacy_token,
    )
    assert [i["incidentId"] for i in items] == [i["incidentId"] for i in truth[11:51]]


@pytest.mark.parametrize(
    "query",
    [
        {"$top": "101"},
        {"$top": "-1"},
        {"$skip": "x"},
        {"$filter": "severity eq 'High'"},
        {"$filter": "lastUpdateTime ge '2024-01-01T00:00:00Z'"},
        {"$filter": "lastUpdateTime eq 2024-01-01T00:00:00Z"},
        {"$filter": "status eq Active"},
        {"$filter": "status eq 'Bogus'"},
        {"$filter": "startswith(assignedTo,'a')"},
        {"$filter": "status eq 'Active' and"},
        {"$orderby": "lastUpdateTime desc"},
    ],
)
def test_legacy_bad_queries_get_odata_errors(
    emu: Emulator, http: requests.Session, legacy_token: str, query: dict[str, str]
) -> None:
    """Outside the documented subset: 400 with `{"error":{"code","message","target"}}`."""
    response = get_json(http, f"{emu.url}/api/incidents", legacy_token, **query)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"code", "message", "target"}
    assert error["code"] == "ODataError"


def test_legacy_auth_failures(emu: Emulator, http: requests.Session, graph_token: str) -> None:
    """No token or a Graph token: 401 with the legacy error shape."""
    for token in (None, graph_token, "not.a.jwt"):
        response = get_json(http, f"{emu.url}/api/incidents", token)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "Unauthorized"


def test_missing_role_is_403_naming_the_permission(emu: Emulator, http: requests.Session) -> None:
    """A token for the right audience without the role (managed identity): 403."""
    token = http.get(
        emu.mi_url,
        params={"api-version": "2019-08-01", "resource": "https://api.security.microsoft.com"},
        headers={"X-IDENTITY-HEADER": emu.identity_header},
        timeout=10,
    ).json()["access_token"]
    response = get_json(http, f"{emu.url}/api/incidents", token)
    assert response.status_code == 403
    assert "Incident.Read.All" in response.json()["error"]["message"]


def test_each_tenant_sees_only_its_incidents(emu: Emulator, http: requests.Session) -> None:
    """The tenant of a request is the token's `tid`."""
    from tests.emulator.conftest import LEGACY_SCOPE, token_for

    customer = emu.tenant_ids[1]
    token = token_for(http, emu, LEGACY_SCOPE, tenant=customer)
    items, _ = _all_pages(http, f"{emu.url}/api/incidents", token)
    truth = admin(http, emu, "GET", f"truth/{customer}/incidents")["value"]
    assert items == truth
    assert len(items) == 40


def test_legacy_get_by_id(emu: Emulator, http: requests.Session, legacy_token: str) -> None:
    """GET /api/incidents/{id}: the incident, or 404."""
    truth = admin(http, emu, "GET", f"truth/{emu.home_tenant_id}/incidents")["value"]
    response = get_json(http, f"{emu.url}/api/incidents/{truth[0]['incidentId']}", legacy_token)
    assert response.status_code == 200
    body = response.json()
    body.pop("@odata.context")
    assert body == truth[0]
    assert get_json(http, f"{emu.url}/api/incidents/1", legacy_token).status_code == 404


# ----------------------------------------------------------------------------- Graph


def test_graph_list_with_expand_equals_truth(
    emu: Emulator, http: requests.Session, graph_token: str
) -> None:
    """$expand=alerts pages (default 50) add up to the Graph truth; ids are strings. The truth
    holds every enum member, as a caller sending `Prefer: include-unknown-enum-members` sees."""
    items, pages = _all_pages(
        http,
        f"{emu.url}/v1.0/security/incidents?$expand=alerts",
        graph_token,
        prefer=PREFER_ALL_MEMBERS,
    )
    assert pages == 6
    truth = admin(http, emu, "GET", f"truth/{emu.home_tenant_id}/incidents?api=graph")["value"]
    assert items == truth
    for incident in items:
        assert set(incident) - {"@odata.type", "alerts"} == GRAPH_INCIDENT_KEYS
        assert isinstance(incident["id"], str)
        for alert in incident["alerts"]:
            assert alert["incidentId"] == incident["id"]
            for evidence in alert["evidence"]:
                assert evidence["@odata.type"].startswith("#microsoft.graph.security.")
                assert {"createdDateTime", "verdict", "remediationStatus", "roles"} <= set(evidence)


def test_graph_and_legacy_render_the_same_model(emu: Emulator, http: requests.Session) -> None:
    """Same incidents, renamed fields and camelCase enums."""
    legacy = admin(http, emu, "GET", f"truth/{emu.home_tenant_id}/incidents?api=legacy")["value"]
    graph = admin(http, emu, "GET", f"truth/{emu.home_tenant_id}/incidents?api=graph")["value"]
    assert len(legacy) == len(graph)
    for old, new in zip(legacy, graph, strict=True):
        assert new["id"] == str(old["incidentId"])
        assert new["displayName"] == old["incidentName"]
        assert new["lastUpdateDateTime"] == old["lastUpdateTime"]
        assert new["customTags"] == old["tags"]
        if new["status"] == "awaitingAction":  # no legacy member: legacy shows it Active
            assert old["status"] == "Active"
        else:
            assert new["status"] == old["status"][0].lower() + old["status"][1:]
        assert new["determination"] == DETERMINATIONS.get(
            old["determination"], old["determination"][0].lower() + old["determination"][1:]
        )
        assert [a["id"] for a in new["alerts"]] == [a["alertId"] for a in old["alerts"]]
        expected_redirect = (
            None if old["redirectIncidentId"] is None else str(old["redirectIncidentId"])
        )
        assert new["redirectIncidentId"] == expected_redirect
        assert [c["createdByDisplayName"] for c in new["comments"]] == [
            c["createdBy"] for c in old["comments"]
        ]


def test_graph_list_without_expand_has_no_alerts(
    emu: Emulator, http: requests.Session, graph_token: str
) -> None:
    """Without $expand there is no `alerts` key; $count adds @odata.count."""
    body = get_json(
        http,
        f"{emu.url}/v1.0/security/incidents",
        graph_token,
        **{"$count": "true", "$filter": "severity eq 'high' and status eq 'active'", "$top": "5"},
    ).json()
    assert all("alerts" not in i for i in body["value"])
    assert all(i["severity"] == "high" and i["status"] == "active" for i in body["value"])
    assert body["@odata.count"] >= len(body["value"])


@pytest.mark.parametrize(
    "query",
    [
        {"$top": "1001"},
        {"$expand": "evidence"},
        {"$filter": "title eq 'x'"},
        {"$filter": "severity eq 'critical'"},
        {"$count": "maybe"},
        {"$select": "id"},
    ],
)
def test_graph_bad_queries(
    emu: Emulator, http: requests.Session, graph_token: str, query: dict[str, str]
) -> None:
    """400 with the Graph error shape and innerError ids."""
    response = get_json(http, f"{emu.url}/v1.0/security/incidents", graph_token, **query)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadRequest"
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}


def test_graph_rejects_legacy_tokens(
    emu: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """A legacy-audience token is not a Graph token: 401 InvalidAuthenticationToken."""
    response = get_json(http, f"{emu.url}/v1.0/security/incidents", legacy_token)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
