"""The in-memory fakes of ``testkit.fakes`` keep the contracts of the real adapters: the same
checks run against each fake and, on Azurite, against the adapter it stands for. A fake that
drifted from its adapter would make the millisecond tests prove nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared.core.errors import ConflictError
from shared.defender.model import normalize
from shared.storage.archive import IncidentArchive
from shared.storage.state import PageJournal, WatermarkStore
from shared.storage.table import IncidentTable
from shared.storage.values import placed, plan
from testkit.fakes import (
    MemoryArchive,
    MemoryCheckpoints,
    MemoryJournal,
    MemoryTable,
    graph_incident,
)

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
TENANT = "11111111-1111-1111-1111-111111111111"


@dataclass
class Stores:
    archive: Any
    table: Any
    checkpoints: Any
    journal: Any


@pytest.fixture(params=["memory", pytest.param("azurite", marks=pytest.mark.e2e)])
def stores(request: pytest.FixtureRequest) -> Iterator[Stores]:
    if request.param == "memory":
        yield Stores(MemoryArchive(), MemoryTable(), MemoryCheckpoints(), MemoryJournal())
        return
    azurite = request.getfixturevalue("azurite")
    suffix = uuid.uuid4().hex[:10]
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = blobs.create_container(f"contract-{suffix}")
    tables = TableServiceClient.from_connection_string(azurite.connection_string)
    table = tables.create_table(f"contract{suffix}")
    try:
        yield Stores(
            IncidentArchive(container),
            IncidentTable(table),
            WatermarkStore(container),
            PageJournal(container),
        )
    finally:
        container.delete_container()
        tables.delete_table(table.table_name)


def version(n: int, minutes: int) -> Any:
    return normalize(graph_incident(str(n), T0 + timedelta(minutes=minutes)), "graph")


def test_checkpoints_refuse_a_stale_etag(stores: Stores) -> None:
    marks = stores.checkpoints
    assert marks.load(TENANT).value is None
    etag = marks.save(TENANT, T0, etag=None, saved_at=T0, info={"ratePerHour": 5})
    with pytest.raises(ConflictError):
        marks.save(TENANT, T0, etag=None, saved_at=T0)  # create-only when none was read
    later = marks.save(TENANT, T0 + timedelta(hours=1), etag=etag, saved_at=T0)
    with pytest.raises(ConflictError):
        marks.save(TENANT, T0, etag=etag, saved_at=T0)  # another run saved since
    loaded = marks.load(TENANT)
    assert loaded.value == T0 + timedelta(hours=1) and loaded.etag == later


def test_the_journal_keeps_the_last_note_until_cleared(stores: Stores) -> None:
    journal = stores.journal
    assert journal.note(TENANT).blobs == ()
    journal.record(TENANT, ["a", "b"])
    journal.record(TENANT, ["c"], created={"c": ["1", "2"]})
    note = journal.note(TENANT)
    assert note.blobs == ("c",) and dict(note.created) == {"c": ("1", "2")}
    journal.clear(TENANT)
    assert journal.note(TENANT).blobs == ()


def test_the_archive_reads_back_what_it_wrote(stores: Stores) -> None:
    planned = plan(TENANT, [version(1, 0), version(2, 1)])
    stored = stores.archive.upload(TENANT, planned, T0)
    assert [(s.incident.id, s.blob_name, s.line) for s in stored] == [
        (s.incident.id, s.blob_name, s.line) for s in placed(planned)
    ]
    name = planned[0].name
    assert stores.archive.exists(name) and not stores.archive.exists(name + "x")
    back = stores.archive.read(name)
    assert back is not None and [v.incident.id for v in back] == ["1", "2"]
    assert stores.archive.read("incidents/none.ndjson.gz") is None


def test_the_table_keeps_the_newest_version_and_creates_atomically(stores: Stores) -> None:
    table = stores.table
    first = placed(plan(TENANT, [version(1, 5), version(2, 5)]))
    created = table.create_new(TENANT, first, T0)
    assert created is not None and set(created) == {"1", "2"}
    # create-only and atomic: one existing row refuses the whole transaction
    assert (
        table.create_new(TENANT, placed(plan(TENANT, [version(3, 0), version(1, 9)])), T0) is None
    )
    assert set(table.lookup(TENANT, ["1", "2", "3"])) == {"1", "2"}
    older, newer = placed(plan(TENANT, [version(1, 0)])), placed(plan(TENANT, [version(2, 9)]))
    assert table.upsert_newer(TENANT, older, T0) == 0  # an older version never wins
    assert table.upsert_newer(TENANT, newer, T0) == 1
    rows = table.lookup(TENANT, ["1", "2"])
    assert rows["1"].last_update == T0 + timedelta(minutes=5)
    assert rows["2"].last_update == T0 + timedelta(minutes=9)
    # forget deletes only rows that still point at the named blob
    assert table.forget(TENANT, first[0].blob_name, ["1", "2"]) == 1
    assert set(table.lookup(TENANT, ["1", "2"])) == {"2"}
