"""Entra ID stand-in: tenants, the app registration, managed identities, token issuing and checks.

Wire formats are from defender-api.md §3 (discovery document, v2 token endpoint, AADSTS error
bodies) and §6 (App Service managed identity protocol). Access tokens are RS256 JWTs with
v1-style claims (`aud` = resource, `iss` = `https://sts.windows.net/{tid}/`, `roles`, `ver` 1.0),
the shape the Defender and Graph resources are expected to receive (§1.1, marked UNCERTAIN there
for `aud`; the token version depends on the resource, not the endpoint used).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from emulator.http import Request, Response, json_response, new_request_id
from emulator.model import Clock

# Resources (token audiences) by API family. National clouds: legacy Defender XDR in GCC uses
# api-gcc.security.microsoft.us and GCC High/DoD api-gov.security.microsoft.us; Graph in US Gov
# L4 graph.microsoft.us, L5 (DoD) dod-graph.microsoft.us, China microsoftgraph.chinacloudapi.cn
# (https://learn.microsoft.com/graph/deployments). The emulator serves all of them on one port.
LEGACY_RESOURCES = (
    "https://api.security.microsoft.com",
    "https://api-gcc.security.microsoft.us",
    "https://api-gov.security.microsoft.us",
)
GRAPH_RESOURCES = (
    "https://graph.microsoft.com",
    "https://graph.microsoft.us",
    "https://dod-graph.microsoft.us",
    "https://microsoftgraph.chinacloudapi.cn",
)
VAULT_RESOURCES = (
    "https://vault.azure.net",
    "https://vault.usgovcloudapi.net",
    "https://vault.azure.cn",
)
# Audience of managed-identity tokens used as federated client assertions (issue 4), one per
# cloud: global, US Government, China (entra-docs
# workload-identity-federation-config-app-trust-managed-identity.md, "audiences").
TOKEN_EXCHANGE_RESOURCE = "api://AzureADTokenExchange"
TOKEN_EXCHANGE_RESOURCES = (
    TOKEN_EXCHANGE_RESOURCE,
    "api://AzureADTokenExchangeUSGov",
    "api://AzureADTokenExchangeChina",
)

FAMILY_OF_RESOURCE: dict[str, str] = {
    **dict.fromkeys(LEGACY_RESOURCES, "legacy"),
    **dict.fromkeys(GRAPH_RESOURCES, "graph"),
    **dict.fromkeys(VAULT_RESOURCES, "vault"),
    **dict.fromkeys(TOKEN_EXCHANGE_RESOURCES, "exchange"),
}

# Application permissions seeded in every tenant (issue 3 brief; names from §1.1 and §2.1).
DEFAULT_ROLES: dict[str, tuple[str, ...]] = {
    "legacy": ("Incident.ReadWrite.All", "AdvancedHunting.Read.All"),
    "graph": (
        "SecurityIncident.ReadWrite.All",
        "SecurityAlert.ReadWrite.All",
        "ThreatHunting.Read.All",
    ),
    "vault": (),
}

# Well-known app ids of the resources (§1.1: Microsoft Threat Protection; §2.1: Graph).
RESOURCE_APP_IDS = {
    "legacy": "8ee8fdad-f234-4243-8f3b-15c294843740",
    "graph": "00000003-0000-0000-c000-000000000000",
    "vault": "cfa8b339-82a2-471a-a3c9-0fc0be7a4093",
}

_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# The app roles the Defender Bridge app registration exposes for its own HTTP API ("Expose an
# API" > app roles, allowed member types users/groups and applications). Entra puts the values
# assigned to the caller in the `roles` claim of tokens for the API, whether the caller is a
# user, an app (client credentials) or a managed identity
# (https://learn.microsoft.com/entra/identity-platform/howto-add-app-roles-in-apps). An MSSP may
# add more (one per customer or team), so any well-formed value can be assigned here.
API_APP_ROLES = (
    "Incidents.Read",
    "Incidents.Write",
    "Hunting.Run",
    "Ingest.Run",
    "Subscriptions.Manage",
    "Tenants.All",
)


@dataclass(frozen=True, slots=True)
class Tenant:
    """A directory: id, verified domain and display name."""

    tenant_id: str
    domain: str
    display_name: str


@dataclass(frozen=True, slots=True)
class ClientSecret:
    """A client secret of the app registration (`passwordCredentials`)."""

    key_id: str
    value: str
    created: datetime
    expires: datetime
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class ManagedIdentity:
    """A managed identity of the Function app (system- or user-assigned)."""

    client_id: str
    principal_id: str
    resource_id: str
    system_assigned: bool


@dataclass(frozen=True, slots=True)
class ApiClient:
    """Another app registration of the home tenant (a daemon, an automation) that calls the
    Defender Bridge API with client credentials and a client secret."""

    client_id: str
    secret: str
    object_id: str  # its service principal in the home tenant (the `oid` of its tokens)
    display_name: str


@dataclass(frozen=True, slots=True)
class AppCertificate:
    """A certificate registered on the app (`keyCredentials`), found by either thumbprint."""

    x5t: str  # base64url SHA-1 of the DER certificate (RS256 assertions, MSAL with PEM)
    x5t_s256: str  # base64url SHA-256 (PS256 assertions, MSAL with PFX)
    public_key: Any
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class FederatedCredential:
    """A federated identity credential of the app: trust tokens with this issuer and subject."""

    issuer: str
    subject: str
    audience: str = "api://AzureADTokenExchange"


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified claims of a token the emulator issued."""

    values: Mapping[str, Any]

    @property
    def tenant_id(self) -> str:
        return str(self.values.get("tid", ""))

    @property
    def roles(self) -> tuple[str, ...]:
        roles = self.values.get("roles") or ()
        return tuple(str(r) for r in roles)

    @property
    def caller(self) -> str:
        """`appid=…;oid=…;iss=…`, how Key Vault names a caller in its 403 messages (§5.2)."""
        v = self.values
        return f"appid={v.get('appid')};oid={v.get('oid')};iss={v.get('iss')}"


