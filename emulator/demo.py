"""``make demo``: the whole chain on the local cloud, as a user would run it.

Starts the emulator (seeded tenants) and Azurite, runs ``python -m shared ingest --json`` against
them in a child process (the app only sees the settings the emulator prints, like a real
deployment only sees its app settings), prints the summary and where the data landed, then stops
both. Exit status 0 only if ingestion succeeded for every tenant.
"""

# ruff: noqa: T201 - a demo runner prints to the terminal

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from emulator.azurite import Azurite
from emulator.server import Emulator, EmulatorConfig

ROOT = Path(__file__).resolve().parent.parent


def _ingest(settings: dict[str, str]) -> tuple[int, dict[str, Any] | None, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEFENDER_", "INGEST_"))}
    env.update(settings)
    result = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "shared", "ingest", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        summary = json.loads(result.stdout)
    except ValueError:
        summary = None
    return result.returncode, summary, result.stderr


def _landed(connection_string: str, tenant: str) -> tuple[list[str], int]:
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(connection_string).get_container_client(
        "defender-incidents"
    )
    names = sorted(
        b.name for b in container.list_blobs(name_starts_with=f"incidents/tenant={tenant}/")
    )
    lines = 0
    for name in names:
        lines += gzip.decompress(container.download_blob(name).readall()).count(b"\n")
    return names, lines


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def main() -> int:
    """Run the demo; returns the exit status."""
    print("Starting the local cloud (emulator + Azurite)...", flush=True)
    with Emulator(EmulatorConfig(seed=1)) as emu, Azurite() as azurite:
        settings = dict(emu.app_settings())
        settings["DATA_STORAGE_CONNECTION_STRING"] = azurite.connection_string
        print(f"  emulator: {emu.url}   (CA: {emu.ca_path})")
        print(f"  Azurite:  blob port {azurite.blob_port}, table port {azurite.table_port}")
        tenants = settings["INGEST_TENANTS"].split(",")
        print(f"  tenants:  {len(tenants)} (home {settings['DEFENDER_TENANT_ID']})\n")

        print("$ python -m shared ingest --json", flush=True)
        status, summary, stderr = _ingest(settings)
        if summary is None:
            print(f"ingest printed no summary (exit {status}):\n{stderr}", file=sys.stderr)
            return 1
        print(json.dumps(summary, indent=2))

        print(
            "\nWhere the data landed (container 'defender-incidents', table 'DefenderIncidents'):"
        )
        for tenant in summary["tenants"]:
            names, lines = _landed(azurite.connection_string, tenant["tenant"])
            print(
                f"  tenant {tenant['tenant']}: {tenant['incidents']} incidents stored from "
                f"{_n(tenant['pages'], 'page')} in {_n(tenant['api_calls'], 'API call')}; "
                f"{_n(len(names), 'blob')}, {_n(lines, 'line')}"
            )
            for name in names[:3]:
                print(f"    {name}")
            if len(names) > 3:
                print(f"    ... and {len(names) - 3} more")
        print("\nRunning ingestion again (no new activity): should store nothing.")
        status2, again, _ = _ingest(settings)
        if again is not None:
            for tenant in again["tenants"]:
                print(
                    f"  tenant {tenant['tenant']}: {tenant['incidents']} stored, "
                    f"{_n(tenant['api_calls'], 'API call')}"
                )
        print("\nStopping the local cloud.")
        return 0 if status == 0 and status2 == 0 and summary["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
