"""A short chaos run (bench/chaos.py): random faults, kills, concurrent runs, lapsed leases,
Azurite restarts and behaviours over a few runs; nothing may be lost or stored twice. The
checker itself is shown to see a lost row and a duplicated version."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from bench.chaos import Cloud, Tally, _check, chaos_config, run_many
from emulator.azurite import Azurite
from emulator.server import Emulator
from testkit.storage_view import archived_lines

#: runs 0-3 of this seed's schedules hold SIGKILLs, an Azurite restart, Key Vault down,
#: concurrent runs, faults, late arrivals, updates during paging, arbitrary order, Graph pages
#: with @odata.count on the first page only or on none, and expiring tokens (the schedule is the
#: seed's; where a kill lands and which request a fault meets vary)
SEED, RUNS = 1961, 4
#: runs 0-3 of this seed meet injected faults (429, 5xx, resets, truncated or slow answers):
#: how many requests a fault meets depends on how few requests a run needs (2-3 here)
FAULTY_SEED = 1962
QUIET_RUN = 4  # a run of the same seed without the dear kinds: the checker's own test


@pytest.fixture
def small_cloud(azurite: Azurite) -> Iterator[Emulator]:
    """An emulator with the small tenant the chaos runs use, on the session's Azurite."""
    with Emulator(chaos_config()) as emu:
        yield emu


@pytest.mark.e2e
def test_short_chaos_loses_and_duplicates_nothing(small_cloud: Emulator, azurite: Azurite) -> None:
    tally = run_many(small_cloud, azurite, runs=RUNS, seed=SEED)
    faulty = run_many(small_cloud, azurite, runs=RUNS, seed=FAULTY_SEED)
    assert tally.failures == faulty.failures == []
    assert (tally.lost, tally.duplicated) == (faulty.lost, faulty.duplicated) == (0, 0)
    assert tally.runs == faulty.runs == RUNS
    assert tally.versions >= tally.incidents > 0
    # what the schedules hold (a change of schedule that drops a kind fails here)
    assert tally.kills + tally.kills_too_late >= 2
    assert tally.kills >= 1
    assert tally.azurite_restarts >= 1
    assert tally.vault_down >= 1
    assert tally.concurrent >= 1
    assert tally.lapsed_leases >= 1
    assert min(tally.late_arrival_runs, tally.paging_activity_runs) >= 1
    assert min(tally.arbitrary_order_runs, tally.token_expiry_runs) >= 1
    assert min(tally.count_pages[kind] for kind in ("every", "first", "none")) >= 1
    assert sum(tally.faults.values()) + sum(faulty.faults.values()) >= 1
    assert 0 < tally.cold_processes < tally.processes


@pytest.mark.e2e
def test_the_checker_sees_a_lost_row_and_a_duplicate(
    small_cloud: Emulator, azurite: Azurite
) -> None:
    clean = run_many(small_cloud, azurite, runs=1, seed=SEED, first=QUIET_RUN)
    assert (clean.lost, clean.duplicated, clean.failures) == (0, 0, [])
    chaos = Cloud(small_cloud, azurite)
    conn = azurite.connection_string
    lines = archived_lines(conn, chaos.tenant)
    api = "legacy" if "incidentId" in lines[0] else "graph"

    # the last run's store, plus one version stored a second time: a duplicate
    blobs = BlobServiceClient.from_connection_string(conn).get_container_client(
        "defender-incidents"
    )
    copy = gzip.compress((json.dumps(lines[0]) + "\n").encode())
    blobs.upload_blob(f"incidents/tenant={chaos.tenant}/copy.ndjson.gz", copy)
    found = Tally()
    _check(chaos, api, set(), found)
    assert (found.lost, found.duplicated) == (0, 1)

    # minus one row: lost
    table = TableServiceClient.from_connection_string(conn).get_table_client("DefenderIncidents")
    row = next(iter(table.query_entities("PartitionKey eq @pk", parameters={"pk": chaos.tenant})))
    table.delete_entity(row["PartitionKey"], row["RowKey"])
    found = Tally()
    _check(chaos, api, set(), found)
    assert found.lost == 1
    assert len(found.failures) == 1
