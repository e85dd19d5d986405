"""The playbook engine on a real store: containment, approvals, failures, restarts, rollback, audit."""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from builders import T0, alert, ingest_rows, iso
from clickhouse_connect.driver.client import Client

from blastwall.schema import init_schema
from blastwall.store import close_store, open_store
from detector.incidents import (
    Alert,
    get_incident,
    incident_timeline,
    list_incidents,
    record_alert,
    transition,
)
from playbooks.actions import Integrations, controls_in_force, sign
from playbooks.engine import Responder, runs_for_incidents
from playbooks.model import load_library
from playbooks.paging import Pager, RoutingConfig

NOW = T0 + timedelta(minutes=20)
ROOT = Path(__file__).resolve().parent.parent


def _organisation(client: Client, tmp_path: Path) -> None:
    """A catalogue, some principals and the events the incidents below are about."""
    stamp = "2026-10-01T00:00:00Z"
    ingest_rows(client, tmp_path, "resources", [
        {"resource": "ds.telemetry", "kind": "dataset", "sensitivity": "restricted",
         "categories": ["employee_telemetry"], "owner": "people-analytics", "sanitized": 1, "updated_at": stamp},
        {"resource": "emb.hr_notes", "kind": "embedding", "sensitivity": "confidential", "categories": ["pii"],
         "owner": "hr", "sanitized": 1, "updated_at": stamp},
        {"resource": "ds.keystrokes", "kind": "dataset", "sensitivity": "restricted",
         "categories": ["employee_telemetry"], "owner": "people-analytics", "sanitized": 0, "updated_at": stamp},
        {"resource": "run.ft.7", "kind": "training_run", "sensitivity": "internal", "categories": [],
         "owner": "ml", "sanitized": 1, "updated_at": stamp},
    ])
    ingest_rows(client, tmp_path, "principals", [
        {"principal": p, "principal_type": t, "team": "x", "updated_at": stamp}
        for p, t in (("bob", "human"), ("agent.cleaner", "agent"), ("assistant", "agent"))])
    events = [{"event_time": iso(T0 + timedelta(minutes=i)), "event_id": f"r{i}",
               "principal": f"reader{i}", "action": "read", "resource": "ds.telemetry"} for i in range(6)]
    events += [{"event_time": iso(T0 + timedelta(minutes=i)), "event_id": f"x{i}",
                "principal": "bob", "action": "export", "resource": "emb.hr_notes", "bytes": 10**9}
               for i in range(4)]
    events.append({"event_time": "2026-09-01T00:00:00Z", "event_id": "old", "principal": "bob",
                   "action": "export", "resource": "emb.hr_notes"})  # long before: not evidence
    ingest_rows(client, tmp_path, "access_log", events)


def _fanout(severity: str = "SEV1") -> Alert:
    return alert("permission_fanout", "ds.telemetry -> all-staff", severity, entity="grant",
                 principals=("assistant",), resources=("ds.telemetry",),
                 explanation=[{"feature": "audience_gain", "value": 5000, "baseline": 0, "weight": 1},
                              {"rule": "grant.mass_audience", "severity_points": {}}])


def _embedding(severity: str) -> Alert:
    return alert("bulk_export", "bob", severity, resources=("emb.hr_notes",))


def _responder(client: Client, tmp_path: Path | None = None, routing: RoutingConfig | None = None,
               integrations: Integrations | None = None, extra: Path | None = None) -> Responder:
    folders = [ROOT / "playbooks" / "library"] + ([extra] if extra else [])
    return Responder(client, load_library(folders), Pager(client, routing), integrations, retry_wait=0.01)


def _minutes_later(minutes: int):  # noqa: ANN202
    """A wall clock this many minutes ahead (as a restart that long after a crash sees it)."""
    return lambda: time.time_ns() + minutes * 60 * 10**9


def _control_rows(client: Client) -> int:
    return int(client.query("SELECT count() FROM control_log").result_rows[0][0])


