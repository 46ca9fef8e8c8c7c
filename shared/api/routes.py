"""The route table: one definition per route, and the dispatcher every face calls.

A ``Route`` joins its ``Endpoint`` (name, method, path below ``/api``, summary, who may call:
``shared.api.endpoints``, all the Functions host indexes) to the app role it needs, its
handler, its parameters and body, and the OpenAPI metadata of its operation.
``handle(request, backend)`` is the whole HTTP API as a function: it matches the route, enforces
the body size limit, content type, declared query parameters and app role, calls the handler,
and turns every error into ``{"error": {"code", "message"}}`` with its status; an unexpected
exception is logged with its trace and answered with a plain 500 that reveals nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from shared.api import handlers as h
from shared.api.access import HUNT, INGEST, READ, SUBSCRIBE, WRITE, Principal, anonymous
from shared.api.endpoints import ENDPOINT, ENDPOINTS
from shared.api.http import ApiError, Request, Response, error_response, json_response
from shared.api.openapi import document, security_for
from shared.api.ratelimit import retry_after
from shared.api.spec import Param, Route
from shared.core.errors import BridgeError
from shared.core.settings import API_MAX_BODY_BYTES_SETTING, declared
from shared.defender.values import FILTER_STATUSES, SEVERITIES

if TYPE_CHECKING:
    from shared.api.backend import Backend

log = logging.getLogger(__name__)

#: query parameters every route accepts: the function key
ALWAYS_ALLOWED = ("code",)

Authenticate = Callable[[Request], Principal]
#: bodies above this are refused before parsing when no settings are available (the setting's
#: own declared default, so it is written once)
DEFAULT_MAX_BODY = cast("int", declared(API_MAX_BODY_BYTES_SETTING).default)


TENANT = Param(
    "tenant",
    "query",
    "string",
    "The tenant to act in (default: the caller's only tenant, else the home tenant); or the "
    "X-Defender-Tenant header.",
    fmt="uuid",
    visibility="advanced",
    title="Tenant ID",
)
TENANT_HEADER = Param(
    "X-Defender-Tenant",
    "header",
    "string",
    "The tenant to act in (instead of the tenant parameter).",
    fmt="uuid",
    visibility="internal",
    title="Tenant ID Header",
)
CONTEXT = Param(
    "context",
    "query",
    "string",
    "app (the app's permissions, default) or user (on behalf of the caller's Entra token).",
    enum=("app", "user"),
    visibility="advanced",
    title="Run As",
)
ID = Param("id", "path", "string", "The incident's ID.", required=True, title="Incident ID")
ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid request", "Error"),
    403: ("missing app role or tenant not allowed", "Error"),
    404: ("not found", "Error"),
    429: (
        "too many requests (this caller's limit, or Defender's): retry after Retry-After seconds",
        "Error",
    ),
    502: ("Defender answered with an error", "Error"),
    503: ("temporarily unavailable", "Error"),
}


def _openapi_document(ctx: h.Context) -> Response:
    """``GET /openapi.json``: its security definitions name this deployment's tenant and
    audience (only an authenticated caller gets here, so the settings are valid)."""
    doc = document(ctx.base_url, security_for(ctx.backend.settings), routes=ROUTES)
    return json_response(200, doc)


def _errors(*codes: int) -> dict[int, tuple[str, str | None]]:
    return {c: ERRORS[c] for c in codes}


def joined(routes: tuple[Route, ...]) -> tuple[Route, ...]:
    """``routes`` in the order of ``ENDPOINTS``, once each: every endpoint has exactly one route
    and every route is an endpoint of the table (a ``ValueError`` naming the difference)."""
    given = [r.endpoint for r in routes]
    missing = [e.operation_id for e in ENDPOINTS if e not in given]
    unknown = [e.operation_id for e in given if ENDPOINT.get(e.operation_id) != e]
    twice = sorted({e.operation_id for e in given if given.count(e) > 1})
    if missing or unknown or twice:
        raise ValueError(
            f"the routes do not match shared.api.endpoints: no route for {missing}, "
            f"not an endpoint {unknown}, more than one route for {twice}"
        )
    by_endpoint = {r.endpoint: r for r in routes}
    return tuple(by_endpoint[e] for e in ENDPOINTS)


_TABLE: tuple[Route, ...] = (
    Route(
        ENDPOINT["Health"],
        h.health,
        "Answers 200 when the app is up; reveals nothing about the deployment.",
        responses={200: ("the app is up", "Health")},
        visibility="internal",
        needs_backend=False,
        tags=("meta",),
    ),
    Route(
        ENDPOINT["ListIncidents"],
        h.list_incidents,
        "Incidents of one tenant, newest first, filtered like the CLI; follow nextLink for more.",
        role=READ,
        params=(
            TENANT,
            TENANT_HEADER,
            CONTEXT,
            Param(
                "status",
                "query",
                "array",
                "Only incidents in these statuses.",
                enum=FILTER_STATUSES,
                title="Statuses",
            ),
            Param(
                "severity",
                "query",
                "array",
                "Only incidents of these severities.",
                enum=SEVERITIES,
                title="Severities",
            ),
            Param(
                "assignedTo",
                "query",
                "string",
                "Only incidents assigned to this user (UPN).",
                title="Assigned To",
            ),
            Param(
                "createdFrom",
                "query",
                "string",
                "Only incidents created at or after this time (ISO-8601).",
                fmt="date-time",
                title="Created From",
            ),
            Param(
                "createdBefore",
                "query",
                "string",
                "Only incidents created before this time (ISO-8601).",
                fmt="date-time",
                title="Created Before",
            ),
            Param(
                "updatedFrom",
                "query",
                "string",
                "Only incidents last updated at or after this time (ISO-8601).",
                fmt="date-time",
                title="Updated From",
            ),
            Param(
                "updatedBefore",
                "query",
                "string",
                "Only incidents last updated before this time (ISO-8601).",
                fmt="date-time",
                title="Updated Before",
            ),
            Param(
                "top",
                "query",
                "integer",
                "How many incidents a page holds.",
                minimum=1,
                maximum=h.MAX_PAGE,
                default=h.DEFAULT_PAGE,
                title="Page Size",
            ),
            Param(
                "cursor",
                "query",
                "string",
                "Where the previous page ended (from its nextLink).",
                visibility="internal",
                title="Page Cursor",
            ),
        ),
        responses={
            200: ("a page of incidents", "IncidentPage"),
            **_errors(400, 403, 404, 429, 502, 503),
        },
        # the schema allows nextLinkName alone; the items are the answer's "value"
        extensions={"x-ms-pageable": {"nextLinkName": "nextLink"}},
        tags=("incidents",),
        limit="incidents",
    ),
    Route(
        ENDPOINT["GetIncident"],
        h.get_incident,
        "One incident with its alerts.",
        role=READ,
        params=(ID, TENANT, TENANT_HEADER, CONTEXT),
        responses={
            200: ("the incident", "IncidentWithAlerts"),
            **_errors(400, 403, 404, 429, 502, 503),
        },
        tags=("incidents",),
        limit="incidents",
    ),
    Route(
        ENDPOINT["UpdateIncident"],
        h.update_incident,
        "Change status, assignee, classification, determination or tags, or add a comment.",
        role=WRITE,
        params=(ID, TENANT, TENANT_HEADER, CONTEXT),
        body=h.UPDATE_BODY,
        responses={
            200: ("the incident afterwards", "Incident"),
            **_errors(400, 403, 404, 429, 502, 503),
        },
        tags=("incidents",),
        limit="incidents",
    ),
    Route(
        ENDPOINT["ListHuntingTemplates"],
        h.list_templates,
        "The allow-listed hunting templates and their typed parameters.",
        role=HUNT,
        responses={200: ("the templates", "TemplateList")},
        tags=("hunting",),
    ),
    Route(
        ENDPOINT["RunHunting"],
        h.run_hunting,
        "Runs a template (or free-form KQL when allowed). Answers 200 with the result when it "
        "finishes within the budget, else 202 with Location and Retry-After to poll; send "
        "'Prefer: respond-async' to always get 202.",
        role=HUNT,
        params=(
            TENANT,
            TENANT_HEADER,
            CONTEXT,
            Param(
                "Prefer",
                "header",
                "string",
                "respond-async: answer 202 at once and run the hunt in the background.",
                enum=("respond-async",),
                visibility="advanced",
                title="Answer Asynchronously",
            ),
        ),
        body=h.HUNT_BODY,
        responses={
            200: ("the result", "HuntingResult"),
            202: ("accepted: poll the Location", "Job"),
            **_errors(400, 403, 404, 429, 502, 503),
        },
        produces=("application/json", "text/csv"),
        tags=("hunting",),
        limit="hunting",
    ),
    Route(
        ENDPOINT["GetHuntingJob"],
        h.get_job,
        "202 with Location and Retry-After until the job is done, then its result or error.",
        role=HUNT,
        params=(Param("id", "path", "string", "The job's ID.", required=True, title="Job ID"),),
        responses={
            200: ("the result", "HuntingResult"),
            202: ("still running", "Job"),
            **_errors(400, 403, 404),
        },
        produces=("application/json", "text/csv"),
        visibility="internal",
        tags=("hunting",),
    ),
    Route(
        ENDPOINT["PollHuntingJob"],
        h.poll_job,
        "The Location of a hunting 202: the job's state (202 with the same Location and "
        "Retry-After) until it is done, then its result or error. Opens with the link's own "
        "signed capability (job, tenant, expiry) when no token is sent; a token, when sent, is "
        "validated and decides.",
        role=HUNT,
        params=(
            Param("job", "query", "string", "The job's ID.", required=True, title="Job ID"),
            Param(
                "tenant",
                "query",
                "string",
                "The tenant the job runs in.",
                fmt="uuid",
                title="Tenant ID",
            ),
            Param(
                "exp",
                "query",
                "integer",
                "When the link expires (Unix seconds).",
                title="Link Expiry",
            ),
            Param(
                "sig",
                "query",
                "string",
                "The link's signature.",
                visibility="internal",
                title="Link Signature",
            ),
        ),
        responses={
            200: ("the result", "HuntingResult"),
            202: ("still running", "Job"),
            **_errors(400, 403, 404),
        },
        produces=("application/json", "text/csv"),
        visibility="internal",
        tags=("hunting",),
    ),
    Route(
        ENDPOINT["QueueIngestion"],
        h.queue_ingest,
        "Queues the tenant for ingestion (optionally from a date, for a backfill); 202 with "
        "Location, the tenant's ingestion status, to follow until the run ends.",
        role=INGEST,
        params=(TENANT, TENANT_HEADER),
        body=h.INGEST_BODY,
        body_optional=True,
        responses={
            202: ("queued: follow the Location to the end of the run", "IngestQueued"),
            **_errors(400, 403, 404, 429, 503),
        },
        tags=("ingestion",),
        limit="incidents",
    ),
    Route(
        ENDPOINT["GetIngestionStatus"],
        h.ingest_status,
        "The Location of POST /ingest: 202 (with the same Location and Retry-After) while the "
        "tenant is queued or running, then 200 with its last run: outcome, last success, "
        "watermark, last error.",
        role=INGEST,
        params=(TENANT, TENANT_HEADER),
        responses={
            200: ("the tenant's last run", "IngestStatus"),
            202: ("queued or running", "IngestStatus"),
            **_errors(400, 403, 404, 503),
        },
        tags=("ingestion",),
    ),
    Route(
        ENDPOINT["SubscribeIncidents"],
        h.subscribe,
        "This operation triggers when an incident matching the filter is created or updated: "
        "it subscribes a webhook (201 with Location, the URL to DELETE to unsubscribe) that "
        "receives each new version.",
        role=SUBSCRIBE,
        body=h.SUBSCRIBE_BODY,
        body_types=("application/json", "text/plain"),
        responses={201: ("subscribed", "SubscriptionCreated"), **_errors(400, 403, 404, 503)},
        extensions={"x-ms-trigger": "single"},
        # what each delivery POSTs: the trigger's outputs (on the path item, per the schema)
        path_extensions={
            "x-ms-notification-content": {
                "description": "A new or updated incident",
                "schema": {"$ref": "#/definitions/IncidentNotification"},
            },
        },
        tags=("subscriptions",),
    ),
    Route(
        ENDPOINT["ListSubscriptions"],
        h.list_subscriptions,
        "The push subscriptions the caller may manage, with their delivery health (status, "
        "circuit breaker, last success and failure, why one was dropped).",
        role=SUBSCRIBE,
        responses={200: ("the subscriptions", "SubscriptionList"), **_errors(403)},
        visibility="internal",
        tags=("subscriptions",),
    ),
    Route(
        ENDPOINT["UnsubscribeByCallback"],
        h.unsubscribe_by_callback,
        "Removes the subscription of a callback URL given in the body (never in the query: its "
        "sig is a credential); 200 with deleted 0 when there is none.",
        role=SUBSCRIBE,
        body=h.UNSUBSCRIBE_BODY,
        body_types=("application/json", "text/plain"),
        body_untyped=True,
        responses={200: ("removed", "Deleted"), **_errors(400, 403)},
        visibility="internal",
        tags=("subscriptions",),
    ),
    Route(
        ENDPOINT["Unsubscribe"],
        h.unsubscribe,
        "Removes a subscription (the platform calls its Location); 204, also when it is gone.",
        role=SUBSCRIBE,
        params=(
            Param(
                "id",
                "path",
                "string",
                "The subscription's ID.",
                required=True,
                title="Subscription ID",
            ),
        ),
        responses={204: ("removed", None), **_errors(400, 403)},
        visibility="internal",
        tags=("subscriptions",),
    ),
    Route(
        ENDPOINT["ConsentCallback"],
        h.consent_callback,
        "Where Entra sends a customer's admin after consenting: records the tenant.",
        params=(
            Param("tenant", "query", "string", "The consenting tenant.", title="Tenant ID"),
            Param(
                "admin_consent",
                "query",
                "string",
                "True when consent was granted.",
                title="Admin Consent",
            ),
            Param(
                "state",
                "query",
                "string",
                "The state the consent link carried.",
                title="State Token",
            ),
            Param("error", "query", "string", "Entra's error code.", title="Error Code"),
            Param(
                "error_description",
                "query",
                "string",
                "Entra's error text.",
                title="Error Description",
            ),
            Param("error_uri", "query", "string", "Entra's error link.", title="Error Link"),
            Param("scope", "query", "string", "The consented scope.", title="Consented Scope"),
        ),
        responses={200: ("recorded", "ConsentRecorded"), **_errors(400, 503)},
        visibility="internal",
        tags=("onboarding",),
    ),
    Route(
        ENDPOINT["GetOpenApi"],
        _openapi_document,
        "This API as OpenAPI 2.0 (import it as a custom connector); its security names this "
        "deployment's tenant and audience.",
        responses={200: ("the document", None)},
        visibility="internal",
        tags=("meta",),
    ),
)
#: every route, in the order of ``ENDPOINTS`` (``match`` tries them in turn)
ROUTES = joined(_TABLE)


def match(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route for ``method`` and ``path`` (404/405 ApiError otherwise)."""
    allowed: list[str] = []
    for route in ROUTES:
        found = route.pattern.match(path)
        if found is None:
            continue
        if route.method == method.upper():
            return route, found.groupdict()
        allowed.append(route.method)
    if allowed:
        raise ApiError(
            405,
            "method_not_allowed",
            f"{method.upper()} is not allowed here (allowed: {', '.join(sorted(set(allowed)))})",
            {"Allow": ", ".join(sorted(set(allowed)))},
        )
    raise ApiError(404, "not_found", "no such route")


