"""The input contract: the four tables outside tools write, and the rejected rows.

This module is the single source of truth for the contract's column names, types,
allowed values and DDL (see docs/DESIGN.md, "Input contract"). Columns may be added;
none may be renamed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

PRINCIPAL_TYPES = ("human", "service", "agent")
ACTIONS = (
    "read", "query", "join", "export", "download", "grant", "revoke",
    "train", "write", "delete", "login",
)
VIA = ("", "console", "api", "notebook", "pipeline", "ai_assistant")
STATUSES = ("ok", "denied", "error")
RESOURCE_KINDS = ("dataset", "embedding", "model", "training_run", "feature_table", "secret", "other")
SENSITIVITIES = ("public", "internal", "confidential", "restricted")

#: Tables an ``ingest`` may target, in the order their contents depend on each other.
CONTRACT_TABLES = ("access_log", "resources", "memberships", "principals")


@dataclass(frozen=True)
class Column:
    """One contract column.

    Parameters
    ----------
    name : str
        Column name, stable forever.
    clickhouse_type : str
        The ClickHouse type in the store.
    required : bool
        A row without a value here is rejected.
    allowed : tuple of str, optional
        The enumeration a non-empty value must belong to.
    """

    name: str
    clickhouse_type: str
    required: bool = False
    allowed: tuple[str, ...] | None = None


ACCESS_LOG_COLUMNS = (
    Column("event_time", "DateTime64(3, 'UTC')", required=True),
    Column("event_id", "String"),
    Column("principal", "String", required=True),
    Column("principal_type", "LowCardinality(String)", allowed=PRINCIPAL_TYPES),
    Column("action", "LowCardinality(String)", required=True, allowed=ACTIONS),
    Column("resource", "String", required=True),
    Column("related", "Array(String)"),
    Column("grantee", "String"),
    Column("bytes", "UInt64"),
    Column("rows", "UInt64"),
    Column("via", "LowCardinality(String)", allowed=VIA),
    Column("status", "LowCardinality(String)", allowed=STATUSES),
    Column("source_ip", "String"),
    Column("attributes", "Map(String, String)"),
)

RESOURCES_COLUMNS = (
    Column("resource", "String", required=True),
    Column("kind", "LowCardinality(String)", required=True, allowed=RESOURCE_KINDS),
    Column("sensitivity", "LowCardinality(String)", required=True, allowed=SENSITIVITIES),
    Column("categories", "Array(LowCardinality(String))"),
    Column("owner", "String"),
    Column("sanitized", "UInt8"),
    Column("updated_at", "DateTime64(3, 'UTC')"),
)

MEMBERSHIPS_COLUMNS = (
    Column("group", "String", required=True),
    Column("member", "String", required=True),
    # Additive to the contract: a newer row with removed = 1 withdraws the membership.
    Column("removed", "UInt8"),
    Column("updated_at", "DateTime64(3, 'UTC')"),
)

PRINCIPALS_COLUMNS = (
    Column("principal", "String", required=True),
    Column("principal_type", "LowCardinality(String)", required=True, allowed=PRINCIPAL_TYPES),
    Column("team", "String"),
    Column("title", "String"),
    Column("manager", "String"),
    Column("created_at", "DateTime64(3, 'UTC')"),
    Column("updated_at", "DateTime64(3, 'UTC')"),
)

COLUMNS: dict[str, tuple[Column, ...]] = {
    "access_log": ACCESS_LOG_COLUMNS,
    "resources": RESOURCES_COLUMNS,
    "memberships": MEMBERSHIPS_COLUMNS,
    "principals": PRINCIPALS_COLUMNS,
}

_UTC_MS = pa.timestamp("ms", tz="UTC")
_ARROW_TYPES = {
    "String": pa.string(),
    "LowCardinality(String)": pa.string(),
    "DateTime64(3, 'UTC')": _UTC_MS,
    "UInt64": pa.uint64(),
    "UInt8": pa.uint8(),
    "Array(String)": pa.list_(pa.string()),
    "Array(LowCardinality(String))": pa.list_(pa.string()),
    "Map(String, String)": pa.map_(pa.string(), pa.string()),
}


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of a contract table, for writers that produce batches directly.

    Parameters
    ----------
    table : str
        One of :data:`CONTRACT_TABLES`.

    Returns
    -------
    pyarrow.Schema
        Fields in contract order with Arrow types matching the ClickHouse columns.
    """
    return pa.schema([pa.field(c.name, _ARROW_TYPES[c.clickhouse_type]) for c in COLUMNS[table]])


