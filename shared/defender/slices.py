"""Pure planning of an incident listing as time slices, and why it never misses an incident.

A listing of ``[start, end)`` on last-update time is cut into slices ``[a, b)``. Each slice is
asked for with one request carrying both bounds in ``$filter`` (``lastUpdate ge a and
lastUpdate lt b``) and ``$top`` (on Graph also ``$count=true``); the planner decides the bounds,
the caller sends the request and hands every page it read to a ``PagedRead``.

Correctness rests on documented facts only (sources in ``docs/listing.md``): ``$filter`` on the
last-update time with ``ge``/``lt`` (and on the creation time), ``$top`` bounding a page,
``@odata.nextLink`` present when the service has more, and ``@odata.count`` being the number of
items matching the request when an answer carries it. It does not rest on the order of results,
on ``$skip`` offsets staying put while data changes, on a short page meaning the end when a link
says otherwise, on a page boundary, or on which pages carry ``@odata.count`` (every page, the
first only, or none): every decision is taken from what each answer contains, never from what
the request asked for.

- A slice is **complete** when one answer for exactly that slice had no nextLink and fewer
  items than ``$top``, or no nextLink and ``@odata.count`` equal to the distinct incidents it
  held. That answer then held every incident whose last update was in ``[a, b)`` when it was
  answered, whatever their order.
- **Across pages** (a ``paged`` request, only for a slice that ends before the caller's
  ``settled`` instant, older than the late-arrival bound): the slice is complete when the
  *first* page carried ``@odata.count`` = N and the pages read held N distinct incidents of the
  slice (``PagedRead.complete``). Why that is enough whatever the order and however offsets
  shift: no incident can *enter* such a slice while it is read (an update gets a last-update
  time of now, and a late-visible version older than the bound is beyond what any run
  promises), so the slice's set only shrinks from the N it held at the first page: every
  incident read belongs to those N, and N distinct of them are all of them. Counts on later
  pages are not needed; when they come and differ (an incident left), or an incident repeats
  (an order that is not stable between requests), the pages cannot add up and reading stops.
- A slice that is not complete is **narrowed**: the next request at the same cursor ends
  strictly earlier (at most 7/8 of the width: ``_Axis.ceiling``; walking a burst shown newest
  first, at the edge of what its pages showed: ``_Axis._burst_walk``), so every request
  completes a slice or narrows one and a run always progresses. Items of the failed answer are valid
  versions (the caller stores them; deduplication keeps one copy) and tell the planner where
  the slice's incidents are; only completeness needs a fresh answer.
- An incident updated while we list moves to a later last-update time: it leaves an older slice
  and enters a newer one, still unread or re-read through the run's overlap, so it is read in
  its newer version. A slice already complete stays complete for the versions it held.
- Slices complete oldest first, so ``[start, cursor)`` is always fully read: the caller's
  checkpoint may move to ``cursor`` (never past it) after storing what was read.
- **Ties**: more incidents at one instant (``b - a`` = 1 µs, the resolution kept: the 7th
  fractional digit is dropped on both sides consistently, see ``shared.core.clock.parse_utc``) than
  a page holds are split by a second documented filterable field, the creation time
  (``createdTime``/``createdDateTime``), on the same rules. Only if more than a page share both
  instants does the caller page that pair through nextLinks (never past ``$skip`` 500) and
  re-read until a pass finds nothing new, with a warning: the one place where a guarantee is
  weaker.

Cost (not correctness): the planner keeps what failed answers showed (their counts, the
incidents they held and the order they came in: ``_Axis``) and the density of completed slices,
and asks for the widest slice it expects to fit, counting known incidents exactly and unknown
ones with a margin. A burst at one instant that a sample shows to be over a page goes straight
to the creation-time split. Without any ``@odata.count`` only single pages can prove a slice,
so slices are planned below a page. Time is handled in integer microseconds since the epoch.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: the creation-time range used when splitting one last-update instant by creation time
CREATED_MIN = datetime(1970, 1, 1, tzinfo=UTC)
CREATED_MAX = datetime(9999, 1, 1, tzinfo=UTC)

#: one item of an answer as the planner sees it: id, last-update time, creation time (None
#: where missing or unreadable)
Item = tuple[str | None, datetime | None, datetime | None]


def to_us(value: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int) -> datetime:
    """The aware UTC datetime of ``value`` microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=value)


#: how many recent completed slices pool into the density estimate
_POOL = 8
#: unknown incidents are planned with ``Z`` Poisson standard deviations of margin (plus the
#: observed planning error): an overflow costs one request, so a little risk pays
_Z = 1.0
#: after a failed request the next one at the same cursor covers at most this share of its width
_SHRINK = 7 / 8
#: how much one overflow raises the margin (a tenth of it comes off per slice that fits)
_STEP = 0.05


@dataclass(frozen=True, slots=True)
class SliceRequest:
    """What to ask for: last update in ``[start, end)`` (and creation in ``[created_start,
    created_end)`` when splitting a tie). ``exhaust``: page this pair through links (last resort);
    ``paged``: read it across pages, complete when verified by the first page's count.
    """

    start: datetime
    end: datetime
    created_start: datetime | None = None
    created_end: datetime | None = None
    exhaust: bool = False
    #: read through the slice's links and verify by ``@odata.count`` (see the module docstring)
    paged: bool = False


