"""Requests for every operation on both API surfaces, as data; and the update a caller asks for.

Pure: builds ``RequestSpec`` values and validates input. Listing and paging of incidents live
in ``shared.defender.paging``; the client sends what is built here.

Where the surfaces differ:

- get: legacy ``GET /api/incidents/{id}`` (alerts embedded); Graph
  ``GET /v1.0/security/incidents/{id}?$expand=alerts``.
- update: legacy ``PATCH /api/incidents/{id}`` takes ``status``, ``assignedTo``,
  ``classification``, ``determination``, ``tags`` and ``comment`` in PascalCase
  (https://learn.microsoft.com/defender-xdr/api-update-incidents); Graph
  ``PATCH /v1.0/security/incidents/{id}`` takes camelCase and ``customTags``, and a comment is a
  separate ``POST .../comments`` (https://learn.microsoft.com/graph/api/security-incident-update,
  https://learn.microsoft.com/graph/api/security-incident-post-comments). ``tags`` replaces the
  incident's tags on both.
- alerts: Graph ``GET /v1.0/security/alerts_v2``; the legacy API has no alert endpoint, its
  alerts come embedded in incidents (see ``DefenderClient.iter_alerts``).
- hunting: legacy ``POST /api/advancedhunting/run`` ``{"Query"}``; Graph
  ``POST /v1.0/security/runHuntingQuery`` ``{"Query", "Timespan"?}``. The legacy API has no
  time span (https://learn.microsoft.com/defender-xdr/api-advanced-hunting), so one is refused
  there rather than silently ignored: put ``where Timestamp > ago(7d)`` in the query instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shared.core.errors import ConfigError
from shared.core.surfaces import ApiKind
from shared.defender.paging import RequestSpec, incidents_path
from shared.defender.queries import AlertQuery
from shared.defender.values import (
    canonical_classification,
    canonical_determination,
    canonical_status,
    for_api,
)

_INCIDENT_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
#: a comment or a tag longer than this is refused before sending (the portal's own limits are
#: not documented for the API; this keeps a pasted file from becoming a request)
MAX_TEXT = 4000
MAX_TAGS = 100
_DURATION = r"P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?"
_INSTANT = r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})?)?"
_TIMESPAN = re.compile(
    rf"(?:{_DURATION}|{_INSTANT})(?:/(?:{_DURATION}|{_INSTANT}))?", re.IGNORECASE
)
#: the advanced hunting query text limit is not documented; a generous cap guards the request
MAX_QUERY = 100_000


def incident_id(value: str) -> str:
    """Check an incident id (digits on legacy; Graph ids are strings of digits too).

    Raises:
        ConfigError: empty, too long, or with characters that do not belong in an id.
    """
    text = str(value).strip()
    if not _INCIDENT_ID.fullmatch(text):
        # the value is not repeated: it may be long, or written to be reflected
        raise ConfigError(
            "the incident id is not valid (expected 1-64 letters, digits or '-', e.g. 924565)"
        )
    return text


def _incident_url(api: ApiKind, base_url: str, incident: str) -> str:
    ident = incident_id(incident)
    if api == "legacy" and not ident.isdigit():
        raise ConfigError(f"incident id '{ident}' is not valid on the legacy API (digits only)")
    return f"{base_url.rstrip('/')}{incidents_path(api)}/{quote(ident)}"


def get_incident_request(api: ApiKind, base_url: str, incident: str) -> RequestSpec:
    """``GET`` one incident, with its alerts."""
    params = {"$expand": "alerts"} if api == "graph" else {}
    return RequestSpec("GET", _incident_url(api, base_url, incident), params)


@dataclass(frozen=True, slots=True)
class IncidentUpdate:
    """A validated change to an incident; enum values canonical (``shared.defender.values``).

    ``assigned_to=""`` unassigns. ``tags`` replaces the incident's tags. Build with ``parse``.
    """

    status: str | None = None
    assigned_to: str | None = None
    classification: str | None = None
    determination: str | None = None
    tags: tuple[str, ...] | None = None
    comment: str | None = None

    @classmethod
    def parse(
        cls,
        *,
        status: str | None = None,
        assigned_to: str | None = None,
        classification: str | None = None,
        determination: str | None = None,
        tags: Sequence[str] | None = None,
        comment: str | None = None,
    ) -> IncidentUpdate:
        """Validate caller input (any case, either documented spelling).

        Raises:
            ConfigError: nothing to change, or a value outside the documented sets.
        """
        problems: list[str] = []

        def check(fn: Any, *args: Any) -> Any:
            try:
                return fn(*args)
            except ConfigError as exc:
                problems.extend(exc.problems)
                return None

        canon_status = check(canonical_status, status) if status is not None else None
        canon_class = (
            check(canonical_classification, classification) if classification is not None else None
        )
        canon_det = None
        if determination is not None and not (classification is not None and canon_class is None):
            canon_det = check(canonical_determination, determination, canon_class)
        clean_tags: tuple[str, ...] | None = None
        if tags is not None:
            clean_tags = tuple(dict.fromkeys(t.strip() for t in tags if t.strip()))
            if len(clean_tags) > MAX_TAGS or any(len(t) > MAX_TEXT for t in clean_tags):
                problems.append(f"tags: at most {MAX_TAGS} tags of {MAX_TEXT} characters")
        if assigned_to is not None and len(assigned_to) > MAX_TEXT:
            problems.append("assigned to: too long")
        if comment is not None and (not comment.strip() or len(comment) > MAX_TEXT):
            problems.append(f"comment: must be 1 to {MAX_TEXT} characters")
        if problems:
            raise ConfigError(problems)
        update = cls(
            status=canon_status,
            assigned_to=assigned_to.strip() if assigned_to is not None else None,
            classification=canon_class,
            determination=canon_det,
            tags=clean_tags,
            comment=comment,
        )
        if update == cls():
            raise ConfigError(
                "nothing to update: give a status, assignee, classification, determination, "
                "tags or a comment"
            )
        return update

    def fields(self, api: ApiKind) -> dict[str, Any]:
        """The PATCH body for ``api`` (without the comment on Graph, which is posted apart)."""
        body: dict[str, Any] = {}
        if self.status is not None:
            body["status"] = for_api(api, "status", self.status)
        if self.assigned_to is not None:
            body["assignedTo"] = self.assigned_to
        if self.classification is not None:
            body["classification"] = for_api(api, "classification", self.classification)
        if self.determination is not None:
            body["determination"] = for_api(api, "determination", self.determination)
        if self.tags is not None:
            body["tags" if api == "legacy" else "customTags"] = list(self.tags)
        if self.comment is not None and api == "legacy":
            body["comment"] = self.comment
        return body


def update_incident_request(
    api: ApiKind, base_url: str, incident: str, update: IncidentUpdate
) -> RequestSpec | None:
    """The ``PATCH`` for ``update``, or None when there is nothing to patch (a Graph comment)."""
    body = update.fields(api)
    if not body:
        return None
    return RequestSpec("PATCH", _incident_url(api, base_url, incident), json=body)


def comment_request(base_url: str, incident: str, comment: str) -> RequestSpec:
    """Graph: add a comment (the answer lists every comment of the incident)."""
    url = _incident_url("graph", base_url, incident) + "/comments"
    body = {"@odata.type": "microsoft.graph.security.alertComment", "comment": comment}
    return RequestSpec("POST", url, json=body)


def list_alerts_request(base_url: str, query: AlertQuery, *, page_size: int) -> RequestSpec:
    """Graph: the first request of an ``alerts_v2`` listing."""
    params = {"$top": str(page_size)}
    flt = query.graph_filter()
    if flt:
        params["$filter"] = flt
    return RequestSpec("GET", base_url.rstrip("/") + "/v1.0/security/alerts_v2", params)


def hunting_request(
    api: ApiKind, base_url: str, query: str, *, timespan: str | None = None
) -> RequestSpec:
    """Run a KQL query.

    Raises:
        ConfigError: empty or oversized query; a malformed ``timespan``; a ``timespan`` on the
            legacy API, which has none.
    """
    if not query.strip():
        raise ConfigError("the hunting query is empty")
    if len(query) > MAX_QUERY:
        raise ConfigError(f"the hunting query is longer than {MAX_QUERY} characters")
    base = base_url.rstrip("/")
    if api == "legacy":
        if timespan is not None:
            raise ConfigError(
                "the legacy advanced hunting API has no time span; filter in the query "
                "(e.g. '| where Timestamp > ago(7d)') or use the Graph API"
            )
        return RequestSpec("POST", f"{base}/api/advancedhunting/run", json={"Query": query})
    body = {"Query": query}
    if timespan is not None:
        if not _TIMESPAN.fullmatch(timespan.strip()):
            raise ConfigError(
                f"time span '{timespan}' is not ISO-8601 (e.g. P7D, "
                "2026-11-01T00:00:00Z/2026-11-08T00:00:00Z or P7D/2026-11-08T00:00:00Z)"
            )
        body["Timespan"] = timespan.strip()
    return RequestSpec("POST", f"{base}/v1.0/security/runHuntingQuery", json=body)
