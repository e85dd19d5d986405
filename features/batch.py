"""The feature pass for many consecutive steps at once: replay and backfill at ClickHouse speed.

:func:`extract_batch` gives, for every step ``[start + i * step, start + (i + 1) * step)``
of a batch, exactly the :class:`features.engine.FeatureSet` that
:func:`features.engine.extract` gives for that step after the history was advanced to
the step's start — but from one set of queries that group by step as well as by entity,
not one set per step. The step loop (:func:`features.engine.extract`) is the oracle:
``tests/test_batch.py`` checks the two agree, frame by frame.

How the history a step needs is had without advancing it step by step:

- **Novelty** (a resource or an export destination new to the principal, first-time
  readers of a resource): the key's first step in the batch (``min(s) OVER (PARTITION BY
  key)``); it was seen before step ``s`` when the history before the batch has it, or its
  first step in the batch is earlier than ``s``.
- **Usual hours**: the history before the batch, then each principal's windows in step
  order, the kernel :func:`features._kernels.running_off_hours_share` adding each
  window's hours after judging it.
- **Join-pair rarity**: per pair the joins before the batch plus a running sum over the
  batch's earlier steps, everyone's and the principal's own.
- **Grant audiences**: the grant state before the batch plus the batch's own grants and
  revokes before the grant's step.

The membership graph, teams and catalogue are read once per batch: like the step loop,
which reads their newest state, they are not versioned by event time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from features import _kernels
from features.engine import (
    CATALOGUE_CTE,
    GRANT_COLUMNS_SQL,
    PRINCIPAL_AGGREGATES_SQL,
    RANK_SQL,
    READING_SQL,
    SENSITIVE_CATEGORIES_SQL,
    TRAINING_RUN_AGGREGATES_SQL,
    WINDOW_SQL,
    FeatureSet,
    _empty,
    _Graph,
    _peer_ratio,
    _typed,
    principal_stream_part,
)
from features.history import advance_history
from features.registry import (
    ENTITY_KEYS,
    MIN_HOURS_HISTORY,
    USUAL_HOUR_SHARE,
    Entity,
    features_of,
)
from features.times import bound_ms

#: The step index of an event (``a.event_time``) within the batch starting at ``lo``.
STEP_SQL = "toUInt32(intDiv(toUnixTimestamp64Milli(a.event_time) - {lo:Int64}, {step_ms:Int64}))"
_BATCH_WINDOW = WINDOW_SQL.replace("event_time", "a.event_time")

_PRINCIPAL_PASS = f"""WITH {CATALOGUE_CTE}
SELECT {STEP_SQL} AS s, a.principal AS principal,
{PRINCIPAL_AGGREGATES_SQL}
FROM access_log AS a LEFT JOIN cat AS c ON a.resource = c.resource
WHERE {_BATCH_WINDOW}
GROUP BY s, principal ORDER BY s, principal"""

_HOURS_HISTORY = f"""SELECT principal, sumForEach(hours) FROM history_principal_hours
WHERE principal IN (SELECT principal FROM access_log WHERE {WINDOW_SQL}) GROUP BY principal"""

_TEAMS = f"""SELECT principal, argMax(team, updated_at) FROM principals
WHERE principal IN (SELECT principal FROM access_log WHERE {WINDOW_SQL}) GROUP BY principal"""

_JOIN_CATEGORIES = f"""WITH {CATALOGUE_CTE}
SELECT s, principal, max(n) AS n FROM (
    SELECT j.s AS s, j.principal AS principal,
           length(arrayDistinct(arrayFilter(x -> has({SENSITIVE_CATEGORIES_SQL}, x),
                                            arrayFlatten(groupArray(c.categories))))) AS n
    FROM (SELECT s, principal, k, arrayJoin(rs) AS r FROM (
            SELECT {STEP_SQL} AS s, a.principal AS principal, rowNumberInAllBlocks() AS k,
                   arrayDistinct(arrayPushFront(arrayFilter(x -> x != '', a.related), a.resource)) AS rs
            FROM access_log AS a WHERE {_BATCH_WINDOW} AND a.action = 'join')) AS j
    LEFT JOIN cat AS c ON j.r = c.resource
    GROUP BY j.s, j.principal, j.k)
