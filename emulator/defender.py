"""Legacy Defender XDR (`/api/...`) and Graph security (`/v1.0/security/...`) API handlers.

Both surfaces read the same `IncidentStore`; `emulator.render` produces each shape. Listings
come from `emulator.store` (indexed pages) in the order and with the behaviours of
`emulator.behaviour`. The contract, from Microsoft's pages:
- legacy (`$filter` on four fields, `$top` <= 100, `$skip`; error body
  `{"error":{"code","message","target"}}`):
  https://learn.microsoft.com/defender-xdr/api-list-incidents,
  https://learn.microsoft.com/defender-xdr/api-get-incident,
  https://learn.microsoft.com/defender-xdr/api-update-incidents,
  https://learn.microsoft.com/defender-xdr/api-advanced-hunting,
  https://learn.microsoft.com/defender-xdr/api-error-codes;
- Graph (`$filter`, `$top`, `$skip`, `$count`, `$expand=alerts`, `@odata.nextLink`; error body
  with `innerError`):
  https://learn.microsoft.com/graph/api/security-list-incidents,
  https://learn.microsoft.com/graph/api/security-incident-update,
  https://learn.microsoft.com/graph/api/security-incident-post-comments,
  https://learn.microsoft.com/graph/api/security-list-alerts_v2,
  https://learn.microsoft.com/graph/api/security-security-runhuntingquery,
  https://learn.microsoft.com/graph/errors.
Where the service was seen to answer otherwise than its pages say (the Graph `$top` and `$skip`
caps, `$orderby`, `$expand=alerts` on large tenants, the legacy 429 body), the comment at that
spot names the observation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

from emulator import fields, hunting, kql, odata, render, store, updates
from emulator.behaviour import Behaviour
from emulator.entra import (
    GRAPH_RESOURCES,
    LEGACY_RESOURCES,
    Claims,
    TokenError,
    TokenIssuer,
    bearer_token,
)
from emulator.http import Request, Response, json_response, new_request_id
from emulator.model import Alert, Clock, Incident
from emulator.ratelimit import RateLimiter
from emulator.store import IncidentStore

# Page sizes. Legacy: "Maximum page size is 100 incidents"
# (https://learn.microsoft.com/defender-xdr/api-list-incidents); the default is undocumented,
# 100 here. Graph incidents: the service refuses $top over 50 with a 400 (observed:
# wazuh/wazuh#27579, #28070; demisto/content PR #45413); Graph documents that "different APIs
# might have different default and maximum page sizes" (https://learn.microsoft.com/graph/paging)
# and states neither for incidents, so the default here is the maximum, 50. alerts_v2: "$top
# ... has a limit of 1000 alerts" and "$skip ... has a limit of 500"
# (https://learn.microsoft.com/graph/api/resources/security-error-codes, "Constraints"),
# applied to both Graph listings.
LEGACY_MAX_TOP = 100
LEGACY_DEFAULT_TOP = 100
GRAPH_DEFAULT_TOP = 50
GRAPH_INCIDENTS_MAX_TOP = 50
GRAPH_MAX_TOP = 1000
GRAPH_MAX_SKIP = 500
# `$orderby` on Graph incidents is undocumented; the service accepts
# `lastUpdateDateTime asc` (elastic/integrations PR #20348 relies on it).
GRAPH_ORDERBY = {"lastUpdateDateTime": "update", "createdDateTime": "created"}
LEGACY_TIMES: dict[str, store.TimeField] = {"lastUpdateTime": "update", "createdTime": "created"}
GRAPH_TIMES: dict[str, store.TimeField] = {
    "lastUpdateDateTime": "update",
    "createdDateTime": "created",
}

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
        # today's schema only (alertDetermination in msgraph-sdk-python's
        # alert_determination.py); the older names are no members any more
        (*render.GRAPH_DETERMINATIONS, fields.SENTINEL),
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


def legacy_error(
    status: int,
    code: str,
    message: str,
    *,
    tenant: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> Response:
    """The legacy error body `{"error":{"code","message","target"}}`, `target` a tracking
    GUID."""
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
    """The Graph error body, `{"error":{"code","message","innerError":{date, request-id,
    client-request-id}}}`."""
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


def fault_response(
    kind: str, endpoint: str, request: Request, now: datetime, retry_after: int
) -> Response:
    """The answer of an injected `429`, `500` or `503` fault (`emulator.faults`) on `endpoint`,
    in its API family's error shape."""
    graph = endpoint.startswith("graph.")
    if kind == "429":
        headers = [("Retry-After", str(retry_after))]
        if graph:
            return graph_error(
                429, "TooManyRequests", "Too many requests.", request, now, headers=headers
            )
        # The legacy API's throttling answer as a Microsoft engineer posted it (code "429",
        # not TooManyRequests): https://github.com/MicrosoftDocs/microsoft-365-docs/issues/4616
        return legacy_error(
            429,
            "429",
            "API calls quota exceeded! maximum allowed 50 per 00:01:00",
            headers=headers,
        )
    status = int(kind)
    code = "InternalServerError" if status == 500 else "ServiceUnavailable"
    if graph:
        return graph_error(status, code, "Injected fault (emulator).", request, now)
    return legacy_error(status, code, "Injected fault (emulator); retry.")


