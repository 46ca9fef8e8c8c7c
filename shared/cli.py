"""The command line: ``python -m shared <command>``. Adapts arguments, calls one use case.

Exit status: 0 success, 1 the operation failed (for ``ingest``: any tenant failed),
2 bad arguments or settings.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TextIO

from shared.clock import parse_utc
from shared.errors import BridgeError, ConfigError
from shared.logs import configure_cli_logging

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared",
        description="Defender Bridge: Microsoft Defender XDR incidents into Azure Storage.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.required = True

    ingest = commands.add_parser(
        "ingest",
        help="run ingestion now",
        description="Pull incidents updated since each tenant's watermark into storage.",
    )
    ingest.add_argument(
        "--tenant",
        action="append",
        metavar="TENANT_ID",
        help="ingest only this tenant (repeatable; default: INGEST_TENANTS or the home tenant)",
    )
    ingest.add_argument(
        "--since",
        metavar="ISO_TIME",
        type=_since,
        help="backfill: read incidents updated since this UTC time (e.g. 2026-11-01T00:00:00Z); "
        "the watermark never moves back",
    )
    ingest.add_argument("--json", action="store_true", help="print a machine-readable summary")
    return parser


def _since(text: str) -> datetime:
    try:
        return parse_utc(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO-8601 time with a zone: {text!r} (e.g. 2026-11-01T00:00:00Z)"
        ) from None


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit status."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    configure_cli_logging(args.verbose)
    try:
        if args.command == "ingest":
            return _ingest(args, out)
    except ConfigError as exc:
        print(f"error: settings: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_USAGE  # pragma: no cover - argparse enforces a known command


def _ingest(args: argparse.Namespace, out: TextIO) -> int:
    from shared.bootstrap import services

    svc = services()
    tenants = _tenants(args.tenant, svc.settings.tenants)
    show_progress = not args.json and sys.stderr.isatty()

    def progress(tenant: str, pages: int, stored: int) -> None:
        sys.stderr.write(f"\r{tenant}: {pages} pages, {stored} incidents stored ")
        sys.stderr.flush()

    summary = svc.ingestor().run(
        tenants, since=args.since, progress=progress if show_progress else None
    )
    if show_progress:
        sys.stderr.write("\n")
    if args.json:
        json.dump(summary.to_json(), out, indent=2)
        out.write("\n")
    else:
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


def _tenants(chosen: list[str] | None, configured: tuple[str, ...]) -> tuple[str, ...]:
    if not chosen:
        return configured
    from shared.settings import _guid_list

    try:
        return _guid_list(",".join(chosen))
    except ValueError as exc:
        raise ConfigError(f"--tenant: {exc}") from None
