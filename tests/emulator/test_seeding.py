"""Seeding: the bulk path (above `BULK_THRESHOLD`) makes valid, distinct incidents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from emulator import data

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_bulk_seeding_makes_valid_distinct_incidents() -> None:
    generator = data.TenantGenerator("00000000-0000-4000-8000-000000000002", 1, 3)
    count = data.BULK_THRESHOLD + 500
    incidents = data.seed_incidents(generator, count, NOW)
    assert len(incidents) == count
    by_id = {i.incident_id: i for i in incidents}
    assert len(by_id) == count
    alert_ids = [a.alert_id for i in incidents for a in i.alerts]
    assert len(set(alert_ids)) == len(alert_ids)
    week = NOW - timedelta(days=7)
    for incident in incidents:
        assert week <= incident.created_time <= incident.last_update_time < NOW
        for alert in incident.alerts:
            assert alert.incident_id == incident.incident_id
            assert alert.last_updated_time <= incident.last_update_time
            assert alert.alert_id.endswith(alert.provider_alert_id)
        for comment in incident.comments:
            assert comment.created_time <= incident.last_update_time
    redirected = [i for i in incidents if i.status == "Redirected"]
    assert len(redirected) > count // 100
    for source in redirected:
        assert source.alerts == ()
        assert source.redirect_incident_id in by_id
    assert {i.status for i in incidents} >= {"Active", "InProgress", "Resolved", "Redirected"}
    # The generator goes on from there: new incidents get fresh ids.
    later = generator.new_incident(NOW, NOW)
    assert later.incident_id not in by_id
