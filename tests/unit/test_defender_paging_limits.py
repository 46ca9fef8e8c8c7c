"""Listings by time slices (order-independent, $skip <= 500), the refusal of deeper offsets,
and the sliding-window rate limiter (pure, fake clock)."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from shared.core.errors import ThrottledError, UnexpectedResponseError
from shared.defender.limiter import Bucket, RateLimiterRegistry
from shared.defender.paging import (
    SKIP_LIMIT,
    Page,
    Slice,
    format_ticks,
    link_params,
    list_incidents_request,
    next_request,
    slice_complete,
    slice_request,
    split,
    ticks,
)
from tests.unit.test_defender_client import serve

BASE = "https://api.example.test"


def _items(*stamps: str, field: str = "lastUpdateTime") -> list[dict[str, object]]:
    return [{field: s} for s in stamps]


def test_ticks_keep_the_seventh_digit() -> None:
    """Two timestamps one tick apart differ; a shorter fraction pads with zeros."""
    assert ticks("2026-11-01T00:00:00.1234567Z") - ticks("2026-11-01T00:00:00.1234566Z") == 1
    assert ticks("2026-11-01T00:00:00.29Z") == ticks("2026-11-01T00:00:00.2900000Z")
    assert ticks("2026-11-01T01:00:00+01:00") == ticks("2026-11-01T00:00:00Z")


def test_legacy_skip_past_the_limit_is_refused() -> None:
    """No request asks for $skip beyond SKIP_LIMIT (500): the listing stops with an error that
    says how to narrow it, rather than sending a request the API refuses."""
    assert SKIP_LIMIT == 500  # Graph's documented cap (security-error-codes.md)
    first = list_incidents_request("legacy", BASE, page_size=100)
    deep = replace(first, params={**first.params, "$skip": str(SKIP_LIMIT)})
    full = Page(_items(*(["2026-11-02T00:00:00Z"] * 100)))
    with pytest.raises(UnexpectedResponseError, match=r"\$skip beyond 500.*narrow the query"):
        next_request(deep, full, base_url=BASE)
    shallow = replace(first, params={**first.params, "$skip": str(SKIP_LIMIT - 100)})
    nxt = next_request(shallow, full, base_url=BASE)
    assert nxt is not None and nxt.params["$skip"] == str(SKIP_LIMIT)


def test_graph_next_link_past_the_limit_is_refused_and_one_at_the_limit_followed() -> None:
    """A nextLink that would skip too deep is not followed; one at the limit is."""
    first = list_incidents_request(
        "graph", BASE, updated_since=datetime(2026, 1, 1, tzinfo=UTC), page_size=50
    )
    link = f"{BASE}/v1.0/security/incidents?$top=50&$skip={SKIP_LIMIT + 50}"
    page = Page(_items("2026-02-01T00:00:00Z", field="lastUpdateDateTime"), link)
    with pytest.raises(UnexpectedResponseError, match=r"nextLink asks for \$skip beyond 500"):
        next_request(first, page, base_url=BASE)
    shallow = f"{BASE}/v1.0/security/incidents?$top=50&$skip={SKIP_LIMIT}"
    followed = next_request(first, Page(page.items, shallow), base_url=BASE)
    assert followed is not None and followed.url == shallow
    assert link_params(followed.url)["$skip"] == str(SKIP_LIMIT)


def test_split_halves_exclude_one_seen_item_each() -> None:
    """A full answer splits at the median time seen; both halves are strictly smaller; when
    every item seen shares one instant, that instant becomes its own slice."""
    page = Page(
        _items(
            "2026-11-01T00:00:00Z",
            "2026-11-01T00:00:00Z",
            "2026-11-02T00:00:00Z",
            "2026-11-03T00:00:00Z",
        )
    )
    left, right = split(Slice(), page, "lastUpdateTime")
    assert left == Slice(None, ticks("2026-11-02T00:00:00Z")) and right.lo == left.hi
    tied = Page(_items(*["2026-11-01T00:00:00.1234567Z"] * 3))
    t = ticks("2026-11-01T00:00:00.1234567Z")
    assert split(Slice(), tied, "lastUpdateTime") == [
        Slice(None, t),
        Slice(t, t + 1),
        Slice(t + 1, None),
    ]
    assert split(Slice(t, None), tied, "lastUpdateTime") == [Slice(t, t + 1), Slice(t + 1, None)]
    assert format_ticks(t) == "2026-11-01T00:00:00.1234567Z"


def test_slice_request_adds_the_range_to_the_callers_filter() -> None:
    """ge/lt terms with all 7 digits next to the caller's filter; legacy $skip back to 0."""
    first = list_incidents_request(
        "legacy",
        BASE,
        page_size=100,
        updated_since=__import__("datetime").datetime(
            2026, 1, 1, tzinfo=__import__("datetime").UTC
        ),
    )
    lo, hi = ticks("2026-02-01T00:00:00Z"), ticks("2026-03-01T00:00:00.5Z")
    spec = slice_request(first, "lastUpdateTime", Slice(lo, hi))
    assert spec.params["$filter"] == (
        "lastUpdateTime ge 2026-01-01T00:00:00Z and lastUpdateTime ge 2026-02-01T00:00:00.0000000Z"
        " and lastUpdateTime lt 2026-03-01T00:00:00.5000000Z"
    )
    assert spec.params["$skip"] == "0" and spec.params["$top"] == "100"
    assert slice_complete(Page(_items("x") * 99), spec)
    assert not slice_complete(Page(_items("x") * 100), spec)
    assert not slice_complete(Page(_items("x"), f"{BASE}/api/incidents?$skip=100"), spec)


