"""Tests of the seeded advanced hunting tables: documented schemas, determinism, alert links."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from emulator import kql
from emulator.hunting_data import RETENTION, TABLE_SCHEMAS, build_tables, empty_row

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TENANT = "8f0d2c1e-3b4a-4c5d-9e6f-7a8b9c0d1e2f"
DEVICE_A = "4ee8e2a1a5a1e0c7b3f5d9c2e1f0a9b8c7d6e5f4"
DEVICE_B = "b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1"

_ENTITY_KEYS = [
    "entityType", "sha1", "sha256", "fileName", "filePath", "processId", "processCommandLine",
    "processCreationTime", "parentProcessId", "parentProcessCreationTime", "ipAddress", "url",
    "accountName", "domainName", "userSid", "aadUserId", "userPrincipalName",
    "mailboxDisplayName", "mailboxAddress", "clusterBy", "sender", "recipient", "subject",
    "deliveryAction", "securityGroupId", "securityGroupName", "registryHive", "registryKey",
    "registryValueType", "registryValue", "deviceId",
]  # fmt: skip


def entity(entity_type: str, **values: Any) -> dict[str, Any]:
    """A legacy entity: every documented key present, the unused ones null."""
    data: dict[str, Any] = dict.fromkeys(_ENTITY_KEYS)
    data.update(entityType=entity_type, **values)
    return data


ADELE = entity(
    "User",
    accountName="adelev",
    domainName="CONTOSO",
    userSid="S-1-5-21-1004336348-1177238915-682003330-1107",
    aadUserId="fc8f7484-f813-4db2-afab-bc1507913fb6",
    userPrincipalName="adele.vance@contoso.com",
)

ALERTS: list[dict[str, Any]] = [
    {
        "alertId": "da637349914833441527_393341063",
        "incidentId": 924565,
        "serviceSource": "MicrosoftDefenderATP",
        "creationTime": "2026-11-18T14:46:55.7182276Z",
        "title": "Suspicious PowerShell command line",
        "category": "Execution",
        "severity": "High",
        "detectionSource": "WindowsDefenderAtp",
        "threatFamilyName": "Emotet",
        "mitreTechniques": ["T1059.001", "T9999"],
        "devices": [
            {
                "mdatpDeviceId": DEVICE_A,
                "deviceDnsName": "ws-fin-07.contoso.com",
                "osPlatform": "Windows11",
                "osBuild": 22631,
                "riskScore": "High",
                "healthStatus": "Active",
            },
            {
                "mdatpDeviceId": DEVICE_B,
                "deviceDnsName": "srv-app-02.contoso.com",
                "osPlatform": "WindowsServer2022",
            },
        ],  # fmt: skip
        "entities": [
            ADELE,
            entity(
                "Process",
                processId=4242,
                processCommandLine="powershell.exe -nop -enc SQBFAFgA",
                deviceId=DEVICE_A,
            ),
            entity(
                "File",
                fileName="invoice.exe",
                filePath="C:\\Users\\adelev\\Downloads",
                sha1="a" * 40,
                sha256="b" * 64,
                deviceId=DEVICE_A,
            ),
            entity("Ip", ipAddress="185.220.101.45"),
            entity("Url", url="http://bad.example/payload.bin", deviceId=DEVICE_B),
            entity(
                "Registry",
                registryHive="HKEY_CURRENT_USER",
                registryKey="Software\\Microsoft\\Windows\\CurrentVersion\\Run",
                registryValueType="String",
                registryValue="C:\\Users\\Public\\x.exe",
            ),
        ],  # fmt: skip
    },
    {
        "alertId": "fa9f2a5e2b-1f54-32db-9988-3a868a1ebfac",
        "incidentId": 924566,
        "serviceSource": "OfficeATP",
        "creationTime": "2026-11-10T08:00:00Z",
        "title": "Email messages containing malicious URL removed after delivery",
        "category": "InitialAccess",
        "severity": "Medium",
        "detectionSource": "OfficeATP",
        "mitreTechniques": ["T1566.002"],
        "devices": [],
        "entities": [
            entity(
                "MailMessage",
                sender="billing@vendor-lookalike.example",
                recipient="adele.vance@contoso.com",
                subject="Overdue invoice #4471",
                deliveryAction="Delivered",
            ),
            entity(
                "MailBox",
                mailboxDisplayName="Adele Vance",
                mailboxAddress="adele.vance@contoso.com",
            ),
            entity("MailCluster", clusterBy="Subject;SenderIp"),
            entity("SecurityGroup", securityGroupId="sg-1", securityGroupName="Finance"),
        ],  # fmt: skip
    },
    {
        "alertId": "caD70CFEE2-1F54-32DB-9988-3A868A1EBFAC",
        "incidentId": 924567,
        "serviceSource": "MicrosoftCloudAppSecurity",
        "creationTime": "2026-09-01T00:00:00Z",  # older than the 30-day window
        "title": "Impossible travel activity",
        "category": "InitialAccess",
        "severity": "Low",
        "detectionSource": "MCAS",
        "mitreTechniques": [],
        "devices": None,
        "entities": [ADELE, entity("Ip", ipAddress="203.0.113.9")],
    },
]


@pytest.fixture(scope="module")
def tables() -> dict[str, list[dict[str, Any]]]:
    return build_tables(TENANT, ALERTS, NOW, seed=42)


def _python_type_ok(value: Any, kql_type: str) -> bool:
    if kql_type == "string":
        return isinstance(value, str)
    if value is None:
        return True
    if kql_type == "datetime":
        return isinstance(value, datetime) and value.utcoffset() == timedelta(0)
    if kql_type in ("long", "int"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kql_type == "bool":
        return isinstance(value, bool)
    if kql_type == "dynamic":
        return isinstance(value, dict | list)
    raise AssertionError(kql_type)


# ------------------------------------------------------------------------------------------
# Schemas


def test_the_six_tables_have_their_documented_columns() -> None:
    """The schemas list the documented columns and KQL types of the six tables."""
    assert set(TABLE_SCHEMAS) == {
        "AlertInfo", "AlertEvidence", "DeviceProcessEvents", "DeviceNetworkEvents",
        "EmailEvents", "IdentityLogonEvents",
    }  # fmt: skip
    assert TABLE_SCHEMAS["AlertInfo"] == (
        ("Timestamp", "datetime"), ("AlertId", "string"), ("Title", "string"),
        ("Category", "string"), ("Severity", "string"), ("ServiceSource", "string"),
        ("DetectionSource", "string"), ("AttackTechniques", "string"),
    )  # fmt: skip
    types = {table: dict(columns) for table, columns in TABLE_SCHEMAS.items()}
    assert len(types["AlertEvidence"]) == 42
    assert types["AlertEvidence"]["FileSize"] == "long"
    assert types["AlertEvidence"]["ApplicationId"] == "int"
    assert len(types["DeviceProcessEvents"]) == 58
    assert types["DeviceProcessEvents"]["ProcessCreationTime"] == "datetime"
    assert types["DeviceProcessEvents"]["LogonId"] == "long"
    assert len(types["DeviceNetworkEvents"]) == 44
    assert types["DeviceNetworkEvents"]["RemotePort"] == "int"
    assert types["DeviceNetworkEvents"]["IsInitiatingProcessRemoteSession"] == "bool"
    assert len(types["EmailEvents"]) == 39
    assert types["EmailEvents"]["EmailClusterId"] == "long"
    assert types["EmailEvents"]["ReportId"] == "string"
    assert types["EmailEvents"]["AttachmentCount"] == "int"
    assert len(types["IdentityLogonEvents"]) == 26
    assert types["IdentityLogonEvents"]["AdditionalFields"] == "dynamic"
    assert types["IdentityLogonEvents"]["DestinationPort"] == "int"
    for columns in TABLE_SCHEMAS.values():
        names = [name for name, _ in columns]
        assert len(names) == len(set(names))
        assert names[0] == "Timestamp"
        assert {typ for _, typ in columns} <= set(kql.API_TYPE_NAMES)


def test_every_row_has_exactly_the_documented_columns_with_matching_types(
    tables: dict[str, list[dict[str, Any]]],
) -> None:
    """Each row has every column of its table and values of the declared type."""
    assert set(tables) == set(TABLE_SCHEMAS)
    for name, rows in tables.items():
        columns = dict(TABLE_SCHEMAS[name])
        assert rows, name
        for row in rows:
            assert list(row) == list(columns), name
            for column, value in row.items():
                assert _python_type_ok(value, columns[column]), (name, column, value)
            assert row["Timestamp"] is not None


def test_empty_row_defaults() -> None:
    """empty_row gives "" for strings and None for other types."""
    row = empty_row("DeviceNetworkEvents")
    assert row["RemoteIP"] == ""
    assert row["RemotePort"] is None
    assert row["Timestamp"] is None


# ------------------------------------------------------------------------------------------
# Determinism and size


def test_same_seed_same_tables_and_other_seed_other_events() -> None:
    """A seed fixes every row; another seed changes the generated tables, not the alert ones."""
    first = build_tables(TENANT, ALERTS, NOW, seed=7)
    again = build_tables(TENANT, ALERTS, NOW, seed=7)
    other = build_tables(TENANT, ALERTS, NOW, seed=8)
    assert first == again
    assert first["AlertInfo"] == other["AlertInfo"]
    assert first["AlertEvidence"] == other["AlertEvidence"]
    for name in (
        "DeviceProcessEvents",
        "DeviceNetworkEvents",
        "EmailEvents",
        "IdentityLogonEvents",
    ):
        assert first[name] != other[name], name


def test_generated_tables_are_small_recent_and_sorted(
    tables: dict[str, list[dict[str, Any]]],
) -> None:
    """A few thousand rows in all, Timestamps within the 30 days before now, oldest first."""
    generated = ("DeviceProcessEvents", "DeviceNetworkEvents", "EmailEvents", "IdentityLogonEvents")
    assert 1000 <= sum(len(tables[name]) for name in generated) <= 5000
    for name in generated:
        stamps = [row["Timestamp"] for row in tables[name]]
        assert stamps == sorted(stamps)
        assert stamps[0] >= NOW - RETENTION and stamps[-1] <= NOW
        assert stamps[-1] - stamps[0] > timedelta(days=20), "spread over the window"


def test_no_alerts_and_naive_now_still_build() -> None:
    """Without alerts the alert tables are empty and the rest still generate; naive now is UTC."""
    built = build_tables(TENANT, [], datetime(2026, 11, 20, 12, 0), seed=1)  # noqa: DTZ001
    assert built["AlertInfo"] == []
    assert built["AlertEvidence"] == []
    assert len(built["DeviceProcessEvents"]) > 100
    assert built["DeviceProcessEvents"][-1]["Timestamp"].tzinfo is not None


def test_tenants_get_distinct_identifiers() -> None:
    """The same seed for two tenants gives different message ids, so tenants do not collide."""
    one = build_tables("tenant-one", [], NOW, seed=3)
    two = build_tables("tenant-two", [], NOW, seed=3)
    ids_one = {row["NetworkMessageId"] for row in one["EmailEvents"]}
    ids_two = {row["NetworkMessageId"] for row in two["EmailEvents"]}
    assert not ids_one & ids_two


# ------------------------------------------------------------------------------------------
# Alert tables


def test_alert_info_has_one_row_per_alert_matching_it(
    tables: dict[str, list[dict[str, Any]]],
) -> None:
    """AlertInfo mirrors the alerts: ids, titles, categories, severities, times, sources."""
    rows = tables["AlertInfo"]
    assert [row["AlertId"] for row in rows] == [alert["alertId"] for alert in ALERTS]
    for row, alert in zip(rows, ALERTS, strict=True):
        assert row["Title"] == alert["title"]
        assert row["Category"] == alert["category"]
        assert row["Severity"] == alert["severity"]
        assert row["Timestamp"] == datetime.fromisoformat(alert["creationTime"])
    assert [row["ServiceSource"] for row in rows] == [
        "Microsoft Defender for Endpoint",
        "Microsoft Defender for Office 365",
        "Microsoft Defender for Cloud Apps",
    ]
    assert [row["DetectionSource"] for row in rows] == [
        "EDR",
        "Microsoft Defender for Office 365",
        "Microsoft Defender for Cloud Apps",
    ]
    assert json.loads(rows[0]["AttackTechniques"]) == ["PowerShell (T1059.001)", "T9999"]
    assert rows[2]["AttackTechniques"] == ""


def test_alert_evidence_has_a_row_per_device_and_entity(
    tables: dict[str, list[dict[str, Any]]],
) -> None:
    """AlertEvidence: one row per device and per entity, carrying the alert's fields."""
    rows = tables["AlertEvidence"]
    by_alert: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_alert.setdefault(row["AlertId"], []).append(row)
    first, mail, cloud = (by_alert[alert["alertId"]] for alert in ALERTS)
    assert [row["EntityType"] for row in first] == [
        "Machine", "Machine", "User", "Process", "File", "Ip", "Url", "RegistryValue",
    ]  # fmt: skip
    assert [row["EntityType"] for row in mail] == [
        "MailMessage", "Mailbox", "MailCluster", "SecurityGroup",
    ]  # fmt: skip
    assert [row["EntityType"] for row in cloud] == ["User", "Ip"]
    for row in first:
        assert row["Title"] == ALERTS[0]["title"]
        assert row["Categories"] == '["Execution"]'
        assert row["ServiceSource"] == "Microsoft Defender for Endpoint"
        assert row["Severity"] == "High"
    machine, _, user, process, file, ip, url, registry = first
    assert (machine["DeviceId"], machine["DeviceName"]) == (DEVICE_A, "ws-fin-07.contoso.com")
    assert machine["EvidenceRole"] == "Impacted"
    assert json.loads(machine["AdditionalFields"])["OSPlatform"] == "Windows11"
    assert (user["AccountName"], user["AccountDomain"], user["AccountUpn"]) == (
        "adelev", "CONTOSO", "adele.vance@contoso.com",
    )  # fmt: skip
    assert user["AccountSid"] == ADELE["userSid"]
    assert user["AccountObjectId"] == ADELE["aadUserId"]
    assert process["ProcessCommandLine"] == "powershell.exe -nop -enc SQBFAFgA"
    assert process["FileName"] == "powershell.exe"
    assert process["DeviceName"] == "ws-fin-07.contoso.com"
    assert (file["FileName"], file["SHA1"], file["SHA256"]) == ("invoice.exe", "a" * 40, "b" * 64)
    assert file["ThreatFamily"] == "Emotet"
    assert ip["RemoteIP"] == "185.220.101.45"
    assert url["RemoteUrl"] == "http://bad.example/payload.bin"
    assert url["DeviceName"] == "srv-app-02.contoso.com"
    assert registry["RegistryKey"] == (
        "HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run"
    )
    assert registry["RegistryValueData"] == "C:\\Users\\Public\\x.exe"
    message, mailbox, cluster, group = mail
    assert message["EmailSubject"] == "Overdue invoice #4471"
    assert message["NetworkMessageId"]
    assert mailbox["AccountUpn"] == "adele.vance@contoso.com"
    assert json.loads(cluster["AdditionalFields"]) == {"ClusterBy": "Subject;SenderIp"}
    assert json.loads(group["AdditionalFields"])["SecurityGroupName"] == "Finance"


