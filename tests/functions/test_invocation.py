"""Threads the app starts log with the invocation that started them (shared.core.invocation).

The worker stand-in (``tests.functions.worker``) reads the invocation id from the worker's
thread-local when a line is logged, on the logging thread, as the real worker does.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shared.core.invocation import InvocationExecutor, bound, carry, current_id, start_thread
from tests.functions.worker import THREAD_LOCAL, HostChannel, Worker, worker_logging

log = logging.getLogger("shared.test_invocation")


class _Ctx:
    """The part of ``func.Context`` the app reads."""

    def __init__(self, invocation_id: str) -> None:
        self.invocation_id = invocation_id
        self.thread_local_storage = threading.local()


def _ids_by_message(channel: HostChannel) -> dict[str, str | None]:
    return {s.message: s.invocation_id for s in channel.sent}


def _function(context: Any) -> None:
    """A trigger body: binds its context, then logs from threads started three ways."""
    with bound(context):
        log.info("on the invocation's thread")
        plain = threading.Thread(target=lambda: log.info("from a plain thread"))
        plain.start()
        plain.join()
        start_thread(lambda: log.info("from start_thread"), name="lease-x").join()
        with InvocationExecutor(max_workers=2, thread_name_prefix="writer") as pool:
            pool.submit(log.info, "from an executor task").result()
            list(pool.map(lambda n: log.info("from map %d", n), range(3)))

            def nested() -> None:
                with InvocationExecutor(max_workers=1) as inner:
                    inner.submit(log.info, "from a nested executor").result()

            pool.submit(nested).result()
        with ThreadPoolExecutor(max_workers=1) as raw:
            raw.submit(carry(log.info), "from a carried task on a plain pool").result()


def test_threads_started_inside_an_invocation_log_with_its_id() -> None:
    """Every line the app's threads log carries the invocation id the worker gave; a plain
    thread does not (that is what the worker does with it: the reason for carrying)."""
    runner = Worker()
    with worker_logging() as channel:
        invocation_id, _ = runner.invoke(_function, "ingest_worker")
    runner.close()
    ids = _ids_by_message(channel)
    assert ids.pop("from a plain thread") is None
    assert set(ids) == {
        "on the invocation's thread",
        "from start_thread",
        "from an executor task",
        "from map 0",
        "from map 1",
        "from map 2",
        "from a nested executor",
        "from a carried task on a plain pool",
    }
    assert set(ids.values()) == {invocation_id}
    threads = {s.record.threadName for s in channel.sent}
    assert "lease-x" in threads and any(t.startswith("writer") for t in threads)


def test_a_pool_thread_is_left_as_it_was_for_the_next_invocation() -> None:
    """A long-lived pool serving two invocations one after the other: each task logs its own
    invocation's id, and after a task the thread has no invocation id (not a stale one)."""
    pool = InvocationExecutor(max_workers=1)
    seen_after: list[Any] = []

    def function(context: Any) -> None:
        with bound(context):
            pool.submit(log.info, "task of %s", context.invocation_id).result()
        seen_after.append(pool.submit(lambda: getattr(THREAD_LOCAL, "invocation_id", None)))

    runner = Worker(threads=2)
    with worker_logging() as channel:
        first, _ = runner.invoke(function, "a")
        second, _ = runner.invoke(function, "b")
    runner.close()
    pool.shutdown()
    assert [(s.message, s.invocation_id) for s in channel.sent] == [
        (f"task of {first}", first),
        (f"task of {second}", second),
    ]
    assert [f.result() for f in seen_after] == [None, None]


def test_concurrent_invocations_each_keep_their_own_id() -> None:
    """Two invocations at once on the worker's pool, each starting threads: no line is
    attributed to the other invocation."""
    barrier = threading.Barrier(2)

    def function(context: Any) -> None:
        with bound(context):
            barrier.wait(timeout=10)
            with InvocationExecutor(max_workers=3) as pool:
                list(pool.map(lambda n: log.info("%s %d", context.invocation_id, n), range(6)))

    runner = Worker(threads=2)
    with worker_logging() as channel, ThreadPoolExecutor(max_workers=2) as callers:
        futures = [callers.submit(runner.invoke, function, f"f{i}") for i in range(2)]
        ids = {f.result()[0] for f in futures}
    runner.close()
    assert len(channel.sent) == 12
    for sent in channel.sent:
        assert sent.message.split()[0] == sent.invocation_id
    assert {s.invocation_id for s in channel.sent} == ids


def test_outside_an_invocation_nothing_is_bound_and_nothing_breaks() -> None:
    """The CLI and ``serve`` run the same code with no invocation: threads log without an id,
    and the no-invocation context of a directly called trigger binds nothing."""
    assert current_id() is None
    with bound(_Ctx("")):  # what a trigger called directly binds (no invocation id)
        assert current_id() is None
        with InvocationExecutor(max_workers=1) as pool:
            assert pool.submit(current_id).result() is None
    with worker_logging() as channel, InvocationExecutor(max_workers=1) as pool:
        pool.submit(log.info, "no invocation").result()
    assert [(s.message, s.invocation_id) for s in channel.sent] == [("no invocation", None)]


def test_carried_context_is_the_callers_at_submit_time() -> None:
    """The bound invocation travels with the task; binding ends with the block."""
    with InvocationExecutor(max_workers=1) as pool:
        with bound(_Ctx("one")):
            task = pool.submit(current_id)
        assert task.result() == "one"
        assert pool.submit(current_id).result() is None


def test_a_failing_task_still_restores_the_thread_local() -> None:
    """An exception in a carried task propagates and leaves the pool thread clean."""

    def boom() -> None:
        raise RuntimeError("boom")

    def function(context: Any) -> Any:
        pool = InvocationExecutor(max_workers=1)
        with bound(context):
            failed = pool.submit(boom)
        with pytest.raises(RuntimeError, match="boom"):
            failed.result()
        after = pool.submit(lambda: getattr(THREAD_LOCAL, "invocation_id", None)).result()
        pool.shutdown()
        return after

    runner = Worker()
    _, after = runner.invoke(function, "x")
    runner.close()
    assert after is None
