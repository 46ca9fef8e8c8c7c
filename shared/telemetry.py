"""Ingestion health in Application Insights: OpenTelemetry metrics and logs, only when asked.

When ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (the Functions platform sets it when the
app has Application Insights), ``azure-monitor-opentelemetry`` is configured once per process
(https://learn.microsoft.com/azure/azure-monitor/app/opentelemetry-enable?tabs=python) and each
tenant's run is recorded as metrics (dimension ``tenant``):

- ``ingest.incidents`` (versions stored), ``ingest.api_calls``, ``ingest.slices``,
  ``ingest.throttled`` (429 waits), ``ingest.quarantined``, ``ingest.failures`` (by error code)
- ``ingest.duration`` (seconds) and ``ingest.lag`` (seconds from the checkpoint to now)

and the ``shared`` loggers' records go to Application Insights too. Without the setting nothing
is imported (the distro is large; importing ``function_app`` must stay fast and quiet).
The connection string is never logged.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from shared.core.logs import install_redaction
from shared.core.settings import APPLICATIONINSIGHTS_SETTING as CONNECTION_STRING_SETTING

log = logging.getLogger(__name__)

_lock = threading.Lock()
_recorder: Recorder | None = None
_configured = False


class Recorder:
    """Records ingestion results as OpenTelemetry metrics (built by ``recorder``)."""

    def __init__(self, meter: Any) -> None:
        self._counters = {
            name: meter.create_counter(f"ingest.{name}", unit=unit, description=text)
            for name, unit, text in (
                ("incidents", "{version}", "incident versions newly stored"),
                ("api_calls", "{call}", "Defender/Graph API requests"),
                ("slices", "{slice}", "time slices completed"),
                ("throttled", "{wait}", "waits after a 429"),
                ("quarantined", "{record}", "records set aside"),
                ("failures", "{run}", "tenant runs that failed"),
            )
        }
        self._duration = meter.create_histogram("ingest.duration", unit="s")
        self._lag = meter.create_histogram("ingest.lag", unit="s")

    def record(self, result: Any) -> None:
        """Record one tenant's ``shared.usecases.ingest.TenantResult``."""
        attrs = {"tenant": result.tenant}
        for name in ("incidents", "api_calls", "slices", "throttled", "quarantined"):
            self._counters[name].add(int(getattr(result, name)), attrs)
        if not result.ok:
            self._counters["failures"].add(1, {**attrs, "code": result.error_code or "error"})
        self._duration.record(float(result.duration), attrs)
        if result.lag_seconds is not None:
            self._lag.record(float(result.lag_seconds), attrs)


def recorder(
    env: Mapping[str, str] | None = None,
    *,
    credential: Any = None,
    metric_readers: Sequence[Any] = (),
) -> Recorder | None:
    """The process's recorder, configuring Azure Monitor on first use; None without the setting.

    ``credential``: the Function's identity, for an Application Insights resource with local
    (key) auth off, as ``infra/`` deploys it (Entra auth:
    https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication?tabs=python).
    ``metric_readers``: extra OpenTelemetry readers (tests read the metrics back with one).
    A failure to configure is logged once and telemetry stays off: it never fails ingestion.
    """
    global _recorder, _configured
    env = os.environ if env is None else env
    connection = (env.get(CONNECTION_STRING_SETTING) or "").strip()
    if not connection:
        return None
    with _lock:
        if _configured:
            return _recorder
        _configured = True
        try:
            from azure.monitor.opentelemetry import configure_azure_monitor
            from opentelemetry import metrics

            options: dict[str, Any] = {} if credential is None else {"credential": credential}
            configure_azure_monitor(
                **options,
                connection_string=connection,
                logger_name="shared",
                metric_readers=list(metric_readers),
                enable_live_metrics=False,
            )
            # the handler it adds to ``shared`` gets the redaction filter like every other

            install_redaction(logging.getLogger("shared"))
            _recorder = Recorder(metrics.get_meter("defender_bridge.ingest"))
        except Exception as exc:  # noqa: BLE001 - telemetry never fails ingestion
            log.warning("Application Insights telemetry is off: %s", type(exc).__name__)
            _recorder = None
        return _recorder
