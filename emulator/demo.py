"""``make demo``: the whole chain on the local cloud, as a user would run it.

Starts the emulator (seeded tenants) and Azurite, runs ``python -m shared ingest --json`` against
them in a child process (the app only sees the settings the emulator prints, like a real
deployment only sees its app settings), prints the summary and where the data landed, then stops
both. Before ingesting it subscribes a local https webhook (standing in for a Logic App) to
high-severity incidents, and after it delivers what ingestion recorded
(``python -m shared subscriptions deliver``), using the emulator-only
``API_PUSH_ALLOW_LOCAL_RECEIVER``. Exit status 0 only if every step succeeded.
"""

# ruff: noqa: T201 - a demo runner prints to the terminal

from __future__ import annotations

import gzip
import http.server
import json
import os
import secrets
import ssl
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import trustme

from emulator.azurite import Azurite
from emulator.server import Emulator, EmulatorConfig

ROOT = Path(__file__).resolve().parent.parent


def _cli(settings: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, Any, str]:
    """Run ``python -m shared ARGS`` with only ``settings``; (exit status, JSON output, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEFENDER_", "INGEST_"))}
    env.update(settings)
    result = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "shared", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        data = json.loads(result.stdout)
    except ValueError:
        data = None
    return result.returncode, data, result.stderr


def _ingest(settings: dict[str, str]) -> tuple[int, dict[str, Any] | None, str]:
    return _cli(settings, "ingest", "--json")


class _Webhook:
    """A local https receiver standing in for a Logic App: records what it is sent, answers 202."""

    def __init__(self) -> None:
        self.ca = trustme.CA(organization_name="Defender Bridge demo webhook")
        self.received: list[tuple[dict[str, str], bytes]] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((dict(self.headers.items()), body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("localhost").configure_cert(context)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = (
            f"https://localhost:{self._server.server_port}/workflows/demo/triggers/manual/"
            "paths/invoke?sig=demo-callback-signature"
        )
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _subscribe(settings: dict[str, str], hook: _Webhook, workdir: Path) -> bool:
    """Trust the webhook's CA, turn push on (emulator-only local receiver), subscribe it."""
    bundle = workdir / "ca-bundle.pem"
    bundle.write_bytes(Path(settings["EMULATOR_CA_CERT"]).read_bytes() + hook.ca.cert_pem.bytes())
    settings.update(
        EMULATOR_CA_CERT=str(bundle),
        API_SIGNING_KEY=secrets.token_urlsafe(32),
        API_PUSH_HOST_SUFFIXES="localhost",
        API_PUSH_ALLOW_LOCAL_RECEIVER="true",
    )
    print("$ python -m shared subscriptions add - --min-severity high   (URL on stdin)")
    status, sub, stderr = _cli(
        settings, "subscriptions", "add", "-", "--min-severity", "high", stdin=hook.url
    )
    if status != 0 or not isinstance(sub, dict):
        print(f"subscribing the local webhook failed (exit {status}):\n{stderr}", file=sys.stderr)
        return False
    print(f"  subscription {sub['id']}: a local webhook (https://{sub['host']}:...) hears of")
    print("  new and updated high-severity incidents, each POST signed with its secret\n")
    return True


def _deliver(settings: dict[str, str], hook: _Webhook) -> bool:
    before = len(hook.received)
    print("$ python -m shared subscriptions deliver --json   (the push_worker queue trigger's job)")
    status, report, stderr = _cli(settings, "subscriptions", "deliver", "--json")
    if status != 0 or not isinstance(report, dict):
        print(f"delivery failed (exit {status}):\n{stderr}", file=sys.stderr)
        return False
    got = hook.received[before:]
    noun = "delivery" if len(got) == 1 else "deliveries"
    print(f"  the webhook accepted {len(got)} {noun}")
    if got:
        headers, body = got[0]
        data = json.loads(body)
        print(
            f"  e.g. incident {data['incident']['id']} ({data['event']}): "
            f"X-Defender-Delivery {headers.get('X-Defender-Delivery')}, "
            f"X-Defender-Signature {headers.get('X-Defender-Signature', '')[:24]}..."
        )
    return True


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
    hook = _Webhook()
    try:
        with tempfile.TemporaryDirectory(prefix="defender-demo-") as workdir:
            return _run(hook, Path(workdir))
    finally:
        hook.close()


def _run(hook: _Webhook, workdir: Path) -> int:
    with Emulator(EmulatorConfig(seed=1)) as emu, Azurite() as azurite:
        settings = dict(emu.app_settings())
        settings["DATA_STORAGE_CONNECTION_STRING"] = azurite.connection_string
        print(f"  emulator: {emu.url}   (CA: {emu.ca_path})")
        print(f"  Azurite:  blob port {azurite.blob_port}, table port {azurite.table_port}")
        tenants = settings["INGEST_TENANTS"].split(",")
        print(f"  tenants:  {len(tenants)} (home {settings['DEFENDER_TENANT_ID']})\n")
        if not _subscribe(settings, hook, workdir):
            return 1

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
        print()
        delivered = _deliver(settings, hook)
        print("\nRunning ingestion again (no new activity): should store nothing.")
        status2, again, _ = _ingest(settings)
        if again is not None:
            for tenant in again["tenants"]:
                print(
                    f"  tenant {tenant['tenant']}: {tenant['incidents']} stored, "
                    f"{_n(tenant['api_calls'], 'API call')}"
                )
        delivered = _deliver(settings, hook) and delivered
        print("\nStopping the local cloud.")
        return 0 if status == 0 and status2 == 0 and summary["ok"] and delivered else 1


if __name__ == "__main__":
    raise SystemExit(main())
