"""The slice planner (pure): it reads every incident whatever the order, ties, activity and
whichever pages carry ``@odata.count``, and spends few requests when the density is smooth.

The fake service (``testkit.slice_service``) answers slice requests the documented way
(``$filter`` on both bounds, ``$top``, a nextLink when more matched), in an order we choose
(newest first, arbitrary but stable, reshuffled per request) and with ``@odata.count`` on every
page, the first only, or none. The random-data version of these checks is
``test_slices_property.py``.
"""

# ruff: noqa: S311 - seeded pseudo-random data is the point of these tests

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from shared.defender.slices import Listing, PagedRead, PairPasses, SliceRequest, from_us, to_us
from testkit.slice_service import Data, Service, perfect

START = datetime(2026, 1, 1, tzinfo=UTC)
END = START + timedelta(days=30)
#: where Graph listings in these tests may read across pages (older than the late-arrival bound)
SETTLED = END - timedelta(minutes=10)


def paged_listing(start: datetime = START, rate_per_hour: float | None = None) -> Listing:
    """A Graph listing: slices before SETTLED are read across pages (up to $skip 500)."""
    return Listing(
        start, END, page_size=50, rate_per_hour=rate_per_hour, paged_items=500, settled=SETTLED
    )


def generate(n: int, kind: str, seed: int = 2) -> Data:
    rng = random.Random(seed)
    a, b = to_us(START), to_us(END)
    items: Data = {}
    for i in range(n):
        if kind == "even":
            t = a + (b - a) * i // n
        elif kind == "uniform":
            t = rng.randrange(a, b)
        else:  # bursty: half of them in a burst late in the window
            late = a + int((b - a) * rng.betavariate(8, 2))
            t = rng.randrange(a, b) if rng.random() < 0.5 else late
        items[i] = (t, t - rng.randrange(0, 10**9))
    return items


def drain(
    service: Service, listing: Listing, *, activity: int = 0, limit: int = 50_000
) -> list[SliceRequest]:
    """Serve the listing to its end (with ``activity`` SOC changes after each request and
    between the pages of a slice); the requests made."""
    rng = random.Random(5)
    next_id = max(service.items, default=0) + 1
    requests: list[SliceRequest] = []

    def act() -> None:
        nonlocal next_id
        for _ in range(activity):  # updates and creations move incidents to "now", after END
            now = to_us(END) + rng.randrange(1, 10**6)
            if rng.random() < 0.5 and service.items:
                victim = rng.choice(list(service.items))
                service.items[victim] = (now, service.items[victim][1])
            else:
                service.items[next_id] = (now, now)
                next_id += 1

    while (req := listing.next()) is not None:
        requests.append(req)
        assert to_us(req.start) >= to_us(listing.cursor)
        assert to_us(req.end) <= to_us(listing.end), "a slice reaches past the listing's end"
        if req.paged:
            assert listing.paging and req.end <= SETTLED, "a paged slice reaches past settled"
        service.answer(listing, req, act)
        assert to_us(listing.cursor) <= to_us(listing.end)
        act()
        assert service.calls < limit, "the listing does not terminate"
    return requests


# ---------------------------------------------------------------- single pages


@pytest.mark.parametrize("order", ["newest", "random", "hashed"])
@pytest.mark.parametrize("kind", ["even", "uniform", "bursty"])
@pytest.mark.parametrize(("counts", "page"), [("every", 50), ("none", 100), ("first", 50)])
def test_every_incident_is_read_whatever_the_order(
    order: str, kind: str, counts: str, page: int
) -> None:
    items = generate(3000, kind)
    service = Service(dict(items), order=order, page_size=page, counts=counts)
    listing = Listing(START, END, page_size=page)

    drain(service, listing)

    assert set(service.read) == set(items)
    assert listing.cursor == END
    assert listing.next() is None


@pytest.mark.parametrize("order", ["newest", "random"])
@pytest.mark.parametrize("counts", ["every", "none"])
def test_activity_during_the_listing_loses_no_untouched_incident(order: str, counts: str) -> None:
    """Updates move incidents out of the range while we list (shifting any offset-based page);
    every incident not touched is still read, and the cursor never passes an unread one."""
    items = generate(2000, "uniform", seed=9)
    service = Service(dict(items), order=order, counts=counts)
    listing = Listing(START, END, page_size=50)

    drain(service, listing, activity=3)

    untouched = {i for i, v in items.items() if service.items[i] == v}
    assert untouched and untouched <= set(service.read)


