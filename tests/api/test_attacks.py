"""The identity boundary, attacked through both faces with real tokens from the emulator.

Every route but ``GET /health`` and ``GET /consent/callback`` needs an Entra access token for
this API that the app validates itself. Each attack below must answer 401 or 403 and change
nothing: no Defender, Graph or Key Vault request, no token issued, no blob, row or queue message
written (the emulator's ``/_emulator/stats`` and Azurite are compared before and after).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.api.routes import ROUTES
from tests.api.conftest import (
    Answer,
    Face,
    caller,
    forged_principal,
    setenv,
    storage_snapshot,
    tenants,
    truth,
    upstream_calls,
)
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e

ACTIONS = ("Incidents.Read", "Incidents.Write", "Hunting.Run", "Ingest.Run", "Subscriptions.Manage")
HUNT = {"template": "alerts-by-severity", "parameters": {"lookback": "30d"}}
CALLBACK = "https://localhost/callback?sig=abc"
#: routes that touch no tenant's data (the templates are static, the document too)
TENANT_FREE = {"ListHuntingTemplates", "GetOpenApi"}


@dataclass(frozen=True)
class Target:
    """Objects of one tenant for every route to aim at (made by a caller allowed there)."""

    tenant: str
    incident: str
    job: str
    subscription: str
    callback: str


def _calls(t: Target) -> dict[str, dict[str, Any]]:
    """One request per authenticated route, aimed at ``t``'s tenant and objects."""
    q = {"tenant": t.tenant}
    return {
        "ListIncidents": {"method": "GET", "path": "/incidents", "params": {**q, "top": "1"}},
        "GetIncident": {"method": "GET", "path": f"/incidents/{t.incident}", "params": q},
        "UpdateIncident": {
            "method": "PATCH",
            "path": f"/incidents/{t.incident}",
            "params": q,
            "json_body": {"tags": ["pwned"], "status": "resolved"},
        },
        "ListHuntingTemplates": {"method": "GET", "path": "/hunting/templates"},
        "RunHunting": {"method": "POST", "path": "/hunting", "params": q, "json_body": HUNT},
        "GetHuntingJob": {"method": "GET", "path": f"/hunting/jobs/{t.job}"},
        # a poll link's route without its link: only a token can open the job
        "PollHuntingJob": {"method": "GET", "path": "/hunting/status", "params": {"job": t.job}},
        "QueueIngestion": {"method": "POST", "path": "/ingest", "json_body": {"tenant": t.tenant}},
        "GetIngestionStatus": {"method": "GET", "path": "/ingest/status", "params": q},
        "SubscribeIncidents": {
            "method": "POST",
            "path": "/subscriptions",
            "json_body": {"callbackUrl": f"{CALLBACK}-new", "tenants": [t.tenant]},
        },
        "UnsubscribeByCallback": {
            "method": "DELETE",
            "path": "/subscriptions",
            "json_body": {"callbackUrl": t.callback},
        },
        "Unsubscribe": {"method": "DELETE", "path": f"/subscriptions/{t.subscription}"},
        "ListSubscriptions": {"method": "GET", "path": "/subscriptions"},
        "GetOpenApi": {"method": "GET", "path": "/openapi.json"},
    }


def test_the_attack_table_covers_every_authenticated_route() -> None:
    """A new route must be added to the attacks before it can ship."""
    authenticated = {r.operation_id for r in ROUTES if r.auth != "anonymous"}
    dummy = Target("t", "1", "0" * 32, "0" * 32, CALLBACK)
    assert set(_calls(dummy)) == authenticated
    assert {r.operation_id for r in ROUTES if r.auth == "anonymous"} == {
        "Health",
        "ConsentCallback",
    }


def _target(face: Face, cloud: LocalCloud, tenant: str) -> Target:
    """A job and two subscriptions in ``tenant``, made with the face's own (all-tenant) token."""
    incident = truth(cloud, tenant)[0]["id"]
    job = face.request(
        "POST",
        "/hunting",
        json_body=HUNT,
        headers={"Prefer": "respond-async"},
        params={"tenant": tenant},
    )
    assert job.status == 202, job.body[:300]
    subs = [
        face.request(
            "POST",
            "/subscriptions",
            json_body={"callbackUrl": f"{CALLBACK}{n}{tenant}", "tenants": [tenant]},
        )
        for n in (1, 2)
    ]
    assert [s.status for s in subs] == [201, 201], subs[0].body[:300]
    return Target(
        tenant, str(incident), job.json()["id"], subs[0].json()["id"], f"{CALLBACK}2{tenant}"
    )


