"""Per-caller rate limits of the HTTP routes that call Defender (429 with ``Retry-After``).

Defender's quotas are per tenant and app (incidents 50 calls a minute and 1,500 an hour,
hunting 45 a minute: https://learn.microsoft.com/defender-xdr/api-list-incidents,
https://learn.microsoft.com/defender-xdr/api-advanced-hunting), shared by every caller of this
app and by ingestion. So that a few callers cannot spend a tenant's quota and starve its
ingestion, each caller (``Principal.subject``) gets its own allowance per family of routes
(``API_CALLER_RATE_LIMIT`` for incidents and ingestion, ``API_CALLER_HUNTING_RATE_LIMIT`` for
hunting), in the same ``calls/seconds`` form as the Defender limits.

Each window "at most N requests in S seconds" is a GCRA (the generic cell rate algorithm, the
virtual-scheduling form of a token bucket): one number per window and caller, the theoretical
arrival time; a request is let in when it is no later than ``S - S/N`` ahead of now, and moves
it ``S/N`` on. A burst of N is allowed, then one request every ``S/N`` seconds. The limiter is
thread-safe, reads an injected monotonic clock, and keeps at most ``max_callers`` callers,
dropping the least recently seen past that bound (it starts afresh). The state lives in this
process only: instances of the app do not share it, so N instances let a caller make up to N
times the limit.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from shared.core.settings import RateLimit

#: callers remembered per process (a few hundred bytes each)
MAX_CALLERS = 10_000


class CallerLimiter:
    """GCRA windows per (caller, family). ``take`` answers None (let in) or seconds to wait."""

    def __init__(
        self,
        limits: Mapping[str, RateLimit],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        max_callers: int = MAX_CALLERS,
    ) -> None:
        for family, windows in limits.items():
            if not windows or any(n < 1 or s <= 0 for n, s in windows):
                raise ValueError(f"{family}: limits must be (calls >= 1, seconds > 0) pairs")
        if max_callers < 1:
            raise ValueError("max_callers must be at least 1")
        self._limits = {f: tuple(w) for f, w in limits.items()}
        self._monotonic = monotonic
        self._max = max_callers
        self._lock = threading.Lock()
        #: (subject, family) -> the theoretical arrival time of each window, least recent first
        self._state: OrderedDict[tuple[str, str], list[float]] = OrderedDict()

    def take(self, subject: str, family: str) -> float | None:
        """Count one request of ``subject`` to ``family``: None when it may go on, else the
        seconds until it may (nothing is counted then).

        Raises:
            KeyError: no limits are configured for ``family``.
        """
        windows = self._limits[family]
        key = (subject, family)
        with self._lock:
            now = self._monotonic()
            arrivals = self._state.get(key)
            if arrivals is None:
                arrivals = [now] * len(windows)
            wait = 0.0
            for (calls, seconds), tat in zip(windows, arrivals, strict=True):
                interval = seconds / calls
                ahead = max(tat, now) - now  # how far this caller is ahead of its schedule
                wait = max(wait, ahead - (seconds - interval))
            if wait > 0:
                if key in self._state:
                    self._state.move_to_end(key)
                return wait
            self._state[key] = [
                max(tat, now) + seconds / calls
                for (calls, seconds), tat in zip(windows, arrivals, strict=True)
            ]
            self._state.move_to_end(key)
            self._evict()
            return None

    def _evict(self) -> None:
        """Keep at most ``max_callers`` entries, dropping the least recently seen (a caller
        whose allowance recovered is the same as a new one; a still-limited one starts
        afresh, which only happens when ``max_callers`` others came in since)."""
        while len(self._state) > self._max:
            self._state.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._state)


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
