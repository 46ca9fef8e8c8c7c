"""``python -m shared consent-url``: the admin-consent URL for a customer tenant."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from shared.api.consent import consent_tenant, issue_state
from shared.cli.common import EXIT_OK
from shared.core.clock import utc_now
from shared.core.errors import ConfigError
from shared.core.settings import load, parse_redirect_uri
from shared.credentials.values import admin_consent_url


def register(commands: Any) -> None:
    """Add the ``consent-url`` command."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "consent-url",
        help="print the admin-consent URL for a tenant",
        description="Print the URL an admin of the tenant opens to grant the app its "
        "application permissions (partner onboarding).",
    )
    parser.add_argument(
        "--tenant", metavar="TENANT_ID", help="customer tenant (default: DEFENDER_TENANT_ID)"
    )
    parser.add_argument(
        "--redirect-uri",
        metavar="URL",
        help="where Entra sends the admin afterwards (must be registered on the app; default: "
        "DEFENDER_CONSENT_REDIRECT_URI)",
    )
    parser.add_argument(
        "--state",
        help="an opaque value Entra passes back unchanged on the redirect (default: a signed, "
        "expiring state for the onboarding callback when API_SIGNING_KEY is set)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Print the URL (no network I/O: it only needs the settings)."""

    settings = load()
    try:
        # one organisation's tenant: a link for common/organizations/consumers would let any
        # tenant's admin answer it
        tenant = consent_tenant(settings.identity.tenant_id if args.tenant is None else args.tenant)
    except ValueError as exc:
        raise ConfigError(f"--tenant: {exc}") from None
    redirect = settings.identity.consent_redirect_uri
    if args.redirect_uri is not None:
        try:
            redirect = parse_redirect_uri(args.redirect_uri.strip())
        except ValueError as exc:
            raise ConfigError(f"--redirect-uri: {exc}") from None
    state = args.state
    if state is None and settings.http.signing_key:
        # the onboarding callback (GET /api/consent/callback) records the tenant only with a
        # state it can verify: signed, for this tenant, expiring

        state = issue_state(
            settings.http.signing_key, tenant, utc_now(), settings.http.consent_state_lifetime
        )
    out.write(
        admin_consent_url(
            settings.defender.authority_url,
            tenant,
            settings.identity.client_id,
            settings.defender.api_scope,
            redirect,
            state,
        )
        + "\n"
    )
    return EXIT_OK
