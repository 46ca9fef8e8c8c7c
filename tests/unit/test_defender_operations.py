"""Value sets, queries, operation requests, and normalized hunting results and alerts (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.core.errors import ConfigError, UnexpectedResponseError
from shared.defender.model import normalize, normalize_alert, normalize_hunting
from shared.defender.operations import (
    IncidentUpdate,
    comment_request,
    get_incident_request,
    hunting_request,
    list_alerts_request,
    update_incident_request,
)
from shared.defender.queries import AlertQuery, IncidentQuery
from shared.defender.values import (
    canonical_determination,
    canonical_severity,
    canonical_status,
    for_api,
)

BASE = "https://api.example.test"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


# ---------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("Active", "active"), ("inprogress", "inProgress"), ("In-Progress", "inProgress")],
)
def test_statuses_accept_any_case(text: str, canonical: str) -> None:
    """PascalCase, camelCase and separators all name the same status."""
    assert canonical_status(text) == canonical


def test_unknown_values_list_the_documented_set() -> None:
    """A wrong value says what is allowed."""
    with pytest.raises(ConfigError, match="active, inProgress, resolved, redirected"):
        canonical_status("closed")
    with pytest.raises(ConfigError, match="alert status"):
        canonical_status("New")
    assert canonical_severity("UnSpecified") == "unknown"


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("CompromisedAccount", "compromisedAccount"),
        ("compromisedUser", "compromisedAccount"),
        ("ConfirmedActivity", "confirmedActivity"),
        ("confirmedUserActivity", "confirmedActivity"),
        ("NoEnoughDataToValidate", "notEnoughDataToValidate"),
        ("notEnoughDataToValidate", "notEnoughDataToValidate"),
        ("notMalicious", "notMalicious"),
        ("clean", "notMalicious"),
        ("InsufficientData", "notEnoughDataToValidate"),
    ],
)
def test_both_documented_determination_spellings_are_accepted(
    spelling: str, canonical: str
) -> None:
    """Today's schema names, the older names and the legacy update page's names all map to
    the schema's name (docs/defender-service.md#determination-values)."""
    assert canonical_determination(spelling) == canonical


def test_determination_must_fit_the_classification() -> None:
    """The documented pairs are enforced when both are given."""
    assert canonical_determination("malware", "truePositive") == "malware"
    with pytest.raises(ConfigError, match="not allowed with classification 'falsePositive'"):
        canonical_determination("malware", "falsePositive")


def test_each_surface_gets_its_own_spelling() -> None:
    """Graph takes camelCase; legacy PascalCase and its update page's determination names."""
    assert for_api("graph", "determination", "compromisedAccount") == "compromisedAccount"
    assert for_api("legacy", "determination", "compromisedAccount") == "CompromisedAccount"
    assert for_api("legacy", "determination", "notEnoughDataToValidate") == (
        "NoEnoughDataToValidate"
    )
    assert for_api("legacy", "determination", "notMalicious") == "Clean"
    assert for_api("graph", "determination", "notMalicious") == "notMalicious"
    assert for_api("legacy", "status", "inProgress") == "InProgress"
    assert for_api("legacy", "severity", "unknown") == "UnSpecified"


# ---------------------------------------------------------------------- queries


def test_legacy_filters_server_side_only_what_it_documents() -> None:
    """Severity, several statuses and the update upper bound stay client-side on legacy."""
    q = IncidentQuery(
        statuses=("active", "inProgress"),
        severities=("high",),
        assigned_to="o'brien@contoso.com",
        created_from=T0,
        created_before=T0 + timedelta(days=1),
        updated_from=T0,
        updated_before=T0 + timedelta(days=2),
    )
    assert q.server_filter("legacy") == (
        "lastUpdateTime ge 2026-11-01T00:00:00Z and createdTime ge 2026-11-01T00:00:00Z and "
        "createdTime lt 2026-11-02T00:00:00Z and assignedTo eq 'o''brien@contoso.com'"
    )
    rest = q.client_side("legacy")
    assert rest.statuses == ("active", "inProgress") and rest.severities == ("high",)
    assert rest.updated_before == T0 + timedelta(days=2) and rest.created_from is None


