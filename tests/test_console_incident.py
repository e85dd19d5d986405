"""The incident page as an analyst reads it (issue 17): the four answers, honest pages, lifecycle, words.

Each test is one thing an analyst tripped over in a real browser; it fails on the view
as it was. The organisation is `org` (tests/console_org.py): a generated company with a
SEV1 grant of restricted data to all-staff, a SEV2 export and a SEV4 outlier.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from builders import alert
from console_org import _plain, open_incident

from blastwall.config import load_settings
from dashboard import briefing
from detector.incidents import allowed_actions, get_incident, incident_timeline, record_alert


def _respond(org: dict) -> None:
    """What the hosted respond job does: the matching playbooks run on every new incident."""
    load_settings(None).responder(org["client"]).respond(datetime.now(UTC))


def _text(app) -> str:  # noqa: ANN001 - an AppTest
    """Everything the page wrote, as a reader sees it."""
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "success", "error", "title")
             for e in getattr(app, kind)]
    return _plain("\n".join(str(p) for p in parts)).replace("\u200b", "").replace("**", "")


def test_an_unrouted_page_says_nobody_was_paged_never_succeeded(org: dict) -> None:
    _respond(org)  # no paging settings: the SEV1 page is recorded unrouted
    app = open_incident(org, "analyst", org["ids"]["fanout"])
    text = _text(app)
    assert "Nobody was paged" in text and "Configure `paging:` channels" in text
    assert "SEV1 page: unrouted" in text
    assert "page: succeeded" not in text
    respond = open_incident(org, "analyst", org["ids"]["fanout"], "Respond")
    steps = next(t.value for t in respond.dataframe if "State" in t.value.columns)
    assert steps.set_index("Action").loc["page", "State"].startswith("SEV1 page: unrouted")
    timeline = open_incident(org, "analyst", org["ids"]["fanout"], "Timeline")
    rows = next(t.value for t in timeline.dataframe if "Did" in t.value.columns)
    assert not rows["What"].str.contains("page: succeeded").any()
    assert rows["What"].str.contains("page: ran — SEV1 page: unrouted").any()
    assert (rows["Did"] == "page").sum() == 1  # the page itself, from the page log


def test_a_contained_incident_offers_no_transition_it_would_refuse(org: dict) -> None:
    _respond(org)
    incident = org["ids"]["fanout"]
    assert get_incident(org["client"], incident)["status"] == "contained"
    app = open_incident(org, "analyst", incident)
    keys = {b.key for b in app.button}
    assert "do_ack" not in keys and "do_contain" not in keys
    assert "do_resolve" in keys
    assert allowed_actions("contained") == ("resolve", "false_positive", "assign", "note")
    assert allowed_actions("resolved") == ("note",)


def test_every_action_offered_is_accepted_and_nothing_else_is(org: dict) -> None:
    from detector.incidents import ACTIONS, IncidentError, transition

    paths = {"open": [], "acknowledged": ["acknowledge"], "contained": ["contain"], "resolved": ["resolve"],
             "false_positive": ["false_positive"]}
    for status, path in paths.items():
        for action in ACTIONS:
            if action == "release":
                continue
            incident = record_alert(org["client"], alert("bulk_export", f"{status}-{action}", "SEV3")).incident_id
            for step in path:
                transition(org["client"], incident, step, actor="ana", reason="why")
            offered = action in allowed_actions(status)
            try:
                transition(org["client"], incident, action, actor="ana", reason="why", assignee="bob")
            except IncidentError:
                assert not offered, f"{action} is offered on a {status} incident but refused"
            else:
                assert offered, f"{action} is accepted on a {status} incident but not offered"


def test_a_closed_incident_offers_no_approval_run_or_rollback(org: dict) -> None:
    from dashboard.state import forget_reads
    from detector.incidents import transition

    incident = org["ids"]["export"]
    app = open_incident(org, "responder", incident, "Respond")
    app.selectbox(key="do_playbook").set_value("embedding_export")
    app.button(key="do_run").click().run()
    transition(org["client"], incident, "resolve", actor="ana")
    forget_reads()  # as 5 s later: the console's reads are cached that long
    closed = open_incident(org, "responder", incident, "Respond")
    keys = {b.key for b in closed.button}
    assert not {k for k in keys if k.startswith(("approve_", "deny_"))} and "do_run" not in keys
    assert "still awaited a decision when the incident was resolved" in _text(closed)


def test_rollback_is_offered_only_while_there_is_something_to_undo(org: dict) -> None:
    incident = org["ids"]["export"]
    app = open_incident(org, "responder", incident, "Respond")
    app.selectbox(key="do_playbook").set_value("embedding_export")
    app.button(key="do_run").click().run()
    app.button(key="do_rollback").click().run()
    assert not app.exception and "rolled back: done" in _text(app)
    assert "do_rollback" not in {b.key for b in app.button}


def test_an_action_keeps_the_tab_the_analyst_was_on(org: dict) -> None:
    app = open_incident(org, "analyst", org["ids"]["export"], "Timeline")
    app.text_area(key="do_note").input("called the owner")
    app.button(key="do_add_note").click().run()
    assert not app.exception, app.exception
    assert app.session_state["incident_tab"] == "Timeline"
    rows = next(t.value for t in app.dataframe if "Did" in t.value.columns)
    assert rows.iloc[0]["Did"] == "note" and rows.iloc[0]["What"] == "called the owner"  # newest first


def test_the_four_answers_come_first_in_words(org: dict) -> None:
    _respond(org)
    app = open_incident(org, "analyst", org["ids"]["fanout"])
    text = _text(app)
    for heading in ("What happened", "How bad it is", "What was already done", "What to do next"):
        assert heading in text
    assert f"By {org['person']}, on {org['restricted']} (restricted dataset)." in text
    assert "SEV1 (page now): 4 points — +4 for a policy violation." in text
    assert f"revoked the grant of {org['restricted']} to all-staff at" in text and "reads denied since" in text
    assert "Runbook of restricted_fanout" in text
    ref = get_incident(org["client"], org["ids"]["fanout"])["ref"]
    assert f"blastwall rollback {ref}" in text and "INCIDENT" not in text  # commands to copy as they are
    assert "{'" not in text  # no raw Python dict


def test_pending_approvals_are_buttons_at_the_top(org: dict) -> None:
    incident = org["ids"]["export"]
    app = open_incident(org, "responder", incident, "Respond")
    app.selectbox(key="do_playbook").set_value("embedding_export")
    app.button(key="do_run").click().run()
    run_id = f"{incident}.embedding_export"
    why = open_incident(org, "responder", incident)  # the first tab: the approval is above the tabs
    assert why.button(key=f"approve_{run_id}_suspend_identity") is not None
    assert "waits for approval to suspend identity" in _text(why)


def test_why_speaks_in_the_registry_words_against_baselines(org: dict) -> None:
    app = open_incident(org, "viewer", org["ids"]["export"])
    text = _text(app)
    assert "bytes exported: 9.0 GB; normally 1.0 MB, 9,000× normal" in text
    assert "bytes_exported" not in text
    fanout = _text(open_incident(org, "viewer", org["ids"]["fanout"]))
    assert "people newly able to read the resource: 55" in fanout
    assert "audience_gain" not in fanout and "weight" not in fanout  # one weight says nothing: not shown


def test_reasons_against_hand_written_explanations() -> None:
    found = briefing.reasons([
        {"feature": "bytes_exported", "value": 4.1e10, "baseline": 1.2e8, "weight": 0.62},
        {"feature": "grantee_external", "value": 1, "baseline": None, "weight": 0.38},
        {"feature": "sensitivity_rank", "value": 3, "baseline": 0, "weight": None},
        {"rule": "grant.external", "severity_points": {"evidence": 3}},
    ])
    assert [r.sentence for r in found] == [
        "bytes exported: 41 GB; normally 120 MB, 342× normal",
        "grantee is outside the organisation: yes",
        "sensitivity of the resource (0 public .. 3 restricted): restricted",
    ]
    assert [r.weight for r in found] == [0.62, 0.38, None]
    assert briefing.chart_rows(found) == [{"evidence": "bytes exported", "times normal": 341.67}]
    equal = briefing.reasons([{"feature": "events", "value": 5, "baseline": 0, "weight": 0.5},
                              {"feature": "exports", "value": 2, "baseline": 0, "weight": 0.5}])
    assert [r.weight for r in equal] == [None, None]


def test_how_bad_reads_the_points_as_a_sentence() -> None:
    incident = {"severity": "SEV2", "explanation": [
        {"severity_points": {"evidence": 2, "data": 2, "blast_radius": 1, "actor": 0, "detector": -1}}]}
    assert briefing.how_bad(incident) == ("SEV2 (page): 4 points — +2 for the evidence, +2 for the data's "
                                          "sensitivity, +1 for the blast radius, −1 for the detector.")
    assert briefing.how_bad({"severity": "SEV4", "explanation": []}) == "SEV4 (record)."


def test_times_scores_and_drill_down_are_readable(org: dict) -> None:
    app = open_incident(org, "viewer", org["ids"]["fanout"], "Evidence")
    text = _text(app)
    assert "+00:00" not in text and "0.999000" not in text
    drilled = str(app.json[0].value)
    assert "Timestamp(" not in drilled and "event_time" not in drilled and "Time" in drilled
    radius = open_incident(org, "viewer", org["ids"]["fanout"], "Blast radius")
    readers = [t.value for t in radius.dataframe if "First time" in t.value.columns]
    for table in readers:
        assert set(table["First time"]) <= {"yes", "no"}


def test_the_timeline_is_newest_first_and_not_cut(org: dict) -> None:
    incident = org["ids"]["outlier"]
    app = open_incident(org, "analyst", incident, "Timeline")
    for n in range(12):
        app.text_area(key="do_note").input(f"note {n}")
        app.button(key="do_add_note").click().run()
    rows = next(t.value for t in app.dataframe if "Did" in t.value.columns)
    assert len(rows) == len(incident_timeline(org["client"], incident)) == 13
    assert rows.iloc[0]["What"] == "note 11"


def test_what_a_revoked_grant_denied_counts_only_its_readers_while_it_held(client) -> None:  # noqa: ANN001
    import pyarrow as pa
    from builders import MONDAY, event_row, membership_row

    from features.contract import arrow_schema

    def at(minutes: int) -> datetime:
        return MONDAY + timedelta(minutes=minutes)

    memberships = [membership_row("ml", "ana"), membership_row("ml", "ml-leads"), membership_row("ml-leads", "bo")]
    events = [event_row(at(m), who, action, resource, status=status, event_id=f"e{n}") for n, (m, who, action,
              resource, status) in enumerate([
                  (5, "ana", "read", "ds.x", "denied"),    # reached through ml: counts
                  (6, "bo", "query", "ds.x", "denied"),    # reached through ml -> ml-leads: counts
                  (7, "cy", "read", "ds.x", "denied"),     # never reached by the grant: not its doing
                  (8, "ana", "write", "ds.x", "denied"),   # not a read
                  (9, "ana", "read", "ds.y", "denied"),    # another resource
                  (10, "ana", "read", "ds.x", "ok"),       # allowed
                  (1, "ana", "read", "ds.x", "denied"),    # before the revoke
                  (30, "bo", "read", "ds.x", "denied"),    # after it was rolled back
              ])]
    client.insert_arrow("memberships", pa.Table.from_pylist(memberships, schema=arrow_schema("memberships")))
    client.insert_arrow("access_log", pa.Table.from_pylist(
        [{**e, "attributes": list(e["attributes"].items())} for e in events], schema=arrow_schema("access_log")))
    assert briefing.denied_by_control(client, "grant", "ds.x -> ml", at(2), None) == 3
    assert briefing.denied_by_control(client, "grant", "ds.x -> ml", at(2), at(20)) == 2
    assert briefing.denied_by_control(client, "identity", "ana", at(0), None) == 4
    assert briefing.denied_by_control(client, "resource", "ds.x", at(2), at(20)) == 4
    assert briefing.denied_by_control(client, "training_run", "run.x", at(0), None) == 0
