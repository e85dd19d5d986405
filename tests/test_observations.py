"""Peer observations and entity risk, on a real embedded store with a hand-built organisation.

The organisation: three teams (hr, eng, ml) of four people, a service account in eng,
and a week of ordinary work in which each team touches its own data (ml also the
models) before the day under test. Each test then adds the day's events and checks what
is observed, or what risk adds up to, against what the definitions say.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from builders import MONDAY, epoch_ms, event_row, open_initialised, principal_row, resource_row

from blastwall.store import close_store
from detector.detect import DetectConfig, detect_step
from detector.families import Batch, Step
from detector.incidents import list_incidents
from detector.observations import Observation, ObservationConfig, observations
from detector.risk import RiskConfig, RiskEvent, events_of_alerts, forget_step, risk_alerts
from features.contract import arrow_schema

TEAMS = {"hr": ["hr1", "hr2", "hr3", "hr4"], "eng": ["eng1", "eng2", "eng3", "eng4"], "ml": ["ml1", "ml2", "ml3"]}
MODELS = [f"model.m{i}" for i in range(12)]
#: The day under test: a week after the organisation's first day.
DAY = MONDAY + timedelta(days=7)
STEP = timedelta(minutes=15)


def _resource(name: str, owner: str, **fields: Any) -> dict[str, Any]:
    return resource_row(name, **fields) | {"owner": owner}


CATALOGUE = [
    _resource("ds.hr.comp", "hr1", sensitivity="restricted", categories=["pii", "financial"]),
    _resource("ds.hr.reviews", "hr1", sensitivity="confidential", categories=["performance"]),
    _resource("ds.eng.logs", "eng1", sensitivity="internal"),
    _resource("ds.eng.keys_index", "eng1", sensitivity="confidential", categories=["credentials"]),
    *(_resource(m, "ml1", kind="model", sensitivity="confidential") for m in MODELS),
]


def _insert(client: Any, table: str, rows: list[dict[str, Any]]) -> None:
    client.insert_arrow(table, pa.Table.from_pylist(rows, schema=arrow_schema(table)))


def _usual_week() -> list[dict[str, Any]]:
    """Seven days of each team on its own data (hr2 exports to its usual bucket)."""
    rows = []
    for day in range(7):
        at = MONDAY + timedelta(days=day, hours=10)
        for i, person in enumerate(TEAMS["hr"]):
            rows.append(event_row(at + timedelta(minutes=i), person, "read", "ds.hr.comp"))
            rows.append(event_row(at + timedelta(minutes=i, seconds=30), person, "read", "ds.hr.reviews"))
        rows.append(event_row(at + timedelta(hours=1), "hr2", "export", "ds.hr.comp", bytes=10**6,
                              attributes={"destination": "s3://hr-reports/weekly/"}))
        for i, person in enumerate(TEAMS["eng"]):
            rows.append(event_row(at + timedelta(minutes=i), person, "query", "ds.eng.logs"))
        rows.append(event_row(at + timedelta(minutes=9), "eng1", "read", "ds.eng.keys_index"))
        for i, person in enumerate(TEAMS["ml"]):
            rows.append(event_row(at + timedelta(minutes=i), person, "read", MODELS[day % len(MODELS)]))
    return rows


@pytest.fixture
def org(tmp_path: Path) -> Any:
    client = open_initialised(tmp_path / "store")
    _insert(client, "principals", [principal_row(p, team) for team, people in TEAMS.items() for p in people]
            + [principal_row("svc-backup", "eng", "service")])
    _insert(client, "resources", CATALOGUE)
    _insert(client, "access_log", _usual_week())
    yield client
    close_store(client)


def _observe(client: Any, lo: datetime, steps: int = 1, config: ObservationConfig | None = None
             ) -> list[list[Observation]]:
    """Each step's observations, from one batch of ``steps`` steps starting at ``lo``."""
    lo_ms, step_ms = epoch_ms(lo), int(STEP.total_seconds() * 1000)
    batch = Batch(lo_ms, lo_ms + steps * step_ms, step_ms, windows=[None] * steps if steps > 1 else [])
    found = []
    for k in range(steps):
        params = {"lo": lo_ms + k * step_ms, "hi": lo_ms + (k + 1) * step_ms}
        found.append(observations(Step(client, None, None, params, DetectConfig(), 0, batch), config))
    return found


