"""Schema-driven fuzzing of the WSGI app from its own OpenAPI document (schemathesis).

Every generated request (valid and invalid) must get an answer below 500 whose body leaks no
secret, token or stack trace. ``make test`` runs a small count per operation; set
``API_FUZZ_EXAMPLES`` (e.g. 300, several thousand requests in all) for the full run.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from shared.api.app import answer
from shared.api.openapi import document
from shared.api.routes import ROUTES
from shared.api.wsgi import make_app
from tests.api.conftest import SIGNING_KEY
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "15"))
APP = make_app(lambda request: answer(request, in_process=True))
# the served document needs a caller's token, which exists only once the emulator runs: the
# same document, built directly (test_openapi checks the served one is valid)
schema = schemathesis.openapi.from_dict(document("http://localhost", routes=ROUTES))
schema.app = APP
SENT: Counter[str] = Counter()
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.")
_TRACE = re.compile(r"Traceback|File \"|line \d+, in ")


@pytest.fixture
def fuzz_env(api_env: dict[str, str], cloud: LocalCloud) -> Iterator[dict[str, str]]:
    """No client-side or emulated quota: thousands of requests must not wait for a minute.
    Requests carry the token of a caller with every role (``TOKEN``)."""
    for family in ("incidents", "hunting", "alerts"):
        cloud.admin("POST", "quotas", {"family": family, "limits": []})
    yield {**api_env, "TOKEN": cloud.emulator.api_token("analyst")}
    cloud.admin("POST", "reset")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error_and_no_leak(case: schemathesis.Case, fuzz_env: dict[str, str]) -> None:
    response = case.call(headers={"Authorization": f"Bearer {fuzz_env['TOKEN']}"})
    SENT[case.operation.label] += 1
    text = response.text
    assert response.status_code < 500, (case.method, case.path, response.status_code, text[:300])
    for secret in (SIGNING_KEY, fuzz_env["IDENTITY_HEADER"], "AccountKey=", fuzz_env["TOKEN"]):
        assert secret not in text
    assert not _JWT.search(text) and not _TRACE.search(text), text[:300]
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}


def test_fuzz_covered_every_operation() -> None:
    """Runs after the fuzz test in this module: every operation was exercised."""

    # schemathesis does not fuzz the path its schema was loaded from; test_openapi covers it
    operations = {f"{r.method} {r.path}" for r in ROUTES if r.path != "/openapi.json"}
    assert operations <= set(SENT), sorted(operations - set(SENT))
    print(f"fuzz: {sum(SENT.values())} requests over {len(SENT)} operations")  # noqa: T201