def test_the_cursor_only_passes_incidents_that_were_read() -> None:
    items = generate(1500, "bursty", seed=4)
    service = Service(dict(items), order="random")
    listing = Listing(START, END, page_size=50)
    while (req := listing.next()) is not None:
        done, _ = service.answer(listing, req)
        if done:
            cursor = to_us(listing.cursor)
            below = {i for i, (u, _) in items.items() if u < cursor}
            assert below <= set(service.read)


@pytest.mark.parametrize("counts", ["every", "none"])
def test_ties_at_one_instant_split_by_creation_time_then_exhaust(counts: str) -> None:
    """300 incidents at one instant (7 creation times) and 120 sharing both instants."""
    t0 = to_us(START) + 5
    items = {i: (t0, t0 - (i % 7) * 1000) for i in range(300)}
    items.update({1000 + i: (t0 + 10, t0) for i in range(120)})
    items.update({2000 + i: (t0 + 10**9 * i, t0) for i in range(1, 40)})
    service = Service(dict(items), order="random", counts=counts)
    listing = Listing(START, END, page_size=50)

    requests = drain(service, listing, limit=1000)

    assert set(service.read) == set(items)
    exhausted = [r for r in requests if r.exhaust]
    assert len(exhausted) == 1
    assert to_us(exhausted[0].start) == t0 + 10 and to_us(exhausted[0].end) == t0 + 11


@pytest.mark.parametrize("order", ["newest", "random"])
def test_smooth_density_needs_few_requests_beyond_the_pages(order: str) -> None:
    """Evenly spread incidents, one page per slice with a count: at most 1.2x the pages a
    perfect reader would need (each slice is proved by a page of fewer than 50)."""
    items = generate(10_000, "even")
    service = Service(dict(items), order=order)
    listing = Listing(START, END, page_size=50)

    drain(service, listing)

    assert service.calls <= 1.2 * math.ceil(len(items) / 50), service.calls


@pytest.mark.parametrize(("page", "bound"), [(50, 1.6), (100, 1.5)])
def test_without_any_count_a_backfill_stays_under_twice_the_pages(page: int, bound: float) -> None:
    """No page carries ``@odata.count`` (the legacy API; a Graph path without it): single
    pages sized from the density seen; spread at random (Poisson-like counts per slice) that
    costs about 1.3-1.5x the pages."""
    items = generate(20_000, "uniform")
    for order in ("newest", "hashed"):
        service = Service(dict(items), order=order, counts="none", page_size=page)
        listing = paged_listing() if page == 50 else Listing(START, END, page_size=page)

        drain(service, listing)

        assert set(service.read) == set(items)
        assert service.calls <= bound * math.ceil(len(items) / page), (order, service.calls)


def recent_backlog(n: int, seed: int) -> Data:
    """Incidents as a tenant's backlog holds them: created over the last 7 of the 30 days,
    updated up to 6 hours later, some triaged later still (denser toward now, the first 23
    days empty)."""
    rng = random.Random(seed)
    b = to_us(END)
    items: Data = {}
    for i in range(n):
        created = b - rng.randrange(300, 7 * 86_400) * 10**6
        room = b - 60 * 10**6 - created
        updated = created + int(rng.random() * min(room, 6 * 3600 * 10**6))
        if rng.random() < 0.45:
            updated += int(rng.random() * max(room - 6 * 3600 * 10**6, 0) / 2)
        items[i] = (updated, created)
    return items


@pytest.mark.parametrize("counts", ["every", "first"])
def test_a_recent_backlog_counted_newest_first_is_read_within_a_quarter_more_than_its_pages(
    counts: str,
) -> None:
    """A backfill of 2,000 incidents in the last 7 of 30 days, shown newest first with a count:
    the planner finds where they start and reads them in at most 1.25x their pages. A request
    known by a count to hold more than a paged slice may is not asked again just narrower (it
    once was, after empty slices: 52-53 calls on some seeds)."""
    for seed in range(6):
        items = recent_backlog(2000, seed)
        service = Service(dict(items), order="newest", counts=counts, seed=seed)
        listing = paged_listing()

        drain(service, listing)

        assert set(service.read) == set(items)
        assert service.calls <= 1.25 * math.ceil(len(items) / 50), (seed, service.calls)


