"""Request building, paging, response classification and normalization (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.core.errors import (
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    ThrottledError,
    TransientError,
    UnauthorizedError,
    UnexpectedResponseError,
)
from shared.defender.model import normalize
from shared.defender.paging import (
    Page,
    list_incidents_request,
    next_request,
    parse_page,
    same_origin,
)
from shared.defender.responses import classify, retry_after_seconds

BASE = "https://api.security.microsoft.com"
SINCE = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def test_legacy_first_request_filters_on_last_update_without_upper_bound() -> None:
    """Legacy listing: lastUpdateTime ge <since>, $top, $skip=0."""
    spec = list_incidents_request("legacy", BASE, updated_since=SINCE, page_size=100)
    assert spec.url == f"{BASE}/api/incidents"
    assert spec.params == {
        "$top": "100",
        "$filter": "lastUpdateTime ge 2026-11-20T08:00:00Z",
        "$skip": "0",
    }


def test_graph_first_request_expands_alerts() -> None:
    """Graph listing asks for alerts and filters on lastUpdateDateTime."""
    spec = list_incidents_request(
        "graph", "https://graph.microsoft.com", updated_since=SINCE, page_size=50
    )
    assert spec.url == "https://graph.microsoft.com/v1.0/security/incidents"
    assert spec.params["$expand"] == "alerts"
    assert spec.params["$filter"] == "lastUpdateDateTime ge 2026-11-20T08:00:00Z"
    assert "$skip" not in spec.params


def test_next_link_on_same_origin_is_followed() -> None:
    """A nextLink on the API host becomes the next request."""
    first = list_incidents_request("graph", BASE, updated_since=None, page_size=2)
    link = f"{BASE}/v1.0/security/incidents?$skip=2"
    nxt = next_request(first, Page([{}, {}], link), base_url=BASE)
    assert nxt is not None and nxt.url == link and not nxt.params


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.example.com/api/incidents?$skip=100",
        "http://api.security.microsoft.com/api/incidents?$skip=100",
        "https://api.security.microsoft.com:8443/api/incidents?$skip=100",
    ],
)
def test_next_link_to_another_origin_is_refused(link: str) -> None:
    """The token must never follow a link to another scheme, host or port."""
    first = list_incidents_request("legacy", BASE, updated_since=None, page_size=2)
    with pytest.raises(UnexpectedResponseError, match="another host"):
        next_request(first, Page([{}, {}], link), base_url=BASE)


def test_repeating_next_link_is_detected() -> None:
    """A service that hands back the same link again is stopped, not followed forever."""
    first = list_incidents_request("graph", BASE, updated_since=None, page_size=2)
    link = f"{BASE}/v1.0/security/incidents?$skip=2"
    second = next_request(first, Page([{}, {}], link), base_url=BASE)
    assert second is not None
    with pytest.raises(UnexpectedResponseError, match="repeats"):
        next_request(second, Page([{}, {}], link), base_url=BASE)


def test_legacy_falls_back_to_skip_until_a_short_page() -> None:
    """Without nextLink, legacy pages by $skip in steps of $top; a short page ends it."""
    first = list_incidents_request("legacy", BASE, updated_since=None, page_size=2)
    second = next_request(first, Page([{}, {}]), base_url=BASE)
    assert second is not None and second.params["$skip"] == "2"
    third = next_request(second, Page([{}, {}]), base_url=BASE)
    assert third is not None and third.params["$skip"] == "4"
    assert next_request(third, Page([{}]), base_url=BASE) is None


def test_graph_without_next_link_is_complete() -> None:
    """Graph pages only by nextLink."""
    first = list_incidents_request("graph", BASE, updated_since=None, page_size=2)
    assert next_request(first, Page([{}, {}]), base_url=BASE) is None


def test_same_origin_default_ports() -> None:
    """An explicit default port is the same origin."""
    assert same_origin("https://a.example:443/x", "https://a.example")
    assert not same_origin("https://a.example.evil/x", "https://a.example")


@pytest.mark.parametrize(
    "body",
    [[], {"value": {}}, {"value": [1]}, {"nothing": []}, {"value": [], "@odata.nextLink": 5}],
)
def test_malformed_list_answers_are_reported(body: object) -> None:
    """A list answer outside the contract raises, never passes silently."""
    with pytest.raises(UnexpectedResponseError):
        parse_page(body)


def _body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "target": "track-1"}}).encode()


def test_429_uses_retry_after_header_then_quota_window() -> None:
    """429 waits: Retry-After seconds first, else the window named in the legacy message."""
    with pytest.raises(ThrottledError) as info:
        classify(429, {"Retry-After": "7"}, _body("429", "quota"))
    assert info.value.retry_after == 7.0
    msg = "API calls quota exceeded! maximum allowed 45 per 00:01:00"
    assert retry_after_seconds({}, msg) == 60.0
    with pytest.raises(ThrottledError) as info:
        classify(429, {}, _body("429", msg))
    assert info.value.retry_after == 60.0
    assert info.value.request_id == "track-1"


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, BadRequestError),
        (401, UnauthorizedError),
        (403, ForbiddenError),
        (404, NotFoundError),
        (500, TransientError),
        (503, TransientError),
        (418, UnexpectedResponseError),
    ],
)
def test_status_table(status: int, error_type: type[Exception]) -> None:
    """Each status maps to the error type the caller acts on."""
    with pytest.raises(error_type):
        classify(status, {}, _body("Code", "detail"))


def test_forbidden_names_the_missing_role() -> None:
    """A 403 that names a permission tells the operator which one to grant."""
    with pytest.raises(ForbiddenError) as info:
        classify(403, {}, _body("Forbidden", "Missing application roles: Incident.Read.All"))
    assert info.value.missing_role == "Incident.Read.All"
    assert "grant the app 'Incident.Read.All'" in str(info.value)


def test_graph_error_request_id_is_kept() -> None:
    """Graph's innerError request-id is carried on the error."""
    body = json.dumps(
        {
            "error": {
                "code": "BadRequest",
                "message": "bad $filter",
                "innerError": {"request-id": "r-9"},
            }
        }
    ).encode()
    with pytest.raises(BadRequestError, match="bad \\$filter") as info:
        classify(400, {"client-request-id": "c-1"}, body)
    assert info.value.request_id == "r-9"
    assert info.value.correlation_id == "c-1"


