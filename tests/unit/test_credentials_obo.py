"""Caller-token validation for on-behalf-of: only tokens Entra signed for this app get through.

The JWKS endpoint is a fake transport adapter on a real ``requests.Session``; tokens are signed
with keys made here, so forged and foreign tokens can be built precisely.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from requests.adapters import BaseAdapter

from shared.core.errors import CallerTokenError
from shared.credentials.caller import CallerTokenValidator
from shared.credentials.tokens import AppTokenProvider
from shared.credentials.user import OnBehalfOfProvider

NOW = datetime(2026, 11, 1, tzinfo=UTC)
CLIENT = "00000000-0000-0000-0000-0000000000aa"
TENANT = "11111111-1111-1111-1111-111111111111"
OID = "22222222-2222-2222-2222-222222222222"
AUTHORITY = "https://login.microsoftonline.com"
SIGNING = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Jwks(BaseAdapter):
    """Serves the tenant's keys; counts fetches."""

    def __init__(self, keys: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.keys = keys
        self.fetched: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.fetched.append(request.url or "")
        jwks = [
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key())), "kid": kid,
             "use": "sig"}
            for kid, k in self.keys
        ]  # fmt: skip
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps({"keys": jwks}).encode()
        response.request, response.url = request, request.url or ""
        return response

    def close(self) -> None:
        pass


def validator(jwks: Jwks, clock: Any = lambda: NOW) -> CallerTokenValidator:
    session = requests.Session()
    session.mount("https://", jwks)
    return CallerTokenValidator(
        authority_url=AUTHORITY,
        issuer_hosts=(AUTHORITY,),
        audiences=(CLIENT, f"api://{CLIENT}"),
        session=session,
        clock=clock,
    )


CLAIMS = {
    "aud": f"api://{CLIENT}",
    "iss": f"https://sts.windows.net/{TENANT}/",
    "tid": TENANT,
    "oid": OID,
    "scp": "access_as_user",
    "iat": int(NOW.timestamp()),
    "exp": int(NOW.timestamp()) + 3600,
}


def sign(claims: dict[str, Any] | None = None, *, key: Any = SIGNING, kid: str = "k1") -> str:
    return jwt.encode(claims or CLAIMS, key, algorithm="RS256", headers={"kid": kid})


def test_a_token_signed_by_the_tenant_for_this_app_is_accepted() -> None:
    """v1 and v2 issuers, client id and api:// audiences: the validated user comes back."""
    check = validator(Jwks([("k1", SIGNING)]))
    claims = check.validate(sign())
    assert (claims.tenant, claims.object_id) == (TENANT, OID)
    assert claims.account_id == f"{OID}.{TENANT}"
    v2 = {**CLAIMS, "aud": CLIENT, "iss": f"{AUTHORITY}/{TENANT}/v2.0"}
    assert check.validate(sign(v2)).audience == CLIENT
    assert check.fetches == 1  # keys are cached


def _unsigned(claims: dict[str, Any]) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'none', 'kid': 'k1'})}.{b64(claims)}."


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("not-a-jwt", "not a JWT"),
        (_unsigned(CLAIMS), "not signed the way Entra"),
        (jwt.encode(CLAIMS, "shared-secret-" * 3, algorithm="HS256", headers={"kid": "k1"}),
         "not signed the way Entra"),
        (sign(key=OTHER), "invalid signature"),
        (sign(kid="unknown"), "does not publish"),
        (sign({**CLAIMS, "aud": "https://graph.microsoft.com"}), "not this app"),
        (sign({**CLAIMS, "exp": int(NOW.timestamp()) - 120}), "expired"),
        (sign({**CLAIMS, "nbf": int(NOW.timestamp()) + 3600}), "not valid yet"),
        (sign({**CLAIMS, "iss": "https://evil.example/"}), "not issued by its tenant"),
        (sign({**CLAIMS, "tid": "not-a-guid"}), "no tenant"),
        (sign({k: v for k, v in CLAIMS.items() if k != "oid"}), "names no object"),
        (sign({**CLAIMS, "aud": "api://x\r\nInjected: 1"}), "not this app"),
        ("e" * 20_000, "too long"),
    ],
)  # fmt: skip
def test_forged_foreign_and_expired_tokens_are_refused(token: str, message: str) -> None:
    """Unsigned, wrongly signed, foreign, expired and app-only tokens are 401-type errors."""
    with pytest.raises(CallerTokenError, match=message) as info:
        validator(Jwks([("k1", SIGNING)])).validate(token)
    assert token not in str(info.value)
    assert "\r" not in str(info.value) and "\n" not in str(info.value)
    assert info.value.code == "invalid_caller_token"


def test_claims_carry_roles_scopes_and_the_subject() -> None:
    """App tokens (roles, no scp) are valid callers of the API; only user tokens can be the
    assertion of an on-behalf-of exchange (``is_user``)."""
    check = validator(Jwks([("k1", SIGNING)]))
    app = {k: v for k, v in CLAIMS.items() if k != "scp"}
    claims = check.validate(sign({**app, "roles": ["Incidents.Read", 7], "appid": CLIENT}))
    assert claims.roles == ("Incidents.Read",) and not claims.is_user
    assert claims.subject == f"{TENANT}/{OID}" and claims.app_id == CLIENT
    user = check.validate(sign({**CLAIMS, "scp": "access_as_user other"}))
    assert user.is_user and user.scopes == ("access_as_user", "other") and user.roles == ()


def test_unknown_key_refetches_once_then_waits() -> None:
    """A rolled key is picked up by one refetch; repeated unknown kids do not hammer Entra."""
    jwks = Jwks([("k1", SIGNING)])
    clock = {"now": NOW}
    check = validator(jwks, clock=lambda: clock["now"])
    check.validate(sign())
    jwks.keys.append(("k2", OTHER))
    clock["now"] = NOW + timedelta(minutes=6)
    rolled = {**CLAIMS, "iat": int(clock["now"].timestamp())}
    assert check.validate(sign(rolled, key=OTHER, kid="k2")).object_id == OID
    for _ in range(3):
        with pytest.raises(CallerTokenError):
            check.validate(sign(rolled, kid="k9"))
    assert len(jwks.fetched) == 2
    assert jwks.fetched[0] == f"{AUTHORITY}/{TENANT}/discovery/v2.0/keys"


class NoCredential:
    """A credential source that must never be reached: refusal happens before any exchange."""

    kind = "secret"

    def current(self) -> tuple[str, Any]:
        raise AssertionError("the credential was read: the caller token was not validated first")

    def invalidate(self) -> None:
        pass

    def describe(self) -> Any:
        raise AssertionError("unused")


def test_obo_provider_refuses_a_forged_token_before_any_exchange() -> None:
    """The provider validates first, so a forged token never reaches MSAL or its cache."""
    apps = AppTokenProvider(
        client_id=CLIENT,
        authority_url=AUTHORITY,
        http_client=requests.Session(),
        credential=NoCredential(),  # type: ignore[arg-type]
    )
    provider = OnBehalfOfProvider(apps, validator=validator(Jwks([("k1", SIGNING)])))
    with pytest.raises(CallerTokenError):
        provider.token(_unsigned(CLAIMS), "https://graph.microsoft.com/.default")
    app_only = sign({k: v for k, v in CLAIMS.items() if k != "scp"})
    with pytest.raises(CallerTokenError, match="app token"):
        provider.token(app_only, "https://graph.microsoft.com/.default")
    assert provider.exchanges == 0
