"""Behaviour outlier: the PyOD ensemble over the whole feature vector, the catch-all.

It alerts on a principal that no family's signal explains, ranked far past its peer
group's baseline; it is the least specific finding (severity takes a point off).
"""

from __future__ import annotations

from detector.explain import Driver
from detector.families import Family


def _title(key: str, group: str, v: dict[str, float], lead: Driver) -> str:
    return f"{key} behaved unlike their peers: {lead.description} {lead.value:,.3g} (normally {lead.baseline:,.3g})"


FAMILY = Family(
    id="behaviour_outlier", entity="principal",
    description="a principal unlike its peer group over the whole feature vector (the ensemble's catch-all)",
    catch_all=True, title=_title, scenarios=("secrets_sweep", "low_and_slow"),
)
