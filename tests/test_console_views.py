"""The queue, overview and playbooks pages as an analyst reads them (issue 17), under AppTest on a real store.

Each test is one thing an analyst tripped over in a browser: wrong plurals, an empty queue that
did not say why, no age or reference, a queue silent about detection catching up or paging that
reaches nobody, empty grids, snake_case headers, a dry run on the wrong playbook.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from builders import alert
from console_org import _plain, console
from streamlit.testing.v1 import AppTest

from blastwall.access import User
from blastwall.schema import init_schema
from blastwall.store import close_store, is_open, open_store
from dashboard import style
from dashboard.state import ConsoleOptions, _cached_read, store_client
from detector.incidents import get_incident, incident_label, incident_refs, record_alert, transition
from detector.runs import StepRecord, record
from detector.triage import ACTIVE_STATUSES, QueueFilter, closed_counts
from playbooks.actions import write_control
from playbooks.context import incident_context
from playbooks.model import LIBRARY, load_library
from playbooks.paging import Pager, Route, RoutingConfig, Unrouted, default_routing, paging_configured, unrouted_pages

LONG_TITLE = "bulk_export on " + "svc-nightly-embedding-refresh-" * 5 + "end"


def _ref(org: dict, name: str) -> str:
    return incident_label(get_incident(org["client"], org["ids"][name]))


def _shown(app: AppTest) -> list[str]:
    """Every piece of text the page shows (Markdown unescaped)."""
    elements = [*app.title, *app.markdown, *app.caption, *app.info, *app.warning, *app.success, *app.error]
    return [_plain(e.value) for e in elements] + [str(m.label) + " " + str(m.value) for m in app.metric]


def _no_long_ids(app: AppTest) -> None:
    """No message and no table cell shows a 19-digit incident id."""
    for text in _shown(app):
        assert not re.search(r"\d{15,}", text), text
    for table in app.dataframe:
        for cell in table.value.astype(str).to_numpy().ravel():
            assert not re.search(r"\d{15,}", cell), cell


def _headers_in_words(app: AppTest) -> None:
    for table in app.dataframe:
        assert not [c for c in table.value.columns if "_" in str(c)], list(table.value.columns)
        assert len(table.value), f"an empty grid: {list(table.value.columns)}"


# --- the words the pages are built from ----------------------------------------------------


def test_counts_filters_and_progress_in_words() -> None:
    assert style.matching(1) == "1 incident matches" and style.matching(3) == "3 incidents match"
    assert QueueFilter().chosen() == [] and QueueFilter().default_statuses
    chosen = QueueFilter(severities=("SEV3",), statuses=("resolved", "false_positive"), assignee="bob").chosen()
    assert chosen == ["status resolved or false positive", "severity SEV3", "assignee bob"]
    assert style.nothing_matches([], ACTIVE_STATUSES, True, {"resolved": 0, "false_positive": 0}) == (
        "No open, acknowledged or contained incidents: nothing needs you now.")
    assert style.nothing_matches(["severity SEV3"], ACTIVE_STATUSES, True, {}) == (
        "No open, acknowledged or contained incident matches severity SEV3.")
    now = datetime(2026, 12, 6, 8, 17, 30, tzinfo=UTC)
    behind = {"watermark": datetime(2026, 12, 6, 7, 35, tzinfo=UTC), "lag_seconds": 42.5 * 60}
    assert style.detection_note(behind, now) == ("Detection is catching up: events are processed up to 07:35 UTC"
                                                 " (42 min behind); incidents may still appear.")
    assert style.detection_note({"watermark": now, "lag_seconds": 300.0}, now) is None
    assert "has not processed a step yet" in style.detection_note({"watermark": None, "lag_seconds": None}, now)
    assert style.age(now - timedelta(minutes=12, seconds=5), now) == "12 min"


# --- the queue ---------------------------------------------------------------------------


def test_queue_counts_in_words_and_shows_reference_age_and_whole_titles(org: dict) -> None:
    record_alert(org["client"], alert("bulk_export", "svc-long", "SEV3", title=LONG_TITLE,
                                                detected_at=datetime.now(UTC) - timedelta(minutes=12, seconds=5)))
    app = console(org, "viewer")
    assert not app.exception, app.exception
    assert any("4 incidents match" in c.value for c in app.caption)
    table = app.dataframe[0].value
    assert list(table.columns[:1]) == ["Ref"] and {"Age", "Detected", "Score", "Title"} <= set(table.columns)
    _headers_in_words(app)
    refs = [_ref(org, name) for name in ("fanout", "export")]
    assert list(table["Ref"][:2]) == refs
    assert LONG_TITLE in list(table["Title"])  # whole, not cut at 90 characters
    assert all(re.fullmatch(r"\d\.\d\d", score) for score in table["Score"])
    ages = dict(zip(table["Title"], table["Age"]))
    assert ages[LONG_TITLE] == "12 min"
    assert all("UTC" in detected and "ago" in detected for detected in table["Detected"])
    config = json.loads(app.dataframe[0].proto.columns)
    assert config["Title"]["width"] == "large"
    options = app.selectbox(key="q_open").options
    assert any(LONG_TITLE in option for option in options)
    assert any(option.startswith(f"{refs[0]} · SEV1 · ") for option in options)
    _no_long_ids(app)

    app.multiselect(key="q_severity").set_value(["SEV2"]).run()
    assert any("1 incident matches" in c.value for c in app.caption)


def test_an_empty_queue_says_why_and_clears_the_filters_the_analyst_set(org: dict) -> None:
    app = console(org, "viewer")
    app.multiselect(key="q_severity").set_value(["SEV3"]).run()
    assert any("No open, acknowledged or contained incident matches severity SEV3." == _plain(i.value)
               for i in app.info)
    app.button(key="q_clear").click().run()
    assert not app.exception, app.exception
    assert app.multiselect(key="q_severity").value == []
    assert len(app.dataframe[0].value) == 3

    app.multiselect(key="q_status").set_value(["resolved"]).run()
    assert any("No incident matches status resolved." == _plain(i.value) for i in app.info)
    app.button(key="q_clear").click().run()
    assert app.multiselect(key="q_status").value == list(ACTIVE_STATUSES)


def test_an_empty_queue_with_the_default_filters_says_nothing_needs_you(org: dict) -> None:
    client = org["client"]
    transition(client, org["ids"]["fanout"], "resolve", "ann")
    transition(client, org["ids"]["outlier"], "resolve", "ann")
    transition(client, org["ids"]["export"], "false_positive", "ann", reason="sanctioned")
    assert closed_counts(client) == {"resolved": 2, "false_positive": 1}
    app = console(org, "viewer")
    assert not app.exception, app.exception
    said = [_plain(i.value) for i in app.info]
    assert any(s.startswith("No open, acknowledged or contained incidents: nothing needs you now. Closed: "
                            "2 incidents resolved and 1 marked false positive") for s in said), said
    assert not any(b.key == "q_clear" for b in app.button)  # nothing of the analyst's to clear
    assert any("0 incidents match" in c.value for c in app.caption)


def test_the_queue_says_when_detection_is_catching_up(org: dict) -> None:
    app = console(org, "viewer")
    assert any("Detection has not processed a step yet" in i.value for i in app.info)
    mark = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=42)
    record(org["client"], StepRecord(mark - timedelta(minutes=5), mark, "done"))
    _cached_read.clear()  # what the page read a moment ago is cached for 5 s
    app.run()
    notes = [_plain(i.value) for i in app.info]
    assert any(n.startswith(f"Detection is catching up: events are processed up to {mark:%H:%M} UTC (42 min")
               and n.endswith("behind); incidents may still appear.") for n in notes), notes
    record(org["client"], StepRecord(mark, datetime.now(UTC) - timedelta(minutes=2), "done"))
    _cached_read.clear()
    app.run()
    assert not any("Detection" in i.value for i in app.info)
    assert {m.label: m.value for m in app.metric}["SEV1"] == "1"  # the counts stay


# --- paging that reaches nobody ---------------------------------------------------------------


def test_who_would_have_been_paged(client) -> None:
    assert not paging_configured(default_routing())
    assert paging_configured(RoutingConfig(channels={"oncall": "json://127.0.0.1:9/page"}))
    assert unrouted_pages(client) == Unrouted()
    now = datetime.now(UTC)
    ids = [record_alert(client, alert("bulk_export", key, severity)).incident_id
           for key, severity in (("ann", "SEV1"), ("bob", "SEV2"), ("cy", "SEV4"))]
    for incident_id in ids:
        Pager(client).page(get_incident(client, incident_id), now)
    assert unrouted_pages(client) == Unrouted(2, {"SEV1": 1, "SEV2": 1}, [])
    nowhere = RoutingConfig(channels={"oncall": []}, routes={"SEV4": Route(channels=["oncall"])})
    Pager(client, nowhere).page(get_incident(client, ids[2]), now)
    assert unrouted_pages(client) == Unrouted(3, {"SEV1": 1, "SEV2": 1, "SEV4": 1}, ["oncall"])


def test_the_queue_warns_when_paging_reaches_nobody(org: dict, tmp_path: Path) -> None:
    client = org["client"]
    for name in ("fanout", "export", "outlier"):  # the outlier (SEV4) has no route: never paged
        Pager(client).page(get_incident(client, org["ids"][name]), datetime.now(UTC))
    app = console(org, "viewer")
    warned = [_plain(w.value) for w in app.warning]
    assert any(w.startswith("Paging is not configured: pages are recorded but nobody is paged. 2 incidents would"
                            " have paged someone (1 SEV1, 1 SEV2") and "Configure `paging:` channels" in w
               for w in warned), warned

    settings = tmp_path / "settings.yaml"
    settings.write_text("paging:\n  channels: {oncall: 'json://127.0.0.1:9/page'}\n"
                        "  routes: {SEV1: {channels: [oncall]}}\n")
    configured = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py"),
                                   default_timeout=90)
    configured.session_state["options"] = ConsoleOptions(org["dsn"], settings, org["accounts"], False, False)
    configured.session_state["user"] = User("viewer", "Viewer", "viewer")
    configured.run()
    assert not configured.exception, configured.exception
    assert not any("Paging is not configured" in w.value for w in configured.warning)


# --- the overview ---------------------------------------------------------------------------


def test_overview_reads_in_words(org: dict) -> None:
    transition(org["client"], org["ids"]["outlier"], "false_positive", "ann", reason="a backup job")
    app = console(org, "viewer")
    app.switch_page("views/overview.py").run()
    assert not app.exception, app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert {"Access events", "Data catalogue entries", "Group memberships", "Identities", "Rejected rows",
            "Last step ended", "Behind now", "Events per second"} <= set(metrics)
    _headers_in_words(app)
    quality = next(t.value for t in app.dataframe if "False-positive share" in t.value.columns)
    share = dict(zip(quality["Detector"], quality["False-positive share"]))
    assert share == {"permission_fanout": "no verdicts yet", "bulk_export": "no verdicts yet",
                     "behaviour_outlier": "100%"}
    assert any(c.value.startswith("Events from ") and "UTC" in c.value for c in app.caption)


@pytest.fixture
def empty_store(store_dsn: str) -> Iterator[str]:
    client = open_store(store_dsn)
    init_schema(client)
    try:
        yield store_dsn
    finally:
        store_client.clear()
        while is_open(store_dsn):
            close_store(client)


def test_overview_of_a_store_without_incidents_says_why_instead_of_empty_grids(empty_store: str) -> None:
    app = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py"), default_timeout=90)
    app.session_state["dsn"] = empty_store
    app.session_state["user"] = User("vera", "Vera", "viewer")
    app.run()
    app.switch_page("views/overview.py").run()
    assert not app.exception, app.exception
    assert len(app.dataframe) == 0  # no grid reading "empty"
    assert any("No detector has opened an incident yet" in m.value for m in app.markdown)
    assert any("every ingested row was valid" in m.value for m in app.markdown)
    assert {m.label: m.value for m in app.metric}["Last step ended"] == "never"


# --- the playbooks page ----------------------------------------------------------------------


def test_dry_run_offers_the_playbooks_matching_the_incident_last_opened(org: dict) -> None:
    incident = org["ids"]["fanout"]
    app = console(org, "viewer", incident)
    app.switch_page("views/playbooks.py").run()
    assert not app.exception, app.exception
    assert app.text_input(key="dry_incident").value == _ref(org, "fanout")
    matching = [p.id for p in load_library([LIBRARY]).matching(incident_context(org["client"], incident))]
    assert matching and app.selectbox(key="dry_playbook").options == matching
    assert "artifact_download" not in matching
    app.button(key="dry_run").click().run()
    assert any(f"would run at SEV1 on {_ref(org, 'fanout')}; nothing was executed" in _plain(s.value)
               for s in app.success)
    _no_long_ids(app)

    app.toggle(key="dry_every").set_value(True).run()
    every = app.selectbox(key="dry_playbook").options
    assert every[:len(matching)] == matching and "artifact_download" in every
    app.selectbox(key="dry_playbook").set_value("artifact_download")
    app.button(key="dry_run").click().run()
    assert any(_plain(i.value).startswith(f"artifact_download does not match {_ref(org, 'fanout')} (SEV1, ")
               for i in app.info)
    _no_long_ids(app)


def test_dry_run_takes_a_reference_or_an_id(org: dict) -> None:
    app = console(org, "viewer")
    app.switch_page("views/playbooks.py").run()
    assert app.text_input(key="dry_incident").value == ""
    ref = _ref(org, "export")
    app.text_input(key="dry_incident").input(ref.lower()).run()
    assert not app.exception, app.exception
    assert "embedding_export" in app.selectbox(key="dry_playbook").options
    app.text_input(key="dry_incident").input(str(org["ids"]["outlier"])).run()
    assert any(f"No playbook matches {_ref(org, 'outlier')}" in _plain(i.value) for i in app.info)
    app.text_input(key="dry_incident").input("INC-999999").run()
    assert any("no incident INC-999999" in _plain(e.value) for e in app.error)


def test_containment_in_force_reads_in_words(org: dict) -> None:
    incident = org["ids"]["export"]
    at = datetime.now(UTC) - timedelta(minutes=3)
    write_control(org["client"], "suspend_identity", org["person"], True, incident_id=incident,
                  run_id=f"{incident}.embedding_export", step="suspend_identity", actor="responder",
                  reason="bulk export", at=at)
    app = console(org, "viewer")
    app.switch_page("views/playbooks.py").run()
    assert not app.exception, app.exception
    controls = next(t.value for t in app.dataframe if "Control" in t.value.columns)
    row = controls.iloc[0].to_dict()
    assert row["Control"] == "suspend identity" and row["On"] == org["person"]
    assert row["Incident"] == incident_refs(org["client"], [incident]).get(incident, str(incident))
    assert row["Playbook"] == "embedding_export" and row["Since"].endswith("(3 min ago)")
    _headers_in_words(app)
    assert len(app.expander) >= 11 and any("**Runbook**" in m.value for m in app.markdown)  # the catalogue
