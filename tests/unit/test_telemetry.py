"""Health telemetry: off (and not imported) without the setting; metrics per tenant with it.

Each case runs in a fresh interpreter: OpenTelemetry's providers are process-global.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

WITHOUT = """
import sys, function_app
from shared import telemetry
assert telemetry.recorder({}) is None
print(any(m.startswith(("azure.monitor", "opentelemetry")) for m in sys.modules))
"""

WITH = """
import json
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from shared import telemetry
from shared.usecases.ingest import TenantResult

reader = InMemoryMetricReader()
env = {"APPLICATIONINSIGHTS_CONNECTION_STRING":
       "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
       "IngestionEndpoint=https://127.0.0.1:9/"}
rec = telemetry.recorder(env, metric_readers=[reader])
assert rec is not None and telemetry.recorder(env) is rec
rec.record(TenantResult(tenant="t1", ok=True, incidents=7, api_calls=3, slices=2,
                        duration=1.5, lag_seconds=60.0))
rec.record(TenantResult(tenant="t2", ok=False, error_code="lease_lost"))
seen = {}
for rm in reader.get_metrics_data().resource_metrics:
    for sm in rm.scope_metrics:
        for metric in sm.metrics:
            for point in metric.data.data_points:
                key = metric.name + ":" + str(dict(point.attributes))
                seen[key] = getattr(point, "value", getattr(point, "sum", None))
print(json.dumps(seen, sort_keys=True))
"""


def run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.subprocess
def test_without_the_setting_nothing_is_imported() -> None:
    assert run(WITHOUT) == "False"


@pytest.mark.subprocess
def test_with_the_setting_each_tenant_run_is_recorded() -> None:
    seen = json.loads(run(WITH))
    assert seen["ingest.incidents:{'tenant': 't1'}"] == 7
    assert seen["ingest.api_calls:{'tenant': 't1'}"] == 3
    assert seen["ingest.failures:{'tenant': 't2', 'code': 'lease_lost'}"] == 1
    assert seen["ingest.lag:{'tenant': 't1'}"] == 60.0


REDACTED = """
import json, logging
from opentelemetry._logs import get_logger_provider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from shared import telemetry

env = {"APPLICATIONINSIGHTS_CONNECTION_STRING":
       "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
       "IngestionEndpoint=https://127.0.0.1:9/"}
assert telemetry.recorder(env) is not None
exporter = InMemoryLogRecordExporter()
get_logger_provider().add_log_record_processor(SimpleLogRecordProcessor(exporter))
log = logging.getLogger("shared.api.handlers")
log.warning("callback %s", "https://x.logic.azure.com/w?sig=SIGNATURE-SECRET")
try:
    raise ValueError("API_SIGNING_KEY=EXCEPTION-SECRET in a message")
except ValueError:
    log.exception("failed")
text = json.dumps([
    {"body": str(r.log_record.body), "attributes": dict(r.log_record.attributes or {})}
    for r in exporter.get_finished_logs()
], default=str)
print(json.dumps({"records": len(exporter.get_finished_logs()), "text": text}))
"""


@pytest.mark.subprocess
def test_records_sent_to_application_insights_are_redacted() -> None:
    """The ``shared`` logger's Application Insights handler gets the redaction filter too, and
    an exception's message (sent as its own attribute) is redacted."""
    out = json.loads(run(REDACTED))
    assert out["records"] == 2
    assert "SIGNATURE-SECRET" not in out["text"] and "EXCEPTION-SECRET" not in out["text"]
    assert "ValueError" in out["text"] and "***" in out["text"]
