"""The window of exposure of a grant incident (issue 18, item 4): how long the data stayed readable, who read it.

``briefing.exposure_window`` is checked against a small hand-made store whose answer is
worked out here by hand; the incident page is checked on the console's test organisation
(`org`, tests/console_org.py) with a grant event added to it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from builders import T0, alert, event_row, membership_row
from clickhouse_connect.driver.client import Client
from console_org import MIDNIGHT, _plain, open_incident

from dashboard import briefing
from detector.groups import membership_edges, reachable_members
from detector.incidents import get_incident, record_alert
from features.contract import arrow_schema
from playbooks.actions import write_control


def at(minutes: int, seconds: int = 0) -> datetime:
    """``minutes`` (and ``seconds``) after Monday 09:00 UTC."""
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def _insert_events(client: Client, events: list[dict[str, Any]]) -> None:
    client.insert_arrow("access_log", pa.Table.from_pylist(
        [{**e, "attributes": list(e["attributes"].items())} for e in events], schema=arrow_schema("access_log")))


def _events(rows: list[tuple]) -> list[dict[str, Any]]:
    """Access-log rows from ``(time, who, action, resource, fields)`` (fields: status, grantee, rows, bytes)."""
    return [event_row(time, who, action, resource, event_id=f"e{n}", **fields)
            for n, (time, who, action, resource, fields) in enumerate(rows)]


def _grant_incident(client: Client, resource: str, grantee: str, last_seen: datetime) -> dict[str, Any]:
    """A stored permission_fanout incident about ``resource -> grantee``, its pair in the explanation."""
    explanation = [{"rule": "grant.mass_audience", "grant": {"resource": resource, "grantee": grantee},
                    "severity_points": {"policy": 4}}]
    incident_id = record_alert(client, alert(
        "permission_fanout", f"{resource} -> {grantee}", "SEV1", at=at(0), entity="grant", principals=("gus",),
        resources=(resource,), explanation=explanation, last_seen=last_seen)).incident_id
    return get_incident(client, incident_id)


def _control(client: Client, target: str, in_force: bool, moment: datetime, incident_id: int = 1) -> None:
    write_control(client, "grant", target, in_force, incident_id=incident_id, run_id=f"{incident_id}.restricted_fanout",
                  step="revoke", actor="blastwall", reason="test", at=moment)


def _organisation(client: Client) -> None:
    """ml = {ana, hal, ml-leads = {bo, fay, gus}}; dee left ml; cy is in no group."""
    memberships = [membership_row("ml", "ana"), membership_row("ml", "hal"), membership_row("ml", "ml-leads"),
                   membership_row("ml-leads", "bo"), membership_row("ml-leads", "fay"),
                   membership_row("ml-leads", "gus"), membership_row("ml", "dee", removed=1)]
    client.insert_arrow("memberships", pa.Table.from_pylist(memberships, schema=arrow_schema("memberships")))


def test_the_window_runs_from_the_grant_to_its_revoke_and_counts_only_the_reads_it_allowed(client: Client) -> None:
    _organisation(client)
    _insert_events(client, _events([
        (at(1), "eve", "grant", "ds.x", {"grantee": "ml"}),                       # an older grant: not the newest
        (at(2), "ana", "read", "ds.x", {"rows": 5, "bytes": 500}),                # before the grant
        (at(3), "gus", "read", "ds.x", {"rows": 1, "bytes": 100}),                # before the grant
        (at(10, 7), "gus", "grant", "ds.x", {"grantee": "ml"}),                   # THE grant
        (at(10, 30), "mal", "grant", "ds.x", {"grantee": "ml", "status": "denied"}),  # not ok: not a grant
        (at(10, 40), "gus", "grant", "ds.x", {"grantee": "team-x"}),              # another grantee
        (at(11), "ana", "read", "ds.x", {"rows": 10, "bytes": 1000}),             # counted
        (at(12), "ana", "query", "ds.x", {"rows": 20, "bytes": 2000}),            # counted
        (at(13), "bo", "export", "ds.x", {"rows": 30, "bytes": 3000}),            # counted (ml > ml-leads)
        (at(14), "bo", "train", "ds.x", {"rows": 1, "bytes": 4_000_000}),         # counted (a training run reads)
        (at(15), "cy", "read", "ds.x", {"rows": 100, "bytes": 100_000}),    # not reached by the grant
        (at(16), "gus", "read", "ds.x", {"rows": 7, "bytes": 700}),               # the granter himself
        (at(17), "ana", "read", "ds.x", {"status": "denied"}),                    # denied
        (at(17, 30), "hal", "read", "ds.x", {"status": "error", "rows": 9}),      # failed
        (at(18), "ana", "write", "ds.x", {"rows": 50, "bytes": 5000}),            # not a read
        (at(19), "ana", "read", "ds.y", {"rows": 60, "bytes": 6000}),             # another resource
        (at(20), "dee", "read", "ds.x", {"rows": 70, "bytes": 7000}),             # left ml: not reached
        (at(21), "ana", "download", "ds.x", {"rows": 3, "bytes": 300}),           # counted
        (at(22), "fay", "read", "ds.x", {"rows": 2, "bytes": 200}),               # counted
        (at(23), "hal", "read", "ds.x", {"rows": 4, "bytes": 400}),               # counted
        (at(25, 29), "bo", "read", "ds.x", {"rows": 8, "bytes": 800}),            # counted: just before the revoke
        (at(25, 30), "fay", "read", "ds.x", {"rows": 90, "bytes": 9000}),         # at the revoke: after it
        (at(26), "ana", "read", "ds.x", {"rows": 80, "bytes": 8000}),             # after the revoke
        (at(40), "gus", "revoke", "ds.x", {"grantee": "ml"}),                     # later than the control
        (at(45), "gus", "grant", "ds.x", {"grantee": "ml"}),                      # after the incident's evidence
    ]))
    _control(client, "ds.x -> ml", True, at(5))         # a control of an earlier grant: before this one
    _control(client, "ds.x -> ml", False, at(6))
    _control(client, "ds.x -> team-x", True, at(24))    # another grant's control
    _control(client, "ds.x -> ml", True, at(25, 30))    # THE revoke (blastwall's containment)
    _control(client, "ds.x -> ml", True, at(27))
    incident = _grant_incident(client, "ds.x", "ml", last_seen=at(30))
    now = at(60)

    window = briefing.exposure_window(client, incident, now)

    assert window == briefing.ExposureWindow(
        resource="ds.x", grantee="ml", granter="gus", granted_at=at(10, 7), revoked_at=at(25, 30),
        reads=8, readers=4, rows=10 + 20 + 30 + 1 + 3 + 2 + 4 + 8, bytes=1000 + 2000 + 3000 + 4_000_000 + 300 + 200
        + 400 + 800, top_readers=[("ana", 3), ("bo", 3), ("fay", 1)])
    assert window.granted_at.tzinfo is not None and window.length(now) == timedelta(minutes=15, seconds=23)
    assert window.words(now, UTC) == (
        "15 min 23 s — granted by gus at 09:10:07 UTC, revoked at 09:25:30 UTC; 8 reads by 4 people in between "
        "(4.0 MB, 78 records); most by ana (3), bo (3), fay (1).")
    # An incident stored before the detector kept the pair is read from its key: the same window.
    keyed = {**incident, "explanation": [{k: v for k, v in item.items() if k != "grant"}
                                         for item in incident["explanation"]]}
    assert briefing.exposure_window(client, keyed, now) == window


def test_a_revoke_event_before_the_control_closes_the_window(client: Client) -> None:
    _organisation(client)
    _insert_events(client, _events([
        (at(30), "gus", "grant", "ds.w", {"grantee": "ml"}),
        (at(31), "gus", "revoke", "ds.w", {"grantee": "ml", "status": "denied"}),  # failed: still granted
        (at(31, 30), "gus", "revoke", "ds.w", {"grantee": "cy"}),                  # another grantee
        (at(32), "ana", "read", "ds.w", {"rows": 1, "bytes": 10}),
        (at(33), "gus", "revoke", "ds.w", {"grantee": "ml"}),                      # THE revoke
        (at(34), "ana", "read", "ds.w", {"rows": 2, "bytes": 20}),
    ]))
    _control(client, "ds.w -> ml", True, at(35))
    window = briefing.exposure_window(client, _grant_incident(client, "ds.w", "ml", last_seen=at(32)), at(60))
    assert window is not None
    assert (window.granted_at, window.revoked_at) == (at(30), at(33))
    assert (window.reads, window.readers, window.rows, window.bytes, window.top_readers) == (1, 1, 1, 10, [("ana", 1)])
    assert window.words(at(60), UTC) == ("3 min — granted by gus at 09:30:00 UTC, revoked at 09:33:00 UTC; 1 read by "
                                         "1 person in between (10 B, 1 record); most by ana (1).")


def test_a_window_not_revoked_yet_is_open_until_now(client: Client) -> None:
    _insert_events(client, _events([
        (at(50, 7), "gus", "grant", "ds.z", {"grantee": "ana@gmail.example"}),  # to an outside account
        (at(52), "ana@gmail.example", "download", "ds.z", {"rows": 40, "bytes": 2_500_000}),
        (at(55), "ana@gmail.example", "read", "ds.z", {"rows": 2, "bytes": 500}),
        (at(56), "gus", "read", "ds.z", {"rows": 1, "bytes": 1}),                # the granter
        (at(65), "ana@gmail.example", "read", "ds.z", {"rows": 9, "bytes": 9}),  # after now
    ]))
    _control(client, "ds.z -> someone-else", True, at(53))
    incident = _grant_incident(client, "ds.z", "ana@gmail.example", last_seen=at(55))
    now = at(60)
    window = briefing.exposure_window(client, incident, now)
    assert window is not None and window.revoked_at is None and window.granter == "gus"
    assert (window.reads, window.readers, window.rows, window.bytes) == (2, 1, 42, 2_500_500)
    assert window.top_readers == [("ana@gmail.example", 2)]
    assert window.length(now) == timedelta(minutes=9, seconds=53)
    assert window.words(now, UTC) == (
        "still open, 9 min 53 s so far — granted by gus at 09:50:07 UTC, not revoked yet; 2 reads by 1 person so far "
        "(2.5 MB, 42 records); most by ana@gmail.example (2).")


def test_nothing_read_in_the_window_says_so(client: Client) -> None:
    _insert_events(client, _events([(at(1), "gus", "grant", "ds.q", {"grantee": "bo"}),
                                     (at(0), "bo", "read", "ds.q", {"rows": 1})]))
    window = briefing.exposure_window(client, _grant_incident(client, "ds.q", "bo", last_seen=at(5)), at(61))
    assert window is not None and (window.reads, window.readers, window.rows, window.bytes) == (0, 0, 0, 0)
    assert window.top_readers == []
    assert window.words(at(61), UTC) == ("still open, 1 h so far — granted by gus at 09:01:00 UTC, not revoked yet; "
                                         "nobody the grant reached read it so far.")


def test_no_window_for_an_incident_not_about_a_grant_or_whose_grant_is_not_logged(client: Client) -> None:
    _insert_events(client, _events([(at(1), "gus", "grant", "ds.x", {"grantee": "ml"}),
                                    (at(2), "gus", "export", "ds.x", {"rows": 5})]))
    export = get_incident(client, record_alert(client, alert("bulk_export", "gus", "SEV2", at=at(0),
                                                             resources=("ds.x",))).incident_id)
    assert briefing.exposure_window(client, export, at(60)) is None
    assert briefing.exposure_window(client, _grant_incident(client, "ds.v", "ml", last_seen=at(30)), at(60)) is None
    # A grant logged only after the incident's evidence is not the incident's grant.
    late = _grant_incident(client, "ds.x", "ml", last_seen=at(0, 30))
    assert briefing.exposure_window(client, late, at(60)) is None


def _window_line(app) -> str | None:  # noqa: ANN001 - an AppTest
    """The page's window-of-exposure line as a reader sees it, or ``None``."""
    lines = [_plain(str(e.value)).replace("\u200b", "").replace("**", "") for e in app.markdown]
    found = [line for line in lines if line.startswith("Window of exposure:")]
    return found[0] if found else None


