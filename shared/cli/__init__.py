"""The command line: ``python -m shared <command>``. Adapts arguments, calls one use case.

Each command lives in its own module of this package with ``register(subparsers)``; ``COMMANDS``
lists them in the order ``--help`` shows. Exit status: 0 success, 1 the operation failed (for
``ingest``: any tenant failed), 2 bad arguments or settings (``shared.core.errors.OUTCOMES``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn, TextIO

from shared.core.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    BridgeError,
    ConfigError,
    outcome_of,
)
from shared.core.logs import configure_cli_logging

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "command_of", "main"]

#: each command and the module of this package that registers it (``register(subparsers)``
#: setting ``handler``), in the order ``--help`` shows them. A run imports only its own
#: command's module (``build_parser``): every command module loads its use cases, and a
#: process that ingests need not load the others' (a tenth of its start-up CPU)
COMMANDS: tuple[tuple[str, str], ...] = (
    ("ingest", "ingest"),
    ("check", "check"),
    ("consent-url", "consent"),
    ("login", "login"),
    ("incidents", "incidents"),
    ("hunt", "hunt"),
    ("serve", "serve"),
    ("tenants", "tenants"),
    ("status", "status"),
    ("subscriptions", "subscriptions"),
    ("connector", "connector"),
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with ``command`` registered, or every command (None)."""
    parser = _Parser(
        prog="python -m shared",
        description="Defender Bridge: Microsoft Defender XDR incidents into Azure Storage.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.required = True
    for name, module in COMMANDS:
        if command is None or name == command:
            importlib.import_module(f"{__name__}.{module}").register(commands)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs (its first word that is not an option) when it is one of
    ``COMMANDS``; None for anything else (help, a typo), which needs every command listed."""
    for word in argv:
        if not word.startswith("-"):
            return word if any(word == name for name, _ in COMMANDS) else None
    return None


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit status."""
    out = out or sys.stdout
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(command_of(words)).parse_args(words)
    configure_cli_logging(args.verbose)
    try:
        status: int = args.handler(args, out)
    except BridgeError as exc:
        # the exit status comes from the one table of outcomes (shared.core.errors.OUTCOMES)
        prefix = "settings: " if isinstance(exc, ConfigError) else ""
        print(f"error: {prefix}{exc}", file=sys.stderr)
        return outcome_of(exc).exit
    return status
