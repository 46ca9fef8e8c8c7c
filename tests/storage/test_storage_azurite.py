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
from shared.defender.model import normalize
from shared.errors import ConflictError, StorageError
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
    assert table.stored_version(TENANT, "1") == T0 + timedelta(hours=1)
    assert table.stored_version(TENANT, "2") is None


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


def test_batched_upsert_uses_snapshot_and_survives_a_concurrent_writer(
    container: ContainerClient, table: IncidentTable
) -> None:
    """Batched writes skip known versions, and a row changed behind the snapshot is re-decided."""
    archive = IncidentArchive(container)
    first = archive.write(TENANT, [incident(n, T0) for n in range(1, 151)], T0)
    known = table.known_since(TENANT, T0)
    assert known == {}
    assert table.upsert_newer(TENANT, first, T0, known) == 150  # two transactions
    assert len(known) == 150
    assert table.known_since(TENANT, T0) == known  # ETags from the batch results match
    assert table.known_since(TENANT, T0 + timedelta(seconds=1)) == {}

    # another writer stores a newer version of incident 7 behind our snapshot
    newest = archive.write(TENANT, [incident(7, T0 + timedelta(hours=2))], T0)
    assert table.upsert_newer(TENANT, newest, T0) == 1
    later = archive.write(
        TENANT, [incident(7, T0 + timedelta(hours=1)), incident(8, T0 + timedelta(hours=1))], T0
    )
    written = table.upsert_newer(TENANT, later, T0, known)

    assert written == 1  # incident 8 only: 7 already has a newer version
    assert table.stored_version(TENANT, "7") == T0 + timedelta(hours=2)
    assert table.stored_version(TENANT, "8") == T0 + timedelta(hours=1)