GROUP BY s, principal"""

# Joins per (step, principal, pair): the batch's own share of the pair counts.
_WINDOW_JOIN_PAIRS = f"""SELECT s, principal, pair.1 AS a, pair.2 AS b, count() AS joins FROM (
    SELECT {STEP_SQL} AS s, a.principal AS principal,
           arrayDistinct(arrayPushFront(arrayFilter(x -> x != '', a.related), a.resource)) AS rs,
           arrayJoin(arrayFilter(p -> p.1 < p.2, arrayFlatten(arrayMap(x -> arrayMap(y -> (x, y), rs), rs)))) AS pair
    FROM access_log AS a WHERE {_BATCH_WINDOW} AND a.action = 'join')
GROUP BY s, principal, a, b"""

_HISTORY_JOIN_PAIRS = f"""SELECT a, b, principal, sum(joins) AS joins FROM history_join_pairs
WHERE (a, b) IN (SELECT a, b FROM ({_WINDOW_JOIN_PAIRS})) GROUP BY a, b, principal"""

# Every (step, principal, resource): read or not, and seen before the step — in the history
# before the batch, or in an earlier step of the batch.
_WINDOW_PAIRS = f"""WITH {CATALOGUE_CTE}
SELECT w.s AS s, w.principal AS principal, w.resource AS resource, w.read AS read,
       toUInt8(h.seen = 1 OR w.first_s < w.s) AS seen, {RANK_SQL} AS rank
FROM (SELECT s, principal, resource, read, min(s) OVER (PARTITION BY principal, resource) AS first_s FROM (
          SELECT {STEP_SQL} AS s, a.principal AS principal, a.resource AS resource,
                 max(a.action IN {READING_SQL}) AS read
          FROM access_log AS a WHERE {_BATCH_WINDOW} GROUP BY s, principal, resource)) AS w
LEFT JOIN (SELECT DISTINCT principal, resource, 1 AS seen FROM history_principal_resources
           WHERE (principal, resource) IN (SELECT principal, resource FROM access_log WHERE {WINDOW_SQL})) AS h
    ON w.principal = h.principal AND w.resource = h.resource
LEFT JOIN cat AS c ON w.resource = c.resource"""

_NEW_DESTINATIONS = f"""SELECT w.s AS s, w.principal AS principal,
       uniqExactIf(w.destination, h.seen = 0 AND w.first_s = w.s) AS n
FROM (SELECT s, principal, destination, min(s) OVER (PARTITION BY principal, destination) AS first_s FROM (
          SELECT DISTINCT {STEP_SQL} AS s, a.principal AS principal, a.attributes['destination'] AS destination
          FROM access_log AS a WHERE {_BATCH_WINDOW} AND a.action = 'export' AND destination != '')) AS w
LEFT JOIN (SELECT DISTINCT principal, destination, 1 AS seen FROM history_export_destinations
           WHERE principal IN (SELECT principal FROM access_log WHERE {WINDOW_SQL} AND action = 'export')) AS h
    ON w.principal = h.principal AND w.destination = h.destination
GROUP BY s, principal"""

_GRANTS = f"""WITH {CATALOGUE_CTE}
SELECT {STEP_SQL} AS s, a.event_id AS event_id, a.principal AS principal, a.resource AS resource,
       a.grantee AS grantee, a.event_time AS event_time, {GRANT_COLUMNS_SQL}
FROM access_log AS a LEFT JOIN cat AS c ON a.resource = c.resource
WHERE {_BATCH_WINDOW} AND a.action = 'grant'
ORDER BY s, event_id"""

# Grants and revokes of the batch's granted resources: the state before the batch, then the
# batch's own (a grant's step sees those before the step's start).
_GRANT_EVENTS = f"""SELECT resource, grantee, action, toUnixTimestamp64Milli(event_time) AS t, event_id
FROM history_grant_state
WHERE resource IN (SELECT resource FROM access_log WHERE {WINDOW_SQL} AND action = 'grant')
UNION ALL
SELECT resource, grantee, action, toUnixTimestamp64Milli(event_time) AS t, event_id FROM access_log
WHERE {WINDOW_SQL} AND action IN ('grant', 'revoke') AND status = 'ok'
  AND resource IN (SELECT resource FROM access_log WHERE {WINDOW_SQL} AND action = 'grant')"""

_TRAINING_RUNS = f"""WITH {CATALOGUE_CTE}
SELECT t.s AS s, t.resource AS resource,
{TRAINING_RUN_AGGREGATES_SQL}
FROM (SELECT {STEP_SQL} AS s, a.resource AS resource, input FROM access_log AS a LEFT ARRAY JOIN a.related AS input
      WHERE {_BATCH_WINDOW} AND a.action = 'train') AS t
