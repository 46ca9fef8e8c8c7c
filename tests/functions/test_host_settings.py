"""The host-side settings and host.json, against the functions, the app's settings and infra/.

The Functions host resolves ``%INGEST_SCHEDULE%`` and the queue connections itself, before any
Python runs; host.json's timeout and queue batches must fit the app's time budgets and the
Python worker's thread pool. These tests hold each relation in place.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from shared.bootstrap import STORAGE_POOL_SIZE
from shared.core import settings
from shared.core.logs import SDK_LOGGERS
from shared.usecases import doctor as host
from shared.usecases.doctor import (
    HOST_SETTINGS,
    QUEUE_FUNCTIONS,
    TIMEOUT_MARGIN_SECONDS,
    TIMER_FUNCTIONS,
    check_host,
    effective_host_config,
    function_timeout_seconds,
    queue_concurrency,
)

ROOT = Path(__file__).resolve().parents[2]
HOST_JSON = json.loads((ROOT / "host.json").read_text())
DEFAULTS = settings.Settings.from_env(
    {
        settings.TENANT_ID_SETTING: "00000000-0000-0000-0000-000000000001",
        settings.CLIENT_ID_SETTING: "00000000-0000-0000-0000-000000000002",
        settings.KEY_VAULT_URL_SETTING: "https://v.vault.azure.net",
        settings.STORAGE_ACCOUNT_SETTING: "data",
    }
)
AZURITE = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"


def _indexed() -> dict[str, Any]:
    from testkit.env import indexed_functions

    return indexed_functions()


def _bindings(function: Any) -> list[dict[str, Any]]:
    return [json.loads(b) for b in function.get_raw_bindings()]


def _infra_app_settings() -> dict[str, Any]:
    parsed = dict(BicepParser().parse(file_path=ROOT / "infra" / "app" / "api.bicep"))
    items = parsed["resources"]["functionApp"]["config"]["properties"]["siteConfig"]
    return {s["name"]: s["value"] for s in items["appSettings"]}


def _complete_env(**overrides: str) -> dict[str, str]:
    env = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "INGEST_SCHEDULE": "0 */5 * * * *",
        "DATA_STORAGE": AZURITE,
        "AzureWebJobsStorage": AZURITE,
        "DATA_STORAGE_CONNECTION_STRING": AZURITE,
        "PYTHON_THREADPOOL_THREAD_COUNT": "32",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v}


def _by_name(findings: list[host.Finding]) -> dict[str, host.Finding]:
    return {f.name: f for f in findings}


# --------------------------------------------------------------------- the functions' bindings


def test_every_setting_a_binding_names_is_a_host_setting_of_that_function() -> None:
    """The connections and ``%NAME%`` expressions of function_app's bindings are exactly the
    host settings ``shared.usecases.doctor`` reports, each listing the functions that use it."""
    used: dict[str, set[str]] = {}
    for name, function in _indexed().items():
        for binding in _bindings(function):
            if binding.get("connection"):
                used.setdefault(binding["connection"], set()).add(name)
            for value in binding.values():
                for expression in re.findall(r"%([^%]+)%", str(value)):
                    used.setdefault(expression, set()).add(name)
    declared = {s.name: set(s.functions) for s in HOST_SETTINGS if s.name != host.HOST_STORAGE}
    assert used == declared


def test_the_queue_and_timer_functions_are_the_ones_host_knows() -> None:
    """``QUEUE_FUNCTIONS`` / ``TIMER_FUNCTIONS`` (the thread-pool sum counts them) match the
    triggers function_app defines."""
    kinds: dict[str, set[str]] = {}
    for name, function in _indexed().items():
        kinds.setdefault(_bindings(function)[0]["type"], set()).add(name)
    assert kinds["queueTrigger"] == set(QUEUE_FUNCTIONS)
    assert kinds["timerTrigger"] == set(TIMER_FUNCTIONS)


def test_both_queue_triggers_listen_on_the_data_account() -> None:
    """The app writes both queues through the data account's settings, so both triggers read
    them through ``DATA_STORAGE``, not the host's own storage (which may be another account)."""
    for name in QUEUE_FUNCTIONS:
        (binding,) = _bindings(_indexed()[name])
        assert binding["connection"] == settings.QUEUE_CONNECTION_SETTING, name


# --------------------------------------------------------------------- the settings


