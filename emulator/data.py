"""Deterministic, realistic seed data: incidents with alerts, devices, entities, comments, tags.

Everything derives from (seed, tenant index) through `random.Random`, and every time is relative
to the `now` passed in (the emulator clock at seeding), so two runs with the same seed and clock
produce identical data. The same generator simulates SOC activity afterwards
(`/_emulator/activity`).
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from emulator.fields import seed_extras
from emulator.model import Alert, Comment, Device, Entity, Incident, format_time

# Sample organisation names Microsoft uses in its docs; the home tenant is Contoso.
ORG_NAMES = (
    "contoso",
    "fabrikam",
    "northwind",
    "adatum",
    "tailspin",
    "woodgrove",
    "litware",
    "proseware",
    "wingtip",
    "fourthcoffee",
    "alpineskihouse",
    "margiestravel",
    "relecloud",
    "lucernepublishing",
    "wideworldimporters",
    "treyresearch",
    "cohowinery",
    "humongousinsurance",
    "southridgevideo",
    "blueyonderairlines",
)


def org_name(index: int) -> str:
    """Organisation name of the tenant at `index` (0 = home)."""
    if index < len(ORG_NAMES):
        return ORG_NAMES[index]
    return f"customer{index:03d}"


def make_guid(rng: random.Random) -> str:
    """A random-looking but seeded GUID."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass(frozen=True, slots=True)
class _Scenario:
    title: str
    category: str
    service_source: str
    detection_source: str
    mitre: tuple[str, ...]
    entity_kinds: tuple[str, ...]
    with_device: bool
    threat_family: str | None = None
    severity_choices: tuple[str, ...] = ("Medium", "High")


# Alert templates modelled on real Defender XDR alert titles and categories (as in the examples
# of https://learn.microsoft.com/defender-xdr/api-list-incidents).
_SCENARIOS: tuple[_Scenario, ...] = (
    _Scenario(
        "Ransomware activity",
        "Impact",
        "MicrosoftDefenderForEndpoint",
        "EDR",
        ("T1486", "T1490"),
        ("File", "Process", "User"),
        True,
        "Lockbit",
        ("High",),
    ),
    _Scenario(
        "Suspicious PowerShell command line",
        "Execution",
        "MicrosoftDefenderForEndpoint",
        "EDR",
        ("T1059.001",),
        ("Process", "User"),
        True,
    ),
    _Scenario(
        "'Wacatac' malware was detected",
        "Malware",
        "MicrosoftDefenderForEndpoint",
        "WindowsDefenderAv",
        ("T1204.002",),
        ("File",),
        True,
        "Wacatac",
        ("Informational", "Low", "Medium"),
    ),
    _Scenario(
        "Suspected credential theft activity",
        "CredentialAccess",
        "MicrosoftDefenderForEndpoint",
        "EDR",
        ("T1003.001",),
        ("Process", "User"),
        True,
    ),
    _Scenario(
        "Suspicious registry modification for persistence",
        "Persistence",
        "MicrosoftDefenderForEndpoint",
        "EDR",
        ("T1547.001",),
        ("Registry", "Process"),
        True,
        None,
        ("Low", "Medium"),
    ),
    _Scenario(
        "Hidden file attribute set on executable",
        "DefenseEvasion",
        "MicrosoftDefenderForEndpoint",
        "EDR",
        ("T1564.001",),
        ("File", "Process"),
        True,
        None,
        ("Low", "Medium"),
    ),
    _Scenario(
        "Email messages containing malicious URL removed after delivery",
        "InitialAccess",
        "OfficeATP",
        "OfficeATP",
        ("T1566.002",),
        ("MailMessage", "Url", "MailBox"),
        False,
        None,
        ("Informational", "Low", "Medium"),
    ),
    _Scenario(
        "Email reported by user as malware or phish",
        "InitialAccess",
        "OfficeATP",
        "OfficeATP",
        ("T1566.001",),
        ("MailCluster", "MailMessage", "MailBox"),
        False,
        None,
        ("Informational", "Low"),
    ),
    _Scenario(
        "Impossible travel activity",
        "SuspiciousActivity",
        "MicrosoftCloudAppSecurity",
        "MCAS",
        ("T1078",),
        ("User", "Ip"),
        False,
        None,
        ("Low", "Medium"),
    ),
    _Scenario(
        "Mass download by a single user",
        "Exfiltration",
        "MicrosoftCloudAppSecurity",
        "MCAS",
        ("T1530",),
        ("User", "Ip", "Url"),
        False,
        None,
        ("Medium",),
    ),
    _Scenario(
        "Suspected brute-force attack (Kerberos, NTLM)",
        "CredentialAccess",
        "AzureATP",
        "AzureATP",
        ("T1110",),
        ("User", "Ip"),
        True,
        None,
        ("Medium", "High"),
    ),
    _Scenario(
        "User was added to a sensitive security group",
        "PrivilegeEscalation",
        "AzureATP",
        "AzureATP",
        ("T1098",),
        ("SecurityGroup", "User"),
        False,
        None,
        ("Medium",),
    ),
)

