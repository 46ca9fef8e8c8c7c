"""One contract for the client, run against both API surfaces of the emulator.

Every test gets ``surface`` ("legacy" or "graph") and checks the normalized answer against the
emulator's ground truth, so callers can rely on the same behaviour whichever API is configured.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.core.clock import parse_utc
from shared.core.errors import BadRequestError, ConfigError, NotFoundError
from shared.defender.operations import IncidentUpdate
from shared.defender.queries import AlertQuery, IncidentQuery
from tests.conftest import LocalCloud
from tests.defender.conftest import ClientFactory, truth

pytestmark = pytest.mark.e2e


def _id(raw: dict[str, object], api: str) -> str:
    return str(raw["incidentId"] if api == "legacy" else raw["id"])


def _updated(raw: dict[str, object], api: str) -> str:
    return str(raw["lastUpdateTime"] if api == "legacy" else raw["lastUpdateDateTime"])


def test_list_returns_every_incident_newest_first(
    make_client: ClientFactory, cloud: LocalCloud, surface: str
) -> None:
    """All incidents, once each, in the API's newest-first order, across several pages."""
    client = make_client(surface, INGEST_PAGE_SIZE="7")
    expected = truth(cloud, surface)
    incidents = client.list_incidents()
    assert [i.id for i in incidents] == [_id(r, surface) for r in expected]
    assert client.api_calls > 1  # it paged
    assert all(i.api == surface for i in incidents)
    assert ("incidentId" if surface == "legacy" else "id") in incidents[0].raw  # raw API JSON


def test_filters_match_the_truth(
    make_client: ClientFactory, cloud: LocalCloud, surface: str
) -> None:
    """Status, severity, assignee and time ranges give what the ground truth says."""
    client = make_client(surface)
    expected = truth(cloud, surface)
    every = client.list_incidents()
    middle = sorted(i.last_update for i in every)[len(every) // 2]
    created_mid = sorted(i.created for i in every)[len(every) // 2]
    assignee = next(i.assigned_to for i in every if i.assigned_to)
    assert assignee is not None
    query = IncidentQuery(
        statuses=("active", "inProgress"),
        severities=("high", "medium"),
        updated_from=middle - timedelta(days=20),
        updated_before=middle + timedelta(days=1),
        created_from=created_mid - timedelta(days=30),
    )
    got = {i.id for i in client.list_incidents(query)}

    def keep(raw: dict[str, object]) -> bool:
        status = str(raw["status"]).lower()
        severity = str(raw["severity"]).lower()
        updated = parse_utc(_updated(raw, surface))
        created = parse_utc(str(raw["createdTime" if surface == "legacy" else "createdDateTime"]))
        return (
            status in ("active", "inprogress")
            and severity in ("high", "medium")
            and middle - timedelta(days=20) <= updated < middle + timedelta(days=1)
            and created >= created_mid - timedelta(days=30)
        )

    assert got == {_id(r, surface) for r in expected if keep(r)}
    assert got  # the data set makes this filter non-trivial
    mine = client.list_incidents(IncidentQuery(assigned_to=assignee.upper()))
    assert mine and all((i.assigned_to or "").lower() == assignee.lower() for i in mine)


def test_get_and_not_found(make_client: ClientFactory, cloud: LocalCloud, surface: str) -> None:
    """One incident with its alerts; a missing one is a typed NotFoundError with a request id."""
    client = make_client(surface)
    raw = truth(cloud, surface)[0]
    incident = client.get_incident(_id(raw, surface))
    assert incident.id == _id(raw, surface)
    assert incident.alert_count == len(raw.get("alerts") or [])  # type: ignore[arg-type]
    with pytest.raises(NotFoundError) as info:
        client.get_incident("999999999")
    assert info.value.status == 404 and (info.value.request_id or info.value.correlation_id)


def test_update_every_field(make_client: ClientFactory, cloud: LocalCloud, surface: str) -> None:
    """Status, assignee, classification, determination (other spelling), tags and a comment."""
    client = make_client(surface)
    target = _id(truth(cloud, surface)[-1], surface)
    update = IncidentUpdate.parse(
        status="Resolved",
        assigned_to="secop2@contoso.com",
        classification="TruePositive",
        determination="compromisedUser",  # an older name: sent as today's compromisedAccount
        tags=["bridge", "contract"],
        comment=f"contract test on {surface}",
    )
    updated = client.update_incident(target, update)
    again = client.get_incident(target)
    for incident in (updated, again):
        assert incident.status == "resolved"
        assert incident.assigned_to == "secop2@contoso.com"
        assert incident.classification == "truePositive"
        assert incident.determination == "compromisedAccount"  # read in today's name
        assert incident.tags == ("bridge", "contract")
    texts = [str(c.get("comment")) for c in again.raw.get("comments") or []]
    assert f"contract test on {surface}" in texts
    assert incident.last_update >= updated.created


def test_invalid_update_is_refused_before_sending(make_client: ClientFactory, surface: str) -> None:
    """Validation happens on our side: no request is sent for a bad value."""
    client = make_client(surface)
    with pytest.raises(ConfigError, match="not allowed with classification"):
        IncidentUpdate.parse(classification="falsePositive", determination="malware")
    assert client.api_calls == 0


def test_alerts(make_client: ClientFactory, cloud: LocalCloud, surface: str) -> None:
    """Every alert of the tenant, once; Graph from alerts_v2, legacy from incidents."""
    client = make_client(surface)
    incidents = truth(cloud, "legacy")
    expected = {str(a["alertId"]) for i in incidents for a in i.get("alerts") or []}  # type: ignore[union-attr]
    alerts = client.list_alerts()
    assert {a.id for a in alerts} == expected
    assert len(alerts) == len(expected)
    new = client.list_alerts(AlertQuery(statuses=("new",), severities=("high",)))
    assert {a.id for a in new} == {
        str(a["alertId"])
        for i in incidents
        for a in i.get("alerts") or []  # type: ignore[union-attr]
        if str(a["status"]).lower() == "new" and str(a["severity"]).lower() == "high"
    }


def test_hunting_gives_one_shape(make_client: ClientFactory, surface: str) -> None:
    """Columns, types and rows normalize the same on both surfaces."""
    client = make_client(surface)
    result = client.hunt("AlertInfo | summarize count() by Severity | order by Severity asc")
    assert result.columns == ("Severity", "count_")
    assert result.types[1] in ("Int64", "Long")
    assert result.rows and all(set(r) == {"Severity", "count_"} for r in result.rows)
    other = make_client("graph" if surface == "legacy" else "legacy").hunt(
        "AlertInfo | summarize count() by Severity | order by Severity asc"
    )
    assert other.columns == result.columns and other.rows == result.rows
    assert (result.stats is not None) == (surface == "legacy")


def test_hunting_errors_are_typed(make_client: ClientFactory, surface: str) -> None:
    """Bad KQL: BadRequestError with the API's message; a time span only on Graph."""
    client = make_client(surface)
    with pytest.raises(BadRequestError) as info:
        client.hunt("AlertInfo | join kind=inner (AlertEvidence) on AlertId")
    assert "join" in str(info.value)
    if surface == "legacy":
        with pytest.raises(ConfigError, match="no time span"):
            client.hunt("AlertInfo | take 1", timespan="P7D")
    else:
        assert client.hunt("AlertInfo | take 3", timespan="P7D").columns
