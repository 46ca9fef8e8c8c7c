"""A property test of the pure slice planner: over random data (a background spread over a
month, bursts at one instant and within a millisecond or a second, ties up to and over a page,
pairs tied on both instants), every count behaviour (``@odata.count`` on every page, the first
only, none), every order (newest first, arbitrary but stable, reshuffled per request) and SOC
activity between requests and between the pages of a slice:

- no untouched incident is missed, and the cursor never passes an unread one;
- every request completes a slice or narrows the one it asked for (the next request at the
  same place ends strictly earlier, or splits the instant by creation time);
- without activity, calls stay within point 1's bounds against a reader that knew every
  timestamp in advance (``perfect``): 1.25x where slices are read across pages, every page
  carries the count and the order holds between requests, else 2x; plus a few requests to find
  the first density (more without any count) and each burst over a page. More than a page
  sharing both instants (a pair tie: paged through links, the documented last resort) is
  checked for correctness only.
"""

# ruff: noqa: S311 - seeded pseudo-random data is the point of this test

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.defender.slices import CREATED_MAX, CREATED_MIN, Listing, SliceRequest, to_us
from testkit.slice_service import Data, GaveUp, Service, perfect

START = datetime(2026, 1, 1, tzinfo=UTC)
END = START + timedelta(days=30)
SETTLED = END - timedelta(minutes=10)
A, B = to_us(START), to_us(END)


@dataclass(frozen=True)
class Burst:
    """``size`` incidents updated within ``spread`` µs (0: at one instant) at ``where`` of the
    month; ``both``: created at one instant too (a pair tie)."""

    size: int
    spread: int
    where: float
    both: bool


@dataclass(frozen=True)
class Case:
    seed: int
    counts: str
    order: str
    paged: bool
    background: int
    bursts: tuple[Burst, ...]
    activity: int  # SOC changes after each request
    between: int  # SOC changes between the pages of a slice


PAGE = 50


@st.composite
def cases(draw: st.DrawFn) -> Case:
    bursts = draw(
        st.lists(
            st.builds(
                Burst,
                size=st.integers(1, 3 * PAGE),
                spread=st.sampled_from([0, 0, 1_000, 1_000_000]),
                where=st.floats(0.0, 0.999),
                both=st.booleans(),
            ),
            max_size=6,
        )
    )
    # a pair tie over a page is the one case paged through links: keep those small
    bursts = [Burst(min(b.size, PAGE + 20), 0, b.where, True) if b.both else b for b in bursts]
    return Case(
        seed=draw(st.integers(0, 2**32 - 1)),
        counts=draw(st.sampled_from(["every", "first", "none"])),
        order=draw(st.sampled_from(["newest", "hashed", "random"])),
        paged=draw(st.booleans()),
        background=draw(st.integers(0, 1_500)),
        bursts=tuple(bursts),
        activity=draw(st.sampled_from([0, 0, 0, 1, 3])),
        between=draw(st.sampled_from([0, 0, 1])),
    )


def build(case: Case) -> Data:
    rng = random.Random(case.seed)
    data: Data = {}
    for _ in range(case.background):
        t = rng.randrange(A, B)
        data[len(data)] = (t, t - rng.randrange(0, 10**10))
    for burst in case.bursts:
        t0 = A + int((B - A - 10**6) * burst.where)
        c0 = t0 - rng.randrange(0, 10**10)
        for _ in range(burst.size):
            t = t0 + (rng.randrange(0, burst.spread) if burst.spread else 0)
            c = c0 if burst.both else t - rng.randrange(0, 10**10)
            data[len(data)] = (t, c)
    return data


