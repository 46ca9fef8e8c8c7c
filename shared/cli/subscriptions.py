"""``python -m shared subscriptions add|list|deliver|redrive|rekey``: push subscriptions and
their deliveries, for operators.

- ``add``: subscribe a webhook, as ``POST /api/subscriptions`` does (same checks); the URL is
  read from standard input with ``-`` so its ``sig`` stays out of shell history and process lists.
- ``list``: every subscription with its health (status, circuit breaker, last success and
  failure, why one was dropped); never a callback URL. Exits 1 when one is dropped or failing.
- ``deliver``: handle the ``defender-push`` messages visible now (what the queue trigger does in
  Azure), for local runs without the Functions host.
- ``redrive``: put dead-lettered deliveries (and the poison queue's messages) back on
  ``defender-push``; a dropped subscription they belong to is revived.
- ``rekey``: seal every stored callback URL under the current ``API_SIGNING_KEY`` (after a
  rotation with ``API_SIGNING_KEY_PREVIOUS``, or to seal rows stored before sealing existed).
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from shared.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, services, tenant_ids
from shared.core.errors import ConfigError
from shared.defender.values import canonical_severity, canonical_status
from shared.push.messages import Filter
from shared.usecases.push.outbox import PUSH_QUEUE


def register(commands: Any) -> None:
    """Add the ``subscriptions`` command and its subcommands."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "subscriptions",
        help="push subscriptions: health, pending deliveries, dead letters, key rotation",
        description="Push subscriptions (POST /api/subscriptions) and their deliveries.",
    )
    sub = parser.add_subparsers(dest="action", metavar="action")
    sub.required = True
    add = sub.add_parser("add", help="subscribe a webhook (what POST /api/subscriptions does)")
    add.add_argument("url", help="the callback URL, or - to read it from standard input")
    add.add_argument("--min-severity", help="informational, low, medium or high")
    add.add_argument("--status", action="append", help="only these statuses (repeatable)")
    add.add_argument("--tag", action="append", help="only incidents with one of these tags")
    add.add_argument("--tenant", action="append", help="only these tenants (default: all)")
    add.set_defaults(handler=run_add)
    lst = sub.add_parser("list", help="every subscription and its delivery health")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(handler=run_list)
    deliver = sub.add_parser("deliver", help="deliver what is pending on defender-push now")
    deliver.add_argument("--json", action="store_true", help="machine-readable output")
    deliver.set_defaults(handler=run_deliver)
    redrive = sub.add_parser(
        "redrive", help="put dead-lettered deliveries and poison messages back on the queue"
    )
    redrive.add_argument("--subscription", metavar="ID", help="only this subscription's")
    redrive.add_argument("--json", action="store_true", help="machine-readable output")
    redrive.set_defaults(handler=run_redrive)
    rekey = sub.add_parser("rekey", help="seal every callback URL under the current key")
    rekey.set_defaults(handler=run_rekey)


def _require_key() -> None:

    if services().settings.http.signing_key is None:
        raise ConfigError("push needs the API_SIGNING_KEY setting")


def run_add(args: argparse.Namespace, out: TextIO) -> int:
    """``subscriptions add``."""
    import sys

    _require_key()
    url = sys.stdin.readline().strip() if args.url == "-" else args.url
    try:
        flt = Filter(
            canonical_severity(args.min_severity) if args.min_severity else None,
            tuple(canonical_status(s, for_filter=True) for s in args.status or ()),
            tuple(args.tag or ()),
            tenant_ids(args.tenant, ()) if args.tenant else None,
        )
        svc = services()
        target = svc.push_callbacks().check(url)
    except ConfigError as exc:  # a refused callback is the argument's problem, not a setting's
        print(f"error: python -m shared subscriptions add: {exc}", file=sys.stderr)
        return EXIT_USAGE
    store = svc.subscriptions()
    sub, created = store.save(url, target.host, flt)
    out.write(
        json.dumps({**sub.describe(), "new": created, "secret": store.secret(sub)}, indent=2) + "\n"
    )
    return EXIT_OK


def run_list(args: argparse.Namespace, out: TextIO) -> int:
    """``subscriptions list``."""

    svc = services()
    now = svc.clock()
    subs = sorted(svc.subscriptions().all(), key=lambda s: s.created)
    rows = [{**s.describe(), **s.health(now)} for s in subs]
    unhealthy = any(r["status"] != "active" or r["breaker"] == "open" for r in rows)
    if args.json:
        json.dump({"subscriptions": rows}, out, indent=2)
        out.write("\n")
        return EXIT_FAILED if unhealthy else EXIT_OK
    out.write(
        f"{'id':<33} {'host':<40} {'status':<8} {'breaker':<8} {'last success':<21} problem\n"
    )
    for r in rows:
        problem = r["dropReason"] or r["lastError"] or "-"
        if not r["sealed"]:
            problem = f"stored unsealed: run `subscriptions rekey`; {problem}"
        out.write(
            f"{r['id']:<33} {r['host'][:40]:<40} {r['status']:<8} {r['breaker']:<8} "
            f"{r['lastSuccess'] or '-':<21} {problem[:90]}\n"
        )
    if not rows:
        out.write("no subscriptions\n")
    return EXIT_FAILED if unhealthy else EXIT_OK


def run_deliver(args: argparse.Namespace, out: TextIO) -> int:
    """``subscriptions deliver``."""

    _require_key()
    backlog = services().push_backlog()
    worker = services().push_worker()
    report = backlog.drain(worker.drain)
    data = report.to_json() if report is not None else {"messages": 0}
    if args.json:
        json.dump(data, out, indent=2)
        out.write("\n")
    else:
        out.write(", ".join(f"{k} {v}" for k, v in data.items() if v) or "nothing pending")
        out.write("\n")
    return EXIT_OK


def run_redrive(args: argparse.Namespace, out: TextIO) -> int:
    """``subscriptions redrive``."""

    _require_key()
    svc = services()
    requeued, left = svc.push_worker().redrive(args.subscription)
    poison = 0
    if not args.subscription and svc.queue_service is not None:
        poison = svc.push_backlog().requeue_poison(svc.queue(PUSH_QUEUE).send)
    data = {"requeued": requeued, "poisonRequeued": poison, "leftSubscriptionGone": left}
    if args.json:
        json.dump(data, out, indent=2)
        out.write("\n")
    else:
        out.write(
            f"{requeued} dead-lettered delivery(ies) and {poison} poison message(s) back on "
            f"{PUSH_QUEUE}" + (f"; {left} left (their subscription is gone)" if left else "") + "\n"
        )
    return EXIT_OK


def run_rekey(args: argparse.Namespace, out: TextIO) -> int:
    """``subscriptions rekey``."""

    _require_key()
    changed = services().subscriptions().rekey()
    out.write(f"{changed} subscription(s) sealed under the current key\n")
    return EXIT_OK
