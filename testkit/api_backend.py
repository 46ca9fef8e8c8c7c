"""An HTTP API ``Backend`` wired to the in-memory fakes of ``testkit.port_fakes``, for
millisecond tests of the API's handlers and job worker without Azurite or the emulator.

Every collaborator a test does not hand in is either a fake (jobs, subscriptions, consent
nonces) or a callable that fails the test when called (so a test also proves what a request
does *not* touch).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.api.backend import Backend
from shared.api.ratelimit import CallerLimiter
from shared.core.settings import Settings
from shared.push.keys import PushKeys
from shared.usecases.push.delivery import Callbacks, PushOptions
from testkit.fakes import MovableClock
from testkit.port_fakes import MemoryConsentNonces, MemoryJobs, MemorySubscriptions

#: the four settings every configuration needs, for a tenant of the public cloud
MINIMAL_SETTINGS = {
    "DEFENDER_TENANT_ID": "11111111-1111-1111-1111-111111111111",
    "DEFENDER_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
    "KEY_VAULT_URL": "https://myvault.vault.azure.net/",
    "DATA_STORAGE_ACCOUNT_NAME": "mydata",
}
SIGNING_KEY = "testkit-signing-key-0123456789abcdef"


def unused(name: str) -> Callable[..., Any]:
    """A collaborator the code under test must not call."""

    def call(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"unexpected call of {name}")

    return call


def memory_backend(
    *,
    settings: Settings | None = None,
    clock: MovableClock | None = None,
    **overrides: Any,
) -> Backend:
    """A ``Backend`` of fakes; ``overrides`` replace any of its fields by name."""
    settings = settings or Settings.from_env({**MINIMAL_SETTINGS, "API_SIGNING_KEY": SIGNING_KEY})
    clock = clock or MovableClock(datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    key = settings.http.signing_key or SIGNING_KEY
    nonces = MemoryConsentNonces()
    fields: dict[str, Any] = {
        "settings": settings,
        "clock": clock,
        "registered": lambda: (),
        "client_for": unused("client_for"),
        "user_client_for": unused("user_client_for"),
        "enqueue_ingest": unused("enqueue_ingest"),
        "jobs": MemoryJobs(),
        "submit_job": unused("submit_job"),
        "background": unused("background"),
        "subscriptions": MemorySubscriptions(PushKeys(key), clock),
        "callbacks": Callbacks(PushOptions(allowed=settings.push.host_suffixes), unused("resolve")),
        "mark_own_update": unused("mark_own_update"),
        "record_consent": unused("record_consent"),
        "prove_consent": unused("prove_consent"),
        "consent_states": lambda: nonces,
        "caller_limits": CallerLimiter({}),
        "ingest_status": unused("ingest_status"),
    }
    fields.update(overrides)
    return Backend(**fields)
