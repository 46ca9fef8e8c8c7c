"""Which handler answers which request: the route tables of the emulator's two ports.

The HTTPS port serves Entra ID, Key Vault, the Defender (legacy) and Graph security APIs and the
admin API, told apart by path alone, so one URL stands in for every Microsoft host. The plain
HTTP port serves the App Service managed-identity endpoint. Each route names the endpoint its
requests are counted under in the stats (`/_emulator/stats`), and whether injected faults may
hit it (the Defender and Graph endpoints only). The handlers are the services' methods, built
over the live state by the control plane for each request, and the admin API's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from emulator import delegated
from emulator.admin import AdminApi
from emulator.control import ControlPlane
from emulator.http import Request, Response

Handler = Callable[[Request, "re.Match[str]"], Response]


@dataclass(frozen=True, slots=True)
class Route:
    """A method and path pattern, the stats endpoint name, its handler."""

    method: str
    pattern: re.Pattern[str]
    endpoint: str
    handler: Handler
    faultable: bool = False  # Defender/Graph endpoints only


def match(
    routes: tuple[Route, ...], request: Request
) -> tuple[Route | None, re.Match[str] | None, set[str]]:
    """The route for the request and its path match, or (None, None, the methods the path
    allows: empty for an unknown path, which is a 404, else a 405)."""
    allowed: set[str] = set()
    for route in routes:
        found = route.pattern.match(request.path)
        if found is None:
            continue
        if route.method == request.method:
            return route, found, allowed
        allowed.add(route.method)
    return None, None, allowed


def _route(method: str, pattern: str, endpoint: str, handler: Handler, **kw: bool) -> Route:
    return Route(method, re.compile(pattern), endpoint, handler, **kw)


def managed_identity_routes(cloud: ControlPlane) -> tuple[Route, ...]:
    """The plain-HTTP port: `GET /msi/token` of the App Service managed-identity protocol."""
    return (
        Route(
            "GET",
            re.compile(r"^/msi/token/?$", re.IGNORECASE),
            "mi.token",
            lambda q, m: cloud.entra_service().managed_identity_token(q),
        ),
    )


def https_routes(cloud: ControlPlane, vault_url: Callable[[], str]) -> tuple[Route, ...]:
    """The HTTPS port: the services, then the admin API (`vault_url`: the base URL the vault
    answers as, known once the port is bound)."""
    return _service_routes(cloud, vault_url) + admin_routes(AdminApi(cloud))


def _service_routes(cloud: ControlPlane, vault_url: Callable[[], str]) -> tuple[Route, ...]:
    r = _route
    entra = cloud.entra_service
    defender = cloud.defender_service
    tenant = r"^/(?P<tenant>[^/_][^/]*)"
    return (
        r(
            "GET",
            tenant + r"/v2\.0/\.well-known/openid-configuration$",
            "entra.discovery",
            lambda q, m: entra().discovery(q, m["tenant"]),
        ),
        r(
            "GET",
            tenant + r"/discovery/v2\.0/keys$",
            "entra.keys",
            lambda q, m: entra().keys(q, m["tenant"]),
        ),
        r(
            "POST",
            tenant + r"/oauth2/v2\.0/token$",
            "entra.token",
            lambda q, m: entra().token(q, m["tenant"]),
        ),
        r(
            "POST",
            tenant + r"/oauth2/token$",
            "entra.token",
            lambda q, m: entra().token(q, m["tenant"], v1=True),
        ),
        r(
            "POST",
            tenant + r"/oauth2/v2\.0/devicecode$",
            "entra.devicecode",
            lambda q, m: cloud.delegated_service().device_authorization(q, m["tenant"]),
        ),
        r(
            "GET",
            r"^/devicelogin/?$",
            "entra.devicelogin",
            lambda q, m: delegated.device_login_page(),
        ),
        r(
            "GET",
            r"^/secrets/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?$",
            "keyvault.secret.get",
            lambda q, m: cloud.keyvault_service(vault_url()).get_secret(
                q, m["name"], m["version"] or ""
            ),
        ),
        r(
            "GET",
            r"^/api/incidents/?$",
            "legacy.incidents.list",
            lambda q, m: defender().legacy_list(q),
            faultable=True,
        ),
        r(
            "GET",
            r"^/api/incidents/(?P<id>[^/]+)$",
            "legacy.incidents.get",
            lambda q, m: defender().legacy_get(q, m["id"]),
            faultable=True,
        ),
        r(
            "PATCH",
            r"^/api/incidents/(?P<id>[^/]+)$",
            "legacy.incidents.update",
            lambda q, m: defender().legacy_update(q, m["id"]),
            faultable=True,
        ),
        r(
            "POST",
            r"^/api/advancedhunting/run$",
            "legacy.hunting.run",
            lambda q, m: defender().legacy_hunting(q),
            faultable=True,
        ),
        r(
            "GET",
            r"^/v1\.0/security/incidents/?$",
            "graph.incidents.list",
            lambda q, m: defender().graph_list(q),
            faultable=True,
        ),
        r(
            "GET",
            r"^/v1\.0/security/incidents/(?P<id>[^/]+)$",
            "graph.incidents.get",
            lambda q, m: defender().graph_get(q, m["id"]),
            faultable=True,
        ),
        r(
            "PATCH",
            r"^/v1\.0/security/incidents/(?P<id>[^/]+)$",
            "graph.incidents.update",
            lambda q, m: defender().graph_update(q, m["id"]),
            faultable=True,
        ),
        r(
            "POST",
            r"^/v1\.0/security/incidents/(?P<id>[^/]+)/comments$",
            "graph.incidents.comment",
            lambda q, m: defender().graph_comment(q, m["id"]),
            faultable=True,
        ),
        r(
            "GET",
            r"^/v1\.0/security/alerts_v2/?$",
            "graph.alerts.list",
            lambda q, m: defender().graph_alerts_list(q),
            faultable=True,
        ),
        r(
            "GET",
            r"^/v1\.0/security/alerts_v2/(?P<id>[^/]+)$",
            "graph.alerts.get",
            lambda q, m: defender().graph_alert_get(q, m["id"]),
            faultable=True,
        ),
        r(
            "POST",
            r"^/v1\.0/security/(?:microsoft\.graph\.security\.)?runHuntingQuery$",
            "graph.hunting.run",
            lambda q, m: defender().graph_hunting(q),
            faultable=True,
        ),
    )


def admin_routes(a: AdminApi) -> tuple[Route, ...]:
    """`/_emulator/...`: endpoint `admin.<name>` (by default the path's first segment); the
    stats never count these."""

    def admin(methods: str, path: str, handler: Handler, name: str = "") -> list[Route]:
        endpoint = "admin." + (name or path.split("/")[0])
        return [_route(m, rf"^/_emulator/{path}$", endpoint, handler) for m in methods.split()]

    return (
        *admin("GET", "stats", a.stats),
        *admin("GET", "requests", a.requests),
        *admin("GET", "truth/(?P<tenant>[^/]+)/incidents", a.truth),
        *admin("POST", "activity", a.activity),
        *admin("POST GET", "faults", a.faults),
        *admin("POST", "reset", a.reset),
        *admin("GET", "quotas", a.quotas),
        *admin("POST", "consent", a.consent),
        *admin("POST", "keyvault/rotate", a.rotate, name="rotate"),
        *admin("POST", "quotas", a.quotas),
        *admin("GET", "users", a.users),
        *admin("POST", "users/token", a.user_token),
        *admin("POST", "users/consent", a.user_consent),
        *admin("GET", "devicecode", a.devicecodes),
        *admin("POST", "devicecode/(?P<action>approve|deny)", a.devicecode_decide),
        *admin("POST GET", "devicecode/auto", a.auto),
        *admin("GET POST", "tokens", a.tokens),
        *admin("GET POST", "behaviour", a.behaviour),
        *admin("GET", "api", a.api),
        *admin("POST", "api/roles", a.api_roles, name="api"),
        *admin("POST", "api/token", a.api_token, name="api"),
    )
