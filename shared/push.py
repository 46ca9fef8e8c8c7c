"""Push subscriptions: deliver new and updated incidents to webhooks (Logic Apps HTTP Webhook
trigger and custom-connector triggers).

A subscription is a row of the ``DefenderSubscriptions`` table: a callback URL and a filter
(minimum severity, statuses, tags, tenants). ``PushNotifier.notify(tenant, incidents)`` has the
signature of the ingestion ``notify`` hook (board item 2): after each committed slice it POSTs
every matching incident to each subscriber, one request per incident (one workflow run each),
signed with HMAC-SHA256 of the body under that subscription's secret
(``X-Defender-Signature: sha256=<hex>``). The secret is derived from ``API_SIGNING_KEY`` and the
subscription id, so it is never stored, and is shown to the subscriber once, at subscription.

Delivery retries transient failures (5xx, 429, network) with exponential backoff, and after
``API_PUSH_MAX_ATTEMPTS`` writes the delivery to the ``defender-push-deadletter`` container
(without the callback URL, whose ``sig`` query parameter is a credential). A 401, 403, 404 or
410 means the subscriber is gone (a deleted or disabled workflow): the subscription is dropped.
Callback URLs must be https and end with an allow-listed host suffix (``API_PUSH_HOST_SUFFIXES``,
default ``.logic.azure.com``): nothing is ever sent anywhere else, and redirects are not
followed. A notify failure is logged and never fails ingestion.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.clock import Clock, format_utc
from shared.errors import BridgeError, ConfigError, StorageError
from shared.storage import create_container_if_not_exists

if TYPE_CHECKING:
    import requests
    from azure.data.tables import TableClient
    from azure.storage.blob import ContainerClient

    from shared.defender.model import Incident

log = logging.getLogger(__name__)

SUBSCRIPTION_TABLE = "DefenderSubscriptions"
DEADLETTER_CONTAINER = "defender-push-deadletter"
PARTITION = "subscription"
SIGNATURE_HEADER = "X-Defender-Signature"
SEVERITY_ORDER = ("unknown", "informational", "low", "medium", "high")
#: the subscriber is gone: drop the subscription
GONE = frozenset({401, 403, 404, 410})
MAX_URL = 2048


@dataclass(frozen=True)
class Subscription:
    """A subscriber and its filter (``tenants`` None: every registered tenant)."""

    id: str
    callback_url: str
    min_severity: str | None
    statuses: tuple[str, ...]
    tags: tuple[str, ...]
    tenants: tuple[str, ...] | None
    created: str

    def matches(self, tenant: str, incident: Incident) -> bool:
        """Whether ``incident`` of ``tenant`` passes this filter."""
        if self.tenants is not None and tenant not in self.tenants:
            return False
        if self.min_severity is not None and _rank(incident.severity) < _rank(self.min_severity):
            return False
        if self.statuses and incident.status not in self.statuses:
            return False
        wanted = {t.lower() for t in self.tags}
        return not wanted or bool(wanted & {t.lower() for t in incident.tags})

    def describe(self) -> dict[str, Any]:
        """The subscription as shown to its owner (never the callback URL: it holds a sig)."""
        return {
            "id": self.id,
            "minSeverity": self.min_severity,
            "statuses": list(self.statuses),
            "tags": list(self.tags),
            "tenants": list(self.tenants) if self.tenants is not None else None,
            "created": self.created,
        }


def _rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else 0


def check_callback_url(url: str, suffixes: Sequence[str]) -> str:
    """``url`` if it is an https URL on an allow-listed host.

    Raises:
        ConfigError: not https, no host, credentials in it, too long, or a host not allowed.
    """
    if len(url) > MAX_URL:
        raise ConfigError(f"the callback URL is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ConfigError("the callback URL is not a valid URL") from None
    if parts.scheme != "https" or not host:
        raise ConfigError("the callback URL must be an https:// URL")
    if parts.username or parts.password:
        raise ConfigError("the callback URL must not carry credentials")
    if not host_allowed(host, suffixes):
        raise ConfigError(
            f"the callback host '{host}' is not allowed (allowed: {', '.join(suffixes)}; "
            "see API_PUSH_HOST_SUFFIXES)"
        )
    return url


def host_allowed(host: str, suffixes: Iterable[str]) -> bool:
    """``host`` equals an entry or ends with an entry that starts with a dot."""
    host = host.lower().rstrip(".")
    for suffix in suffixes:
        if suffix.startswith(".") and host.endswith(suffix) and len(host) > len(suffix):
            return True
        if host == suffix.lstrip("."):
            return True
    return False


def subscription_secret(signing_key: str, subscription_id: str) -> str:
    """The per-subscription HMAC secret (derived, never stored)."""
    return hmac.new(
        signing_key.encode("utf-8"), f"push:{subscription_id}".encode(), hashlib.sha256
    ).hexdigest()


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>`` of ``body`` under ``secret``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _callback_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


class SubscriptionStore:
    """Subscriptions as table rows."""

    def __init__(self, table: TableClient, clock: Clock) -> None:
        self._table = table
        self._clock = clock
        self._ready = False

    def _ensure(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        if not self._ready:
            with contextlib.suppress(ResourceExistsError):
                self._table.create_table()
            self._ready = True

    def add(
        self,
        callback_url: str,
        *,
        min_severity: str | None,
        statuses: Sequence[str],
        tags: Sequence[str],
        tenants: Sequence[str] | None,
    ) -> Subscription:
        """Store a new subscription (a fresh id each time: Logic Apps re-subscribes on save).

        Raises:
            StorageError: the table could not be written.
        """
        from azure.core.exceptions import AzureError

        sub = Subscription(
            id=secrets.token_hex(16),
            callback_url=callback_url,
            min_severity=min_severity,
            statuses=tuple(statuses),
            tags=tuple(tags),
            tenants=tuple(tenants) if tenants is not None else None,
            created=format_utc(self._clock()),
        )
        entity = {
            "PartitionKey": PARTITION,
            "RowKey": sub.id,
            "CallbackUrl": callback_url,
            "CallbackKey": _callback_key(callback_url),
            "Filter": json.dumps(
                {
                    "minSeverity": sub.min_severity,
                    "statuses": list(sub.statuses),
                    "tags": list(sub.tags),
                    "tenants": sub.tenants,
                }
            ),
            "Created": sub.created,
        }
        try:
            self._ensure()
            self._table.create_entity(entity)
        except AzureError as exc:
            raise StorageError(f"could not store the subscription ({type(exc).__name__})") from exc
        return sub

    def get(self, subscription_id: str) -> Subscription | None:
        """One subscription, or None."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        if not _is_id(subscription_id):
            return None
        try:
            entity = self._table.get_entity(PARTITION, subscription_id)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageError(f"could not read subscriptions ({type(exc).__name__})") from exc
        return _from_entity(entity)

    def by_callback(self, callback_url: str) -> list[Subscription]:
        """Every subscription with this callback URL."""
        key = _callback_key(callback_url)
        return list(self._query(f"PartitionKey eq '{PARTITION}' and CallbackKey eq '{key}'"))

    def all(self) -> list[Subscription]:
        """Every subscription."""
        return list(self._query(f"PartitionKey eq '{PARTITION}'"))

    def _query(self, flt: str) -> Iterable[Subscription]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            entities = list(self._table.query_entities(flt))
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise StorageError(f"could not read subscriptions ({type(exc).__name__})") from exc
        return [s for s in (_from_entity(e) for e in entities) if s is not None]

    def remove(self, subscription_id: str) -> None:
        """Delete a subscription (absent: nothing to do)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            self._table.delete_entity(PARTITION, subscription_id)
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise StorageError(f"could not delete the subscription ({type(exc).__name__})") from exc


def _is_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def _from_entity(entity: Any) -> Subscription | None:
    try:
        flt = json.loads(entity.get("Filter") or "{}")
        tenants = flt.get("tenants")
        return Subscription(
            id=str(entity["RowKey"]),
            callback_url=str(entity["CallbackUrl"]),
            min_severity=flt.get("minSeverity"),
            statuses=tuple(flt.get("statuses") or ()),
            tags=tuple(flt.get("tags") or ()),
            tenants=tuple(tenants) if tenants is not None else None,
            created=str(entity.get("Created", "")),
        )
    except (KeyError, ValueError, TypeError, AttributeError):
        log.warning("subscription row %s is malformed; ignored", entity.get("RowKey"))
        return None


def delivery_body(tenant: str, incident: Incident) -> dict[str, Any]:
    """What one delivery POSTs (the schema of ``x-ms-notification-content``)."""
    from shared.usecases import incident_row

    event = "created" if incident.created == incident.last_update else "updated"
    return {"event": event, "tenant": tenant, "incident": incident_row(incident)}


class PushNotifier:
    """Delivers incidents to matching subscribers (the ingestion ``notify`` hook).

    Args:
        store: the subscriptions.
        session: the HTTP session for deliveries (TLS verified, no redirects followed).
        signing_key: ``API_SIGNING_KEY`` (None: push is off, nothing is delivered).
        suffixes: the allowed callback host suffixes.
        dead_letter: the container for deliveries that kept failing.
        max_attempts, base_delay, sleep: retry policy (sleep injected for tests).
    """

    def __init__(
        self,
        *,
        store: SubscriptionStore,
        session: requests.Session,
        signing_key: str | None,
        suffixes: Sequence[str],
        dead_letter: ContainerClient,
        clock: Clock,
        max_attempts: int = 4,
        base_delay: float = 1.0,
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._session = session
        self._key = signing_key
        self._suffixes = tuple(suffixes)
        self._dead_letter = dead_letter
        self._clock = clock
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._timeout = timeout
        self._sleep = sleep
        self.delivered = 0
        self.dead_lettered = 0
        self.dropped = 0

    def notify(self, tenant: str, incidents: Sequence[Incident]) -> None:
        """Deliver ``incidents`` (newly stored versions of ``tenant``) to matching subscribers.

        Never raises: a failure is logged (ingestion must not fail because a webhook did).
        """
        if self._key is None or not incidents:
            return
        try:
            subscriptions = self._store.all()
        except BridgeError as exc:
            log.error("push: could not read subscriptions: %s", exc)
            return
        for sub in subscriptions:
            matching = [i for i in incidents if sub.matches(tenant, i)]
            for incident in matching:
                try:
                    if not self._deliver(sub, tenant, incident):
                        break  # subscription dropped
                except Exception:  # noqa: BLE001 - a webhook bug must never stop ingestion
                    log.exception("push: delivery to subscription %s failed", sub.id)

    def _deliver(self, sub: Subscription, tenant: str, incident: Incident) -> bool:
        """One delivery with retries; False when the subscription was dropped."""
        import requests

        host = (urlsplit(sub.callback_url).hostname or "").lower()
        if not host_allowed(host, self._suffixes):
            log.warning("push: subscription %s: host %s no longer allowed; skipped", sub.id, host)
            return True
        assert self._key is not None
        body = json.dumps(delivery_body(tenant, incident), default=str).encode("utf-8")
        delivery = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(subscription_secret(self._key, sub.id), body),
            "X-Defender-Delivery": delivery,
            "X-Defender-Subscription": sub.id,
        }
        reason = ""
        for attempt in range(1, self._max_attempts + 1):
            try:
                response = self._session.post(
                    sub.callback_url,
                    data=body,
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                )
                status = response.status_code
            except requests.RequestException as exc:
                status, reason = 0, type(exc).__name__
            if 200 <= status < 300:
                self.delivered += 1
                return True
            if status in GONE:
                log.info("push: subscription %s answered %d: dropped", sub.id, status)
                self._store.remove(sub.id)
                self.dropped += 1
                return False
            reason = reason if status == 0 else f"HTTP {status}"
            if attempt < self._max_attempts:
                self._sleep(min(60.0, self._base_delay * 2 ** (attempt - 1)))
        self._dead_letter_write(sub, delivery, body, reason)
        return True

    def _dead_letter_write(
        self, sub: Subscription, delivery: str, body: bytes, reason: str
    ) -> None:
        from azure.core.exceptions import AzureError

        record = {
            "subscription": sub.id,
            "delivery": delivery,
            "reason": reason,
            "attempts": self._max_attempts,
            "at": format_utc(self._clock()),
            "body": json.loads(body),
        }
        log.warning(
            "push: delivery %s to subscription %s failed %d times (%s): dead-lettered",
            delivery,
            sub.id,
            self._max_attempts,
            reason,
        )
        try:
            create_container_if_not_exists(self._dead_letter)
            self._dead_letter.upload_blob(
                f"{sub.id}/{delivery}.json", json.dumps(record).encode("utf-8"), overwrite=True
            )
            self.dead_lettered += 1
        except AzureError as exc:
            log.error("push: could not dead-letter delivery %s (%s)", delivery, type(exc).__name__)


def parse_subscription_body(data: Any) -> dict[str, Any]:
    """``{"callbackUrl": ...}`` with filter fields, or the bare URL string (what Logic Apps
    sends either way), as a dict with ``callbackUrl``."""
    if isinstance(data, str):
        return {"callbackUrl": data.strip()}
    return data if isinstance(data, dict) else {"_": data}


def now_utc(clock: Clock) -> datetime:
    """``clock()`` (a seam for tests)."""
    return clock()
