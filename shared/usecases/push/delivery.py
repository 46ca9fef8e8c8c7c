"""The push worker: fans recorded changes out to subscriptions and delivers them.

It runs from the ``defender-push`` queue trigger (``function_app.push_worker``), or from
``python -m shared subscriptions deliver`` outside the Functions host. Each message is handled
on its own and completely: what is left to do goes back on the queue as a new message (with the
delay it must wait), so an instance that dies mid-message loses nothing (the host makes the
message visible again) and at worst repeats a delivery, under the same delivery id.

``changes`` message: the active subscriptions whose filter matches get one ``deliver`` message
each; versions the bridge's own updates made are left out (loop protection), unless
``API_PUSH_DELIVER_OWN_UPDATES`` is on.

``deliver`` message: the subscription's callback URL is opened, parsed and its host resolved and
checked again (``shared.push.target``: an allow-list or DNS change since subscribing counts), then
each item is POSTed in turn (``shared.push.transport``), signed. What happens after an attempt is
``shared.push.messages.judge``'s decision:

- delivered: the next item; the subscription's health records the success;
- refused for good (a 4xx other than the "gone" ones, 408 and 429): that item is dead-lettered;
- gone (401, 403, 404, 410): retried like a failure until the receiver has answered so for
  ``API_PUSH_GONE_GRACE_MINUTES``, then the subscription is dropped (kept with ``status:
  dropped``, logged, its pending deliveries dead-lettered) - a workflow being saved or a callback
  being rotated answers 404 for a moment, and Logic Apps re-subscribes;
- anything else: the round failed; the rest of the message goes back on the queue after the
  backoff (or the receiver's ``Retry-After`` on 429/503, within
  ``API_PUSH_MAX_RETRY_AFTER_SECONDS``), and after ``API_PUSH_MAX_ATTEMPTS`` rounds its items
  are dead-lettered.

A failed round also feeds the subscription's circuit breaker (``messages.Breaker``): while it is
open, its deliveries wait on the queue without touching the receiver.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from shared.core.clock import Clock, format_utc, parse_utc
from shared.core.errors import BridgeError, CallbackRefusedError, StorageError
from shared.ports import DeadLetters, EchoMarkStore, Subscriptions, WebhookSender
from shared.push.keys import SealError, sign
from shared.push.messages import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    SUBSCRIPTION_HEADER,
    Answer,
    BadMessageError,
    Breaker,
    Item,
    Verdict,
    backoff,
    deliveries,
    delivery_id,
    item_key,
    judge,
    parse,
)
from shared.push.target import Address, CallbackTarget, Resolver, check_addresses, parse_callback
from shared.storage.values import DROPPED, RowReader, Subscription, active, revived

log = logging.getLogger(__name__)

#: a success is written to the subscription's health at most this often
SUCCESS_NOTE = timedelta(minutes=1)

#: puts one message on ``defender-push``, visible after the given seconds
Requeue = Callable[[str, int], None]


class RetryLaterError(BridgeError):
    """A change message cannot be fanned out yet (a referenced incident row is not stored
    yet): raised so the host makes the message visible again later."""

    code = "push_retry"


@dataclass(frozen=True, slots=True)
class PushOptions:
    """The delivery settings (``API_PUSH_*``)."""

    allowed: tuple[str, ...]
    allow_local: bool = False
    timeout: float = 10.0
    max_attempts: int = 8
    retry_base: float = 30.0
    max_retry_after: float = 3600.0
    gone_grace: timedelta = timedelta(minutes=60)
    deliver_own: bool = False
    #: seconds of sending per message before the rest is put back (Functions invocations end)
    budget: float = 120.0


class Callbacks:
    """The one check of a callback URL, for subscribing and for sending."""

    def __init__(self, options: PushOptions, resolver: Resolver) -> None:
        self._options = options
        self._resolver = resolver

    def target(self, url: object) -> CallbackTarget:
        """The parsed, allow-listed target (CallbackRefusedError otherwise)."""
        return parse_callback(
            url, allowed=self._options.allowed, allow_local=self._options.allow_local
        )

    def addresses(self, target: CallbackTarget) -> tuple[Address, ...]:
        """The checked addresses of ``target`` (CallbackRefusedError otherwise)."""
        return check_addresses(target, self._resolver)

    def check(self, url: object) -> CallbackTarget:
        """Parse and resolve-check ``url`` (a subscribe)."""
        target = self.target(url)
        self.addresses(target)
        return target


@dataclass
class WorkReport:
    """What the worker did (the CLI prints it; tests read it)."""

    messages: int = 0
    fanned_out: int = 0
    delivered: int = 0
    requeued: int = 0
    deferred: int = 0
    dead_lettered: int = 0
    suppressed: int = 0
    discarded: int = 0
    dropped: list[str] = field(default_factory=list)
    malformed: int = 0

    def add(self, other: WorkReport) -> None:
        """Add ``other``'s counts to these."""
        for name in (
            "messages",
            "fanned_out",
            "delivered",
            "requeued",
            "deferred",
            "dead_lettered",
            "suppressed",
            "discarded",
            "malformed",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.dropped.extend(other.dropped)

    def to_json(self) -> dict[str, Any]:
        """The ``subscriptions deliver --json`` document."""
        return {
            "messages": self.messages,
            "fannedOut": self.fanned_out,
            "delivered": self.delivered,
            "requeued": self.requeued,
            "deferred": self.deferred,
            "deadLettered": self.dead_lettered,
            "suppressedOwnUpdates": self.suppressed,
            "discarded": self.discarded,
            "dropped": self.dropped,
            "malformed": self.malformed,
        }


def body_of(event: str, tenant: str, row: Mapping[str, Any], delivery: str) -> bytes:
    """What one delivery POSTs (the schema of ``x-ms-notification-content``)."""
    data = {"event": event, "tenant": tenant, "delivery": delivery, "incident": dict(row)}
    return json.dumps(data, separators=(",", ":"), default=str).encode("utf-8")


class PushWorker:
    """Handles ``defender-push`` messages (see the module docstring)."""

    def __init__(
        self,
        *,
        store: Subscriptions,
        marks: EchoMarkStore,
        requeue: Requeue,
        dead_letter: DeadLetters,
        rows: RowReader,
        callbacks: Callbacks,
        sender: WebhookSender,
        options: PushOptions,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._marks = marks
        self._requeue = requeue
        self._dead = dead_letter
        self._rows = rows
        self._callbacks = callbacks
        self._sender = sender
        self._options = options
        self._clock = clock
        self._monotonic = monotonic

    # ------------------------------------------------------------------ entry points

    def handle(self, text: str | bytes) -> WorkReport:
        """Handle one message.

        Raises:
            StorageError: storage failed (the host retries the message).
            RetryLaterError: a referenced incident row is not stored yet.
        """
        report = WorkReport(messages=1)
        try:
            message = parse(text)
        except BadMessageError as exc:
            log.error("push: a malformed message was dropped: %s", exc)
            report.malformed += 1
            return report
        if message["kind"] == "changes":
            self._fan_out(message["tenant"], message["items"], report)
        else:
            self._deliver(message, report)
        return report

    def drain(
        self, receive: Callable[[], Sequence[Any]], delete: Callable[[Any], None]
    ) -> WorkReport:
        """Handle every message visible now (``receive`` gives a batch, ``delete`` completes
        one); messages waiting for a retry stay on the queue."""
        total = WorkReport()
        while batch := list(receive()):
            for message in batch:
                total.add(self.handle(message.content))
                delete(message)
        return total

    # ------------------------------------------------------------------ changes

    def _fan_out(self, tenant: str, items: list[Item], report: WorkReport) -> None:
        subscriptions = active(self._store.all())
        if not subscriptions:
            report.discarded += len(items)
            return
        resolved: list[tuple[Item, dict[str, Any]]] = []
        for item in items:
            row = self._row_of(tenant, item)
            if row is not None:
                resolved.append((item, row))
        if not self._options.deliver_own and resolved:
            own = self._marks.own(tenant, [(str(r["id"]), _last_update(r)) for _, r in resolved])
            if own:
                kept = [(i, r) for i, r in resolved if (str(r["id"]), _last_update(r)) not in own]
                report.suppressed += len(resolved) - len(kept)
                log.info(
                    "push: tenant %s: %d version(s) made by the bridge's own updates are not "
                    "delivered (API_PUSH_DELIVER_OWN_UPDATES)",
                    tenant,
                    len(resolved) - len(kept),
                )
                resolved = kept
        now = self._clock()
        for sub in subscriptions:
            mine = [item for item, row in resolved if sub.filter.matches(tenant, row)]
            for text in deliveries(sub.id, tenant, mine, attempt=0, since=now):
                self._requeue(text, 0)
            report.fanned_out += len(mine)

    def _row_of(self, tenant: str, item: Item) -> dict[str, Any] | None:
        if "incident" in item:
            row = item["incident"]
            return row if isinstance(row, dict) else None
        ident, version = item_key(item)
        found = self._rows(tenant, ident)
        if found is None:
            raise RetryLaterError(f"incident {ident} of tenant {tenant} is not stored yet")
        row, stored_version = found
        if stored_version != version:
            # a newer version replaced it; that version was recorded on its own
            log.info(
                "push: incident %s moved on before its delivery; its newer version stands in", ident
            )
            return None
        return row

    # ------------------------------------------------------------------ deliveries

    def _deliver(self, message: dict[str, Any], report: WorkReport) -> None:
        tenant, items = message["tenant"], list(message["items"])
        attempt = int(message["attempt"])
        sub = self._store.get(message["sub"])
        if sub is None:
            log.info(
                "push: subscription %s is gone; %d delivery(ies) discarded",
                message["sub"],
                len(items),
            )
            report.discarded += len(items)
            return
        if sub.status == DROPPED:
            self._bury(
                sub.id, tenant, items, f"subscription dropped ({sub.drop_reason})", attempt, report
            )
            return
        now = self._clock()
        if sub.breaker.is_open(now):
            assert sub.breaker.open_until is not None
            wait = (sub.breaker.open_until - now).total_seconds()
            self._again(message, items, attempt, wait, report, deferred=True)
            return
        try:
            target = self._callbacks.target(self._store.callback_url(sub))
            addresses = self._callbacks.addresses(target)
        except SealError as exc:
            self._bury(sub.id, tenant, items, str(exc), attempt, report)
            return
        except CallbackRefusedError as exc:
            if exc.retryable:
                self._failed_round(
                    sub,
                    message,
                    items,
                    attempt,
                    Verdict("retry", str(exc), self._wait(attempt)),
                    report,
                )
            else:
                reason = str(exc)
                log.warning(
                    "push: subscription %s: %s; its deliveries are dead-lettered", sub.id, reason
                )
                self._note(sub.id, lambda s: replace(s, last_failure=now, last_error=reason))
                self._bury(sub.id, tenant, items, reason, attempt, report)
            return
        secret = self._store.secret(sub)
        started = self._monotonic()
        delivered = 0
        while items:
            if self._monotonic() - started > self._options.budget:
                self._again(message, items, attempt, 0, report)
                break
            item = items[0]
            row = self._row_of(tenant, item)
            if row is None:
                items.pop(0)
                continue
            ident, version = item_key(item)
            delivery = delivery_id(sub.id, tenant, ident, version)
            answer = self._post(target, addresses, secret, tenant, item, row, delivery, sub.id)
            verdict = judge(
                answer,
                attempt=attempt + 1,
                base=self._options.retry_base,
                max_retry_after=self._options.max_retry_after,
            )
            if verdict.outcome == "delivered":
                items.pop(0)
                delivered += 1
                if delivered == 1:
                    # noted at the round's first delivery, so a failure later in the round is
                    # noted after it and the health ends on it (its error, a breaker count),
                    # as the round did; and a "gone" answer is then counted from now
                    self._succeeded(sub.id)
                    sub = replace(sub, gone_since=None)
                continue
            if verdict.outcome == "rejected":
                log.warning(
                    "push: subscription %s refused delivery %s (%s); dead-lettered",
                    sub.id,
                    delivery,
                    verdict.reason,
                )
                self._bury(
                    sub.id,
                    tenant,
                    [items.pop(0)],
                    f"refused: {verdict.reason}",
                    attempt + 1,
                    report,
                )
                continue
            if verdict.outcome == "gone" and self._gone(
                sub, verdict, tenant, items, attempt, report
            ):
                break
            self._failed_round(sub, message, items, attempt, verdict, report)
            break
        report.delivered += delivered

    def _post(
        self,
        target: CallbackTarget,
        addresses: Sequence[Address],
        secret: str,
        tenant: str,
        item: Item,
        row: Mapping[str, Any],
        delivery: str,
        subscription: str,
    ) -> Answer:
        body = body_of(str(item.get("event") or "updated"), tenant, row, delivery)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign(secret, int(self._clock().timestamp()), delivery, body),
            DELIVERY_HEADER: delivery,
            SUBSCRIPTION_HEADER: subscription,
        }
        answer = Answer(None, error="no address")
        for address in addresses[:2]:  # a second address only when the first took no connection
            answer = self._sender.post(target, address, body, headers, cap=self._options.timeout)
            if answer.status is not None or answer.error == "timeout":
                break
        return answer

    def _wait(self, attempt: int) -> float:
        return backoff(attempt + 1, self._options.retry_base)

    def _gone(
        self,
        sub: Subscription,
        verdict: Verdict,
        tenant: str,
        items: list[Item],
        attempt: int,
        report: WorkReport,
    ) -> bool:
        """The receiver said "gone": drop the subscription once the grace period is over
        (True), else let the round fail and retry (False)."""
        now = self._clock()
        since = sub.gone_since or now
        if now - since < self._options.gone_grace:
            if sub.gone_since is None:
                self._note(sub.id, lambda s: replace(s, gone_since=s.gone_since or now))
            return False
        reason = (
            f"the receiver answered {verdict.reason} since {format_utc(since)} "
            f"(API_PUSH_GONE_GRACE_MINUTES={int(self._options.gone_grace.total_seconds() // 60)})"
        )
        self._note(
            sub.id,
            lambda s: replace(
                s,
                status=DROPPED,
                dropped_at=now,
                drop_reason=reason,
                last_failure=now,
                last_error=verdict.reason,
            ),
        )
        log.warning(
            "push: subscription %s (host %s) dropped: %s; %d pending delivery(ies) dead-lettered "
            "(subscribe again, or `python -m shared subscriptions redrive`, to resume)",
            sub.id,
            sub.host,
            reason,
            len(items),
        )
        report.dropped.append(sub.id)
        self._bury(sub.id, tenant, items, f"subscription dropped: {reason}", attempt + 1, report)
        return True

    def _failed_round(
        self,
        sub: Subscription,
        message: dict[str, Any],
        items: list[Item],
        attempt: int,
        verdict: Verdict,
        report: WorkReport,
    ) -> None:
        now = self._clock()
        base = self._options.retry_base
        self._note(
            sub.id,
            lambda s: replace(
                s, breaker=s.breaker.failed(now, base), last_failure=now, last_error=verdict.reason
            ),
        )
        rounds = attempt + 1
        if rounds >= self._options.max_attempts:
            log.warning(
                "push: subscription %s: %d delivery(ies) failed %d times (%s); dead-lettered",
                sub.id,
                len(items),
                rounds,
                verdict.reason,
            )
            self._bury(sub.id, message["tenant"], items, verdict.reason, rounds, report)
            return
        log.info(
            "push: subscription %s: %s; %d delivery(ies) retried in %.0f s (round %d of %d)",
            sub.id,
            verdict.reason,
            len(items),
            verdict.delay,
            rounds,
            self._options.max_attempts,
        )
        self._again(message, items, rounds, verdict.delay, report)

    def _again(
        self,
        message: dict[str, Any],
        items: list[Item],
        attempt: int,
        delay: float,
        report: WorkReport,
        *,
        deferred: bool = False,
    ) -> None:
        since = _time(message.get("since")) or self._clock()
        for text in deliveries(
            message["sub"], message["tenant"], items, attempt=attempt, since=since
        ):
            self._requeue(text, max(0, int(round(delay))))
        if deferred:
            report.deferred += len(items)
        else:
            report.requeued += len(items)

    def _bury(
        self,
        subscription: str,
        tenant: str,
        items: Sequence[Item],
        reason: str,
        attempts: int,
        report: WorkReport,
    ) -> None:
        at = format_utc(self._clock())
        for item in items:
            ident, version = item_key(item)
            self._dead.put(
                {
                    "subscription": subscription,
                    "tenant": tenant,
                    "delivery": delivery_id(subscription, tenant, ident, version),
                    "item": item,
                    "reason": reason,
                    "attempts": attempts,
                    "at": at,
                }
            )
        report.dead_lettered += len(items)

    def _succeeded(self, subscription: str) -> None:
        now = self._clock()

        def change(s: Subscription) -> Subscription | None:
            fresh = s.last_success is not None and now - s.last_success < SUCCESS_NOTE
            if fresh and s.breaker == Breaker() and s.gone_since is None and s.last_error is None:
                return None
            return replace(s, breaker=Breaker(), gone_since=None, last_success=now, last_error=None)

        self._note(subscription, change)

    def _note(
        self, subscription: str, change: Callable[[Subscription], Subscription | None]
    ) -> None:
        """Record health; a failure to record is logged, never fails the deliveries."""
        try:
            self._store.update(subscription, change)
        except StorageError as exc:
            log.warning(
                "push: could not record the health of subscription %s: %s", subscription, exc
            )

    # ------------------------------------------------------------------ redrive

    def redrive(self, subscription: str | None = None) -> tuple[int, int]:
        """Put dead letters (of one subscription) back on the queue, reviving a dropped
        subscription they belong to. Returns (requeued, left: their subscription is gone)."""
        groups: dict[tuple[str, str], list[tuple[str, Item]]] = {}
        for name, record in self._dead.records(subscription):
            sub, tenant, item = record.get("subscription"), record.get("tenant"), record.get("item")
            if isinstance(sub, str) and isinstance(tenant, str) and isinstance(item, dict):
                groups.setdefault((sub, tenant), []).append((name, item))
        requeued = left = 0
        now = self._clock()
        for (sub_id, tenant), entries in groups.items():
            sub = self._store.get(sub_id)
            if sub is None:
                left += len(entries)
                continue
            if sub.status == DROPPED:
                self._store.update(sub_id, revived)
                log.warning("push: subscription %s revived by a redrive", sub_id)
            for text in deliveries(sub_id, tenant, [i for _, i in entries], attempt=0, since=now):
                self._requeue(text, 0)
            for name, _ in entries:
                self._dead.delete(name)
            requeued += len(entries)
        return requeued, left


def _last_update(row: Mapping[str, Any]) -> datetime:
    return parse_utc(str(row.get("lastUpdate")))


def _time(value: Any) -> datetime | None:
    try:
        return parse_utc(value) if isinstance(value, str) else None
    except ValueError:
        return None