LEFT JOIN cat AS c ON t.input = c.resource
GROUP BY s, resource ORDER BY s, resource"""


def step_events(client: Client, start: datetime, end: datetime, step: timedelta) -> np.ndarray:
    """Events per step of ``[start, end)`` (for sizing batches by events, not by time)."""
    steps = (end - start) // step
    params = {"lo": bound_ms(start), "hi": bound_ms(start + steps * step), "step_ms": _step_ms(step)}
    counts = np.zeros(steps, dtype=np.int64)
    result = client.query(f"SELECT {STEP_SQL} AS s, count() FROM access_log AS a WHERE {_BATCH_WINDOW} GROUP BY s",
                          parameters=params).result_rows
    for index, n in result:
        counts[index] = n
    return counts


def _step_ms(step: timedelta) -> int:
    return int(step / timedelta(milliseconds=1))


def extract_batch(client: Client, start: datetime, steps: int, step: timedelta) -> list[FeatureSet]:
    """The features of ``steps`` consecutive windows of length ``step`` from ``start``.

    Parameters
    ----------
    client : Client
        The store (initialised).
    start : datetime
        Timezone-aware start of the first window.
    steps : int
        How many windows (at least one).
    step : timedelta
        Window length (a whole number of milliseconds).

    Returns
    -------
    list of FeatureSet
        One per window, in order; each equal to what :func:`features.engine.extract` gives
        for that window. The history is advanced to ``start`` (not further).

    Raises
    ------
    features.history.HistoryAheadError
        The history already covers events after ``start``.
    """
    if start.tzinfo is None:
        raise ValueError(f"batch start must be timezone-aware, got {start!r}")
    if steps < 1 or step <= timedelta(0):
        raise ValueError(f"a batch needs at least one step of positive length, got {steps} of {step}")
    start = start.astimezone(UTC)
    advance_history(client, start)
    params = {"lo": bound_ms(start), "hi": bound_ms(start + steps * step), "step_ms": _step_ms(step)}
    principals = _principal_pass(client, params)
    pairs = _query_frame(client, _WINDOW_PAIRS, params)
    grants, largest_audience = _grant_features(client, params)
    runs = _query_frame(client, _TRAINING_RUNS, params)
    frames: dict[Entity, pd.DataFrame] = {
        "principal": _principal_features(client, params, principals, pairs, largest_audience),
        "grant": grants,
        "resource": _resource_features(pairs),
        "training_run": _typed_by_step(runs, "training_run", sort=False),
    }
    context = principals[["s", "principal", "principal_type", "history_events"]] if not principals.empty else None
    split = {entity: _by_step(frame, steps) for entity, frame in frames.items()}
    facts = _by_step(context, steps) if context is not None else [None] * steps
    empty = {entity: _empty(entity) for entity in frames}
    out = []
    for i in range(steps):
        window = {entity: parts[i] if parts[i] is not None else empty[entity].copy()
                  for entity, parts in split.items()}
        lo, hi = start + i * step, start + (i + 1) * step
        out.append(FeatureSet(lo, hi, window) if facts[i] is None else FeatureSet(lo, hi, window, facts[i]))
    return out


def _by_step(frame: pd.DataFrame, steps: int) -> list[pd.DataFrame | None]:
    """A frame sorted by step cut into one frame per step (``None`` for a step without rows)."""
    if frame.empty:
        return [None] * steps
    bounds = np.searchsorted(frame["s"].to_numpy(), np.arange(steps + 1))
    rest = frame.drop(columns="s")
    parts: list[pd.DataFrame | None] = [None] * steps
    for i in np.flatnonzero(np.diff(bounds)):
        part = rest.iloc[bounds[i]:bounds[i + 1]]
        part.index = pd.RangeIndex(len(part))
        parts[i] = part
    return parts


def _query_frame(client: Client, sql: str, params: dict[str, int]) -> pd.DataFrame:
    """A query result as a DataFrame, its step column (``s``) as int64."""
    frame = client.query_arrow(sql, parameters=params).to_pandas()
    if "s" in frame:
        frame["s"] = frame["s"].astype(np.int64)
    return frame


def _typed_by_step(frame: pd.DataFrame, entity: Entity, sort: bool = True) -> pd.DataFrame:
    """:func:`features.engine._typed` with the step column kept first.

    ``sort``: order rows by step, then key, as pandas sorts (the step loop sorts these
    frames in pandas); otherwise keep the query's order (it sorts the others in SQL).
    """
    if frame.empty:
        return frame
    if sort:
        frame = frame.sort_values(["s", *ENTITY_KEYS[entity]], kind="stable")
    typed = _typed(frame, entity)
    typed.insert(0, "s", frame["s"].to_numpy(np.int64))
    return typed


def _principal_pass(client: Client, params: dict[str, int]) -> pd.DataFrame:
    """SQL aggregates per (step, principal) plus the sequence kernels, streamed in Arrow batches."""
    sql_columns = [f.name for f in features_of("principal") if f.implementation == "sql"
                   and f.name != "join_sensitive_categories"]
    past = client.query_arrow(_HOURS_HISTORY, parameters=params)
    ids: dict[str, int] = {name: i for i, name in enumerate(past.column(0).to_pylist())}
    known = len(ids)
    parts: list[pd.DataFrame] = []
    hour_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    with client.query_arrow_stream(_PRINCIPAL_PASS, parameters=params) as stream:
        for batch in stream:
            part = principal_stream_part(batch, sql_columns)
            part.insert(0, "s", batch.column("s").to_numpy().astype(np.int64))
            hours: pa.ListArray = batch.column("hours")
            keys = np.array([ids.setdefault(name, len(ids)) for name in part["principal"]], dtype=np.int64)
            hour_parts.append((hours.offsets.to_numpy().astype(np.int64), hours.values.to_numpy().astype(np.uint8),
                               keys))
            parts.append(part)
    if not parts:
        return pd.DataFrame({"s": [], "principal": []})
    principals = pd.concat(parts, ignore_index=True)
    # Everyone's usual hours before the batch, then each window added after it is judged.
    history = np.zeros((len(ids), 168), dtype=np.int64)
    if known:
        history[:known] = past.column(1).combine_chunks().flatten().to_numpy().astype(np.int64).reshape(-1, 168)
    shares, pasts = [], []
    for offsets, hours_of_week, keys in hour_parts:
        share, before = _kernels.running_off_hours_share(offsets, hours_of_week, keys, history, MIN_HOURS_HISTORY,
                                                         USUAL_HOUR_SHARE)
        shares.append(share)
        pasts.append(before)
    principals["off_hours_share"] = np.concatenate(shares)
    principals["history_events"] = np.concatenate(pasts)
    # Pandas' order of names within a step, as the step loop's frame and context have it.
    return principals.sort_values(["s", "principal"], kind="stable").reset_index(drop=True)


def _grant_features(client: Client, params: dict[str, int]) -> tuple[pd.DataFrame, pd.Series]:
    """The grant matrix (with its step), and each (step, principal)'s largest single-grantee audience."""
    result = client.query(_GRANTS, parameters=params)
    grants = pd.DataFrame(result.result_rows, columns=result.column_names)
    if grants.empty:
        return pd.DataFrame(), pd.Series(dtype=np.int64)
    events = client.query_arrow(_GRANT_EVENTS, parameters=params).to_pandas()
    events = events.sort_values(["t", "event_id"], kind="stable")
    per_grant: list[list[str]] = []
    active_by_step: dict[int, dict[str, list[str]]] = {}
    for s, resource in zip(grants["s"], grants["resource"]):
        if s not in active_by_step:  # the state as the step loop's step sees it: everything before its start
            before = events.loc[events["t"] < params["lo"] + s * params["step_ms"]]
            newest = before.drop_duplicates(["resource", "grantee"], keep="last")
            active: dict[str, list[str]] = {}
            for r, grantee in zip(newest.loc[newest["action"] == "grant", "resource"],
                                  newest.loc[newest["action"] == "grant", "grantee"]):
                active.setdefault(r, []).append(grantee)
            active_by_step[s] = active
        per_grant.append(sorted(active_by_step[s].get(resource, [])))
    names = list(grants["grantee"]) + [name for names in per_grant for name in names]
    graph = _Graph.load(client, names)
    grants["audience_before"], grants["audience_after"] = graph.audiences(list(grants["grantee"]), per_grant)
    grants["audience_gain"] = grants["audience_after"] - grants["audience_before"]
    _, alone = graph.audiences(list(grants["grantee"]), [[] for _ in per_grant])
    largest = pd.Series(alone, index=pd.MultiIndex.from_arrays([grants["s"], grants["principal"]])).groupby(
        level=[0, 1]).max()
    typed = _typed(grants, "grant")
    typed.insert(0, "s", grants["s"].to_numpy(np.int64))
    return typed, largest


