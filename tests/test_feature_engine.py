"""The engine equals the reference: random small logs (hypothesis) and explicit edge cases, in a real store.

Every example loads a log into the embedded store, runs :func:`features.engine.extract`
over two consecutive windows (so the incremental history is advanced twice) and
compares each entity's frame with :func:`features.reference.reference_features` for
the same window: keys and integer features exactly, float features within 1e-9.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from builders import MONDAY, contract_frame, event_row
from builders import membership_row as member
from builders import principal_row as person
from builders import resource_row as res
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import (
    ACTIONS,
    CONTRACT_TABLES,
    PRINCIPAL_TYPES,
    RESOURCE_KINDS,
    SENSITIVITIES,
    STATUSES,
    VIA,
    arrow_schema,
)
from features.engine import extract
from features.history import advance_history, compact_history, reset_history
from features.reference import reference_features
from features.registry import ENTITIES, ENTITY_KEYS, SENSITIVE_CATEGORIES, features_of

#: A Monday 00:00 UTC; the generated logs span three days from here.
BASE = MONDAY
DAY_MS = 86_400_000
SPAN_MS = 3 * DAY_MS
U64 = 2**64 - 1

UNICODE_PRINCIPAL = "名前@corp.example"
PRINCIPAL_POOL = ("ann", "bob", "svc-etl", "agent-7", "zoë")
RESOURCE_POOL = ("ds.hr", "ds.chat", "emb.support", "model.v1", "run.alpha", "secret.key", "ft.users", "données.é")
GROUP_POOL = ("g.all", "g.eng", "g.ml")
OUTSIDERS = ("mallory@outside.example", "contractor@partner.example")
CATEGORY_POOL = (*SENSITIVE_CATEGORIES[:5], "source_code", "public_web")
DESTINATIONS = ("", "s3://a", "s3://b", "gs://c")
#: Drawn on top of every action once: more of what the history-based features look at.
WEIGHTED_ACTIONS = ("read", "join", "join", "join", "grant", "grant", "revoke", "export")


@dataclass
class Log:
    """The four contract tables as rows (dicts of contract columns) and two consecutive windows."""

    events: list[dict[str, Any]]
    resources: list[dict[str, Any]] = field(default_factory=list)
    memberships: list[dict[str, Any]] = field(default_factory=list)
    principals: list[dict[str, Any]] = field(default_factory=list)
    bounds: tuple[datetime, datetime, datetime] = (BASE + timedelta(days=1), BASE + timedelta(days=2),
                                                   BASE + timedelta(days=3))

    def table(self, name: str) -> list[dict[str, Any]]:
        return {"access_log": self.events, "resources": self.resources, "memberships": self.memberships,
                "principals": self.principals}[name]


# ------------------------------------------------------------------ row builders


def ev(ms: int, principal: str, action: str, resource: str, **fields: Any) -> dict[str, Any]:
    """An access-log row ``ms`` milliseconds after BASE (contract defaults elsewhere; set ``event_id``)."""
    return event_row(BASE + timedelta(milliseconds=ms), principal, action, resource, **fields)


def numbered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give events without an id the ids e0000, e0001, ... in list order."""
    return [{**e, "event_id": e["event_id"] or f"e{i:04d}"} for i, e in enumerate(events)]


def stamp(version: int) -> datetime:
    """The ``updated_at`` of a catalogue, membership or principals row's ``version``: later is newer."""
    return BASE + timedelta(milliseconds=version)


# ------------------------------------------------------------------ running both sides


def load(client, log: Log) -> None:
    """Replace the store's contract tables with ``log`` and forget all history."""
    for table in CONTRACT_TABLES:
        client.command(f"TRUNCATE TABLE {table}")
    reset_history(client)
    for table in CONTRACT_TABLES:
        rows = log.table(table)
        if rows:
            if table == "access_log":  # Arrow builds a map from (key, value) pairs
                rows = [{**r, "attributes": list(r["attributes"].items())} for r in rows]
            client.insert_arrow(table, pa.Table.from_pylist(rows, schema=arrow_schema(table)))


def reference(log: Log, start: datetime, end: datetime) -> dict[str, pd.DataFrame]:
    return reference_features(*(contract_frame(t, log.table(t)) for t in CONTRACT_TABLES), start, end)


