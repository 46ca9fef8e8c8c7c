"""The command line: ``python -m shared <command>``. Adapts arguments, calls one use case.

Each command lives in its own module of this package with ``register(subparsers)``; ``COMMANDS``
lists them in the order ``--help`` shows. Exit status: 0 success, 1 the operation failed (for
``ingest``: any tenant failed), 2 bad arguments or settings (``shared.core.errors.OUTCOMES``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn, TextIO

from shared.cli import (
    check,
    connector,
    consent,
    hunt,
    incidents,
    ingest,
    login,
    serve,
    status,
    subscriptions,
    tenants,
)
from shared.core.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    BridgeError,
    ConfigError,
    outcome_of,
)
from shared.core.logs import configure_cli_logging

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

#: command modules, each with ``register(subparsers)`` setting ``handler`` on its parser
COMMANDS = (
    ingest,
    check,
    consent,
    login,
    incidents,
    hunt,
    serve,
    tenants,
    status,
    subscriptions,
    connector,
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command registered."""
    parser = _Parser(
        prog="python -m shared",
        description="Defender Bridge: Microsoft Defender XDR incidents into Azure Storage.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.required = True
    for module in COMMANDS:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit status."""
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    configure_cli_logging(args.verbose)
    try:
        status: int = args.handler(args, out)
    except BridgeError as exc:
        # the exit status comes from the one table of outcomes (shared.core.errors.OUTCOMES)
        prefix = "settings: " if isinstance(exc, ConfigError) else ""
        print(f"error: {prefix}{exc}", file=sys.stderr)
        return outcome_of(exc).exit
    return status
