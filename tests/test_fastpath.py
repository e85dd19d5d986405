"""The fast path: certain detections before the step ends, with the step loop's own incident ids.

A small organisation in a real embedded store: 20 people in ``all-staff``, a restricted
dataset, and grants made through an AI assistant. The oracle for every fast-path finding
is the step loop run afterwards over the same events: same incident, nothing twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from builders import event_row, ingest_rows, iso, membership_row, open_initialised, principal_row, resource_row
from clickhouse_connect.driver.client import Client

from blastwall.jobs import DetectionJobs, LiveSettings
from blastwall.store import close_store
from detector.detect import DetectConfig
from detector.fastpath import FastPath
from detector.incidents import list_incidents
from detector.replay import align, run_steps
from detector.rules import load_rules
from playbooks.engine import Responder
from playbooks.model import load_library
from playbooks.paging import Pager, RoutingConfig

STEP = timedelta(minutes=5)
PEOPLE = [f"p{i:02d}@corp.example" for i in range(20)]
DATASET = "ds.people.chat_logs"
#: A step boundary safely inside the recent past (the fast path's horizon is 30 minutes).
STEP_START = align(datetime.now(UTC), STEP) - 2 * STEP
STEP_END = STEP_START + STEP
GRANT_AT = STEP_START + timedelta(minutes=2, seconds=11)


def _rows(rows: list[dict]) -> list[dict]:
    return [{k: iso(v) if isinstance(v, datetime) else v for k, v in row.items()} for row in rows]


def _organisation(client: Client, folder: Path) -> None:
    ingest_rows(client, folder, "principals", _rows([principal_row(p, team="people") for p in PEOPLE]
                                                    + [principal_row("helper-bot", principal_type="agent")]))
    ingest_rows(client, folder, "memberships", _rows([membership_row("all-staff", p) for p in PEOPLE]
                                                     + [membership_row("hr-team", p) for p in PEOPLE[:3]]))
    ingest_rows(client, folder, "resources", _rows([
        {**resource_row(DATASET, sensitivity="restricted", categories=["chat"]), "owner": "people-data@corp.example"},
        resource_row("ds.web.clicks", sensitivity="internal"),
        resource_row("run.llm.1", kind="training_run"),
        resource_row("ds.raw.keystrokes", sensitivity="confidential", categories=["keystrokes"], sanitized=0)]))
    ingest_rows(client, folder, "access_log", _rows(
        [event_row(STEP_START - STEP + timedelta(seconds=30 * i), PEOPLE[i % 20], "read", "ds.web.clicks",
                   event_id=f"warm-{i}") for i in range(20)]))


def _grant(client: Client, folder: Path, grantee: str = "all-staff", at: datetime = GRANT_AT, event_id: str = "g1"
           ) -> None:
    ingest_rows(client, folder, "access_log", _rows([event_row(
        at, PEOPLE[0], "grant", DATASET, grantee=grantee, via="ai_assistant", event_id=event_id)]))


@pytest.fixture
def config() -> DetectConfig:
    return DetectConfig(rules=tuple(load_rules().rules.values()))


def test_a_mass_grant_opens_its_incident_before_the_step_ends_with_the_steps_id(
        client: Client, tmp_path: Path, config: DetectConfig) -> None:
    _organisation(client, tmp_path)
    _grant(client, tmp_path)
    fast = FastPath(STEP, config)
    result = fast.run(client, GRANT_AT + timedelta(seconds=5))
    assert result.errors == []
    by_detector = {i["detector"]: i for i in list_incidents(client)}
    # The policy (a restricted dataset to all 20 people) and the realtime rule (an AI assistant's
    # grant with nobody's approval) both open at once, long before the step ends.
    assert set(by_detector) == {"permission_fanout", "ai_grant_without_approval"}
    fanout = by_detector["permission_fanout"]
    assert fanout["severity"] == "SEV1" and fanout["entity_key"] == f"{DATASET} -> all-staff"
    assert fanout["detected_at"] == GRANT_AT + timedelta(seconds=5)
    seen = dict(client.query("SELECT alert_id, outcome FROM alerts_seen FINAL").result_rows)
    assert seen == {
        f"permission_fanout.grant.mass_audience|grant|{DATASET} -> all-staff|{int(STEP_END.timestamp() * 1000)}":
            "provisional",
        f"ai_grant_without_approval|grant|{DATASET} -> all-staff|{int(STEP_END.timestamp() * 1000)}": "provisional"}
    evidence = {e["feature"]: e["value"] for e in fanout["explanation"] if "feature" in e}
    assert (evidence["audience_before"], evidence["audience_after"]) == (0, 20)

    # Checking again finds the same alerts and records nothing new.
    again = fast.run(client, GRANT_AT + timedelta(seconds=10))
    assert again.opened == 0 and len(list_incidents(client)) == 2


def test_the_step_loop_enriches_what_the_fast_path_opened_and_never_opens_it_twice(
        client: Client, tmp_path: Path, config: DetectConfig) -> None:
    _organisation(client, tmp_path)
    _grant(client, tmp_path)
    FastPath(STEP, config).run(client, GRANT_AT + timedelta(seconds=5))
    before = {i["id"]: i for i in list_incidents(client)}
    run_steps(client, STEP_END, STEP, since=STEP_START - STEP, config=config)
    after = {i["id"]: i for i in list_incidents(client)}
    assert set(after) == set(before)  # the same incidents: none opened twice
    for incident_id, incident in after.items():
        assert incident["alerts"] == 2  # the fast path's and the step's
        assert incident["detected_at"] == before[incident_id]["detected_at"]
    outcomes = client.query("SELECT outcome, count() FROM alerts_seen FINAL GROUP BY outcome").result_rows
    assert outcomes == [("updated", 2)]


def test_a_grant_is_judged_on_the_grant_state_at_its_steps_start(
        client: Client, tmp_path: Path, config: DetectConfig) -> None:
    """The step before is not processed yet (lateness): its grant still counts in the audience before."""
    _organisation(client, tmp_path)
    run_steps(client, STEP_START - STEP, STEP, since=STEP_START - 2 * STEP, config=config)  # history ends before
    _grant(client, tmp_path, grantee="hr-team", at=STEP_START - timedelta(seconds=40), event_id="g0")
    _grant(client, tmp_path)
    FastPath(STEP, config).run(client, GRANT_AT + timedelta(seconds=5))
    fanout = [i for i in list_incidents(client) if i["detector"] == "permission_fanout"]
    assert len(fanout) == 1
    evidence = {e["feature"]: e["value"] for e in fanout[0]["explanation"] if "feature" in e}
    assert (evidence["audience_before"], evidence["audience_after"], evidence["audience_gain"]) == (3, 20, 17)
    # The step loop reaches the same judgement (its alert folds into the same incident).
    run_steps(client, STEP_END, STEP, config=config)
    assert [i["id"] for i in list_incidents(client) if i["detector"] == "permission_fanout"] == [fanout[0]["id"]]


def test_training_on_unsanitised_data_opens_at_once(client: Client, tmp_path: Path, config: DetectConfig) -> None:
    _organisation(client, tmp_path)
    ingest_rows(client, tmp_path, "access_log", _rows([event_row(
        GRANT_AT, "helper-bot", "train", "run.llm.1", principal_type="agent", related=["ds.raw.keystrokes"],
        rows=1000, event_id="t1")]))
    FastPath(STEP, config).run(client, GRANT_AT + timedelta(seconds=3))
    found = [(i["detector"], i["entity_key"]) for i in list_incidents(client)]
    assert ("unsanitised_training", "run.llm.1") in found


def test_old_events_are_left_to_the_step_loop_and_benign_grants_open_nothing(
        client: Client, tmp_path: Path, config: DetectConfig) -> None:
    _organisation(client, tmp_path)
    _grant(client, tmp_path, at=GRANT_AT - timedelta(hours=2), event_id="old")  # beyond the horizon
    ingest_rows(client, tmp_path, "access_log", _rows([event_row(  # internal data to everyone: no policy matter
        GRANT_AT, PEOPLE[1], "grant", "ds.web.clicks", grantee="all-staff", event_id="benign")]))
    result = FastPath(STEP, config).run(client, GRANT_AT + timedelta(seconds=5))
    assert result.events == 20 + 1 and list_incidents(client) == []  # the warm-up reads and the benign grant


def test_both_paths_on_the_same_events_page_once_and_contain_once(
        client: Client, tmp_path: Path, config: DetectConfig, receiver) -> None:
    _organisation(client, tmp_path)
    routing = RoutingConfig.model_validate({"channels": {"oncall": f"json://{receiver.base}/oncall",
                                                         "owners": f"json://{receiver.base}/owners"},
                                            "contacts": {"people-data@corp.example": "owners"},
                                            "routes": {"SEV1": {"channels": ["oncall"]},
                                                       "SEV2": {"channels": ["oncall"]}},
                                            "retry_wait_seconds": 0.01})
    jobs = DetectionJobs(client, LiveSettings(step=STEP, lateness=timedelta(minutes=1), config=config,
                                              initial_backfill=2 * STEP),
                         responder=Responder(client, load_library(), Pager(client, routing), retry_wait=0.01))
    _grant(client, tmp_path)
    # The live loop as it runs: a fast-path tick every 5 s, the detect job every minute.
    now, ticks, steps = GRANT_AT, 0, 0
    while now < STEP_END + timedelta(minutes=2):
        now += timedelta(seconds=5)
        ticks += 1
        jobs.tick(now)
        if ticks % 12 == 0:
            steps += jobs.detect(now).steps
    assert jobs.last_error == "" and jobs.fast_error == ""
    assert steps >= 1  # the step loop did judge the grant's step
    assert dict(client.query("SELECT outcome, count() FROM alerts_seen FINAL GROUP BY outcome").result_rows) == {
        "updated": 2}  # both of the fast path's alerts were completed by the step's
    incidents = list_incidents(client)
    assert sorted(i["detector"] for i in incidents) == ["ai_grant_without_approval", "permission_fanout"], [
        (i["detector"], i["title"]) for i in incidents]
    titles = [page.json["title"] for page in receiver.at("/oncall")]
    for incident in incidents:
        assert sum(incident["ref"] in title for title in titles) == 1, titles
    # Each incident's playbook revoked the grant once (both incidents are about the one grant).
    revokes = client.query("SELECT incident_id, target, count() FROM control_log WHERE kind = 'grant'"
                           " AND in_force = 1 GROUP BY incident_id, target").result_rows
    assert {target for _, target, _ in revokes} == {f"{DATASET} -> all-staff"}
    assert all(count == 1 for _, _, count in revokes)
    revoked_at = client.query("SELECT min(at) FROM control_log WHERE kind = 'grant'").result_rows[0][0]
    assert revoked_at.replace(tzinfo=UTC) - GRANT_AT <= timedelta(seconds=10)  # the first tick after the grant


def test_a_realtime_rule_needs_a_query() -> None:
    from pydantic import ValidationError

    from detector.rules import RuleSpec

    with pytest.raises(ValidationError, match="realtime: true needs a query"):
        RuleSpec(description="x", entity="principal", key="{{ principal }}", severity="SEV3", title="t",
                 condition="events > 1", realtime=True)


def test_ingest_runs_the_certain_detections_over_what_it_loaded(tmp_path: Path, capsys, monkeypatch) -> None:
    from builders import run_cli

    dsn = f"chdb://{tmp_path / 'store'}"
    client = open_initialised(tmp_path / "store")
    try:
        _organisation(client, tmp_path)
    finally:
        close_store(client)
    grant = tmp_path / "grant.jsonl"
    grant.write_text(json.dumps(_rows([event_row(datetime.now(UTC) - timedelta(seconds=20), PEOPLE[0], "grant",
                                                 DATASET, grantee="all-staff", via="ai_assistant",
                                                 event_id="g-now")])[0]) + "\n")
    code, out, err = run_cli(capsys, monkeypatch, "--dsn", dsn, "ingest", str(grant))
    assert code == 0, err
    assert "certain detections: 2 incidents opened (INC-1, INC-2)" in out
    client = open_initialised(tmp_path / "store")
    try:
        assert {i["detector"] for i in list_incidents(client)} == {"permission_fanout", "ai_grant_without_approval"}
        # Handed to the playbooks at once: the grant is revoked (no paging is configured: recorded unrouted).
        assert client.query("SELECT count() FROM control_log WHERE kind = 'grant' AND in_force = 1"
                            ).result_rows[0][0] >= 1
    finally:
        close_store(client)
