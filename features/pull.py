"""Pull ClickHouse's own ``system.query_log`` (and ``system.role_grants``) into the store.

The watched server (a client given by the caller: another server, or the store itself)
keeps a log of every query. A pull reads the finished and failed queries past this
source's watermark, skipping what is not data access and blastwall's own queries (tagged
with ``log_comment`` *and* sent by the user the pull connects as, so a stranger cannot hide
behind the tag), and loads them through the same mapping, validation and de-duplication as
``ingest --source clickhouse-query-log`` (:mod:`features.sources.clickhouse_query_log`).

The watermark — the last ``(event time, query_id, type)`` stored, per watched server —
lives in the store (``pull_watermarks``) and moves only after a batch is stored: a crash or
an outage of either side loses nothing (the next pull starts where the last stored batch
ended) and a batch pulled twice adds nothing (event ids are deterministic). Rows newer
than ``now − settle`` on the watched server's clock are left for the next pull, because the
server writes its log in the background (every 7.5 s by default).

``system.role_grants`` becomes ``memberships`` rows (role → user or role), a snapshot per
pull (an unchanged grant adds nothing). ``system.grants`` is not loaded: it has no kind or
sensitivity for the catalogue, and grants are seen as they happen (``GRANT``/``REVOKE``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from features.ingest import IngestSummary, _Batch, _load_batch, _Staging, split_lines
from features.sources import clickhouse_query_log as query_log

#: Where the watermark is before anything was pulled: this long before now.
DEFAULT_BACKFILL = timedelta(days=1)

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        # One row per advance; the watermark is the greatest (time, query_id, type), so a
        # late or repeated insert can never move it back.
        """CREATE TABLE IF NOT EXISTS pull_watermarks (
    `source` LowCardinality(String),
    `watched` String,
    `event_time` DateTime64(6, 'UTC'),
    `query_id` String,
    `type` String,
    `pulled` UInt64,
    `updated_at` DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree ORDER BY (source, watched, event_time)
TTL toDateTime(updated_at) + INTERVAL 30 DAY""",
    ]),
]


@dataclass(frozen=True)
class PullSettings:
    """How a pull reads the watched server.

    Attributes
    ----------
    batch_rows : int
        Queries per batch (one round trip each way; bounds memory).
    max_rows : int
        Queries per pull at most; the next pull continues (a backlog never holds the
        store for long).
    settle : timedelta
        Leave queries younger than this (the server flushes its log in the background).
    backfill : timedelta
        With no watermark yet, start this long before now.
    flush_logs : bool
        Ask the watched server to flush its logs first (``SYSTEM FLUSH LOGS``; the
        embedded store, where blastwall owns the engine).
    agent_pattern, human_pattern : str
        RE2 patterns over the user name: ``agent`` and ``human`` principals (else ``service``).
    exclude_comment : str
        The ``log_comment`` blastwall tags its own queries with.
    ignore_tables : str
        RE2 pattern of ``db.table`` names that are not data (blastwall's own tables when
        the watched server is the store).
    role_grants : bool or None
        Read ``system.role_grants`` too; ``None``: the caller decides (the embedded engine
        can hold no roles, so blastwall skips it there).
    """

    batch_rows: int = 50_000
    max_rows: int = 1_000_000
    settle: timedelta = timedelta(seconds=10)
    backfill: timedelta = DEFAULT_BACKFILL
    flush_logs: bool = False
    agent_pattern: str = query_log.PARAMETERS["agent_pattern"]
    human_pattern: str = query_log.PARAMETERS["human_pattern"]
    exclude_comment: str = "blastwall"
    ignore_tables: str = query_log.PARAMETERS["ignore_tables"]
    role_grants: bool | None = None


@dataclass(frozen=True)
class Mark:
    """A watermark: everything up to and including this query is stored."""

    event_time: datetime
    query_id: str = ""
    type: str = ""


@dataclass
class PullSummary:
    """What one pull did.

    Attributes
    ----------
    loaded, duplicates, rejected : int
        Queries stored, already stored, rejected (with reasons, in ``rejected_rows``).
    first, last : datetime or None
        Event times of the first and last query read.
    watermark : Mark
        Where the next pull starts.
    lag : timedelta
        The watched server's now minus the watermark.
    memberships : int
        Role grants stored as new ``memberships`` rows.
    notes : list of str
        What could not be read but did not stop the pull (e.g. ``system.role_grants``).
    """

    loaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    first: datetime | None = None
    last: datetime | None = None
    watermark: Mark | None = None
    lag: timedelta = timedelta(0)
    memberships: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def pulled(self) -> int:
        return self.loaded + self.duplicates + self.rejected


def watermark(store: Client, watched: str, source: str = query_log.NAME) -> Mark | None:
    """The stored watermark of ``source`` on the ``watched`` server (``None``: never pulled)."""
    row = store.query(
        "SELECT max((event_time, query_id, type)), count() FROM pull_watermarks "
        "WHERE source = {source:String} AND watched = {watched:String}",
        parameters={"source": source, "watched": watched}).result_rows[0]
    if not row[1]:
        return None
    moment, query_id, kind = row[0]
    return Mark(_utc(moment), query_id, kind)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _micros(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


_FIELDS = ", ".join(f"{expression} AS `{name}`" for name, expression in query_log.RECORD_FIELDS.items())
# Filters on raw columns first (the table's key is (event_date, event_time)); the
# relevance test runs on the watched server, so only access leaves it.
_BATCH_SQL = f"""SELECT {_FIELDS} FROM (
SELECT * FROM system.query_log
WHERE event_date >= toDate({{since:DateTime64(6, 'UTC')}}, 'UTC') - 1
  AND event_time >= toDateTime({{since:DateTime64(6, 'UTC')}}) - 1
  AND (event_time_microseconds, query_id, toString(type))
      > ({{since:DateTime64(6, 'UTC')}}, {{since_id:String}}, {{since_type:String}})
  AND event_time_microseconds < {{until:DateTime64(6, 'UTC')}}
  AND type IN ({', '.join(f"'{t}'" for t in query_log.TYPES)})
  AND is_initial_query
  AND NOT (log_comment = {{tag:String}} AND user = currentUser())
  AND {query_log.RELEVANT_SQL}
ORDER BY event_time_microseconds, query_id, toString(type)
LIMIT {{limit:UInt64}})
ORDER BY event_time_microseconds, query_id, type"""
# (The projection renames columns after their own names: the filters above see the raw ones.)

_ROLE_GRANTS_SQL = """SELECT granted_role_name AS `group`, ifNull(user_name, role_name) AS member
FROM system.role_grants WHERE ifNull(user_name, role_name) IS NOT NULL ORDER BY `group`, member"""


def _lines(body: bytes, first_line: int) -> _Batch:
    """JSONEachRow bytes as a batch of whole lines (zero-copy; each keeps its newline)."""
    _, raw, lines = split_lines(body, first_line)
    return _Batch(lines, raw, len(body))


def _last_record(body: bytes) -> dict:
    start = body.rfind(b"\n", 0, len(body) - 1) + 1
    return orjson.loads(body[start:])


def _record_time(record: dict) -> datetime:
    return datetime.fromisoformat(record["event_time_microseconds"]).replace(tzinfo=UTC)


def pull_query_log(watched: Client, store: Client, watched_key: str,
                   settings: PullSettings | None = None, now: datetime | None = None) -> PullSummary:
    """Pull the queries logged since the watermark into ``access_log`` (see the module docstring).

    Parameters
    ----------
    watched : Client
        The server whose ``system.query_log`` is read (may be ``store`` itself).
    store : Client
        The initialised blastwall store.
    watched_key : str
        Names the watched server in the watermark table (a DSN without credentials).
    settings : PullSettings, optional
    now : datetime, optional
        Only for the backfill start when nothing was pulled yet (default: the watched
        server's clock).

    Returns
    -------
    PullSummary

    Raises
    ------
    clickhouse_connect.driver.exceptions.ClickHouseError, OSError
        Either side failed; the watermark stays at the last stored batch.
    """
    settings = settings or PullSettings()
    started = time.perf_counter()
    if settings.flush_logs:
        watched.command("SYSTEM FLUSH LOGS")
    server_now = _utc(watched.query("SELECT now64(6, 'UTC')").result_rows[0][0])
    until = server_now - settings.settle
    mark = watermark(store, watched_key) or Mark((now or server_now) - settings.backfill)
    summary = PullSummary(watermark=mark)
    source = dataclasses.replace(query_log.SOURCE, parameters={
        "agent_pattern": settings.agent_pattern, "human_pattern": settings.human_pattern,
        "ignore_tables": settings.ignore_tables})
    staging = _Staging(store, "access_log")
    try:
        while summary.pulled < settings.max_rows and mark.event_time < until:
            limit = min(settings.batch_rows, settings.max_rows - summary.pulled)
            body = watched.raw_query(_BATCH_SQL, fmt="JSONEachRow", parameters={
                "since": _micros(mark.event_time), "since_id": mark.query_id, "since_type": mark.type,
                "until": _micros(until), "tag": settings.exclude_comment, "limit": limit,
                "ignore_tables": settings.ignore_tables})
            rows = body.count(b"\n")
            if rows:
                label = f"{watched_key} system.query_log after {_micros(mark.event_time)}"
                batch = _load_batch(store, "access_log", staging, _lines(body, 1), label, source)
                _add(summary, batch)
                first = orjson.loads(body[: body.find(b"\n")])
                summary.first = summary.first or _record_time(first)
                last = _last_record(body)
                summary.last = _record_time(last)
            # A short batch means everything before `until` was read.
            mark = Mark(until) if rows < limit else Mark(_record_time(last), last["query_id"], last["type"])
            _advance(store, watched_key, mark, rows)
            summary.watermark = mark
            if rows < limit:
                break
    finally:
        staging.drop()
    summary.lag = max(server_now - summary.watermark.event_time, timedelta(0))
    summary.seconds = time.perf_counter() - started
    return summary


def _add(summary: PullSummary, batch: IngestSummary) -> None:
    summary.loaded += batch.loaded
    summary.duplicates += batch.duplicates
    summary.rejected += batch.rejected
    for reason, count in batch.reasons.items():
        summary.reasons[reason] = summary.reasons.get(reason, 0) + count


def _advance(store: Client, watched_key: str, mark: Mark, pulled: int) -> None:
    """Record the new watermark (only ever after the batch before it is stored)."""
    store.command(
        "INSERT INTO pull_watermarks (source, watched, event_time, query_id, type, pulled) VALUES "
        "({source:String}, {watched:String}, {time:DateTime64(6, 'UTC')}, {query_id:String}, {type:String}, "
        "{pulled:UInt64})",
        parameters={"source": query_log.NAME, "watched": watched_key, "time": _micros(mark.event_time),
                    "query_id": mark.query_id, "type": mark.type, "pulled": pulled})


def pull_role_grants(watched: Client, store: Client, watched_key: str) -> int:
    """Store the watched server's role grants as ``memberships`` (role → member); new rows only.

    Returns
    -------
    int
        Memberships added (an unchanged grant adds nothing).
    """
    body = watched.raw_query(_ROLE_GRANTS_SQL, fmt="JSONEachRow")
    if not body:
        return 0
    staging = _Staging(store, "memberships")
    try:
        summary = _load_batch(store, "memberships", staging, _lines(body, 1), f"{watched_key} system.role_grants")
    finally:
        staging.drop()
    return summary.loaded


def pull(watched: Client, store: Client, watched_key: str, settings: PullSettings | None = None) -> PullSummary:
    """Pull the query log, then the role grants (their failure is a note, not a failed pull)."""
    summary = pull_query_log(watched, store, watched_key, settings)
    if settings is not None and settings.role_grants is False:
        return summary
    try:
        summary.memberships = pull_role_grants(watched, store, watched_key)
    except ClickHouseError as exc:  # e.g. no SHOW ROLES privilege: the queries are still pulled
        summary.notes.append(f"system.role_grants not read: {str(exc).strip().splitlines()[0][:200]}")
    return summary
