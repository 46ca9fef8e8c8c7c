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
import re
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from shared.api.access import (
    Principal,
    challenge,
    check_tenant,
    requested_tenant,
    unauthenticated,
)
from shared.api.consent import StateError, consent_tenant, verify_state
from shared.api.http import ApiError, Request, Response, json_response
from shared.api.poll import LinkError, issue, verify
from shared.api.schema import Body, Field, parse_json
from shared.core.clock import RANGE_TEXT, format_utc, parse_input_time, parse_utc
from shared.core.errors import (
    THROTTLE,
    AuthError,
    BridgeError,
    CallbackRefusedError,
    ConfigError,
    ConsentError,
    ThrottledError,
    outcome_of,
)
from shared.core.guids import guid
from shared.credentials.claims import RoleCheck, check_roles
from shared.defender.slices import from_us, to_us
from shared.defender.values import canonical_severity, canonical_status
from shared.push.messages import SIGNATURE_HEADER, Filter, is_subscription_id
from shared.storage.values import IngestRequest, Job, valid_job_id
from shared.usecases import incidents as usecases
from shared.usecases.hunting import ParameterError, templates

if TYPE_CHECKING:
    from shared.api.backend import Backend
    from shared.defender.model import Incident
    from shared.ports import Defender
    from shared.storage.values import Job

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
                else self.backend.settings.identity.tenant_id
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

    def client(self, tenant: str) -> Defender:
        """The API client for ``tenant``: the app's, or on behalf of the caller."""
        if not self.user_context:
            return self.backend.client_for(tenant)
        # the token the caller was authenticated by is the assertion (validated once)
        return self.backend.user_client_for(self.caller, tenant)

    def url(self, path: str, query: dict[str, str] | None = None) -> str:
        """An absolute URL of this deployment."""
        tail = f"?{urlencode(query)}" if query else ""
        return f"{self.base_url}/api{path}{tail}"


def api_error(exc: BridgeError, *, user: bool = False) -> ApiError:
    """The HTTP answer for a typed error, from ``shared.core.errors.OUTCOMES`` (messages are safe by
    construction)."""
    outcome = outcome_of(exc)
    if outcome.hidden:
        return ApiError(
            outcome.status, outcome.code or exc.code, "the request failed; see the app's logs"
        )
    message = str(exc)
    if outcome.action and isinstance(exc, ConsentError):
        message = f"{message}. {exc.action}"
    headers: dict[str, str] = {}
    if outcome.challenge:
        headers["WWW-Authenticate"] = challenge()
    if outcome.retry_after == THROTTLE:
        wait = exc.retry_after if isinstance(exc, ThrottledError) else None
        headers["Retry-After"] = str(max(1, math.ceil(wait or 60)))
    elif outcome.retry_after is not None:
        headers["Retry-After"] = str(outcome.retry_after)
    status = outcome.user_status if user and outcome.user_status else outcome.status
    return ApiError(status, outcome.code or exc.code, message, headers or None)


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
    """An ISO-8601 time query parameter (with a zone), within ``shared.core.clock.RANGE_TEXT``."""
    raw = request.param(name)
    if raw is None:
        return None
    try:
        return parse_input_time(raw)
    except ValueError:
        raise ApiError(
            400,
            "invalid_parameter",
            f"'{name}' must be an ISO-8601 time with a zone, {RANGE_TEXT}",
        ) from None


# ---------------------------------------------------------------------- health / docs


def health(ctx: Context) -> Response:
    """``GET /health``: alive (nothing about the deployment)."""
    return json_response(200, {"status": "ok"}, {"Cache-Control": "no-store"})


# ---------------------------------------------------------------------- incidents


