"""Azure Functions entry points (v2 programming model). Triggers only: no logic, no I/O at import.

Each trigger adapts its input, calls one use case from ``shared`` through the composition root
(``shared.bootstrap.services()``, built once per process on first use), and maps errors to a log
line. Nothing here reads settings or builds clients at import time, so the host always indexes
every function, even with missing settings (those fail the invocation with a clear log).

Every trigger takes the worker's ``context`` and runs inside ``shared.worker.invocation``: the SDK
loggers quiet, the host-side settings logged by a process's first invocation, and the invocation
carried into the threads the app starts (their lines keep the invocation id).

The HTTP triggers come from the routes' index entries (``shared.api.endpoints.ENDPOINTS``): one
function per route. Only those entries are imported here; the route table that joins them to
their handlers (``shared.api.routes``), and with it the use cases, is imported by the first HTTP
invocation, so indexing the app does not pay for the whole HTTP API. Callers are authenticated
by the app itself (``shared.api.access``: an Entra ID token on every route but the health check
and the consent callback). The host's own authorization level
follows ``API_AUTH_MODE``, the one setting read at import: anonymous by default (the host admits
no managed identity or Entra token at its ``function`` level, only keys, so a Logic App calling
with its identity would be refused), ``function`` with ``API_AUTH_MODE=key`` (the host checks the
key). Reading it is a dictionary lookup that cannot fail (see docs/http-auth.md).

Both queue triggers listen through ``DATA_STORAGE``: the app writes both queues through the data
account's settings (``DATA_STORAGE_CONNECTION_STRING`` / ``DATA_STORAGE_ACCOUNT_NAME``), so the
triggers read that account too, whatever the host's own storage (``AzureWebJobsStorage``) is;
``infra/`` points both at one account, and ``python -m shared check`` compares them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import azure.functions as func

from shared import worker
from shared.api.access import host_auth_level
from shared.api.endpoints import ENDPOINTS, Endpoint
from shared.api.functions import to_request, to_response
from shared.core.errors import ConfigError

if TYPE_CHECKING:
    from shared.bootstrap import Services
    from shared.usecases.ingest import IngestSummary

app = func.FunctionApp()
log = logging.getLogger("defender_bridge")


def _services() -> Services:
    """The process's composition root. Imported here, on first use, not at the top: it imports
    every SDK (storage, MSAL, Key Vault, requests), and the host indexes this module, where
    import time counts (``tests/functions`` checks that importing it loads none of them)."""
    from shared import bootstrap

    return bootstrap.services()


@app.timer_trigger(
    schedule="%INGEST_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
def ingest_timer(timer: func.TimerRequest, context: func.Context = worker.NO_INVOCATION) -> None:
    """Queue every enabled tenant on ``defender-ingest`` (``INGEST_FANOUT=queue``, the default),
    or ingest them here (``inline``). Fails if a tenant could not be queued (or, inline, failed)."""
    with worker.invocation(context):
        _tick(timer)


def _tick(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("the ingestion timer is past due; running now")
    try:
        svc = _services()
    except ConfigError as exc:
        log.error("ingestion not started: settings: %s", exc)
        raise
    report = svc.fanout().tick()
    if report.summary is not None:
        _log_summary(report.summary)
    if not report.ok:
        failed = sorted(report.failed)
        if report.summary is not None:
            failed += [t.tenant for t in report.summary.tenants if not t.ok]
        # raising marks the invocation failed in the host, so monitoring sees it
        raise RuntimeError(f"ingestion failed for {len(failed)} tenant(s): {', '.join(failed)}")


@app.queue_trigger(arg_name="message", queue_name="defender-ingest", connection="DATA_STORAGE")
def ingest_worker(message: func.QueueMessage, context: func.Context = worker.NO_INVOCATION) -> None:
    """Ingest the one tenant of a ``defender-ingest`` message within its time budget.

    A failure raises, so the host retries the message after host.json's ``visibilityTimeout``
    and moves it to ``defender-ingest-poison`` after ``maxDequeueCount`` attempts; backlog,
    throttling and missing consent are handled without failing (see ``shared.usecases.fanout``).
    """
    with worker.invocation(context):
        try:
            svc = _services()
        except ConfigError as exc:
            log.error("ingestion not started: settings: %s", exc)
            raise
        # new versions are recorded on defender-push as they are stored (Services.ingestor
        # wires shared.usecases.push.outbox); push_worker delivers them, never this function
        svc.fanout().handle(message.get_body(), dequeue_count=message.dequeue_count or 1)


@app.queue_trigger(arg_name="message", queue_name="defender-push", connection="DATA_STORAGE")
def push_worker(message: func.QueueMessage, context: func.Context = worker.NO_INVOCATION) -> None:
    """Fan a recorded change out to its subscriptions, or deliver to one (``shared.push``).

    What must wait is put back on the queue by the worker itself; a storage failure raises, so
    the host retries the message and, after ``maxDequeueCount``, moves it to
    ``defender-push-poison`` (``python -m shared subscriptions redrive`` puts it back).
    """
    with worker.invocation(context):
        try:
            svc = _services()
        except ConfigError as exc:
            log.error("push not started: settings: %s", exc)
            raise
        svc.push_worker().handle(message.get_body())


def _log_summary(summary: IngestSummary) -> None:
    for tenant in summary.tenants:
        if tenant.ok:
            log.info(
                "tenant %s: %d stored, %d pages, %d API calls, watermark %s%s",
                tenant.tenant,
                tenant.incidents,
                tenant.pages,
                tenant.api_calls,
                tenant.watermark,
                " (skipped: another run holds it)" if tenant.skipped else "",
            )
        else:
            log.error("tenant %s failed: %s", tenant.tenant, tenant.error)


def _http_function(route: Endpoint) -> Callable[..., func.HttpResponse]:
    def trigger(
        req: func.HttpRequest, context: func.Context = worker.NO_INVOCATION
    ) -> func.HttpResponse:
        # on first use, for import cost (see ``_services``): the HTTP face wires the root, and
        # its route table imports every handler and use case, which indexing does not need
        from shared.api.app import answer

        with worker.invocation(context):
            return to_response(answer(to_request(req)))

    trigger.__name__ = trigger.__qualname__ = route.function_name
    trigger.__doc__ = f"{route.method} /api{route.path}: {route.summary}."
    return trigger


_HOST_LEVEL = (
    func.AuthLevel.FUNCTION
    if host_auth_level(os.environ) == "function"
    else func.AuthLevel.ANONYMOUS
)
for _route in ENDPOINTS:
    app.function_name(name=_route.function_name)(
        app.route(
            route=_route.function_route,
            methods=[_route.method],
            # public routes (health, consent callback, poll links) need no key in any mode
            auth_level=func.AuthLevel.ANONYMOUS if _route.public else _HOST_LEVEL,
        )(_http_function(_route))
    )


@app.queue_trigger(arg_name="message", queue_name="defender-hunting", connection="DATA_STORAGE")
def hunting_worker(
    message: func.QueueMessage, context: func.Context = worker.NO_INVOCATION
) -> None:
    """Run one asynchronous hunting job (``{"job": id}``); its outcome is saved on the job."""
    # on first use, for import cost (see ``_services`` and ``_http_function``)
    from shared.api.app import backend
    from shared.api.handlers import run_queued_job

    with worker.invocation(context):
        try:
            job_id = str(json.loads(message.get_body())["job"])
        except (ValueError, KeyError, TypeError):
            log.error("hunting worker: malformed message dropped")
            return
        run_queued_job(backend(_services()), job_id)
