"""The detection engine: one window's features in, the registered families run, graded alerts out.

For a window ``[start, end)`` (:func:`detect_step`):

1. :func:`features.engine.extract` computes the feature matrices (the history is
   advanced to ``start`` first, so the step sees only events before its end).
2. **Principals** are scored by their peer group's baseline (``human``, ``service``,
   ``agent``; :mod:`detector.baselines`) in *scoring space*: ``log1p`` of every feature
   (bytes and counts are heavy-tailed), with the novelty features of an identity that
   has little history (fewer than ``MIN_HOURS_HISTORY`` events) set to 0 — a new joiner
   is compared with peers on what they do, never paged on novelty alone. Each detector
   **family** (:mod:`detector.families`, one module each) declares its signal features;
   a family alerts when one of them stands far (:attr:`DetectConfig.min_excess`, or the
   family's own bar) above the entity's *normal ceiling*: the larger of the peer group's
   99.9th percentile and the entity's own maximum over the lookback; its score
   extrapolates the tail (:func:`tail_score`). The PyOD ensemble over the whole vector
   is the catch-all family (*behaviour outlier*): a row ranked above
   :attr:`DetectConfig.outlier_score` of the baseline and well beyond its most
   anomalous row.
3. Each family with a ``detect`` hook then runs as a stage of its own: the exposure
   spike (resources scored the same way), the export habit of the low-and-slow insider
   (bulk export), and the policy checks (grants of sensitive data to outside accounts or
   mass audiences; training on unsanitised or uncatalogued data).
4. The detection rules run, then the families that judge the others' findings
   (``runs_last``): entity risk (:mod:`detector.risk`) adds this step's weak alerts and
   peer observations (:mod:`detector.observations`) to each principal's decaying risk.
5. Each alert carries its evidence times and data context, a severity
   (:mod:`detector.severity`) and an explanation, and is applied with
   :func:`detector.incidents.record_alert` (dedup, grouping, suppression, idempotency).

A stage that raises does not stop the others: it becomes a visible ``pipeline_error``
incident and the step still completes (StreamAlert's lesson). Failures of the store
itself propagate, so the caller keeps the watermark where it was.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from detector.alerting import PRINCIPAL_CONTEXT, alert_id, context, error_alert, explanation
from detector.baselines import TAIL_QUANTILE, BaselinePolicy, FittedBaseline, ModelBook
from detector.explain import Driver, explain_scaled
from detector.families import FAMILIES, PRINCIPAL_GROUPS, Batch, Step, catch_all, family_of_feature
from detector.incidents import Alert, RecordOutcome, record_alert
from detector.observations import ObservationConfig
from detector.policy import PolicyThresholds
from detector.risk import RiskConfig
from detector.rules import rule_alerts
from detector.severity import SeverityInputs, severity, severity_points
from features.engine import FeatureSet, extract
from features.registry import BY_NAME, ENTITY_KEYS, MIN_HOURS_HISTORY, features_of
from features.times import bound_ms, from_epoch_ms

#: Features that only say "new to this identity": zeroed for identities without history.
NOVELTY_FEATURES = ("new_resource_share", "new_export_destinations", "join_pair_rarity_personal", "off_hours_share")


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
        Per family, a higher bar than ``min_excess`` (default: each family's own
        ``min_excess``; a runaway agent must stand further out, agents being bursty).
    habit_days, habit_min_history, habit_increase, habit_score : int, timedelta, float, float
        The export-habit check (``detector.families.bulk_export``): days of the last week with
        restricted exports; how long before that week the principal must have been
        active for a change to mean something; how many times the earlier daily rate the
        week's must be; the score such an alert carries.
    dedup_window : timedelta
        Alerts about the same detector and entity within this update one incident.
    baseline : BaselinePolicy
    thresholds : PolicyThresholds
    rules : tuple of detector.rules.Rule
        The detection rules (files) to run after the families, as the shell loaded them
        (the built-in rules and the settings' ``rules:`` folders); empty runs none.
    observations : ObservationConfig
        How the peer observations judge the organisation (:mod:`detector.observations`).
    risk : RiskConfig
        When a principal's accumulated weak signals become an incident (:mod:`detector.risk`).
    """

    min_excess: float = 1.0
    outlier_score: float = 0.999
    outlier_factor: float = 1.5
    score_margin: float = 0.25
    exposure_min_readers: int = 5
    family_min_excess: dict[str, float] = field(default_factory=lambda: {
        family.id: family.min_excess for family in FAMILIES.values() if family.min_excess is not None})
    habit_days: int = 3
    habit_min_history: timedelta = timedelta(days=2)
    habit_increase: float = 2.5
    habit_score: float = 0.995
    dedup_window: timedelta = timedelta(hours=24)
    baseline: BaselinePolicy = field(default_factory=BaselinePolicy)
    thresholds: PolicyThresholds = field(default_factory=PolicyThresholds)
    rules: tuple = ()
    observations: ObservationConfig = field(default_factory=ObservationConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)


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
    """Per family the column indices of its signal features, for this entity and peer group.

    A family whose signals only name it (``alerts_on_signals`` false: grants are judged
    as grants, by policy and audience, not as a person's volume) gets none.
    """
    if entity != "principal":
        return {f.id: [names.index(n) for n in f.signals] for f in FAMILIES.values()
                if f.entity == entity and f.signals}
    families: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        family = family_of_feature(name, group)
        if family is not None and family.alerts_on_signals:
            families.setdefault(family.id, []).append(i)
    return families