def _key_values(series: pd.Series) -> list[Any]:
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series):
        return [int(v) for v in pd.to_datetime(series, utc=True).dt.as_unit("ms").astype("int64")]
    return [str(v) for v in series.tolist()]


def assert_same_frame(entity: str, got: pd.DataFrame, want: pd.DataFrame, label: str = "") -> None:
    """Equal layout, keys and integer features exactly, float features within 1e-9 relative."""
    where = f"{label} {entity}"
    assert list(got.columns) == list(want.columns), where
    assert len(got) == len(want), f"{where}: {len(got)} rows, reference {len(want)}\n{got}\n{want}"
    for key in ENTITY_KEYS[entity]:
        assert _key_values(got[key]) == _key_values(want[key]), f"{where}: key {key}"
    for feature in features_of(entity):  # type: ignore[arg-type]
        name = feature.name
        if pd.api.types.is_float_dtype(want[name]):
            assert pd.api.types.is_float_dtype(got[name]), f"{where}: {name} is {got[name].dtype}"
            np.testing.assert_allclose(got[name].to_numpy(np.float64), want[name].to_numpy(np.float64),
                                       rtol=1e-9, atol=1e-12, err_msg=f"{where}: {name}")
        else:
            assert pd.api.types.is_integer_dtype(got[name]), f"{where}: {name} is {got[name].dtype}"
            got_values, want_values = [int(v) for v in got[name].tolist()], [int(v) for v in want[name].tolist()]
            assert got_values == want_values, f"{where}: {name}\nengine    {got_values}\nreference {want_values}"


def check(client, log: Log) -> list[dict[str, pd.DataFrame]]:
    """Load ``log``, run the engine over both windows, compare with the reference; return the engine frames."""
    load(client, log)
    t1, t2, t3 = log.bounds
    frames = []
    for label, (start, end) in (("window 1", (t1, t2)), ("window 2", (t2, t3))):
        fs = extract(client, start, end)
        want = reference(log, start, end)
        got = {entity: fs.frame(entity) for entity in ENTITIES}
        for entity in ENTITIES:
            assert_same_frame(entity, got[entity], want[entity], label)
        frames.append(got)
    return frames


# ------------------------------------------------------------------ the random logs


