"""Looser or harsher service behaviours a test switches on: result order, which pages carry
`@odata.count`, `$expand` failures, late arrival of changes, and SOC activity while a client
pages.

The defaults are the plainest reading of Microsoft's pages (newest first, `@odata.count` on every
page asked for it, no failures, changes visible at once, no activity). Two of them are not
documented: Graph promises no result order (the legacy API lists the most recent first), and no
page says which pages of a paged answer carry `@odata.count`; a client must not rest on either,
which is why the guarantee tests and `make chaos` draw the other values. Everything else is an
explicit setting, in `EmulatorConfig` or through
`GET|POST /_emulator/behaviour` (a POST merges the keys it gives; `reset` restores the config's
values). The sources of each behaviour are in emulator/README.md ("Behaviours").
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Order = Literal["newest", "arbitrary"]
ORDERS: tuple[Order, ...] = ("newest", "arbitrary")
#: which pages of a Graph list asked for `$count=true` carry `@odata.count`: every page, the
#: first only (the answer to the request itself, not to a nextLink), or none. Microsoft
#: documents `$count` on these lists but not which pages carry the count.
CountPages = Literal["every", "first", "none"]
COUNT_PAGES: tuple[CountPages, ...] = ("every", "first", "none")
ALL_TENANTS = "*"
_MAX_LATE = 86_400.0
_MAX_ACTIVITY = 10_000


class BehaviourError(ValueError):
    """A behaviour setting that is not valid; the message names the key and the rule."""


@dataclass(frozen=True, slots=True)
class PagingActivity:
    """Simulated SOC activity applied after every `every`-th incident-listing page served.

    `tenant` None: every tenant's listings count (each its own counter) and the activity goes
    to the tenant whose page it was; else only that tenant's listings count.
    """

    every: int = 1
    create: int = 0
    update: int = 0
    merge: int = 0
    tenant: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "every": self.every,
            "create": self.create,
            "update": self.update,
            "merge": self.merge,
        }


@dataclass(frozen=True, slots=True)
class Settings:
    """One consistent set of behaviour values (validated)."""

    order: Order = "newest"
    order_seed: int = 0
    count_pages: CountPages = "every"
    expand_failure_tenants: frozenset[str] = frozenset()
    late_arrival_seconds: float = 0.0
    paging_activity: PagingActivity | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "order_seed": self.order_seed,
            "count_pages": self.count_pages,
            "expand_failure_tenants": sorted(self.expand_failure_tenants),
            "late_arrival_seconds": self.late_arrival_seconds,
            "paging_activity": None
            if self.paging_activity is None
            else self.paging_activity.to_json(),
        }

    def counts(self, first_page: bool) -> bool:
        """Whether a page of a list asked for `$count=true` carries `@odata.count`."""
        return self.count_pages == "every" or (self.count_pages == "first" and first_page)

    def expand_fails(self, tenant_id: str) -> bool:
        """Whether `$expand=alerts` with `$filter` answers 500 for the tenant."""
        tenants = self.expand_failure_tenants
        return tenant_id in tenants or ALL_TENANTS in tenants


KEYS = frozenset(f.name for f in dataclasses.fields(Settings))


def merge(current: Settings, changes: Mapping[str, Any], tenants: Collection[str]) -> Settings:
    """`current` with the keys of `changes` replaced, validated against the known `tenants`.

    Raises:
        BehaviourError: an unknown key or a value outside its rule (the message says which).
    """
    unknown = set(changes) - KEYS
    if unknown:
        raise BehaviourError(
            f"unknown behaviour key(s): {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(KEYS))})"
        )
    values: dict[str, Any] = {}
    if "order" in changes:
        order = changes["order"]
        if order not in ORDERS:
            raise BehaviourError(f"'order' must be one of {list(ORDERS)}, not {order!r}")
        values["order"] = order
    if "order_seed" in changes:
        values["order_seed"] = _integer(changes["order_seed"], "order_seed", None)
    if "count_pages" in changes:
        count_pages = changes["count_pages"]
        if count_pages not in COUNT_PAGES:
            raise BehaviourError(
                f"'count_pages' must be one of {list(COUNT_PAGES)}, not {count_pages!r}"
            )
        values["count_pages"] = count_pages
    if "expand_failure_tenants" in changes:
        values["expand_failure_tenants"] = _tenants(changes["expand_failure_tenants"], tenants)
    if "late_arrival_seconds" in changes:
        late = changes["late_arrival_seconds"]
        if (
            isinstance(late, bool)
            or not isinstance(late, int | float)
            or not 0 <= late <= _MAX_LATE
        ):
            raise BehaviourError(
                f"'late_arrival_seconds' must be a number of seconds between 0 and {_MAX_LATE:g}"
            )
        values["late_arrival_seconds"] = float(late)
    if "paging_activity" in changes:
        values["paging_activity"] = _paging_activity(changes["paging_activity"], tenants)
    return dataclasses.replace(current, **values)


def _integer(value: Any, name: str, maximum: int | None, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BehaviourError(f"'{name}' must be an integer")
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise BehaviourError(f"'{name}' must be at least {minimum}{upper}")
    return value


def _tenants(value: Any, tenants: Collection[str]) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise BehaviourError("'expand_failure_tenants' must be a list of tenant ids (or '*')")
    chosen = frozenset(value)
    unknown = {t for t in chosen if t != ALL_TENANTS and t not in tenants}
    if unknown or not all(isinstance(t, str) for t in chosen):
        raise BehaviourError(
            f"'expand_failure_tenants': unknown tenant(s) {sorted(map(str, unknown))}; "
            f"known: {sorted(tenants)} or '*' for all"
        )
    return chosen


def _paging_activity(value: Any, tenants: Collection[str]) -> PagingActivity | None:
    if value is None:
        return None
    if isinstance(value, PagingActivity):
        value = value.to_json()
    if not isinstance(value, Mapping):
        raise BehaviourError(
            "'paging_activity' must be null or an object "
            '{"tenant", "every", "create", "update", "merge"}'
        )
    allowed = {"tenant", "every", "create", "update", "merge"}
    unknown = set(value) - allowed
    if unknown:
        raise BehaviourError(f"'paging_activity': unknown field(s) {', '.join(sorted(unknown))}")
    tenant = value.get("tenant")
    if tenant is not None and tenant not in tenants:
        raise BehaviourError(
            f"'paging_activity.tenant' must be null (all) or one of {sorted(tenants)}"
        )
    counts = {
        k: _integer(value.get(k, 0), f"paging_activity.{k}", _MAX_ACTIVITY)
        for k in ("create", "update", "merge")
    }
    every = _integer(value.get("every", 1), "paging_activity.every", None, minimum=1)
    return PagingActivity(every=every, tenant=tenant, **counts)


@dataclass
class Behaviour:
    """The behaviour settings in force plus the paging-activity counters (thread-safe)."""

    settings: Settings = field(default_factory=Settings)
    pages: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, changes: Mapping[str, Any], tenants: Collection[str]) -> Settings:
        """Merge `changes` (see `merge`); a new `paging_activity` restarts its counters."""
        with self.lock:
            self.settings = merge(self.settings, changes, tenants)
            if "paging_activity" in changes:
                self.pages.clear()
            return self.settings

    def page_served(self, tenant_id: str) -> PagingActivity | None:
        """Count one incident-listing page served to `tenant_id`; the activity to apply now,
        if this page is the `every`-th one."""
        with self.lock:
            activity = self.settings.paging_activity
            if activity is None or activity.tenant not in (None, tenant_id):
                return None
            served = self.pages.get(tenant_id, 0) + 1
            self.pages[tenant_id] = served
            return activity if served % activity.every == 0 else None
