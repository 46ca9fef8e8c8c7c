"""The slice planner (pure): it reads every incident whatever the order, ties and activity, and
spends few requests when the density is smooth.

The fake service below answers a slice request the documented way (filter both bounds, `$top`,
a nextLink when more matched, `$count`), in an order we choose: newest first, shuffled, oldest.
"""

# ruff: noqa: S311 - seeded pseudo-random data is the point of these tests

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from shared.defender.slices import Listing, PagedRead, SliceRequest, from_us, to_us

START = datetime(2026, 1, 1, tzinfo=UTC)
END = START + timedelta(days=30)
#: where Graph listings in these tests may read across pages (older than the late-arrival bound)
SETTLED = END - timedelta(minutes=10)


def paged_listing(start: datetime = START, rate_per_hour: float | None = None) -> Listing:
    """A Graph listing: slices before SETTLED are read across pages (up to $skip 500)."""
    return Listing(
        start, END, page_size=50, rate_per_hour=rate_per_hour, paged_items=500, settled=SETTLED
    )


@dataclass
class FakeService:
    """Incidents as id -> (last update µs, created µs); answers slice requests."""

    items: dict[int, tuple[int, int]]
    order: str = "random"
    page_size: int = 50
    count: bool = True
    seed: int = 1
    calls: int = 0
    read: dict[int, set[int]] = field(default_factory=dict)  # id -> versions (times) read

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def matching(self, req: SliceRequest) -> list[tuple[int, int, int]]:
        a, b = to_us(req.start), to_us(req.end)
        out = [(u, c, i) for i, (u, c) in self.items.items() if a <= u < b]
        if req.created_start is not None and req.created_end is not None:
            c0, c1 = to_us(req.created_start), to_us(req.created_end)
            out = [x for x in out if c0 <= x[1] < c1]
        if self.order == "newest":
            out.sort(key=lambda x: (-x[0], x[2]))
        elif self.order == "oldest":
            out.sort()
        elif self.order == "hashed":  # arbitrary but the same for every request
            out.sort(key=lambda x: (x[2] * 2654435761) % 2**32)
        else:  # shuffled anew for every request
            self.rng.shuffle(out)
        return out

    def answer_paged(
        self, listing: Listing, req: SliceRequest, between: Callable[[], None] | None = None
    ) -> bool:
        """A ``paged`` request read through its links: each link is a fresh request at the
        next offset of whatever matches then (offsets shift when the data changes), with
        ``@odata.count`` on every page; ``between`` runs between pages (SOC activity)."""
        read = PagedRead(listing.paged_limit)
        skip = 0
        while True:
            self.calls += 1
            found = self.matching(req)
            page = found[skip : skip + self.page_size]
            for u, _, i in page:
                self.read.setdefault(i, set()).add(u)
            more = read.add(
                [str(i) for _, _, i in page],
                [from_us(u) for u, _, _ in page],
                [from_us(c) for _, c, _ in page],
                count=len(found),
                linked=skip + self.page_size < len(found),
            )
            if not more:
                return listing.record_paged(req, read)
            if between is not None:
                between()
            skip += self.page_size

    def answer(self, listing: Listing, req: SliceRequest) -> bool:
        self.calls += 1
        found = self.matching(req)
        if req.exhaust:  # the caller pages the pair through links until a pass finds nothing
            page, full = found, False
        else:
            page, full = found[: self.page_size], len(found) >= self.page_size
        for u, _, i in page:
            self.read.setdefault(i, set()).add(u)
        return listing.record(
            req,
            updated=[from_us(u) for u, _, _ in page],
            created=[from_us(c) for _, c, _ in page],
            full=full,
            count=len(found) if self.count else None,
        )


def generate(n: int, kind: str, seed: int = 2) -> dict[int, tuple[int, int]]:
    rng = random.Random(seed)
    a, b = to_us(START), to_us(END)
    items: dict[int, tuple[int, int]] = {}
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
    service: FakeService, listing: Listing, *, activity: int = 0, limit: int = 50_000
) -> None:
    rng = random.Random(5)
    next_id = max(service.items, default=0) + 1

    def act() -> None:
        nonlocal next_id
        for _ in range(activity):  # SOC activity between requests: updates and creations move
            # incidents to "now", after the listing's end (read by the next run)
            now = to_us(END) + rng.randrange(1, 10**6)
            if rng.random() < 0.5 and service.items:
                victim = rng.choice(list(service.items))
                service.items[victim] = (now, service.items[victim][1])
            else:
                service.items[next_id] = (now, now)
                next_id += 1

    while (req := listing.next()) is not None:
        assert to_us(req.start) >= to_us(listing.cursor)
        assert to_us(req.end) <= to_us(listing.end), "a slice reaches past the listing's end"
        if req.paged:
            assert listing.paging and req.end <= SETTLED, "a paged slice reaches past settled"
            service.answer_paged(listing, req, act)
        else:
            service.answer(listing, req)
        assert to_us(listing.cursor) <= to_us(listing.end)
        act()
        assert service.calls < limit, "the listing does not terminate"