def test_a_listing_without_slicing_never_asks_past_the_skip_limit() -> None:
    """Offsets (inside one instant): a nextLink or a next page past $skip 500 is an error."""
    from shared.defender.operations import list_alerts_request
    from shared.defender.queries import AlertQuery

    first = list_alerts_request(BASE, AlertQuery(), page_size=50)
    link = f"{BASE}/v1.0/security/alerts_v2?$top=50&$skip={SKIP_LIMIT + 50}"
    with pytest.raises(UnexpectedResponseError, match=r"\$skip beyond 500"):
        next_request(first, Page(_items("2026-02-01T00:00:00Z"), link), base_url=BASE)
    legacy = list_incidents_request("legacy", BASE, page_size=100)
    deep = legacy.__class__(legacy.method, legacy.url, {**legacy.params, "$skip": str(SKIP_LIMIT)})
    with pytest.raises(UnexpectedResponseError, match=r"\$skip beyond 500"):
        next_request(deep, Page(_items("x") * 100), base_url=BASE)


# ---------------------------------------------------------------------- whole listings


def _incidents(api: str, stamps: list[str]) -> list[dict[str, Any]]:
    from tests.unit.test_defender_client import graph_incident, legacy_incident

    field = "lastUpdateTime" if api == "legacy" else "lastUpdateDateTime"
    items = []
    for n, stamp in enumerate(stamps):
        raw = graph_incident(n) if api == "graph" else legacy_incident(n)
        items.append({**raw, field: stamp})
    return items


def _stamp(n: int) -> str:
    return f"2026-11-01T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}.{n:07d}Z"


@pytest.mark.parametrize("api", ["graph", "legacy"])
def test_every_incident_once_whatever_the_order(api: str) -> None:
    """1,300 incidents answered in a different random order on every request: the listing
    returns each exactly once, newest first, and never asks for $skip beyond 0."""
    from tests.unit.test_defender_client import make

    items = _incidents(api, [_stamp(n) for n in range(1300)])
    calls = iter(range(1, 10_000))

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
        assert int(parse_qs(urlsplit(request.url or "").query).get("$skip", ["0"])[0]) == 0
        return serve(items, request, shuffle=next(calls))

    client, adapter, _ = make(handler, api=api)
    client._page_size = 50  # Graph's cap, on both surfaces here
    found = client.list_incidents()
    assert [int(i.id) for i in found] == list(range(1299, -1, -1))  # each once, newest first
    assert len(adapter.sent) < 150  # about two requests per page of results
    newest = client.list_incidents(limit=5)
    assert [i.id for i in newest] == [str(n) for n in (1299, 1298, 1297, 1296, 1295)]


@pytest.mark.parametrize("api", ["graph", "legacy"])
def test_incidents_sharing_one_instant_are_paged_to_the_skip_limit(api: str) -> None:
    """70 incidents at one 100 ns instant cannot be sliced: that instant alone is paged by
    offsets (an order stable for one query is all it needs), never past $skip 500; 600 at one
    instant cannot be listed and the error says why."""
    from tests.unit.test_defender_client import make

    tie = "2026-11-02T00:00:00.0000001Z"
    items = _incidents(api, [_stamp(n) for n in range(230)] + [tie] * 70)

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
        query = parse_qs(urlsplit(request.url or "").query)
        assert int(query.get("$skip", ["0"])[0]) <= SKIP_LIMIT
        seed = sum(map(ord, query.get("$filter", [""])[0])) + 1  # stable per query
        return serve(items, request, shuffle=seed)

    client, _, _ = make(handler, api=api)
    client._page_size = 50
    assert sorted(int(i.id) for i in client.list_incidents()) == list(range(300))
    items[:] = _incidents(api, [tie] * 600)
    with pytest.raises(UnexpectedResponseError, match=r"\$skip beyond 500"):
        client.list_incidents()