def _kinds(found: list[Observation]) -> list[tuple[str, str, str, int]]:
    return sorted((o.principal, o.kind, o.subject, o.points) for o in found)


def test_first_reads_outside_the_team_domain_are_judged_against_peers(org: Any) -> None:
    at = DAY + timedelta(hours=10)
    _insert(org, "access_log", [
        event_row(at, "eng2", "read", "ds.hr.comp"),  # another team's restricted data: 2 points
        event_row(at + timedelta(minutes=1), "eng3", "read", "ds.hr.reviews"),  # confidential: 1 point
        event_row(at + timedelta(minutes=2), "eng2", "read", "ds.hr.comp"),  # the same first touch again
        event_row(at + timedelta(minutes=3), "hr3", "query", "ds.eng.logs"),  # internal data: not sensitive
        event_row(at + timedelta(minutes=4), "svc-backup", "read", "ds.hr.comp"),  # services run jobs
        event_row(at + timedelta(minutes=5), "eng4", "read", "ds.eng.keys_index"),  # a teammate's data
        event_row(at + timedelta(minutes=6), "ghost", "read", "ds.hr.comp"),  # no team: no peers
        event_row(at + timedelta(minutes=7), "eng1", "read", "ds.hr.comp", status="denied"),  # not a touch
    ])
    [found] = _observe(org, at)
    assert _kinds([o for o in found if o.kind == "out_of_domain"]) == [
        ("eng2", "out_of_domain", "ds.hr.comp", 2), ("eng3", "out_of_domain", "ds.hr.reviews", 1)]
    first = next(o for o in found if o.principal == "eng2")
    assert first.first_ms == epoch_ms(at) and first.resources == ("ds.hr.comp",)
    assert "hr" in first.text and "eng" in first.text


def test_a_domain_enough_of_the_team_works_in_is_not_out_of_domain(org: Any) -> None:
    # Two of eng's four people read hr's confidential reviews last week: hr's confidential data is eng's domain too.
    _insert(org, "resources", [_resource("ds.hr.surveys", "hr1", sensitivity="confidential")])
    _insert(org, "access_log", [event_row(MONDAY + timedelta(days=d, hours=15), p, "read", "ds.hr.reviews")
                                for d in (2, 4) for p in ("eng1", "eng4")])
    at = DAY + timedelta(hours=10)
    _insert(org, "access_log", [event_row(at, "eng2", "read", "ds.hr.surveys"),
                                event_row(at + timedelta(minutes=1), "eng3", "read", "ds.hr.comp")])
    [found] = _observe(org, at)
    # ...but not its restricted data: working with a team's confidential data does not make the rest usual.
    assert _kinds([o for o in found if o.kind == "out_of_domain"]) == [("eng3", "out_of_domain", "ds.hr.comp", 2)]
    [strict] = _observe(org, at, config=ObservationConfig(domain_share=0.9))
    assert _kinds([o for o in strict if o.kind == "out_of_domain"]) == [
        ("eng2", "out_of_domain", "ds.hr.surveys", 1), ("eng3", "out_of_domain", "ds.hr.comp", 2)]


