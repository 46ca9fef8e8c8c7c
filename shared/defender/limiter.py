"""Client-side rate limiting per (tenant, API family), shared by every thread of the process.

Microsoft's quotas are per tenant and app: incidents 50 calls/min and 1,500/hour
(https://learn.microsoft.com/defender-xdr/api-list-incidents), advanced hunting 45/min
(https://learn.microsoft.com/defender-xdr/api-advanced-hunting). Waiting for a 429 wastes a call
and a ``Retry-After``; keeping under the quota on our side avoids both.

Each ``Bucket`` enforces one or more sliding windows ("at most N calls in any S seconds"). The
server counts a request when it *arrives*, which is somewhere between our send and the answer;
so a call holds its slot while in flight and is then recorded at the time it *finished*. A new
call may start when, for every window, fewer than N calls finished within the last S seconds
(calls still in flight count as just finished). That keeps the server's count within quota
whatever the network delay, at the cost of a little throughput.

A 429 still happens when another process shares the quota; ``Bucket.pause`` then holds every
thread of this process back until the ``Retry-After`` has passed, not only the one that got it.

``RateLimiterRegistry`` holds one bucket per (tenant, family); the composition root owns one
registry per process and injects it into every client. Clock and sleep are injected for tests.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from shared.core.errors import ThrottledError
from shared.core.settings import RateLimit

Family = str  # "incidents", "alerts", "hunting"

#: how long a waiter sleeps before looking again when every slot is held by calls in flight
_POLL = 0.01


class Bucket:
    """Sliding-window limits for one (tenant, family). Thread-safe."""

    def __init__(
        self,
        limits: RateLimit,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not limits or any(n < 1 or s <= 0 for n, s in limits):
            raise ValueError("limits must be (calls >= 1, seconds > 0) pairs")
        self.limits = tuple(limits)
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._finished: list[float] = []  # finish times, sorted
        self._in_flight = 0
        self._paused_until = 0.0
        self._keep = max(n for n, _ in self.limits)
        self._horizon = max(s for _, s in self.limits)
        self.waits = 0  # how many acquisitions had to wait (for tests and logs)

    def _earliest(self, now: float) -> float:
        """The earliest time a new call may start (``inf`` if calls in flight must end first)."""
        cutoff = now - self._horizon
        drop = bisect.bisect_right(self._finished, cutoff)
        # only the newest ``_keep`` finish times can ever matter
        drop = max(drop, len(self._finished) - self._keep)
        if drop > 0:
            del self._finished[:drop]
        start = max(now, self._paused_until)
        for calls, seconds in self.limits:
            if self._in_flight >= calls:
                return float("inf")
            need = calls - self._in_flight  # the need-th newest finish must be ``seconds`` old
            if len(self._finished) >= need:
                start = max(start, self._finished[-need] + seconds)
        return start

    def acquire(self, deadline: float | None = None) -> None:
        """Wait for a slot and take it (the caller must ``release`` it).

        Raises:
            ThrottledError: no slot frees up before ``deadline`` (a ``monotonic`` time).
        """
        waited = False
        while True:
            with self._lock:
                now = self._monotonic()
                start = self._earliest(now)
                if start <= now:
                    self._in_flight += 1
                    if waited:
                        self.waits += 1
                    return
            blocked = start == float("inf")  # every slot is held by calls in flight
            if deadline is not None and (now >= deadline if blocked else start > deadline):
                raise ThrottledError(
                    "client-side rate limit: no call slot free within the time budget",
                    retry_after=None if blocked else round(start - now, 3),
                )
            waited = True
            pause = _POLL if blocked else start - now
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - now))
            self._sleep(pause)

    def release(self) -> None:
        """Record the end of a call taken with ``acquire``."""
        with self._lock:
            self._in_flight -= 1
            bisect.insort(self._finished, self._monotonic())

    @contextmanager
    def slot(self, deadline: float | None = None) -> Iterator[None]:
        """``with bucket.slot(deadline): send()``."""
        self.acquire(deadline)
        try:
            yield
        finally:
            self.release()

    def wait_estimate(self) -> float:
        """Seconds until a new call could start (0 when one could start now)."""
        with self._lock:
            now = self._monotonic()
            start = self._earliest(now)
        if start == float("inf"):
            return _POLL
        return max(0.0, start - now)

    def pause(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (the service said 429 with ``Retry-After``)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._monotonic() + max(0.0, seconds))


class RateLimiterRegistry:
    """One ``Bucket`` per (tenant, family), created on first use with that family's limits."""

    def __init__(
        self,
        limits: Mapping[Family, RateLimit],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._limits = dict(limits)
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, Family], Bucket] = {}

    def bucket(self, tenant: str, family: Family) -> Bucket:
        """The bucket of ``tenant``'s calls to ``family``.

        Raises:
            KeyError: no limits are configured for ``family``.
        """
        key = (tenant.lower(), family)
        with self._lock:
            found = self._buckets.get(key)
            if found is None:
                found = Bucket(self._limits[family], monotonic=self._monotonic, sleep=self._sleep)
                self._buckets[key] = found
            return found

    def wait_estimate(self, tenant: str) -> float:
        """The longest wait before ``tenant`` may call any family it has used (seconds).

        The queue handler parks a throttled tenant for this long (a ``Retry-After`` pauses
        the bucket, see ``Bucket.pause``).
        """
        key = tenant.lower()
        with self._lock:
            buckets = [b for (t, _), b in self._buckets.items() if t == key]
        return max((b.wait_estimate() for b in buckets), default=0.0)
