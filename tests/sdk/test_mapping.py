"""The SDK-vs-JSON comparison itself catches what it is there to catch."""

from __future__ import annotations

import json
from typing import Any

from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph.generated.models.security.alert import Alert
from msgraph.generated.models.security.incident import Incident

from tests.sdk.mapping import problems


def _parse(kind: Any, raw: dict[str, Any]) -> Any:
    node = JsonParseNodeFactory().get_root_parse_node("application/json", json.dumps(raw).encode())
    return node.get_object_value(kind)


GOOD = {
    "id": "1",
    "status": "active",
    "determination": "compromisedAccount",
    "createdDateTime": "2026-11-24T16:19:39.0901360Z",
    "priorityScore": 42,
    "customTags": ["a"],
}


def test_a_well_formed_incident_has_no_problems() -> None:
    assert problems(_parse(Incident, GOOD), GOOD) == []


def test_an_old_enum_name_is_a_problem() -> None:
    raw = {**GOOD, "determination": "compromisedUser"}
    assert problems(_parse(Incident, raw), raw) == [
        "$.determination: 'compromisedUser' could not be mapped (parsed as None)"
    ]


def test_a_key_the_model_does_not_know_is_a_problem() -> None:
    raw = {**GOOD, "severityScore": 3}
    found = problems(_parse(Incident, raw), raw)
    assert found == ["$.severityScore: unknown to Incident (additional_data)"]


def test_wrong_types_and_evidence_kinds_are_problems() -> None:
    raw = {
        "id": "a",
        "evidence": [
            {"@odata.type": "#microsoft.graph.security.noSuchEvidence", "verdict": "malicious"},
            {"@odata.type": "#microsoft.graph.security.ipEvidence", "verdict": "dangerous"},
        ],
        "incidentId": 7,
    }
    found = problems(_parse(Alert, raw), raw)
    unknown_kind = "#microsoft.graph.security.noSuchEvidence"
    assert f"$.evidence[0]: {unknown_kind} parsed as AlertEvidence" in found
    assert "$.evidence[1].verdict: 'dangerous' could not be mapped (parsed as None)" in found
    assert "$.incidentId: 7 could not be mapped (parsed as None)" in found  # ids are strings


def test_the_emulators_evolvable_members_are_the_sdks() -> None:
    """emulator.fields.EVOLVED lists exactly the members after `unknownFutureValue` in the
    SDK's enums (so a newer SDK with new members shows up here)."""
    from msgraph.generated.models.security.detection_source import DetectionSource
    from msgraph.generated.models.security.evidence_remediation_status import (
        EvidenceRemediationStatus,
    )
    from msgraph.generated.models.security.incident_status import IncidentStatus
    from msgraph.generated.models.security.service_source import ServiceSource

    from emulator.fields import EVOLVED

    def after_sentinel(kind: Any) -> frozenset[str]:
        values = [member.value for member in kind]
        return frozenset(values[values.index("unknownFutureValue") + 1 :])

    assert {
        "incidentStatus": after_sentinel(IncidentStatus),
        "serviceSource": after_sentinel(ServiceSource),
        "detectionSource": after_sentinel(DetectionSource),
        "evidenceRemediationStatus": after_sentinel(EvidenceRemediationStatus),
    } == EVOLVED