def test_a_combination_of_categories_nobody_made_is_rare_once_per_step(org: Any) -> None:
    at = DAY + timedelta(hours=11)
    _insert(org, "access_log", [
        # credentials joined with pii and financial: two new pairs, one signal, restricted data: 3 points
        event_row(at, "eng1", "join", "ds.eng.keys_index", related=["ds.hr.comp"]),
        # pii with financial is hr's daily bread; performance with pii too
        event_row(at + timedelta(minutes=1), "hr1", "read", "ds.hr.comp"),
        event_row(at + timedelta(minutes=2), "hr1", "read", "ds.hr.reviews"),
    ])
    [found] = _observe(org, at)
    combos = [o for o in found if o.kind == "rare_combination"]
    assert _kinds(combos) == [("eng1", "rare_combination", "credentials+financial, credentials+pii", 3)]
    assert combos[0].resources == ("ds.eng.keys_index", "ds.hr.comp")
    # Joining with hr's restricted data is a first touch of it, outside eng's domain, by the same act.
    [touch] = [o for o in found if o.kind == "out_of_domain"]
    assert (touch.principal, touch.subject, touch.act_ms) == ("eng1", "ds.hr.comp", combos[0].act_ms)


def test_a_combination_is_restricted_only_by_what_was_read_by_then(org: Any) -> None:
    at = DAY + timedelta(hours=9)
    _insert(org, "access_log", [
        event_row(at + timedelta(minutes=1), "eng1", "read", "ds.hr.reviews"),  # performance, confidential
        event_row(at + timedelta(minutes=2), "eng1", "read", "ds.eng.keys_index"),  # credentials, confidential
        event_row(at + 2 * STEP, "eng1", "read", "ds.hr.comp"),  # pii and financial, restricted: a later step
    ])
    batched = _observe(org, at, steps=3)
    assert batched == [_observe(org, at + k * STEP)[0] for k in range(3)]
    first, _, third = ([o for o in found if o.kind == "rare_combination"] for found in batched)
    assert [(o.subject, o.points) for o in first] == [("credentials+performance", 2)]
    assert [o.points for o in third] == [3]


def test_a_join_is_judged_by_the_joins_before_it(org: Any) -> None:
    # hr has joined its two datasets before; every hr person reads both daily (a session combines them too).
    _insert(org, "access_log", [event_row(MONDAY + timedelta(days=2, hours=16), "hr2", "join", "ds.hr.comp",
                                          related=["ds.hr.reviews"])])
    at = DAY + timedelta(hours=11)
    _insert(org, "access_log", [
        event_row(at, "hr3", "join", "ds.hr.reviews", related=["ds.hr.comp"]),  # joined before, either way round
        event_row(at + timedelta(minutes=2), "eng1", "join", "ds.eng.keys_index", related=["ds.hr.reviews"]),
        event_row(at + timedelta(minutes=3), "eng3", "join", "ds.eng.logs", related=["ds.hr.reviews"]),  # internal
    ])
    [found] = _observe(org, at)
    [join] = [o for o in found if o.kind == "rare_combination"]
    assert (join.principal, join.subject, join.points) == ("eng1", "credentials+performance", 2)
    assert join.act_ms == epoch_ms(at + timedelta(minutes=2)) and "no join" in join.text
    assert join.resources == ("ds.eng.keys_index", "ds.hr.reviews")


def test_a_combination_completes_when_its_second_category_is_first_read_today(org: Any) -> None:
    morning = DAY + timedelta(hours=9)
    _insert(org, "access_log", [event_row(morning, "eng1", "read", "ds.hr.reviews"),
                                event_row(morning + timedelta(hours=2), "eng1", "read", "ds.eng.keys_index")])
    early, late = _observe(org, morning)[0], _observe(org, morning + timedelta(hours=2))[0]
    assert not [o for o in early if o.kind == "rare_combination"]
    [combo] = [o for o in late if o.kind == "rare_combination"]
    assert combo.subject == "credentials+performance" and combo.points == 2
    assert combo.first_ms == epoch_ms(morning) and combo.last_ms == epoch_ms(morning + timedelta(hours=2))


