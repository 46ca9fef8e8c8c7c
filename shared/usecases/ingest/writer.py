"""The writer thread of a run: stores one answer while the next is fetched."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from shared.core.invocation import InvocationExecutor


class Writer:
    """One background thread that stores answers in order while the next one is fetched.

    ``submit`` (an answer's writes) first waits for every task before it, so memory holds at
    most two answers, and raises a failure of theirs on the fetching thread; ``then`` queues a
    small task (a checkpoint) behind them without waiting, so the next fetch still overlaps
    the writes before it.
    """

    def __init__(self, name: str) -> None:
        # the writer logs with the invocation that started the run (shared.core.invocation)
        self._pool = InvocationExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: list[Future[None]] = []
        self._failed = False  # set on the writer thread; tasks after a failure do not run

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self.drain()
        self.then(fn, *args)

    def then(self, fn: Callable[..., None], *args: Any) -> None:
        self._pending.append(self._pool.submit(self._guarded, fn, *args))

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        # a checkpoint queued behind an answer whose writes failed must never move: it would
        # pass versions that were not stored
        if self._failed:
            raise RuntimeError("an earlier write of this run failed")
        try:
            fn(*args)
        except BaseException:
            self._failed = True
            raise

    def drain(self) -> None:
        """Wait for the pending tasks, in order; the first failure is raised here (the tasks
        after a failed one do not run: see ``_guarded``)."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        """End the thread; tasks still in flight (the run is failing) are let finish first,
        so no write outlives the run's lease, and their own failures are not raised over the
        run's."""
        pending, self._pending = self._pending, []
        for future in pending:
            with contextlib.suppress(Exception):
                future.result()
        self._pool.shutdown(wait=True)
