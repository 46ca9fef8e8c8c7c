"""The emulator's Entra issues tokens for the Defender Bridge API with app roles: to users, to
an app with client credentials (real MSAL), to a managed identity (the App Service endpoint),
signed with the key its JWKS publishes; assignments are seeded and settable."""

from __future__ import annotations

from typing import Any

import jwt
import msal
import pytest
import requests

from emulator.server import Emulator
from tests.emulator.conftest import admin

EVERYTHING = [
    "Incidents.Read",
    "Incidents.Write",
    "Hunting.Run",
    "Ingest.Run",
    "Subscriptions.Manage",
    "Tenants.All",
]


def _verified(emu: Emulator, http: requests.Session, token: str, tenant: str) -> dict[str, Any]:
    """The claims, checked against the tenant's published keys, audience = the API."""
    keys = http.get(f"{emu.url}/{tenant}/discovery/v2.0/keys", timeout=10).json()["keys"]
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWK(next(k for k in keys if k["kid"] == kid)).key
    return dict(jwt.decode(token, key, algorithms=["RS256"], audience=emu.app_id_uri))


def test_client_credentials_for_the_api_carry_the_apps_roles(
    fresh: Emulator, http: requests.Session
) -> None:
    """Real MSAL, scope `<app id uri>/.default`: a v1 app token with the app's roles."""
    app = msal.ConfidentialClientApplication(
        fresh.api_client_id,
        client_credential=fresh.api_client_secret,
        authority=f"{fresh.url}/{fresh.home_tenant_id}",
        instance_discovery=False,
        http_client=http,
    )
    result = app.acquire_token_for_client([f"{fresh.app_id_uri}/.default"])
    claims = _verified(fresh, http, result["access_token"], fresh.home_tenant_id)
    assert claims["roles"] == [
        "Incidents.Read",
        "Incidents.Write",
        "Hunting.Run",
        "Ingest.Run",
        "Tenants.All",
    ]
    assert claims["appid"] == fresh.api_client_id and claims["idtyp"] == "app"
    assert claims["iss"] == f"https://sts.windows.net/{fresh.home_tenant_id}/"
    assert claims["tid"] == fresh.home_tenant_id
    wrong = msal.ConfidentialClientApplication(
        fresh.api_client_id,
        client_credential="not-the-secret",
        authority=f"{fresh.url}/{fresh.home_tenant_id}",
        instance_discovery=False,
        http_client=http,
    ).acquire_token_for_client([f"{fresh.app_id_uri}/.default"])
    assert wrong["error_codes"] == [7000215]
    # the automation app exists only to call the API
    other = app.acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert other["error_codes"] == [500011]


def test_the_bridge_app_in_a_customer_tenant_gets_a_token_of_that_tenant(
    fresh: Emulator, http: requests.Session
) -> None:
    """A token for the API issued in another tenant: tid of that tenant, no roles."""
    customer = fresh.tenant_ids[1]
    response = http.post(
        f"{fresh.url}/{customer}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": fresh.client_id,
            "client_secret": fresh.client_secret,
            "scope": f"{fresh.app_id_uri}/.default",
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    claims = _verified(fresh, http, response.json()["access_token"], customer)
    assert claims["tid"] == customer and "roles" not in claims


def test_managed_identity_token_for_the_api_carries_its_roles(
    fresh: Emulator, http: requests.Session
) -> None:
    """The App Service managed-identity endpoint with resource = the API."""
    response = requests.get(
        fresh.mi_url,
        params={
            "api-version": "2019-08-01",
            "resource": fresh.app_id_uri,
            "client_id": fresh.logic_app_identity_client_id,
        },
        headers={"X-IDENTITY-HEADER": fresh.identity_header},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    claims = _verified(fresh, http, response.json()["access_token"], fresh.home_tenant_id)
    assert "Subscriptions.Manage" in claims["roles"] and "Tenants.All" in claims["roles"]
    assert claims["appid"] == fresh.logic_app_identity_client_id
    # the Function's own identity holds no role on the API
    system = requests.get(
        fresh.mi_url,
        params={"api-version": "2019-08-01", "resource": fresh.app_id_uri},
        headers={"X-IDENTITY-HEADER": fresh.identity_header},
        timeout=10,
    ).json()["access_token"]
    assert "roles" not in _verified(fresh, http, system, fresh.home_tenant_id)


def test_user_tokens_carry_seeded_roles_and_the_admin_api_changes_them(
    fresh: Emulator, http: requests.Session
) -> None:
    """Seeded: analyst everything, reader one role and its tenant, newhire nothing; a change
    applies to the next token and a reset restores the seed."""
    home = fresh.home_tenant_id

    def roles(principal: str) -> list[str]:
        body = admin(http, fresh, "POST", "api/token", {"principal": principal})
        return list(_verified(fresh, http, body["access_token"], home).get("roles", []))

    assert roles("analyst") == EVERYTHING
    assert roles("reader") == ["Incidents.Read", f"Tenant.{home}"]
    assert roles("newhire") == []
    assert roles("SOC automation")[-1] == "Tenants.All"
    assert "Subscriptions.Manage" in roles("id-logic-app")
    changed = admin(
        http, fresh, "POST", "api/roles", {"principal": "newhire", "roles": ["Incidents.Read"]}
    )
    assert changed["roles"] == ["Incidents.Read"] and changed["kind"] == "user"
    assert roles("newhire") == ["Incidents.Read"]
    listing = admin(http, fresh, "GET", "api")
    assert listing["app_id_uri"] == fresh.app_id_uri
    assert listing["clients"][0]["client_id"] == fresh.api_client_id
    assert {a["name"].split("@")[0] for a in listing["assignments"]} >= {"analyst", "newhire"}
    admin(http, fresh, "POST", "reset")
    assert roles("newhire") == []


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("api/roles", {"principal": "nobody", "roles": []}, "no principal"),
        ("api/roles", {"principal": "analyst", "roles": "Tenants.All"}, "must be a list"),
        ("api/roles", {"principal": "analyst", "roles": ["has space"]}, "no spaces"),
        ("api/roles", {"principal": "analyst", "roles": [], "x": 1}, "unknown field"),
        ("api/token", {"principal": ""}, "'principal'"),
        ("api/token", {"principal": "analyst", "lifetime": 0}, "'lifetime'"),
    ],
)
def test_admin_api_refuses_bad_requests(
    fresh: Emulator, http: requests.Session, path: str, body: dict[str, Any], message: str
) -> None:
    response = http.post(f"{fresh.url}/_emulator/{path}", json=body, timeout=10)
    assert response.status_code == 400 and message in response.json()["error"]["message"]


def test_expired_and_customer_user_tokens(fresh: Emulator, http: requests.Session) -> None:
    """`expired` mints a token past its lifetime; a customer tenant's user gets its tid."""
    body = admin(http, fresh, "POST", "api/token", {"principal": "analyst", "expired": True})
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] < fresh.clock().timestamp()
    customer = fresh.tenant_ids[1]
    domain = fresh.user("analyst", customer).upn
    theirs = admin(http, fresh, "POST", "api/token", {"principal": domain})
    assert jwt.decode(theirs["access_token"], options={"verify_signature": False})["tid"] == (
        customer
    )
