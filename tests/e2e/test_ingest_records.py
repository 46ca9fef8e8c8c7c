"""Ingestion's handling of what the API hands it, on real storage (Azurite) with a scripted
service: bad records are quarantined, future times clamped, unknown fields kept, any exception
stays in its tenant, and the push hook hears of every new version before it is stored (a hook
that fails stops the answer before anything of it is stored, so no change is ever lost).

The service here is a small scripted stand-in for ``DefenderClient`` (the emulator renders only
valid records); the storage adapters, lease and checkpoints are the real ones.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from emulator.azurite import Azurite
from shared.core.clock import format_utc
from shared.defender.model import Incident, SlicePage
from shared.defender.slices import SliceRequest
from shared.storage.archive import IncidentArchive, Quarantine
from shared.storage.state import PageJournal, TenantLock, WatermarkStore
from shared.storage.table import IncidentTable
from shared.usecases.ingest import Ingestor, IngestStores, RunOptions

NOW = datetime.now(UTC).replace(microsecond=0)
GOOD, BAD = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"


def graph_incident(n: int, updated: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(n),
        "displayName": f"incident {n}",
        "createdDateTime": format_utc(updated - timedelta(hours=1)),
        "lastUpdateDateTime": format_utc(updated),
        "status": "active",
        "severity": "high",
        "alerts": [],
        **extra,
    }


class ScriptedClient:
    """Answers every slice with the records that fall in it (documented semantics)."""

    api = "graph"

    def __init__(self, records: list[dict[str, Any]], *, explode: bool = False) -> None:
        self.records = records
        self.explode = explode
        self.api_calls = 0
        self.throttled_waits = 0
        self.bad_served = False

    def incident_slice(
        self, request: SliceRequest, *, top: int, count: bool, expand: bool, deadline: float
    ) -> SlicePage:
        self.api_calls += 1
        if self.explode:
            raise KeyError("an SDK failure outside our hierarchy")
        from shared.core.clock import parse_utc

        def inside(raw: dict[str, Any]) -> bool:
            try:
                t = parse_utc(str(raw.get("lastUpdateDateTime")))
            except ValueError:
                return False
            return request.start <= t < request.end

        found = [r for r in self.records if inside(r)]
        if not self.bad_served:  # records a filter could not have matched: once, in the first
            self.bad_served = True
            found += [r for r in self.records if not _has_time(r) or _future(r)]
        return SlicePage(found[:top], None, len(found), top, expanded=True)

    def slice_pages(
        self, request: SliceRequest, *, top: int, expand: bool, deadline: float
    ) -> Iterator[SlicePage]:
        """A slice read across pages (Graph, ``$count`` on each): the same records, paged."""
        first = self.incident_slice(request, top=10**6, count=True, expand=expand, deadline=0)
        found, total = first.items, first.count
        for skip in range(0, max(len(found), 1), top):
            if skip:
                self.api_calls += 1
            more = skip + top < len(found)
            link = f"https://graph.microsoft.com/v1.0/security/incidents?$skip={skip + top}"
            yield SlicePage(found[skip : skip + top], link if more else None, total, top, True)


def _has_time(raw: dict[str, Any]) -> bool:
    return isinstance(raw.get("lastUpdateDateTime"), str)


def _future(raw: dict[str, Any]) -> bool:
    return _has_time(raw) and str(raw["lastUpdateDateTime"]) > format_utc(NOW + timedelta(days=1))


@pytest.fixture
def storage(azurite: Azurite) -> Iterator[dict[str, Any]]:
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    tables = TableServiceClient.from_connection_string(azurite.connection_string)
    suffix = uuid.uuid4().hex[:10]
    data = blobs.create_container(f"data{suffix}")
    state = blobs.create_container(f"state{suffix}")
    table = tables.create_table(f"t{suffix}")
    yield {"data": data, "state": state, "table": table}
    data.delete_container()
    state.delete_container()
    tables.delete_table(f"t{suffix}")


def ingestor(
    storage: dict[str, Any], clients: dict[str, ScriptedClient], notify: Any = None
) -> Ingestor:
    return Ingestor(
        source_for=lambda tenant: clients[tenant],
        clock=lambda: datetime.now(UTC),
        notify=notify,
        stores=IngestStores(
            archive=IncidentArchive(storage["data"]),
            table=IncidentTable(storage["table"]),
            checkpoints=WatermarkStore(storage["state"]),
            journal=PageJournal(storage["state"]),
            quarantine=Quarantine(storage["data"]),
            lease_for=lambda tenant: TenantLock(storage["state"], tenant, lease_seconds=15),
        ),
        options=RunOptions(
            lookback=timedelta(days=2),
            overlap=timedelta(minutes=10),
            page_size=50,
            safety_lag=timedelta(0),
            time_budget=timedelta(minutes=8),
            lag_warning=timedelta(hours=1),
        ),
    )


def lines(container: Any, prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for blob in container.list_blobs(name_starts_with=prefix):
        data = container.download_blob(blob.name).readall()
        text = gzip.decompress(data).decode() if blob.name.endswith(".gz") else data.decode()
        out.extend(json.loads(line) for line in text.splitlines())
    return out


@pytest.mark.e2e
def test_bad_records_are_quarantined_future_times_clamped_unknown_fields_kept(
    storage: dict[str, Any],
) -> None:
    records = [
        graph_incident(
            1, NOW - timedelta(hours=3), priorityScore=77, systemTags=["Defender Experts"]
        ),
        graph_incident(2, NOW - timedelta(hours=2), someFieldFromTheFuture={"x": 1}),
        {"displayName": "no id", "lastUpdateDateTime": format_utc(NOW - timedelta(hours=1))},
        {"id": "4", "displayName": "no last update", "createdDateTime": format_utc(NOW)},
        graph_incident(5, NOW + timedelta(days=400)),
    ]
    client = ScriptedClient(records)
    result = ingestor(storage, {GOOD: client}).run_tenant(GOOD)

    assert result.ok and result.complete, result
    assert result.quarantined == 2 and result.clamped == 1
    assert result.incidents == 3
    quarantined = lines(storage["data"], f"quarantine/tenant={GOOD}/")
    assert sorted(q["reason"] for q in quarantined) == [
        "incident without 'id'",
        "incident without 'lastUpdateDateTime'",
    ]
    stored = {line["id"]: line for line in lines(storage["data"], f"incidents/tenant={GOOD}/")}
    assert stored["2"]["someFieldFromTheFuture"] == {"x": 1}
    rows = {r["RowKey"]: r for r in storage["table"].query_entities(f"PartitionKey eq '{GOOD}'")}
    assert rows["1"]["PriorityScore"] == 77 and json.loads(rows["1"]["SystemTags"]) == [
        "Defender Experts"
    ]
    assert rows["5"]["Version"] == records[4]["lastUpdateDateTime"]  # the API's own text
    assert rows["5"]["LastUpdateTime"] < format_utc(NOW + timedelta(hours=1))  # clamped

    again = ingestor(storage, {GOOD: ScriptedClient(records)}).run_tenant(GOOD)
    assert again.ok and again.incidents == 0  # the clamped version is not "new" again
    assert len(lines(storage["data"], f"quarantine/tenant={GOOD}/")) == 2  # one blob per record


@pytest.mark.e2e
def test_any_exception_stays_in_its_tenant_and_the_push_hook_loses_no_change(
    storage: dict[str, Any],
) -> None:
    heard: list[tuple[str, list[str], frozenset[str]]] = []
    down = [True]

    def notify(tenant: str, versions: Sequence[Incident], created: frozenset[str]) -> None:
        if down[0]:
            raise RuntimeError("the push queue is down")
        heard.append((tenant, [v.id for v in versions], created))

    records = [graph_incident(n, NOW - timedelta(minutes=n)) for n in range(1, 8)]
    clients = {BAD: ScriptedClient([], explode=True), GOOD: ScriptedClient(records)}
    summary = ingestor(storage, clients, notify).run([BAD, GOOD])

    bad, good = summary.tenants
    assert not bad.ok and bad.error_code == "internal" and "KeyError" in (bad.error or "")
    # the hook failed before anything was stored: the run fails and stores nothing, so the
    # versions stay new for the next run instead of being stored unheard of
    assert not good.ok and good.incidents == 0 and "RuntimeError" in (good.error or "")
    assert not list(storage["table"].query_entities(f"PartitionKey eq '{GOOD}'"))

    down[0] = False
    again = ingestor(storage, {GOOD: ScriptedClient(records)}, notify).run_tenant(GOOD)
    assert again.ok and again.incidents == 7
    # each version heard exactly once, before it was stored, and all new to the store
    assert sorted(i for _, ids, _ in heard for i in ids) == sorted(str(n) for n in range(1, 8))
    assert {t for t, _, _ in heard} == {GOOD}
    assert set().union(*(c for _, _, c in heard)) == {str(n) for n in range(1, 8)}

    # updated just now: within the next run's overlap however long after collection (when
    # NOW was taken) this test runs
    now = datetime.now(UTC).replace(microsecond=0)
    updated = [
        dict(r, lastUpdateDateTime=format_utc(now)) if r["id"] == "3" else r for r in records
    ]
    heard.clear()
    third = ingestor(storage, {GOOD: ScriptedClient(updated)}, notify).run_tenant(GOOD)
    assert third.ok and third.incidents == 1
    assert [(ids, created) for _, ids, created in heard] == [(["3"], frozenset())]  # an update
