"""Users and delegated tokens: on-behalf-of, device code, refresh token, runtime lifetimes,
with the real msal against the emulator."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import jwt
import msal
import pytest
import requests

from emulator.server import Emulator
from tests.emulator.conftest import GRAPH_SCOPE, LEGACY_SCOPE, admin, get_json

OBO = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


def _confidential(emu: Emulator, http: requests.Session, tenant: str | None = None) -> Any:
    return msal.ConfidentialClientApplication(
        emu.client_id,
        client_credential=emu.client_secret,
        authority=f"{emu.url}/{tenant or emu.home_tenant_id}",
        instance_discovery=False,
        http_client=http,
    )


def _public(emu: Emulator, http: requests.Session, tenant: str | None = None) -> Any:
    return msal.PublicClientApplication(
        emu.client_id,
        authority=f"{emu.url}/{tenant or emu.home_tenant_id}",
        instance_discovery=False,
        http_client=http,
    )


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def _grants(http: requests.Session, emu: Emulator, grant: str) -> int:
    stats = admin(http, emu, "GET", "stats")
    return sum(t["count"] for t in stats["tokens"] if t["grant"] == grant)


def _token_post(http: requests.Session, emu: Emulator, data: dict[str, str]) -> Any:
    return http.post(f"{emu.url}/{emu.home_tenant_id}/oauth2/v2.0/token", data=data, timeout=10)


# ---------------------------------------------------------------------------------- users


def test_seeded_users_per_tenant(emu: Emulator, http: requests.Session) -> None:
    """Three users per tenant, stable ids, listed by the admin API."""
    assert len(emu.users) == 3 * len(emu.tenant_ids)
    analyst = emu.user("analyst")
    assert analyst.upn.startswith("analyst@") and analyst.tenant_id == emu.home_tenant_id
    assert "Incident.ReadWrite" in analyst.consents["legacy"]
    assert "SecurityIncident.ReadWrite.All" in analyst.consents["graph"]
    assert emu.user("newhire").consents == {}
    assert emu.user(analyst.oid) == analyst == emu.user(analyst.upn.upper())
    customer = emu.user("analyst", emu.tenant_ids[1])
    assert customer.tenant_id == emu.tenant_ids[1] and customer.oid != analyst.oid
    listed = admin(http, emu, "GET", "users")["users"]
    assert {u["upn"] for u in listed} == {u.upn for u in emu.users}


def test_caller_token_shape(emu: Emulator, http: requests.Session) -> None:
    """The minted caller token is a user token for this app; the bare client id gives v2."""
    body = admin(http, emu, "POST", "users/token", {"user": "analyst"})
    claims = _claims(body["access_token"])
    user = emu.user("analyst")
    assert claims["aud"] == emu.app_id_uri == f"api://{emu.client_id}"
    assert claims["scp"] == "access_as_user" and claims["appid"] == emu.caller_client_id
    assert (claims["oid"], claims["tid"], claims["upn"], claims["name"]) == (
        user.oid,
        user.tenant_id,
        user.upn,
        user.name,
    )
    assert body["expires_on"] == claims["exp"]
    v2 = _claims(emu.caller_token("analyst", audience=emu.client_id))
    assert v2["ver"] == "2.0" and v2["aud"] == emu.client_id
    assert v2["iss"] == f"https://login.microsoftonline.com/{user.tenant_id}/v2.0"
    expired = admin(http, emu, "POST", "users/token", {"user": user.oid, "expired": True})
    assert expired["expires_on"] < time.time()
    short = admin(http, emu, "POST", "users/token", {"user": user.upn, "lifetime": 120})
    assert short["expires_on"] - _claims(short["access_token"])["iat"] == 120


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"user": "nobody"}, "no user"),
        ({"user": "analyst", "lifetime": 0}, "lifetime"),
        ({"user": "analyst", "expired": "yes"}, "expired"),
        ({"user": "analyst", "colour": "blue"}, "unknown field"),
        ({"user": "analyst", "tenant": "not-a-tenant"}, "tenant"),
    ],
)
def test_caller_token_bad_input(
    emu: Emulator, http: requests.Session, body: dict[str, Any], message: str
) -> None:
    response = http.post(f"{emu.url}/_emulator/users/token", json=body, timeout=10)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_delegated_tokens_on_the_apis(emu: Emulator, http: requests.Session) -> None:
    """A user's token for a Defender resource carries `scp`; the APIs accept it, and refuse a
    user who consented to nothing."""
    analyst = emu.caller_token("analyst", audience="https://api.security.microsoft.com")
    assert _claims(analyst)["scp"] == "Incident.Read Incident.ReadWrite AdvancedHunting.Read"
    ok = get_json(http, f"{emu.url}/api/incidents", analyst, **{"$top": "1"})
    assert ok.status_code == 200, ok.text
    graph = emu.caller_token("analyst", audience="https://graph.microsoft.com")
    assert get_json(http, f"{emu.url}/v1.0/security/incidents", graph).status_code == 200
    newhire = emu.caller_token("newhire", audience="https://api.security.microsoft.com")
    refused = get_json(http, f"{emu.url}/api/incidents", newhire)
    assert refused.status_code == 403 and "delegated" in refused.json()["error"]["message"]
    newhire_graph = emu.caller_token("newhire", audience="https://graph.microsoft.com")
    refused = get_json(http, f"{emu.url}/v1.0/security/incidents", newhire_graph)
    assert refused.status_code == 403
    assert "Missing scope permissions" in refused.json()["error"]["message"]


# ---------------------------------------------------------------------------------- OBO


def test_obo_then_silent_from_cache(fresh: Emulator, http: requests.Session) -> None:
    """acquire_token_on_behalf_of, then acquire_token_silent with the account: one request."""
    emu = fresh
    user = emu.user("analyst")
    app = _confidential(emu, http)
    result = app.acquire_token_on_behalf_of(emu.caller_token(user), [LEGACY_SCOPE])
    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == user.upn
    assert result["id_token_claims"]["aud"] == emu.client_id
    claims = _claims(result["access_token"])
    assert claims["aud"] == "https://api.security.microsoft.com"
    assert claims["scp"] == "Incident.Read Incident.ReadWrite AdvancedHunting.Read"
    assert (claims["oid"], claims["tid"], claims["upn"]) == (user.oid, user.tenant_id, user.upn)
    assert claims["appid"] == emu.client_id and claims["appidacr"] == "1"
    assert "roles" not in claims

    accounts = app.get_accounts()
    assert [a["home_account_id"] for a in accounts] == [f"{user.oid}.{user.tenant_id}"]
    assert accounts[0]["username"] == user.upn
    silent = app.acquire_token_silent([LEGACY_SCOPE], account=accounts[0])
    assert silent is not None and silent["token_source"] == "cache"
    assert silent["access_token"] == result["access_token"]
    assert _grants(http, emu, "on_behalf_of") == 1

    listed = get_json(http, f"{emu.url}/api/incidents", silent["access_token"])
    assert listed.status_code == 200, listed.text


def test_obo_response_fields(fresh: Emulator, http: requests.Session) -> None:
    """The raw OBO response: scope = requested minus OIDC, id_token, client_info, refresh."""
    emu = fresh
    user = emu.user("reader")
    response = _token_post(
        http,
        emu,
        {
            "grant_type": OBO,
            "requested_token_use": "on_behalf_of",
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "assertion": emu.caller_token(user),
            "scope": "https://graph.microsoft.com/SecurityIncident.Read.All openid profile "
            "offline_access",
            "client_info": "1",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "https://graph.microsoft.com/SecurityIncident.Read.All"
    assert body["token_type"] == "Bearer" and body["expires_in"] == body["ext_expires_in"]
    assert body["refresh_token"]
    assert _claims(body["access_token"])["scp"] == (
        "SecurityIncident.Read.All SecurityAlert.Read.All ThreatHunting.Read.All"
    )
    id_token = _claims(body["id_token"])
    assert id_token["aud"] == emu.client_id and id_token["oid"] == user.oid
    assert id_token["iss"] == f"https://login.microsoftonline.com/{user.tenant_id}/v2.0"
    assert {"nbf", "iat", "exp", "tid", "name", "preferred_username"} <= set(id_token)
    info = body["client_info"]
    assert json.loads(base64.urlsafe_b64decode(info + "=" * (-len(info) % 4))) == {
        "uid": user.oid,
        "utid": user.tenant_id,
    }
    # without openid / offline_access / client_info=1 there is only the access token
    bare = _token_post(
        http,
        emu,
        {
            "grant_type": OBO,
            "requested_token_use": "on_behalf_of",
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "assertion": emu.caller_token(user),
            "scope": "SecurityIncident.Read.All",
        },
    ).json()
    assert bare["scope"] == "SecurityIncident.Read.All"
    assert not {"refresh_token", "id_token", "client_info"} & set(bare)


def test_obo_reader_cannot_update(fresh: Emulator, http: requests.Session) -> None:
    """The exchanged token carries the caller's own permissions: a reader cannot PATCH."""
    emu = fresh
    app = _confidential(emu, http)
    result = app.acquire_token_on_behalf_of(emu.caller_token("reader"), [GRAPH_SCOPE])
    token = result["access_token"]
    listed = get_json(http, f"{emu.url}/v1.0/security/incidents", token, **{"$top": "1"})
    assert listed.status_code == 200
    incident_id = listed.json()["value"][0]["id"]
    patched = http.patch(
        f"{emu.url}/v1.0/security/incidents/{incident_id}",
        json={"status": "active"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert patched.status_code == 403


def test_obo_with_certificate_and_customer_tenant(fresh: Emulator, http: requests.Session) -> None:
    """A certificate credential works too (appidacr 2), in a customer tenant, for its user."""
    emu = fresh
    tenant = emu.tenant_ids[1]
    app = msal.ConfidentialClientApplication(
        emu.client_id,
        client_credential={
            "private_key": emu.certificate_pem,
            "thumbprint": emu.certificate_thumbprint,
        },
        authority=f"{emu.url}/{tenant}",
        instance_discovery=False,
        http_client=http,
    )
    user = emu.user("analyst", tenant)
    result = app.acquire_token_on_behalf_of(emu.caller_token(user), [LEGACY_SCOPE])
    assert "access_token" in result, result
    claims = _claims(result["access_token"])
    assert claims["tid"] == tenant and claims["appidacr"] == "2"
    stats = admin(http, emu, "GET", "stats")["tokens"]
    assert {"grant": "on_behalf_of", "tenant": tenant, "client_id": emu.client_id} | {
        "resource": "https://api.security.microsoft.com",
        "count": 1,
    } in stats


@pytest.mark.parametrize(
    ("case", "error", "code"),
    [
        ("expired", "invalid_grant", 500133),
        ("foreign_audience", "invalid_grant", 50013),
        ("bad_signature", "invalid_grant", 50013),
        ("no_consent", "invalid_grant", 65001),
        ("other_tenant_user", "invalid_grant", 50020),
    ],
)
def test_obo_refusals(
    fresh: Emulator, http: requests.Session, case: str, error: str, code: int
) -> None:
    """Each refusal as MSAL returns it (an error dict, never an exception)."""
    emu = fresh
    assertion = {
        "expired": lambda: emu.caller_token("analyst", expired=True),
        "foreign_audience": lambda: emu.caller_token(
            "analyst", audience="https://graph.microsoft.com"
        ),
        "bad_signature": lambda: emu.caller_token("analyst")[:-8] + "AAAAAAAA",
        "no_consent": lambda: emu.caller_token("newhire"),
        "other_tenant_user": lambda: emu.caller_token(emu.user("analyst", emu.tenant_ids[1])),
    }[case]()
    result = _confidential(emu, http).acquire_token_on_behalf_of(assertion, [LEGACY_SCOPE])
    assert result.get("error") == error, result
    assert result["error_codes"] == [code]
    if case == "no_consent":
        assert result["suberror"] == "consent_required"
    if case == "expired":
        assert "not within its valid time range" in result["error_description"]
    assert _grants(http, emu, "on_behalf_of") == 0


def test_obo_needs_a_client_credential(fresh: Emulator, http: requests.Session) -> None:
    """OBO is a confidential-client grant: no secret or assertion is 401 AADSTS7000218."""
    response = _token_post(
        http,
        fresh,
        {
            "grant_type": OBO,
            "requested_token_use": "on_behalf_of",
            "client_id": fresh.client_id,
            "assertion": fresh.caller_token("analyst"),
            "scope": LEGACY_SCOPE,
        },
    )
    assert response.status_code == 401 and response.json()["error_codes"] == [7000218]


@pytest.mark.parametrize(
    ("scope", "code"),
    [
        ("openid offline_access", 70011),
        ("https://api.security.microsoft.com/Incident.Read SecurityIncident.Read.All", 28000),
        ("https://api.security.microsoft.com/.default https://api.security.microsoft.com/x", 70011),
        ("https://api.security.microsoft.com/Nope.Read", 70011),
        ("https://unknown.example.com/.default", 500011),
    ],
)
def test_obo_bad_scopes(fresh: Emulator, http: requests.Session, scope: str, code: int) -> None:
    response = _token_post(
        http,
        fresh,
        {
            "grant_type": OBO,
            "requested_token_use": "on_behalf_of",
            "client_id": fresh.client_id,
            "client_secret": fresh.client_secret,
            "assertion": fresh.caller_token("analyst"),
            "scope": scope,
        },
    )
    assert response.status_code == 400 and response.json()["error_codes"] == [code]


def test_user_consent_admin(fresh: Emulator, http: requests.Session) -> None:
    """Granting the new hire a delegated permission makes their OBO work."""
    emu = fresh
    app = _confidential(emu, http)
    scope = ["https://api.security.microsoft.com/Incident.Read"]
    refused = app.acquire_token_on_behalf_of(emu.caller_token("newhire"), scope)
    assert refused["error_codes"] == [65001]
    body = admin(
        http,
        emu,
        "POST",
        "users/consent",
        {"user": "newhire", "permissions": {"legacy": ["incident.read"]}},
    )
    assert body["consents"] == {"legacy": ["Incident.Read"]}
    result = app.acquire_token_on_behalf_of(emu.caller_token("newhire"), scope)
    assert _claims(result["access_token"])["scp"] == "Incident.Read"
    bad = http.post(
        f"{emu.url}/_emulator/users/consent",
        json={"user": "newhire", "permissions": {"legacy": ["Incident.Read.All"]}},
        timeout=10,
    )
    assert bad.status_code == 400


# ---------------------------------------------------------------------------------- device code


def test_discovery_points_at_device_endpoint(emu: Emulator, http: requests.Session) -> None:
    doc = http.get(
        f"{emu.url}/{emu.home_tenant_id}/v2.0/.well-known/openid-configuration", timeout=10
    ).json()
    endpoint = doc["device_authorization_endpoint"]
    assert endpoint == f"{emu.url}/{emu.home_tenant_id}/oauth2/v2.0/devicecode"
    flow = http.post(endpoint, data={"client_id": emu.client_id, "scope": GRAPH_SCOPE}, timeout=10)
    assert flow.status_code == 200
    body = flow.json()
    assert set(body) == {
        "device_code",
        "user_code",
        "verification_uri",
        "expires_in",
        "interval",
        "message",
    }
    assert body["interval"] == 1 and body["expires_in"] == 900
    assert body["user_code"] in body["message"] and body["verification_uri"] in body["message"]
    page = http.get(body["verification_uri"], timeout=10)
    assert page.status_code == 200 and "devicecode/approve" in page.text


def test_device_flow_auto_approved_then_refreshed(fresh: Emulator, http: requests.Session) -> None:
    """Auto-approval as the analyst; short-lived tokens so the next silent call uses the
    refresh token (MSAL treats a token within 5 minutes of expiry as expired)."""
    emu = fresh
    admin(http, emu, "POST", "tokens", {"lifetime": 120})
    auto = admin(http, emu, "POST", "devicecode/auto", {"user": "analyst"})
    assert auto["auto"] == [
        {"tenant": emu.home_tenant_id, "user": emu.user("analyst").oid, "action": "approve"}
    ]
    app = _public(emu, http)
    flow = app.initiate_device_flow(scopes=[GRAPH_SCOPE])
    assert "user_code" in flow, flow
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    assert result["expires_in"] == 120 and "refresh_token" in result
    claims = _claims(result["access_token"])
    assert claims["appidacr"] == "0" and claims["upn"] == emu.user("analyst").upn
    assert "ThreatHunting.Read.All" in claims["scp"].split()
    assert _grants(http, emu, "device_code") == 1

    account = app.get_accounts()[0]
    silent = app.acquire_token_silent([GRAPH_SCOPE], account=account)
    assert silent is not None and silent["token_source"] == "identity_provider"
    assert silent["access_token"] != result["access_token"]
    assert _grants(http, emu, "refresh_token") == 1
    # the refresh token also works for the other resource (Entra refresh tokens are multi-
    # resource) as long as the user consented there
    legacy = app.acquire_token_silent([LEGACY_SCOPE], account=account)
    assert legacy is not None
    assert _claims(legacy["access_token"])["aud"] == "https://api.security.microsoft.com"
    assert _grants(http, emu, "refresh_token") == 2


def test_device_flow_approved_by_admin_while_polling(
    fresh: Emulator, http: requests.Session
) -> None:
    """MSAL polls (authorization_pending) until the admin API approves the code."""
    emu = fresh
    app = _public(emu, http)
    flow = app.initiate_device_flow(scopes=[LEGACY_SCOPE])
    listed = admin(http, emu, "GET", "devicecode")["device_codes"]
    assert [c["user_code"] for c in listed] == [flow["user_code"]]
    assert listed[0]["status"] == "pending"

    def approve() -> None:
        admin(
            http,
            emu,
            "POST",
            "devicecode/approve",
            {"user_code": flow["user_code"].lower(), "user": emu.user("reader").upn},
        )

    timer = threading.Timer(1.5, approve)
    timer.start()
    try:
        result = app.acquire_token_by_device_flow(flow)
    finally:
        timer.join()
    assert "access_token" in result, result
    assert _claims(result["access_token"])["scp"] == "Incident.Read AdvancedHunting.Read"
    log = admin(http, emu, "GET", "requests")
    polls = [r["status"] for r in log if r["endpoint"] == "entra.token"]
    assert polls[0] == 400 and polls[-1] == 200
    assert admin(http, emu, "GET", "devicecode")["device_codes"] == []


def test_device_flow_declined(fresh: Emulator, http: requests.Session) -> None:
    emu = fresh
    app = _public(emu, http)
    flow = app.initiate_device_flow(scopes=[LEGACY_SCOPE])
    admin(http, emu, "POST", "devicecode/deny", {"user_code": flow["user_code"]})
    result = app.acquire_token_by_device_flow(flow)
    assert result["error"] == "authorization_declined"
    assert _grants(http, emu, "device_code") == 0


def test_device_flow_user_without_consent(fresh: Emulator, http: requests.Session) -> None:
    emu = fresh
    emu.auto_approve_device_codes("newhire")
    app = _public(emu, http)
    result = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=[LEGACY_SCOPE]))
    assert result["error"] == "invalid_grant" and result["error_codes"] == [65001]
    assert result["suberror"] == "consent_required"


