"""The SOC console under Streamlit's AppTest, on a real embedded store seeded by the generator.

Every view renders, and every action goes through the signed-in user's role, checked on
the server: what a role may not do shows an error and changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from console_org import APP, ROLES, _plain, console, open_incident
from streamlit.testing.v1 import AppTest

from blastwall.access import add_account
from dashboard import style
from dashboard.state import ConsoleOptions
from detector.incidents import get_incident, incident_timeline
from playbooks.actions import controls_in_force


def test_repeated_failed_sign_ins_are_held_back(org: dict) -> None:
    from dashboard.state import SIGN_IN_THROTTLE

    app = console(org, role=None)
    try:
        for _ in range(SIGN_IN_THROTTLE.free):
            app.text_input(key="sign_in_user").input("admin")
            app.text_input(key="sign_in_password").input("guess")
            app.button[0].click().run()
        app.text_input(key="sign_in_password").input("admin-password")  # right, but too soon
        app.button[0].click().run()
        assert "user" not in app.session_state
        assert any("Too many failed sign-ins" in _plain(e.value) for e in app.error)
    finally:
        SIGN_IN_THROTTLE.record("admin", "", ok=True)  # other tests sign in as admin


def test_sign_in_with_a_local_account(org: dict) -> None:
    app = console(org, role=None)
    assert not app.exception
    assert app.title[0].value == "blastwall" and len(app.text_input) == 2
    app.text_input(key="sign_in_user").input("responder")
    app.text_input(key="sign_in_password").input("wrong")
    app.button[0].click().run()
    assert any("Wrong user or password" in _plain(e.value) for e in app.error)
    app.text_input(key="sign_in_password").input("responder-password")
    app.button[0].click().run()
    assert not app.exception
    assert app.session_state["user"].role == "responder"
    assert app.title[0].value == "Queue"


def test_queue_ranks_by_severity_and_filters(org: dict) -> None:
    app = console(org, "viewer")
    assert not app.exception, app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert metrics == {"SEV1": "1", "SEV2": "1", "SEV3": "0", "SEV4": "1"}
    table = app.dataframe[0].value
    assert list(table["Severity"]) == ["SEV1", "SEV2", "SEV4"]
    app.multiselect(key="q_severity").set_value(["SEV2"]).run()
    assert list(app.dataframe[0].value["Detector"]) == ["bulk_export"]
    assert {m.label: m.value for m in app.metric}["SEV1"] == "0"
    app.multiselect(key="q_severity").set_value(["SEV3"]).run()
    assert any("No open, acknowledged or contained incident matches severity SEV3" in _plain(i.value)
               for i in app.info)
    assert any("Detection has not processed a step yet" in i.value for i in app.info)


def test_opening_an_incident_from_the_queue(org: dict) -> None:
    app = console(org, "viewer")
    app.selectbox(key="q_open").set_value(org["ids"]["export"])
    app.button(key="q_open_button").click().run()
    assert not app.exception, app.exception
    assert app.session_state["incident_id"] == org["ids"]["export"]
    assert app.title[0].value == style.text(f"bulk_export on {org['person']}")  # shown as text


def test_incident_view_explains_shows_evidence_radius_and_timeline(org: dict) -> None:
    app = open_incident(org, "viewer", org["ids"]["fanout"])
    assert app.title[0].value.startswith(style.text("permission_fanout on"))
    radius = open_incident(org, "viewer", org["ids"]["fanout"], "Blast radius")
    labels = {m.label: m.value for m in radius.metric}
    assert labels["Able to read (through the grant)"] != "0"
    audience = next(t.value for t in radius.dataframe if "Through groups" in t.value.columns)
    assert audience["Through groups"].astype(str).str.startswith("all-staff").all()
    timeline = open_incident(org, "viewer", org["ids"]["fanout"], "Timeline")
    rows = next(t.value for t in timeline.dataframe if "Did" in t.value.columns)
    assert list(rows["Did"]) == ["opened"]
    evidence = open_incident(org, "viewer", org["ids"]["fanout"], "Evidence")
    table = next(t.value for t in evidence.dataframe if "Event" in t.value.columns)
    assert len(table) > 0 and set(table["Data"]) & {org["restricted"]} | set(table["Who"]) & {org["person"]}


@pytest.mark.parametrize("role", ROLES)
def test_acknowledge_needs_an_analyst(org: dict, role: str) -> None:
    incident = org["ids"]["fanout"]
    app = open_incident(org, role, incident)
    app.button(key="do_ack").click().run()
    assert not app.exception, app.exception
    status = get_incident(org["client"], incident)["status"]
    if role == "viewer":
        assert status == "open"
        assert any("may not acknowledge" in _plain(e.value) for e in app.error)
        assert incident_timeline(org["client"], incident)[-1]["action"] == "denied_action"
    else:
        assert status == "acknowledged"
        assert incident_timeline(org["client"], incident)[-1]["actor"] == role


def test_assign_note_false_positive_and_resolve(org: dict) -> None:
    incident = org["ids"]["export"]
    app = open_incident(org, "analyst", incident)
    app.text_input(key="do_assignee").input("bob")
    app.button(key="do_assign").click().run()
    app.text_area(key="do_note").input("checked the export destinations")
    app.button(key="do_add_note").click().run()
    assert get_incident(org["client"], incident)["assignee"] == "bob"
    assert incident_timeline(org["client"], incident)[-1]["reason"] == "checked the export destinations"
    app.button(key="do_fp").click().run()  # no reason: refused, shown
    assert any("needs a reason" in _plain(e.value) for e in app.error)
    app.text_input(key="do_fp_reason").input("sanctioned migration")
    app.button(key="do_fp").click().run()
    assert get_incident(org["client"], org["ids"]["export"])["status"] == "false_positive"
    other = open_incident(org, "analyst", org["ids"]["outlier"])
    other.button(key="do_resolve").click().run()
    assert get_incident(org["client"], org["ids"]["outlier"])["status"] == "resolved"


def test_run_approve_and_roll_back_need_a_responder(org: dict) -> None:
    incident = org["ids"]["export"]
    analyst = open_incident(org, "analyst", incident, "Respond")
    analyst.selectbox(key="do_playbook").set_value("embedding_export")
    analyst.button(key="do_run").click().run()
    assert any("may not run_playbook" in _plain(e.value) for e in analyst.error)

    responder = open_incident(org, "responder", incident, "Respond")
    responder.selectbox(key="do_playbook").set_value("embedding_export")
    responder.button(key="do_run").click().run()
    assert not responder.exception, responder.exception
    run_id = f"{incident}.embedding_export"
    assert responder.button(key=f"approve_{run_id}_suspend_identity") is not None
    analyst = open_incident(org, "analyst", incident)
    analyst.button(key=f"approve_{run_id}_suspend_identity").click().run()
    assert any("may not approve" in _plain(e.value) for e in analyst.error)
    assert controls_in_force(org["client"]) == []

    responder = open_incident(org, "responder", incident, "Respond")
    responder.button(key=f"approve_{run_id}_suspend_identity").click().run()
    assert [c["target"] for c in controls_in_force(org["client"])] == [org["person"]]
    assert get_incident(org["client"], incident)["status"] == "contained"
    responder.button(key="do_rollback").click().run()
    assert controls_in_force(org["client"]) == []
    assert get_incident(org["client"], incident)["status"] == "acknowledged"


def test_deny_a_pending_step(org: dict) -> None:
    incident = org["ids"]["export"]
    app = open_incident(org, "responder", incident, "Respond")
    app.selectbox(key="do_playbook").set_value("embedding_export")
    app.button(key="do_run").click().run()
    run_id = f"{incident}.embedding_export"
    app.text_input(key=f"reason_{run_id}_suspend_identity").input("sanctioned")
    app.button(key=f"deny_{run_id}_suspend_identity").click().run()
    assert not app.exception, app.exception
    assert controls_in_force(org["client"]) == []
    assert any("denied suspend_identity" in _plain(s.value) for s in app.success)


def test_overview_shows_health_trends_and_detector_quality(org: dict) -> None:
    app = console(org, "viewer")
    app.switch_page("views/overview.py").run()
    assert not app.exception, app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert int(metrics["Access events"].replace(",", "")) > 1000
    assert metrics["Last step ended"] == "never"
    quality = next(t.value for t in app.dataframe if "False-positive share" in t.value.columns)
    assert set(quality["Detector"]) == {"permission_fanout", "bulk_export", "behaviour_outlier"}


def test_playbooks_catalogue_controls_and_dry_run(org: dict) -> None:
    app = console(org, "viewer")
    app.switch_page("views/playbooks.py").run()
    assert not app.exception, app.exception
    assert len(app.expander) >= 11
    assert any("Nothing is contained" in m.value for m in app.markdown)
    app.text_input(key="dry_incident").input(str(org["ids"]["fanout"])).run()
    app.selectbox(key="dry_playbook").set_value("restricted_fanout")
    app.button(key="dry_run").click().run()
    assert any("4 steps would run at SEV1" in _plain(s.value) for s in app.success)
    plan = next(t.value for t in app.dataframe if "Does" in t.value.columns)
    assert list(plan["Step"]) == ["snapshot_readers", "revoke_grant", "notify_owner", "page"]
    assert controls_in_force(org["client"]) == []  # a dry run changes nothing


def test_with_oidc_configured_the_sign_in_page_offers_the_identity_provider(org: dict) -> None:
    app = AppTest.from_file(APP, default_timeout=90)
    app.session_state["options"] = ConsoleOptions(org["dsn"], None, org["accounts"], False, False)
    app.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                           "client_id": "blastwall", "client_secret": "s", "server_metadata_url":
                           "https://idp.example/.well-known/openid-configuration"}
    app.run()
    assert not app.exception, app.exception
    assert [b.label for b in app.button] == ["Sign in with your identity provider"]
    assert len(app.text_input) == 0  # no local password form when an identity provider is configured


def test_mark_contained_by_hand(org: dict) -> None:
    incident = org["ids"]["fanout"]
    app = open_incident(org, "analyst", incident)
    app.button(key="do_contain").click().run()
    assert not app.exception, app.exception
    assert get_incident(org["client"], incident)["status"] == "contained"
    assert any("contained: done" in _plain(s.value) for s in app.success)


def test_without_an_accounts_file_the_console_says_how_to_create_one(org: dict, tmp_path: Path) -> None:
    app = AppTest.from_file(APP, default_timeout=90)
    missing = tmp_path / "nowhere" / "accounts.yaml"
    app.session_state["options"] = ConsoleOptions(org["dsn"], None, missing, False, False)
    app.run()
    assert not app.exception, app.exception
    assert any(str(missing) in _plain(e.value) for e in app.error)
    assert any(f"blastwall account add USER --role admin --file {missing}" in i.value for i in app.info)
    assert "user" not in app.session_state


def test_a_demoted_account_loses_its_rights_at_its_next_action(org: dict) -> None:
    incident = org["ids"]["fanout"]
    app = open_incident(org, "analyst", incident)
    add_account(org["accounts"], "analyst", "viewer", "analyst-password")  # demoted while signed in
    app.button(key="do_ack").click().run()
    assert any("may not acknowledge" in _plain(e.value) for e in app.error)
    assert get_incident(org["client"], incident)["status"] == "open"


def test_the_console_hosts_one_scheduler_per_store_whatever_the_caches(org: dict) -> None:
    import streamlit as st

    from dashboard import state

    hosted = state.hosted_jobs(org["dsn"], None, False)
    try:
        assert hosted is not None
        assert {job.id for job in hosted.scheduler.get_jobs()} == {"detect", "fast_path", "retention", "escalate"}
        assert hosted.jobs.lock is state.store_lock(org["dsn"])
        st.cache_resource.clear()  # what any session can ask of Streamlit
        assert state.hosted_jobs(org["dsn"], None, False) is hosted
        assert state.store_lock(org["dsn"]) is hosted.jobs.lock
    finally:
        hosted.scheduler.shutdown(wait=True)
        state._HOSTED.pop(org["dsn"], None)
