"""``python -m bench.chaos [N] [--seed S]``: randomized chaos runs; nothing lost, nothing twice.

Each run starts from the emulator's seeded state and empty storage, picks a surface and a
random schedule, then does 2-4 rounds of: SOC activity (new, updated and merged incidents),
one or two ``shared ingest`` processes at once (concurrent runs: the lease lets one in), and
at random one of: a SIGKILL of a process at a random moment (its lease then lapses, on its
own or broken at once), a lease that lapses under a live run while another run starts, Key
Vault unavailable for a process (its vault URL points at a closed port), an Azurite restart
while a process writes. Throughout: API faults (429, 500, 503, connection resets,
truncated bodies, slow answers) at a random rate, arbitrary listing order, updates during
paging, late-arriving updates (the safety lag covers them) and access tokens that expire at
once (MSAL then asks Entra again mid-run). At the end faults stop, leases lapse and a clean
run finishes; then the store is compared with the emulator's truth (``tests.e2e``'s storage
view helpers):

- duplicated: versions (id, last update) stored more than once in the archive;
- lost: current versions missing from the archive or the table (wrong or missing row), and
  versions that were visible and still when a run that completed began (settled before the
  safety lag) but are missing.

Prints a table and writes ``bench/results/chaos.json``. A short version runs in ``make test``
(``tests/e2e/test_chaos.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from emulator.azurite import Azurite
from emulator.server import Emulator, EmulatorConfig
from tests.e2e.storage_view import archived_lines, duplicates, incident_key, table_rows
from tests.e2e.test_ingest_guarantees import break_lease

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "chaos.json"
LEASE_SECONDS = 15  # the shortest blob lease: a killed run's lease lapses this soon
FAULT_KINDS = ("429", "500", "503", "reset", "slow", "truncated")
STATUS_KIND = {429: "429", 500: "500", 503: "503", 0: "reset"}


@dataclass
class Tally:
    """What the runs did and found."""

    runs: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    lapsed_leases: int = 0
    concurrent: int = 0
    vault_down: int = 0
    azurite_restarts: int = 0
    token_expiry_runs: int = 0
    late_arrival_runs: int = 0
    paging_activity_runs: int = 0
    arbitrary_order_runs: int = 0
    processes: int = 0
    incidents: int = 0
    versions: int = 0
    lost: int = 0
    duplicated: int = 0
    failures: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "faults"}
        out["faults"] = dict(self.faults)
        return out


class Cloud:
    """The emulator's admin API and settings for the ingest processes."""

    def __init__(self, emu: Emulator, azurite: Azurite) -> None:
        self.emu, self.azurite = emu, azurite
        self.tenant = emu.home_tenant_id

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = requests.request(
            method,
            f"{self.emu.url}/_emulator/{path}",
            json=body,
            verify=str(self.emu.ca_path),
            timeout=60,
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def truth(self, api: str, visible: bool = False) -> list[dict[str, Any]]:
        query = f"api={api}&visible={'true' if visible else 'false'}"
        return list(self.admin("GET", f"truth/{self.tenant}/incidents?{query}")["value"])

    def settings(self, api: str, lag: int) -> dict[str, str]:
        env = dict(self.emu.app_settings())
        env.update(
            DATA_STORAGE_CONNECTION_STRING=self.azurite.connection_string,
            DEFENDER_API=api,
            INGEST_TENANTS=self.tenant,
            INGEST_PAGE_SIZE="50",
            INGEST_SAFETY_LAG_SECONDS=str(lag),
            INGEST_OVERLAP_MINUTES="10",
            INGEST_LOOKBACK_DAYS="8",
            INGEST_LEASE_SECONDS=str(LEASE_SECONDS),
            API_MAX_ATTEMPTS="8",
        )
        return env


def _clear_storage(connection_string: str) -> None:
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient

    blobs = BlobServiceClient.from_connection_string(connection_string)
    for container in blobs.list_containers():
        blobs.delete_container(container.name)
    tables = TableServiceClient.from_connection_string(connection_string)
    for table in tables.list_tables():
        tables.delete_table(table.name)


def _restart(azurite: Azurite) -> None:
    """Restart Azurite on the same ports and data folder (``stop()`` alone would delete the
    data of an instance that made its own folder: a wipe, not a restart)."""
    own = azurite._own_location  # noqa: SLF001 - the harness keeps the data on purpose
    azurite._own_location = False  # noqa: SLF001
    try:
        azurite.stop()
    finally:
        azurite._own_location = own  # noqa: SLF001
    azurite.start()


def _spawn(env: dict[str, str]) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DEFENDER_", "INGEST_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "shared", "ingest", "--json"],
        cwd=ROOT,
        env={**base, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen[str]) -> dict[str, Any] | None:
    """The tenant's summary entry, or None when the process died or failed outright."""
    out, _ = process.communicate(timeout=600)
    if process.returncode not in (0, 1):
        return None
    try:
        return dict(json.loads(out)["tenants"][0])
    except (ValueError, KeyError, IndexError):
        return None


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _settled(snapshot: list[dict[str, Any]], before: datetime) -> set[tuple[str, str]]:
    """Versions of a snapshot last updated before ``before``."""
    return {k for k in map(incident_key, snapshot) if _parse(k[1]) < before}