@pytest.mark.parametrize("marker", ["FUNCTIONS_WORKER_RUNTIME", "WEBSITE_SITE_NAME"])
def test_missing_host_settings_fail_inside_a_function_app_naming_the_function(marker: str) -> None:
    """With none of them set, each one fails and says which function the host will not start
    and how to fix it."""
    found = _by_name(check_host({marker: "python"}, host_json=HOST_JSON))
    assert found["INGEST_SCHEDULE"].status == "fail"
    assert "does not start ingest_timer" in found["INGEST_SCHEDULE"].detail
    assert found["DATA_STORAGE"].status == "fail"
    assert (
        "does not start ingest_worker, hunting_worker, push_worker" in found["DATA_STORAGE"].detail
    )
    assert found["DATA_STORAGE"].fix == "set DATA_STORAGE or DATA_STORAGE__queueServiceUri"
    assert found["AzureWebJobsStorage"].status == "fail"
    assert "does not start any function" in found["AzureWebJobsStorage"].detail


def test_outside_a_function_app_missing_host_settings_only_warn() -> None:
    """The CLI does not need them: ``check`` on a workstation warns (the deployment does)."""
    found = check_host({}, host_json=HOST_JSON)
    statuses = {f.name: f.status for f in found if f.name in {s.name for s in HOST_SETTINGS}}
    assert statuses == {
        "INGEST_SCHEDULE": "warn",
        "DATA_STORAGE": "warn",
        "AzureWebJobsStorage": "warn",
    }
    assert all(
        "the CLI does not need it" in f.detail
        for f in found
        if f.status == "warn" and f.name in statuses
    )


@pytest.mark.parametrize(
    ("name", "form", "value"),
    [
        ("DATA_STORAGE", "DATA_STORAGE__queueServiceUri", "https://acct.queue.core.windows.net"),
        ("DATA_STORAGE", "DATA_STORAGE__serviceUri", "https://acct.queue.core.windows.net"),
        ("DATA_STORAGE", "AzureWebJobsDATA_STORAGE", AZURITE),
        (
            "AzureWebJobsStorage",
            "AzureWebJobsStorage__blobServiceUri",
            "https://h.blob.core.windows.net",
        ),
        ("AzureWebJobsStorage", "AzureWebJobsStorage__accountName", "h"),
    ],
)
def test_identity_based_forms_satisfy_a_host_setting(name: str, form: str, value: str) -> None:
    """Each documented form of a connection counts, and the report says which one is set."""
    env = _complete_env(**{name: "", form: value})
    finding = _by_name(check_host(env, host_json=HOST_JSON))[name]
    assert finding.status == "ok"
    assert finding.detail.startswith(f"set as {form}:")


def test_a_malformed_schedule_fails() -> None:
    """The host refuses a schedule it cannot parse just as it refuses a missing one."""
    finding = _by_name(
        check_host(_complete_env(INGEST_SCHEDULE="every 5 minutes"), host_json=HOST_JSON)
    )
    assert finding["INGEST_SCHEDULE"].status == "fail"
    assert "NCRONTAB" in finding["INGEST_SCHEDULE"].detail


def test_the_queue_triggers_must_listen_on_the_account_the_app_writes() -> None:
    """DATA_STORAGE naming another account than the app's data settings: nothing queued would
    ever run. The same account through different spellings is fine; no secret is echoed."""
    same = [
        _complete_env(),
        _complete_env(DATA_STORAGE="UseDevelopmentStorage=true"),
        _complete_env(
            DATA_STORAGE="",
            DATA_STORAGE__queueServiceUri="https://acct.queue.core.usgovcloudapi.net",
            DATA_STORAGE_CONNECTION_STRING="",
            DATA_STORAGE_ACCOUNT_NAME="acct",
        ),
        _complete_env(
            DATA_STORAGE="", DATA_STORAGE__queueServiceUri="http://127.0.0.1:10001/devstoreaccount1"
        ),
    ]
    for env in same:
        assert _by_name(check_host(env, host_json=HOST_JSON))["queue account"].status == "ok", env
    other = _complete_env(
        DATA_STORAGE="DefaultEndpointsProtocol=https;AccountName=hostacct;AccountKey=c2VjcmV0LWtleQ==",
        DATA_STORAGE_CONNECTION_STRING="",
        DATA_STORAGE_ACCOUNT_NAME="dataacct",
    )
    finding = _by_name(check_host(other, host_json=HOST_JSON))["queue account"]
    assert finding.status == "fail"
    assert "dataacct" in finding.detail and "hostacct" in finding.detail
    assert "c2VjcmV0LWtleQ" not in finding.line()


# --------------------------------------------------------------------- host.json relations


