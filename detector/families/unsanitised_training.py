"""Unsanitised training: a training run consuming data with ``sanitized = 0``, or uncatalogued data.

A policy check, deterministic: what a model was trained on cannot be un-learned.
"""

from __future__ import annotations

from detector.families import Family, Step
from detector.incidents import Alert
from detector.policy import violation_alerts


def training_alerts(step: Step) -> list[Alert]:
    """Training runs of the window that read unsanitised or uncatalogued inputs."""
    return violation_alerts(step, "training_run")


FAMILY = Family(
    id="unsanitised_training", entity="training_run",
    description="a training run consuming unsanitised or uncatalogued data",
    techniques=("AML.T0020",),  # ATLAS Poison Training Data
    detect=training_alerts, scenarios=("unsanitised_training",),
)
