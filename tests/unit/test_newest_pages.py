# ruff: noqa: S311 - seeded pseudo-random answer orders are the point of these tests
"""Newest-first pages planned as time slices (``shared.defender.pages``), against an in-memory
service that answers in any order: every item once, in order, at a bounded cost per page."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from shared.defender.pages import Answer, Ask, NoProgressError, read_page

HOUR = 3_600_000_000
BASE = 1_780_000_000 * 1_000_000
NOW = BASE + 200 * 24 * HOUR
Item = tuple[int, str]  # (last-update microsecond, id)


@dataclass
class Service:
    """Answers a slice like the APIs do: at most ``page`` items in some order, a nextLink when
    there are more, ``@odata.count`` when ``counts``; ``exhaust`` reads pages of one instant."""

    items: dict[str, int]
    page: int = 50
    order: str = "newest"
    counts: bool = True
    seed: int = 1
    calls: int = 0
    asks: list[Ask] = field(default_factory=list)

    def fetch(self, ask: Ask) -> Answer[Item]:
        self.asks.append(ask)
        inside = [
            (t, i)
            for i, t in self.items.items()
            if (ask.start is None or t >= ask.start) and (ask.end is None or t < ask.end)
        ]
        if ask.exhaust:
            pages = max(1, -(-len(inside) // self.page))
            self.calls += pages
            return Answer(inside, False, len(inside), calls=pages)
        self.calls += 1
        if self.order == "newest":
            inside.sort(reverse=True)
        elif self.order == "oldest":
            inside.sort()
        else:
            random.Random(f"{self.seed}:{self.calls}").shuffle(inside)
        shown = inside[: self.page]
        return Answer(
            shown, len(inside) >= self.page, len(inside) if self.counts else None, calls=1
        )


def _tenant(n: int, *, seed: int = 7, span_hours: int = 24 * 90) -> dict[str, int]:
    rng = random.Random(seed)
    return {str(100000 + k): BASE + rng.randrange(span_hours * HOUR) for k in range(n)}


def _page(
    service: Service,
    before: tuple[int, str] | None,
    top: int,
    *,
    rate: float | None = None,
    keep: Callable[[Item], bool] = lambda _: True,
    max_calls: int = 8,
    floor: int | None = None,
    ceiling: int | None = None,
):  # type: ignore[no-untyped-def]
    return read_page(
        service.fetch,
        key=lambda item: item,
        keep=keep,
        before=before,
        floor=floor,
        ceiling=ceiling,
        top=top,
        page_size=service.page,
        max_calls=max_calls,
        rate=rate,
        now=NOW,
    )


def _all_pages(service: Service, top: int, **kw: object) -> tuple[list[Item], list[int]]:
    seen: list[Item] = []
    costs: list[int] = []
    before, rate = None, None
    for _ in range(10_000):
        result = _page(service, before, top, rate=rate, **kw)  # type: ignore[arg-type]
        seen += result.items
        costs.append(result.calls)
        if result.following is None:
            return seen, costs
        assert before is None or result.following < before
        before, rate = result.following, result.rate
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("order", ["newest", "oldest", "random"])
@pytest.mark.parametrize("counts", [True, False])
@pytest.mark.parametrize("page", [50, 100])
@pytest.mark.parametrize("top", [1, 7, 49, 50, 100])
def test_every_item_once_newest_first_in_any_order(
    order: str, counts: bool, page: int, top: int
) -> None:
    items = _tenant(260)
    service = Service(items, page=page, order=order, counts=counts)
    seen, costs = _all_pages(service, top)
    expected = sorted(((t, i) for i, t in items.items()), reverse=True)
    assert seen == expected
    assert max(costs) <= 8


@pytest.mark.parametrize("page", [50, 100])
@pytest.mark.parametrize("top", [1, 10, 25, 49])
def test_newest_first_answers_cost_at_most_two_calls_for_a_first_page(page: int, top: int) -> None:
    """The bound the README states: newest-first answers (the legacy API's documented order,
    Graph's observed one), ``top`` < page size: one overflowing answer, then the exact cut."""
    service = Service(_tenant(10_000), page=page, order="newest", counts=False)
    result = _page(service, None, top)
    assert len(result.items) == top and result.calls <= 2


def test_later_pages_use_the_density_the_cursor_carries() -> None:
    service = Service(_tenant(5_000, span_hours=24 * 30), page=50, order="newest")
    _, costs = _all_pages(service, 20)
    # the first page learns the density; most later ones take a single request
    assert costs[0] <= 2
    assert sum(1 for c in costs[1:] if c == 1) >= 0.8 * len(costs[1:])
    assert max(costs) <= 4


@pytest.mark.parametrize("counts", [True, False])
def test_random_order_stays_cheap(counts: bool) -> None:
    service = Service(_tenant(10_000), page=50, order="random", counts=counts)
    first = _page(service, None, 1)
    assert first.calls <= 5
    _, costs = _all_pages(Service(_tenant(2_000), page=50, order="random", counts=counts), 50)
    pages = len(costs)
    # a whole listing of 2,000 in pages of 50: a small multiple of the pages it needs
    assert pages <= 45 and sum(costs) <= 4 * pages


def test_a_top_1_page_no_longer_lists_the_tenant() -> None:
    """The regression: 260 incidents, ``top=1`` cost 19 calls (the whole tenant each page)."""
    for order in ("newest", "random"):
        service = Service(_tenant(260), page=50, order=order, counts=True)
        assert _page(service, None, 1).calls <= 2 if order == "newest" else 4


def test_filters_applied_after_the_answer_make_short_pages_not_long_ones() -> None:
    """Legacy filters severity client-side: a rare match may need many slices; a page stops at
    ``max_calls`` and its nextLink continues below what it read."""
    items = _tenant(3_000)
    rare = {i for k, i in enumerate(sorted(items)) if k % 97 == 0}
    service = Service(items, page=100, order="newest", counts=False)
    seen, costs = _all_pages(service, 10, keep=lambda item: item[1] in rare, max_calls=3)
    assert {i for _, i in seen} == rare and len(seen) == len(rare)
    assert max(costs) <= 3


def test_ties_over_a_page_in_one_microsecond_are_read_across_links() -> None:
    items = _tenant(400)
    tie = 1_790_000_000 * 1_000_000
    for k in range(130):
        items[f"9{k:05d}"] = tie
    service = Service(items, page=50, order="random", counts=True)
    seen, _ = _all_pages(service, 30)
    assert seen == sorted(((t, i) for i, t in items.items()), reverse=True)
    assert any(a.exhaust for a in service.asks)


def test_an_item_updated_between_pages_is_never_shown_twice_and_nothing_else_is_lost() -> None:
    items = _tenant(500)
    service = Service(items, page=50, order="random")
    newest = max(items.values())
    seen: list[Item] = []
    before, rate = None, None
    rng = random.Random(3)
    moved: set[str] = set()
    for step in range(1000):
        result = _page(service, before, 25, rate=rate)
        seen += result.items
        if result.following is None:
            break
        before, rate = result.following, result.rate
        # SOC activity: three incidents change, moving to "now"
        for ident in rng.sample(sorted(items), 3):
            newest += 1000
            items[ident] = newest
            moved.add(ident)
        assert step < 999
    ids = [i for _, i in seen]
    assert len(ids) == len(set(ids))
    untouched = set(items) - moved
    assert untouched <= set(ids)


def test_bounds_are_kept() -> None:
    items = _tenant(1_000)
    times = sorted(items.values())
    floor, ceiling = times[100], times[900]
    service = Service(items, page=50, order="random")
    seen, _ = _all_pages(service, 40, floor=floor, ceiling=ceiling)
    assert seen == sorted(((t, i) for i, t in items.items() if floor <= t < ceiling), reverse=True)


def test_a_service_that_never_narrows_is_an_error_not_a_loop() -> None:
    class Stubborn(Service):
        def fetch(self, ask: Ask) -> Answer[Item]:
            self.calls += 1
            return Answer([(1_780_000_000 * 1_000_000 + k, str(k)) for k in range(50)], True)

    with pytest.raises(NoProgressError):
        _page(Stubborn({}), None, 10, max_calls=4)


def test_empty_and_tiny_listings_take_one_call() -> None:
    assert _page(Service({}), None, 10).calls == 1
    small = Service(_tenant(30))
    result = _page(small, None, 50)
    assert result.calls == 1 and result.following is None and len(result.items) == 30
