"""The credential-expiry check, the report table, and the user token cache file's permissions."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.core.errors import SecretAccessError
from shared.credentials.user import PersistentTokenCache
from shared.credentials.values import CredentialInfo, CredentialKind
from shared.usecases.credentials import (
    CheckReport,
    Step,
    TenantReport,
    check_credential,
    render_table,
)

NOW = datetime(2026, 11, 1, tzinfo=UTC)


class FakeSource:
    """A credential source with a fixed description (or failure)."""

    kind: CredentialKind = "secret"

    def __init__(self, expires: datetime | None, *, fail: bool = False) -> None:
        self.expires, self.fail = expires, fail

    def current(self) -> tuple[str, Any]:
        return "v1", "value-never-shown"

    def invalidate(self) -> None:
        pass

    def describe(self) -> CredentialInfo:
        if self.fail:
            raise SecretAccessError("Key Vault refused to read secret 's' (403)")
        return CredentialInfo("secret", "s", "0123456789abcdef", self.expires)


@pytest.mark.parametrize(
    ("expires", "status"),
    [
        (None, "ok"),
        (NOW + timedelta(days=90), "ok"),
        (NOW + timedelta(days=10), "warn"),
        (NOW - timedelta(seconds=1), "fail"),
    ],
)
def test_expiry_is_ok_warn_or_fail(expires: datetime | None, status: str) -> None:
    """Within the warning window the check warns; past expiry it fails."""
    step, fix = check_credential(
        FakeSource(expires), clock=lambda: NOW, warn_within=timedelta(days=30)
    )
    assert step.status == status
    assert (fix is None) == (status == "ok")
    assert "value-never-shown" not in step.detail


def test_unreadable_credential_fails_with_the_fix() -> None:
    """A Key Vault refusal is a failure with the role to grant."""
    step, fix = check_credential(
        FakeSource(None, fail=True), clock=lambda: NOW, warn_within=timedelta(days=30)
    )
    assert step.status == "fail"
    assert fix is not None and "Key Vault Secrets User" in fix


def test_table_names_failed_tenant_and_fix() -> None:
    """The rendered table shows each tenant's result, and the fix of a failed one."""
    ok = Step("ok", "fine")
    report = CheckReport(
        ok,
        (
            TenantReport("t-ok", "Good", ok, ok, ok),
            TenantReport("t-bad", None, ok, Step("fail", "not consented"), Step("skip"), "consent"),
        ),
    )
    text = render_table(report)
    assert not report.ok
    assert "t-ok" in text and "FAILED" in text and "fix: consent" in text
    assert report.to_json()["tenants"][1]["ok"] is False


def test_cache_file_is_owner_only(tmp_path: Path) -> None:
    """The token cache directory is 0700 and the file 0600; loosened files are tightened."""
    path = tmp_path / "home" / ".defender-bridge" / "msal-cache.json"
    cache = PersistentTokenCache(path)
    cache.load()
    cache.cache.has_state_changed = True
    cache.save()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    PersistentTokenCache(path).load()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["msal-cache.json"]