def test_device_code_polling_errors(fresh: Emulator, http: requests.Session) -> None:
    """Raw polling: pending (70016), bad code (70018), expired (70019); 400 each."""
    emu = fresh
    admin(http, emu, "POST", "tokens", {"device_code_lifetime": 1})
    flow = http.post(
        f"{emu.url}/{emu.home_tenant_id}/oauth2/v2.0/devicecode",
        data={"client_id": emu.client_id, "scope": LEGACY_SCOPE},
        timeout=10,
    ).json()
    assert flow["expires_in"] == 1

    def poll(code: str) -> Any:
        return _token_post(
            http, emu, {"grant_type": DEVICE, "client_id": emu.client_id, "device_code": code}
        )

    pending = poll(flow["device_code"])
    assert pending.status_code == 400
    assert (pending.json()["error"], pending.json()["error_codes"]) == (
        "authorization_pending",
        [70016],
    )
    bad = poll("not-a-device-code").json()
    assert (bad["error"], bad["error_codes"]) == ("bad_verification_code", [70018])
    time.sleep(1.1)
    expired = poll(flow["device_code"]).json()
    assert (expired["error"], expired["error_codes"]) == ("expired_token", [70019])
    refused = http.post(
        f"{emu.url}/_emulator/devicecode/approve",
        json={"user_code": "NOSUCHCODE", "user": "analyst"},
        timeout=10,
    )
    assert refused.status_code == 404


