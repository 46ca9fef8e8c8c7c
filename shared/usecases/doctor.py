"""What the Functions host needs before any Python runs, and what host.json must agree with.

The host reads some app settings itself, while it indexes the functions, before the Python
worker runs a line of ours: the timer's ``%INGEST_SCHEDULE%``, the queue triggers' connection
``DATA_STORAGE`` and its own storage ``AzureWebJobsStorage``. Without one of them the host does
not start the functions that need it (it logs the error at start-up and keeps them out), so
no invocation of ours could say why. ``check_host`` names each one, what it is for, which
function will not start without it, and checks host.json against the app's own settings and
the Python worker: ``python -m shared check`` prints it, and the first invocation of a process
logs it (``shared.worker``).

Sources: timer ``%NAME%`` schedules: https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer#ncrontab-expressions;
queue connections (a connection string, or an identity-based ``<NAME>__queueServiceUri``,
``<NAME>__serviceUri`` as an alias; ``AzureWebJobs<NAME>`` also resolves ``<NAME>``):
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#connections;
host storage by identity: https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity;
host.json ``functionTimeout`` and queue ``batchSize``/``newBatchThreshold``/``maxDequeueCount``:
https://learn.microsoft.com/azure/azure-functions/functions-host-json and
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json;
overriding host.json with ``AzureFunctionsJobHost__*`` app settings:
https://learn.microsoft.com/azure/azure-functions/functions-host-json#override-hostjson-values;
the worker's thread pool (``PYTHON_THREADPOOL_THREAD_COUNT``; unset on Python 3.9+, so
``ThreadPoolExecutor``'s default ``min(32, cpu_count + 4)``):
https://learn.microsoft.com/azure/azure-functions/python-scale-performance-reference and
``_get_sync_tp_max_workers`` in azure_functions_worker/dispatcher.py.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from shared.core.settings import (
    API_TIME_BUDGET_SETTING,
    INGEST_MAX_DEQUEUE_COUNT_SETTING,
    INGEST_SCHEDULE_SETTING,
    INGEST_TIME_BUDGET_SETTING,
    PYTHON_THREADPOOL_SETTING,
    QUEUE_CONNECTION_SETTING,
    QUEUE_SERVICE_URI_SETTING,
    RETIRED_SETTINGS,
    STORAGE_ACCOUNT_SETTING,
    STORAGE_CONNECTION_STRING_SETTING,
    Settings,
    parse_ncrontab,
)

Status = Literal["ok", "warn", "fail"]

#: host.json of the deployed app: beside the ``shared`` package (the app's root)
HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"
#: the host's own storage connection
HOST_STORAGE = "AzureWebJobsStorage"
#: set for the worker by Core Tools (local.settings.json) and by the platform; App Service also
#: sets WEBSITE_SITE_NAME (https://learn.microsoft.com/azure/app-service/reference-app-settings#app-environment),
#: in case a plan takes the runtime from the site rather than from this setting
IN_FUNCTION_APP = ("FUNCTIONS_WORKER_RUNTIME", "WEBSITE_SITE_NAME")

#: the functions by the host-side settings they need (function_app.py; a test holds them equal)
TIMER_FUNCTIONS = ("ingest_timer",)
QUEUE_FUNCTIONS = ("ingest_worker", "hunting_worker", "push_worker")
EVERY_FUNCTION = "any function"

#: what an ingestion run needs after its time budget: the writes of its last answer (storage
#: calls, with the SDK's own retries), its checkpoint and the lease's release; and before its
#: first request, a token and the tenant's lease. A budget this far below ``functionTimeout``
#: ends the run before the host cancels it.
TIMEOUT_MARGIN_SECONDS = 60
#: invocations besides the queue batches that may run at once in one worker: the timer and an
#: HTTP call (Flex Consumption's default HTTP concurrency for Python is 1 per instance)
OTHER_CONCURRENT_INVOCATIONS = 2
#: the documented maximum of PYTHON_THREADPOOL_THREAD_COUNT
MAX_THREADPOOL = 32


@dataclass(frozen=True, slots=True)
class HostSetting:
    """One app setting the host resolves itself; ``forms``: any one of them satisfies it."""

    name: str
    purpose: str
    functions: tuple[str, ...]
    forms: tuple[str, ...]


HOST_SETTINGS = (
    HostSetting(
        INGEST_SCHEDULE_SETTING,
        "the ingestion timer's NCRONTAB schedule (the trigger's %INGEST_SCHEDULE%)",
        TIMER_FUNCTIONS,
        (INGEST_SCHEDULE_SETTING,),
    ),
    HostSetting(
        QUEUE_CONNECTION_SETTING,
        "the queue triggers' connection to the data account, where the app queues tenants "
        "(defender-ingest), hunting jobs (defender-hunting) and push deliveries (defender-push)",
        QUEUE_FUNCTIONS,
        (
            QUEUE_CONNECTION_SETTING,
            QUEUE_SERVICE_URI_SETTING,
            f"{QUEUE_CONNECTION_SETTING}__serviceUri",
            f"AzureWebJobs{QUEUE_CONNECTION_SETTING}",
        ),
    ),
    HostSetting(
        HOST_STORAGE,
        "the host's own storage: function keys, timer schedules and locks",
        (EVERY_FUNCTION,),
        (
            HOST_STORAGE,
            f"{HOST_STORAGE}__blobServiceUri",
            f"{HOST_STORAGE}__accountName",
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One host-side check: a status, a secret-free detail and, when not ok, the fix."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        """``NAME: STATUS detail`` (and the fix when not ok), for logs and the CLI."""
        text = f"{self.name}: {self.status.upper()} {self.detail}"
        return f"{text}; fix: {self.fix}" if self.fix and self.status != "ok" else text


def http_auth_notes(settings: Settings) -> list[tuple[str, str]]:
    """What an operator must know about who the HTTP API admits, as (note, fix) pairs: key mode
    (a function key grants every route in every tenant) and retired settings still set (not
    obeyed). Said at start-up (the composition root logs it) and by ``check``."""
    notes: list[tuple[str, str]] = []
    if settings.http.auth_mode == "key":
        notes.append(
            (
                "API_AUTH_MODE=key: any holder of a function key may call every route in every "
                "registered tenant, with every role",
                "unless one team owns every tenant, set API_AUTH_MODE=entra and grant callers "
                "app roles (README 'Trust model')",
            )
        )
    notes += [
        (f"{n} is set but no longer read", RETIRED_SETTINGS[n]) for n in settings.retired_settings
    ]
    return notes


def check_host(
    env: Mapping[str, str] | None = None,
    *,
    host_json: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
) -> list[Finding]:
    """Every host-side setting, then host.json against the settings and the worker.

    A missing host setting fails inside a Function app (``IN_FUNCTION_APP``) and warns
    elsewhere (the CLI does not need it; the deployment does). ``host_json``:
    host.json as read (default: the app's); ``settings``: the app's parsed settings, for the
    relations (left out when they do not parse: that is reported on its own).
    """
    env = os.environ if env is None else env
    if host_json is None:
        host_json = read_host_json()
    findings = [_setting(s, env) for s in HOST_SETTINGS]
    same_account = _same_queue_account(env)
    if same_account is not None:
        findings.append(same_account)
    if host_json is None:
        findings.append(
            Finding("host.json", "warn", f"not found at {HOST_JSON}", "deploy host.json")
        )
        return findings
    config = effective_host_config(host_json, env)
    findings.append(_timeout(config, settings))
    findings.append(_dequeue_count(config, settings))
    findings.append(_thread_pool(config, env))
    return findings


def read_host_json(path: Path = HOST_JSON) -> dict[str, Any] | None:
    """host.json, or None when it is missing or not JSON."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def effective_host_config(host_json: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """host.json with its ``AzureFunctionsJobHost__a__b`` app-setting overrides applied (keys
    matched case-insensitively, as the host's configuration does)."""
    config: dict[str, Any] = json.loads(json.dumps(host_json))  # a deep copy
    prefix = "azurefunctionsjobhost__"
    for name, value in env.items():
        if not name.lower().startswith(prefix):
            continue
        path = [part for part in name[len(prefix) :].split("__") if part]
        node = config
        for part in path[:-1]:
            key = _key(node, part)
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        if path:
            node[_key(node, path[-1])] = value
    return config


def function_timeout_seconds(value: object) -> float | None:
    """``functionTimeout`` (``hh:mm:ss`` or ``d.hh:mm:ss``) in seconds; None: unbounded
    (``-1``); raises ValueError for anything else."""
    text = str(value).strip()
    if text == "-1":
        return None
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})", text)
    if not match:
        raise ValueError(f"functionTimeout {text!r} is not a time span like 00:10:00")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def default_thread_count() -> int:
    """The Python worker's pool without PYTHON_THREADPOOL_THREAD_COUNT on Python 3.9+:
    ``ThreadPoolExecutor``'s own default."""
    return min(32, (os.cpu_count() or 1) + 4)


