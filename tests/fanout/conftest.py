"""A dedicated local cloud with 50 tenants (the home tenant and 49 customers) for partner scale.

The session Azurite is shared (its data is cleared per test, queues included); the emulator is
this module's own, seeded with small tenants so a whole fan-out tick stays quick.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests

from emulator.azurite import Azurite
from tests.conftest import LocalCloud, _clear_storage

TENANTS = 50


@pytest.fixture(scope="module")
def scale_cloud(azurite: Azurite) -> Iterator[LocalCloud]:
    """An emulator with 50 tenants and the session Azurite."""
    from emulator.server import Emulator, EmulatorConfig

    config = EmulatorConfig(
        seed=10, customer_tenants=TENANTS - 1, customer_incidents=4, home_incidents=6
    )
    with Emulator(config) as emu:
        yield LocalCloud(emu, azurite)


def clear_queues(connection_string: str) -> None:
    from azure.storage.queue import QueueServiceClient

    service = QueueServiceClient.from_connection_string(connection_string)
    for queue in service.list_queues():
        service.delete_queue(queue.name)


@pytest.fixture
def scale_env(scale_cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The process environment pointing at the 50-tenant cloud, with fresh storage and a fresh
    composition root. Tenants: the home tenant in INGEST_TENANTS, the 49 customers in the
    registry table (added by ``register_customers``)."""
    from shared import bootstrap

    scale_cloud.admin("POST", "reset")
    conn = scale_cloud.azurite.connection_string
    _clear_storage(conn)
    clear_queues(conn)
    settings = scale_cloud.app_settings(
        INGEST_TENANTS=scale_cloud.emulator.home_tenant_id,
        API_MAX_ATTEMPTS="2",  # a failing tenant fails fast; the queue does the retrying
        INGEST_FANOUT="queue",
    )
    for name in list(os.environ):
        if name.startswith(("DEFENDER_", "INGEST_", "DATA_STORAGE_", "EMULATOR_", "KEY_VAULT")):
            monkeypatch.delenv(name)
        if name.startswith("API_"):
            monkeypatch.delenv(name)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    bootstrap.services.cache_clear()
    yield settings
    bootstrap.services.cache_clear()


def register_customers(cloud: LocalCloud) -> list[str]:
    """Add the 49 customer tenants to the registry table; returns all 50 ids, home first."""
    from shared.bootstrap import services

    registry = services().tenant_registry()
    services().run_states()  # creates the table
    ids = list(cloud.emulator.tenant_ids)
    for index, tid in enumerate(ids[1:], 1):
        registry.set(tid, display_name=f"Customer {index:02d}")
    return ids


@dataclass
class StorageRequests:
    """Storage requests this process sent to Azurite, by method and path."""

    azurite: Azurite
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # service, method, path
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def service_of(self, url: str) -> str | None:
        port = urlsplit(url).port
        return {
            self.azurite.blob_port: "blob",
            self.azurite.queue_port: "queue",
            self.azurite.table_port: "table",
        }.get(port or 0)

    def record(self, method: str, url: str) -> None:
        service = self.service_of(url)
        if service is not None:
            with self._lock:
                self.calls.append((service, method, unquote(urlsplit(url).path)))

    def writes(self) -> list[tuple[str, str, str]]:
        return [c for c in self.calls if c[1] in ("PUT", "POST", "DELETE", "PATCH", "MERGE")]


@pytest.fixture
def storage_requests(scale_cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> StorageRequests:
    """Counts the storage requests of this process at the HTTP adapter (what reaches Azurite);
    the SDKs run unchanged on top."""
    recorder = StorageRequests(scale_cloud.azurite)
    original = requests.adapters.HTTPAdapter.send

    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        recorder.record(str(request.method), str(request.url))
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return recorder
