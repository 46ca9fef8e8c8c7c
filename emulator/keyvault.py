"""Key Vault secrets stand-in: the challenge flow, versions, access policy and error bodies.

The SDK's first request carries no `Authorization` and must get 401 with a
`WWW-Authenticate: Bearer authorization=…, resource=…` challenge (azure-keyvault-secrets,
`azure/keyvault/secrets/_shared/challenge_auth_policy.py`); then a token for
`https://vault.azure.net` gets the `SecretBundle`
(https://learn.microsoft.com/rest/api/keyvault/secrets/get-secret/get-secret); 404
`SecretNotFound` and 403 access-policy bodies use the documented messages
(https://learn.microsoft.com/azure/key-vault/general/rest-error-codes). Times in `attributes`
are epoch seconds (ints).
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from emulator.entra import VAULT_RESOURCES, TokenError, TokenIssuer, bearer_token
from emulator.http import Request, Response, json_response
from emulator.model import Clock

# API versions the SDK releases default to (7.1 in azure-keyvault-secrets 4.2.0 up to 2026-04-01
# in 4.12.0), plus the older documented ones.
API_VERSIONS = frozenset(
    {"2016-10-01", "7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"}
)
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")


@dataclass(frozen=True, slots=True)
class SecretVersion:
    """One version of a secret."""

    version: str
    value: str
    created: datetime
    updated: datetime
    expires: datetime | None
    not_before: datetime | None = None
    enabled: bool = True
    content_type: str | None = None


@dataclass
class Vault:
    """Secrets (name -> versions, oldest first) and the principals allowed to get them."""

    name: str
    location: str
    tenant_id: str
    secrets: dict[str, list[SecretVersion]] = field(default_factory=dict)
    readers: set[str] = field(default_factory=set)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def set_secret(
        self,
        name: str,
        value: str,
        now: datetime,
        expires: datetime | None,
        content_type: str | None = None,
    ) -> SecretVersion:
        """Add a new current version of `name`."""
        version = SecretVersion(
            uuid.uuid4().hex, value, now, now, expires, content_type=content_type
        )
        self.secrets.setdefault(name.lower(), []).append(version)
        return version

    def disable(self, name: str, version: str) -> None:
        """Disable one version (it then answers 403 like a disabled secret)."""
        versions = self.secrets.get(name.lower(), [])
        self.secrets[name.lower()] = [
            replace(v, enabled=False) if v.version == version else v for v in versions
        ]


def _epoch(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


class KeyVaultService:
    """`GET /secrets/{name}[/{version}]` with the challenge flow."""

    def __init__(self, vault: Vault, issuer: TokenIssuer, clock: Clock, vault_url: str) -> None:
        self.vault = vault
        self.issuer = issuer
        self.clock = clock
        self.vault_url = vault_url

    def _challenge(self, message: str) -> Response:
        # The SDK reads the tenant from the first path segment of `authorization`
        # (azure-keyvault-secrets, `_shared/http_challenge.py`).
        header = (
            f'Bearer authorization="https://login.microsoftonline.com/{self.vault.tenant_id}", '
            f'resource="{VAULT_RESOURCES[0]}"'
        )
        return json_response(
            401,
            {"error": {"code": "Unauthorized", "message": message}},
            headers=[("WWW-Authenticate", header)],
        )

    def get_secret(self, request: Request, name: str, version: str) -> Response:
        """The SecretBundle of the current or given version."""
        api_version = request.param("api-version")
        if api_version not in API_VERSIONS:
            return json_response(
                400,
                {
                    "error": {
                        "code": "BadParameter",
                        "message": f"The specified version ({api_version}) is not recognized. "
                        "Consider using the latest supported version (2026-04-01).",
                    }
                },
            )
        token = bearer_token(request)
        if token is None:
            return self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
        try:
            claims = self.issuer.verify(token, VAULT_RESOURCES)
        except TokenError as exc:
            codes = {"audience": "AKV10022", "expired": "AKV10032"}
            return self._challenge(f"{codes.get(exc.reason, 'AKV10020')}: Invalid token: {exc}.")
        with self.vault.lock:
            oid = str(claims.values.get("oid", ""))
            if oid not in self.vault.readers:
                return json_response(
                    403,
                    {
                        "error": {
                            "code": "Forbidden",
                            "message": f"The user, group or application '{claims.caller}' does "
                            "not have secrets get permission on key vault "
                            f"'{self.vault.name};location={self.vault.location}'. For help "
                            "resolving this issue, please see "
                            "https://go.microsoft.com/fwlink/?linkid=2125287",
                            "innererror": {"code": "AccessDenied"},
                        }
                    },
                    tenant=claims.tenant_id,
                )
            versions = self.vault.secrets.get(name.lower(), []) if _NAME.match(name) else []
            found: SecretVersion | None
            if version:
                found = next((v for v in versions if v.version == version), None)
            else:
                found = versions[-1] if versions else None
        if found is None:
            label = f"{name}/{version}" if version else name
            return json_response(
                404,
                {
                    "error": {
                        "code": "SecretNotFound",
                        "message": f"A secret with (name/id) {label} was not found in this key "
                        "vault. If you recently deleted this secret you may be able to recover "
                        "it using the correct recovery command. For help resolving this issue, "
                        "please see https://go.microsoft.com/fwlink/?linkid=2125182",
                    }
                },
                tenant=claims.tenant_id,
            )
        if not found.enabled:
            return json_response(
                403,
                {
                    "error": {
                        "code": "Forbidden",
                        "message": "Operation get is not allowed on a disabled secret.",
                        "innererror": {"code": "SecretDisabled"},
                    }
                },
                tenant=claims.tenant_id,
            )
        return json_response(200, self.bundle(name, found), tenant=claims.tenant_id)

    def bundle(self, name: str, version: SecretVersion) -> dict[str, Any]:
        """The documented `SecretBundle` shape."""
        attributes: dict[str, Any] = {
            "enabled": version.enabled,
            "created": _epoch(version.created),
            "updated": _epoch(version.updated),
            "recoverableDays": 90,
            "recoveryLevel": "Recoverable+Purgeable",
        }
        if version.expires is not None:
            attributes["exp"] = _epoch(version.expires)
        if version.not_before is not None:
            attributes["nbf"] = _epoch(version.not_before)
        out: dict[str, Any] = {
            "value": version.value,
            "id": f"{self.vault_url}/secrets/{name.lower()}/{version.version}",
            "attributes": attributes,
            "tags": {},
        }
        if version.content_type:
            out["contentType"] = version.content_type
        return out
