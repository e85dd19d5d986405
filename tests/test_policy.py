"""Policy checks: explicit cases per rule, and the labelled attacks of the sample organisation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from detector.policy import PolicyThresholds, grant_violations, policy_violations, training_violations
from features.engine import extract
from features.history import reset_history
from features.ingest import ingest_file

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"


def run(unsanitised: int = 0, sensitive: int = 0, uncatalogued: int = 0, inputs: int = 3) -> dict:
    return {"resource": "run.x", "inputs": inputs, "unsanitised_inputs": unsanitised, "sensitive_inputs": sensitive,
            "uncatalogued_inputs": uncatalogued}


@pytest.mark.parametrize(
    ("row", "rules"),
    [
        (run(), []),
        (run(unsanitised=1), ["training.unsanitised_inputs"]),
        (run(sensitive=2), ["training.sensitive_inputs"]),
        (run(uncatalogued=1), ["training.uncatalogued_inputs"]),
        (run(unsanitised=1, sensitive=1), ["training.unsanitised_inputs", "training.sensitive_inputs"]),
        (run(inputs=0), []),
    ],
)
def test_training_rules(row: dict, rules: list[str]) -> None:
    found = training_violations(pd.DataFrame([row]))
    assert [v.rule for v in found] == rules
    assert [v.grade for v in found] == ["notice" if r.endswith("sensitive_inputs") else "violation" for r in rules]
    assert all(v.detector == "unsanitised_training" and v.key == {"resource": "run.x"} for v in found)


def grant(rank: int, external: int = 0, gain: int = 1) -> dict:
    return {"event_id": "g1", "principal": "ann", "resource": "ds.t", "grantee": "all-staff",
            "event_time": pd.Timestamp("2026-10-05", tz="UTC"), "audience_before": 3, "audience_after": 3 + gain,
            "audience_gain": gain, "sensitivity_rank": rank, "sensitive_categories": 1, "grantee_external": external,
            "initiator_is_agent": 0, "via_ai_assistant": 1}


@pytest.mark.parametrize(
    ("row", "rules"),
    [
        (grant(rank=3), []),  # a restricted grant to a small audience inside the company
        (grant(rank=3, external=1), ["grant.external"]),
        (grant(rank=2, external=1), ["grant.external"]),
        (grant(rank=1, external=1), []),  # internal data shared outside: not a policy matter
        (grant(rank=3, gain=499), []),
        (grant(rank=3, gain=500), ["grant.mass_audience"]),
        (grant(rank=2, gain=5000, external=1), ["grant.external", "grant.mass_audience"]),
        (grant(rank=0, gain=5000), []),  # a benign team-wide grant of public data
    ],
)
def test_grant_rules(row: dict, rules: list[str]) -> None:
    found = grant_violations(pd.DataFrame([row]))
    assert [v.rule for v in found] == rules
    assert all(v.principals == ("ann",) and v.evidence["audience_gain"] == row["audience_gain"] for v in found)


def test_thresholds_are_tunable() -> None:
    assert grant_violations(pd.DataFrame([grant(rank=3, gain=50)]), PolicyThresholds(mass_grant_audience=50))


@pytest.mark.parametrize(("size", "gain", "violates"), [(60, 15, True), (60, 14, False), (100_000, 499, False),
                                                        (100_000, 500, True), (None, 400, False)])
def test_a_mass_audience_is_also_a_share_of_the_organisation(size: int | None, gain: int, violates: bool) -> None:
    found = grant_violations(pd.DataFrame([grant(rank=3, gain=gain)]), organisation_size=size)
    assert bool(found) is violates


def test_sample_attacks_violate_policy_and_benign_hours_do_not(client) -> None:
    for table in ("resources", "memberships", "principals", "access_log"):
        ingest_file(client, SAMPLE / f"{table}.jsonl.gz", table=table)
    labels = {label["family"]: label for label in json.loads((SAMPLE / "labels.json").read_text())}

    def span_of(label: dict) -> tuple[datetime, datetime]:
        """When the attack ran, from its first event to its last."""
        first, last = (datetime.fromisoformat(label[k].replace("Z", "+00:00")) for k in ("start", "end"))
        return first, last

    def window_of(label: dict) -> tuple[datetime, datetime]:
        """Whole hours around the attack, from its first event to its last."""
        first, last = span_of(label)
        start = first.replace(minute=0, second=0, microsecond=0)
        return start, last.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)

    size = int(client.query("SELECT uniqExact(principal) FROM principals").result_rows[0][0])
    expectations = {"unsanitised_training": "unsanitised_training", "external_grant": "permission_fanout",
                    "permission_fanout": "permission_fanout"}
    for family, detector in expectations.items():
        reset_history(client)
        violations = policy_violations(extract(client, *window_of(labels[family])), organisation_size=size)
        hits = [v for v in violations if v.detector == detector and set(v.resources) & set(labels[family]["resources"])]
        assert hits, f"{family}: no {detector} violation on {labels[family]['resources']} in {violations}"

    # Outside the attacks, the whole sample week raises no violation (notices may: the nightly
    # training runs consume sanitised data from sensitive categories). Six-hour windows: each
    # holds what its six hourly steps hold (grants one by one, a run's inputs summed), so
    # they raise every violation the hourly steps would, at a sixth of the cost.
    reset_history(client)
    step = timedelta(hours=6)
    found_in_attacks = set()
    window = datetime.fromisoformat("2026-10-05T00:00:00+00:00")
    while window < datetime.fromisoformat("2026-10-11T00:00:00+00:00"):
        during = [family for family, label in labels.items()
                  if span_of(label)[0] < window + step and window <= span_of(label)[1]]
        for found in policy_violations(extract(client, window, window + step), organisation_size=size):
            if found.grade == "notice":
                continue
            # A violation must be one of the attacks running in this window, on its resources.
            attack = [f for f in during if set(found.resources) & set(labels[f]["resources"])]
            assert attack, (window, found)
            found_in_attacks.update(attack)
        window += step
    assert set(expectations) <= found_in_attacks  # the step-by-step scan finds the attacks too
