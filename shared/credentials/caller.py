"""Validation of an HTTP caller's Entra access token before it is used for anything.

A web API must validate the signature, issuer, audience and lifetime of every token it receives
(https://learn.microsoft.com/entra/identity-platform/access-tokens#validate-tokens). This
matters here even though Entra also checks the token during the on-behalf-of exchange: the
exchange result is cached per user, and a cache hit never reaches Entra, so without local
validation a forged token naming another user's ``oid``/``tid`` would be served that user's
Defender token.

Signing keys come from the tenant's JWKS document (``{authority}/{tenant}/discovery/v2.0/keys``;
the same keys sign v1 and v2 tokens), fetched with the process's HTTP session, cached for a day
and fetched again once when a token names an unknown key (Entra rolls keys).

The issuing tenant is read from the token before its signature can be checked, so anyone can
name any tenant: keys are fetched only for tenants ``tenant_allowed`` accepts (the registry's),
a failed fetch is remembered for ``JWKS_FAILURE_TTL`` so it is not retried on every call, and at
most ``MAX_TENANTS`` key sets are kept (least recently used dropped first).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import requests

from shared.clock import Clock
from shared.errors import AuthError, CallerTokenError

#: clock skew tolerated on ``exp``/``nbf``
LEEWAY_SECONDS = 60
JWKS_TTL = timedelta(hours=24)
#: a token naming an unknown key triggers at most one refetch in this period
JWKS_REFRESH_GAP = timedelta(minutes=5)
#: a tenant whose keys could not be fetched is not asked again for this long
JWKS_FAILURE_TTL = timedelta(minutes=5)
#: key sets kept at most (an MSSP's customers; least recently used dropped first)
MAX_TENANTS = 1000


@dataclass(frozen=True, slots=True)
class CallerClaims:
    """The validated identity of a caller."""

    tenant: str
    object_id: str
    audience: str
    expires: datetime

    @property
    def account_id(self) -> str:
        """MSAL's ``home_account_id`` of this user."""
        return f"{self.object_id}.{self.tenant}"


@dataclass
class _KeySet:
    keys: dict[str, Any]
    fetched: datetime