def test_device_code_admin_validation(fresh: Emulator, http: requests.Session) -> None:
    emu = fresh
    flow = _public(emu, http).initiate_device_flow(scopes=[LEGACY_SCOPE])
    other_tenant_user = emu.user("analyst", emu.tenant_ids[1]).upn
    response = http.post(
        f"{emu.url}/_emulator/devicecode/approve",
        json={"user_code": flow["user_code"], "user": other_tenant_user},
        timeout=10,
    )
    assert response.status_code == 400 and "no user" in response.json()["error"]["message"]
    missing_user = http.post(
        f"{emu.url}/_emulator/devicecode/approve", json={"user_code": flow["user_code"]}, timeout=10
    )
    assert missing_user.status_code == 400
    admin(
        http, emu, "POST", "devicecode/approve", {"user_code": flow["user_code"], "user": "reader"}
    )
    again = http.post(
        f"{emu.url}/_emulator/devicecode/deny", json={"user_code": flow["user_code"]}, timeout=10
    )
    assert again.status_code == 400 and "already approved" in again.json()["error"]["message"]
    off = admin(http, emu, "POST", "devicecode/auto", {"user": None})
    assert off == {"auto": []}


# ---------------------------------------------------------------------------------- refresh


def test_refresh_token_errors(fresh: Emulator, http: requests.Session) -> None:
    """Unknown refresh token (9002313); a confidential client's token without its secret
    (7000218); with the secret it works and counts as `refresh_token`."""
    emu = fresh
    unknown = _token_post(
        http,
        emu,
        {
            "grant_type": "refresh_token",
            "client_id": emu.client_id,
            "refresh_token": "1.ARnope",
            "scope": LEGACY_SCOPE,
        },
    )
    assert unknown.status_code == 400 and unknown.json()["error_codes"] == [9002313]
    obo = _token_post(
        http,
        emu,
        {
            "grant_type": OBO,
            "requested_token_use": "on_behalf_of",
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "assertion": emu.caller_token("analyst"),
            "scope": f"{LEGACY_SCOPE} offline_access",
        },
    ).json()
    form = {
        "grant_type": "refresh_token",
        "client_id": emu.client_id,
        "refresh_token": obo["refresh_token"],
        "scope": f"{GRAPH_SCOPE} offline_access",
    }
    without_secret = _token_post(http, emu, form)
    assert without_secret.status_code == 401
    assert without_secret.json()["error_codes"] == [7000218]
    refreshed = _token_post(http, emu, {**form, "client_secret": emu.client_secret})
    assert refreshed.status_code == 200, refreshed.text
    assert _claims(refreshed.json()["access_token"])["aud"] == "https://graph.microsoft.com"
    assert refreshed.json()["refresh_token"] != obo["refresh_token"]
    assert _grants(http, emu, "refresh_token") == 1


