"""The store: DSN resolution, schema creation and upgrade, and the embedded lock."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from blastwall.schema import applied_versions, init_schema, registered_migrations
from blastwall.store import (
    StoreError,
    StoreLockedError,
    close_store,
    default_dsn,
    open_store,
    parse_dsn,
    reset_embedded,
    resolve_dsn,
)


def test_dsn_precedence_is_flag_then_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BLASTWALL_DSN", raising=False)
    assert resolve_dsn(None) == default_dsn()
    assert default_dsn().startswith("chdb:///")
    monkeypatch.setenv("BLASTWALL_DSN", "chdb:///from/env")
    assert resolve_dsn(None) == "chdb:///from/env"
    assert resolve_dsn("clickhouse://u:p@db:8123/x") == "clickhouse://u:p@db:8123/x"


@pytest.mark.parametrize(
    ("dsn", "embedded"),
    [("chdb:///var/lib/bw", True), ("clickhouse://u:p@host:8123/db", False), ("https://host:8443/db", False)],
)
def test_parse_dsn_tells_embedded_from_server(dsn: str, embedded: bool) -> None:
    assert parse_dsn(dsn).is_embedded is embedded


@pytest.mark.parametrize("dsn", ["postgres://x/y", "chdb://", "chdb://memory", "clickhouse:///nohost"])
def test_parse_dsn_rejects_what_it_cannot_use(dsn: str) -> None:
    with pytest.raises(StoreError):
        parse_dsn(dsn)


def _tables(client) -> set[str]:
    return {row[0] for row in client.query("SHOW TABLES").result_rows}


def test_init_creates_every_table_and_is_idempotent(store_dsn: str) -> None:
    client = open_store(store_dsn)
    try:
        first = init_schema(client)
        assert {(m.package, m.version) for m in first} >= {("features.contract", 1), ("features.contract", 2)}
        contract = {"access_log", "resources", "memberships", "principals", "rejected_rows", "schema_migrations"}
        assert contract <= _tables(client)
        assert init_schema(client) == []
        latest = {package: max(v for v, _ in steps) for package, steps in registered_migrations().items()}
        assert applied_versions(client) == latest
    finally:
        close_store(client)


def test_init_upgrades_an_old_store_and_keeps_its_data(store_dsn: str) -> None:
    client = open_store(store_dsn)
    try:
        init_schema(client, up_to={"features.contract": 1})
        assert applied_versions(client)["features.contract"] == 1
        client.command(
            "INSERT INTO access_log (event_time, event_id, principal, action, resource) "
            "VALUES ('2026-10-05 10:00:00', 'e1', 'ann', 'read', 'ds.x')"
        )
        indexes = ("SELECT count() FROM system.data_skipping_indices"
                   " WHERE table = 'access_log' AND name = 'idx_event_id'")
        assert client.query(indexes).result_rows[0][0] == 0

        upgraded = init_schema(client)

        assert ("features.contract", 2) in {(m.package, m.version) for m in upgraded}
        assert client.query(indexes).result_rows[0][0] == 1
        assert client.query("SELECT event_id FROM access_log").result_rows == [("e1",)]
        assert init_schema(client) == []
    finally:
        close_store(client)


def test_same_process_shares_one_embedded_client(store_dsn: str, tmp_path: Path) -> None:
    first = open_store(store_dsn)
    second = open_store(store_dsn)
    try:
        assert first is second
        with pytest.raises(StoreError, match="one per process"):
            open_store(f"chdb://{tmp_path / 'other'}")
    finally:
        close_store(second)
        close_store(first)
    reopened = open_store(f"chdb://{tmp_path / 'other'}")  # the engine closed with its last user
    close_store(reopened)


_HOLDER = """
import sys, time
from blastwall.store import open_store
client = open_store(sys.argv[1])
print("ready", flush=True)
time.sleep(60)
"""


def test_second_process_gets_one_line_naming_the_holder(store_dsn: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, store_dsn], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match=rf"in use by process {holder.pid}"):
            open_store(store_dsn)
        with pytest.raises(StoreLockedError):
            reset_embedded(store_dsn)

        cli = subprocess.run([sys.executable, "-m", "blastwall.cli", "--dsn", store_dsn, "init"],
                             capture_output=True, text=True, timeout=120)

        assert cli.returncode == 2
        lines = cli.stderr.strip().splitlines()
        assert len(lines) == 1, cli.stderr
        assert lines[0].startswith("blastwall: the embedded store") and f"process {holder.pid}" in lines[0]
        assert "--dsn clickhouse://" in lines[0]
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while True:  # the lock goes with its process
        try:
            close_store(open_store(store_dsn))
            break
        except StoreLockedError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
