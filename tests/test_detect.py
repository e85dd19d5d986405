"""The detect step and its replay loop, on real embedded stores seeded by the generator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from builders import SMALL_ORG_CONFIG, incident_fingerprint, ingest_rows, iso, open_initialised
from clickhouse_connect.driver.client import Client

from blastwall.simulation import OrgSpec, build_organisation, write_to_store
from blastwall.store import close_store
from detector import runs
from detector.baselines import BaselinePolicy, FittedBaseline, ModelBook
from detector.detect import (
    DetectConfig,
    _principal_alerts,
    _signal_families,
    score_entity,
    scoring_space,
    tail_score,
)
from detector.ensemble import EnsembleScorer
from detector.incidents import list_incidents
from detector.replay import StepFailed, run_steps
from features.registry import features_of

PRINCIPAL_NAMES = tuple(feature.name for feature in features_of("principal"))


# ---------------------------------------------------------------------------- pure pieces


def test_tail_score_is_the_percentile_at_the_tail_and_keeps_rising_beyond_it() -> None:
    assert tail_score(0.0) == pytest.approx(0.999)
    assert tail_score(-3.0) == pytest.approx(0.999)  # below the tail is not scored lower than the tail
    scores = [tail_score(x) for x in (0.5, 1.0, 2.0, 5.0)]
    assert scores == sorted(scores) and scores[-1] < 1.0
    assert tail_score(1.0) == pytest.approx(1 - 0.001 / np.e)


def test_grants_never_drive_a_principal_family_and_only_machines_run_away() -> None:
    human = _signal_families("principal", "human", PRINCIPAL_NAMES)
    agent = _signal_families("principal", "agent", PRINCIPAL_NAMES)
    assert "permission_fanout" not in human and "runaway_agent" not in human
    assert PRINCIPAL_NAMES.index("max_events_per_minute") in agent["runaway_agent"]
    assert set(human) == {"unusual_join", "bulk_export", "artifact_download", "secrets"}
    assert _signal_families("resource", "all", tuple(f.name for f in features_of("resource"))) == {
        "exposure_spike": [1]}


@pytest.mark.parametrize(
    ("fitted_rows", "rows_now", "age_hours", "step_ms", "due"),
    [
        (None, 10, 0, 60_000, False),  # cold start: too few rows for a first fit
        (None, 300, 0, 60_000, True),  # first fit once there are enough
        (300, 500, 1, 60_000, False),  # young, grown less than 2x
        (300, 600, 1, 60_000, True),  # young and doubled: mature it
        (4_000, 9_000, 1, 60_000, False),  # a full sample does not refit on growth
        (4_000, 9_000, 24, 60_000, True),  # but does after refit_every
        (4_000, 9_000, 1, 300_000, True),  # another step length: features mean something else
    ],
)
def test_refit_schedule(fitted_rows, rows_now, age_hours, step_ms, due) -> None:
    policy = BaselinePolicy()
    now = datetime(2026, 10, 9, tzinfo=UTC)
    fitted = None if fitted_rows is None else FittedBaseline(
        "principal", "human", EnsembleScorer(), now - timedelta(hours=age_hours), fitted_rows, 60_000, ())
    assert policy.due(fitted, rows_now, now, step_ms) is due


# ---------------------------------------------------------------------------- scoring on a real store


def _baseline_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    X = np.zeros((n, len(PRINCIPAL_NAMES)))
    X[:, PRINCIPAL_NAMES.index("events")] = rng.poisson(20, n)
    X[:, PRINCIPAL_NAMES.index("distinct_resources")] = rng.poisson(4, n) + 1
    X[:, PRINCIPAL_NAMES.index("bytes_read")] = rng.lognormal(16, 1, n)
    X[:, PRINCIPAL_NAMES.index("max_events_per_minute")] = rng.poisson(2, n) + 1
    exporting = rng.random(n) < 0.1
    X[exporting, PRINCIPAL_NAMES.index("exports")] = 1
    X[exporting, PRINCIPAL_NAMES.index("bytes_exported")] = rng.lognormal(16, 1, exporting.sum())
    return X


def test_families_fire_far_beyond_the_baseline_and_a_restart_does_not_refit(client: Client) -> None:
    rng = np.random.default_rng(0)
    book = ModelBook(BaselinePolicy(min_rows=200))
    start = datetime(2026, 10, 5, tzinfo=UTC)
    for hour in range(6):  # six steps of ordinary rows, for two peer groups
        X = _baseline_rows(rng, 100)
        groups = np.array(["human"] * 60 + ["agent"] * 40, dtype=object)
        book.add_rows("principal", start + timedelta(hours=hour + 1), [f"p{i}" for i in range(100)],
                      groups.tolist(), scoring_space(X))
    now = start + timedelta(hours=7)
    X = _baseline_rows(rng, 4)
    X[1, PRINCIPAL_NAMES.index("bytes_exported")] = 4e11  # 400 GB: far beyond anyone
    X[1, PRINCIPAL_NAMES.index("exports")] = 30
    X[2:, PRINCIPAL_NAMES.index("events")] = 3_000  # a machine-paced burst, by a person and by an agent
    X[2:, PRINCIPAL_NAMES.index("max_events_per_minute")] = 60
    groups = np.array(["human", "human", "human", "agent"], dtype=object)
    keys = ["normal", "exporter", "busy-person", "busy-agent"]

    found = score_entity(client, book, "principal", now, now + timedelta(hours=1), groups, scoring_space(X), X,
                          keys, DetectConfig())

    by_key = {c.key: c for c in found}
    assert book.fits == 2 and "normal" not in by_key
    assert by_key["exporter"].family == "bulk_export" and by_key["exporter"].score > 0.999
    assert by_key["exporter"].drivers[0].feature in ("bytes_exported", "exports")
    assert by_key["exporter"].drivers[0].value in (4e11, 30)
    assert by_key["busy-agent"].family == "runaway_agent"
    assert by_key.get("busy-person") is None or by_key["busy-person"].family == "behaviour_outlier"

    restarted = ModelBook.load(client, BaselinePolicy(min_rows=200))
    again = score_entity(client, restarted, "principal", now + timedelta(hours=1), now + timedelta(hours=2), groups,
                          scoring_space(X), X, keys, DetectConfig())
    assert restarted.fits == 0  # loaded, not refitted
    assert {(c.key, c.family, round(c.score, 9)) for c in again} == {(c.key, c.family, round(c.score, 9))
                                                                     for c in found}


def test_a_new_identity_is_not_alerted_on_novelty_alone(client: Client, tmp_path: Path) -> None:
    import pandas as pd

    from features.engine import FeatureSet

    rng = np.random.default_rng(1)
    book = ModelBook(BaselinePolicy(min_rows=200))
    start = datetime(2026, 10, 5, tzinfo=UTC)
    for hour in range(4):  # an ordinary baseline: nobody exports to new destinations
        book.add_rows("principal", start + timedelta(hours=hour + 1), [f"p{i}" for i in range(100)],
                      ["human"] * 100, scoring_space(_baseline_rows(rng, 100)))
    window = (start + timedelta(hours=5), start + timedelta(hours=6))
    ingest_rows(client, tmp_path, "access_log", [
        {"event_time": iso(window[0] + timedelta(minutes=i)), "principal": who, "action": "export",
         "resource": "ds.a", "event_id": f"{who}{i}", "attributes": {"destination": f"s3://{i}"}}
        for who in ("veteran", "newcomer") for i in range(6)])
    X = _baseline_rows(rng, 2)
    X[:, PRINCIPAL_NAMES.index("new_export_destinations")] = 6  # six destinations never used before, by both
    frame = pd.DataFrame(X, columns=list(PRINCIPAL_NAMES)).assign(principal=["newcomer", "veteran"])
    context = pd.DataFrame({"principal": ["newcomer", "veteran"], "principal_type": ["human", "human"],
                            "history_events": [0, 5_000]})
    features = FeatureSet(window[0], window[1], {"principal": frame[["principal", *PRINCIPAL_NAMES]]}, context)
    params = {"lo": int(window[0].timestamp() * 1000), "hi": int(window[1].timestamp() * 1000)}

    alerts = _principal_alerts(client, book, features, params, DetectConfig())

    # The veteran never used these destinations: news. For the newcomer everything is new.
    assert [(a.entity_key, a.detector) for a in alerts] == [("veteran", "bulk_export")]


# ---------------------------------------------------------------------------- failure and recovery


def test_a_store_failure_mid_step_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    # Half-day steps over days two to four: few steps, so it stays quick, while the replay still
    # crosses day boundaries (where the history is compacted), fits baselines, and opens policy and
    # anomaly incidents on both sides of the crash (the attacks begin on day three).
    spec = OrgSpec(principals=40, days=5, seed=11)
    org = build_organisation(spec)
    since, middle, until = (spec.start + timedelta(days=days) for days in (2, 3, 4))
    step = timedelta(hours=12)
    clean = open_initialised(tmp_path / "clean")
    try:
        write_to_store(clean, org)
        run_steps(clean, until, step, since=since, config=SMALL_ORG_CONFIG)
        expected = incident_fingerprint(clean)
    finally:
        close_store(clean)
    # Incidents before and after the crash, so losing later ones or repeating earlier ones would show.
    assert any(detected <= middle for *_, detected in expected)
    assert any(detected > middle for *_, detected in expected)

    client = open_initialised(tmp_path / "broken")
    try:
        write_to_store(client, org)
        run_steps(client, middle, step, since=since, config=SMALL_ORG_CONFIG)
        # A real failure inside the next step: a table the history advance writes disappears.
        client.command("RENAME TABLE history_principal_hours TO history_principal_hours_away")
        with pytest.raises(StepFailed) as failure:
            run_steps(client, until, step, config=SMALL_ORG_CONFIG)
        assert failure.value.start == middle and runs.watermark(client) == middle
        assert "history_principal_hours" in runs.health(client)["last_error"]
        client.command("RENAME TABLE history_principal_hours_away TO history_principal_hours")
        resumed = run_steps(client, until, step, config=SMALL_ORG_CONFIG)
        assert resumed.first == middle and runs.watermark(client) == until
        assert incident_fingerprint(client) == expected
    finally:
        close_store(client)


def test_a_new_habit_of_restricted_exports_alerts_and_an_old_one_does_not(client: Client, tmp_path: Path) -> None:
    start = datetime(2026, 10, 5, tzinfo=UTC)
    rows = []

    def event(day: int, minute: int, principal: str, action: str, resource: str, **extra: object) -> None:
        when = start + timedelta(days=day, hours=9, minutes=minute)
        rows.append({"event_time": iso(when), "principal": principal,
                     "action": action, "resource": resource, "event_id": f"{principal}-{day}-{minute}-{action}",
                     **extra})

    for day in range(10):
        for minute in range(0, 60, 3):  # both are seasoned readers
            event(day, minute, "ann", "read", "ds.public")
            event(day, minute, "bob", "read", "ds.public")
    for day in (7, 8, 9):  # ann starts exporting restricted data; bob always did
        event(day, 30, "ann", "export", "ds.payroll", rows=900, bytes=90_000)
    for day in range(10):
        event(day, 31, "bob", "export", "ds.payroll", rows=900, bytes=90_000)
    ingest_rows(client, tmp_path, "access_log", rows)
    ingest_rows(client, tmp_path, "resources", [
        {"resource": "ds.payroll", "kind": "dataset", "sensitivity": "restricted", "categories": ["financial"],
         "owner": "fin", "sanitized": 1, "updated_at": "2026-10-01T00:00:00Z"}])

    run_steps(client, start + timedelta(days=10), timedelta(hours=12), since=start, config=SMALL_ORG_CONFIG)

    habits = [i for i in list_incidents(client) if "of the last 7 days" in i["title"]]
    assert [(i["entity_key"], i["detector"]) for i in habits] == [("ann", "bulk_export")]
    assert habits[0]["detected_at"] == start + timedelta(days=9, hours=12)  # the third day's export
    assert habits[0]["severity"] == "SEV3" and habits[0]["resources"] == ["ds.payroll"]
