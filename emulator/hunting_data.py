"""Seeded advanced hunting tables for one emulated tenant.

`TABLE_SCHEMAS` holds the documented columns and KQL types of the six tables the emulator
serves (Microsoft Defender XDR advanced hunting schema reference, MicrosoftDocs/defender-docs
``defender-xdr/advanced-hunting-*-table.md``). Where the docs type a column as ``string`` although
it holds JSON (``AdditionalFields``, ``Categories``, ``AttackTechniques``), it stays a string,
as the service returns it.

`build_tables` fills them:

- ``AlertInfo``: one row per given alert; ``AlertEvidence``: one row per device and per entity of
  each alert. Both come from the alerts alone (no randomness), so they always agree with the
  incidents the emulator serves.
- ``DeviceProcessEvents``, ``DeviceNetworkEvents``, ``EmailEvents``, ``IdentityLogonEvents``:
  generated from ``random.Random(seed)`` (same seed, same rows), about 2,500 rows in all, with
  Timestamps in the 30 days before ``now``. Some rows are tied to the alerts (their devices,
  users, IPs, URLs, files, processes and mails, a few minutes before the alert) so that
  realistic hunting queries find something.

Rows are plain dicts with every column of the table: strings default to ``""`` (KQL strings are
never null), other types to ``None``; datetimes are timezone-aware UTC.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["TABLE_SCHEMAS", "build_tables", "empty_row"]

_S, _DT, _L, _I, _B, _DYN = "string", "datetime", "long", "int", "bool", "dynamic"

_ALERT_INFO = (
    ("Timestamp", _DT), ("AlertId", _S), ("Title", _S), ("Category", _S), ("Severity", _S),
    ("ServiceSource", _S), ("DetectionSource", _S), ("AttackTechniques", _S),
)  # fmt: skip

_ALERT_EVIDENCE = (
    ("Timestamp", _DT), ("AlertId", _S), ("Title", _S), ("Categories", _S),
    ("AttackTechniques", _S), ("ServiceSource", _S), ("DetectionSource", _S), ("EntityType", _S),
    ("EvidenceRole", _S), ("EvidenceDirection", _S), ("FileName", _S), ("FolderPath", _S),
    ("SHA1", _S), ("SHA256", _S), ("FileSize", _L), ("ThreatFamily", _S), ("RemoteIP", _S),
    ("RemoteUrl", _S), ("AccountName", _S), ("AccountDomain", _S), ("AccountSid", _S),
    ("AccountObjectId", _S), ("AccountUpn", _S), ("DeviceId", _S), ("DeviceName", _S),
    ("LocalIP", _S), ("NetworkMessageId", _S), ("EmailSubject", _S), ("Application", _S),
    ("ApplicationId", _I), ("OAuthApplicationId", _S), ("ProcessCommandLine", _S),
    ("RegistryKey", _S), ("RegistryValueName", _S), ("RegistryValueData", _S),
    ("AdditionalFields", _S), ("Severity", _S), ("CloudResource", _S), ("CloudPlatform", _S),
    ("ResourceType", _S), ("ResourceID", _S), ("SubscriptionId", _S),
)  # fmt: skip

_INITIATING_PROCESS = (
    ("InitiatingProcessSHA1", _S), ("InitiatingProcessSHA256", _S), ("InitiatingProcessMD5", _S),
    ("InitiatingProcessFileName", _S), ("InitiatingProcessFileSize", _L),
    ("InitiatingProcessVersionInfoCompanyName", _S),
    ("InitiatingProcessVersionInfoProductName", _S),
    ("InitiatingProcessVersionInfoProductVersion", _S),
    ("InitiatingProcessVersionInfoInternalFileName", _S),
    ("InitiatingProcessVersionInfoOriginalFileName", _S),
    ("InitiatingProcessVersionInfoFileDescription", _S),
    ("InitiatingProcessId", _L), ("InitiatingProcessCommandLine", _S),
    ("InitiatingProcessCreationTime", _DT), ("InitiatingProcessFolderPath", _S),
)  # fmt: skip

_DEVICE_PROCESS_EVENTS = (
    ("Timestamp", _DT), ("DeviceId", _S), ("DeviceName", _S), ("ActionType", _S),
    ("FileName", _S), ("FolderPath", _S), ("SHA1", _S), ("SHA256", _S), ("MD5", _S),
    ("FileSize", _L), ("ProcessVersionInfoCompanyName", _S),
    ("ProcessVersionInfoProductName", _S), ("ProcessVersionInfoProductVersion", _S),
    ("ProcessVersionInfoInternalFileName", _S), ("ProcessVersionInfoOriginalFileName", _S),
    ("ProcessVersionInfoFileDescription", _S), ("ProcessId", _L), ("ProcessCommandLine", _S),
    ("ProcessIntegrityLevel", _S), ("ProcessTokenElevation", _S), ("ProcessCreationTime", _DT),
    ("AccountDomain", _S), ("AccountName", _S), ("AccountSid", _S), ("AccountUpn", _S),
    ("AccountObjectId", _S), ("LogonId", _L), ("InitiatingProcessAccountDomain", _S),
    ("InitiatingProcessAccountName", _S), ("InitiatingProcessAccountSid", _S),
    ("InitiatingProcessAccountUpn", _S), ("InitiatingProcessAccountObjectId", _S),
    ("InitiatingProcessLogonId", _L), ("InitiatingProcessIntegrityLevel", _S),
    ("InitiatingProcessTokenElevation", _S),
    *_INITIATING_PROCESS,
    ("InitiatingProcessParentId", _L), ("InitiatingProcessParentFileName", _S),
    ("InitiatingProcessParentCreationTime", _DT), ("InitiatingProcessSignerType", _S),
    ("InitiatingProcessSignatureStatus", _S), ("ReportId", _L), ("AppGuardContainerId", _S),
    ("AdditionalFields", _S),
)  # fmt: skip

_DEVICE_NETWORK_EVENTS = (
    ("Timestamp", _DT), ("DeviceId", _S), ("DeviceName", _S), ("ActionType", _S),
    ("RemoteIP", _S), ("RemotePort", _I), ("RemoteUrl", _S), ("LocalIP", _S), ("LocalPort", _I),
    ("Protocol", _S), ("LocalIPType", _S), ("RemoteIPType", _S),
    *_INITIATING_PROCESS,
    ("InitiatingProcessParentFileName", _S), ("InitiatingProcessParentId", _L),
    ("InitiatingProcessParentCreationTime", _DT), ("InitiatingProcessAccountDomain", _S),
    ("InitiatingProcessAccountName", _S), ("InitiatingProcessAccountSid", _S),
    ("InitiatingProcessAccountUpn", _S), ("InitiatingProcessAccountObjectId", _S),
    ("InitiatingProcessIntegrityLevel", _S), ("InitiatingProcessTokenElevation", _S),
    ("ReportId", _L), ("AppGuardContainerId", _S), ("AdditionalFields", _S),
    ("InitiatingProcessSessionId", _L), ("IsInitiatingProcessRemoteSession", _B),
    ("InitiatingProcessRemoteSessionDeviceName", _S), ("InitiatingProcessRemoteSessionIP", _S),
)  # fmt: skip

_EMAIL_EVENTS = (
    ("Timestamp", _DT), ("NetworkMessageId", _S), ("InternetMessageId", _S),
    ("SenderMailFromAddress", _S), ("SenderFromAddress", _S), ("SenderDisplayName", _S),
    ("SenderObjectId", _S), ("SenderMailFromDomain", _S), ("SenderFromDomain", _S),
    ("SenderIPv4", _S), ("SenderIPv6", _S), ("RecipientEmailAddress", _S),
    ("RecipientObjectId", _S), ("Subject", _S), ("EmailClusterId", _L), ("EmailDirection", _S),
    ("DeliveryAction", _S), ("DeliveryLocation", _S), ("ThreatTypes", _S), ("ThreatNames", _S),
    ("DetectionMethods", _S), ("ConfidenceLevel", _S), ("BulkComplaintLevel", _I),
    ("EmailAction", _S), ("EmailActionPolicy", _S), ("EmailActionPolicyGuid", _S),
    ("AuthenticationDetails", _S), ("AttachmentCount", _I), ("UrlCount", _I),
    ("EmailLanguage", _S), ("Connectors", _S), ("OrgLevelAction", _S), ("OrgLevelPolicy", _S),
    ("UserLevelAction", _S), ("UserLevelPolicy", _S), ("ReportId", _S),
    ("AdditionalFields", _S), ("LatestDeliveryLocation", _S), ("LatestDeliveryAction", _S),
)  # fmt: skip

_IDENTITY_LOGON_EVENTS = (
    ("Timestamp", _DT), ("ActionType", _S), ("Application", _S), ("LogonType", _S),
    ("Protocol", _S), ("FailureReason", _S), ("AccountName", _S), ("AccountDomain", _S),
    ("AccountUpn", _S), ("AccountSid", _S), ("AccountObjectId", _S), ("AccountDisplayName", _S),
    ("DeviceName", _S), ("DeviceType", _S), ("OSPlatform", _S), ("IPAddress", _S), ("Port", _I),
    ("DestinationDeviceName", _S), ("DestinationIPAddress", _S), ("DestinationPort", _I),
    ("TargetDeviceName", _S), ("TargetAccountDisplayName", _S), ("Location", _S), ("Isp", _S),
    ("ReportId", _S), ("AdditionalFields", _DYN),
)  # fmt: skip

TABLE_SCHEMAS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "AlertInfo": _ALERT_INFO,
    "AlertEvidence": _ALERT_EVIDENCE,
    "DeviceProcessEvents": _DEVICE_PROCESS_EVENTS,
    "DeviceNetworkEvents": _DEVICE_NETWORK_EVENTS,
    "EmailEvents": _EMAIL_EVENTS,
    "IdentityLogonEvents": _IDENTITY_LOGON_EVENTS,
}

# Advanced hunting serves the last 30 days
# (https://learn.microsoft.com/defender-xdr/api-advanced-hunting).
RETENTION = timedelta(days=30)

# Legacy alert enum values -> the display names advanced hunting shows. Unknown values pass
# through unchanged. Keys are lower-case.
_SERVICE_SOURCES = {
    "microsoftdefenderatp": "Microsoft Defender for Endpoint",
    "microsoftdefenderforendpoint": "Microsoft Defender for Endpoint",
    "officeatp": "Microsoft Defender for Office 365",
    "microsoftdefenderforoffice365": "Microsoft Defender for Office 365",
    "microsoftcloudappsecurity": "Microsoft Defender for Cloud Apps",
    "microsoftdefenderforcloudapps": "Microsoft Defender for Cloud Apps",
    "azureadvancedthreatprotection": "Microsoft Defender for Identity",
    "azureatp": "Microsoft Defender for Identity",
    "microsoftdefenderforidentity": "Microsoft Defender for Identity",
    "microsoft365defender": "Microsoft Defender XDR",
    "mtp": "Microsoft Defender XDR",
    "azureadidentityprotection": "Microsoft Entra ID Protection",
    "datalossprevention": "Microsoft Data Loss Prevention",
    "microsoftdefenderforcloud": "Microsoft Defender for Cloud",
    "microsoftappgovernance": "App Governance",
    "microsoftsentinel": "Microsoft Sentinel",
}
_DETECTION_SOURCES = {
    "windowsdefenderatp": "EDR",
    "edr": "EDR",
    "windowsdefenderav": "Antivirus",
    "antivirus": "Antivirus",
    "windowsdefendersmartscreen": "SmartScreen",
    "smartscreen": "SmartScreen",
    "customti": "Custom TI",
    "customdetection": "Custom detection",
    "mcas": "Microsoft Defender for Cloud Apps",
    "cloudappsecurity": "Microsoft Defender for Cloud Apps",
    "officeatp": "Microsoft Defender for Office 365",
    "microsoftdefenderforoffice365": "Microsoft Defender for Office 365",
    "azureatp": "Microsoft Defender for Identity",
    "microsoftdefenderforidentity": "Microsoft Defender for Identity",
    "automatedinvestigation": "Automated investigation",
    "mtp": "Microsoft Defender XDR",
    "microsoft365defender": "Microsoft Defender XDR",
    "manual": "Manual",
    "scheduledalerts": "Scheduled Alerts",
    "microsoftdefenderforservers": "Microsoft Defender for Servers",
}
# Names for common MITRE technique ids: AttackTechniques shows "Name (Txxxx)".
_TECHNIQUE_NAMES = {
    "T1003": "OS Credential Dumping",
    "T1003.001": "LSASS Memory",
    "T1021.001": "Remote Desktop Protocol",
    "T1027": "Obfuscated Files or Information",
    "T1036": "Masquerading",
    "T1047": "Windows Management Instrumentation",
    "T1055": "Process Injection",
    "T1059": "Command and Scripting Interpreter",
    "T1059.001": "PowerShell",
    "T1059.003": "Windows Command Shell",
    "T1078": "Valid Accounts",
    "T1105": "Ingress Tool Transfer",
    "T1110": "Brute Force",
    "T1204.002": "Malicious File",
    "T1486": "Data Encrypted for Impact",
    "T1547.001": "Registry Run Keys / Startup Folder",
    "T1564.001": "Hidden Files and Directories",
    "T1566.001": "Spearphishing Attachment",
    "T1566.002": "Spearphishing Link",
}
# Legacy entityType -> advanced hunting EntityType.
_ENTITY_TYPES = {
    "user": "User",
    "ip": "Ip",
    "url": "Url",
    "file": "File",
    "process": "Process",
    "mailbox": "Mailbox",
    "mailmessage": "MailMessage",
    "mailcluster": "MailCluster",
    "registry": "RegistryValue",
    "securitygroup": "SecurityGroup",
}

_FIRST_NAMES = (
    "Adele", "Alex", "Diego", "Grady", "Henrietta", "Isaiah", "Johanna", "Joni", "Lee",
    "Lidia", "Lynne", "Megan", "Miriam", "Nestor", "Patti", "Pradeep",
)  # fmt: skip
_LAST_NAMES = (
    "Vance", "Wilber", "Siciliani", "Archie", "Mueller", "Langer", "Lauer", "Sherman", "Gu",
    "Holloway", "Robbins", "Bowen", "Graham", "Wilke", "Fernandez", "Gupta",
)  # fmt: skip
_DOMAINS = (
    "contoso.com",
    "fabrikam.com",
    "adatum.com",
    "northwindtraders.com",
    "woodgrovebank.com",
)

# (file name, folder, company, product, description, version, command line)
_Program = tuple[str, str, str, str, str, str, str]
_SYS32 = r"C:\Windows\System32"
_PROGRAMS: tuple[_Program, ...] = (
    ("chrome.exe", r"C:\Program Files\Google\Chrome\Application", "Google LLC", "Google Chrome",
     "Google Chrome", "124.0.6367.91",
     '"chrome.exe" --type=renderer --lang=en-US --renderer-client-id=7'),
    ("msedge.exe", r"C:\Program Files (x86)\Microsoft\Edge\Application", "Microsoft Corporation",
     "Microsoft Edge", "Microsoft Edge", "124.0.2478.67",
     '"msedge.exe" --type=utility --utility-sub-type=network.mojom.NetworkService'),
    ("OUTLOOK.EXE", r"C:\Program Files\Microsoft Office\root\Office16", "Microsoft Corporation",
     "Microsoft Office", "Microsoft Outlook", "16.0.17425.20176", '"OUTLOOK.EXE" '),
    ("WINWORD.EXE", r"C:\Program Files\Microsoft Office\root\Office16", "Microsoft Corporation",
     "Microsoft Office", "Microsoft Word", "16.0.17425.20176", '"WINWORD.EXE" /n'),
    ("EXCEL.EXE", r"C:\Program Files\Microsoft Office\root\Office16", "Microsoft Corporation",
     "Microsoft Office", "Microsoft Excel", "16.0.17425.20176", '"EXCEL.EXE" /dde'),
    ("ms-teams.exe", r"C:\Program Files\WindowsApps\MSTeams_24091.214.2846.1452_x64",
     "Microsoft Corporation", "Microsoft Teams", "Microsoft Teams", "24091.214.2846.1452",
     '"ms-teams.exe" msteams:system-initiated'),
    ("svchost.exe", _SYS32, "Microsoft Corporation", "Microsoft® Windows® Operating System",
     "Host Process for Windows Services", "10.0.22621.1",
     r"C:\Windows\system32\svchost.exe -k netsvcs -p -s Schedule"),
    ("powershell.exe", _SYS32 + r"\WindowsPowerShell\v1.0", "Microsoft Corporation",
     "Microsoft® Windows® Operating System", "Windows PowerShell", "10.0.22621.2506",
     "powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\\Scripts\\inventory.ps1"),
    ("cmd.exe", _SYS32, "Microsoft Corporation", "Microsoft® Windows® Operating System",
     "Windows Command Processor", "10.0.22621.2506", 'cmd.exe /c "ipconfig /all"'),
    ("conhost.exe", _SYS32, "Microsoft Corporation", "Microsoft® Windows® Operating System",
     "Console Window Host", "10.0.22621.2506",
     r"\??\C:\Windows\system32\conhost.exe 0xffffffff -ForceV1"),
    ("notepad.exe", _SYS32, "Microsoft Corporation", "Microsoft® Windows® Operating System",
     "Notepad", "10.0.22621.2506", '"notepad.exe" C:\\Users\\Public\\notes.txt'),
    ("taskhostw.exe", _SYS32, "Microsoft Corporation", "Microsoft® Windows® Operating System",
     "Host Process for Windows Tasks", "10.0.22621.2506", "taskhostw.exe Install $(Arg0)"),
    ("msiexec.exe", _SYS32, "Microsoft Corporation", "Windows Installer",
     "Windows® installer", "5.0.22621.2506", r"C:\Windows\system32\msiexec.exe /V"),
    ("git.exe", r"C:\Program Files\Git\cmd", "The Git Development Community", "Git",
     "Git for Windows", "2.45.1.1", "git.exe fetch --prune origin"),
    ("OneDrive.exe", r"C:\Program Files\Microsoft OneDrive", "Microsoft Corporation",
     "Microsoft OneDrive", "Microsoft OneDrive", "24.086.0428.0003", '"OneDrive.exe" /background'),
    ("MsMpEng.exe", r"C:\ProgramData\Microsoft\Windows Defender\Platform\4.18.24040.4-0",
     "Microsoft Corporation", "Microsoft® Windows® Operating System",
     "Antimalware Service Executable", "4.18.24040.4", '"MsMpEng.exe"'),
)  # fmt: skip
_PARENTS: tuple[_Program, ...] = (
    ("explorer.exe", r"C:\Windows", "Microsoft Corporation", "Microsoft® Windows® Operating System",
     "Windows Explorer", "10.0.22621.3527", r"C:\Windows\Explorer.EXE"),
    ("services.exe", _SYS32, "Microsoft Corporation", "Microsoft® Windows® Operating System",
     "Services and Controller app", "10.0.22621.3527", r"C:\Windows\system32\services.exe"),
    ("svchost.exe", _SYS32, "Microsoft Corporation", "Microsoft® Windows® Operating System",
     "Host Process for Windows Services", "10.0.22621.1",
     r"C:\Windows\system32\svchost.exe -k DcomLaunch -p"),
    ("userinit.exe", _SYS32, "Microsoft Corporation", "Microsoft® Windows® Operating System",
     "Userinit Logon Application", "10.0.22621.1", r"C:\Windows\system32\userinit.exe"),
)  # fmt: skip
_GRANDPARENTS = ("winlogon.exe", "wininit.exe", "services.exe", "explorer.exe")

# (remote URL, remote port, initiating program index into _PROGRAMS)
_DESTINATIONS = (
    ("login.microsoftonline.com", 443, 1), ("outlook.office365.com", 443, 2),
    ("teams.microsoft.com", 443, 5), ("www.bing.com", 443, 1), ("github.com", 443, 13),
    ("www.google.com", 443, 0), ("update.googleapis.com", 443, 0),
    ("settings-win.data.microsoft.com", 443, 6), ("onedriveclient.live.net", 443, 14),
    ("wdcp.microsoft.com", 443, 15), ("ctldl.windowsupdate.com", 80, 6),
    ("pypi.org", 443, 7),
)  # fmt: skip
_SUBJECTS = (
    "Quarterly business review - slides", "Team lunch on Friday", "Invoice {n} attached",
    "Re: Project Falcon status", "Your weekly digest", "Updated travel policy",
    "Action required: password expires today", "Shared document: Budget {n}.xlsx",
    "Meeting notes - security sync", "Your package could not be delivered",
)  # fmt: skip
_EXTERNAL_SENDERS = (
    ("newsletter@industrynews.example", "Industry News"),
    ("billing@vendor-invoices.example", "Vendor Billing"),
    ("no-reply@parcel-tracking.example", "Parcel Service"),
    ("partner@tailspintoys.example", "Tailspin Toys"),
    ("support@it-helpdesk-reset.example", "IT Helpdesk"),
)


@dataclass
class _User:
    name: str  # sAMAccountName style, as AccountName shows it
    domain: str  # NetBIOS-style domain, as AccountDomain shows it
    sid: str
    object_id: str
    upn: str
    display_name: str


@dataclass
class _Device:
    device_id: str
    name: str
    os_platform: str
    local_ip: str
    user: _User | None = None
    from_alert: bool = False


@dataclass
class _World:
    """The tenant's people, machines and counters shared by the generated tables."""

    rng: random.Random
    seed: int
    namespace: uuid.UUID
    now: datetime
    domain: str
    netbios: str
    users: list[_User]
    devices: list[_Device]
    dc: _Device
    report_id: int = 1000
    ips: dict[str, str] = field(default_factory=dict)

    def next_report_id(self) -> int:
        self.report_id += self.rng.randint(1, 40)
        return self.report_id

    def when(self) -> datetime:
        """A random moment in the retention window."""
        return self.now - timedelta(seconds=self.rng.uniform(0, RETENTION.total_seconds()))

    def clip(self, moment: datetime) -> datetime:
        """Keep a derived timestamp inside the retention window."""
        return min(max(moment, self.now - RETENTION + timedelta(minutes=1)), self.now)

    def public_ip(self, key: str) -> str:
        if key not in self.ips:
            first = self.rng.choice((13, 20, 40, 52, 104, 140, 151, 185))
            self.ips[key] = ".".join(str(p) for p in (first, *self.rng.sample(range(1, 255), 3)))
        return self.ips[key]

    def guid(self, key: str) -> str:
        return str(uuid.uuid5(self.namespace, key))


