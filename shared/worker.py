"""The start of every Functions invocation: what the Python worker does not do for us.

``function_app.py``'s triggers run their work inside ``invocation(context)``, which

- keeps the Azure SDK, MSAL and urllib3 loggers at WARNING (``LOG_LEVEL_AZURE_SDK`` raises
  them) and puts redaction on the worker's handlers (``shared.core.logs``): the worker sets the root
  logger to INFO and forwards every record to the host as a billed trace;
- on the first invocation of a process, logs the host-side settings (``shared.usecases.doctor``):
the
  host refuses the functions that lack them before any Python runs, so this is the only place
  the app can say so from inside;
- binds the invocation's ``func.Context`` so the threads the app starts log with its id
  (``shared.core.invocation``);
- paces the cyclic garbage collector for ingestion (``shared.core.runtime``).

Nothing here runs at import time, and nothing is imported at import time but what the
triggers' signatures need: function_app.py imports this module where the host indexes the app.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import azure.functions as func

from shared.core.invocation import bound
from shared.core.runtime import pace_collector  # the standard library's gc only

log = logging.getLogger(__name__)

_lock = threading.Lock()
_reported_generation: int | None = None


class _NoInvocation(func.Context):
    """The context of a trigger called directly, not by the worker (tests, scripts)."""

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        """Empty: no invocation."""
        return ""

    @property
    def thread_local_storage(self) -> Any:
        """A thread-local of its own (the worker's log handler never reads it)."""
        return self._local

    @property
    def function_name(self) -> str:
        """Empty: no function."""
        return ""

    @property
    def function_directory(self) -> str:
        """Empty: no function."""
        return ""

    @property
    def trace_context(self) -> Any:
        """None: no distributed trace."""
        return None

    @property
    def retry_context(self) -> Any:
        """None: no retry."""
        return None


#: the ``context`` of a trigger called directly rather than by the worker
NO_INVOCATION: func.Context = _NoInvocation()


@contextmanager
def invocation(context: func.Context) -> Iterator[None]:
    """Run one invocation's work: worker logging, the first invocation's host report, and
    ``context`` bound for the threads the work starts."""
    # on first use, not at the top: function_app.py imports this module where the host indexes
    # the app and import time counts, and the settings' declarations and the redaction
    # patterns these load are a good part of it (after the first invocation it is a lookup)
    from shared.core.logs import configure_worker_logging

    configure_worker_logging()
    pace_collector()
    _report_host_once()
    with bound(context):
        yield


def report_host(env: Mapping[str, str] | None = None) -> None:
    """Log the host-side settings: one INFO line naming each (what it is for and which
    function needs it), and a warning or error line for each problem with its fix."""
    # on first use, for import cost (see ``invocation``)
    from shared.core.errors import ConfigError
    from shared.core.settings import load
    from shared.usecases.doctor import check_host

    try:
        settings = load(env)
    except ConfigError:
        settings = None  # the invocation reports the settings' problems itself
    findings = check_host(env, settings=settings)
    healthy = [f.line() for f in findings if f.status == "ok"]
    if healthy:
        log.info("host settings: %s", "; ".join(healthy))
    for finding in findings:
        if finding.status != "ok":
            level = logging.ERROR if finding.status == "fail" else logging.WARNING
            log.log(level, "host settings: %s", finding.line())


def _report_host_once() -> None:
    global _reported_generation
    # on first use, not at the top: the composition root imports every SDK, and
    # function_app.py (which imports this module) is indexed where import time counts
    from shared import bootstrap

    generation = bootstrap.services.generation
    with _lock:
        if _reported_generation == generation:
            return
        _reported_generation = generation
    report_host()
