"""The detect step: one window's features in, scored, explained, graded alerts out, recorded as incidents.

For a window ``[start, end)`` (:func:`detect_step`):

1. :func:`features.engine.extract` computes the feature matrices (the history is
   advanced to ``start`` first, so the step sees only events before its end).
2. **Principals** are scored by their peer group's baseline (``human``, ``service``,
   ``agent``; :mod:`detector.baselines`) in *scoring space*: ``log1p`` of every feature
   (bytes and counts are heavy-tailed), with the novelty features of an identity that
   has little history (fewer than ``MIN_HOURS_HISTORY`` events) set to 0 — a new joiner
   is compared with peers on what they do, never paged on novelty alone. Each detector
   **family** has its signal features (:data:`FAMILY_OF_FEATURE`): unusual join,
   bulk/embedding export, artifact download, secrets, and — for agents and services —
   the rate/breadth/novelty of a runaway identity. A family alerts when one of its signal
   features stands far (:attr:`DetectConfig.min_excess`) above the entity's *normal
   ceiling*: the larger of the peer group's 99.9th percentile and the entity's own
   maximum over the lookback; its score extrapolates the tail (:func:`tail_score`).
   The PyOD ensemble over the whole vector is the catch-all *behaviour outlier*: a row
   ranked above :attr:`DetectConfig.outlier_score` of the baseline and well beyond its
   most anomalous row.
3. **Resources** read in the window are scored the same way (peer group ``all``); a
   confidential or restricted resource with many first-time readers and a high score is
   an *exposure spike*, grouped with the grant that caused it (group key: the resource).
4. **Export habits**: the low-and-slow insider who exports a little restricted data
   every day is below every per-window bar; a principal exporting restricted data on
   several days of the last week, far more often than in the weeks before, is a
   ``bulk_export`` alert of its own (:func:`_export_habit_alerts`).
5. **Policy checks** (:mod:`detector.policy`): grants of sensitive data to outside
   accounts or mass audiences, training on unsanitised or uncatalogued data.
6. Each alert gets its evidence times and data context from one query per entity kind,
   a severity (:mod:`detector.severity`) and an explanation, and is applied with
   :func:`detector.incidents.record_alert` (dedup, grouping, suppression, idempotency).

A stage that raises does not stop the others: it becomes a visible ``pipeline_error``
incident and the step still completes (StreamAlert's lesson). Failures of the store
itself propagate, so the caller keeps the watermark where it was.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from detector.baselines import TAIL_QUANTILE, BaselinePolicy, ModelBook
from detector.explain import Driver, explain_scaled
from detector.incidents import Alert, RecordOutcome, record_alert
from detector.policy import PolicyThresholds, PolicyViolation, policy_violations
from detector.severity import SeverityInputs, severity, severity_points
from features.engine import (
    CATALOGUE_CTE,
    RANK_SQL,
    READING_SQL,
    SENSITIVE_CATEGORIES_SQL,
    WINDOW_SQL,
    FeatureSet,
    extract,
)
from features.registry import BY_NAME, MIN_HOURS_HISTORY, features_of
from features.times import bound_ms, from_epoch_ms

#: Principal features whose drivers name a detector family.
FAMILY_OF_FEATURE: dict[str, str] = {
    "joins": "unusual_join", "join_sensitive_categories": "unusual_join",
    "join_pair_rarity_global": "unusual_join", "join_pair_rarity_personal": "unusual_join",
    "bytes_exported": "bulk_export", "exports": "bulk_export", "embedding_export_bytes": "bulk_export",
    "new_export_destinations": "bulk_export", "bytes_exported_vs_team": "bulk_export",
    "artifact_downloads": "artifact_download", "bytes_downloaded": "artifact_download",
    "distinct_secrets": "secrets",
    "grants": "permission_fanout", "largest_grant_audience": "permission_fanout",
}
#: For agents and services, these drivers mean a runaway identity.
RUNAWAY_FEATURES = frozenset({
    "events", "distinct_resources", "max_events_per_minute", "timing_regularity", "new_resource_share",
    "failed_actions", "events_vs_team", "source_ips", "sensitive_reads", "bytes_read",
})
#: Features that only say "new to this identity": zeroed for identities without history.
NOVELTY_FEATURES = ("new_resource_share", "new_export_destinations", "join_pair_rarity_personal", "off_hours_share")
#: Which of a principal's actions carry the data that matters, per family (for severity's data points).
_FAMILY_ACTIONS = {"bulk_export": "export", "artifact_download": "download", "unusual_join": "join"}
PRINCIPAL_GROUPS = ("human", "service", "agent")


@dataclass(frozen=True)
class DetectConfig:
    """Detection settings; defaults are what the evaluation measures.

    Attributes
    ----------
    min_excess : float
        A family alerts when one of its signal features stands this far (natural log
        units: 1.0 is e times) above the entity's normal ceiling. The largest, not the sum:
        a family's features often measure one thing (bytes exported, and the same bytes
        against the team) and must not count it twice.
    outlier_score, outlier_factor : float
        The catch-all behaviour outlier needs an ensemble percentile of at least
        ``outlier_score`` and a combined score ``outlier_factor`` times the baseline's largest.
    score_margin : float
        Only rows with some feature at least this far (log units; 0.25 is about 30 %)
        above its normal ceiling are scored by the ensemble at all.
    exposure_min_readers : int
        First-time readers of a sensitive resource in one window before it can alert.
    family_min_excess : dict
        Per family, a higher bar than ``min_excess``: agents and services are bursty by
        nature (a pipeline's run, an assistant's task), so a runaway must stand further out.
    habit_days, habit_min_history, habit_increase, habit_score : int, timedelta, float, float
        The export-habit check (:func:`_export_habit_alerts`): days of the last week with
        restricted exports; how long before that week the principal must have been
        active for a change to mean something; how many times the earlier daily rate the
        week's must be; the score such an alert carries.
    dedup_window : timedelta
        Alerts about the same detector and entity within this update one incident.
    baseline : BaselinePolicy
    thresholds : PolicyThresholds
    """

    min_excess: float = 1.0
    outlier_score: float = 0.999
    outlier_factor: float = 1.5
    score_margin: float = 0.25
    exposure_min_readers: int = 5
    family_min_excess: dict[str, float] = field(default_factory=lambda: {"runaway_agent": 2.0})
    habit_days: int = 3
    habit_min_history: timedelta = timedelta(days=2)
    habit_increase: float = 2.5
    habit_score: float = 0.995
    dedup_window: timedelta = timedelta(hours=24)
    baseline: BaselinePolicy = field(default_factory=BaselinePolicy)
    thresholds: PolicyThresholds = field(default_factory=PolicyThresholds)


@dataclass
class StepResult:
    """What one step did."""

    start: datetime
    end: datetime
    events: int = 0
    alerts: list[Alert] = field(default_factory=list)
    outcomes: list[RecordOutcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    feature_seconds: float = 0.0

    @property
    def opened(self) -> int:
        return sum(outcome.outcome == "opened" for outcome in self.outcomes)


def scoring_space(X: np.ndarray) -> np.ndarray:
    """Features as the scorers see them: ``log1p`` of each (all are >= 0; heavy tails tamed)."""
    return np.log1p(np.maximum(X, 0.0))


def _from_scoring_space(Z: np.ndarray) -> np.ndarray:
    return np.expm1(Z)


def _query_frame(client: Client, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    return client.query_df(sql, parameters=params)


# ---------------------------------------------------------------------------- context queries

def _categories(condition: str) -> str:
    return (f"length(arrayDistinct(arrayFilter(x -> has({SENSITIVE_CATEGORIES_SQL}, x), "
            f"arrayFlatten(groupArrayIf(c.categories, {condition})))))")


_PRINCIPAL_CONTEXT = f"""WITH {CATALOGUE_CTE}
SELECT a.principal AS key,
    toUnixTimestamp64Milli(min(a.event_time)) AS first_ms, toUnixTimestamp64Milli(max(a.event_time)) AS last_ms,
    maxIf({RANK_SQL}, a.action IN {READING_SQL}) AS rank_read, {_categories(f'a.action IN {READING_SQL}')} AS cat_read,
    maxIf({RANK_SQL}, a.action = 'export') AS rank_export, {_categories("a.action = 'export'")} AS cat_export,
    maxIf({RANK_SQL}, a.action = 'download') AS rank_download, {_categories("a.action = 'download'")} AS cat_download,
    maxIf({RANK_SQL}, a.action = 'join') AS rank_join, {_categories("a.action = 'join'")} AS cat_join,
    sumIf(a.rows, a.action IN ('export', 'download')) AS rows_out,
    topK(8)(a.resource) AS top_resources
