"""The two renderings of the one model: legacy Defender XDR JSON and Microsoft Graph security JSON.

Legacy shapes: the incident, alert, device and entity tables and examples of
https://learn.microsoft.com/defender-xdr/api-list-incidents and
https://learn.microsoft.com/defender-xdr/api-incident. Graph shapes: the incident
(https://learn.microsoft.com/graph/api/resources/security-incident) and the alert with its
polymorphic `evidence` (https://learn.microsoft.com/graph/api/resources/security-alert). Field
renames and enum casing follow from comparing the two: ids become strings, enums become
camelCase, `incidentName` -> `displayName`, `tags` -> `customTags`, comments get
`createdByDisplayName`/`createdDateTime`.
"""

from __future__ import annotations

from typing import Any

from emulator import fields
from emulator.model import (
    ENTITY_KEYS,
    Alert,
    Comment,
    Device,
    Entity,
    Incident,
    format_optional_time,
    format_time,
)

# Legacy values whose Graph counterpart is not just the camelCase spelling. Graph
# alertDetermination/alertSeverity have `unknown` where legacy says NotAvailable/UnSpecified.
_ENUM_OVERRIDES = {"NotAvailable": "unknown", "UnSpecified": "unknown"}

# The model stores the legacy resource-page determinations
# (https://learn.microsoft.com/defender-xdr/api-incident); Graph's schema today names four of
# them differently (msgraph-sdk-python `alert_determination.py`). Graph renders only the
# schema's names.
DETERMINATION_TO_GRAPH = {
    "NotAvailable": "unknown",
    "CompromisedUser": "compromisedAccount",
    "Clean": "notMalicious",
    "InsufficientData": "notEnoughDataToValidate",
    "ConfirmedUserActivity": "confirmedActivity",
}
DETERMINATION_FROM_GRAPH = {v: k for k, v in DETERMINATION_TO_GRAPH.items()}

# Graph alertDetermination, today's schema (msgraph-sdk-python alert_determination.py),
# without the `unknownFutureValue` sentinel: what a Graph PATCH may
# set (`emulator.updates`) and, with the sentinel, what a Graph `$filter` accepts
# (`emulator.defender`).
GRAPH_DETERMINATIONS = (
    "unknown",
    "apt",
    "malware",
    "securityPersonnel",
    "securityTesting",
    "unwantedSoftware",
    "other",
    "multiStagedAttack",
    "compromisedAccount",
    "phishing",
    "maliciousUserActivity",
    "notMalicious",
    "notEnoughDataToValidate",
    "confirmedActivity",
    "lineOfBusinessApplication",
)

# Legacy `serviceSource` -> Graph `serviceSource` (the legacy alert table against Graph's
# serviceSource enum in https://learn.microsoft.com/graph/api/resources/security-alert).
# Sentinel and Defender for Cloud are members after `unknownFutureValue` (see
# `emulator.fields.EVOLVED`).
SERVICE_SOURCE_TO_GRAPH = {
    "MicrosoftDefenderForEndpoint": "microsoftDefenderForEndpoint",
    "MicrosoftDefenderATP": "microsoftDefenderForEndpoint",
    "MicrosoftCloudAppSecurity": "microsoftDefenderForCloudApps",
    "OfficeATP": "microsoftDefenderForOffice365",
    "AzureATP": "microsoftDefenderForIdentity",
    "AzureAdIdentityProtection": "azureAdIdentityProtection",
    "Microsoft365Defender": "microsoft365Defender",
    "MicrosoftDefenderForCloud": "microsoftDefenderForCloud",
    "MicrosoftSentinel": "microsoftSentinel",
}

# Legacy `detectionSource` -> Graph `detectionSource` (Graph's detectionSource enum, same page).
DETECTION_SOURCE_TO_GRAPH = {
    "WindowsDefenderAv": "antivirus",
    "MCAS": "cloudAppSecurity",
    "OfficeATP": "microsoftDefenderForOffice365",
    "AutomatedInvestigation": "automatedInvestigation",
    "CustomDetection": "customDetection",
    "EDR": "microsoftDefenderForEndpoint",
    "AzureATP": "microsoftDefenderForIdentity",
    "MTP": "microsoft365Defender",
    "AadIdentityProtection": "azureAdIdentityProtection",
    "ScheduledAlerts": "scheduledAlerts",
    "MicrosoftDefenderForServers": "microsoftDefenderForServers",
}


