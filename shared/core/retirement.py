"""The legacy Defender XDR API's retirement: what a ``DEFENDER_API=legacy`` deployment is told.

Microsoft retires the legacy MDE and XDR APIs (``api.security.microsoft.com``) fully on
2027-02-01; after that they "will no longer function", there is no automatic migration, and the
advanced hunting endpoints "will stop returning data on February 1, 2027" (message center
MC1220762, added 2026-01-22; https://learn.microsoft.com/graph/api/resources/security-api-overview;
docs/defender-service.md#legacy-retirement). So every legacy run warns, naming the date, and
``check`` warns before it and fails after it with the migration step. Pure: the caller passes
the time (injected clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

#: full retirement of the legacy APIs (MC1220762)
LEGACY_RETIREMENT = datetime(2027, 2, 1, tzinfo=UTC)
NOTICE = "MC1220762"
#: what to do, in this app's terms (the Graph permissions are those docs/deploy.md lists)
MIGRATION_STEP = (
    "switch to Microsoft Graph: set DEFENDER_API=graph, give the app the Graph application "
    "permissions SecurityIncident.Read.All (SecurityIncident.ReadWrite.All to update), "
    "SecurityAlert.Read.All and ThreatHunting.Read.All, admin-consent them in every tenant "
    "(python -m shared consent-url --tenant <id>), then run python -m shared check"
)


@dataclass(frozen=True, slots=True)
class ApiNotice:
    """The configured API surface's standing: ``ok``, ``warn`` (retiring) or ``fail`` (retired)."""

    status: Literal["ok", "warn", "fail"]
    detail: str
    fix: str | None = None


def api_notice(api: str, now: datetime) -> ApiNotice:
    """How ``api`` stands at ``now`` (timezone-aware)."""
    if api != "legacy":
        return ApiNotice("ok", "Microsoft Graph security API")
    when = LEGACY_RETIREMENT.date().isoformat()
    if now >= LEGACY_RETIREMENT:
        return ApiNotice(
            "fail",
            f"the legacy Defender XDR API (DEFENDER_API=legacy) was retired on {when} "
            f"({NOTICE}) and no longer works",
            MIGRATION_STEP,
        )
    days = (LEGACY_RETIREMENT - now).days
    return ApiNotice(
        "warn",
        f"the legacy Defender XDR API (DEFENDER_API=legacy) retires on {when} ({NOTICE}), in "
        f"{days} days; after that date it no longer works",
        MIGRATION_STEP,
    )
