"""A stand-in for the Functions host's queue listener, driving the real function objects.

Core Tools cannot run here, so the tests play the host's part of the queue contract, as the
WebJobs storage extension documents and implements it (``QueueProcessor``):
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#poison-messages
and https://github.com/Azure/azure-sdk-for-net/blob/main/sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Queues/src/QueueProcessor.cs

- up to ``batchSize + newBatchThreshold`` messages in flight (host.json
  ``extensions.queues``: the host fetches a new batch when the in-flight count falls to
  ``newBatchThreshold``);
- each message is base64-decoded and handed to the function as a ``QueueMessage`` with its
  ``dequeue_count``;
- success deletes the message; a failure with ``dequeue_count >= maxDequeueCount`` copies the
  message, as it was, to ``<queue>-poison`` and deletes it; any other failure makes it visible
  again after ``visibilityTimeout`` (0 here by default, so tests do not wait).

The queue is real Azurite; only the scheduling loop is ours.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Invocation:
    """One call of the queue function."""

    tenant: str | None
    dequeue_count: int
    start: float
    end: float
    ok: bool
    error: str | None


def host_queue_settings() -> dict[str, Any]:
    """host.json's ``extensions.queues`` section."""
    return dict(json.loads((ROOT / "host.json").read_text())["extensions"]["queues"])


def _functions() -> dict[str, Any]:
    # the SDK refuses a second indexing of the same app: share the one cached index
    from testkit.env import indexed_functions

    return indexed_functions()


def queue_function(name: str = "ingest_worker") -> tuple[Any, dict[str, Any]]:
    """The user function and binding of a queue trigger, as the host indexes them."""
    fn = _functions()[name]
    return fn.get_user_function(), json.loads(fn.get_raw_bindings()[0])


def timer_function() -> Any:
    """The timer trigger's user function."""
    return _functions()["ingest_timer"].get_user_function()


class QueueHost:
    """Drains a queue through a queue-triggered function like the host would."""

    def __init__(
        self,
        connection_string: str,
        *,
        batch_size: int | None = None,
        max_dequeue_count: int | None = None,
        visibility_timeout: int = 0,
        lease_seconds: int = 120,
    ) -> None:
        self.function, binding = queue_function()
        assert binding["type"] == "queueTrigger"
        settings = host_queue_settings()
        size = int(settings.get("batchSize", 16))
        self.batch_size = batch_size or size + int(settings.get("newBatchThreshold", size // 2))
        self.max_dequeue_count = max_dequeue_count or int(settings.get("maxDequeueCount", 5))
        self.visibility_timeout = visibility_timeout
        self.lease_seconds = lease_seconds
        service = QueueServiceClient.from_connection_string(connection_string)
        self.queue_name = str(binding["queueName"])
        self.queue = self._client(service, self.queue_name)
        self.poison = self._client(service, f"{self.queue_name}-poison")
        self.invocations: list[Invocation] = []
        self._lock = threading.Lock()

    @staticmethod
    def _client(service: QueueServiceClient, name: str) -> QueueClient:
        client = service.get_queue_client(
            name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        return client

    def drain(self, *, timeout: float = 600) -> list[Invocation]:
        """Run messages until none is visible and none is in flight; returns this drain's
        invocations."""
        start_index = len(self.invocations)
        deadline = time.monotonic() + timeout
        in_flight: set[Future[None]] = set()
        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
            while time.monotonic() < deadline:
                in_flight = {f for f in in_flight if not f.done()}
                room = self.batch_size - len(in_flight)
                got = []
                if room > 0:
                    got = list(
                        self.queue.receive_messages(
                            messages_per_page=min(32, room),
                            max_messages=min(32, room),
                            visibility_timeout=self.lease_seconds,
                        )
                    )
                for message in got:
                    in_flight.add(pool.submit(self._run, message))
                if not got:
                    if not in_flight:
                        break
                    time.sleep(0.02)
            else:
                raise TimeoutError("the queue did not drain in time")
        return self.invocations[start_index:]

    def _run(self, message: Any) -> None:
        body = message.content.encode("utf-8")
        try:
            tenant = json.loads(body).get("tenant")
        except ValueError:
            tenant = None
        msg = QueueMessage(
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            pop_receipt=message.pop_receipt,
        )
        begin = time.monotonic()
        error: str | None = None
        try:
            self.function(msg)
        except Exception as exc:  # noqa: BLE001 - the host catches everything a function raises
            error = f"{type(exc).__name__}: {exc}"
        end = time.monotonic()
        with self._lock:
            self.invocations.append(
                Invocation(tenant, int(message.dequeue_count), begin, end, error is None, error)
            )
        if error is None:
            self.queue.delete_message(message)
        elif message.dequeue_count >= self.max_dequeue_count:
            self.poison.send_message(message.content)
            self.queue.delete_message(message)
        else:
            self.queue.update_message(message, visibility_timeout=self.visibility_timeout)

    def poison_tenants(self) -> list[str | None]:
        """Tenants of the messages in the poison queue (peek: they stay)."""
        out: list[str | None] = []
        for m in self.poison.peek_messages(max_messages=32):
            try:
                out.append(json.loads(m.content).get("tenant"))
            except ValueError:
                out.append(None)
        return out

    def visible_count(self) -> int:
        """Messages that could be received now (peek shows only visible ones)."""
        return len(list(self.queue.peek_messages(max_messages=32)))

    def total_count(self) -> int:
        """Messages in the queue, visible or not (approximate, exact on Azurite)."""
        return int(self.queue.get_queue_properties().approximate_message_count or 0)
