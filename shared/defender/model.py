"""One model for callers, whichever API surface served the data.

The legacy API and Graph name and spell the same incident differently
(docs/defender-service.md#legacy-and-graph-names): ``incidentId``/``id``,
``lastUpdateTime``/``lastUpdateDateTime``, PascalCase/camelCase enums. ``Incident`` is the
normalized view; ``raw`` keeps the API's own JSON for storage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.core.clock import format_utc, parse_utc
from shared.core.errors import UnexpectedResponseError
from shared.core.surfaces import GRAPH, LEGACY, ApiKind, surface
from shared.defender.slices import Item, PairPasses
from shared.defender.values import current_determination


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
            id=_text(raw, LEGACY.id_field) or "",
            title=_text(raw, "incidentName", required=False) or "",
            status=camel(_text(raw, "status", required=False)) or "unknown",
            severity=camel(_text(raw, "severity", required=False)) or "unknown",
            classification=camel(_text(raw, "classification", required=False)),
            determination=current_determination(camel(_text(raw, "determination", required=False))),
            assigned_to=_text(raw, "assignedTo", required=False),
            created=_time(raw, LEGACY.created_field),
            last_update=_time(raw, LEGACY.last_update_field),
            redirect_id=None if redirect is None else str(redirect),
            tags=_tags(raw.get("tags")),
            alert_count=alert_count,
            api=api,
            raw=raw,
        )
    redirect = raw.get("redirectIncidentId")
    return Incident(
        id=_text(raw, GRAPH.id_field) or "",
        title=_text(raw, "displayName", required=False) or "",
        status=_text(raw, "status", required=False) or "unknown",
        severity=_text(raw, "severity", required=False) or "unknown",
        classification=_text(raw, "classification", required=False),
        determination=current_determination(_text(raw, "determination", required=False)),
        assigned_to=_text(raw, "assignedTo", required=False),
        created=_time(raw, GRAPH.created_field),
        last_update=_time(raw, GRAPH.last_update_field),
        redirect_id=None if redirect is None else str(redirect),
        tags=_tags(raw.get("customTags")),
        alert_count=alert_count,
        api=api,
        raw=raw,
    )


@dataclass(frozen=True, slots=True)
class Alert:
    """A Defender alert in one shape: Graph ``alerts_v2`` or an alert embedded in a legacy incident.

    Enums are camelCase as in Graph; ``service_source`` keeps each API's own vocabulary
    (``MicrosoftDefenderATP`` becomes ``microsoftDefenderATP``, not Graph's name for it).
    """

    id: str
    incident_id: str | None
    title: str
    status: str
    severity: str
    category: str | None
    service_source: str | None
    detection_source: str | None
    created: datetime
    last_update: datetime
    api: ApiKind
    raw: Mapping[str, Any] = field(repr=False, compare=False)


def normalize_alert(raw: Mapping[str, Any], api: ApiKind) -> Alert:
    """Normalize one alert as returned by ``api``.

    Raises:
        UnexpectedResponseError: the alert lacks its id or times, or they are malformed.
    """
    if not isinstance(raw, Mapping):
        raise UnexpectedResponseError("an alert is not a JSON object")
    spelling = surface(api)
    keys = (
        spelling.alert_id_field,
        spelling.alert_created_field,
        spelling.alert_last_update_field,
    )
    if api == "legacy":
        status = camel(_text(raw, "status", required=False))
        severity = camel(_text(raw, "severity", required=False))
        service = camel(_text(raw, "serviceSource", required=False))
        detection = camel(_text(raw, "detectionSource", required=False))
    else:
        status = _text(raw, "status", required=False)
        severity = _text(raw, "severity", required=False)
        service = _text(raw, "serviceSource", required=False)
        detection = _text(raw, "detectionSource", required=False)
    incident = raw.get("incidentId")
    return Alert(
        id=_text(raw, keys[0]) or "",
        incident_id=None if incident is None else str(incident),
        title=_text(raw, "title", required=False) or "",
        status=status or "unknown",
        severity=severity or "unknown",
        category=_text(raw, "category", required=False),
        service_source=service,
        detection_source=detection,
        created=_time(raw, keys[1]),
        last_update=_time(raw, keys[2]),
        api=api,
        raw=raw,
    )


@dataclass(frozen=True, slots=True)
class HuntingResult:
    """An advanced hunting answer in one shape, whichever API ran the query.

    ``columns`` and ``types`` come from the answer's schema (legacy ``Schema``/``Name``/``Type``,
    Graph ``schema``/``name``/``type``; either casing is accepted because Microsoft's own examples
    mix them). ``rows`` are dicts keyed by the KQL column names; ``stats`` is the legacy ``Stats``
    object (Graph returns none). ``truncated``: the result holds exactly the service's row cap
    (100,000), where the service cuts a result without marking it, so rows may be missing.
    """

    columns: tuple[str, ...]
    types: tuple[str, ...]
    rows: tuple[Mapping[str, Any], ...]
    api: ApiKind
    stats: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    truncated: bool = False

    def table(self) -> list[list[Any]]:
        """The rows as lists in column order (a missing cell is None)."""
        return [[row.get(column) for column in self.columns] for row in self.rows]


def _ci(raw: Mapping[str, Any], key: str) -> Any:
    """``raw[key]`` looked up case-insensitively (None when absent)."""
    if key in raw:
        return raw[key]
    lowered = key.lower()
    return next((v for k, v in raw.items() if isinstance(k, str) and k.lower() == lowered), None)


def normalize_hunting(raw: Any, api: ApiKind, *, row_limit: int = 100_000) -> HuntingResult:
    """Normalize a hunting answer; ``truncated`` when it holds ``row_limit`` rows or more.

    Raises:
        UnexpectedResponseError: the answer has no schema/results arrays of the documented shape.
    """
    if not isinstance(raw, Mapping):
        raise UnexpectedResponseError("hunting answer is not a JSON object")
    schema, results = _ci(raw, "schema"), _ci(raw, "results")
    if not isinstance(schema, list) or not isinstance(results, list):
        raise UnexpectedResponseError("hunting answer has no 'schema' and 'results' arrays")
    columns: list[str] = []
    types: list[str] = []
    for entry in schema:
        name = _ci(entry, "name") if isinstance(entry, Mapping) else None
        if not isinstance(name, str):
            raise UnexpectedResponseError("hunting schema entry without a column name")
        kind = _ci(entry, "type")
        columns.append(name)
        types.append(kind if isinstance(kind, str) else "")
    if not all(isinstance(row, Mapping) for row in results):
        raise UnexpectedResponseError("hunting results are not all JSON objects")
    stats = _ci(raw, "stats")
    return HuntingResult(
        columns=tuple(columns),
        types=tuple(types),
        rows=tuple(results),
        api=api,
        stats=stats if isinstance(stats, Mapping) else None,
        raw=raw,
        truncated=len(results) >= row_limit,
    )


def planner_items(items: Sequence[Any], api: ApiKind) -> list[Item]:
    """What the listing planner (``shared.defender.slices``) reads of an answer's raw items: id,
    last-update and creation times (None where missing or unreadable), in the order served."""
    spelling = surface(api)
    key, updated, created = spelling.id_field, spelling.last_update_field, spelling.created_field
    return [
        (_id_or_none(raw.get(key)), _when(raw.get(updated)), _when(raw.get(created)))
        if isinstance(raw, Mapping)
        else (None, None, None)
        for raw in items
    ]


def _id_or_none(value: Any) -> str | None:
    """An id as text (None when missing or empty)."""
    return None if value is None or value == "" else str(value)


def _when(value: Any) -> datetime | None:
    """A timestamp the planner can place, or None."""
    if not isinstance(value, str):
        return None
    try:
        return parse_utc(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class SlicePage:
    """The one answer to a slice request: raw items, the service's link, ``@odata.count``.

    ``full`` is what the slice planner needs: a nextLink, or as many items as ``top``.
    """

    items: list[dict[str, Any]]
    next_link: str | None
    count: int | None
    top: int
    expanded: bool

    @property
    def full(self) -> bool:
        """Whether this answer cannot prove its slice complete."""
        return self.next_link is not None or len(self.items) >= self.top


@dataclass(frozen=True, slots=True)
class PairRead:
    """What the passes over a pair tie read: the latest raw JSON of each incident by id, what
    the planner reads of them, and whether a page carried ``@odata.count`` (False: they were
    taken as read when two passes in a row found nothing new, the weaker rule)."""

    latest: dict[str, dict[str, Any]]
    seen: list[Item]
    counted: bool


def read_pair(
    pass_pages: Callable[[], Iterable[SlicePage]],
    api: ApiKind,
    at: datetime,
    on_page: Callable[[SlicePage, list[Item]], None] | None = None,
) -> PairRead:
    """Page a pair tie (more than a page sharing both the last-update and the creation time:
    the listing planner's last resort) pass after pass, each pass ``pass_pages()``, until
    ``PairPasses`` says the passes add up. ``on_page`` sees each page as it comes (the
    ingestion stores it; ``GET /incidents`` checks it). ``at``: the tie's instant, for errors.

    Raises:
        UnexpectedResponseError: the passes never added up (incidents kept changing).
    """
    passes = PairPasses()
    latest: dict[str, dict[str, Any]] = {}
    while True:
        for page in pass_pages():
            items = planner_items(page.items, api)
            if on_page is not None:
                on_page(page, items)
            passes.add(items, count=page.count)
            latest.update(
                (key, raw)
                for (key, _, _), raw in zip(items, page.items, strict=True)
                if key is not None
            )
        if passes.end_pass():
            break
    if passes.given_up:
        raise UnexpectedResponseError(
            f"incidents at {format_utc(at)} kept changing over {passes.passes} passes"
        )
    return PairRead(latest, list(passes.seen.values()), passes.first is not None)