def score_entity(client: Client, book: ModelBook, entity: str, start: datetime, end: datetime,
                  groups: np.ndarray, Z: np.ndarray, X: np.ndarray, keys: list[str],
                  config: DetectConfig, batch: Batch | None = None) -> list[_Candidate]:
    """Score one entity kind's rows by peer group, store them for later baselines, return the candidates.

    A row is a candidate of a **family** when one of its family's signal features stands
    at least :attr:`DetectConfig.min_excess` (log units) above the *normal ceiling* —
    per feature the larger of the peer group's 99.9th percentile and the entity's own
    maximum over the lookback; it is a **behaviour outlier** when the ensemble ranks it
    above :attr:`DetectConfig.outlier_score` of the baseline and its combined score is
    :attr:`DetectConfig.outlier_factor` times the baseline's largest. Rows within
    :attr:`DetectConfig.score_margin` of their normal ceiling in every feature are not scored.

    Given the ``batch`` the window belongs to (its :attr:`Batch.windows`), a scorer scores
    the rows of all the batch's steps it will judge in one call (:func:`_batch_scores`).
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
        combined, percentiles = _ensemble_scores(fitted, Z[rows], entity, group, start, batch, config)
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
                lead = family_of_feature(drivers[0].feature, group) if drivers else None
                if drivers and (lead is None or lead.alerts_on_signals):
                    candidates.append(_Candidate(keys[i], group, catch_all().id, float(percentile), drivers,
                                                 dict(zip(names, X[i].tolist()))))
    book.add_rows(entity, end, keys, groups.tolist(), Z)
    return candidates


def _beyond_margin(fitted: FittedBaseline, keys: list[str], Z: np.ndarray, margin: float) -> np.ndarray:
    """Which rows stand at least ``margin`` above their normal ceiling in some feature."""
    ceilings = np.array([fitted.normal_ceiling(key) for key in keys]).reshape(len(keys), -1)
    return (Z - ceilings).max(axis=1, initial=-np.inf) >= margin


def _ensemble_scores(fitted: FittedBaseline, Z: np.ndarray, entity: str, group: str, start: datetime,
                     batch: Batch | None, config: DetectConfig) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble's combined scores and percentiles of rows ``Z``: from the batch's one call when there is one."""
    scorer = fitted.scorer
    if batch is None or len(batch.windows) < 2:
        combined = scorer.decision_function(Z)
        return combined, scorer.percentile(combined)
    # Named by what the fit was (not id(): a refitted scorer's memory can be reused).
    fit = f"{fitted.trained_until.isoformat()} {fitted.rows} {fitted.step_ms}"
    scored = batch.once(f"scores {entity} {group} {fit}",
                        lambda: _batch_scores(fitted, entity, group, batch, batch.index(bound_ms(start)), config))
    found = [scored.get(row.tobytes()) for row in Z]
    if any(score is None for score in found):  # not among the rows scored ahead: score them now
        combined = scorer.decision_function(Z)
        return combined, scorer.percentile(combined)
    return np.array([f[0] for f in found]), np.array([f[1] for f in found])


def _batch_rows(batch: Batch, entity: str) -> list[tuple[list[str], np.ndarray, np.ndarray]]:
    """:func:`entity_rows` of every step of the batch, computed once for all of them."""
    return batch.once(f"rows {entity}", lambda: _all_entity_rows(batch.windows, entity))