_INVESTIGATION_STATES = (
    "UnsupportedAlertType",
    "SuccessfullyRemediated",
    "Benign",
    "PartiallyInvestigated",
    "Running",
    "PendingApproval",
    "TerminatedBySystem",
    "Queued",
)
_SEVERITY_ORDER = ("Informational", "Low", "Medium", "High")
# Determinations per classification, resource-page spellings
# (https://learn.microsoft.com/defender-xdr/api-incident).
_DETERMINATIONS = {
    "TruePositive": ("MultiStagedAttack", "MaliciousUserActivity", "CompromisedUser", "Malware",
                     "Phishing", "UnwantedSoftware", "Other"),
    "InformationalExpectedActivity": ("SecurityTesting", "LineOfBusinessApplication",
                                      "ConfirmedUserActivity", "Other"),
    "FalsePositive": ("Clean", "InsufficientData", "Other"),
}  # fmt: skip
_TAGS = ("Ransomware", "Phishing", "VIP", "Priority", "Pentest", "BEC", "Finance", "Server")
_COMMENTS = (
    "Isolated the device pending investigation.",
    "User contacted; password reset enforced.",
    "Confirmed with the app owner: expected behaviour of the backup agent.",
    "Blocked the sender domain in the tenant allow/block list.",
    "Escalated to tier 2.",
    "Related to the phishing wave reported this morning.",
)
_FIRST = ("alex", "maria", "li", "noor", "sam", "jordan", "priya", "tomas", "yuki", "omar",
          "elena", "chris", "ana", "ben", "kim", "dev")  # fmt: skip
_LAST = ("wilber", "garcia", "chen", "haddad", "taylor", "lee", "patel", "novak", "sato",
         "khan", "rossi", "miller", "costa", "becker", "park", "singh")  # fmt: skip
_PROCESSES = (
    ("powershell.exe", r"C:\Windows\System32\WindowsPowerShell\v1.0",
     "powershell.exe -nop -w hidden -enc "
     "SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA"),
    ("rundll32.exe", r"C:\Windows\System32", r"rundll32.exe C:\Users\Public\lib.dll,Start"),
    ("cmd.exe", r"C:\Windows\System32", "cmd.exe /c vssadmin delete shadows /all /quiet"),
    ("mimikatz.exe", r"C:\Users\Public", "mimikatz.exe privilege::debug sekurlsa::logonpasswords"),
    ("reg.exe", r"C:\Windows\System32",
     r"reg.exe add HKCU\Software\Microsoft\Windows\CurrentVersion\Run"
     r" /v upd /d C:\ProgramData\upd.exe"),
)  # fmt: skip
_FILES = ("invoice_0923.exe", "payload.dll", "setup_update.exe", "locker.exe", "report.docm")
_URLS = (
    "https://login-microsoftonline.example-phish.com/common/oauth2",
    "http://cdn-update.example-bad.net/payload.bin",
    "https://sharepoint-docs.example-phish.org/view?id=8812",
)
_OS = (
    ("Windows11", "23H2", 22631),
    ("Windows10", "22H2", 19045),
    ("WindowsServer2022", "21H2", 20348),
    ("WindowsServer2019", "1809", 17763),
)
_COUNTRIES = ("US", "NL", "DE", "BR", "SG", "NG", "RU", "IN")


