"""Deep-$skip avoidance by narrowing, and the sliding-window rate limiter (pure, fake clock)."""

from __future__ import annotations

import threading

import pytest

from shared.defender.limiter import Bucket, RateLimiterRegistry
from shared.defender.paging import (
    SKIP_LIMIT,
    Page,
    link_params,
    list_incidents_request,
    next_request,
    ticks,
)
from shared.errors import ThrottledError, UnexpectedResponseError

BASE = "https://api.example.test"


def _items(*stamps: str, field: str = "lastUpdateTime") -> list[dict[str, object]]:
    return [{field: s} for s in stamps]


def test_ticks_keep_the_seventh_digit() -> None:
    """Two timestamps one tick apart differ; a shorter fraction pads with zeros."""
    assert ticks("2026-11-01T00:00:00.1234567Z") - ticks("2026-11-01T00:00:00.1234566Z") == 1
    assert ticks("2026-11-01T00:00:00.29Z") == ticks("2026-11-01T00:00:00.2900000Z")
    assert ticks("2026-11-01T01:00:00+01:00") == ticks("2026-11-01T00:00:00Z")


def test_legacy_skip_past_the_limit_narrows_the_time_filter() -> None:
    """Instead of $skip beyond SKIP_LIMIT (500), ask for 'le oldest', skipping only its ties."""
    assert SKIP_LIMIT == 500  # Graph's documented cap (security-error-codes.md)
    first = list_incidents_request("legacy", BASE, page_size=100)
    deep = first.__class__(
        first.method,
        first.url,
        {**first.params, "$skip": str(SKIP_LIMIT)},
        narrowing=first.narrowing,
    )
    page = Page(
        _items(
            *(["2026-11-02T00:00:00Z"] * 97),
            "2026-11-01T00:00:00.1234567Z",
            "2026-11-01T00:00:00.1234567Z",
            "2026-11-01T00:00:00.1234568Z",
        )
    )
    nxt = next_request(deep, page, base_url=BASE)
    assert nxt is not None
    assert nxt.params["$filter"] == "lastUpdateTime le 2026-11-01T00:00:00.1234567Z"
    assert nxt.params["$skip"] == "2" and nxt.params["$top"] == "100"


def test_graph_next_link_past_the_limit_is_replaced_by_a_narrowed_request() -> None:
    """A nextLink that would skip too deep is not followed; the filter keeps the original."""
    from datetime import UTC, datetime

    first = list_incidents_request(
        "graph", BASE, updated_since=datetime(2026, 1, 1, tzinfo=UTC), page_size=50
    )
    link = f"{BASE}/v1.0/security/incidents?$top=50&$skip={SKIP_LIMIT + 50}"
    page = Page(_items("2026-02-01T00:00:00Z", field="lastUpdateDateTime"), link)
    nxt = next_request(first, page, base_url=BASE)
    assert nxt is not None and nxt.url == f"{BASE}/v1.0/security/incidents"
    assert nxt.params["$filter"] == (
        "lastUpdateDateTime ge 2026-01-01T00:00:00Z and lastUpdateDateTime le 2026-02-01T00:00:00Z"
    )
    assert nxt.params["$expand"] == "alerts"
    shallow = f"{BASE}/v1.0/security/incidents?$top=50&$skip={SKIP_LIMIT}"
    followed = next_request(first, Page(page.items, shallow), base_url=BASE)
    assert followed is not None and followed.url == shallow
    assert link_params(followed.url)["$skip"] == str(SKIP_LIMIT)


def test_a_listing_without_narrowing_never_asks_past_the_skip_limit() -> None:
    """Alerts (no time narrowing): a nextLink or a next page past $skip 500 is a clear error."""
    from shared.defender.operations import list_alerts_request
    from shared.defender.queries import AlertQuery

    first = list_alerts_request(BASE, AlertQuery(), page_size=50)
    link = f"{BASE}/v1.0/security/alerts_v2?$top=50&$skip={SKIP_LIMIT + 50}"
    with pytest.raises(UnexpectedResponseError, match=r"\$skip beyond 500"):
        next_request(first, Page(_items("2026-02-01T00:00:00Z"), link), base_url=BASE)


def test_narrowing_that_cannot_move_is_an_error() -> None:
    """More than SKIP_LIMIT incidents at one instant cannot be paged past: say so."""
    first = list_incidents_request("legacy", BASE, page_size=100)
    stamp = "2026-11-01T00:00:00Z"
    spec = first.__class__(
        first.method,
        first.url,
        {**first.params, "$skip": str(SKIP_LIMIT)},
        narrowing=first.narrowing,
    )
    narrowed = next_request(spec, Page(_items(*[stamp] * 100)), base_url=BASE)
    assert narrowed is not None and narrowed.narrowing is not None
    deep = narrowed.__class__(
        narrowed.method,
        narrowed.url,
        {**narrowed.params, "$skip": str(SKIP_LIMIT)},
        narrowing=narrowed.narrowing,
    )
    with pytest.raises(UnexpectedResponseError, match="share the last-update time"):
        next_request(deep, Page(_items(*[stamp] * 100)), base_url=BASE)


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