def budgeted_run(service: Service, listing: Listing, seconds: float, prior: float) -> int:
    """One run as the ingestion drives it under a time budget, each page taking ``seconds``:
    a request starts only with max(5 s, twice the slowest) left, a paged slice holds the pages
    that fit in half the time left, and stops between pages when the rest would not fit.
    Returns the slices completed."""
    budget, t, slowest, completed = 14.0, 0.0, prior, 0
    while True:
        fits = None if slowest <= 0 else max(0, math.floor((budget - t - 5) / (2 * slowest)))
        req = listing.next(None if fits is None else fits * listing.page_size)
        if req is None or budget - t < max(5.0, 2 * slowest):
            return completed
        read, skip = listing.reader(req), 0
        while True:
            items, count, linked = service.page(req, skip)
            t, slowest = t + seconds, max(slowest, seconds)
            if not read.add(items, count=count, linked=linked):
                break
            left = budget - t
            if left < max(5.0, 2 * slowest):
                listing.record(req, read)
                return completed  # out of time between pages
            if math.ceil(((read.count or 0) - len(read.seen)) / 10) * slowest > (left - 5) / 2:
                break  # the rest would not fit: split
            skip += listing.page_size
        completed += listing.record(req, read)


@pytest.mark.parametrize("seconds", [1.0, 1.6])
def test_short_runs_each_complete_slices_and_finish_a_backlog(seconds: float) -> None:
    """Runs of a 14 s budget at 1-1.6 s a page (6-9 calls), each a new listing from the last
    one's cursor and density (all a checkpoint keeps): every run completes slices and the
    backlog is done in a few runs. A region counted newest first, after slices that came back
    empty, is not spread evenly over the empty stretch: each run then walked that stretch at
    the count's average density and a 260-incident backlog never finished."""
    for seed in range(4):
        items = recent_backlog(260, seed)
        service = Service(dict(items), order="newest", counts="every", page_size=10, seed=seed)
        start, rate, runs = START, None, 0
        while True:
            runs += 1
            listing = Listing(
                start, END, page_size=10, rate_per_hour=rate, paged_items=500, settled=SETTLED
            )
            assert budgeted_run(service, listing, seconds, 0.0 if runs == 1 else seconds)
            start, rate = listing.cursor, listing.rate_per_hour
            if listing.next() is None:
                break
            assert runs < 11, (seed, service.calls)
        assert set(service.read) == set(items)
        assert service.calls <= 60, (seed, service.calls)


def test_a_known_density_makes_an_incremental_run_one_request() -> None:
    """Few updates since the checkpoint and a density carried over: one request."""
    items = {i: (to_us(END) - 10**6 * (i + 1), 0) for i in range(12)}
    service = Service(items)
    listing = Listing(END - timedelta(minutes=15), END, page_size=50, rate_per_hour=40.0)

    drain(service, listing)

    assert service.calls == 1 and set(service.read) == set(items)
    assert listing.rate_per_hour is not None and listing.rate_per_hour > 0


def test_an_empty_range_needs_no_request() -> None:
    listing = Listing(END, END, page_size=50)
    assert listing.next() is None
    with pytest.raises(ValueError, match="page_size"):
        Listing(START, END, page_size=1)
    with pytest.raises(ValueError, match="settled"):
        Listing(START, END, page_size=50, paged_items=500)


@pytest.mark.parametrize("order", ["newest", "random"])
@pytest.mark.parametrize(("counts", "page"), [("every", 50), ("none", 100)])
def test_a_big_tie_after_a_sparse_stretch_never_moves_the_cursor_past_the_end(
    order: str, counts: str, page: int
) -> None:
    """The emulator's seed shape: a few incidents over a month, then 200+ at one instant a
    little before the end. Widening after an empty slice once proposed a slice past the end,
    and the checkpoint then jumped hours into the future (no incident after it is ever read)."""
    rng = random.Random(3)
    a, b = to_us(START), to_us(END)
    items = {i: (t := rng.randrange(a, b - 10**9), t) for i in range(43)}
    tie = b - 3 * 10**8
    items.update({100 + i: (tie, tie - i) for i in range(217)})
    service = Service(dict(items), order=order, page_size=page, counts=counts)
    listing = Listing(START, END, page_size=page)

    drain(service, listing)

    assert set(service.read) == set(items)
    assert listing.cursor == END


