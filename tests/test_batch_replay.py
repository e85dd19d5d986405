"""The batch path of detection against its oracle, the step loop: same alerts, same incidents.

:func:`detector.replay.run_batches` computes a batch's features in one pass, then scores
and records its steps in order; :func:`detector.replay.run_steps` (the live path) does one
step at a time and is the oracle. Every comparison runs both on separate stores seeded
with the same organisation. Also here: how batches are cut (:func:`batch_plan`), re-runs
and resumes, a real SIGKILL in the middle of a batch, and ``blastwall detect`` with and
without ``--step-loop``.

Every store is opened, used and closed before the next is opened (a process holds one
embedded store at a time), so the module fixtures hand over plain data, never a client.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import MONDAY, SMALL_ORG_CONFIG, open_initialised
from click.testing import CliRunner
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from blastwall.cli import cli
from blastwall.simulation import OrgSpec, build_organisation, write_to_store
from blastwall.simulation.organisation import Organisation
from blastwall.simulation.spec import MIN_DAYS_WITH_ATTACKS, MIN_PRINCIPALS
from blastwall.store import close_store
from detector import runs
from detector.detect import StepResult
from detector.incidents import list_incidents
from detector.replay import ReplaySummary, align, batch_plan, run_batches, run_steps
from detector.rules import load_rules
from features.batch import step_events

#: The small organisations' settings with the built-in rules (so only_when checks run per batch too).
CONFIG = dataclasses.replace(SMALL_ORG_CONFIG, rules=tuple(load_rules().rules.values()))
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


# ---------------------------------------------------------------------------- helpers


def alert_view(result: StepResult) -> tuple:
    """One step as its caller sees it: window, events, every alert (all it carries) and what became of it."""
    alerts = [(a.alert_id, a.detector, a.severity, a.detected_at, a.principals, a.resources, a.score, a.explanation)
              for a in result.alerts]
    return (result.start, result.end, result.events, alerts,
            [(o.outcome, o.incident_id) for o in result.outcomes], result.errors)


def replay(fn: Callable[..., ReplaySummary], client: Client, until: datetime, step: timedelta, since: datetime | None,
           **kwargs: Any) -> tuple[ReplaySummary, list[tuple]]:
    """``fn`` (run_steps or run_batches) over the range, with every finished step's :func:`alert_view`."""
    steps: list[tuple] = []
    summary = fn(client, until, step, since=since, config=CONFIG, on_step=lambda r: steps.append(alert_view(r)),
                 **kwargs)
    return summary, steps


def incidents_view(client: Client) -> list[dict[str, Any]]:
    """Every incident, all its fields but the wall-clock times of its rows, by id."""
    return sorted(({k: v for k, v in i.items() if k not in ("created_at", "updated_at")}
                   for i in list_incidents(client, limit=1_000_000)), key=lambda i: i["id"])


def ledger(client: Client) -> list[tuple[datetime, datetime, str]]:
    """The run ledger in the order it was written: (start, end, state)."""
    return [(s.replace(tzinfo=UTC), e.replace(tzinfo=UTC), state) for s, e, state in client.query(
        "SELECT step_start, step_end, state FROM detect_runs ORDER BY at, step_end, state DESC").result_rows]


def baseline_state(client: Client) -> tuple[int, list[tuple]]:
    """The stored baseline rows (count) and scorers (entity, group, trained until, rows)."""
    rows = client.query("SELECT count() FROM feature_rows").result_rows[0][0]
    models = client.query("SELECT entity, peer_group, trained_until, rows FROM detector_models"
                          " ORDER BY entity, peer_group, trained_until").result_rows
    return int(rows), [(e, g, until.replace(tzinfo=UTC), n) for e, g, until, n in models]


def rows_after(client: Client, moment: datetime) -> int:
    """Stored baseline rows of steps that ended after ``moment``."""
    return client.query("SELECT count() FROM feature_rows WHERE toUnixTimestamp64Milli(step_end) > {t:Int64}",
                        parameters={"t": int(moment.timestamp() * 1000)}).result_rows[0][0]


