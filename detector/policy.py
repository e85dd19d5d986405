"""Policy checks: what is a violation whatever the baselines say (deterministic, no scoring).

Anomaly scores answer "is this unusual?"; some things are wrong even when usual. These
rules read the feature matrices of a window (:class:`features.engine.FeatureSet`) and
return one :class:`PolicyViolation` per offending entity, with the evidence that
triggered it. Thresholds are parameters of :class:`PolicyThresholds` so a deployment
can tighten them; the defaults are documented on each field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from detector.incidents import Alert
from detector.severity import SeverityInputs, severity, severity_points
from features.engine import FeatureSet
from features.registry import BY_NAME
from features.times import from_epoch_ms

if TYPE_CHECKING:
    from detector.families import Step

RESTRICTED_RANK = 3  # features.registry.SENSITIVITY_RANK["restricted"]
CONFIDENTIAL_RANK = 2


@dataclass(frozen=True)
class PolicyThresholds:
    """Tunable limits of the policy checks.

    Attributes
    ----------
    mass_grant_audience : int
        A grant of confidential or restricted data that makes at least this many people
        newly able to read it is a violation (default 500: "a group of thousands" with
        room for large teams below it).
    mass_grant_share : float
        ... or that makes at least this share of the organisation newly able to read it
        (default 0.25), so "granted to everyone" is caught in a small company too.
    """

    mass_grant_audience: int = 500
    mass_grant_share: float = 0.25


@dataclass(frozen=True)
class PolicyViolation:
    """One entity breaking one rule in one window.

    Attributes
    ----------
    detector : str
        The detector family it belongs to (``unsanitised_training``, ``permission_fanout``).
    rule : str
        Which rule, stable, e.g. ``training.unsanitised_inputs``.
    entity : str
        ``training_run`` or ``grant``.
    key : dict
        The entity's key columns (e.g. ``{"resource": "run.llm-7b.42"}``).
    evidence : dict
        The feature values that triggered the rule.
    reason : str
        One sentence for an analyst.
    grade : str
        ``violation`` (page-worthy: unsanitised or uncatalogued training data, restricted
        data granted outside or to a mass audience) or ``notice`` (to record: sensitive
        data that did pass sanitisation went into training).
    """

    detector: str
    rule: str
    entity: str
    key: dict[str, Any]
    evidence: dict[str, Any]
    reason: str
    principals: tuple[str, ...] = field(default=())
    resources: tuple[str, ...] = field(default=())
    grade: str = "violation"


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict("records")


def training_violations(runs: pd.DataFrame) -> list[PolicyViolation]:
    """Training runs that consumed unsanitised, sensitive or uncatalogued inputs."""
    found = []
    for run in _rows(runs):
        problems = [(name, int(run[name])) for name in ("unsanitised_inputs", "sensitive_inputs", "uncatalogued_inputs")
                    if int(run[name]) > 0]
        for name, count in problems:
            what = {"unsanitised_inputs": "inputs that did not pass sanitisation",
                    "sensitive_inputs": "inputs holding sensitive data",
                    "uncatalogued_inputs": "inputs missing from the catalogue"}[name]
            found.append(PolicyViolation(
                detector="unsanitised_training",
                rule=f"training.{name}",
                entity="training_run",
                key={"resource": run["resource"]},
                evidence={"inputs": int(run["inputs"]), name: count},
                reason=f"training run {run['resource']} consumed {count} of {int(run['inputs'])} {what}",
                resources=(run["resource"],),
                # Sensitive categories alone are expected in sanctioned, sanitised training sets.
                grade="notice" if name == "sensitive_inputs" else "violation",
            ))
    return found


def grant_violations(grants: pd.DataFrame, thresholds: PolicyThresholds = PolicyThresholds(),
                     organisation_size: int | None = None) -> list[PolicyViolation]:
    """Grants of confidential or restricted data to an outside account or to a mass audience.

    ``organisation_size`` (people in the principals catalogue), when known, enables the
    share-of-the-organisation limit of :class:`PolicyThresholds`.
    """
    mass = thresholds.mass_grant_audience
    if organisation_size:
        mass = min(mass, max(1, math.ceil(thresholds.mass_grant_share * organisation_size)))
    found = []
    for grant in _rows(grants):
        rank = int(grant["sensitivity_rank"])
        if rank < CONFIDENTIAL_RANK:
            continue
        level = "restricted" if rank >= RESTRICTED_RANK else "confidential"
        key = {"event_id": grant["event_id"]}
        evidence = {name: int(grant[name]) for name in
                    ("sensitivity_rank", "sensitive_categories", "audience_before", "audience_after", "audience_gain",
                     "grantee_external", "initiator_is_agent", "via_ai_assistant")}
        common = {"entity": "grant", "key": key, "evidence": evidence, "detector": "permission_fanout",
                  "principals": (grant["principal"],), "resources": (grant["resource"],)}
        if int(grant["grantee_external"]):
            found.append(PolicyViolation(
                rule="grant.external", **common,
                reason=f"{grant['principal']} granted {level} {grant['resource']} to the outside account "
                       f"{grant['grantee']}"))
        if int(grant["audience_gain"]) >= mass:
            found.append(PolicyViolation(
                rule="grant.mass_audience", **common,
                reason=f"{grant['principal']} granted {level} {grant['resource']} to {grant['grantee']}, making "
                       f"{int(grant['audience_gain']):,} more people able to read it"))
    return found


def policy_violations(features: FeatureSet, thresholds: PolicyThresholds = PolicyThresholds(),
                      organisation_size: int | None = None) -> list[PolicyViolation]:
    """Every policy violation in one window's features (see :func:`grant_violations` for the size)."""
    return training_violations(features.frame("training_run")) + grant_violations(
        features.frame("grant"), thresholds, organisation_size)