def test_truncated_success_body_is_transient() -> None:
    """A 200 whose JSON is cut off is retried, not parsed as empty."""
    with pytest.raises(TransientError, match="not complete JSON"):
        classify(200, {}, b'{"value": [{"id"')


LEGACY = {
    "incidentId": 924565,
    "redirectIncidentId": None,
    "incidentName": "Ransomware activity",
    "createdTime": "2020-09-06T14:46:57.0733333Z",
    "lastUpdateTime": "2020-09-06T14:46:57.29Z",
    "assignedTo": None,
    "classification": "Unknown",
    "determination": "NotAvailable",
    "status": "InProgress",
    "severity": "UnSpecified",
    "tags": ["a"],
    "alerts": [{}, {}],
}
GRAPH = {
    "id": "924565",
    "displayName": "Ransomware activity",
    "createdDateTime": "2020-09-06T14:46:57.0733333Z",
    "lastUpdateDateTime": "2020-09-06T14:46:57.29Z",
    "classification": "unknown",
    "determination": "notAvailable",
    "status": "inProgress",
    "severity": "unknown",
    "customTags": ["a"],
    "redirectIncidentId": None,
    "assignedTo": None,
    "alerts": [{}, {}],
}


def test_both_surfaces_normalize_to_the_same_incident() -> None:
    """Legacy and Graph renderings of one incident give equal normalized views."""
    a, b = normalize(LEGACY, "legacy"), normalize(GRAPH, "graph")
    fields = (
        "id",
        "title",
        "status",
        "severity",
        "classification",
        "determination",
        "created",
        "last_update",
        "redirect_id",
        "tags",
        "alert_count",
        "assigned_to",
    )
    assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}
    assert a.id == "924565" and a.status == "inProgress" and a.alert_count == 2


@pytest.mark.parametrize("missing", ["incidentId", "lastUpdateTime", "createdTime"])
def test_incident_without_key_fields_is_reported(missing: str) -> None:
    """An incident without its id or times cannot be stored safely: it is an error."""
    raw = {k: v for k, v in LEGACY.items() if k != missing}
    with pytest.raises(UnexpectedResponseError, match=missing):
        normalize(raw, "legacy")


def test_incident_with_bad_time_is_reported() -> None:
    """A malformed timestamp is reported with the field name."""
    with pytest.raises(UnexpectedResponseError, match="lastUpdateDateTime"):
        normalize({**GRAPH, "lastUpdateDateTime": "yesterday"}, "graph")
