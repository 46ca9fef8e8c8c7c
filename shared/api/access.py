"""Who is calling and what they may do: App Service Authentication app roles and tenant access.

Function keys admit a caller to the app; when App Service Authentication (Easy Auth) is on, it
adds ``X-MS-CLIENT-PRINCIPAL`` (base64 JSON of the caller's claims) and its app roles decide
(https://learn.microsoft.com/azure/app-service/configure-authentication-user-identities).

Roles (app role *values* on the app registration):

- ``Incidents.Read``, ``Incidents.Write``, ``Hunting.Run``, ``Ingest.Run``,
  ``Subscriptions.Manage``: what the caller may do;
- tenants the caller may use: ``Tenants.All`` (every registered tenant), ``Tenant.<tenant id>``
  (that tenant), or any role named in the ``API_TENANT_ROLES`` setting
  (``Role=tid,tid;Other=tid``), for an MSSP that groups customers under one role per team.

Without the header (function key only) the caller holds every role and every registered tenant,
unless ``API_REQUIRE_CLIENT_PRINCIPAL`` is true (then it is a 401). A header can only ever narrow
what a key holder may do, so a caller forging it gains nothing. Pure.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from shared.api.http import ApiError, Request

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
PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL"
TENANT_HEADER = "X-Defender-Tenant"
#: the claim types Easy Auth uses for app roles (its ``role_typ`` names the one in use)
_ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
MAX_PRINCIPAL = 16_384


#: the subject of a caller admitted by the function key alone (no identity to tell apart)
KEY_HOLDER_SUBJECT = "function-key"
#: the claim types Easy Auth uses for the caller's tenant and object ids
_TENANT_CLAIMS = ("http://schemas.microsoft.com/identity/claims/tenantid", "tid")
_OBJECT_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")


@dataclass(frozen=True)
class Principal:
    """The caller's roles and tenants (``tenants`` None: every registered tenant).

    ``subject``: a stable id of the caller, ``<tenant id>/<object id>`` (what per-caller
    limits are keyed by).
    """

    roles: frozenset[str]
    tenants: frozenset[str] | None
    from_header: bool
    subject: str = KEY_HOLDER_SUBJECT

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
    """A function-key caller without App Service Authentication: every role and tenant."""
    return Principal(frozenset(ROLES), None, from_header=False)


def principal(
    request: Request, *, tenant_roles: Mapping[str, tuple[str, ...]], required: bool
) -> Principal:
    """The caller's principal from ``X-MS-CLIENT-PRINCIPAL``.

    Raises:
        ApiError: 401 the header is required but absent; 400 it is not base64 JSON of claims.
    """
    raw = request.headers.get(PRINCIPAL_HEADER)
    if raw is None or not raw.strip():
        if required:
            raise ApiError(
                401, "unauthenticated", "sign in: App Service Authentication is required"
            )
        return key_holder()
    if len(raw) > MAX_PRINCIPAL:
        raise ApiError(400, "invalid_principal", f"{PRINCIPAL_HEADER} is too large")
    try:
        data = json.loads(base64.b64decode(raw.strip(), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(
            400, "invalid_principal", f"{PRINCIPAL_HEADER} is not base64-encoded JSON"
        ) from None
    claims = data.get("claims") if isinstance(data, dict) else None
    if not isinstance(claims, list):
        raise ApiError(400, "invalid_principal", f"{PRINCIPAL_HEADER} has no claims list")
    role_type = data.get("role_typ")
    role_types = {*_ROLE_CLAIMS, role_type} if isinstance(role_type, str) else set(_ROLE_CLAIMS)
    roles = frozenset(
        str(c.get("val"))
        for c in claims
        if isinstance(c, dict) and c.get("typ") in role_types and isinstance(c.get("val"), str)
    )
    tid = _claim(claims, _TENANT_CLAIMS)
    oid = _claim(claims, _OBJECT_CLAIMS)
    subject = f"{tid}/{oid}" if tid and oid else "principal"
    return Principal(
        frozenset(roles), _tenants_of(roles, tenant_roles), from_header=True, subject=subject
    )


def _claim(claims: list[object], types: tuple[str, ...]) -> str | None:
    for claim in claims:
        if isinstance(claim, dict) and claim.get("typ") in types:
            value = claim.get("val")
            if isinstance(value, str) and value and len(value) <= 64:
                return value
    return None


def _tenants_of(
    roles: Collection[str], tenant_roles: Mapping[str, tuple[str, ...]]
) -> frozenset[str] | None:
    if ALL_TENANTS in roles:
        return None
    out: set[str] = set()
    for role in roles:
        if role.startswith(TENANT_ROLE_PREFIX):
            tid = _guid(role[len(TENANT_ROLE_PREFIX) :])
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
        tid = _guid(value)
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


def parse_tenant_roles(raw: str) -> dict[str, tuple[str, ...]]:
    """``API_TENANT_ROLES``: ``Role=tid,tid;Other=tid`` (ValueError naming the bad part)."""
    out: dict[str, tuple[str, ...]] = {}
    for index, part in enumerate(p.strip() for p in raw.split(";")):
        if not part:
            continue
        role, sep, tids = part.partition("=")
        tenants = tuple(_guid(t.strip()) or "" for t in tids.split(",") if t.strip())
        if not sep or not role.strip() or not tenants or "" in tenants:
            raise ValueError(
                f"entry {index + 1} must be Role=tenant-guid[,tenant-guid...] (entries split by ;)"
            )
        out[role.strip()] = tenants
    return out


def _guid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        return None
