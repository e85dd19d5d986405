"""The severity table: one row per case, with the reason it must land where it does."""

from __future__ import annotations

from dataclasses import replace

import pytest

from detector.severity import SeverityInputs, severity, severity_points, severity_rank

CASES = [
    # (why, inputs, expected)
    ("restricted telemetry granted to everyone by an AI assistant (the 2026 incident)",
     SeverityInputs("permission_fanout", policy="violation", sensitivity_rank=3, sensitive_categories=3,
                    people_exposed=4000, actor_is_agent=True), "SEV1"),
    ("restricted data granted to an outside account",
     SeverityInputs("permission_fanout", policy="violation", sensitivity_rank=3, sensitive_categories=1,
                    people_exposed=1, leaves_organisation=True), "SEV1"),
    ("a training run on unsanitised sensitive data",
     SeverityInputs("unsanitised_training", policy="violation", sensitivity_rank=1, sensitive_categories=1), "SEV2"),
    ("sanitised sensitive data in a training set is only recorded",
     SeverityInputs("unsanitised_training", policy="notice", sensitive_categories=1), "SEV4"),
    ("a bulk embedding export far above baseline to a new outside destination",
     SeverityInputs("bulk_export", score=0.9995, sensitivity_rank=2, sensitive_categories=1,
                    records_exposed=2_000_000, leaves_organisation=True), "SEV1"),
    ("a low-and-slow insider: barely unusual, restricted data",
     SeverityInputs("bulk_export", score=0.99, sensitivity_rank=3), "SEV3"),
    ("the catch-all outlier on internal data is recorded",
     SeverityInputs("behaviour_outlier", score=0.999, sensitivity_rank=1), "SEV4"),
    ("a runaway agent reading restricted data",
     SeverityInputs("runaway_agent", score=0.9999, sensitivity_rank=3, actor_is_agent=True), "SEV2"),
    ("an ordinary score on public data",
     SeverityInputs("artifact_download", score=0.5, sensitivity_rank=0), "SEV4"),
    ("one large checkpoint download at the edge of normal is a ticket, not a page",
     SeverityInputs("artifact_download", score=0.9993, bytes_exposed=25 * 10**9), "SEV3"),
    ("dozens of checkpoints taken far beyond normal (hundreds of GB) pages",
     SeverityInputs("artifact_download", score=0.99995, sensitivity_rank=2, bytes_exposed=400 * 10**9), "SEV2"),
    ("a large export of ordinary data at the edge of normal is recorded",
     SeverityInputs("bulk_export", score=0.9991, sensitivity_rank=1, records_exposed=300_000), "SEV4"),
    ("two dozen small checkpoints taken far beyond normal page: what was taken, counted in items",
     SeverityInputs("artifact_download", score=0.999, sensitivity_rank=2, bytes_exposed=5 * 10**9,
                    items_taken=24, harm_is_amount=True), "SEV2"),
    ("an unusual export of a few hundred MB of confidential data is a ticket: nothing sizeable was taken",
     SeverityInputs("bulk_export", score=0.9999, sensitivity_rank=2, sensitive_categories=1,
                    bytes_exposed=270 * 10**6, harm_is_amount=True), "SEV3"),
    ("the same export of 12 GB pages",
     SeverityInputs("bulk_export", score=0.9999, sensitivity_rank=2, sensitive_categories=1,
                    bytes_exposed=12 * 10**9, harm_is_amount=True), "SEV2"),
    ("the catch-all on restricted data with nothing taken is a ticket",
     SeverityInputs("behaviour_outlier", score=0.99999, sensitivity_rank=3, sensitive_categories=2,
                    harm_is_amount=True), "SEV3"),
    ("a join of restricted chat, performance and telemetry data exported in millions of rows pages",
     SeverityInputs("unusual_join", score=0.9995, sensitivity_rank=3, sensitive_categories=3,
                    records_exposed=3_000_000), "SEV2"),
]


@pytest.mark.parametrize(("why", "alert", "expected"), CASES, ids=[case[0] for case in CASES])
def test_severity_table(why: str, alert: SeverityInputs, expected: str) -> None:
    assert severity(alert) == expected, (why, severity_points(alert))


#: An anomaly at the edge of normal on internal data: 2 points, one short of SEV3, with every
#: factor below its maximum, so raising any one of them must show.
BASE = SeverityInputs("bulk_export", score=0.999, sensitivity_rank=1)

#: Per factor: the points it feeds and a ladder of inputs, each more severe than the one before.
LADDERS = [
    ("evidence", "score", (0.98, 0.99, 0.999, 0.99999)),
    ("data", "sensitivity_rank", (1, 2, 3)),
    ("data", "sensitive_categories", (0, 1)),
    ("blast_radius", "people_exposed", (0, 10, 100)),
    ("blast_radius", "records_exposed", (0, 1_000_000, 10_000_000)),
    ("blast_radius", "bytes_exposed", (0, 10 * 10**9, 50 * 10**9)),
    ("blast_radius", "items_taken", (0, 8, 20)),
    ("blast_radius", "leaves_organisation", (False, True)),
    ("actor", "actor_is_agent", (False, True)),
    ("detector", "detector", ("behaviour_outlier", "bulk_export", "unsanitised_training")),
]


@pytest.mark.parametrize(("points", "field", "ladder"), LADDERS, ids=[field for _, field, _ in LADDERS])
def test_each_factor_only_raises_severity_in_its_direction(points: str, field: str, ladder: tuple) -> None:
    steps = [replace(BASE, **{field: value}) for value in ladder]
    scored = [severity_points(inputs) for inputs in steps]
    for lower, higher in zip(scored, scored[1:]):
        # One rung up raises this factor's points and leaves every other factor where it was.
        assert higher[points] > lower[points], (field, lower, higher)
        assert {k: v for k, v in higher.items() if k != points} == {k: v for k, v in lower.items() if k != points}
    # From the base, the factor's top rung alone is enough for a more severe level.
    assert severity_rank(severity(steps[-1])) < severity_rank(severity(BASE)), (field, scored[-1])


@pytest.mark.parametrize("bad", [SeverityInputs("x", score=1.5), SeverityInputs("x", policy="maybe")])
def test_bad_inputs_are_refused(bad: SeverityInputs) -> None:
    with pytest.raises(ValueError):
        severity(bad)


def test_nothing_taken_only_caps_alerts_whose_harm_is_an_amount() -> None:
    strong = SeverityInputs("bulk_export", score=0.99999, sensitivity_rank=3, sensitive_categories=1)
    assert severity(strong) == "SEV2"  # a family judged by more than an amount keeps its points
    capped = replace(strong, harm_is_amount=True)
    assert severity_points(capped)["nothing_taken"] == -2 and severity(capped) == "SEV3"
    assert "nothing_taken" not in severity_points(replace(capped, records_exposed=1_000_000))
    weak = replace(capped, score=0.5, sensitivity_rank=1, sensitive_categories=0)
    assert severity_points(weak)["nothing_taken"] == 0 and severity(weak) == "SEV4"  # never raises