def handle(
    request: Request,
    backend: Callable[[], Backend],
    *,
    max_body: int | None = None,
    authenticate: Authenticate | None = None,
    public_url: str | None = None,
) -> Response:
    """Answer one request. Never raises.

    The options come from settings (the faces read them through ``options_from``): without
    ``authenticate`` (broken settings) only the anonymous routes answer, the others are a 503
    that says nothing more to a caller nobody could identify. The caller is authenticated and
    their role checked before the request's parameters are looked at.
    """
    path = request.path
    if path.startswith("/api/") or path == "/api":
        path = path[len("/api") :] or "/"
    route: Route | None = None
    try:
        route, params = match(request.method, path)
        limit = max_body or DEFAULT_MAX_BODY
        if len(request.body) > limit:
            raise ApiError(413, "body_too_large", f"the body is larger than {limit} bytes")
        tokenless = route.auth == "capability" and "Authorization" not in request.headers
        if route.auth == "anonymous" or tokenless:
            # a capability route without a token: its handler checks the request's capability
            # (never a function key: the host does not check keys on a public route)
            caller = anonymous()
        elif authenticate is None:
            raise ApiError(
                503, "configuration", "the app's settings are invalid; see the app's log"
            )
        else:
            caller = authenticate(request)
            caller.require(route.role)
        _check_query(route, request)
        _check_content_type(route, request)
        ctx = h.Context(
            request=replace(request, path=path, route_params=params),
            caller=caller,
            backend_factory=backend,
            base_url=public_url or request.base_url,
            anonymous=caller.subject == "anonymous",
        )
        if route.limit is not None:
            _check_limit(ctx, route.limit)
        return route.handler(ctx)
    except ApiError as exc:
        return exc.response()
    except BridgeError as exc:  # a ConfigError here is the caller's input: a 400
        return h.api_error(exc, user=_user_mode(request)).response()
    except Exception:  # noqa: BLE001 - the last line: a trace goes to the log, never to the caller
        incident = uuid.uuid4().hex[:12]
        log.exception("HTTP API: unhandled error (reference %s)", incident)
        return error_response(
            500, "internal_error", f"the request failed (reference {incident}); see the app's logs"
        )