def test_a_burst_a_page_showed_to_be_over_a_page_is_split_at_once() -> None:
    """A failed answer showed 50 incidents at one instant: the planner goes straight to the
    creation-time split of that instant, without first asking for the instant itself."""
    t0 = to_us(START) + 10**11
    items = {i: (t0, t0 - 10**6 * (i + 1)) for i in range(120)}
    items.update({1000 + i: (t0 - 10**9 * (i + 1), 0) for i in range(30)})
    service = Service(dict(items), order="newest")
    listing = Listing(START, END, page_size=50)

    requests = drain(service, listing)

    assert set(service.read) == set(items)
    instant = [r for r in requests if to_us(r.start) == t0 and to_us(r.end) == t0 + 1]
    assert instant and all(r.created_start is not None for r in instant)
    assert service.calls <= 7, service.calls  # 3 for the instant's 120, 2 around it, 1-2 to learn


def test_bursts_between_runs_cost_about_the_pages_they_fill() -> None:
    """Incremental runs every 5 minutes (10 minutes of overlap) after bursts of 40 and 100
    updates at one instant (what a bulk status change produces): each run costs the slices a
    reader that knew every timestamp would need for its window (a slice holds one burst of 40;
    an instant of 100 takes three creation-time slices), plus a few to find the bursts."""
    rng = random.Random(1)
    a = to_us(START)
    month = 30 * 86_400 * 10**6
    items: Data = {i: (t := rng.randrange(a, a + month), t - 10**9) for i in range(437)}
    service = Service(items, order="newest")
    now, checkpoint, rate = END, None, None
    costs: list[tuple[int, int]] = []
    for burst in (0, 40, 100, 40, 100, 100):  # the first run is the backfill
        now += timedelta(minutes=5)
        at = to_us(now - timedelta(minutes=3))
        for i in rng.sample(list(items), burst):
            items[i] = (at, items[i][1])
        upper = now - timedelta(minutes=1)
        start = START if checkpoint is None else checkpoint - timedelta(minutes=10)
        settled = upper - timedelta(minutes=10)
        listing = Listing(
            start, upper, page_size=50, rate_per_hour=rate, paged_items=500, settled=settled
        )
        before = service.calls
        while (req := listing.next()) is not None:
            service.answer(listing, req)
        checkpoint, rate = listing.cursor, listing.rate_per_hour
        best = perfect(dict(items), to_us(start), to_us(upper), 50, to_us(settled))
        costs.append((service.calls - before, best))
    assert all(calls <= best + 4 for calls, best in costs[1:]), costs


def test_a_burst_at_one_instant_shown_newest_first_without_a_count_costs_twice_its_pages() -> None:
    """1,000 updates at one instant of incidents created over a week, listed newest first with
    no count (the legacy API, where the order follows the incident id and so the creation
    time): the creation-time split walks down a page at a time without leaving stretches
    unseen between its pages, then proves the instant bottom-up with slices of nearly a page.
    About twice a perfect reader's requests (here 26 against 13), which is what a page that
    shows only the top of its slice allows; it cost 29 when the walk skipped stretches between
    its pages and the slices proving them held about 60 incidents each."""
    rng = random.Random(4)
    b = to_us(END)
    x = b - 3 * 60 * 10**6
    created = sorted(b - rng.randrange(3600, 7 * 86_400) * 10**6 for _ in range(1000))
    items: Data = {i: (x, c) for i, c in enumerate(created)}  # ids in creation order
    service = Service(dict(items), order="newest", counts="none", page_size=100)
    listing = Listing(START, END, page_size=100, rate_per_hour=1.0)

    drain(service, listing)

    best = perfect(items, to_us(START), b, 100, None)
    assert set(service.read) == set(items)
    assert service.calls <= 2 * best, (service.calls, best)


# ---------------------------------------------------------------- reading across pages (Graph)


@pytest.mark.parametrize("order", ["newest", "hashed", "random"])
@pytest.mark.parametrize("kind", ["even", "uniform", "bursty"])
@pytest.mark.parametrize("counts", ["every", "first", "none"])
def test_paged_slices_read_every_incident_whatever_the_order(
    order: str, kind: str, counts: str
) -> None:
    items = generate(3000, kind)
    service = Service(dict(items), order=order, counts=counts)
    listing = paged_listing()

    drain(service, listing)

    assert set(service.read) == set(items)
    assert listing.cursor == END


