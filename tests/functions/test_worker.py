"""What the real Functions Python worker does that calling a function once does not.

Concurrent first invocations on a cold process, the log volume of one invocation with the root
logger at INFO (as the worker sets it), invocation ids on lines logged by the app's threads,
and the first invocation's report of the host-side settings. The worker's part is played by
``tests.functions.worker`` (its thread pool, its thread-local, its log handler); the clouds
are the emulator and Azurite.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from shared.core.errors import ConfigError
from shared.core.logs import SDK_LOGGERS
from tests.conftest import LocalCloud
from tests.functions.worker import Sent, Worker, worker_logging

ROOT = Path(__file__).resolve().parents[2]


def _user_function(name: str) -> Any:
    from testkit.env import indexed_functions

    return indexed_functions()[name].get_user_function()


@pytest.fixture
def host_env(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The app settings as Core Tools hands them to host and worker (local.settings.json):
    the app's, plus the host-side ones, all pointing at Azurite."""
    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    extra = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsStorage": conn,
        "DATA_STORAGE": conn,
        "INGEST_SCHEDULE": "0 */5 * * * *",
        "PYTHON_THREADPOOL_THREAD_COUNT": "32",
    }
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LOG_LEVEL_AZURE_SDK", raising=False)
    return {**app_env, **extra}


@pytest.fixture
def runner() -> Any:
    pool = Worker(threads=4)
    yield pool
    pool.close()


def _message(tenant: str) -> func.QueueMessage:
    return func.QueueMessage(body=json.dumps({"tenant": tenant}).encode())


# --------------------------------------------------------------------- log volume


