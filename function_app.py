"""Azure Functions entry points (v2 programming model). Triggers only: no logic, no I/O at import.

Each trigger adapts its input, calls one use case from ``shared`` through the composition root
(``shared.bootstrap.services()``, built on first use and kept for the process), and maps errors
to a log line. Nothing here reads settings or builds clients at import time, so the host always
indexes every function, even with missing settings (those fail the invocation with a clear log).
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import bootstrap
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
