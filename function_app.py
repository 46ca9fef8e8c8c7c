"""Azure Functions entry points (v2 programming model). Triggers only: no logic, no I/O at import.

Each trigger adapts its input, calls one use case from ``shared`` through the composition root
(``shared.bootstrap.services()``, built on first use and kept for the process), and maps errors
to a log line. Nothing here reads settings or builds clients at import time, so the host always
indexes every function, even with missing settings (those fail the invocation with a clear log).

The HTTP triggers come from the route table (``shared.api.routes.ROUTES``): one function per
route, function-key auth except on the health check and the consent callback.

The queue triggers listen on ``AzureWebJobsStorage``: the queues live in the data account, which
the deployment (``infra/``) makes the host's account too; locally both are Azurite.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import azure.functions as func

from shared import bootstrap
from shared.api.routes import ROUTES, Route
from shared.errors import ConfigError
from shared.logs import install_redaction

app = func.FunctionApp()
log = logging.getLogger("defender_bridge")


@app.timer_trigger(
    schedule="%INGEST_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
def ingest_timer(timer: func.TimerRequest) -> None:
    """Ingest every enabled tenant (INGEST_TENANTS + the registry table). Fails if any failed."""
    install_redaction()
    if timer.past_due:
        log.warning("the ingestion timer is past due; running now")
    try:
        svc = bootstrap.services()
    except ConfigError as exc:
        log.error("ingestion not started: settings: %s", exc)
        raise
    summary = svc.ingestor().run(svc.enabled_tenants())
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
    if not summary.ok:
        failed = [t.tenant for t in summary.tenants if not t.ok]
        # raising marks the invocation failed in the host, so monitoring sees it
        raise RuntimeError(f"ingestion failed for {len(failed)} tenant(s): {', '.join(failed)}")


def _http_function(route: Route) -> Callable[[func.HttpRequest], func.HttpResponse]:
    def trigger(req: func.HttpRequest) -> func.HttpResponse:
        from shared.api.app import answer
        from shared.api.functions import to_request, to_response

        install_redaction()
        return to_response(answer(to_request(req)))

    trigger.__name__ = trigger.__qualname__ = route.function_name
    trigger.__doc__ = f"{route.method} /api{route.path}: {route.summary}."
    return trigger


for _route in ROUTES:
    app.function_name(name=_route.function_name)(
        app.route(
            route=_route.function_route,
            methods=[_route.method],
            auth_level=(
                func.AuthLevel.ANONYMOUS if _route.auth == "anonymous" else func.AuthLevel.FUNCTION
            ),
        )(_http_function(_route))
    )


@app.queue_trigger(
    arg_name="message", queue_name="defender-hunting", connection="AzureWebJobsStorage"
)
def hunting_worker(message: func.QueueMessage) -> None:
    """Run one asynchronous hunting job (``{"job": id}``); its outcome is saved on the job."""
    from shared.api.handlers import run_queued_job

    install_redaction()
    try:
        job_id = str(json.loads(message.get_body())["job"])
    except (ValueError, KeyError, TypeError):
        log.error("hunting worker: malformed message dropped")
        return
    run_queued_job(bootstrap.services().api_backend(), job_id)


@app.queue_trigger(
    arg_name="message", queue_name="defender-ingest", connection="AzureWebJobsStorage"
)
def ingest_worker(message: func.QueueMessage) -> None:
    """Ingest one queued tenant (board item 3 message); fails so the host retries/poisons."""
    from shared.storage.queue import IngestRequest

    install_redaction()
    try:
        request = IngestRequest.from_json(message.get_body().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        log.error("ingest worker: malformed message dropped: %s", exc)
        return
    svc = bootstrap.services()
    if request.tenant not in svc.enabled_tenants():
        log.error("ingest worker: tenant %s is not registered; dropped", request.tenant)
        return
    # TODO(issue 11): svc.ingestor(notify=svc.push_notifier().notify) once ingestion lands
    result = svc.ingestor().run_tenant(request.tenant, since=request.since)
    if not result.ok:
        raise RuntimeError(f"ingestion of tenant {request.tenant} failed: {result.error}")
    log.info("tenant %s (%s): %d stored", request.tenant, request.reason, result.incidents)
