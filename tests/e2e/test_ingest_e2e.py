"""End to end: the CLI and the timer function ingest the emulator's tenants into Azurite.

Everything real: managed identity -> Key Vault -> MSAL -> Defender/Graph API (emulator), and the
Azure Storage SDKs against Azurite. What was stored is compared with ``/_emulator/truth``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from testkit.storage_view import archived_lines, blob_names, duplicates, incident_key, table_rows
from tests.conftest import LocalCloud

ROOT = Path(__file__).resolve().parents[2]


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m shared`` as a user would, with exactly these app settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DEFENDER_", "INGEST_"))}
    return subprocess.run(
        [sys.executable, "-m", "shared", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def truth(cloud: LocalCloud, tenant: str, api: str) -> list[dict[str, Any]]:
    return list(cloud.admin("GET", f"truth/{tenant}/incidents?api={api}")["value"])


def ingest_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    result = run_cli(env, "ingest", "--json", *args)
    assert result.returncode == 0, result.stderr + result.stdout
    return dict(json.loads(result.stdout))


@pytest.mark.e2e
@pytest.mark.parametrize("api", ["legacy", "graph"])
def test_cli_stores_every_incident_once_then_nothing(
    cloud: LocalCloud, app_env: dict[str, str], api: str
) -> None:
    """First run stores all incidents (one call per page); a rerun makes one call, stores none."""
    env = {**app_env, "DEFENDER_API": api}
    home = env["DEFENDER_TENANT_ID"]
    tenants = env["INGEST_TENANTS"].split(",")

    summary = ingest_json(env)

    assert summary["ok"] is True
    by_tenant = {t["tenant"]: t for t in summary["tenants"]}
    assert set(by_tenant) == set(tenants)
    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    for tenant in tenants:
        expected = truth(cloud, tenant, api)
        result = by_tenant[tenant]
        assert result["ok"] and result["error"] is None
        assert result["incidents"] == len(expected)
        assert result["api_calls"] == result["pages"]
        lines = archived_lines(conn, tenant)
        assert sorted(incident_key(line) for line in lines) == sorted(
            incident_key(i) for i in expected
        )
        assert {line["_tenantId"] for line in lines} == {tenant}
        assert {line["_api"] for line in lines} == {api}
        rows = table_rows(conn, tenant)
        assert set(rows) == {incident_key(i)[0] for i in expected}
    assert len(truth(cloud, home, api)) >= 250
    assert by_tenant[home]["pages"] >= 3
    assert by_tenant[home]["watermark"] is not None

    blobs_before = {t: blob_names(conn, t) for t in tenants}
    again = ingest_json(env)

    for result in again["tenants"]:
        assert result["ok"] and result["incidents"] == 0
        assert result["api_calls"] == 1
        assert blob_names(conn, result["tenant"]) == blobs_before[result["tenant"]]


@pytest.mark.e2e
def test_new_activity_is_ingested_incrementally(cloud: LocalCloud, app_env: dict[str, str]) -> None:
    """Creations, updates and merges after a run are picked up by the next, without duplicates."""
    home = app_env["DEFENDER_TENANT_ID"]
    env = {**app_env, "INGEST_TENANTS": home}
    ingest_json(env)
    touched = cloud.admin(
        "POST", "activity", {"tenant": home, "create": 5, "update": 4, "merge": 1}
    )
    assert touched

    summary = ingest_json(env)

    result = summary["tenants"][0]
    expected = truth(cloud, home, "graph")
    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    rows = table_rows(conn, home)
    assert {i: r["LastUpdateTime"][:19] for i, r in rows.items()} == {
        incident_key(i)[0]: incident_key(i)[1][:19] for i in expected
    }
    assert result["incidents"] >= 10  # 5 new + 4 updated + the merged incident (and its target)
    lines = archived_lines(conn, home)
    assert duplicates(lines) == []
    redirected = [i for i in expected if i.get("status") == "redirected"]
    assert redirected and all(rows[i["id"]]["RedirectIncidentId"] for i in redirected)


@pytest.mark.e2e
def test_timer_function_ingests_like_the_cli(
    cloud: LocalCloud, app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In inline mode the timer runs the same ingestion through the composition root."""
    import function_app

    monkeypatch.setenv("INGEST_FANOUT", "inline")

    home = app_env["DEFENDER_TENANT_ID"]
    handler = function_app.ingest_timer.build().get_user_function()

    handler(TimerRequest(past_due=True))

    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    for tenant in app_env["INGEST_TENANTS"].split(","):
        stored = sorted(incident_key(line) for line in archived_lines(conn, tenant))
        assert stored == sorted(incident_key(i) for i in truth(cloud, tenant, "graph"))
    assert cloud.request_count("graph.incidents.list", home) >= 3


