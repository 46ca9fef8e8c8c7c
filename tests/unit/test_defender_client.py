"""DefenderClient over a fake transport: retries, budgets, limiter, operations on both surfaces."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter

from shared.core.errors import (
    ForbiddenError,
    ThrottledError,
    TransientError,
    UnexpectedResponseError,
)
from shared.defender.client import DefenderClient, RetryPolicy
from shared.defender.limiter import RateLimiterRegistry
from shared.defender.operations import IncidentUpdate
from shared.defender.paging import ticks
from shared.defender.queries import AlertQuery, IncidentQuery

BASE = "https://api.example.test"
Reply = tuple[int, Any, dict[str, str]]
Handler = Callable[[requests.PreparedRequest], Reply]


class FakeAdapter(BaseAdapter):
    """Answers with ``handler``; raising ``requests.ConnectionError`` simulates a reset."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        status, body, headers = self.handler(request)
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode() if body is not None else b""
        response.headers.update(headers)
        response.request, response.url = request, request.url or ""
        return response

    def close(self) -> None:
        pass


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make(
    handler: Handler,
    *,
    api: str = "graph",
    budget: float = 60.0,
    limiter: RateLimiterRegistry | None = None,
    clock: FakeTime | None = None,
) -> tuple[DefenderClient, FakeAdapter, FakeTime]:
    adapter = FakeAdapter(handler)
    session = requests.Session()
    session.mount("https://", adapter)
    t = clock or FakeTime()
    client = DefenderClient(
        session=session,
        token=lambda: "tok",
        api=api,  # type: ignore[arg-type]
        base_url=BASE,
        retry=RetryPolicy(max_attempts=5, base_delay=1.0, budget=budget),
        limiter=limiter,
        tenant="t1",
        page_size=2,
        sleep=t.sleep,
        monotonic=t.monotonic,
        rng=lambda: 1.0,
    )
    return client, adapter, t


def graph_incident(
    ident: int, *, updated: str = "2026-11-01T00:00:00Z", **extra: Any
) -> dict[str, Any]:
    return {
        "id": str(ident),
        "displayName": f"i{ident}",
        "status": "active",
        "severity": "high",
        "createdDateTime": "2026-10-01T00:00:00Z",
        "lastUpdateDateTime": updated,
        **extra,
    }


_TERM = re.compile(r"((?:lastUpdate|created)(?:Date)?Time) (ge|lt) (\S+)")


def serve(
    items: list[dict[str, Any]], request: requests.PreparedRequest, *, shuffle: int = 0
) -> Reply:
    """A fake listing that honours the last-update ``ge``/``lt`` terms, ``$top`` and ``$skip``,
    answering in a seeded arbitrary order (``shuffle`` seed) and with a nextLink when more."""
    query = parse_qs(urlsplit(request.url or "").query)
    chosen = list(items)
    for field, op, stamp in _TERM.findall(query.get("$filter", [""])[0]):
        bound = ticks(stamp)
        chosen = [
            i
            for i in chosen
            if (ticks(i[field]) >= bound if op == "ge" else ticks(i[field]) < bound)
        ]
    if shuffle:
        random.Random(shuffle).shuffle(chosen)  # noqa: S311 - test data order
    top = int(query.get("$top", ["100"])[0])
    skip = int(query.get("$skip", ["0"])[0])
    body: dict[str, Any] = {"value": chosen[skip : skip + top]}
    if skip + top < len(chosen) and "/v1.0/" in (request.url or ""):
        rest = {k: v[0] for k, v in query.items() if k != "$skip"}
        body["@odata.nextLink"] = (
            f"{BASE}{urlsplit(request.url or '').path}?{urlencode({**rest, '$skip': skip + top})}"
        )
    return 200, body, {}


def legacy_incident(
    ident: int, severity: str = "High", alerts: list[Any] | None = None
) -> dict[str, Any]:
    return {
        "incidentId": ident,
        "incidentName": f"i{ident}",
        "status": "Active",
        "severity": severity,
        "createdTime": "2026-10-01T00:00:00Z",
        "lastUpdateTime": "2026-11-01T00:00:00Z",
        "alerts": alerts or [],
    }


