"""Partner context and ``check`` end to end (CLI as a user runs it, emulator + Azurite).

One tenant without consent never stops the others, and ``check`` names it with the fix; the
tenant registry table can pause a tenant; ``consent-url`` prints the admin-consent URL; no
output or log carries a secret, assertion or token.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.storage.values import TenantEntry
from shared.usecases.credentials import check_credential, check_tenants
from tests.conftest import LocalCloud
from tests.credentials.conftest import (
    revoke_consent,
    rotate_secret,
    run_cli,
    set_roles,
    wire,
)

pytestmark = pytest.mark.e2e

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.")


def _json(result: Any) -> dict[str, Any]:
    assert result.stdout, result.stderr[-2000:]
    return dict(json.loads(result.stdout))


def test_one_tenant_without_consent_others_ingest_and_check_names_the_fix(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """AADSTS700016 in one tenant: it fails with the consent action, the others ingest."""
    tenants = app_env["INGEST_TENANTS"].split(",")
    lost = tenants[1]
    revoke_consent(cloud.emulator, lost)

    ingest = run_cli(app_env, "ingest", "--json")
    summary = _json(ingest)
    assert ingest.returncode == 1
    by_tenant = {t["tenant"]: t for t in summary["tenants"]}
    assert by_tenant[lost]["ok"] is False
    assert by_tenant[lost]["error_code"] == "consent_required"
    for tenant in tenants:
        if tenant != lost:
            assert by_tenant[tenant]["ok"] is True
            assert by_tenant[tenant]["incidents"] > 0

    redirect = "https://bridge.example.net/api/consent/callback"
    check = run_cli({**app_env, "DEFENDER_CONSENT_REDIRECT_URI": redirect}, "check")
    assert check.returncode == 1
    lines = check.stdout.splitlines()
    failed = [line for line in lines if line.startswith(lost)]
    assert failed and "FAILED" in failed[0]
    fix = next(line for line in lines if "fix:" in line)
    assert f"an admin of tenant {lost} must grant admin consent" in fix
    assert f"/{lost}/v2.0/adminconsent?client_id=" in fix
    url = urlsplit(fix[fix.index("https://") :].split()[0])
    assert parse_qs(url.query)["redirect_uri"] == [redirect]  # v2 adminconsent requires it
    for tenant in tenants:
        if tenant != lost:
            assert re.search(rf"^{tenant} .* ok$", check.stdout, re.MULTILINE), check.stdout


def test_check_json_all_ok_then_missing_roles_and_expiry_warning(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """All tenants pass; a tenant lacking roles fails naming the feature and the permission;
    an expiry inside the warning window warns without failing."""
    env = {**app_env, "DEFENDER_FEATURES": "ingest,update,hunting"}
    ok = run_cli(env, "check", "--json")
    report = _json(ok)
    assert ok.returncode == 0, ok.stdout
    assert report["ok"] is True
    assert report["credential"]["status"] == "ok"
    assert all(t["roles"]["status"] == "ok" for t in report["tenants"])

    tenant = app_env["INGEST_TENANTS"].split(",")[2]
    set_roles(cloud.emulator, tenant, "graph", ("SecurityIncident.Read.All",))
    warn_env = {**env, "CREDENTIAL_EXPIRY_WARNING_DAYS": "365"}
    bad = run_cli(warn_env, "check", "--json")
    report = _json(bad)
    assert bad.returncode == 1
    assert report["credential"]["status"] == "warn"
    assert "rotate the secret" in report["credential"]["fix"]
    row = next(t for t in report["tenants"] if t["tenant"] == tenant)
    assert row["ok"] is False
    assert "update needs SecurityIncident.ReadWrite.All" in row["roles"]["detail"]
    assert "hunting needs ThreatHunting.Read.All" in row["roles"]["detail"]
    assert "SecurityIncident.ReadWrite.All, ThreatHunting.Read.All" in row["fix"]
    assert sum(t["ok"] for t in report["tenants"]) == len(report["tenants"]) - 1


def test_registry_table_pauses_a_tenant(cloud: LocalCloud, app_env: dict[str, str]) -> None:
    """A row with Enabled=false: ingest skips the tenant, check shows it as skipped."""
    from azure.data.tables import TableServiceClient

    tenants = app_env["INGEST_TENANTS"].split(",")
    service = TableServiceClient.from_connection_string(app_env["DATA_STORAGE_CONNECTION_STRING"])
    table = service.create_table_if_not_exists("DefenderTenants")
    table.upsert_entity(
        {
            "PartitionKey": "tenant",
            "RowKey": tenants[2],
            "DisplayName": "Paused Co",
            "Enabled": False,
        }
    )
    table.upsert_entity(
        {"PartitionKey": "tenant", "RowKey": tenants[0], "DisplayName": "Home Co", "Enabled": True}
    )

    summary = _json(run_cli(app_env, "ingest", "--json"))
    assert [t["tenant"] for t in summary["tenants"]] == tenants[:2]

    check = run_cli(app_env, "check")
    assert check.returncode == 0, check.stdout
    assert re.search(rf"^{tenants[2]} +Paused Co .*skipped$", check.stdout, re.MULTILINE)
    assert re.search(rf"^{tenants[0]} +Home Co .*ok$", check.stdout, re.MULTILINE)


def test_consent_url_command(app_env: dict[str, str]) -> None:
    """consent-url prints the v2 admin-consent URL for the tenant with the API's /.default and
    the redirect_uri v2 requires: DEFENDER_CONSENT_REDIRECT_URI, else the HTTP API's callback
    on WEBSITE_HOSTNAME, else the local Core Tools callback; --state and --redirect-uri win."""
    tenant = app_env["INGEST_TENANTS"].split(",")[1]
    result = run_cli(app_env, "consent-url", "--tenant", tenant)
    assert result.returncode == 0, result.stderr
    url = urlsplit(result.stdout.strip())
    assert url.path == f"/{tenant}/v2.0/adminconsent"
    query = parse_qs(url.query)
    assert query == {
        "client_id": [app_env["DEFENDER_CLIENT_ID"]],
        "scope": ["https://graph.microsoft.com/.default"],
        "redirect_uri": ["http://localhost:7071/api/consent/callback"],
    }
    hosted = {**app_env, "WEBSITE_HOSTNAME": "func-bridge.azurewebsites.net"}
    result = run_cli(hosted, "consent-url", "--tenant", tenant, "--state", "s-123")
    query = parse_qs(urlsplit(result.stdout.strip()).query)
    assert query["redirect_uri"] == ["https://func-bridge.azurewebsites.net/api/consent/callback"]
    assert query["state"] == ["s-123"]
    configured = {**hosted, "DEFENDER_CONSENT_REDIRECT_URI": "https://ops.example.com/consented"}
    result = run_cli(configured, "consent-url", "--tenant", tenant)
    assert parse_qs(urlsplit(result.stdout.strip()).query)["redirect_uri"] == [
        "https://ops.example.com/consented"
    ]
    result = run_cli(app_env, "consent-url", "--redirect-uri", "http://evil.example/x")
    assert result.returncode == 2 and "--redirect-uri" in result.stderr
    bad = run_cli(app_env, "consent-url", "--tenant", "nope")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1


def test_no_secret_or_token_in_logs_or_cli_output(
    cloud: LocalCloud, app_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG logs of a rotation, a consent failure and a check, and verbose CLI output of
    check (passing and failing), carry no secret, identity header or JWT."""
    caplog.set_level(logging.DEBUG)
    for name in ("azure", "msal", "urllib3", "shared"):
        caplog.set_level(logging.DEBUG, logger=name)  # restored after the test
    old_secret = cloud.emulator.client_secret
    tenants = app_env["INGEST_TENANTS"].split(",")

    svc = wire(app_env)
    scope = svc.settings.defender.api_scope
    svc.tokens.token(tenants[0], scope)
    new_secret = rotate_secret(cloud.emulator, revoke_old=True)
    revoke_consent(cloud.emulator, tenants[2])
    svc.tokens.token(tenants[1], scope)  # refused with the old secret, re-read, retried
    credential, fix = check_credential(
        svc.tokens.credential, clock=svc.clock, warn_within=timedelta(days=30)
    )
    reports = check_tenants(
        [TenantEntry(t) for t in tenants],
        tokens=svc.tokens,
        scope=scope,
        api=svc.settings.defender.api,
        features=("ingest",),
        credential=credential,
        credential_fix=fix,
    )
    assert [r.ok for r in reports] == [True, True, False]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Entra refused the app's secret" in logged

    outputs = [run_cli(app_env, "-vv", "check"), run_cli(app_env, "-vv", "check", "--json")]
    revoke_consent(cloud.emulator, tenants[0])
    outputs.append(run_cli(app_env, "-vv", "ingest"))
    text = logged + "".join(o.stdout + o.stderr for o in outputs)
    for secret in (old_secret, new_secret, app_env["IDENTITY_HEADER"]):
        assert secret not in text
    assert not JWT.search(text), JWT.search(text)
