"""Push queue messages and the delivery decisions. Pure.

Two kinds of message travel on ``defender-push`` (JSON, base64 like every queue the Functions
host reads):

- ``changes``: ``{"v": 1, "kind": "changes", "tenant", "items": [item...]}``, written by the
  ingestion hook before the versions are stored;
- ``deliver``: ``{"v": 1, "kind": "deliver", "sub", "tenant", "attempt", "since", "items"}``:
  what one subscription still has to receive, and how many rounds it already failed.

An item is ``{"incident": <incident row>, "version": <the API's last-update text>, "event":
"created"|"updated"}``, or ``{"ref": {"id", "version"}, "event"}`` when one incident row alone
would not fit in a message (the worker then reads the row from the incident table). Messages are
packed to at most ``MAX_MESSAGE_BYTES`` of JSON, so with base64 they stay under the queue's
64 KiB (https://learn.microsoft.com/azure/storage/queues/storage-queues-introduction).

A delivery's id is a digest of (subscription, tenant, incident, version): the same version sent
again to the same subscription (a retry, a redrive, an at-least-once repeat) carries the same
id, which is what receivers deduplicate on.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from shared.core.clock import format_utc

#: the headers of a delivery (the signature scheme itself is in ``shared.push.keys``; the names
#: live here, with no cryptography import, for the HTTP face that only names them)
SIGNATURE_HEADER = "X-Defender-Signature"
DELIVERY_HEADER = "X-Defender-Delivery"
SUBSCRIPTION_HEADER = "X-Defender-Subscription"
MAX_MESSAGE_BYTES = 45_000
SEVERITY_ORDER = ("unknown", "informational", "low", "medium", "high")
#: the receiver is gone (a deleted or disabled workflow, a revoked callback)
GONE = frozenset({401, 403, 404, 410})
#: the receiver asks us to slow down: its ``Retry-After`` is honoured
BUSY = frozenset({429, 503})
#: consecutive failed rounds that open a subscription's circuit breaker
BREAKER_FAILURES = 5
#: the longest wait between rounds and the longest a breaker stays open
MAX_DELAY = 3600.0

Item = dict[str, Any]
Event = Literal["created", "updated"]


class BadMessageError(ValueError):
    """A push message that is not one of ours."""


@dataclass(frozen=True, slots=True)
class Filter:
    """What a subscription wants: ``tenants`` None means every tenant the bridge serves."""

    min_severity: str | None = None
    statuses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    tenants: tuple[str, ...] | None = None

    def matches(self, tenant: str, row: Mapping[str, Any]) -> bool:
        """Whether the incident ``row`` of ``tenant`` passes."""
        if self.tenants is not None and tenant not in self.tenants:
            return False
        severity = str(row.get("severity", ""))
        if self.min_severity is not None and _rank(severity) < _rank(self.min_severity):
            return False
        if self.statuses and row.get("status") not in self.statuses:
            return False
        wanted = {t.lower() for t in self.tags}
        tags = row.get("tags")
        have = {str(t).lower() for t in tags} if isinstance(tags, list) else set()
        return not wanted or bool(wanted & have)

    def to_json(self) -> dict[str, Any]:
        """The stored and shown form."""
        return {
            "minSeverity": self.min_severity,
            "statuses": list(self.statuses),
            "tags": list(self.tags),
            "tenants": list(self.tenants) if self.tenants is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Filter:
        """Parse the stored form (ValueError when malformed)."""
        tenants = data.get("tenants")
        if tenants is not None and not isinstance(tenants, list):
            raise ValueError("tenants")
        return cls(
            min_severity=data.get("minSeverity"),
            statuses=tuple(str(s) for s in data.get("statuses") or ()),
            tags=tuple(str(t) for t in data.get("tags") or ()),
            tenants=tuple(str(t) for t in tenants) if tenants is not None else None,
        )


def _rank(severity: str) -> int:
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else 0


def delivery_id(subscription: str, tenant: str, incident_id: str, version: str) -> str:
    """The id receivers deduplicate on (32 hex digits)."""
    text = f"{subscription}|{tenant}|{incident_id}|{version}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def item_key(item: Mapping[str, Any]) -> tuple[str, str]:
    """(incident id, version) of an item."""
    source = item.get("incident") if "incident" in item else item.get("ref")
    if not isinstance(source, Mapping):
        raise BadMessageError("an item has neither 'incident' nor 'ref'")
    ident = source.get("id")
    version = item.get("version") if "incident" in item else source.get("version")
    if not isinstance(ident, str) or not isinstance(version, str):
        raise BadMessageError("an item lacks its incident id or version")
    return ident, version


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


def pack(
    envelope: Mapping[str, Any], items: Sequence[Item], limit: int = MAX_MESSAGE_BYTES
) -> list[str]:
    """``envelope`` + ``items`` as messages of at most ``limit`` bytes of JSON each, in order;
    an item too big for a message of its own becomes a reference (``ref``)."""
    base = len(_dumps({**envelope, "items": []}).encode())
    out: list[str] = []
    batch: list[Item] = []
    size = base
    for item in items:
        encoded = _dumps(item).encode()
        if base + len(encoded) > limit:
            ident, version = item_key(item)
            item = {"ref": {"id": ident, "version": version}, "event": item.get("event")}
            encoded = _dumps(item).encode()
        if batch and size + len(encoded) + 1 > limit:
            out.append(_dumps({**envelope, "items": batch}))
            batch, size = [], base
        batch.append(item)
        size += len(encoded) + 1
    if batch:
        out.append(_dumps({**envelope, "items": batch}))
    return out


def changes(tenant: str, items: Iterable[Item]) -> list[str]:
    """The ``changes`` messages of one ingestion answer."""
    return pack({"v": 1, "kind": "changes", "tenant": tenant}, list(items))


def deliveries(
    subscription: str, tenant: str, items: Sequence[Item], *, attempt: int, since: datetime
) -> list[str]:
    """The ``deliver`` messages of one subscription's items."""
    envelope = {
        "v": 1,
        "kind": "deliver",
        "sub": subscription,
        "tenant": tenant,
        "attempt": attempt,
        "since": format_utc(since),
    }
    return pack(envelope, list(items))