def test_exports_to_a_destination_nobody_used_are_observed_by_host(org: Any) -> None:
    at = DAY + timedelta(hours=12)
    _insert(org, "access_log", [
        event_row(at, "hr2", "export", "ds.hr.comp", bytes=10**6,
                  attributes={"destination": "s3://hr-reports/other-prefix/"}),  # the usual bucket
        event_row(at + timedelta(minutes=1), "hr4", "export", "ds.hr.comp", bytes=6 * 10**8,
                  attributes={"destination": "s3://box-7f3a/x/"}),
        event_row(at + timedelta(minutes=2), "hr4", "export", "ds.hr.reviews", bytes=6 * 10**8,
                  attributes={"destination": "s3://box-7f3a/y/"}),
        event_row(at + timedelta(minutes=3), "eng1", "export", "ds.eng.logs", bytes=10**9,
                  attributes={"destination": "s3://new-but-internal-data/"}),  # not sensitive
    ])
    [found] = _observe(org, at)
    [new] = [o for o in found if o.kind == "new_destination"]
    assert (new.principal, new.subject, new.points) == ("hr4", "box-7f3a", 4)  # 1.2 GB: one point more
    assert new.resources == ("ds.hr.comp", "ds.hr.reviews")
    assert "no one in the organisation" in new.text


def test_a_destination_new_to_the_team_weighs_less_than_one_new_to_everyone(org: Any) -> None:
    at = DAY + timedelta(hours=12)
    # eng1 exports hr data to hr's usual bucket: the organisation knows it, eng does not.
    _insert(org, "access_log", [event_row(at, "eng1", "export", "ds.hr.comp", bytes=10**6,
                                          attributes={"destination": "s3://hr-reports/weekly/"})])
    [found] = _observe(org, at)
    [new] = [o for o in found if o.kind == "new_destination"]
    assert (new.principal, new.subject, new.points) == ("eng1", "hr-reports", 2)
    assert "no one in their team" in new.text


def test_only_the_step_that_first_uses_a_destination_observes_it(org: Any) -> None:
    at = DAY + timedelta(hours=12)
    _insert(org, "access_log", [
        event_row(at + timedelta(minutes=1), "hr4", "export", "ds.hr.comp", attributes={"destination": "gs://z/"}),
        event_row(at + STEP + timedelta(minutes=1), "hr3", "export", "ds.hr.comp", attributes={"destination": "gs://z/"}),
        event_row(at + STEP + timedelta(minutes=2), "eng2", "export", "ds.hr.comp",
                  attributes={"destination": "gs://z/"})])
    first, second = _observe(org, at, steps=2)
    assert [(o.principal, o.points) for o in first if o.kind == "new_destination"] == [("hr4", 3)]
    # A step later the organisation and hr have used it; eng has not.
    assert [(o.principal, o.points) for o in second if o.kind == "new_destination"] == [("eng2", 2)]
    assert [first, second] == [_observe(org, at)[0], _observe(org, at + STEP)[0]]


def test_artifact_downloads_are_judged_against_the_team_relation_to_models(org: Any) -> None:
    at = DAY + timedelta(hours=2)
    _insert(org, "access_log", [event_row(at + timedelta(minutes=i), "hr3", "download", m, bytes=10**9)
                                for i, m in enumerate(MODELS[:10])]
            + [event_row(at + timedelta(minutes=i), "ml2", "download", m) for i, m in enumerate(MODELS)])
    [found] = _observe(org, at)
    [role] = [o for o in found if o.kind == "out_of_role_artifacts"]
    assert (role.principal, role.subject, role.points) == ("hr3", "10 artifacts", 3)
    assert role.resources == tuple(sorted(MODELS[:10]))


def test_nothing_is_observed_without_enough_history(org: Any) -> None:
    at = MONDAY + timedelta(days=2, hours=10)  # two days of log before the day: less than min_history
    _insert(org, "access_log", [event_row(at, "eng2", "read", "ds.hr.comp")])
    assert _observe(org, at) == [[]]
    assert _observe(org, at, config=ObservationConfig(min_history=timedelta(days=1)))[0]