def seeded(path: Path, org: Organisation) -> Client:
    client = open_initialised(path)
    write_to_store(client, org)
    return client


# ---------------------------------------------------------------------------- batch_plan


def test_batches_end_at_day_boundaries() -> None:
    plan = batch_plan(MONDAY, MONDAY + 2 * DAY + 3 * HOUR, HOUR, [0] * 51, max_events=10)
    assert plan == [(MONDAY, 24), (MONDAY + DAY, 24), (MONDAY + 2 * DAY, 3)]


def test_a_range_not_aligned_to_a_day_cuts_after_the_step_that_crosses_midnight() -> None:
    start = MONDAY + 5 * HOUR
    # 23 two-hour steps from Monday 05:00; the one from 23:00 crosses midnight and ends the batch.
    plan = batch_plan(start, MONDAY + 2 * DAY + 3 * HOUR, 2 * HOUR, [1] * 23)
    assert plan == [(start, 10), (MONDAY + DAY + HOUR, 12), (MONDAY + 2 * DAY + HOUR, 1)]
    # a part of a step before --until is not a step
    assert batch_plan(start, MONDAY + 2 * DAY + 4 * HOUR + 59 * timedelta(minutes=1), 2 * HOUR, [1] * 23) == plan


def test_max_events_splits_a_dense_day() -> None:
    six = 6 * HOUR
    assert batch_plan(MONDAY, MONDAY + DAY, six, [3, 3, 3, 3], max_events=6) == [(MONDAY, 2), (MONDAY + 2 * six, 2)]
    assert batch_plan(MONDAY, MONDAY + DAY, six, [3, 3, 3, 3], max_events=12) == [(MONDAY, 4)]
    assert batch_plan(MONDAY, MONDAY + DAY, six, [3, 3, 3, 3], max_events=11) == [(MONDAY, 3), (MONDAY + 3 * six, 1)]


def test_a_step_with_more_events_than_max_events_is_a_batch_of_its_own() -> None:
    six = 6 * HOUR
    assert batch_plan(MONDAY, MONDAY + DAY, six, [1, 10, 1, 1], max_events=5) == [
        (MONDAY, 1), (MONDAY + six, 1), (MONDAY + 2 * six, 2)]
    assert batch_plan(MONDAY, MONDAY + DAY, six, [10, 1, 1, 1], max_events=5) == [(MONDAY, 1), (MONDAY + six, 3)]
    assert batch_plan(MONDAY, MONDAY + DAY, six, [10, 10, 10, 10], max_events=5) == [
        (MONDAY + i * six, 1) for i in range(4)]


def test_empty_ranges_have_no_batches() -> None:
    assert batch_plan(MONDAY, MONDAY, HOUR, []) == []
    assert batch_plan(MONDAY, MONDAY + 59 * timedelta(minutes=1), HOUR, []) == []
    assert batch_plan(MONDAY, MONDAY - DAY, HOUR, []) == []


def test_a_step_longer_than_a_day_is_a_batch_of_its_own() -> None:
    step = timedelta(hours=36)
    assert batch_plan(MONDAY, MONDAY + 3 * step, step, [1, 1, 1]) == [(MONDAY + i * step, 1) for i in range(3)]


@settings(max_examples=300, deadline=None)
@given(offset_minutes=st.integers(0, 3 * 24 * 60), step_minutes=st.sampled_from([5, 7, 60, 90, 180, 300, 420, 1440,
                                                                                  2000]),
       steps=st.integers(0, 150), max_events=st.integers(0, 40), events_seed=st.integers(0, 2**32 - 1))
