"""The push worker and the outbox on the in-memory fakes (``testkit.port_fakes``): delivery,
signing, retry with backoff, the circuit breaker, dead letters, the "gone" grace period, loop
protection and redrive, each in milliseconds. ``tests/api/test_push*.py`` keep the same paths
end to end (Azurite, a real HTTPS receiver) for what needs them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.core.clock import format_utc
from shared.core.errors import StorageError
from shared.defender.model import normalize
from shared.push.keys import PushKeys, verify
from shared.push.messages import (
    BREAKER_FAILURES,
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    Answer,
    Filter,
    changes,
    deliveries,
    parse,
)
from shared.storage.values import ACTIVE, DROPPED, Subscription
from shared.usecases.push.delivery import Callbacks, PushOptions, PushWorker
from shared.usecases.push.outbox import PRESENCE_TTL, Outbox
from testkit.fakes import MovableClock, graph_incident
from testkit.port_fakes import (
    MemoryDeadLetters,
    MemoryEchoMarks,
    MemorySubscriptions,
    ScriptedSender,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TENANT = "11111111-1111-1111-1111-111111111111"
HOST = "prod-01.westeurope.logic.azure.com"
URL = f"https://{HOST}/workflows/abc/triggers/manual/paths/invoke?sig=SECRET"
KEYS = PushKeys("fast-tests-signing-key")


def row(ident: str, minute: int = 0, severity: str = "high") -> dict[str, Any]:
    return {
        "id": ident,
        "title": f"incident {ident}",
        "status": "active",
        "severity": severity,
        "lastUpdate": format_utc(T0 + timedelta(minutes=minute)),
        "tags": [],
    }


def item(ident: str, minute: int = 0, severity: str = "high") -> dict[str, Any]:
    r = row(ident, minute, severity)
    return {"incident": r, "version": r["lastUpdate"], "event": "updated"}


class Rig:
    """A worker wired to fakes; ``queue`` holds what it put back (text, delay)."""

    def __init__(self, **options: Any) -> None:
        self.clock = MovableClock(T0)
        self.store = MemorySubscriptions(KEYS, self.clock)
        self.marks = MemoryEchoMarks(self.clock)
        self.dead = MemoryDeadLetters()
        self.sender = ScriptedSender()
        self.queue: list[tuple[str, int]] = []
        self.options = PushOptions(allowed=(".logic.azure.com",), retry_base=30.0, **options)
        self.worker = PushWorker(
            store=self.store,
            marks=self.marks,
            requeue=lambda text, delay: self.queue.append((text, delay)),
            dead_letter=self.dead,
            rows=lambda tenant, ident: None,
            callbacks=Callbacks(self.options, lambda host, port: ["20.50.2.10"]),
            sender=self.sender,
            options=self.options,
            clock=self.clock,
            monotonic=self.clock.monotonic,
        )
        self.sub, _ = self.store.save(URL, HOST, Filter())

    def deliver(self, *items: dict[str, Any], attempt: int = 0) -> Any:
        [text] = deliveries(self.sub.id, TENANT, list(items), attempt=attempt, since=self.clock())
        return self.worker.handle(text)

    def take(self) -> list[dict[str, Any]]:
        """The messages put back, parsed, and forget them."""
        out = [parse(text) for text, _ in self.queue]
        self.queue.clear()
        return out

    def health(self) -> Subscription:
        sub = self.store.get(self.sub.id)
        assert sub is not None
        return sub


def test_a_delivery_is_posted_signed_with_the_subscription_secret() -> None:
    rig = Rig()
    report = rig.deliver(item("1"), item("2", 1))
    assert report.delivered == 2 and rig.queue == [] and rig.dead.blobs == {}
    assert [p.address.compressed for p in rig.sender.posts] == ["20.50.2.10", "20.50.2.10"]
    first = rig.sender.posts[0]
    assert first.target.host == HOST and first.cap == rig.options.timeout
    body = json.loads(first.body)
    assert (body["tenant"], body["incident"]["id"]) == (TENANT, "1")
    secret = rig.store.secret(rig.sub)
    assert verify(
        secret,
        first.headers[SIGNATURE_HEADER],
        first.headers[DELIVERY_HEADER],
        first.body,
        now=int(T0.timestamp()),
    )
    assert not verify(
        "another-secret",
        first.headers[SIGNATURE_HEADER],
        first.headers[DELIVERY_HEADER],
        first.body,
        now=int(T0.timestamp()),
    )
    assert rig.health().last_success == T0


def test_a_failed_round_is_retried_after_the_backoff_or_retry_after() -> None:
    rig = Rig()
    rig.sender.script = [Answer(200), Answer(500)]
    report = rig.deliver(item("1"), item("2"), item("3"))
    # the first item went through; the rest goes back once, attempt counted, after the backoff
    assert (report.delivered, report.requeued) == (1, 2)
    assert [delay for _, delay in rig.queue] == [30]  # backoff(1, 30 s)
    [again] = rig.take()
    assert again["attempt"] == 1 and [i["incident"]["id"] for i in again["items"]] == ["2", "3"]
    # the round ended on a failure: its health says so (the delivery before it only reset
    # what came before), and the next failed round counts on from there
    assert rig.health().last_success == T0 and rig.health().last_error == "HTTP 500"
    assert rig.health().breaker.failures == 1
    rig.sender.script = [Answer(500)]
    rig.worker.handle(deliveries(rig.sub.id, TENANT, again["items"], attempt=1, since=T0)[0])
    [(text, delay)] = rig.queue
    assert parse(text)["attempt"] == 2 and delay == 60  # backoff(2, 30 s)
    assert rig.health().breaker.failures == 2 and rig.health().last_error == "HTTP 500"
    rig.queue.clear()
    rig.sender.script = [Answer(503, retry_after=600)]
    rig.worker.handle(text)
    [(text, delay)] = rig.queue
    assert delay == 600 and parse(text)["attempt"] == 3  # the receiver's Retry-After


def test_a_delivery_failing_max_attempts_rounds_is_dead_lettered() -> None:
    rig = Rig(max_attempts=3)
    rig.sender.otherwise = Answer(None, error="timeout")
    report = rig.deliver(item("1"), attempt=1)
    assert report.requeued == 1 and rig.dead.blobs == {}
    report = rig.deliver(item("1"), attempt=2)  # the third round
    assert (report.requeued, report.dead_lettered) == (0, 1) and len(rig.queue) == 1
    [(name, record)] = rig.dead.records(rig.sub.id)
    assert record["attempts"] == 3 and record["reason"] == "timeout"
    assert record["item"]["incident"]["id"] == "1" and URL not in json.dumps(record)


def test_a_refused_delivery_is_dead_lettered_and_the_next_one_still_goes() -> None:
    rig = Rig()
    rig.sender.script = [Answer(400), Answer(200)]
    report = rig.deliver(item("1"), item("2"))
    assert (report.delivered, report.dead_lettered, report.requeued) == (1, 1, 0)
    [(_, record)] = rig.dead.records()
    assert record["item"]["incident"]["id"] == "1" and record["reason"] == "refused: HTTP 400"


def test_the_breaker_opens_after_consecutive_failed_rounds_and_spares_the_receiver() -> None:
    rig = Rig(max_attempts=50)
    rig.sender.otherwise = Answer(502)
    for attempt in range(BREAKER_FAILURES):
        rig.deliver(item("1"), attempt=attempt)
    assert rig.health().breaker.is_open(rig.clock())
    posts = len(rig.sender.posts)
    rig.queue.clear()
    report = rig.deliver(item("1"), attempt=BREAKER_FAILURES)
    # deferred on the queue until the breaker's end, without a POST
    assert report.deferred == 1 and len(rig.sender.posts) == posts
    open_until = rig.health().breaker.open_until
    assert open_until is not None
    [(_, delay)] = rig.queue
    assert delay == round((open_until - rig.clock()).total_seconds())
    # once it has passed, one probe goes out; a success closes it
    rig.clock.advance(open_until - rig.clock() + timedelta(seconds=1))
    rig.sender.otherwise = Answer(204)
    assert rig.deliver(item("1")).delivered == 1
    assert rig.health().breaker.failures == 0 and not rig.health().breaker.is_open(rig.clock())


def test_a_gone_receiver_is_dropped_only_after_the_grace_period() -> None:
    rig = Rig(gone_grace=timedelta(minutes=60), max_attempts=50)
    rig.sender.otherwise = Answer(404)  # a Logic App being saved answers 404 for a while
    report = rig.deliver(item("1"))
    assert report.requeued == 1 and report.dropped == [] and rig.health().gone_since == T0
    rig.clock.advance(timedelta(minutes=59))
    assert rig.deliver(item("1"), attempt=1).dropped == []
    assert rig.health().status == ACTIVE and rig.health().gone_since == T0  # not restarted
    rig.clock.advance(timedelta(minutes=2))
    rig.queue.clear()
    report = rig.deliver(item("1"), item("2"), attempt=2)
    assert report.dropped == [rig.sub.id] and report.dead_lettered == 2 and rig.queue == []
    health = rig.health()
    assert health.status == DROPPED and health.drop_reason and "HTTP 404" in health.drop_reason
    # what arrives for a dropped subscription is dead-lettered without a POST
    posts = len(rig.sender.posts)
    assert rig.deliver(item("3")).dead_lettered == 1 and len(rig.sender.posts) == posts


def test_a_success_within_the_grace_period_forgets_the_gone_answers() -> None:
    rig = Rig(gone_grace=timedelta(minutes=60), max_attempts=50)
    rig.sender.script = [Answer(410)]
    rig.deliver(item("1"))
    assert rig.health().gone_since == T0
    rig.clock.advance(timedelta(minutes=30))
    assert rig.deliver(item("1"), attempt=1).delivered == 1
    assert rig.health().gone_since is None
    rig.sender.script = [Answer(410)]
    rig.clock.advance(timedelta(minutes=45))  # 75 minutes after the first 410, 0 after this one
    assert rig.deliver(item("2")).dropped == []


def test_a_delivery_before_a_gone_answer_restarts_the_grace_period() -> None:
    """A receiver that took a delivery in this very round is not gone since the earlier 404s:
    a 404 right after it starts the grace period again instead of dropping the subscription."""
    rig = Rig(gone_grace=timedelta(minutes=60), max_attempts=50)
    rig.sender.script = [Answer(404)]
    rig.deliver(item("1"))
    assert rig.health().gone_since == T0
    rig.clock.advance(timedelta(minutes=90))
    rig.sender.script = [Answer(200), Answer(404)]
    report = rig.deliver(item("1"), item("2"), attempt=1)
    assert report.delivered == 1 and report.dropped == [] and report.requeued == 1
    health = rig.health()
    assert health.status == ACTIVE and health.gone_since == rig.clock()
    assert health.last_success == rig.clock() and health.last_error == "HTTP 404"


def test_changes_skip_the_bridges_own_updates_and_unmatched_filters() -> None:
    rig = Rig()
    low, _ = rig.store.save(URL + "&low", HOST, Filter(min_severity="high"))
    rig.marks.mark(TENANT, "1", T0, T0 + timedelta(seconds=1))  # the bridge updated 1 itself
    [text] = changes(TENANT, [item("1"), item("2", 5, severity="low")])
    report = rig.worker.handle(text)
    assert report.suppressed == 1
    sent = {m["sub"]: [i["incident"]["id"] for i in m["items"]] for m in rig.take()}
    assert sent == {rig.sub.id: ["2"]}  # the high-only subscription had nothing to get
    assert low.id not in sent


def test_redrive_revives_a_dropped_subscription_and_requeues_its_dead_letters() -> None:
    rig = Rig(gone_grace=timedelta(0))
    rig.sender.otherwise = Answer(410)
    assert rig.deliver(item("1"), item("2")).dropped == [rig.sub.id]
    assert len(list(rig.dead.records())) == 2
    rig.queue.clear()
    assert rig.worker.redrive() == (2, 0)
    assert rig.health().status == ACTIVE and list(rig.dead.records()) == []
    [again] = rig.take()
    assert again["attempt"] == 0 and len(again["items"]) == 2


def test_a_health_write_failing_never_fails_the_deliveries() -> None:
    rig = Rig()
    rig.store.fail("update")
    assert rig.deliver(item("1")).delivered == 1


def test_the_outbox_records_only_while_someone_is_subscribed() -> None:
    clock = MovableClock(T0)
    store = MemorySubscriptions(KEYS, clock)
    sent: list[str] = []
    outbox = Outbox(send=sent.append, store=store, monotonic=clock.monotonic)
    version = normalize(graph_incident("9", T0), "graph")
    outbox(TENANT, [version], frozenset({"9"}))
    assert sent == []  # nobody subscribed: ingestion pays nothing
    store.save(URL, HOST, Filter())
    outbox(TENANT, [version], frozenset({"9"}))
    assert sent == []  # the "nobody" answer is kept for PRESENCE_TTL
    clock.advance(timedelta(seconds=PRESENCE_TTL))
    outbox(TENANT, [version], frozenset({"9"}))
    [message] = [parse(t) for t in sent]
    assert message["kind"] == "changes" and message["items"][0]["event"] == "created"
    # subscriptions that cannot be read: record anyway, never lose a change
    clock.advance(timedelta(seconds=PRESENCE_TTL))
    store.fail("all")
    outbox(TENANT, [version], frozenset())
    assert len(sent) == 2 and parse(sent[1])["items"][0]["event"] == "updated"


def test_the_outbox_raises_when_the_queue_cannot_be_written() -> None:
    clock = MovableClock(T0)
    store = MemorySubscriptions(KEYS, clock)
    store.save(URL, HOST, Filter())

    def broken(text: str) -> None:
        raise StorageError("queue down")

    outbox = Outbox(send=broken, store=store, monotonic=clock.monotonic)
    with pytest.raises(StorageError):
        outbox(TENANT, [normalize(graph_incident("9", T0), "graph")], frozenset())
    assert outbox.recorded == 0