def test_fanout_is_contained_once_audited_and_rolled_back(client: Client, tmp_path: Path) -> None:
    _organisation(client, tmp_path)
    incident_id = record_alert(client, _fanout()).incident_id
    responder = _responder(client)

    summary = responder.respond(NOW)
    assert summary.incidents == 1 and [r.playbook for r in summary.runs] == ["restricted_fanout"]
    report = summary.runs[0]
    assert report.state == "succeeded"
    states = {s.step: s.state for s in report.steps}
    assert states == {"snapshot_readers": "succeeded", "revoke_grant": "succeeded", "notify_owner": "succeeded",
                      "page": "succeeded"}
    assert [(c["kind"], c["target"]) for c in controls_in_force(client)] == [
        ("grant", "ds.telemetry -> all-staff")]
    readers = next(s for s in report.steps if s.step == "snapshot_readers").result
    assert readers["rows"] == 6 and readers["readers"] == [f"reader{i}" for i in range(6)]
    assert get_incident(client, incident_id)["status"] == "contained"

    # Nothing runs twice: the incident is handled, and a manual re-run finds every step done.
    assert responder.respond(NOW + timedelta(minutes=1)).incidents == 0
    responder.run("restricted_fanout", incident_id, NOW + timedelta(minutes=2), actor="alice")
    assert _control_rows(client) == 1

    trail = incident_timeline(client, incident_id)
    step_events = [(e["details"]["step"], e["details"]["state"]) for e in trail if e["action"] == "playbook_step"]
    assert ("revoke_grant", "started") in step_events and ("revoke_grant", "succeeded") in step_events
    assert step_events.index(("revoke_grant", "started")) < step_events.index(("revoke_grant", "succeeded"))
    assert any(e["action"] == "contain" and e["actor"] == "playbook:restricted_fanout" for e in trail)

    undone = responder.rollback_incident(incident_id, actor="alice", now=NOW + timedelta(hours=1))
    assert [r.step for r in undone] == ["revoke_grant"]
    assert controls_in_force(client) == []
    assert get_incident(client, incident_id)["status"] == "acknowledged"
    runs = runs_for_incidents(client, [incident_id])[incident_id]
    assert runs[0]["state"] == "rolled_back"
    assert {s["step"]: s["state"] for s in runs[0]["steps"]}["revoke_grant"] == "rolled_back"


def test_rollback_restores_the_previous_state_not_blindly_lifts(client: Client, tmp_path: Path) -> None:
    """An identity already suspended before the playbook stays suspended after its rollback."""
    _organisation(client, tmp_path)
    from playbooks.actions import write_control

    write_control(client, "identity", "agent.cleaner", True, incident_id=0, run_id="manual", step="", actor="soc",
                  reason="suspended by hand", at=T0)
    incident_id = record_alert(client, alert("runaway_agent", "agent.cleaner", "SEV2")).incident_id
    responder = _responder(client)
    assert responder.respond(NOW).runs[0].state == "succeeded"
    responder.rollback_incident(incident_id, "alice", NOW + timedelta(minutes=5))
    assert [c["target"] for c in controls_in_force(client, "identity")] == ["agent.cleaner"]


def test_approval_pending_then_approved_executes_and_denied_never_does(client: Client, tmp_path: Path) -> None:
    _organisation(client, tmp_path)
    incident_id = record_alert(client, _embedding("SEV2")).incident_id
    responder = _responder(client)
    report = responder.respond(NOW).runs[0]
    assert report.playbook == "embedding_export" and report.state == "awaiting_approval"
    assert {s.step: s.state for s in report.steps} == {
        "snapshot_evidence": "succeeded", "page": "succeeded", "suspend_identity": "awaiting_approval"}
    assert controls_in_force(client) == []

    approved = responder.approve(report.run_id, "suspend_identity", actor="alice", now=NOW + timedelta(minutes=3),
                                 reason="no sanctioned export")
    assert approved.state == "succeeded"
    assert [c["target"] for c in controls_in_force(client, "identity")] == ["bob"]
    steps = [e for e in incident_timeline(client, incident_id) if e["action"] == "playbook_step"]
    assert [(e["actor"], e["details"]["state"]) for e in steps if e["details"]["step"] == "suspend_identity"] == [
        ("playbook:embedding_export", "awaiting_approval"), ("alice", "approved"),
        ("alice", "started"), ("alice", "succeeded")]  # the approver carries the run on
    assert controls_in_force(client, "identity")[0]["actor"] == "alice"

    # The same flow, denied: the step never executes.
    other = record_alert(client, alert("bulk_export", "carol", "SEV3", resources=("emb.hr_notes",))).incident_id
    pending = responder.respond(NOW).runs[0]
    assert pending.incident_id == other and pending.state == "awaiting_approval"
    denied = responder.deny(pending.run_id, "suspend_identity", "alice", NOW, reason="sanctioned migration")
    assert {s.step: s.state for s in denied.steps}["suspend_identity"] == "denied"
    assert "carol" not in [c["target"] for c in controls_in_force(client, "identity")]


