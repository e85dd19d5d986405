"""Incidents: dedup, grouping, idempotent replay, lifecycle, false-positive feedback, reading."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import builders
import pytest
from builders import T0
from clickhouse_connect.driver.client import Client

from detector.families import FAMILIES
from detector.incidents import (
    Alert,
    IncidentError,
    format_ref,
    get_incident,
    incident_id_for,
    incident_timeline,
    list_incidents,
    record_alert,
    resolve_incident,
    transition,
)

FIELDS = {"id", "detector", "title", "severity", "status", "score", "principals", "resources", "first_seen",
          "last_seen", "detected_at", "explanation", "techniques", "playbook_runs", "entity", "entity_key",
          "group_id", "assignee"}


#: The evidence of the alerts below: an export far above its baseline.
EXPORT = [{"feature": "export_bytes", "value": 9e9, "baseline": 1e6, "weight": 0.8}]


def alert(**fields) -> Alert:
    """The shared alert builder, about an export of ``ds.chat``, scored just below the far tail."""
    return builders.alert(**({"score": 0.96, "resources": ("ds.chat",), "explanation": EXPORT} | fields))


def test_opening_returns_the_design_fields(client: Client) -> None:
    out = record_alert(client, alert())
    assert out.outcome == "opened" and out.incident_id == incident_id_for(alert().alert_id)
    inc = get_incident(client, out.incident_id)
    assert inc is not None and FIELDS <= set(inc)
    assert inc["status"] == "open" and inc["severity"] == "SEV3" and inc["principals"] == ["alice"]
    assert inc["first_seen"] == T0 and inc["detected_at"] == T0 + timedelta(minutes=15)
    assert inc["explanation"][0]["feature"] == "export_bytes"
    assert inc["techniques"] == list(FAMILIES["bulk_export"].techniques) and inc["playbook_runs"] == []
    assert inc["group_id"] == out.incident_id and inc["assignee"] is None
    assert get_incident(client, 12345) is None


def test_dedup_within_window_updates_and_outside_opens(client: Client) -> None:
    first = record_alert(client, alert())
    later = alert(at=T0 + timedelta(hours=3), severity="SEV2", score=0.995, principals=("alice", "bob"),
                  resources=("ds.telemetry",),
                  explanation=[{"feature": "destinations", "value": 4, "baseline": 1, "weight": 0.9}])
    out = record_alert(client, later)
    assert out.outcome == "updated" and out.incident_id == first.incident_id and out.severity_rose
    inc = get_incident(client, first.incident_id)
    assert inc["severity"] == "SEV2" and inc["score"] == pytest.approx(0.995)
    assert inc["principals"] == ["alice", "bob"] and inc["resources"] == ["ds.chat", "ds.telemetry"]
    assert inc["last_seen"] == later.last_seen and inc["first_seen"] == T0
    assert inc["explanation"][0]["feature"] == "destinations"
    # Lower severity and score: kept at the max, explanation not replaced, no rise reported.
    weaker = record_alert(client, alert(at=T0 + timedelta(hours=5), severity="SEV4", score=0.5))
    assert weaker.outcome == "updated" and not weaker.severity_rose
    inc = get_incident(client, first.incident_id)
    assert inc["severity"] == "SEV2" and inc["score"] == pytest.approx(0.995)
    assert inc["explanation"][0]["feature"] == "destinations"
    # Beyond the window after last_seen: a new incident.
    far = record_alert(client, alert(at=T0 + timedelta(days=3)))
    assert far.outcome == "opened" and far.incident_id != first.incident_id
    # Another entity or detector never merges.
    assert record_alert(client, alert(key="bob")).outcome == "opened"
    assert record_alert(client, alert(detector="artifact_download")).outcome == "opened"
    assert len(list_incidents(client)) == 4


def test_resolved_incident_is_not_updated(client: Client) -> None:
    first = record_alert(client, alert())
    transition(client, first.incident_id, "resolve", "ana", reason="revoked")
    assert record_alert(client, alert(at=T0 + timedelta(hours=1))).outcome == "opened"


def test_replaying_the_same_alerts_is_a_no_op(client: Client) -> None:
    alerts = [alert(), alert(at=T0 + timedelta(hours=1), severity="SEV1"), alert(key="bob"),
              alert(detector="permission_fanout", key="grant:ds.chat", group_key="ds.chat")]
    first = [record_alert(client, a) for a in alerts]
    before = (list_incidents(client), client.query("SELECT count() FROM incident_events").result_rows)
    second = [record_alert(client, a) for a in alerts]
    assert [o.outcome for o in second] == ["duplicate"] * 4
    assert [o.incident_id for o in second] == [o.incident_id for o in first]
    after = (list_incidents(client), client.query("SELECT count() FROM incident_events").result_rows)
    assert after == before


def test_crash_before_alerts_seen_is_not_applied_twice(client: Client) -> None:
    first = record_alert(client, alert())
    # As if the process died after the incident and its event were written.
    client.command("TRUNCATE TABLE alerts_seen")
    again = record_alert(client, alert())
    assert again.outcome == "duplicate" and again.incident_id == first.incident_id
    assert len(incident_timeline(client, first.incident_id)) == 1


def test_grant_and_exposure_share_a_group(client: Client) -> None:
    grant = record_alert(client, alert(detector="permission_fanout", key="grant:ds.chat->all",
                                       severity="SEV2", group_key="ds.chat"))
    exposure = record_alert(client, alert(detector="exposure_spike", key="ds.chat", at=T0 + timedelta(hours=2),
                                          group_key="ds.chat"))
    other = record_alert(client, alert(detector="exposure_spike", key="ds.other", group_key="ds.other"))
    assert exposure.outcome == "opened" and exposure.incident_id != grant.incident_id
    assert exposure.group_id == grant.incident_id == get_incident(client, exposure.incident_id)["group_id"]
    assert other.group_id == other.incident_id


def test_every_legal_transition_and_illegal_ones(client: Client) -> None:
    inc = record_alert(client, alert()).incident_id
    assert transition(client, inc, "assign", "lead", assignee="ana")["assignee"] == "ana"
    assert transition(client, inc, "acknowledge", "ana")["status"] == "acknowledged"
    with pytest.raises(IncidentError, match="cannot acknowledge"):
        transition(client, inc, "acknowledge", "ana")
    assert transition(client, inc, "note", "ana", reason="looked at the export")["status"] == "acknowledged"
    assert transition(client, inc, "contain", "ana", reason="token revoked")["status"] == "contained"
    with pytest.raises(IncidentError, match="cannot contain"):
        transition(client, inc, "contain", "ana")
    assert transition(client, inc, "resolve", "ana", reason="done")["status"] == "resolved"
    for action in ("acknowledge", "contain", "resolve", "false_positive"):
        with pytest.raises(IncidentError):
            transition(client, inc, action, "ana", reason="x")
    with pytest.raises(IncidentError, match="cannot assign"):
        transition(client, inc, "assign", "ana", assignee="bob")
    with pytest.raises(IncidentError, match="unknown action"):
        transition(client, inc, "reopen", "ana")
    with pytest.raises(IncidentError, match="no incident"):
        transition(client, 42, "acknowledge", "ana")
    # Shorter paths: open -> contained, open -> resolved, acknowledged -> false_positive.
    b = record_alert(client, alert(key="b")).incident_id
    assert transition(client, b, "contain", "ana")["status"] == "contained"
    c = record_alert(client, alert(key="c")).incident_id
    assert transition(client, c, "resolve", "ana")["status"] == "resolved"
    d = record_alert(client, alert(key="d")).incident_id
    transition(client, d, "acknowledge", "ana")
    assert transition(client, d, "false_positive", "ana", reason="backup job")["status"] == "false_positive"


def _suppressed(client: Client) -> int:
    """Alerts dropped by a false-positive suppression (each counted once)."""
    return int(client.command("SELECT count() FROM alerts_seen FINAL WHERE outcome = 'suppressed'"))


def test_false_positive_needs_reason_and_suppresses_until_it_ends(client: Client) -> None:
    inc = record_alert(client, alert()).incident_id
    with pytest.raises(IncidentError, match="reason"):
        transition(client, inc, "false_positive", "ana")
    verdict_at = T0 + timedelta(hours=1)
    transition(client, inc, "false_positive", "ana", reason="nightly backup", at=verdict_at,
               suppress_for=timedelta(days=2))
    suppressed = record_alert(client, alert(at=T0 + timedelta(days=1)))
    assert suppressed.outcome == "suppressed" and suppressed.incident_id == inc
    assert record_alert(client, alert(key="bob", at=T0 + timedelta(days=1))).outcome == "opened"
    assert _suppressed(client) == 1
    reopened = record_alert(client, alert(at=verdict_at + timedelta(days=2, minutes=1)))
    assert reopened.outcome == "opened" and reopened.incident_id != inc
    # A suppressed alert replayed stays a duplicate (counted once).
    assert record_alert(client, alert(at=T0 + timedelta(days=1))).outcome == "duplicate"
    assert _suppressed(client) == 1


def test_list_ordering_and_filters(client: Client) -> None:
    specs = [("a", "SEV3", 0.99), ("b", "SEV1", 0.96), ("c", "SEV3", 0.999), ("d", "SEV2", 0.97),
             ("e", "SEV4", 0.5), ("f", "SEV1", 0.999)]
    ids = {key: record_alert(client, alert(key=key, severity=sev, score=score)).incident_id
           for key, sev, score in specs}
    assert [i["entity_key"] for i in list_incidents(client)] == ["f", "b", "d", "c", "a", "e"]
    assert [i["entity_key"] for i in list_incidents(client, min_severity="SEV2")] == ["f", "b", "d"]
    assert [i["entity_key"] for i in list_incidents(client, limit=2)] == ["f", "b"]
    transition(client, ids["b"], "acknowledge", "ana")
    assert [i["entity_key"] for i in list_incidents(client, status="acknowledged")] == ["b"]
    assert [i["entity_key"] for i in list_incidents(client, status="open", min_severity="SEV1")] == ["f"]
    with pytest.raises(IncidentError):
        list_incidents(client, min_severity="SEV9")


def test_audit_trail_in_order(client: Client) -> None:
    out = record_alert(client, alert())
    record_alert(client, alert(at=T0 + timedelta(hours=1), severity="SEV2"))
    inc = out.incident_id
    before = get_incident(client, inc)["updated_at"]
    transition(client, inc, "assign", "lead", reason="on call", assignee="ana")
    transition(client, inc, "acknowledge", "ana", reason="looking")
    transition(client, inc, "note", "ana", reason="export went to a personal bucket")
    transition(client, inc, "contain", "ana", reason="revoked the token")
    transition(client, inc, "resolve", "bob", reason="confirmed and closed")
    assert get_incident(client, inc)["updated_at"] > before
    events = incident_timeline(client, inc)
    assert [(e["actor"], e["action"], e["from_status"], e["to_status"]) for e in events] == [
        ("blastwall", "opened", "", "open"),
        ("blastwall", "updated", "open", "open"),
        ("lead", "assign", "open", "open"),
        ("ana", "acknowledge", "open", "acknowledged"),
        ("ana", "note", "acknowledged", "acknowledged"),
        ("ana", "contain", "acknowledged", "contained"),
        ("bob", "resolve", "contained", "resolved"),
    ]
    assert [e["reason"] for e in events[2:]] == [
        "on call", "looking", "export went to a personal bucket", "revoked the token", "confirmed and closed"]
    assert events[0]["alert_id"] == alert().alert_id and events[1]["details"]["severity_to"] == "SEV2"
    assert events[2]["details"]["assignee"] == "ana"


def test_alert_validation() -> None:
    with pytest.raises(ValueError):
        alert(severity="SEV5")
    with pytest.raises(ValueError):
        alert(score=1.5)
    a = alert()
    assert incident_id_for(a.alert_id) == incident_id_for(replace(a).alert_id) < 2**63


# ------------------------------------------------------------------ references (INC-n)


def test_references_are_sequential_and_survive_updates_and_transitions(client: Client) -> None:
    first = record_alert(client, alert(key="a"))
    second = record_alert(client, alert(key="b"))
    assert [get_incident(client, o.incident_id)["ref"] for o in (first, second)] == ["INC-1", "INC-2"]
    # An update (dedup) and a replay keep the reference, and take no new number.
    assert record_alert(client, alert(key="a", at=T0 + timedelta(hours=1), severity="SEV2")).outcome == "updated"
    assert record_alert(client, alert(key="a")).outcome == "duplicate"
    transition(client, first.incident_id, "acknowledge", "ana")
    transition(client, first.incident_id, "resolve", "ana", reason="done")
    assert get_incident(client, first.incident_id)["ref"] == "INC-1"
    third = record_alert(client, alert(key="a", at=T0 + timedelta(hours=2)))  # the first is resolved: a new one
    assert third.outcome == "opened" and get_incident(client, third.incident_id)["ref"] == "INC-3"
    assert sorted(i["ref"] for i in list_incidents(client)) == ["INC-1", "INC-2", "INC-3"]
    assert format_ref(12) == "INC-12"


def test_resolve_incident_reads_a_reference_or_an_id(client: Client) -> None:
    ids = [record_alert(client, alert(key=key)).incident_id for key in ("a", "b")]
    assert [resolve_incident(client, text) for text in ("INC-2", "inc-2", "  INC-1 ", "Inc 2")] == [
        ids[1], ids[1], ids[0], ids[1]]
    assert resolve_incident(client, str(ids[0])) == ids[0]
    with pytest.raises(IncidentError, match=r"^no incident INC-99 in this store \(the newest is INC-2\)$"):
        resolve_incident(client, "INC-99")
    for junk in ("foo", "", "INC-", "-3", "3.5", "INC-2x", "9" * 25):
        with pytest.raises(IncidentError, match="is not an incident reference"):
            resolve_incident(client, junk)


def test_a_reference_two_writers_both_took_is_refused_not_guessed(client: Client) -> None:
    first = record_alert(client, alert(key="a")).incident_id
    # A second process against the same server numbered its incident before seeing the first one's.
    _old_incident(client, "b", 5, "from the other writer")
    client.command("ALTER TABLE incidents UPDATE ref = 1 WHERE id = {id:UInt64}",
                   parameters={"id": incident_id_for("b")}, settings={"mutations_sync": 1})
    with pytest.raises(IncidentError, match=r"^INC-1 names two incidents \(\d+ and \d+\); use the numeric id$"):
        resolve_incident(client, "INC-1")
    assert resolve_incident(client, str(first)) == first


def test_resolve_incident_on_an_empty_store_says_so(client: Client) -> None:
    with pytest.raises(IncidentError, match=r"^no incident INC-1 in this store \(it holds no incidents\)$"):
        resolve_incident(client, "INC-1")


def _old_incident(client: Client, key: str, created_s: int, title: str, version_s: int = 0) -> None:
    """An incident as the code before references wrote it (no ref column), created ``created_s`` after T0."""
    row = {"id": incident_id_for(key), "detector": "bulk_export", "entity": "principal", "entity_key": key,
           "title": title, "severity": "SEV3", "status": "open", "score": 0.9, "principals": [key], "resources": [],
           "first_seen": T0, "last_seen": T0, "detected_at": T0, "explanation": "[]", "group_key": "",
           "group_id": incident_id_for(key), "assignee": "", "opened_by": key, "alerts": 1,
           "created_at": T0 + timedelta(seconds=created_s), "updated_at": T0 + timedelta(seconds=created_s + version_s)}
    client.insert("incidents", [list(row.values())], column_names=list(row))


def test_the_migration_numbers_the_incidents_of_an_old_store(store_dsn: str) -> None:
    from blastwall.schema import init_schema
    from blastwall.store import close_store, open_store

    old = open_store(store_dsn)
    try:
        init_schema(old, up_to={"detector.incidents": 1})
        assert "ref" not in {r[0] for r in old.query("DESCRIBE TABLE incidents").result_rows}
        _old_incident(old, "a", 30, "a, first version")
        _old_incident(old, "b", 10, "b")
        _old_incident(old, "c", 20, "c")
        _old_incident(old, "a", 30, "a, newest version", version_s=5)
        before = old.query("SELECT * FROM incidents FINAL ORDER BY id").named_results()
        before = [r | {"updated_at": r["updated_at"] + timedelta(milliseconds=1)} for r in before]

        applied = init_schema(old)

        assert ("detector.incidents", 2) in [(m.package, m.version) for m in applied]
        after = {i["id"]: i for i in list_incidents(old)}
        # Numbered in the order they were created; every other field as it was (the newest
        # version), in a version 1 ms newer.
        assert [after[incident_id_for(key)]["ref"] for key in ("b", "c", "a")] == ["INC-1", "INC-2", "INC-3"]
        assert after[incident_id_for("a")]["title"] == "a, newest version"
        assert list(old.query("SELECT * EXCEPT ref FROM incidents FINAL ORDER BY id").named_results()) == before
        # New incidents continue the numbering; running init again changes nothing.
        opened = record_alert(old, alert(key="d"))
        assert get_incident(old, opened.incident_id)["ref"] == "INC-4"
        rows = old.query("SELECT count() FROM incidents").result_rows
        assert init_schema(old) == []
        assert old.query("SELECT count() FROM incidents").result_rows == rows
        assert sorted(i["ref"] for i in list_incidents(old)) == ["INC-1", "INC-2", "INC-3", "INC-4"]
    finally:
        close_store(old)


def test_the_migration_can_run_again_after_it_failed_halfway(client: Client) -> None:
    from detector.incidents import MIGRATIONS

    record_alert(client, alert(key="a"))
    client.command("ALTER TABLE incidents UPDATE ref = 0 WHERE 1 SETTINGS mutations_sync = 1")  # as if not numbered
    statements = dict(MIGRATIONS)[2]
    for _ in range(2):  # a retry runs every statement again
        for statement in statements:
            client.command(statement)
    assert [i["ref"] for i in list_incidents(client)] == ["INC-1"]
