"""A run that stops between writing a page's blobs and recording them loses and duplicates
nothing: the next run recovers the journaled blobs into the table first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from shared.bootstrap import build
from shared.core.errors import StorageError
from shared.core.settings import Settings
from shared.storage import INCIDENT_CONTAINER, INCIDENT_TABLE, STATE_CONTAINER
from shared.storage.archive import IncidentArchive
from shared.storage.state import PageJournal
from shared.storage.table import IncidentTable
from shared.storage.values import PlannedBlob, RowVersion, StoredVersion
from shared.usecases.ingest import Ingestor, RunOptions
from testkit.storage_view import (
    archived_lines,
    blob_names,
    duplicates,
    incident_key,
    table_rows,
)
from tests.conftest import LocalCloud
from tests.e2e.guarantees import assert_store_matches, versions


class CrashingTable(IncidentTable):
    """The real table, except that recording the first page's versions "crashes" (and the
    create-first write is refused, as when a row exists, so the blobs come first)."""

    def create_new(
        self, tenant: str, stored: Sequence[StoredVersion], ingested_at: datetime
    ) -> dict[str, RowVersion] | None:
        return None

    def upsert_newer(
        self,
        tenant: str,
        stored: Iterable[StoredVersion],
        ingested_at: datetime,
        known: dict[str, RowVersion] | None = None,
    ) -> int:
        raise StorageError("simulated crash after the page's blobs were written")


class CreatingTable(IncidentTable):
    """The real table, noting when an answer's rows were just created without a read."""

    created = False

    def create_new(
        self, tenant: str, stored: Sequence[StoredVersion], ingested_at: datetime
    ) -> dict[str, RowVersion] | None:
        rows = super().create_new(tenant, stored, ingested_at)
        CreatingTable.created = rows is not None
        return rows


class CrashingArchive(IncidentArchive):
    """The real archive, except that writing blobs "crashes" right after their rows were
    created (create-first: a run writes so once an answer of it met no stored row)."""

    def upload(
        self, tenant: str, planned: Sequence[PlannedBlob], ingested_at: datetime
    ) -> list[StoredVersion]:
        if CreatingTable.created:
            raise StorageError("simulated crash after the page's rows were created")
        return super().upload(tenant, planned, ingested_at)


def ingestor(
    settings: Settings,
    table_type: type[IncidentTable],
    journal: Any = None,
    archive_type: type[IncidentArchive] = IncidentArchive,
) -> Ingestor:
    svc = build(settings)
    stores = svc.ingest_stores()  # the app's, with the parts a test crashes swapped in
    return Ingestor(
        source_for=svc.client_for,
        clock=svc.clock,
        stores=replace(
            stores,
            archive=archive_type(svc.blob_service.get_container_client(INCIDENT_CONTAINER)),
            table=table_type(svc.table_service.get_table_client(INCIDENT_TABLE)),
            journal=journal or stores.journal,
        ),
        options=RunOptions.of(settings.ingest),
    )


def _rerun_stores_each_version_once(
    cloud: LocalCloud, settings: Settings, conn: str, home: str, api: str
) -> set[tuple[str, str]]:
    """A clean run after the crash completes, and then the store holds each latest version
    once, a row per incident, every row pointing at a blob that holds its version. Returns
    the latest versions' keys."""
    rerun = ingestor(settings, IncidentTable).run_tenant(home)
    assert rerun.ok and rerun.complete, rerun.error
    truth = cloud.admin("GET", f"truth/{home}/incidents?api={api}")["value"]
    lines = archived_lines(conn, home)
    assert duplicates(lines) == []
    latest = {incident_key(i) for i in truth}
    assert latest <= {incident_key(line) for line in lines}
    assert set(table_rows(conn, home)) == {key[0] for key in latest}
    assert_store_matches(cloud, conn, home, api, versions(truth))
    return latest


@pytest.mark.e2e
@pytest.mark.parametrize("api", ["legacy", "graph"])
def test_crash_between_blobs_and_table_neither_loses_nor_duplicates(
    cloud: LocalCloud, app_env: dict[str, str], api: str
) -> None:
    """Crash after page 1's blobs; new incidents shift every page; the rerun stores each
    version exactly once."""
    home = app_env["DEFENDER_TENANT_ID"]
    settings = Settings.from_env({**app_env, "DEFENDER_API": api, "INGEST_TENANTS": home})

    crashed = ingestor(settings, CrashingTable).run_tenant(home)
    assert not crashed.ok and crashed.error_code == "storage"
    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    written = archived_lines(conn, home)
    assert written  # the blobs of the first answer were written, the table never heard of them
    cloud.admin("POST", "activity", {"tenant": home, "create": 5, "update": 3})

    rerun = ingestor(settings, IncidentTable).run_tenant(home)

    assert rerun.ok, rerun.error
    # exactly the crashed write's versions, from the journal, before listing
    assert rerun.recovered == len(written)
    # the activity happened just before the rerun: a version at the very end of its window may
    # be left to the next run (the window ends at "now" minus the safety lag), so run once more
    again = ingestor(settings, IncidentTable).run_tenant(home)
    assert again.ok, again.error
    truth = cloud.admin("GET", f"truth/{home}/incidents?api={api}")["value"]
    lines = archived_lines(conn, home)
    assert duplicates(lines) == []
    latest = {incident_key(i) for i in truth}
    assert latest <= {incident_key(line) for line in lines}
    assert set(table_rows(conn, home)) == {key[0] for key in latest}


