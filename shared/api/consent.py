"""The ``state`` of an admin-consent link: issued by ``consent-url``, checked by the callback.

Entra's admin-consent endpoint sends the admin back to the redirect URI with ``tenant``,
``admin_consent`` (or ``error``/``error_description``) and the ``state`` it was given
(https://learn.microsoft.com/entra/identity-platform/v2-admin-consent#successful-response).
Anyone can call the callback, so the state proves the link was ours: an HMAC-SHA256 over the
one tenant it was issued for, an expiry and a random 128-bit nonce, under a key derived from
``API_SIGNING_KEY`` (a Key Vault reference in Azure; no default exists, so without it no link
carries a state and the callback refuses everything). The callback spends the nonce once
(``shared.storage.tenants.ConsentStateStore``), so a link works at most once.

Only an organisation's tenant GUID can be consented: the multi-tenant names ``common``,
``organizations`` and ``consumers`` (and the Microsoft-account tenant's GUID behind
``consumers``) are refused on both sides, so no state can stand for "any tenant". Pure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.core.guids import guid

#: the tenant of personal Microsoft accounts, what ``consumers`` stands for
#: (https://learn.microsoft.com/entra/identity-platform/accounts-overview)
MSA_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
#: tenants that are not one organisation: never consented to, never onboarded
NOT_A_TENANT = frozenset({MSA_TENANT, str(uuid.UUID(int=0))})
#: the longest state accepted (ours are about 150 characters)
MAX_STATE = 1024


class StateError(ValueError):
    """The state is missing, forged, for another tenant or expired."""


@dataclass(frozen=True, slots=True)
class StateClaims:
    """What a valid state says: the tenant, its single-use nonce and when it expires."""

    tenant: str
    nonce: str
    expires: datetime


def consent_tenant(value: str) -> str:
    """The normalized tenant GUID an admin consents in.

    Raises:
        ValueError: ``common``, ``organizations``, ``consumers``, a domain name, the
            Microsoft-account tenant, the nil GUID or anything else that is not one
            organisation's tenant GUID.
    """
    tenant = guid(value)
    if tenant is None or tenant in NOT_A_TENANT:
        raise ValueError(
            "the tenant must be one organisation's tenant GUID (not common, organizations, "
            "consumers or a domain name)"
        )
    return tenant


def _key(signing_key: str) -> bytes:
    return hmac.new(signing_key.encode("utf-8"), b"consent-state", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_state(signing_key: str, tenant: str, now: datetime, lifetime: timedelta) -> str:
    """A single-use state for a consent link to ``tenant``, valid for ``lifetime``.

    Raises:
        ValueError: ``tenant`` is not one organisation's tenant GUID (``consent_tenant``).
    """
    payload = json.dumps(
        {
            "t": consent_tenant(tenant),
            "e": int((now + lifetime).timestamp()),
            "n": secrets.token_hex(16),
        },
        separators=(",", ":"),
    ).encode("utf-8")
    mac = hmac.new(_key(signing_key), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def verify_state(signing_key: str, state: str, tenant: str, now: datetime) -> StateClaims:
    """Check a state returned with a consent for ``tenant``; the caller then spends its nonce.

    Raises:
        StateError: malformed, not signed with our key, issued for another tenant (or for no
            single tenant), or expired.
    """
    if len(state) > MAX_STATE:
        raise StateError("the state is malformed")
    head, sep, tail = state.partition(".")
    try:
        payload, mac = _unb64(head), _unb64(tail)
    except (binascii.Error, ValueError):
        raise StateError("the state is malformed") from None
    if not sep or not hmac.compare_digest(
        mac, hmac.new(_key(signing_key), payload, hashlib.sha256).digest()
    ):
        raise StateError("the state was not issued by this app")
    try:
        data = json.loads(payload)
        issued_for, expires, nonce = str(data["t"]), int(data["e"]), str(data["n"])
        expiry = datetime.fromtimestamp(expires, UTC)
    except (ValueError, TypeError, KeyError, OverflowError, OSError):
        raise StateError("the state is malformed") from None
    if issued_for != tenant:
        raise StateError("the state was issued for another tenant")
    if len(nonce) != 32 or any(c not in "0123456789abcdef" for c in nonce):
        raise StateError("the state is malformed")
    if now >= expiry:
        raise StateError("the consent link has expired: ask for a new one")
    return StateClaims(issued_for, nonce, expiry)
