"""Newest-first pages of an incident listing (``GET /incidents``), planned as time slices. Pure.

A page shows the ``top`` newest matching incidents below a cursor. It is found by asking for
slices of last-update time, newest first, each one request ``lastUpdate ge a and lastUpdate lt
b`` (next to the caller's filters) with ``$top`` = the surface's page size ``P``
(legacy 100, Graph 50). The rules of ``shared.defender.slices`` hold here too:

- A slice is **complete** when its one answer has no nextLink and fewer than ``P`` items: it
  then held every incident in ``[a, b)`` when it was answered, whatever the order of results.
  Only complete slices contribute incidents to a page; they are read newest first and are
  contiguous, so the page's region ``[upper, ceiling)`` is fully known and its newest ``top``
  incidents are exactly the page.
- An **overflowing** answer (a nextLink, or ``P`` items) only tells where to cut: its items'
  times are a sample of the slice and ``@odata.count`` (Graph, when present) its size. The next
  slice starts at a cut inside it, estimated to hold about ``target`` items. Nothing about
  the order of results is relied on for correctness; only the cost depends on how good the
  estimate is.
- **Cost** (the reason this module exists: listing the whole tenant for every page spent its
  quota): each page stops as soon as it has ``top`` matches, or when ``max_calls`` requests
  were made (the page is then shorter, and its nextLink continues below what it read; a page
  that completed no slice at all is an error, never a wrong page). The first cut assumes the
  sample is the newest items of the slice (the legacy list documents "the most recent
  incidents are displayed at the top": https://learn.microsoft.com/defender-xdr/api-list-incidents),
  which makes it exact for such answers: a page of ``top`` < ``P`` then needs at most two
  requests, one overflowing answer and the cut. Once a cut made on that assumption overflows,
  the answers are not newest first: the next cut is at a sample point scaled by the count (a
  random draw of ``s`` of ``count`` items puts about ``count / s`` above each of its points),
  and when every item shown lies in the older half of the slice (an oldest-first answer), at
  half the unseen newer half, so any order narrows. The density seen is carried to the next
  page in its cursor, so a later page usually needs one request.
- **Ties**: a one-microsecond slice that overflows (more than ``P - 1`` incidents updated in
  the same microsecond) is handed to ``fetch`` as one ``exhaust`` ask, which reads it whole the
  way the ingestion reads a tie (``shared.defender.slices``: split by creation time, a pair
  over a page paged pass after pass until ``PairPasses`` adds up), so no offset, order or
  count on every page is relied on there either; those requests come on top of ``max_calls``.

Times are integer microseconds since the epoch (``slices.to_us``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

#: how full a slice is planned when more items are wanted than a page holds
FILL = 0.9
#: how many recent complete slices pool into the density estimate
_POOL = 6


@dataclass(frozen=True, slots=True)
class Ask:
    """One request: last update in ``[start, end)`` (None: unbounded on that side).

    ``exhaust``: a one-microsecond slice holding more than a page, to read whole (the caller
    reads it as the ingestion reads a tie).
    """

    start: int | None
    end: int | None
    exhaust: bool = False


@dataclass
class _Sample:
    """What an overflowing answer told about the slice from ``start`` up to the page's
    ``upper``: its items' times and its count."""

    start: int | None
    times: list[int]  # sorted ascending, all inside [start, end)
    count: int | None