def one_run(cloud: Cloud, rng: random.Random, tally: Tally) -> None:
    """One randomized run; adds its findings to the tally."""
    cloud.admin("POST", "reset")
    _clear_storage(cloud.azurite.connection_string)
    api = rng.choice(("legacy", "graph"))
    behaviour: dict[str, Any] = {}
    if rng.random() < 0.5:
        behaviour.update(order="arbitrary", order_seed=rng.randrange(1 << 30))
        tally.arbitrary_order_runs += 1
    if rng.random() < 0.5:
        behaviour["paging_activity"] = {
            "tenant": None,
            "every": rng.randint(1, 3),
            "create": rng.randint(0, 2),
            "update": rng.randint(0, 3),
            "merge": rng.randint(0, 1),
        }
        tally.paging_activity_runs += 1
    late = 0.0
    if rng.random() < 0.3:
        late = round(rng.uniform(0.5, 2.0), 2)
        behaviour["late_arrival_seconds"] = late
        tally.late_arrival_runs += 1
    lag = int(late) + 1 if late else 0
    if behaviour:
        cloud.admin("POST", "behaviour", behaviour)
    if rng.random() < 0.3:
        cloud.admin("POST", "tokens", {"lifetime": 1})  # under MSAL's 5 minutes: asked again
        tally.token_expiry_runs += 1
    kinds = rng.sample(FAULT_KINDS, rng.randint(1, len(FAULT_KINDS)))
    cloud.admin(
        "POST",
        "faults",
        {
            "rate": round(rng.uniform(0.05, 0.3), 3),
            "kinds": kinds,
            "seed": rng.randrange(1 << 30),
            "slow_seconds": 0.3,
            "retry_after": 1,
        },
    )
    env = cloud.settings(api, lag)
    events = [f"{api} behaviour={behaviour} faults={kinds}"]
    must_have: set[tuple[str, str]] = set()
    killed_at: float | None = None
    for _ in range(rng.randint(2, 4)):
        activity = {"tenant": cloud.tenant, "create": rng.randint(0, 4)}
        activity.update(update=rng.randint(0, 6), merge=rng.randint(0, 1))
        cloud.admin("POST", "activity", activity)
        # what a run must store: versions visible now that are also the latest (under late
        # arrival a visible version may already be superseded by one not visible yet, which
        # legitimately replaces it before a run reads it)
        latest_now = {incident_key(i) for i in cloud.truth(api)}
        snapshot = [i for i in cloud.truth(api, visible=True) if incident_key(i) in latest_now]
        began = datetime.now(UTC)
        chaos = rng.random()
        envs = [env]
        if rng.random() < 0.3:
            envs.append(env)
            tally.concurrent += 1
        if chaos < 0.1:
            envs[0] = {**env, "KEY_VAULT_URL": "https://127.0.0.1:9"}  # nothing listens there
            tally.vault_down += 1
        processes = [_spawn(e) for e in envs]
        tally.processes += len(processes)
        if 0.1 <= chaos < 0.45:
            time.sleep(rng.uniform(0.5, 4.0))
            victim = rng.choice(processes)
            if victim.poll() is None:
                victim.send_signal(signal.SIGKILL)
                tally.kills += 1
                if rng.random() < 0.5:
                    break_lease(cloud.azurite.connection_string, cloud.tenant)  # lapsed at once
                    tally.lapsed_leases += 1
                else:
                    killed_at = time.monotonic()  # lapses on its own
        elif 0.55 <= chaos < 0.7:
            # the lease lapses under a live run (a long stall), and another run takes over
            time.sleep(rng.uniform(0.5, 3.0))
            break_lease(cloud.azurite.connection_string, cloud.tenant)
            tally.lapsed_leases += 1
            processes.append(_spawn(env))
            tally.processes += 1
        elif 0.45 <= chaos < 0.55:
            time.sleep(rng.uniform(1.0, 3.0))
            _restart(cloud.azurite)
            tally.azurite_restarts += 1
        results = [_result(p) for p in processes]
        events.append(
            f"round chaos={chaos:.2f} activity={activity} results="
            + str([r and {k: r[k] for k in ("ok", "complete", "skipped", "error_code",
                                             "incidents", "watermark")} for r in results])
        )  # fmt: skip
        if "paging_activity" not in behaviour and any(
            r and r["ok"] and r["complete"] and not r["skipped"] for r in results
        ):
            # a run that completed read everything visible and settled when it began
            must_have |= _settled(snapshot, began - timedelta(seconds=lag + 1))
    # the end: faults off, no activity, tokens normal, leases lapsed, late updates visible
    cloud.admin("POST", "faults", {"rate": 0})
    cloud.admin("POST", "behaviour", {"paging_activity": None})
    cloud.admin("POST", "tokens", {"lifetime": 3599})
    if killed_at is not None:
        time.sleep(max(0.0, LEASE_SECONDS + 1 - (time.monotonic() - killed_at)))
    time.sleep(lag + 0.5 if late else 0)
    final: dict[str, Any] | None = None
    for _ in range(4):
        final = _result(_spawn(env))
        if final and final["ok"] and final["complete"] and not final["skipped"]:
            break
        time.sleep(LEASE_SECONDS / 2)
    else:
        tally.failures.append(f"run {tally.runs}: the final clean run did not complete: {final}")
    events.append(f"final={final and {k: final[k] for k in ('ok', 'complete', 'incidents')}}")
    _check(cloud, api, must_have, tally, events)
    for row in cloud.admin("GET", "stats")["requests"]:
        kind = STATUS_KIND.get(row["status"])
        if kind and row["endpoint"].startswith(("graph.", "legacy.")):
            tally.faults[kind] += row["count"]
    for kind in ("slow", "truncated"):
        if kind in kinds:
            tally.faults[f"{kind} (runs enabled)"] += 1
    tally.runs += 1


