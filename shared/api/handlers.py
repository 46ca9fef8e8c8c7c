"""The route handlers: adapt a request to one use case and its answer to a response.

Each handler takes a ``Context`` (the request, the caller's principal and the lazily built
``Backend``) and returns a ``Response`` or raises ``ApiError``/``BridgeError``; the dispatcher
(``shared.api.routes``) turns errors into JSON. Handlers never build clients.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from shared import usecases
from shared.api.access import Principal, check_tenant, requested_tenant
from shared.api.http import ApiError, Request, Response, json_response
from shared.api.schema import Body, Field, parse_json
from shared.clock import format_utc, parse_utc
from shared.errors import (
    AuthError,
    BadRequestError,
    BridgeError,
    CallbackRefusedError,
    CallerTokenError,
    ConfigError,
    ConflictError,
    ConsentError,
    ForbiddenError,
    NotFoundError,
    StorageError,
    ThrottledError,
    TransientError,
    UpstreamError,
)

if TYPE_CHECKING:
    from shared.api.backend import Backend
    from shared.api.jobs import Job
    from shared.defender.client import DefenderClient
    from shared.defender.model import Incident

log = logging.getLogger(__name__)

DEFAULT_PAGE = 50
MAX_PAGE = 100


@dataclass
class Context:
    """One request being handled."""

    request: Request
    caller: Principal
    backend_factory: Callable[[], Backend]
    base_url: str
    _backend: Backend | None = field(default=None, repr=False)

    anonymous: bool = False

    @property
    def backend(self) -> Backend:
        """The backend (built on first use; a problem with the app's settings is a 503, told
        only to callers holding a key)."""
        if self._backend is None:
            try:
                self._backend = self.backend_factory()
            except ConfigError as exc:
                log.error("HTTP API: settings: %s", exc)
                if self.anonymous:
                    raise ApiError(503, "unavailable", "the service is not configured") from None
                raise ApiError(
                    503, "configuration", f"the app's settings are invalid: {exc}"
                ) from None
        return self._backend

    def tenant(self, body_tenant: str | None = None) -> str:
        """The tenant this request acts in, checked against the caller and the registry."""
        named = requested_tenant(self.request, body_tenant)
        if named is None:
            allowed = self.caller.tenants
            named = (
                next(iter(allowed))
                if allowed is not None and len(allowed) == 1
                else self.backend.settings.tenant_id
            )
        return self.check_tenant(named)

    def check_tenant(self, tenant: str) -> str:
        """``tenant`` if the caller may use it and it is registered (403/404 otherwise)."""
        if not self.caller.may_use(tenant):  # before reading the registry: reveal nothing
            return check_tenant(tenant, self.caller, ())
        return check_tenant(tenant, self.caller, self.backend.registered())

    @property
    def user_context(self) -> bool:
        """Whether the caller asked to act as themselves (``context=user``)."""
        mode = self.request.param("context") or "app"
        if mode not in ("app", "user"):
            raise ApiError(400, "invalid_parameter", "'context' must be app or user")
        return mode == "user"

    def client(self, tenant: str) -> DefenderClient:
        """The API client for ``tenant``: the app's, or on behalf of the caller."""
        if not self.user_context:
            return self.backend.client_for(tenant)
        auth = self.request.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "caller_token_required",
                "context=user needs the caller's Entra access token for this app in "
                "'Authorization: Bearer ...'",
                {"WWW-Authenticate": "Bearer"},
            )
        return self.backend.user_client_for(token.strip(), tenant)

    def url(self, path: str, query: dict[str, str] | None = None) -> str:
        """An absolute URL of this deployment."""
        tail = f"?{urlencode(query)}" if query else ""
        return f"{self.base_url}/api{path}{tail}"


