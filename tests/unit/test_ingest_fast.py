"""The ingestion run loop in milliseconds: in-memory ports (``testkit.fakes``) instead of
Azurite and the emulator. The guarantees of ``shared.usecases.ingest`` (every version once, resume
at
the checkpoint, recovery through the journal) are checked here for each way a run can end;
``tests/e2e`` keeps checking them against the real SDKs, storage and processes."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from shared.storage.values import version_text
from shared.usecases.ingest import Ingestor, IngestStores, RunOptions, TenantResult
from testkit.fakes import (
    FakeIncidentSource,
    MemoryArchive,
    MemoryCheckpoints,
    MemoryJournal,
    MemoryLeases,
    MemoryQuarantine,
    MemoryTable,
    MovableClock,
    graph_incident,
)

T = "11111111-1111-1111-1111-111111111111"


def shuffled(seed: int) -> Any:
    """An answer order of its own: no test may pass because the fake sorts."""
    rng = random.Random(seed)  # noqa: S311 - a seeded order, not a secret

    def order(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rng.shuffle(items)
        return items

    return order


class World:
    """One tenant's Defender and the bridge's storage, all in memory."""

    def __init__(
        self, count: int = 300, *, seed: int = 1, notify: Any = None, **ingestor: Any
    ) -> None:
        self.clock = MovableClock()
        now = self.clock()
        rng = random.Random(seed)  # noqa: S311 - seeded test data
        self.source = FakeIncidentSource(
            T,
            [
                graph_incident(f"i{n}", now - timedelta(seconds=rng.randint(60, 20 * 86400)))
                for n in range(count)
            ],
            order=shuffled(seed),
        )
        self.archive, self.table = MemoryArchive(), MemoryTable()
        self.checkpoints, self.journal = MemoryCheckpoints(), MemoryJournal()
        self.leases, self.quarantine = MemoryLeases(), MemoryQuarantine()
        options: dict[str, Any] = {
            "lookback": timedelta(days=30),
            "overlap": timedelta(minutes=10),
            "page_size": 50,
            "safety_lag": timedelta(seconds=30),
            "time_budget": timedelta(minutes=8),
            "lag_warning": timedelta(hours=1),
        }
        options.update(ingestor)
        self.ingestor = Ingestor(
            source_for=lambda tenant: self.source,
            stores=IngestStores(
                archive=self.archive,
                table=self.table,
                checkpoints=self.checkpoints,
                journal=self.journal,
                quarantine=self.quarantine,
                lease_for=self.leases.for_tenant,
            ),
            options=RunOptions(**options),
            clock=self.clock,
            monotonic=self.clock.monotonic,
            notify=notify,
        )

    def run(self) -> TenantResult:
        return self.ingestor.run_tenant(T)

    def truth(self) -> dict[str, str]:
        """Incident id -> its current version, of what the run could see."""
        upper = self.clock() - timedelta(seconds=30)
        out = {}
        for raw in self.source._items.values():
            if "lastUpdateDateTime" in raw and raw["lastUpdateDateTime"] < _text(upper):
                out[str(raw["id"])] = str(raw["lastUpdateDateTime"])
        return out

    def assert_stored_once(self) -> None:
        """Table = truth; every archived (id, version) once; every row's version in the blob
        the row names (a row whose blob is missing would point at nothing)."""
        assert self.table.versions(T) == self.truth()
        lines = Counter((i.id, version_text(i)) for i in self.archive.versions(T))
        assert lines and max(lines.values()) == 1
        for (tenant, rid), row in self.table.rows.items():
            held = {(v.incident.id, version_text(v.incident)) for v in self.archive.blobs[row.blob]}
            assert tenant == T and (rid, row.version) in held, (rid, row.blob)


def _text(moment: Any) -> str:
    from shared.core.clock import format_utc

    return format_utc(moment)


def test_every_incident_once_and_an_idle_run_costs_one_call() -> None:
    world = World()
    first = world.run()
    assert first.ok and first.complete and first.incidents == 300
    world.assert_stored_once()
    world.clock.advance(timedelta(minutes=5))
    second = world.run()
    assert second.ok and second.incidents == 0 and second.api_calls == 1
    world.assert_stored_once()


def test_updates_are_stored_as_new_versions_and_old_ones_never_win() -> None:
    world = World(50)
    world.run()
    world.clock.advance(timedelta(minutes=5))
    later = world.clock() - timedelta(minutes=2)
    for n in range(0, 50, 5):
        world.source.update(graph_incident(f"i{n}", later, status="resolved"))
    result = world.run()
    assert result.ok and result.incidents == 10
    world.assert_stored_once()


def test_a_dense_recent_instant_is_split_until_each_slice_is_complete() -> None:
    """Within the late-arrival bound a slice counts only when one answer held all of it."""
    world = World(0)
    moment = world.clock() - timedelta(minutes=3)
    for n in range(180):
        world.source.update(graph_incident(f"d{n}", moment + timedelta(microseconds=n)))
    result = world.run()
    assert result.ok and result.complete and result.splits > 0
    world.assert_stored_once()


def test_a_dense_settled_instant_is_read_across_pages_and_verified_by_count() -> None:
    world = World(0)
    moment = world.clock() - timedelta(hours=3)
    for n in range(180):
        world.source.update(graph_incident(f"d{n}", moment + timedelta(microseconds=n)))
    result = world.run()
    assert result.ok and result.complete and result.pages >= 4
    # read across pages, proved by the count, not split into slices of a page each
    assert result.splits == 0 and any(c.paged for c in world.source.calls)
    world.assert_stored_once()


def test_the_time_budget_stops_a_run_which_the_next_run_resumes() -> None:
    world = World(2000, time_budget=timedelta(seconds=60))
    world.source.on_call = lambda: world.clock.advance(timedelta(seconds=4))
    results = [world.run()]
    assert not results[0].complete and results[0].stopped == "time budget"
    assert world.checkpoints.load(T).value is not None
    while not results[-1].complete:
        assert len(results) < 50, "the backlog never finished"
        world.clock.advance(timedelta(seconds=1))
        results.append(world.run())
    assert all(r.ok for r in results) and len(results) > 2
    world.assert_stored_once()


def test_a_quota_stop_commits_what_was_read_and_the_next_run_goes_on() -> None:
    world = World(600)
    world.source.throttle_at = 4
    stopped = world.run()
    assert stopped.ok and stopped.stopped == "quota" and not stopped.complete
    assert stopped.resume_at is not None
    world.source.throttle_at = None
    world.clock.advance(timedelta(minutes=2))
    resumed = world.run()
    assert resumed.ok and resumed.complete
    world.assert_stored_once()


def test_a_crash_between_blobs_and_table_is_recorded_from_the_journal() -> None:
    """The first answer's blobs are written and its table write fails: the next run records
    those blobs first (``recovered``), so nothing is stored twice. The tenant has a checkpoint
    (older than every incident), so its run reads before it writes: blobs, then rows."""
    world = World(300)
    now = world.clock()
    world.checkpoints.save(T, now - timedelta(days=29), etag=None, saved_at=now)
    world.table.faults.arm("upsert_newer")
    crashed = world.run()
    assert not crashed.ok and crashed.error_code == "storage"
    assert not world.table.rows  # read first: the blobs came before the failed table write
    assert world.journal.note(T).blobs
    recovered = world.run()
    assert recovered.ok and recovered.complete and recovered.recovered > 0
    assert not world.journal.note(T).blobs
    world.assert_stored_once()


def test_a_first_run_writes_without_reading_and_a_later_one_reads_first() -> None:
    world = World(300)
    first = world.run()
    assert first.ok and first.complete and first.incidents == 300
    assert world.table.reads == 0  # no checkpoint: new ground, create-only transactions
    world.clock.advance(timedelta(minutes=5))
    for n in range(3):
        world.source.update(graph_incident(f"new{n}", world.clock() - timedelta(minutes=2)))
    later = world.run()
    assert later.ok and later.incidents == 3
    assert world.table.reads > 0  # a checkpoint: the overlap's ids are read before writing
    world.assert_stored_once()


def test_a_first_run_over_rows_already_stored_stores_nothing_twice() -> None:
    """The checkpoint is gone but the rows are not: the first create-only transaction is
    refused as a whole and the run reads first from there."""
    world = World(300)
    assert world.run().ok
    blobs = dict(world.archive.blobs)
    world.checkpoints.saved.clear()
    again = world.run()
    assert again.ok and again.complete and again.incidents == 0
    assert world.archive.blobs == blobs  # not one blob written again
    world.assert_stored_once()


def test_a_failing_push_hook_on_new_ground_leaves_no_row_and_loses_no_change() -> None:
    """Create-first writes rows before it tells the hook: when the hook fails, the rows are
    deleted again (nothing stored); when that fails too, the next run's recovery does it."""
    heard: list[str] = []
    down = [True]

    def notify(tenant: str, versions: Any, created: frozenset[str]) -> None:
        if down[0]:
            raise RuntimeError("the push queue is down")
        heard.extend(v.id for v in versions)

    taken_back = World(120, notify=notify)
    failed = taken_back.run()
    assert not failed.ok and "RuntimeError" in (failed.error or "")
    assert not taken_back.table.rows and not taken_back.archive.blobs  # nothing stored

    world = World(120, notify=notify)
    world.table.faults.arm("forget")  # taking them back fails as well
    failed = world.run()
    assert not failed.ok and "RuntimeError" in (failed.error or "")  # the hook's error
    assert world.table.rows and not world.archive.blobs  # rows without blobs, noted
    assert world.journal.note(T).created
    down[0] = False
    again = world.run()
    assert again.ok and again.complete and again.incidents == 120
    assert sorted(heard) == sorted(world.truth())  # each change heard once, once stored
    world.assert_stored_once()


