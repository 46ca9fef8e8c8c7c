"""Pure planning of an incident listing as time slices, and why it never misses an incident.

A listing of ``[start, end)`` on last-update time is cut into slices ``[a, b)``. Each slice is
asked for with one request carrying both bounds in ``$filter`` (``lastUpdate ge a and
lastUpdate lt b``) and ``$top``; the planner decides the bounds, the caller sends the request.

Correctness rests on three documented facts only: ``$filter`` on the last-update time with
``ge``/``lt`` (legacy: https://learn.microsoft.com/defender-xdr/api-list-incidents, Graph:
https://learn.microsoft.com/graph/api/security-list-incidents), ``$top`` bounding a page, and
``@odata.nextLink`` present when the service has more (Graph paging,
https://learn.microsoft.com/graph/paging). It does not rest on the order of results, on
``$skip`` offsets staying put while data changes, or on a short page meaning the end when a link
says otherwise (defender-api.md 0.1 items 1-3):

- A slice is **complete** only when one response for exactly that slice had no nextLink and
  fewer items than ``$top``. That response then held every incident whose last update was in
  ``[a, b)`` at the moment it was answered, whatever their order.
- Otherwise the slice is **split** into smaller slices, each asked for afresh. Items of the
  overflowing response are valid versions and the caller stores them (deduplication keeps one
  copy); only completeness needs a fresh answer.
- An incident updated while we list moves to a later last-update time: it leaves an older slice
  and enters a newer one, still unread or later re-read through the run's overlap, so it is
  read in its newer version. A slice already complete stays complete for the versions it held.
- **Across pages** (Graph, where ``$count=true`` gives ``@odata.count`` on every page): a slice
  that ends before the caller's ``settled`` instant may instead be read through its nextLinks
  (never past ``$skip`` 500). It is complete only when every page carried the same count, the
  last page had no nextLink, and the distinct incidents read equal that count. Why that is
  enough whatever the order and however the offsets shift: ``settled`` is older than the
  late-arrival bound (safety lag + overlap), so no incident can *enter* such a slice while it
  is read; one that leaves it (updated, so its last-update time moves to now) leaves for good
  and lowers the count. An unchanged count therefore means the slice held the same set
  throughout, every page was drawn from that set, and as many distinct incidents as the set
  holds were read: all of them. Otherwise the slice is split as above (its items are stored).
  A listing whose counts hold still but whose pages repeat incidents (an order that is not
  stable between requests) stops reading across pages: single pages then need no stability.
- Slices complete oldest first, so ``[start, cursor)`` is always fully read: the caller's
  checkpoint may move to ``cursor`` (never past it) after storing what was read.
- **Ties**: more incidents at one instant (``b - a`` = 1 µs, the resolution kept: the 7th
  fractional digit is dropped on both sides consistently, see ``shared.clock.parse_utc``) than a
  page holds are split by a second documented filterable field, the creation time
  (``createdTime``/``createdDateTime``), on the same rules. Only if more than a page share both
  instants does the caller page that pair through nextLinks (never past ``$skip`` 500) and re-read
  until a pass finds nothing new, with a warning: the one place where a guarantee is weaker.

Efficiency (not correctness): the slice width follows the density seen, so a slice is expected
to fill ``fill`` of a page; on Graph ``$count=true`` gives the exact count of an overflowing
slice, and its items' times are a sample for placing the sub-slice bounds. Time is handled in
integer microseconds since the epoch.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: the creation-time range used when splitting one last-update instant by creation time
CREATED_MIN = datetime(1970, 1, 1, tzinfo=UTC)
CREATED_MAX = datetime(9999, 1, 1, tzinfo=UTC)


def to_us(value: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int) -> datetime:
    """The aware UTC datetime of ``value`` microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=value)


#: how many recent slices pool into the density estimate
_POOL = 8


@dataclass(frozen=True, slots=True)
class SliceRequest:
    """What to ask for: last update in ``[start, end)`` (and creation in ``[created_start,
    created_end)`` when splitting a tie). ``exhaust``: page this pair through links (last resort);
    ``paged``: read it across pages, complete only when verified by count.
    """

    start: datetime
    end: datetime
    created_start: datetime | None = None
    created_end: datetime | None = None
    exhaust: bool = False
    #: read through the slice's links and verify by ``@odata.count`` (see the module docstring)
    paged: bool = False