def _quiet(face: Face, cloud: LocalCloud, api_env: dict[str, str]) -> Callable[[], None]:
    """Snapshot upstream calls and storage now; the returned check asserts nothing changed.
    Background hunting jobs of the set-up are let finish first."""
    time.sleep(0.5)
    connection = api_env["DATA_STORAGE_CONNECTION_STRING"]
    before = (upstream_calls(cloud), storage_snapshot(connection))

    def check() -> None:
        after = (upstream_calls(cloud), storage_snapshot(connection))
        assert after[0] == before[0], "an attack reached Defender, Graph, Key Vault or Entra"
        assert after[1] == before[1], "an attack wrote to storage"

    return check


def _refused(
    answer: Answer, status: int, secret: str | None = None, scheme: str = "Bearer"
) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body[:300])
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    if status == 401:
        challenge = answer.header("WWW-Authenticate") or ""
        assert challenge.startswith(scheme), challenge
    if secret:
        assert secret not in answer.body.decode("utf-8", "replace")
        assert secret not in json.dumps(answer.headers)
    return dict(body["error"])


# ---------------------------------------------------------------------- tokens an attacker makes


def _claims(cloud: LocalCloud) -> dict[str, Any]:
    """The claims of a genuine analyst token: what a forger copies."""
    token = cloud.emulator.api_token("analyst")
    return dict(jwt.decode(token, options={"verify_signature": False}))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unsigned(claims: dict[str, Any], kid: str) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _hs256_with_public_key(cloud: LocalCloud, claims: dict[str, Any]) -> str:
    """The classic confusion attack: HMAC keyed with the issuer's public key (PEM)."""
    keys = requests.get(
        f"{cloud.url}/{cloud.emulator.home_tenant_id}/discovery/v2.0/keys",
        verify=str(cloud.emulator.ca_path),
        timeout=10,
    ).json()["keys"]
    public = jwt.PyJWK(keys[0]).key
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": keys[0]["kid"]}).encode())
    body = f"{header}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(pem, body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(signature)}"


def _kid(cloud: LocalCloud) -> str:
    return str(jwt.get_unverified_header(cloud.emulator.api_token("analyst"))["kid"])


def _app_token_in(cloud: LocalCloud, tenant: str) -> str:
    """The bridge app's own client-credentials token for this API, issued in ``tenant``."""
    emu = cloud.emulator
    response = requests.post(
        f"{emu.url}/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "scope": f"{emu.app_id_uri}/.default",
        },
        verify=str(emu.ca_path),
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _bad_tokens(cloud: LocalCloud) -> dict[str, str]:
    """Tokens that must each be refused with 401, by what is wrong with them."""
    emu = cloud.emulator
    home, customer = tenants(cloud)
    now = int(time.time())
    good = _claims(cloud)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    customer_analyst = emu.user("analyst", customer).upn
    return {
        "audience: Microsoft Graph": emu.caller_token(
            "analyst", audience="https://graph.microsoft.com"
        ),
        "audience: another app": emu.sign_claims({**good, "aud": f"api://{uuid.uuid4()}"}),
        "issuer: another tenant": emu.sign_claims(
            {**good, "iss": f"https://sts.windows.net/{customer}/"}
        ),
        "issuer: a stranger": emu.sign_claims({**good, "iss": f"https://evil.example/{home}/v2.0"}),
        "issuer: another cloud": emu.sign_claims(
            {**good, "iss": f"https://login.microsoftonline.us/{home}/v2.0", "ver": "2.0"}
        ),
        "tenant: a customer's user": emu.api_token(customer_analyst),
        "tenant: the app in a customer tenant": _app_token_in(cloud, customer),
        "tenant: tid of another tenant": emu.sign_claims({**good, "tid": customer}),
        "algorithm: none": _unsigned(good, _kid(cloud)),
        "algorithm: HS256 keyed with the public key": _hs256_with_public_key(cloud, good),
        "lifetime: expired": emu.api_token("analyst", expired=True),
        "lifetime: not yet valid": emu.sign_claims(
            {**good, "nbf": now + 900, "iat": now + 900, "exp": now + 4500}
        ),
        "key: unknown kid": jwt.encode(
            good, stranger, algorithm="RS256", headers={"kid": "unknown-kid"}
        ),
        "key: the issuer's kid, another key": jwt.encode(
            good, stranger, algorithm="RS256", headers={"kid": _kid(cloud)}
        ),
        "format: not a JWT": "not.a.jwt",
        "format: an oversized token": "e" * 20_000,
    }


