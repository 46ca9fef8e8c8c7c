"""A fake incident list for the slice planner's tests: it answers the planner's requests the
documented way (``$filter`` on both bounds, ``$top``, a nextLink when more matched, offsets for
the next page re-evaluated on the data as it is then) in an order and with ``@odata.count`` on
the pages we choose, and records what it served.

Also ``perfect``: how many requests a reader that knew every timestamp in advance would need
under the same proof rules (the denominator of the cost bounds).
"""

# ruff: noqa: S311 - seeded pseudo-random orders are the point of this fake

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from shared.defender.slices import (
    Item,
    Listing,
    PagedRead,
    PairPasses,
    SliceRequest,
    from_us,
    to_us,
)

#: id -> (last update µs, created µs)
Data = dict[int, tuple[int, int]]


@dataclass
class Service:
    """Incidents as id -> (last update µs, created µs).

    ``order``: ``"newest"`` (last update descending, then id), ``"hashed"`` (arbitrary but the
    same for every request), ``"random"`` (shuffled anew for every request).
    ``counts``: which pages carry ``@odata.count``: ``"every"``, ``"first"``, ``"none"``.
    """

    items: Data
    order: str = "newest"
    counts: str = "every"
    page_size: int = 50
    seed: int = 1
    calls: int = 0
    listed: int = 0
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
            out.sort(key=lambda x: (-x[0], -x[2]))
        elif self.order == "hashed":
            out.sort(key=lambda x: (x[2] * 2654435761) % 2**32)
        else:
            self.rng.shuffle(out)
        return out

    def page(self, req: SliceRequest, skip: int) -> tuple[list[Item], int | None, bool]:
        """One page at ``skip`` of whatever matches now: items, count, whether a link."""
        self.calls += 1
        found = self.matching(req)
        page = found[skip : skip + self.page_size]
        self.listed += len(page)
        for u, _, i in page:
            self.read.setdefault(i, set()).add(u)
        first = skip == 0
        counted = self.counts == "every" or (self.counts == "first" and first)
        items: list[Item] = [(str(i), from_us(u), from_us(c)) for u, c, i in page]
        return items, len(found) if counted else None, skip + self.page_size < len(found)

    def answer(
        self, listing: Listing, req: SliceRequest, between: Callable[[], None] | None = None
    ) -> tuple[bool, PagedRead]:
        """Serve ``req`` as the ingestion does: its first page, then each next page the read
        asks for (``between`` runs before each: activity). Returns (completed a slice of the
        listing, the read)."""
        if req.exhaust:
            return self.exhaust(listing, req, between)
        read = listing.reader(req)
        skip = 0
        while True:
            items, count, linked = self.page(req, skip)
            if not read.add(items, count=count, linked=linked):
                break
            if between is not None:
                between()
            skip += self.page_size
        return listing.record(req, read), read

    def exhaust(
        self, listing: Listing, req: SliceRequest, between: Callable[[], None] | None = None
    ) -> tuple[bool, PagedRead]:
        """The last resort for a pair tie, as the ingestion pages it (``PairPasses``).

        Raises:
            GaveUp: the passes did not add up (the ingestion fails the run, losing nothing).
        """
        passes = PairPasses()
        while True:
            skip = 0
            while True:
                items, count, linked = self.page(req, skip)
                passes.add(items, count=count)
                if not linked:
                    break
                if between is not None:
                    between()
                skip += self.page_size
            if passes.end_pass():
                break
        if passes.given_up:
            raise GaveUp(req)
        read = listing.reader(req)
        read.add(list(passes.seen.values()), count=None, linked=False)
        return listing.record(req, read), read


class GaveUp(Exception):
    """The passes over a pair tie did not add up."""


def perfect(data: Data, start: int, end: int, page: int, settled: int | None) -> int:
    """Requests a reader that knew every timestamp would need: slices before ``settled`` read
    across pages (``page`` a page, any size up to 500 + a page), the rest proved by single
    short pages (fewer than ``page`` items each, together covering the range; an instant with
    more is split by creation time, and a (last update, created) pair with more is paged)."""
    lo = start
    paged = 0
    if settled is not None and settled > start:
        paged = math.ceil(sum(1 for u, _ in data.values() if start <= u < settled) / page)
        lo = settled
    by_instant: dict[int, list[int]] = {}
    for u, c in data.values():
        if lo <= u < end:
            by_instant.setdefault(u, []).append(c)
    return paged + _cover(by_instant, lo, end, page, split=True)


def _cover(by_point: dict[int, list[int]], lo: int, hi: int, page: int, *, split: bool) -> int:
    """Single pages covering ``[lo, hi)``: points holding ``page`` or more are split (by
    creation time, ``split``) or paged; the slices around them are proved on their own."""
    calls, held, boundary = 0, 0, lo
    for point in sorted(by_point):
        n = len(by_point[point])
        if n >= page:
            if point > boundary:
                calls += 1  # the slice before it, even empty, must be proved
            if split:
                created: dict[int, list[int]] = {}
                for c in by_point[point]:
                    created.setdefault(c, []).append(c)
                calls += _cover(created, -(2**62), 2**62, page, split=False)
            else:
                calls += math.ceil(n / page)
            held, boundary = 0, point + 1
        elif held + n > page - 1:
            calls += 1
            held, boundary = n, point
        else:
            held += n
    return calls + (1 if boundary < hi else 0)


def at(value: datetime) -> int:
    """µs of a datetime (shorthand for tests)."""
    return to_us(value)
