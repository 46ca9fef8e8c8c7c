"""Graph's schema as of today, emulator side: determination names, evolvable enums behind
`Prefer: include-unknown-enum-members`, the newer incident and alert fields, and the
namespace-qualified action path."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from emulator import data, fields, render
from emulator.server import Emulator
from tests.emulator.conftest import admin

PREFER = {"Prefer": "include-unknown-enum-members"}
SCHEMA_DETERMINATIONS = {
    "unknown", "apt", "malware", "securityPersonnel", "securityTesting", "unwantedSoftware",
    "other", "multiStagedAttack", "compromisedAccount", "phishing", "maliciousUserActivity",
    "notMalicious", "notEnoughDataToValidate", "confirmedActivity", "lineOfBusinessApplication",
    "unknownFutureValue",
}  # fmt: skip


def _get(http: requests.Session, url: str, token: str, **headers: str) -> Any:
    response = http.get(url, headers={"Authorization": f"Bearer {token}", **headers}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _graph_truth(http: requests.Session, emu: Emulator) -> list[dict[str, Any]]:
    return list(admin(http, emu, "GET", f"truth/{emu.home_tenant_id}/incidents?api=graph")["value"])


def _all(http: requests.Session, url: str, token: str, **headers: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url:
        body = _get(http, next_url, token, **headers)
        items += body["value"]
        next_url = body.get("@odata.nextLink")
    return items


def _patch(http: requests.Session, url: str, token: str, body: Any) -> requests.Response:
    return http.patch(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_graph_renders_only_the_schema_determinations(
    emu: Emulator, http: requests.Session, graph_token: str
) -> None:
    """Incidents and alerts carry only today's names; the seed uses the renamed ones too."""
    incidents = _all(http, f"{emu.url}/v1.0/security/incidents?$expand=alerts", graph_token)
    seen = {i["determination"] for i in incidents}
    seen |= {a["determination"] for i in incidents for a in i["alerts"] if a["determination"]}
    assert seen <= SCHEMA_DETERMINATIONS
    assert seen & {"compromisedAccount", "notMalicious", "notEnoughDataToValidate"}


@pytest.mark.parametrize(
    "old", ["compromisedUser", "clean", "insufficientData", "confirmedUserActivity"]
)
def test_graph_patch_refuses_the_old_names(
    fresh: Emulator, http: requests.Session, graph_token: str, old: str
) -> None:
    """An older name is no member of the enum: 400 BadRequest, nothing changes."""
    target = next(i for i in _graph_truth(http, fresh) if i["status"] == "active")
    url = f"{fresh.url}/v1.0/security/incidents/{target['id']}"
    response = _patch(http, url, graph_token, {"determination": old})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["message"]) == (
        "BadRequest",
        f"Requested value '{old}' was not found.",
    )
    assert next(i for i in _graph_truth(http, fresh) if i["id"] == target["id"]) == target


