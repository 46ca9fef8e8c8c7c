"""Shared fixtures: the local cloud (emulator + Azurite) and app settings pointing at it.

The emulator and Azurite start once per test session; tests that change emulator state call
its admin API ``/_emulator/reset`` (through the ``cloud`` fixture) so each starts seeded.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import requests

from emulator.azurite import Azurite

if TYPE_CHECKING:
    from emulator.server import Emulator


@dataclass
class LocalCloud:
    """A running emulator and Azurite, with helpers for the admin API."""

    emulator: Emulator
    azurite: Azurite

    @property
    def url(self) -> str:
        return self.emulator.url

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call the emulator's admin API (plain JSON over its HTTPS port)."""
        response = requests.request(
            method,
            f"{self.emulator.url}/_emulator/{path.lstrip('/')}",
            json=body,
            verify=str(self.emulator.ca_path),
            timeout=30,
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def app_settings(self, **overrides: str) -> dict[str, str]:
        """Settings that point the app at this local cloud."""
        settings = dict(self.emulator.app_settings())
        # the seeded activity happens "now": read it at once (late-arrival tests set a lag)
        settings["INGEST_SAFETY_LAG_SECONDS"] = "0"
        settings["DATA_STORAGE_CONNECTION_STRING"] = self.azurite.connection_string
        settings["INGEST_OVERLAP_MINUTES"] = "10"
        settings.update(overrides)
        return settings

    def stats(self) -> dict[str, Any]:
        return dict(self.admin("GET", "stats"))

    def request_count(self, endpoint: str, tenant: str | None = None) -> int:
        """How many requests an emulator endpoint answered (optionally for one tenant)."""
        return sum(
            row["count"]
            for row in self.stats()["requests"]
            if row["endpoint"] == endpoint and (tenant is None or row["tenant"] == tenant)
        )

    def token_count(self, grant: str = "client_credentials", tenant: str | None = None) -> int:
        return sum(
            row["count"]
            for row in self.stats()["tokens"]
            if row["grant"] == grant and (tenant is None or row["tenant"] == tenant)
        )


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One Azurite for the session."""
    with Azurite() as instance:
        yield instance


@pytest.fixture(scope="session")
def _cloud_processes(azurite: Azurite) -> Iterator[LocalCloud]:
    from emulator.server import Emulator, EmulatorConfig

    emu = Emulator(EmulatorConfig(seed=7))
    emu.start()
    try:
        yield LocalCloud(emu, azurite)
    finally:
        emu.stop()


@pytest.fixture
def cloud(_cloud_processes: LocalCloud) -> LocalCloud:
    """The local cloud, reset to its seeded state (storage is per test, see ``app_env``)."""
    _cloud_processes.admin("POST", "reset")
    return _cloud_processes


@pytest.fixture
def app_env(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Process environment set to the local cloud, with fresh storage and a fresh composition root.

    Storage is made fresh per test by giving each test its own Azurite account area: the data
    lives in containers of the shared Azurite, so tests clear them first.
    """
    from shared import bootstrap

    _clear_storage(cloud.azurite.connection_string)
    settings = cloud.app_settings()
    for name in list(os.environ):
        if name.startswith(("DEFENDER_", "INGEST_", "DATA_STORAGE_", "EMULATOR_", "KEY_VAULT")):
            monkeypatch.delenv(name)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    bootstrap.services.cache_clear()
    yield settings
    bootstrap.services.cache_clear()


def _clear_storage(connection_string: str) -> None:
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient

    blobs = BlobServiceClient.from_connection_string(connection_string)
    for container in blobs.list_containers():
        blobs.delete_container(container.name)
    tables = TableServiceClient.from_connection_string(connection_string)
    for table in tables.list_tables():
        tables.delete_table(table.name)


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    """In-process CLI runs reconfigure logging; give every test the state it started with."""
    import logging

    from shared.core.logs import SDK_LOGGERS

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    levels = {name: logging.getLogger(name).level for name in (*SDK_LOGGERS, "shared")}
    yield
    root.handlers[:], root.level = saved
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


#: fixtures that start a real server or store: a test using any of them (directly or through
#: another fixture) is an ``e2e`` test, whether or not it says so
LOCAL_CLOUD_FIXTURES = frozenset(
    {"azurite", "_cloud_processes", "cloud", "emu", "served", "scale_cloud"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need the local cloud ``e2e``, so ``-m "not e2e and not subprocess"``
    (``make test-fast``) runs exactly those that need neither a server, Azurite nor a child
    process."""
    for item in items:
        if LOCAL_CLOUD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
    _unique_node_ids(items)


def _unique_node_ids(items: list[pytest.Item]) -> None:
    """Give each schemathesis test its own node id. schemathesis names its per-operation tests
    ``test_x[GET /path]``, but under pytest 9 they all get the function's bare node id (pytest
    builds the id from the parametrization, which schemathesis does not use); pytest-xdist
    (``make test``) schedules by node id, so all but one of them would silently not run. Each
    gets the id a parametrized test would have, with the operation as its parameter."""
    counts = Counter(item.nodeid for item in items)
    for item in items:
        label = getattr(item, "operation_label", None)
        if counts[item.nodeid] > 1 and label and isinstance(item, pytest.Function) and item.parent:
            node_id = item.parent.id.child(item.originalname).with_params(label)
            item._id = node_id  # noqa: SLF001 - pytest offers no public way to set an id
    duplicated = [node for node, count in Counter(i.nodeid for i in items).items() if count > 1]
    assert not duplicated, f"tests share a node id, xdist would run one of each: {duplicated}"