@dataclass(frozen=True)
class Cursor:
    """Where a page of ``GET /incidents`` ended: the next page shows what lies below the
    position (``last_update``, ``incident_id``); an empty id means below that whole
    microsecond. ``rate``: incidents per hour the page saw, to size the next page's first
    request (``shared.defender.pages``)."""

    last_update: datetime
    incident_id: str
    fingerprint: str
    rate: float | None = None

    def encode(self) -> str:
        """Opaque text."""
        rate = None if self.rate is None else float(f"{self.rate:.6g}")
        raw = json.dumps([format_utc(self.last_update), self.incident_id, self.fingerprint, rate])
        return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()

    @classmethod
    def decode(cls, text: str, fingerprint: str) -> Cursor:
        """Parse a cursor made for the same filters (400 otherwise, never echoing it)."""
        invalid = ApiError(400, "invalid_cursor", "'cursor' is not a cursor this API issued")
        if len(text) > MAX_CURSOR:
            raise invalid
        try:
            data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
            raise invalid from None
        if not (
            isinstance(data, list)
            and len(data) == 4
            and all(isinstance(v, str) for v in data[:3])
            and (data[3] is None or (isinstance(data[3], float | int) and data[3] is not True))
        ):
            raise invalid
        when, ident, print_, rate = data
        if not _CURSOR_ID.fullmatch(ident) or not _FINGERPRINT.fullmatch(print_):
            raise invalid
        if rate is not None and not (math.isfinite(rate) and 0 < rate <= MAX_RATE):
            raise invalid
        try:
            cursor = cls(parse_input_time(when), ident, print_, rate)
        except ValueError:
            raise invalid from None
        if cursor.fingerprint != fingerprint:
            raise ApiError(
                400, "invalid_cursor", "'cursor' belongs to a listing with other filters"
            )
        return cursor


#: the longest cursor text accepted (ours are under 200 characters)
MAX_CURSOR = 512
#: an incident id (``shared.defender.operations``), or empty: "below this microsecond"
_CURSOR_ID = re.compile(r"[A-Za-z0-9-]{0,64}")
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
#: the densest listing a cursor may describe (incidents per hour): far beyond any tenant
MAX_RATE = 1e9
_US_PER_HOUR = 3.6e9


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

    Each page asks Defender only for the time slices its ``top`` incidents need (at most
    ``API_INCIDENTS_PAGE_MAX_CALLS`` requests; ``shared.defender.pages``), never for the whole
    tenant, and rests on no result order or offset: a slice counts only when one answer held
    all of it. Pages go newest first, by (lastUpdate, id), each below the position the last
    one ended at, so an incident updated while a client pages moves in front of the cursor
    (the next listing from the top shows it, in its new version) and none is shown twice or
    skipped otherwise.
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
    backend = ctx.backend
    result = usecases.incident_page(
        ctx.client(tenant),
        query,
        before=None if cursor is None else (to_us(cursor.last_update), cursor.incident_id),
        top=top,
        max_calls=backend.settings.http.page_max_calls,
        rate=None if cursor is None or cursor.rate is None else cursor.rate / _US_PER_HOUR,
        now=backend.clock(),
    )
    following = None
    if result.following is not None:
        at, ident = result.following
        rate = None if result.rate is None else min(MAX_RATE, result.rate * _US_PER_HOUR)
        following = Cursor(from_us(at), ident, fingerprint, rate).encode()
    return _page(ctx, tenant, result.items, following)


def _page(ctx: Context, tenant: str, page: list[Incident], cursor: str | None) -> Response:
    body: dict[str, Any] = {"tenant": tenant, "value": [usecases.incident_row(i) for i in page]}
    if cursor is not None:
        query = {k: ",".join(v) for k, v in ctx.request.query.items() if k not in ("code",)}
        query.update(cursor=cursor, tenant=tenant)
        body["nextLink"] = ctx.url("/incidents", query)
    return json_response(200, body)


def get_incident(ctx: Context) -> Response:
    """``GET /incidents/{id}``: one incident with its alerts."""
    tenant = ctx.tenant()
    incident = usecases.get_incident(ctx.client(tenant), _incident_id(ctx))
    rows = usecases.alert_rows(incident)
    return json_response(200, {**usecases.incident_row(incident), "alertList": rows})


