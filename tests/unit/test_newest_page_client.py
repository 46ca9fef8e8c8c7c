"""``DefenderClient.newest_page`` (``GET /incidents``) over a fake transport: slices carry the
caller's filter and both bounds, ties over a page are read as the ingestion reads them (split by
creation time, a pair over a page paged pass after pass) on both surfaces, and an
answer outside the slice asked for is reported, not swallowed."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from shared.core.errors import UnexpectedResponseError
from shared.defender.queries import IncidentQuery
from shared.defender.slices import to_us
from tests.unit.test_defender_client import graph_incident, make, serve


def _stamp(k: int) -> str:
    return f"2026-11-01T00:00:{k:02d}.1234567Z"


def _graph_items() -> list[dict[str, Any]]:
    """Newest first (the fake answers in list order unless it shuffles)."""
    # seven incidents in one microsecond: more than a page (page_size 2 in ``make``)
    items = [graph_incident(200 + k, updated="2026-11-01T00:00:30.5000000Z") for k in range(7)]
    items += [graph_incident(100 + k, updated=_stamp(k)) for k in reversed(range(10))]
    return items


def _legacy(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "incidentId": int(i["id"]),
            "incidentName": i["displayName"],
            "status": "Active",
            "severity": "High",
            "createdTime": i["createdDateTime"],
            "lastUpdateTime": i["lastUpdateDateTime"],
        }
        for i in items
    ]


def _expected(items: list[dict[str, Any]], field: str, ident: str) -> list[str]:
    from shared.core.clock import parse_utc

    return [
        str(i[ident])
        for i in sorted(items, key=lambda i: (parse_utc(i[field]), str(i[ident])), reverse=True)
    ]


@pytest.mark.parametrize("api", ["graph", "legacy"])
@pytest.mark.parametrize("shuffle", [0, 3])
def test_pages_in_order_with_a_tie_over_a_page(api: str, shuffle: int) -> None:
    items = _graph_items()
    field, ident = "lastUpdateDateTime", "id"
    if api == "legacy":
        items, field, ident = _legacy(items), "lastUpdateTime", "incidentId"
    client, adapter, _ = make(lambda r: serve(items, r, shuffle=shuffle), api=api)
    seen: list[str] = []
    before = None
    for _ in range(50):
        result = client.newest_page(IncidentQuery(), before=before, top=3, max_calls=8)
        seen += [i.id for i in result.items]
        # the cap, plus the tied microsecond read as the ingestion reads a tie: split by
        # creation time (its 7 share one), then paged through its 4 pages, pass after pass
        # (three without a count: two passes in a row must find nothing new)
        assert result.calls <= 8 + 20
        if result.following is None:
            break
        before = result.following
    assert seen == _expected(items, field, ident)
    assert len(adapter.sent) == client.api_calls
    # the tied microsecond was read across its pages (nextLink on Graph, $skip on legacy)
    assert any("skip=2" in (r.url or "").replace("%24", "$") for r in adapter.sent)


def test_each_slice_carries_the_filter_and_both_bounds() -> None:
    items = _graph_items()
    client, adapter, _ = make(lambda r: serve(items, r))
    query = IncidentQuery(statuses=("active",), severities=("high",))
    cursor = (to_us(_parse(items[5])), str(items[5]["id"]))
    client.newest_page(query, before=cursor, top=2, max_calls=8)
    for sent in adapter.sent:
        flt = parse_qs(urlsplit(sent.url or "").query)["$filter"][0]
        assert "status eq 'active'" in flt and "severity eq 'high'" in flt
        assert "lastUpdateDateTime lt " in flt
        assert parse_qs(urlsplit(sent.url or "").query)["$count"] == ["true"]


def _parse(item: dict[str, Any]) -> Any:
    from shared.core.clock import parse_utc

    return parse_utc(item["lastUpdateDateTime"])


def test_an_answer_outside_the_slice_is_reported() -> None:
    items = _graph_items()

    def ignores_filters(request: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
        return 200, {"value": items[:1]}, {}

    client, _, _ = make(ignores_filters)
    below = (to_us(_parse(items[-1])), "")  # the oldest incident: the answer lies above it
    with pytest.raises(UnexpectedResponseError, match="outside the time range"):
        client.newest_page(IncidentQuery(), before=below, top=1, max_calls=8)


def test_a_tie_answered_without_the_creation_filter_is_reported() -> None:
    """A service that ignores the creation-time terms would never let a tie be split: the
    answer is reported as unexpected, never looped on."""
    items = _graph_items()

    def ignores_created(request: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(request.url or "")
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        terms = query.get("$filter", "").split(" and ")
        query["$filter"] = " and ".join(t for t in terms if not t.startswith("created"))
        stripped = request.copy()
        stripped.url = parts._replace(query=urlencode(query)).geturl()
        return serve(items, stripped)

    client, _, _ = make(ignores_created)
    with pytest.raises(UnexpectedResponseError, match="created outside the range"):
        client.newest_page(IncidentQuery(), before=None, top=3, max_calls=8)
