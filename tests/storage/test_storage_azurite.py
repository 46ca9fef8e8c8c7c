"""The storage adapters against Azurite: idempotent archive, monotonic table, state and locks."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient, ContainerClient

from emulator.azurite import Azurite
from shared.core.errors import ConflictError, StorageError
from shared.defender.model import normalize
from shared.storage.archive import IncidentArchive
from shared.storage.state import TenantLock, WatermarkStore
from shared.storage.table import IncidentTable

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
TENANT = "11111111-1111-1111-1111-111111111111"


def incident(n: int, updated: datetime) -> Any:
    raw = {
        "id": str(n),
        "displayName": f"incident {n}",
        "createdDateTime": "2026-11-19T00:00:00Z",
        "lastUpdateDateTime": updated.isoformat().replace("+00:00", "Z"),
        "status": "active",
        "severity": "high",
        "alerts": [],
    }
    return normalize(raw, "graph")


@pytest.fixture
def container(azurite: Azurite) -> Iterator[ContainerClient]:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.create_container(f"t{uuid.uuid4().hex}")
    yield client
    client.delete_container()


@pytest.fixture
def table(azurite: Azurite) -> Iterator[IncidentTable]:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    name = f"t{uuid.uuid4().hex}"
    client = service.create_table(name)
    yield IncidentTable(client)
    service.delete_table(name)


def test_archive_rewrite_of_same_versions_is_idempotent(container: ContainerClient) -> None:
    """Writing the same versions twice gives the same blobs, not a second copy."""
    archive = IncidentArchive(container)
    versions = [incident(1, T0), incident(2, T0 + timedelta(days=1))]
    first = archive.write(TENANT, versions, T0)
    second = archive.write(TENANT, list(reversed(versions)), T0)
    names = sorted(b.name for b in container.list_blobs())
    assert len(names) == 2  # two dates, two partitions
    assert {s.blob_name for s in first} == {s.blob_name for s in second} == set(names)
    assert names[0].startswith(f"incidents/tenant={TENANT}/date=2026-11-20/part-")
    lines = gzip.decompress(container.download_blob(names[0]).readall()).splitlines()
    record = json.loads(lines[0])
    assert record["id"] == "1"
    assert record["_tenantId"] == TENANT
    assert record["_api"] == "graph"
    assert record["_ingestedAt"] == "2026-11-20T10:00:00Z"


def test_table_never_replaces_newer_with_older(
    container: ContainerClient, table: IncidentTable
) -> None:
    """An older version arriving late leaves the newer row in place."""
    archive = IncidentArchive(container)
    newer = archive.write(TENANT, [incident(1, T0 + timedelta(hours=1))], T0)
    older = archive.write(TENANT, [incident(1, T0)], T0)
    assert table.upsert_newer(TENANT, newer, T0) == 1
    assert table.upsert_newer(TENANT, older, T0) == 0
    assert table.upsert_newer(TENANT, newer, T0) == 0
    assert table.lookup(TENANT, ["1"])["1"].last_update == T0 + timedelta(hours=1)
    assert table.lookup(TENANT, ["2"]) == {}


def test_watermark_saves_are_optimistic(container: ContainerClient) -> None:
    """A save with a stale ETag (another run saved first) is a conflict, not an overwrite."""
    store = WatermarkStore(container)
    assert store.load(TENANT).value is None
    store.save(TENANT, T0, etag=None, saved_at=T0)
    first = store.load(TENANT)
    assert first.value == T0
    with pytest.raises(ConflictError):
        store.save(TENANT, T0, etag=None, saved_at=T0)  # create-only: someone created it
    store.save(TENANT, T0 + timedelta(hours=1), etag=first.etag, saved_at=T0)
    with pytest.raises(ConflictError):
        store.save(TENANT, T0 + timedelta(hours=2), etag=first.etag, saved_at=T0)
    assert store.load(TENANT).value == T0 + timedelta(hours=1)


def test_corrupt_watermark_is_reported_with_the_fix(container: ContainerClient) -> None:
    """A watermark blob that is not ours is a clear error naming what to delete."""
    container.upload_blob(f"watermarks/{TENANT}.json", b"{not json")
    with pytest.raises(StorageError, match="corrupt"):
        WatermarkStore(container).load(TENANT)


def test_tenant_lock_excludes_a_second_holder(container: ContainerClient) -> None:
    """While one run holds a tenant, another cannot; after release it can."""
    with TenantLock(container, TENANT) as held:
        with pytest.raises(ConflictError, match="another run"), TenantLock(container, TENANT):
            pass
        held.renew()
    with TenantLock(container, TENANT):
        pass


class CountingTable:
    """The real TableClient, counting the calls the adapter makes (a spy, not a mock)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.client, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return target(*args, **kwargs)

        return counted