def test_the_grant_incident_page_shows_the_window_in_words(org: dict) -> None:
    from blastwall.config import load_settings
    from dashboard.state import forget_reads

    seen = MIDNIGHT - timedelta(hours=14)  # the fanout incident's first evidence (tests/console_org.py)
    granted = seen + timedelta(hours=1, minutes=2, seconds=3)
    reader = next(member for member, _ in reachable_members(membership_edges(org["client"]), "all-staff")
                  if member != org["person"])
    _insert_events(org["client"], [
        event_row(granted, org["person"], "grant", org["restricted"], grantee="all-staff", event_id="the-grant"),
        *[event_row(granted + timedelta(minutes=n), reader, "read", org["restricted"], rows=10, bytes=2_000_000,
                    event_id=f"read-{n}") for n in (2, 3, 4)]])
    line = _window_line(open_incident(org, "analyst", org["ids"]["fanout"]))
    assert line is not None, "no window of exposure on the grant incident's page"
    assert line.startswith("Window of exposure: still open, ") and " so far — " in line
    assert f"granted by {org['person']} at " in line and f"{granted:%H:%M:%S} UTC, not revoked yet; " in line
    assert " so far (" in line and " MB, " in line and f"most by {reader} (3)" in line
    assert "{" not in line and "None" not in line

    load_settings(None).responder(org["client"]).respond(datetime.now(UTC))  # the playbook revokes the grant
    forget_reads()
    revoked = _window_line(open_incident(org, "analyst", org["ids"]["fanout"]))
    assert revoked is not None and "still open" not in revoked
    assert f"{granted:%H:%M:%S} UTC, revoked at " in revoked
    assert "in between" in revoked

    assert _window_line(open_incident(org, "analyst", org["ids"]["export"])) is None  # not about a grant