def test_a_batch_observes_each_step_as_the_step_alone_does(org: Any) -> None:
    at = DAY + timedelta(hours=9)
    events = [event_row(at + timedelta(minutes=7 + 20 * k), "eng2" if k % 2 else "eng3", "read",
                        ("ds.hr.comp", "ds.hr.reviews", "ds.eng.keys_index")[k % 3]) for k in range(8)]
    events += [event_row(at + timedelta(minutes=50), "hr4", "export", "ds.hr.comp",
                         attributes={"destination": "gs://elsewhere/"}),
               event_row(at + timedelta(minutes=95), "hr1", "download", MODELS[0])]
    _insert(org, "access_log", events)
    batched = _observe(org, at, steps=12)
    alone = [_observe(org, at + k * STEP)[0] for k in range(12)]
    assert batched == alone
    assert sum(len(found) for found in batched) >= 5


# ---------------------------------------------------------------------------- entity risk


def _event(principal: str, source: str, points: float, at: datetime, subject: str = "x", act: int = 1
           ) -> RiskEvent:
    """A risk event at the end of the step ``at``; an observation's act is ``act`` minutes before it."""
    ms = epoch_ms(at)
    return RiskEvent(principal, f"{source}|{principal}|{subject}|{ms}", ms, source, points, f"{source} {subject}",
                     ms - 60_000, ms, (f"ds.{subject}",), ms - act * 60_000)


def _risk(client: Any, at: datetime, events: list[RiskEvent], config: RiskConfig | None = None) -> list[Any]:
    params = {"lo": epoch_ms(at - STEP), "hi": epoch_ms(at)}
    step = Step(client, None, None, params, DetectConfig(), 0, Batch(params["lo"], params["hi"], params["hi"]
                                                                      - params["lo"]))
    return risk_alerts(step, events, config)


def test_one_signal_never_alerts_however_many_points(org: Any) -> None:
    at = DAY + timedelta(hours=10)
    # Three observations of one act (one read: two first touches through a join, and the combination) are one signal.
    found = [_event("eng2", "out_of_domain", 2, at, "a"), _event("eng2", "out_of_domain", 2, at, "b"),
             _event("eng2", "rare_combination", 3, at, "c")]
    assert _risk(org, at, found) == []


def test_two_acts_in_one_step_are_two_signals(org: Any) -> None:
    at = DAY + timedelta(hours=10)
    # A join of never-combined data, then an export of it to a new destination, both within the step.
    found = [_event("eng2", "rare_combination", 3, at, "join", act=12), _event("eng2", "out_of_domain", 2, at, "join",
                                                                              act=12),
             _event("eng2", "new_destination", 4, at, "export", act=3)]
    [page] = _risk(org, at, found)
    assert page.severity == "SEV2" and "2 weak signals" in page.title  # min(5, cap 4) + 4 = 8, two kinds


def test_weak_signals_add_up_with_decay_to_a_ticket_then_a_page(org: Any) -> None:
    day1, day2, day3 = (DAY + timedelta(days=d, hours=10) for d in range(3))
    assert _risk(org, day1, [_event("eng2", "out_of_domain", 2, day1, "a")]) == []
    # A day later: 2 + 2 * 0.5 ** (1 / 3) = 3.59, under the ticket (points halve every 3 days).
    assert _risk(org, day2, [_event("eng2", "out_of_domain", 2, day2, "b")]) == []
    # Another day: 2 + 1.59 + 1.26 = 4.85: a ticket; one kind of evidence only, so never a page.
    [ticket] = _risk(org, day3, [_event("eng2", "out_of_domain", 2, day3, "c")])
    assert (ticket.detector, ticket.severity, ticket.entity_key) == ("entity_risk", "SEV3", "eng2")
    assert [d["feature"] for d in ticket.explanation[:-1]] == ["out_of_domain"] * 3
    assert ticket.explanation[-1] == {"severity_points": {"accumulated_risk": 4}}
    assert set(ticket.resources) == {"ds.a", "ds.b", "ds.c"}
    assert ticket.first_seen < day1 < ticket.last_seen <= day3
    # A second kind of evidence in the next step: 4.85 + 2 (a SEV3 alert) >= 6 pages.
    later = day3 + STEP
    [page] = _risk(org, later, [_event("eng2", "bulk_export", 2, later)])
    assert page.severity == "SEV2" and "4 weak signals" in page.title


