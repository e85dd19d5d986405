"""Pulling ClickHouse's own query log: real queries on a real embedded engine, then the pull.

The embedded store keeps a real ``system.query_log`` (blastwall.store configures chdb to),
so the watched server here is the store itself: its tables in another database, queried
without blastwall's ``log_comment`` tag, the way a notebook or a pipeline would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from clickhouse_connect.driver.client import Client
from test_cli import run

import features.pull
from blastwall.pulling import JOB_ID, PullJob, pull_once, schedule_pull, watched_key
from blastwall.schema import init_schema
from blastwall.store import close_store, open_store
from features.pull import PullSettings, watermark


def watch(client: Client, *statements: str) -> list[str]:
    """Run statements as someone other than blastwall (no tag); returns the errors' texts."""
    errors = []
    for sql in statements:
        try:
            client.command(sql, settings={"log_comment": "notebook"})
        except Exception as error:  # noqa: BLE001 - refused and failing queries are part of the story
            errors.append(str(error))
    return errors


def pulled(client: Client) -> dict[str, dict]:
    """The pulled rows by the query's first 40 characters."""
    result = client.query(
        "SELECT attributes['query'], action, resource, related, grantee, status, rows, bytes, principal, "
        "principal_type, attributes FROM access_log WHERE attributes['source'] = 'clickhouse-query-log' "
        "ORDER BY event_time")
    return {row[0][:40]: dict(zip(["query", "action", "resource", "related", "grantee", "status", "rows",
                                   "bytes", "principal", "principal_type", "attributes"], row))
            for row in result.result_rows}


@pytest.fixture
def client(store_dsn: str) -> Iterator[Client]:
    """An initialised embedded store that keeps a ``system.query_log`` (off by default)."""
    store = open_store(store_dsn, query_log=True)
    init_schema(store)
    try:
        yield store
    finally:
        close_store(store)


@pytest.fixture
def traffic(client: Client, tmp_path: Path) -> Client:
    errors = watch(
        client,
        "CREATE DATABASE IF NOT EXISTS train",
        "CREATE TABLE train.chats (id UInt64, text String) ENGINE = MergeTree ORDER BY id",
        "CREATE TABLE train.perf (id UInt64, score Float64) ENGINE = MergeTree ORDER BY id",
        "INSERT INTO train.chats SELECT number, toString(number) FROM numbers(1000)",
        "INSERT INTO train.perf SELECT number, number / 3 FROM numbers(500)",
        "SELECT count() FROM train.chats WHERE id < 100",
        "SELECT * FROM train.chats AS c INNER JOIN train.perf AS p USING id FORMAT Null",
        f"INSERT INTO FUNCTION file('{tmp_path / 'leak.csv'}', 'CSV') SELECT * FROM train.chats",
        "GRANT SELECT ON train.chats TO bob, carol",
        "REVOKE SELECT ON train.chats FROM bob",
        "CREATE USER intern",
        "TRUNCATE TABLE train.perf",
        "SELECT 1",
        "SELECT count() FROM system.tables",
    )
    # The embedded engine has no writeable access storage: GRANT/REVOKE fail (code 511),
    # and the default user may not create users (497, ACCESS_DENIED).
    assert len(errors) == 3 and "ACCESS_DENIED" in errors[2]
    return client


def test_pull_maps_real_queries(traffic: Client, store_dsn: str, tmp_path: Path) -> None:
    summary = pull_once(traffic, store_dsn)

    rows = pulled(traffic)
    assert summary.loaded == len(rows) > 0
    single = rows["SELECT count() FROM train.chats WHERE id"]
    assert (single["action"], single["resource"], single["rows"], single["status"]) == (
        "query", "train.chats", 1000, "ok")
    join = rows["SELECT * FROM train.chats AS c INNER JOI"]
    assert (join["action"], join["resource"], join["related"]) == ("join", "train.chats", ["train.perf"])
    export = rows[f"INSERT INTO FUNCTION file('{tmp_path / 'leak.csv'}'"[:40]]
    assert (export["action"], export["resource"], export["rows"]) == ("export", "train.chats", 1000)
    assert export["attributes"]["destination"] == f"file:{tmp_path / 'leak.csv'}"
    grant = rows["GRANT SELECT ON train.chats TO bob, caro"]
    assert (grant["action"], grant["resource"], grant["grantee"], grant["status"]) == (
        "grant", "train.chats", "bob", "error")
    assert grant["attributes"]["grantees"] == "bob,carol" and grant["attributes"]["exception_code"] == "511"
    revoke = rows["REVOKE SELECT ON train.chats FROM bob"]
    assert (revoke["action"], revoke["resource"], revoke["grantee"]) == ("revoke", "train.chats", "bob")
    denied = rows["CREATE USER intern"]
    assert (denied["status"], denied["attributes"]["exception_code"]) == ("denied", "497")
    assert rows["TRUNCATE TABLE train.perf"]["action"] == "delete"
    write = rows["INSERT INTO train.chats SELECT number, t"]
    assert (write["action"], write["resource"], write["rows"]) == ("write", "train.chats", 1000)
    assert {r["principal"] for r in rows.values()} == {"default"}
    assert {r["principal_type"] for r in rows.values()} == {"service"}
    # Constants, system tables and every query blastwall sent itself are not access.
    assert "SELECT 1" not in rows and not any("system." in q for q in rows)
    assert all(r["attributes"].get("log_comment") == "notebook" for r in rows.values())
    assert not any(r["resource"].startswith("default.") for r in rows.values())


