"""``python -m shared incidents list|get|update|alerts``: incidents on the configured API surface.

Output is the normalized model (the same whichever surface is configured): a table by default,
``--format json`` (``--raw`` for the API's own JSON) or ``--format csv``. Values such as
statuses and classifications are accepted in any case and in either documented spelling.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from shared.cli.common import EXIT_OK, EXIT_USAGE, iso_time, services, tenant_ids
from shared.cli.login import add_as_user
from shared.core.errors import ConfigError
from shared.defender.model import Incident
from shared.usecases import incidents as usecases
from shared.usecases.incidents import (
    INCIDENT_COLUMNS,
    alert_row,
    incident_row,
    split_values,
)

__all__ = ["alert_row", "incident_row"]

FORMATS = ("table", "json", "csv")
_TABLE_WIDTH = 60  # longest cell of a table column; json/csv print everything


def add_common(parser: argparse.ArgumentParser) -> None:
    """``--tenant`` and ``--format``, shared by these commands and ``hunt``."""
    parser.add_argument(
        "--tenant", metavar="TENANT_ID", help="the tenant to query (default: the home tenant)"
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default: table)"
    )
    add_as_user(parser)


def client_for(args: argparse.Namespace) -> Any:
    """The API client of the tenant named by ``--tenant`` (or the home tenant)."""

    svc = services()
    chosen = tenant_ids([args.tenant] if args.tenant else None, (svc.settings.identity.tenant_id,))
    if getattr(args, "as_user", False):
        return svc.user_client_for(chosen[0])
    return svc.client_for(chosen[0])


def bad_input(command: str, exc: ConfigError) -> int:
    """Report an invalid argument value as one line (exit 2), like argparse does.

    ``shared.cli.main`` prefixes ``ConfigError`` with "settings:", which would mislead here.
    """
    import sys

    print(f"error: python -m shared {command}: {exc} (see --help)", file=sys.stderr)
    return EXIT_USAGE


def register(commands: Any) -> None:
    """Add the ``incidents`` command and its subcommands."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "incidents",
        help="list, show and update incidents",
        description="List, show and update Defender incidents (legacy or Graph API, as "
        "configured by DEFENDER_API).",
    )
    sub = parser.add_subparsers(dest="action", metavar="action")
    sub.required = True

    lst = sub.add_parser("list", help="list incidents, newest first")
    add_common(lst)
    _add_time_filters(lst)
    lst.add_argument("--status", action="append", help="active, inProgress, resolved, redirected")
    lst.add_argument("--severity", action="append", help="informational, low, medium, high")
    lst.add_argument("--assigned-to", metavar="UPN", help="incidents assigned to this user")
    lst.add_argument("--limit", type=_count, default=100, help="at most this many (0: all)")
    lst.add_argument("--raw", action="store_true", help="with --format json: the API's own JSON")
    lst.set_defaults(handler=run_list)

    get = sub.add_parser("get", help="show one incident")
    get.add_argument("incident_id", metavar="ID")
    add_common(get)
    get.add_argument("--raw", action="store_true", help="with --format json: the API's own JSON")
    get.set_defaults(handler=run_get)

    upd = sub.add_parser("update", help="change an incident")
    upd.add_argument("incident_id", metavar="ID")
    add_common(upd)
    upd.add_argument("--status", help="active, inProgress, resolved, redirected")
    upd.add_argument("--assigned-to", metavar="UPN", help="assign to this user ('' unassigns)")
    upd.add_argument(
        "--classification", help="truePositive, informationalExpectedActivity, falsePositive"
    )
    upd.add_argument(
        "--determination",
        help="e.g. malware, phishing, securityTesting, notMalicious (older names such as clean "
        "are accepted and sent as today's)",
    )
    upd.add_argument(
        "--tag", action="append", help="set the tags to these (repeatable; replaces the tags)"
    )
    upd.add_argument("--clear-tags", action="store_true", help="remove every tag")
    upd.add_argument("--comment", help="add a comment")
    upd.add_argument("--raw", action="store_true", help="with --format json: the API's own JSON")
    upd.set_defaults(handler=run_update)

    alerts = sub.add_parser(
        "alerts",
        help="list alerts",
        description="List alerts (Graph alerts_v2; on the legacy API, the alerts embedded in "
        "the incidents updated in the time range).",
    )
    add_common(alerts)
    _add_time_filters(alerts)
    alerts.add_argument("--status", action="append", help="new, inProgress, resolved")
    alerts.add_argument("--severity", action="append", help="informational, low, medium, high")
    alerts.add_argument("--limit", type=_count, default=100, help="at most this many (0: all)")
    alerts.add_argument("--raw", action="store_true", help="with --format json: the API's JSON")
    alerts.set_defaults(handler=run_alerts)


def _add_time_filters(parser: argparse.ArgumentParser) -> None:
    for name, what in (
        ("--created-from", "created at or after"),
        ("--created-before", "created before"),
        ("--updated-from", "last updated at or after"),
        ("--updated-before", "last updated before"),
    ):
        parser.add_argument(name, metavar="ISO_TIME", type=iso_time, help=f"{what} this UTC time")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