def test_batched_upsert_survives_a_concurrent_writer_without_row_by_row_writes(
    container: ContainerClient, azurite: Azurite
) -> None:
    """Writes are transactions mixing creates and updates; a batch refused because another
    writer changed a row is decided again as a whole (one lookup, one transaction)."""
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    name = f"t{uuid.uuid4().hex}"
    spy = CountingTable(service.create_table(name))
    table = IncidentTable(spy)  # type: ignore[arg-type]
    archive = IncidentArchive(container)
    first = archive.write(TENANT, [incident(n, T0) for n in range(1, 151)], T0)
    known = table.lookup(TENANT, (str(n) for n in range(1, 151)))
    assert known == {}
    assert table.upsert_newer(TENANT, first, T0, known) == 150
    assert spy.calls["submit_transaction"] == 2  # 100 + 50
    assert table.lookup(TENANT, [str(n) for n in range(1, 151)]) == known  # ETags match

    # another writer stores a newer version of incident 7 behind our lookup
    newest = archive.write(TENANT, [incident(7, T0 + timedelta(hours=2))], T0)
    assert IncidentTable(service.get_table_client(name)).upsert_newer(TENANT, newest, T0) == 1
    later = archive.write(
        TENANT,
        [incident(7, T0 + timedelta(hours=1)), incident(8, T0 + timedelta(hours=1))]
        + [incident(n, T0) for n in range(200, 230)],  # new rows in the same batch
        T0,
    )
    spy.calls.clear()
    written = table.upsert_newer(TENANT, later, T0, known)

    assert written == 31  # 8 and the 30 new ones: 7 already has a newer version
    # the refused batch is decided again from point reads of its 32 rows, never by a query
    # (an ``or`` over RowKeys is a partition scan)
    assert spy.calls == {"submit_transaction": 2, "get_entity": 32}
    assert table.lookup(TENANT, ["7"])["7"].last_update == T0 + timedelta(hours=2)
    assert table.lookup(TENANT, ["8"])["8"].last_update == T0 + timedelta(hours=1)
    service.delete_table(name)


def test_the_same_version_text_is_stored_once_even_with_a_clamped_time(
    container: ContainerClient, table: IncidentTable
) -> None:
    """A version is identified by the API's exact last-update text, so a clamped (moving)
    time never makes the same version look new."""
    archive = IncidentArchive(container)
    future = incident(1, T0 + timedelta(days=400))
    from dataclasses import replace

    clamped = replace(future, last_update=T0 + timedelta(minutes=5))
    assert table.upsert_newer(TENANT, archive.write(TENANT, [clamped], T0), T0) == 1
    later_clamp = replace(future, last_update=T0 + timedelta(hours=3))
    assert table.upsert_newer(TENANT, archive.write(TENANT, [later_clamp], T0), T0) == 0


def test_lost_lease_stops_writes_and_a_timer_keeps_a_held_one_alive(
    container: ContainerClient,
) -> None:
    """The timer renews a 15 s lease past its duration; once broken, ensure() refuses."""
    import time

    from azure.storage.blob import BlobLeaseClient

    from shared.core.errors import LeaseLostError

    with TenantLock(container, TENANT, lease_seconds=15) as held:
        time.sleep(17)  # longer than the lease: only the timer keeps it
        held.ensure()
        with pytest.raises(ConflictError):
            TenantLock(container, TENANT, lease_seconds=15).__enter__()
        BlobLeaseClient(container.get_blob_client(f"locks/{TENANT}")).break_lease(0)
        with pytest.raises(LeaseLostError, match="lost the lease"):
            held.renew()
        with pytest.raises(LeaseLostError):
            held.ensure()
        assert held.lost


def test_quarantine_names_a_record_by_its_digest(container: ContainerClient) -> None:
    from shared.storage.archive import Quarantine

    quarantine = Quarantine(container)
    bad = {"displayName": "no id", "lastUpdateDateTime": "2026-11-20T10:00:00Z"}
    first = quarantine.put(TENANT, "graph", bad, "incident without 'id'", T0)
    again = quarantine.put(TENANT, "graph", dict(bad), "incident without 'id'", T0)
    assert first == again
    assert first.startswith(f"quarantine/tenant={TENANT}/date=2026-11-20/q-")
    doc = json.loads(container.download_blob(first).readall())
    assert doc["reason"] == "incident without 'id'" and doc["record"] == bad


