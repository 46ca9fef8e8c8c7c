"""Helpers shared by CLI commands: argument types and output, and the way to the composition
root."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

from shared.core.clock import RANGE_TEXT, parse_input_time
from shared.core.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ConfigError
from shared.core.settings import parse_tenant_list

if TYPE_CHECKING:
    from shared.bootstrap import Services
    from shared.core.settings import Settings
    from shared.credentials.values import SignedIn

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "iso_time", "services", "tenant_ids"]


# The CLI reaches the wings only through the composition root, and imports it on first use:
# the root loads every SDK (about 0.4 s of a 0.5 s start), which ``--help``, a usage error and
# the commands that need no service (``connector``, ``consent``) must not pay for.


def services() -> Services:
    """The process's services (``shared.bootstrap.services()``), built on first use."""
    from shared import bootstrap  # import cost: see above

    return bootstrap.services()


def device_code_sign_in(settings: Settings, tenant: str, *, out: TextIO) -> SignedIn:
    """Sign a user in for ``--as-user`` (``shared.bootstrap.device_code_sign_in``)."""
    from shared import bootstrap  # import cost: see above

    return bootstrap.device_code_sign_in(settings, tenant, out=out)


def iso_time(text: str) -> datetime:
    """argparse type: an ISO-8601 time with a zone, within ``shared.core.clock.RANGE_TEXT``."""
    try:
        return parse_input_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO-8601 time with a zone {RANGE_TEXT}: {text[:40]!r} "
            "(e.g. 2026-11-01T00:00:00Z)"
        ) from None


def tenant_ids(chosen: list[str] | None, configured: tuple[str, ...]) -> tuple[str, ...]:
    """Tenants named with ``--tenant`` (checked), or the configured ones.

    Raises:
        ConfigError: a named tenant is not a GUID.
    """
    if not chosen:
        return configured

    try:
        return parse_tenant_list(",".join(chosen))
    except ValueError as exc:
        raise ConfigError(f"--tenant: {exc}") from None
