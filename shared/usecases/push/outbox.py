"""The ingestion ``notify`` hook: record what changed on the ``defender-push`` queue, and return.

``Ingestor`` calls it with the versions of an answer that are not stored yet, before it writes
them (``shared.usecases.ingest``): the incident table is what makes a version "already seen", so a
version
is recorded here before it can become seen, and a run that dies at any point loses no change.
The worst case is a repeat (a crash after recording but before storing: the next run records the
version again), which the delivery id makes harmless to receivers.

The hook costs ingestion one queue write per message (an answer of up to 100 incidents is one or
two messages) and nothing at all while no subscription is active: it checks that from a copy of
the subscription list at most ``PRESENCE_TTL`` seconds old. Nothing here talks to a receiver.
A failure to write raises: the answer is then not stored and the run fails like any storage
failure, to be retried, instead of storing changes nobody will hear of.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from shared.core.errors import BridgeError
from shared.push.messages import changes
from shared.storage.values import active, version_text
from shared.usecases.incidents import incident_row

if TYPE_CHECKING:
    from shared.defender.model import Incident
    from shared.ports import Subscriptions

log = logging.getLogger(__name__)

PUSH_QUEUE = "defender-push"
POISON_QUEUE = f"{PUSH_QUEUE}-poison"
#: how old the outbox's knowledge of "is anyone subscribed" may be
PRESENCE_TTL = 30.0

#: sends one message to the push queue (``QueueSender.send``)
Send = Callable[[str], None]


class Outbox:
    """Records new versions for delivery (see the module docstring).

    Args:
        send: puts one message on ``defender-push``.
        store: the subscriptions (only whether any is active is read here).
        monotonic: seconds, for the presence cache.
    """

    def __init__(
        self,
        *,
        send: Send,
        store: Subscriptions,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._store = store
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._known: tuple[float, bool] | None = None
        self.recorded = 0
        self.messages = 0

    def _anyone(self) -> bool:
        with self._lock:
            now = self._monotonic()
            if self._known is not None and now - self._known[0] < PRESENCE_TTL:
                return self._known[1]
            try:
                present = bool(active(self._store.all()))
            except BridgeError as exc:
                # unknown: record anyway (the worker drops what nobody wants), never lose
                log.warning(
                    "push: could not read subscriptions (%s); recording changes anyway", exc
                )
                present = True
            self._known = (now, present)
            return present

    def __call__(self, tenant: str, versions: Sequence[Incident], created: frozenset[str]) -> None:
        """Record ``versions`` of ``tenant`` (``created``: the ids the store had no row of).

        Raises:
            StorageError: the queue could not be written (the caller stores nothing then).
        """
        if not versions or not self._anyone():
            return
        items = []
        for version in versions:
            row = incident_row(version)
            items.append(
                {
                    "incident": row,
                    "version": version_text(version) or row["lastUpdate"],
                    "event": "created" if version.id in created else "updated",
                }
            )
        for message in changes(tenant, items):
            self._send(message)
            self.messages += 1
        self.recorded += len(items)