def _join_pair_rarity(client: Client, params: dict[str, int]) -> pd.DataFrame:
    """Per (step, joining principal), ``1 / (1 + c)`` for the rarest pair it joined, everyone's and its own."""
    pairs = _query_frame(client, _WINDOW_JOIN_PAIRS, params)
    if pairs.empty:
        return pd.DataFrame(columns=["global", "personal"], dtype=np.float64)
    seen = client.query_arrow(_HISTORY_JOIN_PAIRS, parameters=params).to_pandas()
    pairs = pairs.sort_values(["s", "principal", "a", "b"], kind="stable").reset_index(drop=True)
    pairs["joins"] = pairs["joins"].astype(np.int64)
    # Counts before each step: the history's, plus the batch's earlier steps.
    personal_before = pairs.groupby(["principal", "a", "b"], sort=False)["joins"].cumsum() - pairs["joins"]
    per_step = pairs.groupby(["a", "b", "s"], as_index=False)["joins"].sum().sort_values(["a", "b", "s"])
    per_step["everyone_before"] = per_step.groupby(["a", "b"])["joins"].cumsum() - per_step["joins"]
    merged = pairs.assign(personal=personal_before).merge(
        per_step[["a", "b", "s", "everyone_before"]], on=["a", "b", "s"], how="left")
    if not seen.empty:
        seen["joins"] = seen["joins"].astype(np.int64)
        everyone = seen.groupby(["a", "b"], as_index=False)["joins"].sum().rename(columns={"joins": "past_everyone"})
        merged = merged.merge(everyone, on=["a", "b"], how="left").merge(
            seen.rename(columns={"joins": "past_personal"}), on=["a", "b", "principal"], how="left")
    else:
        merged["past_everyone"] = 0
        merged["past_personal"] = 0
    merged["everyone"] = merged["everyone_before"] + merged["past_everyone"].fillna(0).astype(np.int64)
    merged["own"] = merged["personal"] + merged["past_personal"].fillna(0).astype(np.int64)
    per_principal = merged.groupby(["s", "principal"])[["everyone", "own"]].min()
    return pd.DataFrame({"global": 1.0 / (1 + per_principal["everyone"]),
                         "personal": 1.0 / (1 + per_principal["own"])})


