"""The Defender / Graph security API client: the only code here that talks HTTP to the APIs.

Decisions live in the pure modules (``operations``, ``paging``, ``queries``, ``responses``,
``model``, ``values``); this module sends requests, waits for the rate limiter, retries what
``responses`` calls transient, and keeps count of what it did.

Every operation has one deadline (``RetryPolicy.budget`` seconds unless told otherwise) that
covers all its pages, retries and rate-limit waits; no request's timeout reaches past it. When
the deadline passes the operation raises the last typed error (``TransientError`` or
``ThrottledError``), never hangs. The page iterators (``iter_pages``,
``iter_sliced_incident_pages``) are consumed by callers that do work between pages, so without
``budget`` each request gets the policy's whole budget; pass ``budget`` to bound the listing.

Retries: ``GET``, ``PATCH`` without a comment and hunting (read-only) are safe to repeat; an
operation that appends a comment is retried only after a 429 (the service refused it before
doing anything), since after a reset or a 5xx it may already have been applied.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import requests

from shared.core.clock import format_utc
from shared.core.errors import (
    BadRequestError,
    ThrottledError,
    TransientError,
    UnexpectedResponseError,
)
from shared.core.surfaces import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    SKIP_LIMIT,
    ApiKind,
    surface,
)
from shared.defender.limiter import Family, RateLimiterRegistry
from shared.defender.model import (
    Alert,
    HuntingResult,
    Incident,
    SlicePage,
    normalize,
    normalize_alert,
    normalize_hunting,
    planner_items,
    read_pair,
)
from shared.defender.operations import (
    IncidentUpdate,
    comment_request,
    get_incident_request,
    hunting_request,
    list_alerts_request,
    update_incident_request,
)
from shared.defender.pages import Answer, Ask, NoProgressError, PageResult, read_page
from shared.defender.paging import (
    Page,
    RequestSpec,
    Slice,
    check_in_slice,
    follow_link,
    last_update_field,
    link_params,
    list_incidents_request,
    next_request,
    parse_page,
    same_origin,
    slice_complete,
    slice_request,
    split,
)
from shared.defender.queries import AlertQuery, IncidentQuery, quote
from shared.defender.responses import classify
from shared.defender.slices import (
    CREATED_MAX,
    CREATED_MIN,
    Item,
    Listing,
    SliceRequest,
    from_us,
    to_us,
)

log = logging.getLogger(__name__)

TokenSource = Callable[[], str]

#: Graph hides enum members added after ``unknownFutureValue`` (incident status
#: ``awaitingAction``, newer service and detection sources) unless asked for them; the model
#: takes any value, so ask (https://learn.microsoft.com/graph/best-practices-concept#handling-future-members-in-evolvable-enumerations)
GRAPH_PREFER = "include-unknown-enum-members"

#: advanced hunting runs up to 3 minutes server-side before it times out
#: (https://learn.microsoft.com/defender-xdr/api-advanced-hunting), so its read timeout is longer
HUNTING_TIMEOUT = 200.0
#: "Results can return up to 100,000 rows"; neither API marks a result cut there, so a result of
#: exactly this many rows is flagged ``truncated`` (https://learn.microsoft.com/defender-xdr/api-advanced-hunting)
HUNTING_MAX_ROWS = 100_000

#: the most requests one tie of ``GET /incidents`` (more than a page updated in one
#: microsecond) may take: far more than its planning needs, an end for answers that never add up
TIE_MAX_CALLS = 64

#: the permission each kind of call needs, named in a 403 whose message does not say
_ROLES: dict[tuple[ApiKind, str], str] = {
    ("legacy", "read"): "Incident.Read.All",
    ("legacy", "write"): "Incident.ReadWrite.All",
    ("legacy", "hunt"): "AdvancedHunting.Read.All",
    ("graph", "read"): "SecurityIncident.Read.All",
    ("graph", "write"): "SecurityIncident.ReadWrite.All",
    ("graph", "alerts"): "SecurityAlert.Read.All",
    ("graph", "hunt"): "ThreatHunting.Read.All",
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one operation tries: attempts, backoff and a total time budget (seconds)."""

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    budget: float = 300.0
    #: the longest single wait (a ``Retry-After``, or a rate-limiter slot) an operation sleeps
    #: through; a longer one raises ``ThrottledError`` at once so the caller can reschedule the
    #: work (the queue handler parks the tenant) instead of holding a thread (None: no cap)
    max_wait: float | None = None

    def backoff(self, attempt: int, rng: Callable[[], float]) -> float:
        """Exponential backoff with full jitter for the given 1-based attempt."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling * rng()


@dataclass(frozen=True, slots=True)
class IncidentPage:
    """A page of incidents: the normalized view and the raw JSON, in the API's order.

    ``incidents`` holds the page's incidents that match the listing's query (all of them when
    the whole query was filtered server-side); ``page`` is the raw page as the API sent it.
    """

    incidents: list[Incident]
    page: Page


#: incident ids per ``alerts_v2`` request when alerts are fetched apart from their incidents
ALERT_BATCH = 10


@dataclass(frozen=True, slots=True)
class _Call:
    """How to send one request: its rate-limit family, role hint and retry rules."""

    family: Family
    role: str
    idempotent: bool = True
    timeout: float | None = None


class DefenderClient:
    """Calls one API surface for one tenant with a token from ``token``.

    Args:
        session: the process's shared ``requests.Session`` (one connection pool).
        token: returns a bearer token for this tenant and API (cached by MSAL behind it).
        api: ``"graph"`` or ``"legacy"``.
        base_url: the API origin, e.g. ``https://graph.microsoft.com``.
        timeout: seconds for each request (connect and read); hunting waits longer.
        retry: attempts, backoff and time budget of one operation.
        limiter: the process's rate limiter registry (None: no client-side limiting).
        tenant: the tenant id, the key of this client's rate-limit buckets.
        page_size: ``$top`` of listings; default and cap per surface (legacy 100, Graph 50:
            ``shared.core.surfaces.MAX_PAGE_SIZE``).
        sleep, monotonic, rng: injected for tests.
        hunting_row_limit: the service's row cap; a result this long is flagged ``truncated``.
    """

    def __init__(
        self,
        *,
        session: requests.Session,
        token: TokenSource,
        api: ApiKind,
        base_url: str,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        limiter: RateLimiterRegistry | None = None,
        tenant: str = "",
        page_size: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        hunting_row_limit: int = HUNTING_MAX_ROWS,
    ) -> None:
        self._session = session
        self._token = token
        self.api: ApiKind = api
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._limiter = limiter
        self.tenant = tenant
        self._page_size = min(page_size or DEFAULT_PAGE_SIZE[api], MAX_PAGE_SIZE[api])
        self._sleep = sleep
        self._monotonic = monotonic
        self._rng = rng
        self._hunting_row_limit = hunting_row_limit
        self._count_lock = threading.Lock()
        self._api_calls = 0
        self._throttled_waits = 0

    @property
    def retry(self) -> RetryPolicy:
        """How hard each operation of this client tries (attempts, budget, longest wait)."""
        return self._retry

    @property
    def api_calls(self) -> int:
        """Requests sent so far (every attempt counts)."""
        return self._api_calls

    @property
    def throttled_waits(self) -> int:
        """Waits so far after a 429 from the service."""
        return self._throttled_waits

    def quota_wait(self) -> float:
        """Seconds until this tenant may call again on every API family it has used (its
        rate-limit buckets, paused by a ``Retry-After``); 0 without a limiter."""
        return 0.0 if self._limiter is None else self._limiter.wait_estimate(self.tenant)

    # ------------------------------------------------------------------ sending

    def send(
        self,
        spec: RequestSpec,
        *,
        timeout: float | None = None,
        role: str | None = None,
        hunting: bool = False,
    ) -> Any:
        """Send one request once; return its JSON or raise a typed error."""
        if not same_origin(spec.url, self.base_url):
            # defence in depth: paging already refuses foreign links
            raise UnexpectedResponseError("refused to send the token outside the API origin")
        with self._count_lock:
            self._api_calls += 1
        request_id = str(uuid.uuid4())
        headers = {
            "Authorization": f"Bearer {self._token()}",
            "Accept": "application/json",
            # Graph echoes it and logs it; support can find the call by it
            "client-request-id": request_id,
        }
        if self.api == "graph":
            headers["Prefer"] = GRAPH_PREFER
        try:
            response = self._session.request(
                spec.method,
                spec.url,
                params=dict(spec.params) or None,
                json=spec.json,
                headers=headers,
                timeout=timeout if timeout is not None else self._timeout,
                allow_redirects=False,  # a redirect would carry the token elsewhere
            )
            body = response.content
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise TransientError(
                f"could not reach the API: {type(exc).__name__}", correlation_id=request_id
            ) from exc
        except requests.RequestException as exc:  # e.g. ChunkedEncodingError on a cut body
            raise TransientError(
                f"the API answer was cut off: {type(exc).__name__}", correlation_id=request_id
            ) from exc
        return classify(
            response.status_code,
            response.headers,
            body,
            required_role=role,
            client_request_id=request_id,
            hunting=hunting,
        )

    def call(
        self,
        spec: RequestSpec,
        *,
        deadline: float | None = None,
        family: Family = "incidents",
        role: str | None = None,
        idempotent: bool = True,
        timeout: float | None = None,
    ) -> Any:
        """Send with rate limiting and retries for transient failures, until ``deadline``.

        ``deadline`` is a ``monotonic`` time (default: now + the policy's budget).

        Raises:
            UpstreamError: a typed error; ``TransientError``/``ThrottledError`` when the
                attempts or the time budget ran out.
        """
        if deadline is None:
            deadline = self._monotonic() + self._retry.budget
        bucket = self._limiter.bucket(self.tenant, family) if self._limiter else None
        per_request = timeout if timeout is not None else self._timeout
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                raise TransientError("the operation's time budget ran out before it could run")
            try:
                if bucket is not None:
                    bucket.acquire(self._wait_deadline(deadline))
                    # the wait may have used up some of the budget
                    remaining = deadline - self._monotonic()
                try:
                    return self.send(
                        spec,
                        timeout=max(0.001, min(per_request, remaining)),
                        role=role,
                        hunting=family == "hunting",
                    )
                finally:
                    if bucket is not None:
                        bucket.release()
            except ThrottledError as exc:
                if exc.status is None:
                    raise  # our own limiter found no slot within the budget
                if bucket is not None and exc.retry_after:
                    bucket.pause(exc.retry_after)  # hold back every thread, not only this one
                self._wait_or_raise(exc, attempt, deadline)
            except TransientError as exc:
                if not idempotent:
                    raise
                self._wait_or_raise(exc, attempt, deadline)

    def _wait_deadline(self, deadline: float) -> float:
        if self._retry.max_wait is None:
            return deadline
        return min(deadline, self._monotonic() + self._retry.max_wait)

    def _wait_or_raise(self, exc: TransientError, attempt: int, deadline: float) -> None:
        if attempt >= self._retry.max_attempts:
            raise exc
        wait = self._retry.backoff(attempt, self._rng)
        if isinstance(exc, ThrottledError) and exc.retry_after is not None:
            if self._retry.max_wait is not None and exc.retry_after > self._retry.max_wait:
                raise exc  # too long to hold a thread: the caller reschedules
            wait = max(wait, exc.retry_after)
        if self._monotonic() + wait > deadline:
            raise exc
        log.info("retrying after %s in %.1fs (attempt %d)", exc.code, wait, attempt)
        if isinstance(exc, ThrottledError):
            with self._count_lock:
                self._throttled_waits += 1
        self._sleep(wait)

    def _deadline(self, budget: float | None) -> float:
        return self._monotonic() + (self._retry.budget if budget is None else budget)

    def _role(self, kind: str) -> str:
        return _ROLES[(self.api, kind)]

    # ------------------------------------------------------------------ incidents

    def iter_pages(
        self,
        first: RequestSpec,
        *,
        deadline: float | None = None,
        family: Family = "incidents",
        role: str | None = None,
        newest_first: bool = False,
    ) -> Iterator[Page]:
        """Every page of a listing, read in complete time slices (``shared.defender.paging``):
        each page yielded is one answer that held a whole last-update range, so nothing
        depends on the order of results or on offsets. Slices come oldest first (an item updated
        meanwhile is then never missed); ``newest_first`` for callers that stop early.
        Without ``deadline`` each request has the policy's whole budget.

        Raises:
            UnexpectedResponseError: a page carries an unsafe nextLink, or more items than
                ``SKIP_LIMIT`` + ``$top`` share one last-update instant.
        """
        field_name = last_update_field(self.api)
        pending: list[Slice] = [Slice()]
        while pending:
            part = pending.pop(0)
            spec = slice_request(first, field_name, part)
            page = parse_page(self.call(spec, deadline=deadline, family=family, role=role))
            if page.next_link:
                follow_link(page.next_link, self.base_url)  # refuse a poisoned link anywhere
            check_in_slice(part, page, field_name)
            if slice_complete(page, spec):
                yield page
                continue
            if not part.instant:
                halves = split(part, page, field_name)
                pending[0:0] = list(reversed(halves)) if newest_first else halves
                continue
            # one instant holds more than a page: the only place offsets remain (to 500)
            yield page
            nxt = next_request(spec, page, base_url=self.base_url)
            while nxt is not None:
                page = parse_page(self.call(nxt, deadline=deadline, family=family, role=role))
                yield page
                nxt = next_request(nxt, page, base_url=self.base_url)

    def iter_sliced_incident_pages(
        self,
        *,
        query: IncidentQuery | None = None,
        budget: float | None = None,
        newest_first: bool = False,
    ) -> Iterator[IncidentPage]:
        """Pages that together hold every incident matching ``query``, each one answer for a
        complete time slice (see ``iter_pages``): correct whatever the order of results; an
        incident updated while listing may come twice, in both versions."""
        query = query or IncidentQuery()
        residual = query.client_side(self.api)
        deadline = None if budget is None else self._deadline(budget)
        first = list_incidents_request(
            self.api, self.base_url, page_size=self._page_size, query=query
        )
        pages = self.iter_pages(
            first, deadline=deadline, role=self._role("read"), newest_first=newest_first
        )
        for page in pages:
            incidents = [normalize(item, self.api) for item in page.items]
            yield IncidentPage(incidents=[i for i in incidents if residual.matches(i)], page=page)

    def list_incidents(
        self,
        query: IncidentQuery | None = None,
        *,
        limit: int | None = None,
        budget: float | None = None,
    ) -> list[Incident]:
        """Incidents matching ``query``, newest first, at most ``limit``, one time budget.

        An incident seen twice (updated while listing) is kept once, in its newest version.
        With a ``limit`` the newest slices are read first and reading stops once it is met.
        """
        found: dict[str, Incident] = {}
        pages = self.iter_sliced_incident_pages(
            query=query,
            budget=self._budget_or_default(budget),
            newest_first=limit is not None,
        )
        for page in pages:
            for incident in page.incidents:
                known = found.get(incident.id)
                if known is None or known.last_update < incident.last_update:
                    found[incident.id] = incident
            if limit is not None and len(found) >= limit:
                break
        incidents = sorted(found.values(), key=_newest_first)
        return incidents[:limit] if limit is not None else incidents

    def newest_page(
        self,
        query: IncidentQuery,
        *,
        before: tuple[int, str] | None,
        top: int,
        max_calls: int,
        rate: float | None = None,
        now: datetime | None = None,
        budget: float | None = None,
    ) -> PageResult[Incident]:
        """One newest-first page of incidents matching ``query`` below the position ``before``
        (``(microsecond, id)``), read in time slices at most ``max_calls`` requests long
        (``shared.defender.pages``): the HTTP API's ``GET /incidents``.

        Raises:
            UnexpectedResponseError: an answer held an item outside the slice asked for, or
                the answers never narrowed to a page within ``max_calls`` requests.
            UpstreamError: typed, from the requests.
        """
        deadline = self._deadline(budget)
        field_name = last_update_field(self.api)
        # the last-update bounds go into each slice; everything else the surface filters is
        # sent as the caller's filter, the rest is applied to the answers
        server = replace(query, updated_from=None, updated_before=None)
        base = list_incidents_request(
            self.api, self.base_url, page_size=self._page_size, query=server
        )
        server_filter = base.params.get("$filter") or None
        expand = "$expand" in base.params
        params = dict(base.params)
        if self.api == "graph":
            params["$count"] = "true"  # sizes the next cut when an answer overflows
        base = RequestSpec("GET", base.url, params)
        residual = query.client_side(self.api)
        role = self._role("read")

        def fetch(ask: Ask) -> Answer[Incident]:
            part = Slice(
                None if ask.start is None else ask.start * 10,
                None if ask.end is None else ask.end * 10,
            )
            spec = slice_request(base, field_name, part)
            body = self.call(spec, deadline=deadline, role=role)
            page = parse_page(body)
            count = body.get("@odata.count") if isinstance(body, dict) else None
            if isinstance(count, bool) or not isinstance(count, int):
                count = None
            if page.next_link:
                follow_link(page.next_link, self.base_url)  # refuse a poisoned link anywhere
            check_in_slice(part, page, field_name)
            full = not slice_complete(page, spec)
            if full and ask.start is not None and ask.end == ask.start + 1:
                # the tie's first answer: reading the tie starts from it, not from a new request
                overflowed[ask.start] = SlicePage(
                    page.items, page.next_link, count, self._page_size, expanded=expand
                )
            return Answer([normalize(i, self.api) for i in page.items], full, count)

        overflowed: dict[int, SlicePage] = {}

        def fetch_or_read_tie(ask: Ask) -> Answer[Incident]:
            if not ask.exhaust or ask.start is None:
                return fetch(ask)
            # more than a page in one microsecond: read as the ingestion reads a tie
            items, calls = self._read_instant(
                ask.start,
                where=server_filter,
                expand=expand,
                deadline=deadline,
                first=overflowed.pop(ask.start, None),
            )
            return Answer([normalize(i, self.api) for i in items], False, None, calls)

        try:
            return read_page(
                fetch_or_read_tie,
                key=lambda i: (to_us(i.last_update), i.id),
                keep=residual.matches,
                before=before,
                floor=None if query.updated_from is None else to_us(query.updated_from),
                ceiling=None if query.updated_before is None else to_us(query.updated_before),
                top=top,
                page_size=self._page_size,
                max_calls=max_calls,
                rate=rate,
                now=None if now is None else to_us(now),
            )
        except NoProgressError as exc:
            raise UnexpectedResponseError(str(exc)) from None

    def _read_instant(
        self,
        at: int,
        *,
        where: str | None,
        expand: bool,
        deadline: float | None,
        first: SlicePage | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Every incident matching ``where`` updated in the microsecond ``at``, which more than
        a page share, read the way the ingestion reads such a tie (``shared.defender.slices``):
        split by creation time into slices one answer proves, and a (last update, created) pair
        still over a page paged through its links pass after pass until the passes add up
        (``PairPasses``). Nothing rests on result order, on offsets staying put between pages
        or on which pages carry ``@odata.count``. Returns the raw incidents (the latest read of
        each) and the requests made. ``first``: an answer already read for the whole instant
        (with ``where``), which stands for the planner's first request.

        Raises:
            UnexpectedResponseError: an answer held an item outside the instant, or the passes
                over a pair never added up (incidents kept changing).
            UpstreamError: typed, from the requests.
        """
        top, graph = self._page_size, self.api == "graph"
        field_name = last_update_field(self.api)
        instant = Slice(at * 10, (at + 1) * 10)
        listing = Listing(from_us(at), from_us(at + 1), page_size=top)
        found: dict[str, dict[str, Any]] = {}
        calls = 0

        def check(page: SlicePage, items: list[Item], request: SliceRequest) -> None:
            check_in_slice(instant, Page(page.items), field_name)
            low, high = request.created_start, request.created_end
            if low is not None and high is not None:
                for _, _, created in items:
                    if created is None or not low <= created < high:
                        # the creation-time filter was not applied: splitting cannot progress
                        raise UnexpectedResponseError(
                            "the API answered an incident created outside the range asked for"
                        )

        def passed(page: SlicePage, items: list[Item], request: SliceRequest) -> None:
            nonlocal calls
            calls += 1  # a page of a pass over a pair
            check(page, items, request)

        while (request := listing.next()) is not None:
            if calls >= TIE_MAX_CALLS:
                raise UnexpectedResponseError(
                    f"{calls} requests did not read the incidents updated at "
                    f"{format_utc(request.start)}; narrow the query"
                )
            read = listing.reader(request)
            if request.exhaust:
                pair = read_pair(
                    functools.partial(
                        self.exhaust_slice,
                        request,
                        top=top,
                        expand=expand,
                        where=where,
                        deadline=deadline,
                    ),
                    self.api,
                    request.start,
                    on_page=functools.partial(passed, request=request),
                )
                if not pair.counted:
                    log.warning(
                        "no page carried @odata.count; the incidents at %s were taken as read "
                        "when two passes found nothing new",
                        format_utc(request.start),
                    )
                read.add(pair.seen, count=None, linked=False)
                found.update(pair.latest)
            else:
                low, high = request.created_start, request.created_end
                whole = low in (None, CREATED_MIN) and high in (None, CREATED_MAX)
                if first is not None and whole:
                    page, first = first, None  # the whole instant, already asked for
                else:
                    page = self.incident_slice(
                        request, top=top, count=graph, expand=expand, where=where, deadline=deadline
                    )
                    calls += 1
                items = planner_items(page.items, self.api)
                check(page, items, request)
                read.add(items, count=page.count, linked=page.next_link is not None)
                if read.complete:
                    found.update(
                        (key, raw)
                        for (key, _, _), raw in zip(items, page.items, strict=True)
                        if key is not None
                    )
            listing.record(request, read)
        return list(found.values()), calls

    def _budget_or_default(self, budget: float | None) -> float:
        return self._retry.budget if budget is None else budget

    def get_incident(self, incident_id: str, *, budget: float | None = None) -> Incident:
        """One incident with its alerts.

        Raises:
            NotFoundError: no such incident in this tenant.
        """
        spec = get_incident_request(self.api, self.base_url, incident_id)
        body = self.call(spec, deadline=self._deadline(budget), role=self._role("read"))
        return normalize(_object(body, "incident"), self.api)

    def update_incident(
        self, incident_id: str, update: IncidentUpdate, *, budget: float | None = None
    ) -> Incident:
        """Apply ``update`` and return the incident as the API shows it afterwards.

        On Graph a comment is a second call (``POST .../comments``), made after the fields are
        patched; its answer (every comment) replaces ``comments`` in the returned raw JSON.
        """
        deadline = self._deadline(budget)
        role = self._role("write")
        patch = update_incident_request(self.api, self.base_url, incident_id, update)
        body: Any = None
        if patch is not None:
            # the legacy comment rides in the PATCH, which then appends: not safe to repeat
            once = self.api == "legacy" and update.comment is not None
            body = self.call(patch, deadline=deadline, role=role, idempotent=not once)
        if self.api == "graph" and update.comment is not None:
            spec = comment_request(self.base_url, incident_id, update.comment)
            answer = self.call(spec, deadline=deadline, role=role, idempotent=False)
            if body is None:
                get = get_incident_request(self.api, self.base_url, incident_id)
                body = self.call(get, deadline=deadline, role=self._role("read"))
            comments = answer.get("value") if isinstance(answer, dict) else None
            if isinstance(body, dict) and isinstance(comments, list):
                body = {**body, "comments": comments}
        return normalize(_object(body, "incident"), self.api)

    # ------------------------------------------------------------------ slices (ingestion)

    def slice_request(
        self,
        request: SliceRequest,
        *,
        top: int,
        count: bool = False,
        expand: bool = True,
        where: str | None = None,
    ) -> RequestSpec:
        """The one request for a slice: both last-update bounds (and creation bounds when
        splitting a tie) in ``$filter``, after ``where`` (a caller's own filter) if given;
        ``$top``; on Graph ``$expand=alerts`` and ``$count`` when asked. Nothing else: no
        ``$skip``, no ``$orderby`` (see ``shared.defender.slices``).
        """
        legacy = self.api == "legacy"
        spelling = surface(self.api)
        updated, created = spelling.last_update_field, spelling.created_field
        parts = [] if where is None else [where]
        parts += [
            f"{updated} ge {format_utc(request.start)}",
            f"{updated} lt {format_utc(request.end)}",
        ]
        if request.created_start is not None:
            parts.append(f"{created} ge {format_utc(request.created_start)}")
        if request.created_end is not None:
            parts.append(f"{created} lt {format_utc(request.created_end)}")
        params = {"$filter": " and ".join(parts), "$top": str(top)}
        if not legacy:
            if expand:
                params["$expand"] = "alerts"
            if count:
                params["$count"] = "true"
        return RequestSpec("GET", self.base_url + spelling.incidents_path, params)

    def incident_slice(
        self,
        request: SliceRequest,
        *,
        top: int,
        count: bool = False,
        expand: bool = True,
        where: str | None = None,
        deadline: float | None = None,
    ) -> SlicePage:
        """One answer for one slice (retried as one operation until ``deadline``); ``where``:
        a caller's filter sent with the slice's bounds.

        Raises:
            UpstreamError: typed; ``UnexpectedResponseError`` for a malformed answer.
        """
        spec = self.slice_request(request, top=top, count=count, expand=expand, where=where)
        return self._slice_page(spec, top=top, expand=expand, deadline=deadline)

    def _slice_page(
        self, spec: RequestSpec, *, top: int, expand: bool, deadline: float | None
    ) -> SlicePage:
        body = self.call(spec, deadline=deadline, role=self._role("read"))
        page = parse_page(body)
        total = body.get("@odata.count") if isinstance(body, dict) else None
        if total is not None and (isinstance(total, bool) or not isinstance(total, int)):
            raise UnexpectedResponseError("'@odata.count' is not an integer")
        return SlicePage(
            page.items, page.next_link, total, top, expanded=expand and self.api == "graph"
        )

    def slice_pages(
        self,
        request: SliceRequest,
        *,
        top: int,
        expand: bool = True,
        deadline: float | None = None,
    ) -> Iterator[SlicePage]:
        """Graph: the pages of one slice read across its links, with ``$count=true`` asked for
        (which pages carry ``@odata.count`` is undocumented: the planner decides from each
        answer), for a slice the planner proves by count (``request.paged``).

        Stops early, with the last page's ``next_link`` kept (so the slice does not verify),
        when a link would go deeper than ``$skip`` 500, which the service refuses; links to
        another host or repeating one already read are refused.
        """
        spec: RequestSpec | None = self.slice_request(request, top=top, count=True, expand=expand)
        followed: set[str] = set()
        while spec is not None:
            page = self._slice_page(spec, top=top, expand=expand, deadline=deadline)
            yield page
            if page.next_link is None:
                return
            # None: deeper than the service pages, so the planner splits the slice
            spec = self._link_spec(page.next_link, followed)

    @staticmethod
    def _too_deep(request: SliceRequest) -> UnexpectedResponseError:
        return UnexpectedResponseError(
            f"more incidents share one instant than can be paged (beyond $skip {SKIP_LIMIT}) at "
            f"{format_utc(request.start)}"
        )

    def _link_spec(self, link: str, followed: set[str]) -> RequestSpec | None:
        """The request for a slice's next page: the link's path and query on our origin (the
        token only goes there), or None when it would go deeper than ``$skip`` 500.

        Raises:
            UnexpectedResponseError: the link is unsafe or repeats one already followed.
        """
        url = follow_link(link, self.base_url)
        if link in followed:
            raise UnexpectedResponseError("@odata.nextLink repeats a page already read")
        followed.add(link)
        depth = link_params(link).get("$skip", "0")
        if not depth.isdigit() or int(depth) > SKIP_LIMIT:
            return None
        return RequestSpec("GET", url)

    def exhaust_slice(
        self,
        request: SliceRequest,
        *,
        top: int,
        expand: bool = True,
        where: str | None = None,
        deadline: float | None = None,
    ) -> Iterator[SlicePage]:
        """Every page of one slice through its links (the planner's last resort for a tie),
        with ``@odata.count`` asked for on Graph (pages may or may not carry it); ``where``: a
        caller's filter sent with the slice's bounds.

        Pages are read through ``@odata.nextLink`` (or ``$skip`` steps on the legacy API)
        but never deeper than ``$skip`` 500.

        Raises:
            UnexpectedResponseError: the slice needs a ``$skip`` beyond 500.
        """
        graph = self.api == "graph"
        spec: RequestSpec | None = self.slice_request(
            request, top=top, count=graph, expand=expand, where=where
        )
        followed: set[str] = set()
        skip = 0
        while spec is not None:
            page = self._slice_page(spec, top=top, expand=expand, deadline=deadline)
            yield page
            if page.next_link:
                spec = self._link_spec(page.next_link, followed)
                if spec is None:
                    raise self._too_deep(request)
            elif not graph and len(page.items) >= top:
                skip += top
                if skip > SKIP_LIMIT:
                    raise self._too_deep(request)
                base = self.slice_request(request, top=top, expand=expand, where=where)
                spec = replace(base, params={**base.params, "$skip": str(skip)})
            else:
                spec = None

    def alerts_of_incidents(
        self, incident_ids: list[str], *, deadline: float | None = None
    ) -> tuple[dict[str, list[dict[str, Any]]], int]:
        """Graph: the alerts of these incidents, fetched apart from them (for tenants where a
        filtered ``$expand=alerts`` listing fails: elastic/integrations#18144).

        ``alerts_v2`` filtered by ``incidentId`` in batches of ``ALERT_BATCH``; a service that
        refuses that filter (400) gets one ``GET /security/incidents/{id}?$expand=alerts`` per
        incident instead (documented). Returns the raw alerts by incident id and the requests
        made.
        """
        found: dict[str, list[dict[str, Any]]] = {i: [] for i in incident_ids}
        calls_before = self.api_calls
        by_incident = True
        for start in range(0, len(incident_ids), ALERT_BATCH):
            batch = incident_ids[start : start + ALERT_BATCH]
            if by_incident:
                try:
                    for raw in self._alerts_v2_for(batch, deadline):
                        owner = str(raw.get("incidentId"))
                        if owner in found:
                            found[owner].append(raw)
                    continue
                except BadRequestError:
                    log.info("alerts_v2 refused an incidentId filter; reading incidents one by one")
                    by_incident = False
            for incident_id in batch:
                spec = get_incident_request(self.api, self.base_url, incident_id)
                body = self.call(spec, deadline=deadline, role=self._role("read"))
                alerts = body.get("alerts") if isinstance(body, dict) else None
                found[incident_id] = [a for a in alerts or [] if isinstance(a, dict)]
        return found, self.api_calls - calls_before

    def _alerts_v2_for(self, batch: list[str], deadline: float | None) -> Iterator[dict[str, Any]]:
        flt = " or ".join(f"incidentId eq {quote(i)}" for i in batch)
        spec: RequestSpec | None = RequestSpec(
            "GET",
            self.base_url + "/v1.0/security/alerts_v2",
            {"$filter": flt, "$top": str(min(self._page_size, 50))},
        )
        while spec is not None:
            body = self.call(spec, deadline=deadline, family="alerts", role=self._role("alerts"))
            page = parse_page(body)
            yield from page.items
            spec = next_request(spec, page, base_url=self.base_url)

    # ------------------------------------------------------------------ alerts

    def iter_alerts(
        self, query: AlertQuery | None = None, *, budget: float | None = None
    ) -> Iterator[Alert]:
        """Alerts matching ``query``.

        Graph lists ``alerts_v2`` (family "alerts"). The legacy API has no alert endpoint: its
        alerts come embedded in incidents, so this lists the incidents updated since the query's
        earliest bound and yields their alerts, filtered client-side, each once.
        """
        query = query or AlertQuery()
        deadline = self._deadline(budget)
        if self.api == "legacy":
            seen: set[str] = set()
            pages = self.iter_sliced_incident_pages(
                query=query.legacy_incident_query(), budget=deadline - self._monotonic()
            )
            for page in pages:
                for incident in page.incidents:
                    for raw in _alerts_of(incident):
                        alert = normalize_alert(raw, "legacy")
                        if alert.id not in seen and query.matches(alert):
                            seen.add(alert.id)
                            yield alert
            return
        residual = query.graph_client_side()
        first = list_alerts_request(self.base_url, query, page_size=self._page_size)
        versions: set[tuple[str, datetime]] = set()
        alert_pages = self.iter_pages(
            first, deadline=deadline, family="alerts", role=self._role("alerts")
        )
        for alert_page in alert_pages:
            for raw in alert_page.items:
                alert = normalize_alert(raw, "graph")
                version = (alert.id, alert.last_update)
                if residual.matches(alert) and version not in versions:
                    versions.add(version)
                    yield alert

    def list_alerts(
        self,
        query: AlertQuery | None = None,
        *,
        limit: int | None = None,
        budget: float | None = None,
    ) -> list[Alert]:
        """Alerts matching ``query``, at most ``limit``, within one time budget."""
        alerts: list[Alert] = []
        for alert in self.iter_alerts(query, budget=budget):
            alerts.append(alert)
            if limit is not None and len(alerts) >= limit:
                break
        return alerts

    # ------------------------------------------------------------------ hunting

    def hunt(
        self, query: str, *, timespan: str | None = None, budget: float | None = None
    ) -> HuntingResult:
        """Run an advanced hunting query (read-only, so retried like a GET).

        The result's ``truncated`` is True when it holds exactly the service's row cap
        (100,000): the service cuts there without saying so.

        Raises:
            ConfigError: empty query, bad time span, or a time span on the legacy API.
            HuntingLimitError: the query ran past the 3-minute limit or its result is too big.
            HuntingQuotaError: the tenant's hunting CPU quota is spent until the next cycle.
            BadRequestError: the service refused the query (its message says why).
        """
        spec = hunting_request(self.api, self.base_url, query, timespan=timespan)
        body = self.call(
            spec,
            deadline=self._deadline(budget),
            family="hunting",
            role=self._role("hunt"),
            timeout=max(self._timeout, HUNTING_TIMEOUT),
        )
        return normalize_hunting(body, self.api, row_limit=self._hunting_row_limit)


def _newest_first(incident: Incident) -> tuple[float, int, str]:
    """Sort key: latest update first, then the larger id (ids are digit strings)."""
    return (-incident.last_update.timestamp(), -len(incident.id), _invert(incident.id))


def _invert(text: str) -> str:
    # descending order of equal-length digit strings through an ascending sort
    return "".join(chr(0x10FFFF - ord(ch)) for ch in text)


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise UnexpectedResponseError(f"the {what} answer is not a JSON object")
    return body


def _alerts_of(incident: Incident) -> list[dict[str, Any]]:
    alerts = incident.raw.get("alerts")
    if not isinstance(alerts, list):
        return []
    return [a for a in alerts if isinstance(a, dict)]
