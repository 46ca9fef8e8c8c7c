"""``python -m bench.tenants``: one fan-out tick over 1,000 tenants with 50 ms added per API call.

The emulator seeds 1,000 small tenants (the home tenant and 999 customers in the registry
table) and delays every Defender/Graph answer by 50 ms (``slow`` fault at rate 1). A tick is
the timer function (queue one message per tenant) plus draining ``defender-ingest`` through
the queue function, ``batchSize`` (host.json) at a time in this one process, as one Functions
instance would: the first tick (cold: a token and the initial read per tenant), then an idle
one. Figures: wall time, API calls per tenant against the documented quota (incidents:
50/min), 429s received (goal: none), token requests. Results go to
``bench/results/tenants.json``; docs/partner-scale.md quotes them. The machine is shared and noisy.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from emulator.azurite import Azurite
from emulator.server import Emulator, EmulatorConfig

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "tenants.json"
TENANTS = 1000
LATENCY = 0.05
QUOTA_PER_MINUTE = 50


def _admin(emu: Emulator, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(
        method, f"{emu.url}/_emulator/{path}", json=body, verify=str(emu.ca_path), timeout=60
    )
    response.raise_for_status()
    return response.json() if response.content else None


def _api_calls(stats: dict[str, Any]) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for row in stats["requests"]:
        if row["endpoint"].startswith(("graph.", "legacy.")):
            out[row["tenant"]] = out.get(row["tenant"], 0) + row["count"]
    return out


def _status_count(stats: dict[str, Any], status: int) -> int:
    return sum(r["count"] for r in stats["requests"] if r["status"] == status)


def _tokens(stats: dict[str, Any]) -> int:
    return sum(r["count"] for r in stats["tokens"] if r["grant"] == "client_credentials")


def _tick(host: Any, timer: Any) -> dict[str, float]:
    from azure.functions.timer import TimerRequest

    start = time.perf_counter()
    timer(TimerRequest(past_due=False))
    queued = time.perf_counter()
    invocations = host.drain(timeout=3600)
    end = time.perf_counter()
    failed = [i for i in invocations if not i.ok]
    done = {i.tenant for i in invocations if i.ok}
    print(
        f"tick: {len(invocations)} invocations in {end - start:.1f}s, {len(failed)} failed "
        f"(retried by the queue), {len(done)} tenants done",
        file=sys.stderr,
    )
    return {
        "enqueue_seconds": round(queued - start, 2),
        "drain_seconds": round(end - queued, 2),
        "tick_seconds": round(end - start, 2),
        "invocations": len(invocations),
        "failed_invocations_retried": len(failed),
        "failure_examples": sorted({str(i.error)[:160] for i in failed})[:3],
        "tenants_done": len(done),
        "longest_invocation_seconds": round(
            max((i.end - i.start for i in invocations), default=0), 2
        ),
        "median_invocation_seconds": round(
            sorted(i.end - i.start for i in invocations)[len(invocations) // 2], 3
        )
        if invocations
        else 0,
    }


def _per_tenant(
    before: dict[str | None, int], after: dict[str | None, int], ids: list[str]
) -> list[int]:
    return [after.get(t, 0) - before.get(t, 0) for t in ids]


def main() -> int:
    """Run the benchmark and write the results."""
    from shared import bootstrap
    from testkit.functions_host import QueueHost, host_queue_settings, timer_function

    config = EmulatorConfig(
        seed=21, customer_tenants=TENANTS - 1, customer_incidents=3, home_incidents=3
    )
    with Emulator(config) as emu, Azurite() as azurite:
        ids = list(emu.tenant_ids)
        settings = dict(emu.app_settings())
        settings.update(
            DATA_STORAGE_CONNECTION_STRING=azurite.connection_string,
            INGEST_TENANTS=emu.home_tenant_id,
            INGEST_FANOUT="queue",
        )
        os.environ.update(settings)
        bootstrap.services.cache_clear()
        svc = bootstrap.services()
        svc.run_states()
        registry = svc.tenant_registry()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda t: registry.set(t), ids[1:]))
        _admin(emu, "POST", "faults", {"rate": 1.0, "kinds": ["slow"], "slow_seconds": LATENCY})
        import logging

        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
        host = QueueHost(azurite.connection_string)
        timer = timer_function()

        before = _api_calls(_admin(emu, "GET", "stats"))
        first = _tick(host, timer)
        stats1 = _admin(emu, "GET", "stats")
        mid = _api_calls(stats1)
        second = _tick(host, timer)
        stats2 = _admin(emu, "GET", "stats")
        after = _api_calls(stats2)

        calls1 = _per_tenant(before, mid, ids)
        calls2 = _per_tenant(mid, after, ids)
        figures = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}",
            "tenants": TENANTS,
            "added_latency_ms": int(LATENCY * 1000),
            "batch_size": host.batch_size,
            "host_queues": host_queue_settings(),
            "first_tick": {
                **first,
                "api_calls": sum(calls1),
                "max_calls_per_tenant": max(calls1),
                "token_requests": _tokens(stats1),
                # a tenant's calls all happen inside its invocations; when the longest
                # invocation took under a minute, a tenant's calls of the tick are an upper
                # bound of its calls in any minute
                "peak_calls_per_tenant_per_minute_upper_bound": max(calls1)
                if first["longest_invocation_seconds"] < 60
                else None,
                "responses_429": _status_count(stats1, 429),
            },
            "idle_tick": {
                **second,
                "api_calls": sum(calls2),
                "calls_per_tenant": sorted(set(calls2)),
                "token_requests": _tokens(stats2) - _tokens(stats1),
                "responses_429": _status_count(stats2, 429) - _status_count(stats1, 429),
            },
            "quota_calls_per_minute_per_tenant": QUOTA_PER_MINUTE,
        }
        bootstrap.services.cache_clear()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
