"""The dedup check of a backfill reads (almost) nothing from the table:
new answers are created first without a read, and slices read again after an overflow find
their rows among those the run just wrote. A re-run over stored ground reads by point reads
only, never with a query (an ``or`` over RowKeys is a partition scan), and writes nothing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime

import pytest

from shared.bootstrap import build
from shared.core.settings import Settings
from shared.storage import INCIDENT_TABLE
from shared.storage.table import IncidentTable
from shared.storage.values import RowVersion, StoredVersion
from shared.usecases.ingest import Ingestor, RunOptions
from tests.conftest import LocalCloud
from tests.e2e.guarantees import assert_store_matches, truth, versions


class CountingTable(IncidentTable):
    """The real table, counting the ids it looks up and the rows it creates first."""

    looked_up = 0
    created = 0
    upserted = 0
    transactions = 0  # create-first ones

    def lookup(self, tenant: str, incident_ids: Iterable[str]) -> dict[str, RowVersion]:
        ids = list(incident_ids)
        CountingTable.looked_up += len(set(ids))
        return super().lookup(tenant, ids)

    def create_new(
        self, tenant: str, stored: Sequence[StoredVersion], ingested_at: datetime
    ) -> dict[str, RowVersion] | None:
        rows = super().create_new(tenant, stored, ingested_at)
        CountingTable.created += len(rows or {})
        CountingTable.transactions += 1
        return rows

    def upsert_newer(
        self,
        tenant: str,
        stored: Iterable[StoredVersion],
        ingested_at: datetime,
        known: dict[str, RowVersion] | None = None,
    ) -> int:
        written = super().upsert_newer(tenant, stored, ingested_at, known)
        CountingTable.upserted += written
        return written


@pytest.mark.e2e
@pytest.mark.parametrize("api", ["legacy", "graph"])
def test_a_backfill_reads_almost_nothing_and_a_rerun_writes_nothing(
    cloud: LocalCloud, app_env: dict[str, str], api: str
) -> None:
    home = app_env["DEFENDER_TENANT_ID"]
    settings = Settings.from_env({**app_env, "DEFENDER_API": api, "INGEST_TENANTS": home})
    svc = build(settings)
    stores = svc.ingest_stores()  # the app's, with a table that counts

    def ingestor() -> Ingestor:
        return Ingestor(
            source_for=svc.client_for,
            clock=svc.clock,
            stores=replace(
                stores, table=CountingTable(svc.table_service.get_table_client(INCIDENT_TABLE))
            ),
            options=RunOptions.of(settings.ingest),
        )

    seen = versions(truth(cloud, home, api))
    CountingTable.looked_up = CountingTable.created = CountingTable.upserted = 0
    CountingTable.transactions = 0
    first = ingestor().run_tenant(home)
    assert first.ok and first.complete, first
    assert first.incidents == len(seen)
    # only the run's first answer is read before writing (at most a page of ids); every other
    # answer is created first or found among the rows the run just wrote
    assert CountingTable.looked_up <= settings.ingest.page_size, CountingTable.looked_up
    assert CountingTable.created >= len(seen) - settings.ingest.page_size
    if api == "graph":
        # answers on new ground are stored together, up to 100 items: two Graph answers of 50
        # share one transaction (and one journal note and blob), so fewer than one per answer
        assert 0 < CountingTable.transactions <= first.pages // 2 + first.slices, (
            CountingTable.transactions,
            first,
        )

    CountingTable.looked_up = CountingTable.created = CountingTable.upserted = 0
    again = ingestor().run_tenant(home)
    assert again.ok and again.complete and again.incidents == 0, again
    assert CountingTable.created == CountingTable.upserted == 0
    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    assert_store_matches(cloud, conn, home, api, seen, must_have=seen)
