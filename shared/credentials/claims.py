"""Reading an access token's claims, and which app roles each feature needs. Pure: no I/O.

The claims are decoded WITHOUT verifying the signature. That is enough for what they are used
for here: to report a token's ``roles`` in ``check`` (a token this process just got from Entra
over TLS), and to pre-screen a caller's token before the on-behalf-of exchange, where Entra
itself verifies the incoming assertion and refuses a forged one. Nothing in this module may be
used to authorize a request on its own.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: App roles (application permissions) each feature needs, per API surface. Any one of the
#: alternatives satisfies a need (ReadWrite includes Read).
#: Legacy: https://learn.microsoft.com/defender-xdr/api-list-incidents ,
#: https://learn.microsoft.com/defender-xdr/api-update-incidents ,
#: https://learn.microsoft.com/defender-xdr/api-advanced-hunting
#: Graph: https://learn.microsoft.com/graph/api/security-list-incidents ,
#: https://learn.microsoft.com/graph/api/security-incident-update ,
#: https://learn.microsoft.com/graph/api/security-security-runhuntingquery
FEATURE_ROLES: dict[str, dict[str, tuple[str, ...]]] = {
    "legacy": {
        "ingest": ("Incident.Read.All", "Incident.ReadWrite.All"),
        "update": ("Incident.ReadWrite.All",),
        "hunting": ("AdvancedHunting.Read.All",),
    },
    "graph": {
        "ingest": ("SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All"),
        "update": ("SecurityIncident.ReadWrite.All",),
        "hunting": ("ThreatHunting.Read.All",),
    },
}


class ClaimsError(ValueError):
    """The text is not a JWT whose payload can be read."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The claims of a JWT access token (unverified; see the module docstring)."""

    values: Mapping[str, Any]

    def _text(self, name: str) -> str | None:
        value = self.values.get(name)
        return str(value) if value not in (None, "") else None

    @property
    def audience(self) -> str | None:
        """``aud``: the resource (or app) the token is for."""
        return self._text("aud")

    @property
    def tenant(self) -> str | None:
        """``tid``: the tenant that issued the token."""
        return self._text("tid")

    @property
    def object_id(self) -> str | None:
        """``oid``: the user's (or service principal's) object id in that tenant."""
        return self._text("oid")

    @property
    def expires(self) -> int | None:
        """``exp`` in epoch seconds, or None when absent or malformed."""
        value = self.values.get("exp")
        return int(value) if isinstance(value, int | float) else None

    @property
    def roles(self) -> tuple[str, ...]:
        """``roles``: app roles granted to an app (application permissions)."""
        roles = self.values.get("roles") or ()
        return tuple(str(r) for r in roles) if isinstance(roles, list | tuple) else ()

    @property
    def scopes(self) -> tuple[str, ...]:
        """``scp``: delegated permissions granted to the user's session."""
        return tuple(str(self.values.get("scp") or "").split())


def decode_claims(token: str) -> TokenClaims:
    """The payload of a compact JWT, not verified.

    Raises:
        ClaimsError: ``token`` is not a JWT with a JSON object payload. The message never
            contains the token.
    """
    parts = token.strip().split(".")
    if len(parts) != 3 or not parts[1]:
        raise ClaimsError("not a JWT (expected three dot-separated parts)")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        values = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (binascii.Error, UnicodeError, ValueError):
        raise ClaimsError("the JWT payload is not base64url-encoded JSON") from None
    if not isinstance(values, dict):
        raise ClaimsError("the JWT payload is not a JSON object")
    return TokenClaims(values)


@dataclass(frozen=True, slots=True)
class RoleCheck:
    """What one feature needs, and whether the granted roles cover it."""

    feature: str
    needs: tuple[str, ...]
    ok: bool


def check_roles(api: str, features: Iterable[str], granted: Iterable[str]) -> list[RoleCheck]:
    """For each feature, whether ``granted`` holds one of the roles it needs on ``api``.

    Raises:
        ValueError: an unknown API surface or feature (a programming error).
    """
    table = FEATURE_ROLES[api]
    have = set(granted)
    return [
        RoleCheck(feature, table[feature], any(r in have for r in table[feature]))
        for feature in features
    ]