@pytest.mark.parametrize("order", ["newest", "random", "oldest"])
@pytest.mark.parametrize("kind", ["even", "uniform", "bursty"])
@pytest.mark.parametrize(("count", "page"), [(True, 50), (False, 100)])
def test_every_incident_is_read_whatever_the_order(
    order: str, kind: str, count: bool, page: int
) -> None:
    items = generate(3000, kind)
    service = FakeService(dict(items), order=order, page_size=page, count=count)
    listing = Listing(START, END, page_size=page)

    drain(service, listing)

    assert set(service.read) == set(items)
    assert listing.cursor == END
    assert listing.next() is None


@pytest.mark.parametrize("order", ["newest", "random"])
def test_activity_during_the_listing_loses_no_untouched_incident(order: str) -> None:
    """Updates move incidents out of the range while we list (shifting any offset-based page);
    every incident not touched is still read, and the cursor never passes an unread one."""
    items = generate(2000, "uniform", seed=9)
    service = FakeService(dict(items), order=order)
    listing = Listing(START, END, page_size=50)

    drain(service, listing, activity=3)

    untouched = {i for i, v in items.items() if service.items[i] == v}
    assert untouched and untouched <= set(service.read)


def test_the_cursor_only_passes_incidents_that_were_read() -> None:
    items = generate(1500, "bursty", seed=4)
    service = FakeService(dict(items), order="random")
    listing = Listing(START, END, page_size=50)
    while (req := listing.next()) is not None:
        if service.answer(listing, req):
            cursor = to_us(listing.cursor)
            below = {i for i, (u, _) in items.items() if u < cursor}
            assert below <= set(service.read)


def test_ties_at_one_instant_split_by_creation_time_then_exhaust() -> None:
    """300 incidents at one instant (7 creation times) and 120 sharing both instants."""
    t0 = to_us(START) + 5
    items = {i: (t0, t0 - (i % 7) * 1000) for i in range(300)}
    items.update({1000 + i: (t0 + 10, t0) for i in range(120)})
    items.update({2000 + i: (t0 + 10**9 * i, t0) for i in range(1, 40)})
    service = FakeService(dict(items), order="random")
    listing = Listing(START, END, page_size=50)
    exhausted: list[SliceRequest] = []
    while (req := listing.next()) is not None:
        if req.exhaust:
            exhausted.append(req)
        service.answer(listing, req)
        assert service.calls < 1000

    assert set(service.read) == set(items)
    assert len(exhausted) == 1
    assert to_us(exhausted[0].start) == t0 + 10 and to_us(exhausted[0].end) == t0 + 11


@pytest.mark.parametrize("order", ["newest", "random"])
def test_smooth_density_needs_few_requests_beyond_the_pages(order: str) -> None:
    """Evenly spread incidents: at most 1.15x the pages a perfect reader would need."""
    items = generate(10_000, "even")
    service = FakeService(dict(items), order=order)
    listing = Listing(START, END, page_size=50)

    drain(service, listing)

    assert service.calls <= 1.15 * math.ceil(len(items) / 50)


def test_a_known_density_makes_an_incremental_run_one_request() -> None:
    """Few updates since the checkpoint and a density carried over: one request."""
    items = {i: (to_us(END) - 10**6 * (i + 1), 0) for i in range(12)}
    service = FakeService(items)
    listing = Listing(END - timedelta(minutes=15), END, page_size=50, rate_per_hour=40.0)

    drain(service, listing)

    assert service.calls == 1 and set(service.read) == set(items)
    assert listing.rate_per_hour is not None and listing.rate_per_hour > 0


def test_an_empty_range_needs_no_request() -> None:
    listing = Listing(END, END, page_size=50)
    assert listing.next() is None
    with pytest.raises(ValueError, match="page_size"):
        Listing(START, END, page_size=1)


@pytest.mark.parametrize("order", ["newest", "random"])
@pytest.mark.parametrize(("count", "page"), [(True, 50), (False, 100)])
def test_a_big_tie_after_a_sparse_stretch_never_moves_the_cursor_past_the_end(
    order: str, count: bool, page: int
) -> None:
    """The emulator's seed shape: a few incidents over a month, then 200+ at one instant a
    little before the end. Widening after an empty slice once proposed a slice past the end,
    and the checkpoint then jumped hours into the future (no incident after it is ever read)."""
    rng = random.Random(3)
    a, b = to_us(START), to_us(END)
    items = {i: (t := rng.randrange(a, b - 10**9), t) for i in range(43)}
    tie = b - 3 * 10**8
    items.update({100 + i: (tie, tie - i) for i in range(217)})
    service = FakeService(dict(items), order=order, page_size=page, count=count)
    listing = Listing(START, END, page_size=page)

    drain(service, listing)

    assert set(service.read) == set(items)
    assert listing.cursor == END


