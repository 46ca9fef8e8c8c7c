"""Helpers shared by CLI commands: argument types and output."""

from __future__ import annotations

import argparse
from datetime import datetime

from shared.core.clock import RANGE_TEXT, parse_input_time
from shared.core.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ConfigError
from shared.core.settings import parse_tenant_list

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "iso_time", "tenant_ids"]


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