def graph_enum(value: str | None) -> str | None:
    """Legacy PascalCase enum value -> Graph camelCase (`TruePositive` -> `truePositive`)."""
    if value is None:
        return None
    if value in _ENUM_OVERRIDES:
        return _ENUM_OVERRIDES[value]
    return value[:1].lower() + value[1:]


def graph_determination(value: str | None) -> str | None:
    """Model determination -> Graph alertDetermination of today's schema."""
    if value is None:
        return None
    return DETERMINATION_TO_GRAPH.get(value) or graph_enum(value)


def graph_status(value: str, include_unknown: bool) -> str | None:
    """Model incident status -> Graph incidentStatus (`awaitingAction` hidden unless asked)."""
    return fields.evolvable("incidentStatus", graph_enum(value), include_unknown)


def graph_service_source(value: str) -> str:
    """Model serviceSource -> the Graph member (unknown sources render `unknown`)."""
    return SERVICE_SOURCE_TO_GRAPH.get(value, "unknown")


def graph_detection_source(value: str) -> str:
    """Model detectionSource -> the Graph member (unknown sources render `unknown`)."""
    return DETECTION_SOURCE_TO_GRAPH.get(value, "unknown")


def legacy_status(value: str) -> str:
    """Model status -> legacy status. The legacy enum (Active, InProgress, Resolved,
    Redirected) has no `AwaitingAction`; such an incident shows as Active there
    (emulator choice: it is open and waiting for the customer)."""
    return "Active" if value == "AwaitingAction" else value


def incident_web_url(tenant_id: str, incident_id: int) -> str:
    """The portal link Graph returns as `incidentWebUrl`."""
    return f"https://security.microsoft.com/incidents/{incident_id}?tid={tenant_id}"


# ----------------------------------------------------------------------------- legacy


def legacy_comment(comment: Comment) -> dict[str, Any]:
    """`{comment, createdBy, createdTime}` (the example's `createdTime`; the resource table
    says "createTime")."""
    return {
        "comment": comment.comment,
        "createdBy": comment.created_by,
        "createdTime": format_time(comment.created_time),
    }


def legacy_device(device: Device) -> dict[str, Any]:
    """Legacy device; `mdatpDeviceId` as in the examples, not the table's `DeviceId`."""
    return {
        "mdatpDeviceId": device.mdatp_device_id,
        "aadDeviceId": device.aad_device_id,
        "deviceDnsName": device.device_dns_name,
        "osPlatform": device.os_platform,
        "version": device.version,
        "osProcessor": device.os_processor,
        "osBuild": device.os_build,
        "healthStatus": device.health_status,
        "riskScore": device.risk_score,
        "rbacGroupName": device.rbac_group_name,
        "rbacGroupId": device.rbac_group_id,
        "firstSeen": format_time(device.first_seen),
        "tags": list(device.tags),
        "defenderAvStatus": device.defender_av_status,
        "onboardingStatus": device.onboarding_status,
        "vmMetadata": None,
    }


def legacy_entity(entity: Entity) -> dict[str, Any]:
    """Legacy entity: every key present, null where it does not apply."""
    out: dict[str, Any] = dict.fromkeys(ENTITY_KEYS)
    # Keys starting with "_" carry Graph-only evidence details (e.g. file size).
    out.update({k: v for k, v in entity.values.items() if not k.startswith("_")})
    out["entityType"] = entity.entity_type
    return out


def legacy_alert(alert: Alert) -> dict[str, Any]:
    """Legacy alert object embedded in an incident."""
    return {
        "alertId": alert.alert_id,
        "incidentId": alert.incident_id,
        "serviceSource": alert.service_source,
        "creationTime": format_time(alert.creation_time),
        "lastUpdatedTime": format_time(alert.last_updated_time),
        "resolvedTime": format_optional_time(alert.resolved_time),
        "firstActivity": format_time(alert.first_activity),
        "lastActivity": format_time(alert.last_activity),
        "title": alert.title,
        "description": alert.description,
        "category": alert.category,
        "status": alert.status,
        "severity": alert.severity,
        "investigationId": alert.investigation_id,
        "investigationState": alert.investigation_state,
        "classification": alert.classification,
        "determination": alert.determination,
        "detectionSource": alert.detection_source,
        "detectorId": alert.detector_id,
        "assignedTo": alert.assigned_to,
        "actorName": alert.actor_name,
        "threatFamilyName": alert.threat_family_name,
        "mitreTechniques": list(alert.mitre_techniques),
        "devices": [legacy_device(d) for d in alert.devices],
        "entities": [legacy_entity(e) for e in alert.entities],
    }