def _explanation(violation: PolicyViolation, points: dict[str, int],
                        grant: dict[str, str] | None = None) -> list[dict[str, Any]]:
    rule: dict[str, Any] = {"rule": violation.rule, "severity_points": points}
    if grant is not None:
        rule["grant"] = grant  # the structured pair: names may contain " -> " themselves
    # A policy is decided by one event: its evidence weighs nothing (0, as a rule's), and has a
    # baseline only where one exists (the audience after a grant against the audience before it).
    before = violation.evidence.get("audience_before")
    return [{"feature": name, "description": BY_NAME[name].description if name in BY_NAME else name, "value": value,
             "baseline": before if name == "audience_after" else "", "weight": 0.0}
            for name, value in violation.evidence.items()] + [rule]


def violation_alerts(step: Step, entity: str) -> list[Alert]:
    """The alerts of one entity's policy violations in a step (``grant`` or ``training_run``).

    Deterministic findings: score 1, evidence as the explanation, severity from the data,
    the audience and the actor; grouped by resource with what else happened to it.
    """
    from detector.alerting import TRAINING_CONTEXT, alert_id, context

    client, features, params, config = step.client, step.features, step.params, step.config
    found = (grant_violations(features.frame("grant"), config.thresholds, step.people) if entity == "grant"
             else training_violations(features.frame("training_run")))
    violations = [v for v in found if v.grade == "violation"]
    grants = features.frame("grant").set_index("event_id") if violations and entity == "grant" else None
    runs = context(client, TRAINING_CONTEXT, [v.key["resource"] for v in violations if v.entity == "training_run"],
                    params)
    alerts = []
    for violation in violations:
        if violation.entity == "grant":
            grant = grants.loc[violation.key["event_id"]]  # type: ignore[union-attr]
            evidence = violation.evidence
            inputs = SeverityInputs(
                detector=violation.detector, policy="violation", sensitivity_rank=evidence["sensitivity_rank"],
                sensitive_categories=evidence["sensitive_categories"], people_exposed=evidence["audience_gain"],
                leaves_organisation=bool(evidence["grantee_external"]),
                actor_is_agent=bool(evidence["initiator_is_agent"] or evidence["via_ai_assistant"]))
            key = f"{grant['resource']} -> {grant['grantee']}"  # for people and ids; never parsed back
            pair = {"resource": str(grant["resource"]), "grantee": str(grant["grantee"])}
            when = pd.Timestamp(grant["event_time"]).tz_localize("UTC") if pd.Timestamp(
                grant["event_time"]).tzinfo is None else pd.Timestamp(grant["event_time"])
            first = last = when.to_pydatetime()
            group_key = f"resource:{grant['resource']}"
            principals, resources = violation.principals, violation.resources
        else:
            run = runs.get(violation.key["resource"])
            if run is None:
                continue
            inputs = SeverityInputs(
                detector=violation.detector, policy="violation", sensitivity_rank=int(run["rank"]),
                sensitive_categories=int(run["categories"]), records_exposed=int(run["rows"]),
                actor_is_agent=False)
            key = violation.key["resource"]
            first, last = from_epoch_ms(run["first_ms"]), from_epoch_ms(run["last_ms"])
            group_key = f"resource:{key}"
            principals, resources = tuple(run["trainers"]), (key, *sorted(run["inputs"]))
            pair = None
        points = severity_points(inputs)
        alerts.append(Alert(
            alert_id=alert_id(f"{violation.detector}.{violation.rule}", violation.entity, key, features.end),
            detector=violation.detector, entity=violation.entity, entity_key=key, title=violation.reason,
            severity=severity(inputs), score=1.0, principals=principals, resources=resources,
            first_seen=first, last_seen=last, detected_at=features.end,
            explanation=_explanation(violation, points, pair), group_key=group_key))
    return alerts
