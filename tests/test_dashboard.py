"""The console, run by Streamlit's AppTest against a real embedded store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from blastwall.access import User
from blastwall.schema import init_schema
from blastwall.store import close_store, is_open, open_store
from dashboard.state import store_client
from features.ingest import ingest_file

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


@pytest.fixture
def console_dsn(store_dsn: str) -> Iterator[str]:
    """A store the console opens through its own cached client, closed after the test."""
    client = open_store(store_dsn)
    init_schema(client)
    try:
        yield store_dsn
    finally:
        store_client.clear()  # the console caches its client for the life of its process;
        while is_open(store_dsn):  # release its reference too, so the next test opens its own store
            close_store(client)


def run_console(dsn: str) -> AppTest:
    """The overview page, signed in as a viewer."""
    app = AppTest.from_file(APP, default_timeout=60)
    app.session_state["dsn"] = dsn
    app.session_state["user"] = User("vera", "Vera", "viewer")
    app.run()
    return app.switch_page("views/overview.py").run()


def test_overview_shows_an_empty_store(console_dsn: str) -> None:
    app = run_console(console_dsn)
    assert not app.exception
    assert app.title[0].value == "Overview"
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Access events"] == "0" and metrics["Rejected rows"] == "0"
    assert any("No events yet" in info.value for info in app.info)


def test_overview_counts_events_and_lists_rejections(console_dsn: str, tmp_path: Path) -> None:
    rows = [{"event_time": "2026-10-05T09:00:00Z", "event_id": f"e{i}", "principal": "ann", "action": "read",
             "resource": "ds.a"} for i in range(3)] + [{"event_time": "soon", "principal": "x", "action": "read",
                                                       "resource": "r"}]
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    client = open_store(console_dsn)
    try:
        ingest_file(client, path)
    finally:
        close_store(client)

    app = run_console(console_dsn)

    assert not app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Access events"] == "3" and metrics["Rejected rows"] == "1"
    assert "5 Oct" in app.caption[0].value and "09:00 UTC" in app.caption[0].value  # the viewer's zone: UTC here
    table = next(t.value for t in app.dataframe if "Reason" in t.value.columns)
    assert list(table["Reason"]) == ["unparsable event_time (want ISO-8601)"] and list(table["Line"]) == ["4"]
