"""In-memory fakes of the ingestion and fan-out ports (``shared.ports``), for millisecond tests
and benchmarks; those of push, the HTTP API and the credential check are in
``testkit.port_fakes``.

Each fake keeps the contract of the adapter it stands for
(``tests/storage/test_fakes_contract.py`` checks the same facts against the fakes and, on
Azurite, against the real adapters): conditional
writes refuse a stale ETag, a create-only transaction is atomic, a lease refuses a second
holder, blob names come from their content. What a fake adds is a way to make a failure
happen at a chosen moment (``fail``), which is what crash-recovery tests need.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.core.clock import format_utc, parse_utc
from shared.core.errors import ConflictError, LeaseLostError, StorageError, ThrottledError
from shared.core.surfaces import SKIP_LIMIT, ApiKind, surface
from shared.defender.model import Incident, SlicePage
from shared.defender.slices import SliceRequest
from shared.storage.values import (
    IngestMessage,
    JournalNote,
    PlannedBlob,
    PoisonMessage,
    RowVersion,
    RunState,
    StoredVersion,
    TenantEntry,
    Watermark,
    is_stored,
    placed,
    quarantine_name,
    version_text,
)

_etags = itertools.count(1)


def _etag() -> str:
    return f'W/"{next(_etags)}"'


class Faults:
    """Failures to raise at chosen operations: ``faults.arm("upload", after=2)`` makes the
    third ``upload`` (and only it) raise ``StorageError``."""

    def __init__(self) -> None:
        self._armed: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def arm(self, operation: str, *, after: int = 0) -> None:
        self._armed[operation] = self.calls.get(operation, 0) + after

    def check(self, operation: str) -> None:
        n = self.calls.get(operation, 0)
        self.calls[operation] = n + 1
        if self._armed.get(operation) == n:
            del self._armed[operation]
            raise StorageError(f"injected failure of {operation}")


class MovableClock:
    """Now, tz-aware UTC, moved by the test (``advance``); also a monotonic clock (``tick``)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
        self.seconds = 0.0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta
        self.seconds += delta.total_seconds()

    def monotonic(self) -> float:
        return self.seconds


# ---------------------------------------------------------------------------- storage


@dataclass
class MemoryArchive:
    """``shared.storage.archive.IncidentArchive`` in memory: blob name -> versions."""

    blobs: dict[str, list[StoredVersion]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)

    def upload(
        self, tenant: str, planned: Sequence[PlannedBlob], ingested_at: datetime
    ) -> list[StoredVersion]:
        stored: list[StoredVersion] = []
        for blob in planned:
            self.faults.check("upload")
            versions = placed([blob])
            self.blobs[blob.name] = versions  # overwrite: same name, same content
            stored.extend(versions)
        return stored

    def exists(self, name: str) -> bool:
        return name in self.blobs

    def read(self, name: str) -> list[StoredVersion] | None:
        versions = self.blobs.get(name)
        return None if versions is None else list(versions)

    def versions(self, tenant: str) -> list[Incident]:
        """Every stored version of a tenant (one per line, duplicates included)."""
        prefix = f"incidents/tenant={tenant}/"
        return [v.incident for n, vs in self.blobs.items() if n.startswith(prefix) for v in vs]