class TokenError(Exception):
    """A bearer token that is missing, malformed, not ours, expired or for another audience."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Directory:
    """Mutable identity state: tenants, the app, its secrets, consents and identities.

    Callers hold `lock` while reading or changing it.
    """

    tenants: dict[str, Tenant]
    home_tenant_id: str
    client_id: str
    app_display_name: str
    secrets: list[ClientSecret]
    # (tenant id) -> (family) -> roles granted to the app; a missing tenant means no consent.
    consents: dict[str, dict[str, tuple[str, ...]]]
    # Per-tenant object id of the app's service principal (the `oid` of app tokens).
    service_principals: dict[str, str]
    identities: dict[str, ManagedIdentity]
    certificates: list[AppCertificate] = field(default_factory=list)
    federated: list[FederatedCredential] = field(default_factory=list)
    # Apps of the home tenant that call the Defender Bridge API (client credentials), by id.
    api_clients: dict[str, ApiClient] = field(default_factory=dict)
    # App-role assignments on the Defender Bridge API: principal object id (a user's oid, an
    # app's or a managed identity's service principal id) -> role values.
    api_roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def app_id_uri(self) -> str:
        """The app's Application ID URI (the default one the portal proposes)."""
        return f"api://{self.client_id}"

    def is_api(self, resource: str) -> bool:
        """Whether `resource` names the Defender Bridge API: its Application ID URI or its
        client id (a v1 `resource` or the part of a v2 scope before `/.default`)."""
        wanted = resource.rstrip("/").lower()
        return wanted in (self.app_id_uri.lower(), self.client_id.lower())

    def resolve_tenant(self, segment: str) -> Tenant | None:
        """A tenant by id or verified domain (case-insensitive), as the authority path allows."""
        segment = segment.lower()
        for tenant in self.tenants.values():
            if segment in (tenant.tenant_id.lower(), tenant.domain.lower()):
                return tenant
        return None

    def identity(self, selector: Mapping[str, str]) -> ManagedIdentity | None:
        """The identity chosen by `client_id`/`principal_id`/`object_id`/`mi_res_id`, or system."""
        if not selector:
            return next((i for i in self.identities.values() if i.system_assigned), None)
        key, value = next(iter(selector.items()))
        for identity in self.identities.values():
            if key == "client_id" and identity.client_id.lower() == value.lower():
                return identity
            if key in ("principal_id", "object_id") and identity.principal_id == value.lower():
                return identity
            if key == "mi_res_id" and identity.resource_id.lower() == value.lower():
                return identity
        return None