def test_tokens_with_anything_wrong_are_401_on_every_route(
    face: Face, cloud: LocalCloud, api_env: dict[str, str]
) -> None:
    home, _ = tenants(cloud)
    target = _target(face, cloud, home)
    bad = _bad_tokens(cloud)
    check = _quiet(face, cloud, api_env)
    for what, token in bad.items():
        for route, call in _calls(target).items():
            answer = face.request(**call, token=token)
            try:
                _refused(answer, 401, secret=token)
            except AssertionError as exc:
                raise AssertionError(f"{what} on {route}: {exc}") from None
    check()


def test_no_token_and_a_key_alone_are_401_on_every_route(
    face: Face, cloud: LocalCloud, api_env: dict[str, str]
) -> None:
    """No token; a function key (header and ``code``) without a token; another scheme."""
    home, _ = tenants(cloud)
    target = _target(face, cloud, home)
    check = _quiet(face, cloud, api_env)
    key = face.key
    assert key is not None
    for route, call in _calls(target).items():
        bare = face.request(**call, token=None)
        codes = ("unauthenticated", "invalid_token", "invalid_poll_link")
        assert _refused(bare, 401)["code"] in codes, route
        with_key = face.request(
            **{**call, "params": {**call.get("params", {}), "code": key}},
            token=None,
            headers={"x-functions-key": key},
        )
        _refused(with_key, 401, secret=key)
        basic = face.request(**call, token=None, headers={"Authorization": "Basic dTpw"})
        _refused(basic, 401)
    check()


def test_forged_client_principal_headers_grant_nothing(
    face: Face, cloud: LocalCloud, api_env: dict[str, str]
) -> None:
    """``X-MS-CLIENT-PRINCIPAL`` claiming every role and tenant: alone a 401; beside a reader's
    real token it widens nothing (403 for the write and for another tenant)."""
    home, customer = tenants(cloud)
    target = _target(face, cloud, customer)
    everything = forged_principal(*ACTIONS, "Tenants.All")
    reader = caller(cloud, "Incidents.Read", f"Tenant.{home}")
    check = _quiet(face, cloud, api_env)
    for route, call in _calls(target).items():
        _refused(face.request(**call, token=None, headers=everything), 401)
        answer = face.request(**call, token=reader, headers=everything)
        if route == "GetOpenApi":
            assert answer.status == 200
            continue
        _refused(answer, 403)
    patch = face.request(
        "PATCH",
        f"/incidents/{truth(cloud, home)[0]['id']}",
        params={"tenant": home},
        json_body={"tags": ["x"]},
        token=reader,
        headers=everything,
    )
    assert "Incidents.Write" in _refused(patch, 403)["message"]
    check()