@pytest.mark.e2e
@pytest.mark.parametrize("api", ["legacy", "graph"])
def test_crash_between_created_rows_and_their_blobs_neither_loses_nor_duplicates(
    cloud: LocalCloud, app_env: dict[str, str], api: str
) -> None:
    """Create-first: a new answer's rows are created before its blobs. A crash in between
    leaves rows whose blob is missing; the next run deletes them (noted in the journal) and
    reads those versions again, storing each exactly once."""
    home = app_env["DEFENDER_TENANT_ID"]
    settings = Settings.from_env({**app_env, "DEFENDER_API": api, "INGEST_TENANTS": home})
    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]

    CreatingTable.created = False
    crashed = ingestor(settings, CreatingTable, archive_type=CrashingArchive).run_tenant(home)
    assert not crashed.ok and crashed.error_code == "storage"
    blobs = set(blob_names(conn, home))
    dangling = {k for k, row in table_rows(conn, home).items() if row["BlobName"] not in blobs}
    assert dangling  # rows created, their blob never written

    latest = _rerun_stores_each_version_once(cloud, settings, conn, home, api)
    assert set(dangling) <= {key[0] for key in latest}


class SecondCreateCrashes(IncidentTable):
    """The real table, noting under which journal note (``CountingJournal.notes`` then) each
    create-only transaction that went through was made."""

    notes: list[int] = []  # reset by the test

    def create_new(
        self, tenant: str, stored: Sequence[StoredVersion], ingested_at: datetime
    ) -> dict[str, RowVersion] | None:
        rows = super().create_new(tenant, stored, ingested_at)
        if rows is not None:
            SecondCreateCrashes.notes.append(CountingJournal.notes)
        return rows


class ArchiveAfterSecondCreate(IncidentArchive):
    """The real archive, except that writing blobs "crashes" once a create-only transaction
    went through under the same journal note as the one before: between two transactions of
    one group, after the first one's rows and blobs and the second one's rows."""

    def upload(
        self, tenant: str, planned: Sequence[PlannedBlob], ingested_at: datetime
    ) -> list[StoredVersion]:
        notes = SecondCreateCrashes.notes
        if len(notes) >= 2 and notes[-1] == notes[-2]:
            raise StorageError("simulated crash inside a group of transactions")
        return super().upload(tenant, planned, ingested_at)


class CountingJournal(PageJournal):
    """The real journal, counting its notes."""

    notes = 0

    def record(
        self,
        tenant: str,
        blob_names: list[str],
        created: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        CountingJournal.notes += 1
        super().record(tenant, blob_names, created)


@pytest.mark.e2e
@pytest.mark.parametrize("api", ["legacy", "graph"])
def test_crash_between_transactions_of_one_group_neither_loses_nor_duplicates(
    cloud: LocalCloud, app_env: dict[str, str], api: str
) -> None:
    """Answers on new ground are stored together, one transaction (and its blobs) after
    another under one journal note. A crash after the second transaction's rows leaves the
    first whole and the second's rows without blobs; the next run keeps the first, deletes the
    second's rows (both noted in the journal) and reads them again: each version once."""
    home = app_env["DEFENDER_TENANT_ID"]
    settings = Settings.from_env({**app_env, "DEFENDER_API": api, "INGEST_TENANTS": home})
    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    svc = build(settings)
    journal = CountingJournal(svc.blob_service.get_container_client(STATE_CONTAINER))

    SecondCreateCrashes.notes, CountingJournal.notes = [], 0
    crashed = ingestor(
        settings, SecondCreateCrashes, journal=journal, archive_type=ArchiveAfterSecondCreate
    ).run_tenant(home)
    assert not crashed.ok and crashed.error_code == "storage"
    # it crashed inside a group: no journal note between its last two transactions
    assert SecondCreateCrashes.notes[-1] == SecondCreateCrashes.notes[-2]
    blobs = set(blob_names(conn, home))
    rows = table_rows(conn, home)
    dangling = {k for k, row in rows.items() if row["BlobName"] not in blobs}
    assert dangling and len(dangling) < len(rows)  # the first transaction whole, not the second

    _rerun_stores_each_version_once(cloud, settings, conn, home, api)