FROM access_log AS a LEFT JOIN cat AS c ON a.resource = c.resource
WHERE {WINDOW_SQL.replace('event_time', 'a.event_time')} AND a.principal IN {{keys:Array(String)}}
GROUP BY a.principal"""

_RESOURCE_CONTEXT = f"""WITH {CATALOGUE_CTE}
SELECT a.resource AS key,
    toUnixTimestamp64Milli(min(a.event_time)) AS first_ms, toUnixTimestamp64Milli(max(a.event_time)) AS last_ms,
    {_categories('1')} AS categories, sum(a.rows) AS rows_read, topK(20)(a.principal) AS readers
FROM access_log AS a LEFT JOIN cat AS c ON a.resource = c.resource
WHERE {WINDOW_SQL.replace('event_time', 'a.event_time')} AND a.action IN {READING_SQL}
    AND a.resource IN {{keys:Array(String)}}
GROUP BY a.resource"""

_TRAINING_CONTEXT = f"""WITH {CATALOGUE_CTE}
SELECT t.resource AS key, toUnixTimestamp64Milli(min(t.event_time)) AS first_ms,
    toUnixTimestamp64Milli(max(t.event_time)) AS last_ms, groupUniqArray(t.principal) AS trainers,
    max({RANK_SQL}) AS rank, {_categories('1')} AS categories, groupUniqArrayIf(t.input, t.input != '') AS inputs,
    max(t.rows) AS rows