class NewestPage:
    """Plans the slices that find the ``need`` newest matching incidents below ``ceiling``.

    Use: ``ask = page.next()``; send it; then ``page.complete(ask, items, matches)`` for an
    answer without nextLink and with fewer than ``page_size`` items (or the whole of an
    ``exhaust`` read), else ``page.overflow(ask, times, count)``; repeat until ``next``
    returns None. ``upper``: every incident updated in ``[upper, ceiling)`` has been read
    (None: everything). ``exhausted``: nothing matching is left below ``upper``.

    Args:
        floor: the oldest last-update time wanted (inclusive), or None.
        ceiling: the newest (exclusive), or None for no bound.
        need: how many matching incidents the page wants.
        page_size: ``$top`` of each request (``P``); a slice is complete below it.
        max_calls: the most requests of one page.
        rate: items per microsecond seen before (the previous page's), if any.
        now: the current time, the anchor of a density-sized first slice without ceiling.
    """

    def __init__(
        self,
        *,
        floor: int | None,
        ceiling: int | None,
        need: int,
        page_size: int,
        max_calls: int,
        rate: float | None = None,
        now: int | None = None,
    ) -> None:
        if page_size < 2 or need < 1 or max_calls < 1:
            raise ValueError("page_size must be at least 2, need and max_calls at least 1")
        self.floor = floor
        self.ceiling = ceiling
        self.upper = ceiling
        self.need = need
        self.page_size = page_size
        self.max_calls = max_calls
        self.calls = 0
        self.found = 0  # matching incidents in complete slices
        self.raw = 0  # all incidents in complete slices
        self.exhausted = floor is not None and ceiling is not None and ceiling <= floor
        self._now = now
        self._rate = rate if rate is not None and rate > 0 and math.isfinite(rate) else None
        self._recent: list[tuple[int, int]] = []  # (items, width) of recent complete slices
        self._sample: _Sample | None = None
        self._instant: int | None = None  # an overflowing microsecond to read across links
        self._planned = 0  # how many items the last slice was planned to hold
        self._underrun = False  # the last complete slice held far fewer than planned
        self._from_sample = False  # the last slice was cut by a sample
        self._misled = False  # a slice cut by a sample overflowed: it was not the newest
        self._quiet = False  # a slice came back empty after that: no halving towards now

    # ------------------------------------------------------------------ state

    @property
    def done(self) -> bool:
        """The page is decided: enough matches, or nothing is left below ``upper``."""
        return self.exhausted or self.found >= self.need

    @property
    def rate(self) -> float | None:
        """Items per microsecond seen (for the next page's first slice)."""
        return self._rate

    @property
    def progressed(self) -> bool:
        """Whether any slice completed (the region ``[upper, ceiling)`` is not empty)."""
        return self.upper != self.ceiling or self.exhausted

    # ------------------------------------------------------------------ planning

    def next(self) -> Ask | None:
        """The next request, or None when the page is decided or its calls are spent."""
        if self.done or self.calls >= self.max_calls:
            return None
        if self._instant is not None:
            return Ask(self._instant, self._instant + 1, exhaust=True)
        return Ask(self._start(), self.upper)

    def _target(self) -> int:
        """How many items (matching or not) the next slice should hold."""
        room = self.page_size - 1
        want = max(1, self.need - self.found)
        # with filters applied after the answer (legacy severity, several statuses), only a
        # share of the items match: ask for as many more as that share suggests
        ratio = self.found / self.raw if self.raw else 1.0
        raw_want = math.ceil(want / max(ratio, 1.0 / (self.raw + 1)))
        if raw_want > room:
            return max(1, math.floor(FILL * room))
        # anything from raw_want to room finishes the page in one request: aim between them
        middle = round(math.sqrt(raw_want * room))
        return max(raw_want, min(room, middle))

    def _start(self) -> int | None:
        target = self._planned = self._target()
        upper = self.upper
        cut: int | None
        self._from_sample = self._sample is not None
        if self._sample is not None:
            cut = self._cut(self._sample, target)
        elif self._underrun:
            # the density over-promised (a gap, or the listing's end): ask for all the rest,
            # which either ends the listing or overflows with a sample to cut by
            cut = None
        elif self._rate is not None and (upper is not None or self._now is not None):
            anchor = upper if upper is not None else self._now
            assert anchor is not None
            cut = anchor - max(1, math.ceil(target / self._rate))
        else:
            cut = None
        if self.floor is not None and (cut is None or cut < self.floor):
            cut = self.floor
        return cut

    def _cut(self, sample: _Sample, target: int) -> int | None:
        """Where a slice ending at ``upper`` should start to hold about ``target`` items,
        from what the last overflowing answer showed of ``[sample.start, upper)``."""
        times = sample.times
        lo, hi = sample.start, self.upper
        if not times:
            return lo
        s = len(times)
        newest = times[s - min(target, s)]  # [newest, hi) holds at least that many
        cut: float = newest
        if self._misled:
            # the sample was not the newest items (a cut by it overflowed): cut at a sample
            # point scaled by the count (a random draw of s from count puts about count / s
            # items above each of its points); without a count, a quarter of the target (the
            # slice overflowed, so count >= page size: a draw of s then stands for >= 1x)
            count = None if sample.count is None else max(sample.count, s)
            if count is None:
                k = max(1, math.ceil(target / 4))
            else:
                k = max(1, math.ceil(target * s / count))
            cut = times[s - min(k, s)]
            # without a ceiling nothing is newer than now (a tenant quiet for long may cost a
            # request or two more here, never a wrong page)
            top = hi if hi is not None else self._now
            older_half = lo is not None and top is not None and times[-1] < lo + (top - lo) / 2
            if older_half and not self._quiet and lo is not None and top is not None:
                # every item shown lies in the older half (an oldest-first answer; a random
                # draw of s does that with odds 2^-s): the newer half is unseen, so halve it
                cut = max(cut, (times[-1] + top) / 2)
        start = math.floor(cut)
        if lo is not None and start <= lo:
            # no progress from the sample (ties at the bottom): leave the oldest instant out
            start = lo + 1
        if hi is not None:
            start = min(start, hi - 1)
        return start

    # ------------------------------------------------------------------ answers

    def complete(self, ask: Ask, items: int, matches: int, *, calls: int = 1) -> None:
        """``ask`` was answered in full: ``items`` incidents, ``matches`` of them for the page,
        in ``calls`` requests (more than one only for an ``exhaust`` read)."""
        self.calls += calls
        self.found += matches
        self.raw += items
        self._underrun = items < self._planned / 2
        if self._misled and items == 0:
            self._quiet = True
        if ask.start is not None and ask.end is not None:
            self._observe(items, ask.end - ask.start)
        elif ask.start is not None and self._now is not None and self._now > ask.start:
            self._observe(items, self._now - ask.start)
        self._instant = None
        self.upper = ask.start
        if ask.start is None or (self.floor is not None and ask.start <= self.floor):
            self.exhausted = True
        sample = self._sample
        if sample is not None and ask.start is not None and self._misled:
            # what the sample showed below the slice still helps estimate the next cut; on
            # the newest-first reading it held only the newest items, so the density (just
            # measured on a complete slice) sizes the next one better
            below = [t for t in sample.times if t < ask.start]
            count = None if sample.count is None else max(0, sample.count - items)
            inside = sample.start is None or sample.start < ask.start
            self._sample = (
                _Sample(sample.start, below, count) if inside and (below or count) else None
            )
        else:
            self._sample = None

    def overflow(self, ask: Ask, times: Sequence[int], count: int | None) -> None:
        """``ask``'s answer was full (a nextLink, or ``page_size`` items): ``times`` are its
        items' last-update times, ``count`` its ``@odata.count`` if given."""
        self.calls += 1
        if self._from_sample:
            self._misled = True
        inside = sorted(
            t
            for t in times
            if (ask.start is None or t >= ask.start) and (ask.end is None or t < ask.end)
        )
        if ask.start is not None and ask.end is not None and ask.end - ask.start <= 1:
            self._instant = ask.start
            return
        if count is not None and self._rate is not None and ask.start is not None:
            width = (ask.end if ask.end is not None else (self._now or ask.start + 1)) - ask.start
            density = count / max(1, width)
            if density > 2 * self._rate or density < self._rate / 2:
                self._rate, self._recent = density, []
        self._sample = _Sample(ask.start, inside, count)

    def _observe(self, items: int, width: int) -> None:
        self._recent.append((items, max(1, width)))
        del self._recent[:-_POOL]
        total = sum(n for n, _ in self._recent)
        span = sum(w for _, w in self._recent)
        self._rate = max(total, 0.5) / span  # an empty slice still says "sparse"


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """What ``fetch`` returns for an ``Ask``: its items, whether the answer was full (a
    nextLink, or ``page_size`` items; always False for an ``exhaust`` read), the
    ``@odata.count`` if given, and how many requests it took."""

    items: list[T]
    full: bool
    count: int | None = None
    calls: int = 1