def test_a_caller_granted_tenant_a_gets_403_for_b_on_every_route(
    face: Face, cloud: LocalCloud, api_env: dict[str, str]
) -> None:
    """Every action role, but only tenant A: every route aimed at B is a 403 that names B, and
    nothing of B is read or written; the same caller is served in A."""
    a, b = tenants(cloud)
    target = _target(face, cloud, b)
    only_a = caller(cloud, *ACTIONS, f"Tenant.{a}")
    check = _quiet(face, cloud, api_env)
    for route, call in _calls(target).items():
        answer = face.request(**call, token=only_a)
        if route in TENANT_FREE:
            assert answer.status == 200, (route, answer.body[:200])
            continue
        if route == "ListSubscriptions":
            # names no tenant: answers with the caller's own subscriptions, never B's
            assert answer.status == 200, answer.body[:200]
            listed = json.dumps(answer.json())
            assert target.subscription not in listed and b not in listed, listed[:300]
            continue
        error = _refused(answer, 403)
        assert error["code"] == "tenant_forbidden", (route, error)
        if route not in ("GetHuntingJob", "Unsubscribe", "UnsubscribeByCallback"):
            assert b in error["message"], (route, error)
    # the same request with a tenant of nobody's: the same 403, nothing revealed
    stranger = str(uuid.uuid4())
    listing = face.get("/incidents", params={"tenant": stranger}, token=only_a)
    assert _refused(listing, 403)["code"] == "tenant_forbidden"
    check()
    assert face.get("/incidents", params={"tenant": a, "top": "1"}, token=only_a).status == 200


def test_a_caller_without_the_role_gets_403_naming_it(
    face: Face, cloud: LocalCloud, api_env: dict[str, str]
) -> None:
    home, _ = tenants(cloud)
    target = _target(face, cloud, home)
    nobody = caller(cloud)  # a valid home-tenant token with no app role
    needed = {r.operation_id: r.role for r in ROUTES}
    check = _quiet(face, cloud, api_env)
    for route, call in _calls(target).items():
        answer = face.request(**call, token=nobody)
        if needed[route] is None:
            assert answer.status == 200, route
            continue
        error = _refused(answer, 403)
        assert error["code"] == "missing_role" and needed[route] in error["message"], route
    check()


def test_unknown_signing_keys_refetch_the_keys_at_most_once(face: Face, cloud: LocalCloud) -> None:
    """A flood of tokens naming unknown keys costs one refetch of the home tenant's keys."""
    assert face.get("/hunting/templates").status == 200  # keys fetched and cached
    before = cloud.request_count("entra.keys")
    good = _claims(cloud)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for _ in range(25):
        forged = jwt.encode(good, key, algorithm="RS256", headers={"kid": uuid.uuid4().hex})
        _refused(face.get("/hunting/templates", token=forged), 401)
    assert cloud.request_count("entra.keys") - before <= 1


def test_every_kind_of_caller_is_admitted_by_its_roles(face: Face, cloud: LocalCloud) -> None:
    """A user (v1 and v2 tokens), an app with client credentials and a managed identity: each
    is served by its own roles (the automation app may not subscribe; the identity may)."""
    emu = cloud.emulator
    home, _ = tenants(cloud)
    user_v2 = emu.caller_token("analyst", audience=emu.client_id)
    app = emu.api_token("SOC automation")
    identity = requests.get(
        emu.mi_url,
        params={
            "api-version": "2019-08-01",
            "resource": emu.app_id_uri,
            "client_id": emu.logic_app_identity_client_id,
        },
        headers={"X-IDENTITY-HEADER": emu.identity_header},
        timeout=10,
    ).json()["access_token"]
    subscribe = {"callbackUrl": f"{CALLBACK}-kinds", "tenants": [home]}
    assert face.get("/incidents", params={"top": "1"}, token=user_v2).status == 200
    assert face.get("/incidents", params={"top": "1"}, token=app).status == 200
    refused = face.request("POST", "/subscriptions", json_body=subscribe, token=app)
    assert "Subscriptions.Manage" in _refused(refused, 403)["message"]
    made = face.request("POST", "/subscriptions", json_body=subscribe, token=identity)
    assert made.status == 201, made.body[:300]


