"""Shared fixtures: a real embedded ClickHouse store in a temporary directory (never a mock)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from blastwall.schema import init_schema
from blastwall.store import close_store, open_store


@pytest.fixture
def store_dsn(tmp_path: Path) -> str:
    """A DSN for an embedded store of this test's own."""
    return f"chdb://{tmp_path / 'store'}"


@pytest.fixture
def client(store_dsn: str) -> Iterator[Client]:
    """An initialised embedded store, closed after the test so the next one can open its own."""
    store = open_store(store_dsn)
    init_schema(store)
    try:
        yield store
    finally:
        close_store(store)


@pytest.fixture
def receiver() -> Iterator[Any]:
    """A real HTTP receiver on 127.0.0.1 (webhooks, paging)."""
    from receiver import Receiver

    with Receiver() as running:
        yield running


# The console's test organisation (`org`), shared by the console's AppTest files.
from console_org import org  # noqa: E402, F401