class TokenIssuer:
    """Signs and verifies the emulator's access tokens (RS256, one key per emulator)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_der = self._key.public_key().public_numbers()
        self.key_id = hashlib.sha1(str(public_der.n).encode(), usedforsecurity=False).hexdigest()

    def issue(self, claims: Mapping[str, Any]) -> str:
        """A signed JWT with the given claims."""
        return jwt.encode(dict(claims), self._key, algorithm="RS256", headers={"kid": self.key_id})

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWKS document (`jwks_uri` of the discovery document)."""
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update({"kid": self.key_id, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def decode(self, token: str) -> dict[str, Any]:
        """The claims of a token this emulator signed; nothing but the signature is checked.

        Raises:
            TokenError: the token is malformed or not signed by the emulator's key.
        """
        try:
            values: dict[str, Any] = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_nbf": False, "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(
                "invalid", "the token is malformed or its signature is invalid"
            ) from exc
        return values

    def verify(self, token: str, audiences: tuple[str, ...]) -> Claims:
        """Verify signature, audience and lifetime against the emulator clock.

        Raises:
            TokenError: the token is not one the emulator issued for one of `audiences`,
                or it is expired / not yet valid.
        """
        values = self.decode(token)
        audience = str(values.get("aud", ""))
        if audience.rstrip("/") not in audiences:
            raise TokenError("audience", f"the token audience '{audience}' is not accepted here")
        now = self._clock().timestamp()
        if int(values.get("exp", 0)) <= now:
            raise TokenError("expired", "the token has expired")
        if int(values.get("nbf", 0)) > now + 300:
            raise TokenError("not_yet_valid", "the token is not yet valid")
        return Claims(values)


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    header = request.header("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def aad_error(
    status: int,
    error: str,
    code: int,
    description: str,
    *,
    now: datetime,
    request: Request,
    tenant: str | None = None,
    suberror: str | None = None,
) -> Response:
    """An Entra error body as documented (§3.2): error, AADSTS description with trace lines, …"""
    trace_id = new_request_id()
    # Entra echoes the client's `client-request-id` as the correlation id (MSAL sends one).
    correlation_id = request.header("client-request-id") or new_request_id()
    stamp = _timestamp(now)
    payload: dict[str, Any] = {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {description}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {stamp}"
        ),
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    if suberror:
        payload["suberror"] = suberror
    return json_response(status, payload, tenant=tenant)


TokenRecorder = Callable[[str, str, str, str], None]
# A handler of one more token-endpoint grant: (request, form, tenant, now) -> response.
GrantHandler = Callable[[Request, Mapping[str, str], Tenant, datetime], Response]


@dataclass(frozen=True, slots=True)
class EntraSettings:
    """Knobs of the identity stand-in."""

    token_lifetime: int = 3599
    mi_token_lifetime: int = 86399
    vault_name: str = "defender-bridge-kv"
    # Entra's refresh tokens live 90 days (inactivity); device codes 15 minutes (§3.4).
    refresh_token_lifetime: int = 90 * 86400
    device_code_lifetime: int = 900
    device_code_interval: int = 1


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """Who called the token endpoint: the client id and how it proved it (`appidacr`)."""

    client_id: str
    appidacr: str  # "0" public client, "1" client secret, "2" certificate or federated assertion

    @property
    def confidential(self) -> bool:
        return self.appidacr != "0"


class EntraService:
    """Discovery, token endpoint and managed-identity endpoint handlers."""

    def __init__(
        self,
        directory: Directory,
        issuer: TokenIssuer,
        clock: Clock,
        settings: EntraSettings,
        record_token: TokenRecorder,
        identity_header: str,
        grants: Mapping[str, GrantHandler] | None = None,
    ) -> None:
        self.directory = directory
        self.issuer = issuer
        self.clock = clock
        self.settings = settings
        self.record_token = record_token
        self.identity_header = identity_header
        # Grants beyond client credentials (on-behalf-of, device code, refresh token).
        self.grants: Mapping[str, GrantHandler] = grants or {}

    # ------------------------------------------------------------------ discovery

    def discovery(self, request: Request, tenant_segment: str) -> Response:
        """`GET /{tenant}/v2.0/.well-known/openid-configuration` (§3.9)."""
        now = self.clock()
        with self.directory.lock:
            tenant = self.directory.resolve_tenant(tenant_segment)
        if tenant is None:
            # MSAL turns this 400 into ValueError at construction (§3.7, AADSTS90002).
            return aad_error(
                400,
                "invalid_tenant",
                90002,
                _tenant_not_found(tenant_segment),
                now=now,
                request=request,
            )
        tid = tenant.tenant_id
        base = f"{request.base_url}/{tid}"
        doc = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "tid", "ver"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }
        return json_response(200, doc, tenant=tid)

    def keys(self, request: Request, tenant_segment: str) -> Response:
        """`GET /{tenant}/discovery/v2.0/keys`: the signing key of every token issued."""
        del request, tenant_segment
        return json_response(200, self.issuer.jwks())

    # ------------------------------------------------------------------ token endpoint

    def token(self, request: Request, tenant_segment: str, *, v1: bool = False) -> Response:
        """`POST /{tenant}/oauth2/v2.0/token` (and the v1 `/oauth2/token` with `resource=`)."""
        now = self.clock()
        form = request.form()
        with self.directory.lock:
            tenant = self.directory.resolve_tenant(tenant_segment)
            if tenant is None:
                if tenant_segment.lower() in ("common", "organizations", "consumers"):
                    return aad_error(
                        400,
                        "invalid_request",
                        9001023,
                        "The grant type is not supported over the /common or /consumers "
                        "endpoints. Please use the /organizations or tenant-specific endpoint.",
                        now=now,
                        request=request,
                    )
                return aad_error(
                    400,
                    "invalid_request",
                    90002,
                    _tenant_not_found(tenant_segment),
                    now=now,
                    request=request,
                )
            grant = form.get("grant_type", "")
            if not grant:
                return missing_parameter(request, now, "grant_type", tenant.tenant_id)
            if grant == "client_credentials":
                return self._client_credentials(request, form, tenant, now, v1=v1)
            handler = self.grants.get(grant)
            if handler is not None and not v1:
                return handler(request, form, tenant, now)
            return aad_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
                now=now,
                request=request,
                tenant=tenant.tenant_id,
            )

    def _client_auth(
        self, request: Request, form: Mapping[str, str]
    ) -> tuple[str | None, str | None]:
        """client_id and client_secret from the body, or HTTP Basic (RFC 6749 §2.3.1, §3.2)."""
        client_id = form.get("client_id") or None
        secret = form.get("client_secret") or None
        header = request.header("authorization") or ""
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode("utf-8")
            except ValueError:
                decoded = ""
            user, _, password = decoded.partition(":")
            client_id = client_id or user or None
            secret = secret or password or None
        return client_id, secret

    def authenticate_client(
        self,
        request: Request,
        form: Mapping[str, str],
        tenant: Tenant,
        now: datetime,
        *,
        public_ok: bool = False,
        api_client_ok: bool = False,
    ) -> ClientAuth | Response:
        """Check the client id and credential of a token request (secret, certificate or
        federated assertion); with `public_ok`, a request with no credential at all is a public
        client (the app registration allows public client flows, e.g. device code).

        Returns the client, or the error response (900144, 7000229, 700016, 7000218, 7000215,
        7000222, 700027, 700024, 70021).
        """
        tid = tenant.tenant_id
        client_id, secret = self._client_auth(request, form)
        if not client_id:
            return missing_parameter(request, now, "client_id", tid)
        directory = self.directory
        caller = directory.api_clients.get(client_id.lower())
        if api_client_ok and caller is not None and tid == directory.home_tenant_id:
            return self._authenticate_api_client(request, caller, secret, now, tid)
        if client_id.lower() == directory.client_id and tid not in directory.consents:
            # The app exists (multi-tenant) but has no service principal here: never consented.
            return aad_error(
                400,
                "invalid_client",
                7000229,
                f"The client application {client_id} is missing service principal in the tenant "
                f"{tid}. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119",
                now=now,
                request=request,
                tenant=tid,
            )
        if client_id.lower() != directory.client_id:
            return aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant.display_name}'. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in the "
                "tenant. You may have sent your authentication request to the wrong tenant.",
                now=now,
                request=request,
                tenant=tid,
            )
        assertion = form.get("client_assertion")
        if secret is None and assertion is None and public_ok:
            return ClientAuth(directory.client_id, "0")
        if secret is None and assertion is None:
            return _no_credential(request, now, tid)
        if secret is None:
            failure = self._check_assertion(request, form, tenant, now)
        else:
            failure = self._check_secret(request, secret, now, tid)
        if failure is not None:
            return failure
        return ClientAuth(directory.client_id, "1" if secret is not None else "2")

    def _authenticate_api_client(
        self, request: Request, caller: ApiClient, secret: str | None, now: datetime, tid: str
    ) -> ClientAuth | Response:
        """A home-tenant app calling the Defender Bridge API: its own client secret."""
        if secret is None:
            return _no_credential(request, now, tid)
        if secret != caller.secret:
            return _wrong_secret(request, now, tid, caller.client_id)
        return ClientAuth(caller.client_id, "1")

    def _client_credentials(
        self,
        request: Request,
        form: Mapping[str, str],
        tenant: Tenant,
        now: datetime,
        *,
        v1: bool,
    ) -> Response:
        tid = tenant.tenant_id
        client_id, _ = self._client_auth(request, form)
        if not client_id:
            return missing_parameter(request, now, "client_id", tid)
        resource_param = "resource" if v1 else "scope"
        requested = form.get(resource_param, "")
        if not requested:
            return missing_parameter(request, now, resource_param, tid)
        auth = self.authenticate_client(request, form, tenant, now, api_client_ok=True)
        if isinstance(auth, Response):
            return auth
        directory = self.directory
        resource = self._resource_from_request(requested, v1=v1)
        if resource is None:
            return aad_error(
                400,
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' is not valid. The scope "
                f"{requested} is not valid. Client credential flows must have a scope value "
                "with /.default suffixed to the resource identifier (application ID URI).",
                now=now,
                request=request,
                tenant=tid,
            )
        family = "api" if directory.is_api(resource) else FAMILY_OF_RESOURCE.get(resource)
        if auth.client_id != directory.client_id and family != "api":
            # the other apps of the emulator exist only to call the Defender Bridge API
            family = None
        if family is None or family == "exchange":
            return aad_error(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{tenant.display_name}. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in the "
                "tenant. You might have sent your authentication request to the wrong tenant.",
                now=now,
                request=request,
                tenant=tid,
            )
        caller = directory.api_clients.get(auth.client_id)
        oid = caller.object_id if caller is not None else directory.service_principals[tid]
        if family == "api":
            # app roles of the calling app's service principal on the Defender Bridge API
            roles = directory.api_roles.get(oid, ()) if tid == directory.home_tenant_id else ()
        else:
            roles = directory.consents[tid].get(family, ())
        lifetime = self.settings.token_lifetime
        token = self.issuer.issue(
            self._app_claims(tid, resource, roles, lifetime, oid, appid=auth.client_id)
        )
        self.record_token("client_credentials", tid, auth.client_id, resource)
        if v1:
            issued = int(now.timestamp())
            return json_response(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": str(lifetime),
                    "ext_expires_in": str(lifetime),
                    "expires_on": str(issued + lifetime),
                    "not_before": str(issued),
                    "resource": resource,
                    "access_token": token,
                },
                tenant=tid,
            )
        # No `scope` in client-credentials responses: MSAL caches under the response scope
        # when present, which would miss the cache on every call (§4.5).
        return json_response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            },
            tenant=tid,
        )

    def _check_secret(
        self, request: Request, secret: str, now: datetime, tid: str
    ) -> Response | None:
        for candidate in self.directory.secrets:
            if candidate.value != secret or candidate.revoked:
                continue
            if candidate.expires <= now:
                return aad_error(
                    401,
                    "invalid_client",
                    7000222,
                    f"The provided client secret keys for app '{self.directory.client_id}' are "
                    "expired. Visit the Azure portal to create new keys for your app: "
                    "https://aka.ms/NewClientSecret, or consider using certificate credentials "
                    "for added security: https://aka.ms/certCreds.",
                    now=now,
                    request=request,
                    tenant=tid,
                )
            return None
        return _wrong_secret(request, now, tid, self.directory.client_id)

    def _check_assertion(
        self, request: Request, form: Mapping[str, str], tenant: Tenant, now: datetime
    ) -> Response | None:
        """Verify a certificate (x5t / x5t#S256) or federated client assertion (§3.2).

        Certificate assertions: RS256 with `x5t` (MSAL with a PEM and SHA-1 thumbprint) or PS256
        with `x5t#S256` (MSAL with a PFX); claims aud = token endpoint, iss = sub = client id.
        Federated: a managed-identity token for `api://AzureADTokenExchange` whose issuer and
        subject match a federated identity credential of the app.
        """
        tid = tenant.tenant_id
        assertion = form.get("client_assertion", "")

        def fail(code: int, message: str) -> Response:
            return aad_error(
                401, "invalid_client", code, message, now=now, request=request, tenant=tid
            )

        if form.get("client_assertion_type") != _JWT_BEARER:
            return aad_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: "
                f"'client_assertion_type' with value '{_JWT_BEARER}'.",
                now=now,
                request=request,
                tenant=tid,
            )
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return fail(50027, "JWT token is invalid or malformed.")
        client_id = self.directory.client_id
        if "x5t" in header or "x5t#S256" in header:
            sha1, sha256 = _thumb(header.get("x5t")), _thumb(header.get("x5t#S256"))
            cert = next(
                (
                    c
                    for c in self.directory.certificates
                    if not c.revoked
                    and (
                        (sha1 and _thumb(c.x5t) == sha1)
                        or (sha256 and _thumb(c.x5t_s256) == sha256)
                    )
                ),
                None,
            )
            if cert is None:
                thumb = header.get("x5t#S256") or header.get("x5t")
                return fail(
                    700027,
                    "Client assertion failed signature validation. [Reason - The key was not "
                    f"found., Thumbprint of key used by client: '{thumb}']",
                )
            audiences = [
                f"{request.base_url}/{segment}/oauth2/v2.0/token"
                for segment in (tid, tenant.domain)
            ] + [f"{request.base_url}/{tid}/v2.0"]
            try:
                claims = jwt.decode(
                    assertion,
                    cert.public_key,
                    algorithms=["RS256", "PS256"],
                    audience=audiences,
                    leeway=300,
                    options={"require": ["exp", "iss", "sub", "aud"], "verify_iat": False},
                )
            except jwt.ExpiredSignatureError:
                return fail(700024, "Client assertion is not within its valid time range.")
            except jwt.InvalidAudienceError:
                return fail(
                    700027,
                    "Client assertion failed signature validation. [Reason - The audience of "
                    f"the assertion must be the token endpoint, one of {audiences}]",
                )
            except jwt.PyJWTError as exc:
                return fail(700027, f"Client assertion failed signature validation. [{exc}]")
            if claims.get("iss") != client_id or claims.get("sub") != client_id:
                return fail(
                    700023,
                    "Client assertion audience claim does not match Realm issuer: iss and sub "
                    "must be the client id.",
                )
            return None
        try:
            claims_obj = self.issuer.verify(assertion, TOKEN_EXCHANGE_RESOURCES)
        except TokenError as exc:
            if exc.reason == "expired":
                return fail(700024, "Client assertion is not within its valid time range.")
            return fail(700027, f"Client assertion failed signature validation. [{exc}]")
        values = claims_obj.values
        # "Only user-assigned managed identities can be used as a federated credential for
        # apps. system-assigned identities aren't supported." (entra-docs
        # workload-identity-federation-config-app-trust-managed-identity.md): a system-assigned
        # identity's token never matches, even if a record names its principal id.
        system = {i.principal_id for i in self.directory.identities.values() if i.system_assigned}
        match = values.get("sub") not in system and any(
            f.issuer == values.get("iss")
            and f.subject == values.get("sub")
            and f.audience == values.get("aud")
            for f in self.directory.federated
        )
        if not match:
            # Observed answer (Azure/azure-workload-identity#616): HTTP 400 invalid_request,
            # "AADSTS70021: No matching federated identity record found for presented
            # assertion. Assertion Issuer: '…'. Assertion Subject: '…'. Assertion Audience: '…'."
            return aad_error(
                400,
                "invalid_request",
                70021,
                "No matching federated identity record found for presented assertion. "
                f"Assertion Issuer: '{values.get('iss')}'. Assertion Subject: "
                f"'{values.get('sub')}'. Assertion Audience: '{values.get('aud')}'. "
                "https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
                now=now,
                request=request,
                tenant=tid,
            )
        return None

    @staticmethod
    def _resource_from_request(requested: str, *, v1: bool) -> str | None:
        """The resource of a client-credentials request: one `<resource>/.default` scope."""
        if v1:
            return requested.strip().rstrip("/")
        scopes = requested.split()
        # MSAL may add openid/profile/offline_access to some flows; they are not resources.
        scopes = [s for s in scopes if s not in ("openid", "profile", "offline_access")]
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return None
        return scopes[0][: -len("/.default")].rstrip("/")

    def _app_claims(
        self,
        tid: str,
        resource: str,
        roles: tuple[str, ...],
        lifetime: int,
        oid: str,
        *,
        appid: str | None = None,
    ) -> dict[str, Any]:
        issued = int(self.clock().timestamp())
        claims: dict[str, Any] = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{tid}/",
            "iat": issued,
            "nbf": issued,
            "exp": issued + lifetime,
            "appid": appid or self.directory.client_id,
            "appidacr": "1",
            "idp": f"https://sts.windows.net/{tid}/",
            "idtyp": "app",
            "oid": oid,
            "sub": oid,
            "tid": tid,
            "uti": uuid.uuid4().hex[:22],
            "ver": "1.0",
        }
        if roles:
            claims["roles"] = list(roles)
        return claims

    # ------------------------------------------------------------------ managed identity

    def managed_identity_token(self, request: Request) -> Response:
        """`GET /msi/token` of the App Service managed-identity protocol (§6.1)."""
        home = self.directory.home_tenant_id
        provided = request.header("x-identity-header")
        if provided is None or provided != self.identity_header:
            return json_response(
                401,
                {
                    "statusCode": 401,
                    "message": "Unauthorized: the X-IDENTITY-HEADER request header is missing "
                    "or does not match IDENTITY_HEADER.",
                },
                tenant=home,
            )
        api_version = request.param("api-version")
        if api_version != "2019-08-01":
            return json_response(
                400,
                {
                    "statusCode": 400,
                    "message": f"Unsupported api-version '{api_version}'; this endpoint "
                    "implements 2019-08-01.",
                },
                tenant=home,
            )
        resource = (request.param("resource") or "").rstrip("/")
        if not resource:
            return json_response(
                400,
                {"statusCode": 400, "message": "The 'resource' query parameter is required."},
                tenant=home,
            )
        selector = {
            k: v
            for k in ("client_id", "principal_id", "object_id", "mi_res_id")
            if (v := request.param(k))
        }
        if len(selector) > 1:
            return json_response(
                400,
                {
                    "statusCode": 400,
                    "message": "Only one of client_id, principal_id/object_id, mi_res_id "
                    "may be given.",
                },
                tenant=home,
            )
        with self.directory.lock:
            identity = self.directory.identity(selector)
        if identity is None:
            return json_response(
                400,
                {
                    "statusCode": 400,
                    "message": "No managed identity matching "
                    f"{', '.join(f'{k}={v}' for k, v in selector.items())} is assigned to this "
                    "app.",
                },
                tenant=home,
            )
        api = self.directory.is_api(resource)
        if resource not in FAMILY_OF_RESOURCE and not api:
            return json_response(
                400,
                {
                    "statusCode": 400,
                    "message": f"AADSTS500011: The resource principal named {resource} was not "
                    "found in the tenant.",
                },
                tenant=home,
            )
        now = int(self.clock().timestamp())
        lifetime = self.settings.mi_token_lifetime
        with self.directory.lock:
            roles = self.directory.api_roles.get(identity.principal_id, ()) if api else ()
        claims = self._app_claims(
            home, resource, roles, lifetime, identity.principal_id, appid=identity.client_id
        )
        claims["xms_mirid"] = identity.resource_id
        if resource in TOKEN_EXCHANGE_RESOURCES:
            # Tokens for AzureADTokenExchange are what a federated credential trusts: issuer
            # `https://login.microsoftonline.com/{tid}/v2.0`, subject = the identity's object id.
            claims.update(
                {"iss": federated_issuer(home), "sub": identity.principal_id, "ver": "2.0"}
            )
        token = self.issuer.issue(claims)
        self.record_token("managed_identity", home, identity.client_id, resource)
        return json_response(
            200,
            {
                "access_token": token,
                "expires_on": str(now + lifetime),
                "not_before": str(now),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": identity.client_id,
            },
            tenant=home,
        )


