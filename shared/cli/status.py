"""``python -m shared status``: every tenant's health, worst first (table or ``--json``)."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from shared.cli.common import EXIT_FAILED, EXIT_OK, services
from shared.usecases.fanout import UNHEALTHY


def register(commands: Any) -> None:
    """Add the ``status`` command."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "status",
        help="every tenant's last success, lag, last error and queue state, worst first",
        description="Per tenant: health, queue state (queued, running, held, poison), last "
        "success and lag, last error. Exits 1 when a tenant is poisoned, failing or lacks "
        "consent.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Print the status view."""

    rows, queues = services().fanout().status()
    bad = any(r.health in UNHEALTHY for r in rows)
    if args.json:
        json.dump({"tenants": [r.to_json() for r in rows], "queues": queues}, out, indent=2)
        out.write("\n")
        return EXIT_FAILED if bad else EXIT_OK
    out.write(
        f"{'tenant':<38} {'name':<20} {'health':<17} {'queue':<8} {'last success':<21} "
        f"{'lag':>6}  last error\n"
    )
    for r in rows:
        error = (r.last_error or "-").splitlines()[0][:70]
        out.write(
            f"{r.tenant:<38} {(r.name or '-')[:20]:<20} {r.health:<17} {r.queue:<8} "
            f"{r.last_success or '-':<21} {_age(r.lag_seconds):>6}  {error}\n"
        )
    if "error" in queues:
        out.write(f"queues: {queues['error']}\n")
    else:
        out.write(f"queues: {queues['pending']} pending, {queues['poison']} poison\n")
    return EXIT_FAILED if bad else EXIT_OK
