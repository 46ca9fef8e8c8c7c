"""Users and delegated (user) tokens: seeded users, caller tokens, on-behalf-of, device code and
refresh-token grants.

Wire formats are from defender-api.md §3.3 (on-behalf-of), §3.4 (device code), §3.5 (refresh),
§3.6 (token response fields) and §3.7 (AADSTS errors); MSAL's expectations from §4 and
local-cloud-notes.md §1. Delegated access tokens have the same v1 shape as the app tokens of
`emulator.entra`, with the user's claims (`oid`, `upn`, `name`, `unique_name`) and `scp`, the
space-separated delegated permissions the user granted the app for that resource, in place of
`roles` (§1.1: "`scp` for delegated tokens").

Choices where the docs are silent (also listed in the README):
- The app registration allows public client flows, so a device-code or refresh-token request
  with no client credential is a public client (`appidacr` "0"). A refresh token issued to a
  confidential client (OBO, or device code with a secret) needs the credential again.
- Response `scope` is exactly the requested scopes minus the OIDC ones (as in the documented
  OBO example), so MSAL caches under what it asked for and `acquire_token_silent` hits;
  `scp` in the access token holds every permission the user granted for that resource.
- `id_token` only when `openid` is requested, `refresh_token` only with `offline_access`,
  `client_info` only when the request carries `client_info=1` (MSAL always sends all three).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from emulator import data
from emulator.entra import (
    FAMILY_OF_RESOURCE,
    GRAPH_RESOURCES,
    LEGACY_RESOURCES,
    RESOURCE_APP_IDS,
    ClientAuth,
    EntraService,
    GrantHandler,
    Tenant,
    TokenError,
    aad_error,
    missing_parameter,
)
from emulator.http import Request, Response, json_response

GRANT_ON_BEHALF_OF = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_REFRESH_TOKEN = "refresh_token"

OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
# The scope a caller's client gets for this web API (Expose an API > scope name).
CALLER_SCOPE = "access_as_user"

# Delegated permissions of each resource (§1.1 table, right column; §2.1).
DELEGATED_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "legacy": ("Incident.Read", "Incident.ReadWrite", "AdvancedHunting.Read"),
    "graph": (
        "SecurityIncident.Read.All",
        "SecurityIncident.ReadWrite.All",
        "SecurityAlert.Read.All",
        "SecurityAlert.ReadWrite.All",
        "ThreatHunting.Read.All",
        "User.Read",
    ),
    "vault": ("user_impersonation",),
}
FULL_CONSENT: dict[str, tuple[str, ...]] = {
    "legacy": ("Incident.Read", "Incident.ReadWrite", "AdvancedHunting.Read"),
    "graph": (
        "SecurityIncident.Read.All",
        "SecurityIncident.ReadWrite.All",
        "SecurityAlert.Read.All",
        "SecurityAlert.ReadWrite.All",
        "ThreatHunting.Read.All",
    ),
}
READ_CONSENT: dict[str, tuple[str, ...]] = {
    "legacy": ("Incident.Read", "AdvancedHunting.Read"),
    "graph": ("SecurityIncident.Read.All", "SecurityAlert.Read.All", "ThreatHunting.Read.All"),
}
# (mail nickname, given name, family name, consents) of the users seeded in every tenant.
SEEDED_USERS: tuple[tuple[str, str, str, dict[str, tuple[str, ...]]], ...] = (
    ("analyst", "Alex", "Analyst", FULL_CONSENT),
    ("reader", "Riley", "Reader", READ_CONSENT),
    ("newhire", "Noa", "Newhire", {}),
)
_USER_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_ID_TOKEN_LIFETIME = 3600


@dataclass(frozen=True, slots=True)
class User:
    """A member user of one tenant and the delegated permissions it granted the app."""

    tenant_id: str
    oid: str
    upn: str
    given_name: str
    family_name: str
    # family ("legacy" | "graph" | "vault") -> delegated permissions granted to the app
    consents: Mapping[str, tuple[str, ...]]

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    def to_json(self) -> dict[str, Any]:
        """The user as the admin API shows it."""
        return {
            "tenant": self.tenant_id,
            "oid": self.oid,
            "upn": self.upn,
            "name": self.name,
            "consents": {k: list(v) for k, v in self.consents.items()},
        }


@dataclass(slots=True)
class DeviceCode:
    """One device authorization request (§3.4) and what the user did with it."""

    device_code: str
    user_code: str
    tenant_id: str
    client_id: str
    scope: str
    created: float
    expires: float
    status: str = "pending"  # pending | approved | declined
    user_oid: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The request as the admin API shows it (never the device code)."""
        return {
            "user_code": self.user_code,
            "tenant": self.tenant_id,
            "client_id": self.client_id,
            "scope": self.scope,
            "status": self.status,
            "user": self.user_oid,
            "expires_on": int(self.expires),
        }


