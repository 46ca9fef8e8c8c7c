"""Push subscriptions and loop-protection marks, in the ``DefenderSubscriptions`` table.

A subscription row (PartitionKey ``subscription``, RowKey its id) holds the callback URL sealed
(``Callback``, see ``shared.push.keys``), its keyed hash (``CallbackKey``: how a second
subscribe with the same URL finds the first), its host (shown in listings; the path and query
hold the receiver's credential and are never shown), the filter, and its health: ``Status``
(``active`` or ``dropped``), the circuit breaker, when the receiver started answering "gone",
the last success and failure. Rows written before URLs were sealed (a plaintext ``CallbackUrl``)
are still read, and ``rekey`` seals them.

Marks (PartitionKey ``echo|<tenant>``, RowKey the incident id): the time windows in which the
bridge itself updated that incident (``PATCH /incidents/{id}``, ``incidents update``). A version
whose last-update time falls in one is the bridge's own change, and by default is not pushed back
to the workflows that caused it (``API_PUSH_DELIVER_OWN_UPDATES``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.core.clock import Clock, format_utc, parse_utc
from shared.core.errors import ConfigError, StorageError
from shared.core.settings import API_SIGNING_KEY_SETTING
from shared.push.keys import PushKeys
from shared.push.messages import Breaker, Filter, is_subscription_id
from shared.storage.values import ACTIVE, DROPPED, Subscription, _text, revived

log = logging.getLogger(__name__)

SUBSCRIPTION_TABLE = "DefenderSubscriptions"
PARTITION = "subscription"
ECHO_PREFIX = "echo|"
#: marks older than this are pruned: ingestion reads a version well within it
ECHO_KEEP = timedelta(days=2)
#: Defender's clock and ours differ by less than this; a mark's window is widened by it
ECHO_SKEW = timedelta(seconds=5)
_HEALTH_RETRIES = 4


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_utc(value)
    except ValueError:
        return None


def legacy_key(url: str) -> str:
    """The unkeyed hash rows written before sealing were found by."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def _from_entity(entity: Mapping[str, Any]) -> Subscription | None:
    try:
        raw_filter = json.loads(entity.get("Filter") or "{}")
        legacy = entity.get("CallbackUrl") if not entity.get("Callback") else None
        host = str(entity.get("CallbackHost") or "")
        if legacy and not host:
            host = str(legacy).split("/")[2].split("?")[0] if "//" in str(legacy) else ""
        metadata = getattr(entity, "metadata", None)
        etag = metadata.get("etag", "") if isinstance(metadata, dict) else ""
        return Subscription(
            id=str(entity["RowKey"]),
            host=host,
            filter=Filter.from_json(raw_filter),
            created=str(entity.get("Created", "")),
            sealed=str(entity.get("Callback") or ""),
            legacy_url=str(legacy) if legacy else None,
            status=DROPPED if entity.get("Status") == DROPPED else ACTIVE,
            breaker=Breaker(
                int(entity.get("Failures") or 0),
                int(entity.get("Opens") or 0),
                _when(entity.get("OpenUntil")),
            ),
            gone_since=_when(entity.get("GoneSince")),
            last_success=_when(entity.get("LastSuccess")),
            last_failure=_when(entity.get("LastFailure")),
            last_error=str(entity.get("LastError")) if entity.get("LastError") else None,
            dropped_at=_when(entity.get("DroppedAt")),
            drop_reason=str(entity.get("DropReason")) if entity.get("DropReason") else None,
            etag=str(etag or ""),
        )
    except (KeyError, ValueError, TypeError, AttributeError):
        log.warning("subscription row %s is malformed; ignored", entity.get("RowKey"))
        return None


def health_columns(sub: Subscription) -> dict[str, Any]:
    """The health columns of ``sub`` (written by ``SubscriptionStore.update``)."""
    return {
        "Status": sub.status,
        "Failures": sub.breaker.failures,
        "Opens": sub.breaker.opens,
        "OpenUntil": _text(sub.breaker.open_until),
        "GoneSince": _text(sub.gone_since),
        "LastSuccess": _text(sub.last_success),
        "LastFailure": _text(sub.last_failure),
        "LastError": sub.last_error or "",
        "DroppedAt": _text(sub.dropped_at),
        "DropReason": sub.drop_reason or "",
    }


