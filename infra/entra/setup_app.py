"""Create or update the Defender Bridge app registration in Entra ID: what Bicep cannot do.

It makes the app registration (multi-tenant with --multi-tenant, for partner use) with the
application permissions each feature needs on the chosen API surface, the consent redirect URI
of the deployed Function, a service principal in the home tenant, optionally the user-assigned
identity as a federated credential (the secretless mode), admin consent in the home tenant, and
a client secret or a self-signed certificate stored in Key Vault. It also exposes the app's own
HTTP API: the Application ID URI (``api://<client id>`` unless --app-id-uri), the app roles
callers are granted (``API_ROLES``, for users, groups and applications), a delegated scope for
users' tokens, and v2 access tokens; --assign gives a principal (a user, a group, or a service
principal such as a Logic App's managed identity, by object id) app roles on that API, and
--define-role defines a role without assigning it (for infra/logicapp/main.bicep). Running
it again updates the same app and adds nothing twice (except a new secret or certificate when
asked for one).

    python infra/entra/setup_app.py --tenant <id> --function-host <host> --dry-run
    python infra/entra/setup_app.py --tenant <id> --function-host <host> \\
        --features ingest,update,hunting --api graph --multi-tenant \\
        --federated-principal-id <identity principal id> --grant-admin-consent
    python infra/entra/setup_app.py --tenant <id> --client-id <app> \\
        --assign <logic app principal id>=Incidents.Read,Subscriptions.Manage,Tenants.All --dry-run

--dry-run prints every call it would make, in order, and makes none (no sign-in needed). A real
run signs in with azure-identity's DefaultAzureCredential (`az login` / `azd auth login`; in US
Government, `az cloud set --name AzureUSGovernment` first) as someone who may create app
registrations (Application Developer; admin consent needs Privileged Role Administrator or
Global Administrator). No secret is ever printed: a secret goes straight into Key Vault.

Permission ids are looked up by name in the resource's service principal (`appRoles`) in the
tenant itself, because they differ between clouds (Microsoft's SOA module,
o365soa/soa `Get-RequiredAppPermissions`, lists other ids for GCC High and DoD). The public
cloud's ids below only feed the dry run's display; they are the ones that module and public
setup scripts use (checked December 2026):
- Microsoft Graph (00000003-0000-0000-c000-000000000000): SecurityIncident.Read.All
  45cc0394-e837-488b-a098-1918f48d186c, SecurityIncident.ReadWrite.All
  34bf0e97-1971-4929-b999-9e2442d941d7, SecurityAlert.Read.All
  472e4a4d-bb4a-4026-98d1-0b0d74cb74a5 (o365soa), ThreatHunting.Read.All
  dd98c7f5-2d42-42d3-a0e4-633161547251 (o365soa).
- Microsoft Threat Protection (8ee8fdad-f234-4243-8f3b-15c294843740, the legacy
  api.security.microsoft.com): Incident.Read.All a9790345-4595-42e4-971a-ccdc79f19b7c
  (o365soa), Incident.ReadWrite.All 8d90f441-09cf-4fdc-ab45-e874fa3a28e8,
  AdvancedHunting.Read.All 7734e8e5-8dde-42fc-b5ae-6eafea078693
  (docs/defender-service.md#permissions: the service principal's published appRoles as listed
  by public permission catalogues).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
LEGACY_APP_ID = "8ee8fdad-f234-4243-8f3b-15c294843740"  # Microsoft Threat Protection
KEY_VAULT_API = "api-version=7.4"
SETTLE_ATTEMPTS = 6
SETTLE_SECONDS = 10.0


@dataclass(frozen=True)
class Cloud:
    """The hosts of one national cloud (the same values as shared/clouds.py; a test checks)."""

    authority_url: str
    graph_api_url: str
    vault_suffix: str
    token_exchange_audience: str


CLOUDS: dict[str, Cloud] = {
    "public": Cloud(
        "https://login.microsoftonline.com",
        "https://graph.microsoft.com",
        "vault.azure.net",
        "api://AzureADTokenExchange",
    ),
    "gcc": Cloud(
        "https://login.microsoftonline.com",
        "https://graph.microsoft.com",
        "vault.azure.net",
        "api://AzureADTokenExchange",
    ),
    "gcchigh": Cloud(
        "https://login.microsoftonline.us",
        "https://graph.microsoft.us",
        "vault.usgovcloudapi.net",
        "api://AzureADTokenExchangeUSGov",
    ),
    "dod": Cloud(
        "https://login.microsoftonline.us",
        "https://dod-graph.microsoft.us",
        "vault.usgovcloudapi.net",
        "api://AzureADTokenExchangeUSGov",
    ),
}

#: Application permissions per API surface and feature (shared/credentials/claims.py checks
#: the same names in tokens). Graph ingestion also reads alerts_v2 when $expand=alerts fails.
PERMISSIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "graph": {
        "ingest": ("SecurityIncident.Read.All", "SecurityAlert.Read.All"),
        "update": ("SecurityIncident.ReadWrite.All",),
        "hunting": ("ThreatHunting.Read.All",),
    },
    "legacy": {
        "ingest": ("Incident.Read.All",),
        "update": ("Incident.ReadWrite.All",),
        "hunting": ("AdvancedHunting.Read.All",),
    },
}
RESOURCE_APPS = {"graph": GRAPH_APP_ID, "legacy": LEGACY_APP_ID}

#: The public cloud's app-role ids (see the module docstring); only the dry run uses them.
KNOWN_ROLE_IDS: dict[str, dict[str, str]] = {
    GRAPH_APP_ID: {
        "SecurityIncident.Read.All": "45cc0394-e837-488b-a098-1918f48d186c",
        "SecurityIncident.ReadWrite.All": "34bf0e97-1971-4929-b999-9e2442d941d7",
        "SecurityAlert.Read.All": "472e4a4d-bb4a-4026-98d1-0b0d74cb74a5",
        "ThreatHunting.Read.All": "dd98c7f5-2d42-42d3-a0e4-633161547251",
    },
    LEGACY_APP_ID: {
        "Incident.Read.All": "a9790345-4595-42e4-971a-ccdc79f19b7c",
        "Incident.ReadWrite.All": "8d90f441-09cf-4fdc-ab45-e874fa3a28e8",
        "AdvancedHunting.Read.All": "7734e8e5-8dde-42fc-b5ae-6eafea078693",
    },
}


#: The app roles of the Defender Bridge HTTP API (value -> description). The app reads them from
#: the ``roles`` claim of callers' tokens (shared/api/access.py; a test checks they agree);
#: ``Tenant.<tenant id>`` roles and an MSSP's own (API_TENANT_ROLES) are defined by --assign.
#: https://learn.microsoft.com/entra/identity-platform/howto-add-app-roles-in-apps
API_ROLES: dict[str, str] = {
    "Incidents.Read": "Read incidents and their alerts",
    "Incidents.Write": "Update incidents (status, assignee, classification, tags, comments)",
    "Hunting.Run": "Run advanced hunting templates",
    "Ingest.Run": "Queue a tenant for ingestion now",
    "Subscriptions.Manage": "Subscribe and unsubscribe webhooks to incidents",
    "Tenants.All": "Act in every registered tenant",
}
#: the delegated scope a user's client asks for (``api://<client id>/access_as_user``)
USER_SCOPE = "access_as_user"
#: an app role value: no spaces (Entra's rule), printable, at most 120 characters
ROLE_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,119}$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def role_id(value: str) -> str:
    """A stable id for an app role (or scope) this script defines: the same on every run and
    every tenant, so a second run recognises it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://defender-bridge/app-role/{value}"))