@dataclass(frozen=True, slots=True)
class RefreshGrant:
    """What a refresh token stands for."""

    tenant_id: str
    user_oid: str
    client_id: str
    issued: float
    expires: float
    confidential: bool  # issued to a client that proved a credential; it must prove it again


@dataclass
class DelegatedState:
    """Users, pending device codes, live refresh tokens and the auto-approval setting."""

    users: dict[str, User]  # by oid
    caller_client_id: str
    device_codes: dict[str, DeviceCode] = field(default_factory=dict)  # by device code
    refresh_tokens: dict[str, RefreshGrant] = field(default_factory=dict)
    # tenant id -> (user oid, approve?) applied to every new device code of that tenant
    auto: dict[str, tuple[str, bool]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def find_user(self, selector: str, tenant_id: str | None = None) -> User | None:
        """A user by object id or UPN (case-insensitive), optionally only in one tenant."""
        wanted = selector.strip().lower()
        for user in self.users.values():
            if tenant_id is not None and user.tenant_id != tenant_id:
                continue
            if wanted in (user.oid.lower(), user.upn.lower()):
                return user
        return None

    def by_user_code(self, user_code: str) -> DeviceCode | None:
        """A device authorization by its user code (case-insensitive, dashes ignored)."""
        wanted = user_code.replace("-", "").strip().upper()
        return next((d for d in self.device_codes.values() if d.user_code == wanted), None)


def seed_users(seed: int, tenants: Mapping[str, Tenant]) -> dict[str, User]:
    """The users of every tenant (stable for a seed): analyst (every Defender and Graph
    security permission consented), reader (read-only ones), newhire (nothing consented)."""
    users: dict[str, User] = {}
    for tid, tenant in tenants.items():
        rng = random.Random(f"emulator-users:{seed}:{tid}")
        for nickname, given, family, consents in SEEDED_USERS:
            oid = data.make_guid(rng)
            users[oid] = User(tid, oid, f"{nickname}@{tenant.domain}", given, family, consents)
    return users


def caller_client_id(seed: int) -> str:
    """Client id of the app a user signs in to and that calls this web API (the OBO caller)."""
    return data.make_guid(random.Random(f"emulator-caller-app:{seed}"))


def app_id_uri(client_id: str) -> str:
    """The app's Application ID URI (the default one the portal proposes)."""
    return f"api://{client_id}"


# ---------------------------------------------------------------------------------- scopes


@dataclass(frozen=True, slots=True)
class ScopeRequest:
    """A user-flow `scope` parameter: one resource's permissions plus OIDC scopes."""

    requested: tuple[str, ...]  # the non-OIDC scopes as sent (order kept, no duplicates)
    oidc: frozenset[str]
    resource: str
    family: str
    permissions: tuple[str, ...]  # explicit permission names; empty for `/.default`

    @property
    def default(self) -> bool:
        return not self.permissions


@dataclass(frozen=True, slots=True)
class ScopeProblem:
    """Why a scope parameter is refused: the `error`, AADSTS code and message."""

    error: str
    code: int
    message: str


_RESOURCE_OF_APP_ID = {
    RESOURCE_APP_IDS["legacy"]: LEGACY_RESOURCES[0],
    RESOURCE_APP_IDS["graph"]: GRAPH_RESOURCES[0],
}


def parse_scopes(raw: str) -> ScopeRequest | ScopeProblem:
    """Split `scope` into OIDC scopes and one resource's permissions.

    A permission is `<resource>/<name>` or `<resource>/.default`; a bare name is a Microsoft
    Graph permission (Entra's rule for scopes without a resource). Scopes of two resources
    (AADSTS28000), `.default` mixed with named permissions of the same resource, names the
    resource does not define (AADSTS70011) and unknown resources (AADSTS500011) are refused.
    """
    tokens = list(dict.fromkeys(raw.split()))
    oidc = frozenset(t for t in tokens if t in OIDC_SCOPES)
    requested = tuple(t for t in tokens if t not in OIDC_SCOPES)
    if not requested:
        return ScopeProblem(
            "invalid_scope",
            70011,
            f"The provided value for the input parameter 'scope' is not valid. The scope '{raw}' "
            "names no resource.",
        )
    parsed: list[tuple[str, str]] = []
    for scope in requested:
        if "/" in scope:
            resource, _, name = scope.rstrip("/").rpartition("/")
            resource = resource.rstrip("/")
            resource = _RESOURCE_OF_APP_ID.get(resource, resource)
        else:
            resource, name = GRAPH_RESOURCES[0], scope
        parsed.append((resource, name))
    resources = {r.lower() for r, _ in parsed}
    if len(resources) > 1:
        return ScopeProblem(
            "invalid_scope",
            28000,
            "Provided value for the input parameter scope is not valid because it contains more "
            f"than one resource. Scope {' '.join(requested)} is not valid.",
        )
    resource = parsed[0][0]
    family = FAMILY_OF_RESOURCE.get(resource)
    if family is None or family == "exchange":
        return ScopeProblem(
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant. This can "
            "happen if the application has not been installed by the administrator of the "
            "tenant or consented to by any user in the tenant.",
        )
    names = [n for _, n in parsed]
    if ".default" in names and len(names) > 1:
        return ScopeProblem(
            "invalid_scope",
            70011,
            f"The provided value for the input parameter 'scope' is not valid. The scope "
            f"'{' '.join(requested)}' is not valid: '.default' cannot be combined with other "
            "scopes of the same resource.",
        )
    permissions = tuple(n for n in names if n != ".default")
    known = {p.lower(): p for p in DELEGATED_PERMISSIONS.get(family, ())}
    unknown = [p for p in permissions if p.lower() not in known]
    if unknown:
        return ScopeProblem(
            "invalid_scope",
            70011,
            f"The provided value for the input parameter 'scope' is not valid. The scope "
            f"'{unknown[0]}' does not exist on the resource '{resource}'.",
        )
    return ScopeRequest(
        requested, oidc, resource, family, tuple(known[p.lower()] for p in permissions)
    )


# ---------------------------------------------------------------------------------- claims


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def client_info(user: User) -> str:
    """`client_info`: base64url JSON `{"uid","utid"}` (§3.6); MSAL keys accounts by it."""
    return _b64url(json.dumps({"uid": user.oid, "utid": user.tenant_id}).encode())


def pairwise_subject(user: User, client_id: str) -> str:
    """`sub`: unique per user and app, as Entra's pairwise subject."""
    return _b64url(hashlib.sha256(f"{user.oid}:{client_id}".encode()).digest())


def delegated_claims(
    user: User,
    *,
    audience: str,
    scp: str,
    appid: str,
    appidacr: str,
    issued: int,
    lifetime: int,
    v2: bool = False,
    roles: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The claims of an access token issued to `user` for `audience` (`roles`: the app roles
    assigned to the user on that resource, when it defines any)."""
    tid = user.tenant_id
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": f"https://login.microsoftonline.com/{tid}/v2.0"
        if v2
        else f"https://sts.windows.net/{tid}/",
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "acr": "1",
        "amr": ["pwd"],
        "name": user.name,
        "oid": user.oid,
        "scp": scp,
        "sub": pairwise_subject(user, appid),
        "tid": tid,
        "uti": uuid.uuid4().hex[:22],
    }
    if roles:
        claims["roles"] = list(roles)
    if v2:
        claims.update(
            {"azp": appid, "azpacr": appidacr, "preferred_username": user.upn, "ver": "2.0"}
        )
    else:
        claims.update(
            {
                "appid": appid,
                "appidacr": appidacr,
                "family_name": user.family_name,
                "given_name": user.given_name,
                "unique_name": user.upn,
                "upn": user.upn,
                "ver": "1.0",
            }
        )
    return claims


def id_token_claims(user: User, client_id: str, issued: int) -> dict[str, Any]:
    """An ID token's claims (§3.6): `aud` = the client, v2 issuer of the user's tenant."""
    tid = user.tenant_id
    return {
        "aud": client_id,
        "iss": f"https://login.microsoftonline.com/{tid}/v2.0",
        "iat": issued,
        "nbf": issued,
        "exp": issued + _ID_TOKEN_LIFETIME,
        "name": user.name,
        "oid": user.oid,
        "preferred_username": user.upn,
        "sub": pairwise_subject(user, client_id),
        "tid": tid,
        "uti": uuid.uuid4().hex[:22],
        "ver": "2.0",
    }


# ---------------------------------------------------------------------------------- service


class DelegatedService:
    """The user grants of the token endpoint, the device authorization endpoint and helpers
    for the admin API. Wraps the `EntraService` of the same request (client authentication,
    directory, issuer, clock, settings, stats)."""

    def __init__(self, entra: EntraService, state: DelegatedState) -> None:
        self.entra = entra
        self.state = state

    def grants(self) -> dict[str, GrantHandler]:
        """The token-endpoint grants this service adds."""
        return {
            GRANT_ON_BEHALF_OF: self.on_behalf_of,
            GRANT_DEVICE_CODE: self.device_code_token,
            GRANT_REFRESH_TOKEN: self.refresh_token,
        }

    # ------------------------------------------------------------------ helpers

    def _error(
        self,
        request: Request,
        tid: str,
        now: datetime,
        error: str,
        code: int,
        message: str,
        *,
        status: int = 400,
        suberror: str | None = None,
    ) -> Response:
        return aad_error(
            status, error, code, message, now=now, request=request, tenant=tid, suberror=suberror
        )

    def _no_consent(self, request: Request, tid: str, now: datetime) -> Response:
        directory = self.entra.directory
        return self._error(
            request,
            tid,
            now,
            "invalid_grant",
            65001,
            f"The user or administrator has not consented to use the application with ID "
            f"'{directory.client_id}' named '{directory.app_display_name}'. Send an interactive "
            "authorization request for this user and resource.",
            suberror="consent_required",
        )

    def _scopes(
        self, request: Request, form: Mapping[str, str], tid: str, now: datetime
    ) -> ScopeRequest | Response:
        raw = form.get("scope", "")
        if not raw.strip():
            return missing_parameter(request, now, "scope", tid)
        parsed = parse_scopes(raw)
        if isinstance(parsed, ScopeProblem):
            return self._error(request, tid, now, parsed.error, parsed.code, parsed.message)
        return parsed

    @staticmethod
    def granted(user: User, scopes: ScopeRequest) -> tuple[str, ...] | None:
        """The user's permissions for the resource, or None when a requested one (or, for
        `/.default`, any one) was never consented."""
        consented = tuple(user.consents.get(scopes.family, ()))
        if not consented:
            return None
        lowered = {c.lower() for c in consented}
        if any(p.lower() not in lowered for p in scopes.permissions):
            return None
        return consented

    def _issue(
        self,
        form: Mapping[str, str],
        user: User,
        scopes: ScopeRequest,
        granted: tuple[str, ...],
        client: ClientAuth,
        *,
        grant: str,
        now: datetime,
    ) -> Response:
        """The success response of a user grant (§3.3, §3.4, §3.6) and its stats entry."""
        entra = self.entra
        issued = int(now.timestamp())
        lifetime = entra.settings.token_lifetime
        claims = delegated_claims(
            user,
            audience=scopes.resource,
            scp=" ".join(granted),
            appid=client.client_id,
            appidacr=client.appidacr,
            issued=issued,
            lifetime=lifetime,
        )
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(scopes.requested),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": entra.issuer.issue(claims),
        }
        if "offline_access" in scopes.oidc:
            refresh = "1.AR" + secrets.token_urlsafe(96)
            with self.state.lock:
                self.state.refresh_tokens[refresh] = RefreshGrant(
                    user.tenant_id,
                    user.oid,
                    client.client_id,
                    now.timestamp(),
                    now.timestamp() + entra.settings.refresh_token_lifetime,
                    client.confidential,
                )
            body["refresh_token"] = refresh
        if "openid" in scopes.oidc:
            body["id_token"] = entra.issuer.issue(id_token_claims(user, client.client_id, issued))
        if form.get("client_info") == "1":
            body["client_info"] = client_info(user)
        entra.record_token(grant, user.tenant_id, client.client_id, scopes.resource)
        return json_response(200, body, tenant=user.tenant_id)

    # ------------------------------------------------------------------ on-behalf-of

    def on_behalf_of(
        self, request: Request, form: Mapping[str, str], tenant: Tenant, now: datetime
    ) -> Response:
        """The OBO grant (§3.3): the caller's token for this app, exchanged for a token for a
        downstream resource carrying the caller's delegated permissions."""
        tid = tenant.tenant_id
        client = self.entra.authenticate_client(request, form, tenant, now)
        if isinstance(client, Response):
            return client
        use = form.get("requested_token_use")
        if not use:
            return missing_parameter(request, now, "requested_token_use", tid)
        if use != "on_behalf_of":
            return self._error(
                request,
                tid,
                now,
                "invalid_request",
                70003,
                f"The app requested an unsupported requested_token_use '{use}'; the jwt-bearer "
                "grant needs 'on_behalf_of'.",
            )
        assertion = form.get("assertion", "")
        if not assertion:
            return missing_parameter(request, now, "assertion", tid)
        scopes = self._scopes(request, form, tid, now)
        if isinstance(scopes, Response):
            return scopes
        user_or_error = self._assertion_user(request, assertion, tenant, now)
        if isinstance(user_or_error, Response):
            return user_or_error
        granted = self.granted(user_or_error, scopes)
        if granted is None:
            return self._no_consent(request, tid, now)
        return self._issue(
            form, user_or_error, scopes, granted, client, grant="on_behalf_of", now=now
        )

    def _assertion_user(
        self, request: Request, assertion: str, tenant: Tenant, now: datetime
    ) -> User | Response:
        """Verify the incoming assertion: our signature, lifetime, audience = this app, a
        user of this tenant."""
        tid = tenant.tenant_id
        directory = self.entra.directory

        def invalid(code: int, message: str) -> Response:
            return self._error(request, tid, now, "invalid_grant", code, message)

        try:
            values = self.entra.issuer.decode(assertion)
        except TokenError:
            return invalid(
                50013,
                "Assertion failed signature validation. [Reason - The key was not found., "
                "Thumbprint of key used by client: 'unknown']",
            )
        current = int(now.timestamp())
        expires = int(values.get("exp", 0))
        if expires <= current or int(values.get("nbf", 0)) > current + 300:
            return invalid(
                500133,
                "Assertion is not within its valid time range. Ensure that the access token is "
                "not expired before using it for user assertion, or request a new token. "
                f"Current time: {_stamp(current)}, expiry time of assertion {_stamp(expires)}.",
            )
        audience = str(values.get("aud", ""))
        expected = {directory.client_id, app_id_uri(directory.client_id)}
        if audience.rstrip("/") not in expected:
            return invalid(
                50013,
                f"Assertion audience does not match the Client app presenting the assertion. The "
                f"audience in the assertion was '{audience}' and the expected audience is "
                f"'{directory.client_id}' or one of the Application Id URIs of this application "
                f"with App ID '{directory.client_id}'({directory.app_display_name}). The "
                "downstream client must request a token for the expected audience (the "
                "application that made the OBO request) and this application should use that "
                "token as the assertion.",
            )
        oid = str(values.get("oid", ""))
        if values.get("idtyp") == "app" or "scp" not in values or not oid:
            return invalid(
                50013,
                "Assertion failed signature validation. [Reason - The assertion is an "
                "application token; the on-behalf-of flow needs a user's token.]",
            )
        with self.state.lock:
            user = self.state.users.get(oid)
        if user is None or user.tenant_id != tid:
            name = user.upn if user else oid
            if user is not None or str(values.get("tid", "")) != tid:
                return invalid(
                    50020,
                    f"User account '{name}' from identity provider "
                    f"'https://sts.windows.net/{values.get('tid')}/' does not exist in tenant "
                    f"'{tenant.display_name}' and cannot access the application "
                    f"'{directory.client_id}'({directory.app_display_name}) in that tenant.",
                )
            return invalid(
                50034,
                f"The user account {name} does not exist in the {tenant.domain} directory. To "
                "sign into this application, the account must be added to the directory.",
            )
        return user

    # ------------------------------------------------------------------ device code

    def device_authorization(self, request: Request, tenant_segment: str) -> Response:
        """`POST /{tenant}/oauth2/v2.0/devicecode` (§3.4)."""
        entra = self.entra
        now = entra.clock()
        form = request.form()
        with entra.directory.lock:
            tenant = entra.directory.resolve_tenant(tenant_segment)
        if tenant is None:
            return aad_error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant_segment}' not found. Check to make sure you have the correct "
                "tenant ID and are signing into the correct cloud.",
                now=now,
                request=request,
            )
        tid = tenant.tenant_id
        client_id = form.get("client_id", "")
        if not client_id:
            return missing_parameter(request, now, "client_id", tid)
        if client_id.lower() != entra.directory.client_id:
            return self._error(
                request,
                tid,
                now,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant.display_name}'.",
            )
        scopes = self._scopes(request, form, tid, now)
        if isinstance(scopes, Response):
            return scopes
        settings = entra.settings
        user_code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(9))
        code = DeviceCode(
            device_code="DAQABIQEAAAD" + secrets.token_urlsafe(96),
            user_code=user_code,
            tenant_id=tid,
            client_id=entra.directory.client_id,
            scope=form.get("scope", ""),
            created=now.timestamp(),
            expires=now.timestamp() + settings.device_code_lifetime,
        )
        with self.state.lock:
            auto = self.state.auto.get(tid)
            if auto is not None:
                code.status = "approved" if auto[1] else "declined"
                code.user_oid = auto[0]
            self.state.device_codes[code.device_code] = code
        verification_uri = f"{request.base_url}/devicelogin"
        return json_response(
            200,
            {
                "device_code": code.device_code,
                "user_code": user_code,
                "verification_uri": verification_uri,
                "expires_in": settings.device_code_lifetime,
                "interval": settings.device_code_interval,
                "message": f"To sign in, use a web browser to open the page {verification_uri} "
                f"and enter the code {user_code} to authenticate.",
            },
            tenant=tid,
        )

    def device_code_token(
        self, request: Request, form: Mapping[str, str], tenant: Tenant, now: datetime
    ) -> Response:
        """Polling the token endpoint with a device code (§3.4)."""
        tid = tenant.tenant_id
        client = self.entra.authenticate_client(request, form, tenant, now, public_ok=True)
        if isinstance(client, Response):
            return client
        device_code = form.get("device_code") or form.get("code") or ""
        if not device_code:
            return missing_parameter(request, now, "device_code", tid)
        with self.state.lock:
            code = self.state.device_codes.get(device_code)
            if code is None or code.tenant_id != tid or code.client_id != client.client_id:
                return self._error(
                    request,
                    tid,
                    now,
                    "bad_verification_code",
                    70018,
                    "The provided value for the input parameter 'device_code' is not valid.",
                )
            if code.expires <= now.timestamp():
                return self._error(
                    request, tid, now, "expired_token", 70019, "Verification code expired."
                )
            if code.status == "pending":
                return self._error(
                    request,
                    tid,
                    now,
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                )
            if code.status == "declined":
                del self.state.device_codes[device_code]
                return self._error(
                    request,
                    tid,
                    now,
                    "authorization_declined",
                    65004,
                    "User declined to consent to access the app.",
                )
            del self.state.device_codes[device_code]  # a device code is redeemed once
            user = self.state.users.get(code.user_oid or "")
        scopes = parse_scopes(code.scope)
        if user is None or isinstance(scopes, ScopeProblem):  # checked at approval and start
            return self._error(
                request, tid, now, "invalid_grant", 70000, "The provided grant is invalid."
            )
        granted = self.granted(user, scopes)
        if granted is None:
            return self._no_consent(request, tid, now)
        return self._issue(form, user, scopes, granted, client, grant="device_code", now=now)

    # ------------------------------------------------------------------ refresh token

    def refresh_token(
        self, request: Request, form: Mapping[str, str], tenant: Tenant, now: datetime
    ) -> Response:
        """`grant_type=refresh_token` (§3.5): a new access token (and refresh token) for any
        resource the user consented to; the old refresh token stays valid until it expires."""
        tid = tenant.tenant_id
        client = self.entra.authenticate_client(request, form, tenant, now, public_ok=True)
        if isinstance(client, Response):
            return client
        token = form.get("refresh_token", "")
        if not token:
            return missing_parameter(request, now, "refresh_token", tid)
        scopes = self._scopes(request, form, tid, now)
        if isinstance(scopes, Response):
            return scopes
        with self.state.lock:
            grant = self.state.refresh_tokens.get(token)
            user = self.state.users.get(grant.user_oid) if grant else None
        if grant is None or user is None or grant.tenant_id != tid:
            return self._error(
                request,
                tid,
                now,
                "invalid_grant",
                9002313,
                "Invalid request. Request is malformed or invalid.",
            )
        if grant.client_id != client.client_id:
            return self._error(
                request,
                tid,
                now,
                "invalid_grant",
                70000,
                "Provided grant is invalid or malformed: the refresh token was issued to "
                "another client.",
            )
        if grant.confidential and not client.confidential:
            return self._error(
                request,
                tid,
                now,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'.",
                status=401,
            )
        if grant.expires <= now.timestamp():
            issued = datetime.fromtimestamp(grant.issued, UTC).strftime("%m/%d/%Y %H:%M:%S")
            return self._error(
                request,
                tid,
                now,
                "invalid_grant",
                700082,
                f"The refresh token has expired due to inactivity. The token was issued on "
                f"{issued} and was inactive for {int(now.timestamp() - grant.issued)} seconds.",
            )
        granted = self.granted(user, scopes)
        if granted is None:
            return self._no_consent(request, tid, now)
        return self._issue(form, user, scopes, granted, client, grant="refresh_token", now=now)

    # ------------------------------------------------------------------ admin helpers

    def caller_token(
        self,
        user: User,
        *,
        audience: str | None = None,
        lifetime: int | None = None,
        expired: bool = False,
    ) -> tuple[str, int]:
        """A token `user` got from Entra for `audience` (default: this app's Application ID
        URI, i.e. what a web API receives from its caller) and its expiry (epoch seconds).

        The audience decides the shape: the bare client id gives a v2 token, `api://…` and the
        Defender/Graph/Vault resources a v1 token. For a known resource `scp` holds the user's
        consented permissions there; for this app (or any other) `access_as_user`, and for this
        app `roles` holds the app roles assigned to the user on its API (none: no claim).
        """
        entra = self.entra
        client_id = entra.directory.client_id
        target = (audience or app_id_uri(client_id)).rstrip("/")
        family = FAMILY_OF_RESOURCE.get(target)
        scp = " ".join(user.consents.get(family, ())) if family else CALLER_SCOPE
        span = lifetime if lifetime is not None else entra.settings.token_lifetime
        issued = int(entra.clock().timestamp())
        if expired:
            issued -= span + 600  # expired ten minutes ago (beyond any clock-skew allowance)
        with entra.directory.lock:
            roles = entra.directory.api_roles.get(user.oid, ())
        claims = delegated_claims(
            user,
            audience=target,
            scp=scp,
            appid=self.state.caller_client_id if family is None else client_id,
            appidacr="0",
            issued=issued,
            lifetime=span,
            v2=target == client_id,
            roles=roles if entra.directory.is_api(target) else (),
        )
        return entra.issuer.issue(claims), issued + span