# derandomized: the same 150 cases on every run, so a red build is reproducible. The examples
# are cost misses free searches found without any count (bursts over a page at one instant over
# sparse background; before the planner stopped letting a tie's count set how many incidents
# each known one stands for elsewhere: 102 calls against the bound's 72, 80 against 72, 58
# against 56)
@example(
    Case(
        92,
        "none",
        "random",
        False,
        273,
        (
            Burst(150, 1_000_000, 0.3253814977736406, False),
            Burst(40, 0, 1.17e-43, False),
            Burst(134, 0, 6.8e-154, False),
            Burst(149, 1_000_000, 0.7592438843318214, False),
            Burst(52, 0, 0.0, False),
            Burst(40, 0, 1.17e-43, False),
        ),
        0,
        0,
    )
)
@example(
    Case(
        9227,
        "none",
        "hashed",
        False,
        1167,
        (
            Burst(106, 0, 0.11386474434274468, False),
            Burst(18, 0, 0.11386474434274468, False),
            Burst(106, 0, 0.11386474434274468, False),
        ),
        0,
        0,
    )
)
@example(
    Case(
        11177,
        "none",
        "random",
        False,
        578,
        (
            Burst(135, 1_000_000, 0.8652336027955113, False),
            Burst(138, 0, 0.3851372827979608, False),
        ),
        0,
        0,
    )
)
# Free searches later found misses of another family (no count, an order that holds, a burst
# within a millisecond or a second over sparse background: each failed page showed a sample of
# the burst, and slices were planned to end inside it, counting its known incidents one each:
# 27 calls against 24, 30 against 28, 21 against 20)
@example(
    Case(
        0,
        "none",
        "hashed",
        False,
        134,
        (Burst(14, 0, 0.0, False), Burst(99, 1_000, 0.25, False)),
        0,
        0,
    )
)
@example(
    Case(
        1,
        "none",
        "hashed",
        False,
        252,
        (Burst(1, 0, 0.0, False), Burst(100, 1_000, 0.125, False)),
        0,
        0,
    )
)
@example(
    Case(11914680, "none", "hashed", False, 24, (Burst(149, 1_000_000, 0.890625, False),), 0, 0)
)
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(cases())
def test_the_planner_reads_everything_progresses_and_stays_within_bounds(case: Case) -> None:
    data = build(case)
    original = dict(data)
    service = Service(dict(data), order=case.order, counts=case.counts, page_size=PAGE)
    listing = Listing(
        START,
        END,
        page_size=PAGE,
        paged_items=500 if case.paged else 0,
        settled=SETTLED if case.paged else None,
    )
    rng = random.Random(case.seed + 1)
    next_id = len(data)

    def act(changes: int) -> None:
        nonlocal next_id
        for _ in range(changes):  # updates and creations move incidents to "now", after END
            now = B + rng.randrange(1, 10**6)
            if rng.random() < 0.6 and service.items:
                victim = rng.randrange(next_id)
                if victim in service.items:
                    service.items[victim] = (now, service.items[victim][1])
            else:
                service.items[next_id] = (now, now)
                next_id += 1

    best = perfect(data, A, B, PAGE, to_us(SETTLED) if case.paged else None)
    # the documented weak spot: a pair tie over a page with no count at all is read until passes
    # find nothing new, which rests on its pages not shifting between passes
    shifting = case.order == "random" or case.between > 0
    weak = pair_tied(data, PAGE) if case.counts == "none" and shifting else set()
    limit = 30 * best + 300
    previous: SliceRequest | None = None
    progressed, gave_up = True, False
    while (req := listing.next()) is not None:
        if previous is not None and not progressed:
            assert _narrower(req, previous), (previous, req, case)
        cursor = listing.cursor
        try:
            done, read = service.answer(listing, req, lambda: act(case.between))
        except GaveUp:
            # a pair tie over a page whose pages never added up (the run fails, loses
            # nothing, and the next one tries again): only an order reshuffled per request
            assert case.order == "random", case
            gave_up = True
            break
        if done:  # the cursor only passes incidents that were read (or changed)
            below = {i for i, (u, _) in original.items() if u < to_us(listing.cursor)}
            untouched = {i for i in below if service.items.get(i) == original[i]} - weak
            assert untouched <= set(service.read), ("the cursor passed an unread incident", case)
        progressed = done or listing.cursor > cursor or req.exhaust or _tie_moved(req, read)
        previous = req
        act(case.activity)
        assert service.calls <= limit, f"no end in sight: {service.calls} calls, perfect {best}"

    if gave_up:
        return
    untouched = {i for i, v in original.items() if service.items.get(i) == v} - weak
    assert untouched <= set(service.read), ("an untouched incident was missed", case)
    assert listing.cursor == END
    pair_ties = any(b.both and b.size >= PAGE for b in case.bursts)
    if case.activity == 0 and case.between == 0 and not pair_ties:
        # Graph's backfill (slices read across pages, every page counted, an order that holds
        # between requests): 1.25x; anything proved by single pages, or counted on the first
        # page only, or not at all: 2x. A reader that does not know where the density starts
        # or where a burst over a page lies pays a few requests to find them.
        paged = case.paged and case.counts == "every" and case.order != "random"
        # bursts at one place add up (a burst within a second around one at an instant)
        at: dict[float, int] = {}
        for b in case.bursts:
            at[b.where] = at.get(b.where, 0) + b.size
        bursts = sum(1 for size in at.values() if size >= PAGE)
        # without any count the density is found by pages that overflow or come back empty
        finding = 4 if case.counts != "none" else 6
        bound = (1.25 if paged else 2.0) * best + finding + 6 * bursts
        assert service.calls <= bound, repr((service.calls, bound, best, case))[-900:]


def pair_tied(data: Data, page: int) -> set[int]:
    """Incidents sharing both instants with a page or more of others."""
    pairs: dict[tuple[int, int], set[int]] = {}
    for i, pair in data.items():
        pairs.setdefault(pair, set()).add(i)
    return {i for ids in pairs.values() if len(ids) >= page for i in ids}


def _tie_moved(req: SliceRequest, read: object) -> bool:
    """A request of a creation-time split completed its part (the tie's cursor moved)."""
    from shared.defender.slices import PagedRead

    assert isinstance(read, PagedRead)
    return req.created_start is not None and read.complete


def _narrower(req: SliceRequest, previous: SliceRequest) -> bool:
    """``req`` asks, at the same place, for strictly less than ``previous`` did (which
    failed): an earlier end, or a part of its instant by creation time; or pages a pair tie
    (the last resort)."""
    if req.exhaust:
        return True
    lo, hi = CREATED_MIN, CREATED_MAX
    p0, p1 = previous.created_start or lo, previous.created_end or hi
    r0, r1 = req.created_start or lo, req.created_end or hi
    inside = req.end <= previous.end and p0 <= r0 and r1 <= p1
    less = (req.end, r1) != (previous.end, p1)
    return req.start == previous.start and r0 == p0 and inside and less