@pytest.mark.parametrize("order", ["newest", "hashed"])
@pytest.mark.parametrize("counts", ["every", "first"])
def test_activity_between_the_pages_of_a_slice_loses_no_untouched_incident(
    order: str, counts: str
) -> None:
    """Updates between the pages of a slice shift every later offset; the pages no longer add
    up to the first page's count, so the slice is not taken as complete and is narrowed:
    every untouched incident is still read."""
    items = generate(3000, "uniform", seed=11)
    service = Service(dict(items), order=order, counts=counts)
    listing = paged_listing()

    drain(service, listing, activity=1)

    untouched = {i for i, v in items.items() if service.items[i] == v}
    assert len(untouched) < len(items)  # the activity did touch some
    assert untouched <= set(service.read)
    assert listing.paging  # incidents leaving is activity, not an unstable order


@pytest.mark.parametrize("counts", ["every", "first"])
def test_an_order_that_changes_between_requests_stops_paging_and_loses_nothing(
    counts: str,
) -> None:
    items = generate(3000, "uniform", seed=12)
    service = Service(dict(items), order="random", counts=counts)
    listing = paged_listing()

    drain(service, listing)

    assert not listing.paging
    assert set(service.read) == set(items)


@pytest.mark.parametrize("order", ["newest", "hashed"])
@pytest.mark.parametrize(("kind", "bound"), [("even", 1.12), ("uniform", 1.12), ("bursty", 1.14)])
@pytest.mark.parametrize("counts", ["every", "first"])
def test_paged_slices_need_few_requests_beyond_the_pages(
    order: str, kind: str, bound: float, counts: str
) -> None:
    """A backfill needs at most 1.25x the pages a perfect reader needs, whether every page
    carries ``@odata.count`` or only the first: the first page's count and that many distinct
    incidents read prove a slice older than the late-arrival bound."""
    items = generate(20_000, kind)
    service = Service(dict(items), order=order, counts=counts)
    listing = paged_listing()

    drain(service, listing)

    assert set(service.read) == set(items)
    assert service.calls <= bound * math.ceil(len(items) / 50), service.calls


def test_without_a_count_on_the_first_page_no_slice_is_read_across_pages() -> None:
    """Decided from each answer: a first page without ``@odata.count`` cannot start a proof
    across pages, so the planner asks for single pages from then on, and reads across pages
    again as soon as an answer carries a count."""
    items = generate(3000, "uniform")
    service = Service(dict(items), counts="none")
    listing = paged_listing()
    requests = drain(service, listing)
    assert sum(r.paged for r in requests) == 1  # the first request, asked before any answer
    assert set(service.read) == set(items)

    counted = Service(dict(items), counts="first")
    listing = paged_listing()
    req = listing.next()
    assert req is not None and req.paged
    read = listing.reader(req)
    some = [(str(i), from_us(u), from_us(c)) for i, (u, c) in list(items.items())[:50]]
    read.add(some, count=None, linked=True)  # a full first page without a count
    listing.record(req, read)
    req = listing.next()
    assert req is not None and not req.paged
    counted.answer(listing, req)  # this answer carries a count: paging resumes
    later = listing.next()
    assert later is not None and later.paged


def test_an_incremental_graph_run_is_still_one_request() -> None:
    """A few updates since the checkpoint, a density carried over and a settled instant inside
    the window: one single-page request, not a paged slice plus the rest."""
    items = {i: (to_us(END) - 10**6 * 30 * (i + 1), 0) for i in range(12)}
    service = Service(items)
    listing = paged_listing(END - timedelta(minutes=15), rate_per_hour=40.0)

    drain(service, listing)

    assert service.calls == 1 and set(service.read) == set(items)


def _read(paged: bool, *pages: tuple[list[str | None], int | None, bool]) -> PagedRead:
    request = SliceRequest(START, END, paged=paged)
    read = PagedRead(request, top=4, limit=500)
    for ids, count, linked in pages:
        if not read.add([(i, START, START) for i in ids], count=count, linked=linked):
            break
    return read


