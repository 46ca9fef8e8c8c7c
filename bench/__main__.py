"""``python -m bench [--sizes 10000,100000] [--apis graph,legacy] [--regimes loopback,latency]``.

Side by side in one run, on the same seeded data (one emulator per size, quotas off, one
Azurite): the raw limit (``bench.naive.raw_limit``), a naive connector (``bench.naive``) and
ours (``python -m shared ingest --json``, the product's CLI in its own process), on both
surfaces, in two regimes: loopback, and latency added by ``bench.proxy`` (150 ms per API
request, 10 ms per storage call). Counts noise cannot move (API calls, token requests, storage
calls per 1,000 incidents against the minimum), cold start, peak RSS, and the speed and cost
targets (``targets``), each met or not. Writes ``bench/results/latest.json``,
``bench/results/bench.png`` and the benchmark table of docs/benchmarks.md. ``--sizes 1000``
for a quick run. The machine is shared and noisy: the load average at start is recorded with
the figures.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench.proxy import LatencyProxy
from emulator.azurite import Azurite
from emulator.server import Emulator, EmulatorConfig

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"
CHART = ROOT / "bench" / "results" / "bench.png"
#: where the benchmark table is written (between the bench markers); README.md links to it
README = ROOT / "docs" / "benchmarks.md"
UNLIMITED: dict[str, tuple[Any, ...]] = {"incidents": (), "alerts": (), "hunting": ()}
REGIMES = {"loopback": (0.0, 0.0), "latency": (0.150, 0.010)}  # (API, storage) seconds per call
PAGE = {"graph": 50, "legacy": 100}
# Runs the CLI in this interpreter and reports the peak RSS of that process alone
# (RUSAGE_CHILDREN would also count Azurite's node process, a child of the benchmark): VmHWM,
# the high-water mark of its own address space. Not getrusage's ru_maxrss: Linux carries that
# across execve from the image it replaces, so a child forked from this process (which holds the
# emulator's data: 250 MiB at 100,000 incidents) starts with the parent's size as its "peak"
# (getrusage(2), proc(5)). That made ingest runs at 100,000 look 2.9x those at 10,000.
#
# The measured process also sees only the packages a deploy installs (``requirements.txt``):
# this environment holds test-only packages too (the Graph SDK's aiohttp, httpx, ...), and
# azure-storage-blob imports aiohttp whenever it is installed (its authentication module),
# about 60 ms of CPU in every process that the deployed app never pays. Their top-level names
# are set to None in ``sys.modules``, the documented way to make an import fail
# (https://docs.python.org/3/reference/import.html#the-module-cache); a product import of one
# of them would fail the benchmark, which is what a deploy would do.
_MEASURED = """
import os, resource, runpy, sys
for _name in filter(None, os.environ.get("BENCH_ABSENT_MODULES", "").split(",")):
    sys.modules.setdefault(_name, None)
sys.argv = ["shared", *sys.argv[1:]]

def _peak_kib():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # no procfs: an upper bound

def _cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

try:
    runpy.run_module(sys.argv.pop(1) if sys.argv[1:2] == ["bench.naive"] else "shared",
                     run_name="__main__")
finally:
    sys.stderr.write(f"MAXRSS_KIB {_peak_kib()}\\nCPU_SECONDS {_cpu():.3f}\\n")
"""


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache  # once per benchmark: reading every distribution's metadata takes a while
def absent_in_deploy(requirements: Path = ROOT / "requirements.txt") -> list[str]:
    """Top-level modules installed here that no distribution pinned in ``requirements.txt``
    provides: what a deployed app cannot import (see ``_MEASURED``)."""
    pinned = set()
    for line in requirements.read_text().splitlines():
        name = re.split(r"[=<>!~\[; ]", line.split("#", 1)[0].strip(), maxsplit=1)[0]
        if name:
            pinned.add(_normal(name))
    return sorted(
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if module.isidentifier() and not any(_normal(d) in pinned for d in dists)
    )


def measured_peak_kib(stderr: str) -> int:
    """The peak RSS (KiB) that ``_MEASURED`` wrote last on a process's standard error."""
    return int(stderr.rsplit("MAXRSS_KIB ", 1)[1].split()[0])