@pytest.mark.parametrize(
    ("classification", "determination", "legacy"),
    [
        ("truePositive", "compromisedAccount", "CompromisedUser"),
        ("falsePositive", "notMalicious", "Clean"),
        ("falsePositive", "notEnoughDataToValidate", "InsufficientData"),
        ("informationalExpectedActivity", "confirmedActivity", "ConfirmedUserActivity"),
        ("truePositive", "apt", "Apt"),
    ],
)
def test_graph_patch_stores_and_returns_what_it_accepted(
    fresh: Emulator,
    http: requests.Session,
    graph_token: str,
    legacy_token: str,
    classification: str,
    determination: str,
    legacy: str,
) -> None:
    """PATCH answer and later GET show the value as sent; the legacy API maps it to its own
    documented name (the incident resource page's), and a legacy PATCH of that name reads back on
    Graph as the schema name."""
    target = next(i for i in _graph_truth(http, fresh) if i["status"] == "active")
    url = f"{fresh.url}/v1.0/security/incidents/{target['id']}"
    body = {"classification": classification, "determination": determination}
    response = _patch(http, url, graph_token, body)
    assert response.status_code == 200, response.text
    assert response.json()["determination"] == determination
    assert _get(http, url, graph_token)["determination"] == determination
    old = _get(http, f"{fresh.url}/api/incidents/{target['id']}", legacy_token)
    assert old["determination"] == legacy
    other = next(i for i in _graph_truth(http, fresh) if i["status"] == "active" and i != target)
    if legacy != "Apt":  # deprecated on the legacy API (2022), not settable there
        legacy_body = {"classification": classification[0].upper() + classification[1:]}
        legacy_body["determination"] = legacy
        legacy_url = f"{fresh.url}/api/incidents/{other['id']}"
        assert _patch(http, legacy_url, legacy_token, legacy_body).status_code == 200
        graph_url = f"{fresh.url}/v1.0/security/incidents/{other['id']}"
        assert _get(http, graph_url, graph_token)["determination"] == determination


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"status": "awaitingAction"}, "can only be set by Microsoft Defender Experts"),
        ({"status": "unknownFutureValue"}, "sentinel"),
        ({"determination": "unknownFutureValue"}, "sentinel"),
        ({"summary": "mine"}, "cannot be updated"),
        ({"resolvingComment": 3}, "'resolvingComment' must be a string"),
    ],
)
def test_graph_patch_refuses_members_it_cannot_set(
    emu: Emulator, http: requests.Session, graph_token: str, body: Any, message: str
) -> None:
    """Read-only members and fields: a 400 that says why."""
    target = next(i for i in _graph_truth(http, emu) if i["status"] == "active")
    response = _patch(http, f"{emu.url}/v1.0/security/incidents/{target['id']}", graph_token, body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_graph_patch_records_resolving_comment_and_modifier(
    fresh: Emulator, http: requests.Session, graph_token: str
) -> None:
    """resolvingComment is stored as sent; lastModifiedBy names the writer (the app)."""
    target = next(i for i in _graph_truth(http, fresh) if i["status"] == "active")
    url = f"{fresh.url}/v1.0/security/incidents/{target['id']}"
    response = _patch(
        http, url, graph_token, {"status": "resolved", "resolvingComment": "False alarm."}
    )
    assert response.status_code == 200
    for body in (response.json(), _get(http, url, graph_token)):
        assert body["resolvingComment"] == "False alarm."
        assert body["lastModifiedBy"] == f"API-App:{fresh.client_id}"


def test_evolvable_members_only_with_the_prefer_header(
    emu: Emulator, http: requests.Session, graph_token: str
) -> None:
    """awaitingAction and the newer sources are `unknownFutureValue` unless asked for; with
    the header the listing equals the truth."""
    url = f"{emu.url}/v1.0/security/incidents?$expand=alerts"
    hidden = _all(http, url, graph_token)
    shown = _all(
        http, url, graph_token, Prefer="odata.maxpagesize=50, include-unknown-enum-members"
    )
    truth = _graph_truth(http, emu)
    assert shown == truth
    assert "awaitingAction" in {i["status"] for i in shown}
    sources = {a["serviceSource"] for i in shown for a in i["alerts"]}
    assert {"microsoftSentinel", "microsoftDefenderForCloud"} <= sources
    detections = {a["detectionSource"] for i in shown for a in i["alerts"]}
    assert {"scheduledAlerts", "microsoftDefenderForServers"} <= detections
    for before, after in zip(shown, hidden, strict=True):
        expected = (
            "unknownFutureValue" if before["status"] == "awaitingAction" else before["status"]
        )
        assert after["status"] == expected
        for a, b in zip(before["alerts"], after["alerts"], strict=True):
            for key, enum in (
                ("serviceSource", "serviceSource"),
                ("detectionSource", "detectionSource"),
            ):
                hide = a[key] in fields.EVOLVED[enum]
                assert b[key] == ("unknownFutureValue" if hide else a[key])
    assert "awaitingAction" not in {i["status"] for i in hidden}
    one = next(i for i in truth if i["status"] == "awaitingAction")
    single = f"{emu.url}/v1.0/security/incidents/{one['id']}"
    assert _get(http, single, graph_token)["status"] == "unknownFutureValue"
    assert _get(http, single, graph_token, **PREFER)["status"] == "awaitingAction"
    sentinel = next(
        a for i in truth for a in i["alerts"] if a["serviceSource"] == "microsoftSentinel"
    )
    alert_url = f"{emu.url}/v1.0/security/alerts_v2/{sentinel['id']}"
    assert _get(http, alert_url, graph_token)["serviceSource"] == "unknownFutureValue"
    assert _get(http, alert_url, graph_token, **PREFER)["serviceSource"] == "microsoftSentinel"


def test_awaiting_action_is_active_on_the_legacy_api(
    emu: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """The legacy status enum has no such member: those incidents read and filter as Active."""
    truth = _graph_truth(http, emu)
    waiting = {i["id"] for i in truth if i["status"] == "awaitingAction"}
    assert waiting
    active = _all(http, f"{emu.url}/api/incidents?$filter=status eq 'Active'", legacy_token)
    assert waiting <= {str(i["incidentId"]) for i in active}


def test_newer_incident_and_alert_fields(emu: Emulator, http: requests.Session) -> None:
    """summary, priorityScore, resolvingComment, lastModifiedBy, systemTags; alert
    alertPolicyId, categories, investigationState, productName: present with realistic values."""
    truth = _graph_truth(http, emu)
    for incident in truth:
        score = incident["priorityScore"]
        assert score is None or 0 <= score <= 100
        if incident["status"] == "redirected":
            assert (incident["summary"], score) == (None, None)
        else:
            assert incident["summary"] and incident["summary"].startswith("Starting ")
        if incident["status"] == "awaitingAction":
            assert "Defender Experts" in incident["systemTags"]
        for alert in incident["alerts"]:
            assert alert["categories"] == [alert["category"]]
            assert alert["productName"].startswith("Microsoft ")
            assert alert["investigationState"][0].islower()
            if alert["serviceSource"] in ("microsoftDefenderForOffice365", "microsoftSentinel"):
                assert alert["alertPolicyId"]
            if alert["serviceSource"] == "microsoftDefenderForEndpoint":
                assert alert["alertPolicyId"] is None
    resolved = [i for i in truth if i["status"] == "resolved"]
    assert resolved and all(i["resolvingComment"] and i["lastModifiedBy"] for i in resolved)
    assert any(i["lastModifiedBy"] is None for i in truth if i["status"] == "active")
    assert len({i["priorityScore"] for i in truth}) > 10


def test_new_fields_are_stable_for_a_seed() -> None:
    """Same seed and clock: the same Graph rendering, new fields included."""
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)

    def render_all() -> list[dict[str, Any]]:
        incidents = data.seed_incidents(data.TenantGenerator("tid", 0, 3), 80, now)
        return [
            render.graph_incident(i, "tid", expand_alerts=True, include_unknown=True)
            for i in incidents
        ]

    first, second = render_all(), render_all()
    assert first == second
    assert {"awaitingAction"} <= {i["status"] for i in first}


def test_qualified_and_short_hunting_paths_answer_the_same(
    emu: Emulator, http: requests.Session, graph_token: str
) -> None:
    """`/security/microsoft.graph.security.runHuntingQuery` is the same action (as Graph
    accepts both forms); an unknown namespace is not."""
    query = {"Query": "AlertInfo | summarize count() by Severity | order by Severity asc"}
    headers = {"Authorization": f"Bearer {graph_token}"}
    base = f"{emu.url}/v1.0/security"
    short = http.post(f"{base}/runHuntingQuery", json=query, headers=headers, timeout=30)
    qualified = http.post(
        f"{base}/microsoft.graph.security.runHuntingQuery", json=query, headers=headers, timeout=30
    )
    assert short.status_code == qualified.status_code == 200
    assert short.json()["results"] == qualified.json()["results"] != []
    wrong = http.post(
        f"{base}/microsoft.graph.runHuntingQuery", json=query, headers=headers, timeout=30
    )
    assert wrong.status_code == 404


def test_prefer_parsing() -> None:
    """Comma-separated preferences, any case; other preferences do not count."""
    assert fields.wants_unknown_members(["odata.maxpagesize=5, Include-Unknown-Enum-Members"])
    assert not fields.wants_unknown_members(["return=minimal"])
    assert not fields.wants_unknown_members([])


@pytest.mark.parametrize("path", ["incidents", "alerts_v2"])
def test_graph_filter_knows_only_the_schema_names(
    emu: Emulator, http: requests.Session, graph_token: str, path: str
) -> None:
    """`$filter` on determination: a schema name works, an older name is a 400."""
    url = f"{emu.url}/v1.0/security/{path}"
    headers = {"Authorization": f"Bearer {graph_token}"}
    new = http.get(
        url, params={"$filter": "determination eq 'notMalicious'"}, headers=headers, timeout=30
    )
    assert new.status_code == 200
    assert new.json()["value"]
    assert all(i["determination"] == "notMalicious" for i in new.json()["value"])
    old = http.get(url, params={"$filter": "determination eq 'clean'"}, headers=headers, timeout=30)
    assert old.status_code == 400
    assert old.json()["error"]["code"] == "BadRequest"


def test_every_write_moves_last_modified_by(
    fresh: Emulator, http: requests.Session, graph_token: str, legacy_token: str
) -> None:
    """A legacy PATCH and a Graph comment both make their writer the `lastModifiedBy`."""
    untouched = [
        i
        for i in _graph_truth(http, fresh)
        if i["status"] == "active" and i["lastModifiedBy"] is None
    ]
    first, second = untouched[0], untouched[1]
    app = f"API-App:{fresh.client_id}"
    legacy = _patch(http, f"{fresh.url}/api/incidents/{first['id']}", legacy_token, {"tags": ["x"]})
    assert legacy.status_code == 200
    graph_url = f"{fresh.url}/v1.0/security/incidents/{second['id']}"
    comment = http.post(
        f"{graph_url}/comments",
        json={"comment": "checked"},
        headers={"Authorization": f"Bearer {graph_token}"},
        timeout=10,
    )
    assert comment.status_code == 200
    for incident_id in (first["id"], second["id"]):
        url = f"{fresh.url}/v1.0/security/incidents/{incident_id}"
        assert _get(http, url, graph_token)["lastModifiedBy"] == app