def test_a_severity_rise_opens_a_gate_the_new_severity_does_not_need(client: Client, tmp_path: Path) -> None:
    _organisation(client, tmp_path)
    record_alert(client, _embedding("SEV2"))
    responder = _responder(client)
    assert responder.respond(NOW).runs[0].state == "awaiting_approval"
    later = alert("bulk_export", "bob", "SEV1", resources=("emb.hr_notes",), at=T0 + timedelta(minutes=30))
    assert record_alert(client, later).severity_rose
    rerun = responder.respond(NOW + timedelta(minutes=50))
    assert rerun.incidents == 1 and rerun.runs[0].state == "succeeded"
    assert [c["target"] for c in controls_in_force(client, "identity")] == ["bob"]
    # The evidence snapshot and page of the first pass are not repeated.
    counts = client.query("SELECT step, countIf(state = 'started') FROM playbook_step_log GROUP BY step"
                          " ORDER BY step").result_rows
    assert counts == [("page", 1), ("snapshot_evidence", 1), ("suspend_identity", 1)]


def test_a_failing_action_is_recorded_made_visible_and_stops_nothing_else(client: Client, tmp_path: Path,
                                                                         receiver) -> None:
    _organisation(client, tmp_path)
    receiver.script("/iam", [500])
    integrations = Integrations(webhooks={"revoke_grant": receiver.url("/iam")}, attempts=2, wait_seconds=0.01)
    fanout = record_alert(client, _fanout()).incident_id
    agent = record_alert(client, alert("runaway_agent", "agent.cleaner", "SEV2")).incident_id
    responder = _responder(client, integrations=integrations)
    summary = responder.respond(NOW)
    assert summary.errors == []
    by_playbook = {r.playbook: r for r in summary.runs}
    failed = by_playbook["restricted_fanout"]
    assert failed.state == "failed"
    revoke = next(s for s in failed.steps if s.step == "revoke_grant")
    assert revoke.state == "failed" and "answered 500" in revoke.error and revoke.attempt == 3  # retries: 2
    assert len(receiver.at("/iam")) == 3 * 2  # 3 step attempts x 2 HTTP attempts each
    assert "notify_owner" not in {s.step for s in failed.steps}  # on_failure: stop
    assert by_playbook["runaway_agent"].state == "succeeded"  # the other incident went on
    errors = [i for i in list_incidents(client) if i["detector"] == "playbook_error"]
    assert len(errors) == 1 and errors[0]["severity"] == "SEV1" and str(fanout) in errors[0]["title"]
    assert agent != fanout
    # The grant was not revoked where it matters, so the control table does not claim it.
    assert [c["kind"] for c in controls_in_force(client)] == ["identity"]


def test_dry_run_writes_nothing(client: Client, tmp_path: Path) -> None:
    _organisation(client, tmp_path)
    incident_id = record_alert(client, _fanout("SEV3")).incident_id
    tables = ("control_log", "playbook_step_log", "playbook_runs", "evidence", "incident_events", "pages")

    def counts() -> list[int]:
        return [int(client.query(f"SELECT count() FROM {t}").result_rows[0][0]) for t in tables]

    before = counts()
    planned, steps = _responder(client).dry_run("restricted_fanout", incident_id)
    assert counts() == before
    assert planned is not None and [s.planned.name for s in steps] == [
        "snapshot_readers", "revoke_grant", "notify_owner", "page"]
    assert [s.planned.needs_approval for s in steps] == [False, True, False, False]
    assert steps[1].planned.description == "revoke grant ds.telemetry -> all-staff" and steps[1].state == ""


