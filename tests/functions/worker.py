"""A stand-in for the parts of the Azure Functions Python worker (4.x) the app meets.

Core Tools cannot run here, so the tests play the worker's part as its source implements it
(azure_functions_worker/dispatcher.py, https://github.com/Azure/azure-functions-python-worker):

- one ``threading.local`` for the whole process (``_invocation_id_local``); every invocation's
  ``Context.thread_local_storage`` is that same object;
- a synchronous function runs on the worker's thread pool; ``_run_sync_func`` sets the
  thread-local's ``invocation_id`` around the call and clears it after;
- the root logger at INFO with one handler (``AsyncLoggingHandler``) whose ``emit`` formats the
  record and sends it to the host with the invocation id it reads from the thread-local at that
  moment, on the logging thread (``on_logging`` / ``get_current_invocation_id``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import azure.functions as func

#: the worker's one thread-local (``_invocation_id_local``)
THREAD_LOCAL = threading.local()


class WorkerContext(func.Context):
    """``azure_functions_worker.bindings.context.Context`` as the worker builds it."""

    def __init__(self, function_name: str, invocation_id: str | None = None) -> None:
        self._name = function_name
        self._id = invocation_id or str(uuid.uuid4())

    @property
    def invocation_id(self) -> str:
        return self._id

    @property
    def thread_local_storage(self) -> Any:
        return THREAD_LOCAL

    @property
    def function_name(self) -> str:
        return self._name

    @property
    def function_directory(self) -> str:
        return ""

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


@dataclass(frozen=True)
class Sent:
    """One log line as the host receives it."""

    record: logging.LogRecord
    message: str
    invocation_id: str | None


class HostChannel(logging.Handler):
    """The worker's logging handler: what reaches the host, with its invocation id."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Sent] = []
        self._lock_sent = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        invocation_id = getattr(THREAD_LOCAL, "invocation_id", None)
        with self._lock_sent:
            self.sent.append(Sent(record, message, invocation_id))


@contextlib.contextmanager
def worker_logging() -> Iterator[HostChannel]:
    """The root logger as the worker sets it: INFO, one handler forwarding to the host."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    channel = HostChannel()
    root.handlers[:] = [channel]
    root.setLevel(logging.INFO)
    try:
        yield channel
    finally:
        root.handlers[:], root.level = saved


class Worker:
    """Runs synchronous functions as the worker does: on its pool, with the thread-local set."""

    def __init__(self, threads: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="worker")

    def invoke(self, fn: Callable[..., Any], name: str, **params: Any) -> tuple[str, Any]:
        """Call ``fn(**params, context=...)`` on the pool; returns (invocation id, result)."""
        context = WorkerContext(name)
        return context.invocation_id, self._pool.submit(
            self._run_sync_func, context, fn, params
        ).result()

    @staticmethod
    def _run_sync_func(context: WorkerContext, fn: Callable[..., Any], params: Any) -> Any:
        context.thread_local_storage.invocation_id = context.invocation_id
        try:
            return fn(**params, context=context)
        finally:
            context.thread_local_storage.invocation_id = None

    def close(self) -> None:
        self._pool.shutdown(wait=True)
