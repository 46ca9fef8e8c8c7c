"""Pure request building and paging for listings (incidents, alerts) on both API surfaces.

General listings (``DefenderClient.list_incidents``, Graph alerts) are read in **time slices**,
so that no correctness argument rests on result order, on offsets staying put while data
changes, or on a page boundary (docs/defender-service.md#result-order: the order is not a
contract; Graph documents none, and an emulator mode shuffles every answer):

- a slice is a half-open range ``[lo, hi)`` of the last-update time (``lastUpdateTime`` legacy,
  ``lastUpdateDateTime`` Graph), sent as ``ge``/``lt`` terms next to the caller's filter
  (``slice_request``);
- a slice is *complete* when one answer holds all of it: fewer items than ``$top`` and no
  ``@odata.nextLink`` (``slice_complete``). Only complete slices are yielded, so each item read
  comes from a single answer to a time-anchored question, whatever order the service uses;
- a full answer splits the slice in two at a time inside the range (the median of the times
  seen; ``split``) and each half is asked again; a slice of one instant (one 100 ns tick) that
  is still full is the one place offsets remain: it is paged with ``$skip`` up to
  ``SKIP_LIMIT`` (``next_request``), and past that the listing stops with an error;
- the newest slice is open-ended (no ``lt``), and a full listing reads slices oldest first, so
  an incident updated while we list (which moves to "now") is read in its old slice before the
  update or in the open-ended slice after it: never missed, at worst read twice
  (deduplicated by version).

Links (``next_request``, and checked on every page): a ``@odata.nextLink`` is followed only on
the scheme, host and port of the configured API base, so the bearer token never goes anywhere
else. The next request is built from the *configured* origin plus the link's path and query
(``follow_link``), never from the link's own authority: parsers disagree about authorities
(``https://evil.example\\@api.host/`` is host ``api.host`` to ``urllib.parse`` but
``evil.example`` to urllib3/requests), so a link whose authority could be read two ways
(userinfo, backslashes, control characters, spaces, percent-escapes or non-ASCII in the
authority) is refused outright, on any page. A link already followed means the service is
looping: an error rather than a spin (docs/defender-service.md#paging-links). Without a link,
the legacy API pages by ``$skip`` in steps of ``$top`` (its nextLink is undocumented).

Deep ``$skip``: Graph's security API refuses ``$skip`` above 500 (microsoft-graph-docs
``resources/security-error-codes.md``; the older "``$top`` + ``$skip`` <= 6000" figure is from
2018 and was written for ``/alerts``) and the legacy API documents none, so no request asks for
``$skip`` beyond ``SKIP_LIMIT`` = 500 on either surface.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from shared.core.clock import parse_utc
from shared.core.errors import UnexpectedResponseError
from shared.core.surfaces import SKIP_LIMIT, ApiKind, surface
from shared.defender.queries import IncidentQuery


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
    return surface(api).incidents_path


def list_incidents_request(
    api: ApiKind,
    base_url: str,
    *,
    updated_since: datetime | None = None,
    page_size: int,
    query: IncidentQuery | None = None,
) -> RequestSpec:
    """The first request of a listing of incidents.

    ``updated_since`` is a shorthand for ``query.updated_from``. Only the
    part of ``query`` the surface filters server-side is sent (``IncidentQuery.server_filter``).
    """
    query = query or IncidentQuery()
    if updated_since is not None:
        query = replace(query, updated_from=updated_since)
    params: dict[str, str] = {"$top": str(page_size)}
    flt = query.server_filter(api)
    if flt:
        params["$filter"] = flt
    if api == "graph":
        # alerts are embedded in legacy answers but must be asked for on Graph
        # (docs/defender-service.md#large-expansions)
        params["$expand"] = "alerts"
    else:
        params["$skip"] = "0"
    url = base_url.rstrip("/") + incidents_path(api)
    return RequestSpec("GET", url, params)


def last_update_field(api: ApiKind) -> str:
    """The last-update property that slices a listing on ``api`` (incidents and alerts_v2)."""
    return surface(api).last_update_field


def same_origin(url: str, base_url: str) -> bool:
    """True when ``url`` has the scheme, host and port of ``base_url`` and nothing in its
    authority that another URL parser could read differently (see ``follow_link``)."""
    try:
        follow_link(url, base_url)
    except UnexpectedResponseError:
        return False
    return True


#: anything outside visible ASCII: urllib.parse silently drops tabs and newlines (WHATWG), and
#: other parsers read spaces, controls and non-ASCII (IDNA) hosts differently
_UNSAFE_CHARS = re.compile(r"[^\x21-\x7e]")


def follow_link(link: str, base_url: str) -> str:
    """The URL to request for a service-given ``link``: ``base_url``'s origin + the link's path
    and query. The token only ever goes to the configured origin.

    Raises:
        UnexpectedResponseError: the link is not an absolute URL on ``base_url``'s origin, or its
            authority could be parsed two ways (userinfo, backslash, control or non-ASCII
            characters, percent-escapes), or it has a fragment.
    """
    api_host = urlsplit(base_url).hostname or "?"
    if _UNSAFE_CHARS.search(link) or "\\" in link:
        raise UnexpectedResponseError(
            "refused @odata.nextLink with characters URL parsers disagree on (backslash, space, "
            f"control or non-ASCII); the token is only sent to {api_host}"
        )
    parts, base = urlsplit(link), urlsplit(base_url)
    if "@" in parts.netloc or "%" in parts.netloc:
        raise UnexpectedResponseError(
            "refused @odata.nextLink with user information or escapes in its host part; the "
            f"token is only sent to {api_host}"
        )
    try:
        port = parts.port
    except ValueError:
        port = -1  # a malformed port: not the API's
    same = (
        parts.scheme.lower(),
        (parts.hostname or "").lower(),
        port or _default_port(parts.scheme),
    ) == (
        base.scheme.lower(),
        (base.hostname or "").lower(),
        base.port or _default_port(base.scheme),
    )
    if not same:
        raise UnexpectedResponseError(
            f"refused @odata.nextLink to another host ({parts.hostname or '?'}); the token is "
            f"only sent to {api_host}"
        )
    if parts.fragment or "#" in link:
        raise UnexpectedResponseError("refused @odata.nextLink with a fragment")
    path = parts.path or "/"
    if not path.startswith("/"):
        raise UnexpectedResponseError("refused @odata.nextLink without an absolute path")
    origin = f"{base.scheme.lower()}://{base.netloc}"
    return origin + path + (f"?{parts.query}" if parts.query else "")


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
        UnexpectedResponseError: the nextLink leaves the API's origin, or repeats; or more
            incidents than ``SKIP_LIMIT`` share one last-update instant (cannot page past them).
    """
    if page.next_link:
        link = follow_link(page.next_link, base_url)
        if link in previous.followed or link == _as_url(previous):
            raise UnexpectedResponseError("@odata.nextLink repeats a page already read")
        params = link_params(link)
        if _too_deep(params.get("$skip")):
            raise UnexpectedResponseError(
                f"@odata.nextLink asks for $skip beyond {SKIP_LIMIT}, which the API refuses; "
                "narrow the query (e.g. a shorter time range)"
            )
        return RequestSpec(
            "GET",
            link,
            {},
            followed=(*previous.followed, link),
        )
    top = int(previous.params.get("$top", "0") or 0)
    if "$skip" in previous.params and top and len(page.items) >= top:
        skip = int(previous.params["$skip"]) + top
        if _too_deep(str(skip)):
            raise UnexpectedResponseError(
                f"the listing would need $skip beyond {SKIP_LIMIT}, which the API refuses; "
                "narrow the query (e.g. a shorter time range)"
            )
        return replace(previous, params={**previous.params, "$skip": str(skip)})
    return None