def empty_row(table: str) -> dict[str, Any]:
    """A row of `table` with every column: "" for strings, None for the other types."""
    return {name: "" if typ == _S else None for name, typ in TABLE_SCHEMAS[table]}


def build_tables(
    tenant_id: str, alerts: Sequence[Mapping[str, Any]], now: datetime, seed: int
) -> dict[str, list[dict[str, Any]]]:
    """The six hunting tables for a tenant: alert tables from `alerts`, the rest from `seed`."""
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"urn:defender-bridge:emulator:tenant:{tenant_id}")
    tables: dict[str, list[dict[str, Any]]] = {
        "AlertInfo": [_alert_info(alert, now) for alert in alerts],
        "AlertEvidence": [
            row for alert in alerts for row in _alert_evidence(alert, now, namespace)
        ],
    }
    world = _build_world(random.Random(seed), seed, namespace, now, alerts)
    process: list[dict[str, Any]] = []
    network: list[dict[str, Any]] = []
    email: list[dict[str, Any]] = []
    logons: list[dict[str, Any]] = []
    for _ in range(900):
        process.append(_process_event(world, world.rng.choice(world.devices), world.when()))
    for _ in range(800):
        network.append(_network_event(world, world.rng.choice(world.devices), world.when()))
    for _ in range(300):
        email.append(_email_event(world, world.when()))
    for _ in range(400):
        logons.append(_logon_event(world, world.rng.choice(world.users), world.when()))
    for alert in alerts:
        _linked_rows(world, alert, process, network, email, logons)
    tables["DeviceProcessEvents"] = _by_time(process)
    tables["DeviceNetworkEvents"] = _by_time(network)
    tables["EmailEvents"] = _by_time(email)
    tables["IdentityLogonEvents"] = _by_time(logons)
    return tables


