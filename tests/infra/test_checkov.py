"""checkov on infra/: 0 failed checks, 0 parse errors; broken or secret-holding Bicep fails.

checkov runs from its own virtual environment (``make checkov`` installs .venv-checkov from
requirements-checkov.txt) through infra/checkov_gate.py, which also counts parse errors: checkov
itself reports a file it cannot parse only in ``summary.parsing_errors`` and exits 0.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
GATE = ROOT / "infra" / "checkov_gate.py"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"

BROKEN = """\
resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-broken'
  properties: {
    httpsOnly: true
"""

# A site that is hardened in every other way, with an account key in an app setting.
SECRET_SETTING = """\
resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-secret'
  location: 'eastus'
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    httpsOnly: true
    siteConfig: {
      ftpsState: 'Disabled'
      http20Enabled: true
      minTlsVersion: '1.2'
      appSettings: [
        {
          name: 'DATA_STORAGE_CONNECTION_STRING'
          value: 'AccountName=stx;AccountKey=c2VjcmV0LWtleS1ub3QtcmVhbA=='
        }
      ]
    }
  }
}
"""


@pytest.fixture(scope="module", autouse=True)
def checkov_installed() -> None:
    # not a skip: without checkov the gate cannot pass, so say how to install it
    assert CHECKOV.exists(), "checkov is not installed: run `make checkov` (or `make test`)"


def gate(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(GATE), str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def load_gate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("checkov_gate", GATE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_infra_passes_with_no_failed_check_and_no_parse_error() -> None:
    done = gate(ROOT / "infra")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = re.search(
        r"checkov: (\d+) passed checks, (\d+) failed, (\d+) skipped, (\d+) parsing errors, "
        r"(\d+) resources",
        done.stdout,
    )
    assert summary, done.stdout
    passed, failed, skipped, parsing, resources = map(int, summary.groups())
    assert (failed, parsing) == (0, 0)
    assert passed >= 20 and resources >= 20
    # every skip is written beside its resource (counted from the Bicep, see the next test)
    assert skipped == len(skip_comments())


def skip_comments() -> list[tuple[Path, str, str]]:
    found = []
    for file in sorted((ROOT / "infra").rglob("*.bicep")):
        for line in file.read_text().splitlines():
            match = re.search(r"//\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?", line)
            if match:
                found.append((file, match.group(1), (match.group(2) or "").strip()))
    return found


def test_every_skip_is_justified_beside_its_resource() -> None:
    skips = skip_comments()
    assert skips
    for file, check, reason in skips:
        assert len(reason) >= 40, f"{file.name} {check}: a skip needs its reason"
    assert len({(f, c) for f, c, _ in skips}) == len(skips), "a check is skipped twice"


def test_a_broken_bicep_file_fails_the_gate(tmp_path: Path) -> None:
    (tmp_path / "broken.bicep").write_text(BROKEN)
    done = gate(tmp_path)
    assert done.returncode == 1, done.stdout
    assert "1 parsing errors" in done.stdout


def test_a_secret_in_an_app_setting_fails_the_gate(tmp_path: Path) -> None:
    (tmp_path / "secret.bicep").write_text(SECRET_SETTING)
    done = gate(tmp_path)
    assert done.returncode == 1, done.stdout
    assert "FAILED CKV_DB_1 Microsoft.Web/sites.site" in done.stdout


def test_report_reader_counts_parse_errors_and_empty_scans() -> None:
    module = load_gate()
    bare = module.parse_report(
        '{"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 1, "resource_count": 0}'
    )
    assert (bare.parsing_errors, bare.ok) == (1, False)
    empty = module.parse_report(
        '{"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0, "resource_count": 0}'
    )
    assert empty.ok is False  # scanning nothing is not a pass
    clean = module.parse_report(
        '[{"summary": {"passed": 3, "failed": 0, "skipped": 1, "parsing_errors": 0,'
        ' "resource_count": 2}, "results": {"failed_checks": []}}]'
    )
    assert clean.ok is True


def test_checkov_is_pinned_in_its_own_requirements() -> None:
    lines = (ROOT / "requirements-checkov.txt").read_text().splitlines()
    pins = [line for line in lines if line and not line.startswith("#")]
    assert "checkov==3.3.30" in pins
    assert all("==" in line for line in pins)
    assert "checkov" not in (ROOT / "requirements-dev.txt").read_text()


def test_a_key_vault_reference_is_not_taken_for_a_secret(tmp_path: Path) -> None:
    (tmp_path / "reference.bicep").write_text(
        SECRET_SETTING.replace(
            "'AccountName=stx;AccountKey=c2VjcmV0LWtleS1ub3QtcmVhbA=='",
            "'@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/conn/)'",
        )
    )
    done = gate(tmp_path)
    assert "CKV_DB_1" not in done.stdout
    assert "1 resources" in done.stdout  # it was scanned


def test_files_left_out_of_the_scan_hide_nothing_checkov_checks() -> None:
    """A file checkov's pinned Bicep parser cannot read is left out by name, with its reason,
    only when it exists, parses with the newer parser of the structure tests, and declares
    nothing but Microsoft Graph resources (which no checkov check reads)."""
    from pycep import BicepParser

    module = load_gate()
    assert module.NOT_PARSED_BY_CHECKOV
    for name, reason in module.NOT_PARSED_BY_CHECKOV.items():
        file = ROOT / "infra" / name
        assert file.is_file(), name
        assert len(reason) >= 80, name
        parsed = BicepParser().parse(file_path=file)
        kinds = {r["type"].split("/")[0] for r in parsed["resources"].values()}
        assert kinds == {"Microsoft.Graph"}, (name, kinds)
        assert not parsed.get("modules"), name
