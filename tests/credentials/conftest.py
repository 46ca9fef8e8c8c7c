"""Helpers for the credential tests: wiring the app against the local cloud with a movable
clock, and changing the emulator's identity state (rotation, consent, roles) through its admin
API (``/_emulator/keyvault/rotate``, ``/_emulator/consent``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.bootstrap import Services, build
from shared.core.settings import Settings

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


def admin(emu: Any, method: str, path: str, body: Any = None) -> Any:
    """Call an emulator's admin API (``emu`` is an ``emulator.server.Emulator``)."""
    response = requests.request(
        method,
        f"{emu.url}/_emulator/{path.lstrip('/')}",
        json=body,
        verify=str(emu.ca_path),
        timeout=30,
    )
    response.raise_for_status()
    return response.json() if response.content else None


def rotate_secret(emu: Any, *, revoke_old: bool) -> str:
    """A new client secret in Entra and a new vault version; optionally the old secret revoked.
    Returns the new value (for leak checks only)."""
    admin(emu, "POST", "keyvault/rotate", {"revoke_old": revoke_old})
    return str(emu.client_secret)


def revoke_consent(emu: Any, tenant: str) -> None:
    """The app loses its consent in one tenant (AADSTS7000229 there)."""
    admin(emu, "POST", "consent", {"tenant": tenant, "consent": False})


def set_roles(emu: Any, tenant: str, family: str, roles: tuple[str, ...]) -> None:
    """Set the app roles new tokens carry in one tenant for one API family."""
    admin(
        emu, "POST", "consent", {"tenant": tenant, "consent": True, "roles": {family: list(roles)}}
    )


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
