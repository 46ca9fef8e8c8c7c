"""``python -m shared hunt``: run an advanced hunting query on the configured API surface.

The query comes as an argument, from ``--file``, or from standard input (``-``). Results print
as a table (default), JSON (``{"columns": [{"name", "type"}], "rows": [...], "truncated"}``) or
CSV. A result cut at the service's 100,000-row cap is flagged: a warning on standard error, and
``"truncated": true`` in JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from shared.cli.common import EXIT_OK
from shared.cli.incidents import add_common, bad_input, client_for, write_rows
from shared.core.errors import ConfigError
from shared.usecases import incidents as usecases


def register(commands: Any) -> None:
    """Add the ``hunt`` command."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "hunt",
        help="run an advanced hunting (KQL) query",
        description="Run a KQL query with advanced hunting (legacy advancedhunting/run or Graph "
        "runHuntingQuery, as configured by DEFENDER_API).",
    )
    parser.add_argument("query", nargs="?", help="the KQL query, or '-' to read standard input")
    parser.add_argument("--file", type=Path, help="read the query from this file")
    parser.add_argument(
        "--timespan",
        help="Graph only: ISO-8601 time span, e.g. P7D or 2026-11-01T00:00:00Z/P7D "
        "(default: the service's 30 days)",
    )
    add_common(parser)
    parser.set_defaults(handler=run)


def read_query(args: argparse.Namespace) -> str:
    """The query text from the argument, ``--file`` or standard input.

    Raises:
        ConfigError: none or more than one source given, or the file cannot be read.
    """
    if (args.query is None) == (args.file is None):
        raise ConfigError("give the query as an argument, '-' for standard input, or --file")
    if args.file is not None:
        try:
            return str(args.file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"--file: cannot read {args.file}: {exc.strerror}") from None
    if args.query == "-":
        return sys.stdin.read()
    return str(args.query)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the query and print its result."""

    try:
        query = read_query(args)
    except ConfigError as exc:
        return bad_input("hunt", exc)
    client = client_for(args)
    try:  # check the query and time span before spending a call
        usecases.check_hunt(client, query, args.timespan)
    except ConfigError as exc:
        return bad_input("hunt", exc)
    result = usecases.hunt(client, query, timespan=args.timespan)
    if args.format == "json":
        data = usecases.hunting_json(result)
        json.dump(
            {"columns": data["columns"], "rows": data["rows"], "truncated": data["truncated"]},
            out,
            indent=2,
            default=str,
        )
        out.write("\n")
    elif args.format == "csv":
        # the HTTP API's writer: the same bytes for the same result (RFC 4180, CRLF)
        out.write(usecases.hunting_csv(result.columns, result.rows))
    else:
        write_rows(result.columns, result.rows, args.format, out)
    if args.format == "table":
        print(f"({len(result.rows)} rows)", file=sys.stderr)
    if result.truncated:
        print(
            f"warning: the result has {len(result.rows)} rows, the service's cap; it may be cut "
            "(narrow the query: a shorter time range, summarize or filters)",
            file=sys.stderr,
        )
    return EXIT_OK
