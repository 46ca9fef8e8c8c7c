"""``python -m shared check``: per tenant Key Vault access, token acquisition and token roles,
ingestion health, the poison queue, then the settings the Functions host reads itself."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

from shared.cli.common import EXIT_FAILED, EXIT_OK, services, tenant_ids
from shared.cli.tenants import poison_report
from shared.core.errors import ConfigError, StorageError
from shared.core.retirement import api_notice
from shared.storage.values import TenantEntry
from shared.usecases.credentials import (
    CheckReport,
    Step,
    check_credential,
    check_tenants,
    render_table,
)
from shared.usecases.doctor import check_host, http_auth_notes
from shared.usecases.ingest import ingestion_health

if TYPE_CHECKING:
    from shared.usecases.doctor import Finding


def register(commands: Any) -> None:
    """Add the ``check`` command."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "check",
        help="check host settings, credential, tokens and permissions for every tenant",
        description="For each tenant: the app's credential in Key Vault (and its expiry), a "
        "token, and the token's roles against DEFENDER_FEATURES; then the settings the "
        "Functions host reads itself (INGEST_SCHEDULE, DATA_STORAGE, AzureWebJobsStorage) and "
        "host.json against the app's settings. Exits 1 on any failure.",
    )
    parser.add_argument(
        "--tenant",
        action="append",
        metavar="TENANT_ID",
        help="check only this tenant (repeatable; default: every tenant of the registry)",
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable report")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the checks and print the table (or JSON)."""

    try:
        svc = services()
    except ConfigError:
        # the host-side settings are read by the host, not by Settings: report them anyway,
        # then the settings' own problems (the CLI prints them and exits 2)
        if not args.json:
            out.write(_host_lines(check_host()))
        raise
    s = svc.settings
    host = check_host(settings=s)
    notice = api_notice(s.defender.api, svc.clock())
    if args.tenant:
        entries = [TenantEntry(t) for t in tenant_ids(args.tenant, s.tenants)]
    else:
        entries = svc.tenant_registry().entries()
    credential, fix = check_credential(
        svc.tokens.credential, clock=svc.clock, warn_within=s.identity.credential_expiry_warning
    )
    report = CheckReport(
        credential,
        tuple(
            check_tenants(
                entries,
                tokens=svc.tokens,
                scope=s.defender.api_scope,
                api=s.defender.api,
                features=s.defender.features,
                credential=credential,
                credential_fix=fix,
            )
        ),
        credential_fix=fix,
        api=Step(notice.status, notice.detail),
        api_fix=notice.fix,
        **_http_auth(s),
    )
    # ingestion health: last success and lag of each tenant, from its checkpoint

    health = ingestion_health(
        svc.checkpoints(),
        [e.tenant_id for e in entries],
        now=svc.clock(),
        warn_after=s.ingest.lag_warning,
    )
    poison = _poison(svc)  # partner scale: tenants stuck in the poison queue
    if args.json:
        document = {
            **report.to_json(),
            "ingestion": [h.to_json() for h in health],
            "poison": poison,
            "host": [asdict(f) for f in host],
        }
        document["ok"] = document["ok"] and _host_ok(host)
        json.dump(document, out, indent=2)
        out.write("\n")
    else:
        out.write(render_table(report))
        out.write("ingestion:\n" + "".join(f"  {h.line()}\n" for h in health))
        out.write(_poison_lines(poison))
        out.write(_host_lines(host))
    stuck = bool(poison.get("count"))
    return EXIT_OK if report.ok and not stuck and _host_ok(host) else EXIT_FAILED


def _host_ok(host: list[Finding]) -> bool:
    return all(f.status != "fail" for f in host)


def _host_lines(host: list[Finding]) -> str:
    """The host-side findings: what each setting is for and who needs it, and any fix."""
    lines = ["host settings (read by the Functions host before any of our code runs):\n"]
    lines += [f"  {f.line()}\n" for f in host]
    return "".join(lines)


def _http_auth(settings: Any) -> dict[str, Any]:
    """Who the HTTP API admits: a warning in key mode (a key grants every tenant) and for a
    retired setting that is still set (it is not obeyed)."""

    notes = http_auth_notes(settings)
    if not notes:
        return {"http_auth": Step("ok", f"Entra ID tokens for {settings.api_audiences[0]}")}
    return {
        "http_auth": Step("warn", "; ".join(note for note, _ in notes)),
        "http_auth_fix": "; ".join(fix for _, fix in notes),
    }


def _poison(svc: Any) -> dict[str, Any]:
    """The poison queue report (``tenants poison``); a read failure is reported, not fatal."""

    if svc.settings.fanout.mode != "queue":
        return {"count": 0, "poison": []}
    try:
        return poison_report(svc)
    except StorageError as exc:
        return {"count": 0, "poison": [], "error": str(exc)}


def _poison_lines(poison: dict[str, Any]) -> str:
    if poison.get("error"):
        return f"poison queue: not read ({poison['error']})\n"
    if not poison.get("count"):
        return "poison queue: empty\n"
    lines = [
        f"poison queue: FAIL {poison['count']} message(s); fix the cause, then "
        "'python -m shared tenants requeue-poison'\n"
    ]
    for p in poison["poison"]:
        error = p.get("last_error") or p.get("problem") or "-"
        lines.append(f"  {p.get('tenant') or '(unreadable)'}: {error}\n")
    return "".join(lines)
