"""The feature step: one window ``[start, end)`` in, one feature matrix per entity out.

What runs where (see :mod:`features.registry` for every definition):

- ClickHouse does what it does fastest — counts, sums and distincts over the window,
  joins against the catalogue and against the history tables — in a few statements.
- The principal pass also returns, per principal, its sorted event times and hours as
  Arrow list columns, streamed batch by batch; the numba kernels of
  :mod:`features._kernels` run over each batch's list offsets and values.
- The membership graph is loaded once per step as CSR arrays for the audience kernel.
- Peer ratios are computed with numpy over the finished principal matrix.

The history is advanced to ``start`` first (see :mod:`features.history`), so a step
sees only events before its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from features import _kernels
from features.history import advance_history, history_end
from features.registry import (
    BURST_WINDOW_MS,
    ENTITY_KEYS,
    MIN_HOURS_HISTORY,
    MIN_REGULARITY_EVENTS,
    READING_ACTIONS,
    SENSITIVE_CATEGORIES,
    SENSITIVE_SENSITIVITIES,
    USUAL_HOUR_SHARE,
    Entity,
    features_of,
)
from features.times import bound_ms, ms_param


def _tuple(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


# SQL fragments shared with the detector's context queries (one definition of each).
#: The reading actions as a SQL tuple.
READING_SQL = _tuple(READING_ACTIONS)
_SENSITIVE = _tuple(SENSITIVE_SENSITIVITIES)
#: The sensitive categories as a SQL array literal.
SENSITIVE_CATEGORIES_SQL = "[" + ", ".join(f"'{c}'" for c in SENSITIVE_CATEGORIES) + "]"
#: Sensitivity rank (0 public .. 3 restricted, 1 uncatalogued) of the catalogue row aliased ``c``.
RANK_SQL = "multiIf(c.sensitivity = 'public', 0, c.sensitivity = 'internal', 1, c.sensitivity = 'confidential', 2, " \
        "c.sensitivity = 'restricted', 3, 1)"
_HOUR_OF_WEEK = "toUInt8((toDayOfWeek(event_time) - 1) * 24 + toHour(event_time))"

#: ``[lo, hi)`` on ``event_time``; times travel as epoch milliseconds (no time-zone interpretation).
#: The hour bounds repeat the window on the access log's sorting key (``toStartOfHour(event_time)``),
#: so ClickHouse reads the window's hours only: it does not derive them from ``event_time`` bounds.
WINDOW_SQL = (f"event_time >= {ms_param('lo')} AND event_time < {ms_param('hi')}"
              f" AND toStartOfHour(event_time) >= toStartOfHour({ms_param('lo')})"
              f" AND toStartOfHour(event_time) <= toStartOfHour({ms_param('hi')})")

#: ``cat``: the newest catalogue row per resource, as a WITH clause.
CATALOGUE_CTE = """cat AS (
    SELECT resource, argMax(kind, updated_at) AS kind, argMax(sensitivity, updated_at) AS sensitivity,
           argMax(categories, updated_at) AS categories, argMax(sanitized, updated_at) AS sanitized, 1 AS known
    FROM resources GROUP BY resource)"""

#: The principal pass's aggregates over access-log rows ``a`` joined with the catalogue ``c``
#: (shared with the batch pass, which groups by step as well).
PRINCIPAL_AGGREGATES_SQL = f"""    any(a.principal_type) AS principal_type,
    count() AS events,
    uniqExact(a.resource) AS distinct_resources,
    countIf(a.action IN {READING_SQL} AND c.sensitivity IN {_SENSITIVE}) AS sensitive_reads,
    toInt64(least(sumIf(toUInt128(a.bytes), a.action IN ('read', 'query', 'join')), 9223372036854775807)) AS bytes_read,
    toInt64(least(sumIf(toUInt128(a.bytes), a.action = 'export'), 9223372036854775807)) AS bytes_exported,
    toInt64(least(sumIf(toUInt128(a.bytes), a.action = 'download'), 9223372036854775807)) AS bytes_downloaded,
    countIf(a.action = 'export') AS exports,
    toInt64(least(sumIf(toUInt128(a.bytes), a.action = 'export' AND c.kind = 'embedding'), 9223372036854775807))
        AS embedding_export_bytes,
    countIf(a.action = 'join') AS joins,
    countIf(a.action = 'grant') AS grants,
    countIf(a.action = 'download' AND c.kind = 'model') AS artifact_downloads,
    uniqExactIf(a.resource, c.kind = 'secret' AND a.action IN {READING_SQL}) AS distinct_secrets,
    countIf(a.status IN ('denied', 'error')) AS failed_actions,
    uniqExactIf(a.source_ip, a.source_ip != '') AS source_ips,
    countIf(a.via = 'ai_assistant') AS ai_assistant_actions,
    arraySort(groupArray(toUnixTimestamp64Milli(a.event_time))) AS times,
    groupArray({_HOUR_OF_WEEK.replace('event_time', 'a.event_time')}) AS hours"""

_PRINCIPAL_PASS = f"""WITH {CATALOGUE_CTE}
SELECT a.principal AS principal,
{PRINCIPAL_AGGREGATES_SQL}
FROM access_log AS a LEFT JOIN cat AS c ON a.resource = c.resource
WHERE {WINDOW_SQL.replace('event_time', 'a.event_time')}
GROUP BY principal ORDER BY principal"""

_JOIN_CATEGORIES = f"""WITH {CATALOGUE_CTE}
SELECT principal, max(n) FROM (
    SELECT j.principal AS principal,
           length(arrayDistinct(arrayFilter(x -> has({SENSITIVE_CATEGORIES_SQL}, x),
                                            arrayFlatten(groupArray(c.categories))))) AS n
    FROM (SELECT principal, k, arrayJoin(rs) AS r FROM (
            SELECT principal, rowNumberInAllBlocks() AS k,
                   arrayDistinct(arrayPushFront(arrayFilter(x -> x != '', related), resource)) AS rs
            FROM access_log WHERE {WINDOW_SQL} AND action = 'join')) AS j
    LEFT JOIN cat AS c ON j.r = c.resource
    GROUP BY j.principal, j.k)
