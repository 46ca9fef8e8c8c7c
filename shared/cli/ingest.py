"""``python -m shared ingest``: run ingestion now, with a progress bar on a terminal."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from shared.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, iso_time, services, tenant_ids
from shared.cli.login import add_as_user

#: why ``--as-user`` is refused for ingestion (see ``shared.usecases.ingest``)
AS_USER_REFUSED = (
    "error: ingest --as-user is refused: ingestion runs as the app, because a user's view is "
    "trimmed by Defender RBAC and must not move the app's checkpoint or leave a partial lake; "
    "use 'incidents list --as-user' to see what a user sees"
)


def register(commands: Any) -> None:
    """Add the ``ingest`` command."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "ingest",
        help="run ingestion now",
        description="Pull incidents updated since each tenant's checkpoint into storage, "
        "by time slices, oldest first; a run that reaches its time budget, or finds the API "
        "quota spent for longer than API_MAX_RETRY_WAIT_SECONDS, stops cleanly (exit 0, "
        "complete: false, stopped: time budget or quota) and the next one goes on from its "
        "checkpoint.",
    )
    parser.add_argument(
        "--tenant",
        action="append",
        metavar="TENANT_ID",
        help="ingest only this tenant (repeatable; default: the enabled tenants of "
        "INGEST_TENANTS and the tenant registry table)",
    )
    parser.add_argument(
        "--since",
        metavar="ISO_TIME",
        type=iso_time,
        help="backfill: read incidents updated since this UTC time (e.g. 2026-11-01T00:00:00Z); "
        "the checkpoint never moves back",
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary")
    add_as_user(parser)
    parser.set_defaults(handler=run)


def progress_line(p: Any, now: float | None = None) -> str:
    """One line of the progress display: bar, incidents, slices, rate, time left."""
    width = 24
    done = round(p.fraction * width)
    rate = p.stored / p.elapsed if p.elapsed > 0 else 0.0
    left = p.seconds_left
    eta = "?" if left is None else time.strftime("%H:%M:%S", time.gmtime(left))
    return (
        f"\r{p.tenant[:8]} [{'#' * done}{'.' * (width - done)}] {p.fraction:4.0%} "
        f"{p.stored} incidents, {p.slices} slices, {rate:.0f}/s, {eta} left "
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ingestion and print the summary."""
    if args.as_user:
        print(AS_USER_REFUSED, file=sys.stderr)
        return EXIT_USAGE

    svc = services()
    # default: the enabled tenants of the registry (INGEST_TENANTS + the registry table), read
    # only when no --tenant was named
    tenants = tenant_ids(args.tenant, ()) or svc.enabled_tenants()
    show_progress = not args.json and sys.stderr.isatty()

    def progress(p: Any) -> None:
        sys.stderr.write(progress_line(p))
        sys.stderr.flush()

    summary = svc.ingestor().run(
        tenants, since=args.since, progress=progress if show_progress else None
    )
    if show_progress:
        sys.stderr.write("\n")
    if args.json:
        json.dump(summary.to_json(), out, indent=2)
        out.write("\n")
        return EXIT_OK if summary.ok else EXIT_FAILED
    out.write(
        f"{'tenant':<38} {'result':<8} {'stored':>7} {'listed':>7} {'slices':>6} "
        f"{'calls':>6} {'lag':>8}  checkpoint\n"
    )
    for t in summary.tenants:
        result = (
            "skipped"
            if t.skipped
            else "FAILED"
            if not t.ok
            else "ok"
            if t.complete
            else "quota"
            if t.stopped == "quota"
            else "partial"
        )
        lag = "-" if t.lag_seconds is None else f"{t.lag_seconds / 60:.0f}m"
        out.write(
            f"{t.tenant:<38} {result:<8} {t.incidents:>7} {t.listed:>7} {t.slices:>6} "
            f"{t.api_calls:>6} {lag:>8}  {t.watermark or '-'}\n"
        )
        if t.error:
            out.write(f"  {t.error}\n")
        if t.ok and not t.complete and not t.skipped and t.stopped == "quota":
            when = f"until {t.resume_at}" if t.resume_at else "for now"
            out.write(
                f"  stopped cleanly: the API quota is spent {when}; what was read is stored, and "
                "the next run continues from the checkpoint\n"
            )
        elif t.ok and not t.complete and not t.skipped:
            out.write(f"  stopped ({t.stopped}); the next run continues from the checkpoint\n")
        if t.quarantined:
            out.write(
                f"  {t.quarantined} record(s) quarantined (see defender-incidents/quarantine)\n"
            )
        if t.alerts == "separate":
            out.write(
                "  alerts read apart from incidents ($expand=alerts failed for this tenant)\n"
            )
        if t.lag_warning:
            out.write("  warning: this tenant lags behind (INGEST_LAG_WARNING_MINUTES)\n")
    return EXIT_OK if summary.ok else EXIT_FAILED