def test_refresh_token_expires(fresh: Emulator, http: requests.Session) -> None:
    emu = fresh
    admin(http, emu, "POST", "tokens", {"refresh_lifetime": 1})
    emu.auto_approve_device_codes("analyst")
    app = _public(emu, http)
    result = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=[LEGACY_SCOPE]))
    time.sleep(1.1)
    response = _token_post(
        http,
        emu,
        {
            "grant_type": "refresh_token",
            "client_id": emu.client_id,
            "refresh_token": result["refresh_token"],
            "scope": LEGACY_SCOPE,
        },
    )
    assert response.status_code == 400 and response.json()["error_codes"] == [700082]


# ---------------------------------------------------------------------------------- lifetimes


def test_token_lifetimes_at_runtime(fresh: Emulator, http: requests.Session) -> None:
    """`POST /_emulator/tokens` changes new tokens' lifetime; reset restores the config."""
    emu = fresh
    assert admin(http, emu, "GET", "tokens")["lifetime"] == 3599
    body = admin(http, emu, "POST", "tokens", {"lifetime": 30, "mi_lifetime": 60})
    assert (body["lifetime"], body["mi_lifetime"]) == (30, 60)
    response = _token_post(
        http,
        emu,
        {
            "grant_type": "client_credentials",
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "scope": LEGACY_SCOPE,
        },
    ).json()
    assert response["expires_in"] == 30
    claims = _claims(response["access_token"])
    assert claims["exp"] - claims["iat"] == 30
    mi = http.get(
        emu.mi_url,
        params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
        headers={"X-IDENTITY-HEADER": emu.identity_header},
        timeout=10,
    ).json()
    assert int(mi["expires_on"]) - int(mi["not_before"]) == 60
    for bad in ({"lifetime": 0}, {"lifetime": "30"}, {"ttl": 5}):
        assert http.post(f"{emu.url}/_emulator/tokens", json=bad, timeout=10).status_code == 400
    admin(http, emu, "POST", "reset")
    assert admin(http, emu, "GET", "tokens")["lifetime"] == 3599


def test_config_rejects_zero_interval() -> None:
    from emulator.server import EmulatorConfig

    with pytest.raises(ValueError, match="device_code_interval"):
        Emulator(EmulatorConfig(device_code_interval=0))


def test_config_auto_user() -> None:
    """`device_code_auto_user` approves every device code of that user's tenant."""
    from emulator.server import EmulatorConfig

    config = EmulatorConfig(
        seed=3, home_incidents=5, customer_tenants=0, device_code_auto_user="reader"
    )
    with Emulator(config) as emu:
        session = requests.Session()
        session.trust_env = False
        session.verify = str(emu.ca_path)
        with session:
            app = _public(emu, session)
            flow = app.initiate_device_flow(scopes=[LEGACY_SCOPE])
            result = app.acquire_token_by_device_flow(flow)
        assert _claims(result["access_token"])["upn"] == emu.user("reader").upn