def next_link(request: Request, skip: int) -> str:
    """Absolute link on the host the request used, with `$skip` replaced (the legacy pages
    document no nextLink; the emulator sends one on both surfaces)."""
    parts = [(k, v) for k, values in request.query.items() for v in values if k != "$skip"]
    parts.append(("$skip", str(skip)))
    query = "&".join(f"{quote(k, safe='$')}={quote(v, safe=':,()')}" for k, v in parts)
    return f"{request.base_url}{request.path}?{query}"


def _legacy_row(incident: Incident) -> dict[str, Any]:
    return {
        "lastUpdateTime": incident.last_update_time,
        "createdTime": incident.created_time,
        "status": render.legacy_status(incident.status),
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
        "determination": render.graph_determination(incident.determination),
    }


GRAPH_ALERT_FILTER = {
    "lastUpdateDateTime": odata.FieldSpec("datetime", odata.DATETIME_OPS),
    "createdDateTime": odata.FieldSpec("datetime", odata.DATETIME_OPS),
    "status": odata.FieldSpec(
        "enum", odata.STRING_OPS, ("unknown", "new", "inProgress", "resolved", "unknownFutureValue")
    ),
    "severity": GRAPH_INCIDENT_FILTER["severity"],
    "assignedTo": odata.FieldSpec("string", odata.STRING_OPS),
    "classification": GRAPH_INCIDENT_FILTER["classification"],
    "determination": GRAPH_INCIDENT_FILTER["determination"],
    # Not in the alerts_v2 filter list, but the way to fetch one incident's alerts when
    # `$expand=alerts` fails on a large tenant (elastic/integrations#18144; used so in public
    # SOC tooling).
    "incidentId": odata.FieldSpec("string", odata.STRING_OPS),
    "serviceSource": odata.FieldSpec(
        "enum",
        odata.STRING_OPS,
        (
            "unknown",
            "microsoftDefenderForEndpoint",
            "microsoftDefenderForIdentity",
            "microsoftDefenderForCloudApps",
            "microsoftDefenderForOffice365",
            "microsoft365Defender",
            "azureAdIdentityProtection",
            "microsoftAppGovernance",
            "dataLossPrevention",
            "unknownFutureValue",
            "microsoftDefenderForCloud",
        ),
    ),
}
READ_ALERTS_GRAPH = ("SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All")
WRITE_INCIDENTS_LEGACY = ("Incident.ReadWrite.All",)
WRITE_INCIDENTS_GRAPH = ("SecurityIncident.ReadWrite.All",)
HUNTING_LEGACY = ("AdvancedHunting.Read.All",)
HUNTING_GRAPH = ("ThreatHunting.Read.All",)


def _graph_alert_row(alert: Alert) -> dict[str, Any]:
    return {
        "lastUpdateDateTime": alert.last_updated_time,
        "createdDateTime": alert.creation_time,
        "status": render.graph_enum(alert.status),
        "severity": render.graph_enum(alert.severity),
        "assignedTo": alert.assigned_to,
        "classification": render.graph_enum(alert.classification),
        "determination": render.graph_determination(alert.determination),
        "serviceSource": render.graph_service_source(alert.service_source),
        "incidentId": str(alert.incident_id),
    }


def _author(claims: Claims) -> str:
    """Who wrote a comment: the user of a delegated token, else the app (`API-App:<appid>`)."""
    user = claims.values.get("upn") or claims.values.get("preferred_username")
    return str(user) if user else f"API-App:{claims.values.get('appid')}"


@dataclass(frozen=True)
class _Errors:
    """One request's error responses in its surface's shape, legacy or Graph."""

    respond: Callable[[int, str, str], Response]
    invalid_body_code: str  # a 400 for a body that is not JSON or not a valid change
    not_found_code: str
    not_found_end: str  # the legacy 404 message ends without a full stop, Graph's with one

    def invalid_body(self, message: str) -> Response:
        return self.respond(400, self.invalid_body_code, message)

    def incident_not_found(self, raw_id: str) -> Response:
        message = f"Incident {raw_id} was not found{self.not_found_end}"
        return self.respond(404, self.not_found_code, message)