@st.composite
def logs(draw: st.DrawFn) -> Log:
    """Small random logs over three days, with every shape of input the features care about.

    Kept out on purpose: ties in ``updated_at`` (the newest catalogue, membership or
    principals row is then a matter of input order, which the store does not keep).
    """
    names = [UNICODE_PRINCIPAL, *draw(st.lists(st.sampled_from(PRINCIPAL_POOL), max_size=5, unique=True))]
    resources = draw(st.lists(st.sampled_from(RESOURCE_POOL), min_size=1, max_size=8, unique=True))
    groups = draw(st.lists(st.sampled_from(GROUP_POOL), max_size=3, unique=True))
    versions = iter(range(1, 10**6))  # distinct updated_at everywhere: no ties

    catalogue = []
    for resource in resources:
        for _ in range(draw(st.sampled_from((0, 1, 1, 1, 2)))):  # 0: deliberately uncatalogued
            catalogue.append(res(resource, draw(st.sampled_from(RESOURCE_KINDS)), draw(st.sampled_from(SENSITIVITIES)),
                                 tuple(draw(st.lists(st.sampled_from(CATEGORY_POOL), max_size=3))),
                                 draw(st.integers(0, 1)), stamp(next(versions))))
    draw(st.randoms()).shuffle(catalogue)  # newest-by-updated_at must not depend on input order

    memberships = []
    candidates = [*names, *groups, OUTSIDERS[0]]
    for group in groups:
        for who in draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=4, unique=True)):
            memberships.append(member(group, who, updated_at=stamp(next(versions))))
            if draw(st.integers(0, 3)) == 0:  # a newer row withdraws it (or restates it)
                memberships.append(member(group, who, removed=draw(st.integers(0, 1)),
                                          updated_at=stamp(next(versions))))
        if draw(st.booleans()):  # the newest row of one pair is active: the group stays a group
            memberships.append(member(group, draw(st.sampled_from(candidates)), updated_at=stamp(next(versions))))
    if len(groups) >= 2 and draw(st.booleans()):  # a cycle g0 -> g1 -> g0
        memberships += [member(groups[0], groups[1], updated_at=stamp(next(versions))),
                        member(groups[1], groups[0], updated_at=stamp(next(versions)))]

    principals = []
    for name in names:
        for _ in range(draw(st.sampled_from((0, 1, 1, 2)))):
            principals.append(person(name, draw(st.sampled_from(("red", "blue", ""))),
                                     draw(st.sampled_from(PRINCIPAL_TYPES)), stamp(next(versions))))

    t1 = draw(st.integers(0, 2 * DAY_MS))
    t2 = t1 + draw(st.integers(1, DAY_MS))
    t3 = t2 + draw(st.integers(1, DAY_MS))
    bounds = tuple(BASE + timedelta(milliseconds=t) for t in (t1, t2, t3))

    minute_marks = st.integers(0, 3 * 24 * 60).map(lambda minute: minute * 60_000)
    times = st.one_of(st.integers(0, SPAN_MS), minute_marks, minute_marks.map(lambda t: t + 59_999),
                      st.sampled_from((t1, t2, t3, t1 - 1, t2 - 1, t3 - 1)))
    grantees = [*names, *groups, *OUTSIDERS]
    events = []
    for _ in range(draw(st.integers(0, 60))):
        action = draw(st.sampled_from(ACTIONS + WEIGHTED_ACTIONS))
        related: list[str] = []
        if action in ("join", "train") or draw(st.integers(0, 9)) == 0:
            related = draw(st.lists(st.sampled_from(resources[:4] + ["uncatalogued.y", ""]), max_size=3))
        attributes = {}
        if action == "export" or draw(st.integers(0, 9)) == 0:
            attributes = {"destination": draw(st.sampled_from(DESTINATIONS))}
            if draw(st.booleans()):
                attributes["ticket"] = "T-1"
        events.append(ev(
            max(0, draw(times)), draw(st.sampled_from(names)), action, draw(st.sampled_from(resources)),
            principal_type=draw(st.sampled_from(PRINCIPAL_TYPES)),
            related=related,
            grantee=draw(st.sampled_from(grantees)) if action in ("grant", "revoke") else "",
            bytes=draw(st.one_of(st.just(0), st.integers(0, 10**6), st.integers(0, 2**56), st.integers(0, U64))),
            via=draw(st.sampled_from(VIA)),
            status=draw(st.sampled_from(STATUSES)),
            source_ip=draw(st.sampled_from(("", "10.0.0.1", "10.0.0.2", "192.168.1.7"))),
            attributes=attributes,
        ))
    if draw(st.integers(0, 3)) == 0:  # a long history for one principal, the week before: usual hours
        who = draw(st.sampled_from(names))
        usual_hours = draw(st.lists(st.integers(0, 71), min_size=1, max_size=3))
        week_before = -7 * DAY_MS
        for k in range(draw(st.integers(50, 130))):
            events.append(ev(week_before + usual_hours[k % len(usual_hours)] * 3_600_000 + 37 * k, who, "read",
                             resources[0]))
        events.append(ev(week_before + 5 * 3_600_000, who, "read", resources[0]))  # 1 event: < 1 % above 100
        for hour in draw(st.lists(st.sampled_from([*usual_hours, 5, 6]), min_size=1, max_size=6)):  # this week
            events.append(ev(hour * 3_600_000 + draw(st.integers(0, 3_599_999)), who, "query", resources[-1]))
    ids = draw(st.permutations(range(len(events))))
    events = [{**e, "event_id": f"id{i:03d}"} for e, i in zip(events, ids)]
    return Log(events, catalogue, memberships, principals, bounds)


@pytest.mark.slow  # 40 random logs, two windows each; the explicit cases below stay in the fast subset
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(log=logs())
def test_engine_equals_reference_on_random_logs(client, log: Log):
    check(client, log)


# ------------------------------------------------------------------ explicit cases