def legacy_incident(incident: Incident) -> dict[str, Any]:
    """Legacy incident object with its alerts always embedded."""
    return {
        "incidentId": incident.incident_id,
        "redirectIncidentId": incident.redirect_incident_id,
        "incidentName": incident.incident_name,
        "createdTime": format_time(incident.created_time),
        "lastUpdateTime": format_time(incident.last_update_time),
        "assignedTo": incident.assigned_to,
        "classification": incident.classification,
        "determination": incident.determination,
        "detectionSource": incident.detection_source,
        "status": legacy_status(incident.status),
        "severity": incident.severity,
        "tags": list(incident.tags),
        "comments": [legacy_comment(c) for c in incident.comments],
        "alerts": [legacy_alert(a) for a in incident.alerts],
    }


# ----------------------------------------------------------------------------- graph


def graph_comment(comment: Comment) -> dict[str, Any]:
    """Graph alertComment `{comment, createdByDisplayName, createdDateTime}`
    (https://learn.microsoft.com/graph/api/resources/security-alertcomment)."""
    return {
        "@odata.type": "microsoft.graph.security.alertComment",
        "comment": comment.comment,
        "createdByDisplayName": comment.created_by,
        "createdDateTime": format_time(comment.created_time),
    }


def _evidence_base(kind: str, alert: Alert, verdict: str, unknown: bool) -> dict[str, Any]:
    # Every evidence item carries these (alertEvidence); remediationStatus follows the
    # investigation.
    remediation = fields.evolvable(
        "evidenceRemediationStatus", fields.remediation_status(alert), unknown
    )
    return {
        "@odata.type": f"#microsoft.graph.security.{kind}",
        "createdDateTime": format_time(alert.creation_time),
        "verdict": verdict,
        "remediationStatus": remediation,
        "remediationStatusDetails": None,
        "roles": [],
        "detailedRoles": [],
        "tags": [],
    }


def _device_evidence(device: Device, alert: Alert, unknown: bool) -> dict[str, Any]:
    out = _evidence_base("deviceEvidence", alert, "suspicious", unknown)
    out.update(
        {
            "mdeDeviceId": device.mdatp_device_id,
            "azureAdDeviceId": device.aad_device_id,
            "deviceDnsName": device.device_dns_name,
            "hostName": device.device_dns_name.split(".")[0],
            "osPlatform": device.os_platform,
            "osBuild": device.os_build,
            "version": device.version,
            "healthStatus": graph_enum(device.health_status),
            "riskScore": graph_enum(device.risk_score),
            "rbacGroupId": device.rbac_group_id,
            "rbacGroupName": device.rbac_group_name,
            "onboardingStatus": graph_enum(device.onboarding_status),
            "defenderAvStatus": graph_enum(device.defender_av_status),
            "firstSeenDateTime": format_time(device.first_seen),
            "ipInterfaces": [device.ip_address] if device.ip_address else [],
            "lastIpAddress": device.ip_address,
            "lastExternalIpAddress": None,
            "dnsDomain": device.device_dns_name.partition(".")[2] or None,
            "ntDomain": (device.device_dns_name.split(".") + [""])[1].upper() or None,
            "resourceAccessEvents": [],
            "loggedOnUsers": (
                [{"accountName": device.logged_on_user, "domainName": "CONTOSO"}]
                if device.logged_on_user
                else []
            ),
            "vmMetadata": None,
        }
    )
    return out


def _user_account(values: Any) -> dict[str, Any]:
    return {
        "accountName": values.get("accountName"),
        "domainName": values.get("domainName"),
        "userSid": values.get("userSid"),
        "azureAdUserId": values.get("aadUserId"),
        "userPrincipalName": values.get("userPrincipalName"),
        "displayName": values.get("accountName"),
    }


def _file_details(values: Any) -> dict[str, Any]:
    return {
        "sha1": values.get("sha1"),
        "sha256": values.get("sha256"),
        "fileName": values.get("fileName"),
        "filePath": values.get("filePath"),
        "fileSize": values.get("_fileSize"),
        "filePublisher": None,
        "signer": None,
        "issuer": None,
    }