GROUP BY principal"""

_WINDOW_JOIN_PAIRS = f"""SELECT DISTINCT principal, pair.1 AS a, pair.2 AS b FROM (
    SELECT principal, arrayDistinct(arrayPushFront(arrayFilter(x -> x != '', related), resource)) AS rs,
           arrayJoin(arrayFilter(p -> p.1 < p.2, arrayFlatten(arrayMap(x -> arrayMap(y -> (x, y), rs), rs)))) AS pair
    FROM access_log WHERE {WINDOW_SQL} AND action = 'join')"""

_HISTORY_JOIN_PAIRS = f"""SELECT a, b, principal, sum(joins) FROM history_join_pairs
WHERE (a, b) IN (SELECT a, b FROM ({_WINDOW_JOIN_PAIRS})) GROUP BY a, b, principal"""

# Every (principal, resource) pair of the window, whether it was a read, and whether the
# history has seen it: novelty per principal and first-time readers per resource both
# come from this one look-up (the history filter is on its sorting key: pruned, not scanned).
_WINDOW_PAIRS = f"""WITH {CATALOGUE_CTE}
SELECT w.principal AS principal, w.resource AS resource, w.read AS read, h.seen AS seen, {RANK_SQL} AS rank
FROM (SELECT principal, resource, max(action IN {READING_SQL}) AS read FROM access_log
      WHERE {WINDOW_SQL} GROUP BY principal, resource) AS w
LEFT JOIN (SELECT DISTINCT principal, resource, 1 AS seen FROM history_principal_resources
           WHERE (principal, resource) IN (SELECT principal, resource FROM access_log WHERE {WINDOW_SQL})) AS h
    ON w.principal = h.principal AND w.resource = h.resource
