"""What every detection stage builds alerts with: the evidence context queries, alert ids, explanations.

Shared by the engine (:mod:`detector.detect`) and the families' own stages
(:mod:`detector.families`), so an alert reads the same whoever raised it.
"""

from __future__ import annotations

import traceback
from datetime import datetime
from typing import Any

import pandas as pd
from clickhouse_connect.driver.client import Client

from detector.explain import Driver
from detector.incidents import Alert
from features.engine import CATALOGUE_CTE, RANK_SQL, READING_SQL, SENSITIVE_CATEGORIES_SQL, WINDOW_SQL
from features.times import bound_ms


def query_frame(client: Client, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    """A query's result as a data frame (values as query parameters)."""
    return client.query_df(sql, parameters=params)


# ---------------------------------------------------------------------------- context queries

def _categories(condition: str) -> str:
    return (f"length(arrayDistinct(arrayFilter(x -> has({SENSITIVE_CATEGORIES_SQL}, x), "
            f"arrayFlatten(groupArrayIf(c.categories, {condition})))))")


PRINCIPAL_CONTEXT = f"""WITH {CATALOGUE_CTE}
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

RESOURCE_CONTEXT = f"""WITH {CATALOGUE_CTE}
SELECT a.resource AS key,
    toUnixTimestamp64Milli(min(a.event_time)) AS first_ms, toUnixTimestamp64Milli(max(a.event_time)) AS last_ms,
    {_categories('1')} AS categories, sum(a.rows) AS rows_read, topK(20)(a.principal) AS readers
FROM access_log AS a LEFT JOIN cat AS c ON a.resource = c.resource
WHERE {WINDOW_SQL.replace('event_time', 'a.event_time')} AND a.action IN {READING_SQL}
    AND a.resource IN {{keys:Array(String)}}
GROUP BY a.resource"""

TRAINING_CONTEXT = f"""WITH {CATALOGUE_CTE}
SELECT t.resource AS key, toUnixTimestamp64Milli(min(t.event_time)) AS first_ms,
    toUnixTimestamp64Milli(max(t.event_time)) AS last_ms, groupUniqArray(t.principal) AS trainers,
    max({RANK_SQL}) AS rank, {_categories('1')} AS categories, groupUniqArrayIf(t.input, t.input != '') AS inputs,
    max(t.rows) AS rows
FROM (SELECT resource, principal, event_time, rows, input FROM access_log ARRAY JOIN related AS input
      WHERE {WINDOW_SQL} AND action = 'train' AND resource IN {{keys:Array(String)}}) AS t
LEFT JOIN cat AS c ON t.input = c.resource
GROUP BY t.resource"""


def context(client: Client, sql: str, keys: list[str], params: dict[str, int]) -> dict[str, dict[str, Any]]:
    """One of the context queries for some entity keys, as a row per key."""
    if not keys:
        return {}
    frame = query_frame(client, sql, {**params, "keys": sorted(set(keys))})
    return {row["key"]: row for row in frame.to_dict("records")}


def alert_id(detector: str, entity: str, key: str, end: datetime) -> str:
    """The deterministic id of an alert: re-running a step finds it again."""
    return f"{detector}|{entity}|{key}|{bound_ms(end)}"


def explanation(drivers: list[Driver], points: dict[str, int]) -> list[dict[str, Any]]:
    """An incident's explanation: the drivers, then the severity points."""
    return [driver.as_dict() for driver in drivers] + [{"severity_points": points}]


def error_alert(stage: str, error: BaseException, end: datetime) -> Alert:
    """A visible ``pipeline_error`` alert for a stage (or rule) that raised: never a silent failure."""
    text = f"{type(error).__name__}: {error}"
    return Alert(
        alert_id=alert_id("pipeline_error", "job", stage, end), detector="pipeline_error", entity="job",
        entity_key=stage, title=f"detection stage '{stage}' failed: {text[:200]}", severity="SEV3", score=1.0,
        principals=(), resources=(), first_seen=end, last_seen=end, detected_at=end,
        explanation=[{"feature": "error", "value": text[:2000], "baseline": "",
                      "weight": 1.0, "traceback": traceback.format_exception(error)[-3:]}])
