"""Validation of an HTTP caller's Entra access token before it is used for anything.

A web API must validate the signature, issuer, audience and lifetime of every token it receives
(https://learn.microsoft.com/entra/identity-platform/access-tokens#validate-tokens). The HTTP API
admits a caller only on such a token (``shared.api.access``), and the same validated token is the
assertion of an on-behalf-of exchange. Local validation matters there even though Entra checks
the assertion too: the exchange result is cached per user, and a cache hit never reaches Entra,
so a forged token naming another user's ``oid``/``tid`` would be served that user's token.

What is checked: the header names RS256 and a key id (``none``, HS256 and every other algorithm
are refused before any key is looked at, so a public key can never serve as an HMAC secret);
the signature, by a key the issuing tenant publishes; ``iss`` is that tenant's v1 or v2 issuer;
``aud`` is one of the API's audiences; ``exp`` and ``nbf`` against the injected clock with
``LEEWAY_SECONDS``; ``tid`` and ``oid`` are GUIDs.

Signing keys come from the tenant's JWKS document (``{authority}/{tenant}/discovery/v2.0/keys``;
the same keys sign v1 and v2 tokens), fetched with the process's HTTP session, cached for a day
and fetched again at most once per ``JWKS_REFRESH_GAP`` when a token names an unknown key
(Entra rolls keys).

The issuing tenant is read from the token before its signature can be checked, so anyone can
name any tenant: keys are fetched only for tenants ``tenant_allowed`` accepts (the home tenant),
a failed fetch is remembered for ``JWKS_FAILURE_TTL`` so it is not retried on every call, and at
most ``MAX_TENANTS`` key sets are kept (least recently used dropped first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import requests

from shared.core.clock import Clock
from shared.core.errors import AuthError, CallerTokenError
from shared.core.guids import guid
from shared.credentials.values import CallerClaims

#: clock skew tolerated on ``exp``/``nbf``
LEEWAY_SECONDS = 60
JWKS_TTL = timedelta(hours=24)
#: a token naming an unknown key triggers at most one refetch in this period
JWKS_REFRESH_GAP = timedelta(minutes=5)
#: a tenant whose keys could not be fetched is not asked again for this long
JWKS_FAILURE_TTL = timedelta(minutes=5)
#: key sets kept at most (least recently used dropped first)
MAX_TENANTS = 1000
#: keys kept per tenant at most (Entra publishes a handful)
MAX_KEYS = 64
#: a longer Authorization value is refused unparsed (Entra's tokens are a few KB)
MAX_TOKEN_LENGTH = 16_384
#: the v1 issuer's host in the global and US Government clouds
V1_ISSUER_HOST = "https://sts.windows.net"


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
        v1_issuer_host: the host of v1 issuers, ``<host>/<tid>/`` (``shared.core.clouds``).
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
        v1_issuer_host: str = V1_ISSUER_HOST,
    ) -> None:
        self._authority = authority_url.rstrip("/")
        self._v1_host = v1_issuer_host.rstrip("/")
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
                another audience, or expired (an HTTP front end answers 401). The message says
                what is wrong and never quotes the token.
            AuthError: the signing keys could not be fetched.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise CallerTokenError("the caller's token is too long to be an Entra access token")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError):
            raise CallerTokenError("the caller's token is not a JWT") from None
        if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
            raise CallerTokenError(
                "the caller's token is not signed the way Entra signs tokens (RS256 with a key id)"
            )
        tenant = guid(unverified.get("tid"))
        if tenant is None:
            raise CallerTokenError("the caller's token has no tenant (tid): not an Entra token")
        if self._tenant_allowed is not None and not self._tenant_allowed(tenant):
            raise CallerTokenError(
                f"the caller's token was issued by tenant {tenant}, whose callers this app "
                "does not admit"
            )
        key = self._key(tenant, header["kid"])
        issuers = [f"{self._v1_host}/{tenant}/"] + [
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
            # the audience is the caller's text: printable ASCII only, and short
            audience = "".join(
                c if " " <= c <= "~" else "?" for c in str(unverified.get("aud", "?"))[:120]
            )
            raise CallerTokenError(
                f"the caller's token is for audience '{audience}', not this app: request a "
                f"token for {self._audiences[0]}"
            ) from None
        except jwt.InvalidIssuerError:
            raise CallerTokenError(
                "the caller's token was not issued by its tenant in this app's cloud"
            ) from None
        except jwt.InvalidSignatureError:
            raise CallerTokenError(
                "the caller's token has an invalid signature (not signed by its tenant's key)"
            ) from None
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
        oid = guid(claims.get("oid"))
        if oid is None:
            raise CallerTokenError(
                "the caller's token names no object (oid): not an Entra access token"
            )
        if guid(claims.get("tid")) != tenant:  # what was signed is what was read above
            raise CallerTokenError("the caller's token has no tenant (tid): not an Entra token")
        roles = claims.get("roles")
        scopes = claims.get("scp")
        app_id = claims.get("appid") or claims.get("azp")
        return CallerClaims(
            tenant=tenant,
            object_id=oid,
            audience=str(claims["aud"]),
            expires=datetime.fromtimestamp(expires, tz=UTC),
            roles=tuple(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else (),
            scopes=tuple(scopes.split()) if isinstance(scopes, str) else (),
            app_id=str(app_id) if app_id else None,
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
                for jwk in document["keys"][:MAX_KEYS]
                if jwk.get("kty") == "RSA" and "kid" in jwk
            }
        except (ValueError, KeyError, TypeError, jwt.PyJWTError) as exc:
            raise AuthError(
                f"the signing keys of tenant {tenant} are malformed", tenant=tenant
            ) from exc
        return keys
