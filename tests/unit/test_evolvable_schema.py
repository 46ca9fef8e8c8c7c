"""Graph's schema evolves: the client asks for every enum member, never fails on a value or a
field it does not know, keeps them in the raw JSON, and reads determinations in today's names
(docs/defender-service.md#evolvable-enums)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from shared.defender.model import normalize, normalize_alert
from shared.defender.operations import IncidentUpdate
from shared.defender.values import current_determination
from tests.unit.test_defender_client import graph_incident, legacy_incident, make


def _answer(request: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
    url = request.url or ""
    if "runHuntingQuery" in url or "advancedhunting" in url:
        return 200, {"schema": [], "results": []}, {}
    if request.method == "POST":
        return 200, {"value": []}, {}
    if "/incidents/" in url or "/api/incidents/" in url:
        return 200, graph_incident(1) if "/v1.0/" in url else legacy_incident(1), {}
    if "alerts_v2" in url:
        return 200, {"value": []}, {}
    return 200, {"value": [graph_incident(1) if "/v1.0/" in url else legacy_incident(1)]}, {}


@pytest.mark.parametrize("api", ["graph", "legacy"])
def test_every_graph_request_asks_for_unknown_enum_members(api: str) -> None:
    """Prefer: include-unknown-enum-members on every Graph call (list, get, update, comment,
    alerts, hunting); the legacy API has no such header, so none is sent there."""
    client, adapter, _ = make(_answer, api=api)
    client.list_incidents()
    client.get_incident("1")
    client.update_incident("1", IncidentUpdate.parse(status="active", comment="c"))
    client.list_alerts()
    client.hunt("DeviceEvents | take 1")
    assert len(adapter.sent) >= 5
    prefer = {r.headers.get("Prefer") for r in adapter.sent}
    assert prefer == ({"include-unknown-enum-members"} if api == "graph" else {None})


def test_unknown_enum_values_and_fields_are_kept() -> None:
    """A status, severity, classification, source or field the code has never heard of is
    read as it is, and the raw JSON keeps everything (nested objects included)."""
    raw = graph_incident(
        7,
        status="awaitingAction",
        severity="unknownFutureValue",
        classification="someNewClassification",
        determination="someNewDetermination",
        priorityScore=87,
        systemTags=["tag"],
        brandNewField={"nested": [1, {"deep": True}]},
    )
    incident = normalize(raw, "graph")
    assert (incident.status, incident.severity) == ("awaitingAction", "unknownFutureValue")
    assert incident.classification == "someNewClassification"
    assert incident.determination == "someNewDetermination"
    assert incident.raw["brandNewField"] == {"nested": [1, {"deep": True}]}
    assert incident.raw == raw
    alert = normalize_alert(
        {
            "id": "a1",
            "createdDateTime": "2026-11-01T00:00:00Z",
            "lastUpdateDateTime": "2026-11-01T00:00:00Z",
            "status": "unknownFutureValue",
            "serviceSource": "microsoftSentinel",
            "detectionSource": "someFutureDetector",
            "evidence": [{"@odata.type": "#microsoft.graph.security.newEvidence", "x": 1}],
        },
        "graph",
    )
    assert (alert.status, alert.service_source) == ("unknownFutureValue", "microsoftSentinel")
    assert alert.raw["evidence"][0]["x"] == 1


@pytest.mark.parametrize(
    ("api", "stored", "expected"),
    [
        ("graph", "compromisedUser", "compromisedAccount"),
        ("graph", "clean", "notMalicious"),
        ("graph", "insufficientData", "notEnoughDataToValidate"),
        ("graph", "confirmedUserActivity", "confirmedActivity"),
        ("graph", "compromisedAccount", "compromisedAccount"),
        ("legacy", "CompromisedUser", "compromisedAccount"),
        ("legacy", "InsufficientData", "notEnoughDataToValidate"),
        ("legacy", "Clean", "notMalicious"),
        ("legacy", "NotAvailable", "notAvailable"),
    ],
)
def test_old_determination_names_are_read_as_todays(api: str, stored: str, expected: str) -> None:
    """Incidents stored (or served) with the older names read as the schema's names."""
    raw = (
        graph_incident(1, determination=stored)
        if api == "graph"
        else {**legacy_incident(1), "determination": stored}
    )
    assert normalize(raw, api).determination == expected  # type: ignore[arg-type]
    assert current_determination("COMPROMISEDUSER") == "compromisedAccount"  # any case
    assert current_determination("NotYetInvented") == "NotYetInvented"  # kept, never refused


def test_graph_updates_send_todays_names_for_old_input() -> None:
    """A user typing an old name sends the schema's name to Graph."""
    for old, new in [
        ("compromisedUser", "compromisedAccount"),
        ("clean", "notMalicious"),
        ("insufficientData", "notEnoughDataToValidate"),
        ("confirmedUserActivity", "confirmedActivity"),
    ]:
        klass = {
            "compromisedAccount": "truePositive",
            "confirmedActivity": "informationalExpectedActivity",
        }.get(new, "falsePositive")
        update = IncidentUpdate.parse(classification=klass, determination=old)
        assert update.fields("graph")["determination"] == new


def test_every_spelling_maps_as_the_keyed_lookup_does() -> None:
    """The shortcut for today's names changes no answer: every documented name and synonym, in
    several spellings, maps as the keyed lookup alone maps it."""
    from shared.defender import values

    def keyed(value: str) -> str:
        key = values._key(value)
        if key in values._DETERMINATION_SYNONYMS:
            return values._DETERMINATION_SYNONYMS[key]
        return values._DETERMINATION_BY_KEY.get(key) or value

    names = [*values._ALL_DETERMINATIONS, *values._DETERMINATION_SYNONYMS, "NotYetInvented"]
    for name in names:
        for spelling in (name, name.upper(), name.lower(), name[:1].upper() + name[1:]):
            assert current_determination(spelling) == keyed(spelling), spelling
    assert "clean" not in values._SETTLED_DETERMINATIONS  # a synonym is never a shortcut
