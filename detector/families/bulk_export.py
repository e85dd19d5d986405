"""Bulk and embedding export: export volume and destinations far above the principal's and peers' baseline.

Two ways in: a signal past its normal ceiling in one window (bytes, exports, embedding
bytes, new destinations, bytes against the team), and the low-and-slow *export habit*
(:func:`export_habit_alerts`), a stage of its own.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from detector.alerting import alert_id, explanation, query_frame
from detector.explain import Driver
from detector.families import Family, Step, format_bytes
from detector.incidents import Alert
from detector.severity import SeverityInputs, severity, severity_points
from features.engine import CATALOGUE_CTE, SENSITIVE_CATEGORIES_SQL
from features.registry import MIN_HOURS_HISTORY
from features.times import bound_ms, from_epoch_ms


def _title(key: str, group: str, v: dict[str, float], lead: Driver) -> str:
    if v["embedding_export_bytes"] > 0:
        return f"{key} exported {format_bytes(v['embedding_export_bytes'])} from embedding stores"
    return f"{key} exported {format_bytes(v['bytes_exported'])} in {int(v['exports'])} exports"


def _severity_extra(v: dict[str, float]) -> dict[str, Any]:
    return {"leaves_organisation": v["new_export_destinations"] > 0, "bytes_exposed": int(v["bytes_exported"])}


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


# Who exported restricted data in which step of the batch: the habit query only runs for them.
_RESTRICTED_EXPORTERS = f"""WITH {CATALOGUE_CTE}
SELECT DISTINCT intDiv(toUnixTimestamp64Milli(l.event_time) - {{lo:Int64}}, {{step_ms:Int64}}) AS s, l.principal
FROM access_log AS l LEFT JOIN cat AS c ON l.resource = c.resource
WHERE l.event_time >= fromUnixTimestamp64Milli({{lo:Int64}}, 'UTC')
  AND l.event_time < fromUnixTimestamp64Milli({{hi:Int64}}, 'UTC')
  AND l.action = 'export' AND c.sensitivity = 'restricted'"""


def _exporters_by_step(step: Step) -> dict[int, set[str]]:
    """Per step of the batch, the principals with an export of restricted data in it (one query per batch)."""
    batch = step.batch

    def by_step() -> dict[int, set[str]]:
        found: dict[int, set[str]] = {}
        rows = step.client.query(_RESTRICTED_EXPORTERS, parameters={"lo": batch.lo, "hi": batch.hi,
                                                                    "step_ms": batch.step_ms}).result_rows
        for index, principal in rows:
            found.setdefault(int(index), set()).add(principal)
        return found

    return batch.once("bulk_export.restricted_exporters", by_step)


def _restricted_exporters(step: Step) -> set[str]:
    """The principals with an export of restricted data in this step."""
    return _exporters_by_step(step).get(step.batch.index(step.params["lo"]), set())


# The habit's facts for a whole batch: every restricted export of its exporters over the
# four weeks before each of its steps, and when each was first active in those weeks.
_BATCH_HITS = f"""WITH {CATALOGUE_CTE}
SELECT l.principal AS key, toUnixTimestamp64Milli(l.event_time) AS t, toDate(l.event_time) AS day, l.rows AS rows,
       l.resource AS resource, arrayFilter(x -> has({SENSITIVE_CATEGORIES_SQL}, x), c.categories) AS categories
FROM access_log AS l LEFT JOIN cat AS c ON l.resource = c.resource
WHERE l.event_time >= fromUnixTimestamp64Milli({{since:Int64}}, 'UTC')
  AND l.event_time < fromUnixTimestamp64Milli({{hi:Int64}}, 'UTC') AND l.principal IN {{keys:Array(String)}}
  AND l.action = 'export' AND c.sensitivity = 'restricted'
ORDER BY key, t"""

# Per exporter and step-sized bucket of the day four weeks before the batch, its first event;
# and its first event after that day (a principal active in a step was active in its weeks).
_BATCH_FIRST_EVENTS = """SELECT principal,
       intDiv(toUnixTimestamp64Milli(event_time) - {since:Int64}, {step_ms:Int64}) AS b,
       min(toUnixTimestamp64Milli(event_time))
FROM access_log
WHERE event_time >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')
  AND event_time < fromUnixTimestamp64Milli({since_hi:Int64}, 'UTC') AND principal IN {keys:Array(String)}
GROUP BY principal, b
UNION ALL
SELECT principal, -1, min(toUnixTimestamp64Milli(event_time)) FROM access_log
WHERE event_time >= fromUnixTimestamp64Milli({since_hi:Int64}, 'UTC')
  AND event_time < fromUnixTimestamp64Milli({hi:Int64}, 'UTC') AND principal IN {keys:Array(String)}