def _incident_id(ctx: Context) -> str:
    try:
        return usecases.incident_id(ctx.request.route_params.get("id", ""))
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
    tenant = ctx.tenant()
    incident_id = _incident_id(ctx)
    body = UPDATE_BODY.parse(ctx.request.body)
    assigned = body.get("assignedTo", ...)
    try:
        update = usecases.incident_update(
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

    name, query = body.get("template"), body.get("query")
    if (name is None) == (query is None):
        raise ApiError(400, "invalid_body", "give either 'template' (with 'parameters') or 'query'")
    if query is not None:
        if not ctx.backend.settings.http.allow_free_kql:
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
        finished: Job = future.result(timeout=backend.settings.http.sync_budget)
    except FutureTimeout:
        if not user:
            # a safety net: if this process dies before the hunt ends, the queue worker runs
            # the job again once the hunt's own time budget has surely passed
            delay = int(backend.settings.defender.time_budget) + 60
            backend.submit_job(running.id, delay)
        return accepted(ctx, running)
    return job_answer(finished)


def accepted(ctx: Context, job: Job) -> Response:
    """202 with the absolute ``Location`` to poll and ``Retry-After`` (seconds).

    The Location is the job's poll link (``shared.api.poll``): it opens with a token when the
    poller sends one, else with its own signed capability, so it works however little the
    caller re-sends. It is the same on every 202 of the job. Without ``API_SIGNING_KEY`` no
    capability can be signed, and the Location is ``/hunting/jobs/{id}``, for token holders.
    """

    settings = ctx.backend.settings
    if settings.http.signing_key is None:
        location = ctx.url(f"/hunting/jobs/{job.id}")
    else:
        link = issue(
            settings.http.signing_key,
            job.id,
            job.tenant,
            parse_utc(job.created),
            settings.http.poll_link_lifetime,
        )
        location = ctx.url("/hunting/status", link.query())
    return json_response(
        202,
        {"id": job.id, "state": job.state, "tenant": job.tenant},
        {"Location": location, "Retry-After": str(settings.http.retry_after)},
    )


def execute_job(backend: Backend, job: Job, client: Defender | None = None) -> Job:
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
    # saved before the hunt starts, so a poll meanwhile says "running", not "queued"
    running = job.moved("running", backend.clock())
    backend.jobs.save(running)
    execute_job(backend, running)


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
    job_id = ctx.request.route_params.get("id", "")
    job = _load_job(ctx, job_id)
    ctx.check_tenant(job.tenant)  # another tenant's job: the same 403 as every route
    return _job_state(ctx, job)


def poll_job(ctx: Context) -> Response:
    """``GET /hunting/status?job=&tenant=&exp=&sig=``: a hunting 202's ``Location``.

    With a token (validated by the dispatcher, role checked) the caller's tenants decide, as on
    ``/hunting/jobs/{id}``; the link's capability is then not needed. Without one, the link
    must be ours, intact and unexpired (checked before storage is read), and opens its one job.
    """

    r = ctx.request
    job_id = r.param("job") or ""
    if ctx.anonymous:
        key = ctx.backend.settings.http.signing_key
        if key is None:
            raise unauthenticated(
                "poll links need the API_SIGNING_KEY setting: send an Entra ID access token"
            )
        try:
            verify(
                key,
                job=job_id,
                tenant=r.param("tenant") or "",
                expires=r.param("exp") or "",
                sig=r.param("sig") or "",
                now=ctx.backend.clock(),
            )
        except LinkError as exc:
            raise unauthenticated(str(exc), code=exc.code) from None
        job = _load_job(ctx, job_id)
        if job.tenant != r.param("tenant"):  # a valid link names its job's tenant
            raise ApiError(404, "job_not_found", "no such hunting job")
    else:
        job = _load_job(ctx, job_id)
        ctx.check_tenant(job.tenant)
    return _job_state(ctx, job)


def _load_job(ctx: Context, job_id: str) -> Job:

    if not valid_job_id(job_id):
        raise ApiError(400, "invalid_id", "a job id is 32 lowercase hexadecimal digits")
    job = ctx.backend.jobs.load(job_id)
    if job is None:
        raise ApiError(404, "job_not_found", "no such hunting job")
    return job


def _job_state(ctx: Context, job: Job) -> Response:
    if job.state in ("done", "failed"):
        return job_answer(job)
    lost_after = ctx.backend.settings.defender.time_budget + 120
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

    raw = ctx.request.body
    body = INGEST_BODY.parse(raw) if raw.strip() else {}
    tenant = ctx.tenant(body.get("tenant"))
    since = None
    if body.get("since"):
        try:
            since = parse_input_time(body["since"])
        except ValueError:
            raise ApiError(
                400, "invalid_body", f"'since' must be an ISO-8601 time with a zone, {RANGE_TEXT}"
            ) from None
        if since > ctx.backend.clock():
            raise ApiError(400, "invalid_body", "'since' is in the future")
    ctx.backend.enqueue_ingest(IngestRequest(tenant, "http", since))
    return json_response(
        202,
        {"queued": True, "tenant": tenant, "since": format_utc(since) if since else None},
        _ingest_follow(ctx, tenant),
    )


def _ingest_follow(ctx: Context, tenant: str) -> dict[str, str]:
    """The ``Location`` (the tenant's ingestion status) and ``Retry-After`` of an ingest 202."""
    return {
        "Location": ctx.url("/ingest/status", {"tenant": tenant}),
        "Retry-After": str(ctx.backend.settings.http.retry_after),
    }


#: queue states in which the tenant's run has not ended yet
#: (``shared.usecases.fanout.TenantStatus``)
_INGEST_PENDING = ("queued", "running")


def ingest_status(ctx: Context) -> Response:
    """``GET /ingest/status``: ``POST /ingest``'s ``Location``. 202 (same headers) while the
    tenant is queued or running; then 200 with its last run."""
    tenant = ctx.tenant()
    line = ctx.backend.ingest_status(tenant)
    body = {
        "tenant": tenant,
        "state": line.queue,
        "health": line.health,
        "lastResult": line.last_result,
        "lastSuccess": line.last_success,
        "lagSeconds": line.lag_seconds,
        "watermark": line.watermark,
        "lastError": line.last_error,
        "lastErrorCode": line.last_error_code,
        "holdUntil": line.hold_until,
    }
    if line.queue in _INGEST_PENDING:
        return json_response(202, body, _ingest_follow(ctx, tenant))
    return json_response(200, body)


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

    data = _callback_body(ctx.request)
    body = SUBSCRIBE_BODY.check(data)
    backend = ctx.backend
    if backend.settings.http.signing_key is None:
        raise ApiError(503, "push_not_configured", "push needs the API_SIGNING_KEY setting")
    try:
        statuses = tuple(canonical_status(s, for_filter=True) for s in body.get("statuses", []))
        severity = body.get("minSeverity")
        severity = canonical_severity(severity) if severity else None
    except ConfigError as exc:
        raise ApiError(400, "invalid_body", str(exc)) from None
    tenants: tuple[str, ...] | None
    if body.get("tenants"):
        named = []
        for value in body["tenants"]:
            tid = guid(value)
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


_ENTRA_ERROR = re.compile(r"[A-Za-z0-9_.-]{1,80}")


def consent_callback(ctx: Context) -> Response:
    """``GET /consent/callback``: Entra's admin-consent redirect (anonymous).

    In order, and nothing is written until the last two steps: the redirect's parts (a
    tenant GUID of one organisation, ``admin_consent=True``, a state); the state (signed by
    us, for this tenant, not expired, its nonce not used yet); the proof (an app token asked
    of Entra now in that tenant, carrying at least one of the roles the app needs); then the
    nonce is spent (create-only, so one callback wins) and the consent recorded, never
    re-enabling a paused tenant. A failed proof spends nothing: the admin can open the same
    link again once Entra has the consent (and the roles).
    """

    r = ctx.request
    settings = ctx.backend.settings
    if settings.http.signing_key is None:
        raise ApiError(
            503, "consent_not_configured", "onboarding needs the API_SIGNING_KEY setting"
        )
    error = r.param("error")
    if error:
        # Entra's own words, shown to the admin: only a plain error code and one printable line
        code = error if _ENTRA_ERROR.fullmatch(error) else "error"
        detail = (r.param("error_description") or "").splitlines()[:1]
        text = "".join(c for c in (detail[0][:300] if detail else "") if c.isprintable())
        text = text.replace("<", "").replace(">", "")
        raise ApiError(
            400,
            "consent_declined",
            f"the admin consent was not granted ({code}) {text}".strip(),
        )
    try:
        tenant = consent_tenant(r.param("tenant") or "")
    except ValueError as exc:
        raise ApiError(400, "invalid_parameter", f"'tenant': {exc}") from None
    if (r.param("admin_consent") or "").lower() != "true":
        raise ApiError(400, "consent_declined", "the redirect does not say admin_consent=True")
    state = r.param("state")
    if not state:
        raise ApiError(400, "invalid_state", "the consent redirect carries no state")
    backend = ctx.backend
    now = backend.clock()
    try:
        claims = verify_state(settings.http.signing_key, state, tenant, now)
    except StateError as exc:
        raise ApiError(400, "invalid_state", str(exc)) from None
    used = ApiError(
        400, "invalid_state", "this consent link was already used: ask for a new one if needed"
    )
    states = backend.consent_states()
    if states.used(claims.nonce):
        raise used  # before the proof: a replay costs no call to Entra
    roles = _prove_consent(backend, tenant, claims.expires)
    checks = check_roles(settings.defender.api, settings.defender.features, roles)
    missing = [c for c in checks if not c.ok]
    if checks and len(missing) == len(checks):
        # a service principal without one application permission the app needs: nothing could
        # be read there, so the tenant is not consented yet (and a consent hold stays)
        raise ApiError(
            400,
            "consent_incomplete",
            f"the app's token in tenant {tenant} carries none of the permissions it needs, so "
            f"no consent is recorded: it lacks {_lacking(missing)}. Add them to the app "
            "registration, grant admin consent, then open the same link again (it is valid "
            f"until {format_utc(claims.expires)})",
        )
    if not states.spend(claims.nonce, tenant=tenant, when=now, expires=claims.expires):
        raise used
    try:
        served = backend.record_consent(tenant, now)
    except BaseException:
        states.release(claims.nonce)  # nothing recorded: the link may be used again
        raise
    return json_response(200, _consent_answer(tenant, served, missing))


def _prove_consent(backend: Backend, tenant: str, expires: datetime) -> tuple[str, ...]:
    try:
        return backend.prove_consent(tenant)
    except AuthError as exc:
        if exc.error is None and not isinstance(exc, ConsentError):
            # Entra could not be reached (or Key Vault, for the credential): not the admin's
            raise ApiError(
                503,
                "consent_unverifiable",
                f"the consent in tenant {tenant} could not be checked now; open the same link "
                "again in a minute",
                {"Retry-After": "60"},
            ) from None
        raise ApiError(
            400,
            "consent_not_proven",
            f"no app token could be had in tenant {tenant}, so no consent is recorded ({exc}). "
            "Entra may need a minute after the admin consents: open the same link again "
            f"(it is valid until {format_utc(expires)})",
        ) from None


def _lacking(missing: list[RoleCheck]) -> str:
    """The features whose permissions the token lacks, with the permissions, for a message."""
    return ", ".join(f"{c.feature}: {' or '.join(c.needs)}" for c in missing)


def _consent_answer(tenant: str, served: bool, missing: list[RoleCheck]) -> dict[str, Any]:
    body: dict[str, Any] = {"tenant": tenant, "consented": True, "enabled": served}
    if served:
        body["message"] = "consent recorded: the tenant is ingested from the next run"
    else:
        body["message"] = (
            "consent recorded; the tenant is paused in the registry and stays paused (an "
            f"operator resumes it with: python -m shared tenants resume {tenant})"
        )
    if missing:
        body["missingRoles"] = sorted({c.needs[0] for c in missing})
        body["message"] += (
            f"; the app's token there lacks {_lacking(missing)} (add the permissions to the "
            "app registration and consent again)"
        )
    return body