def _by_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: row["Timestamp"])


# --------------------------------------------------------------------------------------------
# Alert tables (derived from the alerts only)


def _parse_time(value: Any, default: datetime) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return default
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return default


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _alert_time(alert: Mapping[str, Any], now: datetime) -> datetime:
    return _parse_time(alert.get("creationTime"), now)


def _service_source(alert: Mapping[str, Any]) -> str:
    raw = _text(alert.get("serviceSource"))
    return _SERVICE_SOURCES.get(raw.lower(), raw)


def _detection_source(alert: Mapping[str, Any]) -> str:
    raw = _text(alert.get("detectionSource"))
    return _DETECTION_SOURCES.get(raw.lower(), raw)


def _attack_techniques(alert: Mapping[str, Any]) -> str:
    techniques = alert.get("mitreTechniques") or []
    named = [
        f"{_TECHNIQUE_NAMES[t]} ({t})" if t in _TECHNIQUE_NAMES else str(t) for t in techniques
    ]
    return json.dumps(named) if named else ""


def _alert_info(alert: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    row = empty_row("AlertInfo")
    row.update(
        Timestamp=_alert_time(alert, now),
        AlertId=_text(alert.get("alertId")),
        Title=_text(alert.get("title")),
        Category=_text(alert.get("category")),
        Severity=_text(alert.get("severity")),
        ServiceSource=_service_source(alert),
        DetectionSource=_detection_source(alert),
        AttackTechniques=_attack_techniques(alert),
    )
    return row


def mail_network_message_id(namespace: uuid.UUID, alert_id: str, index: int) -> str:
    """The NetworkMessageId given to an alert's MailMessage entity (shared with EmailEvents)."""
    return str(uuid.uuid5(namespace, f"mail:{alert_id}:{index}"))


def _alert_devices(alert: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    devices = alert.get("devices") or []
    return [d for d in devices if isinstance(d, Mapping) and d.get("mdatpDeviceId")]


def _entities(alert: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    entities = alert.get("entities") or []
    return [e for e in entities if isinstance(e, Mapping)]


def _alert_evidence(
    alert: Mapping[str, Any], now: datetime, namespace: uuid.UUID
) -> list[dict[str, Any]]:
    alert_id = _text(alert.get("alertId"))
    category = _text(alert.get("category"))
    common = {
        "Timestamp": _alert_time(alert, now),
        "AlertId": alert_id,
        "Title": _text(alert.get("title")),
        "Categories": json.dumps([category]) if category else "",
        "AttackTechniques": _attack_techniques(alert),
        "ServiceSource": _service_source(alert),
        "DetectionSource": _detection_source(alert),
        "Severity": _text(alert.get("severity")),
    }
    devices = _alert_devices(alert)
    names = {_text(d["mdatpDeviceId"]): _text(d.get("deviceDnsName")) for d in devices}
    rows: list[dict[str, Any]] = []
    for device in devices:
        row = empty_row("AlertEvidence") | common
        row.update(
            EntityType="Machine",
            EvidenceRole="Impacted",
            DeviceId=_text(device["mdatpDeviceId"]),
            DeviceName=_text(device.get("deviceDnsName")),
            AdditionalFields=json.dumps(
                {
                    "OSPlatform": _text(device.get("osPlatform")),
                    "OSBuild": device.get("osBuild"),
                    "RiskScore": _text(device.get("riskScore")),
                    "HealthStatus": _text(device.get("healthStatus")),
                }
            ),
        )
        rows.append(row)
    for index, entity in enumerate(_entities(alert)):
        raw_type = _text(entity.get("entityType"))
        row = empty_row("AlertEvidence") | common
        row["EntityType"] = _ENTITY_TYPES.get(raw_type.lower(), raw_type)
        row["EvidenceRole"] = "Related"
        device_id = _text(entity.get("deviceId"))
        if device_id:
            row["DeviceId"] = device_id
            row["DeviceName"] = names.get(device_id, "")
        kind = raw_type.lower()
        if kind == "user":
            row.update(
                EvidenceRole="Impacted",
                AccountName=_text(entity.get("accountName")),
                AccountDomain=_text(entity.get("domainName")),
                AccountSid=_text(entity.get("userSid")),
                AccountObjectId=_text(entity.get("aadUserId")),
                AccountUpn=_text(entity.get("userPrincipalName")),
            )
        elif kind == "ip":
            row.update(RemoteIP=_text(entity.get("ipAddress")), EvidenceDirection="Destination")
        elif kind == "url":
            row["RemoteUrl"] = _text(entity.get("url"))
        elif kind == "file":
            row.update(
                EvidenceRole="Impacted",
                FileName=_text(entity.get("fileName")),
                FolderPath=_text(entity.get("filePath")),
                SHA1=_text(entity.get("sha1")),
                SHA256=_text(entity.get("sha256")),
                ThreatFamily=_text(alert.get("threatFamilyName")),
            )
        elif kind == "process":
            command_line = _text(entity.get("processCommandLine"))
            row.update(
                EvidenceRole="Impacted",
                ProcessCommandLine=command_line,
                FileName=_image_name(command_line),
                AdditionalFields=json.dumps(
                    {
                        "ProcessId": entity.get("processId"),
                        "ParentProcessId": entity.get("parentProcessId"),
                        "ProcessCreationTime": entity.get("processCreationTime"),
                    }
                ),
            )
        elif kind == "mailbox":
            address = _text(entity.get("mailboxAddress"))
            row.update(
                EvidenceRole="Impacted",
                AccountUpn=address,
                AccountName=address.partition("@")[0],
                AdditionalFields=json.dumps(
                    {"DisplayName": _text(entity.get("mailboxDisplayName"))}
                ),
            )
        elif kind == "mailmessage":
            row.update(
                NetworkMessageId=mail_network_message_id(namespace, alert_id, index),
                EmailSubject=_text(entity.get("subject")),
                AdditionalFields=json.dumps(
                    {
                        "Sender": _text(entity.get("sender")),
                        "Recipient": _text(entity.get("recipient")),
                        "DeliveryAction": _text(entity.get("deliveryAction")),
                    }
                ),
            )
        elif kind == "mailcluster":
            row["AdditionalFields"] = json.dumps({"ClusterBy": _text(entity.get("clusterBy"))})
        elif kind == "registry":
            hive, key = _text(entity.get("registryHive")), _text(entity.get("registryKey"))
            row.update(
                RegistryKey=f"{hive}\\{key}" if hive and key else hive or key,
                RegistryValueData=_text(entity.get("registryValue")),
                AdditionalFields=json.dumps(
                    {"RegistryValueType": _text(entity.get("registryValueType"))}
                ),
            )
            if not row["RegistryValueData"]:
                row["EntityType"] = "RegistryKey"
        elif kind == "securitygroup":
            row["AdditionalFields"] = json.dumps(
                {
                    "SecurityGroupId": _text(entity.get("securityGroupId")),
                    "SecurityGroupName": _text(entity.get("securityGroupName")),
                }
            )
        rows.append(row)
    return rows


def _image_name(command_line: str) -> str:
    """The executable's file name from a command line: first token, quotes and folders dropped."""
    text = command_line.strip()
    if not text:
        return ""
    token = text[1:].partition('"')[0] if text.startswith('"') else text.split()[0]
    return token.replace("/", "\\").rsplit("\\", 1)[-1]


# --------------------------------------------------------------------------------------------
# The tenant's world


def _build_world(
    rng: random.Random,
    seed: int,
    namespace: uuid.UUID,
    now: datetime,
    alerts: Sequence[Mapping[str, Any]],
) -> _World:
    alert_users: dict[str, _User] = {}
    for alert in alerts:
        for entity in _entities(alert):
            if _text(entity.get("entityType")).lower() != "user":
                continue
            name = _text(entity.get("accountName"))
            upn = _text(entity.get("userPrincipalName"))
            if not name and not upn:
                continue
            key = (upn or name).lower()
            alert_users.setdefault(
                key,
                _User(
                    name=name or upn.partition("@")[0],
                    domain=_text(entity.get("domainName")),
                    sid=_text(entity.get("userSid")),
                    object_id=_text(entity.get("aadUserId")),
                    upn=upn,
                    display_name=name or upn,
                ),
            )
    upn_domains = [u.upn.partition("@")[2] for u in alert_users.values() if "@" in u.upn]
    domain = max(sorted(set(upn_domains)), key=upn_domains.count) if upn_domains else ""
    domain = domain or rng.choice(_DOMAINS)
    netbios = domain.split(".")[0].upper()
    sid_base = f"S-1-5-21-{rng.randint(10**9, 4 * 10**9)}-{rng.randint(10**9, 4 * 10**9)}-" + str(
        rng.randint(10**9, 4 * 10**9)
    )
    users: list[_User] = []
    for i, (first, last) in enumerate(zip(_FIRST_NAMES, _LAST_NAMES, strict=True)):
        users.append(
            _User(
                name=f"{first[0]}{last}".lower(),
                domain=netbios,
                sid=f"{sid_base}-{1105 + i}",
                object_id=str(uuid.uuid5(namespace, f"user:{first}.{last}")),
                upn=f"{first}.{last}@{domain}".lower(),
                display_name=f"{first} {last}",
            )
        )
    for user in alert_users.values():
        user.domain = user.domain or netbios
        users.append(user)

    def private_ip() -> str:
        return f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"

    def device_id() -> str:
        return f"{rng.getrandbits(160):040x}"

    devices: list[_Device] = []
    for i in range(14):
        kind, platform = (
            ("ws", "Windows11")
            if i < 8
            else ("lt", "Windows10")
            if i < 12
            else ("srv", "WindowsServer2022")
        )
        devices.append(
            _Device(device_id(), f"{kind}-{100 + i:03d}.{domain}", platform, private_ip(), users[i])
        )
    seen: set[str] = set()
    for alert in alerts:
        alert_user = next(
            (
                alert_users[key]
                for entity in _entities(alert)
                if _text(entity.get("entityType")).lower() == "user"
                and (
                    key := (
                        _text(entity.get("userPrincipalName")) or _text(entity.get("accountName"))
                    ).lower()
                )
                in alert_users
            ),
            None,
        )
        for device in _alert_devices(alert):
            did = _text(device["mdatpDeviceId"])
            if did in seen:
                continue
            seen.add(did)
            devices.append(
                _Device(
                    did,
                    _text(device.get("deviceDnsName")) or did[:12],
                    _text(device.get("osPlatform")) or "Windows10",
                    private_ip(),
                    alert_user or rng.choice(users),
                    from_alert=True,
                )
            )
    dc = _Device(device_id(), f"dc01.{domain}", "WindowsServer2022", "10.0.0.10")
    return _World(rng, seed, namespace, now, domain, netbios, users, devices, dc)


def _digest(algorithm: str, seed: int, text: str) -> str:
    return hashlib.new(algorithm, f"{seed}:{text}".encode()).hexdigest()


def _file_size(seed: int, text: str) -> int:
    return 40_000 + int(_digest("md5", seed, text)[:6], 16) % 4_000_000


# --------------------------------------------------------------------------------------------
# Generated rows


def _fill_initiating(
    world: _World, row: dict[str, Any], program: _Program, when: datetime, pid: int
) -> None:
    name, folder, company, product, description, version, command_line = program
    row.update(
        InitiatingProcessSHA1=_digest("sha1", world.seed, name),
        InitiatingProcessSHA256=_digest("sha256", world.seed, name),
        InitiatingProcessMD5=_digest("md5", world.seed, name),
        InitiatingProcessFileName=name,
        InitiatingProcessFileSize=_file_size(world.seed, name),
        InitiatingProcessVersionInfoCompanyName=company,
        InitiatingProcessVersionInfoProductName=product,
        InitiatingProcessVersionInfoProductVersion=version,
        InitiatingProcessVersionInfoInternalFileName=name.rsplit(".", 1)[0],
        InitiatingProcessVersionInfoOriginalFileName=name,
        InitiatingProcessVersionInfoFileDescription=description,
        InitiatingProcessId=pid,
        InitiatingProcessCommandLine=command_line,
        InitiatingProcessCreationTime=when - timedelta(seconds=world.rng.randint(5, 7200)),
        InitiatingProcessFolderPath=f"{folder}\\{name}".lower(),
        InitiatingProcessParentId=world.rng.randint(400, 12000),
        InitiatingProcessParentFileName=world.rng.choice(_GRANDPARENTS),
        InitiatingProcessParentCreationTime=when - timedelta(hours=world.rng.randint(3, 72)),
        InitiatingProcessIntegrityLevel="Medium",
        InitiatingProcessTokenElevation="TokenElevationTypeDefault",
    )


def _account_fields(prefix: str, user: _User | None) -> dict[str, Any]:
    if user is None:  # the machine itself
        return {
            f"{prefix}AccountDomain": "nt authority",
            f"{prefix}AccountName": "system",
            f"{prefix}AccountSid": "S-1-5-18",
            f"{prefix}AccountUpn": "",
            f"{prefix}AccountObjectId": "",
        }
    return {
        f"{prefix}AccountDomain": user.domain.lower(),
        f"{prefix}AccountName": user.name,
        f"{prefix}AccountSid": user.sid,
        f"{prefix}AccountUpn": user.upn,
        f"{prefix}AccountObjectId": user.object_id,
    }


def _process_event(
    world: _World,
    device: _Device,
    when: datetime,
    program: _Program | None = None,
    *,
    sha1: str = "",
    sha256: str = "",
    folder: str = "",
) -> dict[str, Any]:
    rng = world.rng
    program = program or rng.choice(_PROGRAMS)
    name, default_folder, company, product, description, version, command_line = program
    system = name.lower() in ("svchost.exe", "msmpeng.exe", "taskhostw.exe") or device.user is None
    user = None if system else device.user
    row = empty_row("DeviceProcessEvents")
    logon_id = 999 if user is None else rng.randint(100_000, 9_999_999)
    row.update(
        Timestamp=when,
        DeviceId=device.device_id,
        DeviceName=device.name,
        ActionType="ProcessCreated",
        FileName=name,
        FolderPath=f"{folder or default_folder}\\{name}",
        SHA1=sha1 or _digest("sha1", world.seed, name),
        SHA256=sha256 or _digest("sha256", world.seed, name),
        MD5=_digest("md5", world.seed, name),
        FileSize=_file_size(world.seed, name),
        ProcessVersionInfoCompanyName=company,
        ProcessVersionInfoProductName=product,
        ProcessVersionInfoProductVersion=version,
        ProcessVersionInfoInternalFileName=name.rsplit(".", 1)[0],
        ProcessVersionInfoOriginalFileName=name,
        ProcessVersionInfoFileDescription=description,
        ProcessId=rng.randint(1000, 40000),
        ProcessCommandLine=command_line,
        ProcessIntegrityLevel="System"
        if user is None
        else rng.choice(("Medium", "Medium", "High")),
        ProcessTokenElevation="TokenElevationTypeDefault",
        ProcessCreationTime=when,
        LogonId=logon_id,
        InitiatingProcessLogonId=logon_id,
        InitiatingProcessSignerType="OsVendor",
        InitiatingProcessSignatureStatus="Valid",
        ReportId=world.next_report_id(),
        **_account_fields("", user),
        **_account_fields("InitiatingProcess", user),
    )
    parent = _PARENTS[1] if user is None else rng.choice((_PARENTS[0], _PARENTS[0], _PARENTS[3]))
    _fill_initiating(world, row, parent, when, rng.randint(400, 12000))
    if user is None:
        row["InitiatingProcessIntegrityLevel"] = "System"
    return row


def _network_event(
    world: _World,
    device: _Device,
    when: datetime,
    destination: tuple[str, str, int] | None = None,
) -> dict[str, Any]:
    rng = world.rng
    if destination is None:
        url, port, program_index = rng.choice(_DESTINATIONS)
        remote_ip = world.public_ip(url)
        program = _PROGRAMS[program_index]
        action = rng.choices(("ConnectionSuccess", "ConnectionFailed"), weights=(19, 1))[0]
    else:
        url, remote_ip, port = destination
        program = _PROGRAMS[7]  # powershell.exe: what the seeded attacks use
        action = "ConnectionSuccess"
    row = empty_row("DeviceNetworkEvents")
    row.update(
        Timestamp=when,
        DeviceId=device.device_id,
        DeviceName=device.name,
        ActionType=action,
        RemoteIP=remote_ip,
        RemotePort=port,
        RemoteUrl=url,
        LocalIP=device.local_ip,
        LocalPort=rng.randint(49152, 65535),
        Protocol="Tcp",
        LocalIPType="Private",
        RemoteIPType="Public",
        ReportId=world.next_report_id(),
        InitiatingProcessSessionId=rng.randint(1, 4),
        IsInitiatingProcessRemoteSession=False,
        **_account_fields("InitiatingProcess", device.user),
    )
    _fill_initiating(world, row, program, when, rng.randint(1000, 40000))
    return row


def _email_event(
    world: _World,
    when: datetime,
    *,
    linked: tuple[str, str, str, str, str] | None = None,
) -> dict[str, Any]:
    """One EmailEvents row; `linked` = (NetworkMessageId, sender, recipient, subject, threat)."""
    rng = world.rng
    row = empty_row("EmailEvents")
    recipient_user = rng.choice(world.users)
    threat = ""
    if linked is not None:
        message_id, sender, recipient, subject, threat = linked
        display = sender.partition("@")[0]
        direction = "Inbound"
    else:
        message_id = world.guid(f"email:{rng.getrandbits(64)}")
        recipient = recipient_user.upn
        subject = rng.choice(_SUBJECTS).format(n=rng.randint(1000, 9999))
        if rng.random() < 0.3:
            sender_user = rng.choice(world.users)
            sender, display, direction = sender_user.upn, sender_user.display_name, "Intra-org"
        else:
            sender, display = rng.choice(_EXTERNAL_SENDERS)
            direction = "Inbound"
            threat = rng.choices(("", "Spam", "Phish", "Malware"), weights=(80, 12, 6, 2))[0]
    sender_domain = sender.partition("@")[2]
    delivered = threat in ("", "Spam")
    action = "Delivered" if threat == "" else "Junked" if threat == "Spam" else "Blocked"
    location = {"Delivered": "Inbox/folder", "Junked": "Junk folder", "Blocked": "Quarantine"}[
        action
    ]
    if linked is not None:  # the alert says the mail got through (that is why it was raised)
        action, location = "Delivered", "Inbox/folder"
    auth = "pass" if direction == "Intra-org" or not threat else rng.choice(("fail", "none"))
    row.update(
        Timestamp=when,
        NetworkMessageId=message_id,
        InternetMessageId=(
            f"<{message_id.split('-')[0]}.{rng.getrandbits(32):08x}"
            f"@{sender_domain or world.domain}>"
        ),
        SenderMailFromAddress=sender,
        SenderFromAddress=sender,
        SenderDisplayName=display,
        SenderMailFromDomain=sender_domain,
        SenderFromDomain=sender_domain,
        SenderIPv4=world.public_ip(f"mail:{sender_domain}")
        if direction == "Inbound"
        else world.dc.local_ip,
        RecipientEmailAddress=recipient,
        RecipientObjectId=next((u.object_id for u in world.users if u.upn == recipient), ""),
        Subject=subject,
        EmailClusterId=rng.getrandbits(40),
        EmailDirection=direction,
        DeliveryAction=action,
        DeliveryLocation=location,
        ThreatTypes=threat,
        DetectionMethods=json.dumps({threat: ["URL detonation reputation"]}) if threat else "",
        ConfidenceLevel=json.dumps({"Phish": "High", "Spam": None}) if threat else "",
        BulkComplaintLevel=rng.randint(0, 7),
        AuthenticationDetails=json.dumps(
            {"SPF": auth, "DKIM": auth, "DMARC": auth, "CompAuth": auth}
        ),
        AttachmentCount=rng.choices((0, 1, 2), weights=(6, 3, 1))[0],
        UrlCount=rng.randint(0, 6),
        EmailLanguage="en",
        ReportId=f"{message_id}-{rng.getrandbits(60)}-0",
        LatestDeliveryLocation=location,
        LatestDeliveryAction=action if delivered or linked is not None else "Blocked",
    )
    if threat and linked is None:
        row.update(EmailAction="Move message to junk mail folder", EmailActionPolicy="Antispam")
    return row


def _logon_event(
    world: _World,
    user: _User,
    when: datetime,
    *,
    failed: bool | None = None,
    ip: str = "",
) -> dict[str, Any]:
    rng = world.rng
    device = next((d for d in world.devices if d.user is user), None)
    failed = rng.random() < 0.06 if failed is None else failed
    row = empty_row("IdentityLogonEvents")
    cloud = ip != "" or rng.random() < 0.25
    row.update(
        Timestamp=when,
        ActionType="LogonFailed" if failed else "LogonSuccess",
        FailureReason=rng.choice(("WrongPassword", "WrongPassword", "AccountLocked"))
        if failed
        else "",
        AccountName=user.name,
        AccountDomain=user.domain.lower(),
        AccountUpn=user.upn,
        AccountSid=user.sid,
        AccountObjectId=user.object_id,
        AccountDisplayName=user.display_name,
        ReportId=world.guid(f"logon:{rng.getrandbits(64)}"),
    )
    if cloud:
        row.update(
            Application="Microsoft 365",
            LogonType="Interactive",
            IPAddress=ip or world.public_ip(f"home:{user.name}"),
            Location=rng.choice(("US", "US", "GB", "DE")) if not ip else "RU",
            Isp="Contoso Broadband" if not ip else "Unknown hosting provider",
            AdditionalFields={"ApplicationId": "4765445b-32c6-49b0-83e6-1d93765276ca"},
        )
    else:
        kerberos = rng.random() < 0.8
        row.update(
            Application="Active Directory",
            LogonType=rng.choice(("Resource access", "Credentials validation", "Interactive")),
            Protocol="Kerberos" if kerberos else "Ntlm",
            DeviceName=device.name if device else "",
            DeviceType="Workstation" if device else "",
            OSPlatform=device.os_platform if device else "",
            IPAddress=device.local_ip if device else "",
            Port=rng.randint(49152, 65535),
            DestinationDeviceName=world.dc.name,
            DestinationIPAddress=world.dc.local_ip,
            DestinationPort=88 if kerberos else 445,
            TargetDeviceName=world.dc.name,
            AdditionalFields={"Spns": f"krbtgt/{world.netbios}"} if kerberos else {},
        )
    return row


def _linked_rows(
    world: _World,
    alert: Mapping[str, Any],
    process: list[dict[str, Any]],
    network: list[dict[str, Any]],
    email: list[dict[str, Any]],
    logons: list[dict[str, Any]],
) -> None:
    """Activity around an alert, on its devices and for its users, IPs, URLs, files and mails."""
    rng = world.rng
    alert_id = _text(alert.get("alertId"))
    t0 = _alert_time(alert, world.now)

    def before(max_minutes: int) -> datetime:
        return world.clip(t0 - timedelta(seconds=rng.randint(5, max_minutes * 60)))

    ids = {_text(d["mdatpDeviceId"]) for d in _alert_devices(alert)}
    devices = [d for d in world.devices if d.device_id in ids]
    by_id = {d.device_id: d for d in devices}
    entities = _entities(alert)

    def device_for(entity: Mapping[str, Any]) -> _Device | None:
        return by_id.get(_text(entity.get("deviceId"))) or (devices[0] if devices else None)

    ips = [
        _text(e.get("ipAddress")) for e in entities if _text(e.get("entityType")).lower() == "ip"
    ]
    ips = [ip for ip in ips if ip]
    activity = False
    for index, entity in enumerate(entities):
        kind = _text(entity.get("entityType")).lower()
        device = device_for(entity)
        if kind == "process" and device is not None:
            command_line = _text(entity.get("processCommandLine"))
            name = _image_name(command_line) or "powershell.exe"
            known = next((p for p in _PROGRAMS if p[0].lower() == name.lower()), None)
            base = known or (name, r"C:\Users\Public", "", "", "", "", "")
            program = (*base[:6], command_line or base[6])
            process.append(_process_event(world, device, before(10), program))
            activity = True
        elif kind == "file" and device is not None:
            name = _text(entity.get("fileName")) or "payload.exe"
            path = _text(entity.get("filePath"))
            folder = path.rsplit("\\", 1)[0] if path.lower().endswith(name.lower()) else path
            program = (name, folder or r"C:\Users\Public\Downloads", "", "", "", "", f'"{name}"')
            process.append(
                _process_event(
                    world,
                    device,
                    before(10),
                    program,
                    sha1=_text(entity.get("sha1")),
                    sha256=_text(entity.get("sha256")),
                    folder=folder,
                )
            )
            activity = True
        elif kind == "ip" and device is not None and _text(entity.get("ipAddress")):
            ip = _text(entity.get("ipAddress"))
            for _ in range(rng.randint(2, 4)):
                network.append(_network_event(world, device, before(30), ("", ip, 443)))
            activity = True
        elif kind == "url" and device is not None and _text(entity.get("url")):
            url = _text(entity.get("url"))
            network.append(
                _network_event(world, device, before(30), (url, world.public_ip(url), 443))
            )
            activity = True
        elif kind == "user":
            key = (
                _text(entity.get("userPrincipalName")) or _text(entity.get("accountName"))
            ).lower()
            user = next((u for u in world.users if (u.upn or u.name).lower() == key), None)
            if user is None:
                continue
            source_ip = ips[0] if ips else world.public_ip(f"attacker:{alert_id}")
            for _ in range(rng.randint(3, 6)):
                logons.append(_logon_event(world, user, before(60), failed=True, ip=source_ip))
            logons.append(_logon_event(world, user, before(5), failed=False, ip=source_ip))
        elif kind == "mailmessage":
            sender = _text(entity.get("sender")) or "attacker@malicious-sender.example"
            recipient = _text(entity.get("recipient")) or rng.choice(world.users).upn
            threat = "Malware" if _text(alert.get("category")).lower() == "malware" else "Phish"
            linked = (
                mail_network_message_id(world.namespace, alert_id, index),
                sender,
                recipient,
                _text(entity.get("subject")),
                threat,
            )
            email.append(_email_event(world, before(60), linked=linked))
    if not activity:
        for device in devices:  # an endpoint alert without process evidence still shows some
            suspicious = (
                *_PROGRAMS[7][:6],
                "powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoA",
            )
            process.append(_process_event(world, device, before(10), suspicious))