def _principal_features(client: Client, params: dict[str, int], principals: pd.DataFrame, pairs: pd.DataFrame,
                        largest_audience: pd.Series) -> pd.DataFrame:
    """Complete the principal pass with the history look-ups, grant audiences and peer ratios."""
    if principals.empty:
        return pd.DataFrame()
    index = pd.MultiIndex.from_arrays([principals["s"], principals["principal"]])

    def aligned(series: pd.Series, default: float = 0) -> np.ndarray:
        return series.reindex(index).fillna(default).to_numpy()

    categories = _query_frame(client, _JOIN_CATEGORIES, params)
    principals["join_sensitive_categories"] = aligned(categories.set_index(["s", "principal"])["n"]) \
        if not categories.empty else 0
    new = pairs.loc[pairs["seen"] == 0].groupby(["s", "principal"]).size() if not pairs.empty else pd.Series()
    principals["new_resource_share"] = aligned(new) / principals["distinct_resources"].to_numpy()
    destinations = _query_frame(client, _NEW_DESTINATIONS, params)
    principals["new_export_destinations"] = aligned(destinations.set_index(["s", "principal"])["n"]) \
        if not destinations.empty else 0
    rarity = _join_pair_rarity(client, params)
    principals["join_pair_rarity_global"] = aligned(rarity["global"], 0.0) if not rarity.empty else 0.0
    principals["join_pair_rarity_personal"] = aligned(rarity["personal"], 0.0) if not rarity.empty else 0.0
    principals["largest_grant_audience"] = aligned(largest_audience) if not largest_audience.empty else 0
    teams = dict(client.query(_TEAMS, parameters=params).result_rows)
    team = np.array([teams.get(name, "") for name in principals["principal"]], dtype=object)
    groups = [principals["s"].to_numpy(), team]
    principals["events_vs_team"] = _peer_ratio(principals["events"].to_numpy(np.float64), groups, 0.0)
    principals["bytes_exported_vs_team"] = _peer_ratio(principals["bytes_exported"].to_numpy(np.float64), groups, 1.0)
    return _typed_by_step(principals, "principal")


def _resource_features(pairs: pd.DataFrame) -> pd.DataFrame:
    """Readers and first-time readers per (step, resource) read."""
    reads = pairs.loc[pairs["read"] == 1].assign(first_time=lambda frame: (frame["seen"] == 0).astype(np.int64))
    if reads.empty:
        return pd.DataFrame()
    grouped = reads.groupby(["s", "resource"], sort=True)
    frame = pd.DataFrame({
        "readers": grouped.size(),
        "first_time_readers": grouped["first_time"].sum(),
        "resource_sensitivity_rank": grouped["rank"].first(),
    }).reset_index()
    return _typed_by_step(frame, "resource")
