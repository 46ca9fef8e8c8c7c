"""``python -m bench.chaos [N] [--seed S] [--first K]``: randomized chaos runs; nothing lost,
nothing twice.

Each run starts from the emulator's seeded state (a small tenant: a few dozen incidents are
enough for the checks; one emulator throughout, reset in between) and empty storage, picks a
surface and a random schedule, then does 1-3 rounds of: SOC activity (new, updated and merged
incidents), one or two ``shared ingest`` processes at once (concurrent runs: the lease lets one
in), and at random one of: a SIGKILL of a process at a random moment (its lease then lapses:
mostly broken at once, as its duration passing would do, now and then by waiting it out), a
lease that lapses under a live run while another run starts, Key Vault unavailable for a
process (its vault URL points at a closed port), an Azurite restart while a process writes.
Throughout: API faults (429, 500, 503, connection resets, truncated bodies, slow answers) at a
random rate, arbitrary listing order, ``@odata.count`` on every Graph page, the first only or
none, updates during paging, late-arriving updates (the safety
lag covers them) and access tokens that expire at once (MSAL then asks Entra again mid-run). At
the end faults stop, leases lapse, late updates arrive and a clean run (no safety lag) finishes;
then the store is compared with the emulator's truth (``tests.e2e``'s storage view helpers):

- duplicated: versions (id, last update) stored more than once in the archive;
- lost: current versions missing from the archive or the table (wrong or missing row), and
  versions that were visible and still when a run that completed began (settled before the
  safety lag) but are missing.

Cost. A run used to take about 20 s; most of it was process start-up (each ``python -m shared
ingest`` imports the Azure SDKs, about 0.5 s of its 1 s), 15 s waits for a killed run's lease
to lapse, Azurite restarts (1.2 s each) and a 120-incident tenant read again and again. Now
most ingest processes are forked from a server process that has imported the product's modules
and nothing else (no client, no thread, no setting read: ``serve_forks``), so each is still a
process of its own, started from ``shared.cli.main``, killed by a real SIGKILL; a tenth are
started cold with ``python -m shared ingest`` as before. The emulator is driven in process
(its admin API's own methods), and its quotas and the client's limiter are scaled down 30 times
in time. The expensive kinds (waiting a lease out, Key Vault down, Azurite restarts: 15 s, 5 s
and about 15 s of the Storage SDK's first retry) are rarer per run but still happen many times
over 1,000 runs; the table and ``bench/results/chaos.json`` count every kind, and the JSON has
the seconds per run and per phase (summed over workers). ``--jobs`` (default 2) splits the runs
over workers with a local cloud each: a run waits on its processes about half the time.

Every schedule comes from ``random.Random(seed * 100_003 + run)``: ``--first K`` replays from
run K (timing still varies from one replay to the next: where a kill lands, which requests a
fault hits).

Prints a table and writes ``bench/results/chaos.json``. A short version runs in ``make test``
(``tests/e2e/test_chaos.py``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol

from bench.__main__ import _clear_storage
from emulator import defender, faults
from emulator.azurite import Azurite
from emulator.behaviour import COUNT_PAGES
from emulator.ratelimit import Limit
from emulator.server import Emulator, EmulatorConfig
from testkit.storage_view import archived_lines, break_lease, duplicates, incident_key, table_rows

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "chaos.json"
LEASE_SECONDS = 15  # the shortest blob lease: a killed run's lease lapses this soon
FAULT_KINDS = ("429", "500", "503", "reset", "slow", "truncated")
SLOW_SECONDS = 0.2  # a slow answer's delay (the client waits it out; its timeout is longer)
FRESH_PROCESS_RATE = 0.1  # the share of ingest processes started cold (``python -m shared``)
NATURAL_LAPSE_RATE = 0.05  # the share of SIGKILLs whose lease is waited out, not broken
#: the share of rounds with each chaos event (the rest have none); the rare ones are dear: a
#: process with Key Vault unavailable spends about 5 s in the SDK's retries before it reports
#: the failure, and one that meets an Azurite restart waits about 15 s (the Storage SDK's
#: first retry) before it writes again
VAULT_DOWN, KILL, LAPSE_UNDER_RUN, AZURITE_RESTART = 0.025, 0.27, 0.12, 0.025
INGEST_ARGV = ["ingest", "--json"]
#: a listing of the small tenant spans a few pages (smaller pages make the listings of a run
#: with updates during paging long enough to meet the API's own quota, 50 calls a minute)
PAGE_SIZES = (20, 30, 50)
#: the API quotas (the emulator's, and the client's own limiter set the same) scaled down 30
#: times in time, as tests/e2e/test_ingest_backlog.py does: 50 incident listings per 2 s, not
#: per minute. A run with updates during paging may list often enough to meet them, and then
#: waits a second or two, not most of a minute
QUOTAS = {"incidents": (Limit(50, 2), Limit(1500, 120)), "alerts": (Limit(150, 2),)}
CLIENT_RATE_LIMITS = {"API_RATE_LIMIT_INCIDENTS": "50/2,1500/120", "API_RATE_LIMIT_ALERTS": "150/2"}
#: what an ingest process imports; the fork server imports it once (importing builds nothing)
PRELOAD = (
    "shared.cli",
    "shared.bootstrap",
    "shared.usecases.ingest",
    "shared.defender.client",
    "shared.credentials.tokens",
    "shared.credentials.keyvault",
    "shared.storage.tenants",
    "shared.push",
    "shared.core.retirement",
    "azure.core.pipeline.transport._requests_basic",
    "azure.storage.queue",
    "msal_extensions",
    "azure.storage.blob",
    "azure.data.tables",
    "azure.keyvault.secrets",
    "azure.identity",
    "msal",
    "requests",
)


@dataclass
class Tally:
    """What the runs did and found."""

    runs: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    count_pages: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    kills_too_late: int = 0  # the victim had finished when its SIGKILL was due
    lapsed_leases: int = 0
    natural_lapses: int = 0
    concurrent: int = 0
    vault_down: int = 0
    azurite_restarts: int = 0
    token_expiry_runs: int = 0
    late_arrival_runs: int = 0
    paging_activity_runs: int = 0
    arbitrary_order_runs: int = 0
    quota_throttled: int = 0
    processes: int = 0
    cold_processes: int = 0
    incidents: int = 0
    versions: int = 0
    settled_required: int = 0
    lost: int = 0
    duplicated: int = 0
    failures: list[str] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Adds the block's wall time to ``phase_seconds[name]``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - started
            self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + spent

    def add(self, other: Tally) -> None:
        """Adds another tally (a worker's) to this one."""
        for name, value in other.__dict__.items():
            mine = getattr(self, name)
            if isinstance(mine, Counter):
                mine.update(value)
            elif isinstance(mine, dict):
                for key, seconds in value.items():
                    mine[key] = mine.get(key, 0.0) + seconds
            elif isinstance(mine, list):
                mine.extend(value)
            else:
                setattr(self, name, mine + value)

    def to_json(self) -> dict[str, Any]:
        skip = ("faults", "count_pages", "phase_seconds")
        out = {k: v for k, v in self.__dict__.items() if k not in skip}
        out["faults"] = dict(self.faults)
        out["count_pages"] = dict(self.count_pages)
        out["phase_seconds"] = {
            k: round(v, 1) for k, v in sorted(self.phase_seconds.items(), key=lambda kv: -kv[1])
        }
        return out


class CountingFaults(faults.FaultInjector):
    """The emulator's fault injector, counting every fault it decides by kind (each one is
    injected: the slow and truncated ones too, which no status code shows)."""

    def __init__(self, config: faults.FaultConfig) -> None:
        super().__init__()
        self.configure(config)
        self.injected: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def decide(self, tenant: Callable[[], str | None] | None = None) -> str | None:
        kind = super().decide(tenant)
        if kind is not None:
            with self._count_lock:
                self.injected[kind] += 1
        return kind

    def take(self) -> Counter[str]:
        """The counts so far, and start again from zero."""
        with self._count_lock:
            counts, self.injected = self.injected, Counter()
        return counts


class Process(Protocol):
    """What the runs need of an ingest process (``subprocess.Popen`` or ``Forked``)."""

    returncode: int | None

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def communicate(
        self, input: str | None = None, timeout: float | None = None
    ) -> tuple[str, str]: ...


def _preload() -> None:
    for name in PRELOAD:
        importlib.import_module(name)


def serve_forks() -> None:
    """The fork server's loop (``python -c 'from bench.chaos import serve_forks; ...'``).

    It imports the product's modules, then reads JSON lines on stdin: ``{"op": "fork", "id",
    "env", "out", "err"}`` forks a child that runs ``shared.cli.main(["ingest", "--json"])``
    with that environment and its output in those files; ``{"op": "kill", "id"}`` SIGKILLs
    that child if it still runs (through its pidfd, so never another process that got its
    pid). It answers ``{"id", "pid"}`` and, when a child ends, ``{"id", "exit"}`` (the exit
    status as ``Popen.returncode`` gives it: -9 for a SIGKILL). It has no thread, so forking
    is safe; a child builds every client itself, as a process started cold would.
    """
    _preload()
    children: dict[int, tuple[int, int]] = {}  # pidfd -> (id, pid)
    by_id: dict[int, int] = {}  # id -> pidfd
    buffer = b""
    print(json.dumps({"ready": True}), flush=True)
    while True:
        readable, _, _ = select.select([0, *children], [], [])
        for fd in readable:
            if fd != 0:
                n, pid = children.pop(fd)
                by_id.pop(n, None)
                _, status = os.waitpid(pid, 0)
                os.close(fd)
                print(json.dumps({"id": n, "exit": os.waitstatus_to_exitcode(status)}), flush=True)
                continue
            chunk = os.read(0, 1 << 16)
            if not chunk:  # the harness is gone: so are its processes
                for pidfd in children:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                if message["op"] == "kill":
                    if message["id"] in by_id:
                        signal.pidfd_send_signal(by_id[message["id"]], signal.SIGKILL)
                    continue
                sys.stdout.flush()
                pid = os.fork()
                if pid == 0:
                    _forked_child(message, list(children))  # never returns
                pidfd = os.pidfd_open(pid)
                children[pidfd] = (message["id"], pid)
                by_id[message["id"]] = pidfd
                print(json.dumps({"id": message["id"], "pid": pid}), flush=True)


def _forked_child(message: dict[str, Any], inherited: list[int]) -> None:
    """In the forked child: its own stdin, stdout, stderr and environment, then the CLI. It
    ends by SystemExit out of ``serve_forks``: an ordinary interpreter exit (atexit, flush)."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for fd, path in ((1, message["out"]), (2, message["err"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    for fd in inherited:
        os.close(fd)
    os.environ.clear()
    os.environ.update(message["env"])
    random.seed()  # the retry jitter: not the same sequence in every child
    from shared.cli import main

    raise SystemExit(main(INGEST_ARGV))


class Forked:
    """A process forked by the fork server, with the parts of ``Popen`` the runs use."""

    def __init__(self, server: ForkServer, n: int, out: Path, err: Path) -> None:
        self._server, self.n, self._out, self._err = server, n, out, err
        self.pid: int | None = None
        self.returncode: int | None = None
        self.started = threading.Event()
        self.done = threading.Event()

    def poll(self) -> int | None:
        return self.returncode if self.done.is_set() else None

    def send_signal(self, sig: int) -> None:
        if sig != signal.SIGKILL:
            raise ValueError("the fork server only sends SIGKILL")
        self._server.kill(self.n)

    def communicate(
        self, input: str | None = None, timeout: float | None = None
    ) -> tuple[str, str]:
        if input is not None:
            raise ValueError("a forked ingest process reads no input")
        if not self.done.wait(timeout):
            self._server.kill(self.n)
            raise subprocess.TimeoutExpired(f"forked ingest {self.n}", timeout or 0)
        out, err = self._out.read_text(), self._err.read_text()
        self._out.unlink(missing_ok=True)
        self._err.unlink(missing_ok=True)
        return out, err


class ForkServer:
    """Starts ``serve_forks`` and talks to it; ``spawn`` returns a ``Forked``."""

    def __init__(self, base_env: dict[str, str]) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="chaos-forks-"))
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from bench.chaos import serve_forks; serve_forks()"],
            cwd=ROOT,
            env=base_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin: IO[str] = self._proc.stdin
        self._stdout: IO[str] = self._proc.stdout
        if not json.loads(self._stdout.readline() or "{}").get("ready"):
            raise RuntimeError("the fork server did not start")
        self._lock = threading.Lock()
        self._next = 0
        self._children: dict[int, Forked] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _send(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._stdin.write(json.dumps(message) + "\n")
            self._stdin.flush()

    def _read(self) -> None:
        for line in self._stdout:
            message = json.loads(line)
            child = self._children[message["id"]]
            if "pid" in message:
                child.pid = message["pid"]
                child.started.set()
            else:
                child.returncode = message["exit"]
                del self._children[message["id"]]
                child.done.set()

    def spawn(self, env: dict[str, str]) -> Forked:
        with self._lock:
            n, self._next = self._next, self._next + 1
        child = Forked(self, n, self._dir / f"{n}.out", self._dir / f"{n}.err")
        self._children[n] = child
        self._send(
            {"op": "fork", "id": n, "env": env, "out": str(child._out), "err": str(child._err)}
        )  # noqa: SLF001 E501
        if not child.started.wait(60):
            raise RuntimeError("the fork server did not fork")
        return child

    def kill(self, n: int) -> None:
        self._send({"op": "kill", "id": n})

    def close(self) -> None:
        self._stdin.close()  # the server kills what still runs and exits
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._stdout.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DEFENDER_", "INGEST_"))}


class Cloud:
    """The local cloud as the runs drive it: the emulator's controls (called in process, the
    same methods its admin API calls, without an HTTPS round trip each), settings for the
    ingest processes, and how they start."""

    def __init__(self, emu: Emulator, azurite: Azurite, forks: ForkServer | None = None) -> None:
        self.emu, self.azurite, self.forks = emu, azurite, forks
        self.tenant = emu.home_tenant_id

    def reset(self) -> None:
        """Back to the seeded state: no faults, behaviours and token lifetimes as configured."""
        self.emu.reset()
        self.take_faults()

    def behaviour(self, **changes: Any) -> None:
        self.emu.set_behaviour(**changes)

    def faults(self, config: dict[str, Any]) -> None:
        self.emu.faults.configure(faults.parse_fault_config(config))

    def token_lifetime(self, seconds: int) -> None:
        self.emu.set_token_lifetimes(lifetime=seconds)

    def activity(self, create: int, update: int, merge: int) -> None:
        """Simulated SOC activity on the tenant (``POST /_emulator/activity``)."""
        self.emu.world.store.simulate(
            self.tenant, self.emu.clock(), create=create, update=update, merge=merge
        )

    def truth(self, api: str, visible: bool = False) -> list[dict[str, Any]]:
        """The tenant's incidents as ``api`` renders them: the latest versions, or (``visible``)
        what the APIs show now under late arrival."""
        at = self.emu.clock() if visible else None
        return defender.truth(self.emu.world.store, self.tenant, api, at)

    def throttled(self) -> int:
        """The 429s the Defender and Graph endpoints answered since the reset (injected, or
        the API's own quota)."""
        rows = self.emu.stats.snapshot()["requests"]
        return sum(
            r["count"]
            for r in rows
            if r["status"] == 429 and r["endpoint"].startswith(("graph.", "legacy."))
        )

    def take_faults(self) -> Counter[str]:
        """The faults injected since the last call, by kind."""
        injector = self.emu.faults
        return injector.take() if isinstance(injector, CountingFaults) else Counter()

    def settings(self, api: str, lag: int, page_size: int = 10) -> dict[str, str]:
        env = dict(self.emu.app_settings())
        env.update(
            DATA_STORAGE_CONNECTION_STRING=self.azurite.connection_string,
            DEFENDER_API=api,
            INGEST_TENANTS=self.tenant,
            INGEST_PAGE_SIZE=str(page_size),
            INGEST_SAFETY_LAG_SECONDS=str(lag),
            INGEST_OVERLAP_MINUTES="10",
            INGEST_LOOKBACK_DAYS="8",
            INGEST_LEASE_SECONDS=str(LEASE_SECONDS),
            API_MAX_ATTEMPTS="8",
            **CLIENT_RATE_LIMITS,
        )
        return env

    def spawn(self, env: dict[str, str], cold: bool) -> Process:
        """An ingest process: forked by the fork server, or started cold when ``cold`` (or
        when there is no fork server)."""
        if cold or self.forks is None:
            return subprocess.Popen(
                [sys.executable, "-m", "shared", *INGEST_ARGV],
                cwd=ROOT,
                env={**_base_env(), **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        return self.forks.spawn({**_base_env(), **env})


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


def _result(process: Process) -> dict[str, Any] | None:
    """The tenant's summary entry, or None when the process died or failed outright."""
    out, _ = process.communicate(timeout=600)
    if process.returncode not in (0, 1):
        return None
    try:
        return dict(json.loads(out)["tenants"][0])
    except (ValueError, KeyError, IndexError):
        return None


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    keys: tuple[str, ...] = ("ok", "complete", "skipped", "error_code", "error", "incidents")
    keys += ("api_calls", "pages", "slices", "splits", "duration")
    return {k: result.get(k) for k in keys}


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _settled(snapshot: list[dict[str, Any]], before: datetime) -> set[tuple[str, str]]:
    """Versions of a snapshot last updated before ``before``."""
    return {k for k in map(incident_key, snapshot) if _parse(k[1]) < before}


def one_run(cloud: Cloud, rng: random.Random, tally: Tally) -> None:
    """One randomized run; adds its findings to the tally."""
    with tally.phase("reset emulator"):
        cloud.reset()
    with tally.phase("clear storage"):
        _clear_storage(cloud.azurite.connection_string)
    with tally.phase("configure"):
        api, behaviour, late, kinds = _configure(cloud, rng, tally)
    lag = int(late) + 1 if late else 0  # the safety lag covers the late arrival
    # pages small enough that a listing of the small tenant spans several of them (updates
    # during paging, a fault on a later page)
    page_size = rng.choice(PAGE_SIZES)
    env = cloud.settings(api, lag, page_size)
    events = [f"{api} page size {page_size} behaviour={behaviour} faults={kinds}"]
    must_have: set[tuple[str, str]] = set()
    killed_at: float | None = None
    for _ in range(rng.choices((1, 2, 3), (0.45, 0.35, 0.2))[0]):
        with tally.phase("activity and truth"):
            activity = {"create": rng.randint(0, 4), "update": rng.randint(0, 6)}
            activity["merge"] = rng.randint(0, 1)
            cloud.activity(**activity)
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
        kill_from = VAULT_DOWN
        lapse_from = kill_from + KILL
        restart_from = lapse_from + LAPSE_UNDER_RUN
        if chaos < VAULT_DOWN:
            envs[0] = {**env, "KEY_VAULT_URL": "https://127.0.0.1:9"}  # nothing listens there
            tally.vault_down += 1
        with tally.phase("process start"):
            processes = [_start(cloud, e, rng, tally) for e in envs]
        if kill_from <= chaos < lapse_from:
            with tally.phase("wait before a kill"):
                time.sleep(rng.uniform(0.02, 1.0))
            victim = rng.choice(processes)
            natural = rng.random() < NATURAL_LAPSE_RATE  # drawn either way: the schedule
            if victim.poll() is None:  # stays the seed's, wherever the kill lands
                victim.send_signal(signal.SIGKILL)
                tally.kills += 1
                if not natural:
                    with tally.phase("break lease"):
                        break_lease(cloud.azurite.connection_string, cloud.tenant)  # at once
                    tally.lapsed_leases += 1
                else:
                    killed_at = time.monotonic()  # lapses on its own
                    tally.natural_lapses += 1
            else:
                tally.kills_too_late += 1
        elif lapse_from <= chaos < restart_from:
            # the lease lapses under a live run (a long stall), and another run takes over
            with tally.phase("wait before a lease lapses"):
                time.sleep(rng.uniform(0.05, 0.8))
            with tally.phase("break lease"):
                break_lease(cloud.azurite.connection_string, cloud.tenant)
            tally.lapsed_leases += 1
            with tally.phase("process start"):
                processes.append(_start(cloud, env, rng, tally))
        elif restart_from <= chaos < restart_from + AZURITE_RESTART:
            with tally.phase("wait before an Azurite restart"):
                time.sleep(rng.uniform(0.05, 0.8))
            with tally.phase("Azurite restart"):
                _restart(cloud.azurite)
            tally.azurite_restarts += 1
        with tally.phase("processes run"):
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
    # the end: faults off, no activity, tokens normal, leases lapsed, late updates arrived
    # (every pending version visible at once) and no safety lag for the clean run: what the
    # store must hold is then all in the API's answer, without waiting the lag out
    with tally.phase("configure"):
        cloud.faults({"rate": 0})
        cloud.behaviour(paging_activity=None, late_arrival_seconds=0.0)
        cloud.token_lifetime(3599)
    if killed_at is not None:
        with tally.phase("wait for a lease to lapse"):
            time.sleep(max(0.0, LEASE_SECONDS + 1 - (time.monotonic() - killed_at)))
    clean_env = {**env, "INGEST_SAFETY_LAG_SECONDS": "0"}
    final: dict[str, Any] | None = None
    with tally.phase("final clean run"):
        for _ in range(4):
            final = _result(_start(cloud, clean_env, rng, tally))
            if final and final["ok"] and final["complete"] and not final["skipped"]:
                break
            events.append(f"final attempt: {final and _brief(final)}")
            # a lease still held (skipped) lapses within its duration; anything else (a
            # throttled answer, a failure) is worth another try soon
            time.sleep(LEASE_SECONDS / 2 if final and final["skipped"] else 1.0)
        else:
            tally.failures.append(
                f"run {tally.runs}: the final clean run did not complete: {final}"
            )
    events.append(f"final={final and _brief(final)}")
    with tally.phase("check"):
        _check(cloud, api, must_have, tally, events)
    injected = cloud.take_faults()
    tally.faults.update(injected)
    tally.quota_throttled += cloud.throttled() - injected["429"]
    tally.runs += 1


def _configure(
    cloud: Cloud, rng: random.Random, tally: Tally
) -> tuple[str, dict[str, Any], float, list[str]]:
    """The run's surface, behaviours, token lifetime and faults: (api, behaviour, late, kinds)."""
    api = rng.choice(("legacy", "graph"))
    behaviour: dict[str, Any] = {}
    # which Graph pages carry @odata.count, drawn from a generator of its own (seeded from
    # this one's state without consuming it) so each seed's schedule of events stays the same
    count_pages = random.Random(f"count_pages {rng.getstate()[1][:16]}").choice(COUNT_PAGES)
    behaviour["count_pages"] = count_pages
    tally.count_pages[count_pages] += 1
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
    if behaviour:
        cloud.behaviour(**behaviour)
    if rng.random() < 0.3:
        cloud.token_lifetime(1)  # under MSAL's 5 minutes: asked again
        tally.token_expiry_runs += 1
    kinds = rng.sample(FAULT_KINDS, rng.randint(1, len(FAULT_KINDS)))
    cloud.faults(
        {
            "rate": round(rng.uniform(0.05, 0.3), 3),
            "kinds": kinds,
            "seed": rng.randrange(1 << 30),
            "slow_seconds": SLOW_SECONDS,
            "retry_after": 1,
        },
    )
    return api, behaviour, late, kinds


def _start(cloud: Cloud, env: dict[str, str], rng: random.Random, tally: Tally) -> Process:
    cold = rng.random() < FRESH_PROCESS_RATE
    tally.processes += 1
    tally.cold_processes += cold
    return cloud.spawn(env, cold)


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
    tally.settled_required += len(must_have - latest)
    tally.lost += lost
    tally.duplicated += dup
    if lost or dup:
        tally.failures.append(
            f"run {tally.runs} ({api}): lost {lost} (rows wrong {wrong_rows}), duplicated {dup}; "
            f"missing {sorted((latest | must_have) - stored)[:5]}; events: {events}"
        )


def run_many(
    emu: Emulator, azurite: Azurite, runs: int, seed: int, first: int = 0, step: int = 1
) -> Tally:
    """Runs ``first``, ``first + step``, ... (``runs`` of them) against a running local cloud.
    Run ``n``'s schedule comes from ``random.Random(seed * 100_003 + n)`` alone."""
    injector = emu.faults
    emu.faults = CountingFaults(injector.config)
    forks = ForkServer(_base_env())
    try:
        cloud = Cloud(emu, azurite, forks)
        tally = Tally()
        for n in range(first, first + runs * step, step):
            before = len(tally.failures)
            one_run(cloud, random.Random(seed * 100_003 + n), tally)
            for failure in tally.failures[before:]:
                print(f"seed {seed} run index {n}: {failure}", file=sys.stderr)
            print(
                f"run index {n}: lost {tally.lost}, duplicated {tally.duplicated}, "
                f"kills {tally.kills} (this worker: {tally.runs} runs)",
                file=sys.stderr,
            )
    finally:
        forks.close()
        emu.faults = injector
    return tally


def chaos_config(incidents: int = 30) -> EmulatorConfig:
    """The emulator the runs need: one small tenant, the scaled quotas."""
    return EmulatorConfig(seed=5, home_incidents=incidents, customer_tenants=0, quotas=QUOTAS)


def _worker(seed: int, first: int, runs: int, step: int, incidents: int) -> Tally:
    """One worker: its own Azurite, emulator and fork server, runs first, first + step, ..."""
    config = chaos_config(incidents)
    with Azurite() as azurite, Emulator(config) as emu:
        return run_many(emu, azurite, runs, seed, first, step)


def run_jobs(runs: int, seed: int, first: int, jobs: int, incidents: int) -> Tally:
    """``runs`` runs from index ``first`` over ``jobs`` workers (each a process of its own)."""
    jobs = max(1, min(jobs, runs))
    if jobs == 1:
        return _worker(seed, first, runs, 1, incidents)
    shares = [len(range(w, runs, jobs)) for w in range(jobs)]
    context = multiprocessing.get_context("spawn")
    tally = Tally()
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = [
            pool.submit(_worker, seed, first + w, shares[w], jobs, incidents) for w in range(jobs)
        ]
        for future in futures:
            tally.add(future.result())
    return tally


def table(tally: Tally, seconds: float | None = None) -> str:
    faults = ", ".join(f"{k}: {v}" for k, v in sorted(tally.faults.items()))
    rows: list[tuple[str, object]] = [
        ("runs", tally.runs),
        ("ingest processes (started cold)", f"{tally.processes} ({tally.cold_processes})"),
        ("faults injected by kind", faults),
        ("429s of the API's own quota", tally.quota_throttled),
        ("SIGKILLs (due after the victim had finished)", f"{tally.kills} ({tally.kills_too_late})"),
        ("leases broken at once, after a kill or under a live run", tally.lapsed_leases),
        ("leases of killed runs waited out (15 s)", tally.natural_lapses),
        ("rounds with two concurrent runs", tally.concurrent),
        ("Key Vault unavailable", tally.vault_down),
        ("Azurite restarts mid-run", tally.azurite_restarts),
        ("runs with tokens expiring at once", tally.token_expiry_runs),
        ("runs with late-arriving updates", tally.late_arrival_runs),
        ("runs with updates during paging", tally.paging_activity_runs),
        ("runs in arbitrary order", tally.arbitrary_order_runs),
        (
            "runs by the pages carrying @odata.count (Graph)",
            ", ".join(f"{k}: {v}" for k, v in sorted(tally.count_pages.items())),
        ),
        ("incidents (final, summed over runs)", tally.incidents),
        ("versions stored", tally.versions),
        ("superseded versions required (settled when a run began)", tally.settled_required),
        ("lost", tally.lost),
        ("duplicated", tally.duplicated),
    ]
    if seconds is not None and tally.runs:
        rows.append(("seconds per run", f"{seconds / tally.runs:.2f}"))
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos")
    parser.add_argument("runs", nargs="?", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--incidents", type=int, default=30, help="the seeded tenant's size")
    parser.add_argument("--first", type=int, default=0, help="replay from run K (its seed)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="workers, each with its own local cloud (default 2: a run waits on its processes "
        "about half the time)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.jobs < 1 or args.first < 0 or args.incidents < 1:
        parser.error("runs, --jobs and --incidents must be at least 1, --first at least 0")
    started = time.perf_counter()
    load = [round(x, 2) for x in os.getloadavg()]
    tally = run_jobs(args.runs, args.seed, args.first, args.jobs, args.incidents)
    seconds = time.perf_counter() - started
    out = {
        "when": datetime.now(UTC).isoformat(timespec="minutes"),
        "cores": os.cpu_count(),
        "load_average_at_start": load,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "jobs": min(args.jobs, args.runs),
        "seconds": round(seconds, 1),
        "seconds_per_run": round(seconds / max(1, tally.runs), 2),
        "seed": args.seed,
        "first": args.first,
        "home_incidents": args.incidents,
        **tally.to_json(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(table(tally, seconds))
    for failure in tally.failures:
        print(failure, file=sys.stderr)
    return 0 if tally.lost == 0 and tally.duplicated == 0 and not tally.failures else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