def _column_ddl(columns: tuple[Column, ...]) -> str:
    return ",\n    ".join(f"`{c.name}` {c.clickhouse_type}" for c in columns)


# Schema migrations of the tables this package owns: (version, statements).
# Append new versions; never edit a released one (stores already ran it).
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        f"""CREATE TABLE IF NOT EXISTS access_log (
    {_column_ddl(ACCESS_LOG_COLUMNS)},
    `ingested_at` DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (toStartOfHour(event_time), principal, event_time, event_id)""",
        # Catalogue tables keep the newest version of each key (by updated_at).
        f"""CREATE TABLE IF NOT EXISTS resources (
    {_column_ddl(RESOURCES_COLUMNS)}
) ENGINE = ReplacingMergeTree(updated_at) ORDER BY resource""",
        f"""CREATE TABLE IF NOT EXISTS memberships (
    {_column_ddl(MEMBERSHIPS_COLUMNS)}
) ENGINE = ReplacingMergeTree(updated_at) ORDER BY (`group`, member)""",
        f"""CREATE TABLE IF NOT EXISTS principals (
    {_column_ddl(PRINCIPALS_COLUMNS)}
) ENGINE = ReplacingMergeTree(updated_at) ORDER BY principal""",
        """CREATE TABLE IF NOT EXISTS rejected_rows (
    `rejected_at` DateTime64(3, 'UTC') DEFAULT now64(3),
    `table` LowCardinality(String),
    `file` String,
    `line` UInt64,
    `reason` String,
    `raw` String
) ENGINE = MergeTree ORDER BY (`file`, line)""",
    ]),
    # v2: re-ingest looks event ids up by time range first; the bloom filter lets
    # that look-up skip granules whose ids cannot match.
    (2, [
        "ALTER TABLE access_log ADD INDEX IF NOT EXISTS idx_event_id event_id TYPE bloom_filter(0.01) GRANULARITY 4",
    ]),
    # v3: an event id counts once whatever its event_time, so ingest looks ids up by id
    # alone, in this index sorted by id. A materialised view feeds it from every insert
    # into access_log (ingest, the simulation, anything else), in the same insert. The view
    # comes before the backfill so no insert falls between them (one caught twice is
    # harmless: the look-up is IN and merges collapse it). No DISTINCT in the backfill:
    # it would hold every id in memory at once. Small granules: a batch's look-up reads
    # fewer neighbours of each id it probes.
    (3, [
        """CREATE TABLE IF NOT EXISTS event_ids (
    `event_id` String
) ENGINE = ReplacingMergeTree ORDER BY event_id SETTINGS index_granularity = 1024""",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS event_ids_from_access_log TO event_ids "
        "AS SELECT event_id FROM access_log",
        "INSERT INTO event_ids SELECT event_id FROM access_log",
    ]),
    # v4: the fast path (detector.fastpath) reads what was ingested since its last run,
    # every few seconds. ingested_at follows insertion, so a min-max index on it lets that
    # read skip every part written before the cursor instead of scanning recent hours.
    (4, [
        "ALTER TABLE access_log ADD INDEX IF NOT EXISTS idx_ingested_at ingested_at TYPE minmax GRANULARITY 1",
    ]),
]
