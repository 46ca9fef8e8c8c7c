"""``python -m bench.quota [N] [--api graph]``: a backlog under Microsoft's default quotas.

The emulator's home tenant seeded with N incidents (default 6,000), the emulator's default
quotas (Microsoft's: 50 incident calls a minute, 1,500 an hour) and the app's default settings
(its client-side limiter the same, ``API_MAX_RETRY_WAIT_SECONDS`` 30). ``python -m shared
ingest --json`` is run again and again, each time the previous run said the quota frees
(``resume_at``), until one completes. Each run must end ``ok`` with exit 0; those that do not
complete must say ``stopped: "quota"``. Checks at the end that every incident is archived
exactly once. Writes ``bench/results/quota.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.__main__ import _clear_storage
from emulator.azurite import Azurite
from emulator.server import Emulator, EmulatorConfig
from shared.core.clock import parse_utc
from testkit.storage_view import archived_lines, duplicates

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "quota.json"


def _ingest(settings: dict[str, str]) -> tuple[int, dict[str, Any], float]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DEFENDER_", "INGEST_", "API_"))
    }
    env.update(settings)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "shared", "ingest", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    try:
        summary = json.loads(result.stdout)
    except ValueError:
        raise SystemExit(
            f"ingest crashed (exit {result.returncode}): {result.stderr[-2000:]}"
        ) from None
    return result.returncode, dict(summary["tenants"][0]), wall


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quota")
    parser.add_argument("size", nargs="?", type=int, default=6000)
    parser.add_argument("--api", default="graph", choices=["graph", "legacy"])
    args = parser.parse_args(argv)
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    with Azurite() as azurite:
        _clear_storage(azurite.connection_string)
        config = EmulatorConfig(seed=61, home_incidents=args.size, customer_tenants=0)
        with Emulator(config) as emu:
            settings = dict(emu.app_settings())
            settings.update(
                DATA_STORAGE_CONNECTION_STRING=azurite.connection_string,
                INGEST_TENANTS=emu.home_tenant_id,
                DEFENDER_API=args.api,
            )
            while not runs or not runs[-1]["complete"]:
                code, result, wall = _ingest(settings)
                entry = {
                    "exit": code,
                    "wall_seconds": round(wall, 1),
                    **{
                        k: result.get(k)
                        for k in (
                            "ok", "complete", "stopped", "resume_at", "incidents", "api_calls",
                            "throttled", "error", "watermark",
                        )
                    },
                }  # fmt: skip
                runs.append(entry)
                print(json.dumps(entry), flush=True)
                if code != 0 or not result["ok"]:
                    raise SystemExit(f"a run failed: {entry}")
                if result["complete"]:
                    break
                if result["stopped"] != "quota" or not result["resume_at"]:
                    raise SystemExit(f"a run stopped for another reason: {entry}")
                wait = (parse_utc(result["resume_at"]) - datetime.now(UTC)).total_seconds()
                time.sleep(max(0.0, wait))
            lines = archived_lines(azurite.connection_string, emu.home_tenant_id)
    out = {
        "when": datetime.now(UTC).isoformat(timespec="minutes"),
        "api": args.api,
        "incidents": args.size,
        "settings": "defaults (50 calls/min and 1,500/hour, API_MAX_RETRY_WAIT_SECONDS 30)",
        "runs": runs,
        "archived_lines": len(lines),
        "duplicates": len(duplicates(lines)),
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}))
    return 0 if len(lines) == args.size and not out["duplicates"] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