def test_batch_plan_covers_every_step_once_in_maximal_batches(offset_minutes, step_minutes, steps, max_events,
                                                               events_seed) -> None:
    start = MONDAY + timedelta(minutes=offset_minutes)
    step = timedelta(minutes=step_minutes)
    until = start + steps * step + timedelta(minutes=events_seed % step_minutes)  # and a part of a step
    total = (until - start) // step
    rng = random.Random(events_seed)
    events = [rng.choice((0, 0, 1, 2, 5, 15, 50)) for _ in range(total)]

    plan = batch_plan(start, until, step, events, max_events)

    assert all(n >= 1 for _, n in plan)
    assert sum(n for _, n in plan) == total == steps
    i = 0
    for moment, n in plan:
        assert moment == start + i * step  # contiguous, in order
        day_end = align(moment, DAY) + DAY
        ends = [moment + (k + 1) * step for k in range(n)]
        assert all(end < day_end for end in ends[:-1])  # only the last step may reach the day's end
        held = sum(events[i:i + n])
        assert n == 1 or held <= max_events
        if i + n < total:  # it ended for a reason: the day, or the next step would not fit
            assert ends[-1] >= day_end or held + events[i + n] > max_events
        i += n


# ---------------------------------------------------------------------------- a whole labelled organisation

SPEC = OrgSpec(principals=60, days=5, seed=3)
#: Four-hour steps: 30 steps over the five days (as tests/test_replay.py).
STEP = timedelta(hours=4)
#: Small enough to split every day of this organisation but the first, and to leave the step of
#: the runaway agent (over 5,000 events) a batch of its own.
MAX_EVENTS = 5_000
#: The batch path stops here once and resumes: a watermark in the middle of a day.
RESUME_AT = SPEC.start + 2 * DAY + 12 * HOUR