class SetupError(Exception):
    """A call failed or an answer was not what the Graph or Key Vault documentation says."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


#: (method, url, json body or None) -> answer
Transport = Callable[[str, str, "dict[str, Any] | None"], Answer]


@dataclass
class Options:
    tenant: str
    cloud: str = "public"
    name: str = "Defender Bridge"
    client_id: str | None = None
    apis: tuple[str, ...] = ("graph",)
    features: tuple[str, ...] = ("ingest",)
    multi_tenant: bool = False
    function_host: str | None = None
    federated_principal_id: str | None = None
    grant_admin_consent: bool = False
    vault_url: str | None = None
    store_secret: bool = False
    secret_name: str = "defender-client-secret"  # noqa: S105 - a name
    secret_days: int = 180
    store_certificate: bool = False
    certificate_name: str = "defender-certificate"
    #: the API's Application ID URI; None: api://<client id>
    app_id_uri: str | None = None
    #: (principal object id, app role values) to assign on the API
    assign: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: app role values to define on the API without assigning them (for an assignment made
    #: elsewhere, e.g. the Logic App sample's Bicep: infra/logicapp/roles.bicep)
    define_roles: tuple[str, ...] = ()
    wait: Callable[[float], None] = field(default=time.sleep, repr=False)


def required_permissions(apis: Iterable[str], features: Iterable[str]) -> dict[str, list[str]]:
    """Resource app id -> permission names, without a Read.All that a ReadWrite.All covers."""
    out: dict[str, list[str]] = {}
    for api in apis:
        names: list[str] = []
        for feature in features:
            for name in PERMISSIONS[api][feature]:
                if name not in names:
                    names.append(name)
        names = [n for n in names if not (n.endswith(".Read.All") and _read_write(n) in names)]
        out[RESOURCE_APPS[api]] = names
    return out


def _read_write(name: str) -> str:
    return name.removesuffix(".Read.All") + ".ReadWrite.All"


def consent_redirect_uri(function_host: str) -> str:
    """Where `GET /api/consent/callback` of the deployed app answers admin consent."""
    host = function_host.removeprefix("https://").rstrip("/")
    return f"https://{host}/api/consent/callback"


class Setup:
    """The steps, in order, against any transport (the real one or the dry run's)."""

    def __init__(self, options: Options, call: Transport, log: Callable[[str], None]) -> None:
        self.o = options
        self.cloud = CLOUDS[options.cloud]
        self.graph = f"{self.cloud.graph_api_url}/v1.0"
        self.call = call
        self.log = log

    def _ok(
        self, method: str, url: str, body: dict[str, Any] | None = None, *, settling: bool = False
    ) -> dict[str, Any]:
        """One call; a non-2xx answer is an error. ``settling``: the call refers to something
        just created (a service principal, a role assignment), which Entra ID and Azure RBAC
        take a while to replicate, so a 400/403/404 is retried a few times first
        (https://learn.microsoft.com/graph/api/serviceprincipal-post-approleassignedto ,
        https://learn.microsoft.com/azure/role-based-access-control/troubleshooting#symptom---role-assignment-changes-are-not-being-detected)."""
        for attempt in range(SETTLE_ATTEMPTS if settling else 1):
            if attempt:
                self.o.wait(SETTLE_SECONDS)
            answer = self.call(method, url, body)
            if 200 <= answer.status < 300:
                return answer.body
            if answer.status not in (400, 403, 404):
                break
        error = answer.body.get("error", {})
        message = error.get("message") if isinstance(error, dict) else None
        raise SetupError(f"{method} {url}: HTTP {answer.status}: {message or 'no message'}")

    def _list(self, url: str) -> list[dict[str, Any]]:
        """Every item of a Graph collection, following ``@odata.nextLink`` page by page: a
        collection answers one page at a time, and a rerun that saw only the first page would
        add again what it missed (https://learn.microsoft.com/graph/paging)."""
        items: list[dict[str, Any]] = []
        next_url: str | None = url
        while next_url:
            page = self._ok("GET", next_url)
            items += page.get("value", [])
            link = page.get("@odata.nextLink")
            next_url = link if isinstance(link, str) and link else None
        return items

    def run(self) -> str:
        """Do every step; returns the app's client id."""
        roles = self.resolve_roles()
        app, api_roles, app_id_uri = self.upsert_application(roles)
        app_sp = self.ensure_service_principal(app["appId"])
        if self.o.federated_principal_id:
            self.upsert_federated_credential(app["id"], self.o.federated_principal_id)
        if self.o.grant_admin_consent:
            self.grant_admin_consent(app_sp, roles)
        if self.o.assign:
            self.assign_roles(app_sp, api_roles)
        if self.o.store_secret:
            self.store_secret(app["id"])
        if self.o.store_certificate:
            self.store_certificate(app)
        self.log(
            f"app registration ready: DEFENDER_CLIENT_ID={app['appId']} API_APP_ID_URI={app_id_uri}"
        )
        return str(app["appId"])

    # -- permissions ---------------------------------------------------------------------
    def resolve_roles(self) -> dict[str, tuple[str, dict[str, str]]]:
        """Resource app id -> (its service principal id, permission name -> app-role id)."""
        out: dict[str, tuple[str, dict[str, str]]] = {}
        for app_id, names in required_permissions(self.o.apis, self.o.features).items():
            url = f"{self.graph}/servicePrincipals(appId='{app_id}')?$select=id,appId,appRoles"
            sp = self._ok("GET", url)
            published = {r.get("value"): r.get("id") for r in sp.get("appRoles", [])}
            missing = [n for n in names if not published.get(n)]
            if missing:
                raise SetupError(
                    f"{app_id} publishes no app role {', '.join(missing)} in this tenant"
                )
            out[app_id] = (str(sp["id"]), {n: str(published[n]) for n in names})
        return out

    # -- the application -------------------------------------------------------------------
    def find_application(self) -> dict[str, Any] | None:
        if self.o.client_id:
            query = f"appId eq '{self.o.client_id}'"
        else:
            query = f"displayName eq '{self.o.name.replace(chr(39), chr(39) * 2)}'"
        url = f"{self.graph}/applications?$filter={quote(query)}"
        found = self._list(url)
        if len(found) > 1:
            raise SetupError(f"{len(found)} applications match {query}: pass --client-id")
        if not found and self.o.client_id:
            raise SetupError(f"no application with appId {self.o.client_id} in this tenant")
        return found[0] if found else None

    def upsert_application(
        self, roles: Mapping[str, tuple[str, Mapping[str, str]]]
    ) -> tuple[Any, dict[str, str], str]:
        """Create or update the app; returns it, its API's app roles (value -> id) and its
        Application ID URI."""
        existing = self.find_application()
        wanted = [
            {
                "resourceAppId": app_id,
                "resourceAccess": [{"id": rid, "type": "Role"} for rid in ids.values()],
            }
            for app_id, (_, ids) in roles.items()
        ]
        body: dict[str, Any] = {
            "displayName": self.o.name,
            "signInAudience": "AzureADMultipleOrgs" if self.o.multi_tenant else "AzureADMyOrg",
        }
        redirects = [consent_redirect_uri(self.o.function_host)] if self.o.function_host else []
        app_roles = _merge_app_roles(
            (existing or {}).get("appRoles") or [],
            [
                *API_ROLES,
                *(r for _, wanted_roles in self.o.assign for r in wanted_roles),
                *self.o.define_roles,
            ],
        )
        body["appRoles"] = app_roles
        body["api"] = _expose_api((existing or {}).get("api") or {})
        if existing is None:
            body["requiredResourceAccess"] = wanted
            body["web"] = {"redirectUris": redirects}
            created = self._ok("POST", f"{self.graph}/applications", body)
            # the default Application ID URI names the client id, known once the app exists
            uri = self.o.app_id_uri or f"api://{created['appId']}"
            self._ok(
                "PATCH",
                f"{self.graph}/applications/{created['id']}",
                {"identifierUris": [uri]},
                settling=True,
            )
            return created, _role_ids(app_roles), uri
        # keep what an administrator added: other resources, other redirect URIs, other roles
        body["requiredResourceAccess"] = _merge_access(
            existing.get("requiredResourceAccess") or [], wanted
        )
        old = (existing.get("web") or {}).get("redirectUris") or []
        body["web"] = {"redirectUris": old + [u for u in redirects if u not in old]}
        uri = self.o.app_id_uri or f"api://{existing['appId']}"
        uris = list(existing.get("identifierUris") or [])
        body["identifierUris"] = uris + ([uri] if uri not in uris else [])
        self._ok("PATCH", f"{self.graph}/applications/{existing['id']}", body)
        return existing, _role_ids(app_roles), uri

    def ensure_service_principal(self, app_id: str) -> str:
        url = f"{self.graph}/servicePrincipals(appId='{app_id}')?$select=id,appId"
        answer = self.call("GET", url, None)
        if answer.status == 404:
            created = self._ok("POST", f"{self.graph}/servicePrincipals", {"appId": app_id})
            return str(created["id"])
        if answer.status != 200:
            raise SetupError(f"GET {url}: HTTP {answer.status}")
        return str(answer.body["id"])

    def upsert_federated_credential(self, app_object_id: str, principal_id: str) -> None:
        """The user-assigned identity as the app's credential
        (docs/defender-service.md#federated-credentials)."""
        # https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity
        body = {
            "name": f"defender-bridge-{principal_id[:8]}",
            "issuer": f"{self.cloud.authority_url}/{self.o.tenant}/v2.0",
            "subject": principal_id,
            "audiences": [self.cloud.token_exchange_audience],
            "description": "Defender Bridge Function app (user-assigned managed identity)",
        }
        base = f"{self.graph}/applications/{app_object_id}/federatedIdentityCredentials"
        existing = self._list(base)
        same = [c for c in existing if c.get("name") == body["name"]]
        if same:
            # the name identifies the credential and cannot change; the rest is brought up to date
            update = {k: v for k, v in body.items() if k != "name"}
            self._ok("PATCH", f"{base}/{same[0]['id']}", update)
        else:
            self._ok("POST", base, body, settling=True)

    def grant_admin_consent(
        self, app_sp: str, roles: Mapping[str, tuple[str, Mapping[str, str]]]
    ) -> None:
        """Admin consent in the home tenant: app-role assignments to the app's principal."""
        url = f"{self.graph}/servicePrincipals/{app_sp}/appRoleAssignments"
        granted = {(a.get("resourceId"), a.get("appRoleId")) for a in self._list(url)}
        for _, (resource_sp, ids) in roles.items():
            for role_id in ids.values():
                if (resource_sp, role_id) in granted:
                    continue
                self._ok(
                    "POST",
                    f"{self.graph}/servicePrincipals/{resource_sp}/appRoleAssignedTo",
                    {"principalId": app_sp, "resourceId": resource_sp, "appRoleId": role_id},
                    settling=True,
                )

    def assign_roles(self, app_sp: str, api_roles: Mapping[str, str]) -> None:
        """App roles on the API for users, groups and service principals (a Logic App's managed
        identity): each an app-role assignment on the app's own service principal
        (https://learn.microsoft.com/graph/api/serviceprincipal-post-approleassignedto)."""
        url = f"{self.graph}/servicePrincipals/{app_sp}/appRoleAssignedTo"
        held = {(a.get("principalId"), a.get("appRoleId")) for a in self._list(url)}
        for principal, wanted in self.o.assign:
            for value in wanted:
                if (principal, api_roles[value]) in held:
                    continue
                self._ok(
                    "POST",
                    url,
                    {"principalId": principal, "resourceId": app_sp, "appRoleId": api_roles[value]},
                    settling=True,  # a role just defined takes a while to replicate
                )
                self.log(f"assigned {value} to {principal}")

    # -- credentials in Key Vault ----------------------------------------------------------
    def _vault(self) -> str:
        if not self.o.vault_url:
            raise SetupError("--vault-url is needed to store a secret or a certificate")
        return self.o.vault_url.rstrip("/")

    def store_secret(self, app_object_id: str) -> None:
        vault = self._vault()
        end = datetime.now(UTC) + timedelta(days=self.o.secret_days)
        created = self._ok(
            "POST",
            f"{self.graph}/applications/{app_object_id}/addPassword",
            {
                "passwordCredential": {
                    "displayName": "defender-bridge",
                    "endDateTime": end.isoformat().replace("+00:00", "Z"),
                }
            },
        )
        secret = created.get("secretText")
        if not isinstance(secret, str) or not secret:
            raise SetupError("addPassword answered without secretText")
        self._ok(
            "PUT",
            f"{vault}/secrets/{self.o.secret_name}?{KEY_VAULT_API}",
            {
                "value": secret,
                "contentType": "text/plain",
                "attributes": {"exp": int(end.timestamp())},
            },
            settling=True,  # the role assignment of `azd up` may not have reached the vault yet
        )

    def store_certificate(self, app: Mapping[str, Any]) -> None:
        """A self-signed certificate made in Key Vault (the key never leaves it); its public
        part goes into the app's keyCredentials, keeping the existing ones
        (microsoft-graph-docs concepts/applications-how-to-add-certificate.md)."""
        vault = self._vault()
        name = self.o.certificate_name
        policy = {
            "policy": {
                "key_props": {
                    "exportable": True,
                    "kty": "RSA",
                    "key_size": 2048,
                    "reuse_key": False,
                },
                "secret_props": {"contentType": "application/x-pkcs12"},
                "x509_props": {"subject": f"CN={self.o.name}", "validity_months": 12},
                "issuer": {"name": "Self"},
            }
        }
        self._ok(
            "POST", f"{vault}/certificates/{name}/create?{KEY_VAULT_API}", policy, settling=True
        )
        for _ in range(30):
            pending = self._ok("GET", f"{vault}/certificates/{name}/pending?{KEY_VAULT_API}")
            if pending.get("status") == "completed":
                break
            if pending.get("status") not in ("inProgress", None):
                raise SetupError(f"Key Vault certificate {name}: {pending.get('status')}")
            self.o.wait(2.0)
        else:
            raise SetupError(f"Key Vault certificate {name} is still pending")
        cert = self._ok("GET", f"{vault}/certificates/{name}?{KEY_VAULT_API}")
        keep = [{k: v for k, v in c.items() if k != "key"} for c in app.get("keyCredentials") or []]
        keep.append(
            {
                "type": "AsymmetricX509Cert",
                "usage": "Verify",
                "key": cert["cer"],
                "displayName": f"CN={self.o.name}",
            }
        )
        self._ok("PATCH", f"{self.graph}/applications/{app['id']}", {"keyCredentials": keep})


def _merge_access(
    existing: list[dict[str, Any]], wanted: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    merged = {e["resourceAppId"]: list(e.get("resourceAccess") or []) for e in existing}
    for w in wanted:
        have = merged.setdefault(w["resourceAppId"], [])
        for access in w["resourceAccess"]:
            if access not in have:
                have.append(access)
    return [{"resourceAppId": k, "resourceAccess": v} for k, v in merged.items()]


def _merge_app_roles(existing: list[dict[str, Any]], values: Iterable[str]) -> list[dict[str, Any]]:
    """The app's roles: the existing ones kept as they are, the missing ones of ``values`` added
    (for users, groups and applications)."""
    merged = [dict(r) for r in existing]
    have = {r.get("value") for r in merged}
    for value in dict.fromkeys(values):
        if value in have:
            continue
        description = API_ROLES.get(value) or (
            f"Act in tenant {value.removeprefix('Tenant.')}"
            if value.startswith("Tenant.")
            else f"Defender Bridge role {value} (API_TENANT_ROLES)"
        )
        merged.append(
            {
                "id": role_id(value),
                "value": value,
                "displayName": value,
                "description": description,
                "allowedMemberTypes": ["User", "Application"],
                "isEnabled": True,
            }
        )
    return merged


def _role_ids(app_roles: list[dict[str, Any]]) -> dict[str, str]:
    return {str(r["value"]): str(r["id"]) for r in app_roles if r.get("value") and r.get("id")}


def _expose_api(existing: Mapping[str, Any]) -> dict[str, Any]:
    """The app's ``api``: v2 access tokens for it (issuer ``{authority}/{tid}/v2.0``, what the
    deployment's App Service Authentication is configured for) and the ``access_as_user`` scope
    users' clients ask for; whatever else is there is kept."""
    scopes = [dict(s) for s in existing.get("oauth2PermissionScopes") or []]
    if not any(s.get("value") == USER_SCOPE for s in scopes):
        scopes.append(
            {
                "id": role_id(f"scope/{USER_SCOPE}"),
                "value": USER_SCOPE,
                "type": "User",
                "isEnabled": True,
                "adminConsentDisplayName": "Use Defender Bridge as the signed-in user",
                "adminConsentDescription": "Call the Defender Bridge API as the signed-in user, "
                "within the app roles the user is assigned",
                "userConsentDisplayName": "Use Defender Bridge as you",
                "userConsentDescription": "Call the Defender Bridge API as you",
            }
        )
    return {**existing, "requestedAccessTokenVersion": 2, "oauth2PermissionScopes": scopes}


# -- the dry run -----------------------------------------------------------------------------

#: secrets in request bodies: a certificate's ``key``, ``secretText`` anywhere; ``value`` only at
#: the top (a Key Vault secret), since app roles and scopes have a ``value`` that is a name
_REDACT = {"secretText", "key"}
_REDACT_TOP = {*_REDACT, "value"}


def _redacted(body: Any, top: bool = True) -> Any:
    if isinstance(body, dict):
        hidden = _REDACT_TOP if top else _REDACT
        return {k: "<redacted>" if k in hidden else _redacted(v, False) for k, v in body.items()}
    if isinstance(body, list):
        return [_redacted(v, False) for v in body]
    return body


class DryRun:
    """Prints each call and answers as a tenant where nothing exists yet would (or, with
    --client-id, where that app exists), so every step of a real run is shown, in order."""

    def __init__(self, options: Options, out: Callable[[str], None]) -> None:
        self.o = options
        self.out = out
        self.calls: list[tuple[str, str]] = []

    def __call__(self, method: str, url: str, body: dict[str, Any] | None) -> Answer:
        self.calls.append((method, url))
        self.out(f"{method} {url}")
        if body is not None:
            self.out("    " + json.dumps(_redacted(body), sort_keys=True))
        return self._answer(method, url)

    def _answer(self, method: str, url: str) -> Answer:
        path = url.split("?", 1)[0]
        for app_id, roles in KNOWN_ROLE_IDS.items():
            if path.endswith(f"servicePrincipals(appId='{app_id}')"):
                values = [{"value": n, "id": i} for n, i in roles.items()]
                return Answer(200, {"id": f"<{app_id[:8]}-sp-id>", "appRoles": values})
        if method == "GET" and path.endswith("/applications"):
            if self.o.client_id:
                app = {"id": "<app-object-id>", "appId": self.o.client_id, "keyCredentials": []}
                return Answer(200, {"value": [app]})
            return Answer(200, {"value": []})
        if method == "POST" and path.endswith("/applications"):
            return Answer(201, {"id": "<app-object-id>", "appId": "<app-client-id>"})
        if method == "GET" and "servicePrincipals(appId=" in path:
            if self.o.client_id:
                return Answer(200, {"id": "<app-sp-id>"})
            return Answer(404, {"error": {"code": "Request_ResourceNotFound"}})
        if method == "POST" and path.endswith("/servicePrincipals"):
            return Answer(201, {"id": "<app-sp-id>"})
        if path.endswith("/addPassword"):
            return Answer(200, {"secretText": "<secret>"})
        if path.endswith("/pending"):
            return Answer(200, {"status": "completed"})
        if method == "GET" and "/certificates/" in path:
            return Answer(200, {"cer": "<certificate>"})
        if method == "GET":
            return Answer(200, {"value": []})
        return Answer(200, {})


# -- the real transport ------------------------------------------------------------------------


def real_transport(options: Options) -> Transport:  # pragma: no cover - needs a real tenant
    import requests
    from azure.identity import DefaultAzureCredential

    cloud = CLOUDS[options.cloud]
    credential = DefaultAzureCredential(
        authority=cloud.authority_url.removeprefix("https://"),
        additionally_allowed_tenants=[options.tenant],
    )
    session = requests.Session()

    def call(method: str, url: str, body: dict[str, Any] | None) -> Answer:
        scope = (
            f"https://{cloud.vault_suffix}/.default"
            if cloud.vault_suffix in url.split("/", 3)[2]
            else f"{cloud.graph_api_url}/.default"
        )
        token = credential.get_token(scope, tenant_id=options.tenant).token
        response = session.request(
            method, url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        try:
            data = response.json() if response.content else {}
        except ValueError:
            data = {}
        return Answer(response.status_code, data if isinstance(data, dict) else {})

    return call


def parse_args(argv: list[str] | None) -> tuple[Options, bool]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tenant", required=True, help="home tenant id (DEFENDER_TENANT_ID)")
    p.add_argument("--cloud", choices=sorted(CLOUDS), default="public", help="DEFENDER_CLOUD")
    p.add_argument("--name", default="Defender Bridge", help="display name of the app")
    p.add_argument("--client-id", help="update this app (DEFENDER_CLIENT_ID) instead of by name")
    p.add_argument(
        "--api", choices=["graph", "legacy", "both"], default="graph", help="DEFENDER_API"
    )
    p.add_argument(
        "--features",
        default="ingest",
        help="DEFENDER_FEATURES: comma list of ingest,update,hunting",
    )
    p.add_argument("--multi-tenant", action="store_true", help="partner use: other tenants consent")
    p.add_argument("--function-host", help="FUNCTION_APP_HOST (azd output): consent redirect URI")
    p.add_argument(
        "--federated-principal-id",
        help="AZURE_USER_ASSIGNED_IDENTITY_PRINCIPAL_ID (azd output): federated credential",
    )
    p.add_argument("--grant-admin-consent", action="store_true", help="consent in the home tenant")
    p.add_argument("--vault-url", help="KEY_VAULT_URL (azd output), to store a credential")
    p.add_argument(
        "--store-secret", action="store_true", help="add a client secret, into the vault"
    )
    p.add_argument("--secret-name", default="defender-client-secret")
    p.add_argument("--secret-days", type=int, default=180)
    p.add_argument(
        "--store-certificate", action="store_true", help="self-signed, made in the vault"
    )
    p.add_argument("--certificate-name", default="defender-certificate")
    p.add_argument(
        "--app-id-uri", help="API_APP_ID_URI: the API's Application ID URI (api://<client id>)"
    )
    p.add_argument(
        "--assign",
        action="append",
        default=[],
        metavar="PRINCIPAL_ID=ROLE[,ROLE...]",
        help="give a user, group or service principal (a Logic App's managed identity: its "
        "principal id) app roles on the API, e.g. Incidents.Read,Tenants.All or "
        "Tenant.<tenant id>; repeatable",
    )
    p.add_argument(
        "--define-role",
        action="append",
        default=[],
        metavar="ROLE",
        help="define an app role on the API without assigning it (Tenant.<tenant id>, an "
        "API_TENANT_ROLES name), for an assignment made elsewhere such as "
        "infra/logicapp/main.bicep; repeatable",
    )
    p.add_argument("--dry-run", action="store_true", help="print every call, make none")
    a = p.parse_args(argv)
    defined = tuple(dict.fromkeys(r.strip() for r in a.define_role))
    bad_roles = [r for r in defined if not ROLE_VALUE.fullmatch(r)]
    if bad_roles:
        p.error(
            f"--define-role: {bad_roles[0]!r} is not an app role value (letters, digits, . _ : -)"
        )
    assign: list[tuple[str, tuple[str, ...]]] = []
    for item in a.assign:
        principal, sep, listed = item.partition("=")
        wanted = tuple(dict.fromkeys(r.strip() for r in listed.split(",") if r.strip()))
        if not sep or not GUID.fullmatch(principal.strip()) or not wanted:
            p.error(f"--assign {item!r}: give PRINCIPAL_ID=ROLE[,ROLE...] (an object id)")
        bad = [r for r in wanted if not ROLE_VALUE.fullmatch(r)]
        if bad:
            p.error(f"--assign: {bad[0]!r} is not an app role value (letters, digits, . _ : -)")
        assign.append((principal.strip().lower(), wanted))
    if a.app_id_uri and not re.fullmatch(r"(api|https)://[^\s?#]+", a.app_id_uri):
        p.error("--app-id-uri: api://... or https://<verified domain>/...")
    features = tuple(f.strip() for f in a.features.split(",") if f.strip())
    unknown = [f for f in features if f not in PERMISSIONS["graph"]]
    if unknown or not features:
        p.error(f"--features: unknown {', '.join(unknown) or '(empty)'}")
    if a.store_secret and a.store_certificate:
        p.error("choose one of --store-secret and --store-certificate")
    if (a.store_secret or a.store_certificate) and not a.vault_url:
        p.error("--vault-url is needed with --store-secret / --store-certificate")
    options = Options(
        tenant=a.tenant,
        cloud=a.cloud,
        name=a.name,
        client_id=a.client_id,
        apis=("graph", "legacy") if a.api == "both" else (a.api,),
        features=features,
        multi_tenant=a.multi_tenant,
        function_host=a.function_host,
        federated_principal_id=a.federated_principal_id,
        grant_admin_consent=a.grant_admin_consent,
        vault_url=a.vault_url,
        store_secret=a.store_secret,
        secret_name=a.secret_name,
        secret_days=a.secret_days,
        store_certificate=a.store_certificate,
        certificate_name=a.certificate_name,
        app_id_uri=a.app_id_uri.rstrip("/") if a.app_id_uri else None,
        assign=tuple(assign),
        define_roles=defined,
    )
    return options, a.dry_run


def main(argv: list[str] | None = None) -> int:
    options, dry_run = parse_args(argv)
    transport: Transport = DryRun(options, print) if dry_run else real_transport(options)
    try:
        Setup(options, transport, print).run()
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if dry_run:
        print("dry run: no call was made")
    return 0


if __name__ == "__main__":
    sys.exit(main())