def queue_concurrency(config: Mapping[str, Any]) -> tuple[int, int]:
    """(batchSize, newBatchThreshold) of the queue extension: the host runs up to their sum of
    messages at once per queue function and instance (defaults 16 and batchSize / 2)."""
    queues = config.get("extensions", {}).get("queues", {})
    batch = int(queues.get("batchSize", 16))
    threshold = int(queues.get("newBatchThreshold", batch // 2))
    return batch, threshold


# --------------------------------------------------------------------------- the checks


def _in_function_app(env: Mapping[str, str]) -> bool:
    return any(_value(env, name) for name in IN_FUNCTION_APP)


def _value(env: Mapping[str, str], name: str) -> str:
    return (env.get(name) or "").strip()


def _setting(setting: HostSetting, env: Mapping[str, str]) -> Finding:
    needs = ", ".join(setting.functions)
    found = next((form for form in setting.forms if _value(env, form)), None)
    if found is None:
        status: Status = "fail" if _in_function_app(env) else "warn"
        where = "" if status == "fail" else " (the CLI does not need it; the Function app does)"
        return Finding(
            setting.name,
            status,
            f"missing: {setting.purpose}; the host does not start {needs} without it{where}",
            f"set {' or '.join(setting.forms[:2])}",
        )
    if setting.name == INGEST_SCHEDULE_SETTING:
        try:
            parse_ncrontab(_value(env, found))
        except ValueError as exc:
            return Finding(
                setting.name,
                "fail",
                f"{exc}; the host does not start {needs} with it",
                "set a six-field NCRONTAB expression",
            )
    as_form = "" if found == setting.name else f" as {found}"
    return Finding(
        setting.name,
        "ok",
        f"set{as_form}: {setting.purpose}; without it the host does not start {needs}",
    )


def _same_queue_account(env: Mapping[str, str]) -> Finding | None:
    """The app queues work through DATA_STORAGE_CONNECTION_STRING / _ACCOUNT_NAME; the queue
    triggers listen through DATA_STORAGE: two names for what must be one account (None when
    one side is not set or names no account)."""
    written = _written_account(env)
    listened = _listened_account(env)
    if written is None or listened is None:
        return None
    if written == listened:
        return Finding(
            "queue account",
            "ok",
            f"the queue triggers listen on the account the app writes its queues to ({written})",
        )
    return Finding(
        "queue account",
        "fail",
        f"the app writes its queues to account {written}, but {QUEUE_CONNECTION_SETTING} "
        f"points the queue triggers at {listened}: no queued tenant or hunting job would run",
        f"point {QUEUE_CONNECTION_SETTING} at the data account",
    )


def _written_account(env: Mapping[str, str]) -> str | None:
    conn = _value(env, STORAGE_CONNECTION_STRING_SETTING)
    if conn:
        return _account_of_connection_string(conn)
    return _value(env, STORAGE_ACCOUNT_SETTING).lower() or None


def _listened_account(env: Mapping[str, str]) -> str | None:
    for name in (QUEUE_CONNECTION_SETTING, f"AzureWebJobs{QUEUE_CONNECTION_SETTING}"):
        if _value(env, name):  # an exact match wins over the identity-based prefix
            return _account_of_connection_string(_value(env, name))
    for name in (QUEUE_SERVICE_URI_SETTING, f"{QUEUE_CONNECTION_SETTING}__serviceUri"):
        if _value(env, name):
            return _account_of_uri(_value(env, name))
    return None


def _account_of_connection_string(conn: str) -> str | None:
    if conn.strip().lower() == "usedevelopmentstorage=true":
        return "devstoreaccount1"  # Azurite's (and the storage emulator's) account
    parts = {
        key.strip().lower(): value.strip()
        for key, _, value in (p.partition("=") for p in conn.split(";"))
        if key.strip()
    }
    if parts.get("accountname"):
        return parts["accountname"].lower()
    endpoint = parts.get("queueendpoint")
    return _account_of_uri(endpoint) if endpoint else None


def _account_of_uri(uri: str) -> str | None:
    parts = urlsplit(uri)
    host = (parts.hostname or "").lower()
    if not host:
        return None
    if re.fullmatch(r"[\d.]+|localhost|\[[0-9a-f:]+\]", host):
        # Azurite's path-style URL: http://127.0.0.1:10001/devstoreaccount1
        first = parts.path.strip("/").split("/", 1)[0]
        return first.lower() or None
    return host.split(".", 1)[0]


def _timeout(config: Mapping[str, Any], settings: Settings | None) -> Finding:
    raw = config.get("functionTimeout")
    if raw is None:
        return Finding(
            "functionTimeout",
            "warn",
            "not set in host.json: the plan's default applies (5 minutes on Consumption)",
            "set functionTimeout in host.json",
        )
    try:
        timeout = function_timeout_seconds(raw)
    except ValueError as exc:
        return Finding("functionTimeout", "fail", str(exc), "use hh:mm:ss")
    if settings is None or timeout is None:
        return Finding("functionTimeout", "ok", f"{raw}")
    budgets = (
        (INGEST_TIME_BUDGET_SETTING, settings.ingest.time_budget.total_seconds()),
        (API_TIME_BUDGET_SETTING, settings.defender.time_budget),
    )
    for name, budget in budgets:
        if budget >= timeout:
            return Finding(
                "functionTimeout",
                "fail",
                f"{raw} ({timeout:g} s) is not above {name}={budget:g}: the host cancels "
                "invocations before their time budget ends them",
                f"lower {name} to at most {timeout - TIMEOUT_MARGIN_SECONDS:g}",
            )
        if budget + TIMEOUT_MARGIN_SECONDS > timeout:
            return Finding(
                "functionTimeout",
                "warn",
                f"{raw} ({timeout:g} s) leaves less than {TIMEOUT_MARGIN_SECONDS} s after "
                f"{name}={budget:g} for the last writes of a run",
                f"lower {name} to at most {timeout - TIMEOUT_MARGIN_SECONDS:g}",
            )
    ingest = settings.ingest.time_budget.total_seconds()
    return Finding(
        "functionTimeout",
        "ok",
        f"{raw}: {timeout - ingest:g} s after {INGEST_TIME_BUDGET_SETTING}={ingest:g} "
        "to finish a run",
    )


def _dequeue_count(config: Mapping[str, Any], settings: Settings | None) -> Finding:
    queues = config.get("extensions", {}).get("queues", {})
    host = int(queues.get("maxDequeueCount", 5))
    if settings is None or settings.fanout.max_dequeue_count == host:
        return Finding("maxDequeueCount", "ok", f"{host}")
    return Finding(
        "maxDequeueCount",
        "warn",
        f"host.json moves a message to the poison queue after {host} attempts, the app "
        f"counts {INGEST_MAX_DEQUEUE_COUNT_SETTING}={settings.fanout.max_dequeue_count}: its "
        "last-attempt handling runs at the wrong attempt",
        f"set {INGEST_MAX_DEQUEUE_COUNT_SETTING}={host}",
    )


def _thread_pool(config: Mapping[str, Any], env: Mapping[str, str]) -> Finding:
    batch, threshold = queue_concurrency(config)
    needed = len(QUEUE_FUNCTIONS) * (batch + threshold) + OTHER_CONCURRENT_INVOCATIONS
    raw = _value(env, PYTHON_THREADPOOL_SETTING)
    try:
        threads = int(raw) if raw else default_thread_count()
    except ValueError:
        return Finding(
            PYTHON_THREADPOOL_SETTING,
            "warn",
            "is not a whole number: the worker ignores it and uses its default pool",
            f"set it to {min(needed, MAX_THREADPOOL)}",
        )
    source = f"{PYTHON_THREADPOOL_SETTING}={threads}" if raw else f"default pool of {threads}"
    sum_text = (
        f"{len(QUEUE_FUNCTIONS)} queue functions x (batchSize {batch} + newBatchThreshold "
        f"{threshold}) + {OTHER_CONCURRENT_INVOCATIONS} = {needed}"
    )
    if threads >= needed:
        return Finding(PYTHON_THREADPOOL_SETTING, "ok", f"{source} >= {sum_text}")
    return Finding(
        PYTHON_THREADPOOL_SETTING,
        "warn",
        f"{source} < {sum_text}: queued invocations wait in the worker for a thread while "
        "their functionTimeout runs",
        f"set {PYTHON_THREADPOOL_SETTING}={min(needed, MAX_THREADPOOL)} (or lower host.json's "
        "batchSize)",
    )


def _key(node: Mapping[str, Any], name: str) -> str:
    return next((k for k in node if k.lower() == name.lower()), name)