def measured_cpu(stderr: str) -> float:
    """The CPU seconds (user + system) of the measured process alone, from its own
    ``getrusage(RUSAGE_SELF)`` at exit (``_MEASURED``): no emulator, no Azurite, no parent."""
    return float(stderr.rsplit("CPU_SECONDS ", 1)[1].split()[0])


def machine() -> dict[str, Any]:
    """Where the figures came from, with the load at start (a shared machine)."""
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "memory_mib": mem,
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _cli(settings: dict[str, str], *args: str) -> tuple[float, dict[str, Any], int, float]:
    """Run ``python -m shared *args`` (or ``bench.naive``) measured in its own process:
    (wall seconds, its JSON output, its peak RSS in KiB, its own CPU seconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEFENDER_", "INGEST_"))}
    env.update(settings)
    env["BENCH_ABSENT_MODULES"] = ",".join(absent_in_deploy())
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _MEASURED, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=7200, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {result.stderr[-2000:]}")
    peak_kib = measured_peak_kib(result.stderr)
    return elapsed, json.loads(result.stdout), peak_kib, measured_cpu(result.stderr)


def _admin(emu: Emulator, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(
        method, f"{emu.url}/_emulator/{path}", json=body, verify=str(emu.ca_path), timeout=60
    )
    response.raise_for_status()
    return response.json() if response.content else None


def _api_and_tokens(emu: Emulator) -> tuple[int, int]:
    stats = _admin(emu, "GET", "stats")
    api = sum(
        r["count"] for r in stats["requests"] if r["endpoint"].startswith(("graph.", "legacy."))
    )
    tokens = sum(r["count"] for r in stats["tokens"] if r["grant"] == "client_credentials")
    return api, tokens


def _clear_storage(connection_string: str) -> None:
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient

    blobs = BlobServiceClient.from_connection_string(connection_string)
    for container in blobs.list_containers():
        blobs.delete_container(container.name)
    tables = TableServiceClient.from_connection_string(connection_string)
    for table in tables.list_tables():
        tables.delete_table(table.name)


def _proxied(conn: str, azurite: Azurite, blob: LatencyProxy, table: LatencyProxy) -> str:
    conn = conn.replace(f":{azurite.blob_port}/", f":{blob.port}/")
    return conn.replace(f":{azurite.table_port}/", f":{table.port}/")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _one(
    emu: Emulator, azurite: Azurite, size: int, api: str, regime: str, expected: int
) -> dict[str, Any]:
    """raw, naive and ours for one surface in one regime."""
    api_delay, storage_delay = REGIMES[regime]
    out: dict[str, Any] = {}
    with (
        LatencyProxy(_port(emu.url), api_delay) as api_proxy,
        LatencyProxy(azurite.blob_port, storage_delay) as blob_proxy,
        LatencyProxy(azurite.table_port, storage_delay) as table_proxy,
    ):
        base = f"https://127.0.0.1:{api_proxy.port}"
        conn = _proxied(azurite.connection_string, azurite, blob_proxy, table_proxy)

        def storage_calls() -> int:
            return blob_proxy.counts()[0] + table_proxy.counts()[0]

        for kind in ("raw", "naive", "ours"):
            _clear_storage(azurite.connection_string)
            api0, tok0 = _api_and_tokens(emu)
            st0 = storage_calls()
            figures: dict[str, Any] = {}
            if kind == "ours":
                settings = dict(emu.app_settings())
                settings.update(
                    DATA_STORAGE_CONNECTION_STRING=conn,
                    DEFENDER_API=api,
                    DEFENDER_LEGACY_API_URL=base,
                    DEFENDER_GRAPH_API_URL=base,
                    INGEST_TENANTS=emu.home_tenant_id,
                    INGEST_PAGE_SIZE=str(PAGE[api]),
                    INGEST_SAFETY_LAG_SECONDS="0",
                    INGEST_LOOKBACK_DAYS="8",
                    INGEST_TIME_BUDGET_SECONDS="3600",
                    API_RATE_LIMIT_INCIDENTS="100000/1",
                    API_RATE_LIMIT_ALERTS="100000/1",
                )
                wall, summary, kib, cpu = _cli(settings, "ingest", "--json")
                tenant = summary["tenants"][0]
                if not tenant["ok"] or not tenant["complete"]:
                    raise SystemExit(f"our ingest did not finish: {tenant}")
                figures.update(
                    process_seconds=round(wall, 2),
                    cpu_seconds=cpu,
                    seconds=round(float(tenant["duration"]), 2),
                    incidents=tenant["incidents"],
                    peak_rss_mib=round(kib / 1024, 1),
                    slices=tenant["slices"],
                    splits=tenant["splits"],
                )
                storage_before_rerun = storage_calls()
                api1, _ = _api_and_tokens(emu)
                _, again, _, idle_cpu = _cli(settings, "ingest", "--json")
                # an idle run's CPU is the process's fixed cost (interpreter, imports, token,
                # Key Vault, one call, state): shown apart from the per-incident cost
                figures["idle_rerun_cpu_seconds"] = idle_cpu
                api2, _ = _api_and_tokens(emu)
                figures["idle_rerun_api_calls"] = api2 - api1
                figures["idle_rerun_stored"] = again["tenants"][0]["incidents"]
                # the idle rerun is not part of the first run's counts
                rerun_storage = storage_calls() - storage_before_rerun
                api_calls, tokens = api1 - api0, None
            else:
                # in a process of its own, like ours: this process also serves the emulator,
                # whose CPU is no part of a reader's (an earlier measure counted it for raw
                # and naive, inflating both)
                settings = dict(emu.app_settings())
                settings.update(
                    DATA_STORAGE_CONNECTION_STRING=conn,
                    DEFENDER_API=api,
                    DEFENDER_LEGACY_API_URL=base,
                    DEFENDER_GRAPH_API_URL=base,
                    BENCH_EXPECTED=str(expected),
                    BENCH_CLIENT_SECRET=emu.client_secret,
                )
                _, done, kib, cpu = _cli(settings, "bench.naive", kind)
                figures.update(
                    seconds=float(done["seconds"]),
                    incidents=int(done["incidents"]),
                    cpu_seconds=cpu,
                    peak_rss_mib=round(kib / 1024, 1),
                )
                rerun_storage = 0
                api_calls, tokens = None, None
            api_n, tok_n = _api_and_tokens(emu)
            if api_calls is None:
                api_calls = api_n - api0
            tokens = tok_n - tok0 if kind != "ours" else _tokens_first_run(tok0, tok_n)
            calls = storage_calls() - st0 - rerun_storage
            per_k = 1000 / max(figures["incidents"], 1)
            figures.update(
                cpu_seconds_per_1000=round(figures["cpu_seconds"] * per_k, 3),
                api_calls=api_calls,
                api_calls_per_1000=round(api_calls * per_k, 1),
                token_requests=tokens,
                storage_calls=calls,
                storage_calls_per_1000=round(calls * per_k, 1),
                incidents_per_second=round(figures["incidents"] / figures["seconds"], 1),
            )
            out[kind] = figures
            print(f"{size} {api} {regime} {kind}: {json.dumps(figures)}", file=sys.stderr)
    pages = out["raw"]["api_calls"]
    minimum_pages = math.ceil(size / PAGE[api])
    out["minimum"] = {
        "api_calls": minimum_pages,
        "api_calls_per_1000": round(minimum_pages * 1000 / size, 1),
        "token_requests": 1,
        # one blob per page and one 100-entity table transaction per 100 incidents
        "storage_calls": minimum_pages + math.ceil(size / 100),
    }
    if regime == "latency":
        out["limit_seconds_api_bound"] = round(pages * api_delay, 2)
    ours, naive, raw = out["ours"]["seconds"], out["naive"]["seconds"], out["raw"]["seconds"]
    out["ratios"] = {
        "ours_speedup_vs_naive": round(naive / ours, 2),
        "ours_share_of_raw_limit": round(raw / ours, 3),
        # CPU of each reader's own process per 1,000 incidents, ours against raw (goal: at most 2x)
        "ours_cpu_vs_raw": round(
            out["ours"]["cpu_seconds_per_1000"] / out["raw"]["cpu_seconds_per_1000"], 2
        ),
        "naive_cpu_vs_raw": round(
            out["naive"]["cpu_seconds_per_1000"] / out["raw"]["cpu_seconds_per_1000"], 2
        ),
    }
    if regime == "latency":
        out["ratios"]["ours_share_of_api_bound_limit"] = round(
            out["limit_seconds_api_bound"] / ours, 3
        )
    return out


def _tokens_first_run(before: int, after: int) -> int:
    # two CLI processes ran (first run and idle rerun): each asks for its own token
    return max(after - before - 1, 0)


def cold_start(runs: int = 9) -> dict[str, float]:
    """Medians of ``import function_app`` and of bare ``import azure.functions`` in fresh
    interpreters: wall ms and CPU ms. On a loaded shared machine wall time is mostly waiting
    for a core, so the target is judged on CPU time (the work the import does)."""

    def medians(module: str) -> tuple[float, float]:
        code = (
            f"import time; t=time.perf_counter(); c=time.process_time(); import {module}; "
            "print(time.perf_counter()-t, time.process_time()-c)"
        )
        walls, cpus = [], []
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                check=True, env={"PATH": os.environ.get("PATH", "")},
            )  # fmt: skip
            wall, cpu = (float(x) * 1000 for x in out.stdout.split()[-2:])
            walls.append(wall)
            cpus.append(cpu)
        return round(statistics.median(walls), 1), round(statistics.median(cpus), 1)

    app_wall, app_cpu = medians("function_app")
    bare_wall, bare_cpu = medians("azure.functions")
    return {
        "function_app_ms": app_wall,
        "azure_functions_ms": bare_wall,
        "function_app_cpu_ms": app_cpu,
        "azure_functions_cpu_ms": bare_cpu,
        "ratio": round(app_cpu / bare_cpu, 2),
        "wall_ratio": round(app_wall / bare_wall, 2),
    }


_FIRST_INVOCATION = """
import time
t = time.perf_counter()
import function_app
from azure.functions.timer import TimerRequest
imported = time.perf_counter()
function_app.ingest_timer._function._func(TimerRequest(past_due=False))
print(imported - t, time.perf_counter() - imported)
"""


def first_invocation(emu: Emulator, azurite: Azurite) -> dict[str, float]:
    """A fresh process: import, then the timer function's first (idle) run, in ms."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEFENDER_", "INGEST_"))}
    env.update(emu.app_settings())
    env.update(
        DATA_STORAGE_CONNECTION_STRING=azurite.connection_string,
        INGEST_TENANTS=emu.home_tenant_id,
        INGEST_SAFETY_LAG_SECONDS="0",
        INGEST_LOOKBACK_DAYS="8",
    )
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_INVOCATION],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    if out.returncode != 0:
        return {"error": out.stderr[-500:]}  # type: ignore[dict-item]
    imported, invoked = (float(x) * 1000 for x in out.stdout.split()[-2:])
    return {"import_ms": round(imported, 1), "first_invocation_ms": round(invoked, 1)}


