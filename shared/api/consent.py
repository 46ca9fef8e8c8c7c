"""The ``state`` of an admin-consent link: issued by ``consent-url``, checked by the callback.

Entra's admin-consent endpoint sends the admin back to the redirect URI with ``tenant``,
``admin_consent`` (or ``error``/``error_description``) and the ``state`` it was given
(https://learn.microsoft.com/entra/identity-platform/v2-admin-consent#successful-response).
Anyone can call the callback, so the state proves the link was ours: an HMAC-SHA256 over the
tenant it was issued for and an expiry, under a key derived from ``API_SIGNING_KEY`` (a Key
Vault reference in Azure; no default exists, so without it no link carries a state and the
callback refuses everything). Pure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from datetime import datetime, timedelta


class StateError(ValueError):
    """The state is missing, forged, for another tenant or expired."""


def _key(signing_key: str) -> bytes:
    return hmac.new(signing_key.encode("utf-8"), b"consent-state", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_state(signing_key: str, tenant: str, now: datetime, lifetime: timedelta) -> str:
    """A state for a consent link to ``tenant`` (``organizations``: any tenant), valid for
    ``lifetime``."""
    payload = json.dumps(
        {"t": tenant, "e": int((now + lifetime).timestamp()), "n": secrets.token_hex(8)},
        separators=(",", ":"),
    ).encode("utf-8")
    mac = hmac.new(_key(signing_key), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def verify_state(signing_key: str, state: str, tenant: str, now: datetime) -> None:
    """Check a state returned with a consent for ``tenant``.

    Raises:
        StateError: malformed, not signed with our key, issued for another tenant, or expired.
    """
    head, sep, tail = state.partition(".")
    try:
        payload, mac = _unb64(head), _unb64(tail)
    except (binascii.Error, ValueError):
        raise StateError("the state is malformed") from None
    if not sep or not hmac.compare_digest(
        mac, hmac.new(_key(signing_key), payload, hashlib.sha256).digest()
    ):
        raise StateError("the state was not issued by this app")
    data = json.loads(payload)
    issued_for, expires = str(data.get("t")), int(data.get("e", 0))
    if issued_for not in ("organizations", "common") and issued_for != tenant:
        raise StateError("the state was issued for another tenant")
    if now.timestamp() >= expires:
        raise StateError("the consent link has expired: ask for a new one")