def api_error(exc: BridgeError, *, user: bool = False) -> ApiError:
    """The HTTP answer for a typed error (messages are safe by construction)."""
    message = str(exc)
    if isinstance(exc, ConfigError):
        return ApiError(400, "invalid_request", message)
    if isinstance(exc, CallerTokenError):
        return ApiError(401, exc.code, message, {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, ConsentError):
        return ApiError(403, exc.code, f"{message}. {exc.action}")
    if isinstance(exc, AuthError):
        return ApiError(502, "upstream_authentication", message)
    if isinstance(exc, ThrottledError):
        wait = max(1, math.ceil(exc.retry_after or 60))
        return ApiError(429, exc.code, message, {"Retry-After": str(wait)})
    if isinstance(exc, TransientError):
        return ApiError(503, exc.code, message, {"Retry-After": "30"})
    if isinstance(exc, NotFoundError):
        return ApiError(404, exc.code, message)
    if isinstance(exc, BadRequestError):
        return ApiError(400, "upstream_bad_request", message)
    if isinstance(exc, ForbiddenError):
        # the caller's own permissions (user context) or the app's (a deployment problem)
        return ApiError(403 if user else 502, exc.code, message)
    if isinstance(exc, UpstreamError):
        return ApiError(502, exc.code, message)
    if isinstance(exc, StorageError):
        return ApiError(503, exc.code, message, {"Retry-After": "30"})
    if isinstance(exc, ConflictError):
        return ApiError(409, exc.code, message)
    return ApiError(500, "internal_error", "the request failed; see the app's logs")


# ---------------------------------------------------------------------- parameters


def int_param(request: Request, name: str, low: int, high: int, default: int) -> int:
    """A whole-number query parameter in ``[low, high]``."""
    raw = request.param(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(400, "invalid_parameter", f"'{name}' must be a whole number {low}-{high}")
    return value


def time_param(request: Request, name: str) -> datetime | None:
    """An ISO-8601 time query parameter (with a zone)."""
    raw = request.param(name)
    if raw is None:
        return None
    try:
        return parse_utc(raw)
    except (ValueError, OverflowError):  # OverflowError: year 1 with a positive offset
        raise ApiError(
            400, "invalid_parameter", f"'{name}' must be an ISO-8601 time with a zone"
        ) from None


# ---------------------------------------------------------------------- health / docs


def health(ctx: Context) -> Response:
    """``GET /health``: alive (nothing about the deployment)."""
    return json_response(200, {"status": "ok"}, {"Cache-Control": "no-store"})


def openapi_document(ctx: Context) -> Response:
    """``GET /openapi.json``."""
    from shared.api.openapi import document

    return json_response(200, document(ctx.base_url))


# ---------------------------------------------------------------------- incidents


@dataclass(frozen=True)
class Cursor:
    """Where a page of ``GET /incidents`` ended: the last (lastUpdate, id) it showed."""

    last_update: datetime
    incident_id: str
    fingerprint: str

    def encode(self) -> str:
        """Opaque text."""
        raw = json.dumps([format_utc(self.last_update), self.incident_id, self.fingerprint])
        return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()

    @classmethod
    def decode(cls, text: str, fingerprint: str) -> Cursor:
        """Parse a cursor made for the same filters (400 otherwise)."""
        try:
            data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            when, ident, print_ = data
            cursor = cls(parse_utc(str(when)), str(ident), str(print_))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, RecursionError):
            raise ApiError(
                400, "invalid_cursor", "'cursor' is not a cursor this API issued"
            ) from None
        if cursor.fingerprint != fingerprint:
            raise ApiError(
                400, "invalid_cursor", "'cursor' belongs to a listing with other filters"
            )
        return cursor


LIST_FILTERS = (
    "status",
    "severity",
    "assignedTo",
    "createdFrom",
    "createdBefore",
    "updatedFrom",
    "updatedBefore",
)


def list_incidents(ctx: Context) -> Response:
    """``GET /incidents``: the CLI's filters, newest first, paged by an opaque cursor.

    Pages never rest on result order or offsets: every page lists the matching incidents
    updated no later than the cursor, sorts them by (lastUpdate, id) itself and shows those
    after the cursor, so an incident updated while a client pages moves to the front (it is
    then newer than the cursor) and no other incident is skipped.
    """
    r = ctx.request
    top = int_param(r, "top", 1, MAX_PAGE, DEFAULT_PAGE)
    tenant = ctx.tenant()
    try:
        query = usecases.incident_query(
            statuses=r.params("status"),
            severities=r.params("severity"),
            assigned_to=r.param("assignedTo"),
            created_from=time_param(r, "createdFrom"),
            created_before=time_param(r, "createdBefore"),
            updated_from=time_param(r, "updatedFrom"),
            updated_before=time_param(r, "updatedBefore"),
        )
    except ConfigError as exc:
        raise ApiError(400, "invalid_parameter", str(exc)) from None
    shown = {k: r.params(k) for k in LIST_FILTERS}
    fingerprint = hashlib.sha256(json.dumps([tenant, shown], sort_keys=True).encode()).hexdigest()
    fingerprint = fingerprint[:16]
    raw_cursor = r.param("cursor")
    cursor = Cursor.decode(raw_cursor, fingerprint) if raw_cursor else None
    incidents: list[Incident] = []
    if cursor is not None:
        bound = cursor.last_update + timedelta(microseconds=1)
        if query.updated_before is None or bound < query.updated_before:
            if query.updated_from is not None and bound <= query.updated_from:
                return _page(ctx, tenant, [], None)
            query = replace(query, updated_before=bound)
    incidents = usecases.list_incidents(ctx.client(tenant), query)
    incidents.sort(key=lambda i: (i.last_update, i.id), reverse=True)
    if cursor is not None:
        incidents = [
            i for i in incidents if (i.last_update, i.id) < (cursor.last_update, cursor.incident_id)
        ]
    page = incidents[:top]
    following = None
    if len(incidents) > top:
        last = page[-1]
        following = Cursor(last.last_update, last.id, fingerprint).encode()
    return _page(ctx, tenant, page, following)


def _page(ctx: Context, tenant: str, page: list[Incident], cursor: str | None) -> Response:
    body: dict[str, Any] = {"tenant": tenant, "value": [usecases.incident_row(i) for i in page]}
    if cursor is not None:
        query = {k: ",".join(v) for k, v in ctx.request.query.items() if k not in ("code",)}
        query.update(cursor=cursor, tenant=tenant)
        body["nextLink"] = ctx.url("/incidents", query)
    return json_response(200, body)


def get_incident(ctx: Context) -> Response:
    """``GET /incidents/{id}``: one incident with its alerts."""
    from shared.defender.model import normalize_alert

    tenant = ctx.tenant()
    incident_id = _incident_id(ctx)
    incident = usecases.get_incident(ctx.client(tenant), incident_id)
    alerts = incident.raw.get("alerts")
    rows = [
        usecases.alert_row(normalize_alert(a, incident.api))
        for a in (alerts if isinstance(alerts, list) else [])
        if isinstance(a, dict)
    ]
    return json_response(200, {**usecases.incident_row(incident), "alertList": rows})


def _incident_id(ctx: Context) -> str:
    from shared.defender.operations import incident_id

    try:
        return incident_id(ctx.request.route_params.get("id", ""))
    except ConfigError as exc:
        raise ApiError(400, "invalid_id", str(exc)) from None


UPDATE_BODY = Body(
    "IncidentUpdate",
    (
        Field("status", "string", "active, inProgress, resolved or redirected", max_length=40),
        Field(
            "assignedTo", "string", "assign to this user (UPN); null or '' unassigns", nullable=True
        ),
        Field(
            "classification",
            "string",
            "truePositive, informationalExpectedActivity or falsePositive",
            max_length=60,
        ),
        Field("determination", "string", "e.g. malware, phishing, clean", max_length=60),
        Field("tags", "array", "the incident's tags (replaces them; [] removes all)"),
        Field("comment", "string", "a comment to add"),
    ),
    at_least_one=True,
    description="The changes to make; fields left out stay as they are.",
)


def update_incident(ctx: Context) -> Response:
    """``PATCH /incidents/{id}``."""
    from shared.defender.operations import IncidentUpdate

    tenant = ctx.tenant()
    incident_id = _incident_id(ctx)
    body = UPDATE_BODY.parse(ctx.request.body)
    assigned = body.get("assignedTo", ...)
    try:
        update = IncidentUpdate.parse(
            status=body.get("status"),
            assigned_to=None if assigned is ... else (assigned or ""),
            classification=body.get("classification"),
            determination=body.get("determination"),
            tags=body.get("tags"),
            comment=body.get("comment"),
        )
    except ConfigError as exc:
        raise ApiError(400, "invalid_body", str(exc)) from None
    started = ctx.backend.clock()
    incident = usecases.update_incident(ctx.client(tenant), incident_id, update)
    # push does not deliver this update back to the workflow that made it (loop protection)
    ctx.backend.mark_own_update(tenant, incident.id, started)
    return json_response(200, usecases.incident_row(incident))


# ---------------------------------------------------------------------- hunting

HUNT_BODY = Body(
    "HuntingRequest",
    (
        Field(
            "template",
            "string",
            "name of a hunting template (see GET /hunting/templates)",
            max_length=64,
            # a connector shows the templates as a drop-down
            extensions={
                "x-ms-dynamic-values": {
                    "operationId": "ListHuntingTemplates",
                    "value-collection": "value",
                    "value-path": "name",
                    "value-title": "summary",
                }
            },
        ),
        Field("parameters", "object", "the template's parameters by name"),
        Field(
            "query",
            "string",
            "free-form KQL (only when the API_ALLOW_FREE_KQL setting is true)",
            max_length=100_000,
            visibility="advanced",
        ),
        Field("timespan", "string", "Graph only: ISO-8601 time span, e.g. P7D", max_length=80),
        Field("format", "string", "json (schema + rows, default) or csv", enum=("json", "csv")),
        Field(
            "maxRows",
            "integer",
            "return at most this many rows (truncated is then true)",
            minimum=1,
            maximum=100_000,
        ),
    ),
    description="A template with parameters, or (when allowed) free-form KQL.",
)


def list_templates(ctx: Context) -> Response:
    """``GET /hunting/templates``."""
    from shared.hunting import templates

    return json_response(
        200,
        {
            "value": [
                {
                    "name": t.name,
                    "summary": t.summary,
                    "parameters": {p.name: p.schema() for p in t.parameters},
                    "required": [p.name for p in t.parameters if p.required],
                }
                for t in templates().values()
            ]
        },
    )


def hunting_query(ctx: Context, body: dict[str, Any]) -> str:
    """The KQL to run: a rendered template, or the free-form query when allowed."""
    from shared.hunting import ParameterError, templates

    name, query = body.get("template"), body.get("query")
    if (name is None) == (query is None):
        raise ApiError(400, "invalid_body", "give either 'template' (with 'parameters') or 'query'")
    if query is not None:
        if not ctx.backend.settings.api_allow_free_kql:
            raise ApiError(
                403,
                "free_kql_disabled",
                "free-form KQL is disabled (API_ALLOW_FREE_KQL); use a template",
            )
        if "parameters" in body:
            raise ApiError(400, "invalid_body", "'parameters' goes with 'template', not 'query'")
        return str(query)
    known = templates()
    template = known.get(str(name))
    if template is None:
        raise ApiError(
            400,
            "unknown_template",
            f"no hunting template '{str(name)[:64]}' (available: {', '.join(known)})",
        )
    try:
        return template.render(body.get("parameters") or {})
    except ParameterError as exc:
        raise ApiError(400, "invalid_parameters", str(exc)) from None


def run_hunting(ctx: Context) -> Response:
    """``POST /hunting``: synchronous within the budget, else 202 and a job to poll."""
    from shared.api.jobs import Job

    body = HUNT_BODY.parse(ctx.request.body)
    tenant = ctx.tenant()
    kql = hunting_query(ctx, body)
    timespan = body.get("timespan")
    client = ctx.client(tenant)
    try:
        usecases.check_hunt(client, kql, timespan)
    except ConfigError as exc:
        raise ApiError(400, "invalid_body", str(exc)) from None
    backend = ctx.backend
    user = ctx.user_context
    fmt: Literal["json", "csv"] = "csv" if body.get("format") == "csv" else "json"
    job = Job.new(
        tenant=tenant,
        query=kql,
        timespan=timespan,
        fmt=fmt,
        max_rows=body.get("maxRows"),
        context="user" if user else "app",
        now=backend.clock(),
    )
    prefer = (ctx.request.headers.get("Prefer") or "").lower()
    # RFC 7240: "Prefer: respond-async, wait=10" (preferences split by commas, params by ;)
    asked_async = "respond-async" in [p.split(";")[0].strip() for p in prefer.split(",")]
    if asked_async and not user:
        backend.jobs.save(job)
        backend.submit_job(job.id, 0)
        return accepted(ctx, job)
    running = job.moved("running", backend.clock())
    backend.jobs.save(running)
    future = backend.background(lambda: execute_job(backend, running, client))
    if asked_async:
        return accepted(ctx, running)
    try:
        finished: Job = future.result(timeout=backend.settings.api_sync_budget)
    except FutureTimeout:
        if not user:
            # a safety net: if this process dies before the hunt ends, the queue worker runs
            # the job again once the hunt's own time budget has surely passed
            delay = int(backend.settings.api_time_budget) + 60
            backend.submit_job(running.id, delay)
        return accepted(ctx, running)
    return job_answer(finished)


def accepted(ctx: Context, job: Job) -> Response:
    """202 with the absolute ``Location`` to poll and ``Retry-After`` (seconds)."""
    location = ctx.url(f"/hunting/jobs/{job.id}")
    retry = str(ctx.backend.settings.api_retry_after)
    return json_response(
        202,
        {"id": job.id, "state": job.state, "tenant": job.tenant},
        {"Location": location, "Retry-After": retry},
    )


def execute_job(backend: Backend, job: Job, client: DefenderClient | None = None) -> Job:
    """Run a job's hunt and save its answer (never raises for a failure of the hunt)."""
    status, result = 500, None
    try:
        client = client or backend.client_for(job.tenant)
        hunt = usecases.hunt(client, job.query, timespan=job.timespan)
        data = usecases.hunting_json(hunt, max_rows=job.max_rows)
        if job.format == "csv":
            names = [c["name"] for c in data["columns"]]
            result = {
                "csv": usecases.hunting_csv(names, data["rows"]),
                "truncated": data["truncated"],
            }
        else:
            result = data
        status = 200
    except BridgeError as exc:
        err = api_error(exc, user=job.context == "user")
        status, result = err.status, {"error": {"code": err.code, "message": err.message}}
    except Exception:  # noqa: BLE001 - the job records a failure instead of vanishing
        log.exception("hunting job %s failed", job.id)
        result = {"error": {"code": "internal_error", "message": "the hunting job failed"}}
    done = job.finished(status, result, backend.clock())
    backend.jobs.save(done)
    return done


def run_queued_job(backend: Backend, job_id: str) -> None:
    """The queue worker: run a job unless it already finished (at-least-once delivery)."""
    job = backend.jobs.load(job_id)
    if job is None:
        log.warning("hunting job %s not found; message dropped", job_id)
        return
    if job.state in ("done", "failed") or job.context == "user":
        return
    execute_job(backend, job.moved("running", backend.clock()))


def job_answer(job: Job) -> Response:
    """The final answer of a finished job."""
    status = job.status or 500
    if status >= 400 or job.format == "json":
        return json_response(status, job.result)
    result = job.result or {}
    return Response(
        status,
        str(result.get("csv", "")).encode("utf-8"),
        {
            "Content-Type": "text/csv; charset=utf-8",
            "X-Row-Limit-Reached": "true" if result.get("truncated") else "false",
        },
    )


def get_job(ctx: Context) -> Response:
    """``GET /hunting/jobs/{id}``: 202 (same headers) until done, then the answer."""
    from shared.api.jobs import valid_job_id

    job_id = ctx.request.route_params.get("id", "")
    if not valid_job_id(job_id):
        raise ApiError(400, "invalid_id", "a job id is 32 lowercase hexadecimal digits")
    job = ctx.backend.jobs.load(job_id)
    if job is None:
        raise ApiError(404, "job_not_found", "no such hunting job")
    ctx.check_tenant(job.tenant)  # another tenant's job: the same 403 as every route
    if job.state in ("done", "failed"):
        return job_answer(job)
    lost_after = ctx.backend.settings.api_time_budget + 120
    if job.context == "user" and job.age_seconds(ctx.backend.clock()) > lost_after:
        raise ApiError(504, "job_lost", "the hunting job stopped without an answer; run it again")
    return accepted(ctx, job)


# ---------------------------------------------------------------------- ingestion

INGEST_BODY = Body(
    "IngestRequest",
    (
        Field(
            "tenant",
            "string",
            "the tenant to ingest (default: as the query/header says)",
            max_length=36,
        ),
        Field(
            "since",
            "string",
            "ingest from this ISO-8601 time (backfill) instead of the watermark",
            fmt="date-time",
            max_length=40,
        ),
    ),
)


def queue_ingest(ctx: Context) -> Response:
    """``POST /ingest``: queue one tenant for ingestion now (202)."""
    from shared.storage.queue import IngestRequest

    raw = ctx.request.body
    body = INGEST_BODY.parse(raw) if raw.strip() else {}
    tenant = ctx.tenant(body.get("tenant"))
    since = None
    if body.get("since"):
        try:
            since = parse_utc(body["since"])
        except (ValueError, OverflowError):
            raise ApiError(
                400, "invalid_body", "'since' must be an ISO-8601 time with a zone"
            ) from None
        if since > ctx.backend.clock():
            raise ApiError(400, "invalid_body", "'since' is in the future")
    ctx.backend.enqueue_ingest(IngestRequest(tenant, "http", since))
    return json_response(
        202,
        {"queued": True, "tenant": tenant, "since": format_utc(since) if since else None},
    )


# ---------------------------------------------------------------------- subscriptions

SUBSCRIBE_BODY = Body(
    "Subscription",
    (
        Field(
            "callbackUrl",
            "string",
            "where to POST matching incidents (Logic Apps fills it in)",
            required=True,
            max_length=2048,
            visibility="internal",
            extensions={"x-ms-notification-url": True},
        ),
        Field(
            "minSeverity",
            "string",
            "only incidents of at least this severity",
            enum=("informational", "low", "medium", "high"),
        ),
        Field("statuses", "array", "only incidents in these statuses", max_length=40),
        Field("tags", "array", "only incidents with one of these tags"),
        Field(
            "tenants",
            "array",
            "only these tenants (default: every tenant the caller may use)",
            max_length=36,
        ),
    ),
)


def subscribe(ctx: Context) -> Response:
    """``POST /subscriptions``: 201 with ``Location`` (the URL to DELETE to unsubscribe), or 200
    with the same ``Location`` when this callback URL is already subscribed: Logic Apps
    subscribes again on every save and retries on 408/429/5xx, so one URL is one subscription,
    its filter replaced by the last subscribe."""
    from shared.defender.values import canonical_severity, canonical_status
    from shared.push.keys import SIGNATURE_HEADER
    from shared.push.messages import Filter

    data = _callback_body(ctx.request)
    body = SUBSCRIBE_BODY.check(data)
    backend = ctx.backend
    if backend.settings.api_signing_key is None:
        raise ApiError(503, "push_not_configured", "push needs the API_SIGNING_KEY setting")
    try:
        statuses = tuple(canonical_status(s, for_filter=True) for s in body.get("statuses", []))
        severity = body.get("minSeverity")
        severity = canonical_severity(severity) if severity else None
    except ConfigError as exc:
        raise ApiError(400, "invalid_body", str(exc)) from None
    tenants: tuple[str, ...] | None
    if body.get("tenants"):
        from shared.api.access import _guid

        named = []
        for value in body["tenants"]:
            tid = _guid(value)
            if tid is None:
                raise ApiError(400, "invalid_body", "'tenants' holds a value that is not a GUID")
            named.append(ctx.check_tenant(tid))
        tenants = tuple(dict.fromkeys(named))
    elif ctx.caller.tenants is not None:
        tenants = tuple(sorted(ctx.caller.tenants))
    else:
        tenants = None
    url = body["callbackUrl"]
    try:
        # the parser that sends checks it here too, with its host's addresses
        target = backend.callbacks.check(url)
    except CallbackRefusedError as exc:
        raise ApiError(400, "callback_refused", str(exc)) from None
    store = backend.subscriptions
    existing = store.find(url)
    if existing is not None and not _may_manage(ctx.caller, existing.tenants):
        raise ApiError(
            403,
            "tenant_forbidden",
            "this callback is subscribed for tenants the caller may not use",
        )
    flt = Filter(severity, statuses, tuple(body.get("tags", [])), tenants)
    sub, created = store.save(url, target.host, flt)
    location = ctx.url(f"/subscriptions/{sub.id}")
    return json_response(
        201 if created else 200,
        {
            **sub.describe(),
            "status": sub.status,
            "secret": store.secret(sub),
            "signatureHeader": SIGNATURE_HEADER,
        },
        {"Location": location},
    )


def _callback_body(request: Request) -> Any:
    """The callback URL's body as Logic Apps may send it: a JSON object, a bare JSON string, or
    the URL as text, with or without a ``Content-Type`` (a body that parses as JSON is JSON)."""
    raw = request.body
    if not raw.strip():
        raise ApiError(400, "invalid_body", 'the body is empty; send {"callbackUrl": ...}')
    stripped = raw.strip()
    kind = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if kind == "application/json" or stripped[:1] in (b"{", b'"'):
        data = parse_json(raw)
    else:
        try:
            data = stripped.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_body", "the body is not UTF-8 text") from None
    if isinstance(data, str):
        return {"callbackUrl": data.strip()}
    return data


def _may_manage(caller: Principal, tenants: tuple[str, ...] | None) -> bool:
    if caller.tenants is None:
        return True
    return tenants is not None and set(tenants) <= caller.tenants


def list_subscriptions(ctx: Context) -> Response:
    """``GET /subscriptions``: the subscriptions the caller may manage, with their health."""
    now = ctx.backend.clock()
    subs = [s for s in ctx.backend.subscriptions.all() if _may_manage(ctx.caller, s.tenants)]
    subs.sort(key=lambda s: s.created)
    return json_response(
        200,
        {
            "value": [
                {**s.describe(), **s.health(now), "location": ctx.url(f"/subscriptions/{s.id}")}
                for s in subs
            ]
        },
    )


def unsubscribe(ctx: Context) -> Response:
    """``DELETE /subscriptions/{id}`` (the Location of the subscription); 204, also when it is
    already gone (Logic Apps repeats an unsubscribe it is not sure of)."""
    from shared.push.store import is_subscription_id

    sub_id = ctx.request.route_params.get("id", "")
    if not is_subscription_id(sub_id):
        raise ApiError(400, "invalid_id", "a subscription id is 32 lowercase hexadecimal digits")
    store = ctx.backend.subscriptions
    sub = store.get(sub_id)
    if sub is None:
        return Response(204)
    if not _may_manage(ctx.caller, sub.tenants):
        raise ApiError(
            403, "tenant_forbidden", "the subscription covers tenants the caller may not use"
        )
    store.remove(sub.id)
    return Response(204)


def unsubscribe_by_callback(ctx: Context) -> Response:
    """``DELETE /subscriptions`` with the callback URL in the body (JSON object, bare JSON string
    or text, with or without ``Content-Type``), as an HTTP Webhook trigger's unsubscribe call may
    send it; never from the query string (the URL's ``sig`` is a credential). 200 with how many
    were removed: 0 when none (already gone is success)."""
    data = _callback_body(ctx.request)
    # an unsubscribe that repeats the subscribe body (filter included) is common: accept it
    url = SUBSCRIBE_BODY.check(data)["callbackUrl"]
    store = ctx.backend.subscriptions
    found = store.find(url)
    if found is None:
        return json_response(200, {"deleted": 0})
    if not _may_manage(ctx.caller, found.tenants):
        raise ApiError(
            403, "tenant_forbidden", "the subscription covers tenants the caller may not use"
        )
    store.remove(found.id)
    return json_response(200, {"deleted": 1})


UNSUBSCRIBE_BODY = Body("Unsubscribe", (SUBSCRIBE_BODY.fields[0],))


# ---------------------------------------------------------------------- consent


def consent_callback(ctx: Context) -> Response:
    """``GET /consent/callback``: Entra's admin-consent redirect (anonymous)."""
    from shared.api.access import _guid
    from shared.api.consent import StateError, verify_state

    r = ctx.request
    settings = ctx.backend.settings
    if settings.api_signing_key is None:
        raise ApiError(
            503, "consent_not_configured", "onboarding needs the API_SIGNING_KEY setting"
        )
    error = r.param("error")
    if error:
        detail = (r.param("error_description") or "").splitlines()[0:1]
        text = detail[0][:300] if detail else ""
        raise ApiError(
            400,
            "consent_declined",
            f"the admin consent was not granted ({error[:80]}) {text}".strip(),
        )
    tenant = _guid(r.param("tenant") or "")
    if tenant is None:
        raise ApiError(400, "invalid_parameter", "'tenant' is missing or not a tenant GUID")
    if (r.param("admin_consent") or "").lower() != "true":
        raise ApiError(400, "consent_declined", "the redirect does not say admin_consent=True")
    state = r.param("state")
    if not state:
        raise ApiError(400, "invalid_state", "the consent redirect carries no state")
    try:
        verify_state(settings.api_signing_key, state, tenant, ctx.backend.clock())
    except StateError as exc:
        raise ApiError(400, "invalid_state", str(exc)) from None
    ctx.backend.record_consent(tenant, ctx.backend.clock())
    return json_response(
        200,
        {
            "tenant": tenant,
            "consented": True,
            "message": "consent recorded: the tenant is ingested from the next run",
        },
    )
