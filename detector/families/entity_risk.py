"""Entity risk: a principal's weak signals across steps and days, added up with decay (:mod:`detector.risk`)."""

from __future__ import annotations

from detector.families import Family, Step
from detector.incidents import Alert


def _detect(step: Step) -> list[Alert]:
    from detector.risk import entity_risk_alerts  # the risk module reads the families' Step

    return entity_risk_alerts(step)


FAMILY = Family(
    id="entity_risk", entity="principal",
    description="weak signals about one principal (minor alerts, first reads outside the team's domain, rare "
                "combinations of data, new destinations, out-of-role downloads) that add up over days",
    alerts_on_signals=False, detect=_detect, runs_last=True,
    techniques=("T1213", "T1567"),  # ATT&CK Data from Information Repositories; Exfiltration Over Web Service
    no_scenario="it has no attack of its own: it adds up the weak signals of every other family and of the "
                "peer observations, and the evaluation counts it wherever it catches an attack",
)