def _all_entity_rows(windows: list[FeatureSet], entity: str) -> list[tuple[list[str], np.ndarray, np.ndarray]]:
    """:func:`entity_rows` of many windows at once: the same rows, from one pass over their frames."""
    sizes = [len(features.frame(entity)) for features in windows]  # type: ignore[arg-type]
    if not sum(sizes):
        return [entity_rows(features, entity) for features in windows]
    merged = FeatureSet(windows[0].start, windows[-1].end,
                        {entity: pd.concat([w.frame(entity) for w in windows], ignore_index=True)})  # type: ignore
    keys_frame, X, names = merged.matrix(entity)  # type: ignore[arg-type]
    keys = keys_frame[ENTITY_KEYS[entity][0]].tolist()  # type: ignore[index]
    step = np.repeat(np.arange(len(windows)), sizes)
    if entity == "principal":
        facts = pd.concat([w.principal_context.assign(_step=i) for i, w in enumerate(windows)], ignore_index=True)
        facts = facts.set_index(["_step", "principal"]).reindex(pd.MultiIndex.from_arrays([step, keys]))
        groups = facts["principal_type"].fillna("human").where(lambda s: s.isin(PRINCIPAL_GROUPS), "human").to_numpy()
        cold = facts["history_events"].fillna(0).to_numpy() < MIN_HOURS_HISTORY
        X = X.copy()
        for name in NOVELTY_FEATURES:
            X[cold, names.index(name)] = 0.0
    else:
        groups = np.full(len(keys), "all", dtype=object)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [(keys[a:b], groups[a:b], X[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def step_rows(features: FeatureSet, entity: str, batch: Batch | None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """:func:`entity_rows` of one step, from its batch's when the batch computed them."""
    if batch is None or len(batch.windows) < 2:
        return entity_rows(features, entity)
    return _batch_rows(batch, entity)[batch.index(bound_ms(features.start))]


def _batch_scores(fitted: FittedBaseline, entity: str, group: str, batch: Batch, first: int,
                  config: DetectConfig) -> dict[bytes, tuple[float, float]]:
    """Score ahead, in one call, every row of ``group`` the scorer will judge from step ``first`` of the batch on.

    A row's score depends on the row and the scorer alone, so one call over all of them
    gives each what its own step's call would. A refit later in the batch is a new scorer,
    which scores its own steps ahead the same way.
    """
    rows = []
    for keys, groups, X in _batch_rows(batch, entity)[first:]:
        members = np.flatnonzero(groups == group)
        if members.size == 0:
            continue
        Z = scoring_space(X[members])
        rows.append(Z[_beyond_margin(fitted, [keys[i] for i in members], Z, config.score_margin)])
    if not rows or not sum(len(r) for r in rows):
        return {}
    Z = np.unique(np.concatenate(rows), axis=0)
    combined = fitted.scorer.decision_function(Z)
    percentiles = fitted.scorer.percentile(combined)
    return {row.tobytes(): (raw, percentile) for row, raw, percentile in zip(Z, combined, percentiles)}


# ---------------------------------------------------------------------------- alerts


def entity_rows(features: FeatureSet, entity: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """An entity's rows as the scorers take them: keys, peer groups, features (not yet in scoring space).

    Principals are grouped by type (``human``, ``service``, ``agent``), with the novelty
    features of an identity without history zeroed; every other entity is one group, ``all``.
    """
    keys_frame, X, names = features.matrix(entity)  # type: ignore[arg-type]
    keys = keys_frame[ENTITY_KEYS[entity][0]].tolist()  # type: ignore[index]
    if entity != "principal":
        return keys, np.full(len(keys), "all", dtype=object), X
    if X.shape[0] == 0:
        return keys, np.array([], dtype=object), X
    facts = features.principal_context.set_index("principal").reindex(keys)
    groups = facts["principal_type"].fillna("human").where(lambda s: s.isin(PRINCIPAL_GROUPS), "human").to_numpy()
    history = facts["history_events"].fillna(0).to_numpy()
    X = X.copy()
    cold = history < MIN_HOURS_HISTORY
    for name in NOVELTY_FEATURES:
        X[cold, names.index(name)] = 0.0
    return keys, groups, X


def _principal_alerts(client: Client, book: ModelBook, features: FeatureSet, params: dict[str, int],
                      config: DetectConfig, batch: Batch | None = None) -> list[Alert]:
    keys, groups, X = step_rows(features, "principal", batch)
    if X.shape[0] == 0:
        return []
    candidates = score_entity(client, book, "principal", features.start, features.end, groups,
                               scoring_space(X), X, keys, config, batch)
    found = context(client, PRINCIPAL_CONTEXT, [c.key for c in candidates], params)
    alerts = []
    for candidate in candidates:
        ctx, v = found.get(candidate.key), candidate.values
        if ctx is None:
            continue
        family = FAMILIES[candidate.family]
        action = family.evidence_action  # whose data the severity weighs
        inputs = SeverityInputs(
            detector=family.id, score=candidate.score,
            sensitivity_rank=int(ctx[f"rank_{action}"]), sensitive_categories=int(ctx[f"cat_{action}"]),
            records_exposed=int(ctx["rows_out"]), actor_is_agent=candidate.group == "agent",
            harm_is_amount=action in ("export", "download") or family.catch_all,
            **(family.severity_extra(v) if family.severity_extra else {}),
        )
        points = severity_points(inputs)
        assert family.title is not None, f"family {family.id} alerts on signals but has no title"
        alerts.append(Alert(
            alert_id=alert_id(family.id, "principal", candidate.key, features.end), detector=family.id,
            entity="principal", entity_key=candidate.key,
            title=family.title(candidate.key, candidate.group, v, candidate.drivers[0]),
            severity=severity(inputs), score=round(candidate.score, 6), principals=(candidate.key,),
            resources=tuple(ctx["top_resources"]), first_seen=from_epoch_ms(ctx["first_ms"]),
            last_seen=from_epoch_ms(ctx["last_ms"]),
            detected_at=features.end, explanation=explanation(candidate.drivers, points)))
    return alerts


def organisation_size(client: Client) -> int:
    """People in the principals catalogue (the share-of-organisation policy limit needs it)."""
    people = "SELECT uniqExactIf(principal, principal_type = 'human') FROM principals"
    return int(client.query(people).result_rows[0][0])


def detect_step(client: Client, start: datetime, end: datetime, book: ModelBook | None = None,
                config: DetectConfig | None = None, people: int | None = None) -> StepResult:
    """Run detection over ``[start, end)`` and record what it finds (the step loop's step).

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
    result = detect_features(client, features, book, config, people, feature_seconds=time.perf_counter() - started)
    book.flush(client)
    return result


def detect_features(client: Client, features: FeatureSet, book: ModelBook, config: DetectConfig,
                    people: int | None = None, feature_seconds: float = 0.0, batch: Batch | None = None
                    ) -> StepResult:
    """Detection over one window's features, its alerts recorded: the part of a step after the features.

    The step loop (:func:`detect_step`) and the batch path (:func:`detector.replay.run_batches`,
    which computes a batch's features at once) both call it, step by step and in order,
    so both score, alert and record alike. The rows scored are queued in ``book`` (a
    refit stores them first; the caller flushes the rest).

    Parameters
    ----------
    client : Client
    features : FeatureSet
        The window's features, computed with the history at the window's start.
    book : ModelBook
    config : DetectConfig
    people : int, optional
        Organisation size (queried when omitted).
    feature_seconds : float
        Time already spent on the features, counted in the result.
    batch : Batch, optional
        The batch the window belongs to (default: the window alone).
    """
    started = time.perf_counter() - feature_seconds
    result = StepResult(features.start, features.end, feature_seconds=feature_seconds)
    result.events = int(features.frame("principal")["events"].sum()) if len(features.frame("principal")) else 0
    params = {"lo": bound_ms(features.start), "hi": bound_ms(features.end)}
    size = people if people is not None else organisation_size(client)
    batch = batch or Batch(params["lo"], params["hi"], params["hi"] - params["lo"])
    step = Step(client, book, features, params, config, size, batch, result.alerts)
    # The engine's stage (every family's signal past its ceiling, and the catch-all), then
    # each family's own stage.
    stages: list[tuple[str, Any]] = [("principals", lambda: _principal_alerts(client, book, features, params, config,
                                                                              batch))]
    hooks = [family for family in FAMILIES.values() if family.detect is not None]
    stages += [(family.id, (lambda hook: lambda: hook(step))(family.detect)) for family in hooks
               if not family.runs_last]
    stages.append(("rules", lambda: rule_alerts(client, features.start, features.end, config.rules,
                                                features=features, batch=batch)))
    # Then the families that judge the others' findings (entity risk), which read them in step.alerts.
    stages += [(family.id, (lambda hook: lambda: hook(step))(family.detect)) for family in hooks if family.runs_last]
    for stage, run in stages:
        try:
            found = run()
            # A stage that reports its own failures as alerts (a rule that raised) is counted too.
            result.errors += [f"{a.entity_key}: {a.title}" for a in found if a.detector == "pipeline_error"]
            result.alerts.extend(found)
        except ClickHouseError:
            raise
        except Exception as error:  # a bug in one stage must be seen, not stop the others
            result.errors.append(f"{stage}: {type(error).__name__}: {error}")
            result.alerts.append(error_alert(stage, error, features.end))
    for alert in sorted(result.alerts, key=lambda a: (a.first_seen, a.alert_id)):
        result.outcomes.append(record_alert(client, alert, config.dedup_window))
    result.seconds = time.perf_counter() - started
    return result