def test_rows_created_before_their_missing_blob_are_taken_back_and_read_again() -> None:
    """A create-first answer: rows, then blobs; the blob write fails. The next run deletes
    the rows whose blob is missing and stores those versions again."""
    world = World(300)
    create_new, forget = world.table.create_new, world.table.forget
    armed: list[bool] = []
    taken_back: list[int] = []

    def create_then_fail_the_blob(*args: Any, **kwargs: Any) -> Any:
        rows = create_new(*args, **kwargs)
        if rows is not None and not armed:
            armed.append(True)
            world.archive.faults.arm("upload")  # the next blob write, right after these rows
        return rows

    def counted_forget(tenant: str, blob_name: str, ids: Any) -> int:
        deleted = forget(tenant, blob_name, ids)
        taken_back.append(deleted)
        return deleted

    world.table.create_new = create_then_fail_the_blob  # type: ignore[method-assign]
    world.table.forget = counted_forget  # type: ignore[method-assign]
    crashed = world.run()
    assert not crashed.ok
    assert world.journal.note(T).created  # the rows were noted before they were written
    again = world.run()
    assert again.ok and again.complete
    assert sum(taken_back) > 0  # the rows without their blob were deleted ...
    world.assert_stored_once()  # ... and their versions stored again, blob and row


def test_a_lost_lease_stops_the_run_before_its_next_write() -> None:
    world = World(300)
    world.source.on_call = lambda: world.leases.lose(T) if world.source.api_calls == 2 else None
    lost = world.run()
    assert not lost.ok and lost.error_code == "lease_lost"
    world.source.on_call = None
    assert world.run().ok
    world.assert_stored_once()


def test_a_run_finding_the_tenant_held_is_skipped() -> None:
    world = World(10)
    with world.leases.for_tenant(T):
        result = world.run()
    assert result.ok and result.skipped and result.incidents == 0


@pytest.mark.parametrize("broken", [{"lastUpdateDateTime": None}, {"id": None}])
def test_a_record_that_cannot_be_stored_is_quarantined_and_blocks_nothing(
    broken: dict[str, Any],
) -> None:
    world = World(20)
    bad = graph_incident("bad", world.clock() - timedelta(hours=1))
    bad.update({k: v for k, v in broken.items() if v is not None})
    for key in [k for k, v in broken.items() if v is None]:
        bad.pop(key)
    world.source.update(bad)
    result = world.run()
    assert result.ok and result.incidents == 20
    assert result.quarantined == 1 and len(world.quarantine.records) == 1
