"""The ingest writer thread (pure): answers are written in order, a checkpoint queued behind a
failed write never runs, and the failure reaches the fetching thread."""

from __future__ import annotations

import threading

import pytest

from shared.core.errors import LeaseLostError
from shared.usecases.ingest import Writer


def test_tasks_run_in_order_on_one_thread_and_then_does_not_wait() -> None:
    done: list[str] = []
    gate = threading.Event()
    writer = Writer("t")
    writer.submit(lambda: (gate.wait(5), done.append("page 1")))
    writer.then(done.append, "checkpoint 1")  # queued: returns before page 1 is written
    assert done == []
    gate.set()
    writer.submit(done.append, "page 2")  # waits for page 1 and its checkpoint
    assert done == ["page 1", "checkpoint 1"]
    writer.drain()
    writer.close()
    assert done == ["page 1", "checkpoint 1", "page 2"]


def test_a_checkpoint_behind_a_failed_write_never_runs() -> None:
    done: list[str] = []
    writer = Writer("t")

    def lose_the_lease() -> None:
        raise LeaseLostError("lost the lease")

    writer.submit(lose_the_lease)
    writer.then(done.append, "checkpoint")
    with pytest.raises(LeaseLostError):
        writer.drain()
    writer.then(done.append, "later")
    writer.close()  # a failing run ends the thread without raising over its own error
    assert done == []
