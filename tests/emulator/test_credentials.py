"""The app's credentials: certificate and federated assertions, consent, secret rotation."""

from __future__ import annotations

import base64
from pathlib import Path

import msal
import pytest
import requests

from emulator.server import Emulator
from tests.emulator.conftest import LEGACY_SCOPE, admin


def _msal(
    emu: Emulator, http: requests.Session, credential: object, tenant: str | None = None
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        emu.client_id,
        client_credential=credential,
        authority=f"{emu.url}/{tenant or emu.home_tenant_id}",
        instance_discovery=False,
        http_client=http,
    )


def test_certificate_assertion_rs256_with_x5t(emu: Emulator, http: requests.Session) -> None:
    """MSAL with the PEM and SHA-1 thumbprint (RS256, x5t) gets a token."""
    credential = {"private_key": emu.certificate_pem, "thumbprint": emu.certificate_thumbprint}
    result = _msal(emu, http, credential).acquire_token_for_client([LEGACY_SCOPE])
    assert "access_token" in result, result


def test_certificate_assertion_ps256_with_pfx(
    emu: Emulator, http: requests.Session, tmp_path: Path
) -> None:
    """MSAL with the PFX from Key Vault (PS256, x5t#S256) gets a token."""
    from emulator.state import CERT_PFX_NAME

    pfx = tmp_path / "app.pfx"
    vault = emu.world.vault  # the vault's copy, as the app would read it
    pfx.write_bytes(base64.b64decode(vault.secrets[CERT_PFX_NAME][-1].value))
    credential = {"private_key_pfx_path": str(pfx), "passphrase": None}
    result = _msal(emu, http, credential).acquire_token_for_client([LEGACY_SCOPE])
    assert "access_token" in result, result


def test_unknown_certificate_is_700027(emu: Emulator, http: requests.Session) -> None:
    """A key the app never registered: 401 invalid_client AADSTS700027."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    credential = {"private_key": pem, "thumbprint": "00" * 20}
    result = _msal(emu, http, credential).acquire_token_for_client([LEGACY_SCOPE])
    assert result["error_codes"] == [700027]


def test_managed_identity_as_federated_credential(emu: Emulator, http: requests.Session) -> None:
    """The user-assigned identity's token for api://AzureADTokenExchange is a valid client
    assertion. The system-assigned identity's is refused the way Entra refuses an assertion it
    has no record for (AADSTS70021, 400 invalid_request): only user-assigned identities can be
    federated credentials
    (https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity)."""

    def exchange_token(client_id: str | None) -> str:
        params = {"api-version": "2019-08-01", "resource": "api://AzureADTokenExchange"}
        if client_id:
            params["client_id"] = client_id
        headers = {"X-IDENTITY-HEADER": emu.identity_header}
        response = http.get(emu.mi_url, params=params, headers=headers, timeout=10)
        return str(response.json()["access_token"])

    user_assigned = exchange_token(emu.federated_identity_client_id)
    result = _msal(emu, http, {"client_assertion": lambda: user_assigned}).acquire_token_for_client(
        [LEGACY_SCOPE]
    )
    assert "access_token" in result, result
    system = exchange_token(None)  # no client_id: the system-assigned identity
    refused = _msal(emu, http, {"client_assertion": lambda: system}).acquire_token_for_client(
        [LEGACY_SCOPE]
    )
    assert refused["error_codes"] == [70021]
    assert refused["error"] == "invalid_request"
    assert refused["error_description"].startswith(
        "AADSTS70021: No matching federated identity record found for presented assertion. "
        "Assertion Issuer: "
    )
    raw = http.post(
        f"{emu.url}/{emu.home_tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": emu.client_id,
            "scope": LEGACY_SCOPE,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": system,
        },
        timeout=10,
    )
    assert raw.status_code == 400


def test_revoked_consent_fails_one_tenant_only(fresh: Emulator, http: requests.Session) -> None:
    """No service principal in a tenant: AADSTS7000229 there; other tenants still work."""
    customer = fresh.tenant_ids[1]
    state = admin(http, fresh, "POST", "consent", {"tenant": customer, "consent": False})
    assert state["consent"] is False
    failed = _msal(fresh, http, fresh.client_secret, customer).acquire_token_for_client(
        [LEGACY_SCOPE]
    )
    assert failed["error_codes"] == [7000229]
    ok = _msal(fresh, http, fresh.client_secret, fresh.tenant_ids[2]).acquire_token_for_client(
        [LEGACY_SCOPE]
    )
    assert "access_token" in ok


def test_roles_follow_the_consent_state(fresh: Emulator, http: requests.Session) -> None:
    """Granting a smaller role set changes the `roles` claim of new tokens."""
    import jwt

    admin(
        http,
        fresh,
        "POST",
        "consent",
        {"tenant": fresh.home_tenant_id, "roles": {"legacy": ["Incident.Read.All"]}},
    )
    result = _msal(fresh, http, fresh.client_secret).acquire_token_for_client([LEGACY_SCOPE])
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["Incident.Read.All"]


@pytest.mark.parametrize(("flag", "code"), [("revoke_old", 7000215), ("expire_old", 7000222)])
def test_rotation_adds_a_version_and_retires_the_old_secret(
    fresh: Emulator, http: requests.Session, flag: str, code: int
) -> None:
    """After rotation the vault serves the new version; the old secret fails as documented."""
    old = fresh.client_secret
    rotated = admin(http, fresh, "POST", "keyvault/rotate", {flag: True})
    new = fresh.client_secret
    assert new != old
    assert rotated["version"]
    assert old not in str(rotated) and new not in str(rotated)
    refused = _msal(fresh, http, old).acquire_token_for_client([LEGACY_SCOPE])
    assert refused["error_codes"] == [code]
    accepted = _msal(fresh, http, new).acquire_token_for_client([LEGACY_SCOPE])
    assert "access_token" in accepted


def test_rotation_without_revoking_keeps_both_secrets(
    fresh: Emulator, http: requests.Session
) -> None:
    """Plain rotation: old and new secrets both work until the old one is revoked."""
    old = fresh.client_secret
    admin(http, fresh, "POST", "keyvault/rotate")
    assert "access_token" in _msal(fresh, http, old).acquire_token_for_client([LEGACY_SCOPE])
    assert "access_token" in _msal(fresh, http, fresh.client_secret).acquire_token_for_client(
        [LEGACY_SCOPE]
    )
