"""Live traffic of the demo organisation: intervals, idempotence, the attack, containment honoured.

Real parts only: an embedded store, the real generator at a small size, real control rows.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from builders import epoch_ms
from clickhouse_connect.driver.client import Client

from blastwall.simulation import (
    OrgSpec,
    build_organisation,
    iter_access_log,
    write_to_store,
)
from blastwall.simulation.live import LiveTraffic, TickSummary, demo_spec, demo_start
from playbooks.actions import write_control

#: Monday 5 to Friday 9 October 2026.
SPEC = OrgSpec(principals=60, days=5, seed=7)
#: A Monday after the period, mid-morning UTC: the template is the period's Monday.
START = datetime(2026, 10, 12, 9, 0, tzinfo=UTC)
READS = ("read", "query", "join", "export", "download", "train")


@pytest.fixture(scope="module")
def org():
    """One organisation for the module (built in ~0.1 s, but every test needs it)."""
    return build_organisation(SPEC)


def _control(client: Client, kind: str, target: str, at: datetime) -> None:
    write_control(client, kind, target, True, incident_id=0, run_id="t", step="s", actor="test", reason="test", at=at)


def _stored(client: Client, where: str = "1", **parameters: object) -> list[dict]:
    result = client.query(
        "SELECT event_id, toUnixTimestamp64Milli(event_time) AS ms, principal, action, resource, related, grantee,"
        f" status, bytes, rows FROM access_log WHERE {where} ORDER BY event_time, event_id", parameters=parameters)
    return [dict(zip(result.column_names, row)) for row in result.result_rows]


def test_ticks_append_their_interval_and_a_repeated_interval_adds_nothing(client: Client, org) -> None:
    traffic = LiveTraffic(client, org, started=START, attack=None)
    t1, t2 = START + timedelta(minutes=10), START + timedelta(minutes=25, seconds=0.5)
    first, second = traffic.tick(t1), traffic.tick(t2)
    assert isinstance(first, TickSummary) and (first.start, first.end, second.start) == (START, t1, t1)
    planned = traffic.planned(START, t2)
    assert first.written == traffic.planned(START, t1).num_rows > 0
    assert first.written + second.written == planned.num_rows
    rows = _stored(client)
    assert len(rows) == planned.num_rows == len({r["event_id"] for r in rows})
    assert sorted(r["event_id"] for r in rows) == sorted(planned.column("event_id").to_pylist())
    assert all(epoch_ms(START) < r["ms"] <= epoch_ms(t2) for r in rows)
    assert all("-live-20261012-" in r["event_id"] for r in rows)
    # Nothing new: the same instant again, and a second instance (a restarted console) over the same interval.
    assert traffic.tick(t2).written == 0
    again = LiveTraffic(client, org, started=START, attack=None).tick(t2)
    assert (again.written, again.duplicates) == (0, planned.num_rows)
    assert len(_stored(client)) == planned.num_rows


def test_benign_traffic_repeats_the_same_weekday_of_the_period(org) -> None:
    traffic = LiveTraffic(None, org, started=START, attack=None)
    assert traffic.template_day(START.date()) == 0  # the period's only Monday
    assert traffic.template_day(START.date() + timedelta(days=5)) in range(5)  # a Saturday: some day
    live = traffic.planned(START, START + timedelta(hours=2))
    seeded = next(iter_access_log(org, 10**7, days=[0]))
    week = timedelta(days=7)
    lo, hi = START - week, START - week + timedelta(hours=2)
    template = seeded.filter([lo < t <= hi for t in seeded.column("event_time").to_pylist()])
    assert live.num_rows == template.num_rows > 0
    assert live.column("event_time").to_pylist() == [t + week for t in template.column("event_time").to_pylist()]

    def key(table) -> Counter:
        return Counter(zip(table.column("principal").to_pylist(), table.column("action").to_pylist(),
                           table.column("resource").to_pylist(), table.column("status").to_pylist()))

    assert key(live) == key(template)
    # Same events, a week later, under other ids.
    assert not set(live.column("event_id").to_pylist()) & set(template.column("event_id").to_pylist())


def test_the_attack_arrives_after_attack_after_and_not_before(client: Client) -> None:
    traffic = LiveTraffic(client, build_organisation(SPEC), started=START, attack_after=timedelta(minutes=5))
    plan = traffic.attack_plan
    assert plan is not None and plan.family == "permission_fanout" and plan.start == START + timedelta(minutes=5)
    assert plan.grants and plan.grants[0].endswith(" -> all-staff")
    before = traffic.tick(START + timedelta(minutes=4, seconds=59))
    assert before.attack_events == 0
    dataset = plan.grants[0].split(" -> ")[0]
    fanout = "action = 'grant' AND grantee = 'all-staff' AND resource = {r:String}"
    assert not _stored(client, fanout, r=dataset)
    after = traffic.tick(START + timedelta(hours=3))
    assert after.attack_events > 30
    grants = _stored(client, fanout, r=dataset)
    assert [g["principal"] for g in grants] == [plan.principals[0]] and grants[0]["ms"] > epoch_ms(plan.start)
    attack = _stored(client, "event_id IN {ids:Array(String)}", ids=list(plan.event_ids))
    assert len(attack) == after.attack_events and min(r["ms"] for r in attack) == epoch_ms(plan.start)
    readers = {r["principal"] for r in attack if r["resource"] == dataset and r["ms"] > grants[0]["ms"]}
    assert len(readers) >= 10


def test_a_suspended_identity_emits_no_more_events(client: Client, org) -> None:
    traffic = LiveTraffic(client, org, started=START, attack=None)
    end, at = START + timedelta(hours=1), START + timedelta(minutes=20)
    planned = traffic.planned(START, end)
    busiest, _ = Counter(planned.column("principal").to_pylist()).most_common(1)[0]
    times = [t.timestamp() for p, t in zip(planned.column("principal").to_pylist(),
                                          planned.column("event_time").to_pylist()) if p == busiest]
    _control(client, "identity", busiest, at)
    summary = traffic.tick(end)
    cut = sum(t >= at.timestamp() for t in times)
    assert cut > 0 and summary.suppressed_by_suspension == cut
    assert summary.written == planned.num_rows - cut
    theirs = _stored(client, "principal = {p:String}", p=busiest)
    assert len(theirs) == len(times) - cut and all(r["ms"] < epoch_ms(at) for r in theirs)


def test_reads_of_a_quarantined_resource_come_back_denied(client: Client, org) -> None:
    traffic = LiveTraffic(client, org, started=START, attack=None)
    end = START + timedelta(hours=2)
    planned = traffic.planned(START, end).to_pylist()
    counts = Counter(r["resource"] for r in planned if r["action"] in READS and r["status"] == "ok")
    target, _ = counts.most_common(1)[0]
    touching = {r["event_id"] for r in planned if r["action"] in READS
                and (r["resource"] == target or target in r["related"])}
    _control(client, "resource", target, START)
    summary = traffic.tick(end)
    rows = _stored(client)
    assert len(rows) == len(planned)
    hit = [r for r in rows if r["event_id"] in touching]
    assert hit and all(r["status"] == "denied" and r["bytes"] == 0 and r["rows"] == 0 for r in hit)
    was_ok = {r["event_id"] for r in planned if r["status"] != "denied"}
    assert summary.denied == len(touching & was_ok)
    # Everything else is as planned.
    by_id = {r["event_id"]: r for r in planned}
    assert all(r["status"] == by_id[r["event_id"]]["status"] for r in rows if r["event_id"] not in touching)


def test_a_revoked_attack_grant_turns_the_exposure_reads_denied(client: Client) -> None:
    traffic = LiveTraffic(client, build_organisation(SPEC), started=START, attack_after=timedelta(minutes=1))
    plan = traffic.attack_plan
    dataset, granter = plan.grants[0].split(" -> ")[0], plan.principals[0]
    cut = START + timedelta(minutes=40)
    early = traffic.tick(cut)
    _control(client, "grant", plan.grants[0], cut)
    late = traffic.tick(plan.end)
    attack = _stored(client, "event_id IN {ids:Array(String)}", ids=list(plan.event_ids))
    assert len(attack) == plan.events == early.attack_events + late.attack_events
    exposure = [r for r in attack if r["resource"] == dataset and r["principal"] != granter and r["action"] in READS]
    before = [r for r in exposure if r["ms"] < epoch_ms(cut)]
    after = [r for r in exposure if r["ms"] >= epoch_ms(cut)]
    assert before and all(r["status"] == "ok" for r in before)
    assert after and all(r["status"] == "denied" and r["bytes"] == 0 for r in after)
    assert late.denied == len(after) and early.denied == 0
    # The granter's own events and the grant itself stand: the revocation acts on what it enabled.
    assert all(r["status"] == "ok" for r in attack if r["principal"] == granter)


def test_a_paused_training_run_gets_no_more_train_events(client: Client, org) -> None:
    midnight = START.replace(hour=0)
    traffic = LiveTraffic(client, org, started=midnight, attack=None)
    planned = traffic.planned(midnight, midnight + timedelta(days=1)).to_pylist()
    trains = Counter(r["resource"] for r in planned if r["action"] == "train")
    assert trains, "the template Monday trains models"
    run = min(trains)
    _control(client, "training_run", run, midnight)
    summary = traffic.tick(midnight + timedelta(days=1))
    assert summary.suppressed_by_pause == trains[run]
    assert not _stored(client, "action = 'train' AND resource = {r:String}", r=run)
    others = sum(n for r, n in trains.items() if r != run)
    assert len(_stored(client, "action = 'train'")) == others
    assert summary.written == len(planned) - trains[run]


def test_a_tick_after_a_failed_one_catches_up(client: Client, org) -> None:
    traffic = LiveTraffic(client, org, started=START, attack=None)
    t1, t2, t3 = (START + timedelta(minutes=m) for m in (10, 20, 30))
    traffic.tick(t1)
    # A real failure: the table the tick writes disappears.
    client.command("RENAME TABLE access_log TO access_log_away")
    try:
        with pytest.raises(Exception, match="access_log"):
            traffic.tick(t2)
        assert traffic.last_tick == t1
    finally:
        client.command("RENAME TABLE access_log_away TO access_log")
    resumed = traffic.tick(t3)
    assert (resumed.start, resumed.end) == (t1, t3)
    assert resumed.written == traffic.planned(t1, t3).num_rows > traffic.planned(t2, t3).num_rows
    assert len(_stored(client)) == traffic.planned(START, t3).num_rows


def test_the_demo_history_ends_at_midnight_and_its_spec_is_recovered(client: Client) -> None:
    now = datetime(2026, 11, 3, 14, 7, 12, tzinfo=UTC)
    start = demo_start(now, 5)
    assert start == datetime(2026, 10, 29, tzinfo=UTC)
    spec = OrgSpec(principals=60, days=5, seed=3, start=start)
    write_to_store(client, spec)
    assert demo_spec(client) == spec
    traffic = LiveTraffic(client, demo_spec(client), started=now)
    assert traffic.tick(now + timedelta(minutes=5)).written > 0
    assert demo_spec(client) == spec  # live rows do not lengthen the seeded period
    # The seeded history's last event is before the midnight the live traffic starts from.
    last = client.query("SELECT toUnixTimestamp64Milli(max(event_time)) FROM access_log"
                        " WHERE position(event_id, '-live-') = 0").result_rows[0][0]
    assert last < epoch_ms(now.replace(hour=0, minute=0, second=0))
    with pytest.raises(ValueError, match="timezone-aware"):
        demo_start(now.replace(tzinfo=None), 5)


def test_demo_spec_refuses_a_store_without_an_organisation(client: Client) -> None:
    with pytest.raises(ValueError, match="no simulated organisation"):
        demo_spec(client)


def test_ids_stay_apart_between_attacks_started_at_different_times() -> None:
    a = LiveTraffic(None, build_organisation(SPEC), started=START)
    b = LiveTraffic(None, build_organisation(SPEC), started=START + timedelta(seconds=90))
    assert a.attack_plan.events == b.attack_plan.events
    assert not set(a.attack_plan.event_ids) & set(b.attack_plan.event_ids)
    day = a.planned(START, START + timedelta(hours=12)).column("event_id").to_pylist()
    assert len(day) == len(set(day)) and set(a.attack_plan.event_ids) <= set(day)