LEFT JOIN cat AS c ON w.resource = c.resource"""

_NEW_DESTINATIONS = f"""SELECT w.principal, uniqExactIf(w.destination, h.seen = 0)
FROM (SELECT DISTINCT principal, attributes['destination'] AS destination FROM access_log
      WHERE {WINDOW_SQL} AND action = 'export' AND destination != '') AS w
LEFT JOIN (SELECT DISTINCT principal, destination, 1 AS seen FROM history_export_destinations
           WHERE principal IN (SELECT principal FROM access_log WHERE {WINDOW_SQL} AND action = 'export')) AS h
    ON w.principal = h.principal AND w.destination = h.destination
GROUP BY w.principal"""

# Look-ups keyed by the window's principals filter with a subquery over the window: cheaper
# than passing thousands of names as an array parameter (which ClickHouse must parse).
_HOURS_HISTORY = f"""SELECT principal, sumForEach(hours) FROM history_principal_hours
WHERE principal IN (SELECT principal FROM access_log WHERE {WINDOW_SQL}) GROUP BY principal"""

_TEAMS = f"""SELECT principal, argMax(team, updated_at) FROM principals
WHERE principal IN (SELECT principal FROM access_log WHERE {WINDOW_SQL}) GROUP BY principal"""

# Effective memberships: the newest row per (group, member), withdrawn ones dropped.
_MEMBERSHIPS = """SELECT `group`, member FROM (
    SELECT `group`, member, argMax(removed, updated_at) AS removed FROM memberships GROUP BY `group`, member)
WHERE removed = 0"""

#: A grant's columns beside its key, over the access-log row ``a`` and catalogue row ``c`` (shared with the batch pass).
GRANT_COLUMNS_SQL = f"""{RANK_SQL} AS sensitivity_rank,
       length(arrayDistinct(arrayFilter(x -> has({SENSITIVE_CATEGORIES_SQL}, x), c.categories)))
           AS sensitive_categories,
       toInt64(a.grantee NOT IN (SELECT principal FROM principals)
               AND a.grantee NOT IN (SELECT `group` FROM ({_MEMBERSHIPS}))) AS grantee_external,
       toInt64(a.principal_type = 'agent') AS initiator_is_agent,
       toInt64(a.via = 'ai_assistant') AS via_ai_assistant"""

_GRANTS = f"""WITH {CATALOGUE_CTE}
SELECT a.event_id AS event_id, a.principal AS principal, a.resource AS resource, a.grantee AS grantee,
       a.event_time AS event_time, {GRANT_COLUMNS_SQL}
FROM access_log AS a LEFT JOIN cat AS c ON a.resource = c.resource
WHERE {WINDOW_SQL.replace('event_time', 'a.event_time')} AND a.action = 'grant'
ORDER BY event_id"""

# The grantees of some resources in force at ``state`` (epoch ms): the history's grant state
# before it, plus the log's grants and revokes between the history's end and it. The step
# loop asks at its window's start, where the history ends (the log part is empty); the fast
# path (detector.fastpath) asks at the start of a step the history has not reached yet.
_ACTIVE_GRANTEES = f"""SELECT resource, grantee FROM (
    SELECT resource, grantee, argMax(action, (event_time, event_id)) AS last FROM (
        SELECT resource, grantee, action, event_time, event_id FROM history_grant_state
        WHERE resource IN {{resources:Array(String)}} AND event_time < {ms_param('state')}
        UNION ALL
        SELECT resource, grantee, action, event_time, event_id FROM access_log
        WHERE event_time >= {ms_param('history_end')} AND event_time < {ms_param('state')}
            AND toStartOfHour(event_time) >= toStartOfHour({ms_param('history_end')})
            AND toStartOfHour(event_time) <= toStartOfHour({ms_param('state')})
            AND action IN ('grant', 'revoke') AND status = 'ok' AND resource IN {{resources:Array(String)}})
    GROUP BY resource, grantee)
