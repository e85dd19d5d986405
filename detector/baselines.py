"""Trailing baselines: every step's feature rows kept, peer-group scorers refitted on a schedule.

Each detect step stores the rows it scored (in scoring space, see
:func:`detector.detect.scoring_space`) in ``feature_rows``, tagged with the entity kind
and the row's **peer group** — ``human``, ``service`` or ``agent`` for principals (a
service account's normal is not a person's), ``all`` for resources. A scorer
(:class:`detector.ensemble.EnsembleScorer`) is fitted per (entity, peer group) on a
sample of the trailing rows and persisted, pickled, in ``detector_models``, so a
restart loads it instead of refitting.

When a scorer is (re)fitted — :meth:`BaselinePolicy.due`:

- none yet, and the group has ``min_rows`` trailing rows (cold start: until then the
  group is not scored; policy checks still run);
- the rows grew by ``growth``× since the last fit while that fit had fewer than
  ``max_rows`` (a young baseline matures quickly);
- the fit is older than ``refit_every`` of event time (routine refresh);
- the step length changed (features of a 5-minute window are not those of an hour).

A step's own rows are stored after it is scored and a fit only uses rows of steps that
ended at or before the step being scored, so a replay never looks ahead.
"""

from __future__ import annotations

import base64
import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from clickhouse_connect.driver.client import Client