# analyzedMessageEvidence.deliveryLocation for each delivery action (the portal's values).
_DELIVERY_LOCATIONS = {"Delivered": "Inbox/folder", "Junked": "Junk folder", "Blocked": "Dropped"}


def _entity_evidence(entity: Entity, alert: Alert, unknown: bool) -> dict[str, Any]:
    v = entity.values
    kind = entity.entity_type
    verdict = "malicious" if kind in ("File", "Process", "Url") else "suspicious"
    if kind == "User":
        out = _evidence_base("userEvidence", alert, verdict, unknown)
        out.update({"userAccount": _user_account(v), "stream": None})
    elif kind == "Ip":
        out = _evidence_base("ipEvidence", alert, verdict, unknown)
        out.update(
            {
                "ipAddress": v.get("ipAddress"),
                "countryLetterCode": v.get("_country"),
                "location": None,
                "stream": None,
            }
        )
    elif kind == "Url":
        out = _evidence_base("urlEvidence", alert, verdict, unknown)
        out["url"] = v.get("url")
    elif kind == "File":
        out = _evidence_base("fileEvidence", alert, verdict, unknown)
        out.update(
            {
                "fileDetails": _file_details(v),
                "detectionStatus": "detected",
                "mdeDeviceId": v.get("deviceId"),
            }
        )
    elif kind == "Process":
        out = _evidence_base("processEvidence", alert, verdict, unknown)
        out.update(
            {
                "processId": v.get("processId"),
                "parentProcessId": v.get("parentProcessId"),
                "processCommandLine": v.get("processCommandLine"),
                "processCreationDateTime": v.get("processCreationTime"),
                "parentProcessCreationDateTime": v.get("parentProcessCreationTime"),
                "imageFile": _file_details(v),
                "parentProcessImageFile": None,
                "detectionStatus": "detected",
                "mdeDeviceId": v.get("deviceId"),
                "userAccount": _user_account(v),
            }
        )
    elif kind == "MailBox":
        out = _evidence_base("mailboxEvidence", alert, verdict, unknown)
        out.update(
            {
                "displayName": v.get("mailboxDisplayName"),
                "primaryAddress": v.get("mailboxAddress"),
                "upn": v.get("userPrincipalName"),
                "userAccount": _user_account(v),
            }
        )
    elif kind == "MailMessage":
        out = _evidence_base("analyzedMessageEvidence", alert, verdict, unknown)
        urls = [str(e.values["url"]) for e in alert.entities if e.entity_type == "Url"]
        out.update(
            {
                "senderIp": v.get("_senderIp"),
                "recipientEmailAddress": v.get("recipient"),
                "subject": v.get("subject"),
                "deliveryAction": graph_enum(v.get("deliveryAction")),
                "p1Sender": {"emailAddress": v.get("sender")},
                "p2Sender": {"emailAddress": v.get("sender")},
                "networkMessageId": v.get("_networkMessageId"),
                "internetMessageId": f"<{v.get('_networkMessageId')}@mail.example-phish.com>",
                "antiSpamDirection": "Inbound",
                "deliveryLocation": _DELIVERY_LOCATIONS.get(str(v.get("deliveryAction"))),
                "receivedDateTime": format_time(alert.first_activity),
                "language": "en",
                "attachmentsCount": 0,
                "urlCount": len(urls),
                "urls": urls,
                "threats": ["Phish"],
                "threatDetectionMethods": ["URL detonation reputation"],
                "urn": None,
            }
        )
    elif kind == "MailCluster":
        out = _evidence_base("mailClusterEvidence", alert, verdict, unknown)
        out.update(
            {
                "clusterBy": v.get("clusterBy"),
                "clusterByValue": v.get("_clusterByValue"),
                "emailCount": 1,
                "networkMessageIds": [],
                "query": None,
                "urn": None,
            }
        )
    elif kind == "Registry":
        out = _evidence_base("registryValueEvidence", alert, verdict, unknown)
        out.update(
            {
                "registryHive": v.get("registryHive"),
                "registryKey": v.get("registryKey"),
                "registryValueType": v.get("registryValueType"),
                "registryValue": v.get("registryValue"),
                "registryValueName": None,
                "mdeDeviceId": v.get("deviceId"),
            }
        )
    elif kind == "SecurityGroup":
        out = _evidence_base("securityGroupEvidence", alert, verdict, unknown)
        out.update(
            {
                "securityGroupId": v.get("securityGroupId"),
                "displayName": v.get("securityGroupName"),
                "friendlyName": v.get("securityGroupName"),
                "activeDirectoryObjectGuid": None,
                "distinguishedName": None,
                "sid": None,
            }
        )
    else:  # pragma: no cover - the generator only emits the kinds above
        out = _evidence_base("alertEvidence", alert, verdict, unknown)
    return out