def test_repository_host_json_infra_and_settings_defaults_fit_together() -> None:
    """The relations that must hold for the deployment as shipped: the ingestion and API time
    budgets end well before functionTimeout; both queue functions' batches, the timer and an
    HTTP call fit the thread pool infra/ sets (at most the documented 32); the app's last
    attempt is host.json's; the storage pool covers a batch."""
    timeout = function_timeout_seconds(HOST_JSON["functionTimeout"])
    assert timeout is not None
    assert DEFAULTS.ingest.time_budget.total_seconds() + TIMEOUT_MARGIN_SECONDS <= timeout
    assert DEFAULTS.defender.time_budget + TIMEOUT_MARGIN_SECONDS <= timeout
    assert timeout <= 600  # valid on the Consumption plan too (its maximum is 10 minutes)
    batch, threshold = queue_concurrency(HOST_JSON)
    infra_threads = int(_infra_app_settings()[settings.PYTHON_THREADPOOL_SETTING])
    needed = len(QUEUE_FUNCTIONS) * (batch + threshold) + host.OTHER_CONCURRENT_INVOCATIONS
    assert needed <= infra_threads <= host.MAX_THREADPOOL
    assert HOST_JSON["extensions"]["queues"]["maxDequeueCount"] == DEFAULTS.fanout.max_dequeue_count
    assert batch + threshold <= STORAGE_POOL_SIZE
    env = _complete_env(PYTHON_THREADPOOL_THREAD_COUNT=str(infra_threads))
    found = check_host(env, host_json=HOST_JSON, settings=DEFAULTS)
    assert [f.line() for f in found if f.status != "ok"] == []


def test_a_budget_at_or_near_the_timeout_is_reported() -> None:
    """A budget the host would cut short fails; one leaving less than the margin warns; an
    ``AzureFunctionsJobHost__functionTimeout`` override counts (5 minutes: the default 480 s
    budget no longer fits)."""
    env = _complete_env()
    near = dataclasses.replace(
        DEFAULTS, ingest=dataclasses.replace(DEFAULTS.ingest, time_budget=_seconds(560))
    )
    over = dataclasses.replace(
        DEFAULTS, ingest=dataclasses.replace(DEFAULTS.ingest, time_budget=_seconds(600))
    )
    api_over = dataclasses.replace(
        DEFAULTS, defender=dataclasses.replace(DEFAULTS.defender, time_budget=900.0)
    )
    assert (
        _by_name(check_host(env, host_json=HOST_JSON, settings=near))["functionTimeout"].status
        == "warn"
    )
    assert (
        _by_name(check_host(env, host_json=HOST_JSON, settings=over))["functionTimeout"].status
        == "fail"
    )
    finding = _by_name(check_host(env, host_json=HOST_JSON, settings=api_over))["functionTimeout"]
    assert finding.status == "fail" and "API_TIME_BUDGET_SECONDS=900" in finding.detail
    shorter = dict(env, AzureFunctionsJobHost__functionTimeout="00:05:00")
    finding = _by_name(check_host(shorter, host_json=HOST_JSON, settings=DEFAULTS))[
        "functionTimeout"
    ]
    assert finding.status == "fail"
    assert finding.fix == "lower INGEST_TIME_BUDGET_SECONDS to at most 240"


def test_batches_larger_than_the_thread_pool_warn() -> None:
    """Fewer threads than messages the host hands over at once: the extra invocations wait
    for a thread while their timeout runs. A host.json override of the batch counts."""
    small = _complete_env(PYTHON_THREADPOOL_THREAD_COUNT="8")
    finding = _by_name(check_host(small, host_json=HOST_JSON))["PYTHON_THREADPOOL_THREAD_COUNT"]
    assert finding.status == "warn"
    assert "(batchSize 8 + newBatchThreshold 2) + 2 = 32" in finding.detail
    bigger = _complete_env(AzureFunctionsJobHost__extensions__queues__batchSize="16")
    finding = _by_name(check_host(bigger, host_json=HOST_JSON))["PYTHON_THREADPOOL_THREAD_COUNT"]
    assert (
        finding.status == "warn"
        and "(batchSize 16 + newBatchThreshold 2) + 2 = 56" in finding.detail
    )


def test_the_apps_last_attempt_must_be_the_hosts() -> None:
    """INGEST_MAX_DEQUEUE_COUNT differing from host.json maxDequeueCount warns."""
    other = dataclasses.replace(
        DEFAULTS, fanout=dataclasses.replace(DEFAULTS.fanout, max_dequeue_count=3)
    )
    finding = _by_name(check_host(_complete_env(), host_json=HOST_JSON, settings=other))[
        "maxDequeueCount"
    ]
    assert finding.status == "warn" and finding.fix == "set INGEST_MAX_DEQUEUE_COUNT=5"


