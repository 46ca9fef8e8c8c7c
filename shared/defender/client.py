"""The Defender / Graph security API client: the only code here that talks HTTP to the APIs.

Decisions live in the pure modules (``paging``, ``responses``, ``model``); this module sends
requests, retries what ``responses`` calls transient, and keeps count of what it did.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from shared.defender.model import ApiKind, Incident, normalize
from shared.defender.paging import (
    Page,
    RequestSpec,
    list_incidents_request,
    next_request,
    parse_page,
    same_origin,
)
from shared.defender.responses import classify
from shared.errors import ThrottledError, TransientError, UnexpectedResponseError

log = logging.getLogger(__name__)

TokenSource = Callable[[], str]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one operation tries: attempts, backoff and a total time budget (seconds)."""

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    budget: float = 300.0

    def backoff(self, attempt: int, rng: Callable[[], float]) -> float:
        """Exponential backoff with full jitter for the given 1-based attempt."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling * rng()


@dataclass(frozen=True, slots=True)
class IncidentPage:
    """A page of incidents: the normalized view and the raw JSON, in the API's order."""

    incidents: list[Incident]
    page: Page


class DefenderClient:
    """Calls one API surface for one tenant with a token from ``token``.

    Args:
        session: the process's shared ``requests.Session`` (one connection pool).
        token: returns a bearer token for this tenant and API (cached by MSAL behind it).
        api: ``"graph"`` or ``"legacy"``.
        base_url: the API origin, e.g. ``https://graph.microsoft.com``.
        timeout: seconds for each request (connect and read).
        retry: attempts, backoff and time budget of one operation.
        sleep, monotonic, rng: injected for tests.
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
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._session = session
        self._token = token
        self.api: ApiKind = api
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._monotonic = monotonic
        self._rng = rng
        self.api_calls = 0

    def send(self, spec: RequestSpec) -> Any:
        """Send one request once; return its JSON or raise a typed error."""
        if not same_origin(spec.url, self.base_url):
            # defence in depth: paging already refuses foreign links
            raise UnexpectedResponseError("refused to send the token outside the API origin")
        self.api_calls += 1
        try:
            response = self._session.request(
                spec.method,
                spec.url,
                params=dict(spec.params) or None,
                json=spec.json,
                headers={"Authorization": f"Bearer {self._token()}", "Accept": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,  # a redirect would carry the token elsewhere
            )
            body = response.content
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise TransientError(f"could not reach the API: {type(exc).__name__}") from exc
        except requests.RequestException as exc:  # e.g. ChunkedEncodingError on a cut body
            raise TransientError(f"the API answer was cut off: {type(exc).__name__}") from exc
        return classify(response.status_code, response.headers, body)

    def call(self, spec: RequestSpec) -> Any:
        """Send with retries for transient failures, within the policy's time budget."""
        deadline = self._monotonic() + self._retry.budget
        attempt = 0
        while True:
            attempt += 1
            try:
                return self.send(spec)
            except TransientError as exc:
                if attempt >= self._retry.max_attempts:
                    raise
                wait = self._retry.backoff(attempt, self._rng)
                if isinstance(exc, ThrottledError) and exc.retry_after is not None:
                    wait = max(wait, exc.retry_after)
                if self._monotonic() + wait > deadline:
                    raise
                log.info("retrying after %s in %.1fs (attempt %d)", exc.code, wait, attempt)
                self._sleep(wait)

    def iter_incident_pages(
        self, *, updated_since: datetime | None, page_size: int
    ) -> Iterator[IncidentPage]:
        """Yield every page of incidents updated at or after ``updated_since``, newest first."""
        spec: RequestSpec | None = list_incidents_request(
            self.api, self.base_url, updated_since=updated_since, page_size=page_size
        )
        while spec is not None:
            page = parse_page(self.call(spec))
            incidents = [normalize(item, self.api) for item in page.items]
            yield IncidentPage(incidents=incidents, page=page)
            spec = next_request(spec, page, base_url=self.base_url)