GROUP BY principal"""

_HABIT_SPAN, _RECENT = timedelta(days=28), timedelta(days=7)


def _habit_rows(step: Step, keys: list[str]) -> list[dict[str, Any]]:
    """What :data:`_EXPORT_HABIT` returns for ``keys`` in this step, sorted by key.

    In a batch whose step divides four weeks, from two queries for the whole batch (the
    first event in a step's four weeks is the first of the step-sized buckets from its
    start); otherwise, or when a principal's recent exports name more resources than the
    query keeps (8, an arbitrary choice of ClickHouse's), from the query itself.
    """
    batch, params = step.batch, step.params
    span_ms = int(_HABIT_SPAN / timedelta(milliseconds=1))
    if len(batch.windows) < 2 or span_ms % batch.step_ms:
        return _habit_query(step, keys)
    facts = batch.once("bulk_export.habit", lambda: _batch_habit_facts(step, span_ms))
    end = params["hi"]
    recent_ms = end - int(_RECENT / timedelta(milliseconds=1))
    first_bucket = batch.index(params["lo"]) + 1  # the bucket starting at end - 4 weeks
    rows = []
    for key in sorted(keys):
        hits = [h for h in facts["hits"].get(key, []) if end - span_ms <= h[0] < end]
        recent = [h for h in hits if h[0] >= recent_ms]
        resources = sorted({h[3] for h in recent})
        if len(resources) > 8:
            return _habit_query(step, keys)
        buckets, firsts = facts["firsts"].get(key, ((), ()))
        at = next((first for bucket, first in zip(buckets, firsts) if bucket >= first_bucket), None)
        rows.append({
            "key": key, "active_since_ms": at if at is not None else facts["after"][key],
            "recent_days": len({h[1] for h in recent}), "earlier_days": len({h[1] for h in hits if h[0] < recent_ms}),
            "rows": sum(h[2] for h in hits if h[0] >= params["lo"]),
            "first_ms": min((h[0] for h in recent), default=0), "last_ms": max((h[0] for h in hits), default=0),
            "resources": resources, "categories": len({c for h in recent for c in h[4]})})
    return rows


def _batch_habit_facts(step: Step, span_ms: int) -> dict[str, Any]:
    batch = step.batch
    keys = sorted(set().union(*_exporters_by_step(step).values()))
    params = {"since": batch.lo - span_ms, "since_hi": batch.hi - span_ms, "hi": batch.hi, "keys": keys,
              "step_ms": batch.step_ms}
    hits: dict[str, list[tuple]] = {}
    for key, t, day, rows, resource, categories in step.client.query(_BATCH_HITS, parameters=params).result_rows:
        hits.setdefault(key, []).append((int(t), day, int(rows), resource, tuple(categories)))
    buckets: dict[str, list[tuple[int, int]]] = {}
    after: dict[str, int] = {}
    for key, bucket, first in step.client.query(_BATCH_FIRST_EVENTS, parameters=params).result_rows:
        if bucket < 0:
            after[key] = int(first)
        else:
            buckets.setdefault(key, []).append((int(bucket), int(first)))
    firsts = {key: tuple(zip(*sorted(pairs))) for key, pairs in buckets.items()}
    return {"hits": hits, "firsts": firsts, "after": after}


def _habit_query(step: Step, keys: list[str]) -> list[dict[str, Any]]:
    end = step.features.end
    frame = query_frame(step.client, _EXPORT_HABIT, {**step.params, "keys": sorted(keys),
                                                     "recent": bound_ms(end - _RECENT),
                                                     "since": bound_ms(end - _HABIT_SPAN)})
    return sorted(frame.to_dict("records"), key=lambda row: row["key"])


def export_habit_alerts(step: Step) -> list[Alert]:
    """The low-and-slow insider: a new habit of exporting restricted data, repeated across days.

    A principal who exported restricted data in this window, on at least
    :attr:`DetectConfig.habit_days` distinct days of the last week, at
    :attr:`DetectConfig.habit_increase` times the daily rate of the up to three weeks
    before (which must span at least :attr:`DetectConfig.habit_min_history`), alerts as
    ``bulk_export``. No single export needs to be large: the pattern is the evidence, so
    its score is modest (:attr:`DetectConfig.habit_score`) and its severity comes from
    the data and this window's rows.
    """
    features, params, config = step.features, step.params, step.config
    principals = features.frame("principal")
    if principals.empty:
        return []
    end = features.end
    history = features.principal_context.set_index("principal")["history_events"].reindex(principals["principal"])
    exporting = (principals["exports"].to_numpy() > 0) & (history.fillna(0).to_numpy() >= MIN_HOURS_HISTORY)
    # Without a restricted export in this window a principal has nothing new to say (the
    # query's own test below): asking only for those is the same answer, at a query per batch.
    exporters = _restricted_exporters(step)
    keys = [key for key in principals.loc[exporting, "principal"] if key in exporters]
    if not keys:
        return []
    recent = end - _RECENT
    alerts = []
    for row in _habit_rows(step, keys):
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
            alert_id=alert_id("bulk_export.habit", "principal", row["key"], end), detector="bulk_export",
            entity="principal", entity_key=row["key"],
            title=f"{row['key']} exported restricted data on {int(row['recent_days'])} of the last 7 days "
                  f"({int(row['earlier_days'])} in the {observed.days} days before)",
            severity=severity(inputs), score=config.habit_score, principals=(row["key"],),
            resources=tuple(sorted(row["resources"])), first_seen=from_epoch_ms(row["first_ms"]),
            last_seen=from_epoch_ms(row["last_ms"]),
            detected_at=end, explanation=explanation(drivers, points)))
    return alerts


FAMILY = Family(
    id="bulk_export", entity="principal",
    description="export volume and destinations far above the principal's and peer group's baseline",
    signals=("bytes_exported", "exports", "embedding_export_bytes", "new_export_destinations",
             "bytes_exported_vs_team"),
    evidence_action="export",
    # ATLAS AML.T0025 Exfiltration via Cyber Means; ATT&CK T1567 Exfiltration Over Web Service
    techniques=("AML.T0025", "T1567"),
    title=_title, severity_extra=_severity_extra, detect=export_habit_alerts,
    scenarios=("embedding_export", "low_and_slow", "unusual_join"),
    example={"embedding_export_bytes": 2.4e10, "bytes_exported": 2.4e10, "exports": 3, "new_export_destinations": 1},
)