def test_host_json_log_levels() -> None:
    """Host categories at Warning by default; the invocation results (requests), aggregates
    (invocation counts) and the functions' own lines (Function.<name> and .User) at
    Information. No Python logger name: the host never sees them as categories (the worker
    forwards Python records as the function's user logs), so the SDK's level is set in Python."""
    levels = HOST_JSON["logging"]["logLevel"]
    assert levels == {
        "default": "Warning",
        "Host.Results": "Information",
        "Host.Aggregator": "Information",
        "Function": "Information",
    }
    assert not set(levels) & set(SDK_LOGGERS)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:10:00", 600.0), ("01:30:05", 5405.0), ("1.00:00:00", 86400.0), ("-1", None)],
)
def test_function_timeout_spans(text: str, seconds: float | None) -> None:
    assert function_timeout_seconds(text) == seconds


def test_overrides_apply_case_insensitively_without_touching_host_json() -> None:
    env = {"AzureFunctionsJobHost__Extensions__Queues__BatchSize": "2", "OTHER": "x"}
    config = effective_host_config(HOST_JSON, env)
    assert queue_concurrency(config) == (2, 2)
    assert queue_concurrency(HOST_JSON) == (8, 2)


# --------------------------------------------------------------------- where it is reported


def test_report_host_logs_one_info_line_and_a_line_per_problem(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first invocation's report: one INFO line for what is fine, one line per problem at
    its level, without secrets."""
    from shared.worker import report_host

    env = _complete_env(AzureWebJobsStorage="", PYTHON_THREADPOOL_THREAD_COUNT="4")
    caplog.set_level(logging.INFO, logger="shared.worker")
    report_host(env)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "shared.worker"]
    assert [level for level, _ in lines] == ["INFO", "ERROR", "WARNING"]
    assert lines[0][1].startswith("host settings: INGEST_SCHEDULE: OK set:")
    assert "AzureWebJobsStorage: FAIL missing" in lines[1][1]
    assert "PYTHON_THREADPOOL_THREAD_COUNT: WARN" in lines[2][1]
    assert not any("a2V5" in message for _, message in lines)


def test_check_prints_the_host_settings(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m shared check`` ends with the host-side settings; in a Function app's
    environment without DATA_STORAGE it exits 1 naming the functions that would not start."""
    from shared.cli import main

    monkeypatch.setenv("FUNCTIONS_WORKER_RUNTIME", "python")
    monkeypatch.setenv("AzureWebJobsStorage", app_env["DATA_STORAGE_CONNECTION_STRING"])
    monkeypatch.setenv("INGEST_SCHEDULE", "0 */5 * * * *")
    monkeypatch.setenv("PYTHON_THREADPOOL_THREAD_COUNT", "32")
    out = io.StringIO()
    status = main(["check"], out=out)
    text = out.getvalue()
    assert status == 1
    assert text.startswith("credential: OK")  # the tenants' report first, as before
    host_part = text[text.index("\nhost settings (read by the Functions host") :]
    assert "DATA_STORAGE: FAIL missing" in host_part
    assert "ingest_worker, hunting_worker, push_worker" in host_part
    monkeypatch.setenv("DATA_STORAGE", app_env["DATA_STORAGE_CONNECTION_STRING"])
    out = io.StringIO()
    assert main(["check", "--json"], out=out) == 0, out.getvalue()
    document = json.loads(out.getvalue())
    assert {f["name"]: f["status"] for f in document["host"]}["DATA_STORAGE"] == "ok"


def test_check_reports_host_settings_even_when_the_app_settings_are_broken(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The host settings are not the app's: with the app's settings broken, ``check`` still
    names them, then the settings error (exit 2)."""
    from shared.cli import main

    for name in ("DEFENDER_TENANT_ID", "INGEST_SCHEDULE", "DATA_STORAGE", "AzureWebJobsStorage"):
        monkeypatch.delenv(name, raising=False)
    from shared import bootstrap

    bootstrap.services.cache_clear()
    out = io.StringIO()
    assert main(["check"], out=out) == 2
    assert "INGEST_SCHEDULE: WARN missing" in out.getvalue()
    assert "DEFENDER_TENANT_ID" in capsys.readouterr().err
    bootstrap.services.cache_clear()


def _seconds(value: int) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)
