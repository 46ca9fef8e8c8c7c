"""Storage queues: the ``defender-ingest`` message, a thin sender, and the ingest queue with its
poison queue (partner scale: one message per tenant run).

Messages are JSON, base64-encoded as the Functions queue trigger expects by default
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json,
``messageEncoding`` base64). ``defender-ingest`` carries
``{"tenant": "<tid>", "reason": "timer|http|backfill|continue", "since": "<iso>|null"}``;
``defender-hunting`` carries ``{"job": "<job id>"}`` for the asynchronous hunting worker.

After ``maxDequeueCount`` failed attempts the Functions host copies a message, as it was, to
``defender-ingest-poison`` and deletes the original (the WebJobs ``QueueProcessor``:
https://github.com/Azure/azure-sdk-for-net/blob/main/sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Queues/src/QueueProcessor.cs).
Nothing consumes the poison queue automatically: ``IngestQueue.poison()`` reads it for reports
and ``drain_poison`` lets ``tenants requeue-poison`` put its messages back.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from shared.core.errors import StorageError
from shared.storage.values import (
    INGEST_QUEUE,
    MAX_VISIBILITY_SECONDS,
    POISON_QUEUE,
    BadMessageError,
    IngestMessage,
    PoisonMessage,
    parse_message,
)

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueServiceClient


class QueueSender:
    """Sends JSON messages to one queue, creating it on first use."""

    def __init__(self, service: QueueServiceClient, name: str) -> None:
        self._service = service
        self.name = name
        self._ready = False
        self._lock = threading.Lock()

    def send(self, message: str, *, delay_seconds: int = 0) -> None:
        """Enqueue ``message`` (visible after ``delay_seconds``).

        Raises:
            StorageError: the queue could not be written.
        """
        from azure.core.exceptions import AzureError, ResourceExistsError
        from azure.storage.queue import TextBase64EncodePolicy

        client: Any = self._service.get_queue_client(
            self.name, message_encode_policy=TextBase64EncodePolicy()
        )
        try:
            with self._lock:
                if not self._ready:
                    with contextlib.suppress(ResourceExistsError):
                        client.create_queue()
                    self._ready = True
            client.send_message(message, visibility_timeout=delay_seconds or None)
        except AzureError as exc:
            raise StorageError(
                f"could not write queue {self.name} ({type(exc).__name__}); check the identity's "
                "Storage Queue Data Contributor role"
            ) from exc


def _errors() -> Any:
    import azure.core.exceptions

    return azure.core.exceptions


def _policies() -> Any:
    import azure.storage.queue

    return azure.storage.queue


class IngestQueue:
    """The ``defender-ingest`` queue and its poison queue in the data account."""

    def __init__(self, service: QueueServiceClient) -> None:
        self._service = service
        self._ready: set[str] = set()

    def _client(self, name: str) -> QueueClient:
        client = self._service.get_queue_client(
            name,
            message_encode_policy=_policies().TextBase64EncodePolicy(),
            message_decode_policy=_policies().TextBase64DecodePolicy(),
        )
        if name not in self._ready:
            try:
                with contextlib.suppress(_errors().ResourceExistsError):
                    client.create_queue()
            except _errors().AzureError as exc:
                raise StorageError(
                    f"could not prepare queue {name} ({type(exc).__name__}); check the data "
                    "account settings and the identity's Storage Queue Data Contributor role"
                ) from exc
            self._ready.add(name)
        return client

    @property
    def main(self) -> QueueClient:
        """The queue client of ``defender-ingest`` (created if missing)."""
        return self._client(INGEST_QUEUE)

    @property
    def poison_queue(self) -> QueueClient:
        """The queue client of ``defender-ingest-poison`` (created if missing)."""
        return self._client(POISON_QUEUE)

    def send(self, message: IngestMessage, *, delay: float = 0.0) -> None:
        """Put ``message`` on the queue, invisible for ``delay`` seconds.

        Raises:
            StorageError: the queue refused or could not be reached.
        """
        visibility = min(MAX_VISIBILITY_SECONDS, max(0, int(round(delay))))
        try:
            self.main.send_message(message.to_json(), visibility_timeout=visibility or None)
        except _errors().AzureError as exc:
            raise StorageError(
                f"could not queue tenant {message.tenant} ({type(exc).__name__})"
            ) from exc

    def send_poison(self, text: str) -> None:
        """Put a raw (unparseable) message on the poison queue, so it is seen and kept."""
        try:
            self.poison_queue.send_message(text)
        except _errors().AzureError as exc:
            raise StorageError(f"could not write the poison queue ({type(exc).__name__})") from exc

    def poison(self, *, limit: int = 32) -> list[PoisonMessage]:
        """Peek at up to ``limit`` (at most 32: the service's peek limit) poison messages.

        Peeking changes nothing: the messages stay for ``requeue_poison``.
        """
        try:
            peeked = list(self.poison_queue.peek_messages(max_messages=min(32, max(1, limit))))
        except _errors().ResourceNotFoundError:
            return []
        except _errors().AzureError as exc:
            raise StorageError(f"could not read the poison queue ({type(exc).__name__})") from exc
        return [_poison(m) for m in peeked]

    def poison_count(self) -> int:
        """The poison queue's approximate message count (one service call)."""
        try:
            props = self.poison_queue.get_queue_properties()
        except _errors().AzureError as exc:
            raise StorageError(f"could not read the poison queue ({type(exc).__name__})") from exc
        return int(props.approximate_message_count or 0)

    def pending_count(self) -> int:
        """The ingest queue's approximate message count, visible or not."""
        try:
            props = self.main.get_queue_properties()
        except _errors().AzureError as exc:
            raise StorageError(f"could not read the ingest queue ({type(exc).__name__})") from exc
        return int(props.approximate_message_count or 0)

    def drain_poison(self, *, hold_seconds: int = 300) -> Iterator[tuple[PoisonMessage, Any]]:
        """Receive every poison message once (each hidden for ``hold_seconds`` while the
        caller decides); yields (message, receipt) pairs for ``delete_poison``/``release``."""
        seen: set[str] = set()
        while True:
            try:
                batch = list(
                    self.poison_queue.receive_messages(
                        messages_per_page=32, max_messages=32, visibility_timeout=hold_seconds
                    )
                )
            except _errors().AzureError as exc:
                raise StorageError(
                    f"could not read the poison queue ({type(exc).__name__})"
                ) from exc
            fresh = [m for m in batch if m.id not in seen]
            if not fresh:
                return
            for raw in fresh:
                seen.add(raw.id)
                yield _poison(raw), raw

    def delete_poison(self, receipt: Any) -> None:
        """Delete a poison message received with ``drain_poison``."""
        try:
            self.poison_queue.delete_message(receipt)
        except _errors().AzureError as exc:
            raise StorageError(f"could not delete a poison message ({type(exc).__name__})") from exc

    def release_poison(self, receipt: Any) -> None:
        """Make a received poison message visible again at once (left where it was)."""
        with contextlib.suppress(_errors().AzureError):
            self.poison_queue.update_message(receipt, visibility_timeout=0)


def _poison(raw: Any) -> PoisonMessage:
    text = raw.content if isinstance(raw.content, str) else str(raw.content)
    try:
        message: IngestMessage | None = parse_message(text)
        problem = None
    except BadMessageError as exc:
        message, problem = None, str(exc)
    return PoisonMessage(
        id=str(raw.id),
        text=text[:500],
        message=message,
        problem=problem,
        inserted_on=raw.inserted_on,
        dequeue_count=int(raw.dequeue_count or 0),
    )
