"""A run that stops between writing a page's blobs and recording them loses and duplicates
nothing: the next run recovers the journaled blobs into the table first.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pytest

from shared.bootstrap import build
from shared.errors import StorageError
from shared.ingest import Ingestor
from shared.settings import Settings
from shared.storage import INCIDENT_CONTAINER, INCIDENT_TABLE, STATE_CONTAINER
from shared.storage.archive import IncidentArchive, StoredVersion
from shared.storage.state import PageJournal, TenantLock, WatermarkStore
from shared.storage.table import IncidentTable, RowVersion
from tests.conftest import LocalCloud
from tests.e2e.storage_view import archived_lines, duplicates, incident_key, table_rows


class CrashingTable(IncidentTable):
    """The real table, except that recording the first page's versions "crashes"."""

    def upsert_newer(
        self,
        tenant: str,
        stored: Iterable[StoredVersion],
        ingested_at: datetime,
        known: dict[str, RowVersion] | None = None,
    ) -> int:
        raise StorageError("simulated crash after the page's blobs were written")


def ingestor(settings: Settings, table_type: type[IncidentTable], journal: Any = None) -> Ingestor:
    svc = build(settings)
    svc.ingestor()  # creates the containers and table
    blobs = svc.blob_service
    state = blobs.get_container_client(STATE_CONTAINER)
    return Ingestor(
        client_for=svc.client_for,
        archive=IncidentArchive(blobs.get_container_client(INCIDENT_CONTAINER)),
        table=table_type(svc.table_service.get_table_client(INCIDENT_TABLE)),
        watermarks=WatermarkStore(state),
        journal=journal or PageJournal(state),
        lock_for=lambda tenant: TenantLock(state, tenant),
        clock=svc.clock,
        lookback=settings.lookback,
        overlap=settings.overlap,
        page_size=settings.page_size,
        safety_lag=settings.safety_lag,
    )


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