@dataclass(frozen=True, slots=True)
class PageResult(Generic[T]):
    """One page: its items newest first; ``following``, the position the next page starts
    below (None: this was the last page); the density seen and the requests made."""

    items: list[T]
    following: tuple[int, str] | None
    rate: float | None
    calls: int


class NoProgressError(Exception):
    """``max_calls`` requests completed no slice: the service's answers never narrowed."""


def read_page(
    fetch: Callable[[Ask], Answer[T]],
    *,
    key: Callable[[T], tuple[int, str]],
    keep: Callable[[T], bool],
    before: tuple[int, str] | None,
    floor: int | None,
    ceiling: int | None,
    top: int,
    page_size: int,
    max_calls: int,
    rate: float | None = None,
    now: int | None = None,
) -> PageResult[T]:
    """The ``top`` newest items that ``keep`` accepts, in ``[floor, ceiling)`` and below the
    position ``before`` (``(time, id)``; an empty id: below that whole microsecond).

    ``key`` gives an item's (last-update microsecond, id); the page is ordered by it, newest
    first. An item updated while pages are read moves above every position already handed
    out, so it is never shown twice; no other item is skipped.

    Raises:
        NoProgressError: no slice completed within ``max_calls`` requests.
    """
    if before is not None:
        at, ident = before
        bound = at if ident == "" else at + 1
        ceiling = bound if ceiling is None else min(ceiling, bound)

    def wanted(item: T) -> bool:
        return keep(item) and (before is None or key(item) < before)

    plan = NewestPage(
        floor=floor,
        ceiling=ceiling,
        need=top,
        page_size=page_size,
        max_calls=max_calls,
        rate=rate,
        now=now,
    )
    found: dict[str, T] = {}
    while (ask := plan.next()) is not None:
        answer = fetch(ask)
        if answer.full and not ask.exhaust:
            plan.overflow(ask, [key(i)[0] for i in answer.items], answer.count)
            continue
        # a complete slice: every item of [start, end) as it was when answered
        inside = [
            i
            for i in answer.items
            if (ask.start is None or key(i)[0] >= ask.start)
            and (ask.end is None or key(i)[0] < ask.end)
        ]
        matching = [i for i in inside if wanted(i)]
        for item in matching:
            known = found.get(key(item)[1])
            if known is None or key(known) < key(item):
                found[key(item)[1]] = item
        plan.complete(ask, len(inside), len(matching), calls=answer.calls)
    if not plan.progressed:
        raise NoProgressError(
            f"{plan.calls} requests did not narrow the listing to a page; narrow it with "
            "updatedFrom/updatedBefore"
        )
    rows = sorted(found.values(), key=key, reverse=True)
    page = rows[:top]
    following: tuple[int, str] | None = None
    if len(rows) > top:
        following = key(page[-1])
    elif not plan.exhausted and plan.upper is not None:
        following = (plan.upper, "")
    return PageResult(page, following, plan.rate, plan.calls)
