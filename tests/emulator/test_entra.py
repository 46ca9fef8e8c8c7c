"""Entra ID stand-in: discovery, client credentials with real MSAL, documented error bodies."""

from __future__ import annotations

import jwt
import msal
import pytest
import requests

from emulator.server import Emulator
from tests.emulator.conftest import GRAPH_SCOPE, LEGACY_SCOPE, admin

ERROR_KEYS = {
    "error",
    "error_description",
    "error_codes",
    "timestamp",
    "trace_id",
    "correlation_id",
    "error_uri",
}


def _token_request(
    http: requests.Session, emu: Emulator, tenant: str, **form: str
) -> requests.Response:
    return http.post(f"{emu.url}/{tenant}/oauth2/v2.0/token", data=form, timeout=10)


def _app(
    emu: Emulator, http: requests.Session, secret: str, tenant: str | None = None
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        emu.client_id,
        client_credential=secret,
        authority=f"{emu.url}/{tenant or emu.home_tenant_id}",
        instance_discovery=False,
        http_client=http,
    )


def test_discovery_document_points_back_at_the_emulator(
    emu: Emulator, http: requests.Session
) -> None:
    """The OIDC document's endpoints are https URLs on the emulator, under the tenant."""
    tid = emu.home_tenant_id
    doc = http.get(f"{emu.url}/{tid}/v2.0/.well-known/openid-configuration", timeout=10).json()
    assert doc["token_endpoint"] == f"{emu.url}/{tid}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"] == f"{emu.url}/{tid}/oauth2/v2.0/authorize"
    assert doc["device_authorization_endpoint"] == f"{emu.url}/{tid}/oauth2/v2.0/devicecode"
    assert doc["issuer"] == f"{emu.url}/{tid}/v2.0"


