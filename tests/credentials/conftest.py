"""Helpers for the credential tests: wiring the app against the local cloud with a movable
clock, and changing the emulator's identity state (rotation, consent, roles).

Rotation and consent changes go through the emulator's admin API when it offers them; until it
does, the running emulator's directory and vault are changed in process (the emulator runs in
the test process), with the functions ``emulator.entra`` provides for that.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.bootstrap import Services, build
from shared.settings import Settings
from tests.conftest import LocalCloud

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class MovableClock:
    """A tz-aware UTC clock tests can move forward."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def wire(env: dict[str, str], clock: MovableClock | None = None) -> Services:
    """The real composition root for these settings (as a Function worker would build it)."""
    return build(Settings.from_env(env), clock=clock or MovableClock())


def world(cloud: LocalCloud) -> Any:
    """The running emulator's mutable state (directory of Entra, the vault)."""
    return cloud.emulator._world  # noqa: SLF001 - in-process fallback, see the module docstring


def rotate_secret(cloud: LocalCloud, *, revoke_old: bool) -> str:
    """Add a new client secret to the app, store it as the vault's new version, and optionally
    revoke every older secret in Entra. Returns the new value (for leak checks only)."""
    from emulator import entra
    from emulator.server import SECRET_NAME

    w = world(cloud)
    now = datetime.now(UTC)
    value = f"rot8Q~{secrets.token_urlsafe(30)}"
    with w.directory.lock:
        key_id = entra.rotate_secret(w.directory, value, now, timedelta(days=180))
        if revoke_old:
            entra.revoke_secrets(w.directory, key_id)
    with w.vault.lock:
        w.vault.set_secret(SECRET_NAME, value, now, now + timedelta(days=180))
    return value


def revoke_consent(cloud: LocalCloud, tenant: str) -> None:
    """The app loses its consent (service principal) in one tenant: AADSTS700016 there."""
    w = world(cloud)
    with w.directory.lock:
        w.directory.consents.pop(tenant, None)


def set_roles(cloud: LocalCloud, tenant: str, family: str, roles: tuple[str, ...]) -> None:
    """Replace the app roles granted in one tenant for one API family."""
    w = world(cloud)
    with w.directory.lock:
        w.directory.consents[tenant][family] = roles


def run_cli(
    env: dict[str, str], *args: str, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m shared`` with exactly these app settings (and optionally another HOME)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DEFENDER_", "INGEST_"))}
    if home is not None:
        base["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "shared", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()
