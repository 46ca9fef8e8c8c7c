"""The incidents of every tenant: the truth (the latest version of each incident, where writes
and simulated activity land) and the view the APIs serve, with indexes that answer a listing in
time proportional to its page.

The view trails the truth by the `late_arrival_seconds` behaviour: a new version becomes visible
once the clock passes its lastUpdateTime plus that delay (0 = at once). Each tenant's view keeps
two sorted indexes, of (lastUpdateTime, id) and (createdTime, id), maintained with `bisect` on
every change, so a filter made only of bounds on one of those times is a range of an index,
served in O(log n + page) whatever the page's offset. Any other filter or order (status terms,
`or`, the arbitrary order) is computed once over the narrowest index range and cached per
(tenant, filter, order); later changes are applied to the cached listing from a change log, so
the later pages of a listing, also with activity between pages, cost O(changes + page).
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from emulator import data
from emulator.data import TenantGenerator
from emulator.model import Alert, Incident
from emulator.odata import Comparison, Filter

_SPAN = 1 << 32  # ids are below 2**32: key = microseconds * _SPAN + id
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_CACHE_SIZE = 32  # cached listings per tenant
_LOG_LIMIT = 200_000  # change-log entries kept per tenant

TimeField = Literal["update", "created"]
OrderKind = Literal["update", "created", "arbitrary"]


def micros(value: datetime) -> int:
    """Microseconds since the epoch (the resolution of the emulator's times)."""
    return (value - _EPOCH) // _MICRO


def update_key(incident: Incident) -> int:
    """Sort key of (lastUpdateTime, id)."""
    return micros(incident.last_update_time) * _SPAN + incident.incident_id


def created_key(incident: Incident) -> int:
    """Sort key of (createdTime, id)."""
    return micros(incident.created_time) * _SPAN + incident.incident_id


@dataclass(frozen=True, slots=True)
class Order:
    """A listing order: by a time (then id), ascending or not, or the seeded arbitrary order."""

    kind: OrderKind = "update"
    descending: bool = True
    seed: int = 0

    def cache_key(self) -> tuple[str, bool, int]:
        return (self.kind, self.descending, self.seed if self.kind == "arbitrary" else 0)


NEWEST_FIRST = Order("update", descending=True)


@dataclass(frozen=True, slots=True)
class Query:
    """What a listing asks for: `predicate` over rows made by `row`, the time bounds taken
    from its filter (a superset of the matches), and whether the bounds are the whole filter.
    `key` identifies the filter and surface for the listing cache."""

    key: str
    predicate: Callable[[Mapping[str, Any]], bool]
    row: Callable[[Incident], Mapping[str, Any]]
    bounds: tuple[TimeField, int | None, int | None] | None = None  # [lo, hi) microseconds
    exact: bool = True


def make_query(
    key: str,
    parsed: Filter,
    row: Callable[[Incident], Mapping[str, Any]],
    fields: Mapping[str, TimeField],
) -> Query:
    """A `Query` for a parsed filter whose time properties map to indexes by `fields`."""
    bounds = time_bounds(parsed.terms, fields)
    exact = parsed.exact and all(
        bounds is not None and fields.get(t.name) == bounds[0] and t.op != "ne"
        for t in parsed.terms
    )
    return Query(key, parsed.predicate, row, bounds, exact)


def time_bounds(
    terms: Sequence[Comparison], fields: Mapping[str, TimeField]
) -> tuple[TimeField, int | None, int | None] | None:
    """The tightest [lo, hi) microsecond range on one of `fields` (property name -> index)
    implied by top-level `and` terms, preferring lastUpdateTime; None when there is none."""
    best: tuple[TimeField, int | None, int | None] | None = None
    for name, index in fields.items():
        lo: int | None = None
        hi: int | None = None
        found = False
        for term in terms:
            if term.name != name or not isinstance(term.value, datetime):
                continue
            at = micros(term.value)
            if term.op in ("ge", "gt", "eq"):
                start = at + 1 if term.op == "gt" else at
                lo = start if lo is None else max(lo, start)
                found = True
            if term.op in ("le", "lt", "eq"):
                end = at if term.op == "lt" else at + 1
                hi = end if hi is None else min(hi, end)
                found = True
        if found and (best is None or index == "update"):
            best = (index, lo, hi)
    return best


class _Incidents(dict[int, Incident]):
    """A tenant's latest versions; every assignment is reported to the tenant's state."""

    def __init__(self, on_set: Callable[[Incident | None, Incident], None]) -> None:
        super().__init__()
        self._on_set = on_set

    def __setitem__(self, key: int, value: Incident) -> None:
        old = self.get(key)
        super().__setitem__(key, value)
        self._on_set(old, value)

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("incidents are replaced one by one (store[id] = incident), never removed")

    update = setdefault = pop = popitem = clear = __delitem__ = _refuse


@dataclass
class _Cached:
    """A listing computed once: ids in order, with each member's sort key."""

    view_version: int
    keys: list[int]
    ids: list[int]
    members: dict[int, int]


class TenantState:
    """One tenant: the latest versions, the visible view with its indexes, pending versions."""

    def __init__(self, tenant_id: str, generator: TenantGenerator, store: IncidentStore) -> None:
        self.tenant_id = tenant_id
        self.generator = generator
        self._store = store
        self.latest = _Incidents(self._latest_changed)
        self.open_ids: list[int] = []  # sorted ids of latest versions not Redirected
        self.visible: dict[int, Incident] = {}
        self._seq: dict[int, int] = {}  # id -> sequence number of its visible version
        self.by_update: list[int] = []
        self.by_created: list[int] = []
        self._pending: list[tuple[int, int, Incident]] = []  # heap of (lut µs, seq, version)
        self._counter = itertools.count(1)
        self.version = 0  # of the latest versions (keys the hunting tables)
        self.view_version = 0
        self._log: list[int] = []  # ids changed in the view; entry k = view version base+k+1
        self._log_base = 0
        self._cache: dict[tuple[Any, ...], _Cached] = {}
        self._hashes: dict[tuple[int, int], int] = {}
        self._alerts: tuple[int, list[Alert], dict[str, Alert]] | None = None

    def alerts(self) -> tuple[list[Alert], dict[str, Alert]]:
        """The visible incidents' alerts, newest first, and by id (rebuilt after changes)."""
        if self._alerts is None or self._alerts[0] != self.view_version:
            found = [a for i in self.visible.values() for a in i.alerts]
            found.sort(key=lambda a: (a.last_updated_time, a.alert_id), reverse=True)
            self._alerts = (self.view_version, found, {a.alert_id: a for a in found})
        return self._alerts[1], self._alerts[2]

    # ------------------------------------------------------------------ seeding

    def seed(self, incidents: Sequence[Incident], now: datetime) -> None:
        """Bulk-load seeded incidents (O(n log n)); those not yet due become pending."""
        cutoff = self._cutoff(now)
        visible: list[Incident] = []
        for incident in incidents:
            dict.__setitem__(self.latest, incident.incident_id, incident)
            seq = next(self._counter)
            if cutoff is None or micros(incident.last_update_time) <= cutoff:
                visible.append(incident)
                self._seq[incident.incident_id] = seq
            else:
                self._pending.append((micros(incident.last_update_time), seq, incident))
        heapq.heapify(self._pending)
        self.open_ids = sorted(i for i, inc in self.latest.items() if inc.status != "Redirected")
        self.visible.update((i.incident_id, i) for i in visible)
        self.by_update = sorted(update_key(i) for i in visible)
        self.by_created = sorted(created_key(i) for i in visible)

    # ------------------------------------------------------------------ changes

    def _latest_changed(self, old: Incident | None, new: Incident) -> None:
        was_open = old is not None and old.status != "Redirected"
        is_open = new.status != "Redirected"
        if was_open != is_open:
            if is_open:
                bisect.insort(self.open_ids, new.incident_id)
            else:
                del self.open_ids[bisect.bisect_left(self.open_ids, new.incident_id)]
        elif old is None and is_open:
            bisect.insort(self.open_ids, new.incident_id)
        self.version += 1
        seq = next(self._counter)
        if self._store.late_arrival_seconds <= 0:
            self._show(new, seq)
        else:
            heapq.heappush(self._pending, (micros(new.last_update_time), seq, new))

    def _cutoff(self, now: datetime) -> int | None:
        """Versions with a lastUpdateTime up to this (µs) are visible; None = all are."""
        late = self._store.late_arrival_seconds
        return None if late <= 0 else micros(now) - round(late * 1_000_000)

    def advance(self, now: datetime) -> None:
        """Make visible every pending version that is due at `now`."""
        if not self._pending:
            return
        cutoff = self._cutoff(now)
        while self._pending and (cutoff is None or self._pending[0][0] <= cutoff):
            _, seq, incident = heapq.heappop(self._pending)
            self._show(incident, seq)

    def _show(self, incident: Incident, seq: int) -> None:
        incident_id = incident.incident_id
        if self._seq.get(incident_id, 0) > seq:
            return  # a later version is already visible
        old = self.visible.get(incident_id)
        if old is not None:
            _remove(self.by_update, update_key(old))
            if old.created_time != incident.created_time:
                _remove(self.by_created, created_key(old))
                bisect.insort(self.by_created, created_key(incident))
        else:
            bisect.insort(self.by_created, created_key(incident))
        bisect.insort(self.by_update, update_key(incident))
        self.visible[incident_id] = incident
        self._seq[incident_id] = seq
        self.view_version += 1
        self._log.append(incident_id)
        if len(self._log) > _LOG_LIMIT:
            drop = len(self._log) // 2
            del self._log[:drop]
            self._log_base += drop

    # ------------------------------------------------------------------ listings

    def listing(self, query: Query, order: Order) -> Sequence[Incident]:
        """The visible incidents matching `query`, in `order` (a lazy sequence)."""
        bounds = query.bounds
        index_kind: TimeField | None = None if bounds is None else bounds[0]
        if query.exact and order.kind != "arbitrary" and index_kind in (None, order.kind):
            keys = self.by_update if order.kind == "update" else self.by_created
            lo, hi = _positions(keys, bounds)
            return _Range(keys, lo, hi, self.visible, order.descending)
        cached = self._cached(query, order)
        return _Ids(cached.ids, self.visible)

    def _cached(self, query: Query, order: Order) -> _Cached:
        cache_key = (query.key, order.cache_key())
        cached = self._cache.pop(cache_key, None)
        if cached is not None and cached.view_version < self._log_base:
            cached = None  # the change log no longer reaches back to it
        if cached is None:
            cached = self._compute(query, order)
        elif cached.view_version != self.view_version:
            self._catch_up(cached, query, order)
        self._cache[cache_key] = cached
        while len(self._cache) > _CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))
        return cached

    def _compute(self, query: Query, order: Order) -> _Cached:
        pairs = [
            (self._sort_key(incident, order), incident.incident_id)
            for incident in self._candidates(query)
            if query.predicate(query.row(incident))
        ]
        pairs.sort()
        return _Cached(
            self.view_version,
            [k for k, _ in pairs],
            [i for _, i in pairs],
            {i: k for k, i in pairs},
        )

    def _catch_up(self, cached: _Cached, query: Query, order: Order) -> None:
        start = cached.view_version - self._log_base
        for incident_id in set(self._log[start:]):
            key = cached.members.pop(incident_id, None)
            if key is not None:
                at = bisect.bisect_left(cached.keys, key)
                del cached.keys[at], cached.ids[at]
            incident = self.visible.get(incident_id)
            if incident is not None and query.predicate(query.row(incident)):
                key = self._sort_key(incident, order)
                at = bisect.bisect_left(cached.keys, key)
                cached.keys.insert(at, key)
                cached.ids.insert(at, incident_id)
                cached.members[incident_id] = key
        cached.view_version = self.view_version

    def _candidates(self, query: Query) -> Iterator[Incident]:
        if query.bounds is None:
            yield from self.visible.values()
            return
        keys = self.by_update if query.bounds[0] == "update" else self.by_created
        lo, hi = _positions(keys, query.bounds)
        for key in keys[lo:hi]:
            yield self.visible[key % _SPAN]

    def _sort_key(self, incident: Incident, order: Order) -> int:
        if order.kind == "arbitrary":
            return self._hash(order.seed, incident.incident_id) * _SPAN + incident.incident_id
        key = update_key(incident) if order.kind == "update" else created_key(incident)
        return -key if order.descending else key

    def _hash(self, seed: int, incident_id: int) -> int:
        cached = self._hashes.get((seed, incident_id))
        if cached is None:
            digest = hashlib.blake2b(
                f"{seed}:{self.tenant_id}:{incident_id}".encode(), digest_size=8
            ).digest()
            cached = int.from_bytes(digest, "big")
            self._hashes[(seed, incident_id)] = cached
        return cached