@dataclass(frozen=True, slots=True)
class _User:
    account_name: str
    upn: str
    sid: str
    aad_id: str


class TenantGenerator:
    """Seeded generator of one tenant's incidents; keeps its RNG for later activity."""

    def __init__(self, tenant_id: str, index: int, seed: int) -> None:
        self.tenant_id = tenant_id
        self.org = org_name(index)
        self.domain = f"{self.org}.com"
        self.rng = random.Random(f"{seed}:{index}:{tenant_id}")
        rng = self.rng
        self.analysts = tuple(f"secop{i}@{self.domain}" for i in range(1, 5))
        self.users = tuple(self._make_user() for _ in range(16))
        self.devices = tuple(self._make_device(i) for i in range(18))
        self.next_incident_id = rng.randint(100_000, 900_000)
        self.next_investigation_id = rng.randint(1_000, 9_000)

    # ------------------------------------------------------------------ pools

    def _make_user(self) -> _User:
        rng = self.rng
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        account = f"{first}.{last}{rng.randint(1, 99)}"
        sid = "S-1-5-21-" + "-".join(str(rng.randint(10**8, 4 * 10**9)) for _ in range(3))
        sid += f"-{rng.randint(1000, 9999)}"
        return _User(account, f"{account}@{self.domain}", sid, make_guid(rng))

    def _make_device(self, index: int) -> Device:
        rng = self.rng
        platform, version, build = rng.choice(_OS)
        role = "srv" if platform.startswith("WindowsServer") else "ws"
        dept = rng.choice(("fin", "hr", "eng", "ops", "it", "sales"))
        return Device(
            mdatp_device_id=f"{rng.getrandbits(160):040x}",
            aad_device_id=make_guid(rng) if rng.random() < 0.7 else None,
            device_dns_name=f"{role}-{dept}-{index:03d}.{self.org}.local",
            os_platform=platform,
            version=version,
            os_processor="x64",
            os_build=build,
            health_status="Active",
            risk_score=rng.choice(("Low", "Medium", "High", "Informational")),
            rbac_group_name=f"{dept.upper()} devices",
            rbac_group_id=rng.randint(10, 400),
            first_seen=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 600)),
            tags=(dept.upper(),) if rng.random() < 0.4 else (),
            ip_address=f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            logged_on_user=rng.choice(self.users).account_name,
        )

    # ------------------------------------------------------------------ entities

    def _entity(self, kind: str, device: Device | None, user: _User, at: datetime) -> Entity:
        rng = self.rng
        device_id = device.mdatp_device_id if device else None
        if kind == "User":
            values: dict[str, object] = {
                "accountName": user.account_name,
                "domainName": self.org.upper(),
                "userSid": user.sid,
                "aadUserId": user.aad_id,
                "userPrincipalName": user.upn,
            }
        elif kind == "Ip":
            values = {
                "ipAddress": f"{rng.randint(20, 220)}.{rng.randint(0, 255)}."
                f"{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                "_country": rng.choice(_COUNTRIES),
            }
        elif kind == "Url":
            values = {"url": rng.choice(_URLS)}
        elif kind == "File":
            name = rng.choice(_FILES)
            values = {
                "sha1": f"{rng.getrandbits(160):040x}",
                "sha256": f"{rng.getrandbits(256):064x}",
                "fileName": name,
                "filePath": rf"C:\Users\{user.account_name}\Downloads",
                "deviceId": device_id,
                "_fileSize": rng.randint(10_000, 5_000_000),
            }
        elif kind == "Process":
            name, path, cmd = rng.choice(_PROCESSES)
            start = at - timedelta(minutes=rng.randint(1, 90))
            values = {
                "processId": rng.randint(1000, 60000),
                "processCommandLine": cmd,
                "processCreationTime": format_time(start),
                "parentProcessId": rng.randint(500, 9000),
                "parentProcessCreationTime": format_time(start - timedelta(hours=2)),
                "fileName": name,
                "filePath": path,
                "sha1": f"{rng.getrandbits(160):040x}",
                "sha256": f"{rng.getrandbits(256):064x}",
                "accountName": user.account_name,
                "domainName": self.org.upper(),
                "userSid": user.sid,
                "deviceId": device_id,
            }
        elif kind == "MailBox":
            values = {
                "mailboxDisplayName": user.account_name.replace(".", " ").title(),
                "mailboxAddress": user.upn,
                "accountName": user.account_name,
                "aadUserId": user.aad_id,
                "userPrincipalName": user.upn,
            }
        elif kind == "MailMessage":
            values = {
                "sender": f"billing@{rng.choice(('example-phish.com', 'invoices-example.net'))}",
                "recipient": user.upn,
                "subject": rng.choice(
                    ("Invoice overdue", "Your password expires today", "Shared document")
                ),
                "deliveryAction": rng.choice(("Delivered", "Blocked", "Junked")),
                "_senderIp": f"203.0.113.{rng.randint(1, 254)}",
                "_networkMessageId": make_guid(rng),
            }
        elif kind == "MailCluster":
            values = {"clusterBy": "Subject;SenderIp", "_clusterByValue": make_guid(rng)}
        elif kind == "Registry":
            values = {
                "registryHive": "HKEY_CURRENT_USER",
                "registryKey": r"Software\Microsoft\Windows\CurrentVersion\Run",
                "registryValueType": "String",
                "registryValue": r"C:\ProgramData\upd.exe",
                "deviceId": device_id,
            }
        else:  # SecurityGroup
            values = {
                "securityGroupId": make_guid(rng),
                "securityGroupName": rng.choice(("Domain Admins", "Enterprise Admins", "Tier0")),
            }
        return Entity(kind, values)

    # ------------------------------------------------------------------ alerts

    def _alert_id(self, source: str, at: datetime) -> tuple[str, str]:
        rng = self.rng
        if source == "MicrosoftDefenderForEndpoint":
            ticks = int(at.timestamp() * 10_000_000) + 621_355_968_000_000_000
            provider = f"{ticks}_{rng.randint(10**8, 10**9 - 1)}"
            return f"da{provider}", provider
        guid = make_guid(rng).upper()
        prefix = {"MicrosoftCloudAppSecurity": "ca", "OfficeATP": "fa", "AzureATP": "aa"}[source]
        return f"{prefix}{guid}", guid

    def make_alert(
        self, incident_id: int, scenario: _Scenario, created: datetime, updated: datetime
    ) -> Alert:
        """One alert of `scenario` created at `created`, last updated at `updated`."""
        rng = self.rng
        device = rng.choice(self.devices) if scenario.with_device else None
        user = rng.choice(self.users)
        alert_id, provider_id = self._alert_id(scenario.service_source, created)
        first = created - timedelta(minutes=rng.randint(1, 240), seconds=rng.randint(0, 59))
        automated = scenario.service_source == "MicrosoftDefenderForEndpoint" and rng.random() < 0.6
        investigation_id = None
        if automated:
            investigation_id = self.next_investigation_id
            self.next_investigation_id += 1
        host = device.device_dns_name.split(".")[0] if device else user.upn
        return Alert(
            alert_id=alert_id,
            provider_alert_id=provider_id,
            incident_id=incident_id,
            service_source=scenario.service_source,
            creation_time=created,
            last_updated_time=updated,
            resolved_time=None,
            first_activity=first,
            last_activity=first + timedelta(minutes=rng.randint(0, 60)),
            title=scenario.title,
            description=f"{scenario.title} was observed involving {host}.",
            category=scenario.category,
            status="New",
            severity=rng.choice(scenario.severity_choices),
            investigation_id=investigation_id,
            investigation_state=(
                rng.choice(_INVESTIGATION_STATES[1:]) if automated else "UnsupportedAlertType"
            ),
            classification=None,
            determination=None,
            detection_source=scenario.detection_source,
            detector_id=make_guid(rng),
            assigned_to=None,
            actor_name=rng.choice((None, None, "Storm-0501", "Octo Tempest")),
            threat_family_name=scenario.threat_family,
            mitre_techniques=scenario.mitre,
            devices=(device,) if device else (),
            entities=tuple(self._entity(k, device, user, created) for k in scenario.entity_kinds),
            recommended_actions="Investigate the entities involved and contain affected assets.",
        )

    # ------------------------------------------------------------------ incidents

    def new_incident(self, created: datetime, updated: datetime) -> Incident:
        """A fresh Active incident with 1-4 alerts created between `created` and `updated`."""
        rng = self.rng
        incident_id = self.next_incident_id
        self.next_incident_id += rng.randint(1, 4)
        count = rng.choices((1, 2, 3, 4), weights=(55, 25, 12, 8))[0]
        scenarios = [rng.choice(_SCENARIOS) for _ in range(count)]
        span = max((updated - created).total_seconds(), 0.0)
        alerts = []
        for i, scenario in enumerate(scenarios):
            at = created + timedelta(seconds=span * i / max(count, 1))
            alerts.append(self.make_alert(incident_id, scenario, at, min(updated, at)))
        alerts[0] = replace(alerts[0], creation_time=created)
        return self._summarise(
            Incident(
                incident_id=incident_id,
                incident_name="",
                created_time=created,
                last_update_time=updated,
                status="Active",
                severity="Informational",
                detection_source=alerts[0].detection_source,
                alerts=tuple(alerts),
            )
        )

    def _summarise(self, incident: Incident) -> Incident:
        """Derive name, severity and description from the alerts, as the portal does."""
        alerts = incident.alerts
        if not alerts:
            return incident
        severity = max((a.severity for a in alerts), key=_SEVERITY_ORDER.index)
        categories = sorted({a.category for a in alerts})
        devices = {d.mdatp_device_id for a in alerts for d in a.devices}
        where = "on one endpoint" if len(devices) == 1 else "on multiple endpoints"
        if not devices:
            users = {
                e.values.get("userPrincipalName") or e.values.get("recipient")
                for a in alerts
                for e in a.entities
            }
            where = "involving one user" if len(users) <= 2 else "involving multiple users"
        if len(alerts) == 1:
            name = f"{alerts[0].title} {where}"
        else:
            name = f"Multi-stage incident involving {' & '.join(categories[:3])} {where}"
        return replace(
            incident,
            incident_name=name,
            severity=severity,
            description=f"{len(alerts)} alert(s): {', '.join(sorted({a.title for a in alerts}))}.",
        )

    def triage(self, incident: Incident, at: datetime, *, resolve: bool) -> Incident:
        """Move an incident along the SOC workflow (assign, progress, resolve with a verdict)."""
        rng = self.rng
        analyst = incident.assigned_to or rng.choice(self.analysts)
        comments = incident.comments
        if rng.random() < 0.5:
            comments += (Comment(rng.choice(_COMMENTS), analyst, at),)
        tags = incident.tags
        if rng.random() < 0.3:
            tags = tuple(sorted(set(tags) | {rng.choice(_TAGS)}))
        if not resolve:
            return replace(
                incident,
                status="InProgress",
                assigned_to=analyst,
                comments=comments,
                tags=tags,
                last_update_time=at,
            )
        classification = rng.choices(
            ("TruePositive", "FalsePositive", "InformationalExpectedActivity"), weights=(5, 3, 2)
        )[0]
        determination = rng.choice(_DETERMINATIONS[classification])
        alerts = tuple(
            replace(
                a,
                status="Resolved",
                resolved_time=at,
                last_updated_time=at,
                classification=classification,
                determination=determination,
                assigned_to=analyst,
            )
            for a in incident.alerts
        )
        return replace(
            incident,
            status="Resolved",
            assigned_to=analyst,
            classification=classification,
            determination=determination,
            comments=comments,
            tags=tags,
            alerts=alerts,
            last_update_time=at,
        )

    def touch(self, incident: Incident, at: datetime) -> Incident:
        """One random update that moves lastUpdateTime (simulated SOC activity)."""
        rng = self.rng
        if incident.status == "Resolved":
            # Re-opened: a new alert joined the incident.
            scenario = rng.choice(_SCENARIOS)
            alert = self.make_alert(incident.incident_id, scenario, at, at)
            return self._summarise(
                replace(
                    incident, status="Active", alerts=(*incident.alerts, alert), last_update_time=at
                )
            )
        if incident.status == "InProgress" and rng.random() < 0.6:
            return self.triage(incident, at, resolve=True)
        choice = rng.random()
        if choice < 0.5:
            return self.triage(incident, at, resolve=False)
        if choice < 0.75:
            who = incident.assigned_to or rng.choice(self.analysts)
            return replace(
                incident,
                comments=(*incident.comments, Comment(rng.choice(_COMMENTS), who, at)),
                last_update_time=at,
            )
        tags = tuple(sorted(set(incident.tags) | {rng.choice(_TAGS)}))
        return replace(incident, tags=tags, last_update_time=at)


