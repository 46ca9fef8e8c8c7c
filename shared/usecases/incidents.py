"""On-demand use cases shared by the CLI and the HTTP API: build the query once, call the client,
shape the answer. The CLI and the routes adapt their input to these and print or serialize what
they return, so no request is built twice.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.core.clock import format_utc
from shared.core.errors import ConfigError
from shared.defender.model import Alert, HuntingResult, Incident, normalize_alert
from shared.defender.operations import IncidentUpdate, hunting_request
from shared.defender.operations import incident_id as check_id
from shared.defender.queries import ALERT_STATUSES, AlertQuery, IncidentQuery
from shared.defender.values import canonical_severity, canonical_status

if TYPE_CHECKING:
    from shared.defender.pages import PageResult
    from shared.ports import Defender

#: the documented advanced hunting row cap (docs/defender-service.md#hunting-limits): an answer of
#: exactly this many rows was most likely cut by the service
SERVICE_ROW_LIMIT = 100_000


def split_values(values: Iterable[str] | None) -> list[str]:
    """``["a", "b,c"]`` → ``["a", "b", "c"]``."""
    return [part.strip() for v in values or () for part in v.split(",") if part.strip()]


def _canonical(values: Iterable[str] | None, parse: Callable[[str], str]) -> tuple[str, ...]:
    problems: list[str] = []
    out: list[str] = []
    for value in split_values(values):
        try:
            out.append(parse(value))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return tuple(dict.fromkeys(out))


def incident_query(
    *,
    statuses: Iterable[str] | None = None,
    severities: Iterable[str] | None = None,
    assigned_to: str | None = None,
    created_from: datetime | None = None,
    created_before: datetime | None = None,
    updated_from: datetime | None = None,
    updated_before: datetime | None = None,
) -> IncidentQuery:
    """The listing filters of ``incidents list`` and ``GET /incidents``, canonicalized.

    Raises:
        ConfigError: a status or severity outside the documented sets, or a bad time range.
    """
    return IncidentQuery(
        statuses=_canonical(statuses, lambda v: canonical_status(v, for_filter=True)),
        severities=_canonical(severities, canonical_severity),
        assigned_to=assigned_to,
        created_from=created_from,
        created_before=created_before,
        updated_from=updated_from,
        updated_before=updated_before,
    )


def list_incidents(
    client: Defender, query: IncidentQuery, *, limit: int | None = None
) -> list[Incident]:
    """Incidents matching ``query`` (at most ``limit``)."""
    return client.list_incidents(query, limit=limit)


def incident_page(
    client: Defender,
    query: IncidentQuery,
    *,
    before: tuple[int, str] | None,
    top: int,
    max_calls: int,
    rate: float | None = None,
    now: datetime | None = None,
) -> PageResult[Incident]:
    """One newest-first page of ``GET /incidents``: the ``top`` newest incidents matching
    ``query`` below the position ``before``, in at most ``max_calls`` Defender requests
    (``shared.defender.pages``)."""
    return client.newest_page(
        query, before=before, top=top, max_calls=max_calls, rate=rate, now=now
    )


def incident_id(raw: str) -> str:
    """An incident id as a caller typed it, checked (ConfigError when it cannot be one)."""
    return check_id(raw)


def incident_update(
    *,
    status: str | None = None,
    assigned_to: str | None = None,
    classification: str | None = None,
    determination: str | None = None,
    tags: Sequence[str] | None = None,
    comment: str | None = None,
) -> IncidentUpdate:
    """The changes of ``incidents update`` and ``PATCH /incidents/{id}``, canonicalized for
    either surface (``assigned_to=""`` unassigns; None leaves a field as it is).

    Raises:
        ConfigError: a value outside the documented sets, or nothing to change.
    """
    return IncidentUpdate.parse(
        status=status,
        assigned_to=assigned_to,
        classification=classification,
        determination=determination,
        tags=tags,
        comment=comment,
    )


def alert_query(
    *,
    statuses: Iterable[str] | None = None,
    severities: Iterable[str] | None = None,
    created_from: datetime | None = None,
    created_before: datetime | None = None,
    updated_from: datetime | None = None,
    updated_before: datetime | None = None,
) -> AlertQuery:
    """The filters of ``incidents alerts``, canonicalized (statuses in any case, with or
    without dashes).

    Raises:
        ConfigError: a status or severity outside the documented sets, or a bad time range.
    """

    def status(value: str) -> str:
        key = value.replace("-", "").replace("_", "").lower()
        for option in ALERT_STATUSES:
            if option.lower() == key:
                return option
        raise ConfigError(f"alert status '{value}' is not one of: {', '.join(ALERT_STATUSES)}")

    return AlertQuery(
        statuses=_canonical(statuses, status),
        severities=_canonical(severities, canonical_severity),
        created_from=created_from,
        created_before=created_before,
        updated_from=updated_from,
        updated_before=updated_before,
    )


def list_alerts(client: Defender, query: AlertQuery, *, limit: int | None = None) -> list[Alert]:
    """Alerts matching ``query`` (at most ``limit``)."""
    return client.list_alerts(query, limit=limit)


def alert_rows(incident: Incident) -> list[dict[str, Any]]:
    """The alerts an incident carries (embedded or expanded), as flat JSON objects."""
    alerts = incident.raw.get("alerts")
    return [
        alert_row(normalize_alert(a, incident.api))
        for a in (alerts if isinstance(alerts, list) else [])
        if isinstance(a, dict)
    ]


def get_incident(client: Defender, incident_id: str) -> Incident:
    """One incident with its alerts (the id is checked before any call)."""
    return client.get_incident(check_id(incident_id))


def update_incident(client: Defender, incident_id: str, update: IncidentUpdate) -> Incident:
    """Apply a validated update; the incident as the API shows it afterwards."""
    return client.update_incident(check_id(incident_id), update)


def check_hunt(client: Defender, query: str, timespan: str | None) -> None:
    """Check a query and time span before spending a call (ConfigError if invalid)."""
    hunting_request(client.api, client.base_url, query, timespan=timespan)


def hunt(client: Defender, query: str, *, timespan: str | None = None) -> HuntingResult:
    """Run an advanced hunting query (checked first)."""
    check_hunt(client, query, timespan)
    return client.hunt(query, timespan=timespan)


# ---------------------------------------------------------------------- views


def incident_row(incident: Incident) -> dict[str, Any]:
    """The normalized incident as a flat JSON object."""
    return {
        "id": incident.id,
        "title": incident.title,
        "status": incident.status,
        "severity": incident.severity,
        "classification": incident.classification,
        "determination": incident.determination,
        "assignedTo": incident.assigned_to,
        "created": format_utc(incident.created),
        "lastUpdate": format_utc(incident.last_update),
        "redirectId": incident.redirect_id,
        "tags": list(incident.tags),
        "alerts": incident.alert_count,
        "api": incident.api,
    }


INCIDENT_COLUMNS = (
    "id",
    "title",
    "status",
    "severity",
    "classification",
    "determination",
    "assignedTo",
    "created",
    "lastUpdate",
    "redirectId",
    "tags",
    "alerts",
    "api",
)


def alert_row(alert: Alert) -> dict[str, Any]:
    """The normalized alert as a flat JSON object."""
    return {
        "id": alert.id,
        "incidentId": alert.incident_id,
        "title": alert.title,
        "status": alert.status,
        "severity": alert.severity,
        "category": alert.category,
        "serviceSource": alert.service_source,
        "detectionSource": alert.detection_source,
        "created": format_utc(alert.created),
        "lastUpdate": format_utc(alert.last_update),
        "api": alert.api,
    }


def hunting_json(result: HuntingResult, *, max_rows: int | None = None) -> dict[str, Any]:
    """``{"columns": [{"name", "type"}], "rows": [...], "rowCount", "truncated"}``.

    ``truncated`` is true when ``max_rows`` cut the rows or the service returned its documented
    maximum (then it most likely cut them itself).
    """
    rows = [dict(r) for r in result.rows]
    cut = max_rows is not None and len(rows) > max_rows
    if max_rows is not None:
        rows = rows[:max_rows]
    return {
        "columns": [
            {"name": c, "type": t} for c, t in zip(result.columns, result.types, strict=True)
        ],
        "rows": rows,
        "rowCount": len(rows),
        "truncated": cut or result.truncated or len(result.rows) >= SERVICE_ROW_LIMIT,
    }


#: first characters that make a spreadsheet read a cell as a formula (OWASP "CSV Injection",
#: https://owasp.org/www-community/attacks/CSV_Injection; ASVS 5.0 1.2.10 adds NUL)
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r", "\x00")
#: a plain decimal number: a spreadsheet reads it as a number, never as a formula
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def csv_cell(value: Any) -> str:
    """One CSV cell, safe to open in a spreadsheet.

    Text starting with ``=``, ``+``, ``-``, ``@``, tab, carriage return or NUL gets a leading
    ``'``, which Excel, LibreOffice and Google Sheets read as "this is text", so it is shown,
    not run. Real numbers are kept as they are (``-5``, ``+1.5e3``, and numbers in JSON rows),
    since a number is never a formula. Lists are joined by ``;`` and objects written as JSON
    before the check.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        text = json.dumps(value, default=str)
    elif isinstance(value, list | tuple):
        text = ";".join(str(v) for v in value)
    else:
        text = str(value)
    if text.startswith(FORMULA_LEADS) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def hunting_csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as CSV with a header line (lists and objects as JSON), every cell through
    ``csv_cell`` (formula-looking text neutralised)."""
    out = io.StringIO()
    # CRLF, as RFC 4180 has it: the writer quotes only fields holding a character of the line
    # terminator, so with a bare LF a cell holding a CR would break the row in two
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([csv_cell(c) for c in columns])
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if isinstance(value, dict | list):
                value = json.dumps(value, default=str)
            cells.append(csv_cell(value))
        writer.writerow(cells)
    return out.getvalue()