# ---------------------------------------------------------------- reading across pages (Graph)


@pytest.mark.parametrize("order", ["newest", "hashed", "random"])
@pytest.mark.parametrize("kind", ["even", "uniform", "bursty"])
def test_paged_slices_read_every_incident_whatever_the_order(order: str, kind: str) -> None:
    items = generate(3000, kind)
    service = FakeService(dict(items), order=order)
    listing = paged_listing()

    drain(service, listing)

    assert set(service.read) == set(items)
    assert listing.cursor == END


@pytest.mark.parametrize("order", ["newest", "hashed"])
def test_activity_between_the_pages_of_a_slice_loses_no_untouched_incident(order: str) -> None:
    """Updates between the pages of a slice shift every later offset; the count moves, so the
    slice is not taken as complete and is split: every untouched incident is still read."""
    items = generate(3000, "uniform", seed=11)
    service = FakeService(dict(items), order=order)
    listing = paged_listing()

    drain(service, listing, activity=1)

    untouched = {i for i, v in items.items() if service.items[i] == v}
    assert len(untouched) < len(items)  # the activity did touch some
    assert untouched <= set(service.read)
    assert listing.paging  # a moving count is activity, not an unstable order


def test_an_order_that_changes_between_requests_stops_paging_and_loses_nothing() -> None:
    items = generate(3000, "uniform", seed=12)
    service = FakeService(dict(items), order="random")
    listing = paged_listing()

    drain(service, listing)

    assert not listing.paging
    assert set(service.read) == set(items)


@pytest.mark.parametrize("order", ["newest", "hashed"])
@pytest.mark.parametrize(("kind", "bound"), [("even", 1.1), ("uniform", 1.1), ("bursty", 1.12)])
def test_paged_slices_need_few_requests_beyond_the_pages(
    order: str, kind: str, bound: float
) -> None:
    """Issue 9: API calls at most 1.2x the pages a perfect reader needs, on a backfill."""
    items = generate(20_000, kind)
    service = FakeService(dict(items), order=order)
    listing = paged_listing()

    drain(service, listing)

    assert set(service.read) == set(items)
    assert service.calls <= bound * math.ceil(len(items) / 50), service.calls


def test_an_incremental_graph_run_is_still_one_request() -> None:
    """A few updates since the checkpoint, a density carried over and a settled instant inside
    the window: one single-page request, not a paged slice plus the rest."""
    items = {i: (to_us(END) - 10**6 * 30 * (i + 1), 0) for i in range(12)}
    service = FakeService(items)
    listing = paged_listing(END - timedelta(minutes=15), rate_per_hour=40.0)

    drain(service, listing)

    assert service.calls == 1 and set(service.read) == set(items)


def test_paged_read_verifies_only_a_steady_complete_distinct_set() -> None:
    t = [START] * 2

    def pages(*spec: tuple[list[str], int | None, bool]) -> PagedRead:
        read = PagedRead(500)
        for ids, count, linked in spec:
            if not read.add(ids, t, t, count=count, linked=linked):
                break
        return read

    assert pages((["a", "b"], 4, True), (["c", "d"], 4, False)).verified
    moved = pages((["a", "b"], 4, True), (["c"], 3, False))
    assert not moved.verified and not moved.unstable and moved.pages == 2
    repeated = pages((["a", "b"], 4, True), (["b", "c"], 4, False))
    assert not repeated.verified and repeated.unstable
    assert not pages((["a", "b"], 4, True)).verified  # a link is left
    over = pages((["a", "b"], 501, True), (["c", "d"], 501, False))
    assert over.pages == 1 and not over.verified  # more than $skip 500 reaches: split at once
    assert not pages((["a", "b"], None, True)).verified  # no count, no verdict
    nameless = pages(([None, "b"], 2, False))
    assert not nameless.verified and not nameless.unstable  # no id: no verdict, order not blamed


def test_steady_activity_between_pages_shrinks_paged_slices_until_they_complete() -> None:
    """An incident of the slice being read is updated between every two of its pages: no
    slice of several pages can verify, so paged slices halve until one page reads them; the
    listing ends and loses nothing untouched."""
    items = generate(3000, "uniform", seed=13)
    service = FakeService(dict(items), order="hashed")
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

        if req.paged:
            service.answer_paged(listing, req, update_one_inside)
            rooms.append(listing.paged_room)
        else:
            service.answer(listing, req)
        assert service.calls < 5000

    untouched = {i for i, v in items.items() if service.items[i] == v}
    assert untouched <= set(service.read)
    assert listing.cursor == END
    assert min(rooms) < 100 < 500 == listing.paged_items
