"""Fetching and writing overlap: the next answer is fetched while one is written,
and what is stored is the same as one page at a time: each version exactly once."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest

from shared.bootstrap import build
from shared.core.settings import Settings
from shared.defender.client import DefenderClient
from shared.storage import STATE_CONTAINER
from shared.storage.state import PageJournal
from shared.storage.values import TRANSACTION_SIZE
from shared.usecases.ingest import Ingestor, RunOptions, VersionStore
from shared.usecases.ingest import run as run_module
from tests.conftest import LocalCloud
from tests.e2e.guarantees import assert_store_matches, truth, versions


@pytest.mark.e2e
@pytest.mark.parametrize("api", ["legacy", "graph"])
def test_next_answer_is_fetched_while_one_is_written(
    cloud: LocalCloud, app_env: dict[str, str], api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = app_env["DEFENDER_TENANT_ID"]
    settings = Settings.from_env({**app_env, "DEFENDER_API": api, "INGEST_TENANTS": home})
    fetches: list[tuple[float, float]] = []  # (began, ended) of each listing call
    writes: list[tuple[float, float]] = []  # (began, ended) of each answer that stored

    class SlowJournal(PageJournal):
        """The real journal, with each answer's write made 0.3 s slower (a far storage): the
        journal note opens every write of an answer (create-first or after a lookup)."""

        def record(
            self,
            tenant: str,
            blob_names: list[str],
            created: Mapping[str, Sequence[str]] | None = None,
        ) -> None:
            time.sleep(0.3)
            super().record(tenant, blob_names, created)

    real_take = VersionStore.take

    def timed_take(self: VersionStore, scope: Any, page: Any, run: Any) -> None:
        """The real version storage, noting when each answer's storing began and ended."""
        start, stored = time.monotonic(), run.stored
        real_take(self, scope, page, run)
        if run.stored > stored:
            writes.append((start, time.monotonic()))

    monkeypatch.setattr(VersionStore, "take", timed_take)
    # answers on new ground are stored together up to GROUP_SIZE items; this cloud is small,
    # so groups of one transaction's worth keep enough writes to see them overlap fetches
    monkeypatch.setattr(run_module, "GROUP_SIZE", TRANSACTION_SIZE)

    svc = build(settings)
    svc.ingestor()  # creates the containers and the table

    def client_for(tenant: str) -> DefenderClient:
        client = svc.client_for(tenant)
        real = client.call  # every API request (single pages and the pages of a paged slice)

        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return real(*args, **kwargs)
            finally:
                fetches.append((start, time.monotonic()))

        client.call = call  # type: ignore[method-assign]
        return client

    stores = svc.ingest_stores()
    ingestor = Ingestor(
        source_for=client_for,
        clock=svc.clock,
        stores=replace(
            stores, journal=SlowJournal(svc.blob_service.get_container_client(STATE_CONTAINER))
        ),
        options=RunOptions.of(settings.ingest),
    )
    seen = versions(truth(cloud, home, api))

    result = ingestor.run_tenant(home)

    assert result.ok and result.complete, result
    assert len(writes) >= 3
    during = [any(fs < end and start < fe for fs, fe in fetches) for start, end in writes]
    # one page at a time would fetch only between writes; overlapped, nearly every write
    # (not the last) has the next answer's fetch inside it
    assert sum(during) >= len(writes) - 2, (during, len(fetches))
    conn = app_env["DATA_STORAGE_CONNECTION_STRING"]
    assert_store_matches(cloud, conn, home, api, seen, must_have=seen)