def http_figures() -> dict[str, Any]:
    """``bench.http_bench`` on this checkout when it has ``serve`` (http-api), else the last
    ``bench/results/http.json`` (e.g. measured on a snapshot of main), said as such."""
    from bench import http_bench

    if (ROOT / "shared" / "cli" / "serve.py").exists():
        return http_bench.measure(ROOT, 200)
    if http_bench.RESULTS.exists():
        data = dict(json.loads(http_bench.RESULTS.read_text()))
        data["status"] = f"from bench/results/http.json, serve of {data.get('root')}"
        return data
    return {"status": "not measurable: this checkout has no serve (http-api)"}


def many_tenants() -> dict[str, Any]:
    """The 1,000-tenant figures of partner-scale's ``bench/tenants.py`` (its own, long run:
    ``python -m bench.tenants``), quoted when present."""
    if not (ROOT / "bench" / "tenants.py").exists():
        return {"status": "bench/tenants.py (partner-scale) is not merged into this branch"}
    path = ROOT / "bench" / "results" / "tenants.json"
    if not path.exists():
        return {"status": "run python -m bench.tenants first"}
    data = json.loads(path.read_text())
    idle = data.get("idle_tick", {})
    return {
        "status": f"from bench/results/tenants.json ({data.get('when')})",
        "tenants": data.get("tenants"),
        "added_latency_ms": data.get("added_latency_ms"),
        "idle_api_calls_per_tenant": idle.get("calls_per_tenant"),
        "idle_token_requests": idle.get("token_requests"),
        "responses_429": idle.get("responses_429"),
    }


