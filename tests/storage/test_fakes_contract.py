"""The in-memory fakes of ``testkit.fakes`` keep the contracts of the real adapters: the same
checks run against each fake and, on Azurite, against the adapter it stands for (the ingestion
stores of ``testkit.fakes``, then the push and API stores of ``testkit.port_fakes``). A fake that
drifted from its adapter would make the millisecond tests prove nothing."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared.core.errors import ConfigError, ConflictError
from shared.defender.model import normalize
from shared.push.keys import PushKeys
from shared.push.messages import Breaker, Filter, is_subscription_id
from shared.storage.archive import IncidentArchive
from shared.storage.jobs import JobStore
from shared.storage.push import DeadLetter
from shared.storage.state import PageJournal, WatermarkStore
from shared.storage.subscriptions import ECHO_KEEP, ECHO_SKEW, EchoMarks, SubscriptionStore
from shared.storage.table import IncidentTable
from shared.storage.tenants import ConsentStateStore
from shared.storage.values import ACTIVE, DROPPED, Job, placed, plan
from testkit.fakes import (
    MemoryArchive,
    MemoryCheckpoints,
    MemoryJournal,
    MemoryTable,
    MovableClock,
    graph_incident,
)
from testkit.port_fakes import (
    MemoryConsentNonces,
    MemoryDeadLetters,
    MemoryEchoMarks,
    MemoryJobs,
    MemorySubscriptions,
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


# ---------------------------------------------------------------------------- push and API stores
# The fakes of ``testkit.port_fakes`` against ``SubscriptionStore``, ``EchoMarks``, ``DeadLetter``,
# ``JobStore`` and ``ConsentStateStore``. The sender, token and credential fakes stand for adapters
# that talk to the network; ``tests/unit/test_port_fakes.py`` checks them against their
# documented contract instead.

KEYS = PushKeys("contract-signing-key")
URL = "https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual?sig=SECRET"


@dataclass
class ApiStores:
    subscriptions: Any
    marks: Any
    dead: Any
    jobs: Any
    nonces: Any
    clock: MovableClock


@pytest.fixture(params=["memory", pytest.param("azurite", marks=pytest.mark.e2e)])
def api_stores(request: pytest.FixtureRequest) -> Iterator[ApiStores]:
    clock = MovableClock(T0)
    if request.param == "memory":
        yield ApiStores(
            MemorySubscriptions(KEYS, clock),
            MemoryEchoMarks(clock),
            MemoryDeadLetters(),
            MemoryJobs(),
            MemoryConsentNonces(),
            clock,
        )
        return
    azurite = request.getfixturevalue("azurite")
    suffix = uuid.uuid4().hex[:10]
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    tables = TableServiceClient.from_connection_string(azurite.connection_string)
    # the adapters create their container or table on first write; these do not exist yet
    dead = blobs.get_container_client(f"dead-{suffix}")
    jobs = blobs.get_container_client(f"jobs-{suffix}")
    subs = tables.get_table_client(f"subs{suffix}")
    marks = tables.get_table_client(f"marks{suffix}")
    nonces = tables.create_table(f"nonces{suffix}")  # the tenant registry's table, made by it
    try:
        yield ApiStores(
            SubscriptionStore(subs, KEYS, clock),
            EchoMarks(marks, clock),
            DeadLetter(dead),
            JobStore(jobs),
            ConsentStateStore(nonces),
            clock,
        )
    finally:
        for container in (dead, jobs):
            with contextlib.suppress(ResourceNotFoundError):
                container.delete_container()
        for name in (subs.table_name, marks.table_name, nonces.table_name):
            tables.delete_table(name)


def test_subscribing_one_url_twice_keeps_one_subscription(api_stores: ApiStores) -> None:
    store = api_stores.subscriptions
    assert store.all() == [] and store.find(URL) is None
    first, new = store.save(URL, "prod-01.westeurope.logic.azure.com", Filter(min_severity="high"))
    assert new and is_subscription_id(first.id)
    assert store.callback_url(first) == URL  # sealed, and opens to the URL it was given
    assert URL not in first.sealed and store.secret(first) == KEYS.secret(first.id)
    again, new = store.save(URL, "prod-01.westeurope.logic.azure.com", Filter(statuses=("active",)))
    assert not new and again.id == first.id and again.filter == Filter(statuses=("active",))
    found = store.find(URL)
    assert found is not None and found.id == first.id
    assert [s.id for s in store.all()] == [first.id]
    other, new = store.save(URL + "x", "prod-01.westeurope.logic.azure.com", Filter())
    assert new and other.id != first.id and len(store.all()) == 2
    assert store.get("not-a-subscription-id") is None
    store.remove(other.id)
    store.remove(other.id)  # absent: nothing to do
    assert store.get(other.id) is None and [s.id for s in store.all()] == [first.id]


def test_subscription_health_is_updated_by_a_change_of_the_current_row(
    api_stores: ApiStores,
) -> None:
    store = api_stores.subscriptions
    sub, _ = store.save(URL, "host", Filter())
    now = api_stores.clock()
    failed = store.update(
        sub.id,
        lambda s: replace(
            s, breaker=s.breaker.failed(now, 30.0), last_failure=now, last_error="HTTP 503"
        ),
    )
    assert failed is not None and failed.breaker.failures == 1
    read = store.get(sub.id)
    assert read is not None
    assert (read.breaker.failures, read.last_failure, read.last_error) == (1, now, "HTTP 503")
    # the change sees what is stored now, not what the caller read before
    store.update(sub.id, lambda s: replace(s, breaker=s.breaker.failed(now, 30.0)))
    read = store.get(sub.id)
    assert read is not None and read.breaker.failures == 2
    assert store.update(sub.id, lambda s: None) == read  # None: nothing written
    dropped = store.update(sub.id, lambda s: replace(s, status=DROPPED, drop_reason="gone"))
    assert dropped is not None and dropped.status == DROPPED
    # subscribing again revives it with a clean health, under the same id
    back, new = store.save(URL, "host", Filter())
    assert not new and back.id == sub.id
    read = store.get(sub.id)
    assert read is not None and read.status == ACTIVE and read.breaker == Breaker()
    assert read.gone_since is None and read.drop_reason is None
    store.remove(sub.id)
    assert store.update(sub.id, lambda s: replace(s, last_error="x")) is None  # gone


def test_subscriptions_without_a_signing_key_refuse_to_subscribe(api_stores: ApiStores) -> None:
    keyless = (
        MemorySubscriptions(None, api_stores.clock)
        if isinstance(api_stores.subscriptions, MemorySubscriptions)
        else SubscriptionStore(api_stores.subscriptions._table, None, api_stores.clock)
    )
    with pytest.raises(ConfigError, match="API_SIGNING_KEY"):
        keyless.save(URL, "host", Filter())


def test_echo_marks_cover_their_window_widened_by_the_skew_and_are_pruned(
    api_stores: ApiStores,
) -> None:
    marks, clock = api_stores.marks, api_stores.clock
    start, end = T0, T0 + timedelta(seconds=2)
    assert marks.own(TENANT, [("7", start)]) == set()  # nothing marked yet
    marks.mark(TENANT, "7", start, end)
    asked = [
        ("7", start + timedelta(seconds=1)),  # inside
        ("7", end + ECHO_SKEW),  # at the widened edge
        ("7", start - ECHO_SKEW - timedelta(seconds=1)),  # before it
        ("7", end + ECHO_SKEW + timedelta(seconds=1)),  # after it
        ("8", start + timedelta(seconds=1)),  # another incident
    ]
    assert marks.own(TENANT, asked) == {asked[0], asked[1]}
    assert marks.own("22222222-2222-2222-2222-222222222222", asked) == set()
    # a second mark keeps the first window while it is younger than ECHO_KEEP ...
    later = T0 + timedelta(hours=1)
    clock.advance(timedelta(hours=1))
    marks.mark(TENANT, "7", later, later)
    assert marks.own(TENANT, [asked[0], ("7", later)]) == {asked[0], ("7", later)}
    # ... and drops it once older
    clock.advance(ECHO_KEEP)
    marks.mark(TENANT, "7", clock(), clock())
    assert marks.own(TENANT, [asked[0], ("7", later)]) == set()


def test_dead_letters_keep_one_record_per_delivery(api_stores: ApiStores) -> None:
    dead = api_stores.dead
    assert list(dead.records()) == []  # nothing stored yet (the container may not exist)
    sub_a, sub_b = "a" * 32, "b" * 32
    for sub, delivery, reason in [
        (sub_b, "d2", "refused"),
        (sub_a, "d9", "refused"),
        (sub_a, "d1", "refused"),
        (sub_a, "d1", "dropped"),  # the same delivery again overwrites it
    ]:
        dead.put({"subscription": sub, "delivery": delivery, "reason": reason, "at": T0})
    of_a = list(dead.records(sub_a))
    assert [n for n, _ in of_a] == [f"{sub_a}/d1.json", f"{sub_a}/d9.json"]  # name order
    assert of_a[0][1]["reason"] == "dropped"
    assert of_a[0][1]["at"] == str(T0)  # stored as JSON: what is not JSON becomes text
    assert len(list(dead.records())) == 3
    dead.delete(f"{sub_a}/d1.json")
    dead.delete(f"{sub_a}/d1.json")  # absent: nothing to do
    assert [n for n, _ in dead.records()] == [f"{sub_a}/d9.json", f"{sub_b}/d2.json"]


def test_jobs_read_back_the_last_save(api_stores: ApiStores) -> None:
    jobs = api_stores.jobs
    job = Job.new(
        tenant=TENANT,
        query="DeviceEvents | take 1",
        timespan=None,
        fmt="json",
        max_rows=None,
        context="app",
        now=T0,
    )
    assert jobs.load(job.id) is None
    jobs.save(job)
    assert jobs.load(job.id) == job
    done = job.finished(200, {"rows": [{"a": 1}]}, T0 + timedelta(minutes=1))
    jobs.save(done)
    assert jobs.load(job.id) == done
    assert jobs.load("../" + job.id) is None and jobs.load(job.id.upper()) is None


def test_a_consent_nonce_is_spent_once(api_stores: ApiStores) -> None:
    nonces = api_stores.nonces
    expires = T0 + timedelta(minutes=30)
    assert not nonces.used("n1")
    assert nonces.spend("n1", tenant=TENANT, when=T0, expires=expires)
    assert nonces.used("n1") and not nonces.used("n2")
    assert not nonces.spend("n1", tenant=TENANT, when=T0, expires=expires)  # a replay
    nonces.release("n1")  # recording the consent failed: the admin may use the link again
    assert not nonces.used("n1")
    assert nonces.spend("n1", tenant=TENANT, when=T0, expires=expires)
    nonces.release("never-spent")  # best effort, never raises


def test_of_concurrent_spends_of_one_nonce_exactly_one_wins(api_stores: ApiStores) -> None:
    nonces = api_stores.nonces
    expires = T0 + timedelta(minutes=30)
    start = threading.Barrier(6)

    def spend(_: int) -> bool:
        start.wait()
        return bool(nonces.spend("race", tenant=TENANT, when=T0, expires=expires))

    with ThreadPoolExecutor(6) as pool:
        won = list(pool.map(spend, range(6)))
    assert won.count(True) == 1
