"""What a caller asks for when listing incidents or alerts, and how each surface filters it. Pure.

A query is split in two: the part the surface can filter server-side (an OData ``$filter``)
and the rest, applied client-side to the normalized items (``client_side(api).matches``).

- Legacy ``/api/incidents`` filters only ``lastUpdateTime``, ``createdTime``, ``status`` and
  ``assignedTo`` ("this endpoint doesn't support server-side filtering by severity, evaluate
  severity after retrieving": https://learn.microsoft.com/defender-xdr/api-list-incidents), and
  documents no ``or``: several statuses are filtered client-side.
- Graph filters all of them (https://learn.microsoft.com/graph/api/security-list-incidents).
- An upper bound on the *last update* is applied client-side, on both surfaces: the listings
  put their own last-update bounds on every request (time slices: ``shared.defender.paging``,
  ``shared.defender.pages``), and an incident updated while we list has moved past the bound,
  so its new version is dropped here, whichever slice it was read in.
- Time ranges are half-open: ``from`` inclusive, ``before`` exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.core.clock import format_utc
from shared.core.errors import ConfigError
from shared.core.surfaces import GRAPH, ApiKind, surface
from shared.defender.model import Alert, Incident
from shared.defender.values import for_api

ALERT_STATUSES = ("new", "inProgress", "resolved")


def quote(value: str) -> str:
    """An OData string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def _in_range(value: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or value >= start) and (end is None or value < end)


def _check_range(name: str, start: datetime | None, end: datetime | None) -> None:
    for value in (start, end):
        if value is not None and value.utcoffset() is None:
            raise ConfigError(f"{name}: times must carry a time zone")
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"{name}: the end must be after the start")


def _any_of(field: str, values: tuple[str, ...]) -> str:
    parts = [f"{field} eq {quote(v)}" for v in values]
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def _time_parts(
    updated_field: str,
    created_field: str,
    updated_from: datetime | None,
    created_from: datetime | None,
    created_before: datetime | None,
) -> list[str]:
    """``$filter`` terms of the time bounds sent to the service.

    The last-update upper bound is never sent: an incident updated while we page would leave
    the result set and shift ``$skip`` pages (see ``shared.defender.paging``).
    """
    parts: list[str] = []
    if updated_from is not None:
        parts.append(f"{updated_field} ge {format_utc(updated_from)}")
    if created_from is not None:
        parts.append(f"{created_field} ge {format_utc(created_from)}")
    if created_before is not None:
        parts.append(f"{created_field} lt {format_utc(created_before)}")
    return parts


@dataclass(frozen=True, slots=True)
class IncidentQuery:
    """Filters for listing incidents. Enum values are canonical (``shared.defender.values``)."""

    statuses: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    assigned_to: str | None = None
    created_from: datetime | None = None
    created_before: datetime | None = None
    updated_from: datetime | None = None
    updated_before: datetime | None = None

    def __post_init__(self) -> None:
        _check_range("created range", self.created_from, self.created_before)
        _check_range("last-update range", self.updated_from, self.updated_before)

    def server_filter(self, api: ApiKind) -> str | None:
        """The ``$filter`` for the part of this query ``api`` can evaluate, or None."""
        legacy = api == "legacy"
        parts = _time_parts(
            surface(api).last_update_field,
            surface(api).created_field,
            self.updated_from,
            self.created_from,
            self.created_before,
        )
        if self.statuses and (not legacy or len(self.statuses) == 1):
            parts.append(_any_of("status", tuple(for_api(api, "status", s) for s in self.statuses)))
        if self.assigned_to is not None:
            parts.append(f"assignedTo eq {quote(self.assigned_to)}")
        if self.severities and not legacy:
            parts.append(_any_of("severity", self.severities))
        return " and ".join(parts) or None

    def client_side(self, api: ApiKind) -> IncidentQuery:
        """The part of this query ``api`` cannot filter server-side."""
        legacy = api == "legacy"
        return IncidentQuery(
            statuses=self.statuses if legacy and len(self.statuses) > 1 else (),
            severities=self.severities if legacy else (),
            updated_before=self.updated_before,
        )

    def matches(self, incident: Incident) -> bool:
        """Whether a normalized incident satisfies every condition of this query."""
        if self.statuses and incident.status not in self.statuses:
            return False
        if self.severities and incident.severity not in self.severities:
            return False
        if self.assigned_to is not None and (incident.assigned_to or "").lower() != (
            self.assigned_to.lower()
        ):
            return False
        return _in_range(incident.created, self.created_from, self.created_before) and _in_range(
            incident.last_update, self.updated_from, self.updated_before
        )


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Filters for listing alerts. Statuses: ``new``, ``inProgress``, ``resolved``."""

    statuses: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_before: datetime | None = None
    updated_from: datetime | None = None
    updated_before: datetime | None = None

    def __post_init__(self) -> None:
        _check_range("created range", self.created_from, self.created_before)
        _check_range("last-update range", self.updated_from, self.updated_before)

    def graph_filter(self) -> str | None:
        """The ``$filter`` for ``alerts_v2`` (all but the last-update upper bound, as above)."""
        parts = _time_parts(
            GRAPH.last_update_field,
            GRAPH.created_field,
            self.updated_from,
            self.created_from,
            self.created_before,
        )
        if self.statuses:
            parts.append(_any_of("status", self.statuses))
        if self.severities:
            parts.append(_any_of("severity", self.severities))
        return " and ".join(parts) or None

    def graph_client_side(self) -> AlertQuery:
        """What Graph leaves to the client."""
        return AlertQuery(updated_before=self.updated_before)

    def legacy_incident_query(self) -> IncidentQuery:
        """The incident listing whose embedded alerts hold every alert this query can match.

        An alert created or updated at ``t`` updates its incident at ``t`` or later, so the
        incidents updated since the earlier of the two lower bounds contain all candidates.
        """
        bounds = [b for b in (self.created_from, self.updated_from) if b is not None]
        return IncidentQuery(updated_from=min(bounds) if bounds else None)

    def matches(self, alert: Alert) -> bool:
        """Whether a normalized alert satisfies every condition of this query."""
        if self.statuses and alert.status not in self.statuses:
            return False
        if self.severities and alert.severity not in self.severities:
            return False
        return _in_range(alert.created, self.created_from, self.created_before) and _in_range(
            alert.last_update, self.updated_from, self.updated_before
        )