class SubscriptionStore:
    """Subscriptions as table rows; callback URLs sealed with ``keys`` (None: push is off, and
    what needs a key raises ``ConfigError``)."""

    def __init__(self, table: TableClient, keys: PushKeys | None, clock: Clock) -> None:
        self._table = table
        self._key_ring = keys
        self._clock = clock
        self._ready = False

    @property
    def _keys(self) -> PushKeys:
        if self._key_ring is None:
            raise ConfigError(f"push needs the {API_SIGNING_KEY_SETTING} setting")
        return self._key_ring

    def _ensure(self) -> None:
        if not self._ready:
            with contextlib.suppress(ResourceExistsError):
                self._table.create_table()
            self._ready = True

    def callback_url(self, sub: Subscription) -> str:
        """The subscription's callback URL, opened (a secret: never log it).

        Raises:
            SealError: it is sealed under a key this process does not hold.
        """
        if sub.legacy_url is not None:
            return sub.legacy_url
        return self._keys.open(sub.sealed, sub.id)

    def secret(self, sub: Subscription) -> str:
        """The subscription's signing secret."""
        return self._keys.secret(sub.id)

    def save(self, url: str, host: str, flt: Filter) -> tuple[Subscription, bool]:
        """Subscribe ``url`` with ``flt``: the existing subscription of this URL (same id),
        with the filter replaced and its health cleared, or a new one. Returns it and whether
        it is new.

        Raises:
            StorageError: the table could not be read or written.
        """
        now = format_utc(self._clock())
        try:
            self._ensure()
            found = self.find(url)
            if found is None:
                sub_id = self._keys.new_id(url)
                entity = {
                    "PartitionKey": PARTITION,
                    "RowKey": sub_id,
                    **self._url_columns(url, host, sub_id),
                    "Filter": json.dumps(flt.to_json()),
                    "Created": now,
                    "Updated": now,
                    **health_columns(Subscription(sub_id, host, flt, now)),
                }
                try:
                    self._table.create_entity(entity)
                    return Subscription(sub_id, host, flt, now, sealed=entity["Callback"]), True
                except ResourceExistsError:
                    found = self.get(sub_id)  # the same URL subscribed at the same moment
                    if found is None:
                        raise StorageError("the subscription vanished while being made") from None
            fresh = revived(replace(found, filter=flt, host=host))
            self._table.update_entity(
                {
                    "PartitionKey": PARTITION,
                    "RowKey": found.id,
                    **self._url_columns(url, host, found.id),
                    "Filter": json.dumps(flt.to_json()),
                    "Updated": now,
                    **health_columns(fresh),
                },
                mode=UpdateMode.MERGE,
            )
            return self.get(found.id) or fresh, False
        except AzureError as exc:
            raise StorageError(f"could not store the subscription ({type(exc).__name__})") from exc

    def _url_columns(self, url: str, host: str, sub_id: str) -> dict[str, Any]:
        return {
            "Callback": self._keys.seal(url, sub_id),
            "CallbackKey": self._keys.lookups(url)[0],
            "CallbackHost": host,
            "CallbackUrl": "",  # a legacy plaintext column, emptied when sealed
        }

    def find(self, url: str) -> Subscription | None:
        """The subscription of this callback URL (by its keyed hash), or None."""
        keys = [*self._keys.lookups(url), legacy_key(url)]
        terms = " or ".join(f"CallbackKey eq @k{n}" for n in range(len(keys)))
        params = {f"k{n}": k for n, k in enumerate(keys)}
        found = self._query(f"PartitionKey eq @p and ( {terms} )", {"p": PARTITION, **params})
        return found[0] if found else None

    def get(self, subscription_id: str) -> Subscription | None:
        """One subscription, or None."""
        if not is_subscription_id(subscription_id):
            return None
        try:
            entity = self._table.get_entity(PARTITION, subscription_id)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageError(f"could not read subscriptions ({type(exc).__name__})") from exc
        return _from_entity(entity)

    def all(self) -> list[Subscription]:
        """Every subscription."""
        return self._query("PartitionKey eq @p", {"p": PARTITION})

    def _query(self, flt: str, params: dict[str, Any]) -> list[Subscription]:
        try:
            entities = list(self._table.query_entities(flt, parameters=params))
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise StorageError(f"could not read subscriptions ({type(exc).__name__})") from exc
        return [s for s in (_from_entity(e) for e in entities) if s is not None]

    def remove(self, subscription_id: str) -> None:
        """Delete a subscription (absent: nothing to do)."""
        try:
            self._table.delete_entity(PARTITION, subscription_id)
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise StorageError(f"could not delete the subscription ({type(exc).__name__})") from exc

    def update(
        self, subscription_id: str, change: Callable[[Subscription], Subscription | None]
    ) -> Subscription | None:
        """Apply ``change`` to the subscription's health, guarded by its ETag (read again and
        re-applied when another worker wrote first). ``change`` returning None writes nothing.
        Returns the subscription as written (None: it is gone)."""
        for _ in range(_HEALTH_RETRIES):
            current = self.get(subscription_id)
            if current is None:
                return None
            updated = change(current)
            if updated is None or updated == current:
                return current
            entity = {"PartitionKey": PARTITION, "RowKey": subscription_id}
            entity.update(health_columns(updated))
            try:
                self._table.update_entity(
                    entity,
                    mode=UpdateMode.MERGE,
                    etag=current.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
                return updated
            except ResourceModifiedError:
                continue
            except ResourceNotFoundError:
                return None
            except AzureError as exc:
                raise StorageError(
                    f"could not record subscription health ({type(exc).__name__})"
                ) from exc
        log.info(
            "push: subscription %s health kept changing; this round not recorded", subscription_id
        )
        return None

    def rekey(self) -> int:
        """Seal every callback URL (legacy plaintext rows too) under the current key and store
        its current lookup hash. Returns how many rows changed.

        Raises:
            SealError: a row is sealed under a key this process does not hold.
            StorageError: the table could not be read or written.
        """
        changed = 0
        for sub in self.all():
            if sub.legacy_url is None and self._keys.current(sub.sealed):
                continue
            url = self.callback_url(sub)
            try:
                self._table.update_entity(
                    {
                        "PartitionKey": PARTITION,
                        "RowKey": sub.id,
                        **self._url_columns(url, sub.host, sub.id),
                    },
                    mode=UpdateMode.MERGE,
                )
            except AzureError as exc:
                raise StorageError(
                    f"could not re-seal a subscription ({type(exc).__name__})"
                ) from exc
            changed += 1
        return changed


class EchoMarks:
    """When the bridge itself updated an incident (loop protection)."""

    def __init__(self, table: TableClient, clock: Clock) -> None:
        self._table = table
        self._clock = clock
        self._ready = False

    def mark(self, tenant: str, incident_id: str, started: datetime, finished: datetime) -> None:
        """Record that the bridge updated ``incident_id`` between ``started`` and ``finished``.

        Raises:
            StorageError: the mark could not be written.
        """
        now = self._clock()
        try:
            if not self._ready:
                with contextlib.suppress(ResourceExistsError):
                    self._table.create_table()
                self._ready = True
            windows = self._windows_of(tenant, incident_id)
            windows = [w for w in windows if w[1] > now - ECHO_KEEP] + [(started, finished)]
            self._table.upsert_entity(
                {
                    "PartitionKey": ECHO_PREFIX + tenant,
                    "RowKey": incident_id,
                    "Windows": json.dumps(
                        [[format_utc(a), format_utc(b)] for a, b in windows[-20:]]
                    ),
                    "Updated": format_utc(now),
                },
                mode=UpdateMode.REPLACE,
            )
        except AzureError as exc:
            raise StorageError(
                f"could not record the bridge's own update ({type(exc).__name__})"
            ) from exc

    def _windows_of(self, tenant: str, incident_id: str) -> list[tuple[datetime, datetime]]:
        try:
            entity = self._table.get_entity(ECHO_PREFIX + tenant, incident_id)
        except ResourceNotFoundError:
            return []
        return _windows(entity)

    def own(
        self, tenant: str, versions: Iterable[tuple[str, datetime]]
    ) -> set[tuple[str, datetime]]:
        """Which (incident id, last update) of ``versions`` the bridge's own updates made.

        Raises:
            StorageError: the marks could not be read.
        """
        wanted = list(versions)
        ids = sorted({ident for ident, _ in wanted})
        marks: dict[str, list[tuple[datetime, datetime]]] = {}
        for start in range(0, len(ids), 50):
            batch = ids[start : start + 50]
            terms = " or ".join(f"RowKey eq @r{n}" for n in range(len(batch)))
            params: dict[str, Any] = {f"r{n}": rid for n, rid in enumerate(batch)}
            params["p"] = ECHO_PREFIX + tenant
            try:
                rows = list(
                    self._table.query_entities(
                        f"PartitionKey eq @p and ( {terms} )", parameters=params
                    )
                )
            except ResourceNotFoundError:
                return set()
            except AzureError as exc:
                raise StorageError(
                    f"could not read the bridge's own updates ({type(exc).__name__})"
                ) from exc
            for row in rows:
                marks[str(row["RowKey"])] = _windows(row)
        return {
            (ident, when)
            for ident, when in wanted
            if any(a - ECHO_SKEW <= when <= b + ECHO_SKEW for a, b in marks.get(ident, ()))
        }


def _windows(entity: Mapping[str, Any]) -> list[tuple[datetime, datetime]]:
    try:
        raw = json.loads(entity.get("Windows") or "[]")
        return [(parse_utc(a), parse_utc(b)) for a, b in raw]
    except (ValueError, TypeError):
        return []
