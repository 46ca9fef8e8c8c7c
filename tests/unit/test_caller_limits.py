"""Per-caller rate limits (``shared.api.ratelimit``): bursts, steady rates, several windows,
separate callers and families, memory bound and thread safety, on an injected clock."""

from __future__ import annotations

import threading

import pytest

from shared.api.ratelimit import CallerLimiter, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_request_per_interval() -> None:
    clock = Clock()
    limiter = CallerLimiter({"incidents": ((5, 60.0),)}, monotonic=clock)
    assert all(limiter.take("a", "incidents") is None for _ in range(5))
    wait = limiter.take("a", "incidents")
    assert wait == pytest.approx(12.0)  # 60 s / 5
    clock.now += 11.9
    assert limiter.take("a", "incidents") is not None
    clock.now += 0.1
    assert limiter.take("a", "incidents") is None
    assert limiter.take("a", "incidents") == pytest.approx(12.0)


def test_a_refused_request_is_not_counted() -> None:
    clock = Clock()
    limiter = CallerLimiter({"x": ((2, 10.0),)}, monotonic=clock)
    limiter.take("a", "x")
    limiter.take("a", "x")
    for _ in range(100):  # hammering while limited does not push the wait further out
        assert limiter.take("a", "x") == pytest.approx(5.0)
    clock.now += 5.0
    assert limiter.take("a", "x") is None


def test_every_window_must_allow() -> None:
    clock = Clock()
    limiter = CallerLimiter({"x": ((3, 1.0), (5, 100.0))}, monotonic=clock)
    allowed = 0
    for _ in range(50):
        if limiter.take("a", "x") is None:
            allowed += 1
        clock.now += 1.0
    # the per-second window would allow 50; the 5-per-100-s one allows 5 + (49 s / 20 s)
    assert allowed == 7
    wait = limiter.take("a", "x")
    assert wait is not None and wait > 1.0


def test_callers_and_families_are_separate() -> None:
    clock = Clock()
    limiter = CallerLimiter({"incidents": ((1, 60.0),), "hunting": ((1, 60.0),)}, monotonic=clock)
    assert limiter.take("tid/a", "incidents") is None
    assert limiter.take("tid/a", "incidents") is not None
    assert limiter.take("tid/b", "incidents") is None
    assert limiter.take("tid/a", "hunting") is None
    with pytest.raises(KeyError):
        limiter.take("tid/a", "other")


def test_memory_is_bounded_for_many_callers() -> None:
    clock = Clock()
    limiter = CallerLimiter({"x": ((1, 60.0),)}, monotonic=clock, max_callers=100)
    for k in range(10_000):
        limiter.take(f"caller-{k}", "x")
    assert len(limiter) == 100
    # the most recent callers are still limited
    assert limiter.take("caller-9999", "x") is not None


def test_thread_safe_under_contention() -> None:
    clock = Clock()
    limiter = CallerLimiter({"x": ((100, 60.0),)}, monotonic=clock)
    allowed = []
    lock = threading.Lock()

    def hammer() -> None:
        mine = sum(1 for _ in range(200) if limiter.take("same", "x") is None)
        with lock:
            allowed.append(mine)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 100  # exactly the burst, however the threads interleave


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="pairs"):
        CallerLimiter({"x": ((0, 60.0),)})
    with pytest.raises(ValueError, match="pairs"):
        CallerLimiter({"x": ()})


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after(0.01) == "1" and retry_after(12.0) == "12" and retry_after(12.1) == "13"