def _too_deep(skip: str | None) -> bool:
    try:
        return int(skip or 0) > SKIP_LIMIT
    except ValueError:
        return False  # not a number we understand: leave paging to the service's link


def ticks(text: str) -> int:
    """A timestamp as 100 ns ticks since the epoch, keeping the 7th fractional digit.

    Raises:
        ValueError: not an ISO-8601 timestamp with a zone.
    """
    value = parse_utc(text)
    head = text.strip().rstrip("Zz")
    seventh = 0
    if "." in head:
        digits = ""
        for ch in head.partition(".")[2]:
            if not ch.isdigit():
                break
            digits += ch
        seventh = int((digits + "0000000")[6])
    seconds = int(value.timestamp())
    return (seconds * 1_000_000 + value.microsecond) * 10 + seventh


def format_ticks(value: int) -> str:
    """100 ns ticks since the epoch as an OData timestamp with all 7 fractional digits."""
    seconds, fraction = divmod(value, 10_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:07d}Z"


@dataclass(frozen=True, slots=True)
class Slice:
    """A half-open last-update range ``[lo, hi)`` in ticks; None is unbounded on that side."""

    lo: int | None = None
    hi: int | None = None

    @property
    def instant(self) -> bool:
        """One tick wide: cannot be split further."""
        return self.lo is not None and self.hi is not None and self.hi - self.lo <= 1


