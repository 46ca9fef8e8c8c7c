"""Managed identity endpoint and Key Vault, through the real azure-identity and SecretClient."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient

from emulator.server import Emulator
from tests.emulator.conftest import admin


@pytest.fixture
def mi_env(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The App Service managed-identity variables, pointing at the emulator."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", emu.mi_url)
    monkeypatch.setenv("IDENTITY_HEADER", emu.identity_header)
    monkeypatch.delenv("IDENTITY_SERVER_THUMBPRINT", raising=False)
    monkeypatch.delenv("MSI_ENDPOINT", raising=False)


def _client(emu: Emulator, credential: ManagedIdentityCredential) -> SecretClient:
    return SecretClient(
        emu.url,
        credential,
        verify_challenge_resource=False,
        connection_verify=str(emu.ca_path),
    )


@pytest.mark.usefixtures("mi_env")
def test_secret_client_reads_the_app_secret_via_the_system_identity(
    fresh: Emulator, http: requests.Session
) -> None:
    """401 challenge -> one MI token -> 200 SecretBundle with version, id and expiry."""
    secret = _client(fresh, ManagedIdentityCredential()).get_secret("defender-client-secret")
    assert secret.value == fresh.client_secret
    assert secret.id == f"{fresh.url}/secrets/defender-client-secret/{secret.properties.version}"
    assert secret.properties.expires_on is not None
    assert secret.properties.expires_on > datetime.now(UTC)
    stats = admin(http, fresh, "GET", "stats")
    statuses = sorted(
        (r["status"], r["count"])
        for r in stats["requests"]
        if r["endpoint"] == "keyvault.secret.get"
    )
    # The SDK caches the challenge per host for the process, so the 401 shows at most once.
    assert statuses in ([(200, 1), (401, 1)], [(200, 1)])
    assert [t["grant"] for t in stats["tokens"]] == ["managed_identity"]
    assert stats["tokens"][0]["resource"] == "https://vault.azure.net"
    assert stats["tokens"][0]["client_id"] == fresh.identity_client_id


@pytest.mark.usefixtures("mi_env")
def test_missing_secret_is_secret_not_found(emu: Emulator) -> None:
    """404 SecretNotFound becomes ResourceNotFoundError with the documented message."""
    with pytest.raises(
        ResourceNotFoundError, match=r"A secret with \(name/id\) nope was not found"
    ):
        _client(emu, ManagedIdentityCredential()).get_secret("nope")


@pytest.mark.usefixtures("mi_env")
def test_identity_without_vault_access_gets_403(emu: Emulator) -> None:
    """The user-assigned identity has no access policy: 403 naming the caller."""
    credential = ManagedIdentityCredential(client_id=emu.unauthorized_identity_client_id)
    with pytest.raises(HttpResponseError) as info:
        _client(emu, credential).get_secret("defender-client-secret")
    assert info.value.status_code == 403
    assert "does not have secrets get permission on key vault" in str(info.value)
    assert f"appid={emu.unauthorized_identity_client_id}" in str(info.value)


def test_vault_challenge_without_token(emu: Emulator, http: requests.Session) -> None:
    """No Authorization: 401 with the WWW-Authenticate challenge naming the home tenant."""
    response = http.get(f"{emu.url}/secrets/defender-client-secret/?api-version=7.6", timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer authorization="https://login.microsoftonline.com/{emu.home_tenant_id}", '
        'resource="https://vault.azure.net"'
    )
    assert response.json()["error"]["code"] == "Unauthorized"


def test_vault_rejects_tokens_for_other_audiences(
    emu: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """A Defender token is not a vault token."""
    response = http.get(
        f"{emu.url}/secrets/defender-client-secret?api-version=7.6",
        headers={"Authorization": f"Bearer {legacy_token}"},
        timeout=10,
    )
    assert response.status_code == 401


def _mi(
    http: requests.Session, emu: Emulator, header: str | None, **params: str
) -> requests.Response:
    headers = {"X-IDENTITY-HEADER": header} if header is not None else {}
    return http.get(emu.mi_url, params=params, headers=headers, timeout=10)


def test_mi_endpoint_wire_format(emu: Emulator, http: requests.Session) -> None:
    """Documented fields: access_token, expires_on (epoch str), resource, token_type, client_id."""
    response = _mi(
        http,
        emu,
        emu.identity_header,
        **{"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
    )
    body = response.json()
    assert response.status_code == 200
    assert set(body) >= {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert isinstance(body["expires_on"], str) and body["expires_on"].isdigit()
    assert body["resource"] == "https://vault.azure.net"
    assert body["client_id"] == emu.identity_client_id


@pytest.mark.parametrize(
    ("header", "params", "status"),
    [
        (None, {"api-version": "2019-08-01", "resource": "https://vault.azure.net"}, 401),
        ("wrong", {"api-version": "2019-08-01", "resource": "https://vault.azure.net"}, 401),
        ("ok", {"api-version": "2017-09-01", "resource": "https://vault.azure.net"}, 400),
        ("ok", {"api-version": "2019-08-01"}, 400),
        (
            "ok",
            {
                "api-version": "2019-08-01",
                "resource": "https://vault.azure.net",
                "client_id": "nope",
            },
            400,
        ),
        ("ok", {"api-version": "2019-08-01", "resource": "https://unknown.example"}, 400),
    ],
)
def test_mi_endpoint_errors(
    emu: Emulator, http: requests.Session, header: str | None, params: dict[str, str], status: int
) -> None:
    """Bad header, api-version, resource or identity: an error status with a JSON body."""
    response = _mi(http, emu, emu.identity_header if header == "ok" else header, **params)
    assert response.status_code == status
    assert response.json()["statusCode"] == status
