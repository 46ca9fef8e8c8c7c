"""Legacy Defender XDR (`/api/...`) and Graph security (`/v1.0/security/...`) API handlers.

Both surfaces read the same `IncidentStore`; `emulator.render` produces each shape. Contract:
defender-api.md §1.2-1.7 (legacy: `$filter` subset, `$top` <= 100, `$skip`, error body
`{"error":{"code","message","target"}}`) and §2.2-2.6 (Graph: `$filter`, `$top`, `$skip`,
`$count`, `$expand=alerts`, `@odata.nextLink`, error body with `innerError`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from emulator import odata, render
from emulator.data import TenantGenerator, sorted_newest_first
from emulator.entra import (
    GRAPH_RESOURCES,
    LEGACY_RESOURCES,
    Claims,
    TokenError,
    TokenIssuer,
    bearer_token,
)
from emulator.http import Request, Response, json_response, new_request_id
from emulator.model import Clock, Incident

# Page sizes. Legacy: maximum 100 (documented, §1.2); the default is undocumented, 100 here.
# Graph: neither default nor maximum is documented (§7.6); the emulator uses 50 and 1000.
LEGACY_MAX_TOP = 100
LEGACY_DEFAULT_TOP = 100
GRAPH_DEFAULT_TOP = 50
GRAPH_MAX_TOP = 1000

LEGACY_STATUSES = ("Active", "InProgress", "Resolved", "Redirected")
LEGACY_FILTER = {
    "lastUpdateTime": odata.FieldSpec("datetime", odata.DATETIME_OPS - {"eq", "ne"}),
    "createdTime": odata.FieldSpec("datetime", odata.DATETIME_OPS - {"eq", "ne"}),
    "status": odata.FieldSpec("enum", odata.STRING_OPS, LEGACY_STATUSES),
    "assignedTo": odata.FieldSpec("string", odata.STRING_OPS),
}
GRAPH_INCIDENT_FILTER = {
    "lastUpdateDateTime": odata.FieldSpec("datetime", odata.DATETIME_OPS),
    "createdDateTime": odata.FieldSpec("datetime", odata.DATETIME_OPS),
    "status": odata.FieldSpec(
        "enum",
        odata.STRING_OPS,
        ("active", "resolved", "inProgress", "redirected", "unknownFutureValue", "awaitingAction"),
    ),
    "severity": odata.FieldSpec(
        "enum",
        odata.STRING_OPS,
        ("unknown", "informational", "low", "medium", "high", "unknownFutureValue"),
    ),
    "assignedTo": odata.FieldSpec("string", odata.STRING_OPS),
    "classification": odata.FieldSpec(
        "enum",
        odata.STRING_OPS,
        (
            "unknown",
            "falsePositive",
            "truePositive",
            "informationalExpectedActivity",
            "unknownFutureValue",
        ),
    ),
    "determination": odata.FieldSpec(
        "enum",
        odata.STRING_OPS,
        (
            "unknown",
            "apt",
            "malware",
            "securityPersonnel",
            "securityTesting",
            "unwantedSoftware",
            "other",
            "multiStagedAttack",
            "compromisedUser",
            "phishing",
            "maliciousUserActivity",
            "clean",
            "insufficientData",
            "confirmedUserActivity",
            "lineOfBusinessApplication",
            "unknownFutureValue",
            # The PATCH/alert pages' spellings (§2.3, §2.4): accepted, never stored.
            "compromisedAccount",
            "notMalicious",
            "notEnoughDataToValidate",
            "confirmedActivity",
        ),
    ),
}

# Permissions that satisfy each operation (application roles; delegated scopes in `scp`).
READ_INCIDENTS_LEGACY = ("Incident.Read.All", "Incident.ReadWrite.All")
READ_INCIDENTS_GRAPH = ("SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All")
_DELEGATED = {
    "Incident.Read.All": "Incident.Read",
    "Incident.ReadWrite.All": "Incident.ReadWrite",
    "AdvancedHunting.Read.All": "AdvancedHunting.Read",
}


@dataclass
class IncidentStore:
    """Incidents per tenant plus the seeded generators that keep simulating activity."""

    incidents: dict[str, dict[int, Incident]] = field(default_factory=dict)
    generators: dict[str, TenantGenerator] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def snapshot(self, tenant_id: str) -> list[Incident]:
        """The tenant's incidents, newest first."""
        with self.lock:
            return sorted_newest_first(list(self.incidents.get(tenant_id, {}).values()))

    def get(self, tenant_id: str, incident_id: int) -> Incident | None:
        """One incident, or None."""
        with self.lock:
            return self.incidents.get(tenant_id, {}).get(incident_id)


