"""``python -m bench.backlog [N ...]``: a backlog of N incidents ingested over time-bounded runs.

For each N (default 10,000 and 100,000): a fresh emulator seeded with N incidents in the home
tenant (seven days), incident quotas scaled down 30 times (50 per 2 s, 1,500 per 2 minutes, the
client's limiter the same), runs of ``INGEST_TIME_BUDGET_SECONDS`` (default 60) until the backlog
is done. Reports runs, API calls against the pages a perfect reader needs, wall time and the peak
RSS of the largest run (goal: peak memory at 100,000 within 1.3x of 10,000, since memory is
bounded by the slice). Results go to ``bench/results/backlog.json``. Needs the emulator's indexed
store (emu-listing) for 100,000 to be quick; do not run it in parallel with the test suite.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.__main__ import _MEASURED, _clear_storage, measured_peak_kib
from emulator.azurite import Azurite
from emulator.ratelimit import Limit
from emulator.server import Emulator, EmulatorConfig

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "backlog.json"
PAGE = 50


def _run(settings: dict[str, str]) -> tuple[dict[str, Any], int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEFENDER_", "INGEST_"))}
    env.update(settings)
    result = subprocess.run(
        [sys.executable, "-c", _MEASURED, "ingest", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    if result.returncode not in (0, 1):
        raise SystemExit(f"ingest failed: {result.stderr[-2000:]}")
    peak_kib = measured_peak_kib(result.stderr)
    return dict(json.loads(result.stdout)["tenants"][0]), peak_kib


def backlog(azurite: Azurite, size: int, budget: int) -> dict[str, Any]:
    """Ingest a backlog of ``size`` incidents; figures of the whole job."""
    _clear_storage(azurite.connection_string)
    config = EmulatorConfig(
        seed=41,
        home_incidents=size,
        customer_tenants=0,
        quotas={"incidents": (Limit(50, 2), Limit(1500, 120)), "alerts": (Limit(150, 2),)},
    )
    with Emulator(config) as emu:
        settings = dict(emu.app_settings())
        settings.update(
            DATA_STORAGE_CONNECTION_STRING=azurite.connection_string,
            INGEST_TENANTS=emu.home_tenant_id,
            INGEST_PAGE_SIZE=str(PAGE),
            INGEST_SAFETY_LAG_SECONDS="0",
            INGEST_LOOKBACK_DAYS="8",
            INGEST_TIME_BUDGET_SECONDS=str(budget),
            API_RATE_LIMIT_INCIDENTS="50/2,1500/120",
            API_RATE_LIMIT_ALERTS="150/2",
        )
        started = time.perf_counter()
        runs: list[dict[str, Any]] = []
        peak = 0
        while not runs or not runs[-1]["complete"]:
            result, kib = _run(settings)
            if not result["ok"]:
                raise SystemExit(f"a run failed: {result['error']}")
            runs.append(result)
            peak = max(peak, kib)
        calls = sum(r["api_calls"] for r in runs)
        pages = math.ceil(size / PAGE)
        return {
            "incidents": size,
            "stored": sum(r["incidents"] for r in runs),
            "runs": len(runs),
            "api_calls": calls,
            "pages_needed": pages,
            "calls_per_page": round(calls / pages, 3),
            "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mib": round(peak / 1024, 1),
        }


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [10_000, 100_000]
    budget = int(os.environ.get("INGEST_TIME_BUDGET_SECONDS", "60"))
    out: dict[str, Any] = {"budget_seconds": budget, "results": []}
    with Azurite() as azurite:
        for size in sizes:
            figures = backlog(azurite, size, budget)
            print(json.dumps(figures))
            out["results"].append(figures)
    if len(out["results"]) >= 2:
        small, large = out["results"][0], out["results"][-1]
        out["peak_rss_ratio"] = round(large["peak_rss_mib"] / small["peak_rss_mib"], 3)
        print(f"peak RSS {large['incidents']} vs {small['incidents']}: {out['peak_rss_ratio']}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
