"""The severity table: one row per case, with the reason it must land where it does."""

from __future__ import annotations

import pytest

from detector.severity import SeverityInputs, severity, severity_points

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
    ("a join of restricted chat, performance and telemetry data exported in millions of rows pages",
     SeverityInputs("unusual_join", score=0.9995, sensitivity_rank=3, sensitive_categories=3,
                    records_exposed=3_000_000), "SEV2"),
]


@pytest.mark.parametrize(("why", "alert", "expected"), CASES, ids=[case[0] for case in CASES])
def test_severity_table(why: str, alert: SeverityInputs, expected: str) -> None:
    assert severity(alert) == expected, (why, severity_points(alert))


def test_each_factor_only_raises_severity_in_its_direction() -> None:
    base = SeverityInputs("bulk_export", score=0.99, sensitivity_rank=1)
    order = ["SEV4", "SEV3", "SEV2", "SEV1"]
    for changed in (SeverityInputs("bulk_export", score=0.99999, sensitivity_rank=1),
                    SeverityInputs("bulk_export", score=0.99, sensitivity_rank=1, bytes_exposed=10**12),
                    SeverityInputs("bulk_export", score=0.99, sensitivity_rank=1, records_exposed=10**8),
                    SeverityInputs("bulk_export", score=0.99, sensitivity_rank=3),
                    SeverityInputs("bulk_export", score=0.99, sensitivity_rank=1, people_exposed=500),
                    SeverityInputs("bulk_export", score=0.99, sensitivity_rank=1, leaves_organisation=True),
                    SeverityInputs("bulk_export", score=0.99, sensitivity_rank=1, actor_is_agent=True)):
        assert order.index(severity(changed)) >= order.index(severity(base))


@pytest.mark.parametrize("bad", [SeverityInputs("x", score=1.5), SeverityInputs("x", policy="maybe")])
def test_bad_inputs_are_refused(bad: SeverityInputs) -> None:
    with pytest.raises(ValueError):
        severity(bad)