WHERE last = 'grant'"""

#: A training run's aggregates over its inputs ``t`` and their catalogue rows ``c`` (shared with the batch pass).
TRAINING_RUN_AGGREGATES_SQL = f"""       uniqExactIf(t.input, t.input != '') AS inputs,
       uniqExactIf(t.input, t.input != '' AND c.known = 1 AND c.sanitized = 0) AS unsanitised_inputs,
       uniqExactIf(t.input, t.input != '' AND (c.sensitivity IN {_SENSITIVE}
                   OR hasAny(c.categories, {SENSITIVE_CATEGORIES_SQL}))) AS sensitive_inputs,
       uniqExactIf(t.input, t.input != '' AND c.known = 0) AS uncatalogued_inputs"""

_TRAINING_RUNS = f"""WITH {CATALOGUE_CTE}
SELECT t.resource AS resource,
{TRAINING_RUN_AGGREGATES_SQL}
FROM (SELECT resource, input FROM access_log LEFT ARRAY JOIN related AS input
      WHERE {WINDOW_SQL} AND action = 'train') AS t
LEFT JOIN cat AS c ON t.input = c.resource
GROUP BY t.resource ORDER BY resource"""


@dataclass(frozen=True)
class FeatureSet:
    """The feature matrices of one window.

    Attributes
    ----------
    start, end : datetime
        The window ``[start, end)``.
    frames : dict
        Per entity a DataFrame: the key columns (``ENTITY_KEYS``), then the features in
        registry order; rows sorted by key.
    principal_context : DataFrame
        Facts about each principal of the window that are not features but that scoring
        needs, in the principal frame's row order: ``principal_type`` (as the window's
        events carry it) and ``history_events`` (its events before the window, from the
        history tables; fewer than ``MIN_HOURS_HISTORY`` is a cold start).
    """

    start: datetime
    end: datetime
    frames: dict[str, pd.DataFrame]
    principal_context: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        {"principal": [], "principal_type": [], "history_events": []}))

    def frame(self, entity: Entity) -> pd.DataFrame:
        """The keys and features of one entity."""
        return self.frames[entity]

    def matrix(self, entity: Entity) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
        """Keys, a float64 feature matrix (rows = entities) and its column names, for scoring."""
        columns = [feature.name for feature in features_of(entity)]
        frame = self.frames[entity]
        return frame[list(ENTITY_KEYS[entity])], frame[columns].to_numpy(dtype=np.float64), columns


def _empty(entity: Entity) -> pd.DataFrame:
    columns = list(ENTITY_KEYS[entity]) + [feature.name for feature in features_of(entity)]
    return pd.DataFrame({column: pd.Series(dtype=_dtype(column)) for column in columns})


def _dtype(column: str) -> str:
    from features.registry import BY_NAME

    feature = BY_NAME.get(column)
    if feature is None:
        return "datetime64[ms, UTC]" if column == "event_time" else "object"
    return "float64" if feature.unit in ("share", "ratio") else "int64"


def _typed(frame: pd.DataFrame, entity: Entity) -> pd.DataFrame:
    """Registry column order and dtypes (integers int64, shares and ratios float64)."""
    columns = list(ENTITY_KEYS[entity]) + [feature.name for feature in features_of(entity)]
    out = frame[columns].copy()
    for column in columns:
        if column == "event_time":
            out[column] = pd.to_datetime(out[column], utc=True).astype("datetime64[ms, UTC]")
        elif column in ENTITY_KEYS[entity]:
            out[column] = out[column].astype(object)
        else:
            out[column] = out[column].astype(_dtype(column))
    return out.reset_index(drop=True)


def _lookup(rows: list[tuple], keys: pd.Series, default: float = 0) -> np.ndarray:
    """Values of ``(key, value)`` rows, aligned with ``keys`` (``default`` where absent)."""
    values = dict(rows)
    return np.array([values.get(key, default) for key in keys])


def principal_stream_part(batch: pa.RecordBatch, sql_columns: list[str]) -> pd.DataFrame:
    """One streamed batch of a principal pass as a frame: names, SQL aggregates and the sequence kernels' features."""
    part = pd.DataFrame({"principal": batch.column("principal").to_pylist(),
                         "principal_type": batch.column("principal_type").to_pylist()})
    for column in sql_columns:
        part[column] = batch.column(column).to_numpy().astype(np.int64)
    times: pa.ListArray = batch.column("times")
    offsets = times.offsets.to_numpy().astype(np.int64)
    values = times.values.to_numpy().astype(np.int64)
    part["max_events_per_minute"] = _kernels.max_events_in_span(offsets, values, BURST_WINDOW_MS)
    part["timing_regularity"] = _kernels.timing_regularity(offsets, values, MIN_REGULARITY_EVENTS)
    return part


