"""Certificate (PEM and PFX from Key Vault) and federated (managed identity as a federated
credential) application credentials, end to end with real msal and azure-identity."""

from __future__ import annotations

import json
import logging
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.conftest import LocalCloud
from tests.credentials.conftest import run_cli, wire

pytestmark = pytest.mark.e2e

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.")


@pytest.mark.parametrize("name", ["defender-client-cert", "defender-client-cert-pfx"])
def test_certificate_from_key_vault_signs_the_assertion(
    cloud: LocalCloud, app_env: dict[str, str], name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PEM and PFX certificate secrets: every tenant gets a token, one request per tenant."""
    caplog.set_level(logging.DEBUG)
    env = {**app_env, "DEFENDER_CREDENTIAL_KIND": "certificate", "DEFENDER_CERTIFICATE_NAME": name}
    svc = wire(env)
    tenants = env["INGEST_TENANTS"].split(",")
    for tenant in tenants:
        for _ in range(20):
            svc.tokens.token(tenant, svc.settings.defender.api_scope)
    assert [cloud.token_count("client_credentials", t) for t in tenants] == [1] * len(tenants)
    info = svc.tokens.credential.describe()
    assert info.kind == "certificate"
    registered = x509.load_pem_x509_certificate(cloud.emulator.certificate_pem.encode())
    assert info.thumbprint == registered.fingerprint(hashes.SHA256()).hex().upper()
    assert "PRIVATE KEY" not in caplog.text
    assert not JWT.search(caplog.text)


def test_federated_managed_identity_needs_no_secret(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """The user-assigned identity's token for api://AzureADTokenExchange is the client
    assertion; Key Vault is never read; check reports the credential and every tenant as ok."""
    env = {
        **app_env,
        "DEFENDER_CREDENTIAL_KIND": "federated",
        "AZURE_CLIENT_ID": cloud.emulator.federated_identity_client_id,
    }
    svc = wire(env)
    tenants = env["INGEST_TENANTS"].split(",")
    for tenant in tenants:
        for _ in range(20):
            svc.tokens.token(tenant, svc.settings.defender.api_scope)
    assert [cloud.token_count("client_credentials", t) for t in tenants] == [1] * len(tenants)
    exchange = [
        row
        for row in cloud.stats()["tokens"]
        if row["grant"] == "managed_identity" and row["resource"] == "api://AzureADTokenExchange"
    ]
    assert sum(row["count"] for row in exchange) >= 1
    assert cloud.request_count("keyvault.secret.get") == 0

    result = run_cli(env, "-vv", "check", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert report["credential"]["status"] == "ok"
    assert "federated" in report["credential"]["detail"]
    assert not JWT.search(result.stdout + result.stderr)


def test_federated_with_the_system_identity_fails_naming_the_rule(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """Settings refuse federated without AZURE_CLIENT_ID (exit 2, one line naming the rule);
    and if the app trusts an identity Entra will not match (here: the system-assigned one, made
    explicit by its client id), Entra's 70021 becomes a message naming the same rule."""
    env = {**app_env, "DEFENDER_CREDENTIAL_KIND": "federated"}
    env.pop("AZURE_CLIENT_ID", None)
    refused = run_cli(env, "check")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "AZURE_CLIENT_ID" in refused.stderr
    assert "only a user-assigned managed identity" in refused.stderr
    system = {**env, "AZURE_CLIENT_ID": cloud.emulator.identity_client_id}
    result = run_cli(system, "check", "--json")
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]
    report = json.loads(result.stdout)
    text = json.dumps(report)
    assert "AADSTS70021" in text or "70021" in text
    assert "only a user-assigned managed identity" in text
    assert not JWT.search(result.stdout + result.stderr)


def test_certificate_check_cli(cloud: LocalCloud, app_env: dict[str, str]) -> None:
    """check with a certificate: the credential row names it and its expiry; all tenants ok."""
    env = {
        **app_env,
        "DEFENDER_CREDENTIAL_KIND": "certificate",
        "DEFENDER_CERTIFICATE_NAME": "defender-client-cert-pfx",
    }
    result = run_cli(env, "check")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert result.stdout.startswith("credential: OK certificate 'defender-client-cert-pfx'")
    assert "PRIVATE KEY" not in result.stdout + result.stderr