def test_transient_failures_are_retried_with_backoff() -> None:
    """503, then a reset, then success: two waits of growing length."""
    replies: list[Reply | Exception] = [
        (503, {"error": {"code": "ServiceUnavailable", "message": "busy"}}, {}),
        requests.ConnectionError("reset"),
        (200, graph_incident(1), {}),
    ]

    def handler(request: requests.PreparedRequest) -> Reply:
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    client, adapter, t = make(handler)
    assert client.get_incident("1").id == "1"
    assert t.slept == [1.0, 2.0] and client.api_calls == 3
    ids = {r.headers["client-request-id"] for r in adapter.sent}
    assert len(ids) == 3  # a fresh correlation id per attempt
    assert adapter.sent[0].headers["Authorization"] == "Bearer tok"


def test_retry_after_beyond_the_budget_fails_at_once() -> None:
    """A 429 asking for more time than the budget has left: raise now, typed, with ids."""
    headers = {"Retry-After": "120", "request-id": "rid-1"}

    def handler(request: requests.PreparedRequest) -> Reply:
        return 429, {"error": {"code": "TooManyRequests", "message": "Too many"}}, headers

    client, _, t = make(handler, budget=10.0)
    with pytest.raises(ThrottledError) as info:
        client.get_incident("1")
    assert info.value.retry_after == 120.0 and info.value.request_id == "rid-1"
    assert info.value.correlation_id  # our client-request-id when the answer has none
    assert t.slept == []


def test_the_budget_covers_every_page_of_a_listing() -> None:
    """Each page takes 4 s; with a 10 s budget the third page's call is not even sent."""
    clock = FakeTime()

    many = [
        graph_incident(n, updated=f"2026-11-01T00:{n // 60:02d}:{n % 60:02d}Z") for n in range(900)
    ]

    def handler(request: requests.PreparedRequest) -> Reply:
        clock.now += 4.0
        return serve(many, request)

    client, adapter, _ = make(handler, budget=10.0, clock=clock)
    with pytest.raises(TransientError, match="time budget"):
        client.list_incidents()
    assert len(adapter.sent) == 3  # third request gets the last 2 s, then the 4th cannot start


def test_a_comment_is_not_repeated_after_an_ambiguous_failure() -> None:
    """Legacy PATCH with a comment appends: a 500 is not retried (it may have been applied)."""
    calls: list[str] = []

    def handler(request: requests.PreparedRequest) -> Reply:
        calls.append(request.method or "")
        return 500, {"error": {"code": "InternalServerError", "message": "x"}}, {}

    client, _, _ = make(handler, api="legacy")
    with pytest.raises(TransientError):
        client.update_incident("5", IncidentUpdate.parse(comment="hello"))
    assert calls == ["PATCH"]


def test_a_comment_is_retried_after_429() -> None:
    """A 429 means the service did nothing: retrying is safe."""
    replies = [
        (429, {"error": {"code": "429", "message": "quota"}}, {"Retry-After": "2"}),
        (200, legacy_incident(5), {}),
    ]
    client, adapter, t = make(lambda r: replies.pop(0), api="legacy")
    incident = client.update_incident("5", IncidentUpdate.parse(comment="hello", status="resolved"))
    assert incident.id == "5" and t.slept == [2.0]
    body = json.loads(adapter.sent[-1].body or b"{}")
    assert body == {"status": "Resolved", "comment": "hello"}


def test_graph_comment_is_posted_after_the_patch() -> None:
    """Graph: PATCH the fields, POST the comment, return the incident with every comment."""
    comments = [{"comment": "c1"}, {"comment": "hello"}]

    def handler(request: requests.PreparedRequest) -> Reply:
        if request.method == "PATCH":
            return 200, graph_incident(9, status="resolved", comments=[{"comment": "c1"}]), {}
        return 200, {"value": comments}, {}

    client, adapter, _ = make(handler)
    incident = client.update_incident("9", IncidentUpdate.parse(status="Resolved", comment="hello"))
    assert [r.method for r in adapter.sent] == ["PATCH", "POST"]
    assert incident.status == "resolved" and incident.raw["comments"] == comments
    post = json.loads(adapter.sent[1].body or b"{}")
    assert post["@odata.type"] == "microsoft.graph.security.alertComment"


def test_403_names_the_role_the_operation_needs() -> None:
    """When the API's message names no permission, the client names the one it needed."""

    def handler(request: requests.PreparedRequest) -> Reply:
        return 403, {"error": {"code": "Forbidden", "message": "Missing application roles"}}, {}

    client, _, _ = make(handler)
    with pytest.raises(ForbiddenError, match="ThreatHunting.Read.All") as info:
        client.hunt("AlertInfo")
    assert info.value.missing_role == "ThreatHunting.Read.All"
    legacy, _, _ = make(handler, api="legacy")
    with pytest.raises(ForbiddenError) as info:
        legacy.update_incident("1", IncidentUpdate.parse(status="active"))
    assert info.value.missing_role == "Incident.ReadWrite.All"


