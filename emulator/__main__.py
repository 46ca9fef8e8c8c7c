"""`python -m emulator`: start the local cloud and print the settings that point the app at it.

The settings go to stdout as `export NAME=value` lines (so `eval "$(python -m emulator &)"`-style
scripts can consume them), a one-line ready message goes to stderr, and the process serves until
SIGINT or SIGTERM, then exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from emulator import behaviour
from emulator.config import EmulatorConfig
from emulator.server import Emulator, dumps_settings


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="HTTPS port (default: a free one)")
    parser.add_argument("--mi-port", type=int, default=0, help="managed-identity HTTP port")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated data")
    parser.add_argument("--state-dir", type=Path, default=None, help="where to write the CA PEM")
    parser.add_argument(
        "--home-incidents", type=int, default=260, help="incidents seeded in the home tenant"
    )
    parser.add_argument("--customer-tenants", type=int, default=2, help="customer tenants")
    parser.add_argument(
        "--customer-incidents", type=int, default=40, help="incidents per customer tenant"
    )
    parser.add_argument(
        "--device-code-auto-user",
        default=None,
        metavar="USER",
        help="approve every device code as this user (UPN, object id or a home-tenant nickname "
        "such as 'analyst')",
    )
    parser.add_argument(
        "--device-code-interval", type=int, default=1, help="device-code polling interval (s)"
    )
    parser.add_argument(
        "--order",
        choices=behaviour.ORDERS,
        default="newest",
        help="listing order: newest first (legacy documents it; Graph documents no order) or a "
        "seeded arbitrary order",
    )
    parser.add_argument("--order-seed", type=int, default=0, help="seed of the arbitrary order")
    parser.add_argument(
        "--count-pages",
        choices=behaviour.COUNT_PAGES,
        default="every",
        help="which Graph list pages carry @odata.count when $count=true",
    )
    parser.add_argument(
        "--late-arrival-seconds",
        type=float,
        default=0.0,
        help="changes become visible to API reads this long after their lastUpdateTime",
    )
    parser.add_argument(
        "--expand-failure-tenant",
        action="append",
        default=[],
        metavar="TENANT",
        help="Graph $expand=alerts with $filter answers 500 for this tenant id ('*' = all); "
        "repeatable",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests (DEBUG)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = EmulatorConfig(
        host=args.host,
        port=args.port,
        mi_port=args.mi_port,
        seed=args.seed,
        state_dir=args.state_dir,
        home_incidents=args.home_incidents,
        customer_tenants=args.customer_tenants,
        customer_incidents=args.customer_incidents,
        device_code_auto_user=args.device_code_auto_user,
        device_code_interval=args.device_code_interval,
        order=args.order,
        order_seed=args.order_seed,
        count_pages=args.count_pages,
        late_arrival_seconds=args.late_arrival_seconds,
        expand_failure_tenants=tuple(args.expand_failure_tenant),
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        emulator = Emulator(config)
        emulator.start()
    except (OSError, ValueError) as exc:
        print(f"emulator: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        sys.stdout.write(dumps_settings(emulator.app_settings()))
        sys.stdout.flush()
        print(
            f"emulator ready on {emulator.url} (managed identity {emulator.mi_url}); "
            "Ctrl+C to stop",
            file=sys.stderr,
            flush=True,
        )
        print(
            "a token for the Defender Bridge API (its app roles): curl --cacert "
            f"{emulator.ca_path} -X POST {emulator.url}/_emulator/api/token "
            """-d '{"principal": "analyst"}'   (GET /_emulator/api lists the principals)""",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