def test_a_restart_after_the_side_effect_does_not_repeat_it(client: Client, tmp_path: Path) -> None:
    """The process dies after the control was written but before the outcome: verify settles it."""
    _organisation(client, tmp_path)
    incident_id = record_alert(client, alert("runaway_agent", "agent.cleaner", "SEV2")).incident_id
    responder = _responder(client)
    context = responder._context(incident_id)
    planned = responder._plan(responder.library.playbooks["runaway_agent"], context)
    step = planned.steps[0]
    run_id = f"{incident_id}.runaway_agent"
    # What _execute writes before the side effect, then the side effect itself, then the "crash".
    responder._write_run(run_id, context, "runaway_agent", "running", "live", "playbook:runaway_agent", planned, "",
                         NOW)
    responder._log(run_id, context, "runaway_agent", step, 0, "started", 1, "playbook:runaway_agent", NOW)
    from playbooks.actions import REGISTRY

    action = REGISTRY[step.action]
    action.execute(responder._action_context(context, run_id, step.name, "playbook:runaway_agent", NOW),
                   action.Params.model_validate(step.params))
    assert _control_rows(client) == 1

    restarted = _responder(client)  # a new process: nothing in memory
    assert restarted.recover(NOW) == []  # too soon: it may still be running
    settled = restarted.recover(NOW, clock=_minutes_later(5))
    assert [(s.step, s.state) for s in settled] == [("suspend_agent", "succeeded")]
    assert _control_rows(client) == 1  # not executed again
    report = restarted.report(run_id)
    assert report.state == "succeeded"
    assert {s.step: s.state for s in report.steps} == {
        "suspend_agent": "succeeded", "snapshot_evidence": "succeeded", "page": "succeeded"}


def test_a_restart_before_the_side_effect_runs_it_exactly_once(client: Client, tmp_path: Path) -> None:
    _organisation(client, tmp_path)
    incident_id = record_alert(client, alert("runaway_agent", "agent.cleaner", "SEV2")).incident_id
    responder = _responder(client)
    context = responder._context(incident_id)
    planned = responder._plan(responder.library.playbooks["runaway_agent"], context)
    run_id = f"{incident_id}.runaway_agent"
    responder._write_run(run_id, context, "runaway_agent", "running", "live", "playbook:runaway_agent", planned, "",
                         NOW)
    responder._log(run_id, context, "runaway_agent", planned.steps[0], 0, "started", 1, "playbook:runaway_agent", NOW)
    settled = _responder(client).recover(NOW, clock=_minutes_later(5))
    assert [(s.step, s.state) for s in settled] == [("suspend_agent", "reset")]
    assert _control_rows(client) == 1
    assert [c["target"] for c in controls_in_force(client)] == ["agent.cleaner"]


_HANGING_PLAYBOOK = """\
description: calls a slow outside system
triggers: {detectors: [runaway_agent]}
steps:
  - name: tell_soar
    action: webhook
    with: {url: "URL", payload: {principal: "{{ incident.principal }}"}}
    timeout: 60s
runbook: [check the SOAR]
tests:
  - name: an agent is reported
    incident: {detector: runaway_agent, principals: [a]}
    expect: {steps: [tell_soar]}
  - name: secrets are not
    incident: {detector: secrets, principals: [a]}
    expect: {match: false}
"""


def test_a_process_killed_mid_step_is_not_repeated(tmp_path: Path, receiver) -> None:
    """A real crash: the CLI process is killed while its webhook call is in flight."""
    dsn = f"chdb://{tmp_path / 'store'}"
    client = open_store(dsn)
    try:
        init_schema(client)
        incident_id = record_alert(client, alert("secrets", "svc.ci", "SEV3")).incident_id
        record_alert(client, alert("runaway_agent", "agent.x", "SEV4"))
    finally:
        close_store(client)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "tell_soar.yaml").write_text(_HANGING_PLAYBOOK.replace("URL", receiver.url("/soar")), encoding="utf-8")
    receiver.script("/soar", [200], delay=30)
    agent_incident = next(i for i in _ids(dsn) if i != incident_id)
    process = subprocess.Popen(
        [sys.executable, "-m", "blastwall.cli", "--dsn", dsn, "playbook", "run", "tell_soar", "--incident",
         str(agent_incident), "--dir", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "CI": "true"})
    try:
        assert len(receiver.wait_for("/soar", 1, timeout=60)) == 1
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    client = open_store(dsn)
    try:
        responder = Responder(client, load_library([folder]), Pager(client), retry_wait=0.01)
        later = datetime.now(UTC) + timedelta(minutes=5)
        settled = responder.recover(later, clock=_minutes_later(5))
        assert [(s.step, s.state) for s in settled] == [("tell_soar", "interrupted")]
        responder.run("tell_soar", agent_incident, later, actor="alice")
        responder.respond(later)
        assert len(receiver.at("/soar")) == 1  # never called twice
        errors = [i for i in list_incidents(client) if i["detector"] == "playbook_error"]
        assert len(errors) == 1 and "cannot be verified" in errors[0]["explanation"][0]["value"]
    finally:
        close_store(client)