def parse(text: str | bytes) -> dict[str, Any]:
    """A push message (``BadMessageError`` naming what is wrong)."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise BadMessageError("the message is not JSON") from None
    if not isinstance(data, dict) or data.get("v") != 1:
        raise BadMessageError("the message is not a version 1 push message")
    if data.get("kind") not in ("changes", "deliver"):
        raise BadMessageError("'kind' must be changes or deliver")
    if not isinstance(data.get("tenant"), str) or not isinstance(data.get("items"), list):
        raise BadMessageError("the message lacks 'tenant' or 'items'")
    for item in data["items"]:
        if not isinstance(item, dict):
            raise BadMessageError("an item is not an object")
        item_key(item)
    deliver = data["kind"] == "deliver"
    if deliver and not (isinstance(data.get("sub"), str) and isinstance(data.get("attempt"), int)):
        raise BadMessageError("a deliver message lacks 'sub' or 'attempt'")
    return data


# ---------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Answer:
    """What one delivery attempt got: an HTTP status, or ``error`` when there was none."""

    status: int | None
    retry_after: float | None = None
    error: str | None = None


Outcome = Literal["delivered", "retry", "gone", "rejected"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do after an attempt: ``delay`` seconds before the next round (``retry``)."""

    outcome: Outcome
    reason: str
    delay: float = 0.0


def backoff(attempt: int, base: float) -> float:
    """Seconds before round ``attempt + 1`` after ``attempt`` failed rounds (1, 2, ...)."""
    return float(min(MAX_DELAY, base * 2 ** max(0, attempt - 1)))


def judge(answer: Answer, *, attempt: int, base: float, max_retry_after: float) -> Verdict:
    """Decide after one attempt.

    2xx: delivered. 401/403/404/410: the receiver may be gone (the caller applies the grace
    period). 429/503: retry after ``Retry-After`` (at least the backoff, at most
    ``max_retry_after``). Another 4xx: this delivery is refused for good (a retry sends the
    same body). Anything else (5xx, 3xx: redirects are never followed, no answer): retry with
    backoff.
    """
    status = answer.status
    wait = backoff(attempt, base)
    if status is None:
        return Verdict("retry", answer.error or "no answer", wait)
    reason = f"HTTP {status}"
    if 200 <= status < 300:
        return Verdict("delivered", reason)
    if status in GONE:
        return Verdict("gone", reason, wait)
    if status in BUSY:
        asked = answer.retry_after
        if asked is not None:
            wait = min(max(wait, asked), max(max_retry_after, wait))
        return Verdict("retry", reason, wait)
    if 400 <= status < 500 and status != 408:
        return Verdict("rejected", reason)
    return Verdict("retry", reason, wait)


def retry_after(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` header in seconds (delta-seconds or an HTTP date); None if absent or
    malformed (RFC 9110 10.2.3)."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(min(int(text), 10**7))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    seconds = (when - now).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


@dataclass(frozen=True, slots=True)
class Breaker:
    """A subscription's circuit breaker: consecutive failed rounds, times it opened in a row,
    and until when it is open (None: closed)."""

    failures: int = 0
    opens: int = 0
    open_until: datetime | None = None

    def failed(self, now: datetime, base: float) -> Breaker:
        """After a failed round: opens at ``BREAKER_FAILURES`` in a row; once it has opened,
        the first round after the pause is a probe and a failure opens it again at once, each
        time for twice as long (``base`` seconds the first time, at most an hour)."""
        failures = self.failures + 1
        if self.opens == 0 and failures < BREAKER_FAILURES:
            return Breaker(failures, 0, None)
        seconds = min(MAX_DELAY, base * 2**self.opens)
        return Breaker(failures, self.opens + 1, now + timedelta(seconds=seconds))

    def is_open(self, now: datetime) -> bool:
        """Whether deliveries wait."""
        return self.open_until is not None and now < self.open_until


def is_subscription_id(text: str) -> bool:
    """32 lowercase hexadecimal digits."""
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)
