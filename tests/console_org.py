"""The console's test organisation: a generated company with three incidents and one account per role.

Shared by the console's AppTest files: ``org`` is registered in conftest.py; import ``console`` and
``open_incident`` from here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from builders import alert
from streamlit.testing.v1 import AppTest

from blastwall.access import User, add_account
from blastwall.schema import init_schema
from blastwall.simulation import OrgSpec, write_to_store
from blastwall.store import close_store, is_open, open_store
from dashboard.state import ConsoleOptions, store_client
from detector.incidents import record_alert

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
NOW = datetime.now(UTC).replace(microsecond=0)
MIDNIGHT = NOW.replace(hour=0, minute=0, second=0)
ROLES = ("viewer", "analyst", "responder", "admin")


def _plain(markdown: str) -> str:
    """What a reader sees of Markdown whose data was escaped (see dashboard.style.text)."""
    return re.sub(r"\\(.)", r"\1", markdown)


@pytest.fixture
def org(store_dsn: str, tmp_path: Path) -> Iterator[dict]:
    """A generated organisation with three incidents, and one account per role."""
    client = open_store(store_dsn)
    init_schema(client)
    write_to_store(client, OrgSpec(principals=60, days=5, start=MIDNIGHT - timedelta(days=5)))
    restricted = client.query("SELECT resource FROM resources FINAL WHERE sensitivity = 'restricted'"
                              " AND kind = 'dataset' ORDER BY resource LIMIT 1").result_rows[0][0]
    embedding = client.query("SELECT resource FROM resources FINAL WHERE kind = 'embedding' ORDER BY resource"
                             " LIMIT 1").result_rows[0][0]
    person = client.query("SELECT principal FROM principals FINAL WHERE principal_type = 'human' ORDER BY principal"
                          " LIMIT 1").result_rows[0][0]
    seen = MIDNIGHT - timedelta(hours=14)  # inside the generated period: there is evidence

    def incident(detector: str, key: str, severity: str, entity: str, principals: tuple, resources: tuple,
                 explanation: list) -> int:
        return record_alert(client, alert(
            detector, key, severity, at=seen, entity=entity, principals=principals, resources=resources,
            explanation=explanation, last_seen=seen + timedelta(hours=6),
            detected_at=NOW - timedelta(minutes=5))).incident_id

    ids = {
        "fanout": incident("permission_fanout", f"{restricted} -> all-staff", "SEV1", "grant", (person,),
                           (restricted,), [{"feature": "audience_gain", "value": 55, "baseline": 0, "weight": 1.0},
                                           {"rule": "grant.mass_audience", "severity_points": {"policy": 4}}]),
        "export": incident("bulk_export", person, "SEV2", "principal", (person,), (embedding,),
                           [{"feature": "bytes_exported", "value": 9e9, "baseline": 1e6, "weight": 0.9}]),
        "outlier": incident("behaviour_outlier", "svc-x", "SEV4", "principal", ("svc-x",), (), []),
    }
    accounts = tmp_path / "accounts.yaml"
    for role in ROLES:
        add_account(accounts, role, role, f"{role}-password", name=role.title())
    try:
        yield {"dsn": store_dsn, "client": client, "ids": ids, "accounts": accounts, "person": person,
               "restricted": restricted}
    finally:
        store_client.clear()
        while is_open(store_dsn):
            close_store(client)


def console(org: dict, role: str | None = "analyst", incident: int | None = None, tab: str | None = None) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=90)
    app.session_state["options"] = ConsoleOptions(org["dsn"], None, org["accounts"], False, False)
    if role is not None:
        app.session_state["user"] = User(role, role.title(), role)
    if incident is not None:
        app.session_state["incident_id"] = incident
    if tab is not None:
        app.session_state["incident_tab"] = tab
    return app.run()


def open_incident(org: dict, role: str, incident: int, tab: str | None = None) -> AppTest:
    """The incident view, with one of its tabs open (the first, "Why", by default)."""
    app = console(org, role, incident, tab)
    app.switch_page("views/incident.py").run()
    assert not app.exception, app.exception
    return app
