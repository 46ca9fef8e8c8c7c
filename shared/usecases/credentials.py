"""The doctor behind ``python -m shared check``: credential, token and roles, per tenant.

For each tenant of the registry it checks, in order: that the app's credential can be read from
Key Vault (and when it expires), that a token can be acquired, and that the token's ``roles``
claim holds what each enabled feature needs. A failure names the tenant and the fix. Only
claims are read from a token (``shared.credentials.claims``); no secret or token is ever put
in the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from shared.core.clock import Clock, format_utc
from shared.core.errors import AuthError, BridgeError, ConsentError
from shared.credentials.claims import ClaimsError, check_roles, decode_claims
from shared.storage.values import TenantEntry

if TYPE_CHECKING:
    from shared.ports import AppTokens, CredentialSource

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one check: a status and a short, secret-free detail."""

    status: Status
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TenantReport:
    """All checks of one tenant; ``fix`` says what to do when something failed."""

    tenant: str
    name: str | None
    keyvault: Step
    token: Step
    roles: Step
    fix: str | None = None

    @property
    def ok(self) -> bool:
        """No check failed (warnings and skips do not fail a tenant)."""
        return all(s.status != "fail" for s in (self.keyvault, self.token, self.roles))


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The whole report; ``ok`` only if every enabled tenant passed."""

    credential: Step
    tenants: tuple[TenantReport, ...] = field(default_factory=tuple)
    credential_fix: str | None = None
    #: the configured API surface (``shared.core.retirement``): warns, then fails, on legacy
    api: Step = field(default_factory=lambda: Step("ok"))
    api_fix: str | None = None
    #: who the HTTP API admits (``shared.api.access``): warns in key mode or on a retired setting
    http_auth: Step = field(default_factory=lambda: Step("ok"))
    http_auth_fix: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the API surface, the credential and every tenant passed."""
        return (
            self.api.status != "fail"
            and self.credential.status != "fail"
            and all(t.ok for t in self.tenants)
        )

    def to_json(self) -> dict[str, Any]:
        """The ``check --json`` document."""
        return {
            "ok": self.ok,
            "api": {**asdict(self.api), "fix": self.api_fix},
            "http_auth": {**asdict(self.http_auth), "fix": self.http_auth_fix},
            "credential": {**asdict(self.credential), "fix": self.credential_fix},
            "tenants": [{**asdict(t), "ok": t.ok} for t in self.tenants],
        }


def check_credential(
    source: CredentialSource, *, clock: Clock, warn_within: timedelta
) -> tuple[Step, str | None]:
    """Read the credential once: its status, and the fix when it failed."""
    try:
        info = source.describe()
    except AuthError as exc:
        return Step("fail", str(exc)), _credential_fix(source)
    label = f"{info.kind} '{info.name}'"
    if info.version:
        label += f" version {info.version[:12]}"
    if info.expires_on is None:
        return Step("ok", f"{label}, no expiry"), None
    left = info.expires_on - clock()
    when = format_utc(info.expires_on)
    if left <= timedelta(0):
        return (
            Step("fail", f"{label} expired at {when}"),
            f"create a new {info.kind} for the app in Entra ID and store it in Key Vault under "
            f"'{info.name}'",
        )
    if left <= warn_within:
        return (
            Step("warn", f"{label} expires at {when} (in {left.days} days)"),
            f"rotate the {info.kind} before {when}: add a new one to the app, store it in Key "
            f"Vault under '{info.name}' (no restart needed)",
        )
    return Step("ok", f"{label}, expires {when}"), None


def _credential_fix(source: CredentialSource) -> str:
    if source.kind == "federated":
        return (
            "check the Function's user-assigned managed identity (IDENTITY_ENDPOINT, "
            "AZURE_CLIENT_ID) and the app's federated credential for it (issuer, the identity's "
            "principal id as subject, the cloud's token-exchange audience)"
        )
    return (
        "grant the Function's identity 'Key Vault Secrets User' on the vault and check "
        "KEY_VAULT_URL and the secret or certificate name"
    )


