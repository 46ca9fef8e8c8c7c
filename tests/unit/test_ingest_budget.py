"""The time budget of a run, on a clock the test moves."""

from __future__ import annotations

from shared.usecases.ingest.budget import Budget


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nothing_measured_plans_no_limit_and_a_prior_pace_is_used_until_measured() -> None:
    ticks = Ticks()
    fresh = Budget(60, started=ticks.now, prior=0.0, monotonic=ticks)
    assert fresh.fits(50) is None and fresh.may_start()
    known = Budget(60, started=ticks.now, prior=2.0, monotonic=ticks)
    # (60 - 5) / (2 * 2) = 13 pages of 50
    assert known.fits(50) == 13 * 50
    began = ticks.now
    ticks.now += 5.0
    known.measured(began)
    assert known.pace == 5.0 and known.fits(50) == 5 * 50  # (55 - 5) / 10


def test_a_request_starts_only_with_twice_the_pace_left() -> None:
    ticks = Ticks()
    budget = Budget(60, started=ticks.now, prior=10.0, monotonic=ticks)
    ticks.now += 39.0  # 21 s left, pace 10: room for one more
    assert budget.may_start()
    ticks.now += 2.0  # 19 s left
    assert not budget.may_start()
    ticks.now += 18.5
    assert budget.spent()


def test_a_paged_slice_stops_between_pages_or_splits_when_its_rest_does_not_fit() -> None:
    ticks = Ticks()
    budget = Budget(100, started=ticks.now, prior=0.0, monotonic=ticks)
    began = ticks.now
    ticks.now += 4.0
    now = budget.measured(began)  # a page took 4 s; 96 s left
    assert not budget.stop_between_pages(now)
    assert budget.rest_fits(11, now) and not budget.rest_fits(12, now)  # 11 * 4 <= 45.5
    assert budget.stop_between_pages(now + 89.0)  # 7 s left < 2 * 4