def marginal_cpu(fig: dict[str, Any]) -> dict[str, Any]:
    """CPU per 1,000 incidents as the slope between the smallest and the largest size, per
    surface, loopback: what each further 1,000 incidents cost each reader, without the fixed
    cost of a process (interpreter, imports, token; ours also Key Vault and state), which the
    figure per 1,000 at one size spreads over that size's incidents. Shown beside that figure,
    not instead of it (docs/benchmarks.md says why)."""
    sizes = [s for s in fig["sizes"] if "loopback" in next(iter(fig["sizes"][s].values()))]
    if len(sizes) < 2:
        return {}
    small, large = sizes[0], sizes[-1]
    out: dict[str, Any] = {}
    for api in fig["sizes"][large]:
        a, b = fig["sizes"][small][api]["loopback"], fig["sizes"][large][api]["loopback"]
        row: dict[str, Any] = {"between": [int(small), int(large)]}
        for kind in ("raw", "ours", "naive"):
            extra = b[kind]["incidents"] - a[kind]["incidents"]
            cpu = b[kind]["cpu_seconds"] - a[kind]["cpu_seconds"]
            row[f"{kind}_cpu_seconds_per_1000"] = round(cpu * 1000 / max(extra, 1), 3)
        row["ours_cpu_vs_raw"] = round(
            row["ours_cpu_seconds_per_1000"] / row["raw_cpu_seconds_per_1000"], 2
        )
        out[api] = row
    return out


