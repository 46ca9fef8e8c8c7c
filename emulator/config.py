"""How a local cloud is seeded and bound: `EmulatorConfig`, one frozen value with a default for
every field (`python -m emulator` builds it from its command line, tests build it directly)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator import behaviour, hunting, ratelimit


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How the local cloud is seeded and bound. Every field has a default."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port
    mi_port: int = 0
    seed: int = 1
    home_incidents: int = 260
    customer_tenants: int = 2
    customer_incidents: int = 40
    state_dir: Path | None = None  # where the CA PEM is written; default: a temporary directory
    token_lifetime: int = 3599  # seconds, Entra access tokens (client credentials)
    mi_token_lifetime: int = 86399  # seconds, managed-identity tokens
    secret_lifetime_days: int = 180  # expiry of the seeded client secret (Entra and Key Vault)
    request_log_size: int = 5000
    # User flows. Entra's device-code interval is 5 s; 1 s keeps tests fast. MSAL sleeps
    # `interval` whole seconds between polls and checks for expiry only while sleeping, so the
    # interval must be at least 1
    # (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-device-code).
    device_code_interval: int = 1
    device_code_lifetime: int = 900  # seconds (Entra: 15 minutes)
    refresh_token_lifetime: int = 90 * 86400  # seconds (Entra: 90 days of inactivity)
    # Approve every new device code as this user (UPN or object id); None = wait for the admin
    # API (`/_emulator/devicecode/approve`).
    device_code_auto_user: str | None = None
    # Per-family request quotas ("incidents", "hunting", "alerts"); missing families keep
    # Microsoft's documented defaults (see emulator.ratelimit.DEFAULT_QUOTAS).
    quotas: Mapping[str, tuple[ratelimit.Limit, ...]] = field(default_factory=dict)
    # Advanced hunting limits (emulator.hunting; documented values as defaults). Tests shorten
    # the 3-minute timeout and make queries slow with a simulated run time (or a
    # `// emulator:latency=<s>` comment in the query); a CPU allocation per tenant and cycle
    # turns on the CPU-quota 429 (None: off, since real allocations depend on tenant size).
    hunting_timeout_seconds: float = hunting.TIMEOUT_SECONDS
    hunting_latency_seconds: float = 0.0
    hunting_max_rows: int = hunting.MAX_ROWS
    hunting_max_result_bytes: int = hunting.MAX_RESULT_BYTES
    hunting_cpu_seconds: float | None = None
    hunting_cpu_cycle_seconds: float = 900.0
    # Behaviours (emulator.behaviour; also `GET|POST /_emulator/behaviour`, restored by reset).
    # Each field is named as its behaviour key. The defaults are the plainest reading of
    # Microsoft's pages; `order` (on Graph) and `count_pages` are not documented at all, see
    # emulator/behaviour.py.
    order: behaviour.Order = "newest"  # or "arbitrary": a seeded order that ignores time
    order_seed: int = 0
    # which Graph list pages carry @odata.count when $count=true: "every", "first" or "none"
    count_pages: behaviour.CountPages = "every"
    expand_failure_tenants: tuple[str, ...] = ()  # tenant ids, or "*" for all
    late_arrival_seconds: float = 0.0
    # {"tenant", "every", "create", "update", "merge"} (or a behaviour.PagingActivity)
    paging_activity: behaviour.PagingActivity | Mapping[str, Any] | None = None

    def hunting_limits(self) -> hunting.Limits:
        """The advanced hunting limits these fields set."""
        return hunting.Limits(
            max_rows=self.hunting_max_rows,
            timeout_seconds=self.hunting_timeout_seconds,
            max_result_bytes=self.hunting_max_result_bytes,
            latency_seconds=self.hunting_latency_seconds,
            cpu_seconds=self.hunting_cpu_seconds,
            cpu_cycle_seconds=self.hunting_cpu_cycle_seconds,
        )

    def behaviour_settings(self, tenants: tuple[str, ...]) -> behaviour.Settings:
        """The behaviour fields as validated settings (`tenants`: the seeded tenant ids).

        Raises:
            ValueError: a behaviour field outside its rule (the message names it).
        """
        values = {key: getattr(self, key) for key in behaviour.KEYS}
        try:
            return behaviour.merge(behaviour.Settings(), values, tenants)
        except behaviour.BehaviourError as exc:
            raise ValueError(f"EmulatorConfig: {exc}") from exc