@dataclass
class MemoryQuarantine:
    """``shared.storage.archive.Quarantine`` in memory."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def put(self, tenant: str, api: str, record: Any, reason: str, at: datetime) -> str:
        name = quarantine_name(tenant, record, at.date().isoformat())
        self.records[name] = {"reason": reason, "record": record, "api": api}
        return name


@dataclass
class MemoryTable:
    """``shared.storage.table.IncidentTable`` in memory: (tenant, id) -> row. Writes are
    conditional like the real table's (create-only, or if the ETag is unchanged)."""

    rows: dict[tuple[str, str], RowVersion] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    reads: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def lookup(self, tenant: str, incident_ids: Iterable[str]) -> dict[str, RowVersion]:
        self.faults.check("lookup")
        ids = sorted(set(incident_ids))
        self.reads += len(ids)
        with self._lock:
            return {i: self.rows[(tenant, i)] for i in ids if (tenant, i) in self.rows}

    def create_new(
        self, tenant: str, stored: Sequence[StoredVersion], ingested_at: datetime
    ) -> dict[str, RowVersion] | None:
        self.faults.check("create_new")
        with self._lock:
            if any((tenant, v.incident.id) in self.rows for v in stored):
                return None  # atomic: nothing written
            written = {v.incident.id: _row(v) for v in stored}
            self.rows.update({(tenant, rid): row for rid, row in written.items()})
            return written

    def forget(self, tenant: str, blob_name: str, incident_ids: Iterable[str]) -> int:
        self.faults.check("forget")
        deleted = 0
        with self._lock:
            for rid in incident_ids:
                row = self.rows.get((tenant, rid))
                if row is not None and row.blob == blob_name:
                    del self.rows[(tenant, rid)]
                    deleted += 1
        return deleted

    def upsert_newer(
        self,
        tenant: str,
        stored: Iterable[StoredVersion],
        ingested_at: datetime,
        known: dict[str, RowVersion] | None = None,
    ) -> int:
        self.faults.check("upsert_newer")
        newest: dict[str, StoredVersion] = {}
        for version in stored:
            held = newest.get(version.incident.id)
            if held is None or held.incident.last_update < version.incident.last_update:
                newest[version.incident.id] = version
        if known is None:
            known = self.lookup(tenant, newest)
        written = 0
        with self._lock:
            for rid, version in newest.items():
                current = self.rows.get((tenant, rid))
                if is_stored(current, version.incident):
                    known[rid] = current  # type: ignore[assignment]
                    continue
                row = _row(version)
                self.rows[(tenant, rid)] = row
                known[rid] = row
                written += 1
        return written

    def versions(self, tenant: str) -> dict[str, str]:
        """Incident id -> the version text its row holds."""
        return {rid: row.version for (t, rid), row in self.rows.items() if t == tenant}


def _row(version: StoredVersion) -> RowVersion:
    incident = version.incident
    return RowVersion(incident.last_update, _etag(), version_text(incident), version.blob_name)


@dataclass
class MemoryCheckpoints:
    """``shared.storage.state.WatermarkStore`` in memory, with its ETag checks."""

    saved: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)

    def load(self, tenant: str) -> Watermark:
        held = self.saved.get(tenant)
        if held is None:
            return Watermark(None, None)
        doc, etag = held
        info = {k: v for k, v in doc.items() if k != "watermark"}
        return Watermark(parse_utc(doc["watermark"]), etag, info)

    def save(
        self,
        tenant: str,
        value: datetime,
        *,
        etag: str | None,
        saved_at: datetime,
        info: Mapping[str, Any] | None = None,
    ) -> str:
        self.faults.check("save")
        held = self.saved.get(tenant)
        if (held is None) != (etag is None) or (held is not None and held[1] != etag):
            raise ConflictError(f"the watermark of tenant {tenant} was changed by another run")
        doc = {**(info or {}), "watermark": format_utc(value), "savedAt": format_utc(saved_at)}
        new = _etag()
        self.saved[tenant] = (doc, new)
        return new