# ------------------------------------------------------------------------------------------
# Links between the alerts and the generated tables


def test_alert_devices_show_the_alert_processes_and_files(
    tables: dict[str, list[dict[str, Any]]],
) -> None:
    """The alert's process and file appear in DeviceProcessEvents on its device, before it."""
    alert_time = datetime.fromisoformat(ALERTS[0]["creationTime"])
    rows = [row for row in tables["DeviceProcessEvents"] if row["DeviceId"] == DEVICE_A]
    encoded = [
        row for row in rows if row["ProcessCommandLine"] == "powershell.exe -nop -enc SQBFAFgA"
    ]
    assert len(encoded) == 1
    assert encoded[0]["DeviceName"] == "ws-fin-07.contoso.com"
    assert encoded[0]["AccountUpn"] == "adele.vance@contoso.com"
    assert alert_time - timedelta(minutes=15) < encoded[0]["Timestamp"] < alert_time
    payload = [row for row in rows if row["SHA1"] == "a" * 40]
    assert [row["FileName"] for row in payload] == ["invoice.exe"]
    assert payload[0]["FolderPath"] == "C:\\Users\\adelev\\Downloads\\invoice.exe"


def test_alert_ips_urls_users_and_mails_are_findable(
    tables: dict[str, list[dict[str, Any]]],
) -> None:
    """Network, logon and email events tie back to the alert's IPs, URLs, users and mails."""
    to_ip = [row for row in tables["DeviceNetworkEvents"] if row["RemoteIP"] == "185.220.101.45"]
    assert to_ip and {row["DeviceId"] for row in to_ip} == {DEVICE_A}
    to_url = [
        row
        for row in tables["DeviceNetworkEvents"]
        if row["RemoteUrl"] == "http://bad.example/payload.bin"
    ]
    assert [row["DeviceId"] for row in to_url] == [DEVICE_B]
    failed = [
        row
        for row in tables["IdentityLogonEvents"]
        if row["AccountUpn"] == "adele.vance@contoso.com" and row["ActionType"] == "LogonFailed"
    ]
    assert {row["IPAddress"] for row in failed} >= {"185.220.101.45"}
    evidence_id = next(
        row["NetworkMessageId"]
        for row in tables["AlertEvidence"]
        if row["EntityType"] == "MailMessage"
    )
    mails = [row for row in tables["EmailEvents"] if row["NetworkMessageId"] == evidence_id]
    assert len(mails) == 1
    assert mails[0]["Subject"] == "Overdue invoice #4471"
    assert mails[0]["SenderFromAddress"] == "billing@vendor-lookalike.example"
    assert mails[0]["RecipientEmailAddress"] == "adele.vance@contoso.com"
    assert mails[0]["ThreatTypes"] == "Phish"


