"""History state: what each principal touched, joined, exported to, and when — kept incrementally.

A feature step over ``[start, end)`` needs facts about everything before ``start``
(has this principal touched this resource before? which pairs were ever joined? what
are their usual hours?). Rescanning weeks of raw logs every step would not scale, so
these facts are aggregated into small tables, one step at a time, as the history
advances. ``history_progress`` records how far it has advanced; every row carries the
``step_end`` of the advance that wrote it, so an advance that crashed half-way is
removed before it is retried (nothing is counted twice).

Late events (ingested after the history advanced past their time) are not folded in.
:func:`compact_history` (run by the retention job) folds old rows into one per key so
the tables stop growing with the number of steps.
"""

from __future__ import annotations

from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from features.times import bound_ms, ms_param

HISTORY_TABLES = (
    "history_principal_resources",
    "history_principal_hours",
    "history_export_destinations",
    "history_join_pairs",
    "history_grant_state",
)

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE IF NOT EXISTS history_principal_resources (
    principal String, resource String, events UInt64,
    first_seen DateTime64(3, 'UTC'), last_seen DateTime64(3, 'UTC'), step_end DateTime64(3, 'UTC')
) ENGINE = MergeTree ORDER BY (principal, resource, step_end)""",
        # One row per principal and step: its events per hour of week (168 counts), so a
        # step reads one row per principal rather than 168.
        """CREATE TABLE IF NOT EXISTS history_principal_hours (
    principal String, hours Array(UInt64), step_end DateTime64(3, 'UTC')
) ENGINE = MergeTree ORDER BY (principal, step_end)""",
        """CREATE TABLE IF NOT EXISTS history_export_destinations (
    principal String, destination String, exports UInt64, step_end DateTime64(3, 'UTC')
) ENGINE = MergeTree ORDER BY (principal, destination, step_end)""",
        # One row per (pair, principal, step): global counts sum over principals.
        """CREATE TABLE IF NOT EXISTS history_join_pairs (
    a String, b String, principal String, joins UInt64, step_end DateTime64(3, 'UTC')
) ENGINE = MergeTree ORDER BY (a, b, principal, step_end)""",
        # Successful grants and revokes: the newest per (resource, grantee) is the state.
        """CREATE TABLE IF NOT EXISTS history_grant_state (
    resource String, grantee String, action LowCardinality(String), event_time DateTime64(3, 'UTC'),
    event_id String, step_end DateTime64(3, 'UTC')
) ENGINE = MergeTree ORDER BY (resource, grantee, event_time, event_id)""",
        # 'started' is written before an advance inserts anything, 'done' after all of it.
        """CREATE TABLE IF NOT EXISTS history_progress (
    history_end DateTime64(3, 'UTC'), state LowCardinality(String), at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree ORDER BY (history_end, state)""",
    ]),
]

# Compaction (:func:`compact_history`) folds each table's rows up to a boundary into one
# row per key, marked ``compacted = 1``; the ledger makes a crashed compaction safe to redo.
MIGRATIONS.append((2, [
    *(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS compacted UInt8 DEFAULT 0" for table in HISTORY_TABLES),
    """CREATE TABLE IF NOT EXISTS history_compactions (
    boundary DateTime64(3, 'UTC'), state LowCardinality(String), at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree ORDER BY (boundary, state)""",
]))

#: Per history table: the key columns and how its other columns fold (all reads of the
#: engine are sums, DISTINCTs or the newest grant event, which folding preserves).
_FOLDS: dict[str, tuple[str, str]] = {
    "history_principal_resources": ("principal, resource", "sum(events), min(first_seen), max(last_seen)"),
    "history_principal_hours": ("principal", "sumForEach(hours)"),
    "history_export_destinations": ("principal, destination", "sum(exports)"),
    "history_join_pairs": ("a, b, principal", "sum(joins)"),
    "history_grant_state": ("resource, grantee", "argMax(action, (event_time, event_id)), "
                            "max(event_time), argMax(event_id, (event_time, event_id))"),
}


def compact_history(client: Client, boundary: datetime) -> bool:
    """Fold every history row of steps ending at or before ``boundary`` into one row per key.

    History grows by a row per key and step; a step reads it with ``GROUP BY``, so without
    compaction steps slow down as weeks pass. Folding keeps every fact the features read
    (sums, whether a pair was seen, the newest grant state) and nothing else. Crash-safe:
    a compaction that died half-way is redone from its ledger row, and one whose delete
    already finished is only marked done.

    Parameters
    ----------
    client : Client
    boundary : datetime
        At most the history's end (rows of steps ending later are untouched).

    Returns
    -------
    bool
        Whether anything was folded.
    """
    end = history_end(client)
    if end is None:
        return False
    boundary = min(boundary.astimezone(UTC), end.replace(tzinfo=UTC))
    params = {"b": bound_ms(boundary)}
    at = ms_param("b")
    client.insert("history_compactions", [[boundary, "started"]], column_names=["boundary", "state"])
    folded = False
    for table, (keys, folds) in _FOLDS.items():
        mine = f"(compacted = 1 AND step_end = {at})"
        others = client.query(f"SELECT count() FROM {table} WHERE step_end <= {at} AND NOT {mine}",
                              parameters=params).result_rows[0][0]
        if not others:
            continue  # nothing to fold, or a crashed attempt already deleted what it folded
        client.command(f"DELETE FROM {table} WHERE {mine}", parameters=params)  # a crashed attempt's partial fold
        columns = [c for c in _columns(client, table) if c not in ("step_end", "compacted")]
        client.command(
            f"INSERT INTO {table} ({', '.join(columns)}, step_end, compacted) "
            f"SELECT {keys}, {folds}, {at}, 1 FROM {table} WHERE step_end <= {at} GROUP BY {keys}",
            parameters=params)
        client.command(f"DELETE FROM {table} WHERE step_end <= {at} AND NOT {mine}", parameters=params)
        folded = True
    client.insert("history_compactions", [[boundary, "done"]], column_names=["boundary", "state"])
    return folded


def _columns(client: Client, table: str) -> list[str]:
    return [row[0] for row in client.query(f"DESCRIBE TABLE {table}").result_rows]


class HistoryAheadError(Exception):
    """The history already covers events after the requested start (replay needs a reset)."""


def history_end(client: Client) -> datetime | None:
    """How far the history has advanced (exclusive), or ``None`` before the first advance."""
    rows = client.query("SELECT max(history_end), count() FROM history_progress WHERE state = 'done'").result_rows[0]
    return rows[0] if rows[1] else None


def reset_history(client: Client) -> None:
    """Forget all history state (a replay from the beginning rebuilds it)."""
    for table in (*HISTORY_TABLES, "history_progress"):
        client.command(f"TRUNCATE TABLE IF EXISTS {table}")


def advance_history(client: Client, to: datetime) -> bool:
    """Fold every event before ``to`` that the history has not seen yet into the state.

    Parameters
    ----------
    client : Client
    to : datetime
        New (exclusive) end of the history.

    Returns
    -------
    bool
        Whether anything was advanced (False when the history already ends at ``to``).

    Raises
    ------
    HistoryAheadError
        The history already ends after ``to``.
    """
    to = to.astimezone(UTC)
    current = history_end(client)
    if current is not None:
        current = current.replace(tzinfo=UTC)  # stored in UTC, read back naive
        if current > to:
            raise HistoryAheadError(f"history already covers events up to {current}, after {to}; reset it to replay")
        if current == to:
            return False
    # Epoch milliseconds: no time-zone interpretation on either side.
    params = {"lo": bound_ms(current) if current else 0, "hi": bound_ms(to)}
    lo, hi = ms_param("lo"), ms_param("hi")
    window = f"event_time >= {lo} AND event_time < {hi}"
    unfinished = client.query(
        f"SELECT count() FROM history_progress WHERE state = 'started' AND history_end > {lo}",
        parameters=params,
    ).result_rows[0][0]
    if unfinished:  # an advance crashed half-way: remove what it wrote before redoing it
        for table in HISTORY_TABLES:
            client.command(f"DELETE FROM {table} WHERE step_end > {lo}", parameters=params)
    client.insert("history_progress", [[to, "started"]], column_names=["history_end", "state"])
    # Explicit column lists: later migrations add columns (compacted) that these leave at their defaults.
    client.command(f"""INSERT INTO history_principal_resources
    (principal, resource, events, first_seen, last_seen, step_end)
SELECT principal, resource, count(), min(event_time), max(event_time), {hi}
FROM access_log WHERE {window} GROUP BY principal, resource""", parameters=params)
    client.command(f"""INSERT INTO history_principal_hours (principal, hours, step_end)
SELECT principal, arrayMap(h -> toUInt64(arraySum(arrayMap(p -> if(p.1 = h, p.2, 0), counts))), range(168)), {hi}
FROM (
    SELECT principal, groupArray((hour, events)) AS counts FROM (
        SELECT principal, toUInt8((toDayOfWeek(event_time) - 1) * 24 + toHour(event_time)) AS hour, count() AS events
        FROM access_log WHERE {window} GROUP BY principal, hour)
    GROUP BY principal)""", parameters=params)
    client.command(f"""INSERT INTO history_export_destinations (principal, destination, exports, step_end)
SELECT principal, attributes['destination'] AS destination, count(), {hi}
FROM access_log WHERE {window} AND action = 'export' AND destination != '' GROUP BY principal, destination""",
                   parameters=params)
    client.command(f"""INSERT INTO history_join_pairs (a, b, principal, joins, step_end)
SELECT pair.1, pair.2, principal, count(), {hi}
FROM (
    SELECT principal, arrayDistinct(arrayPushFront(arrayFilter(x -> x != '', related), resource)) AS rs,
           arrayJoin(arrayFilter(p -> p.1 < p.2, arrayFlatten(arrayMap(x -> arrayMap(y -> (x, y), rs), rs)))) AS pair
    FROM access_log WHERE {window} AND action = 'join'
) GROUP BY pair, principal""", parameters=params)
    client.command(f"""INSERT INTO history_grant_state (resource, grantee, action, event_time, event_id, step_end)
SELECT resource, grantee, action, event_time, event_id, {hi}
FROM access_log WHERE {window} AND action IN ('grant', 'revoke') AND status = 'ok'""", parameters=params)
    client.insert("history_progress", [[to, "done"]], column_names=["history_end", "state"])
    return True