from detector.ensemble import EnsembleScorer
from features.times import bound_ms, ms_param

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE IF NOT EXISTS feature_rows (
    entity LowCardinality(String), peer_group LowCardinality(String), step_end DateTime64(3, 'UTC'),
    key String, values Array(Float64)
) ENGINE = MergeTree ORDER BY (entity, peer_group, step_end, key)""",
        """CREATE TABLE IF NOT EXISTS detector_models (
    entity LowCardinality(String), peer_group LowCardinality(String), step_ms Int64,
    trained_until DateTime64(3, 'UTC'), rows UInt32, features Array(String), model String,
    fitted_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree ORDER BY (entity, peer_group, trained_until)""",
    ]),
]



@dataclass(frozen=True)
class BaselinePolicy:
    """How baselines are built and refreshed.

    Attributes
    ----------
    lookback : timedelta
        The trailing period a fit samples from (default 7 days).
    refit_every : timedelta
        Refit a group's scorer once its fit is this old, in event time (default 1 day).
    min_rows : int
        Fewest trailing rows before a group gets its first scorer (default 300).
    max_rows : int
        Rows sampled for a fit, at most (default 4,000: KNN's cost grows with it).
    growth : float
        Refit early when the trailing rows grew by this factor since a fit of fewer
        than ``max_rows`` rows (default 2).
    random_state : int
        Seed of the sample and of IForest, so a replay fits the same scorers.
    """

    lookback: timedelta = timedelta(days=7)
    refit_every: timedelta = timedelta(days=1)
    min_rows: int = 300
    max_rows: int = 4_000
    growth: float = 2.0
    random_state: int = 0

    def due(self, fitted: FittedBaseline | None, rows_now: int, step_end: datetime, step_ms: int) -> bool:
        """Whether a group with ``rows_now`` trailing rows needs a (re)fit before scoring at ``step_end``."""
        if rows_now < self.min_rows:
            return False
        if fitted is None or fitted.step_ms != step_ms:
            return True
        if fitted.rows < self.max_rows and rows_now >= self.growth * fitted.rows:
            return True
        return step_end - fitted.trained_until >= self.refit_every


#: The baseline quantile each feature's tail is measured from (see :attr:`FittedBaseline.tail`).
TAIL_QUANTILE = 0.999


@dataclass
class FittedBaseline:
    """One peer group's fitted scorer and what it was fitted on.

    Attributes
    ----------
    scorer : EnsembleScorer
        The ensemble over every feature (scoring space).
    tail : ndarray
        Per feature, the group's :data:`TAIL_QUANTILE` quantile over every trailing row:
        what the group's most extreme ordinary windows reach.
    personal : dict of str to ndarray
        Per entity key, its own per-feature maximum over the lookback (what is normal
        for this entity: a nightly backup's volume is not news for the backup account).
    """

    entity: str
    peer_group: str
    scorer: EnsembleScorer
    trained_until: datetime
    rows: int
    step_ms: int
    features: tuple[str, ...]
    tail: np.ndarray = field(default_factory=lambda: np.zeros(0))
    personal: dict[str, np.ndarray] = field(default_factory=dict)

    def normal_ceiling(self, key: str) -> np.ndarray:
        """Per feature the larger of the group's tail and the entity's own maximum."""
        own = self.personal.get(key)
        return self.tail if own is None else np.maximum(self.tail, own)


@dataclass
class ModelBook:
    """The scorers in use, by (entity, peer group), and the trailing row counts that drive refits.

    Load once per process with :meth:`load`; :meth:`refresh` before scoring a step and
    :meth:`add_rows` after it keep it current without a count query per step. Rows are
    stored by :meth:`flush`: once per step in the step loop, once per batch in the batch
    path, and always before a fit (which reads them).
    """

    policy: BaselinePolicy = field(default_factory=BaselinePolicy)
    fitted: dict[tuple[str, str], FittedBaseline] = field(default_factory=dict)
    # Rows stored per (entity, group) per step end, for the trailing count.
    _counts: dict[tuple[str, str], dict[datetime, int]] = field(default_factory=dict)
    fits: int = 0
    _pending: list[tuple[list, ...]] = field(default_factory=list)

    def discard_pending(self) -> None:
        """Drop queued rows of a step that failed (it will be run again)."""
        self._pending.clear()

    def flush(self, client: Client) -> None:
        """Store the queued rows in one insert (one per step rather than one per entity kind)."""
        if not self._pending:
            return
        columns = [sum((part[i] for part in self._pending), []) for i in range(5)]
        client.insert("feature_rows", columns, column_names=["entity", "peer_group", "step_end", "key", "values"],
                      column_oriented=True)
        self._pending.clear()

    @classmethod
    def load(cls, client: Client, policy: BaselinePolicy | None = None) -> ModelBook:
        """The newest persisted scorer of every group, and the trailing row counts."""
        book = cls(policy or BaselinePolicy())
        result = client.query(
            "SELECT entity, peer_group, argMax(step_ms, trained_until), max(trained_until),"
            " argMax(rows, trained_until), argMax(features, trained_until), argMax(model, trained_until)"
            " FROM detector_models GROUP BY entity, peer_group")
        for entity, group, step_ms, until, rows, names, blob in result.result_rows:
            scorer, tail, personal = pickle.loads(base64.b64decode(blob))
            book.fitted[(entity, group)] = FittedBaseline(
                entity, group, scorer, until.replace(tzinfo=UTC), int(rows), int(step_ms), tuple(names), tail,
                personal)
        last = client.query("SELECT max(step_end), count() FROM feature_rows").result_rows[0]
        if last[1]:
            newest = last[0].replace(tzinfo=UTC)
            counts = client.query(
                "SELECT entity, peer_group, toUnixTimestamp64Milli(step_end), count() FROM feature_rows"
                " WHERE step_end > " + ms_param("lo") + " GROUP BY entity, peer_group, step_end",
                parameters={"lo": bound_ms(newest - book.policy.lookback)}).result_rows
            for entity, group, end_ms, n in counts:
                when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(end_ms))
                book._counts.setdefault((entity, group), {})[when] = int(n)
        return book

    def trailing_rows(self, entity: str, group: str, step_end: datetime) -> int:
        """Rows of ``group`` stored for steps ending in ``(step_end - lookback, step_end]``."""
        counts = self._counts.get((entity, group), {})
        cutoff = step_end - self.policy.lookback
        for when in [w for w in counts if w <= cutoff]:  # forget what left the lookback
            del counts[when]
        return sum(n for w, n in counts.items() if w <= step_end)

    def groups(self, entity: str) -> list[str]:
        """Peer groups of an entity with stored rows or a scorer."""
        return sorted({g for e, g in self._counts if e == entity} | {g for e, g in self.fitted if e == entity})

    def refresh(self, client: Client, entity: str, step_start: datetime, step_ms: int,
                features: tuple[str, ...]) -> list[str]:
        """Refit every group of ``entity`` that is due, on rows of steps ending by ``step_start``.

        Returns
        -------
        list of str
            The groups refitted.
        """
        refitted = []
        for group in self.groups(entity):
            fitted = self.fitted.get((entity, group))
            if fitted is not None and fitted.features != features:
                fitted = None  # the registry changed: an old scorer has other columns
            if self.policy.due(fitted, self.trailing_rows(entity, group, step_start), step_start, step_ms):
                self.flush(client)  # a fit must see every row counted
                if self._fit(client, entity, group, step_start, step_ms, features):
                    refitted.append(group)
        return refitted

    def _fit(self, client: Client, entity: str, group: str, until: datetime, step_ms: int,
             features: tuple[str, ...]) -> bool:
        params = {"entity": entity, "group": group, "lo": bound_ms(until - self.policy.lookback),
                  "hi": bound_ms(until), "limit": self.policy.max_rows, "seed": self.policy.random_state}
        rows = client.query(
            "SELECT values FROM feature_rows WHERE entity = {entity:String} AND peer_group = {group:String}"
            " AND step_end > " + ms_param("lo") + " AND step_end <= " + ms_param("hi")
            + " ORDER BY cityHash64(key, step_end, {seed:UInt64}) LIMIT {limit:UInt32}",
            parameters=params).result_rows
        if len(rows) < self.policy.min_rows:
            return False
        X = np.array([r[0] for r in rows], dtype=np.float64)
        if X.shape[1] != len(features):
            return False  # rows of an older registry: wait for enough new ones
        scorer = EnsembleScorer(random_state=self.policy.random_state).fit(X)
        personal = {key: np.asarray(values, dtype=np.float64) for key, values in client.query(
            "SELECT key, maxForEach(values) FROM feature_rows WHERE entity = {entity:String}"
            " AND peer_group = {group:String} AND step_end > " + ms_param("lo") + " AND step_end <= " + ms_param("hi")
            + " GROUP BY key", parameters=params).result_rows}
        # The tail from every trailing row, not the sample: rare events (an embedding
        # export) need all the rows there are for a stable 99.9th percentile.
        tail = np.asarray(client.query(
            f"SELECT quantileExactForEach({TAIL_QUANTILE})(values) FROM feature_rows WHERE entity = {{entity:String}}"
            " AND peer_group = {group:String} AND step_end > " + ms_param("lo") + " AND step_end <= " + ms_param("hi"),
            parameters=params).result_rows[0][0], dtype=np.float64)
        fitted = FittedBaseline(entity, group, scorer, until, X.shape[0], step_ms, features, tail, personal)
        blob = pickle.dumps((scorer, tail, personal), protocol=pickle.HIGHEST_PROTOCOL)
        client.insert("detector_models",
                      [[entity, group, step_ms, until, X.shape[0], list(features),
                        base64.b64encode(blob).decode("ascii")]],
                      column_names=["entity", "peer_group", "step_ms", "trained_until", "rows", "features", "model"])
        self.fitted[(entity, group)] = fitted
        self.fits += 1
        return True

    def add_rows(self, entity: str, step_end: datetime, keys: list[str], groups: list[str],
                 values: np.ndarray) -> None:
        """Queue one step's rows (scoring space) for later fits, and count them; :meth:`flush` stores them."""
        if not keys:
            return
        self._pending.append(([entity] * len(keys), list(groups), [step_end] * len(keys), list(keys), values.tolist()))
        for group in set(groups):
            per_step = self._counts.setdefault((entity, group), {})
            per_step[step_end] = per_step.get(step_end, 0) + groups.count(group)


def drop_rows_before(client: Client, cutoff: datetime) -> None:
    """Retention: drop stored rows of steps that ended before ``cutoff`` (no fit can use them)."""
    client.command("DELETE FROM feature_rows WHERE step_end < " + ms_param("t"), parameters={"t": bound_ms(cutoff)})


def reset_baselines(client: Client) -> None:
    """Forget every stored row and scorer (a replay from the beginning rebuilds them)."""
    for table in ("feature_rows", "detector_models"):
        client.command(f"TRUNCATE TABLE IF EXISTS {table}")


def forget_after(client: Client, moment: datetime) -> bool:
    """Remove the rows and scorers a crashed batch stored past ``moment`` (the watermark).

    A batch fits scorers at its later steps' starts too, so unlike a step it can leave
    scorers trained after the watermark; a redo must not load them (they saw its rows).

    Returns
    -------
    bool
        Whether anything was there to remove.
    """
    params = {"t": bound_ms(moment)}
    after = ms_param("t")
    rows, models = client.query(
        f"SELECT (SELECT count() FROM feature_rows WHERE step_end > {after}),"
        f" (SELECT count() FROM detector_models WHERE trained_until > {after})", parameters=params).result_rows[0]
    if rows:
        client.command(f"DELETE FROM feature_rows WHERE step_end > {after}", parameters=params)
    if models:
        client.command(f"DELETE FROM detector_models WHERE trained_until > {after}", parameters=params)
    return bool(rows or models)