def _stamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%m/%d/%Y %H:%M:%S")


# ---------------------------------------------------------------------------------- admin API


def parse_lifetime(value: Any, name: str, *, minimum: int = 1) -> int:
    """A positive whole number of seconds from the admin API, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"'{name}' must be an integer of at least {minimum} (seconds)")
    return value


def set_consent(state: DelegatedState, user: User, permissions: Mapping[str, Any]) -> User:
    """Replace some families of a user's delegated consent; returns the new user."""
    consents = dict(user.consents)
    for family, names in permissions.items():
        if family not in DELEGATED_PERMISSIONS:
            raise ValueError(f"'permissions' keys must be some of {list(DELEGATED_PERMISSIONS)}")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("'permissions' must map families to lists of permission names")
        known = {p.lower(): p for p in DELEGATED_PERMISSIONS[family]}
        unknown = [n for n in names if n.lower() not in known]
        if unknown:
            raise ValueError(
                f"unknown {family} delegated permission(s) {unknown}; known: "
                f"{list(DELEGATED_PERMISSIONS[family])}"
            )
        consents[family] = tuple(dict.fromkeys(known[n.lower()] for n in names))
    updated = User(
        user.tenant_id,
        user.oid,
        user.upn,
        user.given_name,
        user.family_name,
        {k: v for k, v in consents.items() if v},
    )
    with state.lock:
        state.users[user.oid] = updated
    return updated
