"""The Function app's indexing and bindings, as the host sees them."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import azure.functions as func
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _fresh_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with only PATH and ``env`` as its environment (no app
    settings unless given), as the host's indexing does; fails the test if it exits non-zero."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.subprocess
def test_imports_and_indexes_with_no_settings_at_all() -> None:
    """With an empty environment, importing function_app succeeds and lists every function."""
    code = (
        "import json, function_app; "
        "print(json.dumps([json.loads(f.get_raw_bindings()[0]) | {'name': f.get_function_name()} "
        "for f in function_app.app.get_functions()]))"
    )
    result = _fresh_python(code)
    bindings = {b["name"]: b for b in json.loads(result.stdout.strip().splitlines()[-1])}
    timer = bindings["ingest_timer"]
    assert timer["type"] == "timerTrigger"
    assert timer["schedule"] == "%INGEST_SCHEDULE%"
    assert timer["useMonitor"] is True


@pytest.mark.subprocess
def test_import_does_not_build_clients() -> None:
    """A fresh import builds nothing and loads no heavy SDK: the composition root stays empty
    and msal / azure-identity / storage / Key Vault (and the composition root, which imports
    them) are imported only on first use."""
    code = (
        "import sys, function_app; "
        "heavy = [m for m in ('msal', 'azure.identity', 'azure.storage.blob', "
        "'azure.data.tables', 'azure.keyvault.secrets', 'requests', 'shared.bootstrap') "
        "if m in sys.modules]; "
        "from shared import bootstrap; "
        "print(int(bootstrap.services.built), ','.join(heavy) or '-')"
    )
    result = _fresh_python(code)
    assert result.stdout.split() == ["0", "-"]


@pytest.mark.subprocess
def test_import_loads_neither_the_http_api_nor_the_use_cases() -> None:
    """Indexing needs each route's entry (``shared.api.endpoints``), not its handler: a fresh
    import loads no handler, route table, OpenAPI description, use case, Defender or storage
    module, and not the settings' declarations; the first invocation imports them."""
    code = (
        "import sys, function_app; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('shared.'))))"
    )
    result = _fresh_python(code)
    loaded = set(result.stdout.split())
    assert "shared.api.endpoints" in loaded  # the check below looks at the right process
    unwanted = (
        "shared.api.handlers",
        "shared.api.routes",
        "shared.api.app",
        "shared.api.openapi",
        "shared.api.spec",
        "shared.usecases",
        "shared.defender",
        "shared.storage",
        "shared.push",
        "shared.credentials",
        "shared.core.settings",
        "shared.core.logs",
    )
    assert sorted(m for m in loaded if m.startswith(unwanted)) == []


def test_every_trigger_takes_the_workers_context() -> None:
    """The worker passes ``context`` to a function whose signature has a parameter of that
    name annotated ``azure.functions.Context`` (it refuses any other annotation), and every
    other parameter must be a binding (``is_context_required`` / ``validate_function_params``
    in azure_functions_worker/functions.py). Each trigger qualifies, so the app's threads can
    log with the invocation id; called directly (tests) it defaults to no invocation."""
    from testkit.env import indexed_functions

    for name, function in indexed_functions().items():
        user = function.get_user_function()
        hints = typing.get_type_hints(user)
        assert hints["context"] is func.Context, name
        parameters = set(inspect.signature(user).parameters) - {"context"}
        bound = {json.loads(b)["name"] for b in function.get_raw_bindings()}
        assert parameters <= bound, name


def _http_auth_levels(env: dict[str, str]) -> dict[str, str]:
    """The host's authLevel of every HTTP function, as indexed in a fresh process."""
    code = (
        "import json, function_app; "
        "print(json.dumps({f.get_function_name(): json.loads(f.get_raw_bindings()[0]) "
        ".get('authLevel') for f in function_app.app.get_functions()}))"
    )
    result = _fresh_python(code, env)
    levels = json.loads(result.stdout.strip().splitlines()[-1])
    return {name: str(level).upper() for name, level in levels.items() if level}


@pytest.mark.subprocess
def test_the_host_checks_keys_only_in_key_mode() -> None:
    """Default (and ``entra``): every HTTP function is anonymous at the host, so a Logic App's
    managed-identity token reaches the app without a key, and the app checks the token.
    ``API_AUTH_MODE=key`` (or a value the app refuses): the host requires a function key on
    every route but the health check, the consent callback and the poll link (which carries its
    own capability: a poller that re-sends nothing has no key either)."""
    from shared.api.routes import ROUTES

    anonymous = {r.function_name for r in ROUTES if r.public}
    assert anonymous == {"http_health", "http_consent_callback", "http_poll_hunting_job"}
    for env in ({}, {"API_AUTH_MODE": "entra"}):
        assert set(_http_auth_levels(env).values()) == {"ANONYMOUS"}, env
    for env in ({"API_AUTH_MODE": "key"}, {"API_AUTH_MODE": "nonsense"}):
        levels = _http_auth_levels(env)
        assert {n for n, level in levels.items() if level == "ANONYMOUS"} == anonymous, env
        assert {r.function_name for r in ROUTES} - anonymous <= {
            n for n, level in levels.items() if level == "FUNCTION"
        }
