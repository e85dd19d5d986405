"""Pulling ClickHouse's own query log: which server is watched, and the scheduled pull job.

The watched server is ``--from DSN`` (or ``sources.clickhouse_query_log.from`` in the
settings), by default the store itself. An embedded store can only watch itself: chdb runs
one engine per process. The pull logic is :mod:`features.pull`; this module only builds the
clients and hosts the job (stable id ``pull-clickhouse-query-log``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

from apscheduler.schedulers.base import BaseScheduler
from clickhouse_connect.driver.client import Client

from blastwall.store import LOG_COMMENT, StoreError, close_store, open_store, parse_dsn
from features.pull import PullSettings, PullSummary, pull

log = logging.getLogger("blastwall.pull")

JOB_ID = "pull-clickhouse-query-log"


def watched_key(dsn: str) -> str:
    """The watched server's name in the watermark table: the DSN without credentials or options."""
    parsed = parse_dsn(dsn)
    if parsed.embedded_path is not None:
        return f"chdb://{parsed.embedded_path}"
    url = urlparse(dsn)
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.hostname}{port}{url.path}"


def _is_store(store_dsn: str, from_dsn: str | None) -> bool:
    return from_dsn is None or watched_key(from_dsn) == watched_key(store_dsn)


def own_tables(store: Client) -> str:
    """An RE2 pattern of the store's own tables (``db.table``), which are never watched data."""
    rows = store.query("SELECT database, name FROM system.tables WHERE database = currentDatabase()").result_rows
    if not rows:
        return "$^"
    database = re.escape(rows[0][0])
    return f"^{database}\\.({'|'.join(re.escape(name) for _, name in rows)})$"


def pull_once(store: Client, store_dsn: str, from_dsn: str | None = None,
              settings: PullSettings | None = None) -> PullSummary:
    """Pull the watched server's query log (and role grants) into the store once.

    Raises
    ------
    StoreError
        The watched server cannot be reached, or is another embedded store.
    clickhouse_connect.driver.exceptions.ClickHouseError
        A query failed (the watermark stays where it was).
    """
    settings = _with(settings or PullSettings(), exclude_comment=LOG_COMMENT)
    if _is_store(store_dsn, from_dsn):
        embedded = parse_dsn(store_dsn).is_embedded
        if embedded:
            store.command("SYSTEM FLUSH LOGS")  # the log table is made at its first flush
        if embedded and not int(store.query("EXISTS TABLE system.query_log").result_rows[0][0]):
            raise StoreError("the embedded store keeps no query log (it would hold only this process's own "
                             "queries): pull from a ClickHouse server with --from DSN")
        # Blastwall's own tables are not watched data; the embedded engine's log is flushed
        # first (it is ours), so what ran before the pull is in it.
        settings = _with(settings, ignore_tables=own_tables(store), flush_logs=settings.flush_logs or embedded,
                         settle=timedelta(0) if embedded else settings.settle,
                         role_grants=not embedded if settings.role_grants is None else settings.role_grants)
        return pull(store, store, watched_key(store_dsn), settings)
    assert from_dsn is not None
    if parse_dsn(from_dsn).is_embedded:
        raise StoreError("--from can name a ClickHouse server or the store itself, not another embedded store "
                         "(chdb runs one engine per process)")
    watched = open_store(from_dsn)
    try:
        return pull(watched, store, watched_key(from_dsn), settings)
    finally:
        close_store(watched)


def _with(settings: PullSettings, **changes: object) -> PullSettings:
    from dataclasses import replace

    return replace(settings, **changes)


def describe(summary: PullSummary) -> str:
    """One line: pulled N, from when to when, lag."""
    def moment(value: datetime | None) -> str:
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if value else "-"

    span = f"from {moment(summary.first)} to {moment(summary.last)}" if summary.pulled else "nothing new"
    extra = f", duplicates {summary.duplicates:,}" if summary.duplicates else ""
    extra += f", rejected {summary.rejected:,}" if summary.rejected else ""
    extra += f", memberships {summary.memberships:,}" if summary.memberships else ""
    lag = int(summary.lag.total_seconds())
    return (f"pulled {summary.loaded:,} ({span}){extra}; lag {lag}s; watermark "
            f"{moment(summary.watermark.event_time if summary.watermark else None)}")


@dataclass
class PullJob:
    """The scheduled pull: one run per interval, never raising (an outage is retried next run)."""

    store: Client
    store_dsn: str
    from_dsn: str | None = None
    settings: PullSettings = field(default_factory=PullSettings)
    lock: threading.Lock | threading.RLock = field(default_factory=threading.Lock)
    last: PullSummary | None = None
    last_error: str = ""
    #: Called (outside the lock) after a pull that loaded events: the fast path checks them at once.
    after_pull: Callable[[], object] | None = None

    def run(self) -> PullSummary | None:
        """Pull once under the store lock; failures are logged and kept in ``last_error``."""
        summary = self._pull()
        if summary is not None and summary.loaded and self.after_pull is not None:
            self.after_pull()
        return summary

    def _pull(self) -> PullSummary | None:
        with self.lock:
            try:
                self.last = pull_once(self.store, self.store_dsn, self.from_dsn, self.settings)
                self.last_error = ""
                if self.last.pulled:
                    log.info("%s", describe(self.last))
                for note in self.last.notes:
                    log.warning("%s", note)
            except Exception as error:  # noqa: BLE001 - the watermark did not move: the next run catches up
                self.last_error = str(error).strip().splitlines()[0][:300] if str(error).strip() else repr(error)
                log.error("pull of the ClickHouse query log failed: %s", self.last_error)
                self.last = None
            return self.last


def schedule_pull(scheduler: BaseScheduler, job: PullJob, every: timedelta) -> BaseScheduler:
    """Add the pull job (stable id, coalesced, one at a time; replaces a job of the same id)."""
    scheduler.add_job(job.run, "interval", seconds=every.total_seconds(), id=JOB_ID, coalesce=True,
                      max_instances=1, misfire_grace_time=120, replace_existing=True,
                      next_run_time=datetime.now(UTC))
    return scheduler