def graph_alert(alert: Alert, tenant_id: str, *, include_unknown: bool = False) -> dict[str, Any]:
    """Graph `alert` (alerts_v2) rendered from the model.

    `include_unknown`: the request sent `Prefer: include-unknown-enum-members`; without it the
    newer service and detection sources render `unknownFutureValue` (`emulator.fields`).
    """
    unknown = include_unknown
    return {
        "@odata.type": "#microsoft.graph.security.alert",
        "id": alert.alert_id,
        "providerAlertId": alert.provider_alert_id,
        "incidentId": str(alert.incident_id),
        "status": graph_enum(alert.status),
        "severity": graph_enum(alert.severity),
        "classification": graph_enum(alert.classification),
        "determination": graph_determination(alert.determination),
        "serviceSource": fields.evolvable(
            "serviceSource", graph_service_source(alert.service_source), unknown
        ),
        "detectionSource": fields.evolvable(
            "detectionSource", graph_detection_source(alert.detection_source), unknown
        ),
        "productName": fields.product_name(alert),
        "detectorId": alert.detector_id,
        "alertPolicyId": fields.alert_policy_id(alert),
        "tenantId": tenant_id,
        "title": alert.title,
        "description": alert.description,
        "recommendedActions": alert.recommended_actions,
        "category": alert.category,
        "categories": [alert.category],
        "assignedTo": alert.assigned_to,
        "alertWebUrl": f"https://security.microsoft.com/alerts/{alert.alert_id}?tid={tenant_id}",
        "incidentWebUrl": incident_web_url(tenant_id, alert.incident_id),
        "actorDisplayName": alert.actor_name,
        "threatDisplayName": alert.threat_family_name,
        "threatFamilyName": alert.threat_family_name,
        "mitreTechniques": list(alert.mitre_techniques),
        "investigationState": graph_enum(alert.investigation_state),
        "createdDateTime": format_time(alert.creation_time),
        "lastUpdateDateTime": format_time(alert.last_updated_time),
        "resolvedDateTime": format_optional_time(alert.resolved_time),
        "firstActivityDateTime": format_time(alert.first_activity),
        "lastActivityDateTime": format_time(alert.last_activity),
        "comments": [graph_comment(c) for c in alert.comments],
        "systemTags": [],
        "customDetails": None,
        "additionalData": None,
        "evidence": [_device_evidence(d, alert, unknown) for d in alert.devices]
        + [_entity_evidence(e, alert, unknown) for e in alert.entities],
    }


def graph_incident(
    incident: Incident, tenant_id: str, *, expand_alerts: bool, include_unknown: bool = False
) -> dict[str, Any]:
    """Graph `incident`; `alerts` only with `$expand=alerts`.

    `include_unknown`: as for `graph_alert` (status `awaitingAction` is hidden without it).
    """
    out: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.security.incident",
        "id": str(incident.incident_id),
        "tenantId": tenant_id,
        "status": graph_status(incident.status, include_unknown),
        "incidentWebUrl": incident_web_url(tenant_id, incident.incident_id),
        "redirectIncidentId": (
            None if incident.redirect_incident_id is None else str(incident.redirect_incident_id)
        ),
        "displayName": incident.incident_name,
        "createdDateTime": format_time(incident.created_time),
        "lastUpdateDateTime": format_time(incident.last_update_time),
        "assignedTo": incident.assigned_to,
        "classification": graph_enum(incident.classification),
        "determination": graph_determination(incident.determination),
        "severity": graph_enum(incident.severity),
        "customTags": list(incident.tags),
        "systemTags": fields.system_tags(incident),
        "description": incident.description,
        "summary": fields.summary(incident),
        "priorityScore": fields.priority_score(incident),
        "resolvingComment": fields.resolving_comment(incident),
        "lastModifiedBy": fields.last_modified_by(incident),
        "comments": [graph_comment(c) for c in incident.comments],
    }
    if expand_alerts:
        out["alerts"] = [
            graph_alert(a, tenant_id, include_unknown=include_unknown) for a in incident.alerts
        ]
    return out
