"""Fault injection on the Defender and Graph endpoints (`POST /_emulator/faults`).

Kinds: `429` (with `Retry-After` and the API's throttling body), `500`, `503`, `reset` (the
connection is closed with a TCP reset and no response), `slow` (the answer is delayed by
`slow_seconds`), `truncated` (headers announce the full body but only half is sent).

`tenants` (optional list of tenant ids) limits faults to requests whose bearer token is for one
of those tenants, e.g. `{"rate": 1, "kinds": ["500"], "tenants": [tid]}`: "this customer's API
always fails" while the others answer normally.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("429", "500", "503", "reset", "slow", "truncated")


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """What to inject and how often."""

    rate: float = 0.0
    kinds: tuple[str, ...] = KINDS
    seed: int = 1
    slow_seconds: float = 5.0
    retry_after: int = 1
    tenants: tuple[str, ...] = ()  # empty: every tenant

    def to_json(self) -> dict[str, Any]:
        """The configuration as the admin API shows it."""
        return {
            "rate": self.rate,
            "kinds": list(self.kinds),
            "seed": self.seed,
            "slow_seconds": self.slow_seconds,
            "retry_after": self.retry_after,
            "tenants": list(self.tenants),
        }


def parse_fault_config(payload: Any) -> FaultConfig:
    """Validate the admin payload.

    Raises:
        ValueError: with a message naming the bad field.
    """
    if not isinstance(payload, Mapping):
        raise ValueError("the body must be a JSON object")
    unknown = set(payload) - {"rate", "kinds", "seed", "slow_seconds", "retry_after", "tenants"}
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    rate = payload.get("rate")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ValueError("'rate' must be a number between 0 and 1")
    kinds = payload.get("kinds", list(KINDS))
    if (
        not isinstance(kinds, list)
        or not kinds
        or not all(isinstance(k, str) and k in KINDS for k in kinds)
    ):
        raise ValueError(f"'kinds' must be a non-empty list drawn from {list(KINDS)}")
    seed = payload.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError("'seed' must be an integer")
    slow = payload.get("slow_seconds", 5.0)
    if isinstance(slow, bool) or not isinstance(slow, int | float) or not 0 <= slow <= 300:
        raise ValueError("'slow_seconds' must be a number between 0 and 300")
    retry_after = payload.get("retry_after", 1)
    if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
        raise ValueError("'retry_after' must be a non-negative integer")
    tenants = payload.get("tenants", [])
    if not isinstance(tenants, list) or not all(isinstance(t, str) and t for t in tenants):
        raise ValueError("'tenants' must be a list of tenant ids")
    return FaultConfig(
        float(rate), tuple(kinds), seed, float(slow), retry_after, tuple(t.lower() for t in tenants)
    )


class FaultInjector:
    """Thread-safe, seeded decision of which request gets which fault."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._config = FaultConfig()
        self._rng = random.Random(1)

    @property
    def config(self) -> FaultConfig:
        """The active configuration."""
        with self._lock:
            return self._config

    def configure(self, config: FaultConfig) -> None:
        """Replace the configuration and restart the seeded sequence."""
        with self._lock:
            self._config = config
            self._rng = random.Random(config.seed)

    def decide(self, tenant: Callable[[], str | None] | None = None) -> str | None:
        """The fault for the next request, or None (``tenant``: the request's tenant, asked
        only when faults are limited to some tenants, outside the lock: it verifies a token)."""
        config = self.config
        if config.rate <= 0:
            return None
        if config.tenants:
            tid = tenant() if tenant is not None else None
            if tid is None or tid.lower() not in config.tenants:
                return None
        with self._lock:
            if self._rng.random() >= self._config.rate:
                return None
            return self._rng.choice(self._config.kinds)
