"""Who is calling and what they may do: Entra ID access tokens, app roles and tenant access.

Every route but ``GET /health`` and ``GET /consent/callback`` admits a caller only on an Entra ID
access token for this API that the app validates itself (``shared.credentials.caller``): RS256
signed by the home tenant's published keys, issued by the home tenant (v1 or v2 issuer of the
configured cloud), for this API's Application ID URI or client id, within its lifetime. Nothing
else the caller writes grants anything: ``X-MS-CLIENT-PRINCIPAL`` (App Service Authentication's
header, which the platform neither strips nor sets when the feature is off) is never read, and
``X-Defender-Tenant`` only names the tenant a caller asks for
(https://learn.microsoft.com/entra/identity-platform/access-tokens#validate-tokens).

What a caller may do comes only from the validated token's ``roles`` claim (app roles assigned
to users, groups, apps and managed identities) and the ``API_TENANT_ROLES`` mapping:

- ``Incidents.Read``, ``Incidents.Write``, ``Hunting.Run``, ``Ingest.Run``,
  ``Subscriptions.Manage``: what the caller may do;
- tenants the caller may use: ``Tenants.All`` (every registered tenant), ``Tenant.<tenant id>``
  (that tenant), or any role named in the ``API_TENANT_ROLES`` setting
  (``Role=tid,tid;Other=tid``), for an MSSP that groups customers under one role per team.

``API_AUTH_MODE=key`` (a single-team deployment) admits a caller on the Functions host's function
key alone (under ``serve``, its run key), with every role in every registered tenant; a token
sent anyway is still validated and then decides. The key itself is checked in front of the app:
by the host (those routes are indexed at the ``function`` level in that mode, see
``host_auth_level``) or by ``serve``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from shared.api.http import ApiError, Request
from shared.core.errors import AuthError, CallerTokenError
from shared.core.guids import guid

if TYPE_CHECKING:
    from shared.credentials.values import CallerClaims
    from shared.ports import CallerValidator

READ, WRITE, HUNT, INGEST, SUBSCRIBE = (
    "Incidents.Read",
    "Incidents.Write",
    "Hunting.Run",
    "Ingest.Run",
    "Subscriptions.Manage",
)
ROLES = (READ, WRITE, HUNT, INGEST, SUBSCRIBE)
ALL_TENANTS = "Tenants.All"
TENANT_ROLE_PREFIX = "Tenant."
TENANT_HEADER = "X-Defender-Tenant"
#: where the Functions host (and ``serve``) take a function key from
KEY_HEADER, KEY_PARAMETER = "x-functions-key", "code"
#: the ``subject`` of callers admitted on a key (``API_AUTH_MODE=key``)
KEY_SUBJECT = "function-key"
AuthMode = Literal["entra", "key"]
_NOT_IN_CHALLENGE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


@dataclass(frozen=True)
class Principal:
    """The caller: roles, tenants (None: every registered tenant) and a stable ``subject``
    (``<tenant>/<object id>`` from the token; ``function-key`` for a key-only caller).

    ``claims`` and ``token`` are the validated token (None for a key-only caller): the token is
    the assertion of an on-behalf-of exchange (``?context=user``) and is never shown."""

    roles: frozenset[str]
    tenants: frozenset[str] | None
    subject: str
    claims: CallerClaims | None = None
    token: str | None = field(default=None, repr=False)

    def require(self, role: str | None) -> None:
        """Raises ApiError 403 naming ``role`` when the caller lacks it."""
        if role is not None and role not in self.roles:
            raise ApiError(
                403, "missing_role", f"the caller lacks the app role '{role}' for this operation"
            )

    def may_use(self, tenant: str) -> bool:
        """Whether the caller may act in ``tenant``."""
        return self.tenants is None or tenant in self.tenants


def key_holder() -> Principal:
    """A caller admitted on a key alone (``API_AUTH_MODE=key``): every role and tenant."""
    return Principal(frozenset(ROLES), None, KEY_SUBJECT)


def anonymous() -> Principal:
    """The caller of an anonymous route (health, consent callback): no role, no tenant."""
    return Principal(frozenset(), frozenset(), "anonymous")


def from_claims(
    claims: CallerClaims, token: str, tenant_roles: Mapping[str, tuple[str, ...]]
) -> Principal:
    """The principal of a validated token: its roles, the tenants they grant."""
    roles = frozenset(claims.roles)
    return Principal(roles, _tenants_of(roles, tenant_roles), claims.subject, claims, token)


def bearer_token(request: Request, realm: str | None = None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (RFC 6750), or None when there is no
    such header. Another scheme or an empty token is a 401."""
    raw = request.headers.get("Authorization")
    if raw is None:
        return None
    scheme, _, token = raw.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated(
            "send an Entra ID access token as 'Authorization: Bearer <token>'",
            invalid=True,
            realm=realm,
        )
    return token.strip()


def has_key(request: Request) -> bool:
    """Whether the request carries a function key (header or ``code``), whatever its value."""
    return bool(request.headers.get(KEY_HEADER) or request.query.get(KEY_PARAMETER))


def challenge(*, realm: str | None = None, invalid: str | None = None) -> str:
    """The ``WWW-Authenticate`` value of every 401 (RFC 6750 section 3): ``Bearer``, with the
    realm if given, and ``error="invalid_token"`` with ``invalid`` as its description when the
    token sent was refused (a request without one gets no error code)."""
    parts = [f'realm="{realm}"'] if realm else []
    if invalid is not None:
        # RFC 6750 section 3: error_description holds %x20-21 / %x23-5B / %x5D-7E only
        description = _NOT_IN_CHALLENGE.sub("?", invalid.replace('"', "'"))
        parts += ['error="invalid_token"', f'error_description="{description}"']
    return "Bearer" + (" " + ", ".join(parts) if parts else "")


