"""``python -m bench.http_bench [ROOT] [N]``: p50/p99 of ``GET /api/incidents/{id}`` via ``serve``.

Starts the local cloud, then ``python -m shared serve`` from ROOT (default: this checkout; a
snapshot of another branch works too, e.g. ``git archive main | tar -x -C /tmp/main``), and
times N sequential requests for seeded incidents through it, and N for the same ids straight
at the emulator's own ``GET /api/incidents/{id}``; reports both and the difference (what our
HTTP layer adds). Writes ``bench/results/http.json``.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench.naive import token
from emulator.azurite import Azurite
from emulator.server import Emulator, EmulatorConfig

UNLIMITED: dict[str, tuple[Any, ...]] = {"incidents": (), "alerts": (), "hunting": ()}
HERE = Path(__file__).resolve().parent.parent
RESULTS = HERE / "bench" / "results" / "http.json"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(root: Path, n: int) -> dict[str, Any]:
    if not (root / "shared" / "cli" / "serve.py").exists():
        return {"status": f"not measurable: {root} has no shared/cli/serve.py (http-api)"}
    config = EmulatorConfig(seed=3, home_incidents=200, customer_tenants=0, quotas=UNLIMITED)
    with Azurite() as azurite, Emulator(config) as emu:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DEFENDER_", "INGEST_"))}
        env.update(emu.app_settings())
        env.update(
            DATA_STORAGE_CONNECTION_STRING=azurite.connection_string,
            INGEST_TENANTS=emu.home_tenant_id,
            DEFENDER_API="legacy",
            # quotas off on both sides: this times the HTTP path, not the rate limiter
            API_RATE_LIMIT_INCIDENTS="100000/1",
            API_RATE_LIMIT_ALERTS="100000/1",
        )
        serve = subprocess.Popen(
            [sys.executable, "-m", "shared", "serve", "--port", str(port)],
            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        printed: list[str] = []
        assert serve.stdout is not None
        threading.Thread(target=lambda: printed.extend(serve.stdout or ()), daemon=True).start()
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    requests.get(f"{base}/api/health", timeout=2)
                    break
                except requests.ConnectionError:
                    time.sleep(0.2)
            time.sleep(0.2)
            # serve's run key and a caller's token (a checkout from before they existed
            # ignores both)
            key = next((x.split(":", 1)[1].strip() for x in printed if x.startswith("key ")), "")
            caller = {"x-functions-key": key, "Authorization": f"Bearer {emu.api_token('analyst')}"}
            ca = str(emu.ca_path)
            truth = requests.get(
                f"{emu.url}/_emulator/truth/{emu.home_tenant_id}/incidents?api=legacy",
                verify=ca,
                timeout=60,
            ).json()["value"]
            ids = [str(i["incidentId"]) for i in truth[:n]]
            ids = (ids * (n // max(len(ids), 1) + 1))[:n]
            ours: list[float] = []
            with requests.Session() as http:
                http.trust_env = False
                http.headers.update(caller)
                first = http.get(f"{base}/api/incidents/{ids[0]}", timeout=60)
                if first.status_code != 200:
                    return {"status": f"serve answered {first.status_code}: {first.text[:300]}"}
                for incident in ids:
                    t = time.perf_counter()
                    r = http.get(f"{base}/api/incidents/{incident}", timeout=60)
                    ours.append((time.perf_counter() - t) * 1000)
                    r.raise_for_status()
            bearer = token(emu.url, emu.home_tenant_id, emu.client_id, emu.client_secret,
                           "legacy", ca)  # fmt: skip
            direct: list[float] = []
            with requests.Session() as http:
                http.trust_env = False
                http.verify = ca
                headers = {"Authorization": f"Bearer {bearer}"}
                for incident in ids:
                    t = time.perf_counter()
                    r = http.get(f"{emu.url}/api/incidents/{incident}", headers=headers, timeout=60)
                    direct.append((time.perf_counter() - t) * 1000)
                    r.raise_for_status()
        finally:
            serve.terminate()
            serve.wait(timeout=30)
    p50, p99 = _pct(ours, 0.5), _pct(ours, 0.99)
    e50, e99 = _pct(direct, 0.5), _pct(direct, 0.99)
    return {
        "status": "measured",
        "requests": n,
        "serve_p50_ms": p50,
        "serve_p99_ms": p99,
        "emulator_p50_ms": e50,
        "emulator_p99_ms": e99,
        "ours_p50_ms": round(p50 - e50, 2),
        "ours_p99_ms": round(p99 - e99, 2),
        "mean_ms": round(statistics.mean(ours), 2),
    }


def main(argv: list[str]) -> int:
    root = Path(argv[0]).resolve() if argv else HERE
    n = int(argv[1]) if len(argv) > 1 else 200
    out = {
        "when": datetime.now(UTC).isoformat(timespec="minutes"),
        "root": str(root),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        **measure(root, n),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