FROM (SELECT resource, principal, event_time, rows, input FROM access_log ARRAY JOIN related AS input
      WHERE {WINDOW_SQL} AND action = 'train' AND resource IN {{keys:Array(String)}}) AS t
LEFT JOIN cat AS c ON t.input = c.resource
GROUP BY t.resource"""


def _context(client: Client, sql: str, keys: list[str], params: dict[str, int]) -> dict[str, dict[str, Any]]:
    if not keys:
        return {}
    frame = _query_frame(client, sql, {**params, "keys": sorted(set(keys))})
    return {row["key"]: row for row in frame.to_dict("records")}


# ---------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class _Candidate:
    """A scored entity above the alert bar, with its family and drivers."""

    key: str
    group: str
    family: str
    score: float
    drivers: list[Driver]
    values: dict[str, float]


def tail_score(excess: float) -> float:
    """The alert score of a value ``excess`` (log units) beyond the group's 99.9th percentile.

    A Pareto-like extrapolation past the baseline's tail: at the 99.9th percentile the
    score is 0.999, and each e-fold further divides what is left by e. It keeps scores
    meaningful beyond the largest baseline value, where a plain percentile saturates.
    """
    return 1.0 - (1.0 - TAIL_QUANTILE) * float(np.exp(-max(excess, 0.0)))


def _signal_families(entity: str, group: str, names: tuple[str, ...]) -> dict[str, list[int]]:
    """Per family the column indices of its signal features, for this entity and peer group."""
    if entity == "resource":
        return {"exposure_spike": [names.index("first_time_readers")]}
    families: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        family = FAMILY_OF_FEATURE.get(name)
        if family == "permission_fanout":
            continue  # grants are judged as grants (policy, audience), not as a person's volume
        if family is None and group in ("agent", "service") and name in RUNAWAY_FEATURES:
            family = "runaway_agent"
        if family is not None:
            families.setdefault(family, []).append(i)
    return families


def _score_entity(client: Client, book: ModelBook, entity: str, start: datetime, end: datetime,
                  groups: np.ndarray, Z: np.ndarray, X: np.ndarray, keys: list[str],
                  config: DetectConfig) -> list[_Candidate]:
    """Score one entity kind's rows by peer group, store them for later baselines, return the candidates.

    A row is a candidate of a **family** when one of its family's signal features stands
    at least :attr:`DetectConfig.min_excess` (log units) above the *normal ceiling* —
    per feature the larger of the peer group's 99.9th percentile and the entity's own
    maximum over the lookback; it is a **behaviour outlier** when the ensemble ranks it
    above :attr:`DetectConfig.outlier_score` of the baseline and its combined score is
    :attr:`DetectConfig.outlier_factor` times the baseline's largest. Rows within
    :attr:`DetectConfig.score_margin` of their normal ceiling in every feature are not scored.
    """
    names = tuple(feature.name for feature in features_of(entity))  # type: ignore[arg-type]
    step_ms = bound_ms(end) - bound_ms(start)
    book.refresh(client, entity, start, step_ms, names)
    candidates: list[_Candidate] = []
    for group in sorted(set(groups.tolist())):
        fitted = book.fitted.get((entity, group))
        if fitted is None or fitted.features != names or fitted.step_ms != step_ms:
            continue  # cold start of the group: not enough baseline yet
        # Only rows clearly beyond their normal ceiling in some feature can alert (a family
        # needs an excess of min_excess; the catch-all a combined score far past the
        # baseline's largest): the ensemble scores just those, which keeps most steps from
        # calling it at all.
        members = np.flatnonzero(groups == group)
        ceilings = np.array([fitted.normal_ceiling(keys[i]) for i in members]).reshape(len(members), -1)
        beyond = (Z[members] - ceilings).max(axis=1, initial=-np.inf) >= config.score_margin
        rows, ceilings = members[beyond], ceilings[beyond]
        if rows.size == 0:
            continue
        scorer = fitted.scorer
        combined = scorer.decision_function(Z[rows])
        percentiles = scorer.percentile(combined)
        families = _signal_families(entity, group, names)
        outlier_bar = config.outlier_factor * float(scorer.train_scores_.max())
        for i, ceiling, raw, percentile in zip(rows, ceilings, combined, percentiles):
            excess = np.maximum(Z[i] - ceiling, 0.0)
            best, best_excess = max(((family, float(excess[columns].max())) for family, columns in families.items()),
                                    key=lambda item: (item[1], item[0]), default=("", 0.0))
            if best_excess >= config.family_min_excess.get(best, config.min_excess):
                columns = [c for c in np.argsort(-excess, kind="stable")[:3] if excess[c] > 0]
                total = float(excess[columns].sum())
                drivers = [Driver(names[c], BY_NAME[names[c]].description, float(X[i, c]),
                                  float(_from_scoring_space(ceiling[c])), float(excess[c]) / total, float(excess[c]))
                           for c in columns]
                candidates.append(_Candidate(keys[i], group, best, max(float(percentile), tail_score(best_excess)),
                                             drivers, dict(zip(names, X[i].tolist()))))
            elif entity == "principal" and percentile >= config.outlier_score and raw >= outlier_bar:
                drivers = explain_scaled(Z[i], scorer.feature_center_, scorer.feature_scale_, list(names), top=3,
                                         shown_values=X[i], shown_baseline=_from_scoring_space(scorer.feature_center_))
                # Led by a grant, it is the grant's to judge (policy, audience), not the catch-all's.
                if drivers and FAMILY_OF_FEATURE.get(drivers[0].feature) != "permission_fanout":
                    candidates.append(_Candidate(keys[i], group, "behaviour_outlier", float(percentile), drivers,
                                                 dict(zip(names, X[i].tolist()))))
    book.add_rows(entity, end, keys, groups.tolist(), Z)
    return candidates


def _bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _principal_title(family: str, key: str, group: str, v: dict[str, float], lead: Driver) -> str:
    if family == "bulk_export":
        if v["embedding_export_bytes"] > 0:
            return f"{key} exported {_bytes(v['embedding_export_bytes'])} from embedding stores"
        return f"{key} exported {_bytes(v['bytes_exported'])} in {int(v['exports'])} exports"
    if family == "unusual_join":
        return f"{key} joined rarely combined data ({int(v['join_sensitive_categories'])} sensitive categories)"
    if family == "artifact_download":
        return f"{key} downloaded {int(v['artifact_downloads'])} model artifacts ({_bytes(v['bytes_downloaded'])})"
    if family == "secrets":
        return f"{key} read {int(v['distinct_secrets'])} distinct secrets ({int(v['failed_actions'])} denied or failed)"
    if family == "permission_fanout":
        return f"{key} granted access to {int(v['largest_grant_audience'])} people"
    if family == "runaway_agent":
        return (f"{group} {key}: {int(v['events'])} operations over {int(v['distinct_resources'])} resources, "
                f"up to {int(v['max_events_per_minute'])} a minute")
    return f"{key} behaved unlike their peers: {lead.description} {lead.value:,.3g} (normally {lead.baseline:,.3g})"


# ---------------------------------------------------------------------------- alerts


def _alert_id(detector: str, entity: str, key: str, end: datetime) -> str:
    return f"{detector}|{entity}|{key}|{bound_ms(end)}"


def _explanation(drivers: list[Driver], points: dict[str, int]) -> list[dict[str, Any]]:
    return [driver.as_dict() for driver in drivers] + [{"severity_points": points}]


def _principal_alerts(client: Client, book: ModelBook, features: FeatureSet, params: dict[str, int],
                      config: DetectConfig) -> list[Alert]:
    keys_frame, X, names = features.matrix("principal")
    if X.shape[0] == 0:
        return []
    keys = keys_frame["principal"].tolist()
    facts = features.principal_context.set_index("principal").reindex(keys)
    groups = facts["principal_type"].fillna("human").where(lambda s: s.isin(PRINCIPAL_GROUPS), "human").to_numpy()
    history = facts["history_events"].fillna(0).to_numpy()
    X = X.copy()
    cold = history < MIN_HOURS_HISTORY
    for name in NOVELTY_FEATURES:
        X[cold, names.index(name)] = 0.0
    candidates = _score_entity(client, book, "principal", features.start, features.end, groups,
                               scoring_space(X), X, keys, config)
    context = _context(client, _PRINCIPAL_CONTEXT, [c.key for c in candidates], params)
    alerts = []
    for candidate in candidates:
        ctx, v = context.get(candidate.key), candidate.values
        if ctx is None:
            continue
        family = candidate.family
        action = _FAMILY_ACTIONS.get(family, "read")
        inputs = SeverityInputs(
            detector=family, score=candidate.score,
            sensitivity_rank=int(ctx[f"rank_{action}"]), sensitive_categories=int(ctx[f"cat_{action}"]),
            records_exposed=int(ctx["rows_out"]),
            bytes_exposed=int(v["bytes_downloaded"]) if family == "artifact_download" else 0,
            leaves_organisation=family == "bulk_export" and v["new_export_destinations"] > 0,
            actor_is_agent=candidate.group == "agent",
        )
        points = severity_points(inputs)
        alerts.append(Alert(
            alert_id=_alert_id(family, "principal", candidate.key, features.end), detector=family,
            entity="principal", entity_key=candidate.key,
            title=_principal_title(family, candidate.key, candidate.group, v, candidate.drivers[0]),
            severity=severity(inputs), score=round(candidate.score, 6), principals=(candidate.key,),
            resources=tuple(ctx["top_resources"]), first_seen=from_epoch_ms(ctx["first_ms"]),
            last_seen=from_epoch_ms(ctx["last_ms"]),
            detected_at=features.end, explanation=_explanation(candidate.drivers, points)))
    return alerts


_EXPORT_HABIT = f"""WITH {CATALOGUE_CTE}
SELECT a.principal AS key, toUnixTimestamp64Milli(min(a.event_time)) AS active_since_ms,
    uniqExactIf(toDate(a.event_time), a.recent AND a.hit) AS recent_days,
    uniqExactIf(toDate(a.event_time), NOT a.recent AND a.hit) AS earlier_days,
    sumIf(a.rows, a.hit AND a.event_time >= fromUnixTimestamp64Milli({{lo:Int64}}, 'UTC')) AS rows,
    toUnixTimestamp64Milli(minIf(a.event_time, a.recent AND a.hit)) AS first_ms,
    toUnixTimestamp64Milli(maxIf(a.event_time, a.hit)) AS last_ms,
    groupUniqArrayIf(8)(a.resource, a.recent AND a.hit) AS resources,
    length(arrayDistinct(arrayFilter(x -> has({SENSITIVE_CATEGORIES_SQL}, x),
        arrayFlatten(groupArrayIf(a.categories, a.recent AND a.hit))))) AS categories