# ---------------------------------------------------------------------- handlers


def run_list(args: argparse.Namespace, out: TextIO) -> int:
    """``incidents list``."""

    try:
        query = usecases.incident_query(
            statuses=args.status,
            severities=args.severity,
            assigned_to=args.assigned_to,
            created_from=args.created_from,
            created_before=args.created_before,
            updated_from=args.updated_from,
            updated_before=args.updated_before,
        )
    except ConfigError as exc:
        return bad_input("incidents list", exc)
    incidents = usecases.list_incidents(client_for(args), query, limit=args.limit or None)
    write_incidents(incidents, args.format, out, raw=args.raw)
    return EXIT_OK


def run_get(args: argparse.Namespace, out: TextIO) -> int:
    """``incidents get ID``."""

    try:
        incident = usecases.get_incident(client_for(args), args.incident_id)
    except ConfigError as exc:
        return bad_input("incidents get", exc)
    write_incidents([incident], args.format, out, raw=args.raw, single=True)
    return EXIT_OK


def run_update(args: argparse.Namespace, out: TextIO) -> int:
    """``incidents update ID ...``."""
    tags: list[str] | None = None
    if args.clear_tags or args.tag:
        tags = [] if args.clear_tags else split_values(args.tag)
    try:
        if args.clear_tags and args.tag:
            raise ConfigError("give either --tag or --clear-tags, not both")
        update = usecases.incident_update(
            status=args.status,
            assigned_to=args.assigned_to,
            classification=args.classification,
            determination=args.determination,
            tags=tags,
            comment=args.comment,
        )
    except ConfigError as exc:
        return bad_input("incidents update", exc)

    client = client_for(args)
    started = services().clock()
    try:
        incident = usecases.update_incident(client, args.incident_id, update)
    except ConfigError as exc:
        return bad_input("incidents update", exc)
    # push does not deliver this update back to subscribed workflows (loop protection)
    services().mark_own_update(client.tenant, incident.id, started)
    write_incidents([incident], args.format, out, raw=args.raw, single=True)
    return EXIT_OK


def run_alerts(args: argparse.Namespace, out: TextIO) -> int:
    """``incidents alerts``."""
    try:
        query = usecases.alert_query(
            statuses=args.status,
            severities=args.severity,
            created_from=args.created_from,
            created_before=args.created_before,
            updated_from=args.updated_from,
            updated_before=args.updated_before,
        )
    except ConfigError as exc:
        return bad_input("incidents alerts", exc)
    alerts = usecases.list_alerts(client_for(args), query, limit=args.limit or None)
    rows = [alert_row(a) for a in alerts]
    if args.format == "json":
        data = [dict(a.raw) for a in alerts] if args.raw else rows
        json.dump(data, out, indent=2, default=str)
        out.write("\n")
    else:
        columns = ("id", "incidentId", "lastUpdate", "status", "severity", "title")
        write_rows(columns, rows, args.format, out)
    return EXIT_OK


# ---------------------------------------------------------------------- output


def write_incidents(
    incidents: Sequence[Incident], fmt: str, out: TextIO, *, raw: bool, single: bool = False
) -> None:
    """Print incidents in ``fmt``."""
    if fmt == "json":
        data: Any = [dict(i.raw) if raw else incident_row(i) for i in incidents]
        json.dump(data[0] if single and data else data, out, indent=2, default=str)
        out.write("\n")
        return
    rows = [incident_row(i) for i in incidents]
    if fmt == "csv":
        write_rows(incident_row_columns(), rows, fmt, out)
        return
    columns = ("id", "lastUpdate", "status", "severity", "assignedTo", "alerts", "title")
    if single and rows:
        width = max(len(k) for k in rows[0])
        for key, value in rows[0].items():
            out.write(f"{key:<{width}}  {_cell(value, wide=True)}\n")
        return
    write_rows(columns, rows, fmt, out)


def incident_row_columns() -> tuple[str, ...]:
    """Column names of ``incident_row`` (for an empty CSV)."""
    return INCIDENT_COLUMNS


def _cell(value: Any, *, wide: bool = False) -> str:
    if value is None:
        text = ""
    elif isinstance(value, list | tuple):
        text = ";".join(str(v) for v in value)
    elif isinstance(value, Mapping):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    text = text.replace("\r", " ").replace("\n", " ")
    if not wide and len(text) > _TABLE_WIDTH:
        text = text[: _TABLE_WIDTH - 1] + "…"
    return text


def write_rows(
    columns: Sequence[str], rows: Sequence[Mapping[str, Any]], fmt: str, out: TextIO
) -> None:
    """Print rows as an aligned text table or as CSV (with a header line)."""
    if fmt == "csv":
        # the one CSV writer (RFC 4180, formula-looking cells neutralised), cells flattened
        # as the table shows them (lists joined with ';', line breaks as spaces)
        flat = [{c: _cell(row.get(c), wide=True) for c in columns} for row in rows]
        out.write(usecases.hunting_csv(columns, flat))
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for r in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")
    if not rows:
        out.write("(none)\n")