def ms(day: float, hours: float = 0, milliseconds: int = 0) -> int:
    """Milliseconds after BASE: ``day`` days plus ``hours`` hours plus ``milliseconds``."""
    return round(day * DAY_MS + hours * 3_600_000) + milliseconds


T1, T2 = 1, 2  # the default windows are days 1 and 2 (Tuesday and Wednesday)


def test_empty_log(client):
    frames = check(client, Log([]))
    assert all(len(f) == 0 for window in frames for f in window.values())


def test_empty_windows_with_history_and_future_only(client):
    log = Log(numbered([ev(ms(0, 3), "ann", "read", "ds"), ev(ms(0, 4), "ann", "grant", "ds", grantee="bob"),
                        ev(ms(3), "ann", "read", "ds"), ev(ms(4), "ann", "train", "run", related=["ds"])]))
    frames = check(client, log)
    assert all(len(f) == 0 for window in frames for f in window.values())


def test_one_event(client):
    log = Log(numbered([ev(ms(T1, 3), "ann", "read", "ds.hr", bytes=100, source_ip="10.0.0.1")]),
              [res("ds.hr", sensitivity="confidential", categories=("pii",))])
    (first, second) = check(client, log)
    assert first["principal"]["events"].tolist() == [1] and len(second["principal"]) == 0


def test_principal_with_no_history(client):
    log = Log(numbered([
        ev(ms(0, 5), "old", "read", "a"), ev(ms(0, 5), "old", "export", "a", attributes={"destination": "s3://x"}),
        ev(ms(T1, 1), "new", "read", "a"), ev(ms(T1, 2), "new", "export", "a", attributes={"destination": "s3://x"}),
        ev(ms(T1, 3), "old", "read", "c"), ev(ms(T1, 4), "old", "export", "a", attributes={"destination": "s3://y"}),
        ev(ms(T2, 1), "newer", "read", "a"), ev(ms(T2, 2), "new", "read", "b"),
    ]), principals=[person("old", "red")])
    first, second = check(client, log)
    assert first["principal"]["new_resource_share"].tolist() == [1.0, 0.5]  # new, old
    assert second["principal"]["new_resource_share"].tolist() == [1.0, 1.0]  # new (b is new), newer


def test_cyclic_group_nesting(client):
    memberships = [member("a", "b"), member("b", "a"), member("a", "alice"), member("b", "bob"), member("b", "alice"),
                   member("c", "d"), member("d", "c"),  # a cycle with nobody in it
                   member("b", "gone", updated_at=stamp(1)), member("b", "gone", removed=1, updated_at=stamp(2))]
    log = Log(numbered([
        ev(ms(0, 1), "adm", "grant", "ds", grantee="c"),
        ev(ms(T1, 1), "adm", "grant", "ds", grantee="a"), ev(ms(T1, 2), "adm", "grant", "ds", grantee="d"),
        ev(ms(T2, 1), "adm", "grant", "ds", grantee="b"), ev(ms(T2, 2), "eve", "grant", "ds", grantee="carol"),
    ]), memberships=memberships)
    first, second = check(client, log)
    # window 1: c (granted before) reaches nobody; a reaches alice and bob through b; d reaches nobody
    assert first["grant"][["audience_before", "audience_after"]].to_numpy().tolist() == [[0, 2], [0, 0]]
    # window 2: a, c, d granted before -> {alice, bob}; b adds nobody new, carol is herself
    assert second["grant"][["audience_before", "audience_after"]].to_numpy().tolist() == [[2, 2], [2, 3]]


