"""Deduplication of the fan-out across processes: the per-tenant marker in the registry table
(conditional writes), against Azurite."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from azure.functions.timer import TimerRequest

from testkit.functions_host import QueueHost, timer_function
from tests.conftest import LocalCloud
from tests.fanout.conftest import register_customers

pytestmark = pytest.mark.e2e


def test_a_marker_is_claimed_once_per_read(scale_env: dict[str, str]) -> None:
    """Two writers holding the same read of a row: exactly one claim succeeds, for a new
    row (insert-if-absent) and for an existing one (merge-if-ETag-matches)."""
    from shared.bootstrap import services

    store = services().run_states()
    tenant = "22222222-2222-2222-2222-222222222222"
    until = datetime.now(UTC) + timedelta(minutes=5)
    fresh = store.get(tenant)
    assert fresh.etag is None
    assert store.claim(fresh, until=until, reason="timer") is True
    assert store.claim(fresh, until=until, reason="http") is False
    seen = store.get(tenant)
    assert seen.queue_reason == "timer" and seen.queued(datetime.now(UTC))
    store.update(tenant, queued_until=None)  # the handler's "done"
    done = store.get(tenant)
    assert not done.queued(datetime.now(UTC))
    assert store.claim(done, until=until, reason="timer") is True
    assert store.claim(done, until=until, reason="timer") is False  # stale ETag


def test_ticks_of_two_processes_queue_each_tenant_once(
    scale_cloud: LocalCloud, scale_env: dict[str, str]
) -> None:
    """Two composition roots (as two instances would have) tick at the same time, then one
    ticks again: 50 messages, not 150; after the drain the next tick queues all 50 again."""
    from shared import bootstrap
    from shared.core.settings import load

    register_customers(scale_cloud)
    other = bootstrap.build(load())
    threads = [
        threading.Thread(target=lambda: bootstrap.services().fanout().tick()),
        threading.Thread(target=lambda: other.fanout().tick()),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    timer_function()(TimerRequest(past_due=False))
    host = QueueHost(scale_env["DATA_STORAGE_CONNECTION_STRING"])
    assert host.total_count() == 50
    assert len(host.drain()) == 50
    timer_function()(TimerRequest(past_due=False))
    assert host.total_count() == 50
