"""Paging: routing by severity, one page per incident, escalation, working hours, outages, config.

Real parts only: the embedded store, a real HTTP receiver on 127.0.0.1, real apprise
(``json://`` URLs POST the page to the receiver).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from pydantic import ValidationError

from blastwall.config import ConfigError, load_settings
from detector.incidents import Alert, get_incident, record_alert, transition
from playbooks.paging import (
    Pager,
    PagingError,
    RoutingConfig,
    default_routing,
)

MON = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, in working hours everywhere near UTC


def alert(key: str = "alice", severity: str = "SEV2", at: datetime = MON, score: float = 0.99) -> Alert:
    return Alert(
        alert_id=f"bulk_export|{key}|{at.isoformat()}|{severity}", detector="bulk_export", entity="principal",
        entity_key=key, title=f"bulk export by {key}", severity=severity, score=score,  # type: ignore[arg-type]
        principals=(key,), resources=("ds.chat",), first_seen=at, last_seen=at + timedelta(minutes=5),
        detected_at=at + timedelta(minutes=10),
    )


def open_incident(client: Client, key: str = "alice", severity: str = "SEV2", at: datetime = MON) -> dict[str, Any]:
    incident = get_incident(client, record_alert(client, alert(key, severity, at)).incident_id)
    assert incident is not None
    return incident


def config(receiver: Any, **overrides: Any) -> RoutingConfig:
    """Channels on the receiver; SEV1/SEV2 page the on-call at once; fast retries."""
    settings: dict[str, Any] = {
        "channels": {name: f"json://{receiver.base}/{name}" for name in ("oncall", "secops", "manager")},
        "routes": {"SEV1": {"channels": ["oncall"]}, "SEV2": {"channels": ["oncall"]}},
        "link": "http://localhost:8501/incident?id={id}",
        "retry_attempts": 2, "retry_wait_seconds": 0.01,
    }
    return RoutingConfig(**(settings | overrides))


def about(requests: list[Any], incident: dict[str, Any]) -> list[Any]:
    """The received pages about one incident (the title carries its reference, ``INC-n``)."""
    return [r for r in requests if f" {incident['ref']}:" in r.json["title"]]


def test_pages_once_per_severity_and_again_when_it_rises(client: Client, receiver: Any) -> None:
    pager = Pager(client, config(receiver))
    incident = open_incident(client, severity="SEV2")

    records = pager.page(incident, MON)
    assert [(r.channel, r.state, r.level) for r in records] == [("oncall", "sent", 0)]
    [got] = receiver.at("/oncall")
    body = got.json
    assert got.method == "POST" and got.headers["Content-Type"] == "application/json"
    assert body["title"] == f"[SEV2] blastwall {incident['ref']}: bulk export by alice"
    assert body["type"] == "failure"  # SEV1/SEV2 map to apprise's failure type
    assert "bulk_export" in body["message"] and "alice" in body["message"] and "ds.chat" in body["message"]
    assert f"http://localhost:8501/incident?id={incident['id']}" in body["message"]

    assert pager.page(incident, MON + timedelta(minutes=1)) == []  # same severity: no second page
    assert pager.page(get_incident(client, incident["id"]), MON + timedelta(minutes=2)) == []
    assert len(receiver.at("/oncall")) == 1

    rose = record_alert(client, alert(severity="SEV1", at=MON + timedelta(minutes=30), score=0.999))
    assert rose.outcome == "updated" and rose.incident_id == incident["id"] and rose.severity_rose
    higher = get_incident(client, incident["id"])
    assert [r.severity for r in pager.page(higher, MON + timedelta(minutes=41))] == ["SEV1"]
    assert pager.page(higher, MON + timedelta(minutes=42)) == []
    titles = [r.json["title"] for r in receiver.at("/oncall")]
    assert len(titles) == 2 and titles[1].startswith(f"[SEV1] blastwall {incident['ref']}:")
    assert [(p.severity, p.state) for p in pager.pages(incident["id"])] == [("SEV2", "sent"), ("SEV1", "sent")]
    assert pager.pages(incident["id"])[0].at == MON


def test_a_severity_without_route_is_not_paged(client: Client, receiver: Any) -> None:
    pager = Pager(client, config(receiver))
    incident = open_incident(client, severity="SEV4")
    assert pager.page(incident, MON) == [] and pager.pages(incident["id"]) == []
    assert receiver.at("/oncall") == []


def test_default_routing_records_unrouted_pages_instead_of_dropping_them(client: Client) -> None:
    pager = Pager(client)
    assert pager.config == default_routing()
    incident = open_incident(client, severity="SEV1")
    [record] = pager.page(incident, MON)
    assert record.state == "unrouted" and "no channel" in record.error
    assert [p.state for p in pager.pages(incident["id"])] == ["unrouted"]
    assert pager.page(incident, MON) == []  # still one record per (incident, severity)


def test_unacknowledged_incident_escalates_once_per_level(client: Client, receiver: Any) -> None:
    cfg = config(receiver, escalation=[{"after": "15m", "channels": ["secops"]},
                                       {"after": "1h", "channels": ["manager"]}])
    pager = Pager(client, cfg)
    ignored = open_incident(client, "alice", "SEV1")
    handled = open_incident(client, "bob", "SEV1")
    pager.page(ignored, MON)
    pager.page(handled, MON)
    assert len(receiver.at("/oncall")) == 2
    transition(client, handled["id"], "acknowledge", actor="alice", at=MON + timedelta(minutes=5))

    assert pager.escalate(MON + timedelta(minutes=14, seconds=59)) == []  # not before `after`
    assert receiver.at("/secops") == []
    first = pager.escalate(MON + timedelta(minutes=15))
    assert [(r.incident_id, r.level, r.channel, r.state) for r in first] == [(ignored["id"], 1, "secops", "sent")]
    assert pager.escalate(MON + timedelta(minutes=30)) == []  # level 1 only once
    [page] = receiver.at("/secops")
    assert page.json["title"] == f"[SEV1] blastwall {ignored['ref']}: bulk export by alice (escalation 1)"
    assert "unacknowledged 15m" in page.json["message"]

    second = pager.escalate(MON + timedelta(hours=1))
    assert [(r.incident_id, r.level, r.channel) for r in second] == [(ignored["id"], 2, "manager")]
    assert pager.escalate(MON + timedelta(hours=5)) == []
    assert len(about(receiver.at("/manager"), ignored)) == 1
    # The acknowledged incident was never escalated.
    assert about(receiver.at("/secops") + receiver.at("/manager"), handled) == []
    assert [p.level for p in pager.pages(handled["id"])] == [0]


def test_working_hours_route_defers_to_monday_in_its_time_zone(client: Client, receiver: Any) -> None:
    cfg = config(receiver, timezone="Europe/Berlin", routes={"SEV3": {"channels": ["oncall"], "when": "working_hours"}})
    pager = Pager(client, cfg)
    saturday = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    # 09:00 in Berlin on Monday 30 March is 07:00 UTC: summer time began on Sunday the 29th.
    monday_nine = datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    kept = open_incident(client, "alice", "SEV3", saturday)
    dropped = open_incident(client, "bob", "SEV3", saturday)

    for incident in (kept, dropped):
        [record] = pager.page(incident, saturday)
        assert record.state == "deferred" and record.due_at == monday_nine
    assert receiver.at("/oncall") == []
    transition(client, dropped["id"], "acknowledge", actor="alice", at=saturday + timedelta(hours=2))

    assert pager.escalate(monday_nine - timedelta(minutes=1)) == []
    assert receiver.at("/oncall") == []
    done = pager.escalate(monday_nine)
    assert {(r.incident_id, r.state) for r in done} == {(kept["id"], "sent"), (dropped["id"], "cancelled")}
    [page] = receiver.at("/oncall")
    assert page.json["title"].startswith(f"[SEV3] blastwall {kept['ref']}:") and page.json["type"] == "warning"
    assert pager.escalate(monday_nine + timedelta(minutes=1)) == []
    assert [p.state for p in pager.pages(dropped["id"])] == ["deferred", "cancelled"]

    # In working hours the same route delivers at once.
    during = open_incident(client, "carol", "SEV3", monday_nine + timedelta(hours=1))
    assert [r.state for r in pager.page(during, monday_nine + timedelta(hours=1))] == ["sent"]


def test_a_higher_severity_supersedes_a_deferred_page(client: Client, receiver: Any) -> None:
    routes = {"SEV1": {"channels": ["oncall"]}, "SEV3": {"channels": ["secops"], "when": "working_hours"}}
    pager = Pager(client, config(receiver, routes=routes))
    saturday = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    incident = open_incident(client, "alice", "SEV3", saturday)
    assert [r.state for r in pager.page(incident, saturday)] == ["deferred"]
    record_alert(client, alert("alice", "SEV1", saturday + timedelta(minutes=20)))
    records = pager.page(get_incident(client, incident["id"]), saturday + timedelta(minutes=31))
    assert [(r.severity, r.state) for r in records] == [("SEV3", "cancelled"), ("SEV1", "sent")]
    assert pager.escalate(datetime(2026, 3, 9, 9, 0, tzinfo=UTC)) == []  # Monday: nothing left to deliver
    assert len(receiver.at("/oncall")) == 1 and receiver.at("/secops") == []


def test_outage_is_recorded_then_caught_up(client: Client, receiver: Any) -> None:
    receiver.script("/oncall", [500])
    pager = Pager(client, config(receiver))
    incident = open_incident(client, severity="SEV1")

    [failed] = pager.page(incident, MON)
    assert failed.state == "failed" and "500" in failed.error and failed.due_at == MON + timedelta(minutes=1)
    assert len(receiver.at("/oncall")) == 2  # retry_attempts=2 within the call
    assert pager.page(incident, MON) == []  # a failed page is retried by escalate(), not re-paged

    assert pager.escalate(MON + timedelta(seconds=30)) == []  # backoff: not due yet
    receiver.script("/oncall", [200])
    [sent] = pager.escalate(MON + timedelta(minutes=1))
    assert sent.state == "sent" and sent.attempts == 2
    assert pager.escalate(MON + timedelta(hours=1)) == []
    requests = receiver.at("/oncall")
    assert len(requests) == 3 and requests[-1].json["title"].startswith(f"[SEV1] blastwall {incident['ref']}:")
    assert [p.state for p in pager.pages(incident["id"])] == ["failed", "sent"]


def test_a_failing_page_is_given_up_after_max_rounds(client: Client, receiver: Any) -> None:
    receiver.script("/oncall", [503])
    pager = Pager(client, config(receiver, retry_attempts=1), max_rounds=2)
    incident = open_incident(client, severity="SEV1")
    pager.page(incident, MON)
    [last] = pager.escalate(MON + timedelta(minutes=1))
    assert last.state == "failed" and last.due_at is None and "gave up after 2 rounds" in last.error
    assert pager.escalate(MON + timedelta(days=1)) == []
    assert len(receiver.at("/oncall")) == 2


def test_failed_retry_is_cancelled_once_acknowledged(client: Client, receiver: Any) -> None:
    receiver.script("/oncall", [500])
    pager = Pager(client, config(receiver, retry_attempts=1))
    incident = open_incident(client, severity="SEV1")
    pager.page(incident, MON)
    transition(client, incident["id"], "acknowledge", actor="alice", at=MON + timedelta(seconds=20))
    [cancelled] = pager.escalate(MON + timedelta(minutes=1))
    assert cancelled.state == "cancelled" and "acknowledged" in cancelled.reason
    assert len(receiver.at("/oncall")) == 1


def test_notify_sends_ad_hoc_messages_and_refuses_unknown_channels(client: Client, receiver: Any) -> None:
    pager = Pager(client, config(receiver))
    results = pager.notify(["secops", "manager"], "dataset owner notice", "ds.chat was exposed", MON)
    assert [(r["channel"], r["state"]) for r in results] == [("secops", "sent"), ("manager", "sent")]
    assert receiver.at("/secops")[0].json["message"] == "ds.chat was exposed"
    pager.notify(["secops"], "again", "no dedup for ad-hoc messages", MON)
    assert len(receiver.at("/secops")) == 2

    with pytest.raises(PagingError, match="'nowhere'"):
        pager.notify(["secops", "nowhere"], "t", "b", MON)
    assert len(receiver.at("/secops")) == 2  # nothing sent when a channel is unknown
    receiver.script("/manager", [500])
    with pytest.raises(PagingError, match="nothing delivered"):
        pager.notify(["manager"], "t", "b", MON)


ROUTING = """\
timezone: Europe/Berlin
channels:
  oncall: json://127.0.0.1:9/oncall
  team: [json://127.0.0.1:9/a, json://127.0.0.1:9/b]
routes:
  SEV1: {channels: [oncall, team]}
  SEV3: {channels: [team], when: working_hours}
escalation:
  - {after: 15m, channels: [team]}
  - {after: 3600, channels: [oncall]}
contacts: {data-platform: team}
"""


def _settings_file(tmp_path: Path, paging: str) -> Path:
    """A settings file whose ``paging:`` section is ``paging`` (so its lines are one further down)."""
    path = tmp_path / "settings.yaml"
    path.write_text("paging:\n" + "".join(f"  {line}\n" for line in paging.splitlines()))
    return path


def test_the_settings_paging_section_reads_a_valid_routing(tmp_path: Path) -> None:
    cfg = load_settings(_settings_file(tmp_path, ROUTING)).paging
    assert cfg.timezone == "Europe/Berlin" and cfg.urls("team") == ["json://127.0.0.1:9/a", "json://127.0.0.1:9/b"]
    assert [level.after for level in cfg.escalation] == [timedelta(minutes=15), timedelta(hours=1)]
    assert cfg.routes["SEV3"].when == "working_hours" and cfg.contacts == {"data-platform": "team"}


def test_routing_problems_are_reported_every_one_with_its_line(tmp_path: Path) -> None:
    path = _settings_file(tmp_path,
        "timezone: Mars/Olympus\n"                        # 2
        "channels:\n"                                     # 3
        "  oncall: json://127.0.0.1:9/oncall\n"           # 4
        "routes:\n"                                       # 5
        "  SEV1:\n"                                       # 6
        "    channels: [oncall, pager]\n"                 # 7
        "escalation:\n"                                   # 8
        "  - after: 15 parsecs\n"                         # 9
        "    channels: [oncall]\n"                        # 10
        "working_hours: {start: '18:00', end: '09:00'}\n"  # 11
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 4, lines
    assert f"{path}:2: paging.timezone: unknown time zone 'Mars/Olympus'" in lines[0]
    assert any(line.startswith(f"{path}:11: paging.working_hours: start 18:00 must be before end 09:00")
               for line in lines)
    assert any(line.startswith(f"{path}:7: paging.routes.SEV1.channels[1]: unknown channel 'pager'") for line in lines)
    assert any(line.startswith(f"{path}:9: paging.escalation[0].after:") and "15 parsecs" in line for line in lines)


def test_unsupported_apprise_urls_and_bad_files_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="apprise does not accept"):
        RoutingConfig(channels={"oncall": "nosuchservice://token@host"})
    path = _settings_file(tmp_path, "channels:\n  oncall: [json://127.0.0.1:9/ok, 'not a url']\n")
    with pytest.raises(ConfigError, match=r":3: paging\.channels\.oncall\[1\]: apprise does not accept this URL"):
        load_settings(path)
    path.write_text("paging:\n  routes: {SEV1: [unclosed\n")
    with pytest.raises(ConfigError, match=":3: not valid YAML"):
        load_settings(path)
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "missing.yaml")
    path = _settings_file(tmp_path, "routes:\n  SEV9: {channels: []}\nsurprise: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert ":3: paging.routes.SEV9:" in message and ":4: paging.surprise: unknown field" in message