def test_grants_and_revokes_in_history(client):
    memberships = [member("all", p) for p in ("p1", "p2", "p3")] + [member("small", "p1")]
    log = Log([
        ev(ms(0, 1), "adm", "grant", "ds", grantee="all", event_id="h1"),
        ev(ms(0, 2), "adm", "revoke", "ds", grantee="all", event_id="h2"),
        ev(ms(0, 3), "adm", "grant", "ds", grantee="small", event_id="h3"),
        ev(ms(0, 4), "adm", "revoke", "ds", grantee="p9", event_id="h4"),
        ev(ms(0, 5), "adm", "grant", "ds", grantee="p9", event_id="h5"),
        ev(ms(0, 5), "adm", "grant", "ds", grantee="p8", event_id="h6"),
        ev(ms(0, 6), "adm", "revoke", "ds", grantee="p8", event_id="h7", status="denied"),
        ev(ms(0, 7), "adm", "grant", "ds", grantee="p7", event_id="h8", status="error"),
        ev(ms(0, 8), "adm", "revoke", "ds", grantee="p6", event_id="h_b"),  # same ms: the larger id is newer
        ev(ms(0, 8), "adm", "grant", "ds", grantee="p6", event_id="h_a"),
        ev(ms(T1, 1), "adm", "grant", "ds", grantee="all", event_id="w1"),
        ev(ms(T1, 2), "adm", "revoke", "ds", grantee="p9", event_id="w2"),
        ev(ms(T1, 3), "adm", "grant", "ds", grantee="p1", event_id="w3"),
        ev(ms(T1, 4), "adm", "revoke", "ds", grantee="small", event_id="w4"),
        ev(ms(T2, 1), "adm", "grant", "ds", grantee="", event_id="w5"),  # an empty grantee: audience 1 (itself)
        ev(ms(T2, 2), "adm", "grant", "ds", grantee="p2", event_id="w6"),
    ], memberships=memberships)
    first, second = check(client, log)
    assert first["grant"]["audience_before"].tolist() == [3, 3]  # {p1 (small), p9, p8}
    # window 2: all granted, p9 and small revoked in window 1 -> {p1, p2, p3} U p8
    assert second["grant"][["audience_before", "audience_after"]].to_numpy().tolist() == [[4, 5], [4, 4]]


def test_unicode_identifiers(client):
    log = Log(numbered([
        ev(ms(0, 1), "zoë", "join", "données.é", related=["чат"]),
        ev(ms(T1, 1), UNICODE_PRINCIPAL, "read", "données.é"),
        ev(ms(T1, 2), "zoë", "grant", "données.é", grantee="équipe"),
        ev(ms(T1, 3), "ann", "join", "données.é", related=["чат", "🚀"]),
        ev(ms(T2, 1), UNICODE_PRINCIPAL, "train", "run-🚀", related=["données.é", "чат"],
           attributes={"destination": "s3://ü"}),
        ev(ms(T2, 2), UNICODE_PRINCIPAL, "export", "чат", attributes={"destination": "s3://ü"}),
    ]), [res("données.é", sensitivity="restricted", categories=("santé", "health")), res("чат", categories=("chat",))],
        [member("équipe", UNICODE_PRINCIPAL), member("équipe", "zoë")], [person("zoë", team="ÉQ")])
    first, _ = check(client, log)
    assert first["principal"]["principal"].tolist() == ["ann", "zoë", UNICODE_PRINCIPAL]


def test_off_hours_with_a_long_history(client):
    week_before = -7 * DAY_MS
    history = [ev(week_before + ms(0, 9) + 1000 * k, "ann", "read", "a") for k in range(99)]  # Monday 09:00
    history.append(ev(week_before + ms(T1, 3), "ann", "read", "a"))  # Tuesday 03:00: 1 of 100 = 1 %, usual
    window_1 = [ev(ms(T1, h), "ann", "read", "a") for h in (3, 4, 5)] + [ev(ms(T1, 3), "bob", "read", "a")]
    window_2 = [ev(ms(T2, 3), "ann", "read", "a"), ev(ms(T2, 4), "ann", "read", "a")]  # now 1 of 104: < 1 %
    first, second = check(client, Log(numbered(history + window_1 + window_2)))
    assert first["principal"]["off_hours_share"].tolist() == [2 / 3, 0.0]
    assert second["principal"]["off_hours_share"].tolist() == [1.0]


def test_bursts_and_regularity(client):
    periodic = [ev(ms(T1, 1) + 10_000 * k, "bot", "query", "a") for k in range(6)]
    same_ms = [ev(ms(T1, 2), "dup", "query", "a") for _ in range(5)]
    too_few = [ev(ms(T1, 3) + 1000 * k, "few", "query", "a") for k in range(4)]
    edges = [ev(ms(T2) + t, "edge", "read", "a") for t in (0, 59_999, 60_000, 60_000, 60_001, 119_999, 120_000)]
    first, second = check(client, Log(numbered(periodic + same_ms + too_few + edges)))
    assert first["principal"]["timing_regularity"].tolist() == [1.0, 1.0, 0.0]  # bot, dup, few
    assert first["principal"]["max_events_per_minute"].tolist() == [6, 5, 4]
    assert second["principal"]["max_events_per_minute"].tolist() == [4]