def targets(fig: dict[str, Any]) -> list[dict[str, Any]]:
    """The speed and cost targets, each met or not, with the measured value."""
    rows: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: str, met: bool | None, note: str = "") -> None:
        rows.append({"target": name, "value": value, "goal": goal, "met": met, "note": note})

    for size, by_api in fig["sizes"].items():
        for api, regimes in by_api.items():
            if "loopback" in regimes:
                r = regimes["loopback"]["ratios"]["ours_speedup_vs_naive"]
                add(f"loopback speed-up vs naive ({api}, {size})", r, ">= 3x", r >= 3)
                c = regimes["loopback"]["ratios"]["ours_cpu_vs_raw"]
                add(f"CPU per 1,000 incidents, ours / raw fetch + gzip ({api}, {size})", c,
                    "<= 2x", c <= 2)  # fmt: skip
            if "latency" in regimes:
                ratios = regimes["latency"]["ratios"]
                r = ratios["ours_speedup_vs_naive"]
                add(f"latency speed-up vs naive ({api}, {size})", r, ">= 10x", r >= 10)
                s = ratios["ours_share_of_api_bound_limit"]
                add(f"latency share of API-bound limit ({api}, {size})", s, ">= 0.9", s >= 0.9)
            any_regime = next(iter(regimes.values()))
            calls = any_regime["ours"]["api_calls"] / any_regime["minimum"]["api_calls"]
            add(f"API calls / minimum, backfill ({api}, {size})", round(calls, 2), "<= 1.2",
                calls <= 1.2)  # fmt: skip
            idle = any_regime["ours"]["idle_rerun_api_calls"]
            add(f"API calls of an idle rerun ({api}, {size})", idle, "== 1", idle == 1)
    for api, row in fig.get("marginal_cpu", {}).items():
        c = row["ours_cpu_vs_raw"]
        small, large = row["between"]
        add(f"CPU per further 1,000 incidents (slope {small:,} to {large:,}), ours / raw ({api})",
            c, "<= 2x", c <= 2, "beside the figure at one size, not instead of it")  # fmt: skip
    many = fig.get("many_tenants", {})
    per = many.get("idle_api_calls_per_tenant")
    worst = None if not per else max(per)
    note = "" if per else str(many.get("status", ""))
    add("API calls per idle tenant per run (1,000 tenants)", worst, "== 1",
        None if worst is None else worst == 1, note)  # fmt: skip
    cold = fig["cold_start"]
    add("function_app import / bare azure.functions (CPU)", cold["ratio"], "<= 1.2",
        cold["ratio"] <= 1.2)  # fmt: skip
    rss = fig.get("rss_ratio")
    add("peak RSS largest / smallest size", rss, "<= 1.3", None if rss is None else rss <= 1.3,
        "" if rss is not None else "needs two sizes")  # fmt: skip
    return rows