def _ids(dsn: str) -> list[int]:
    client = open_store(dsn)
    try:
        return [i["id"] for i in list_incidents(client)]
    finally:
        close_store(client)


def test_webhooks_are_signed_and_retried_with_backoff(client: Client, tmp_path: Path, receiver) -> None:
    _organisation(client, tmp_path)
    receiver.script("/iam", [503, 503, 200])
    integrations = Integrations(webhooks={"revoke_grant": receiver.url("/iam")}, secret="s3cret", attempts=3,
                                wait_seconds=0.05)
    record_alert(client, _fanout())
    report = _responder(client, integrations=integrations).respond(NOW).runs[0]
    assert {s.step: s.state for s in report.steps}["revoke_grant"] == "succeeded"
    calls = receiver.at("/iam")
    assert len(calls) == 3
    assert calls[2].at - calls[1].at >= 0.09  # exponential backoff: 0.05, then 0.1
    last = calls[-1]
    expected = sign("s3cret", last.headers["X-Blastwall-Timestamp"], last.body)
    assert last.headers["X-Blastwall-Signature"] == expected
    assert expected == "sha256=" + hmac.new(
        b"s3cret", last.headers["X-Blastwall-Timestamp"].encode() + b"." + last.body, hashlib.sha256).hexdigest()
    assert last.json["action"] == "revoke_grant" and last.json["params"] == {
        "resource": "ds.telemetry", "grantee": "all-staff"}
    assert last.headers["Idempotency-Key"].endswith("/revoke_grant")


def test_unsanitised_training_pauses_the_run_and_quarantines_only_bad_inputs(client: Client,
                                                                            tmp_path: Path) -> None:
    _organisation(client, tmp_path)
    training = alert("unsanitised_training", "run.ft.7", "SEV1", entity="training_run", principals=("bob",),
                     resources=("run.ft.7", "ds.keystrokes", "ds.telemetry"))
    incident_id = record_alert(client, training).incident_id
    report = _responder(client).respond(NOW).runs[0]
    assert report.state == "succeeded", report
    assert [(c["kind"], c["target"]) for c in controls_in_force(client)] == [
        ("resource", "ds.keystrokes"), ("training_run", "run.ft.7")]
    assert get_incident(client, incident_id)["status"] == "contained"


def test_old_incidents_of_a_backfill_are_not_acted_on(client: Client, tmp_path: Path) -> None:
    _organisation(client, tmp_path)
    record_alert(client, _fanout())
    summary = _responder(client).respond(NOW + timedelta(days=3))
    assert summary.too_old == 1 and summary.runs == [] and controls_in_force(client) == []


def test_an_acknowledged_incident_still_gets_its_playbooks(client: Client, tmp_path: Path) -> None:
    _organisation(client, tmp_path)
    incident_id = record_alert(client, _fanout()).incident_id
    transition(client, incident_id, "acknowledge", actor="alice")
    assert _responder(client).respond(NOW).runs[0].state == "succeeded"
    assert get_incident(client, incident_id)["status"] == "contained"


def test_respond_pages_once_per_incident_over_http_and_the_page_step_adds_none(client: Client, tmp_path: Path,
                                                                               receiver) -> None:
    _organisation(client, tmp_path)
    routing = RoutingConfig.model_validate({
        "channels": {"oncall": f"json://{receiver.base}/oncall", "owners": f"json://{receiver.base}/owners"},
        "routes": {"SEV1": {"channels": ["oncall"]}, "SEV2": {"channels": ["oncall"]}},
        "contacts": {"people-analytics": "owners"}, "retry_wait_seconds": 0.01})
    incident_id = record_alert(client, _fanout()).incident_id
    report = _responder(client, routing=routing).respond(NOW).runs[0]
    assert report.state == "succeeded"
    pages = receiver.at("/oncall")
    assert len(pages) == 1 and get_incident(client, incident_id)["ref"] in pages[0].json["title"]
    assert len(receiver.at("/owners")) == 1  # notify_owner reached the owner's contact channel
    assert "ds.telemetry" in receiver.at("/owners")[0].json["message"]
    _responder(client, routing=routing).respond(NOW + timedelta(minutes=1))
    assert len(receiver.at("/oncall")) == 1