def _check(
    cloud: Cloud,
    api: str,
    must_have: set[tuple[str, str]],
    tally: Tally,
    events: list[str] | None = None,
) -> None:
    conn = cloud.azurite.connection_string
    current = cloud.truth(api)
    lines = archived_lines(conn, cloud.tenant)
    stored = {incident_key(line) for line in lines}
    latest = {incident_key(i) for i in current}
    rows = table_rows(conn, cloud.tenant)
    wrong_rows = sum(
        1 for key, stamp in latest if key not in rows or rows[key]["Version"] != stamp
    ) + len(set(rows) - {key for key, _ in latest})
    lost = len((latest | must_have) - stored) + wrong_rows
    dup = len(duplicates(lines))
    tally.incidents += len(latest)
    tally.versions += len(stored)
    tally.lost += lost
    tally.duplicated += dup
    if lost or dup:
        tally.failures.append(
            f"run {tally.runs} ({api}): lost {lost} (rows wrong {wrong_rows}), duplicated {dup}; "
            f"missing {sorted((latest | must_have) - stored)[:5]}; events: {events}"
        )


def run_many(emu: Emulator, azurite: Azurite, runs: int, seed: int, first: int = 0) -> Tally:
    """``runs`` randomized runs against a running local cloud (``first``: skip to that run)."""
    cloud = Cloud(emu, azurite)
    tally = Tally()
    for n in range(first, first + runs):
        one_run(cloud, random.Random(seed * 100_003 + n), tally)
        print(
            f"run {n + 1}/{runs}: lost {tally.lost}, duplicated {tally.duplicated}, "
            f"kills {tally.kills}",
            file=sys.stderr,
        )
    return tally


def table(tally: Tally) -> str:
    faults = ", ".join(f"{k}: {v}" for k, v in sorted(tally.faults.items()))
    rows = [
        ("runs", tally.runs),
        ("ingest processes", tally.processes),
        ("faults injected by kind", faults),
        ("SIGKILLs (leases then lapse)", tally.kills),
        ("leases lapsed (broken) under or after a run", tally.lapsed_leases),
        ("rounds with two concurrent runs", tally.concurrent),
        ("Key Vault unavailable", tally.vault_down),
        ("Azurite restarts mid-run", tally.azurite_restarts),
        ("runs with tokens expiring at once", tally.token_expiry_runs),
        ("runs with late-arriving updates", tally.late_arrival_runs),
        ("runs with updates during paging", tally.paging_activity_runs),
        ("runs in arbitrary order", tally.arbitrary_order_runs),
        ("incidents (final, summed over runs)", tally.incidents),
        ("versions stored", tally.versions),
        ("lost", tally.lost),
        ("duplicated", tally.duplicated),
    ]
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos")
    parser.add_argument("runs", nargs="?", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--incidents", type=int, default=120)
    parser.add_argument("--first", type=int, default=0, help="replay from run K (its seed)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load = [round(x, 2) for x in os.getloadavg()]
    config = EmulatorConfig(seed=5, home_incidents=args.incidents, customer_tenants=0)
    with Azurite() as azurite, Emulator(config) as emu:
        tally = run_many(emu, azurite, args.runs, args.seed, args.first)
    out = {
        "when": datetime.now(UTC).isoformat(timespec="minutes"),
        "cores": os.cpu_count(),
        "load_average_at_start": load,
        "seconds": round(time.perf_counter() - started, 1),
        "seed": args.seed,
        "home_incidents": args.incidents,
        **tally.to_json(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(table(tally))
    for failure in tally.failures:
        print(failure, file=sys.stderr)
    return 0 if tally.lost == 0 and tally.duplicated == 0 and not tally.failures else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
