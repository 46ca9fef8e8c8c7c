"""Storage queues: the ``defender-ingest`` message (board item 3) and a thin sender.

Messages are JSON, base64-encoded as the Functions queue trigger expects by default
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json,
``messageEncoding`` base64). ``defender-ingest`` carries
``{"tenant": "<tid>", "reason": "timer|http|backfill|continue", "since": "<iso>|null"}``;
``defender-hunting`` carries ``{"job": "<job id>"}`` for the asynchronous hunting worker.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from shared.clock import format_utc, parse_utc

if TYPE_CHECKING:
    from azure.storage.queue import QueueServiceClient

INGEST_QUEUE = "defender-ingest"
HUNTING_QUEUE = "defender-hunting"
IngestReason = Literal["timer", "http", "backfill", "continue"]
REASONS: tuple[IngestReason, ...] = ("timer", "http", "backfill", "continue")


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """One ``defender-ingest`` message."""

    tenant: str
    reason: IngestReason
    since: datetime | None = None

    def to_json(self) -> str:
        """The message text."""
        since = format_utc(self.since) if self.since is not None else None
        return json.dumps({"tenant": self.tenant, "reason": self.reason, "since": since})

    @classmethod
    def from_json(cls, text: str) -> IngestRequest:
        """Parse a message (ValueError naming what is wrong)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the message is not a JSON object")
        tenant, reason, since = data.get("tenant"), data.get("reason"), data.get("since")
        try:
            tid = str(uuid.UUID(str(tenant)))
        except ValueError:
            raise ValueError("'tenant' is not a tenant GUID") from None
        if reason not in REASONS:
            raise ValueError(f"'reason' must be one of {', '.join(REASONS)}")
        if since is not None and not isinstance(since, str):
            raise ValueError("'since' must be an ISO-8601 time or null")
        return cls(tid, reason, parse_utc(since) if since else None)


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

        from shared.errors import StorageError

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