def _remove(keys: list[int], key: int) -> None:
    at = bisect.bisect_left(keys, key)
    if at < len(keys) and keys[at] == key:
        del keys[at]


def _positions(
    keys: Sequence[int], bounds: tuple[TimeField, int | None, int | None] | None
) -> tuple[int, int]:
    if bounds is None:
        return 0, len(keys)
    _, lo, hi = bounds
    start = 0 if lo is None else bisect.bisect_left(keys, lo * _SPAN)
    end = len(keys) if hi is None else bisect.bisect_left(keys, hi * _SPAN)
    return start, max(start, end)


class _Range(Sequence[Incident]):
    """Positions [lo, hi) of a sorted index, read forwards or backwards, as incidents."""

    def __init__(
        self,
        keys: Sequence[int],
        lo: int,
        hi: int,
        visible: Mapping[int, Incident],
        descending: bool,
    ) -> None:
        self._keys, self._lo, self._hi = keys, lo, hi
        self._visible, self._descending = visible, descending

    def __len__(self) -> int:
        return self._hi - self._lo

    def __getitem__(self, index: Any) -> Any:
        if not isinstance(index, slice):
            raise TypeError("a listing is read by slices")
        start, stop, _ = index.indices(len(self))
        if stop <= start:
            return []
        if self._descending:
            chunk = self._keys[self._hi - stop : self._hi - start][::-1]
        else:
            chunk = self._keys[self._lo + start : self._lo + stop]
        return [self._visible[k % _SPAN] for k in chunk]


