"""Incident get/update on both surfaces, Graph comments and alerts_v2."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from emulator.server import Emulator
from tests.emulator.conftest import admin, get_json


def _first_incident(
    http: requests.Session, emu: Emulator, status: str = "Active"
) -> dict[str, Any]:
    truth = admin(http, emu, "GET", f"truth/{emu.home_tenant_id}/incidents")["value"]
    return next(i for i in truth if i["status"] == status)


def _patch(http: requests.Session, url: str, token: str, body: Any) -> requests.Response:
    return http.patch(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_legacy_patch_updates_and_returns_the_full_incident(
    fresh: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """Documented fields change, `comment` appends, lastUpdateTime moves, alerts resolve."""
    incident = _first_incident(http, fresh)
    response = _patch(
        http,
        f"{fresh.url}/api/incidents/{incident['incidentId']}",
        legacy_token,
        {
            "status": "Resolved",
            "assignedTo": "secop2@contoso.com",
            "classification": "TruePositive",
            "determination": "Malware",
            "tags": ["Yossi's playground"],
            "comment": "pen testing",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "Resolved"
    assert body["assignedTo"] == "secop2@contoso.com"
    assert (body["classification"], body["determination"]) == ("TruePositive", "Malware")
    assert body["tags"] == ["Yossi's playground"]
    assert body["comments"][-1]["comment"] == "pen testing"
    assert len(body["comments"]) == len(incident["comments"]) + 1
    assert body["lastUpdateTime"] > incident["lastUpdateTime"]
    assert all(a["status"] == "Resolved" for a in body["alerts"])
    again = get_json(http, f"{fresh.url}/api/incidents/{incident['incidentId']}", legacy_token)
    assert again.json()["comments"] == body["comments"]


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("CompromisedAccount", "CompromisedUser"),
        ("CompromisedUser", "CompromisedUser"),
        ("MultiStagedAttack", "MultiStagedAttack"),
    ],
)
def test_both_determination_spellings_store_the_resource_page_name(
    fresh: Emulator, http: requests.Session, legacy_token: str, sent: str, stored: str
) -> None:
    """PATCH-page and resource-page spellings are accepted; the resource-page one is stored."""
    incident = _first_incident(http, fresh)
    response = _patch(
        http,
        f"{fresh.url}/api/incidents/{incident['incidentId']}",
        legacy_token,
        {"classification": "TruePositive", "determination": sent},
    )
    assert response.status_code == 200
    assert response.json()["determination"] == stored


@pytest.mark.parametrize(
    "body",
    [
        {"Status": "Resolved"},
        {"status": "Closed"},
        {"classification": "Bogus"},
        {"classification": "FalsePositive", "determination": "Malware"},
        {"tags": "one"},
        {"comment": ""},
        {},
        ["status"],
    ],
)
def test_legacy_patch_validation(
    fresh: Emulator, http: requests.Session, legacy_token: str, body: Any
) -> None:
    """Invalid bodies: 400 with the legacy error shape; nothing changes."""
    incident = _first_incident(http, fresh)
    url = f"{fresh.url}/api/incidents/{incident['incidentId']}"
    response = _patch(http, url, legacy_token, body)
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message", "target"}
    current = get_json(http, url, legacy_token).json()
    assert current["lastUpdateTime"] == incident["lastUpdateTime"]


def test_legacy_patch_of_missing_incident_is_404(
    emu: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """Unknown id: 404."""
    response = _patch(http, f"{emu.url}/api/incidents/42", legacy_token, {"status": "Active"})
    assert response.status_code == 404


def test_graph_patch_and_comments(
    fresh: Emulator, http: requests.Session, graph_token: str
) -> None:
    """camelCase values of today's schema, returned as sent; comments POST returns the full
    list; the legacy API shows the same verdict under its resource-page name."""
    incident = _first_incident(http, fresh)
    url = f"{fresh.url}/v1.0/security/incidents/{incident['incidentId']}"
    response = _patch(
        http,
        url,
        graph_token,
        {
            "classification": "falsePositive",
            "determination": "notEnoughDataToValidate",
            "customTags": ["Demo"],
            "status": "inProgress",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["determination"] == "notEnoughDataToValidate"
    assert body["customTags"] == ["Demo"]
    assert body["status"] == "inProgress"
    assert "alerts" not in body
    comment = http.post(
        f"{url}/comments",
        json={"@odata.type": "microsoft.graph.security.alertComment", "comment": "Demo for docs"},
        headers={"Authorization": f"Bearer {graph_token}"},
        timeout=10,
    )
    assert comment.status_code == 200
    comments = comment.json()["value"]
    assert len(comments) == len(incident["comments"]) + 1
    assert comments[-1]["comment"] == "Demo for docs"
    assert set(comments[-1]) >= {"comment", "createdByDisplayName", "createdDateTime"}
    legacy = admin(http, fresh, "GET", f"truth/{fresh.home_tenant_id}/incidents")["value"]
    stored = next(i for i in legacy if i["incidentId"] == incident["incidentId"])
    assert (stored["classification"], stored["determination"]) == (
        "FalsePositive",
        "InsufficientData",
    )


@pytest.mark.parametrize(
    "body",
    [{"severity": "high"}, {"status": "closed"}, {"customTags": [1]}, {"determination": "bogus"}],
)
def test_graph_patch_validation(
    emu: Emulator, http: requests.Session, graph_token: str, body: Any
) -> None:
    """Invalid Graph PATCH bodies: 400 BadRequest with innerError."""
    incident = _first_incident(http, emu)
    response = _patch(
        http, f"{emu.url}/v1.0/security/incidents/{incident['incidentId']}", graph_token, body
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
    assert "innerError" in response.json()["error"]


def test_writes_need_the_readwrite_role(emu: Emulator, http: requests.Session) -> None:
    """A token without Incident.ReadWrite.All gets 403 naming it."""
    token = http.get(
        emu.mi_url,
        params={"api-version": "2019-08-01", "resource": "https://api.security.microsoft.com"},
        headers={"X-IDENTITY-HEADER": emu.identity_header},
        timeout=10,
    ).json()["access_token"]
    response = _patch(http, f"{emu.url}/api/incidents/1", token, {"status": "Active"})
    assert response.status_code == 403
    assert "Incident.ReadWrite.All" in response.json()["error"]["message"]


def test_graph_get_incident_with_and_without_alerts(
    emu: Emulator, http: requests.Session, graph_token: str
) -> None:
    """GET by id renders like the list; $expand=alerts adds alerts; unknown id is 404."""
    incident = _first_incident(http, emu)
    url = f"{emu.url}/v1.0/security/incidents/{incident['incidentId']}"
    plain = get_json(http, url, graph_token).json()
    expanded = get_json(http, url, graph_token, **{"$expand": "alerts"}).json()
    assert "alerts" not in plain
    assert [a["id"] for a in expanded["alerts"]] == [a["alertId"] for a in incident["alerts"]]
    missing = get_json(http, f"{emu.url}/v1.0/security/incidents/1", graph_token)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NotFound"


def test_alerts_v2_list_filters_and_pages(
    emu: Emulator, http: requests.Session, graph_token: str
) -> None:
    """Every alert of the tenant once across pages; filters on serviceSource/severity work."""
    truth = admin(http, emu, "GET", f"truth/{emu.home_tenant_id}/incidents?api=graph")["value"]
    expected = {a["id"] for i in truth for a in i["alerts"]}
    seen: list[str] = []
    url: str | None = f"{emu.url}/v1.0/security/alerts_v2?$top=200"
    while url:
        body = get_json(http, url, graph_token).json()
        seen.extend(a["id"] for a in body["value"])
        url = body.get("@odata.nextLink")
    assert sorted(seen) == sorted(expected)
    filtered = get_json(
        http,
        f"{emu.url}/v1.0/security/alerts_v2",
        graph_token,
        **{"$filter": "serviceSource eq 'microsoftDefenderForOffice365' and severity ne 'high'"},
    ).json()["value"]
    assert filtered
    assert all(
        a["serviceSource"] == "microsoftDefenderForOffice365" and a["severity"] != "high"
        for a in filtered
    )
    one = get_json(http, f"{emu.url}/v1.0/security/alerts_v2/{seen[0]}", graph_token).json()
    assert one["id"] == seen[0]
    assert get_json(http, f"{emu.url}/v1.0/security/alerts_v2/nope", graph_token).status_code == 404