def _legacy_errors(tid: str) -> _Errors:
    return _Errors(
        lambda status, code, message: legacy_error(status, code, message, tenant=tid),
        invalid_body_code="InvalidRequestBody",
        not_found_code="ResourceNotFound",
        not_found_end="",
    )


def _graph_errors(request: Request, now: datetime, tid: str) -> _Errors:
    return _Errors(
        lambda status, code, message: graph_error(status, code, message, request, now, tenant=tid),
        invalid_body_code="BadRequest",
        not_found_code="NotFound",
        not_found_end=".",
    )


def _unknown_members(request: Request) -> bool:
    """Whether the request sent `Prefer: include-unknown-enum-members` (`emulator.fields`)."""
    prefer = request.header("prefer")
    return fields.wants_unknown_members([prefer] if prefer else [])


class _LimitError(odata.ODataError):
    """A query option over a service limit; its message is the service's, verbatim."""


def _graph_bad_query(exc: odata.ODataError, request: Request, now: datetime, tid: str) -> Response:
    message = str(exc) if isinstance(exc, _LimitError) else f"Invalid request: {exc}"
    return graph_error(400, "BadRequest", message, request, now, tenant=tid)


_T = TypeVar("_T")


def _page(
    request: Request,
    context: str,
    matching: Sequence[_T],
    render_item: Callable[[_T], dict[str, Any]],
    skip: int,
    top: int,
    *,
    count: bool = False,
) -> dict[str, Any]:
    """One page of a collection: `@odata.context`, `@odata.count` when asked for, `value`, and
    `@odata.nextLink` when more matched than the page holds."""
    items = [render_item(item) for item in matching[skip : skip + top]]
    return _envelope(request, context, items, len(matching), skip, top, count=count)


def _envelope(
    request: Request,
    context: str,
    items: list[dict[str, Any]],
    total: int,
    skip: int,
    top: int,
    *,
    count: bool = False,
) -> dict[str, Any]:
    """A page's body from its rendered items and the number of matches."""
    payload: dict[str, Any] = {"@odata.context": context}
    if count:
        payload["@odata.count"] = total
    payload["value"] = items
    if top and skip + top < total:
        payload["@odata.nextLink"] = next_link(request, skip + top)
    return payload