def _check_limit(ctx: h.Context, family: str) -> None:
    """Count the request against the caller's allowance; 429 (before any Defender call)
    when it is spent."""
    wait = ctx.backend.caller_limits.take(ctx.caller.subject, family)
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"this caller sent more requests to routes that call Defender than its limit "
            f"allows; retry after {retry_after(wait)} seconds",
            {"Retry-After": retry_after(wait)},
        )


def _user_mode(request: Request) -> bool:
    return request.query.get("context", [""])[-1] == "user"


def _check_query(route: Route, request: Request) -> None:
    allowed = {p.name for p in route.params if p.where == "query"} | set(ALWAYS_ALLOWED)
    unknown = sorted(k for k in request.query if k not in allowed)
    if unknown:
        raise ApiError(
            400,
            "unknown_parameter",
            f"unknown query parameter(s): {', '.join(repr(k[:64]) for k in unknown[:10])}"
            + (
                f" (allowed: {', '.join(sorted(allowed - set(ALWAYS_ALLOWED)))})"
                if allowed - set(ALWAYS_ALLOWED)
                else ""
            ),
        )


def _check_content_type(route: Route, request: Request) -> None:
    if route.body is None or (route.body_optional and not request.body.strip()):
        return
    given = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if given == "" and route.body_untyped:
        return
    if given not in route.body_types:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as {' or '.join(route.body_types)}",
        )


def options_from(settings: Any) -> dict[str, Any]:
    """The ``handle`` options of a ``Settings`` (the authenticator comes from the composition
    root: it keeps the signing keys between requests)."""
    return {
        "max_body": settings.http.max_body_bytes,
        "public_url": settings.http.public_url,
    }