def unauthenticated(
    message: str, *, invalid: bool = False, realm: str | None = None, code: str | None = None
) -> ApiError:
    """A 401 with the RFC 6750 challenge (``error="invalid_token"`` when a token was sent);
    ``code``: the error code (default ``invalid_token``, or ``unauthenticated`` without one)."""
    return ApiError(
        401,
        code or ("invalid_token" if invalid else "unauthenticated"),
        message,
        {"WWW-Authenticate": challenge(realm=realm, invalid=message if invalid else None)},
    )


class Authenticator:
    """Turns a request into a ``Principal`` or a 401 (one per process: its validator caches
    the home tenant's signing keys).

    Args:
        mode: ``entra`` (a valid token is required) or ``key`` (see the module docstring).
        validator: checks tokens (issuer, audience, keys of the home tenant).
        tenant_roles: the ``API_TENANT_ROLES`` mapping.
        audience: the Application ID URI, named in challenges and messages.
    """

    def __init__(
        self,
        *,
        mode: AuthMode,
        validator: Callable[[], CallerValidator],
        tenant_roles: Mapping[str, tuple[str, ...]],
        audience: str,
    ) -> None:
        self._mode = mode
        self._validator = validator
        self._tenant_roles = dict(tenant_roles)
        self._audience = audience

    def authenticate(self, request: Request) -> Principal:
        """The caller of ``request``.

        Raises:
            ApiError: 401 no token (and, in key mode, no key) or an invalid token; 503 the
                signing keys cannot be fetched now.
        """
        token = bearer_token(request, realm=self._audience)
        if token is None:
            if self._mode == "key" and has_key(request):
                return key_holder()
            hint = (
                " (a function key alone is not accepted)"
                if has_key(request) and self._mode == "entra"
                else ""
            )
            raise unauthenticated(
                f"this API needs an Entra ID access token for {self._audience} in "
                f"'Authorization: Bearer <token>'{hint}",
                realm=self._audience,
            )
        try:
            claims = self._validator().validate(token)
        except CallerTokenError as exc:
            raise unauthenticated(str(exc), invalid=True, realm=self._audience) from None
        except AuthError:
            raise ApiError(
                503,
                "token_keys_unavailable",
                "the signing keys of this app's tenant cannot be fetched now; retry later",
                {"Retry-After": "30"},
            ) from None
        return from_claims(claims, token, self._tenant_roles)


def host_auth_level(environ: Mapping[str, str]) -> Literal["anonymous", "function"]:
    """The Functions host's authorization level for the authenticated routes.

    ``entra`` (the default): anonymous at the host, because the host grants its ``function``
    level only to a function key, never to an App Service Authentication identity, so a Logic
    App calling with its managed identity and no key would be refused; the app checks the
    token itself. ``key``: ``function``, so the host checks the key. Any other value fails
    closed (``function``; the settings error then answers 503). Pure, cheap and never raises:
    ``function_app.py`` calls it at import time (docs/http-auth.md).
    """
    mode = (environ.get("API_AUTH_MODE") or "").strip().lower()
    return "anonymous" if mode in ("", "entra") else "function"


def _tenants_of(
    roles: Collection[str], tenant_roles: Mapping[str, tuple[str, ...]]
) -> frozenset[str] | None:
    if ALL_TENANTS in roles:
        return None
    out: set[str] = set()
    for role in roles:
        if role.startswith(TENANT_ROLE_PREFIX):
            tid = guid(role[len(TENANT_ROLE_PREFIX) :])
            if tid:
                out.add(tid)
        out.update(tenant_roles.get(role, ()))
    return frozenset(out)


def requested_tenant(request: Request, body_tenant: str | None = None) -> str | None:
    """The tenant named by the ``tenant`` query parameter, the header or the body (checked).

    Raises:
        ApiError: 400 not a GUID, or two places name different tenants.
    """
    named = {
        where: value
        for where, value in (
            ("query parameter 'tenant'", request.param("tenant")),
            (f"header {TENANT_HEADER}", request.headers.get(TENANT_HEADER)),
            ("body field 'tenant'", body_tenant),
        )
        if value
    }
    tenants = set()
    for where, value in named.items():
        tid = guid(value)
        if tid is None:
            raise ApiError(400, "invalid_tenant", f"{where} is not a tenant GUID")
        tenants.add(tid)
    if len(tenants) > 1:
        raise ApiError(400, "invalid_tenant", "the request names two different tenants")
    return tenants.pop() if tenants else None


def check_tenant(tenant: str, caller: Principal, registered: Collection[str]) -> str:
    """``tenant`` if the caller may use it and it is registered.

    A caller restricted to some tenants gets the same 403 for a tenant outside them whether or
    not it is registered, so the answer reveals nothing about other customers.

    Raises:
        ApiError: 403 not allowed for this caller; 404 not a registered tenant.
    """
    if not caller.may_use(tenant):
        raise ApiError(403, "tenant_forbidden", f"the caller may not use tenant {tenant}")
    if tenant not in registered:
        raise ApiError(404, "tenant_not_registered", f"tenant {tenant} is not registered")
    return tenant
