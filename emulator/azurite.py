"""Start and stop Azurite (the Azure Storage emulator, npm package pinned in package.json).

Used by the tests and ``make demo``. Each instance gets free ports and its own data folder, so
several can run at once. Flags (Azurite's command-line options,
https://github.com/Azure/Azurite#command-line-options): ``--skipApiVersionCheck`` because the
Python SDKs send a newer x-ms-version than Azurite knows, ``--disableTelemetry`` because there is
no internet here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

# Azurite's documented well-known development account (public, not a secret):
# https://learn.microsoft.com/azure/storage/common/storage-use-azurite#well-known-storage-account-and-key
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_azurite(root: Path | None = None) -> Path:
    """Path of Azurite's entry script in ``node_modules``.

    Raises:
        FileNotFoundError: Azurite is not installed (run ``npm ci``).
    """
    base = root or Path(__file__).resolve().parent.parent
    script = base / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
    if not script.is_file():
        raise FileNotFoundError(f"Azurite is not installed at {script}; run 'npm ci'")
    return script


class Azurite:
    """One Azurite process on free loopback ports."""

    def __init__(self, location: Path | None = None) -> None:
        self._own_location = location is None
        self.location = location or Path(tempfile.mkdtemp(prefix="azurite-"))
        self.blob_port, self.queue_port, self.table_port = _free_port(), _free_port(), _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        """Connection string with explicit endpoints for the three services."""
        host = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={host}:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint={host}:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint={host}:{self.table_port}/{ACCOUNT};"
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait until the three ports accept connections.

        Raises:
            RuntimeError: it exited or did not come up in time.
        """
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH; Azurite needs Node.js")
        args = [
            node, str(find_azurite()), "--silent", "--location", str(self.location),
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
            "--skipApiVersionCheck", "--disableTelemetry", "--loose",
        ]  # fmt: skip
        self._process = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        for port in (self.blob_port, self.queue_port, self.table_port):
            while True:
                if self._process.poll() is not None:
                    err = (self._process.stderr.read() if self._process.stderr else b"")[-500:]
                    raise RuntimeError(f"Azurite exited: {err.decode(errors='replace')}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError("Azurite did not start in time") from None
                    time.sleep(0.1)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove its data when we made it."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if process is not None and process.stderr is not None:
            process.stderr.close()
        if self._own_location:
            shutil.rmtree(self.location, ignore_errors=True)

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