class PagedRead:
    """The pages of one answer to ``request`` as they are read, and whether they complete it.

    ``top``: the request's ``$top``; ``limit``: the most incidents a paged slice is read to
    (``Listing.paged_limit``). Use ``add`` for each page; it says whether to read the next.
    """

    def __init__(self, request: SliceRequest, *, top: int, limit: int) -> None:
        self.request = request
        self.top = top
        self.limit = limit
        self._lo, self._hi = to_us(request.start), to_us(request.end)
        self._c_lo = None if request.created_start is None else to_us(request.created_start)
        self._c_hi = None if request.created_end is None else to_us(request.created_end)
        self.pages = 0
        #: ``@odata.count`` of the first page (None: it carried none)
        self.first_count: int | None = None
        #: ``@odata.count`` of the last page that carried one
        self.count: int | None = None
        #: a later page carried a count different from the first
        self.moved = False
        #: how many later pages carried a count
        self.later_counts = 0
        #: incidents of the slice read, by id: (last update µs, created µs)
        self.seen: dict[str, tuple[int, int | None]] = {}
        self.served = 0  # items served, whatever they held
        self.missing = 0  # items without an id: they cannot be told apart
        self.outside = 0  # items whose times are unreadable or outside the slice
        self.repeated = 0  # items already read on an earlier page of this answer
        self.linked = False  # the last page had a nextLink
        #: the first page's items' coordinates (last update, or creation in a tie) as served
        self.first_order: list[int] = []
        #: the first page's items' creation times as served (for splitting a tie)
        self.first_created: list[int] = []

    def add(self, items: Sequence[Item], *, count: int | None, linked: bool) -> bool:
        """Take one page; True when the next page should be read (a ``paged`` request that is
        neither complete nor beyond verification yet, with a link left)."""
        self.pages += 1
        if self.pages == 1:
            self.first_count = count
        elif count is not None:
            self.later_counts += 1
            if self.first_count is not None and count != self.first_count:
                self.moved = True
        if count is not None:
            self.count = count
        tie = self._c_lo is not None
        for key, updated, created in items:
            self.served += 1
            if key is None:
                self.missing += 1
                continue
            u = None if updated is None else to_us(updated)
            c = None if created is None else to_us(created)
            if u is None or not self._lo <= u < self._hi or (tie and not self._in_created(c)):
                self.outside += 1
                continue
            if key in self.seen:
                self.repeated += 1
            self.seen[key] = (u, c)
            if self.pages == 1:
                self.first_order.append(c if tie and c is not None else u)
                if c is not None:
                    self.first_created.append(c)
        self.linked = linked
        return self._more

    def _in_created(self, c: int | None) -> bool:
        assert self._c_lo is not None and self._c_hi is not None
        return c is not None and self._c_lo <= c < self._c_hi

    @property
    def _more(self) -> bool:
        if self.complete or not self.request.paged or not self.linked:
            return False
        first = self.first_count
        if first is None or first > self.limit:
            return False  # no count: pages cannot add up to a proof; over: split at once
        return not (self.moved or self.repeated or self.missing)

    @property
    def complete(self) -> bool:
        """The answer proves its slice complete (see the module docstring)."""
        if self.pages == 1 and not self.linked and self.served < self.top:
            return True  # one short answer for exactly the slice
        first = self.first_count
        if first is None or self.missing or len(self.seen) != first:
            return False
        if self.pages == 1:
            return not self.linked  # one answer holding as many as it counted
        return self.request.paged  # across pages: only where nothing can enter

    @property
    def unstable(self) -> bool:
        """Pages repeated incidents, or later counts held still while the pages fell short of
        them: the service's order is not stable between requests (activity only removes)."""
        if self.repeated:
            return True
        return (
            self.pages > 1
            and self.later_counts == self.pages - 1
            and not self.moved
            and not self.linked
            and not self.missing
            and self.first_count is not None
            and len(self.seen) < self.first_count
        )

    def times(self, *, created: bool = False) -> list[tuple[str, int, int | None]]:
        """The incidents read: (id, last update µs, created µs), or with ``created`` (along a
        tie's creation axis) (id, created µs, last update µs), those with a creation time."""
        if created:
            return [(k, c, u) for k, (u, c) in self.seen.items() if c is not None]
        return [(k, u, c) for k, (u, c) in self.seen.items()]


class PairPasses:
    """Passes over a pair tie (more than a page sharing both instants), paged through links:
    the last resort. Feed each pass's pages to ``add``; ``end_pass`` says whether to stop.

    It stops when a pass read as many distinct incidents as its first page counted, or all
    passes together as many as the very first count (where nothing can enter, those are all).
    With no count at all it stops after two passes in a row that found nothing new: weaker, it
    rests on the pages not shifting between passes (logged as such by the caller). It gives up
    (``given_up``) after ``idle`` passes in a row that found nothing new without adding up to
    a count, or ``most`` in all.
    """

    def __init__(self, *, most: int = 20, idle: int = 5, quiet: int = 2) -> None:
        self.most, self.idle, self.quiet = most, idle, quiet
        self.seen: dict[str, Item] = {}
        self.passes = 0
        self.first: int | None = None
        self.given_up = False
        self._still = 0  # passes in a row that found nothing new
        self._passed: set[str] = set()
        self._counted: int | None = None
        self._fresh = False
        self._pages = 0

    def add(self, items: Sequence[Item], *, count: int | None) -> None:
        """One page of the current pass (a pass starts with its first page)."""
        if self._pages == 0:
            self._counted = count
            self.first = count if self.first is None else self.first
        self._pages += 1
        for item in items:
            key = item[0]
            if key is None:
                continue
            self._fresh = self._fresh or key not in self.seen
            self.seen[key] = item
            self._passed.add(key)

    def end_pass(self) -> bool:
        """The pass is over; True when the passes may stop (done, or given up)."""
        self.passes += 1
        counted, passed, fresh = self._counted, len(self._passed), self._fresh
        self._passed, self._counted, self._fresh, self._pages = set(), None, False, 0
        self._still = 0 if fresh else self._still + 1
        if counted is not None and passed >= counted:
            return True
        if self.first is not None and len(self.seen) >= self.first:
            return True
        if self.first is None and self._still >= self.quiet:
            return True
        if self._still >= self.idle or self.passes >= self.most:
            self.given_up = True
            return True
        return False


def _uneven(sample: Sequence[int], lo: int, hi: int) -> float:
    """How far a sorted sample of ``[lo, hi)`` is from an even spread, in [0, 1]: 0 within
    chance (Kolmogorov-Smirnov distance under 1.4/sqrt(k), about the 96th percentile for an even
    spread), 1 from 2.4/sqrt(k) (a burst, or incidents bunched in part of the range)."""
    k = len(sample)
    if k == 0:
        return 0.0
    span = max(1, hi - lo)
    d = 0.0
    for i, t in enumerate(sample):
        x = min(1.0, max(0.0, (t - lo) / span))
        d = max(d, (i + 1) / k - x, x - i / k)
    return min(1.0, max(0.0, d * math.sqrt(k) - 1.4))


def _shape(order: Sequence[int]) -> str:
    """How the first page's items were ordered on the axis: ``"desc"`` (newest first),
    ``"asc"``, ``"flat"`` (one instant) or ``"spread"`` (no order seen)."""
    if len(order) < 2:
        return "spread"
    if min(order) == max(order):
        return "flat"
    if all(a >= b for a, b in zip(order, order[1:], strict=False)):
        return "desc"
    if all(a <= b for a, b in zip(order, order[1:], strict=False)):
        return "asc"
    return "spread"


@dataclass
class _Bound:
    """What a failed answer for ``[cursor, h)`` said: ``n`` incidents (its count when
    ``exact``, else a guess), and where the ones it did not show can be (``shape``)."""

    h: int
    n: float
    exact: bool
    shape: str = "spread"
    lo0: int = 0  # the cursor when it was made
    s_min: int = 0  # the first page's lowest and highest coordinate
    s_max: int = 0
    at_min: float = 0.0  # share of the first page at its lowest instant (a cut burst)
    #: the coordinates the answer showed (sorted): in no known order, a sample of the region
    sample: list[int] = field(default_factory=list)
    #: how far that sample is from an even spread of ``[lo0, h)``, in [0, 1] (``_uneven``)
    weight: float = 0.0
    #: the first page's mean distance between neighbours (its local density)
    spacing: float = 0.0
    #: without a count: how far below ``s_min`` the guessed burst reaches
    reach: int = 0


