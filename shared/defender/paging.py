"""Pure request building and paging for incident listing on both API surfaces.

Paging is "next request from the previous request and its page" (no I/O here):

- follow ``@odata.nextLink`` when the page has one, but only to the scheme, host and port of the
  configured API base, so the bearer token never goes anywhere else;
- a link that was already followed means the service is looping: stop with an error rather than
  spin (user-pains.md §8.5);
- without a link, the legacy API pages by ``$skip`` in steps of ``$top`` until a short page
  (its nextLink is undocumented: defender-api.md §1.2 and §7.3).

Filters use ``lastUpdateTime`` (legacy) / ``lastUpdateDateTime`` (Graph) with no upper bound.
The list is newest first, so an incident updated while we page jumps to the top: with an upper
bound it would leave the filtered set and shift every later item up one place, and ``$skip``
paging would silently skip one incident. Without an upper bound items only ever move *up*, which
can only make us read one twice (deduplicated by version), never miss one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from shared.clock import format_utc
from shared.defender.model import ApiKind
from shared.errors import UnexpectedResponseError


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One HTTP request to the API, as data. ``url`` is absolute; ``params`` are added to it."""

    method: str
    url: str
    params: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    followed: tuple[str, ...] = ()  # nextLinks already followed in this listing


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: the raw items and the service's link to the next page, if any."""

    items: list[dict[str, Any]]
    next_link: str | None = None


def incidents_path(api: ApiKind) -> str:
    """Path of the incident collection on ``api``."""
    return "/v1.0/security/incidents" if api == "graph" else "/api/incidents"


def list_incidents_request(
    api: ApiKind, base_url: str, *, updated_since: datetime | None, page_size: int
) -> RequestSpec:
    """The first request of a listing of incidents updated at or after ``updated_since``."""
    params: dict[str, str] = {"$top": str(page_size)}
    if api == "graph":
        if updated_since is not None:
            params["$filter"] = f"lastUpdateDateTime ge {format_utc(updated_since)}"
        # alerts are embedded in legacy answers but must be asked for on Graph (§1.8)
        params["$expand"] = "alerts"
    else:
        if updated_since is not None:
            params["$filter"] = f"lastUpdateTime ge {format_utc(updated_since)}"
        params["$skip"] = "0"
    return RequestSpec("GET", base_url.rstrip("/") + incidents_path(api), params)


def same_origin(url: str, base_url: str) -> bool:
    """True when ``url`` has the scheme, host and port of ``base_url``."""
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme.lower(), a.hostname, a.port or _default_port(a.scheme)) == (
        b.scheme.lower(),
        b.hostname,
        b.port or _default_port(b.scheme),
    )


def _default_port(scheme: str) -> int:
    return 443 if scheme.lower() == "https" else 80


def parse_page(body: Any) -> Page:
    """Validate a list answer: ``{"value": [...], "@odata.nextLink"?: str}``.

    Raises:
        UnexpectedResponseError: the body is not such an object.
    """
    if not isinstance(body, dict):
        raise UnexpectedResponseError("list answer is not a JSON object")
    items = body.get("value")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise UnexpectedResponseError("list answer has no 'value' array of objects")
    link = body.get("@odata.nextLink")
    if link is not None and not isinstance(link, str):
        raise UnexpectedResponseError("'@odata.nextLink' is not a string")
    return Page(items=items, next_link=link or None)


def next_request(previous: RequestSpec, page: Page, *, base_url: str) -> RequestSpec | None:
    """The request for the page after ``page``, or None when the listing is complete.

    Raises:
        UnexpectedResponseError: the nextLink leaves the API's origin, or repeats.
    """
    if page.next_link:
        link = page.next_link
        if not same_origin(link, base_url):
            host = urlsplit(link).hostname or "?"
            raise UnexpectedResponseError(
                f"refused @odata.nextLink to another host ({host}); the token is only sent to "
                f"{urlsplit(base_url).hostname}"
            )
        if link in previous.followed or link == _as_url(previous):
            raise UnexpectedResponseError("@odata.nextLink repeats a page already read")
        return RequestSpec("GET", link, {}, followed=(*previous.followed, link))
    top = int(previous.params.get("$top", "0") or 0)
    if "$skip" in previous.params and top and len(page.items) >= top:
        skip = int(previous.params["$skip"]) + top
        return replace(previous, params={**previous.params, "$skip": str(skip)})
    return None


def _as_url(spec: RequestSpec) -> str:
    if not spec.params:
        return spec.url
    query = "&".join(f"{k}={v}" for k, v in spec.params.items())
    return f"{spec.url}?{query}"


def link_params(url: str) -> dict[str, str]:
    """Query parameters of a link (for logs and tests)."""
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