class _Ids(Sequence[Incident]):
    """A cached listing's ids, as incidents."""

    def __init__(self, ids: list[int], visible: Mapping[int, Incident]) -> None:
        self._ids, self._visible = ids, visible

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: Any) -> Any:
        if not isinstance(index, slice):
            raise TypeError("a listing is read by slices")
        return [self._visible[i] for i in self._ids[index]]


@dataclass
class IncidentStore:
    """Incidents per tenant plus the seeded generators that keep simulating activity."""

    seed: int = 1
    seeded_at: datetime | None = None
    late_arrival_seconds: float = 0.0
    tenants: dict[str, TenantState] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    hunting_tables: dict[str, tuple[int, dict[str, list[dict[str, Any]]]]] = field(
        default_factory=dict
    )

    def add_tenant(
        self, tenant_id: str, generator: TenantGenerator, incidents: Sequence[Incident]
    ) -> None:
        """Register a tenant with its seeded incidents (visible unless late arrival delays)."""
        with self.lock:
            state = TenantState(tenant_id, generator, self)
            state.seed(incidents, self.seeded_at or datetime.now(UTC))
            self.tenants[tenant_id] = state

    def __contains__(self, tenant_id: object) -> bool:
        return tenant_id in self.tenants

    def version(self, tenant_id: str) -> int:
        """Bumped on every change of the tenant's incidents (keys the hunting-table cache)."""
        with self.lock:
            state = self.tenants.get(tenant_id)
            return 0 if state is None else state.version

    def put(self, tenant_id: str, incident: Incident) -> None:
        """Store a new version of an incident."""
        with self.lock:
            self.tenants[tenant_id].latest[incident.incident_id] = incident

    def latest(self, tenant_id: str, incident_id: int) -> Incident | None:
        """The latest version of one incident (what a write applies to), or None."""
        with self.lock:
            state = self.tenants.get(tenant_id)
            return None if state is None else state.latest.get(incident_id)

    def visible(self, tenant_id: str, incident_id: int, now: datetime) -> Incident | None:
        """The version of one incident the APIs show at `now`, or None."""
        with self.lock:
            state = self.tenants.get(tenant_id)
            if state is None:
                return None
            state.advance(now)
            return state.visible.get(incident_id)

    def snapshot(self, tenant_id: str) -> list[Incident]:
        """The tenant's latest versions, newest first."""
        with self.lock:
            state = self.tenants.get(tenant_id)
            found = list(state.latest.values()) if state else []
        return data.sorted_newest_first(found)

    def visible_snapshot(self, tenant_id: str, now: datetime) -> list[Incident]:
        """The versions the APIs show at `now`, newest first."""
        with self.lock:
            state = self.tenants.get(tenant_id)
            if state is None:
                return []
            state.advance(now)
            everything = _Range(state.by_update, 0, len(state.by_update), state.visible, True)
            found: list[Incident] = everything[:]
            return found

    def page(
        self, tenant_id: str, query: Query, order: Order, now: datetime, skip: int, top: int
    ) -> tuple[list[Incident], int]:
        """One page (`skip`, `top`) of the visible incidents matching `query` in `order`, and
        the number of matches."""
        with self.lock:
            state = self.tenants[tenant_id]
            state.advance(now)
            found = state.listing(query, order)
            return list(found[skip : skip + top]), len(found)

    def visible_alerts(self, tenant_id: str, now: datetime) -> list[Alert]:
        """The alerts of the versions the APIs show at `now`, newest first (a shared list:
        do not change it)."""
        with self.lock:
            state = self.tenants.get(tenant_id)
            if state is None:
                return []
            state.advance(now)
            return state.alerts()[0]

    def visible_alert(self, tenant_id: str, alert_id: str, now: datetime) -> Alert | None:
        """One alert of the visible versions, or None."""
        with self.lock:
            state = self.tenants.get(tenant_id)
            if state is None:
                return None
            state.advance(now)
            return state.alerts()[1].get(alert_id)

    def simulate(
        self, tenant_id: str, now: datetime, *, create: int, update: int, merge: int
    ) -> data.ActivityResult:
        """Simulated SOC activity on the tenant's latest versions (`/_emulator/activity`)."""
        with self.lock:
            state = self.tenants[tenant_id]
            return data.simulate_activity(
                state.generator,
                state.latest,
                now,
                create=create,
                update=update,
                merge_count=merge,
                open_ids=state.open_ids,
            )

    def set_late_arrival(self, seconds: float, now: datetime) -> None:
        """Change the delay; versions already due under the new value become visible."""
        with self.lock:
            self.late_arrival_seconds = seconds
            for state in self.tenants.values():
                state.advance(now)
