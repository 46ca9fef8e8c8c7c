"""Per-tenant, per-API-family request quotas (sliding windows), as the services enforce them.

Documented defaults: incidents 50 calls/minute and 1,500/hour
(https://learn.microsoft.com/defender-xdr/api-list-incidents,
https://learn.microsoft.com/defender-xdr/api-update-incidents, and the API terms,
https://learn.microsoft.com/legal/microsoft-365/api-terms); advanced hunting 45/minute and
1,500/hour (https://learn.microsoft.com/defender-endpoint/api/run-advanced-query-api); Graph
alerts 150/minute per app per tenant ("Security detections and incidents" in
https://learn.microsoft.com/graph/throttling-limits). Each surface (legacy, Graph) keeps its own
counters; a family's limits apply to both. Windows run on the real monotonic clock, not the
injectable emulator clock, because they limit real request rates; tests shrink the windows
instead (e.g. 10 calls per 1 second) through `EmulatorConfig.quotas` or `/_emulator/quotas`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

FAMILIES = ("incidents", "hunting", "alerts")


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `calls` accepted requests in any `seconds`-long window."""

    calls: int
    seconds: float

    def window_label(self) -> str:
        """`00:01:00`-style window, as in the legacy 429 message a Microsoft engineer posted
        (https://github.com/MicrosoftDocs/microsoft-365-docs/issues/4616)."""
        total = int(self.seconds)
        return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


DEFAULT_QUOTAS: Mapping[str, tuple[Limit, ...]] = {
    "incidents": (Limit(50, 60), Limit(1500, 3600)),
    "hunting": (Limit(45, 60), Limit(1500, 3600)),
    "alerts": (Limit(150, 60),),
}


@dataclass(frozen=True, slots=True)
class Throttled:
    """A rejected call: which limit was hit and when to retry (whole seconds, at least 1)."""

    limit: Limit
    retry_after: int


def parse_limits(payload: Any) -> tuple[str, tuple[Limit, ...]]:
    """Validate `{"family": ..., "limits": [{"calls": N, "seconds": S}, ...]}`.

    Raises:
        ValueError: with a message naming the bad field.
    """
    if not isinstance(payload, Mapping):
        raise ValueError("the body must be a JSON object")
    unknown = set(payload) - {"family", "limits"}
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    family = payload.get("family")
    if family not in FAMILIES:
        raise ValueError(f"'family' must be one of {list(FAMILIES)}")
    raw = payload.get("limits")
    if not isinstance(raw, list):
        raise ValueError("'limits' must be a list of {calls, seconds} (empty = unlimited)")
    limits = []
    for item in raw:
        if not isinstance(item, Mapping) or set(item) != {"calls", "seconds"}:
            raise ValueError("each limit must be an object with exactly 'calls' and 'seconds'")
        calls, seconds = item["calls"], item["seconds"]
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
            raise ValueError("'calls' must be a positive integer")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise ValueError("'seconds' must be a positive number")
        limits.append(Limit(calls, float(seconds)))
    return str(family), tuple(limits)


class RateLimiter:
    """Thread-safe sliding-window counters keyed by (surface, family, tenant)."""

    def __init__(
        self,
        quotas: Mapping[str, tuple[Limit, ...]],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._quotas = dict(DEFAULT_QUOTAS) | dict(quotas)
        self._initial = dict(self._quotas)
        self._calls: dict[tuple[str, str, str], deque[float]] = {}
        self._monotonic = monotonic

    def quotas(self) -> dict[str, list[dict[str, float]]]:
        """The active quotas, as the admin API shows them."""
        with self._lock:
            return {
                family: [{"calls": lim.calls, "seconds": lim.seconds} for lim in limits]
                for family, limits in self._quotas.items()
            }

    def set_limits(self, family: str, limits: tuple[Limit, ...]) -> None:
        """Replace a family's limits and forget its counters."""
        with self._lock:
            self._quotas[family] = limits
            for key in [k for k in self._calls if k[1] == family]:
                del self._calls[key]

    def reset(self) -> None:
        """Back to the configured quotas with empty counters."""
        with self._lock:
            self._quotas = dict(self._initial)
            self._calls.clear()

    def acquire(self, surface: str, family: str, tenant: str) -> Throttled | None:
        """Count one call, or return why it is refused (refused calls are not counted)."""
        now = self._monotonic()
        with self._lock:
            limits = self._quotas.get(family, ())
            if not limits:
                return None
            calls = self._calls.setdefault((surface, family, tenant), deque())
            longest = max(lim.seconds for lim in limits)
            while calls and calls[0] <= now - longest:
                calls.popleft()
            for limit in limits:
                recent = [t for t in calls if t > now - limit.seconds]
                if len(recent) >= limit.calls:
                    oldest = recent[-limit.calls]
                    wait = oldest + limit.seconds - now
                    return Throttled(limit, max(1, math.ceil(wait)))
            calls.append(now)
            return None