def legacy_error(
    status: int,
    code: str,
    message: str,
    *,
    tenant: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> Response:
    """`{"error":{"code","message","target"}}`, `target` a tracking GUID (§1.7)."""
    return json_response(
        status,
        {"error": {"code": code, "message": message, "target": new_request_id()}},
        tenant=tenant,
        headers=headers,
    )


def graph_error(
    status: int,
    code: str,
    message: str,
    request: Request,
    now: datetime,
    *,
    tenant: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> Response:
    """`{"error":{"code","message","innerError":{date, request-id, client-request-id}}}` (§2.6)."""
    request_id = new_request_id()
    inner = {
        "date": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id,
        "client-request-id": request.header("client-request-id") or request_id,
    }
    return json_response(
        status,
        {"error": {"code": code, "message": message, "innerError": inner}},
        tenant=tenant,
        headers=(("request-id", request_id), *headers),
    )


def next_link(request: Request, skip: int) -> str:
    """Absolute link on the host the request used, with `$skip` replaced (§1.2 recommendation)."""
    parts = [(k, v) for k, values in request.query.items() for v in values if k != "$skip"]
    parts.append(("$skip", str(skip)))
    query = "&".join(f"{quote(k, safe='$')}={quote(v, safe=':,()')}" for k, v in parts)
    return f"{request.base_url}{request.path}?{query}"


def _legacy_row(incident: Incident) -> dict[str, Any]:
    return {
        "lastUpdateTime": incident.last_update_time,
        "createdTime": incident.created_time,
        "status": incident.status,
        "assignedTo": incident.assigned_to,
    }


def _graph_row(incident: Incident) -> dict[str, Any]:
    return {
        "lastUpdateDateTime": incident.last_update_time,
        "createdDateTime": incident.created_time,
        "status": render.graph_enum(incident.status),
        "severity": render.graph_enum(incident.severity),
        "assignedTo": incident.assigned_to,
        "classification": render.graph_enum(incident.classification),
        "determination": render.graph_enum(incident.determination),
    }


class DefenderService:
    """Handlers of both API surfaces over one `IncidentStore`."""

    def __init__(self, store: IncidentStore, issuer: TokenIssuer, clock: Clock) -> None:
        self.store = store
        self.issuer = issuer
        self.clock = clock

    # ------------------------------------------------------------------ auth

    def authorize_legacy(self, request: Request, any_of: Iterable[str]) -> Claims | Response:
        """Claims of a valid legacy-API token holding one of `any_of`, else the error response."""
        token = bearer_token(request)
        if token is None:
            return legacy_error(
                401, "Unauthorized", "Authorization header is missing or is not a bearer token."
            )
        try:
            claims = self.issuer.verify(token, LEGACY_RESOURCES)
        except TokenError as exc:
            return legacy_error(401, "Unauthorized", f"Invalid Authorization header: {exc}.")
        wanted = tuple(any_of)
        if not _has_permission(claims, wanted):
            return legacy_error(
                403,
                "Forbidden",
                "The application does not have any of the required application permissions "
                f"({', '.join(reversed(wanted))}) to access the resource.",
                tenant=claims.tenant_id,
            )
        return claims

    def authorize_graph(self, request: Request, any_of: Iterable[str]) -> Claims | Response:
        """Claims of a valid Graph token holding one of `any_of`, else the error response."""
        now = self.clock()
        token = bearer_token(request)
        if token is None:
            return graph_error(
                401, "InvalidAuthenticationToken", "Access token is empty.", request, now
            )
        try:
            claims = self.issuer.verify(token, GRAPH_RESOURCES)
        except TokenError as exc:
            message = {
                "expired": "Lifetime validation failed, the token is expired.",
                "audience": "Invalid audience.",
            }.get(exc.reason, "Access token validation failure. Invalid signature.")
            return graph_error(401, "InvalidAuthenticationToken", message, request, now)
        wanted = tuple(any_of)
        if not _has_permission(claims, wanted):
            return graph_error(
                403,
                "Forbidden",
                f"Missing application roles. API required roles: {', '.join(wanted)}. "
                f"Roles on the token: {', '.join(claims.roles) or 'none'}.",
                request,
                now,
                tenant=claims.tenant_id,
            )
        return claims

    # ------------------------------------------------------------------ legacy

    def legacy_list(self, request: Request) -> Response:
        """`GET /api/incidents` (§1.2)."""
        auth = self.authorize_legacy(request, READ_INCIDENTS_LEGACY)
        if isinstance(auth, Response):
            return auth
        tid = auth.tenant_id
        try:
            odata.check_options(request.query, frozenset({"$filter", "$top", "$skip"}))
            predicate = odata.parse_filter(request.param("$filter"), LEGACY_FILTER)
            top = odata.parse_int_option("$top", request.param("$top"), LEGACY_DEFAULT_TOP, None)
            if top > LEGACY_MAX_TOP:
                raise odata.ODataError(
                    f"the value of $top ({top}) exceeds the maximum page size of "
                    f"{LEGACY_MAX_TOP} incidents"
                )
            skip = odata.parse_int_option("$skip", request.param("$skip"), 0, None)
        except odata.ODataError as exc:
            return legacy_error(400, "ODataError", f"Invalid OData URI query: {exc}", tenant=tid)
        matching = [i for i in self.store.snapshot(tid) if predicate(_legacy_row(i))]
        page = matching[skip : skip + top]
        payload: dict[str, Any] = {
            "@odata.context": f"{request.base_url}/api/$metadata#Incidents",
            "value": [render.legacy_incident(i) for i in page],
        }
        if top and skip + top < len(matching):
            payload["@odata.nextLink"] = next_link(request, skip + top)
        return json_response(200, payload, tenant=tid)

    def legacy_get(self, request: Request, raw_id: str) -> Response:
        """`GET /api/incidents/{id}` (§1.3)."""
        auth = self.authorize_legacy(request, READ_INCIDENTS_LEGACY)
        if isinstance(auth, Response):
            return auth
        tid = auth.tenant_id
        incident = self.store.get(tid, int(raw_id)) if raw_id.isdigit() else None
        if incident is None:
            return legacy_error(
                404, "ResourceNotFound", f"Incident {raw_id} was not found", tenant=tid
            )
        payload = {
            "@odata.context": f"{request.base_url}/api/$metadata#Incidents/$entity",
            **render.legacy_incident(incident),
        }
        return json_response(200, payload, tenant=tid)

    # ------------------------------------------------------------------ graph

    def graph_list(self, request: Request) -> Response:
        """`GET /v1.0/security/incidents` (§2.2)."""
        now = self.clock()
        auth = self.authorize_graph(request, READ_INCIDENTS_GRAPH)
        if isinstance(auth, Response):
            return auth
        tid = auth.tenant_id
        try:
            odata.check_options(
                request.query, frozenset({"$filter", "$top", "$skip", "$count", "$expand"})
            )
            expand = _parse_expand(request.param("$expand"))
            count = _parse_count(request.param("$count"))
            predicate = odata.parse_filter(request.param("$filter"), GRAPH_INCIDENT_FILTER)
            top = odata.parse_int_option(
                "$top", request.param("$top"), GRAPH_DEFAULT_TOP, GRAPH_MAX_TOP
            )
            skip = odata.parse_int_option("$skip", request.param("$skip"), 0, None)
        except odata.ODataError as exc:
            return graph_error(
                400, "BadRequest", f"Invalid request: {exc}", request, now, tenant=tid
            )
        matching = [i for i in self.store.snapshot(tid) if predicate(_graph_row(i))]
        page = matching[skip : skip + top]
        context = "security/incidents(alerts())" if expand else "security/incidents"
        payload: dict[str, Any] = {"@odata.context": f"{request.base_url}/v1.0/$metadata#{context}"}
        if count:
            payload["@odata.count"] = len(matching)
        payload["value"] = [render.graph_incident(i, tid, expand_alerts=expand) for i in page]
        if top and skip + top < len(matching):
            payload["@odata.nextLink"] = next_link(request, skip + top)
        return json_response(200, payload, tenant=tid)

    def graph_get(self, request: Request, raw_id: str) -> Response:
        """`GET /v1.0/security/incidents/{id}` (§2.3), `$expand=alerts` supported."""
        now = self.clock()
        auth = self.authorize_graph(request, READ_INCIDENTS_GRAPH)
        if isinstance(auth, Response):
            return auth
        tid = auth.tenant_id
        try:
            odata.check_options(request.query, frozenset({"$expand"}))
            expand = _parse_expand(request.param("$expand"))
        except odata.ODataError as exc:
            return graph_error(
                400, "BadRequest", f"Invalid request: {exc}", request, now, tenant=tid
            )
        incident = self.store.get(tid, int(raw_id)) if raw_id.isdigit() else None
        if incident is None:
            return graph_error(
                404, "NotFound", f"Incident {raw_id} was not found.", request, now, tenant=tid
            )
        context = "security/incidents(alerts())/$entity" if expand else "security/incidents/$entity"
        payload = {
            "@odata.context": f"{request.base_url}/v1.0/$metadata#{context}",
            **render.graph_incident(incident, tid, expand_alerts=expand),
        }
        return json_response(200, payload, tenant=tid)


def _has_permission(claims: Claims, wanted: Sequence[str]) -> bool:
    granted = set(claims.roles)
    scopes = str(claims.values.get("scp", "")).split()
    granted.update(scopes)
    return any(w in granted or _DELEGATED.get(w) in scopes for w in wanted)


def _parse_expand(raw: str | None) -> bool:
    if raw is None:
        return False
    if raw.strip() != "alerts":
        raise odata.ODataError(f"$expand='{raw}' is not supported; the only expansion is 'alerts'")
    return True


def _parse_count(raw: str | None) -> bool:
    if raw is None:
        return False
    if raw.lower() not in ("true", "false"):
        raise odata.ODataError(f"$count must be true or false, not '{raw}'")
    return raw.lower() == "true"


Truth = Callable[[str, str], list[dict[str, Any]]]


def truth(store: IncidentStore, tenant_id: str, api: str) -> list[dict[str, Any]]:
    """Every incident of a tenant exactly as `api` renders it (Graph with alerts expanded)."""
    incidents = store.snapshot(tenant_id)
    if api == "graph":
        return [render.graph_incident(i, tenant_id, expand_alerts=True) for i in incidents]
    return [render.legacy_incident(i) for i in incidents]


def tenant_alerts(store: IncidentStore, tenant_id: str) -> list[Mapping[str, Any]]:
    """Legacy-shaped alert dicts of the tenant's incidents (input of the hunting tables)."""
    return [render.legacy_alert(a) for i in store.snapshot(tenant_id) for a in i.alerts]