FROM (SELECT l.principal AS principal, l.event_time AS event_time, l.rows AS rows, l.resource AS resource,
             c.categories AS categories, l.action = 'export' AND c.sensitivity = 'restricted' AS hit,
             l.event_time >= fromUnixTimestamp64Milli({{recent:Int64}}, 'UTC') AS recent
      FROM access_log AS l LEFT JOIN cat AS c ON l.resource = c.resource
      WHERE l.event_time >= fromUnixTimestamp64Milli({{since:Int64}}, 'UTC')
        AND l.event_time < fromUnixTimestamp64Milli({{hi:Int64}}, 'UTC') AND l.principal IN {{keys:Array(String)}}) AS a
GROUP BY a.principal"""


def _export_habit_alerts(client: Client, features: FeatureSet, params: dict[str, int],
                         config: DetectConfig) -> list[Alert]:
    """The low-and-slow insider: a new habit of exporting restricted data, repeated across days.

    A principal who exported restricted data in this window, on at least
    :attr:`DetectConfig.habit_days` distinct days of the last week, at
    :attr:`DetectConfig.habit_increase` times the daily rate of the up to three weeks
    before (which must span at least :attr:`DetectConfig.habit_min_history`), alerts as
    ``bulk_export``. No single export needs to be large: the pattern is the evidence, so
    its score is modest (:attr:`DetectConfig.habit_score`) and its severity comes from
    the data and this window's rows.
    """
    principals = features.frame("principal")
    if principals.empty:
        return []
    end = features.end
    history = features.principal_context.set_index("principal")["history_events"].reindex(principals["principal"])
    exporting = (principals["exports"].to_numpy() > 0) & (history.fillna(0).to_numpy() >= MIN_HOURS_HISTORY)
    keys = principals.loc[exporting, "principal"].tolist()
    if not keys:
        return []
    recent = end - timedelta(days=7)
    frame = _query_frame(client, _EXPORT_HABIT, {**params, "keys": sorted(keys), "recent": bound_ms(recent),
                                                 "since": bound_ms(end - timedelta(days=28))})
    alerts = []
    for row in frame.to_dict("records"):
        if row["last_ms"] < params["lo"]:
            continue  # no restricted export in this window: nothing new to say
        observed = recent - from_epoch_ms(row["active_since_ms"])
        if row["recent_days"] < config.habit_days or observed < config.habit_min_history:
            continue  # not repeated, or too little seen before the week to call it a change
        earlier_rate = row["earlier_days"] / max(observed / timedelta(days=1), 1.0)
        if row["recent_days"] / 7 < config.habit_increase * earlier_rate:
            continue  # the usual pace for this principal
        inputs = SeverityInputs(detector="bulk_export", score=config.habit_score, sensitivity_rank=3,
                                sensitive_categories=int(row["categories"]), records_exposed=int(row["rows"]))
        points = severity_points(inputs)
        drivers = [Driver("restricted_export_days", "days with exports of restricted data in the last 7",
                          float(row["recent_days"]), round(7 * earlier_rate, 2), 1.0, float(row["recent_days"]))]
        alerts.append(Alert(
            alert_id=_alert_id("bulk_export.habit", "principal", row["key"], end), detector="bulk_export",
            entity="principal", entity_key=row["key"],
            title=f"{row['key']} exported restricted data on {int(row['recent_days'])} of the last 7 days "
                  f"({int(row['earlier_days'])} in the {observed.days} days before)",
            severity=severity(inputs), score=config.habit_score, principals=(row["key"],),
            resources=tuple(sorted(row["resources"])), first_seen=from_epoch_ms(row["first_ms"]),
            last_seen=from_epoch_ms(row["last_ms"]),
            detected_at=end, explanation=_explanation(drivers, points)))
    return alerts


def _resource_alerts(client: Client, book: ModelBook, features: FeatureSet, params: dict[str, int],
                     config: DetectConfig) -> list[Alert]:
    keys_frame, X, names = features.matrix("resource")
    if X.shape[0] == 0:
        return []
    keys = keys_frame["resource"].tolist()
    groups = np.full(len(keys), "all", dtype=object)
    candidates = _score_entity(client, book, "resource", features.start, features.end, groups,
                               scoring_space(X), X, keys, config)
    exposed = [c for c in candidates if c.values["resource_sensitivity_rank"] >= 2
               and c.values["first_time_readers"] >= config.exposure_min_readers]
    context = _context(client, _RESOURCE_CONTEXT, [c.key for c in exposed], params)
    alerts = []
    for candidate in exposed:
        ctx, v = context.get(candidate.key), candidate.values
        if ctx is None:
            continue
        inputs = SeverityInputs(
            detector="exposure_spike", score=candidate.score, sensitivity_rank=int(v["resource_sensitivity_rank"]),
            sensitive_categories=int(ctx["categories"]), people_exposed=int(v["first_time_readers"]),
            records_exposed=int(ctx["rows_read"]))
        points = severity_points(inputs)
        alerts.append(Alert(
            alert_id=_alert_id("exposure_spike", "resource", candidate.key, features.end), detector="exposure_spike",
            entity="resource", entity_key=candidate.key,
            title=f"{int(v['first_time_readers'])} people read {candidate.key} for the first time",
            severity=severity(inputs), score=round(candidate.score, 6), principals=tuple(ctx["readers"]),
            resources=(candidate.key,), first_seen=from_epoch_ms(ctx["first_ms"]),
            last_seen=from_epoch_ms(ctx["last_ms"]),
            detected_at=features.end, explanation=_explanation(candidate.drivers, points),
            group_key=f"resource:{candidate.key}"))
    return alerts


def _policy_explanation(violation: PolicyViolation, points: dict[str, int],
                        grant: dict[str, str] | None = None) -> list[dict[str, Any]]:
    rule: dict[str, Any] = {"rule": violation.rule, "severity_points": points}
    if grant is not None:
        rule["grant"] = grant  # the structured pair: names may contain " -> " themselves
    return [{"feature": name, "value": value, "baseline": 0, "weight": round(1 / len(violation.evidence), 4)}
            for name, value in violation.evidence.items()] + [rule]


def _policy_alerts(client: Client, features: FeatureSet, params: dict[str, int], config: DetectConfig,
                   organisation_size: int) -> list[Alert]:
    violations = [v for v in policy_violations(features, config.thresholds, organisation_size)
                  if v.grade == "violation"]
    grants = features.frame("grant").set_index("event_id") if violations else None
    runs = _context(client, _TRAINING_CONTEXT, [v.key["resource"] for v in violations if v.entity == "training_run"],
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
            alert_id=_alert_id(f"{violation.detector}.{violation.rule}", violation.entity, key, features.end),
            detector=violation.detector, entity=violation.entity, entity_key=key, title=violation.reason,
            severity=severity(inputs), score=1.0, principals=principals, resources=resources,
            first_seen=first, last_seen=last, detected_at=features.end,
            explanation=_policy_explanation(violation, points, pair), group_key=group_key))
    return alerts


def _error_alert(stage: str, error: BaseException, end: datetime) -> Alert:
    text = f"{type(error).__name__}: {error}"
    return Alert(
        alert_id=_alert_id("pipeline_error", "job", stage, end), detector="pipeline_error", entity="job",
        entity_key=stage, title=f"detection stage '{stage}' failed: {text[:200]}", severity="SEV3", score=1.0,
        principals=(), resources=(), first_seen=end, last_seen=end, detected_at=end,
        explanation=[{"feature": "error", "value": text[:2000], "baseline": "",
                      "weight": 1.0, "traceback": traceback.format_exception(error)[-3:]}])


def organisation_size(client: Client) -> int:
    """People in the principals catalogue (the share-of-organisation policy limit needs it)."""
    people = "SELECT uniqExactIf(principal, principal_type = 'human') FROM principals"
    return int(client.query(people).result_rows[0][0])


def detect_step(client: Client, start: datetime, end: datetime, book: ModelBook | None = None,
                config: DetectConfig | None = None, people: int | None = None) -> StepResult:
    """Run detection over ``[start, end)`` and record what it finds.

    Parameters
    ----------
    client : Client
        The store (initialised).
    start, end : datetime
        Timezone-aware window bounds; the history must not be past ``start``.
    book : ModelBook, optional
        The peer-group scorers (loaded from the store when omitted).
    config : DetectConfig, optional
    people : int, optional
        Organisation size for the mass-grant policy (queried when omitted).

    Returns
    -------
    StepResult

    Raises
    ------
    clickhouse_connect.driver.exceptions.ClickHouseError
        The store failed: nothing after the failure was recorded; run the step again.
    """
    config = config or DetectConfig()
    book = book if book is not None else ModelBook.load(client, config.baseline)
    started = time.perf_counter()
    features = extract(client, start, end)
    result = StepResult(features.start, features.end, feature_seconds=time.perf_counter() - started)
    result.events = int(features.frame("principal")["events"].sum()) if len(features.frame("principal")) else 0
    params = {"lo": bound_ms(features.start), "hi": bound_ms(features.end)}
    size = people if people is not None else organisation_size(client)
    stages = (
        ("principals", lambda: _principal_alerts(client, book, features, params, config)),
        ("resources", lambda: _resource_alerts(client, book, features, params, config)),
        ("export_habits", lambda: _export_habit_alerts(client, features, params, config)),
        ("policy", lambda: _policy_alerts(client, features, params, config, size)),
    )
    for stage, run in stages:
        try:
            result.alerts.extend(run())
        except ClickHouseError:
            raise
        except Exception as error:  # a bug in one stage must be seen, not stop the others
            result.errors.append(f"{stage}: {type(error).__name__}: {error}")
            result.alerts.append(_error_alert(stage, error, features.end))
    book.flush(client)
    for alert in sorted(result.alerts, key=lambda a: (a.first_seen, a.alert_id)):
        result.outcomes.append(record_alert(client, alert, config.dedup_window))
    result.seconds = time.perf_counter() - started
    return result
