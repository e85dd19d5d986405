"""Entity pages' queries on a real store: a hand-made organisation, checked by hand and by a slow pandas reference.

The organisation: team ml (alice, bob, the agent carol and the service svc-etl), team
finance (dave), a loner with a hostile name; groups all-staff > team-ml/team-finance, ml-leads
(alice) and a withdrawn membership; datasets with grants in force, revoked and denied; a few
hundred seeded events inside the 14-day window and some outside it; incidents and controls.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from builders import MONDAY, alert, event_row, membership_row, principal_row, resource_row
from clickhouse_connect.driver.client import Client

from detector.entities import (
    INCIDENT_LIMIT,
    Window,
    entity_names,
    principal_profile,
    resource_profile,
)
from detector.incidents import record_alert
from detector.triage import READ_ACTIONS
from features.contract import SENSITIVITIES, arrow_schema
from playbooks.actions import write_control

NOW = datetime(2026, 10, 14, 12, 30, tzinfo=UTC)
DAYS = 14
SINCE = datetime(2026, 10, 1, tzinfo=UTC)  # midnight 13 days before NOW's
HOSTILE = 'o\'brien "*x*" [pwn](http://evil.example) `rm` $x$ :red[hi] \\'
HOSTILE_DATA = 'ds."quoted" *bold* [link](http://evil.example) _x_'
PRINCIPALS = [principal_row("alice", "ml"), principal_row("bob", "ml"), principal_row("carol", "ml", "agent"),
              principal_row("svc-etl", "ml", "service"), principal_row("dave", "finance"),
              principal_row(HOSTILE, "ops"), principal_row("zed", "ml", updated_at=NOW - timedelta(days=40))]
RESOURCES = [
    {**resource_row("ds.train", sensitivity="restricted", categories=("pii", "health")), "owner": "dave"},
    {**resource_row("ds.public", sensitivity="public"), "owner": "alice"},
    {**resource_row("emb.vectors", kind="embedding", sensitivity="confidential"), "owner": "outside-owner"},
    {**resource_row(HOSTILE_DATA, sensitivity="internal"), "owner": HOSTILE},
]
MEMBERSHIPS = [membership_row("all-staff", "team-ml"), membership_row("all-staff", "team-finance"),
               membership_row("team-ml", "alice"), membership_row("team-ml", "bob"),
               membership_row("team-ml", "carol"), membership_row("team-ml", "svc-etl"),
               membership_row("team-finance", "dave"), membership_row("ml-leads", "alice"),
               membership_row("team-ml", "zed"), membership_row("team-ml", "zed", removed=1,
                                                                updated_at=MONDAY + timedelta(days=1)),
               # a cycle: finance's group also holds all-staff
               membership_row("team-finance", "all-staff")]
CATALOGUED = {"ds.train", "ds.public", "emb.vectors", HOSTILE_DATA}
PEOPLE = ["alice", "bob", "carol", "svc-etl", "dave", HOSTILE]
DATA = ["ds.train", "ds.public", "emb.vectors", "uncatalogued.tmp", HOSTILE_DATA]


def _events() -> list[dict[str, Any]]:
    """Seeded events: mostly inside the window, some before it and after NOW; plus the grants."""
    rng = random.Random(17)
    events = []
    for i in range(600):
        moment = NOW - timedelta(days=20) + timedelta(seconds=rng.randrange(21 * 86400))
        principal = rng.choice(PEOPLE[:5] if rng.random() < 0.9 else PEOPLE)
        if principal == "alice" and moment.day == 5:
            continue  # a day alice was idle
        action = rng.choice(["read", "read", "query", "join", "export", "write", "train", "login"])
        resource = rng.choice(DATA)
        related = rng.sample([d for d in DATA if d != resource], rng.choice([1, 2])) if action in (
            "join", "train") else []
        events.append(event_row(moment, principal, action, resource, related=related, event_id=f"e{i:04d}",
                                bytes=rng.randrange(10**7), rows=rng.randrange(1000),
                                status=rng.choice(["ok"] * 8 + ["denied", "error"]),
                                principal_type={"carol": "agent", "svc-etl": "service"}.get(principal, "human")))
    grants = [  # (time, grantor, action, resource, grantee, status)
        (NOW - timedelta(days=60), "dave", "grant", "ds.train", "ml-leads", "ok"),  # long ago, still in force
        (NOW - timedelta(days=3), "dave", "grant", "ds.train", "all-staff", "ok"),
        (NOW - timedelta(days=4), "dave", "grant", "ds.train", "bob", "ok"),
        (NOW - timedelta(days=2), "dave", "revoke", "ds.train", "bob", "ok"),  # revoked since
        (NOW - timedelta(days=2), "dave", "grant", "ds.train", "team-finance", "denied"),  # never took effect
        (NOW - timedelta(days=5), "alice", "grant", "ds.public", "dave", "ok"),  # to a principal directly
    ]
    for j, (moment, grantor, action, resource, grantee, status) in enumerate(grants):
        events.append(event_row(moment, grantor, action, resource, grantee=grantee, status=status,
                                event_id=f"g{j:02d}"))
    events.append(event_row(NOW - timedelta(days=90), "ghost", "read", "ds.ancient", event_id="old"))
    return events


EVENTS = _events()


def _load(client: Client) -> None:
    tables = {"access_log": [{**e, "attributes": list(e["attributes"].items())} for e in EVENTS],
              "resources": RESOURCES, "principals": PRINCIPALS, "memberships": MEMBERSHIPS}
    for table, rows in tables.items():
        client.insert_arrow(table, pa.Table.from_pylist(rows, schema=arrow_schema(table)))


def _incident(client: Client, key: str, hours: int, principals: tuple[str, ...], resources: tuple[str, ...],
              detector: str = "bulk_export", entity: str = "principal") -> int:
    at = NOW - timedelta(days=2) + timedelta(hours=hours)
    return record_alert(client, alert(detector, key, "SEV2", at=at, entity=entity, principals=principals,
                                      resources=resources, detected_at=at + timedelta(minutes=10))).incident_id


@pytest.fixture
def org(client: Client) -> dict[str, Any]:
    """The organisation loaded into a real store, with incidents and controls."""
    _load(client)
    ids = {
        "alice_early": _incident(client, "alice", 1, ("alice",), ("ds.train",)),
        "alice_late": _incident(client, "alice", 9, ("alice", "bob"), ("emb.vectors",), "behaviour_outlier"),
        "bob": _incident(client, "bob", 5, ("bob",), ()),
        "grant": _incident(client, "ds.train -> all-staff", 7, ("dave",), ("ds.train",), "permission_fanout",
                           "grant"),
        "hostile": _incident(client, HOSTILE, 3, (HOSTILE,), (HOSTILE_DATA,)),
        "only_in_incidents": _incident(client, "svc-x", 2, ("svc-x",), ("ds.only-in-incident",)),
        "alice_like": _incident(client, "alice2", 4, ("alice2",), ()),  # a name containing alice's: not hers
    }
    control = {"incident_id": ids["alice_early"], "run_id": "r1", "step": "s", "actor": "test", "reason": "why"}
    write_control(client, "identity", "alice", True, at=NOW, **control)
    write_control(client, "identity", "bob", True, at=NOW, **control)
    write_control(client, "identity", "bob", False, at=NOW, **control)  # released
    write_control(client, "grant", "ds.train -> all-staff", True, at=NOW, **control)
    write_control(client, "grant", "ds.public -> dave", True, at=NOW, **control)
    write_control(client, "resource", "ds.train", True, at=NOW, **control)
    write_control(client, "resource", "ds.train2", True, at=NOW, **control)  # another resource
    return {"client": client, "ids": ids}


# ------------------------------------------------------------------ the slow reference


def _frame() -> pd.DataFrame:
    frame = pd.DataFrame(EVENTS)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    return frame


def _in_window(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[(frame["event_time"] >= pd.Timestamp(SINCE)) & (frame["event_time"] < pd.Timestamp(NOW))]


def _daily(frame: pd.DataFrame, principal: str) -> list[int]:
    mine = _in_window(frame)[lambda f: f["principal"] == principal]
    days = [pd.Timestamp(SINCE + timedelta(days=i)) for i in range(DAYS)]
    counts = mine.groupby(mine["event_time"].dt.floor("D")).size()
    return [int(counts.get(day, 0)) for day in days]


def _reference_touched(principal: str) -> pd.DataFrame:
    catalogue = {r["resource"]: r for r in RESOURCES}
    teams = {p["principal"]: p["team"] for p in PRINCIPALS}
    rows: dict[str, dict[str, Any]] = {}
    for e in _in_window(_frame()).itertuples():
        if e.principal != principal:
            continue
        for touched in dict.fromkeys(r for r in [e.resource, *e.related] if r):
            row = rows.setdefault(touched, {"resource": touched, "events": 0, "reads": 0, "denied": 0, "bytes": 0,
                                            "rows": 0, "first_seen": e.event_time, "last_seen": e.event_time})
            row["events"] += 1
            row["reads"] += int(e.action in READ_ACTIONS and e.status == "ok")
            row["denied"] += int(e.status == "denied")
            row["bytes"] += e.bytes if touched == e.resource else 0
            row["rows"] += e.rows if touched == e.resource else 0
            row["first_seen"], row["last_seen"] = min(row["first_seen"], e.event_time), max(row["last_seen"],
                                                                                            e.event_time)
    for row in rows.values():
        entry = catalogue.get(row["resource"], {})
        row["sensitivity"], row["owner"] = entry.get("sensitivity", ""), entry.get("owner", "")
        row["owner_team"] = teams.get(row["owner"]) or row["owner"]
        row["rank"] = SENSITIVITIES.index(row["sensitivity"]) + 1 if row["sensitivity"] else 0
    return pd.DataFrame(sorted(rows.values(), key=lambda r: (-r["rank"], -r["events"], r["resource"])))


def _reference_readers(resource: str) -> pd.DataFrame:
    frame = _in_window(_frame())
    reads = frame[frame["action"].isin(READ_ACTIONS) & (frame["status"] == "ok")
                  & ((frame["resource"] == resource) | frame["related"].map(lambda r: resource in r))].copy()
    reads["direct"] = reads["resource"] == resource
    grouped = reads.groupby("principal").apply(lambda g: pd.Series({
        "reads": len(g), "rows": int(g.loc[g["direct"], "rows"].sum()), "bytes": int(g.loc[g["direct"], "bytes"].sum()),
        "first_read": g["event_time"].min(), "last_read": g["event_time"].max()}), include_groups=False)
    return grouped.reset_index().sort_values(["last_read", "principal"], ascending=[False, True],
                                             ignore_index=True)


# ------------------------------------------------------------------ principals


def test_a_principals_catalogue_row_peers_and_groups(org: dict[str, Any]) -> None:
    profile = principal_profile(org["client"], "alice", NOW, DAYS)
    assert profile is not None
    assert (profile.principal_type, profile.team) == ("human", "ml")
    assert profile.catalogue is not None and profile.catalogue["principal"] == "alice"
    # zed's catalogue row is in ml too: a peer (memberships are not the catalogue); the service is not.
    assert profile.peers == ["bob", "carol", "zed"] and profile.peer_count == 3
    assert list(zip(profile.groups["group"], profile.groups["through"])) == [
        ("ml-leads", ""), ("team-ml", ""), ("all-staff", "team-ml"), ("team-finance", "team-ml > all-staff")]


def test_a_service_and_a_teamless_principal_have_no_peers(org: dict[str, Any]) -> None:
    service = principal_profile(org["client"], "svc-etl", NOW, DAYS)
    assert service is not None and service.peers == [] and service.peer_count == 0
    assert service.activity["peer_median"].isna().all()
    assert list(service.activity["events"]) == _daily(_frame(), "svc-etl")


def test_activity_per_day_against_the_peers_median(org: dict[str, Any]) -> None:
    profile = principal_profile(org["client"], "alice", NOW, DAYS)
    assert profile is not None
    frame = _frame()
    assert list(profile.activity["day"]) == [pd.Timestamp(SINCE + timedelta(days=i)) for i in range(DAYS)]
    assert list(profile.activity["events"]) == _daily(frame, "alice")
    assert profile.activity["events"].iloc[4] == 0  # 5 October: idle
    peers = np.array([_daily(frame, peer) for peer in ("bob", "carol", "zed")])  # zed: no events, 0 every day
    assert profile.activity["peer_median"].tolist() == pytest.approx(np.median(peers, axis=0).tolist())
    assert sum(profile.activity["events"]) < sum(1 for e in EVENTS if e["principal"] == "alice")  # window only


def test_the_data_a_principal_touched(org: dict[str, Any]) -> None:
    profile = principal_profile(org["client"], "bob", NOW, DAYS)
    assert profile is not None
    want = _reference_touched("bob")
    got = profile.touched
    assert len(want) == len(DATA)  # bob touched every resource, directly or as a related one
    assert list(got["resource"]) == list(want["resource"]) and profile.touched_count == len(want)
    for column in ("events", "reads", "denied", "bytes", "rows"):
        assert [int(v) for v in got[column]] == [int(v) for v in want[column]], column
    for column in ("sensitivity", "owner", "owner_team"):
        assert list(got[column]) == list(want[column]), column
    assert list(got["first_seen"]) == list(want["first_seen"])
    assert list(got["last_seen"]) == list(want["last_seen"])
    by_name = got.set_index("resource")
    assert by_name.loc["ds.train", "owner_team"] == "finance"  # dave's team
    assert by_name.loc["emb.vectors", "owner_team"] == "outside-owner"  # an owner outside the catalogue
    assert by_name.loc["uncatalogued.tmp", "sensitivity"] == ""
    assert got["first_seen"].dt.tz is not None


def test_a_principals_incidents_newest_first_and_only_its_own(org: dict[str, Any]) -> None:
    ids = org["ids"]
    alice = principal_profile(org["client"], "alice", NOW, DAYS)
    assert alice is not None
    assert [i["id"] for i in alice.incidents] == [ids["alice_late"], ids["alice_early"]]
    assert alice.incident_count == 2
    bob = principal_profile(org["client"], "bob", NOW, DAYS)
    assert bob is not None and [i["id"] for i in bob.incidents] == [ids["alice_late"], ids["bob"]]


def test_the_incident_list_is_limited_but_the_count_is_not(org: dict[str, Any]) -> None:
    client = org["client"]
    for hour in range(INCIDENT_LIMIT + 3):
        _incident(client, f"carol-{hour}", -hour, ("carol",), (), detector="runaway_agent")
    profile = principal_profile(client, "carol", NOW, DAYS)
    assert profile is not None
    assert len(profile.incidents) == INCIDENT_LIMIT and profile.incident_count == INCIDENT_LIMIT + 3
    detected = [i["detected_at"] for i in profile.incidents]
    assert detected == sorted(detected, reverse=True)


def test_containment_in_force_on_a_principal(org: dict[str, Any]) -> None:
    alice = principal_profile(org["client"], "alice", NOW, DAYS)
    bob = principal_profile(org["client"], "bob", NOW, DAYS)
    dave = principal_profile(org["client"], "dave", NOW, DAYS)
    assert alice is not None and bob is not None and dave is not None
    assert [(c["kind"], c["target"]) for c in alice.containment] == [("identity", "alice")]
    assert bob.containment == []  # released
    assert [(c["kind"], c["target"]) for c in dave.containment] == [("grant", "ds.public -> dave")]


def test_unknown_names_have_no_profile_but_any_trace_is_enough(org: dict[str, Any]) -> None:
    client = org["client"]
    assert principal_profile(client, "nobody", NOW, DAYS) is None
    assert resource_profile(client, "nothing", NOW, DAYS) is None
    ghost = principal_profile(client, "ghost", NOW, DAYS)  # only in the log, long before the window
    assert ghost is not None and ghost.catalogue is None and ghost.principal_type == "human"
    assert ghost.touched.empty and sum(ghost.activity["events"]) == 0
    only = principal_profile(client, "svc-x", NOW, DAYS)  # only named by an incident
    assert only is not None and [i["id"] for i in only.incidents] == [org["ids"]["only_in_incidents"]]
    assert resource_profile(client, "ds.only-in-incident", NOW, DAYS) is not None
    assert resource_profile(client, "ds.ancient", NOW, DAYS) is not None  # in the log, before the window


def test_hostile_names_are_parameters_not_sql(org: dict[str, Any]) -> None:
    client = org["client"]
    person = principal_profile(client, HOSTILE, NOW, DAYS)
    assert person is not None and person.team == "ops" and person.peers == []
    assert [i["id"] for i in person.incidents] == [org["ids"]["hostile"]]
    assert list(person.activity["events"]) == _daily(_frame(), HOSTILE)
    data = resource_profile(client, HOSTILE_DATA, NOW, DAYS)
    assert data is not None and data.catalogue is not None
    assert data.catalogue["owner"] == HOSTILE and data.catalogue["owner_team"] == "ops"
    assert [i["id"] for i in data.incidents] == [org["ids"]["hostile"]]
    assert list(data.readers["principal"]) == list(_reference_readers(HOSTILE_DATA)["principal"])


# ------------------------------------------------------------------ resources


def test_a_resources_catalogue_row(org: dict[str, Any]) -> None:
    profile = resource_profile(org["client"], "ds.train", NOW, DAYS)
    assert profile is not None and profile.catalogue is not None
    row = profile.catalogue
    assert (row["kind"], row["sensitivity"], row["categories"], row["owner"], row["owner_team"]) == (
        "dataset", "restricted", ["pii", "health"], "dave", "finance")


@pytest.mark.parametrize("days_ago", [10, 3.5, 2.5, 1])
def test_grants_in_force_read_from_the_history_agree_with_the_whole_log(org: dict[str, Any], days_ago: float) -> None:
    """Once detection has built its history, the grants come from it plus the log since: the same answer."""
    from features.history import advance_history

    whole_log = resource_profile(org["client"], "ds.train", NOW, DAYS).grants
    advance_history(org["client"], NOW - timedelta(days=days_ago))  # history ends among the grants
    from_history = resource_profile(org["client"], "ds.train", NOW, DAYS).grants
    pd.testing.assert_frame_equal(from_history[whole_log.columns], whole_log)


def test_who_can_read_a_resource_and_through_which_groups(org: dict[str, Any]) -> None:
    profile = resource_profile(org["client"], "ds.train", NOW, DAYS)
    assert profile is not None
    # In force: ml-leads (long ago) and all-staff; bob's grant was revoked, team-finance's denied.
    grants = profile.grants
    assert list(grants["grantee"]) == ["ml-leads", "all-staff"]
    assert list(grants["granted_by"]) == ["dave", "dave"] and list(grants["is_group"]) == [True, True]
    assert list(grants["reaches"]) == [1, 5]  # all-staff: alice, bob, carol, svc-etl, dave (zed withdrawn)
    assert grants["granted_at"].iloc[1] == pd.Timestamp(NOW - timedelta(days=3))
    audience = {p: (g, t) for p, g, t in zip(profile.audience["principal"], profile.audience["granted_to"],
                                              profile.audience["through"])}
    assert audience == {
        "alice": ("ml-leads", "ml-leads"),  # the shorter chain, and the older grant
        "bob": ("all-staff", "all-staff > team-ml"), "carol": ("all-staff", "all-staff > team-ml"),
        "svc-etl": ("all-staff", "all-staff > team-ml"), "dave": ("all-staff", "all-staff > team-finance")}
    assert profile.audience_size == 5
    kinds = dict(zip(profile.audience["principal"], profile.audience["principal_type"]))
    assert kinds["carol"] == "agent" and kinds["svc-etl"] == "service"
    assert dict(zip(profile.audience["principal"], profile.audience["team"]))["dave"] == "finance"


def test_a_grant_to_a_principal_reaches_it_directly(org: dict[str, Any]) -> None:
    profile = resource_profile(org["client"], "ds.public", NOW, DAYS)
    assert profile is not None
    assert list(profile.grants["grantee"]) == ["dave"] and list(profile.grants["is_group"]) == [False]
    assert list(profile.audience["principal"]) == ["dave"] and list(profile.audience["through"]) == [""]


def test_who_read_a_resource_and_when(org: dict[str, Any]) -> None:
    profile = resource_profile(org["client"], "emb.vectors", NOW, DAYS)
    assert profile is not None
    want = _reference_readers("emb.vectors")
    got = profile.readers
    assert len(want) > 3
    assert list(got["principal"]) == list(want["principal"]) and profile.reader_count == len(want)
    for column in ("reads", "rows", "bytes"):
        assert [int(v) for v in got[column]] == [int(v) for v in want[column]], column
    assert list(got["first_read"]) == list(want["first_read"])
    assert list(got["last_read"]) == list(want["last_read"])
    assert profile.grants.empty and profile.audience.empty and profile.audience_size == 0


def test_a_resources_incidents_and_containment(org: dict[str, Any]) -> None:
    ids = org["ids"]
    profile = resource_profile(org["client"], "ds.train", NOW, DAYS)
    assert profile is not None
    assert [i["id"] for i in profile.incidents] == [ids["grant"], ids["alice_early"]]
    assert profile.incident_count == 2
    assert [(c["kind"], c["target"]) for c in profile.containment] == [
        ("grant", "ds.train -> all-staff"), ("resource", "ds.train")]


def test_the_window_and_the_picker(org: dict[str, Any]) -> None:
    window = Window.ending(NOW, DAYS)
    assert (window.since, window.until) == (SINCE, NOW)
    with pytest.raises(ValueError):
        Window.ending(NOW, 0)
    from zoneinfo import ZoneInfo

    # The same moment, naive (read as UTC) or in another zone, is the same window of UTC days.
    assert Window.ending(NOW.replace(tzinfo=None), DAYS) == window
    assert Window.ending(NOW.astimezone(ZoneInfo("America/Los_Angeles")), DAYS) == window
    client = org["client"]
    assert entity_names(client, "principal", "AL") == ["alice"]
    assert entity_names(client, "principal")[:2] == ["alice", "bob"]
    assert entity_names(client, "resource", "ds.") == sorted(["ds.train", "ds.public", HOSTILE_DATA])
    assert entity_names(client, "resource", "no such") == []
