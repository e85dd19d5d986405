"""What a hostile log line, a hostile playbook or a careless URL can do: nothing they should.

Real parts: the embedded store, a real HTTP receiver on 127.0.0.1, the real CLI.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from builders import T0, alert
from clickhouse_connect.driver.client import Client
from test_cli import run

from detector.incidents import list_incidents, record_alert
from features.redaction import redact_text
from playbooks.actions import Integrations
from playbooks.context import context_from_mapping, render
from playbooks.engine import Responder
from playbooks.model import LIBRARY, load_library, scaffold, test_library
from playbooks.paging import Pager

SECRET = "hunter2-PASS"
NOW = T0 + timedelta(minutes=20)


# --- 1. credentials in URLs ------------------------------------------------------------


@pytest.mark.parametrize(("text", "shown"), [
    (f"http://ops:{SECRET}@127.0.0.1:9/hook", "http://ops:***@127.0.0.1:9/hook"),
    (f"https://h.example/hook?token={SECRET}&v=1", "https://h.example/hook?token=***&v=1"),
    (f"pagerduty://{SECRET}@routing", "pagerduty://***@routing"),
    (f"clickhouse://u:{SECRET}@db:8123/x failed", "clickhouse://u:***@db:8123/x failed"),
    (f"http://u:p@{SECRET}@host/", "http://u:***@host/"),  # an unescaped @ in the password
    ("json://127.0.0.1:9/a and plain text", "json://127.0.0.1:9/a and plain text"),
])
def test_redaction_masks_every_credential_of_a_url(text: str, shown: str) -> None:
    assert redact_text(text) == shown


def _every_text(client: Client) -> str:
    """Everything the store keeps that a user can see: step log, runs, audit trail, incidents, pages."""
    parts = []
    for table in ("playbook_step_log", "playbook_runs", "incident_events", "incidents", "pages"):
        result = client.query(f"SELECT * FROM {table}")
        parts.append(json.dumps(result.result_rows, default=str))
    return "\n".join(parts)


def test_a_failing_webhook_never_shows_its_credentials(client: Client, store_dsn: str, receiver, tmp_path: Path,
                                                       capsys, monkeypatch) -> None:
    receiver.script("/iam", [500])
    url = receiver.url("/iam").replace("http://", f"http://ops:{SECRET}@")
    integrations = Integrations(webhooks={"suspend_identity": url}, attempts=2, wait_seconds=0.01)
    incident = record_alert(client, alert("runaway_agent", "agent.cleaner", "SEV1")).incident_id
    responder = Responder(client, load_library([LIBRARY]), Pager(client), integrations, retry_wait=0.01)

    summary = responder.respond(NOW)

    assert receiver.at("/iam"), "the webhook was called"
    steps = [s for report in summary.runs for s in report.steps]
    failed = [s for s in steps if s.state == "failed"]
    assert failed and all(SECRET not in s.error and "ops:***@" in s.error for s in failed)
    errors = [i for i in list_incidents(client) if i["detector"] == "playbook_error"]
    assert errors and all(SECRET not in i["title"] for i in errors)  # this title is paged
    assert SECRET not in _every_text(client)
    assert SECRET not in " ".join(summary.errors)

    settings = tmp_path / "settings.yaml"
    settings.write_text(f"integrations:\n  webhooks: {{suspend_identity: '{url}'}}\n  attempts: 1\n")
    code, out, err = run(capsys, monkeypatch, "--dsn", store_dsn, "--config", str(settings), "playbook", "run",
                         "runaway_agent", "--incident", str(incident))
    assert "ops:***@" in out and SECRET not in out + err


def test_a_server_dsn_password_is_never_printed(capsys, monkeypatch) -> None:
    code, _, err = run(capsys, monkeypatch, "--dsn", f"clickhouse://u:{SECRET}@127.0.0.1:1/db", "incidents")
    assert code == 2 and err.startswith("blastwall: ") and SECRET not in err and "u:***@" in err


# --- 3. playbook templates are sandboxed -----------------------------------------------


def _playbook_with_condition(folder: Path, condition: str) -> Path:
    path = scaffold("hostile", folder / "hostile.yaml")
    text = path.read_text()
    start = text.index("  when:")
    end = text.index("steps:")
    path.write_text(text[:start] + f"  when:\n    - {json.dumps(condition)}\n" + text[end:])
    return path


@pytest.mark.parametrize("condition", [
    "lipsum.__globals__['os'].system('touch {marker}') == 0",
    "cycler.__init__.__globals__.os.system('touch {marker}') == 0",
    "incident.__class__.__mro__[1].__subclasses__() and 'x'.__class__('touch {marker}')",
    "incident.principals.append('x') or true",
])
def test_a_playbook_condition_cannot_reach_python(tmp_path: Path, condition: str) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "books"
    folder.mkdir()
    _playbook_with_condition(folder, condition.format(marker=marker))

    report = test_library([folder], only="hostile")

    assert not report.ok
    assert any("hostile.yaml" in str(p) and ("unsafe" in str(p) or "failed" in str(p)) for p in report.problems), \
        report.problems
    assert not marker.exists()


def test_log_text_that_looks_like_a_template_is_never_rendered() -> None:
    incident = context_from_mapping({"detector": "bulk_export", "severity": "SEV2",
                                     "principals": ["{{ 7 * 7 }}"], "resources": ["{% raw %}x"],
                                     "title": "{{ lipsum.__globals__ }}"})
    assert render("{{ incident.principals }}", incident) == ["{{ 7 * 7 }}"]
    assert render("who: {{ incident.principal }}", incident) == "who: {{ 7 * 7 }}"
    assert render("{{ incident.title }}", incident) == "{{ lipsum.__globals__ }}"


# --- 16. bad DSNs and what a killed ingest leaves ----------------------------------------


@pytest.mark.parametrize(("dsn", "message"), [
    ("clickhouse://u:p@h:notaport/db", "is not a valid URL"),
    ("clickhouse://h:99999/db", "is not a valid URL"),
    ("http://[::1", "is not a valid URL"),
    ("chdb:///proc/no-such-dir/store", "cannot use /proc/no-such-dir/store for the embedded store"),
    ("chdb:///dev/null/store", "Not a directory"),
    ("clickhouse://u:p@127.0.0.1:1/db?compress=maybe", "clickhouse://u:***@127.0.0.1:1"),
])
def test_bad_dsns_are_one_line_never_a_traceback(capsys, monkeypatch, dsn: str, message: str) -> None:
    code, out, err = run(capsys, monkeypatch, "--dsn", dsn, "init")  # a command that would create the store
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and lines[0].startswith("blastwall: "), err
    assert message in lines[0] and "Traceback" not in err


def test_a_killed_ingest_leaves_no_staging_tables_after_the_next_open(store_dsn: str) -> None:
    import subprocess
    import sys

    from blastwall.store import close_store, open_store

    # A process that created its staging tables and died (SIGKILL: nothing of ours ran after).
    script = ("import os, signal; from blastwall.store import open_store; from blastwall.schema import init_schema;"
              f"from features.ingest import _Staging; c = open_store({store_dsn!r}); init_schema(c);"
              " _Staging(c, 'access_log'); os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", script]).returncode == -9
    client = open_store(store_dsn)
    try:
        left = client.query("SELECT count() FROM system.tables WHERE database = currentDatabase()"
                            " AND name LIKE '\\\\_ingest\\\\_%'").result_rows[0][0]
        assert left == 0
    finally:
        close_store(client)


# --- 14. grants are structured pairs, never joined text ----------------------------------


def test_a_resource_named_with_an_arrow_is_revoked_and_measured_as_itself(client: Client, tmp_path: Path) -> None:
    from builders import MONDAY, ingest_rows, iso, membership_row, principal_row, resource_row

    from detector.incidents import grant_of
    from detector.replay import run_steps
    from detector.triage import blast_radius
    from playbooks.context import incident_context
    from playbooks.model import plan

    def load(table: str, rows: list[dict]) -> None:
        ingest_rows(client, tmp_path, table, [{k: iso(v) if hasattr(v, "tzinfo") else v for k, v in row.items()}
                                              for row in rows])

    people = [f"p{i}" for i in range(20)]
    tricky = "ds.payroll -> contractors"
    load("principals", [principal_row(p, team="t") for p in people])
    load("memberships", [membership_row("all-staff", p) for p in people])
    load("resources", [resource_row(tricky, sensitivity="restricted", categories=["pii"]),
                       resource_row("ds.payroll", sensitivity="restricted", categories=["pii"])])
    granted = MONDAY + timedelta(hours=9, minutes=1)
    ingest_rows(client, tmp_path, "access_log", [
        {"event_time": iso(granted), "event_id": "g1", "principal": "p0", "action": "grant", "resource": tricky,
         "grantee": "all-staff", "via": "ai_assistant"}])

    run_steps(client, MONDAY + timedelta(hours=9, minutes=5), timedelta(minutes=5), since=MONDAY + timedelta(hours=9))

    fanouts = [i for i in list_incidents(client) if i["detector"] == "permission_fanout"]
    assert len(fanouts) == 1
    incident = fanouts[0]
    assert grant_of(incident) == {"resource": tricky, "grantee": "all-staff"}
    context = incident_context(client, incident["id"])
    assert context["grant"] == {"resource": tricky, "grantee": "all-staff"}
    planned = plan(load_library([LIBRARY]).playbooks["restricted_fanout"], context)
    revoke = next(s for s in planned.steps if s.action == "revoke_grant")
    assert revoke.params == {"resource": tricky, "grantee": "all-staff"}
    assert blast_radius(client, incident).audience_size == len(people)


def test_an_incident_stored_before_the_structured_pair_still_splits_at_its_resource() -> None:
    from detector.incidents import grant_of

    legacy = {"entity": "grant", "entity_key": "ds.payroll -> contractors -> all-staff",
              "resources": ["ds.payroll -> contractors"], "explanation": [{"rule": "grant.mass_audience"}]}
    assert grant_of(legacy) == {"resource": "ds.payroll -> contractors", "grantee": "all-staff"}
    assert grant_of({"entity": "principal", "entity_key": "a -> b"}) is None


# --- 7. an interrupted step waits visibly for a human, and the answer moves the run on ---

_TWO_STEP_PLAYBOOK = """\
description: tells an outside system, then records the evidence
triggers: {detectors: [runaway_agent]}
steps:
  - name: tell_soar
    action: webhook
    with: {url: "URL", payload: {principal: "{{ incident.principal }}"}}
    timeout: 60s
  - name: after
    action: snapshot_evidence