def slice_request(base: RequestSpec, field: str, part: Slice) -> RequestSpec:
    """``base`` (a listing's first request) restricted to ``part`` of the last-update time."""
    terms = [base.params["$filter"]] if base.params.get("$filter") else []
    if part.lo is not None:
        terms.append(f"{field} ge {format_ticks(part.lo)}")
    if part.hi is not None:
        terms.append(f"{field} lt {format_ticks(part.hi)}")
    params = dict(base.params)
    if terms:
        params["$filter"] = " and ".join(terms)
    if "$skip" in params:
        params["$skip"] = "0"
    return RequestSpec(base.method, base.url, params)


def slice_complete(page: Page, spec: RequestSpec) -> bool:
    """One answer held the whole slice: fewer items than ``$top`` and no nextLink."""
    top = int(spec.params.get("$top", "0") or 0)
    return page.next_link is None and (not top or len(page.items) < top)


def check_in_slice(part: Slice, page: Page, field: str) -> None:
    """Every item of the answer lies in the slice asked for.

    Raises:
        UnexpectedResponseError: an item lacks a valid last-update time, or lies outside the
            slice (the service ignored the time filter: slicing could not make progress).
    """
    for item in page.items:
        raw = item.get(field)
        try:
            value = ticks(str(raw))
        except ValueError:
            raise UnexpectedResponseError(
                f"an item without a valid '{field}'; cannot slice the listing by time"
            ) from None
        if (part.lo is not None and value < part.lo) or (part.hi is not None and value >= part.hi):
            raise UnexpectedResponseError(
                f"the API answered an item with {field} {raw} outside the time range asked for"
            )


def split(part: Slice, page: Page, field: str) -> list[Slice]:
    """Halves of a slice whose answer was full, oldest first, each holding fewer items.

    The cut is the median last-update time of the items seen (moved above the oldest seen, so
    both halves exclude at least one of them); when every item seen has the same time ``t``,
    the cut isolates ``t`` as an instant slice. Empty ranges are left out.

    Raises:
        UnexpectedResponseError: an item lacks a valid last-update time.
    """
    seen: list[int] = []
    for item in page.items:
        raw = item.get(field)
        try:
            seen.append(ticks(str(raw)))
        except ValueError:
            raise UnexpectedResponseError(
                f"an item without a valid '{field}'; cannot slice the listing by time"
            ) from None
    if not seen:
        raise UnexpectedResponseError("cannot slice a listing by an empty answer")
    seen.sort()
    if seen[0] == seen[-1]:
        t = seen[0]
        cuts = [Slice(part.lo, t), Slice(t, t + 1), Slice(t + 1, part.hi)]
    else:
        cut = seen[len(seen) // 2]
        if cut == seen[0]:
            cut = next(v for v in seen if v > seen[0])
        cuts = [Slice(part.lo, cut), Slice(cut, part.hi)]
    return [c for c in cuts if c.lo is None or c.hi is None or c.lo < c.hi]


def _as_url(spec: RequestSpec) -> str:
    if not spec.params:
        return spec.url
    query = "&".join(f"{k}={v}" for k, v in spec.params.items())
    return f"{spec.url}?{query}"


def link_params(url: str) -> dict[str, str]:
    """Query parameters of a link (for logs and tests)."""
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
