"""The push worker's storage: dead letters of deliveries that kept failing, incident rows read
back as a delivery shows them (for ``ref`` items: incidents too large for a message), and the
push queues as the CLI reads them (``PushBacklog``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.core.clock import format_utc, parse_utc
from shared.core.errors import StorageError
from shared.storage.containers import create_container_if_not_exists
from shared.storage.values import RowReader

_R = TypeVar("_R")


class DeadLetter:
    """Deliveries that kept failing: ``defender-push-deadletter/<subscription>/<delivery>.json``
    (the item, the reason, the attempts; never the callback URL)."""

    def __init__(self, container: Any) -> None:
        self._container = container
        self._ready = False

    def put(self, record: Mapping[str, Any]) -> None:
        """Store a record (the same delivery again overwrites it: one record per delivery)."""
        try:
            if not self._ready:
                create_container_if_not_exists(self._container)
                self._ready = True
            self._container.upload_blob(
                f"{record['subscription']}/{record['delivery']}.json",
                json.dumps(record, default=str).encode("utf-8"),
                overwrite=True,
            )
        except AzureError as exc:
            raise StorageError(f"could not dead-letter a delivery ({type(exc).__name__})") from exc

    def records(self, subscription: str | None = None) -> Iterable[tuple[str, dict[str, Any]]]:
        """(blob name, record) of every dead letter (of one subscription)."""
        prefix = f"{subscription}/" if subscription else None
        try:
            names = [b.name for b in self._container.list_blobs(name_starts_with=prefix)]
            for name in names:
                data = json.loads(self._container.download_blob(name).readall())
                if isinstance(data, dict):
                    yield name, data
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise StorageError(f"could not read the dead letters ({type(exc).__name__})") from exc

    def delete(self, name: str) -> None:
        """Remove one record."""
        try:
            self._container.delete_blob(name)
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise StorageError(f"could not delete a dead letter ({type(exc).__name__})") from exc


def table_rows(table: Any) -> RowReader:
    """A ``RowReader`` over the incident table (``DefenderIncidents``)."""

    def read(tenant: str, incident_id: str) -> tuple[dict[str, Any], str] | None:
        try:
            entity = table.get_entity(tenant, incident_id)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageError(
                f"could not read incident {incident_id} ({type(exc).__name__})"
            ) from exc
        created = entity.get("CreatedTime")
        try:
            tags = json.loads(entity.get("Tags") or "[]")
        except ValueError:
            tags = []
        row = {
            "id": incident_id,
            "title": entity.get("Title"),
            "status": entity.get("Status"),
            "severity": entity.get("Severity"),
            "classification": entity.get("Classification") or None,
            "determination": entity.get("Determination") or None,
            "assignedTo": entity.get("AssignedTo") or None,
            "created": format_utc(created) if isinstance(created, datetime) else None,
            "lastUpdate": format_utc(parse_utc(str(entity.get("LastUpdateTime")))),
            "redirectId": entity.get("RedirectIncidentId") or None,
            "tags": tags if isinstance(tags, list) else [],
            "alerts": entity.get("AlertCount"),
            "api": entity.get("Api"),
        }
        return row, str(entity.get("Version") or "")

    return read


class PushBacklog:
    """The ``defender-push`` queue and its poison queue read outside the Functions host, by
    ``subscriptions deliver`` (drain what is pending) and ``subscriptions redrive`` (put the
    poison messages back)."""

    def __init__(self, service: Any, name: str, poison_name: str) -> None:
        from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy

        def client(queue: str) -> Any:
            return service.get_queue_client(
                queue,
                message_encode_policy=TextBase64EncodePolicy(),
                message_decode_policy=TextBase64DecodePolicy(),
            )

        self._queue, self._poison = client(name), client(poison_name)
        self.name, self.poison_name = name, poison_name

    def drain(
        self, drain: Callable[[Callable[[], list[Any]], Callable[[Any], None]], _R]
    ) -> _R | None:
        """``drain(receive, delete)`` over the queue (32 messages at a time, hidden 5 minutes
        while handled); None when the queue does not exist yet."""
        try:
            return drain(
                lambda: list(self._queue.receive_messages(max_messages=32, visibility_timeout=300)),
                self._queue.delete_message,
            )
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageError(f"could not read the push queue ({type(exc).__name__})") from exc

    def requeue_poison(self, send: Callable[[str], None]) -> int:
        """``send`` each poison message's text, deleting it once sent; how many were."""
        moved = 0
        try:
            while batch := list(
                self._poison.receive_messages(max_messages=32, visibility_timeout=300)
            ):
                for message in batch:
                    send(str(message.content))
                    self._poison.delete_message(message)
                    moved += 1
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise StorageError(f"could not read {self.poison_name} ({type(exc).__name__})") from exc
        return moved
