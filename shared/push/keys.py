"""Push keys: every key push needs, derived from ``API_SIGNING_KEY``; sealing of callback URLs;
delivery signatures. Pure (``cryptography`` for AES-GCM and HKDF).

Derivations (HKDF-SHA256, one ``info`` per purpose, so no key serves two purposes):

- the per-subscription signing secret: HMAC-SHA256(signing key, ``push:<subscription id>``),
  shown to the subscriber and never stored;
- the sealing key: AES-256-GCM over the callback URL, the subscription id as associated data
  (a sealed URL copied onto another row does not open); stored as ``v1.<key id>.<base64url of
  nonce + ciphertext>``, the key id naming which key sealed it;
- the lookup key: HMAC-SHA256 of the callback URL, the column a subscription is found by (so
  subscribing twice with one URL finds the first without opening every row);
- the id key: a new subscription's id is the first 32 hex digits of its keyed URL hash, so two
  concurrent subscribes with one URL collide on one row instead of making two.

Rotation: set ``API_SIGNING_KEY_PREVIOUS`` to the old value and ``API_SIGNING_KEY`` to the new
one; sealed URLs and lookup hashes of either key are read, and ``python -m shared subscriptions
rekey`` re-seals every row under the new key (then the previous setting can go). Subscribers'
signing secrets change with the key: they get the new one by subscribing again.

Signatures: ``X-Defender-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.delivery.body">``
under the subscription's secret, with ``X-Defender-Delivery: <delivery id>``; docs/push.md has
the receiver's check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.core.errors import ConfigError

_SALT = b"defender-bridge/push"
_VERSION = "v1"


class SealError(ConfigError):
    """A stored callback URL could not be opened (sealed under an unknown key, or altered)."""

    code = "callback_sealed"


def _derive(key: str, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=purpose.encode()).derive(
        key.encode("utf-8")
    )


class _Key:
    def __init__(self, key: str) -> None:
        self.seal = AESGCM(_derive(key, "callback-seal"))
        self.lookup = _derive(key, "callback-lookup")
        self.ident = _derive(key, "subscription-id")
        self.id = hmac.new(_derive(key, "key-id"), b"kid", hashlib.sha256).hexdigest()[:8]


class PushKeys:
    """The push keys of ``API_SIGNING_KEY`` (and, while rotating, ``API_SIGNING_KEY_PREVIOUS``)."""

    def __init__(self, signing_key: str, previous: str | None = None) -> None:
        self._signing = signing_key
        self._current = _Key(signing_key)
        self._keys = [self._current] + ([_Key(previous)] if previous else [])

    def __repr__(self) -> str:
        return "PushKeys(***)"

    def secret(self, subscription_id: str) -> str:
        """The subscription's signing secret (hex)."""
        return hmac.new(
            self._signing.encode("utf-8"), f"push:{subscription_id}".encode(), hashlib.sha256
        ).hexdigest()

    def new_id(self, url: str) -> str:
        """The id a new subscription of ``url`` gets (32 hex digits)."""
        return hmac.new(self._current.ident, url.encode(), hashlib.sha256).hexdigest()[:32]

    def lookups(self, url: str) -> list[str]:
        """The keyed hashes ``url`` may be stored under (current key first)."""
        return [hmac.new(k.lookup, url.encode(), hashlib.sha256).hexdigest() for k in self._keys]

    def seal(self, url: str, subscription_id: str) -> str:
        """``url`` encrypted under the current key, bound to ``subscription_id``."""
        nonce = os.urandom(12)
        sealed = self._current.seal.encrypt(nonce, url.encode(), subscription_id.encode())
        text = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_VERSION}.{self._current.id}.{text}"

    def current(self, sealed: str) -> bool:
        """Whether ``sealed`` was sealed under the current key."""
        return sealed.startswith(f"{_VERSION}.{self._current.id}.")

    def open(self, sealed: str, subscription_id: str) -> str:
        """The URL sealed in ``sealed``.

        Raises:
            SealError: an unknown key id (set API_SIGNING_KEY_PREVIOUS while rotating), or the
                text was altered or belongs to another subscription.
        """
        version, _, rest = sealed.partition(".")
        kid, _, text = rest.partition(".")
        key = next((k for k in self._keys if k.id == kid), None)
        if version != _VERSION or key is None:
            raise SealError(
                f"subscription {subscription_id}: its callback URL is sealed under another key "
                "(set API_SIGNING_KEY_PREVIOUS to the key it was sealed with)"
            )
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            plain = key.seal.decrypt(raw[:12], raw[12:], subscription_id.encode())
            return plain.decode("utf-8")
        except (InvalidTag, binascii.Error, ValueError, UnicodeDecodeError):
            raise SealError(
                f"subscription {subscription_id}: its sealed callback URL does not open"
            ) from None


def sign(secret: str, timestamp: int, delivery: str, body: bytes) -> str:
    """The ``X-Defender-Signature`` value: ``t=<timestamp>,v1=<hex>``."""
    message = f"{timestamp}.{delivery}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    secret: str, header: str, delivery: str, body: bytes, *, now: int, tolerance: int = 300
) -> bool:
    """The receiver's check (docs/push.md): a ``v1`` signature over ``t.delivery.body`` that
    matches in constant time, with ``t`` within ``tolerance`` seconds of ``now``."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, delivery, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))