def test_risk_only_counts_earlier_steps_and_a_rerun_writes_the_same(org: Any) -> None:
    t1, t2 = DAY + timedelta(hours=10), DAY + timedelta(hours=11)
    _risk(org, t2, [_event("eng2", "rare_combination", 3, t2)])  # a later step (a crashed batch left it)
    assert _risk(org, t1, [_event("eng2", "out_of_domain", 2, t1)]) == []
    again = _risk(org, t2, [_event("eng2", "rare_combination", 3, t2)])
    assert [a.severity for a in again] == ["SEV3"]
    assert org.query("SELECT count() FROM risk_events FINAL").result_rows[0][0] == 2


def test_a_rerun_of_a_step_states_only_its_own_findings(org: Any) -> None:
    at = DAY + timedelta(hours=10)
    _risk(org, at, [_event("eng2", "out_of_domain", 2, at, "a"), _event("eng3", "out_of_domain", 2, at, "b")])
    forget_step(org, epoch_ms(at))  # the rerun (new rules, a fix) finds only eng3's read
    _risk(org, at, [_event("eng3", "out_of_domain", 2, at, "b")])
    assert org.query("SELECT principal FROM risk_events FINAL").result_rows == [("eng3",)]


def test_old_signals_leave_the_horizon(org: Any) -> None:
    old, now = DAY, DAY + timedelta(days=8)
    _risk(org, old, [_event("eng2", "out_of_domain", 4, old)])
    assert _risk(org, now, [_event("eng2", "new_destination", 4, now)]) == []
    assert [a.severity for a in _risk(org, now + STEP, [_event("eng2", "bulk_export", 1, now + STEP)])] == ["SEV3"]


def test_only_weak_alerts_about_principals_are_risk() -> None:
    from builders import alert

    at = DAY
    alerts = [alert("bulk_export", "a", "SEV3"), alert("artifact_download", "b", "SEV4"),
              alert("bulk_export", "c", "SEV2"), alert("exposure_spike", "ds.x", "SEV3", entity="resource"),
              alert("entity_risk", "d", "SEV3"), alert("pipeline_error", "stage", "SEV3", entity="job")]
    events = events_of_alerts(alerts, epoch_ms(at))
    assert [(e.principal, e.source, e.points) for e in events] == [("a", "bulk_export", 2.0),
                                                                  ("b", "artifact_download", 1.0)]


def test_a_reader_of_other_teams_restricted_data_day_after_day_opens_a_risk_incident(org: Any) -> None:
    # Each day eng2 reads a little of another team's sensitive data; eng3 reads only eng's.
    extra = [_resource("ds.hr.leave", "hr1", sensitivity="restricted", categories=["health"]),
             _resource("ds.hr.pay", "hr1", sensitivity="restricted", categories=["financial"])]
    _insert(org, "resources", extra)
    targets = ["ds.hr.comp", "ds.hr.leave", "ds.hr.pay"]
    _insert(org, "access_log", [event_row(DAY + timedelta(days=d, hours=14), "eng2", "query", target, rows=40)
                                for d, target in enumerate(targets)]
            + [event_row(DAY + timedelta(days=d, hours=14), "eng3", "query", "ds.eng.logs") for d in range(3)])
    for d in range(3):
        start = DAY + timedelta(days=d, hours=14)
        detect_step(org, start, start + STEP)
    [incident] = [i for i in list_incidents(org) if i["detector"] == "entity_risk"]
    assert incident["principals"] == ["eng2"] and incident["severity"] == "SEV3"
    assert set(incident["resources"]) == set(targets)
    assert incident["detected_at"] == DAY + timedelta(days=2, hours=14) + STEP  # the third act's step



# ---------------------------------------------------------------------------- generated organisations