def _no_credential(request: Request, now: datetime, tid: str) -> Response:
    """AADSTS7000218: a confidential client sent neither a secret nor an assertion."""
    return aad_error(
        401,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' "
        "or 'client_secret'.",
        now=now,
        request=request,
        tenant=tid,
    )


def _wrong_secret(request: Request, now: datetime, tid: str, client_id: str) -> Response:
    """AADSTS7000215: the secret is not one of the app's."""
    return aad_error(
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided. Ensure the secret being sent in the request is the "
        "client secret value, not the client secret ID, for a secret added to app "
        f"'{client_id}'.",
        now=now,
        request=request,
        tenant=tid,
    )


def _thumb(value: Any) -> bytes | None:
    """Thumbprint bytes from base64url or standard base64, padded or not (MSAL sends `x5t`
    in standard base64 with padding; the spec says base64url)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None


def federated_issuer(tenant_id: str) -> str:
    """Issuer of managed-identity tokens for `api://AzureADTokenExchange`."""
    return f"https://login.microsoftonline.com/{tenant_id}/v2.0"


def _tenant_not_found(segment: str) -> str:
    return (
        f"Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and "
        "are signing into the correct cloud. Check with your subscription administrator, this "
        "may happen if there are no active subscriptions for the tenant."
    )


def missing_parameter(request: Request, now: datetime, name: str, tid: str) -> Response:
    return aad_error(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
        now=now,
        request=request,
        tenant=tid,
    )


def rotate_secret(directory: Directory, value: str, now: datetime, lifetime: timedelta) -> str:
    """Add a new client secret to the app; returns its key id."""
    key_id = str(uuid.uuid4())
    directory.secrets.append(ClientSecret(key_id, value, now, now + lifetime))
    return key_id


def revoke_secrets(directory: Directory, keep_key_id: str) -> None:
    """Revoke every client secret except `keep_key_id`."""
    directory.secrets[:] = [
        s if s.key_id == keep_key_id else replace(s, revoked=True) for s in directory.secrets
    ]
