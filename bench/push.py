"""``python -m bench.push [REPS]``: ingestion time with a push receiver that never answers.

The emulator's home tenant (260 incidents, quotas off) is ingested from scratch by ``python -m
shared ingest --json`` in its own process, REPS times (default 5) in each of three regimes,
interleaved so the shared machine's load falls on all of them alike:

- ``none``: no subscription;
- ``dead``: one subscription to every incident, its receiver a TCP listener that accepts and never
  answers (no TLS handshake, no HTTP answer), the push worker idle;
- ``dead+worker``: the same, with ``python -m shared subscriptions deliver`` running in a loop in
  another process during ingestion, timing out against the receiver (what the queue trigger would
  do in Azure, on the same machine).

It reports the median of the run's own duration (the summary's ``duration``) and of the process's
wall time, and the ratio of each regime to ``none`` (issue 20's target: at most 1.2x). Writes
``bench/results/push.json``. Before push was taken off the ingestion path, the same tenant with
such a receiver had not finished after 75 s (it stores in about 2 s without one).
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

from bench.__main__ import _clear_storage, machine
from emulator.azurite import Azurite
from emulator.server import Emulator, EmulatorConfig

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "push.json"
UNLIMITED: dict[str, tuple[Any, ...]] = {"incidents": (), "alerts": (), "hunting": ()}
SIGNING_KEY = "bench-signing-key-0123456789abcdef-0123456789"
REGIMES = ("none", "dead", "dead+worker")
SUBSCRIBE = (
    "import sys; from shared.bootstrap import services; from shared.push.messages import Filter; "
    "services().subscriptions().save(sys.argv[1], 'localhost', Filter())"
)


class DeadReceiver:
    """Accepts TCP connections on localhost and never answers (holds them open)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.connections = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._listener.close()


def _env(settings: dict[str, str]) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DEFENDER_", "INGEST_", "API_"))
    }
    env.update(settings)
    return env


def _clear_queues(connection_string: str) -> None:
    from azure.storage.queue import QueueServiceClient

    queues = QueueServiceClient.from_connection_string(connection_string)
    for queue in queues.list_queues():
        queues.delete_queue(queue.name)


def _worker_loop(settings: dict[str, str], stop: threading.Event) -> None:
    while not stop.is_set():
        subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "shared", "subscriptions", "deliver", "--json"],
            cwd=ROOT, env=_env(settings), capture_output=True, text=True, timeout=600,
            check=False,
        )  # fmt: skip


def _one(
    regime: str, settings: dict[str, str], azurite: Azurite, receiver: DeadReceiver
) -> dict[str, float]:
    _clear_storage(azurite.connection_string)
    _clear_queues(azurite.connection_string)
    if regime != "none":
        url = f"https://localhost:{receiver.port}/hook?sig=bench"
        subprocess.run(  # noqa: S603 - our own code
            [sys.executable, "-c", SUBSCRIBE, url],
            cwd=ROOT, env=_env(settings), check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    stop = threading.Event()
    worker = None
    if regime == "dead+worker":
        worker = threading.Thread(target=_worker_loop, args=(settings, stop), daemon=True)
        worker.start()
    started = time.perf_counter()
    result = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "shared", "ingest", "--json"],
        cwd=ROOT, env=_env(settings), capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    stop.set()
    if result.returncode != 0:
        raise SystemExit(f"ingest failed ({regime}): {result.stderr[-2000:]}")
    tenant = json.loads(result.stdout)["tenants"][0]
    if worker is not None:
        worker.join(60)
    return {
        "run_seconds": float(tenant["duration"]),
        "wall_seconds": wall,
        "stored": tenant["incidents"],
    }


def main(argv: list[str]) -> None:
    reps = int(argv[0]) if argv else 5
    where = machine()  # the load average before the runs
    config = EmulatorConfig(seed=5, customer_tenants=0, quotas=UNLIMITED)
    samples: dict[str, list[dict[str, float]]] = {r: [] for r in REGIMES}
    receiver = DeadReceiver()
    try:
        with Azurite() as azurite, Emulator(config) as emu:
            settings = dict(emu.app_settings())
            settings.update(
                DATA_STORAGE_CONNECTION_STRING=azurite.connection_string,
                INGEST_TENANTS=emu.home_tenant_id,
                INGEST_SAFETY_LAG_SECONDS="0",
                API_RATE_LIMIT_INCIDENTS="100000/1",
                API_RATE_LIMIT_ALERTS="100000/1",
                API_SIGNING_KEY=SIGNING_KEY,
                API_PUSH_HOST_SUFFIXES="localhost",
                API_PUSH_ALLOW_LOCAL_RECEIVER="true",
            )
            for rep in range(reps + 1):  # the first round warms caches and is not counted
                for regime in REGIMES:
                    figures = _one(regime, settings, azurite, receiver)
                    if rep:
                        samples[regime].append(figures)
                    print(regime, json.dumps(figures), flush=True)
    finally:
        receiver.close()
    out: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="minutes"),
        "machine": where,
        "reps": reps,
        "incidents": int(samples["none"][0]["stored"]),
        "receiver_connections": receiver.connections,
        "regimes": {},
    }
    base = statistics.median(s["run_seconds"] for s in samples["none"])
    base_wall = statistics.median(s["wall_seconds"] for s in samples["none"])
    for regime, runs in samples.items():
        run = statistics.median(s["run_seconds"] for s in runs)
        wall = statistics.median(s["wall_seconds"] for s in runs)
        out["regimes"][regime] = {
            "median_run_seconds": round(run, 3),
            "median_wall_seconds": round(wall, 3),
            "run_ratio": round(run / base, 3),
            "wall_ratio": round(wall / base_wall, 3),
            "run_seconds": [round(s["run_seconds"], 3) for s in runs],
        }
    worst = max(r["run_ratio"] for r in out["regimes"].values())
    out["target"] = {"max_ratio": 1.2, "worst_run_ratio": worst, "met": worst <= 1.2}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["regimes"], indent=2))
    print(f"worst ratio {worst} (target <= 1.2): {'met' if worst <= 1.2 else 'NOT met'}")


if __name__ == "__main__":
    main(sys.argv[1:])
