"""The batch feature pass equals the step loop: every step's frames and principal context, exactly.

:func:`features.batch.extract_batch` gives a batch of consecutive steps from one set of
queries; :func:`features.engine.extract`, run step by step (the history advanced before
each), is the oracle. Every comparison runs the batch first (it advances the history only
to its start), then the step loop over the same steps (which advances the history through
them), so the next batch starts from the history the step loop left.

Its own module: one embedded store for all these tests (a process holds one at a time);
each test replaces its contract tables and forgets the history.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from builders import MONDAY, event_row, open_initialised
from builders import membership_row as member
from builders import principal_row as person
from builders import resource_row as res
from clickhouse_connect.driver.client import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from blastwall.store import close_store
from features.batch import extract_batch
from features.contract import CONTRACT_TABLES, SENSITIVITIES, STATUSES, arrow_schema
from features.engine import FeatureSet, extract
from features.history import history_end, reset_history
from features.registry import ENTITIES, MIN_HOURS_HISTORY, SENSITIVE_CATEGORIES

#: Wednesday 06:00 UTC: where the random organisations' first step starts.
BASE = MONDAY + timedelta(days=2, hours=6)
HOUR_MS = 3_600_000

PRINCIPALS = {"ann": "human", "bob": "human", "zoë": "human", "svc-etl": "service", "agent-7": "agent"}
GROUPS = ("g.all", "g.eng", "g.ml")
OUTSIDER = "mallory@outside.example"
RESOURCES = ("ds.hr", "ds.chat", "emb.support", "model.v1", "secret.key", "ds.open")
KINDS = ("dataset", "embedding", "model", "secret")
CATEGORIES = (*SENSITIVE_CATEGORIES[:4], "source_code")
#: Drawn uniformly: every action the batch treats specially, some more than once.
ACTION_POOL = ("read", "read", "query", "join", "join", "export", "export", "download", "grant", "grant", "revoke",
               "revoke", "train", "write")


@dataclass
class Org:
    """A small organisation's four contract tables as rows."""

    events: list[dict[str, Any]]
    resources: list[dict[str, Any]] = field(default_factory=list)
    memberships: list[dict[str, Any]] = field(default_factory=list)
    principals: list[dict[str, Any]] = field(default_factory=list)

    def table(self, name: str) -> list[dict[str, Any]]:
        return {"access_log": self.events, "resources": self.resources, "memberships": self.memberships,
                "principals": self.principals}[name]


# ------------------------------------------------------------------ the store and the comparison


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """One embedded store for the module (hypothesis examples and explicit cases reload it)."""
    client = open_initialised(tmp_path_factory.mktemp("batch") / "store")
    try:
        yield client
    finally:
        close_store(client)


def load(client: Client, org: Org) -> None:
    """Replace the store's contract tables with ``org`` and forget all history."""
    for table in CONTRACT_TABLES:
        client.command(f"TRUNCATE TABLE {table}")
    reset_history(client)
    for table in CONTRACT_TABLES:
        rows = org.table(table)
        if rows:
            if table == "access_log":  # Arrow builds a map from (key, value) pairs
                rows = [{**r, "attributes": list(r["attributes"].items())} for r in rows]
            client.insert_arrow(table, pa.Table.from_pylist(rows, schema=arrow_schema(table)))


def assert_same(got: FeatureSet, want: FeatureSet, label: str) -> None:
    """Same window, same entities, every frame and the principal context equal (dtypes and values exact)."""
    assert (got.start, got.end) == (want.start, want.end), label
    assert sorted(got.frames) == sorted(want.frames) == sorted(ENTITIES), label
    for entity in ENTITIES:
        pd.testing.assert_frame_equal(got.frames[entity], want.frames[entity], check_exact=True,
                                      obj=f"{label}: {entity} frame")
    pd.testing.assert_frame_equal(got.principal_context, want.principal_context, check_exact=True,
                                  obj=f"{label}: principal_context")