class CallerTokenValidator:
    """Checks caller tokens: RS256 signature by the tenant's keys, issuer, audience, lifetime.

    Args:
        authority_url: the Entra host the app uses (keys are fetched there).
        issuer_hosts: hosts whose ``https://<host>/<tid>/v2.0`` is an accepted v2 issuer (the
            cloud's canonical authority and, for the emulator, the override).
        audiences: accepted ``aud`` values (the app's client id and Application ID URI).
        session: the process's HTTP session (trusts the emulator CA in emulator mode).
        clock: now, tz-aware UTC.
    """

    def __init__(
        self,
        *,
        authority_url: str,
        issuer_hosts: tuple[str, ...],
        audiences: tuple[str, ...],
        session: requests.Session,
        clock: Clock,
        timeout: float = 10.0,
        tenant_allowed: Callable[[str], bool] | None = None,
        max_tenants: int = MAX_TENANTS,
    ) -> None:
        self._authority = authority_url.rstrip("/")
        self._issuer_hosts = tuple(dict.fromkeys(h.rstrip("/") for h in issuer_hosts))
        self._audiences = tuple(dict.fromkeys(a.rstrip("/") for a in audiences))
        self._session = session
        self._clock = clock
        self._timeout = timeout
        self._keys: OrderedDict[str, _KeySet] = OrderedDict()
        self._failures: OrderedDict[str, tuple[datetime, CallerTokenError | AuthError]] = (
            OrderedDict()
        )
        self._tenant_allowed = tenant_allowed
        self._max_tenants = max_tenants
        self._lock = threading.Lock()
        self.fetches = 0

    def validate(self, token: str) -> CallerClaims:
        """The caller's validated claims.

        Raises:
            CallerTokenError: the token is malformed, not signed by Entra for this tenant, for
                another audience, or expired (an HTTP front end answers 401).
            AuthError: the signing keys could not be fetched.
        """
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise CallerTokenError("the caller's token is not a JWT") from None
        if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
            raise CallerTokenError("the caller's token is not signed the way Entra signs tokens")
        tenant = _guid(unverified.get("tid"))
        if tenant is None:
            raise CallerTokenError("the caller's token has no tenant (tid): not an Entra token")
        if self._tenant_allowed is not None and not self._tenant_allowed(tenant):
            raise CallerTokenError("the caller's token is from a tenant this app does not serve")
        key = self._key(tenant, header["kid"])
        issuers = [f"https://sts.windows.net/{tenant}/"] + [
            f"{host}/{tenant}/v2.0" for host in self._issuer_hosts
        ]
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=["RS256"],
                audience=list(self._audiences),
                issuer=issuers,
                # lifetime is checked below against the injected clock, not PyJWT's time.time()
                options={
                    "require": ["exp", "iss", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError:
            raise CallerTokenError(
                f"the caller's token is for audience '{unverified.get('aud', '?')}', not this "
                "app: request a token for this app's Application ID URI"
            ) from None
        except jwt.InvalidIssuerError:
            raise CallerTokenError("the caller's token was not issued by its tenant") from None
        except jwt.PyJWTError as exc:
            raise CallerTokenError(
                f"the caller's token is not valid ({type(exc).__name__})"
            ) from None
        now = self._clock().timestamp()
        try:
            expires, not_before = float(claims["exp"]), float(claims.get("nbf", 0))
        except (TypeError, ValueError):
            raise CallerTokenError("the caller's token has a malformed lifetime") from None
        if expires + LEEWAY_SECONDS <= now:
            raise CallerTokenError("the caller's token has expired: sign in again")
        if not_before - LEEWAY_SECONDS > now:
            raise CallerTokenError("the caller's token is not valid yet (check the clock)")
        oid = _guid(claims.get("oid"))
        if oid is None:
            raise CallerTokenError("the caller's token has no user (oid): not a user token")
        if "scp" not in claims:
            # app-only tokens carry roles, not scp: there is no user to act for
            raise CallerTokenError("the caller's token is an app token, not a user's")
        return CallerClaims(
            tenant=tenant,
            object_id=oid,
            audience=str(claims["aud"]),
            expires=datetime.fromtimestamp(expires, tz=UTC),
        )

    def _key(self, tenant: str, kid: str) -> Any:
        now = self._clock()
        with self._lock:
            failed = self._failures.get(tenant)
            if failed is not None:
                if now - failed[0] < JWKS_FAILURE_TTL:
                    raise failed[1]
                del self._failures[tenant]
            cached = self._keys.get(tenant)
            if cached is not None:
                self._keys.move_to_end(tenant)
            fresh = cached is not None and now - cached.fetched < JWKS_TTL
            if fresh and cached is not None and kid in cached.keys:
                return cached.keys[kid]
            may_refetch = cached is None or not fresh or now - cached.fetched >= JWKS_REFRESH_GAP
            if may_refetch:
                try:
                    cached = _KeySet(self._fetch(tenant), now)
                except (CallerTokenError, AuthError) as exc:
                    self._failures[tenant] = (now, exc)
                    while len(self._failures) > self._max_tenants:
                        self._failures.popitem(last=False)
                    raise
                self._keys[tenant] = cached
                self._keys.move_to_end(tenant)
                while len(self._keys) > self._max_tenants:
                    self._keys.popitem(last=False)
        if cached is None or kid not in cached.keys:
            raise CallerTokenError(
                "the caller's token is signed by a key its tenant does not publish"
            )
        return cached.keys[kid]

    def _fetch(self, tenant: str) -> dict[str, Any]:
        url = f"{self._authority}/{tenant}/discovery/v2.0/keys"
        self.fetches += 1
        try:
            response = self._session.get(url, timeout=self._timeout)
        except requests.RequestException as exc:
            raise AuthError(
                f"could not fetch the signing keys of tenant {tenant} ({type(exc).__name__})",
                tenant=tenant,
            ) from exc
        if response.status_code != 200:
            raise CallerTokenError(
                f"tenant {tenant} publishes no signing keys (HTTP {response.status_code})"
            )
        try:
            document = response.json()
            keys = {
                str(jwk["kid"]): jwt.PyJWK(jwk, algorithm="RS256").key
                for jwk in document["keys"]
                if jwk.get("kty") == "RSA" and "kid" in jwk
            }
        except (ValueError, KeyError, TypeError, jwt.PyJWTError) as exc:
            raise AuthError(
                f"the signing keys of tenant {tenant} are malformed", tenant=tenant
            ) from exc
        return keys


def _guid(value: object) -> str | None:
    try:
        return str(uuid.UUID(str(value))) if value else None
    except ValueError:
        return None