@pytest.mark.parametrize("style", [0, 3, 8])
def test_each_observation_holds_in_generated_organisations_of_different_styles(tmp_path: Path, style: int) -> None:
    """Explicit acts added to a benign generated company of each style are observed; a teammate's data is not."""
    from blastwall.simulation import OrgSpec, build_organisation, write_to_store

    spec = OrgSpec(principals=80, days=6, seed=style, style=style, attacks=False)
    client = open_initialised(tmp_path / "store")
    try:
        write_to_store(client, build_organisation(spec))
        day = spec.start + timedelta(days=5)
        touched = client.query(f"""
            WITH people AS (SELECT principal, argMax(team, updated_at) AS team, argMax(principal_type, updated_at)
                                   AS type FROM principals GROUP BY principal)
            SELECT p.principal, p.team, groupUniqArray(l.resource) FROM people AS p
            LEFT JOIN (SELECT * FROM access_log WHERE event_time < toDateTime64('{day:%Y-%m-%d}', 3, 'UTC')
                       AND status = 'ok') AS l ON l.principal = p.principal
            WHERE p.type = 'human' GROUP BY p.principal, p.team""").result_rows
        by_team: dict[str, set[str]] = {}
        for _, team, resources in touched:
            by_team.setdefault(team, set()).update(resources)
        catalogue = {r: (kind, sensitivity, owner_team) for r, kind, sensitivity, owner_team in client.query("""
            SELECT r.resource, argMax(r.kind, r.updated_at), argMax(r.sensitivity, r.updated_at), any(o.team)
            FROM resources AS r LEFT JOIN principals AS o ON r.owner = o.principal GROUP BY r.resource""").result_rows}
        # The actor: a person of the largest team; the data: restricted, of a team whose data theirs never touches.
        team = max(by_team, key=lambda t: sum(1 for _, t2, _ in touched if t2 == t))
        actor = sorted(p for p, t, _ in touched if t == team)[0]
        domains_used = {catalogue[r][2] for r in by_team[team] if r in catalogue}
        foreign = sorted(r for r, (kind, sensitivity, owner) in catalogue.items()
                         if sensitivity == "restricted" and kind == "dataset" and owner not in domains_used
                         and owner != team)
        ordinary = sorted(r for r in by_team[team] if catalogue.get(r, ("", "", ""))[1] in ("confidential",
                                                                                            "restricted"))
        no_models = sorted(t for t, resources in by_team.items()
                           if not any(catalogue.get(r, ("",))[0] == "model" for r in resources)
                           and sum(1 for _, t2, _ in touched if t2 == t) >= 3)
        assert foreign and no_models, "every style has data outside a team's domain and a team without models"
        downloader = sorted(p for p, t, _ in touched if t == no_models[0])[0]
        models = sorted(r for r, (kind, _, _) in catalogue.items() if kind == "model")[:3]
        at = day + timedelta(hours=11)
        rows = [event_row(at, actor, "read", foreign[0]),
                event_row(at + timedelta(minutes=1), actor, "export", foreign[0], bytes=2 * 10**9,
                          attributes={"destination": f"s3://never-used-{style}/dump/"}),
                *(event_row(at + timedelta(minutes=2 + i), downloader, "download", m, bytes=10**9)
                  for i, m in enumerate(models))]
        if ordinary:  # data the actor's teammates use, read by the actor for the first time or not
            rows.append(event_row(at + timedelta(minutes=5), actor, "read", ordinary[0]))
        _insert(client, "access_log", rows)
        [found] = _observe(client, at)
        mine = {(o.principal, o.kind, o.subject) for o in found}
        assert (actor, "out_of_domain", foreign[0]) in mine
        assert (actor, "new_destination", f"never-used-{style}") in mine
        assert (downloader, "out_of_role_artifacts", "3 artifacts") in mine
        assert not any(o.kind == "out_of_domain" and o.subject in ordinary for o in found if o.principal == actor)
    finally:
        close_store(client)
