"""A whole labelled organisation replayed step by step: what it catches, and that a re-run changes nothing.

Its own module: the replayed store stays open for all these tests, and a process holds
one embedded store at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from builders import SMALL_ORG_CONFIG, incident_fingerprint, open_initialised
from clickhouse_connect.driver.client import Client

from blastwall.simulation import OrgSpec, build_organisation, write_to_store
from blastwall.store import close_store
from detector import runs
from detector.incidents import list_incidents
from detector.replay import ReplaySummary, align, run_steps

#: A whole organisation replayed: outside the fast subset (``-m "not slow"``), still in CI.
pytestmark = pytest.mark.slow

SPEC = OrgSpec(principals=60, days=5, seed=3)
#: Four-hour steps: 30 replay the five days (hour-long ones over six days took 144 steps and
#: five times as long, and caught the same policy attacks).
STEP = timedelta(hours=4)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, ReplaySummary, list]]:
    """The sample organisation replayed once (shared: a replay takes a while)."""
    org = build_organisation(SPEC)
    client = open_initialised(tmp_path_factory.mktemp("replayed") / "store")
    write_to_store(client, org)
    summary = run_steps(client, SPEC.start + timedelta(days=SPEC.days), STEP, since=SPEC.start, config=SMALL_ORG_CONFIG)
    try:
        yield client, summary, org.labels
    finally:
        close_store(client)


# ---------------------------------------------------------------------------- the replayed organisation


def test_replay_catches_the_policy_attacks_with_their_techniques(replayed) -> None:
    client, summary, labels = replayed
    assert summary.steps == timedelta(days=SPEC.days) // STEP and not summary.errors
    incidents = list_incidents(client)
    by_detector = {}
    for incident in incidents:
        by_detector.setdefault(incident["detector"], []).append(incident)
    training = next(label for label in labels if label.family == "unsanitised_training")
    [run] = [i for i in by_detector["unsanitised_training"] if training.resources[0] in i["resources"]]
    assert run["severity"] in ("SEV1", "SEV2") and run["techniques"] == ["AML.T0020"]
    assert run["principals"] == ["svc-trainer-llm"] and run["score"] == 1.0
    assert run["detected_at"] == align(training.start, STEP) + STEP  # the step that saw it
    external = next(label for label in labels if label.family == "external_grant")
    grants = [i for i in by_detector["permission_fanout"] if set(i["principals"]) & set(external.principals)]
    assert grants and grants[0]["severity"] == "SEV1" and "T1098" in grants[0]["techniques"]
    assert any(e.get("feature") == "grantee_external" and e["value"] == 1 for e in grants[0]["explanation"])
    fanout = next(label for label in labels if label.family == "permission_fanout")
    assert any(set(i["principals"]) & set(fanout.principals) and i["severity"] == "SEV1"
               for i in by_detector["permission_fanout"])


def test_every_incident_explains_itself(replayed) -> None:
    client, _, _ = replayed
    for incident in list_incidents(client):
        features = [e for e in incident["explanation"] if "feature" in e]
        assert features, incident
        assert all({"feature", "value", "baseline", "weight"} <= set(e) for e in features)
        # detected_at is when it opened; later alerts may extend last_seen beyond it
        assert incident["first_seen"] <= incident["last_seen"] and incident["first_seen"] < incident["detected_at"]


def test_running_the_same_range_again_changes_nothing(replayed) -> None:
    client, _, _ = replayed
    before = incident_fingerprint(client)
    again = run_steps(client, SPEC.start + timedelta(days=SPEC.days), STEP, since=SPEC.start, config=SMALL_ORG_CONFIG)
    assert (again.steps, again.skipped) == (0, timedelta(days=SPEC.days) // STEP)
    assert incident_fingerprint(client) == before


def test_watermark_and_health_report_the_replay(replayed) -> None:
    client, summary, _ = replayed
    end = SPEC.start + timedelta(days=SPEC.days)
    assert runs.watermark(client) == end
    health = runs.health(client, now=end + timedelta(minutes=3))
    assert health["lag_seconds"] == 180 and health["failed"] == 0 and health["events_per_second"] > 0