runbook: [check the SOAR]
tests:
  - name: an agent is reported
    incident: {detector: runaway_agent, principals: [a]}
    expect: {steps: [tell_soar, after]}
  - name: secrets are not
    incident: {detector: secrets, principals: [a]}
    expect: {match: false}
"""


@pytest.mark.parametrize("answer", ["approve", "deny"])
def test_a_step_killed_mid_webhook_waits_for_a_human_whose_answer_moves_the_run_on(
        tmp_path: Path, receiver, answer: str) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time as clock
    from datetime import UTC, datetime

    from blastwall.schema import init_schema
    from blastwall.store import close_store, open_store

    dsn = f"chdb://{tmp_path / 'store'}"
    client = open_store(dsn)
    try:
        init_schema(client)
        incident = record_alert(client, alert("runaway_agent", "agent.x", "SEV4")).incident_id
    finally:
        close_store(client)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "tell_soar.yaml").write_text(_TWO_STEP_PLAYBOOK.replace("URL", receiver.url("/soar")))
    receiver.script("/soar", [200], delay=30)
    process = subprocess.Popen(
        [sys.executable, "-m", "blastwall.cli", "--dsn", dsn, "playbook", "run", "tell_soar", "--incident",
         str(incident), "--dir", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "CI": "true"})
    try:
        assert len(receiver.wait_for("/soar", 1, timeout=60)) == 1
    finally:
        process.send_signal(signal.SIGKILL)  # a real crash, while the call is in flight
        process.wait(timeout=30)

    client = open_store(dsn)
    try:
        responder = Responder(client, load_library([folder]), Pager(client), retry_wait=0.01)
        later = datetime.now(UTC) + timedelta(minutes=5)
        responder.recover(later, clock=lambda: clock.time_ns() + 5 * 60 * 10**9)
        report = responder.report(f"{incident}.tell_soar")
        assert report.state == "awaiting_decision"  # visibly waiting, not "running" forever
        assert {s.step: s.state for s in report.steps} == {"tell_soar": "interrupted"}

        if answer == "approve":
            report = responder.approve(report.run_id, "tell_soar", "alice", later, reason="SOAR has the case")
            assert {s.step: s.state for s in report.steps}["tell_soar"] == "succeeded"
        else:
            report = responder.deny(report.run_id, "tell_soar", "alice", later, reason="SOAR never got it")
            assert {s.step: s.state for s in report.steps}["tell_soar"] == "denied"
        assert report.state == "succeeded" and {s.step: s.state for s in report.steps}["after"] == "succeeded"
        assert len(receiver.at("/soar")) == 1  # the answer never re-sends the call
    finally:
        close_store(client)


# --- 6. one page per incident, even when the process dies while paging -------------------


def test_a_crash_during_delivery_redelivers_once_with_the_same_idempotency_key(tmp_path: Path, receiver) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time as clock
    from datetime import UTC, datetime

    from blastwall.config import load_settings
    from blastwall.schema import init_schema
    from blastwall.store import close_store, open_store
    from playbooks.paging import REDELIVERED

    dsn = f"chdb://{tmp_path / 'store'}"
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"paging:\n  channels: {{oncall: '{receiver.url('/oncall').replace('http', 'json', 1)}'}}\n"
                        "  routes: {SEV1: {channels: [oncall]}}\n  retry_attempts: 1\n")
    client = open_store(dsn)
    try:
        init_schema(client)
        now = datetime.now(UTC)
        incident = record_alert(client, alert("bulk_export", "bob", "SEV1", at=now - timedelta(minutes=20),
                                              resources=("ds.hr",))).incident_id
    finally:
        close_store(client)
    receiver.script("/oncall", [200], delay=30)  # the page hangs in flight ...
    process = subprocess.Popen([sys.executable, "-m", "blastwall.cli", "--dsn", dsn, "--config", str(settings),
                                "respond"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "CI": "true"})
    try:
        assert len(receiver.wait_for("/oncall", 1, timeout=60)) == 1
    finally:
        process.send_signal(signal.SIGKILL)  # ... and the process dies during the delivery
        process.wait(timeout=30)
    receiver.script("/oncall", [200])

    client = open_store(dsn)
    try:
        pager = Pager(client, load_settings(settings).paging, interrupted_after=timedelta(seconds=1))
        stored = client.query("SELECT max(seq) FROM pages").result_rows[0][0]
        assert stored >= 1  # the attempt was recorded before the delivery
        assert pager.page({"id": incident, "severity": "SEV1", "status": "open", "title": "t"}, now) == []
        clock.sleep(1.2)
        redelivered = pager.escalate(now)
        assert [(r.state, r.reason) for r in redelivered] == [("sent", REDELIVERED)]
        assert pager.escalate(now) == []  # once
        keys = [r.headers.get("Idempotency-Key") for r in receiver.at("/oncall")]
        assert len(keys) == 2 and keys[0] == keys[1] and keys[0].startswith(f"blastwall-{incident}-SEV1-0-")
        assert [(p.state, p.reason) for p in pager.pages(incident)][-1] == ("sent", REDELIVERED)
    finally:
        close_store(client)


# --- 5. sign-in back-off ------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_sign_ins_back_off_per_account_and_per_address(tmp_path: Path) -> None:
    from blastwall.access import AccessDenied, SignInThrottle, add_account, load_accounts

    path = tmp_path / "accounts.yaml"
    add_account(path, "ana", "analyst", "right-password")
    add_account(path, "bob", "viewer", "bobs-password")
    accounts = load_accounts(path)
    clock = _Clock()
    throttle = SignInThrottle(free=3, base=2.0, ceiling=60.0, clock=clock)

    for _ in range(3):
        with pytest.raises(AccessDenied, match="wrong user or password"):
            accounts.sign_in("ana", "guess", "10.0.0.9", throttle)
    # The 4th try is refused before the password is even checked, right or wrong.
    with pytest.raises(AccessDenied, match=r"too many failed sign-ins .* try again in 2 s"):
        accounts.sign_in("ana", "right-password", "10.0.0.1", throttle)
    # The guessing address is held back for other accounts too.
    with pytest.raises(AccessDenied, match="too many failed sign-ins"):
        accounts.sign_in("bob", "bobs-password", "10.0.0.9", throttle)
    assert accounts.sign_in("bob", "bobs-password", "10.0.0.2", throttle).user == "bob"

    clock.now += 2.1
    with pytest.raises(AccessDenied, match="wrong user or password"):
        accounts.sign_in("ana", "guess", "10.0.0.1", throttle)
    with pytest.raises(AccessDenied, match="try again in 4 s"):  # the wait doubles
        accounts.sign_in("ana", "guess", "10.0.0.1", throttle)
    clock.now += 4.1
    assert accounts.sign_in("ana", "right-password", "10.0.0.1", throttle).user == "ana"
    assert throttle.wait("ana", "10.0.0.1") == 0  # a success clears the count


def test_the_ceiling_bounds_the_wait() -> None:
    from blastwall.access import SignInThrottle

    clock = _Clock()
    throttle = SignInThrottle(free=1, base=1.0, ceiling=30.0, clock=clock)
    for _ in range(40):
        throttle.record("eve", "", ok=False)
    assert throttle.wait("eve", "") == 30.0