def test_429_pauses_the_shared_bucket() -> None:
    """A 429 with Retry-After holds back every client of the tenant, not only the one hit."""
    clock = FakeTime()
    registry = RateLimiterRegistry(
        {"incidents": ((100, 1.0),)}, monotonic=clock.monotonic, sleep=clock.sleep
    )
    throttled = (429, {"error": {"code": "429", "message": "quota"}}, {"Retry-After": "5"})
    first, _, _ = make(lambda r: throttled, limiter=registry, clock=clock, budget=3.0)
    with pytest.raises(ThrottledError):
        first.get_incident("1")  # 5 s is past its 3 s budget: raises without waiting
    assert clock.slept == []
    second, _, _ = make(lambda r: (200, graph_incident(1), {}), limiter=registry, clock=clock)
    second.get_incident("1")
    assert clock.slept == [pytest.approx(5.0)]
    assert registry.bucket("t1", "incidents").waits == 1


def test_legacy_filters_severity_client_side_and_pages_on_raw_counts() -> None:
    """A page thinned by a client-side filter still pages on; only a short raw page ends it."""
    severities = {1: "Low", 2: "High", 3: "Low", 4: "Low", 5: "High"}
    every = [
        {**legacy_incident(n, sev), "lastUpdateTime": f"2026-11-01T00:0{n}:00Z"}
        for n, sev in severities.items()
    ]

    def handler(request: requests.PreparedRequest) -> Reply:
        query = parse_qs(urlsplit(request.url or "").query)
        assert "severity" not in query.get("$filter", [""])[0]
        return serve(every, request, shuffle=3)

    client, adapter, _ = make(handler, api="legacy")
    found = client.list_incidents(IncidentQuery(severities=("high",)))
    assert [i.id for i in found] == ["5", "2"]  # newest first
    assert all(int(parse_qs(urlsplit(r.url or "").query)["$skip"][0]) == 0 for r in adapter.sent)


def test_legacy_alerts_come_from_incidents_once_each() -> None:
    """No alert endpoint on legacy: alerts are flattened from incidents, deduplicated, filtered."""
    alert = {
        "alertId": "a1",
        "incidentId": 1,
        "status": "New",
        "severity": "High",
        "creationTime": "2026-11-01T00:00:00Z",
        "lastUpdatedTime": "2026-11-01T00:00:00Z",
    }
    resolved = {**alert, "alertId": "a2", "status": "Resolved"}

    def handler(request: requests.PreparedRequest) -> Reply:
        assert urlsplit(request.url or "").path == "/api/incidents"
        # the same incident twice (the list moved while paging): its alerts count once
        both = [legacy_incident(1, alerts=[alert, resolved]), legacy_incident(1, alerts=[alert])]
        return serve(both, request)

    client, _, _ = make(handler, api="legacy")
    assert [a.id for a in client.list_alerts()] == ["a1", "a2"]
    assert [a.id for a in client.list_alerts(AlertQuery(statuses=("new",)))] == ["a1"]


def test_graph_alerts_use_alerts_v2_and_their_own_bucket() -> None:
    """Graph alerts are a separate family (their own quota)."""
    clock = FakeTime()
    registry = RateLimiterRegistry(
        {"incidents": ((1, 60.0),), "alerts": ((10, 60.0),)},
        monotonic=clock.monotonic,
        sleep=clock.sleep,
    )

    def handler(request: requests.PreparedRequest) -> Reply:
        assert urlsplit(request.url or "").path == "/v1.0/security/alerts_v2"
        return 200, {"value": []}, {}

    client, _, _ = make(handler, limiter=registry, clock=clock)
    client.list_alerts()
    client.list_alerts()
    assert clock.slept == []


def test_foreign_next_link_is_refused_before_any_request() -> None:
    """The token is never sent to a nextLink on another host."""

    def handler(request: requests.PreparedRequest) -> Reply:
        link = "https://evil.example.com/v1.0/security/incidents?$skip=2"
        return 200, {"value": [graph_incident(1), graph_incident(2)], "@odata.nextLink": link}, {}

    client, adapter, _ = make(handler)
    with pytest.raises(UnexpectedResponseError, match="evil.example.com"):
        client.list_incidents()
    assert len(adapter.sent) == 1
