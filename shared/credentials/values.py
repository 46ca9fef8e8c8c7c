"""The credentials wing's pure rules, with no SDK: what a face may use without loading MSAL.

The v2 admin-consent URL an admin opens to onboard a tenant, which tenant a user command acts
in, and what ``check`` may show of the app's credential (``CredentialInfo``). The adapters
(``tokens``, ``user``, ``sources``) import them from here (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlencode

from shared.core.errors import ConfigError
from shared.core.settings import Settings, parse_tenant_list


def admin_consent_url(
    authority_url: str,
    tenant: str,
    client_id: str,
    scope: str,
    redirect_uri: str,
    state: str | None = None,
) -> str:
    """The v2 admin-consent URL an admin of ``tenant`` opens to consent the app.

    ``scope`` is the API's ``/.default`` so the consent covers the app's application
    permissions; ``redirect_uri`` is required by the v2 endpoint and must be registered on the
    app; ``state`` comes back unchanged on the redirect (a caller binds the answer to its
    request with it): https://learn.microsoft.com/entra/identity-platform/v2-admin-consent

    Raises:
        ValueError: no redirect URI.
    """
    if not redirect_uri:
        raise ValueError("the v2 admin-consent URL needs a redirect_uri")
    params = {"client_id": client_id, "scope": scope, "redirect_uri": redirect_uri}
    if state:
        params["state"] = state
    return f"{authority_url.rstrip('/')}/{tenant}/v2.0/adminconsent?{urlencode(params)}"


def require_tenant(tenant: str | None, settings: Settings) -> str:
    """The tenant a user command acts in: the one given, or the home tenant.

    Raises:
        ConfigError: the given tenant is not a GUID.
    """
    if not tenant:
        return settings.identity.tenant_id

    try:
        return parse_tenant_list(tenant)[0]
    except (ValueError, IndexError):
        raise ConfigError(f"--tenant: not a tenant GUID: {tenant!r}") from None


CredentialKind = Literal["secret", "certificate", "federated"]


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    """What ``check`` may show about the credential: never the value.

    ``expires_on`` is the earliest of the Key Vault item's expiry and (for a certificate) the
    certificate's own end of validity; None when nothing expires.
    """

    kind: CredentialKind
    name: str
    version: str | None
    expires_on: datetime | None
    thumbprint: str | None = None


@dataclass(frozen=True, slots=True)
class SignedIn:
    """Who signed in (never the token)."""

    username: str
    tenant: str


@dataclass(frozen=True, slots=True)
class CallerClaims:
    """The validated identity of a caller.

    Attributes:
        roles: the app roles assigned to the caller on this API (``roles`` claim).
        scopes: the delegated permissions (``scp``): present only in a user's token.
        app_id: the client app the token was issued to (``appid`` v1, ``azp`` v2).
    """

    tenant: str
    object_id: str
    audience: str
    expires: datetime
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    app_id: str | None = None

    @property
    def account_id(self) -> str:
        """MSAL's ``home_account_id`` of this user."""
        return f"{self.object_id}.{self.tenant}"

    @property
    def is_user(self) -> bool:
        """A user's delegated token (``scp``), not an app's or a managed identity's."""
        return bool(self.scopes)

    @property
    def subject(self) -> str:
        """A stable name of the caller: ``<tenant>/<object id>``."""
        return f"{self.tenant}/{self.object_id}"