def _by_logger(sent: list[Sent]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in sent:
        counts[s.record.name] = counts.get(s.record.name, 0) + 1
    return counts


def _is_sdk(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in SDK_LOGGERS)


def test_one_queue_invocation_logs_a_handful_of_lines(
    cloud: LocalCloud, host_env: dict[str, str], runner: Worker
) -> None:
    """One queue-triggered ingestion of the home tenant (260 incidents) with the root logger at
    INFO: a handful of lines, the app's own, each with the invocation id; no SDK line."""
    home = cloud.emulator.home_tenant_id
    with worker_logging() as channel:
        invocation_id, _ = runner.invoke(
            _user_function("ingest_worker"), "ingest_worker", message=_message(home)
        )
    counts = _by_logger(channel.sent)
    assert not [name for name in counts if _is_sdk(name)], counts
    assert len(channel.sent) <= 8, [s.message for s in channel.sent]
    messages = [s.message for s in channel.sent]
    assert any(m.startswith("host settings: INGEST_SCHEDULE: OK") for m in messages)
    assert any(f"tenant {home}: ok, 260 stored" in m for m in messages), messages
    assert {s.invocation_id for s in channel.sent} == {invocation_id}


def test_log_level_azure_sdk_brings_the_sdk_lines_back(
    cloud: LocalCloud, host_env: dict[str, str], runner: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LOG_LEVEL_AZURE_SDK=INFO`` for a diagnosis: the same invocation logs every storage,
    Key Vault and token call again (request and response lines), from the writer thread too,
    still under the invocation's id and with credentials masked."""
    monkeypatch.setenv("LOG_LEVEL_AZURE_SDK", "INFO")
    home = cloud.emulator.home_tenant_id
    with worker_logging() as channel:
        invocation_id, _ = runner.invoke(
            _user_function("ingest_worker"), "ingest_worker", message=_message(home)
        )
    sdk = [s for s in channel.sent if _is_sdk(s.record.name)]
    http = [s for s in sdk if s.record.name == "azure.core.pipeline.policies.http_logging_policy"]
    # a request and a response line per call: Key Vault, token, state, journal, table
    # transactions and blobs of a 260-incident first run (about 30 calls)
    assert len(http) > 40, _by_logger(channel.sent)
    from_writer = [s for s in http if s.record.threadName.startswith("ingest-")]
    assert from_writer, {s.record.threadName for s in http}
    assert {s.invocation_id for s in channel.sent} == {invocation_id}
    secret = cloud.emulator.app_settings()["IDENTITY_HEADER"]  # never logged, nor any token
    assert not any(secret in s.message for s in channel.sent)
    assert not any(re.search(r"eyJ[\w-]{8,}\.[\w-]{8,}\.", s.message) for s in channel.sent)


def test_a_bad_sdk_level_is_a_settings_error_and_the_sdk_stays_quiet(
    cloud: LocalCloud, host_env: dict[str, str], runner: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LOG_LEVEL_AZURE_SDK=LOUD``: the invocation fails with the settings problem named,
    and the SDK loggers stay at WARNING."""
    monkeypatch.setenv("LOG_LEVEL_AZURE_SDK", "LOUD")
    home = cloud.emulator.home_tenant_id
    with worker_logging() as channel, pytest.raises(ConfigError, match="LOG_LEVEL_AZURE_SDK"):
        runner.invoke(_user_function("ingest_worker"), "ingest_worker", message=_message(home))
    assert logging.getLogger("azure").level == logging.WARNING
    assert any("LOG_LEVEL_AZURE_SDK: must be one of" in s.message for s in channel.sent)


# --------------------------------------------------------------------- invocation ids in threads


def test_lines_from_the_apps_threads_keep_the_invocation_id(
    cloud: LocalCloud, host_env: dict[str, str], runner: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inline timer run ingests the tenants on its own pool threads: their lines reach the
    host with the timer invocation's id, like the lines of the invocation's own thread."""
    monkeypatch.setenv("INGEST_FANOUT", "inline")
    with worker_logging() as channel:
        invocation_id, _ = runner.invoke(
            _user_function("ingest_timer"),
            "ingest_timer",
            timer=TimerRequest(past_due=False),
        )
    worker_thread = {s.record.threadName for s in channel.sent if s.record.name == "shared.worker"}
    from_threads = [s for s in channel.sent if s.record.threadName not in worker_thread]
    tenants = host_env["INGEST_TENANTS"].split(",")
    stored = [s for s in from_threads if "stored of" in s.message]
    assert len(stored) == len(tenants), [s.message for s in channel.sent]
    assert {s.invocation_id for s in channel.sent} == {invocation_id}


def test_a_lost_lease_is_logged_with_the_invocation_id(
    cloud: LocalCloud, app_env: dict[str, str], runner: Worker
) -> None:
    """The lease keep-alive thread's error (the lease was broken under a run) carries the id
    of the invocation that took the lease."""
    from azure.storage.blob import BlobLeaseClient, ContainerClient

    from shared.core.invocation import bound
    from shared.storage.state import TenantLock

    container = ContainerClient.from_connection_string(
        app_env["DATA_STORAGE_CONNECTION_STRING"], "lease-thread-test"
    )
    if not container.exists():
        container.create_container()

    def function(context: Any) -> bool:
        with bound(context), TenantLock(container, "t1", lease_seconds=15) as lock:
            BlobLeaseClient(container.get_blob_client("locks/t1")).break_lease(lease_break_period=0)
            deadline = time.monotonic() + 15
            while not lock.lost and time.monotonic() < deadline:
                time.sleep(0.1)
            return lock.lost

    with worker_logging() as channel:
        invocation_id, lost = runner.invoke(function, "ingest_worker")
    container.delete_container()
    assert lost
    lines = [s for s in channel.sent if s.record.threadName == "lease-t1"]
    assert [s.record.name for s in lines if "lost the lease of tenant t1" in s.message] == [
        "shared.storage.state"
    ]
    assert {s.invocation_id for s in lines} == {invocation_id}


# --------------------------------------------------------------------- host-side settings


def test_first_invocation_names_the_host_settings_once(
    cloud: LocalCloud, host_env: dict[str, str], runner: Worker
) -> None:
    """The first invocation of a process logs one line naming each host-side setting, what it
    is for and which function needs it; the next invocation does not repeat it."""
    health = _user_function("http_health")

    def call(context: Any) -> Any:
        return health(
            func.HttpRequest("GET", "http://localhost/api/health", body=b""), context=context
        )

    with worker_logging() as channel:
        runner.invoke(lambda context: call(context), "health")
        runner.invoke(lambda context: call(context), "health")
    host_lines = [s.message for s in channel.sent if s.message.startswith("host settings:")]
    assert len(host_lines) == 1, host_lines
    line = host_lines[0]
    for name, function in (
        ("INGEST_SCHEDULE", "ingest_timer"),
        ("DATA_STORAGE", "ingest_worker, hunting_worker, push_worker"),
        ("AzureWebJobsStorage", "any function"),
    ):
        assert f"{name}: OK set" in line
        assert f"does not start {function}" in line
    assert "PYTHON_THREADPOOL_THREAD_COUNT: OK" in line
    assert "functionTimeout: OK 00:10:00: 120 s after INGEST_TIME_BUDGET_SECONDS=480" in line


def test_first_invocation_says_which_function_the_host_will_not_start(
    cloud: LocalCloud, host_env: dict[str, str], runner: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without DATA_STORAGE (and its identity forms) the host never starts the queue
    functions; an HTTP invocation, which does run, says so as an error with the fix."""
    monkeypatch.delenv("DATA_STORAGE")
    health = _user_function("http_health")
    with worker_logging() as channel:
        runner.invoke(
            lambda context: health(
                func.HttpRequest("GET", "http://localhost/api/health", body=b""),
                context=context,
            ),
            "health",
        )
    errors = [s for s in channel.sent if s.record.levelno == logging.ERROR]
    assert [s.message for s in errors] == [
        "host settings: DATA_STORAGE: FAIL missing: the queue triggers' connection to the data "
        "account, where the app queues tenants (defender-ingest), hunting jobs "
        "(defender-hunting) and push deliveries (defender-push); the host does not start "
        "ingest_worker, hunting_worker, push_worker without it; "
        "fix: set DATA_STORAGE or DATA_STORAGE__queueServiceUri"
    ]