def test_an_incident_updated_while_listing_is_not_missed() -> None:
    """Between requests the fake service moves incidents to "now" (the newest time): each is
    read in its old or its new version, never lost."""
    from tests.unit.test_defender_client import graph_incident, make

    items = {
        n: graph_incident(n, updated=f"2026-11-01T00:{n // 60:02d}:{n % 60:02d}Z")
        for n in range(400)
    }
    clock = iter(range(10_000))

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
        answer = serve(list(items.values()), request, shuffle=7)
        step = next(clock)
        victim = (step * 37) % 400
        items[victim] = graph_incident(
            victim, updated=f"2026-11-02T00:00:{step % 60:02d}.{step:07d}Z"
        )
        return answer

    client, _, _ = make(handler)
    client._page_size = 50
    found = client.list_incidents()
    assert sorted(int(i.id) for i in found) == list(range(400))


def test_a_service_ignoring_the_time_filter_is_reported() -> None:
    """An answer outside the slice asked for is an error, never an endless split."""
    from tests.unit.test_defender_client import graph_incident, make

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
        return (
            200,
            {"value": [graph_incident(1), graph_incident(2, updated="2026-11-05T00:00:00Z")]},
            {},
        )

    client, _, _ = make(handler)
    with pytest.raises(UnexpectedResponseError, match="outside the time range"):
        client.list_incidents()


# ---------------------------------------------------------------------- limiter


class FakeTime:
    """A monotonic clock that sleeping advances."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_waits_for_the_oldest_call_of_the_window() -> None:
    """3 calls per 10 s: the 4th starts 10 s after the 1st one finished."""
    t = FakeTime()
    bucket = Bucket(((3, 10.0),), monotonic=t.monotonic, sleep=t.sleep)
    for _ in range(3):
        with bucket.slot():
            t.now += 1.0  # each call takes a second
    # finish times: 1001, 1002, 1003
    with bucket.slot():
        pass
    assert t.slept == [pytest.approx(8.0)]  # from 1003 to 1011
    assert bucket.waits == 1


def test_bucket_honours_every_window() -> None:
    """2/1 s and 3/10 s: the longer window decides the 4th call."""
    t = FakeTime()
    bucket = Bucket(((2, 1.0), (3, 10.0)), monotonic=t.monotonic, sleep=t.sleep)
    starts = []
    for _ in range(4):
        with bucket.slot():
            starts.append(t.now)
    assert starts[:2] == [1000.0, 1000.0]
    assert starts[2] == pytest.approx(1001.0)
    assert starts[3] == pytest.approx(1010.0)


def test_bucket_refuses_a_wait_past_the_deadline() -> None:
    """No slot within the budget: a typed ThrottledError naming the wait, no sleep."""
    t = FakeTime()
    bucket = Bucket(((1, 60.0),), monotonic=t.monotonic, sleep=t.sleep)
    with bucket.slot():
        pass
    with pytest.raises(ThrottledError, match="within the time budget") as info:
        bucket.acquire(deadline=t.now + 5)
    assert info.value.retry_after == pytest.approx(60.0) and info.value.status is None
    assert t.slept == []


def test_calls_in_flight_hold_their_slot() -> None:
    """With every slot held by calls in flight, a caller polls until one ends (or its deadline)."""
    t = FakeTime()
    bucket = Bucket(((1, 1.0),), monotonic=t.monotonic, sleep=t.sleep)
    bucket.acquire()
    with pytest.raises(ThrottledError):
        bucket.acquire(deadline=t.now + 0.05)
    assert sum(t.slept) == pytest.approx(0.05)


def test_pause_holds_everyone_back() -> None:
    """After a 429 with Retry-After, the next call waits that long."""
    t = FakeTime()
    bucket = Bucket(((100, 1.0),), monotonic=t.monotonic, sleep=t.sleep)
    bucket.pause(3.0)
    with bucket.slot():
        pass
    assert t.slept == [pytest.approx(3.0)]


def test_registry_shares_one_bucket_per_tenant_and_family() -> None:
    """Same tenant (any case) and family: the same bucket; other family: another."""
    reg = RateLimiterRegistry({"incidents": ((5, 1.0),), "hunting": ((1, 1.0),)})
    a = reg.bucket("ABC", "incidents")
    assert reg.bucket("abc", "incidents") is a
    assert reg.bucket("abc", "hunting") is not a
    assert reg.bucket("abc", "hunting").limits == ((1, 1.0),)
    with pytest.raises(KeyError):
        reg.bucket("abc", "nope")


def test_bucket_is_thread_safe() -> None:
    """Threads racing for 3 slots of a minute: exactly 3 get one, the others time out."""
    import time

    bucket = Bucket(((3, 60.0),))
    got: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        try:
            bucket.acquire(deadline=time.monotonic() + 0.05)
            ok = True
        except ThrottledError:
            ok = False
        with lock:
            got.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(got) == [False] * 5 + [True] * 3
