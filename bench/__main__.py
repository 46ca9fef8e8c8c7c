"""``python -m bench``: ingestion throughput, API and token calls, cold start and memory.

Runs against the local cloud (emulator + Azurite) on loopback, so figures measure our code and
the SDKs, not the network. Results go to ``bench/results/latest.json`` and are printed; the
README quotes them. The machine is shared and noisy: read figures as orders of magnitude.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from emulator.azurite import Azurite
from emulator.server import Emulator, EmulatorConfig

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"
HOME_INCIDENTS = 2000
# runs the CLI in this interpreter and reports its own peak RSS (RUSAGE_CHILDREN would also count
# Azurite's node process, a child of the benchmark)
_MEASURED = """
import resource, runpy, sys
sys.argv = ["shared", *sys.argv[1:]]
try:
    runpy.run_module("shared", run_name="__main__")
finally:
    sys.stderr.write(f"MAXRSS_KIB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n")
"""


def _cli(settings: dict[str, str], *args: str) -> tuple[float, dict[str, Any], int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEFENDER_", "INGEST_"))}
    env.update(settings)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _MEASURED, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"ingest failed: {result.stderr[-2000:]}")
    peak_kib = int(result.stderr.rsplit("MAXRSS_KIB ", 1)[1].split()[0])
    return elapsed, json.loads(result.stdout), peak_kib


def _stats(emu: Emulator) -> dict[str, Any]:
    response = requests.get(f"{emu.url}/_emulator/stats", verify=str(emu.ca_path), timeout=30)
    response.raise_for_status()
    return dict(response.json())


def _count(stats: dict[str, Any], key: str, field: str, value: str) -> int:
    return sum(row["count"] for row in stats[key] if row[field] == value)


def _cold_import() -> float:
    """Median wall time of ``import function_app`` in a fresh interpreter (ms)."""
    code = "import time; t=time.perf_counter(); import function_app; print(time.perf_counter()-t)"
    runs = []
    for _ in range(5):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
            env={"PATH": os.environ.get("PATH", "")},
        )  # fmt: skip
        runs.append(float(out.stdout.strip().splitlines()[-1]) * 1000)
    return statistics.median(runs)


def main() -> int:
    """Run every benchmark and write the results."""
    figures: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "home_incidents": HOME_INCIDENTS,
    }
    config = EmulatorConfig(seed=11, home_incidents=HOME_INCIDENTS, customer_tenants=0)
    for api in ("graph", "legacy"):
        with Emulator(config) as emu, Azurite() as azurite:
            settings = dict(emu.app_settings())
            settings.update(
                DATA_STORAGE_CONNECTION_STRING=azurite.connection_string,
                DEFENDER_API=api,
                INGEST_TENANTS=settings["DEFENDER_TENANT_ID"],
            )
            seconds, summary, peak_kib = _cli(settings, "ingest", "--json")
            tenant = summary["tenants"][0]
            stats = _stats(emu)
            again_seconds, again, _ = _cli(settings, "ingest", "--json")
            figures[api] = {
                "first_run_seconds": round(seconds, 2),
                "incidents_stored": tenant["incidents"],
                "incidents_per_second": round(tenant["incidents"] / seconds, 1),
                "pages": tenant["pages"],
                "api_calls": tenant["api_calls"],
                "token_requests": _count(stats, "tokens", "grant", "client_credentials"),
                "peak_rss_mib": round(peak_kib / 1024, 1),
                "rerun_seconds": round(again_seconds, 2),
                "rerun_api_calls": again["tenants"][0]["api_calls"],
                "rerun_stored": again["tenants"][0]["incidents"],
            }
    figures["cold_import_function_app_ms"] = round(_cold_import(), 1)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