def test_linked_rows_of_old_alerts_stay_inside_the_window(
    tables: dict[str, list[dict[str, Any]]],
) -> None:
    """Activity tied to an alert older than 30 days is clipped into the retention window."""
    from_old_ip = [
        row for row in tables["IdentityLogonEvents"] if row["IPAddress"] == "185.220.101.45"
    ]
    assert from_old_ip
    assert all(row["Timestamp"] >= NOW - RETENTION for row in tables["IdentityLogonEvents"])


def test_generated_users_share_the_alert_domain(tables: dict[str, list[dict[str, Any]]]) -> None:
    """Generated people and machines live in the domain the alerts use."""
    upns = {row["AccountUpn"] for row in tables["IdentityLogonEvents"]}
    assert all(upn.endswith("@contoso.com") for upn in upns)
    names = {row["DeviceName"] for row in tables["DeviceProcessEvents"]}
    assert all(name.endswith(".contoso.com") for name in names)


# ------------------------------------------------------------------------------------------
# Hunting queries over the seeded tables


@pytest.mark.parametrize(
    ("query", "check"),
    [
        ("AlertInfo | where Severity == 'High' | project AlertId",
         lambda rows: rows == [{"AlertId": ALERTS[0]["alertId"]}]),
        ("AlertEvidence | where EntityType == 'Ip' | summarize count() by RemoteIP "
         "| order by RemoteIP asc",
         lambda rows: rows == [{"RemoteIP": "185.220.101.45", "count_": 1},
                               {"RemoteIP": "203.0.113.9", "count_": 1}]),
        ("DeviceProcessEvents | where Timestamp > ago(7d) and ProcessCommandLine has 'enc' "
         "| project DeviceName, ProcessCommandLine",
         lambda rows: {"DeviceName": "ws-fin-07.contoso.com",
                       "ProcessCommandLine": "powershell.exe -nop -enc SQBFAFgA"} in rows),
        ("DeviceNetworkEvents | where RemoteIP in ('185.220.101.45') "
         "| summarize count() by DeviceName",
         lambda rows: [row["DeviceName"] for row in rows] == ["ws-fin-07.contoso.com"]),
        ("EmailEvents | where ThreatTypes has 'Phish' | summarize count() by DeliveryAction",
         lambda rows: any(row["DeliveryAction"] == "Delivered" for row in rows)),
        ("IdentityLogonEvents | where ActionType == 'LogonFailed' | summarize n = count() by "
         "AccountUpn | top 1 by n",
         lambda rows: rows[0]["AccountUpn"] == "adele.vance@contoso.com"),
        ("DeviceProcessEvents | where Timestamp < ago(31d) | count",
         lambda rows: rows == [{"Count": 0}]),
    ],
)  # fmt: skip
def test_realistic_hunting_queries_find_the_seeded_activity(
    tables: dict[str, list[dict[str, Any]]], query: str, check: Any
) -> None:
    """Typical hunting queries over the seeded tables return the alert-linked activity."""
    result = kql.run(query, tables, NOW)
    assert check(result.rows), result.rows