def test_paged_read_completes_on_what_its_answers_prove() -> None:
    # one short answer proves its slice, with or without a count
    assert _read(False, (["a", "b"], None, False)).complete
    # a full page without a link proves nothing without a count...
    assert not _read(False, (["a", "b", "c", "d"], None, False)).complete
    # ...and does with a count equal to what it held
    assert _read(False, (["a", "b", "c", "d"], 4, False)).complete
    assert not _read(False, (["a", "b", "c", "d"], 5, False)).complete
    # a link says there is more, whatever the count says
    assert not _read(False, (["a", "b"], 2, True)).complete
    # across pages: the first page's count, and that many distinct incidents read
    first_only = _read(True, (["a", "b", "c", "d"], 6, True), (["e", "f"], None, False))
    assert first_only.complete and first_only.pages == 2
    every = _read(True, (["a", "b", "c", "d"], 6, True), (["e", "f"], 6, False))
    assert every.complete
    # an incident left (the count moved): reading stops, nothing proved
    moved = _read(True, (["a", "b", "c", "d"], 6, True), (["e"], 5, False))
    assert not moved.complete and moved.moved and not moved.unstable
    # first page only, an incident left before it was read: short of the count
    short = _read(True, (["a", "b", "c", "d"], 6, True), (["e"], None, False))
    assert not short.complete and not short.unstable
    # the pages repeat an incident: the order does not hold between requests
    repeated = _read(True, (["a", "b", "c", "d"], 6, True), (["d", "e"], 6, False))
    assert not repeated.complete and repeated.unstable
    # counts held still on every page but the pages fell short: the same
    still = _read(True, (["a", "b", "c", "d"], 7, True), (["e", "f"], 7, False))
    assert not still.complete and still.unstable
    # no count on the first page: no proof across pages, and no second page is read
    blind = _read(True, (["a", "b", "c", "d"], None, True), (["e", "f"], None, False))
    assert not blind.complete and blind.pages == 1
    # more than the limit: split at once
    over = _read(True, (["a", "b", "c", "d"], 501, True), (["e"], 501, False))
    assert over.pages == 1 and not over.complete
    # incidents without an id cannot be told apart
    nameless = _read(True, ([None, "b", "c", "d"], 4, False))
    assert not nameless.complete
    # a paged request proves across pages; a single-page one never reads a second page
    single = _read(False, (["a", "b", "c", "d"], 6, True), (["e", "f"], 6, False))
    assert single.pages == 1 and not single.complete


def test_pair_passes_stop_on_a_count_or_on_quiet_passes() -> None:
    def item(key: str) -> tuple[str, datetime, datetime]:
        return (key, START, START)

    counted = PairPasses()
    counted.add([item("a"), item("b")], count=3)
    counted.add([item("c")], count=None)
    assert counted.end_pass() and not counted.given_up  # a pass read all it counted

    across = PairPasses()
    across.add([item("a"), item("b")], count=3)
    assert not across.end_pass()
    across.add([item("b"), item("c")], count=2)  # one left; the passes together read 3
    assert across.end_pass() and not across.given_up

    blind = PairPasses()
    for _ in range(2):
        blind.add([item("a"), item("b")], count=None)
        stop = blind.end_pass()
    assert not stop  # the first quiet pass is not enough without a count
    blind.add([item("a"), item("b")], count=None)
    assert blind.end_pass() and not blind.given_up

    stuck = PairPasses(idle=2)
    stuck.add([item("a")], count=3)
    assert not stuck.end_pass()
    stuck.add([item("a")], count=3)
    assert not stuck.end_pass()
    stuck.add([item("a")], count=3)
    assert stuck.end_pass() and stuck.given_up


def test_steady_activity_between_pages_shrinks_paged_slices_until_they_complete() -> None:
    """An incident of the slice being read is updated between every two of its pages: no
    slice of several pages can be proved, so paged slices halve until one page reads them; the
    listing ends and loses nothing untouched."""
    items = generate(3000, "uniform", seed=13)
    service = Service(dict(items), order="hashed")
    listing = paged_listing()
    rng = random.Random(8)
    rooms: list[int] = []
    while (req := listing.next()) is not None:
        lo, hi = to_us(req.start), to_us(req.end)

        def update_one_inside(lo: int = lo, hi: int = hi) -> None:
            inside = [i for i, (u, _) in service.items.items() if lo <= u < hi]
            if inside:
                victim = rng.choice(inside)
                service.items[victim] = (to_us(END) + 1, service.items[victim][1])

        service.answer(listing, req, update_one_inside if req.paged else None)
        if req.paged:
            rooms.append(listing.paged_room)
        assert service.calls < 5000

    untouched = {i for i, v in items.items() if service.items[i] == v}
    assert untouched <= set(service.read)
    assert listing.cursor == END
    assert min(rooms) < 100 < 500 == listing.paged_items


def test_times_round_trip() -> None:
    t = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    assert from_us(to_us(t)) == t