class DefenderService:
    """Handlers of both API surfaces over one `IncidentStore`."""

    def __init__(
        self,
        store: IncidentStore,
        issuer: TokenIssuer,
        clock: Clock,
        limiter: RateLimiter | None = None,
        behaviour: Behaviour | None = None,
        *,
        hunting_limits: hunting.Limits | None = None,
        cpu: hunting.CpuMeter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.issuer = issuer
        self.clock = clock
        self.limiter = limiter
        self.hunting_limits = hunting_limits or hunting.Limits()
        self.cpu = cpu or hunting.CpuMeter()
        self._sleep = sleep
        self.behaviour = behaviour or Behaviour()

    # ------------------------------------------------------------------ listings

    def _order(self, orderby: tuple[str, bool] | None) -> store.Order:
        """The order of a listing: the `arbitrary` behaviour wins over everything (a client
        must not rely on order, `$orderby` included, which is undocumented for incidents)."""
        settings = self.behaviour.settings
        if settings.order == "arbitrary":
            return store.Order("arbitrary", seed=settings.order_seed)
        if orderby is None:
            return store.NEWEST_FIRST
        name, descending = orderby
        kind: store.OrderKind = "update" if GRAPH_ORDERBY[name] == "update" else "created"
        return store.Order(kind, descending=descending)

    def _list_incidents(
        self, tid: str, query: store.Query, order: store.Order, now: datetime, skip: int, top: int
    ) -> tuple[list[Incident], int]:
        """One page of incidents, then the paging-activity behaviour for the page served."""
        page, total = self.store.page(tid, query, order, now, skip, top)
        activity = self.behaviour.page_served(tid)
        if activity is not None:
            self.store.simulate(
                tid, now, create=activity.create, update=activity.update, merge=activity.merge
            )
        return page, total

    # ------------------------------------------------------------------ quotas

    def throttle_legacy(self, family: str, tid: str) -> Response | None:
        """A legacy 429 (the observed body, code "429") when the tenant's quota is used up."""
        if self.limiter is None:
            return None
        hit = self.limiter.acquire("legacy", family, tid)
        if hit is None:
            return None
        return legacy_error(
            429,
            "429",
            f"API calls quota exceeded! maximum allowed {hit.limit.calls} per "
            f"{hit.limit.window_label()}",
            tenant=tid,
            headers=[("Retry-After", str(hit.retry_after))],
        )

    def throttle_graph(
        self, family: str, tid: str, request: Request, now: datetime
    ) -> Response | None:
        """A Graph 429 `TooManyRequests` with `Retry-After` when over quota
        (https://learn.microsoft.com/graph/throttling)."""
        if self.limiter is None:
            return None
        hit = self.limiter.acquire("graph", family, tid)
        if hit is None:
            return None
        return graph_error(
            429,
            "TooManyRequests",
            f"Too many requests. Limit: {hit.limit.calls} per {hit.limit.window_label()}; "
            f"retry after {hit.retry_after} s.",
            request,
            now,
            tenant=tid,
            headers=[("Retry-After", str(hit.retry_after))],
        )

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
            if "scp" in claims.values:
                delegated = ", ".join(_DELEGATED.get(w, w) for w in reversed(wanted))
                message = (
                    "The user or application does not have any of the required delegated "
                    f"permissions ({delegated}) to access the resource."
                )
            else:
                message = (
                    "The application does not have any of the required application permissions "
                    f"({', '.join(reversed(wanted))}) to access the resource."
                )
            return legacy_error(403, "Forbidden", message, tenant=claims.tenant_id)
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
            if "scp" in claims.values:
                message = (
                    f"Missing scope permissions on the request. API requires one of "
                    f"'{', '.join(wanted)}'. Scopes on the request "
                    f"'{claims.values.get('scp') or 'none'}'."
                )
            else:
                message = (
                    f"Missing application roles. API required roles: {', '.join(wanted)}. "
                    f"Roles on the token: {', '.join(claims.roles) or 'none'}."
                )
            return graph_error(403, "Forbidden", message, request, now, tenant=claims.tenant_id)
        return claims

    def admit_legacy(
        self, request: Request, any_of: Iterable[str], family: str
    ) -> Claims | Response:
        """Claims of an authorized legacy call within its tenant's `family` quota, else the
        error response (401/403 or 429)."""
        auth = self.authorize_legacy(request, any_of)
        if isinstance(auth, Response):
            return auth
        throttled = self.throttle_legacy(family, auth.tenant_id)
        return auth if throttled is None else throttled

    def admit_graph(
        self, request: Request, any_of: Iterable[str], family: str, now: datetime
    ) -> Claims | Response:
        """Claims of an authorized Graph call within its tenant's `family` quota, else the
        error response (401/403 or 429)."""
        auth = self.authorize_graph(request, any_of)
        if isinstance(auth, Response):
            return auth
        throttled = self.throttle_graph(family, auth.tenant_id, request, now)
        return auth if throttled is None else throttled

    # ------------------------------------------------------------------ legacy

    def legacy_list(self, request: Request) -> Response:
        """`GET /api/incidents`."""
        auth = self.admit_legacy(request, READ_INCIDENTS_LEGACY, "incidents")
        if isinstance(auth, Response):
            return auth
        tid = auth.tenant_id
        try:
            odata.check_options(request.query, frozenset({"$filter", "$top", "$skip"}))
            raw_filter = request.param("$filter")
            parsed = odata.parse_filter_terms(raw_filter, LEGACY_FILTER)
            top = odata.parse_int_option("$top", request.param("$top"), LEGACY_DEFAULT_TOP, None)
            if top > LEGACY_MAX_TOP:
                raise odata.ODataError(
                    f"the value of $top ({top}) exceeds the maximum page size of "
                    f"{LEGACY_MAX_TOP} incidents"
                )
            skip = _parse_skip(request)
        except odata.ODataError as exc:
            return legacy_error(400, "ODataError", f"Invalid OData URI query: {exc}", tenant=tid)
        query = store.make_query(f"legacy:{raw_filter}", parsed, _legacy_row, LEGACY_TIMES)
        page, total = self._list_incidents(tid, query, self._order(None), self.clock(), skip, top)
        context = f"{request.base_url}/api/$metadata#Incidents"
        items = [render.legacy_incident(i) for i in page]
        return json_response(200, _envelope(request, context, items, total, skip, top), tenant=tid)

    def legacy_get(self, request: Request, raw_id: str) -> Response:
        """`GET /api/incidents/{id}`."""
        auth = self.admit_legacy(request, READ_INCIDENTS_LEGACY, "incidents")
        if isinstance(auth, Response):
            return auth
        tid = auth.tenant_id
        incident = self._find_incident(tid, raw_id)
        if incident is None:
            return _legacy_errors(tid).incident_not_found(raw_id)
        payload = {
            "@odata.context": f"{request.base_url}/api/$metadata#Incidents/$entity",
            **render.legacy_incident(incident),
        }
        return json_response(200, payload, tenant=tid)

    # ------------------------------------------------------------------ graph

    def graph_list(self, request: Request) -> Response:
        """`GET /v1.0/security/incidents`."""
        now = self.clock()
        auth = self.admit_graph(request, READ_INCIDENTS_GRAPH, "incidents", now)
        if isinstance(auth, Response):
            return auth
        tid = auth.tenant_id
        try:
            odata.check_options(
                request.query,
                frozenset({"$filter", "$top", "$skip", "$count", "$expand", "$orderby"}),
            )
            expand = _parse_expand(request.param("$expand"))
            count = _parse_count(request.param("$count"))
            raw_filter = request.param("$filter")
            parsed = odata.parse_filter_terms(raw_filter, GRAPH_INCIDENT_FILTER)
            orderby = odata.parse_orderby(request.param("$orderby"), tuple(GRAPH_ORDERBY))
            top = _graph_incidents_top(request)
            skip = _parse_graph_skip(request)
        except odata.ODataError as exc:
            return _graph_bad_query(exc, request, now, tid)
        if expand and raw_filter and self.behaviour.settings.expand_fails(tid):
            # Large tenants: `$expand=alerts` with `$filter` answers a persistent 500; the same
            # listing without `$expand` works (elastic/integrations#18144).
            return graph_error(
                500,
                "InternalServerError",
                "An internal server error occurred while processing the request.",
                request,
                now,
                tenant=tid,
            )
        query = store.make_query(f"graph:{raw_filter}", parsed, _graph_row, GRAPH_TIMES)
        page, total = self._list_incidents(tid, query, self._order(orderby), now, skip, top)
        context = "security/incidents(alerts())" if expand else "security/incidents"
        unknown = _unknown_members(request)
        items = [
            render.graph_incident(i, tid, expand_alerts=expand, include_unknown=unknown)
            for i in page
        ]
        payload = _envelope(
            request,
            f"{request.base_url}/v1.0/$metadata#{context}",
            items,
            total,
            skip,
            top,
            count=count and self.behaviour.settings.counts(first_page=skip == 0),
        )
        return json_response(200, payload, tenant=tid)

    def graph_get(self, request: Request, raw_id: str) -> Response:
        """`GET /v1.0/security/incidents/{id}`, `$expand=alerts` supported."""
        now = self.clock()
        auth = self.admit_graph(request, READ_INCIDENTS_GRAPH, "incidents", now)
        if isinstance(auth, Response):
            return auth
        tid = auth.tenant_id
        try:
            odata.check_options(request.query, frozenset({"$expand"}))
            expand = _parse_expand(request.param("$expand"))
        except odata.ODataError as exc:
            return _graph_bad_query(exc, request, now, tid)
        incident = self._find_incident(tid, raw_id)
        if incident is None:
            return _graph_errors(request, now, tid).incident_not_found(raw_id)
        context = "security/incidents(alerts())/$entity" if expand else "security/incidents/$entity"
        payload = {
            "@odata.context": f"{request.base_url}/v1.0/$metadata#{context}",
            **render.graph_incident(
                incident, tid, expand_alerts=expand, include_unknown=_unknown_members(request)
            ),
        }
        return json_response(200, payload, tenant=tid)

    # ------------------------------------------------------------------ updates

    def _body(self, request: Request) -> Any:
        """The JSON body; raises ValueError when it is not JSON with a JSON content type."""
        content_type = (request.header("content-type") or "").lower()
        if "application/json" not in content_type:
            raise ValueError("Content-Type must be application/json")
        try:
            return request.json_body()
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError("the request body is not valid JSON") from exc

    def _find_incident(self, tid: str, raw_id: str) -> Incident | None:
        """The visible incident of a path's `{id}`, or None (also when the id is not a
        number, and while late arrival still hides every version of it)."""
        return self.store.visible(tid, int(raw_id), self.clock()) if raw_id.isdigit() else None

    def _find_latest(self, tid: str, raw_id: str) -> Incident | None:
        """The latest version of a path's `{id}` (what a write changes), or None."""
        return self.store.latest(tid, int(raw_id)) if raw_id.isdigit() else None

    def _change_incident(
        self,
        request: Request,
        raw_id: str,
        tid: str,
        errors: _Errors,
        change: Callable[[Incident, Any], Incident],
    ) -> Incident | Response:
        """Apply `change` to the incident with the request's JSON body, looked up and stored
        under the store lock: the new version, else the error response (400 or 404)."""
        try:
            body = self._body(request)
        except ValueError as exc:
            return errors.invalid_body(str(exc))
        with self.store.lock:
            incident = self._find_latest(tid, raw_id)
            if incident is None:
                return errors.incident_not_found(raw_id)
            try:
                updated = change(incident, body)
            except updates.UpdateError as exc:
                return errors.invalid_body(str(exc))
            self.store.put(tid, updated)
        return updated

    def legacy_update(self, request: Request, raw_id: str) -> Response:
        """`PATCH /api/incidents/{id}`: 200 with the full updated incident."""
        auth = self.admit_legacy(request, WRITE_INCIDENTS_LEGACY, "incidents")
        if isinstance(auth, Response):
            return auth
        tid, author = auth.tenant_id, _author(auth)
        updated = self._change_incident(
            request,
            raw_id,
            tid,
            _legacy_errors(tid),
            lambda incident, body: updates.apply_legacy_patch(incident, body, author, self.clock()),
        )
        if isinstance(updated, Response):
            return updated
        payload = {
            "@odata.context": f"{request.base_url}/api/$metadata#Incidents/$entity",
            **render.legacy_incident(updated),
        }
        return json_response(200, payload, tenant=tid)

    def graph_update(self, request: Request, raw_id: str) -> Response:
        """`PATCH /v1.0/security/incidents/{id}`: 200 with the updated incident."""
        now = self.clock()
        auth = self.admit_graph(request, WRITE_INCIDENTS_GRAPH, "incidents", now)
        if isinstance(auth, Response):
            return auth
        tid, author = auth.tenant_id, _author(auth)
        updated = self._change_incident(
            request,
            raw_id,
            tid,
            _graph_errors(request, now, tid),
            lambda incident, body: updates.apply_graph_patch(incident, body, author, now),
        )
        if isinstance(updated, Response):
            return updated
        payload = {
            "@odata.context": f"{request.base_url}/v1.0/$metadata#security/incidents/$entity",
            **render.graph_incident(
                updated, tid, expand_alerts=False, include_unknown=_unknown_members(request)
            ),
        }
        return json_response(200, payload, tenant=tid)

    def graph_comment(self, request: Request, raw_id: str) -> Response:
        """`POST /v1.0/security/incidents/{id}/comments`: 200 with every comment."""
        now = self.clock()
        auth = self.admit_graph(request, WRITE_INCIDENTS_GRAPH, "incidents", now)
        if isinstance(auth, Response):
            return auth
        tid, author = auth.tenant_id, _author(auth)
        updated = self._change_incident(
            request,
            raw_id,
            tid,
            _graph_errors(request, now, tid),
            lambda incident, body: updates.add_comment(incident, body, author, now),
        )
        if isinstance(updated, Response):
            return updated
        payload = {
            "@odata.context": f"{request.base_url}/v1.0/$metadata#Collection("
            "microsoft.graph.security.alertComment)",
            "value": [render.graph_comment(c) for c in updated.comments],
        }
        return json_response(200, payload, tenant=tid)

    # ------------------------------------------------------------------ alerts_v2

    def _alerts(self, tid: str, incident_id: str | None = None) -> list[Alert]:
        """The visible alerts, newest first; only one incident's when `incident_id` is given
        (an `incidentId eq '...'` term, looked up directly)."""
        if incident_id is None:
            return self.store.visible_alerts(tid, self.clock())
        found = self._find_incident(tid, incident_id)
        alerts = list(found.alerts) if found else []
        return sorted(alerts, key=lambda a: (a.last_updated_time, a.alert_id), reverse=True)

    def graph_alerts_list(self, request: Request) -> Response:
        """`GET /v1.0/security/alerts_v2`: $filter, $top, $skip, $count, nextLink."""
        now = self.clock()
        auth = self.admit_graph(request, READ_ALERTS_GRAPH, "alerts", now)
        if isinstance(auth, Response):
            return auth
        tid = auth.tenant_id
        try:
            odata.check_options(request.query, frozenset({"$filter", "$top", "$skip", "$count"}))
            count = _parse_count(request.param("$count"))
            parsed = odata.parse_filter_terms(request.param("$filter"), GRAPH_ALERT_FILTER)
            top = _parse_graph_top(request)
            skip = _parse_graph_skip(request)
        except odata.ODataError as exc:
            return _graph_bad_query(exc, request, now, tid)
        incident_id = next(
            (t.value for t in parsed.terms if t.name == "incidentId" and t.op == "eq"), None
        )
        if incident_id is not None and not str(incident_id).isdigit():
            incident_id = "-"  # no incident has that id
        candidates = self._alerts(tid, incident_id)
        matching = [a for a in candidates if parsed.predicate(_graph_alert_row(a))]
        payload = _page(
            request,
            f"{request.base_url}/v1.0/$metadata#security/alerts_v2",
            matching,
            lambda a: render.graph_alert(a, tid, include_unknown=_unknown_members(request)),
            skip,
            top,
            count=count and self.behaviour.settings.counts(first_page=skip == 0),
        )
        return json_response(200, payload, tenant=tid)

    def graph_alert_get(self, request: Request, alert_id: str) -> Response:
        """`GET /v1.0/security/alerts_v2/{id}`."""
        now = self.clock()
        auth = self.admit_graph(request, READ_ALERTS_GRAPH, "alerts", now)
        if isinstance(auth, Response):
            return auth
        tid = auth.tenant_id
        alert = self.store.visible_alert(tid, alert_id, now)
        if alert is None:
            return graph_error(
                404, "NotFound", f"Alert {alert_id} was not found.", request, now, tenant=tid
            )
        payload = {
            "@odata.context": f"{request.base_url}/v1.0/$metadata#security/alerts_v2/$entity",
            **render.graph_alert(alert, tid, include_unknown=_unknown_members(request)),
        }
        return json_response(200, payload, tenant=tid)

    # ------------------------------------------------------------------ hunting

    def hunting_tables(self, tid: str) -> dict[str, list[dict[str, Any]]]:
        """The tenant's hunting tables, rebuilt only when its incidents changed."""
        with self.store.lock:
            version = self.store.version(tid)
            cached = self.store.hunting_tables.get(tid)
            if cached is not None and cached[0] == version:
                return cached[1]
            alerts = tenant_alerts(self.store, tid)
            seeded_at = self.store.seeded_at or self.clock()
            tables = hunting.build_tables(tid, alerts, seeded_at, self.store.seed)
            self.store.hunting_tables[tid] = (version, tables)
            return tables

    def legacy_hunting(self, request: Request) -> Response:
        """`POST /api/advancedhunting/run`."""
        auth = self.admit_legacy(request, HUNTING_LEGACY, "hunting")
        if isinstance(auth, Response):
            return auth
        tid = auth.tenant_id
        errors = _legacy_errors(tid)
        try:
            body = self._body(request)
        except ValueError as exc:
            return errors.invalid_body(str(exc))
        query = body.get("Query") if isinstance(body, dict) else None
        if not isinstance(query, str) or not query.strip():
            return errors.respond(
                400,
                "MissingRequiredParameter",
                "The 'Query' property (case-sensitive) is required and must be a KQL string.",
            )
        now = self.clock()
        started = time.perf_counter()
        tables = hunting.window(self.hunting_tables(tid), now - hunting.RETENTION, now)
        outcome = self._hunt(
            tid,
            query,
            tables,
            now,
            errors,
            lambda message, wait: legacy_error(
                429, "429", message, tenant=tid, headers=[("Retry-After", str(wait))]
            ),
        )
        if isinstance(outcome, Response):
            return outcome
        result, size = outcome
        elapsed = time.perf_counter() - started  # includes the simulated run time
        payload = {
            "Stats": {
                "ExecutionTime": round(elapsed, 6),
                "resource_usage": {
                    "cache": {
                        "memory": {"hits": 0, "misses": 0, "total": 0},
                        "disk": {"hits": 0, "misses": 0, "total": 0},
                    },
                    "cpu": {
                        "user": _timespan(elapsed),
                        "kernel": "00:00:00",
                        "total cpu": _timespan(elapsed),
                    },
                    "memory": {"peak_per_node": size},
                },
                "dataset_statistics": [{"table_row_count": len(result.rows), "table_size": size}],
            },
            "Schema": [{"Name": n, "Type": t} for n, t in result.schema],
            "Results": result.rows,
        }
        return json_response(200, payload, tenant=tid)

    def _hunt(
        self,
        tid: str,
        query: str,
        tables: Mapping[str, Sequence[Mapping[str, Any]]],
        now: datetime,
        errors: _Errors,
        throttled: Callable[[str, int], Response],
    ) -> tuple[kql.QueryResult, int] | Response:
        """Run a hunting query under the service limits (`emulator.hunting`): the tenant's CPU
        quota (429), the run-time limit (400 after waiting it out), the row cap (a silent cut,
        as documented) and the result-size cap (400). Returns the result and its JSON size."""
        limits = self.hunting_limits
        wait = self.cpu.blocked(tid, limits)
        if wait is not None:
            return throttled(hunting.cpu_message(limits), wait)
        started = time.perf_counter()
        try:
            result = hunting.run(query, tables, now, max_rows=limits.max_rows)
        except kql.KqlError as exc:
            return errors.respond(400, "BadRequest", f"Query failed: {exc}")
        simulated = hunting.latency(query, limits)
        run_time = simulated + (time.perf_counter() - started)
        if run_time > limits.timeout_seconds:
            self._sleep(max(0.0, limits.timeout_seconds - (time.perf_counter() - started)))
            self.cpu.charge(tid, limits.timeout_seconds, limits)
            return errors.respond(400, "BadRequest", hunting.timeout_message(limits))
        if simulated:
            self._sleep(simulated)
        self.cpu.charge(tid, run_time, limits)
        size = len(json.dumps(result.rows, default=str))
        if size > limits.max_result_bytes:
            return errors.respond(400, "BadRequest", hunting.RESULT_SIZE_MESSAGE)
        return result, size

    def graph_hunting(self, request: Request) -> Response:
        """`POST /v1.0/security/runHuntingQuery`."""
        now = self.clock()
        auth = self.admit_graph(request, HUNTING_GRAPH, "hunting", now)
        if isinstance(auth, Response):
            return auth
        tid = auth.tenant_id
        errors = _graph_errors(request, now, tid)
        try:
            body = self._body(request)
        except ValueError as exc:
            return errors.invalid_body(str(exc))
        fields = {k.lower(): v for k, v in body.items()} if isinstance(body, dict) else {}
        query, timespan = fields.get("query"), fields.get("timespan")
        if not isinstance(query, str) or not query.strip():
            return errors.respond(400, "BadRequest", "The 'Query' property is required.")
        if timespan is not None and not isinstance(timespan, str):
            return errors.respond(400, "BadRequest", "'Timespan' must be a string.")
        try:
            start, end = hunting.parse_timespan(timespan, now)
        except hunting.TimespanError as exc:
            return errors.respond(400, "BadRequest", str(exc))
        start = max(start, now - hunting.RETENTION)
        tables = hunting.window(self.hunting_tables(tid), start, end)
        outcome = self._hunt(
            tid,
            query,
            tables,
            now,
            errors,
            lambda message, wait: graph_error(
                429,
                "TooManyRequests",
                message,
                request,
                now,
                tenant=tid,
                headers=[("Retry-After", str(wait))],
            ),
        )
        if isinstance(outcome, Response):
            return outcome
        result, _ = outcome
        payload = {
            "@odata.context": f"{request.base_url}/v1.0/$metadata#"
            "microsoft.graph.security.huntingQueryResults",
            "schema": [{"name": n, "type": t} for n, t in result.schema],
            "results": result.rows,
        }
        return json_response(200, payload, tenant=tid)


def _timespan(seconds: float) -> str:
    whole = int(seconds)
    fraction = int((seconds % 1) * 1e7)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}.{fraction:07d}"


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


