"""``python -m shared ingest``: run ingestion now."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from shared.cli.common import EXIT_FAILED, EXIT_OK, iso_time, tenant_ids
from shared.cli.login import add_as_user


def register(commands: Any) -> None:
    """Add the ``ingest`` command."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "ingest",
        help="run ingestion now",
        description="Pull incidents updated since each tenant's watermark into storage.",
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
        "the watermark never moves back",
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary")
    add_as_user(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ingestion and print the summary."""
    from shared.bootstrap import services

    svc = services()
    # default: the enabled tenants of the registry (INGEST_TENANTS + the registry table), read
    # only when no --tenant was named
    tenants = tenant_ids(args.tenant, ()) or svc.enabled_tenants()
    show_progress = not args.json and sys.stderr.isatty()

    def progress(tenant: str, pages: int, stored: int) -> None:
        sys.stderr.write(f"\r{tenant}: {pages} pages, {stored} incidents stored ")
        sys.stderr.flush()

    summary = svc.ingestor(as_user=args.as_user).run(
        tenants, since=args.since, progress=progress if show_progress else None
    )
    if show_progress:
        sys.stderr.write("\n")
    if args.json:
        json.dump(summary.to_json(), out, indent=2)
        out.write("\n")
        return EXIT_OK if summary.ok else EXIT_FAILED
    out.write(
        f"{'tenant':<38} {'result':<8} {'stored':>7} {'listed':>7} {'pages':>6} "
        f"{'calls':>6}  watermark\n"
    )
    for t in summary.tenants:
        result = "skipped" if t.skipped else "ok" if t.ok else "FAILED"
        out.write(
            f"{t.tenant:<38} {result:<8} {t.incidents:>7} {t.listed:>7} {t.pages:>6} "
            f"{t.api_calls:>6}  {t.watermark or '-'}\n"
        )
        if t.error:
            out.write(f"  {t.error}\n")
    return EXIT_OK if summary.ok else EXIT_FAILED