def _principal_pass(client: Client, params: dict[str, int]) -> pd.DataFrame:
    """SQL aggregates plus the sequence kernels, streamed in Arrow batches.

    Each batch is reduced to fixed-size results (kernel outputs and a 168-bin hour
    histogram per principal) before the next is read, so memory follows the batch, not
    the window. No other query may run on the client while the stream is open.
    """
    sql_columns = [f.name for f in features_of("principal") if f.implementation == "sql"
                   and f.name != "join_sensitive_categories"]
    parts: list[pd.DataFrame] = []
    hour_counts: list[np.ndarray] = []
    with client.query_arrow_stream(_PRINCIPAL_PASS, parameters=params) as stream:
        for batch in stream:
            part = principal_stream_part(batch, sql_columns)
            hours: pa.ListArray = batch.column("hours")
            hour_counts.append(_kernels.segment_histograms(
                hours.offsets.to_numpy().astype(np.int64), hours.values.to_numpy().astype(np.uint8), 168))
            parts.append(part)
    if not parts:
        return pd.DataFrame({"principal": []})
    principals = pd.concat(parts, ignore_index=True)
    past = client.query_arrow(_HOURS_HISTORY, parameters=params)
    history = np.zeros((len(principals), 168), dtype=np.int64)
    if past.num_rows:
        rows = pd.Index(principals["principal"]).get_indexer(past.column(0).to_pandas())
        history[rows] = past.column(1).combine_chunks().flatten().to_numpy().astype(np.int64).reshape(-1, 168)
    principals["off_hours_share"] = _kernels.off_hours_share(
        np.concatenate(hour_counts), history, MIN_HOURS_HISTORY, USUAL_HOUR_SHARE)
    principals["history_events"] = history.sum(axis=1)
    return principals


