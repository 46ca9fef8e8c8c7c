"""App roles on the Defender Bridge HTTP API: who holds which, and tokens for the API.

A web API that defines app roles receives them in the `roles` claim of the access tokens Entra
issues for it, for every kind of caller the roles are assigned to: users (and, through group
membership, groups), apps calling with client credentials, and managed identities
(https://learn.microsoft.com/entra/identity-platform/howto-add-app-roles-in-apps,
https://learn.microsoft.com/entra/identity-platform/access-tokens#payload-claims). The emulator
keeps the assignments in `Directory.api_roles` (principal object id -> role values); the token
endpoint (client credentials with `scope=<app id uri>/.default`), the managed-identity endpoint
(`resource=<app id uri>`) and the users' caller tokens read them.

Seeded assignments (home tenant; `reset` restores them):
- `analyst@<home>`: every action role and `Tenants.All`;
- `reader@<home>`: `Incidents.Read` and `Tenant.<home tenant id>`;
- `newhire@<home>`: none;
- the "SOC automation" app (client credentials): `Incidents.Read`, `Incidents.Write`,
  `Hunting.Run`, `Ingest.Run` and `Tenants.All`;
- the Logic App's user-assigned identity (`id-logic-app`): `Incidents.Read`, `Incidents.Write`,
  `Hunting.Run`, `Subscriptions.Manage` and `Tenants.All`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from emulator import delegated, entra

ACTION_ROLES = entra.API_APP_ROLES[:5]
ALL_TENANTS = "Tenants.All"
#: an app role value: no spaces, at most 120 characters (Entra's rule for `value`)
_ROLE_VALUE = re.compile(r"^[!-~]{1,120}$")

Kind = Literal["user", "app", "identity"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Someone app roles can be assigned to."""

    kind: Kind
    object_id: str
    name: str
    tenant_id: str
    client_id: str | None = None  # apps and identities

    def to_json(self, roles: Iterable[str]) -> dict[str, Any]:
        """The assignment as the admin API shows it."""
        return {
            "kind": self.kind,
            "principal": self.object_id,
            "name": self.name,
            "tenant": self.tenant_id,
            "client_id": self.client_id,
            "roles": list(roles),
        }


def seed(
    directory: entra.Directory,
    users: delegated.DelegatedState,
    automation: entra.ApiClient,
    logic_app: entra.ManagedIdentity,
) -> None:
    """The seeded app-role assignments (see the module docstring)."""
    home = directory.home_tenant_id
    domain = directory.tenants[home].domain
    analyst = users.find_user(f"analyst@{domain}", home)
    reader = users.find_user(f"reader@{domain}", home)
    assert analyst is not None and reader is not None  # seeded in every tenant
    directory.api_clients[automation.client_id] = automation
    directory.api_roles.update(
        {
            analyst.oid: (*ACTION_ROLES, ALL_TENANTS),
            reader.oid: ("Incidents.Read", f"Tenant.{home}"),
            automation.object_id: (
                "Incidents.Read",
                "Incidents.Write",
                "Hunting.Run",
                "Ingest.Run",
                ALL_TENANTS,
            ),
            logic_app.principal_id: (
                "Incidents.Read",
                "Incidents.Write",
                "Hunting.Run",
                "Subscriptions.Manage",
                ALL_TENANTS,
            ),
        }
    )


def principals(directory: entra.Directory, users: delegated.DelegatedState) -> list[Principal]:
    """Every principal roles can be assigned to: users of every tenant, the API's client apps,
    the managed identities."""
    out = [
        Principal("user", u.oid, u.upn, u.tenant_id)
        for u in sorted(users.users.values(), key=lambda u: (u.tenant_id, u.upn))
    ]
    out += [
        Principal("app", c.object_id, c.display_name, directory.home_tenant_id, c.client_id)
        for c in directory.api_clients.values()
    ]
    out += [
        Principal(
            "identity",
            i.principal_id,
            i.resource_id.rsplit("/", 1)[-1],
            directory.home_tenant_id,
            i.client_id,
        )
        for i in directory.identities.values()
    ]
    return out