def chart(fig: dict[str, Any]) -> None:
    """Incidents per second of raw, naive and ours for each size, surface and regime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, raw, naive, ours = [], [], [], []
    for size, by_api in fig["sizes"].items():
        for api, regimes in by_api.items():
            for regime, r in regimes.items():
                labels.append(f"{api}\n{regime}\n{int(size):,}")
                raw.append(r["raw"]["incidents_per_second"])
                naive.append(r["naive"]["incidents_per_second"])
                ours.append(r["ours"]["incidents_per_second"])
    x = range(len(labels))
    width = 0.27
    figure, axis = plt.subplots(figsize=(max(6, 1.6 * len(labels)), 4.5))
    axis.bar([i - width for i in x], raw, width, label="raw limit (fetch + gzip)")
    axis.bar(list(x), ours, width, label="ours (shared ingest)")
    axis.bar([i + width for i in x], naive, width, label="naive connector")
    axis.set_xticks(list(x), labels)
    axis.set_ylabel("incidents per second (log)")
    axis.set_yscale("log")
    m = fig["machine"]
    axis.set_title(f"{fig['when']}, {m['cores']} cores, load {m['load_average_at_start'][0]}")
    axis.legend()
    figure.tight_layout()
    figure.savefig(CHART, dpi=100)
    plt.close(figure)


def readme_table(fig: dict[str, Any]) -> str:
    """The benchmark block of docs/benchmarks.md (between the bench markers)."""
    m = fig["machine"]
    lines = [
        f"Run of {fig['when']} on {m['cores']} cores, {m['memory_mib']:,} MiB, Python "
        f"{m['python']}, load average at start {m['load_average_at_start']} (a machine shared "
        "with other agents: wall times are noisy; the call counts are not). Chart: "
        "`bench/results/bench.png`. Seconds; ours is the tenant's ingest inside `shared ingest` "
        "(process start and token excluded, shown apart in the JSON). CPU: user + system "
        "seconds of each reader's own process (raw and naive run in processes of their own, "
        "like ours; the emulator's serving is in none of them), per 1,000 incidents, process "
        "start and token included for all three.",
        "",
        "| size | API | regime | raw limit | ours | naive | ours vs naive | ours / raw "
        "| ours / API-bound limit | CPU s per 1k raw / ours / naive | ours CPU / raw "
        "| API calls per 1k (min) | tokens | storage calls per 1k ours / naive (min) "
        "| peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, by_api in fig["sizes"].items():
        for api, regimes in by_api.items():
            for regime, r in regimes.items():
                ratios = r["ratios"]
                bound = ratios.get("ours_share_of_api_bound_limit")
                mn = r["minimum"]
                min_storage = round(mn["storage_calls"] * 1000 / int(size), 1)
                lines.append(
                    f"| {int(size):,} | {api} | {regime} | {r['raw']['seconds']} | "
                    f"{r['ours']['seconds']} | {r['naive']['seconds']} | "
                    f"{ratios['ours_speedup_vs_naive']}x | {ratios['ours_share_of_raw_limit']} | "
                    f"{'-' if bound is None else bound} | "
                    f"{r['raw']['cpu_seconds_per_1000']} / {r['ours']['cpu_seconds_per_1000']} / "
                    f"{r['naive']['cpu_seconds_per_1000']} | {ratios['ours_cpu_vs_raw']}x | "
                    f"{r['ours']['api_calls_per_1000']} "
                    f"({mn['api_calls_per_1000']}) | {r['ours']['token_requests']} | "
                    f"{r['ours']['storage_calls_per_1000']} / "
                    f"{r['naive']['storage_calls_per_1000']} ({min_storage}) | "
                    f"{r['ours']['peak_rss_mib']} MiB |"
                )
    for api, row in fig.get("marginal_cpu", {}).items():
        small, large = row["between"]
        lines.append(
            f"\nCPU per further 1,000 incidents, {api}, loopback (slope from {small:,} to "
            f"{large:,}): raw {row['raw_cpu_seconds_per_1000']} s, ours "
            f"{row['ours_cpu_seconds_per_1000']} s, naive {row['naive_cpu_seconds_per_1000']} s: "
            f"ours {row['ours_cpu_vs_raw']}x raw."
        )
    cold = fig["cold_start"]
    first = fig.get("first_invocation", {})
    lines += [
        "",
        f"Cold start (median of 9 fresh interpreters): `import function_app` "
        f"{cold['function_app_cpu_ms']} ms CPU ({cold['function_app_ms']} ms wall) against bare "
        f"`import azure.functions` {cold['azure_functions_cpu_ms']} ms CPU "
        f"({cold['azure_functions_ms']} ms wall): {cold['ratio']}x CPU, {cold['wall_ratio']}x "
        "wall (wall is mostly waiting for a core on this machine); first timer invocation after "
        f"import (idle tenant, token and Key Vault included): "
        f"{first.get('first_invocation_ms', '-')} ms.",
        f"HTTP `GET /api/incidents/{{id}}` through `serve`: {_http_line(fig['http'])}.",
        f"Many tenants: {json.dumps(fig['many_tenants'])}.",
        "",
        "| target | value | goal | met |",
        "|---|---|---|---|",
    ]
    for t in fig["targets"]:
        met = "n/a" if t["met"] is None else "yes" if t["met"] else "**no**"
        note = f" ({t['note']})" if t["note"] else ""
        lines.append(f"| {t['target']} | {t['value']} | {t['goal']} | {met}{note} |")
    return "\n".join(lines)


def _http_line(http: dict[str, Any]) -> str:
    if "ours_p50_ms" not in http:
        return str(http.get("status"))
    return (
        f"p50 {http['serve_p50_ms']} ms / p99 {http['serve_p99_ms']} ms, the emulator's own "
        f"p50 {http['emulator_p50_ms']} / p99 {http['emulator_p99_ms']} ms, so ours adds "
        f"{http['ours_p50_ms']} ms at p50 and {http['ours_p99_ms']} ms at p99 "
        f"({http['requests']} sequential requests; {http['status']})"
    )


def write_readme(block: str) -> None:
    text = README.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start not in text:
        where = "### The local cloud alone"
        text = text.replace(where, f"{start}\n{end}\n\n{where}", 1)
    text = re.sub(f"{start}.*?{end}", lambda _: f"{start}\n{block}\n{end}", text, flags=re.S)
    README.write_text(text)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--apis", default="graph,legacy")
    parser.add_argument("--regimes", default="loopback,latency")
    parser.add_argument(
        "--latency-max-size",
        type=int,
        default=10_000,
        help="run the latency regime only up to this size (at 100,000 the naive connector "
        "alone pays 100,000 x 10 ms of storage latency: about an hour for both surfaces)",
    )
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    apis = args.apis.split(",")
    regimes = args.regimes.split(",")
    fig: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="minutes"),
        "machine": machine(),
        "regimes": {k: {"api_s": v[0], "storage_s": v[1]} for k, v in REGIMES.items()},
        "sizes": {},
    }
    with Azurite() as azurite:
        for size in sizes:
            config = EmulatorConfig(
                seed=11, home_incidents=size, customer_tenants=0, quotas=UNLIMITED
            )
            with Emulator(config) as emu:
                by_api: dict[str, Any] = {}
                here = [r for r in regimes if r != "latency" or size <= args.latency_max_size]
                for api in apis:
                    by_api[api] = {r: _one(emu, azurite, size, api, r, size) for r in here}
                fig["sizes"][str(size)] = by_api
                if size == sizes[0]:
                    fig["first_invocation"] = first_invocation(emu, azurite)
    peaks = [
        max(r["ours"]["peak_rss_mib"] for a in by.values() for r in a.values())
        for by in fig["sizes"].values()
    ]
    fig["peak_rss_mib_by_size"] = dict(zip(fig["sizes"], peaks, strict=True))
    fig["rss_ratio"] = round(peaks[-1] / peaks[0], 2) if len(peaks) > 1 else None
    fig["marginal_cpu"] = marginal_cpu(fig)
    fig["cold_start"] = cold_start()
    fig["http"] = http_figures()
    fig["many_tenants"] = many_tenants()
    fig["targets"] = targets(fig)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(fig, indent=2) + "\n")
    chart(fig)
    if not args.no_readme:
        write_readme(readme_table(fig))
    print(readme_table(fig))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