@pytest.fixture(scope="module")
def whole_org(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The organisation replayed by the step loop and by the batch path (split days, a resume mid-day)."""
    org = build_organisation(SPEC)
    until = SPEC.start + timedelta(days=SPEC.days)
    folder = tmp_path_factory.mktemp("whole-org")
    out: dict[str, Any] = {"until": until, "batch_store": folder / "batches", "loop_store": folder / "loop"}
    client = seeded(out["loop_store"], org)
    try:
        out["loop"] = replay(run_steps, client, until, STEP, SPEC.start)
        out["loop_incidents"] = incidents_view(client)
        out["loop_ledger"] = ledger(client)
    finally:
        close_store(client)
    client = seeded(out["batch_store"], org)
    try:
        out["events"] = list(step_events(client, SPEC.start, until, STEP))
        plans: list[tuple[int, int]] = []
        first = replay(run_batches, client, RESUME_AT, STEP, SPEC.start, max_events=MAX_EVENTS,
                       on_plan=lambda steps, events: plans.append((steps, events)))
        out["mark_between"] = runs.watermark(client)
        second = replay(run_batches, client, until, STEP, None, max_events=MAX_EVENTS,
                        on_plan=lambda steps, events: plans.append((steps, events)))
        out["batches"] = (first, second)
        out["plans"] = plans
        out["batch_incidents"] = incidents_view(client)
        out["batch_ledger"] = ledger(client)
    finally:
        close_store(client)
    return out


@pytest.mark.slow
def test_the_batch_path_alerts_exactly_as_the_step_loop_on_every_step(whole_org) -> None:
    (loop, loop_steps) = whole_org["loop"]
    (first, first_steps), (second, second_steps) = whole_org["batches"]
    assert loop.steps == 30 and not loop.errors
    assert first_steps + second_steps == loop_steps  # every step, in order: window, events, alerts, outcomes
    assert first.steps + second.steps == 30 and first.last == second.first == RESUME_AT
    assert (first.alerts + second.alerts, first.opened + second.opened, first.events + second.events) == (
        loop.alerts, loop.opened, loop.events)
    # Not vacuous: policy, rule and anomaly alerts, on both sides of the resume.
    detectors = {alert[1] for *_, alerts, _, _ in loop_steps for alert in alerts}
    assert {"permission_fanout", "unsanitised_training"} <= detectors and len(detectors) >= 5
    assert any(alerts for _, end, _, alerts, _, _ in first_steps) and any(alerts for *_, alerts, _, _ in second_steps)


@pytest.mark.slow
def test_the_batch_path_opens_the_same_incidents(whole_org) -> None:
    incidents = whole_org["batch_incidents"]
    assert incidents == whole_org["loop_incidents"] and len(incidents) >= 10
    assert {(i["detector"], tuple(i["principals"]), tuple(i["resources"])) for i in incidents} == {
        (i["detector"], tuple(i["principals"]), tuple(i["resources"])) for i in whole_org["loop_incidents"]}


@pytest.mark.slow
def test_the_ledger_holds_whole_batches_split_at_days_and_by_events(whole_org) -> None:
    events, until = whole_org["events"], whole_org["until"]
    resume = (RESUME_AT - SPEC.start) // STEP
    expected = (batch_plan(SPEC.start, RESUME_AT, STEP, events[:resume], MAX_EVENTS)
                + batch_plan(RESUME_AT, until, STEP, events[resume:], MAX_EVENTS))
    assert whole_org["plans"] == [(resume, sum(events[:resume])), (30 - resume, sum(events[resume:]))]
    done = [(s, e) for s, e, state in whole_org["batch_ledger"] if state == "done"]
    assert done == [(start, start + n * STEP) for start, n in expected]
    assert [state for *_, state in whole_org["batch_ledger"]] == ["started", "done"] * len(expected)
    # The plan is what this test claims: a whole day, a day split by events, and a lone step
    # over MAX_EVENTS (the runaway agent's).
    assert (SPEC.start, 6) in expected
    assert any(start.hour != 0 and start != RESUME_AT for start, _ in expected)
    lone = [start for start, n in expected if n == 1 and events[(start - SPEC.start) // STEP] > MAX_EVENTS]
    assert lone
    assert whole_org["mark_between"] == RESUME_AT
    # The step loop's ledger: one step at a time.
    assert len(whole_org["loop_ledger"]) == 2 * 30


@pytest.mark.slow
def test_running_the_same_range_again_does_nothing(whole_org) -> None:
    until = whole_org["until"]
    for path in (whole_org["batch_store"], whole_org["loop_store"]):  # after either path
        client = open_initialised(path)
        try:
            before = (incidents_view(client), ledger(client), baseline_state(client))
            summary, steps = replay(run_batches, client, until, STEP, SPEC.start)
            assert (summary.steps, summary.skipped, steps, summary.opened) == (0, 30, [], 0)
            summary, steps = replay(run_batches, client, RESUME_AT, STEP, SPEC.start + DAY, max_events=1)
            assert (summary.steps, summary.skipped, steps) == (0, (RESUME_AT - SPEC.start - DAY) // STEP, [])
            assert (incidents_view(client), ledger(client), baseline_state(client)) == before
        finally:
            close_store(client)


# ---------------------------------------------------------------------------- random small organisations


#: A range known to alert (a rule, a policy detector and two anomaly families), across midnight.
RICH = {"seed": 1, "step_hours": 5, "start_hour": 58, "steps": 5}


@pytest.mark.slow
@settings(max_examples=2, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), step_hours=st.sampled_from([3, 5, 7, 8]),
       start_hour=st.integers(2 * 24, 3 * 24 + 20), steps=st.integers(3, 5), max_events=st.integers(1, 4_000),
       resume=st.integers(0, 5))
@example(**RICH, max_events=1_200, resume=2)
def test_random_small_organisations_give_the_step_loops_alerts_and_incidents(
        tmp_path_factory: pytest.TempPathFactory, seed: int, step_hours: int, start_hour: int, steps: int,
        max_events: int, resume: int) -> None:
    # The smallest organisation with its attacks, a few steps from after the warm-up, steps that
    # need not divide a day, any batch size, and (resume > 0) a stop and resume after `resume` steps.
    org = build_organisation(OrgSpec(principals=MIN_PRINCIPALS, days=MIN_DAYS_WITH_ATTACKS, seed=seed))
    step = timedelta(hours=step_hours)
    since = org.spec.start + timedelta(hours=start_hour)
    until = since + steps * step
    folder = tmp_path_factory.mktemp("random-org")
    client = seeded(folder / "loop", org)
    try:
        loop, loop_steps = replay(run_steps, client, until, step, since)
        expected = incidents_view(client)
    finally:
        close_store(client)
    client = seeded(folder / "batches", org)
    try:
        stop = since + min(resume, steps) * step
        note(f"plan {batch_plan(since, until, step, step_events(client, since, until, step), max_events)}")
        batch_steps: list[tuple] = []
        if resume:
            batch_steps += replay(run_batches, client, stop, step, since, max_events=max_events)[1]
        batch_steps += replay(run_batches, client, until, step, since, max_events=max_events)[1]
        got = incidents_view(client)
    finally:
        close_store(client)
    note(f"{loop.alerts} alerts, {len(expected)} incidents")
    assert loop.steps == steps
    if {"seed": seed, "step_hours": step_hours, "start_hour": start_hour, "steps": steps} == RICH:
        detectors = {alert[1] for *_, alerts, _, _ in loop_steps for alert in alerts}
        assert {"ai_grant_without_approval", "permission_fanout", "bulk_export", "artifact_download"} <= detectors
    assert batch_steps == loop_steps
    assert got == expected


# ---------------------------------------------------------------------------- the command line, and a crash

CRASH_SPEC = OrgSpec(principals=MIN_PRINCIPALS, days=MIN_DAYS_WITH_ATTACKS, seed=11)
CRASH_SINCE = CRASH_SPEC.start + DAY
CRASH_UNTIL = CRASH_SPEC.start + timedelta(days=CRASH_SPEC.days)
#: The crashed run is killed just before the last step of its last batch: every other step of
#: that batch has opened its incidents and (the scorers are refitted there) stored rows and scorers.
PAUSE_AT = CRASH_UNTIL - timedelta(hours=4)
DETECT = ["detect", "--since", CRASH_SINCE.isoformat(), "--until", CRASH_UNTIL.isoformat(), "--step", "4h"]

#: A `blastwall detect` that stops for good (waiting to be killed) when it reaches PAUSE_AT.
CHILD = """
import sys, time
from datetime import datetime
import detector.replay as replay
marker, pause_at = sys.argv[1], datetime.fromisoformat(sys.argv[2])
score = replay.detect_features
def pausing(client, features, *args, **kwargs):
    if features.start == pause_at:
        open(marker, "w").close()
        time.sleep(600)
    return score(client, features, *args, **kwargs)
replay.detect_features = pausing
from blastwall.cli import main
sys.argv = ["blastwall", *sys.argv[3:]]
main()
"""


def invoke(*args: str) -> str:
    """``blastwall ARGS`` in this process; its standard output (it must succeed)."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def listed(dsn: str) -> list[dict[str, Any]]:
    """``blastwall incidents --json`` without the wall-clock times of the incidents' rows."""
    found = json.loads(invoke("--dsn", dsn, "incidents", "--json"))
    return [{k: v for k, v in i.items() if k not in ("created_at", "updated_at")} for i in found]


@pytest.fixture(scope="module")
def crash_org(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three stores of one organisation, and the clean `blastwall detect` run of the first."""
    org = build_organisation(CRASH_SPEC)
    folder = tmp_path_factory.mktemp("crash-org")
    dsns = {}
    for name in ("clean", "step-loop", "crashed", "crashed-step-loop"):
        close_store(seeded(folder / name, org))
        dsns[name] = f"chdb://{folder / name}"
    output = invoke("--dsn", dsns["clean"], *DETECT)
    client = open_initialised(folder / "clean")
    try:
        clean = {"incidents": incidents_view(client), "baselines": baseline_state(client), "ledger": ledger(client)}
    finally:
        close_store(client)
    return {"dsns": dsns, "folder": folder, "output": output, "listed": listed(dsns["clean"]), **clean}


@pytest.mark.slow
def test_detect_and_detect_step_loop_list_the_same_incidents(crash_org) -> None:
    dsns = crash_org["dsns"]
    assert crash_org["output"].startswith("processed 24 steps [2026-10-06T00:00:00+00:00, 2026-10-10T00:00:00+00:00)")
    assert [state for *_, state in crash_org["ledger"]] == ["started", "done"] * 4  # a batch a day

    output = invoke("--dsn", dsns["step-loop"], *DETECT, "--step-loop")

    assert output.startswith("processed 24 steps [2026-10-06T00:00:00+00:00, 2026-10-10T00:00:00+00:00)")
    assert listed(dsns["step-loop"]) == crash_org["listed"]
    assert len(crash_org["listed"]) >= 5 and any(i["severity"] == "SEV1" for i in crash_org["listed"])
    client = open_initialised(crash_org["folder"] / "step-loop")
    try:
        assert len(ledger(client)) == 2 * 24  # it did run a step at a time
        assert baseline_state(client) == crash_org["baselines"]
    finally:
        close_store(client)


@pytest.mark.slow
@pytest.mark.parametrize("resume", [(), ("--step-loop",)], ids=["batches", "step-loop"])
def test_a_detect_killed_mid_batch_is_redone_whole_without_duplicates(crash_org, resume: tuple[str, ...]) -> None:
    """Whoever resumes — the batch path or the step loop (live detection) — removes the batch's leftovers first."""
    store = "crashed-step-loop" if resume else "crashed"
    folder, dsn = crash_org["folder"], crash_org["dsns"][store]
    marker = folder / f"{store}-paused"
    errors = folder / f"{store}-stderr"
    with errors.open("wb") as stderr:
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), PAUSE_AT.isoformat(), "--dsn", dsn,
                                  *DETECT], stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert child.poll() is None, errors.read_text()
            assert time.monotonic() < deadline, "the detect run never reached the step it pauses at"
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    batch_start = align(PAUSE_AT, timedelta(days=1))
    client = open_initialised(folder / store)
    try:
        # What the kill left: the batch started, not done; its earlier steps' incidents; rows and
        # scorers stored past the watermark (the ones a redo must not see).
        assert runs.watermark(client) == batch_start
        assert ledger(client)[-1] == (batch_start, CRASH_UNTIL, "started")
        left = incidents_view(client)
        assert any(batch_start < i["detected_at"] <= PAUSE_AT for i in left)
        assert {i["id"] for i in left} == {i["id"] for i in crash_org["incidents"] if i["detected_at"] <= PAUSE_AT}
        _, models = baseline_state(client)
        assert any(until > batch_start for _, _, until, _ in models)
        assert rows_after(client, batch_start) > 0
    finally:
        close_store(client)

    output = invoke("--dsn", dsn, *DETECT, *resume)  # run again, as the user would

    assert output.startswith(f"processed 6 steps [{batch_start.isoformat()}, {CRASH_UNTIL.isoformat()})")
    client = open_initialised(folder / store)
    try:
        assert incidents_view(client) == crash_org["incidents"]  # nothing lost, nothing twice
        assert baseline_state(client) == crash_org["baselines"]  # the crashed batch's rows and scorers went
        assert runs.watermark(client) == CRASH_UNTIL
        if resume:
            return
        assert ledger(client)[-3:] == [(batch_start, CRASH_UNTIL, "started"), (batch_start, CRASH_UNTIL, "started"),
                                       (batch_start, CRASH_UNTIL, "done")]  # the batch redone whole
    finally:
        close_store(client)