def _parse_graph_top(request: Request) -> int:
    return odata.parse_int_option("$top", request.param("$top"), GRAPH_DEFAULT_TOP, GRAPH_MAX_TOP)


def _graph_incidents_top(request: Request) -> int:
    """`$top` of a Graph incident listing; over 50 raises the observed 400 message
    (wazuh/wazuh#27579: "The query specified in the URI is not valid. The limit of '50' for
    Top query has been exceeded. The value from the incoming request is '100'.")."""
    top = odata.parse_int_option("$top", request.param("$top"), GRAPH_DEFAULT_TOP, None)
    if top > GRAPH_INCIDENTS_MAX_TOP:
        raise _LimitError(
            "The query specified in the URI is not valid. The limit of "
            f"'{GRAPH_INCIDENTS_MAX_TOP}' for Top query has been exceeded. The value from the "
            f"incoming request is '{top}'."
        )
    return top


def _parse_graph_skip(request: Request) -> int:
    """`$skip` of a Graph listing: at most 500 (security-error-codes.md, "Constraints"). The
    wording follows the service's `$top` message (the OData validator's)."""
    skip = _parse_skip(request)
    if skip > GRAPH_MAX_SKIP:
        raise _LimitError(
            "The query specified in the URI is not valid. The limit of "
            f"'{GRAPH_MAX_SKIP}' for Skip query has been exceeded. The value from the incoming "
            f"request is '{skip}'."
        )
    return skip


def _parse_skip(request: Request) -> int:
    return odata.parse_int_option("$skip", request.param("$skip"), 0, None)


Truth = Callable[[str, str], list[dict[str, Any]]]


def truth(
    store: IncidentStore, tenant_id: str, api: str, visible_at: datetime | None = None
) -> list[dict[str, Any]]:
    """Every incident of a tenant exactly as `api` renders it (Graph with alerts expanded):
    the latest versions, or with `visible_at` the versions the APIs show at that time."""
    if visible_at is None:
        incidents = store.snapshot(tenant_id)
    else:
        incidents = store.visible_snapshot(tenant_id, visible_at)
    if api == "graph":
        # The truth is what the service holds: every enum member, as with the Prefer header.
        return [
            render.graph_incident(i, tenant_id, expand_alerts=True, include_unknown=True)
            for i in incidents
        ]
    return [render.legacy_incident(i) for i in incidents]


def tenant_alerts(store: IncidentStore, tenant_id: str) -> list[Mapping[str, Any]]:
    """Legacy-shaped alert dicts of the tenant's incidents (input of the hunting tables)."""
    return [render.legacy_alert(a) for i in store.snapshot(tenant_id) for a in i.alerts]