@dataclass
class _Axis:
    """Slices along one axis (last update, or creation within one tie), oldest first, with what
    failed answers showed about the region ahead and the density of completed slices."""

    cursor: int
    end: int
    rate: float | None = None  # items per µs
    origin: int = 0  # where the axis started (its width scales what counts as narrow)
    #: where unknown items are planned to lie on an axis whose range is not meaningful (the
    #: creation times of one tie): from ``floor`` up to ``top`` (planning only)
    floor: int | None = None
    top: int | None = None
    bounds: list[_Bound] = field(default_factory=list)  # ascending h
    times: list[int] = field(default_factory=list)  # known incidents' coordinates, sorted
    known: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    recent: list[tuple[int, int]] = field(default_factory=list)
    #: the end of the last failed request at this cursor: the next one ends before it
    ceiling: int | None = None
    failures: int = 0  # requests in a row at this cursor that failed
    guesses: int = 0  # of them, those whose answer carried no count
    #: relative margin on unknown incidents beyond Poisson chance, steered so that about one
    #: planned slice in ten overflows (each overflow costs a request; margin costs fill)
    margin: float = 0.0
    #: (known, unknown) items the last proposal expected
    planned: tuple[float, float] | None = None
    #: how many incidents each known one outside a counted region stands for (a page without a
    #: count, in no order, bunched in a burst: 2; else 1)
    inflate: float = 1.0
    #: the width of the last completed slice when it and the one before held far fewer than
    #: planned (else 0): the plan keeps putting incidents where there are none (they lie further
    #: on), so the next slice is at least twice as wide
    underrun: int = 0
    _short: int = 0  # completed slices in a row that held far fewer than planned
    #: the density just proved wrong with nothing known ahead: ask for the rest next
    probe: bool = False
    #: stretches ``[lowest, end)`` that pages shown newest first without a count showed whole
    shown: list[tuple[int, int]] = field(default_factory=list)
    #: coordinates (sorted) of incidents that failed pages without a count showed in no order:
    #: samples of their regions, ahead of the cursor
    sampled: list[int] = field(default_factory=list)
    last_width: int = 0  # the width of the last completed slice
    last_items: int = 0  # and how many incidents it held

    @property
    def done(self) -> bool:
        return self.cursor >= self.end

    # ---------------------------------------------------------------- knowledge

    def known_below(self, t: int) -> int:
        """Known incidents in ``[cursor, t)``."""
        return bisect_left(self.times, t) - bisect_left(self.times, self.cursor)

    def known_at(self, t: int) -> int:
        """Known incidents at the instant ``t``."""
        return bisect_left(self.times, t + 1) - bisect_left(self.times, t)

    def exact_at(self, t: int) -> float:
        """Incidents known to be at ``t``: the known ones, or a counted one-instant region."""
        best = float(self.known_at(t))
        prev_h, prev_n = self.cursor, 0.0
        for b in self.bounds:
            if b.exact and prev_h == t and b.h == t + 1:
                best = max(best, b.n - prev_n)
            prev_h, prev_n = b.h, max(prev_n, b.n)
        return best

    def learn(self, items: Sequence[tuple[str, int, int | None]]) -> None:
        """Remember incidents a failed answer showed (ahead of the cursor)."""
        for key, t, other in items:
            if t < self.cursor:
                continue
            old = self.known.get(key)
            if old is not None:
                i = bisect_left(self.times, old[0])
                if i < len(self.times) and self.times[i] == old[0]:
                    del self.times[i]
            self.known[key] = (t, other)
            insort(self.times, t)

    def unknown_below(self, t: int) -> float:
        """Expected incidents in ``[cursor, t)`` that no answer has shown (inf: no idea)."""
        total = 0.0
        prev_h, prev_n = self.cursor, 0.0
        for i, b in enumerate(self.bounds):
            lo, hi = prev_h, b.h
            if t <= lo:
                return total
            if b.exact:
                d = max(0.0, b.n - prev_n)
                k = self.known_below(hi) - self.known_below(lo)
                u = max(0.0, d - k)
                if u > 0:
                    # the region as it was when the answer came (the first one may have been
                    # entered by the cursor since: its sample behind the cursor still shapes it)
                    orig = min(lo, b.lo0) if i == 0 else lo
                    total += self._segment(b, orig, lo, hi, u, min(t, hi))
                prev_n = max(prev_n, b.n)
            else:
                total += self._newest(b, lo, hi, None, min(t, hi))
            prev_h = hi
            if t <= hi:
                return total
        if t > prev_h:
            if self.rate is None:
                return math.inf
            # the density stands for every incident there, the known ones too; known ones that
            # a page without a count showed in no order stand for more (``inflate``)
            gaps = self._gaps(prev_h, t)
            width = sum(self.span(a, b) for a, b in gaps)
            k = sum(self.known_below(b) - self.known_below(a) for a, b in gaps)
            total += max(0.0, self.rate * width - k) + (self.inflate - 1) * k
        return total

    def _gaps(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The parts of ``[lo, hi)`` no page shown newest first without a count showed whole
        (where unknown incidents may be)."""
        gaps: list[tuple[int, int]] = []
        pos = lo
        for a, b in sorted(self.shown):
            if b <= pos:
                continue
            if a >= hi:
                break
            if a > pos:
                gaps.append((pos, a))
            pos = b
            if pos >= hi:
                return gaps
        if pos < hi:
            gaps.append((pos, hi))
        return gaps

    def _open(self, lo: int, hi: int) -> int:
        """The width of ``[lo, hi)``'s parts where unknown incidents may be."""
        if not self.shown:
            return self.span(lo, hi)
        return sum(self.span(a, b) for a, b in self._gaps(lo, hi))

    def _segment(self, b: _Bound, orig: int, lo: int, hi: int, u: float, t: int) -> float:
        """How many of the ``u`` unknown incidents of ``[lo, hi)`` (a region first seen as
        ``[orig, hi)``) lie below ``t``."""
        if b.shape == "desc" and lo <= b.s_min < hi:
            return self._newest(b, lo, hi, u, t)
        if b.shape == "asc" and lo <= b.s_max < hi:
            return u * min(1.0, max(0.0, (t - b.s_max) / max(1, hi - b.s_max)))
        below = self._cdf(b, orig, hi, t)
        done = self._cdf(b, orig, hi, lo)
        return 0.0 if done >= 1 else u * min(1.0, max(0.0, (below - done) / (1 - done)))

    def _newest(self, b: _Bound, lo: int, hi: int, u: float | None, t: int) -> float:
        """Newest first (the order seen, relied on for planning only): the incidents not shown
        are at or below the first page's lowest one, ``s_min``. Some are the background the
        density predicts; the rest carry on below ``s_min`` at the page's own spacing (a burst
        the page cut), a share ``at_min`` at ``s_min`` itself. ``u``: how many there are (the
        count), or None without a count (then the page's worth carries on: a guess)."""
        top = b.s_min
        if t <= lo or top < lo:
            return 0.0
        whole = self._open(lo, top + 1)
        if u is None:
            # no count: where the page ends inside an instant (a burst it cut), a page's
            # worth more there; otherwise a density between the page's own (its items were the
            # newest, often the densest) and a page's worth over all that lies below it, so
            # that an empty stretch below is crossed in a few doubling requests and a dense one
            # read from its bottom, never walked down a page at a time
            if b.at_min >= 1:
                background = (self.rate or 0.0) * whole
                shown = self.known_at(top)
                burst = max(0.0, b.n - shown)
            elif b.spacing * b.n < (top - b.lo0) / 1000:
                # the page is a burst in its region: a page's worth more carries on below it
                # at its own spacing, the density elsewhere
                background = (self.rate or 0.0) * whole
                shown = self.known_below(top) - self.known_below(max(lo, b.reach))
                burst = max(0.0, b.n - shown)
            else:
                local = 1 / b.spacing if b.spacing > 0 else 0.0
                spread = b.n / max(1, top - b.lo0)
                guess = math.sqrt(local * spread)
                # once slices have completed, what they held is the evidence
                density = self.rate if self.recent and self.rate is not None else guess
                background, burst = density * whole, 0.0
        elif self.rate is None or (
            b.at_min < 1
            and b.spacing * u > (top - lo) / 10
            and not (self.recent and self.rate * whole < u / 4)
        ):
            # nothing to tell them apart, or carrying on at the page's density they would fill
            # much of the region anyway (no burst): spread evenly; unless slices completed
            # since measured a density far below that (empty stretches: the counted incidents
            # lie further on, toward the page), which must move them on, or every run would
            # walk an empty stretch at the count's average density
            background, burst = u, 0.0
        else:
            background = min(u, self.rate * whole)
            burst = u - background
        below = background * self._open(lo, min(t, top + 1)) / max(1, whole) if t > lo else 0.0
        if burst > 0:
            base = self._base(lo, top + 1)
            reach = b.reach if u is None else top - math.ceil(b.spacing * burst)
            start = max(base, reach)
            # counted, and carrying on past the cursor at the page's spacing: they cannot all
            # be where the spacing says, so plan them at the page's lowest instant (asking for
            # everything before it then tells how many are there)
            at_min = 1.0 if u is not None and reach <= lo else b.at_min
            even = (1 - at_min) * burst
            if t > top:
                below += at_min * burst + even
            elif t > start:
                below += even * (t - start) / max(1, top + 1 - start)
        return below

    def _base(self, lo: int, hi: int) -> int:
        return lo if self.floor is None else min(hi - 1, max(lo, self.floor))

    def span(self, lo: int, hi: int) -> int:
        """The width of ``[lo, hi)`` where unknown incidents are planned to lie."""
        a = lo if self.floor is None else max(lo, self.floor)
        b = hi if self.top is None else min(hi, self.top)
        return max(1, b - a)

    def _top(self, lo: int, hi: int) -> int:
        return hi if self.top is None else max(lo + 1, min(hi, self.top))

    def _cdf(self, b: _Bound, lo: int, hi: int, t: int) -> float:
        """The share of ``[lo, hi)``'s incidents expected below ``t``: spread evenly, or like
        the answer's sample as far as that is unlikely to be an even spread (a burst)."""
        if t <= lo:
            return 0.0
        if t >= hi:
            return 1.0
        base, top = self._base(lo, hi), self._top(lo, hi)
        even = min(1.0, max(0.0, (t - base) / max(1, top - base)))
        sample = b.sample
        first, last = bisect_left(sample, lo), bisect_left(sample, hi)
        k = last - first
        if k == 0 or b.weight <= 0:
            return even
        # one unit of unknown mass per gap between sampled instants, plus one per further
        # sampled incident at an instant (a burst goes on there)
        j = bisect_left(sample, t, first, last)
        prev = sample[j - 1] if j > first else base
        nxt = sample[j] if j < last else hi
        frac = 0.0 if t <= prev else (t - prev) / max(1, nxt - prev)
        seen = min(1.0, (j - first + frac) / (k + 1))
        return b.weight * seen + (1 - b.weight) * even

    def surely_below(self, t: int) -> float:
        """Incidents known to lie in ``[cursor, t)``: the counted regions it covers whole,
        or the known incidents (those a page without a count showed standing for more, except
        inside a stretch a page shown newest first showed whole: those are all there is)."""
        counted = max((b.n for b in self.bounds if b.exact and b.h <= t), default=0.0)
        last = max((b.h for b in self.bounds if b.exact and b.h <= t), default=self.cursor)
        beyond = self.known_below(t) - self.known_below(last)
        whole = self.known_whole(last, t)
        return max(counted, float(self.known_below(last))) + whole + self.inflate * (beyond - whole)

    def known_whole(self, lo: int, hi: int) -> int:
        """Known incidents in ``[lo, hi)`` inside stretches that pages shown newest first
        showed whole: all there are (for planning), not a sample of more."""
        if hi <= lo or not self.shown:
            return 0

        def known(a: int, b: int) -> int:
            return bisect_left(self.times, b) - bisect_left(self.times, a)

        # what the shown stretches cover of [lo, hi) is all of it but its gaps
        return known(lo, hi) - sum(known(a, b) for a, b in self._gaps(lo, hi))

    def expected(self, t: int) -> tuple[float, float]:
        """(known, unknown) incidents expected in ``[cursor, t)``."""
        return float(self.known_below(t)), self.unknown_below(t)

    def risk(self, t: int) -> float:
        """Incidents ``[cursor, t)`` may hold: known ones, plus unknown ones with a margin.
        Where no count bounds the region, the known ones are part of what the density predicts
        (a sample of it), so they share its chance variation; not inside a stretch a page
        shown newest first showed whole (every incident there is known: a burst's instants
        walked down a page at a time are each asked for with the stretch up to the next one,
        not alone and then the empty stretch after it)."""
        k, u = self.expected(t)
        if math.isinf(u):
            return math.inf
        last = self.bounds[-1].h if self.bounds else self.cursor
        sampled = 0
        if t > last:
            sampled = max(
                0, self.known_below(t) - self.known_below(last) - self.known_whole(last, t)
            )
        return k + (u + sampled) * self.margin + u + _Z * math.sqrt(u + sampled)

    # ---------------------------------------------------------------- planning

    def propose(self, room: float, limit: int | None = None) -> int:
        """The end of the next slice: the widest expected to hold at most ``room`` incidents
        (> cursor, <= end, <= ``limit``, before the ceiling left by a failed request)."""
        hi = self.end if limit is None else min(self.end, limit)
        if self.ceiling is not None:
            # narrower than the failed request; after two failures at this cursor by an eighth
            # at least of where its incidents are planned to lie (by half after two guesses
            # without a count), so failures at one cursor end in a bounded number of steps
            hi = min(hi, self.ceiling - 1)
            # without a count below pages shown newest first, a failed request ended at the
            # edge of what they showed: asking up to the next edge would only show the next
            # page down, so the unknown stretch is halved at once; unless that next page is
            # what is wanted: a burst's, just below an empty stretch (``_burst_walk``: each
            # request still ends strictly earlier, at the edge of what the pages showed)
            walked = self.guesses >= 1 and bool(self.shown)
            if (self.failures >= 2 or walked) and not (walked and self._burst_walk()):
                a = (
                    self.cursor
                    if self.floor is None
                    else min(self.ceiling - 1, max(self.cursor, self.floor))
                )
                shrink = _SHRINK if self.guesses < 2 and not walked else 0.5
                hi = min(hi, a + math.floor((self.ceiling - a) * shrink))
        # newest first without a count, a page shows every incident above its lowest one:
        # while what lies below that is unknown, a request stops there (it completes the
        # unknown stretch, or shows the next page down), never mixing pages already shown
        # with an unknown number below them (a request that fails showing little new); unless
        # that stretch is narrow next to the slice just completed, and that slice held enough
        # to measure a density by
        gap_end = self._gap_end()
        if 2 * (gap_end - self.cursor) > self.last_width or self.last_items < 8:
            hi = max(min(hi, gap_end), self.cursor + 1)
        counted = any(b.exact for b in self.bounds)
        # splitting an instant by creation time (``floor`` set), without a count, below pages
        # shown newest first: ask up to the edge of what they showed, so that each page shows
        # the next one down with no stretch left unseen between them. The walk stores each
        # page's incidents; once a short page finds the bottom, every creation time above it
        # is known and the proof climbs in slices of nearly a page (where the walk skipped
        # stretches, the slices proving them held about 60 of 99). Still narrower than the
        # failed request: ``hi`` is.
        walk = self.ceiling is not None and self.guesses >= 1 and bool(self.shown)
        if walk and self.floor is not None and not counted:
            self.planned = None
            return max(self.cursor + 1, min(hi, gap_end))
        if (self.probe and not counted) or (not self.bounds and self.rate is None):
            # nothing known, or the density just proved wrong: one answer for all of it tells
            # the most, up to what is known to be there (never knowingly over the room)
            self.planned, self.probe = None, False
            if self.bounds and self.last_items == 0 and self.last_width > 0:
                # an empty slice below pages shown newest first without a count: the next
                # steps up to four times its width (the incidents start somewhere between it
                # and the pages: asking for all of it would only show the next page down)
                hi = min(hi, self.cursor + 4 * self.last_width)
            return self._outside_cluster(self._within(room, hi))
        if self.underrun and self.ceiling is None:
            # never past what is known to hold more than the room
            floor_end = self._within(room, min(hi, self.cursor + 2 * self.underrun))
            # but not up to just below a region counted over the room: that request would fail
            # on the count again (its incidents are somewhere in it, not necessarily at its top),
            # so the plan inside the region decides
            ahead = next((b for b in self.bounds if b.exact and b.h > floor_end), None)
            if ahead is not None and ahead.n > room:
                floor_end = self.cursor + 1
        else:
            floor_end = self.cursor + 1
        if self.risk(hi) <= room:
            end = hi
        elif self.risk(floor_end) > room and floor_end > self.cursor + 1:
            end = floor_end  # the plan was wrong where it thought incidents were: widen
        else:
            lo_t, hi_t = self.cursor + 1, hi
            while lo_t < hi_t:  # the largest t with risk(t) <= room
                mid = (lo_t + hi_t + 1) // 2
                if self.risk(mid) <= room:
                    lo_t = mid
                else:
                    hi_t = mid - 1
            end = lo_t
        end = self._outside_cluster(end)
        k, u = self.expected(end)
        self.planned = (k, u) if not math.isinf(u) else None
        return end

    def _outside_cluster(self, end: int) -> int:
        """``end``, or the lowest instant of a cluster of sampled incidents it would cut.

        A failed page without a count, in no order, shows a sample of its region: where that
        sample bunches (several incidents within a thousandth of the slice, on both sides of
        ``end``), a burst is there and the page showed only part of it, so the known ones
        there stand for more than themselves. A slice ending inside it counts them one each
        and fails on the rest of the burst; the stretch below is asked for apart instead, and
        the burst from its lowest known instant."""
        s = self.sampled
        i = bisect_left(s, end)
        if i == 0 or i == len(s):
            return end
        w = max(1, (end - self.cursor) // 1000)
        if s[i] - s[i - 1] > w:
            return end
        lo = i - 1
        while lo > 0 and s[lo] - s[lo - 1] <= w:
            lo -= 1
        hi = i
        while hi + 1 < len(s) and s[hi + 1] - s[hi] <= w:
            hi += 1
        if hi - lo + 1 < 4 or s[lo] <= self.cursor:
            return end
        return s[lo]

    def _within(self, room: float, hi: int) -> int:
        """The largest end up to ``hi`` before which at most ``room`` incidents are known to
        lie (at least the cursor + 1)."""
        if self.surely_below(hi) <= room:
            return hi
        lo_t, hi_t = self.cursor + 1, hi
        while lo_t < hi_t:
            mid = (lo_t + hi_t + 1) // 2
            if self.surely_below(mid) <= room:
                lo_t = mid
            else:
                hi_t = mid - 1
        return lo_t

    def _burst_walk(self) -> bool:
        """Whether the request that just failed below pages shown newest first, without a
        count, should be followed by one up to the edge of what they showed (the next page
        down) rather than by one for half the stretch below them. Only right after an empty
        slice at the cursor (the stretch below is sparse: halving it again would find
        another empty half, a request each) and when the failed page is a burst in that
        stretch (its items span at most a hundredth of it, and bunch at its low end within
        a thousandth): the rest of the burst then lies just below the page, so each request
        shows the next page of it, still ending strictly earlier; once a short answer finds
        its bottom, every instant of it is known and each is proved with the stretch up to
        the next. A dense stretch (a backfill's newest days, a steady tick's updates) keeps
        the halving."""
        if self.last_items or not self.last_width:
            return False
        failed = next((b for b in self.bounds if b.h == self.ceiling and not b.exact), None)
        if failed is None or failed.shape != "desc":
            return False
        below = failed.s_min - self.cursor
        return (
            failed.spacing * failed.n < below / 1000 and (failed.s_max - failed.s_min) * 100 < below
        )

    def _gap_end(self) -> int:
        """Where the unknown stretch at the cursor meets a stretch that pages shown newest
        first without a count showed whole (from their lowest incident up to their request's
        end); the axis end when none lies ahead."""
        pos = self.cursor
        for lo, hi in sorted(self.shown):
            if hi <= pos:
                continue
            if lo > pos:
                return lo
            pos = hi
        return self.end

    def _train(self, overflowed: bool) -> None:
        """Steer the margin: up after a planned slice overflowed, down a tenth as much after one
        that did not (a plan made from a guessed density, or with few unknown incidents, teaches
        nothing)."""
        planned = self.planned
        self.planned = None
        if planned is None or planned[1] < 5 or not self.recent:
            return
        if overflowed:
            self.margin = min(1.0, self.margin + _STEP)
        else:
            self.margin = max(0.0, self.margin - _STEP / 10)

    def complete(self, end: int, items: int, *, pool: bool = True) -> None:
        """``[cursor, end)`` was read whole: it held ``items`` incidents (``pool``: count them
        in the density; not a burst at one instant, which says nothing of the time around)."""
        width = self.span(self.cursor, end)
        instant = end - self.cursor <= 1
        planned = self.planned
        self._train(False)
        self.underrun = 0
        if planned is not None and planned[1] >= 8 and items - planned[0] < planned[1] / 4:
            self._short += 1
            if self._short >= 2:
                self.underrun = end - self.cursor
        else:
            self._short = 0
        self.ceiling, self.failures, self.guesses = None, 0, 0
        inside = self.floor is None or (
            end > self.floor and (self.top is None or self.cursor < self.top)
        )
        # one instant (a burst a failed answer showed) says nothing of the density around it:
        # it is not pooled, and with nothing known ahead the next request asks for the rest.
        # Only with nothing known ahead: where failed answers showed what lies ahead (a burst
        # walked down a page at a time, its instants known), the plan made from them places
        # the next cut better than asking for everything up to what is known to be there
        if end - self.cursor <= 1:
            ahead = self.known_below(self.end) - self.known_below(end)
            self.probe = not ahead and not any(b.h > end for b in self.bounds)
        elif pool and inside:
            self._observe(items, width)
        for b in self.bounds:
            if b.exact:
                b.n = max(0.0, b.n - items)
            elif b.shape == "desc" and end > b.reach:
                # part of the burst it guessed was read: keep the guess for the rest only
                lo = max(self.cursor, b.reach)
                b.n *= max(0.0, b.s_min + 1 - end) / max(1, b.s_min + 1 - lo)
                b.reach = max(b.reach, end)
        # a guess without a count holds nothing above its page's lowest item
        self.bounds = [
            b for b in self.bounds if b.h > end and (b.exact or b.shape != "desc" or b.s_min >= end)
        ]
        self.last_width, self.last_items = end - self.cursor, items
        self.cursor = end
        self.shown = [(lo, hi) for lo, hi in self.shown if hi > end]
        del self.sampled[: bisect_left(self.sampled, end)]
        # known incidents behind the cursor still shape the regions they were seen in
        keep = min((b.lo0 for b in self.bounds), default=end)
        first = bisect_left(self.times, keep)
        if first:
            gone = set(self.times[:first])
            self.known = {k: v for k, v in self.known.items() if v[0] not in gone}
            del self.times[:first]
        if planned is not None and planned[0] > 0 and pool and not instant:
            # how many incidents each known one stood for here; from a few known ones only
            # downward (chance may say 10 when 3 were known, and a slice planned with fewer
            # than 5 would never correct it: slices then held a tenth of a page); never from
            # one instant or a tie (a burst says nothing of what known ones stand for elsewhere)
            ratio = min(10.0, max(1.0, items / planned[0]))
            self.inflate = ratio if planned[0] >= 5 else min(self.inflate, ratio)
        if self.known_below(self.end) == 0:
            self.inflate = 1.0

    def _observe(self, items: int, width: int) -> None:
        """The density after a completed slice: the pooled ratio of the last few slices; a
        slice far sparser than the pool starts it afresh (a quiet stretch), and so does a far
        denser one as wide as a thousandth of the axis at least (the density rose); a narrower
        dense one is pooled (cut around a burst, it says little about the stretch after it),
        counted as a thousandth of the axis wide, so that the density around a burst does not
        look like the burst's."""
        expected = (self.rate or 0.0) * width
        least = self.span(self.origin, self.end) // 1000
        if self.rate is None or (expected >= 4 and items < expected / 4):
            # far sparser than planned: the density seen so far says nothing of what is left,
            # so the next request asks for all of it (its answer tells the most)
            self.probe = self.rate is not None
            self.recent = []
        elif items >= 8 and items > 4 * expected and width >= least:
            self.recent = []
        width = max(width, least)
        self.recent.append((items, width))
        del self.recent[:-_POOL]
        total = sum(n for n, _ in self.recent)
        span = sum(w for _, w in self.recent)
        self.rate = max(total, 0.5) / max(1, span)  # an empty slice still says "sparse"

    def fail(self, end: int, read: PagedRead, *, created: bool = False) -> None:
        """``[cursor, end)`` was asked for and not proved complete: remember what it showed
        (``created``: this axis is a tie's creation times)."""
        items = read.times(created=created)
        shown_at = [t for _, t, _ in items]
        if shown_at and self.floor is not None and min(shown_at) < self.floor:
            self.floor = max(self.cursor, 2 * min(shown_at) - self.floor)  # it was too high
        if shown_at and self.top is not None and max(shown_at) >= self.top:
            self.top = max(shown_at) + 1
        width = self.span(self.cursor, end)
        self.ceiling = end if self.ceiling is None else min(self.ceiling, end)
        self.failures += 1
        self.learn(items)
        self.probe = False
        shown = len(items)
        count = read.count if read.count is not None else read.first_count
        if count is None:
            # no count: the answer only says "more than it showed" (what it trains with)
            self.guesses += 1
            self._train(True)
            if _shape(read.first_order) == "desc":
                # newest first: what it did not show lies below its lowest item; guess a
                # page's worth carrying on at its spacing (a burst), the density elsewhere
                bound = self._bound(end, float(shown), False, read, "desc", sorted(shown_at))
                bound.reach = max(self.cursor, bound.s_min - math.ceil(bound.spacing * shown))
                self._add(bound)
                # (at its lowest instant itself the page may have cut a tie)
                self.shown.append((bound.s_min + 1, end))
                if self.rate is None:
                    # no density yet: between twice the page over the region and the page's
                    # own density (a burst or not, the first answer cannot tell)
                    local = 1 / max(1.0, bound.spacing)
                    self.rate = math.sqrt(self._guess(end, read) / width * local)
                return
            # in no order seen: its guess is a density for the next slice alone (the completed
            # slices' pool takes over again after it), never a fixed number to fit in; the
            # incidents it showed are a sample of more (as many again at least; more where
            # they bunch: a burst it cut), until completed slices say how many more
            self.rate = max(self.rate or 0.0, self._guess(end, read) / width)
            for t in shown_at:
                insort(self.sampled, t)
            uneven = _uneven(sorted(shown_at), self._base(self.cursor, end), end)
            self.inflate = max(self.inflate, 2.0 + uneven)
            return
        n = float(max(count, shown))
        known = float(self.known_below(end))
        self._train(True)
        density = max(n, 1.0) / width
        order = _shape(read.first_order)
        bunched = order == "flat" or (len(set(shown_at)) * 4 <= len(shown_at))
        if bunched:
            pass  # a page at one or a few instants: a burst, not the density around it
        elif self.rate is None or density > 2 * self.rate or density < self.rate / 2:
            self.rate, self.recent = density, []
        if read.pages > 1 and shown >= n * 0.5:
            order = "spread"  # the pages showed most of it: interpolate what was seen
        self._add(self._bound(end, max(n, known), True, read, order, sorted(shown_at)))

    def _bound(
        self, end: int, n: float, exact: bool, read: PagedRead, order: str, sample: list[int]
    ) -> _Bound:
        """A bound for ``[cursor, end)`` from what ``read`` showed (``sample``: the coordinates
        of its incidents, sorted)."""
        first = read.first_order
        s_min, s_max = min(first, default=0), max(first, default=0)
        tied = sum(1 for t in first if t == s_min)
        # a page that ends inside an instant (two or more at its lowest): a burst it cut, so
        # what carries on past the density is there; else a share like the page's
        at_min = 1.0 if tied >= 2 else tied / max(1, len(first))
        # the page's density at its low end (where the ones it did not show carry on)
        low = sorted(first)[:11]
        spacing = (low[-1] - low[0]) / (len(low) - 1) if len(low) > 1 else 0.0
        weight = _uneven(sample, self._base(self.cursor, end), end)
        return _Bound(
            end, n, exact, order, self.cursor, s_min, s_max, at_min, sample, weight, spacing
        )

    def _add(self, bound: _Bound) -> None:
        kept = [b for b in self.bounds if b.h != bound.h]
        if bound.exact:
            for b in kept:  # counts grow with the region (a count taken later may be lower)
                if not b.exact:
                    continue
                if b.h < bound.h:
                    b.n = min(b.n, bound.n)
                else:
                    b.n = max(b.n, bound.n)
        kept.append(bound)
        kept.sort(key=lambda b: b.h)
        self.bounds = kept

    def _guess(self, end: int, read: PagedRead) -> float:
        """Without a count: how many ``[cursor, end)`` holds (more than the answer showed).
        With a density that planned it, a little more than that predicted (an overflow by
        chance); without one, twice what it showed."""
        shown = len(read.times())
        predicted = (self.rate or 0.0) * self.span(self.cursor, end)
        if not self.recent:  # the density is itself a guess: double it
            return max(shown + 1.0, 2.0 * shown, 2 * predicted)
        return max(shown + 1.0, 1.1 * predicted)


class Listing:
    """The slices of one listing of ``[start, end)``, planned as the answers come in.

    Use: ``req = listing.next()``; send it, feeding each page to ``read = listing.reader(req)``
    while ``read.add`` says so; ``listing.record(req, read)``; repeat until ``next`` returns
    None. ``cursor`` is the end of the fully read prefix (the checkpoint may go there).
    ``rate_per_hour``: the density a previous run saw (kept in the checkpoint), or None.
    ``paged_items``: the most incidents a slice read across pages may hold (0: single pages);
    ``settled``: paged slices end at or before it (older than the late-arrival bound).
    """

    def __init__(
        self,
        start: datetime,
        end: datetime,
        *,
        page_size: int,
        rate_per_hour: float | None = None,
        fill: float = 0.95,
        paged_items: int = 0,
        settled: datetime | None = None,
    ) -> None:
        if page_size < 2:
            raise ValueError("page_size must be at least 2")
        if paged_items and (paged_items < page_size or settled is None):
            raise ValueError("paged slices need paged_items >= page_size and a settled instant")
        rate = rate_per_hour / 3.6e9 if rate_per_hour and rate_per_hour > 0 else None
        self.page_size = page_size
        self.fill = fill
        self.paged_items = paged_items
        self._settled = to_us(settled) if settled is not None and paged_items else None
        self._room = paged_items
        #: whether the last answer's first page carried ``@odata.count`` (paging needs it)
        self._counted = True
        self._axis = _Axis(
            to_us(start), max(to_us(start), to_us(end)), rate=rate, origin=to_us(start)
        )
        self._tie: _Axis | None = None
        self._tie_at: int | None = None
        self._tie_items = 0
        self._exhaust: tuple[int, int] | None = None

    @property
    def cursor(self) -> datetime:
        """Every incident updated in ``[start, cursor)`` has been read."""
        return from_us(self._axis.cursor)

    @property
    def end(self) -> datetime:
        """Where the listing ends (exclusive)."""
        return from_us(self._axis.end)

    @property
    def rate_per_hour(self) -> float | None:
        """The density seen, in incidents per hour (kept in the checkpoint for the next run)."""
        rate = self._axis.rate
        return None if rate is None else rate * 3.6e9

    @property
    def paging(self) -> bool:
        """Whether slices before the settled instant are read across pages."""
        return self._settled is not None and self._counted and self._room >= self.page_size

    @property
    def paged_room(self) -> int:
        """The most incidents the next paged slice may hold: ``paged_items``, halved after each
        slice whose pages could not add up while it was read (activity), a page after one
        holding incidents without an id, doubled back after each slice completed. Under steady
        activity the slices shrink until a page or two reads them before the next change; a
        single page needs no stability at all."""
        return self._room

    @property
    def paged_limit(self) -> int:
        """The most incidents a paged slice is read to (``PagedRead``'s limit): its room plus a
        page. Slices are planned to hold at most the room, and a page more is still within
        ``$skip`` ``paged_items`` (the room's own pages end at ``$skip`` room - page), so a
        count a little over the plan is read to the end instead of splitting the slice and
        reading it again."""
        return self._room + self.page_size

    def reader(self, request: SliceRequest) -> PagedRead:
        """A ``PagedRead`` for the answer to ``request``."""
        return PagedRead(request, top=self.page_size, limit=self.paged_limit)

    def stop_paging(self) -> None:
        """Read one page per slice from now on (the service's pages repeat incidents between
        requests: reading across pages would then keep failing its verification)."""
        self._settled = None

    def next(self, max_items: int | None = None) -> SliceRequest | None:
        """The next request, or None when the whole range is read.

        ``max_items``: the most incidents a paged slice may hold this time (the caller's time
        left, in pages, times the page size); below a page, the request is a single page.
        """
        axis = self._axis
        if axis.done:
            return None
        room = self._room if max_items is None else min(self._room, max_items)
        settled = self._settled if self._counted and room >= self.page_size else None
        single = self.page_size - 1
        if self._tie_at is None:
            x = axis.cursor
            paged_here = settled is not None and x + 1 <= settled
            if not paged_here and axis.exact_at(x) >= self.page_size:
                self._enter_tie(x, None)  # a burst known to be over a page: split it at once
        if self._tie_at is not None:
            return self._next_tie(settled, room)
        if settled is not None and self._worth_paging(axis, settled):
            end = axis.propose(room * self.fill, settled)
            return SliceRequest(from_us(axis.cursor), from_us(end), paged=True)
        end = axis.propose(single)
        if end == axis.cursor + 1 and axis.exact_at(axis.cursor) >= self.page_size:
            # more than a page is known to be at this one instant: split it at once. Only
            # known: where a page is merely expected there (a guess without a count), asking
            # for the instant whole costs one request and completes it when the guess was
            # high, and when it overflows its page starts the split (two requests at least)
            self._enter_tie(axis.cursor, None)
            return self._next_tie(settled, room)
        return SliceRequest(from_us(axis.cursor), from_us(end))

    def _next_tie(self, settled: int | None, room: int) -> SliceRequest:
        tie = self._tie
        assert tie is not None and self._tie_at is not None
        at = from_us(self._tie_at)
        after = from_us(self._tie_at + 1)
        if self._exhaust is not None:
            c0, c1 = self._exhaust
            return SliceRequest(at, after, from_us(c0), from_us(c1), exhaust=True)
        paged = settled is not None and self._tie_at + 1 <= settled
        end = tie.propose(room * self.fill if paged else self.page_size - 1)
        return SliceRequest(at, after, from_us(tie.cursor), from_us(end), paged=paged)

    def _worth_paging(self, axis: _Axis, settled: int) -> bool:
        """Whether the next slice should be read across pages: only before ``settled``, and only
        when more than one page is expected there (an incremental run's few updates take one
        request, not a paged slice plus the unsettled rest)."""
        if axis.cursor >= settled:
            return False
        if not axis.bounds and axis.rate is None:
            return True  # nothing known yet (a first run)
        k, u = axis.expected(settled)
        return k + u > self.page_size - 1

    def _enter_tie(self, x: int, read: PagedRead | None) -> None:
        """Split the instant ``x`` by creation time, with what is known of its incidents."""
        axis = self._axis
        known = {k: c for k, (t, c) in axis.known.items() if t == x and c is not None}
        if read is not None:
            known.update({k: c for k, (_, c) in read.seen.items() if c is not None})
        created = sorted(known.values())
        lo, hi = to_us(CREATED_MIN), to_us(CREATED_MAX)
        floor = None
        if created:
            # creation times of incidents updated at x, for planning only: newest first, the
            # ones not seen may be as far below the lowest seen as it is below x; in no order,
            # a gap's worth below the lowest seen
            order = read.first_created if read is not None else []
            if _shape(order) == "desc":
                below = max(x - created[0], 1_000_000)
            else:
                below = max((created[-1] - created[0]) // len(created), 1_000_000)
            floor = max(lo, created[0] - below)
        tie = _Axis(lo, hi, floor=floor, top=x + 1, origin=lo)
        tie.learn([(k, c, x) for k, c in known.items()])
        count = None if read is None else read.count
        if count is None and axis.exact_at(x) > len(known):
            count = round(axis.exact_at(x))  # a counted one-instant region of the main axis
        if count is not None:
            order = read.first_created if read is not None else []
            tie.bounds = [
                _Bound(
                    hi,
                    float(max(count, len(known))),
                    True,
                    _shape(order),
                    lo0=lo,
                    s_min=min(order, default=0),
                    s_max=max(order, default=0),
                    sample=created,
                    weight=_uneven(created, floor or lo, hi),
                )
            ]
        elif created:
            # no count: more than a page is there; guess twice what was seen, or what the main
            # axis expected at x (a burst a page cut there), spread like what was seen
            expected = sum(axis.expected(x + 1)) if axis.cursor == x else 0.0
            guess = max(2.0 * len(created), expected if math.isfinite(expected) else 0.0)
            tie.rate = guess / max(1, x + 1 - (floor or lo))
        if read is not None:
            tie.ceiling = hi  # the whole instant was asked for: the next request asks for less
        self._tie, self._tie_at, self._tie_items = tie, x, 0

    def record(self, request: SliceRequest, read: PagedRead) -> bool:
        """Take the answer to ``request`` (every page read of it); True when it completed a
        slice of the listing (the checkpoint may move to ``cursor``)."""
        if read.pages:
            self._counted = read.first_count is not None
        if request.paged:
            self._adjust_room(read)
        elif read.complete and self._room < self.paged_items:
            self._room = min(self.paged_items, 2 * self._room)  # widen back after a shrink
        if self._tie_at is not None:
            return self._record_tie(request, read)
        axis = self._axis
        start, end = to_us(request.start), to_us(request.end)
        if read.complete:
            axis.complete(end, len(read.seen) + read.missing)
            return True
        if end - start <= 1:
            self._enter_tie(start, read)  # more than a page at one instant
            return False
        axis.fail(end, read)
        return False

    def _record_tie(self, request: SliceRequest, read: PagedRead) -> bool:
        tie = self._tie
        assert tie is not None and self._tie_at is not None
        c1 = to_us(request.created_end or CREATED_MAX)
        c0 = to_us(request.created_start or CREATED_MIN)
        if request.exhaust:
            self._exhaust = None
            tie.complete(c1, len(read.seen))
            self._tie_items += len(read.seen)
        elif read.complete:
            n = len(read.seen) + read.missing
            tie.complete(c1, n)
            self._tie_items += n
        elif c1 - c0 <= 1:
            self._exhaust = (c0, c1)
            return False
        else:
            tie.fail(c1, read, created=True)
            return False
        if tie.done:
            self._axis.complete(self._tie_at + 1, self._tie_items, pool=False)
            self._tie, self._tie_at = None, None
            return True
        return False

    def _adjust_room(self, read: PagedRead) -> None:
        """How much the next paged slice may hold, after this paged answer."""
        if read.complete:
            self._room = min(self.paged_items, 2 * self._room)
        elif read.unstable:
            self.stop_paging()
        elif read.missing:
            # incidents without an id cannot be told apart: single pages prove their slices
            self._room = self.page_size - 1
        elif read.moved or (
            read.first_count is not None
            and not read.linked
            and read.first_count <= read.limit
            and len(read.seen) < read.first_count
        ):
            # incidents left while it was read: smaller slices read before the next change
            self._room = max(self.page_size - 1, min(self._room, len(read.seen)) // 2)