def test_pulling_again_adds_nothing_and_the_watermark_advances(traffic: Client, store_dsn: str) -> None:
    first = pull_once(traffic, store_dsn)
    mark = watermark(traffic, watched_key(store_dsn))
    again = pull_once(traffic, store_dsn)
    assert (again.loaded, again.duplicates) == (0, 0)
    assert watermark(traffic, watched_key(store_dsn)).event_time >= mark.event_time

    watch(traffic, "SELECT max(score) FROM train.perf")
    later = pull_once(traffic, store_dsn)
    assert later.loaded == 1 and later.first > first.last
    assert watermark(traffic, watched_key(store_dsn)).event_time > mark.event_time
    count = traffic.query("SELECT count() FROM access_log").result_rows[0][0]
    assert count == first.loaded + 1


def test_small_batches_give_the_same_rows(traffic: Client, store_dsn: str) -> None:
    summary = pull_once(traffic, store_dsn, settings=PullSettings(batch_rows=2))
    assert summary.loaded == len(pulled(traffic)) >= 9
    assert pull_once(traffic, store_dsn).loaded == 0


def test_a_crash_before_the_watermark_moves_loses_nothing(traffic: Client, store_dsn: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object) -> None:
        raise OSError("killed between storing a batch and advancing the watermark")

    monkeypatch.setattr(features.pull, "_advance", crash)
    with pytest.raises(OSError):
        pull_once(traffic, store_dsn)
    stored = len(pulled(traffic))
    assert stored > 0 and watermark(traffic, watched_key(store_dsn)) is None
    monkeypatch.undo()

    retried = pull_once(traffic, store_dsn)
    assert (retried.loaded, retried.duplicates) == (0, stored)
    assert len(pulled(traffic)) == stored


def test_configured_patterns_say_who_is_human_or_agent(traffic: Client, store_dsn: str) -> None:
    pull_once(traffic, store_dsn, settings=PullSettings(human_pattern="^def"))
    assert {r["principal_type"] for r in pulled(traffic).values()} == {"human"}


def test_role_grants_become_memberships(client: Client, store_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The embedded engine cannot hold roles: a table of system.role_grants' shape stands in.
    watch(client, "CREATE DATABASE IF NOT EXISTS acl",
          "CREATE TABLE acl.role_grants (user_name Nullable(String), role_name Nullable(String), "
          "granted_role_name String) ENGINE = Memory",
          "INSERT INTO acl.role_grants VALUES ('bob', NULL, 'analysts'), (NULL, 'analysts', 'readers')")
    monkeypatch.setattr(features.pull, "_ROLE_GRANTS_SQL",
                        features.pull._ROLE_GRANTS_SQL.replace("system.role_grants", "acl.role_grants"))
    settings = PullSettings(role_grants=True)  # (skipped by default in an embedded store: it holds no roles)
    assert pull_once(client, store_dsn, settings=settings).memberships == 2
    assert pull_once(client, store_dsn, settings=settings).memberships == 0
    assert sorted(client.query("SELECT `group`, member FROM memberships").result_rows) == [
        ("analysts", "bob"), ("readers", "analysts")]


def test_the_command_prints_one_line(traffic: Client, store_dsn: str, capsys, monkeypatch) -> None:
    code, out, err = run(capsys, monkeypatch, "--dsn", store_dsn, "pull", "--source", "clickhouse-query-log")
    assert (code, err) == (0, "")
    assert out.startswith("pulled ") and " to " in out and "lag " in out and out.count("\n") == 1
    code, out, _ = run(capsys, monkeypatch, "--dsn", store_dsn, "pull", "--source", "clickhouse-query-log")
    assert code == 0 and out.startswith("pulled 0 (nothing new)")


@pytest.mark.parametrize(("source", "message"), [
    ("--from=chdb:///somewhere/else", "not another embedded store"),
    ("--from=clickhouse://nobody@127.0.0.1:9/db", "cannot reach ClickHouse"),
    ("--from=ftp://x", "unknown DSN scheme"),
])
def test_command_errors_are_one_line(client: Client, store_dsn: str, capsys, monkeypatch, source: str,
                                     message: str) -> None:
    code, out, err = run(capsys, monkeypatch, "--dsn", store_dsn, "pull", "--source", "clickhouse-query-log",
                         source)
    assert code == 2 and out == "" and err.startswith("blastwall: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_scheduled_job_survives_an_outage(client: Client, store_dsn: str) -> None:
    scheduler = BackgroundScheduler(timezone="UTC")
    job = PullJob(client, store_dsn, "clickhouse://nobody@127.0.0.1:9/db")
    schedule_pull(scheduler, job, __import__("datetime").timedelta(seconds=30))
    added = scheduler.get_job(JOB_ID)
    assert (added.coalesce, added.max_instances) == (True, 1)

    assert job.run() is None and "cannot reach ClickHouse" in job.last_error
    assert watermark(client, "clickhouse://127.0.0.1:9/db") is None  # retried from the same point
    job.from_dsn = None
    assert job.run() is not None and job.last_error == ""


def test_an_embedded_store_without_a_query_log_says_where_to_pull_from(tmp_path: Path) -> None:
    """A fresh process's embedded engine keeps no query log: one line naming --from, exit 2."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "blastwall.cli", "--dsn", f"chdb://{tmp_path / 'fresh'}", "pull",
                           "--source", "clickhouse-query-log"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("blastwall: ") and "--from DSN" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