def find(
    directory: entra.Directory, users: delegated.DelegatedState, selector: str
) -> Principal | None:
    """A principal by object id, client id, UPN, identity name, or a user's nickname in the
    home tenant (`analyst`)."""
    wanted = selector.strip().lower()
    if not wanted:
        return None
    home_domain = directory.tenants[directory.home_tenant_id].domain.lower()
    for principal in principals(directory, users):
        names = {principal.object_id.lower(), principal.name.lower()}
        if principal.client_id:
            names.add(principal.client_id.lower())
        if principal.kind == "user" and principal.name.lower() == f"{wanted}@{home_domain}":
            return principal
        if wanted in names:
            return principal
    return None


def parse_roles(value: Any) -> tuple[str, ...]:
    """Role values from the admin API (a list of well-formed values), else ValueError."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("'roles' must be a list of app role values")
    bad = [v for v in value if not _ROLE_VALUE.fullmatch(v)]
    if bad:
        raise ValueError(
            f"app role values have no spaces and at most 120 characters: {bad[0][:40]!r}"
        )
    return tuple(dict.fromkeys(value))


def assignments(directory: entra.Directory, users: delegated.DelegatedState) -> dict[str, Any]:
    """`GET /_emulator/api`: the API's identifiers, its roles, clients and assignments."""
    with directory.lock, users.lock:
        listed = [
            p.to_json(directory.api_roles.get(p.object_id, ()))
            for p in principals(directory, users)
            if directory.api_roles.get(p.object_id)
        ]
        return {
            "app_id_uri": directory.app_id_uri,
            "client_id": directory.client_id,
            "tenant": directory.home_tenant_id,
            "app_roles": list(entra.API_APP_ROLES),
            # sample credentials of a local stand-in, so scripts can try client credentials
            "clients": [
                {
                    "client_id": c.client_id,
                    "client_secret": c.secret,
                    "object_id": c.object_id,
                    "name": c.display_name,
                }
                for c in directory.api_clients.values()
            ],
            "assignments": listed,
        }


def token(
    service: delegated.DelegatedService,
    principal: Principal,
    *,
    lifetime: int | None = None,
    expired: bool = False,
) -> tuple[str, int]:
    """The token `principal` would get from Entra for the Defender Bridge API (its Application
    ID URI) and its expiry: a user's delegated token, an app's client-credentials token or a
    managed identity's token, each with the principal's app roles."""
    entra_service = service.entra
    directory = entra_service.directory
    if principal.kind == "user":
        with service.state.lock:
            user = service.state.users[principal.object_id]
        return service.caller_token(user, lifetime=lifetime, expired=expired)
    span = lifetime if lifetime is not None else entra_service.settings.token_lifetime
    issued = int(entra_service.clock().timestamp())
    if expired:
        issued -= span + 600
    with directory.lock:
        roles = directory.api_roles.get(principal.object_id, ())
    claims = {
        "aud": directory.app_id_uri,
        "iss": f"https://sts.windows.net/{principal.tenant_id}/",
        "iat": issued,
        "nbf": issued,
        "exp": issued + span,
        "appid": principal.client_id,
        "appidacr": "1" if principal.kind == "app" else "2",
        "idp": f"https://sts.windows.net/{principal.tenant_id}/",
        "idtyp": "app",
        "oid": principal.object_id,
        "sub": principal.object_id,
        "tid": principal.tenant_id,
        "uti": uuid.uuid4().hex[:22],
        "ver": "1.0",
    }
    if roles:
        claims["roles"] = list(roles)
    return entra_service.issuer.issue(claims), issued + span


def set_roles(
    directory: entra.Directory, principal: Principal, roles: tuple[str, ...]
) -> Mapping[str, Any]:
    """Replace the principal's app roles on the API (an empty list removes them)."""
    with directory.lock:
        if roles:
            directory.api_roles[principal.object_id] = roles
        else:
            directory.api_roles.pop(principal.object_id, None)
    return principal.to_json(roles)