def test_create_first_writes_new_rows_in_one_transaction_and_refuses_as_a_whole(
    container: ContainerClient, azurite: Azurite
) -> None:
    """create_new: one create-only transaction, no read; if any row exists nothing is written
    (atomic), and the rows of an answer are then read by point reads."""
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    name = f"t{uuid.uuid4().hex}"
    spy = CountingTable(service.create_table(name))
    table = IncidentTable(spy)  # type: ignore[arg-type]
    archive = IncidentArchive(container)
    first = archive.write(TENANT, [incident(n, T0) for n in range(1, 51)], T0)
    created = table.create_new(TENANT, first, T0)
    assert created is not None and sorted(created, key=int) == [str(n) for n in range(1, 51)]
    assert spy.calls == {"submit_transaction": 1}  # no read at all
    assert table.lookup(TENANT, created) == created  # ETags and blob names as written

    spy.calls.clear()
    mixed = archive.write(TENANT, [incident(n, T0 + timedelta(hours=1)) for n in range(45, 61)], T0)
    assert table.create_new(TENANT, mixed, T0) is None  # 45-50 exist: refused whole
    assert table.lookup(TENANT, [str(n) for n in range(51, 61)]) == {}  # none of 51-60 written
    assert table.lookup(TENANT, ["45"])["45"].last_update == T0
    service.delete_table(name)


def test_forget_deletes_only_rows_still_pointing_at_the_missing_blob(
    container: ContainerClient, table: IncidentTable
) -> None:
    """Recovery of rows created for a blob never written: a row rewritten since is kept."""
    from shared.storage.values import placed, plan

    versions = [incident(n, T0) for n in range(1, 4)]
    rows = placed(plan(TENANT, versions))
    assert table.create_new(TENANT, rows, T0) is not None
    blob = rows[0].blob_name
    # another writer moved incident 3 to a newer version in another blob
    newer = IncidentArchive(container).write(TENANT, [incident(3, T0 + timedelta(hours=1))], T0)
    assert table.upsert_newer(TENANT, newer, T0) == 1

    assert table.forget(TENANT, blob, ["1", "2", "3", "4"]) == 2
    assert table.lookup(TENANT, ["1"]) == {}
    assert table.lookup(TENANT, ["2"]) == {}
    assert table.lookup(TENANT, ["3"])["3"].last_update == T0 + timedelta(hours=1)


def test_journal_notes_created_rows_and_refuses_a_corrupt_note(container: ContainerClient) -> None:
    from shared.storage.state import PageJournal
    from shared.storage.values import JournalNote

    journal = PageJournal(container)
    assert journal.note(TENANT) == JournalNote()
    journal.record(TENANT, ["a", "b"], created={"a": ["1", "2"]})
    assert journal.note(TENANT) == JournalNote(("a", "b"), {"a": ("1", "2")})
    assert list(journal.note(TENANT).blobs) == ["a", "b"]
    journal.record(TENANT, ["c"])  # the next answer's note replaces it
    assert journal.note(TENANT) == JournalNote(("c",), {})
    container.upload_blob(
        f"journal/{TENANT}.json", b'{"blobs": ["a"], "created": {"a": [1]}}', overwrite=True
    )
    with pytest.raises(StorageError, match="corrupt"):
        journal.note(TENANT)
    journal.clear(TENANT)
    assert journal.note(TENANT) == JournalNote()


def test_ensure_shares_one_renewal_between_the_writes_of_a_second(
    container: ContainerClient,
) -> None:
    """ensure() renews unless a renewal began less than ENSURE_FRESH ago: the few writes of
    one answer share one renewal, and a lease lost since is found by the next one after."""
    from azure.storage.blob import BlobLeaseClient

    from shared.core.errors import LeaseLostError
    from shared.storage.state import ENSURE_FRESH

    now = [1000.0]
    with TenantLock(container, TENANT, lease_seconds=60, monotonic=lambda: now[0]) as held:
        BlobLeaseClient(container.get_blob_client(f"locks/{TENANT}")).break_lease(0)
        now[0] += ENSURE_FRESH / 2
        held.ensure()  # renewed (acquired) half a second ago: no storage call
        assert not held.lost
        now[0] += ENSURE_FRESH
        with pytest.raises(LeaseLostError):
            held.ensure()
        assert held.lost