@pytest.mark.e2e
def test_one_token_request_per_tenant_for_a_whole_run(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """MSAL's cache serves every page: one client-credentials token per tenant, one KV read."""
    before_tokens = cloud.token_count("client_credentials")
    before_kv = cloud.request_count("keyvault.secret.get")
    ingest_json(app_env)
    tenants = app_env["INGEST_TENANTS"].split(",")
    assert cloud.token_count("client_credentials") - before_tokens == len(tenants)
    # one challenge (401) and one authorized read, whatever the number of tenants
    assert cloud.request_count("keyvault.secret.get") - before_kv <= 2


@pytest.mark.e2e
def test_one_failing_tenant_does_not_stop_the_others(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """An unknown tenant fails alone, with a clear reason; the exit status says so."""
    home = app_env["DEFENDER_TENANT_ID"]
    ghost = "99999999-9999-9999-9999-999999999999"
    env = {**app_env, "INGEST_TENANTS": f"{ghost},{home}"}

    result = run_cli(env, "ingest", "--json")

    assert result.returncode == 1
    summary = json.loads(result.stdout)
    by_tenant = {t["tenant"]: t for t in summary["tenants"]}
    assert summary["ok"] is False
    assert by_tenant[ghost]["ok"] is False
    assert ghost in by_tenant[ghost]["error"]
    assert by_tenant[home]["ok"] is True and by_tenant[home]["incidents"] > 0


@pytest.mark.e2e
def test_missing_key_vault_secret_is_a_clear_failure(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """A wrong secret name is reported with the name and the setting to fix."""
    env = {**app_env, "DEFENDER_CLIENT_SECRET_NAME": "no-such-secret"}
    result = run_cli(env, "ingest")
    assert result.returncode == 1
    assert "no-such-secret" in result.stdout
    assert "DEFENDER_CLIENT_SECRET_NAME" in result.stdout


@pytest.mark.e2e
def test_bad_settings_exit_2_with_every_problem(cloud: LocalCloud, app_env: dict[str, str]) -> None:
    """Malformed settings: one line naming each problem, exit status 2."""
    env = {**app_env, "DEFENDER_API": "soap", "INGEST_LOOKBACK_DAYS": "0"}
    result = run_cli(env, "ingest")
    assert result.returncode == 2
    assert "DEFENDER_API" in result.stderr and "INGEST_LOOKBACK_DAYS" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.e2e
def test_a_failed_run_keeps_the_watermark_and_the_next_run_completes(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """A run failing midway loses nothing: the next clean run stores the rest, once."""
    home = app_env["DEFENDER_TENANT_ID"]
    env = {**app_env, "INGEST_TENANTS": home, "API_MAX_ATTEMPTS": "1", "DEFENDER_API": "legacy"}
    cloud.admin("POST", "faults", {"rate": 0.5, "kinds": ["500", "503", "reset"], "seed": 3})
    failed = run_cli(env, "ingest", "--json")
    cloud.admin("POST", "faults", {"rate": 0})
    first = json.loads(failed.stdout)["tenants"][0]
    assert failed.returncode == 1 and first["ok"] is False
    assert first["error_code"] == "upstream_unavailable"

    second = ingest_json(env)["tenants"][0]

    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    lines = archived_lines(conn, home)
    assert duplicates(lines) == []
    assert sorted(incident_key(line) for line in lines) == sorted(
        incident_key(i) for i in truth(cloud, home, "legacy")
    )
    assert second["incidents"] + first["incidents"] == len(lines)


@pytest.mark.e2e
def test_overlapping_runs_store_each_version_once(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """Two ingestions started together: the tenant lock lets one work (the other skips or
    follows), and every version is stored exactly once."""
    home = app_env["DEFENDER_TENANT_ID"]
    env = {**os.environ, **app_env, "INGEST_TENANTS": home}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "shared", "ingest", "--json"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    summaries = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        summaries.append(json.loads(out)["tenants"][0])

    assert sum(s["incidents"] for s in summaries) == len(truth(cloud, home, "graph"))
    lines = archived_lines(app_env["DATA_STORAGE_CONNECTION_STRING"], home)
    assert duplicates(lines) == []
    assert len(lines) == len(truth(cloud, home, "graph"))


@pytest.mark.e2e
def test_backfill_since_rereads_without_storing_or_moving_the_watermark_back(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """--since re-reads an older window: nothing already stored is stored again, and the
    checkpoint does not move back."""
    home = app_env["DEFENDER_TENANT_ID"]
    env = {**app_env, "INGEST_TENANTS": home, "INGEST_LOOKBACK_DAYS": "1"}
    first = ingest_json(env)["tenants"][0]
    assert 0 < first["incidents"] < len(truth(cloud, home, "graph"))  # one day of seven

    backfill = ingest_json(env, "--since", "2020-01-01T00:00:00Z")["tenants"][0]

    everything = len(truth(cloud, home, "graph"))
    assert backfill["start"] == "2020-01-01T00:00:00Z"
    assert backfill["complete"] is True
    assert backfill["listed"] >= everything  # a split slice lists some twice
    assert backfill["incidents"] == everything - first["incidents"]
    # the checkpoint is the end of the last complete slice (now - lag): it never moves back
    assert backfill["watermark"] >= first["watermark"]
    lines = archived_lines(app_env["DATA_STORAGE_CONNECTION_STRING"], home)
    assert duplicates(lines) == []
    assert len(lines) == everything


@pytest.mark.e2e
def test_check_shows_each_tenants_last_success_and_lag(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """After a run, `check` reports every tenant's last success and lag (now - checkpoint)."""
    tenants = app_env["INGEST_TENANTS"].split(",")
    before = json.loads(run_cli(app_env, "check", "--json").stdout)["ingestion"]
    assert {h["tenant"] for h in before} == set(tenants)
    assert all(h["checkpoint"] is None for h in before)

    ingest_json(app_env)
    result = run_cli(app_env, "check", "--json")
    text = run_cli(app_env, "check").stdout

    health = {h["tenant"]: h for h in json.loads(result.stdout)["ingestion"]}
    for tenant in tenants:
        assert health[tenant]["last_success"] is not None
        assert 0 <= health[tenant]["lag_seconds"] < 120
        assert health[tenant]["lagging"] is False
        assert f"{tenant} " in text and "last success" in text


@pytest.mark.e2e
def test_ingest_as_user_is_refused_with_the_reason(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    result = run_cli(app_env, "ingest", "--as-user")
    assert result.returncode == 2
    assert "refused" in result.stderr and "incidents list --as-user" in result.stderr
