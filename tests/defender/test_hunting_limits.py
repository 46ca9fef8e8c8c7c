"""Advanced hunting limits, emulator and client together, on both surfaces.

A dedicated emulator shortens the limits (a 1-second server timeout, a 50-row cap, a 20 kB
result cap, half a CPU second per cycle) so each is hit quickly; the client turns each into a
typed error or a flag: ``HuntingLimitError`` (timeout, result size: narrow the query, never
retried), ``HuntingQuotaError`` (CPU quota: wait for the next cycle) and
``HuntingResult.truncated`` (a result of exactly the row cap).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from emulator.server import Emulator, EmulatorConfig
from shared import bootstrap
from shared.core.errors import BadRequestError, HuntingLimitError, HuntingQuotaError, ThrottledError
from shared.core.settings import Settings
from shared.defender.client import DefenderClient, RetryPolicy

pytestmark = pytest.mark.e2e

ROWS = 50


@pytest.fixture(scope="module")
def limited() -> Iterator[Emulator]:
    config = EmulatorConfig(
        seed=5,
        hunting_timeout_seconds=1.0,
        hunting_max_rows=ROWS,
        hunting_max_result_bytes=20_000,
        hunting_cpu_seconds=0.5,
    )
    with Emulator(config) as emu:
        yield emu


@pytest.fixture
def hunter(limited: Emulator, surface: str) -> Iterator[DefenderClient]:
    """A client for the home tenant of the limited emulator, through the real composition
    root (MSAL, Key Vault via the managed identity), with the emulator's row cap."""
    limited.reset()
    env = {
        **limited.app_settings(),
        "DATA_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
        "DEFENDER_API": surface,
    }
    with pytest.MonkeyPatch.context() as patch:
        for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
            patch.setenv(name, env[name])
        svc = bootstrap.build(Settings.from_env(env))
        yield DefenderClient(
            session=svc.session,
            token=svc.tokens.for_tenant(limited.home_tenant_id, svc.settings.defender.api_scope),
            api=svc.settings.defender.api,
            base_url=svc.settings.defender.api_url,
            retry=RetryPolicy(max_attempts=3, base_delay=0.01, budget=30),
            hunting_row_limit=ROWS,
        )


def _hunt_calls(emu: Emulator) -> int:
    return sum(
        r["count"]
        for r in emu.stats.snapshot()["requests"]
        if r["endpoint"] in ("legacy.hunting.run", "graph.hunting.run")
    )


def test_a_query_past_the_server_timeout_is_a_typed_error_not_retried(
    hunter: DefenderClient, limited: Emulator
) -> None:
    """The emulator waits out its (shortened) timeout and answers 400; the client raises
    HuntingLimitError('timeout') after one call: the same query would time out again."""
    with pytest.raises(HuntingLimitError) as info:
        hunter.hunt("AlertInfo | take 1 // emulator:latency=5")
    assert info.value.limit == "timeout" and info.value.status == 400
    assert "3-minute" in str(info.value)
    assert _hunt_calls(limited) == 1


def test_a_result_over_the_size_cap_is_a_typed_error(
    hunter: DefenderClient, limited: Emulator
) -> None:
    """Over the result-size cap: the documented 400 message, HuntingLimitError('result_size')."""
    with pytest.raises(HuntingLimitError) as info:
        hunter.hunt("DeviceProcessEvents")
    assert info.value.limit == "result_size"
    assert "exceeded the allowed result size" in str(info.value)
    assert isinstance(info.value, BadRequestError)  # callers catching 400s still catch it
    assert _hunt_calls(limited) == 1


def test_a_result_cut_at_the_row_cap_is_flagged(hunter: DefenderClient) -> None:
    """The service cuts silently at its row cap; the client flags a result of exactly that
    many rows, and not a shorter one."""
    cut = hunter.hunt("DeviceProcessEvents | project Timestamp")
    assert len(cut.rows) == ROWS and cut.truncated
    short = hunter.hunt("DeviceProcessEvents | project Timestamp | take 10")
    assert len(short.rows) == 10 and not short.truncated


def test_the_cpu_quota_429_names_the_quota(hunter: DefenderClient, limited: Emulator) -> None:
    """After the tenant's CPU allocation is spent, every query gets a 429 naming the quota
    with Retry-After up to the next 15-minute cycle; past the budget, HuntingQuotaError."""
    hunter.hunt("AlertInfo | take 1 // emulator:latency=0.6")
    with pytest.raises(HuntingQuotaError) as info:
        hunter.hunt("AlertInfo | take 1")
    error = info.value
    assert isinstance(error, ThrottledError) and error.status == 429
    assert "CPU quota exceeded" in error.quota and "per 00:15:00" in error.quota
    assert error.retry_after is not None and 30 < error.retry_after <= 900
    assert _hunt_calls(limited) == 2  # the wait is beyond the budget: not retried


def test_cli_hunt_warns_and_json_carries_the_flag(
    hunter: DefenderClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hunt` warns on stderr about a possibly cut result; JSON output has "truncated"."""
    from shared.cli import hunt, main

    monkeypatch.setattr(hunt, "client_for", lambda args: hunter)
    out = io.StringIO()
    assert (
        main(["hunt", "DeviceProcessEvents | project Timestamp", "--format", "json"], out=out) == 0
    )
    data = json.loads(out.getvalue())
    assert data["truncated"] is True and len(data["rows"]) == ROWS
    assert "warning: the result has 50 rows, the service's cap" in capsys.readouterr().err
    out = io.StringIO()
    assert main(["hunt", "AlertInfo | take 2", "--format", "json"], out=out) == 0
    assert json.loads(out.getvalue())["truncated"] is False
    assert "warning" not in capsys.readouterr().err
