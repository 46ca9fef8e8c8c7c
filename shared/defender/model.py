"""One model for callers, whichever API surface served the data.

The legacy API and Graph name and spell the same incident differently (defender-api.md §1.8):
``incidentId``/``id``, ``lastUpdateTime``/``lastUpdateDateTime``, PascalCase/camelCase enums.
``Incident`` is the normalized view; ``raw`` keeps the API's own JSON for storage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from shared.clock import parse_utc
from shared.errors import UnexpectedResponseError

ApiKind = Literal["graph", "legacy"]


@dataclass(frozen=True, slots=True)
class Incident:
    """A Defender incident in the shape shared/ works with (enums camelCase as in Graph)."""

    id: str
    title: str
    status: str
    severity: str
    classification: str | None
    determination: str | None
    assigned_to: str | None
    created: datetime
    last_update: datetime
    redirect_id: str | None
    tags: tuple[str, ...]
    alert_count: int
    api: ApiKind
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def version(self) -> tuple[str, datetime]:
        """What identifies one version of an incident: its id and last update time."""
        return (self.id, self.last_update)


def camel(value: str | None) -> str | None:
    """Legacy PascalCase enum → Graph camelCase (``InProgress`` → ``inProgress``)."""
    if not value:
        return None
    if value == "UnSpecified":  # the legacy severity for "none given"; Graph calls it unknown
        return "unknown"
    return value[0].lower() + value[1:]


def _text(raw: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise UnexpectedResponseError(f"incident without '{key}'")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise UnexpectedResponseError(f"incident field '{key}' has type {type(value).__name__}")
    return str(value)


def _time(raw: Mapping[str, Any], key: str) -> datetime:
    text = _text(raw, key)
    try:
        return parse_utc(text or "")
    except ValueError:
        raise UnexpectedResponseError(f"incident field '{key}' is not a timestamp") from None


def _tags(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(tag) for tag in value)


def normalize(raw: Mapping[str, Any], api: ApiKind) -> Incident:
    """Normalize one incident as returned by ``api``.

    Raises:
        UnexpectedResponseError: the incident lacks its id or times, or they are malformed.
    """
    if not isinstance(raw, Mapping):
        raise UnexpectedResponseError("an item of 'value' is not a JSON object")
    alerts = raw.get("alerts")
    alert_count = len(alerts) if isinstance(alerts, list) else 0
    if api == "legacy":
        redirect = raw.get("redirectIncidentId")
        return Incident(
            id=_text(raw, "incidentId") or "",
            title=_text(raw, "incidentName", required=False) or "",
            status=camel(_text(raw, "status", required=False)) or "unknown",
            severity=camel(_text(raw, "severity", required=False)) or "unknown",
            classification=camel(_text(raw, "classification", required=False)),
            determination=camel(_text(raw, "determination", required=False)),
            assigned_to=_text(raw, "assignedTo", required=False),
            created=_time(raw, "createdTime"),
            last_update=_time(raw, "lastUpdateTime"),
            redirect_id=None if redirect is None else str(redirect),
            tags=_tags(raw.get("tags")),
            alert_count=alert_count,
            api=api,
            raw=raw,
        )
    redirect = raw.get("redirectIncidentId")
    return Incident(
        id=_text(raw, "id") or "",
        title=_text(raw, "displayName", required=False) or "",
        status=_text(raw, "status", required=False) or "unknown",
        severity=_text(raw, "severity", required=False) or "unknown",
        classification=_text(raw, "classification", required=False),
        determination=_text(raw, "determination", required=False),
        assigned_to=_text(raw, "assignedTo", required=False),
        created=_time(raw, "createdDateTime"),
        last_update=_time(raw, "lastUpdateDateTime"),
        redirect_id=None if redirect is None else str(redirect),
        tags=_tags(raw.get("customTags")),
        alert_count=alert_count,
        api=api,
        raw=raw,
    )
