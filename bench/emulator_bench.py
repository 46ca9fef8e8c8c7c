"""``python -m bench.emulator_bench`` (or ``make bench-emulator``): the local cloud alone.

Measures the emulator, not our code: seeding time and memory for 10,000 and 100,000
incidents (and 1,000 tenants with a few each), pages per second of incident listings on both
surfaces (plain, time-filtered, arbitrary order, with activity between pages), and the raw
fetch of every page (following nextLink, gzipping each body as a sink would). The emulator's
goals: pages per second at 100,000 within 1.2x of 10,000; raw fetch of 100,000 at most 12x
the time of 10,000. Results go to ``bench/results/emulator.json`` and are printed. The machine
is shared and noisy: CPU seconds are reported beside wall time; read figures as orders of
magnitude, and never run this beside the test suite.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from emulator.server import Emulator, EmulatorConfig

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "emulator.json"
SIZES = (10_000, 100_000)
SAMPLE_PAGES = 60  # pages per "pages per second" figure
UNLIMITED: dict[str, tuple[Any, ...]] = {"incidents": (), "hunting": (), "alerts": ()}


def _rss_mib() -> float:
    """Resident memory of this process now (MiB), from /proc."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _session(emu: Emulator) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(emu.ca_path)
    return session


def _token(http: requests.Session, emu: Emulator, resource: str) -> str:
    response = http.post(
        f"{emu.url}/{emu.home_tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "scope": f"{resource}/.default",
        },
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _timed(run: Callable[[], int]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    pages = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"pages": pages, "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
            "pages_per_second": round(pages / wall, 1)}  # fmt: skip


def _walk(
    http: requests.Session, url: str, token: str, params: dict[str, str], limit: int | None
) -> int:
    """Follow nextLink from `url` for at most `limit` pages (None: all); gzip each body."""
    headers = {"Authorization": f"Bearer {token}"}
    response = http.get(url, headers=headers, params=params, timeout=120)
    pages = 0
    while True:
        response.raise_for_status()
        gzip.compress(response.content, compresslevel=1)
        pages += 1
        link = response.json().get("@odata.nextLink")
        if not link or (limit is not None and pages >= limit):
            return pages
        response = http.get(link, headers=headers, timeout=120)


def _admin(http: requests.Session, emu: Emulator, path: str, body: Any) -> None:
    http.post(f"{emu.url}/_emulator/{path}", json=body, timeout=60).raise_for_status()


def _one_size(count: int) -> dict[str, Any]:
    before = _rss_mib()
    wall, cpu = time.perf_counter(), time.process_time()
    config = EmulatorConfig(seed=1, home_incidents=count, customer_tenants=0, quotas=UNLIMITED)
    emu = Emulator(config).start()
    seeded = {"seconds": round(time.perf_counter() - wall, 2),
              "cpu_seconds": round(time.process_time() - cpu, 2),
              "rss_growth_mib": round(_rss_mib() - before, 1)}  # fmt: skip
    try:
        http = _session(emu)
        legacy = _token(http, emu, "https://api.security.microsoft.com")
        graph = _token(http, emu, "https://graph.microsoft.com")
        legacy_url = f"{emu.url}/api/incidents"
        graph_url = f"{emu.url}/v1.0/security/incidents"
        since = (datetime.now(UTC) - timedelta(days=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
        until = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        window = f"lastUpdateTime ge {since} and lastUpdateTime lt {until}"
        graph_window = window.replace("lastUpdateTime", "lastUpdateDateTime")
        top100, top50 = {"$top": "100"}, {"$top": "50"}
        sample = SAMPLE_PAGES
        figures: dict[str, Any] = {"incidents": count, "seeding": seeded}
        figures["legacy_pages"] = _timed(lambda: _walk(http, legacy_url, legacy, top100, sample))
        # Graph: $skip stops at 500, so 10 pages at a time, 6 times over.
        figures["graph_pages"] = _timed(
            lambda: sum(_walk(http, graph_url, graph, top50, 10) for _ in range(6))
        )
        figures["legacy_window_pages"] = _timed(
            lambda: _walk(http, legacy_url, legacy, {**top100, "$filter": window}, sample)
        )
        ascending = {**top50, "$filter": graph_window, "$orderby": "lastUpdateDateTime asc"}
        figures["graph_window_asc_pages"] = _timed(
            lambda: sum(_walk(http, graph_url, graph, ascending, 10) for _ in range(6))
        )
        _admin(http, emu, "behaviour", {"order": "arbitrary"})
        figures["legacy_arbitrary_pages"] = _timed(
            lambda: _walk(http, legacy_url, legacy, {**top100, "$filter": window}, sample)
        )
        _admin(http, emu, "behaviour", {"paging_activity": {"every": 1, "create": 1, "update": 2}})
        figures["legacy_arbitrary_activity_pages"] = _timed(
            lambda: _walk(http, legacy_url, legacy, {**top100, "$filter": window}, sample)
        )
        _admin(http, emu, "reset", {})
        figures["raw_fetch_all_legacy"] = _timed(
            lambda: _walk(http, legacy_url, legacy, top100, None)
        )
        http.close()
    finally:
        emu.stop()
    return figures


def _many_tenants() -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    config = EmulatorConfig(seed=1, customer_tenants=999, customer_incidents=5, home_incidents=5)
    emu = Emulator(config).start()
    figures = {"tenants": 1000, "incidents_each": 5,
               "seconds": round(time.perf_counter() - wall, 2),
               "cpu_seconds": round(time.process_time() - cpu, 2)}  # fmt: skip
    emu.stop()
    return figures


def main() -> int:
    """Run both sizes and the many-tenant seeding; write and print the results."""
    runs = [_one_size(count) for count in SIZES]
    small, large = runs
    ratios = {
        "legacy_pages_per_second_10k_over_100k": round(
            small["legacy_pages"]["pages_per_second"] / large["legacy_pages"]["pages_per_second"],
            2,
        ),
        "graph_pages_per_second_10k_over_100k": round(
            small["graph_pages"]["pages_per_second"] / large["graph_pages"]["pages_per_second"], 2
        ),
        "raw_fetch_100k_over_10k": round(
            large["raw_fetch_all_legacy"]["seconds"] / small["raw_fetch_all_legacy"]["seconds"], 2
        ),
        "raw_fetch_cpu_100k_over_10k": round(
            large["raw_fetch_all_legacy"]["cpu_seconds"]
            / max(small["raw_fetch_all_legacy"]["cpu_seconds"], 1e-9),
            2,
        ),
    }
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },  # fmt: skip
        "runs": runs,
        "many_tenants": _many_tenants(),
        "ratios": ratios,
        "goals": {
            "pages_per_second_within_1_2x": max(
                ratios["legacy_pages_per_second_10k_over_100k"],
                ratios["graph_pages_per_second_10k_over_100k"],
            )
            <= 1.2,
            "raw_fetch_at_most_12x": ratios["raw_fetch_100k_over_10k"] <= 12,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
