"""``python -m shared tenants``: the tenant registry (onboarding, pause/resume, overrides) and
the poison queue (list, re-queue)."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from shared.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, services, tenant_ids
from shared.core.clock import format_utc
from shared.core.errors import ConfigError


def register(commands: Any) -> None:
    """Add the ``tenants`` command and its subcommands."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "tenants",
        help="the customer tenant registry and the poison queue",
        description="Onboard, pause, resume and remove customer tenants (the registry table, "
        "TENANT_REGISTRY_TABLE), and list or re-queue tenants whose ingestion ended in the "
        "poison queue.",
    )
    sub = parser.add_subparsers(dest="tenants_command", metavar="subcommand")
    sub.required = True

    add = sub.add_parser("add", help="onboard a tenant (or change its row)")
    add.add_argument("tenant", metavar="TENANT_ID")
    add.add_argument("--name", help="display name")
    add.add_argument("--api", choices=("graph", "legacy"), help="override DEFENDER_API")
    add.add_argument(
        "--lookback-days", type=int, metavar="N", help="override INGEST_LOOKBACK_DAYS (1-180)"
    )
    add.add_argument("--paused", action="store_true", help="add it paused (not ingested)")
    add.set_defaults(handler=_add)

    listing = sub.add_parser("list", help="every tenant with its overrides and consent state")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_list)

    for name, help_text, handler in (
        ("pause", "stop ingesting a tenant (kept in the registry)", _pause),
        ("resume", "ingest a paused tenant again; also lifts a consent or poison hold", _resume),
        ("remove", "delete a tenant's registry row and run state", _remove),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("tenant", metavar="TENANT_ID")
        p.set_defaults(handler=handler)

    poison = sub.add_parser("poison", help="tenants whose messages are in the poison queue")
    poison.add_argument("--json", action="store_true", help="machine-readable output")
    poison.set_defaults(handler=_poison)

    requeue = sub.add_parser(
        "requeue-poison", help="put poison messages back on the ingest queue (one per tenant)"
    )
    requeue.add_argument(
        "--tenant", action="append", metavar="TENANT_ID", help="only this tenant (repeatable)"
    )
    requeue.add_argument("--json", action="store_true", help="machine-readable output")
    requeue.set_defaults(handler=_requeue)


def _one(text: str) -> str:
    return tenant_ids([text], ())[0]


def _add(args: argparse.Namespace, out: TextIO) -> int:

    svc = services()
    svc.run_states()  # makes sure the table exists
    try:
        tid = svc.tenant_registry().set(
            _one(args.tenant),
            display_name=args.name,
            enabled=not args.paused,
            api=args.api,
            lookback_days=args.lookback_days,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    out.write(f"tenant {tid} {'added paused' if args.paused else 'added'}\n")
    return EXIT_OK


def _set_enabled(args: argparse.Namespace, out: TextIO, enabled: bool) -> int:

    svc = services()
    tid = _one(args.tenant)
    registry = svc.tenant_registry()
    if registry.get(tid) is None:
        print(f"error: tenant {tid} is not in the registry (add it first)", file=_stderr())
        return EXIT_USAGE
    svc.run_states()
    registry.set(tid, enabled=enabled)
    if enabled:
        svc.fanout().release_hold(tid)
    out.write(f"tenant {tid} {'resumed' if enabled else 'paused'}\n")
    return EXIT_OK


def _pause(args: argparse.Namespace, out: TextIO) -> int:
    return _set_enabled(args, out, False)


def _resume(args: argparse.Namespace, out: TextIO) -> int:
    return _set_enabled(args, out, True)


def _remove(args: argparse.Namespace, out: TextIO) -> int:

    svc = services()
    tid = _one(args.tenant)
    svc.run_states()
    existed = svc.tenant_registry().remove(tid)
    if tid in svc.settings.tenants:
        out.write(f"tenant {tid}: row removed, but INGEST_TENANTS still lists it\n")
    else:
        out.write(f"tenant {tid} {'removed' if existed else 'had no registry row'}\n")
    return EXIT_OK


def _list(args: argparse.Namespace, out: TextIO) -> int:

    svc = services()
    entries = svc.tenant_registry().entries(include_disabled=True)
    states = svc.run_states().all()
    rows: list[dict[str, Any]] = []
    for e in entries:
        state = states.get(e.tenant_id)
        rows.append(
            {
                "tenant": e.tenant_id,
                "name": e.display_name,
                "enabled": e.enabled,
                "source": e.source,
                "api": e.api,
                "lookback_days": e.lookback_days,
                "consent": state.consent if state else "unknown",
                "last_result": state.last_result if state else None,
            }
        )
    if args.json:
        json.dump({"tenants": rows}, out, indent=2)
        out.write("\n")
        return EXIT_OK
    out.write(
        f"{'tenant':<38} {'name':<24} {'state':<8} {'api':<7} {'lookback':>8}  "
        f"{'consent':<8} last result\n"
    )
    for r in rows:
        out.write(
            f"{r['tenant']:<38} {(r['name'] or '-')[:24]:<24} "
            f"{'enabled' if r['enabled'] else 'paused':<8} {r['api'] or '-':<7} "
            f"{r['lookback_days'] or '-'!s:>8}  {r['consent']:<8} {r['last_result'] or '-'}\n"
        )
    return EXIT_OK


def _poison(args: argparse.Namespace, out: TextIO) -> int:

    svc = services()
    report = poison_report(svc)
    if args.json:
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        out.write(f"{report['count']} message(s) in defender-ingest-poison\n")
        for p in report["poison"]:
            out.write(
                f"{p['tenant'] or '(unreadable)':<38} since {p['inserted_on'] or '?'}  "
                f"{p['last_error'] or p['problem'] or '-'}\n"
            )
    return EXIT_FAILED if report["count"] else EXIT_OK


def poison_report(svc: Any) -> dict[str, Any]:
    """The poison queue with each tenant's last error (also used by ``check``)."""

    queue = svc.ingest_queue()
    states = svc.run_states().all()
    peeked = queue.poison()
    entries = []
    for p in peeked:
        state = states.get(p.tenant) if p.tenant else None
        entries.append(
            {
                "tenant": p.tenant,
                "reason": p.message.reason if p.message else None,
                "inserted_on": format_utc(p.inserted_on) if p.inserted_on else None,
                "problem": p.problem,
                "last_error": state.last_error if state else None,
                "last_error_code": state.last_error_code if state else None,
            }
        )
    return {"count": max(queue.poison_count(), len(entries)), "poison": entries}


def _requeue(args: argparse.Namespace, out: TextIO) -> int:

    wanted = tenant_ids(args.tenant, ()) or None
    result = services().fanout().requeue_poison(wanted)
    if args.json:
        json.dump(result, out, indent=2)
        out.write("\n")
    else:
        out.write(
            f"{len(result['requeued'])} tenant(s) re-queued; {result['left']} message(s) left; "
            f"{result['unreadable']} unreadable\n"
        )
        for tid in result["requeued"]:
            out.write(f"  {tid}\n")
    return EXIT_OK


def _stderr() -> TextIO:
    import sys

    return sys.stderr
