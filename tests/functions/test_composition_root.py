"""The composition root is built once per process, however many invocations arrive at once.

The Functions worker runs synchronous functions on a thread pool, so a queue batch or a burst of
HTTP calls makes several first calls of ``bootstrap.services()`` at the same moment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from shared import bootstrap
from shared.bootstrap import _CompositionRoot
from shared.core.errors import ConfigError
from tests.conftest import LocalCloud

ROOT = Path(__file__).resolve().parents[2]


def test_composition_root_is_single_flight() -> None:
    """Sixteen first calls at once build once; every caller gets the same object."""
    calls = 0
    lock = threading.Lock()

    def factory() -> Any:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.05)  # long enough for every thread to arrive while the build runs
        return object()

    root = _CompositionRoot(factory)
    barrier = threading.Barrier(16)
    results: list[Any] = []

    def first_call() -> None:
        barrier.wait(timeout=10)
        results.append(root())

    threads = [threading.Thread(target=first_call) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1
    assert len(results) == 16 and len({id(r) for r in results}) == 1
    assert root.built


def test_a_failed_build_is_not_kept_and_a_later_call_builds() -> None:
    """A build that raises is raised to its caller and forgotten: the next call builds."""
    attempts: list[int] = []

    def factory() -> Any:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConfigError("missing DEFENDER_TENANT_ID")
        return "services"

    root = _CompositionRoot(factory)
    for _ in range(2):
        with pytest.raises(ConfigError):
            root()
    assert not root.built
    assert root() == "services"
    assert root() == "services"
    assert len(attempts) == 3
    generation = root.generation
    root.cache_clear()
    assert not root.built and root.generation == generation + 1


def test_missing_settings_then_fixed_in_the_same_process(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real root: a ConfigError is not cached; once the setting is there, it builds."""
    monkeypatch.delenv("DEFENDER_TENANT_ID")
    with pytest.raises(ConfigError, match="DEFENDER_TENANT_ID"):
        bootstrap.services()
    monkeypatch.setenv("DEFENDER_TENANT_ID", app_env["DEFENDER_TENANT_ID"])
    assert bootstrap.services().settings.identity.tenant_id == app_env["DEFENDER_TENANT_ID"]


_COLD_PROCESS = """
import json, sys, threading
import function_app  # what the worker imports first
from shared import bootstrap

builds = []
real_build = bootstrap.build
def counting_build(*args, **kwargs):
    builds.append(threading.current_thread().name)
    return real_build(*args, **kwargs)
bootstrap.build = counting_build

barrier = threading.Barrier(16)
seen, errors = [], []
def invocation():
    try:
        barrier.wait(timeout=30)
        svc = bootstrap.services()
        for tenant in svc.settings.tenants:
            svc.tokens.token(tenant, svc.settings.defender.api_scope)
        seen.append(id(svc))
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=invocation) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
svc = bootstrap.services()
print(json.dumps({"builds": len(builds), "services": len(set(seen)), "errors": errors,
                  "tenants": list(svc.settings.tenants), "apps": svc.tokens.apps_built}))
"""


@pytest.mark.subprocess
def test_cold_process_builds_once_and_gets_one_token_per_tenant(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """A fresh process, 16 threads making their first call at the same moment (a queue batch
    or a burst of HTTP calls on the worker's pool): one build, one MSAL app and one token
    request per tenant, one Key Vault read of the credential."""
    result = subprocess.run(
        [sys.executable, "-c", _COLD_PROCESS],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errors"] == []
    assert report["builds"] == 1
    assert report["services"] == 1
    tenants = report["tenants"]
    assert len(tenants) >= 2  # the emulator's home tenant and its customers
    assert report["apps"] == len(tenants)
    for tenant in tenants:
        assert cloud.token_count("client_credentials", tenant) == 1, tenant
    vault_reads = sum(
        row["count"]
        for row in cloud.stats()["requests"]
        if row["endpoint"] == "keyvault.secret.get" and row["status"] == 200
    )
    assert vault_reads == 1