@dataclass
class MemoryJournal:
    """``shared.storage.state.PageJournal`` in memory."""

    notes: dict[str, JournalNote] = field(default_factory=dict)

    def record(
        self,
        tenant: str,
        blob_names: list[str],
        created: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        created_ids = {name: tuple(ids) for name, ids in (created or {}).items()}
        self.notes[tenant] = JournalNote(tuple(blob_names), created_ids)

    def note(self, tenant: str) -> JournalNote:
        return self.notes.get(tenant, JournalNote())

    def clear(self, tenant: str) -> None:
        self.notes.pop(tenant, None)


class MemoryLeases:
    """``shared.storage.state.TenantLock`` in memory: ``for_tenant`` is the ``lock_for`` of a
    use case; ``lose(tenant)`` makes the holder's next ``ensure`` raise ``LeaseLostError``."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self._lost: set[str] = set()

    def for_tenant(self, tenant: str) -> MemoryLease:
        return MemoryLease(self, tenant)

    def lose(self, tenant: str) -> None:
        self._lost.add(tenant)
        self.held.discard(tenant)


@dataclass
class MemoryLease:
    leases: MemoryLeases
    tenant: str

    def __enter__(self) -> MemoryLease:
        if self.tenant in self.leases.held:
            raise ConflictError(f"tenant {self.tenant} is being ingested by another run")
        self.leases.held.add(self.tenant)
        self.leases._lost.discard(self.tenant)
        return self

    def __exit__(self, *exc: object) -> None:
        self.leases.held.discard(self.tenant)

    def ensure(self) -> None:
        if self.tenant in self.leases._lost:
            raise LeaseLostError(f"the lease of tenant {self.tenant} was lost")


# ---------------------------------------------------------------------------- fan-out


@dataclass
class MemoryQueue:
    """``shared.storage.queue.IngestQueue`` in memory: ``sent`` holds (message, delay)."""

    sent: list[tuple[IngestMessage, float]] = field(default_factory=list)
    poisoned: list[str] = field(default_factory=list)

    def send(self, message: IngestMessage, *, delay: float = 0.0) -> None:
        self.sent.append((message, delay))

    def send_poison(self, text: str) -> None:
        self.poisoned.append(text)

    def poison(self, *, limit: int = 32) -> list[PoisonMessage]:
        return [
            PoisonMessage(str(n), text, None, None, None, 0)
            for n, text in enumerate(self.poisoned[:limit])
        ]

    def poison_count(self) -> int:
        return len(self.poisoned)

    def pending_count(self) -> int:
        return len(self.sent)

    def drain_poison(self, *, hold_seconds: int = 300) -> Iterator[tuple[PoisonMessage, Any]]:
        for message in self.poison():
            yield message, message.text

    def delete_poison(self, receipt: Any) -> None:
        self.poisoned.remove(receipt)

    def release_poison(self, receipt: Any) -> None:
        return None


@dataclass
class MemoryDirectory:
    """``shared.storage.tenants.TenantRegistry`` in memory."""

    tenants: dict[str, TenantEntry] = field(default_factory=dict)

    @classmethod
    def of(cls, *tenant_ids: str, api: ApiKind | None = None) -> MemoryDirectory:
        return cls({t: TenantEntry(t, api=api) for t in tenant_ids})

    def entries(self, *, include_disabled: bool = False) -> list[TenantEntry]:
        return [e for e in self.tenants.values() if include_disabled or e.enabled]

    def enabled(self) -> list[TenantEntry]:
        return self.entries()

    def get(self, tenant_id: str) -> TenantEntry | None:
        return self.tenants.get(tenant_id)


@dataclass
class MemoryRunStates:
    """``shared.storage.tenants.RunStateStore`` in memory, with the conditional "queued" claim."""

    rows: dict[str, RunState] = field(default_factory=dict)

    def all(self) -> dict[str, RunState]:
        return dict(self.rows)

    def get(self, tenant_id: str) -> RunState:
        return self.rows.get(tenant_id) or RunState(tenant_id)

    def claim(self, state: RunState, *, until: datetime, reason: str) -> bool:
        current = self.rows.get(state.tenant_id)
        if (current.etag if current else None) != state.etag:
            return False
        self.rows[state.tenant_id] = replace(
            state, queued_until=until, queue_reason=reason, etag=_etag()
        )
        return True

    def update(self, tenant_id: str, **changes: Any) -> None:
        current = self.get(tenant_id)
        self.rows[tenant_id] = replace(current, **changes, etag=_etag())


# ---------------------------------------------------------------------------- Defender


def graph_incident(
    incident_id: str,
    updated: datetime,
    *,
    created: datetime | None = None,
    alerts: int = 1,
    **fields: Any,
) -> dict[str, Any]:
    """A Microsoft Graph security incident as the API answers it (``$expand=alerts``)."""
    return {
        "id": incident_id,
        "displayName": f"incident {incident_id}",
        "status": "active",
        "severity": "medium",
        "createdDateTime": format_utc(created or updated),
        "lastUpdateDateTime": format_utc(updated),
        "alerts": [{"id": f"{incident_id}-a{n}", "incidentId": incident_id} for n in range(alerts)],
        **fields,
    }


class FakeIncidentSource:
    """One tenant's incidents answered the way the service documents, in memory.

    ``incidents`` holds raw incidents of ``api``'s spelling (``graph_incident``); ``update``
    replaces one (a new version). Answers hold the items of the asked time slice in an order
    of their own (``order``: never a sort the caller could rely on), ``top`` at most, with a
    next link when there are more, and ``@odata.count`` on Graph when asked. ``throttle_at``
    makes that call (1-based) raise ``ThrottledError``.
    """

    def __init__(
        self,
        tenant: str,
        incidents: Iterable[Mapping[str, Any]] = (),
        *,
        api: ApiKind = "graph",
        order: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.tenant = tenant
        self.api: ApiKind = api
        self._spelling = surface(api)
        self._items: dict[str, dict[str, Any]] = {}
        self._order = order or (lambda items: sorted(items, key=lambda i: str(i[self._id])))
        self.calls: list[SliceRequest] = []
        self.throttle_at: int | None = None
        self.retry_after: float = 60.0
        #: called on every request (a test moves its clock here: each call takes time)
        self.on_call: Callable[[], None] | None = None
        self._throttled = 0
        for raw in incidents:
            self.update(raw)

    @property
    def _id(self) -> str:
        return self._spelling.id_field

    def update(self, raw: Mapping[str, Any]) -> None:
        self._items[str(raw.get(self._id, f"no-id-{len(self._items)}"))] = dict(raw)

    @property
    def api_calls(self) -> int:
        return len(self.calls)

    @property
    def throttled_waits(self) -> int:
        return self._throttled

    def quota_wait(self) -> float:
        return 0.0

    def _call(self, request: SliceRequest) -> None:
        self.calls.append(request)
        if self.on_call is not None:
            self.on_call()
        if self.throttle_at is not None and len(self.calls) == self.throttle_at:
            self._throttled += 1
            raise ThrottledError("the quota is spent", retry_after=self.retry_after)

    def _matching(self, request: SliceRequest) -> list[dict[str, Any]]:
        def moment(raw: Mapping[str, Any], name: str) -> datetime | None:
            try:
                return parse_utc(str(raw[name]))
            except (KeyError, ValueError):
                return None

        def within(raw: Mapping[str, Any]) -> bool:
            updated = moment(raw, self._spelling.last_update_field)
            if updated is None:
                return True  # a malformed record shows up in every answer it could be in
            if not request.start <= updated < request.end:
                return False
            created = moment(raw, self._spelling.created_field) or updated
            if request.created_start is not None and created < request.created_start:
                return False
            return request.created_end is None or created < request.created_end

        return self._order([dict(r) for r in self._items.values() if within(r)])

    def incident_slice(
        self,
        request: SliceRequest,
        *,
        top: int,
        count: bool = False,
        expand: bool = True,
        deadline: float | None = None,
    ) -> SlicePage:
        self._call(request)
        items = self._matching(request)
        page = items[:top]
        link = "https://fake.invalid/next?$skip=" + str(top) if len(items) > top else None
        total = len(items) if count and self.api == "graph" else None
        return SlicePage(page, link, total, top, expanded=expand and self.api == "graph")

    def slice_pages(
        self, request: SliceRequest, *, top: int, expand: bool = True, deadline: float | None = None
    ) -> Iterator[SlicePage]:
        items = self._matching(request)
        for skip in range(0, max(len(items), 1), top):
            self._call(request)
            page = items[skip : skip + top]
            more = skip + top < len(items)
            link = f"https://fake.invalid/next?$skip={skip + top}" if more else None
            graph = self.api == "graph"
            yield SlicePage(page, link, len(items) if graph else None, top, expanded=graph)
            if skip + top > SKIP_LIMIT:
                return

    def exhaust_slice(
        self, request: SliceRequest, *, top: int, expand: bool = True, deadline: float | None = None
    ) -> Iterator[SlicePage]:
        yield from self.slice_pages(request, top=top, expand=expand, deadline=deadline)

    def alerts_of_incidents(
        self, incident_ids: list[str], *, deadline: float | None = None
    ) -> tuple[dict[str, list[dict[str, Any]]], int]:
        found = {i: list(self._items.get(i, {}).get("alerts", [])) for i in incident_ids}
        return found, 1