def test_join_pairs_across_windows(client):
    log = Log(numbered([
        ev(ms(0, 1), "bob", "join", "a", related=["b", "c"]),
        ev(ms(T1, 1), "ann", "join", "a", related=["b"]), ev(ms(T1, 2), "ann", "join", "a"),
        ev(ms(T1, 3), "carl", "join", "a", related=["a"]),  # one distinct resource: no pair
        ev(ms(T2, 1), "ann", "join", "b", related=["a", "a"]), ev(ms(T2, 2), "carl", "join", "c", related=["b"]),
    ]))
    first, second = check(client, log)
    assert first["principal"][["join_pair_rarity_global", "join_pair_rarity_personal"]].to_numpy().tolist() == [
        [0.5, 1.0], [0.0, 0.0]]
    assert second["principal"][["join_pair_rarity_global", "join_pair_rarity_personal"]].to_numpy().tolist() == [
        [1 / 3, 0.5], [0.5, 1.0]]


def test_windows_with_a_gap_fold_the_gap_into_history(client):
    log = Log(numbered([ev(ms(0, 1), "ann", "read", "a"), ev(ms(1, 5), "ann", "read", "b"),
                        ev(ms(1, 6), "ann", "export", "b", attributes={"destination": "s3://gap"}),
                        ev(ms(2, 1), "ann", "read", "b"), ev(ms(2, 2), "ann", "export", "b",
                                                             attributes={"destination": "s3://gap"})]),
              bounds=(BASE + timedelta(days=1), BASE + timedelta(days=1, hours=1), BASE + timedelta(days=2)))
    load(client, log)
    extract(client, log.bounds[0], log.bounds[1])
    start, end = BASE + timedelta(days=2), BASE + timedelta(days=3)  # [1d 01:00, 2d) is never a window
    got = extract(client, start, end)
    want = reference(log, start, end)
    for entity in ENTITIES:
        assert_same_frame(entity, got.frame(entity), want[entity])
    assert want["principal"][["new_resource_share", "new_export_destinations"]].to_numpy().tolist() == [[0.0, 0]]


def test_peer_groups(client):
    principals = [person("a1", "red"), person("a2", "red"), person("b1", ""),
                  person("z", "red", updated_at=stamp(1)), person("z", "blue", updated_at=stamp(2))]
    events = [ev(ms(T1, 1) + k, "a1", "read", "x") for k in range(1)]
    events += [ev(ms(T1, 1) + k, "a2", "export", "x", bytes=10) for k in range(3)]
    events += [ev(ms(T1, 1) + k, "b1", "read", "x") for k in range(2)]
    events += [ev(ms(T1, 1) + k, "stranger", "export", "x", bytes=7) for k in range(6)]
    events += [ev(ms(T1, 1), "z", "read", "x")]
    check(client, Log(numbered(events), principals=principals))


@pytest.mark.parametrize("amounts", [[U64], [2**63], [2**62, 2**62], [2**62, 2**62 - 1], [U64, 2], [U64] * 3],
                         ids=["2**64-1", "2**63", "2**62+2**62", "2**63-1 exactly", "beyond 2**64", "3 x (2**64-1)"])
def test_huge_bytes_saturate(client, amounts):
    events = [ev(ms(T1, 1) + k, "ann", "export", "emb", bytes=b) for k, b in enumerate(amounts)]
    events += [ev(ms(T1, 2), "ann", "read", "emb", bytes=U64), ev(ms(T1, 3), "bob", "export", "emb", bytes=1)]
    first, _ = check(client, Log(numbered(events), [res("emb", kind="embedding")]))
    assert first["principal"]["bytes_exported"].tolist() == [min(sum(amounts), 2**63 - 1), 1]