@dataclass
class _Hint:
    """What an overflowing response told about ``[cursor, end)``: its count and a sample."""

    end: int
    count: int | None
    sample: list[int]  # sorted item times inside the region
    completed: int = 0  # slices completed inside the region since the hint was made
    shape: str = "spread"  # where the sample sits (``_cluster``), decided when it was taken
    estimate: int = 0  # without ``$count``: the count guessed from the sample


@dataclass
class _Axis:
    """Slices along one time axis, oldest first, with a density estimate (items per µs)."""

    cursor: int
    end: int
    page_size: int
    fill: float
    rate: float | None = None
    hint: _Hint | None = None
    #: whether the service's order may cluster a sample on this axis (not on creation time)
    ordered: bool = True
    #: (items, width) of the last completed slices: the density is their ratio
    recent: list[tuple[int, int]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.cursor >= self.end

    #: mean squared relative error of density-planned slices (how far counts stray from plan)
    spread: float = 0.08**2
    #: the count a density-planned request was planned to hold (its error trains ``spread``)
    planned: float | None = None
    #: the count the last request was expected to hold, however it was planned
    expect: float | None = None
    #: the last slice held far fewer items than expected
    underrun: bool = False
    #: width of the last completed slice
    last_width: int = 0

    #: the most items one request may hold: a page less one, or a multi-page slice's cap
    room: int = 0

    @property
    def target(self) -> int:
        """Items to aim for: as many as fit with a margin of 1.5 standard deviations of the
        observed planning error, at most ``fill`` of the room (a page, or a paged slice)."""
        room = self.room or self.page_size - 1
        margin = 1 + 1.5 * math.sqrt(self.spread)
        return max(1, min(math.floor(self.fill * room), math.floor(room / margin)))

    def next_end(self, limit: int | None = None) -> int:
        """The end of the next slice to ask for (> cursor, <= end, <= ``limit``).

        Whatever the density model proposes, the slice never reaches past the listing's end:
        the checkpoint moves to a completed slice's end, so a slice beyond ``end`` would move it
        past data the run was not allowed to read yet. ``limit``: where a paged slice must end
        (the settled instant).
        """
        end = self.end if limit is None else min(self.end, limit)
        return max(self.cursor + 1, min(self._propose_end(), end))

    def _propose_end(self) -> int:
        target = self.target
        self.planned = None
        self.expect = float(target)
        hint = self.hint
        if hint is not None:
            count = hint.count
            if count is None:  # legacy: no $count; estimate, at least one more item
                guess = self.rate * (hint.end - self.cursor) if self.rate else 0.0
                est = hint.estimate if hint.shape == "newest" else 2 * len(hint.sample)
                count = max(len(hint.sample) + 1, round(guess), est)
            lo = hint.sample[0] if hint.sample else hint.end
            below = hint.shape == "newest" and self.cursor < lo
            if count > target:
                end = _boundary(self.cursor, hint.end, count, hint.sample, target, hint.shape)
                if below and hint.completed and self.rate:
                    # below the sample the items are unseen: the density of the slices just
                    # read predicts them better than spreading them evenly
                    by_rate = self.cursor + max(1, math.floor(target / self.rate))
                    if by_rate < lo:
                        end = by_rate
                        self.planned = self.rate * (end - self.cursor)
                if self.underrun and self.last_width:
                    # the model put items where there were none: widen quickly
                    end = max(end, self.cursor + 4 * self.last_width)
                    self.planned = None
                if self.underrun and not below and hint.sample and hint.sample[0] >= end:
                    end = max(end, hint.sample[0] + 1)  # reach the next known item
                # more than a page is believed to be left: never ask for all of it at once
                return min(end, hint.end) if hint.end - self.cursor <= 1 else min(end, hint.end - 1)
            if hint.count is not None and count == 0 and self.rate is None:
                return self.end
            # the rest of the hinted region fits: go past it by the density
            room = target - count
            beyond = room / self.rate if self.rate else 0.0
            return min(self.end, hint.end + max(0, math.floor(beyond)))
        if self.rate is None or self.rate <= 0:
            return self.end
        width = max(1, math.floor(target / self.rate))
        end = min(self.end, self.cursor + width)
        self.planned = self.expect = self.rate * (end - self.cursor)
        return end

    def complete(self, end: int, items: int) -> None:
        width = max(1, end - self.cursor)
        self.underrun = bool(self.expect and items < self.expect / 4)
        if self.planned and self.planned >= 5:
            error = (items - self.planned) / self.planned
            self.spread = 0.8 * self.spread + 0.2 * min(error * error, 1.0)
        self.planned = self.expect = None
        self.last_width = width
        self.rate = self._observe(items, width)
        hint = self.hint
        self.cursor = end
        if hint is not None:
            if end >= hint.end:
                self.hint = None
            else:
                hint.completed += 1
                if hint.count is not None:
                    hint.count = max(0, hint.count - items)
                hint.estimate = max(0, hint.estimate - items)
                hint.sample = hint.sample[bisect_left(hint.sample, end) :]

    def _observe(self, items: int, width: int) -> float:
        """The density after a completed slice: the pooled ratio of the last few slices, reset
        when this one disagrees by more than chance would explain (a burst or a gap)."""
        expected = (self.rate or 0.0) * width
        surprising = abs(items - expected) > 3 * math.sqrt(max(expected, 1.0)) + 2
        if self.rate is None or surprising:
            self.recent = []
        self.recent.append((items, width))
        del self.recent[:-_POOL]
        total = sum(n for n, _ in self.recent)
        span = sum(w for _, w in self.recent)
        return max(total, 0.5) / max(1, span)  # an empty slice still says "sparse"

    def overflow(self, end: int, sample: Sequence[int], count: int | None) -> None:
        if self.planned:
            # a planned slice that overflowed: its count strayed by at least this much
            seen = max(count or 0, len(sample))
            error = (seen - self.planned) / self.planned
            self.spread = 0.8 * self.spread + 0.2 * min(error * error, 1.0)
        self.planned = self.expect = None
        self.underrun = False
        inside = sorted(t for t in sample if self.cursor <= t < end)
        if count is not None:
            count = max(count, len(inside))
            density = max(count, 1) / max(1, end - self.cursor)
            # an overflow is a biased sample (it is seen because it was dense): keep the pooled
            # estimate unless this one is far off it
            if self.rate is None or density > 2 * self.rate or density < self.rate / 2:
                self.rate, self.recent = density, []
        elif self.rate is not None:
            # at least a page was there: the density is at least that
            self.rate = max(self.rate, len(inside) / max(1, end - self.cursor))
        shape, estimate = "spread", 2 * len(inside)
        if self.ordered and count is None and len(inside) >= 2:
            # no count (legacy): a sample that leaves a wide empty gap below and almost none
            # above is the newest items; the density across it then estimates the rest
            s = len(inside)
            spacing = (inside[-1] - inside[0]) / (s - 1) or 1
            below, above = inside[0] - self.cursor, end - inside[-1]
            if above < 2 * spacing and below > 4 * spacing:
                shape = "newest"
                estimate = s + round(below / spacing)
            else:
                shape = _cluster(self.cursor, end, estimate, inside)
        elif self.ordered and count is not None:
            shape = _cluster(self.cursor, end, count, inside)
        self.hint = _Hint(end, count, inside, shape=shape, estimate=estimate)


def _cluster(start: int, end: int, count: int, sample: Sequence[int]) -> str:
    """Where a sample of ``count`` items in ``[start, end)`` sits: ``"newest"`` when it looks
    like the newest items (the service's observed order, not documented: the rest are older),
    ``"oldest"`` for the mirror case, ``"spread"`` when it looks like a random draw.

    Decided by the empty gap below (above) the sample: about ``span / (s + 1)`` for a random
    draw, about ``span * (count - s) / count`` for the newest (oldest) ``s`` of ``count``.
    """
    s = len(sample)
    if s < 2 or count <= s:
        return "spread"
    span = max(1, end - start)
    random_gap = 1 / (s + 1)
    ordered_gap = (count - s) / count
    below = (sample[0] - start) / span
    above = (end - sample[-1]) / span
    if abs(below - ordered_gap) < abs(below - random_gap) and above < below:
        return "newest"
    if abs(above - ordered_gap) < abs(above - random_gap) and below < above:
        return "oldest"
    return "spread"


def _boundary(
    start: int, end: int, count: int, sample: Sequence[int], target: int, shape: str
) -> int:
    """Where, in ``[start, end)`` holding ``count`` items of which ``sample`` are known, the
    first ``target`` items are expected to end."""
    s = len(sample)
    hidden = max(0, count - s)
    span = end - start
    if hidden == 0:
        shape = "spread"

    def expected(t: int) -> float:
        known = bisect_left(sample, t)
        if s == 0:
            return count * (t - start) / span
        lo, hi = sample[0], sample[-1]
        if shape == "newest":
            # the sample is the newest items (the service's observed order): the others are
            # older than it
            return known + hidden * min(1.0, (t - start) / max(1, lo - start))
        if shape == "oldest":
            # the mirror case: the other items are newer than it
            return known + hidden * max(0.0, (t - hi) / max(1, end - hi))
        # a spread sample stands for the whole: interpolate its distribution
        if t <= lo:
            return count * (t - start) / max(1, lo - start) / (s + 1)
        if t >= hi:
            return count * (s + (t - hi) / max(1, end - hi)) / (s + 1)
        i = known  # sample[i-1] < t <= sample[i]
        a, b = sample[i - 1], sample[i]
        frac = (t - a) / max(1, b - a)
        return count * (i + frac) / (s + 1)

    lo_t, hi_t = start + 1, end
    while lo_t < hi_t:
        mid = (lo_t + hi_t) // 2
        if expected(mid) >= target:
            hi_t = mid
        else:
            lo_t = mid + 1
    # the region overflowed: never ask for all of it again (an instant is split by creation time)
    return max(start + 1, min(end - 1, lo_t)) if end - start > 1 else end


@dataclass
class PagedRead:
    """The pages of one ``paged`` request as they are read, and whether they verify its slice.

    ``limit``: the most incidents such a slice may hold (``Listing.paged_items``).
    """

    limit: int
    seen: set[str] = field(default_factory=set)
    updated: list[datetime] = field(default_factory=list)
    created: list[datetime] = field(default_factory=list)
    counts: set[int | None] = field(default_factory=set)
    count: int | None = None  # of the last page
    pages: int = 0
    missing: int = 0  # items without an id: they cannot be told apart, so no verdict
    linked: bool = False  # the last page had a nextLink

    def add(
        self,
        ids: Sequence[str | None],
        updated: Sequence[datetime],
        created: Sequence[datetime],
        *,
        count: int | None,
        linked: bool,
    ) -> bool:
        """Take one page (its items' ids, None where missing, and times); True when the next
        page should be read, False when the pages so far decide (the end, or no verdict can
        come: no count, more than ``limit``, or the count moved)."""
        self.pages += 1
        self.seen.update(i for i in ids if i is not None)
        self.missing += sum(1 for i in ids if i is None)
        self.updated.extend(updated)
        self.created.extend(created)
        self.counts.add(count)
        self.count, self.linked = count, linked
        return self.steady and linked

    @property
    def steady(self) -> bool:
        """Every page carried the same count, within the limit."""
        return len(self.counts) == 1 and self.count is not None and self.count <= self.limit

    @property
    def verified(self) -> bool:
        """The slice is complete: steady, no link left, as many distinct incidents as counted
        (all with ids)."""
        return self.steady and not self.linked and not self.missing and len(self.seen) == self.count

    @property
    def unstable(self) -> bool:
        """The set held still but its pages repeated incidents: the order is not stable."""
        return self.steady and not self.linked and not self.missing and len(self.seen) != self.count


class Listing:
    """The slices of one listing of ``[start, end)``, planned as the answers come in.

    Use: ``req = listing.next()``; send it; ``listing.record(req, ...)``; repeat until ``next``
    returns None. ``cursor`` is the end of the fully read prefix (the checkpoint may go there).
    ``rate_per_hour``: the density a previous run saw (kept in the checkpoint), or None.
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
        #: the most incidents a slice read across pages may hold (0: one page per slice)
        self.paged_items = paged_items
        self._settled = to_us(settled) if settled is not None and paged_items else None
        self._room = paged_items
        self._axis = _Axis(to_us(start), max(to_us(start), to_us(end)), page_size, fill, rate)
        self._tie: _Axis | None = None
        self._tie_at: int | None = None
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
        return self._settled is not None

    @property
    def paged_room(self) -> int:
        """The most incidents the next paged slice may hold: ``paged_items``, halved after each
        slice whose count moved while it was read (activity), a page after one holding incidents
        without an id, doubled back after each slice completed. Under steady activity the slices
        shrink until a page or two reads them before the next change; a single page needs no
        stability at all."""
        return self._room

    @property
    def paged_limit(self) -> int:
        """The most incidents a paged slice is read to (``PagedRead``'s limit): its room plus a
        page. Slices are planned to hold at most the room, and a page more is still within
        ``$skip`` ``paged_items`` (the room's own pages end at ``$skip`` room - page), so a
        count a little over the plan is read to the end instead of splitting the slice and
        reading it again."""
        return self._room + self.page_size

    def stop_paging(self) -> None:
        """Read one page per slice from now on (the service's pages repeat incidents between
        requests: reading across pages would then keep failing its verification)."""
        self._settled = None
        self._axis.room = 0
        if self._tie is not None:
            self._tie.room = 0

    def next(self, max_items: int | None = None) -> SliceRequest | None:
        """The next request, or None when the whole range is read.

        ``max_items``: the most incidents a paged slice may hold this time (the caller's time
        left, in pages, times the page size); below a page, the request is a single page.
        """
        axis = self._axis
        if axis.done:
            return None
        settled = self._settled
        room = self._room if max_items is None else min(self._room, max_items)
        if room < self.page_size:
            settled = None
        if self._tie_at is not None:
            tie = self._tie
            assert tie is not None
            at = from_us(self._tie_at)
            after = from_us(self._tie_at + 1)
            if self._exhaust is not None:
                c0, c1 = self._exhaust
                return SliceRequest(at, after, from_us(c0), from_us(c1), exhaust=True)
            paged = settled is not None and self._tie_at + 1 <= settled
            tie.room = room if paged else 0
            end = tie.next_end()
            return SliceRequest(at, after, from_us(tie.cursor), from_us(end), paged=paged)
        if settled is not None and self._worth_paging(axis, settled):
            axis.room = room
            return SliceRequest(from_us(axis.cursor), from_us(axis.next_end(settled)), paged=True)
        axis.room = 0
        return SliceRequest(from_us(axis.cursor), from_us(axis.next_end()))

    @staticmethod
    def _worth_paging(axis: _Axis, settled: int) -> bool:
        """Whether the next slice should be read across pages: only before ``settled``, and only
        when more than one page is expected there (an incremental run's few updates take one
        request, not a paged slice plus the unsettled rest)."""
        if axis.cursor >= settled:
            return False
        if axis.hint is not None or axis.rate is None:
            return True  # splitting a dense region, or nothing known yet (a first run)
        axis.room = 0
        return axis.rate * (settled - axis.cursor) > axis.target

    def record_paged(self, request: SliceRequest, read: PagedRead) -> bool:
        """Take the pages of a ``paged`` request; True when they completed (verified) its slice.
        Pages that repeated incidents while the set held still stop paging for the listing."""
        if read.unstable:
            self.stop_paging()
        elif read.verified:
            self._room = min(self.paged_items, 2 * self._room)
        elif len(read.counts) > 1:
            self._room = max(self.page_size - 1, self._room // 2)
        elif read.missing:
            # incidents without an id cannot be told apart: single pages prove their slices
            self._room = self.page_size - 1
        return self.record(
            request,
            updated=read.updated,
            created=read.created,
            full=not read.verified,
            count=read.count,
        )

    def record(
        self,
        request: SliceRequest,
        *,
        updated: Sequence[datetime],
        created: Sequence[datetime],
        full: bool,
        count: int | None = None,
    ) -> bool:
        """Take the answer to ``request``; return True when it completed a slice.

        ``full``: the answer had a nextLink or ``page_size`` items (the slice is then split);
        for a ``paged`` request: the pages read did not verify the slice complete.
        ``updated``/``created``: the answer's items' times (a sample for the split).
        ``count``: ``@odata.count`` (of the last page read, for a paged request), if given.
        """
        axis = self._axis
        if self._tie_at is not None:
            tie = self._tie
            assert tie is not None
            if request.exhaust:
                if full:
                    raise ValueError("an exhausted tie is recorded once, when a pass found nothing")
                self._exhaust = None
                tie.complete(to_us(request.created_end or CREATED_MAX), len(updated))
            elif not full:
                tie.complete(to_us(request.created_end or CREATED_MAX), len(updated))
            else:
                c0 = to_us(request.created_start or CREATED_MIN)
                c1 = to_us(request.created_end or CREATED_MAX)
                if c1 - c0 <= 1:
                    self._exhaust = (c0, c1)
                    return False
                tie.overflow(c1, [to_us(c) for c in created], count)
                return False
            if tie.done:
                axis.complete(self._tie_at + 1, 0)
                self._tie, self._tie_at = None, None
                return True
            return False
        start, end = to_us(request.start), to_us(request.end)
        if not full:
            axis.complete(end, len(updated))
            if not request.paged and self._room < self.paged_items:
                self._room = min(self.paged_items, 2 * self._room)  # widen back after a shrink
            return True
        if end - start <= 1:
            # more than a page at one instant: split it by creation time
            self._tie_at = start
            self._tie = _Axis(
                to_us(CREATED_MIN), to_us(CREATED_MAX), self.page_size, self.fill, ordered=False
            )
            self._tie.overflow(to_us(CREATED_MAX), [to_us(c) for c in created], count)
            return False
        axis.overflow(end, [to_us(u) for u in updated], count)
        return False