def test_discovery_of_unknown_tenant_is_aadsts90002(emu: Emulator, http: requests.Session) -> None:
    """Unknown tenant: 400 invalid_tenant, which MSAL turns into ValueError at construction."""
    unknown = "00000000-0000-0000-0000-000000000001"
    response = http.get(f"{emu.url}/{unknown}/v2.0/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_tenant"
    assert response.json()["error_codes"] == [90002]
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        _app(emu, http, emu.client_secret, tenant=unknown)


def test_msal_gets_a_v1_style_token_and_caches_it(fresh: Emulator, http: requests.Session) -> None:
    """Real MSAL: one discovery GET and one token POST serve many calls; claims as documented."""
    app = _app(fresh, http, fresh.client_secret)
    first = app.acquire_token_for_client([LEGACY_SCOPE])
    for _ in range(5):
        again = app.acquire_token_for_client([LEGACY_SCOPE])
        assert again["token_source"] == "cache"
    assert first["token_type"] == "Bearer"
    assert first["expires_in"] == 3599
    assert "scope" not in first
    claims = jwt.decode(first["access_token"], options={"verify_signature": False})
    tid = fresh.home_tenant_id
    assert claims["aud"] == "https://api.security.microsoft.com"
    assert claims["iss"] == f"https://sts.windows.net/{tid}/"
    assert claims["tid"] == tid
    assert claims["appid"] == fresh.client_id
    assert claims["ver"] == "1.0"
    assert claims["exp"] - claims["iat"] == 3599
    assert set(claims["roles"]) == {"Incident.ReadWrite.All", "AdvancedHunting.Read.All"}
    tokens = admin(http, fresh, "GET", "stats")["tokens"]
    assert tokens == [
        {
            "grant": "client_credentials",
            "tenant": tid,
            "client_id": fresh.client_id,
            "resource": "https://api.security.microsoft.com",
            "count": 1,
        }
    ]


def test_graph_token_carries_graph_roles_in_every_tenant(
    emu: Emulator, http: requests.Session
) -> None:
    """The app is consented in every seeded tenant; Graph tokens carry the Graph roles."""
    for tenant in emu.tenant_ids:
        result = _app(emu, http, emu.client_secret, tenant).acquire_token_for_client([GRAPH_SCOPE])
        claims = jwt.decode(result["access_token"], options={"verify_signature": False})
        assert claims["tid"] == tenant
        assert claims["aud"] == "https://graph.microsoft.com"
        assert set(claims["roles"]) == {
            "SecurityIncident.ReadWrite.All",
            "SecurityAlert.ReadWrite.All",
            "ThreatHunting.Read.All",
        }


@pytest.mark.parametrize(
    "scope",
    [
        "https://graph.microsoft.us/.default",
        "https://dod-graph.microsoft.us/.default",
        "https://api-gcc.security.microsoft.us/.default",
        "https://api-gov.security.microsoft.us/.default",
        "https://vault.azure.net/.default",
    ],
)
def test_national_cloud_and_vault_scopes_are_accepted(
    emu: Emulator, http: requests.Session, scope: str
) -> None:
    """National-cloud audiences of the same APIs are issued like the public ones."""
    response = _token_request(
        http,
        emu,
        emu.home_tenant_id,
        grant_type="client_credentials",
        client_id=emu.client_id,
        client_secret=emu.client_secret,
        scope=scope,
    )
    assert response.status_code == 200
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["aud"] == scope.removesuffix("/.default")


def test_wrong_secret_is_aadsts7000215_with_the_full_error_body(
    emu: Emulator, http: requests.Session
) -> None:
    """Wrong secret: 401 invalid_client with the documented keys and trace lines."""
    response = _token_request(
        http,
        emu,
        emu.home_tenant_id,
        grant_type="client_credentials",
        client_id=emu.client_id,
        client_secret="not-the-secret",
        scope=LEGACY_SCOPE,
    )
    assert response.status_code == 401
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["error"] == "invalid_client"
    assert body["error_codes"] == [7000215]
    assert body["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert "\r\nTrace ID: " in body["error_description"]
    assert "\r\nCorrelation ID: " in body["error_description"]
    assert "\r\nTimestamp: " in body["error_description"]
    assert body["error_uri"].endswith("code=7000215")
    result = _app(emu, http, "not-the-secret").acquire_token_for_client([LEGACY_SCOPE])
    assert result["error_codes"] == [7000215]


@pytest.mark.parametrize(
    ("tenant", "form", "status", "error", "code"),
    [
        ("unknown", {}, 400, "invalid_request", 90002),
        (
            "home",
            {"client_id": "11111111-2222-3333-4444-555555555555"},
            400,
            "unauthorized_client",
            700016,
        ),
        ("home", {"grant_type": ""}, 400, "invalid_request", 900144),
        ("home", {"scope": ""}, 400, "invalid_request", 900144),
        (
            "home",
            {"scope": "https://graph.microsoft.com/SecurityIncident.Read.All"},
            400,
            "invalid_scope",
            70011,
        ),
        ("home", {"scope": f"{LEGACY_SCOPE} {GRAPH_SCOPE}"}, 400, "invalid_scope", 70011),
        (
            "home",
            {"scope": "https://unknown.example.com/.default"},
            400,
            "invalid_resource",
            500011,
        ),
        ("home", {"client_secret": ""}, 401, "invalid_client", 7000218),
        ("home", {"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
    ],
)
def test_token_endpoint_errors(
    emu: Emulator,
    http: requests.Session,
    tenant: str,
    form: dict[str, str],
    status: int,
    error: str,
    code: int,
) -> None:
    """Each documented failure gets its status, `error` and AADSTS code."""
    body = {
        "grant_type": "client_credentials",
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "scope": LEGACY_SCOPE,
        **form,
    }
    path_tenant = emu.home_tenant_id if tenant == "home" else "00000000-0000-0000-0000-00000000dead"
    response = _token_request(http, emu, path_tenant, **{k: v for k, v in body.items() if v})
    assert response.status_code == status
    payload = response.json()
    assert payload["error"] == error
    assert payload["error_codes"] == [code]
    assert set(payload) == ERROR_KEYS


def test_basic_auth_client_credentials_are_accepted(emu: Emulator, http: requests.Session) -> None:
    """client_secret_basic (RFC 6749 §2.3.1) works like the form field."""
    response = http.post(
        f"{emu.url}/{emu.home_tenant_id}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "scope": LEGACY_SCOPE},
        auth=(emu.client_id, emu.client_secret),
        timeout=10,
    )
    assert response.status_code == 200


def test_tenant_domain_is_an_alias_of_the_tenant(emu: Emulator, http: requests.Session) -> None:
    """`contoso.onmicrosoft.com` resolves to the home tenant, as authority paths allow."""
    response = _token_request(
        http,
        emu,
        "contoso.onmicrosoft.com",
        grant_type="client_credentials",
        client_id=emu.client_id,
        client_secret=emu.client_secret,
        scope=LEGACY_SCOPE,
    )
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["tid"] == emu.home_tenant_id


def test_tokens_verify_against_the_published_keys(
    emu: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """The discovery document's jwks_uri publishes the signing key."""
    keys = http.get(f"{emu.url}/{emu.home_tenant_id}/discovery/v2.0/keys", timeout=10).json()
    key = jwt.PyJWK(keys["keys"][0])
    claims = jwt.decode(
        legacy_token, key.key, algorithms=["RS256"], audience="https://api.security.microsoft.com"
    )
    assert claims["tid"] == emu.home_tenant_id