def test_key_mode_admits_a_key_holder_to_every_tenant(
    face: Face, cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``API_AUTH_MODE=key``: the host's function key (serve: its run key) alone admits, with
    every role and tenant; a token, when sent, is still validated and narrows."""
    _, customer = tenants(cloud)
    setenv(monkeypatch, API_AUTH_MODE="key")
    listing = face.get("/incidents", params={"tenant": customer, "top": "1"}, token=None)
    assert listing.status == 200, listing.body[:300]
    expired = cloud.emulator.api_token("analyst", expired=True)
    _refused(face.get("/incidents", token=expired), 401, secret=expired)
    home_only = caller(cloud, "Incidents.Read", f"Tenant.{tenants(cloud)[0]}")
    narrowed = face.get("/incidents", params={"tenant": customer}, token=home_only)
    assert _refused(narrowed, 403)["code"] == "tenant_forbidden"
    # with no key at all: serve refuses; under Functions the host would have, and the app
    # refuses too (it is never reached without one when the host checks keys)
    nothing = face.get("/incidents", token=None, key=None)
    _refused(nothing, 401, scheme="Key" if face.name == "serve" else "Bearer")


def test_the_retired_principal_setting_is_reported_not_obeyed(
    face: Face, cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old deployment's ``API_REQUIRE_CLIENT_PRINCIPAL=false`` does not bring back key-only
    access: tokens are still required."""
    setenv(monkeypatch, API_REQUIRE_CLIENT_PRINCIPAL="false")
    _refused(face.get("/incidents", token=None), 401)
    assert face.get("/incidents", params={"top": "1"}).status == 200


# ---------------------------------------------------------------------- serve


def _raw(served_url: str, method: str, path: str, **kw: Any) -> requests.Response:
    return requests.request(method, f"{served_url}/api{path}", timeout=30, **kw)


def test_serve_refuses_foreign_hosts_origins_text_bodies_and_missing_keys(
    served: Any, cloud: LocalCloud, api_env: dict[str, str]
) -> None:
    """DNS rebinding (a foreign ``Host``), a web page's request (``Origin``, or a
    ``text/plain`` body, which needs no CORS preflight), and a request without the run key:
    each refused before anything runs; a valid token does not make up for a missing key."""
    token = cloud.emulator.api_token("analyst")
    bearer = {"Authorization": f"Bearer {token}"}
    keyed = {**bearer, "x-functions-key": served.key or ""}
    check = _quiet(Face("serve", served.url), cloud, api_env)
    rebound = _raw(served.url, "GET", "/incidents", headers={**keyed, "Host": "evil.example"})
    assert rebound.status_code in (403, 421), rebound.text[:200]
    rebound_port = _raw(
        served.url, "GET", "/incidents", headers={**keyed, "Host": "127.0.0.1.evil.example:80"}
    )
    assert rebound_port.status_code in (403, 421)
    cross = _raw(
        served.url, "GET", "/incidents", headers={**keyed, "Origin": "https://evil.example"}
    )
    assert cross.status_code == 403 and cross.json()["error"]["code"] == "cross_origin"
    text = _raw(
        served.url,
        "POST",
        "/subscriptions",
        headers={**keyed, "Content-Type": "text/plain"},
        data=f"{CALLBACK}-text",
    )
    assert text.status_code == 415, text.text[:200]
    form = _raw(
        served.url,
        "POST",
        "/ingest",
        headers={**keyed, "Content-Type": "application/x-www-form-urlencoded"},
        data="tenant=x",
    )
    assert form.status_code == 415
    missing = _raw(served.url, "GET", "/incidents", headers=bearer)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "serve_key_required"
    wrong = _raw(served.url, "GET", "/incidents", headers={**bearer, "x-functions-key": "guess"})
    assert wrong.status_code == 401 and "guess" not in wrong.text
    # health answers without key or token, from loopback hosts only
    assert _raw(served.url, "GET", "/health").status_code == 200
    assert _raw(served.url, "GET", "/health", headers={"Host": "evil.example"}).status_code in (
        403,
        421,
    )
    check()
    by_code = _raw(served.url, "GET", "/incidents", headers=bearer, params={"code": served.key})
    assert by_code.status_code == 200, by_code.text[:200]
    localhost = _raw(
        served.url,
        "GET",
        "/incidents",
        headers={**keyed, "Host": f"localhost:{served.url.rsplit(':', 1)[1]}"},
    )
    assert localhost.status_code == 200


def test_serve_prints_its_run_key_and_each_run_has_another() -> None:
    from shared.cli.serve import build_server

    first, second = build_server("127.0.0.1", 0), build_server("127.0.0.1", 0)
    try:
        assert first.key and second.key and first.key != second.key
        assert len(first.key) >= 32
    finally:
        first.server_close()
        second.server_close()