@dataclass(frozen=True)
class _Graph:
    """The membership graph as CSR arrays, with a node id per name."""

    ids: dict[str, int]
    indptr: np.ndarray
    indices: np.ndarray
    is_group: np.ndarray

    @classmethod
    def load(cls, client: Client, extra_names: list[str]) -> _Graph:
        edges = client.query(_MEMBERSHIPS).result_rows
        ids: dict[str, int] = {}
        for name in [n for edge in edges for n in edge] + extra_names:
            ids.setdefault(name, len(ids))
        sources = np.array([ids[g] for g, _ in edges], dtype=np.int64)
        targets = np.array([ids[m] for _, m in edges], dtype=np.int64)
        order = np.argsort(sources, kind="stable")
        indptr = np.zeros(len(ids) + 1, dtype=np.int64)
        np.add.at(indptr, sources + 1, 1)
        is_group = np.zeros(len(ids), dtype=np.bool_)
        is_group[sources] = True
        return cls(ids, np.cumsum(indptr), targets[order], is_group)

    def audiences(self, grantees: list[str], active: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Audience before (the active grantees) and after (plus each grantee) per grant."""
        base_offsets = np.zeros(len(grantees) + 1, dtype=np.int64)
        base_offsets[1:] = np.cumsum([len(a) for a in active])
        base = np.array([self.ids[name] for names in active for name in names], dtype=np.int64)
        targets = np.array([self.ids[name] for name in grantees], dtype=np.int64)
        return _kernels.grant_audiences(self.indptr, self.indices, self.is_group, base_offsets, base, targets)


def grant_features(client: Client, params: dict[str, int], state_ms: int | None = None
                   ) -> tuple[pd.DataFrame, pd.Series]:
    """The grant matrix of the window ``params`` (``lo``/``hi``, epoch ms), and each granting
    principal's largest single-grantee audience.

    Each grant's audience before is the resource's grantees in force at ``state_ms``
    (default: the window's start, where the step loop's history ends); the fast path passes
    the start of the step a grant belongs to, so both judge a grant alike.
    """
    result = client.query(_GRANTS, parameters=params)
    grants = pd.DataFrame(result.result_rows, columns=result.column_names)
    if grants.empty:
        return _empty("grant"), pd.Series(dtype=np.int64)
    state = params["lo"] if state_ms is None else state_ms
    end = history_end(client)
    active: dict[str, list[str]] = {}
    for resource, grantee in client.query(_ACTIVE_GRANTEES, parameters={
            "resources": sorted(set(grants["resource"])), "state": state,
            "history_end": bound_ms(end.replace(tzinfo=UTC)) if end is not None else 0}).result_rows:
        active.setdefault(resource, []).append(grantee)
    per_grant = [sorted(active.get(resource, [])) for resource in grants["resource"]]
    names = list(grants["grantee"]) + [name for names in per_grant for name in names]
    graph = _Graph.load(client, names)
    grants["audience_before"], grants["audience_after"] = graph.audiences(list(grants["grantee"]), per_grant)
    grants["audience_gain"] = grants["audience_after"] - grants["audience_before"]
    _, alone = graph.audiences(list(grants["grantee"]), [[] for _ in per_grant])
    largest = pd.Series(alone, index=grants["principal"]).groupby(level=0).max()
    return _typed(grants, "grant"), largest


def training_run_features(client: Client, params: dict[str, int]) -> pd.DataFrame:
    """The training-run matrix of the window ``params`` (``lo``/``hi``, epoch ms)."""
    runs = _query_frame(client, _TRAINING_RUNS, params)
    return _typed(runs, "training_run") if not runs.empty else _empty("training_run")


def _join_pair_rarity(client: Client, params: dict[str, int]) -> pd.DataFrame:
    """Per joining principal, ``1 / (1 + c)`` for the rarest pair it joined, everyone's and its own."""
    pairs = pd.DataFrame(client.query(_WINDOW_JOIN_PAIRS, parameters=params).result_rows,
                         columns=["principal", "a", "b"])
    if pairs.empty:
        return pd.DataFrame(columns=["global", "personal"], dtype=np.float64)
    seen = pd.DataFrame(client.query(_HISTORY_JOIN_PAIRS, parameters=params).result_rows,
                        columns=["a", "b", "principal", "joins"])
    everyone = seen.groupby(["a", "b"], as_index=False)["joins"].sum().rename(columns={"joins": "everyone"})
    merged = pairs.merge(everyone, on=["a", "b"], how="left").merge(seen, on=["a", "b", "principal"], how="left")
    counts = merged[["everyone", "joins"]].fillna(0).astype(np.int64)
    per_principal = counts.groupby(merged["principal"]).min()
    return pd.DataFrame({"global": 1.0 / (1 + per_principal["everyone"]),
                         "personal": 1.0 / (1 + per_principal["joins"])})


def _peer_ratio(values: np.ndarray, groups: np.ndarray, smoothing: float) -> np.ndarray:
    """``(value + smoothing) / (median of the group + smoothing)`` for each row."""
    medians = pd.Series(values, dtype=np.float64).groupby(groups).transform("median").to_numpy()
    return (values + smoothing) / (medians + smoothing)


def extract(client: Client, start: datetime, end: datetime) -> FeatureSet:
    """Compute every registered feature for the window ``[start, end)``.

    Parameters
    ----------
    client : Client
        The store (initialised).
    start, end : datetime
        Timezone-aware window bounds.

    Returns
    -------
    FeatureSet
        One matrix per entity. The history is first advanced to ``start``.

    Raises
    ------
    features.history.HistoryAheadError
        The history already covers events after ``start`` (reset it to replay).
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError(f"window bounds must be timezone-aware, got {start!r} and {end!r}")
    if end <= start:
        raise ValueError(f"empty window: end {end} is not after start {start}")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    advance_history(client, start)
    params = {"lo": bound_ms(start), "hi": bound_ms(end)}

    principals = _principal_pass(client, params)
    pairs = _query_frame(client, _WINDOW_PAIRS, params)
    grants, largest_audience = grant_features(client, params)
    context = (principals[["principal", "principal_type", "history_events"]].sort_values("principal", kind="stable")
               .reset_index(drop=True) if not principals.empty else None)
    frames = {
        "principal": _principal_features(client, params, principals, pairs, largest_audience),
        "grant": grants,
        "resource": _resource_features(pairs),
        "training_run": training_run_features(client, params),
    }
    return FeatureSet(start, end, frames) if context is None else FeatureSet(start, end, frames, context)


def _principal_features(client: Client, params: dict[str, int], principals: pd.DataFrame, pairs: pd.DataFrame,
                        largest_audience: pd.Series) -> pd.DataFrame:
    """Complete the principal pass with the history look-ups, grant audiences and peer ratios."""
    if principals.empty:
        return _empty("principal")
    keys = principals["principal"]
    principals["join_sensitive_categories"] = _lookup(client.query(_JOIN_CATEGORIES, parameters=params).result_rows,
                                                      keys)
    new = pairs.loc[pairs["seen"] == 0].groupby("principal").size().reindex(keys).fillna(0).to_numpy()
    principals["new_resource_share"] = new / principals["distinct_resources"].to_numpy()
    principals["new_export_destinations"] = _lookup(client.query(_NEW_DESTINATIONS, parameters=params).result_rows,
                                                    keys)
    rarity = _join_pair_rarity(client, params)
    principals["join_pair_rarity_global"] = rarity["global"].reindex(keys).fillna(0.0).to_numpy()
    principals["join_pair_rarity_personal"] = rarity["personal"].reindex(keys).fillna(0.0).to_numpy()
    principals["largest_grant_audience"] = largest_audience.reindex(keys).fillna(0).to_numpy()
    teams = _lookup(client.query(_TEAMS, parameters=params).result_rows, keys, default="")
    principals["events_vs_team"] = _peer_ratio(principals["events"].to_numpy(np.float64), teams, 0.0)
    principals["bytes_exported_vs_team"] = _peer_ratio(principals["bytes_exported"].to_numpy(np.float64), teams, 1.0)
    return _typed(principals.sort_values("principal", kind="stable"), "principal")


def _query_frame(client: Client, sql: str, params: dict[str, int]) -> pd.DataFrame:
    """A query result as a DataFrame, through Arrow (columns, not Python row tuples)."""
    return client.query_arrow(sql, parameters=params).to_pandas()


def _resource_features(pairs: pd.DataFrame) -> pd.DataFrame:
    """Readers and first-time readers per resource read in the window, from the window's pairs."""
    reads = pairs.loc[pairs["read"] == 1].assign(first_time=lambda frame: (frame["seen"] == 0).astype(np.int64))
    if reads.empty:
        return _empty("resource")
    grouped = reads.groupby("resource", sort=True)
    frame = pd.DataFrame({
        "readers": grouped.size(),
        "first_time_readers": grouped["first_time"].sum(),
        "resource_sensitivity_rank": grouped["rank"].first(),
    }).reset_index()
    return _typed(frame, "resource")
