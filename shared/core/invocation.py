"""The Functions invocation a piece of work belongs to, carried into the threads the app starts.

The Python worker ties a log line to its invocation by an id it reads, when the line is logged,
from a thread-local: ``context.thread_local_storage.invocation_id``. The worker sets it on the
thread that runs the function; a thread the function starts has none, so its lines reach the
host without an invocation id, and the host cannot show them with the invocation that caused
them. Microsoft's answer ("Logging from created threads", Python developer reference,
https://learn.microsoft.com/azure/azure-functions/functions-reference-python#logging-from-created-threads)
is to set ``context.thread_local_storage.invocation_id = context.invocation_id`` at the start
of each such thread. The worker's side of it: ``get_current_invocation_id`` and
``_run_sync_func`` in azure_functions_worker/dispatcher.py
(https://github.com/Azure/azure-functions-python-worker).

Here: a trigger binds its ``func.Context`` for the duration of the call (``bound``); every
thread or executor task the app starts runs through ``carry``, which copies the caller's
``contextvars`` (the bound invocation, and OpenTelemetry's current span with it) into the new
thread and sets the worker's thread-local there for as long as the task runs. Outside the
Functions worker (CLI, ``serve``) nothing is bound and ``carry`` only copies the context.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, ParamSpec, Protocol, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")


class InvocationContext(Protocol):
    """What this module reads of ``azure.functions.Context`` (not imported here: the CLI and
    the storage layer use this module too, and need not load the Functions library)."""

    @property
    def invocation_id(self) -> str:
        """The invocation's id."""
        ...

    @property
    def thread_local_storage(self) -> Any:
        """The worker's thread-local holding ``invocation_id`` for its log handler."""
        ...


_current: contextvars.ContextVar[InvocationContext | None] = contextvars.ContextVar(
    "defender_bridge_invocation", default=None
)


@contextmanager
def bound(context: InvocationContext | None) -> Iterator[None]:
    """Make ``context`` the current invocation of this thread (and of the threads it starts
    through ``carry``) until the block ends; ``None`` or an empty id: no invocation."""
    token = _current.set(context if context is not None and context.invocation_id else None)
    try:
        yield
    finally:
        _current.reset(token)


def current_id() -> str | None:
    """The invocation id bound on this thread or carried into it, if any."""
    context = _current.get()
    return context.invocation_id if context is not None else None


def carry(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``fn``, to run on another thread in the caller's context: the caller's ``contextvars``
    as they are now, and the worker's invocation-id thread-local set while it runs."""
    captured = contextvars.copy_context()

    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        # one copy per call: a Context cannot be entered by two threads at once, and an
        # executor may run the same carried function on several threads
        return captured.copy().run(_as_invocation, lambda: fn(*args, **kwargs))

    return run


def _as_invocation(call: Callable[[], _R]) -> _R:
    context = _current.get()
    if context is None:
        return call()
    local = context.thread_local_storage
    previous = getattr(local, "invocation_id", None)
    local.invocation_id = context.invocation_id
    try:
        return call()
    finally:
        # a pool thread serves other invocations next: leave it as it was
        local.invocation_id = previous


class InvocationExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in the submitter's context (see ``carry``)."""

    def submit(self, fn: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_R]:
        """Schedule ``fn`` in the submitting thread's context (``map`` goes through here)."""
        return super().submit(carry(fn), *args, **kwargs)


def start_thread(
    target: Callable[[], object], *, name: str, daemon: bool = True
) -> threading.Thread:
    """Start a thread running ``target`` in the caller's context (see ``carry``)."""
    thread = threading.Thread(target=carry(target), name=name, daemon=daemon)
    thread.start()
    return thread