def test_graph_filters_everything_but_the_update_upper_bound() -> None:
    """Graph gets an or-group for several values; only updated_before is left."""
    q = IncidentQuery(statuses=("active", "inProgress"), severities=("high",))
    assert q.server_filter("graph") == (
        "(status eq 'active' or status eq 'inProgress') and severity eq 'high'"
    )
    assert q.client_side("graph") == IncidentQuery()
    assert IncidentQuery(statuses=("resolved",)).server_filter("legacy") == "status eq 'Resolved'"


def test_queries_refuse_empty_or_naive_ranges() -> None:
    """A range that ends before it starts, or a naive time, is a caller error."""
    with pytest.raises(ConfigError, match="after the start"):
        IncidentQuery(created_from=T0, created_before=T0)
    with pytest.raises(ConfigError, match="time zone"):
        AlertQuery(updated_from=datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test


def _legacy_incident(**fields: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "incidentId": 7,
        "incidentName": "x",
        "createdTime": "2026-11-01T10:00:00Z",
        "lastUpdateTime": "2026-11-01T12:00:00.1234567Z",
        "status": "Active",
        "severity": "High",
        "assignedTo": "Ann@Contoso.com",
        "alerts": [
            {
                "alertId": "da1",
                "incidentId": 7,
                "title": "t",
                "status": "New",
                "severity": "High",
                "serviceSource": "MicrosoftDefenderATP",
                "creationTime": "2026-11-01T10:00:00Z",
                "lastUpdatedTime": "2026-11-01T11:00:00Z",
            }
        ],
    }
    raw.update(fields)
    return raw


def test_client_side_matching_uses_the_normalized_incident() -> None:
    """Matching compares canonical values, case-insensitive assignees and half-open ranges."""
    incident = normalize(_legacy_incident(), "legacy")
    assert IncidentQuery(severities=("high",), assigned_to="ann@contoso.com").matches(incident)
    assert not IncidentQuery(statuses=("resolved",)).matches(incident)
    assert not IncidentQuery(updated_before=incident.last_update).matches(incident)
    assert IncidentQuery(updated_from=incident.last_update).matches(incident)


def test_alert_queries_on_legacy_list_incidents_since_the_earliest_bound() -> None:
    """Every alert created or updated since X lives in an incident updated since X."""
    q = AlertQuery(created_from=T0, updated_from=T0 + timedelta(hours=1))
    assert q.legacy_incident_query() == IncidentQuery(updated_from=T0)
    assert q.graph_filter() == (
        "lastUpdateDateTime ge 2026-11-01T01:00:00Z and createdDateTime ge 2026-11-01T00:00:00Z"
    )


# ---------------------------------------------------------------------- operations


def test_update_bodies_per_surface() -> None:
    """Legacy: PascalCase, tags and comment inline; Graph: camelCase, customTags, no comment."""
    update = IncidentUpdate.parse(
        status="resolved",
        classification="TruePositive",
        determination="compromisedAccount",
        tags=["a", " a ", "b"],
        comment="done",
        assigned_to="",
    )
    legacy = update_incident_request("legacy", BASE, "42", update)
    assert legacy is not None and legacy.method == "PATCH"
    assert legacy.url == f"{BASE}/api/incidents/42"
    assert legacy.json == {
        "status": "Resolved",
        "assignedTo": "",
        "classification": "TruePositive",
        "determination": "CompromisedAccount",
        "tags": ["a", "b"],
        "comment": "done",
    }
    graph = update_incident_request("graph", BASE, "42", update)
    assert graph is not None and graph.url == f"{BASE}/v1.0/security/incidents/42"
    assert graph.json == {
        "status": "resolved",
        "assignedTo": "",
        "classification": "truePositive",
        "determination": "compromisedAccount",  # today's schema name, never the old one
        "customTags": ["a", "b"],
    }
    only_comment = IncidentUpdate.parse(comment="hi")
    assert update_incident_request("graph", BASE, "42", only_comment) is None
    post = comment_request(BASE, "42", "hi")
    assert post.url.endswith("/incidents/42/comments") and post.json["comment"] == "hi"


def test_update_reports_every_problem_and_refuses_nothing_to_do() -> None:
    """All bad values at once; an empty update is an error, not a no-op call."""
    with pytest.raises(ConfigError) as info:
        IncidentUpdate.parse(status="open", classification="maybe", comment=" ")
    assert len(info.value.problems) == 3
    with pytest.raises(ConfigError, match="nothing to update"):
        IncidentUpdate.parse()


@pytest.mark.parametrize("bad", ["", "../x", "1/comments", "a" * 65])
def test_incident_ids_are_checked(bad: str) -> None:
    """An id never changes the path of the request."""
    with pytest.raises(ConfigError):
        get_incident_request("graph", BASE, bad)


def test_legacy_ids_are_numeric_and_graph_get_expands_alerts() -> None:
    """Legacy ids are longs; Graph needs $expand=alerts."""
    with pytest.raises(ConfigError, match="digits only"):
        get_incident_request("legacy", BASE, "abc")
    assert get_incident_request("graph", BASE, "12").params == {"$expand": "alerts"}


def test_hunting_requests_per_surface() -> None:
    """Legacy {"Query"} without a time span; Graph {"Query", "Timespan"}, the span checked."""
    legacy = hunting_request("legacy", BASE, "AlertInfo | take 1")
    assert legacy.url == f"{BASE}/api/advancedhunting/run"
    assert legacy.json == {"Query": "AlertInfo | take 1"}
    graph = hunting_request("graph", BASE, "AlertInfo", timespan="P7D")
    assert graph.url == f"{BASE}/v1.0/security/runHuntingQuery"
    assert graph.json == {"Query": "AlertInfo", "Timespan": "P7D"}
    for span in ("P30D/2024-02-15T08:00:00Z", "2024-02-01T08:00:00Z/2024-02-15T08:00:00Z"):
        assert hunting_request("graph", BASE, "x", timespan=span).json["Timespan"] == span
    with pytest.raises(ConfigError, match="no time span"):
        hunting_request("legacy", BASE, "x", timespan="P7D")
    with pytest.raises(ConfigError, match="not ISO-8601"):
        hunting_request("graph", BASE, "x", timespan="7 days")
    with pytest.raises(ConfigError, match="empty"):
        hunting_request("graph", BASE, "  ")


def test_alert_listing_request() -> None:
    """alerts_v2 with $top and the query's filter."""
    spec = list_alerts_request(BASE, AlertQuery(statuses=("new",)), page_size=50)
    assert spec.url == f"{BASE}/v1.0/security/alerts_v2"
    assert spec.params == {"$top": "50", "$filter": "status eq 'new'"}


# ---------------------------------------------------------------------- model


def test_hunting_results_normalize_either_casing() -> None:
    """Legacy Schema/Results/Name/Type and Graph schema/results/name/type give one shape."""
    legacy = normalize_hunting(
        {
            "Stats": {"ExecutionTime": 1.0},
            "Schema": [{"Name": "A", "Type": "String"}, {"Name": "B", "Type": "Int64"}],
            "Results": [{"A": "x", "B": 1}, {"A": "y"}],
        },
        "legacy",
    )
    graph = normalize_hunting(
        {
            "schema": [{"name": "A", "type": "String"}, {"Name": "B", "Type": "Int64"}],
            "results": [{"A": "x", "B": 1}, {"A": "y"}],
        },
        "graph",
    )
    assert legacy.columns == graph.columns == ("A", "B")
    assert legacy.types == graph.types == ("String", "Int64")
    assert legacy.rows == graph.rows
    assert legacy.table() == [["x", 1], ["y", None]]
    assert legacy.stats == {"ExecutionTime": 1.0} and graph.stats is None


@pytest.mark.parametrize("body", [[], {"schema": []}, {"schema": [{}], "results": []}])
def test_malformed_hunting_answers_raise(body: object) -> None:
    """Outside the contract: a typed error, not a KeyError."""
    with pytest.raises(UnexpectedResponseError):
        normalize_hunting(body, "graph")


def test_alerts_normalize_on_both_surfaces() -> None:
    """Legacy creationTime/lastUpdatedTime and PascalCase vs Graph camelCase."""
    raw = _legacy_incident()["alerts"]
    assert isinstance(raw, list)
    legacy = normalize_alert(raw[0], "legacy")
    assert (legacy.id, legacy.incident_id, legacy.status, legacy.severity) == (
        "da1",
        "7",
        "new",
        "high",
    )
    graph = normalize_alert(
        {
            "id": "da1",
            "incidentId": "7",
            "status": "new",
            "severity": "high",
            "createdDateTime": "2026-11-01T10:00:00Z",
            "lastUpdateDateTime": "2026-11-01T11:00:00Z",
        },
        "graph",
    )
    assert (graph.created, graph.last_update) == (legacy.created, legacy.last_update)