def compare_batch(client: Client, start: datetime, steps: int, step: timedelta) -> list[FeatureSet]:
    """The batch of ``steps`` steps from ``start``, checked step by step against the step loop; returns the batch."""
    batch = extract_batch(client, start, steps, step)
    assert len(batch) == steps
    for i, got in enumerate(batch):
        want = extract(client, start + i * step, start + (i + 1) * step)
        assert_same(got, want, f"step {i} of the batch of {steps} x {step} from {start}")
    return batch


def step_loop(client: Client, start: datetime, steps: int, step: timedelta) -> None:
    """Advance the history through ``steps`` steps the step loop's way (their features unchecked)."""
    for i in range(steps):
        extract(client, start + i * step, start + (i + 1) * step)


# ------------------------------------------------------------------ random small organisations


@dataclass
class Case:
    """An organisation, a step length and a plan: ``("loop" | "batch", steps)`` segments from BASE."""

    org: Org
    step: timedelta
    plan: list[tuple[str, int]]


@st.composite
def cases(draw: st.DrawFn, minutes: tuple[float, ...] = (10, 30, 60)) -> Case:
    """A few principals, groups and catalogued resources; random events around a few steps; random batch splits.

    Kept out on purpose: ties in ``updated_at`` and one principal with several
    ``principal_type`` values in a window (both unspecified, see the registry and the
    engine's ``any(principal_type)``).
    """
    names = draw(st.lists(st.sampled_from(sorted(PRINCIPALS)), min_size=1, max_size=5, unique=True))
    groups = draw(st.lists(st.sampled_from(GROUPS), max_size=3, unique=True))
    resources = draw(st.lists(st.sampled_from(RESOURCES), min_size=1, max_size=6, unique=True))
    versions = iter(range(1, 10**6))  # distinct updated_at everywhere

    def stamp() -> datetime:
        return MONDAY + timedelta(milliseconds=next(versions))

    catalogue = [res(r, draw(st.sampled_from(KINDS)), draw(st.sampled_from(SENSITIVITIES)),
                     draw(st.lists(st.sampled_from(CATEGORIES), max_size=3)), draw(st.integers(0, 1)), stamp())
                 for r in resources if draw(st.integers(0, 4))]  # now and then one left uncatalogued
    memberships = []
    for group in groups:
        for who in draw(st.lists(st.sampled_from([*names, *groups]), min_size=1, max_size=4, unique=True)):
            memberships.append(member(group, who, updated_at=stamp()))
            if not draw(st.integers(0, 4)):
                memberships.append(member(group, who, removed=1, updated_at=stamp()))
    principals = [person(name, draw(st.sampled_from(("red", "blue", ""))), PRINCIPALS[name], stamp())
                  for name in names if draw(st.integers(0, 3))]  # some without a principals row

    step = timedelta(minutes=draw(st.sampled_from(minutes)))
    step_ms = int(step / timedelta(milliseconds=1))
    total = draw(st.integers(2, 10))
    plan: list[tuple[str, int]] = []
    if draw(st.booleans()):  # the first batch does not start at the first step: the step loop goes first
        plan.append(("loop", draw(st.integers(1, 2))))
    while sum(k for _, k in plan) < total:
        kind = draw(st.sampled_from(("batch", "batch", "loop")))
        plan.append((kind, draw(st.integers(1, 6)) if kind == "batch" else 1))
    if all(kind == "loop" for kind, _ in plan):
        plan.append(("batch", draw(st.integers(1, 4))))
    span = sum(k for _, k in plan) * step_ms

    boundaries = st.integers(0, span // step_ms).map(lambda k: k * step_ms)
    times = st.one_of(st.integers(-2 * HOUR_MS, span + HOUR_MS), st.integers(0, span - 1), boundaries,
                      boundaries.map(lambda t: t - 1))
    grantees = [*names, *groups, OUTSIDER, ""]
    events = []
    for _ in range(draw(st.integers(0, 45))):
        action = draw(st.sampled_from(ACTION_POOL))
        who = draw(st.sampled_from(names))
        related: list[str] = []
        if action in ("join", "train"):
            related = draw(st.lists(st.sampled_from([*resources, "uncatalogued.x", ""]), max_size=3))
        attributes = {"destination": draw(st.sampled_from(("s3://a", "s3://b", "gs://c", "")))} \
            if action == "export" and draw(st.integers(0, 4)) else {}
        events.append(event_row(
            BASE + timedelta(milliseconds=draw(times)), who, action,
            "run.alpha" if action == "train" else draw(st.sampled_from(resources)),
            principal_type=PRINCIPALS[who], related=related,
            grantee=draw(st.sampled_from(grantees)) if action in ("grant", "revoke") else "",
            bytes=draw(st.sampled_from((0, 10, 1_000_000))), via=draw(st.sampled_from(("", "api", "ai_assistant"))),
            status=draw(st.sampled_from(("ok", "ok", *STATUSES))),
            source_ip=draw(st.sampled_from(("", "10.0.0.1", "10.0.0.2"))), attributes=attributes))
    if draw(st.booleans()):  # one principal's history crosses MIN_HOURS_HISTORY around the batches
        who = draw(st.sampled_from(names))
        before = draw(st.integers(MIN_HOURS_HISTORY - 15, MIN_HOURS_HISTORY + 5))
        usual = draw(st.sampled_from((-HOUR_MS, -2 * HOUR_MS)))  # one or two hours before BASE
        events += [event_row(BASE + timedelta(milliseconds=usual + 1000 * k), who, "read", resources[0],
                             principal_type=PRINCIPALS[who]) for k in range(before)]
        for t in draw(st.lists(st.integers(0, span - 1), min_size=1, max_size=25)):
            events.append(event_row(BASE + timedelta(milliseconds=t), who, "query", resources[-1],
                                    principal_type=PRINCIPALS[who]))
    ids = draw(st.permutations(range(len(events))))  # event ids out of time order
    events = [{**e, "event_id": f"id{i:03d}"} for e, i in zip(events, ids)]
    return Case(Org(events, catalogue, memberships, principals), step, plan)


@settings(max_examples=15, deadline=None)
@given(case=cases())
def test_batches_equal_the_step_loop_on_random_organisations(store: Client, case: Case) -> None:
    load(store, case.org)
    t = BASE
    for kind, steps in case.plan:
        if kind == "loop":
            step_loop(store, t, steps, case.step)
        else:
            compare_batch(store, t, steps, case.step)
        t += steps * case.step


# ------------------------------------------------------------------ a generated organisation


@pytest.mark.slow  # a whole generated organisation, three days hour by hour through the step loop
def test_batches_equal_the_step_loop_on_a_generated_organisation(store: Client) -> None:
    from blastwall.simulation import OrgSpec, build_organisation, write_to_store

    spec = OrgSpec(principals=60, days=5, seed=3)
    load(store, Org([]))
    write_to_store(store, build_organisation(spec))
    step = timedelta(hours=1)
    days = 3  # of the five: the step loop's side dominates the runtime (about 5 s a day)
    for day in range(days):
        batch = compare_batch(store, spec.start + timedelta(days=day), 24, step)
        assert sum(len(fs.frames["principal"]) for fs in batch) > 0
    assert history_end(store).replace(tzinfo=spec.start.tzinfo) == spec.start + timedelta(days=days) - step


# ------------------------------------------------------------------ explicit cases


def at(hours: float, milliseconds: int = 0) -> datetime:
    """``hours`` hours (plus ``milliseconds``) after BASE."""
    return BASE + timedelta(hours=hours, milliseconds=milliseconds)


def numbered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give events without an id the ids e0000, e0001, ... in list order."""
    return [{**e, "event_id": e["event_id"] or f"e{i:04d}"} for i, e in enumerate(events)]


HOUR = timedelta(hours=1)


def test_a_batch_without_events_gives_the_step_loops_empty_frames(store: Client) -> None:
    load(store, Org(numbered([event_row(at(-1), "ann", "grant", "ds", grantee="bob"),
                              event_row(at(0.5), "ann", "read", "ds"),
                              event_row(at(5), "ann", "join", "ds", related=["x"])])))
    step_loop(store, BASE, 1, HOUR)
    batch = compare_batch(store, at(1), 3, HOUR)  # steps 1 to 3: nothing happens
    assert all(len(frame) == 0 for fs in batch for frame in fs.frames.values())
    assert all(len(fs.principal_context) == 0 for fs in batch)


def test_a_batch_of_one_step(store: Client) -> None:
    load(store, Org(numbered([
        event_row(at(-1), "ann", "read", "ds"), event_row(at(-1), "ann", "join", "ds", related=["emb"]),
        event_row(at(0, 1), "ann", "read", "ds"), event_row(at(0, 2), "bob", "read", "emb", bytes=5),
        event_row(at(0, 3), "ann", "join", "emb", related=["ds"]),
        event_row(at(0, 4), "bob", "export", "emb", attributes={"destination": "s3://x"}),
        event_row(at(0, 5), "ann", "grant", "ds", grantee="bob"),
        event_row(at(0, 6), "svc", "train", "run", related=["ds", "nowhere"], principal_type="service"),
        event_row(at(1), "ann", "read", "ds"),
    ]), [res("ds", sensitivity="restricted", categories=("pii",)), res("emb", kind="embedding")]))
    [only] = compare_batch(store, BASE, 1, HOUR)
    assert only.frames["principal"]["principal"].tolist() == ["ann", "bob", "svc"]
    assert only.frames["principal"]["join_pair_rarity_personal"].tolist() == [0.5, 0.0, 0.0]
    assert [len(only.frames[e]) for e in ENTITIES] == [3, 1, 2, 1]


def test_a_grant_revoked_earlier_in_the_batch_then_granted_again(store: Client) -> None:
    load(store, Org(numbered([
        event_row(at(0, 1), "adm", "grant", "ds", grantee="team"),             # step 0: nobody had it
        event_row(at(1, 1), "adm", "revoke", "ds", grantee="team"),            # step 1: team's grant revoked ...
        event_row(at(1, 2), "adm", "grant", "ds", grantee="p9"),               # ... but step 1 sees it active
        event_row(at(1, 3), "adm", "revoke", "ds", grantee="p9", status="denied"),  # does not count
        event_row(at(2, 1), "adm", "grant", "ds", grantee="team"),             # step 2: only p9 had it
        event_row(at(3, 1), "adm", "grant", "ds", grantee="p8"),               # step 3: team and p9 had it
    ]), memberships=[member("team", p) for p in ("p1", "p2", "p3")]))
    batch = compare_batch(store, BASE, 4, HOUR)
    audiences = [fs.frames["grant"][["audience_before", "audience_after"]].to_numpy().tolist() for fs in batch]
    assert audiences == [[[0, 3]], [[3, 4]], [[1, 4]], [[4, 5]]]


def test_a_resource_read_in_step_0_is_not_new_in_step_2(store: Client) -> None:
    load(store, Org(numbered([
        event_row(at(0, 1), "ann", "read", "ds.new"),
        event_row(at(1, 1), "bob", "read", "other"),
        event_row(at(2, 1), "ann", "read", "ds.new"), event_row(at(2, 2), "ann", "read", "ds.two"),
        event_row(at(2, 3), "bob", "read", "ds.new"),
    ])))
    batch = compare_batch(store, BASE, 3, HOUR)
    third = batch[2].frames
    assert third["principal"][["principal", "new_resource_share"]].to_numpy().tolist() == [["ann", 0.5],
                                                                                           ["bob", 1.0]]
    assert third["resource"][["resource", "readers", "first_time_readers"]].to_numpy().tolist() == [
        ["ds.new", 2, 1], ["ds.two", 1, 1]]


def test_destinations_and_join_pairs_of_earlier_steps_of_the_batch_count_as_seen(store: Client) -> None:
    def export(hours: float, who: str, destination: str) -> dict[str, Any]:
        return event_row(at(hours), who, "export", "ds", attributes={"destination": destination})

    load(store, Org(numbered([
        export(-1, "ann", "s3://old"), event_row(at(-1), "carl", "join", "a", related=["b"]),
        export(0.1, "ann", "s3://x"), export(0.2, "ann", "s3://old"),
        event_row(at(0.3), "ann", "join", "a", related=["b"]),
        export(1.1, "ann", "s3://x"), export(1.2, "ann", "s3://y"), export(1.3, "bob", "s3://x"),
        event_row(at(1.4), "ann", "join", "b", related=["a"]), event_row(at(1.5), "bob", "join", "a", related=["b"]),
        export(2.1, "ann", "s3://y"), event_row(at(2.2), "ann", "join", "a", related=["b", "c"]),
    ])))
    batch = compare_batch(store, BASE, 3, HOUR)
    columns = ["principal", "new_export_destinations", "join_pair_rarity_global", "join_pair_rarity_personal"]
    assert [fs.frames["principal"][columns].to_numpy().tolist() for fs in batch] == [
        [["ann", 1, 1 / 2, 1.0]],
        [["ann", 1, 1 / 3, 1 / 2], ["bob", 1, 1 / 3, 1.0]],
        [["ann", 0, 1.0, 1.0]],  # (a, c) and (b, c) were never joined
    ]


def test_a_principal_whose_history_crosses_min_hours_history_within_the_batch(store: Client) -> None:
    before = MIN_HOURS_HISTORY - 5
    history = [event_row(at(-3, 1000 * k), "ann", "read", "ds") for k in range(before)]  # all at BASE - 3 h
    step_0 = [event_row(at(0, 1000 * k), "ann", "read", "ds") for k in range(10)]  # judged on `before`: cold
    step_1 = [event_row(at(1, 1), "ann", "read", "ds"), event_row(at(1, 2), "ann", "read", "ds")]  # an unusual hour
    step_2 = [event_row(at(2, 1), "ann", "read", "ds"), event_row(at(-3 + 24 * 7, 5), "ann", "read", "ds")]
    load(store, Org(numbered(history + step_0 + step_1 + step_2)))
    step = timedelta(hours=1)
    batch = compare_batch(store, BASE, 3, step)
    assert [fs.principal_context["history_events"].tolist() for fs in batch] == [[before], [before + 10],
                                                                                  [before + 12]]
    assert [fs.frames["principal"]["off_hours_share"].tolist() for fs in batch] == [[0.0], [1.0], [1.0]]
    # a week later, the same hour of week as the history: usual
    late = compare_batch(store, at(-3 + 24 * 7), 1, step)
    assert late[0].frames["principal"]["off_hours_share"].tolist() == [0.0]


def test_extract_batch_rejects_a_naive_start_and_zero_steps(store: Client) -> None:
    load(store, Org(numbered([event_row(at(0, 1), "ann", "read", "ds")])))
    with pytest.raises(ValueError, match="timezone-aware"):
        extract_batch(store, BASE.replace(tzinfo=None), 2, HOUR)
    with pytest.raises(ValueError, match="at least one step"):
        extract_batch(store, BASE, 0, HOUR)
    with pytest.raises(ValueError, match="at least one step"):
        extract_batch(store, BASE, 2, timedelta(0))
    assert history_end(store) is None  # rejected before the history was touched
