"""``python -m shared login``: device-code sign-in for commands run ``--as-user``.

Also holds ``add_as_user``, the one way CLI commands offer ``--as-user``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from shared.cli.common import EXIT_OK
from shared.core.settings import load
from shared.credentials.user import device_code_login, require_tenant


def add_as_user(parser: argparse.ArgumentParser) -> None:
    """Add ``--as-user``: act with the permissions of the user signed in by ``login``.

    A command then gets its token source with
    ``shared.credentials.user.cli_token_source(settings, tenant, scope)``.
    """
    parser.add_argument(
        "--as-user",
        action="store_true",
        help="act as the user signed in with 'python -m shared login' (their permissions) "
        "instead of the app",
    )


def register(commands: Any) -> None:
    """Add the ``login`` command."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "login",
        help="sign in as a user (device code) for --as-user",
        description="Sign in with a device code; the tokens are kept in "
        "~/.defender-bridge/msal-cache.json, readable only by you.",
    )
    parser.add_argument(
        "--tenant", metavar="TENANT_ID", help="tenant to sign in to (default: DEFENDER_TENANT_ID)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Start the device code flow, print Entra's instruction, wait for the sign-in."""

    settings = load()
    tenant = require_tenant(args.tenant, settings)
    # Entra's instruction goes to stderr so stdout stays clean for scripts
    signed_in = device_code_login(settings, tenant, settings.defender.api_scope, out=sys.stderr)
    out.write(f"signed in as {signed_in.username} (tenant {signed_in.tenant})\n")
    return EXIT_OK