_SLOW_PLAYBOOK = _HANGING_PLAYBOOK.replace("timeout: 60s", "timeout: 1s\n    retries: 2")


def test_a_timed_out_step_is_never_retried_and_asks_a_human(client: Client, tmp_path: Path, receiver) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "tell_soar.yaml").write_text(_SLOW_PLAYBOOK.replace("URL", receiver.url("/soar")), encoding="utf-8")
    receiver.script("/soar", [200], delay=3)
    incident_id = record_alert(client, alert("runaway_agent", "agent.x", "SEV3")).incident_id
    responder = Responder(client, load_library([folder]), Pager(client), retry_wait=0.01)
    report = responder.run("tell_soar", incident_id, NOW, actor="alice")
    step = report.steps[0]
    assert (step.state, step.attempt) == ("interrupted", 1) and "timed out" in step.error
    time.sleep(3.5)  # let the abandoned call finish: it must still be the only one
    assert len(receiver.at("/soar")) == 1


def test_a_step_that_cannot_be_settled_does_not_block_responses(client: Client, tmp_path: Path) -> None:
    _organisation(client, tmp_path)
    stuck = record_alert(client, alert("runaway_agent", "agent.cleaner", "SEV2")).incident_id
    responder = _responder(client)
    context = responder._context(stuck)
    planned = responder._plan(responder.library.playbooks["runaway_agent"], context)
    run_id = f"{stuck}.runaway_agent"
    responder._write_run(run_id, context, "runaway_agent", "running", "live", "x", planned, "", NOW)
    broken = planned.steps[0].__class__(**{**planned.steps[0].__dict__, "params": {"no_such_parameter": 1}})
    responder._log(run_id, context, "runaway_agent", broken, 0, "started", 1, "x", NOW)
    record_alert(client, _fanout())
    summary = responder.respond(NOW)  # recover() meets the broken step first
    states = {r.playbook: r.state for r in summary.runs}
    assert states == {"restricted_fanout": "succeeded", "runaway_agent": "running"}  # in flight, not redone
    settled = responder.recover(NOW, clock=_minutes_later(5))
    assert [(s.step, s.state) for s in settled] == [("suspend_agent", "interrupted")]
    assert "could not settle" in settled[0].error
    assert responder.respond(NOW).errors == []


def test_a_rolled_back_run_is_not_resumed_and_a_closed_incident_is_not_contained(client: Client,
                                                                                  tmp_path: Path) -> None:
    _organisation(client, tmp_path)
    incident_id = record_alert(client, _embedding("SEV2")).incident_id
    responder = _responder(client)
    run = responder.respond(NOW).runs[0]
    assert run.state == "awaiting_approval"
    responder.rollback_incident(incident_id, "alice", NOW)
    record_alert(client, alert("bulk_export", "bob", "SEV1", resources=("emb.hr_notes",),
                               at=T0 + timedelta(minutes=30)))
    responder.respond(NOW + timedelta(minutes=50))
    assert responder.report(run.run_id).state == "rolled_back" and controls_in_force(client) == []

    other = record_alert(client, alert("bulk_export", "carol", "SEV3", resources=("emb.hr_notes",))).incident_id
    pending = responder.respond(NOW).runs[0]
    transition(client, other, "false_positive", actor="alice", reason="sanctioned")
    import pytest

    from playbooks.engine import EngineError

    with pytest.raises(EngineError, match="false_positive"):
        responder.approve(pending.run_id, "suspend_identity", "alice", NOW)
    assert controls_in_force(client) == []
    denied = responder.deny(pending.run_id, "suspend_identity", "alice", NOW, reason="closed anyway")
    assert {s.step: s.state for s in denied.steps}["suspend_identity"] == "denied"