def merge(source: Incident, target: Incident, at: datetime) -> tuple[Incident, Incident]:
    """Merge `source` into `target`: source becomes Redirected, its alerts move to target."""
    moved = tuple(replace(a, incident_id=target.incident_id) for a in source.alerts)
    new_source = replace(
        source,
        status="Redirected",
        redirect_incident_id=target.incident_id,
        alerts=(),
        last_update_time=at,
    )
    new_target = replace(target, alerts=(*target.alerts, *moved), last_update_time=at)
    return new_source, new_target


# Above this many incidents a tenant is seeded in bulk: copies of generated templates.
BULK_THRESHOLD = 2_000
_TEMPLATES = 500
_ALERT_FIELDS = tuple(f.name for f in dataclasses.fields(Alert))
_INCIDENT_FIELDS = tuple(f.name for f in dataclasses.fields(Incident))
_A = {name: index for index, name in enumerate(_ALERT_FIELDS)}
_I = {name: index for index, name in enumerate(_INCIDENT_FIELDS)}
_TICKS_AT_EPOCH = 621_355_968_000_000_000  # .NET ticks of 1970-01-01 (MDE alert ids)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def seed_incidents(generator: TenantGenerator, count: int, now: datetime) -> list[Incident]:
    """`count` incidents created over the 7 days before `now`, some triaged, some merged.

    Up to `BULK_THRESHOLD` each incident is generated on its own; above, in bulk (see
    `_seed_bulk`), so 100,000 incidents seed in seconds with memory linear in the count.
    """
    if count > BULK_THRESHOLD:
        return _seed_bulk(generator, count, now)
    rng = generator.rng
    window = timedelta(days=7).total_seconds()
    created_times = sorted(
        now - timedelta(seconds=rng.uniform(300, window), microseconds=rng.randint(0, 999_999))
        for _ in range(count)
    )
    incidents: list[Incident] = []
    for created in created_times:
        room = (now - timedelta(minutes=1) - created).total_seconds()
        updated = created + timedelta(seconds=rng.uniform(0, min(room, 6 * 3600)))
        incident = generator.new_incident(created, updated)
        roll = rng.random()
        if roll < 0.45:
            later = updated + timedelta(seconds=rng.uniform(0, max(room - 6 * 3600, 0) / 2))
            incident = generator.triage(incident, later, resolve=roll < 0.3)
        incidents.append(incident)
    # About 3% are merged into a later incident (status Redirected + redirectIncidentId).
    by_index = list(range(len(incidents)))
    merges = max(1, count * 3 // 100) if count >= 10 else 0
    for _ in range(merges):
        i, j = sorted(rng.sample(by_index, 2))
        source, target = incidents[i], incidents[j]
        if source.status == "Redirected" or target.status == "Redirected":
            continue
        at = max(source.last_update_time, target.last_update_time) + timedelta(
            seconds=rng.uniform(1, 600)
        )
        at = min(at, now - timedelta(seconds=1))
        incidents[i], incidents[j] = merge(source, target, at)
    # Newer Graph members and fields (awaitingAction, Sentinel/Defender for Cloud alerts,
    # resolving comments): hash-chosen, so the RNG stream above is untouched.
    return seed_extras(incidents)


def _seed_bulk(generator: TenantGenerator, count: int, now: datetime) -> list[Incident]:
    """`count` incidents as copies of `_TEMPLATES` generated ones, each moved to its own
    creation time (alert, comment and activity times shifted with it), with its own incident
    and alert ids; about 3% merged, as in the one-by-one seeding. The copies share their
    template's entities, devices and texts (immutable), which keeps memory per incident small.
    Construction is positional: `dataclasses.replace` would cost several times as much.
    """
    rng = generator.rng
    templates = [t for t in seed_incidents(generator, _TEMPLATES, now) if t.status != "Redirected"]
    shapes = [
        (
            t,
            [getattr(t, n) for n in _INCIDENT_FIELDS],
            [[getattr(a, n) for n in _ALERT_FIELDS] for a in t.alerts],
        )
        for t in templates
    ]
    window = timedelta(days=7).total_seconds() - 300
    random_ = rng.random
    offsets = sorted(300 + random_() * window for _ in range(count))
    limit = now - timedelta(seconds=1)
    a_created, a_updated, a_first = (
        _A["creation_time"],
        _A["last_updated_time"],
        _A["first_activity"],
    )
    a_last, a_resolved = _A["last_activity"], _A["resolved_time"]
    a_id, a_provider, a_incident = _A["alert_id"], _A["provider_alert_id"], _A["incident_id"]
    i_id, i_created, i_update = _I["incident_id"], _I["created_time"], _I["last_update_time"]
    i_alerts, i_comments = _I["alerts"], _I["comments"]
    micro = timedelta(microseconds=1)
    incidents: list[Incident] = []
    next_id = generator.next_incident_id
    for offset in reversed(offsets):  # oldest first, as the ids grow
        template, fields, alerts = shapes[int(random_() * len(shapes))]
        created = now - timedelta(seconds=offset)
        delta = created - template.created_time
        updated = template.last_update_time + delta
        if updated > limit:
            # not clamped to one instant (thousands of incidents would then share the
            # last-update time `limit`, a tie no real tenant shows): spread before now
            updated = created + (limit - created) * random_()
        copies = []
        for values in alerts:
            copy: list[Any] = list(values)
            alert_created: datetime = copy[a_created] + delta
            copy[a_created] = alert_created
            copy[a_first] += delta
            copy[a_last] += delta
            copy[a_updated] = min(copy[a_updated] + delta, updated)
            if copy[a_resolved] is not None:
                copy[a_resolved] = min(copy[a_resolved] + delta, updated)
            copy[a_incident] = next_id
            source = copy[a_id][:2]
            if source == "da":
                ticks = (alert_created - _EPOCH) // micro * 10 + _TICKS_AT_EPOCH
                provider = f"{ticks}_{100_000_000 + int(random_() * 9e8)}"
            else:
                h = f"{rng.getrandbits(128):032X}"
                provider = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"
            copy[a_id], copy[a_provider] = f"{source}{provider}", provider
            copies.append(Alert(*copy))
        values = list(fields)
        values[i_id], values[i_created], values[i_update] = next_id, created, updated
        values[i_alerts] = tuple(copies)
        if template.comments:
            values[i_comments] = tuple(
                Comment(c.comment, c.created_by, min(c.created_time + delta, updated))
                for c in template.comments
            )
        incidents.append(Incident(*values))
        next_id += 1 + int(random_() * 4)
    generator.next_incident_id = next_id
    for _ in range(count * 3 // 100):
        i, j = sorted(rng.sample(range(count), 2))
        source, target = incidents[i], incidents[j]
        if source.status == "Redirected" or target.status == "Redirected":
            continue
        latest = max(source.last_update_time, target.last_update_time)
        at: datetime = latest + timedelta(seconds=rng.uniform(1, 600))
        if at > limit:  # spread before now, as above
            at = latest + (limit - latest) * random_()
        incidents[i], incidents[j] = merge(source, target, at)
    return incidents


def sorted_newest_first(incidents: Sequence[Incident]) -> list[Incident]:
    """Newest first: lastUpdateTime desc, then incidentId desc ("The most recent incidents are
    displayed at the top of the list": https://learn.microsoft.com/defender-xdr/api-list-incidents)."""
    return sorted(incidents, key=lambda i: (i.last_update_time, i.incident_id), reverse=True)


@dataclass(frozen=True, slots=True)
class ActivityResult:
    """Ids touched by one batch of simulated activity."""

    created: tuple[int, ...]
    updated: tuple[int, ...]
    merged: tuple[tuple[int, int], ...]


def simulate_activity(
    generator: TenantGenerator,
    incidents: dict[int, Incident],
    now: datetime,
    *,
    create: int,
    update: int,
    merge_count: int,
    open_ids: Sequence[int] | None = None,
) -> ActivityResult:
    """Apply SOC activity to `incidents` in place: new incidents, updates, merges.

    Every touched incident gets a lastUpdateTime strictly later than before (at least `now`),
    so an incremental reader filtering on lastUpdateTime always sees the change. `open_ids`,
    when given, is kept up to date by `incidents` itself: the sorted ids of the incidents not
    Redirected (so a batch costs O(batch), not a scan of every incident).
    """

    def open_now() -> Sequence[int]:
        if open_ids is not None:
            return open_ids
        return sorted(i for i, inc in incidents.items() if inc.status != "Redirected")

    rng = generator.rng

    def stamp(previous: datetime) -> datetime:
        return now if now > previous else previous + timedelta(milliseconds=1)

    created: list[int] = []
    for _ in range(create):
        incident = generator.new_incident(now, now)
        incidents[incident.incident_id] = incident
        created.append(incident.incident_id)
    population = open_now()
    updated: list[int] = []
    for incident_id in rng.sample(population, min(update, len(population))):
        incident = incidents[incident_id]
        incidents[incident_id] = generator.touch(incident, stamp(incident.last_update_time))
        updated.append(incident_id)
    merged: list[tuple[int, int]] = []
    for _ in range(merge_count):
        candidates = open_now()
        if len(candidates) < 2:
            break
        source_id, target_id = rng.sample(candidates, 2)
        source, target = incidents[source_id], incidents[target_id]
        at = stamp(max(source.last_update_time, target.last_update_time))
        incidents[source_id], incidents[target_id] = merge(source, target, at)
        merged.append((source_id, target_id))
    return ActivityResult(tuple(created), tuple(updated), tuple(merged))