def check_tenants(
    tenants: Iterable[TenantEntry],
    *,
    tokens: AppTokens,
    scope: str,
    api: str,
    features: Sequence[str],
    credential: Step,
    credential_fix: str | None,
) -> list[TenantReport]:
    """Token and roles per tenant. A failure in one tenant never stops the others."""
    reports: list[TenantReport] = []
    for entry in tenants:
        if not entry.enabled:
            skip = Step("skip", "disabled in the tenant registry")
            reports.append(TenantReport(entry.tenant_id, entry.display_name, skip, skip, skip))
            continue
        if credential.status == "fail":
            reports.append(
                TenantReport(
                    entry.tenant_id,
                    entry.display_name,
                    credential,
                    Step("skip", "no credential"),
                    Step("skip", "no token"),
                    credential_fix,
                )
            )
            continue
        reports.append(_check_one(entry, tokens, scope, api, features, credential, credential_fix))
    return reports


def _check_one(
    entry: TenantEntry,
    tokens: AppTokens,
    scope: str,
    api: str,
    features: Sequence[str],
    credential: Step,
    credential_fix: str | None,
) -> TenantReport:
    tid, name = entry.tenant_id, entry.display_name
    try:
        token = tokens.token(tid, scope)
    except ConsentError as exc:
        return TenantReport(
            tid, name, credential, Step("fail", str(exc)), Step("skip", "no token"), exc.action
        )
    except BridgeError as exc:
        return TenantReport(
            tid,
            name,
            credential,
            Step("fail", str(exc)),
            Step("skip", "no token"),
            "see the error; Entra's correlation id helps Microsoft support"
            if isinstance(exc, AuthError) and exc.correlation_id
            else None,
        )
    token_step = Step("ok", f"token for {scope}")
    try:
        granted = decode_claims(token).roles
    except ClaimsError as exc:
        return TenantReport(tid, name, credential, token_step, Step("fail", str(exc)))
    checks = check_roles(api, features, granted)
    missing = [c for c in checks if not c.ok]
    if not missing:
        detail = ", ".join(f"{c.feature}: ok" for c in checks)
        return TenantReport(tid, name, credential, token_step, Step("ok", detail), credential_fix)
    needs = "; ".join(f"{c.feature} needs {' or '.join(c.needs)}" for c in missing)
    fix = (
        f"add the application permission(s) {', '.join(c.needs[0] for c in missing)} to the "
        f"app ({api} API) and have an admin of tenant {tid} grant consent: "
        f"{tokens.consent_url(tid, scope)}"
    )
    return TenantReport(
        tid,
        name,
        credential,
        token_step,
        Step("fail", f"{needs} (token has: {', '.join(granted) or 'no roles'})"),
        fix,
    )


def render_table(report: CheckReport) -> str:
    """The report as a plain-text table, one line per tenant plus its fix."""
    lines = [f"credential: {report.credential.status.upper()} {report.credential.detail}"]
    if report.credential_fix and report.credential.status != "ok":
        lines.append(f"  fix: {report.credential_fix}")
    if report.api.status != "ok":
        lines.append(f"api: {report.api.status.upper()} {report.api.detail}")
        if report.api_fix:
            lines.append(f"  fix: {report.api_fix}")
    if report.http_auth.status != "ok":
        lines.append(f"http api: {report.http_auth.status.upper()} {report.http_auth.detail}")
        if report.http_auth_fix:
            lines.append(f"  fix: {report.http_auth_fix}")
    lines.append(f"{'tenant':<38} {'name':<20} {'keyvault':<8} {'token':<6} {'roles':<6} result")
    for t in report.tenants:
        result = (
            "skipped"
            if t.token.status == "skip" and t.keyvault.status == "skip"
            else ("ok" if t.ok else "FAILED")
        )
        lines.append(
            f"{t.tenant:<38} {(t.name or '-')[:20]:<20} {t.keyvault.status:<8} "
            f"{t.token.status:<6} {t.roles.status:<6} {result}"
        )
        for step in (t.token, t.roles):
            if step.status in ("fail", "warn"):
                lines.append(f"  {step.detail}")
        if t.fix and not t.ok:
            lines.append(f"  fix: {t.fix}")
    return "\n".join(lines) + "\n"