def test_empty_strings_in_related(client):
    log = Log(numbered([ev(ms(0, 1), "bob", "join", "ds", related=["", "x"]),
                        ev(ms(T1, 1), "ann", "train", "run", related=["", "ds", ""]),
                        ev(ms(T1, 2), "ann", "train", "run0", related=[""]),
                        ev(ms(T1, 3), "ann", "join", "ds", related=[""]),
                        ev(ms(T1, 4), "bob", "join", "x", related=["ds", ""])]),
              [res("", sensitivity="restricted", categories=("pii",))])
    first, _ = check(client, log)
    assert first["training_run"]["inputs"].tolist() == [1, 0]


def test_grant_to_a_group_whose_memberships_were_all_removed(client):
    log = Log(numbered([ev(ms(T1, 1), "ann", "grant", "ds", grantee="g"),
                        ev(ms(T2, 1), "ann", "grant", "ds", grantee="bob")]),
              memberships=[member("g", "bob", updated_at=stamp(1)),
                           member("g", "bob", removed=1, updated_at=stamp(2))])
    first, second = check(client, log)
    assert first["grant"][["audience_after", "grantee_external"]].to_numpy().tolist() == [[1, 1]]
    assert second["grant"][["audience_before", "audience_after"]].to_numpy().tolist() == [[1, 2]]


def test_principal_context_carries_actor_type_and_history_depth(client):
    log = Log(numbered([
        *[ev(ms(0, 5) + i, "old", "read", "a") for i in range(3)],
        ev(ms(T1, 1), "agent-7", "read", "a", principal_type="agent"), ev(ms(T1, 2), "old", "read", "a"),
        ev(ms(T1, 3), "zed", "read", "a", principal_type="service"),
    ]))
    load(client, log)
    features = extract(client, log.bounds[0], log.bounds[1])
    context = features.principal_context
    assert context["principal"].tolist() == features.frame("principal")["principal"].tolist()
    assert context["principal_type"].tolist() == ["agent", "human", "service"]
    assert context["history_events"].tolist() == [0, 3, 0]  # events before the window, per principal


def _history_in_steps(client, log: Log) -> None:
    """Load ``log`` and advance its history to the first window's start in several steps."""
    load(client, log)
    t1 = log.bounds[0]
    for hours in (-18, -12, -6, 0):
        advance_history(client, t1 + timedelta(hours=hours))


@pytest.mark.slow  # 15 random logs, each advanced, compacted and extracted again
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(log=logs())
def test_compacted_history_gives_the_same_features(client, log: Log):
    _history_in_steps(client, log)
    t1, t2, t3 = log.bounds
    extract(client, t1, t2)
    compact_history(client, t2)  # folds the four advances and the first window's into one row per key
    assert client.query("SELECT count() FROM history_principal_hours WHERE compacted = 0").result_rows[0][0] == 0
    fs = extract(client, t2, t3)
    want = reference(log, t2, t3)
    for entity in ENTITIES:
        assert_same_frame(entity, fs.frame(entity), want[entity], "after compaction")


def test_a_compaction_that_crashed_after_its_fold_is_redone_without_double_counting(client):
    log = Log(numbered([ev(ms(0, h), "ann", "read", "a") for h in range(1, 20)]
                       + [ev(ms(T1, 1), "ann", "read", "a")]))
    _history_in_steps(client, log)
    hours = "SELECT sum(arraySum(hours)) FROM history_principal_hours"
    before = client.query(hours).result_rows[0][0]
    # The state a crash leaves after the fold was inserted and before the originals were deleted.
    client.command("INSERT INTO history_principal_hours (principal, hours, step_end, compacted) "
                   "SELECT principal, sumForEach(hours), max(step_end), 1 FROM history_principal_hours "
                   "GROUP BY principal")
    assert client.query(hours).result_rows[0][0] == 2 * before

    assert compact_history(client, log.bounds[0]) is True

    assert client.query(hours).result_rows[0][0] == before
    assert client.query("SELECT count() FROM history_principal_hours").result_rows[0][0] == 1
    assert compact_history(client, log.bounds[0]) is False  # done already: nothing to fold
    fs = extract(client, log.bounds[0], log.bounds[1])
    assert fs.frame("principal")["new_resource_share"].tolist() == [0.0]
