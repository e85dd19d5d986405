"""The console's principal and resource pages under AppTest, on the generated organisation (a real store)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyarrow as pa
from builders import event_row
from console_org import MIDNIGHT, _plain, console
from streamlit.testing.v1 import AppTest

from dashboard import style
from detector.incidents import get_incident
from features.contract import arrow_schema

HOSTILE = "**bold** [click](http://evil.example) <b>x</b>"


def _page(org: dict, kind: str, name: str | None = None, by: str = "query") -> AppTest:
    """The console signed in as a viewer, on an entity page opened for ``name`` (by link or in the session)."""
    app = console(org, "viewer")
    if name is not None and by == "query":
        app.query_params["name"] = name
    elif name is not None:
        app.session_state[f"{kind}_name"] = name
    app.switch_page(f"views/{kind}.py").run()
    assert not app.exception, app.exception
    return app


def _table(app: AppTest, column: str) -> Any:
    """The first table shown with this column."""
    return next(t.value for t in app.dataframe if column in t.value.columns)


def _grant_to_all_staff(org: dict) -> None:
    """The grant the fanout incident is about, as its owner records it in the access log."""
    client = org["client"]
    owner = client.query("SELECT owner FROM resources FINAL WHERE resource = {r:String}",
                         parameters={"r": org["restricted"]}).result_rows[0][0]
    row = event_row(MIDNIGHT - timedelta(hours=14), owner, "grant", org["restricted"], grantee="all-staff",
                    event_id="test-grant")
    client.insert_arrow("access_log", pa.Table.from_pylist([{**row, "attributes": []}],
                                                           schema=arrow_schema("access_log")))


def _reachable(org: dict, group: str) -> set[str]:
    """Principals in ``group`` through nested groups (worked out here from the memberships)."""
    rows = org["client"].query("SELECT `group`, member FROM memberships FINAL WHERE NOT removed").result_rows
    members: dict[str, set[str]] = {}
    for parent, member in rows:
        members.setdefault(parent, set()).add(member)
    found, todo, seen = set(), [group], {group}
    while todo:
        for member in members.get(todo.pop(), set()):
            if member in members and member not in seen:
                seen.add(member)
                todo.append(member)
            elif member not in members:
                found.add(member)
    return found


def test_the_principal_page_shows_team_peers_activity_data_and_incidents(org: dict) -> None:
    client, person = org["client"], org["person"]
    app = _page(org, "principal", person)
    assert app.title[0].value == style.text(person)
    team = client.query("SELECT team FROM principals FINAL WHERE principal = {p:String}",
                        parameters={"p": person}).result_rows[0][0]
    assert any(f"in team **{style.text(team)}**" in m.value for m in app.markdown)
    peers = [r[0] for r in client.query(
        "SELECT principal FROM principals FINAL WHERE team = {t:String} AND principal_type != 'service'"
        " AND principal != {p:String} ORDER BY principal", parameters={"t": team, "p": person}).result_rows]
    assert peers and {m.label: m.value for m in app.metric}["peers"] == str(len(peers))
    links = [element.proto.label for element in app.get("page_link")]
    assert links == [style.text(peer) for peer in peers[:6]]  # names as text (e-mail addresses not linked)
    assert len(app.get("vega_lite_chart")) == 1  # its activity against its peers'
    touched = _table(app, "Data")
    logged = {r[0] for r in client.query("SELECT DISTINCT resource FROM access_log WHERE principal = {p:String}",
                                         parameters={"p": person}).result_rows}
    assert logged <= set(touched["Data"])
    incidents = _table(app, "Incident")
    assert set(incidents["Ref"]) == {_ref(org, "fanout"), _ref(org, "export")}
    assert sorted(incidents["Severity"]) == ["SEV1", "SEV2"] and set(incidents["Status"]) == {"open"}
    assert any(f"No containment is in force on {style.text(person)}" in m.value for m in app.markdown)


def test_the_resource_page_shows_who_can_read_it_who_read_it_and_its_incident(org: dict) -> None:
    _grant_to_all_staff(org)
    restricted = org["restricted"]
    app = _page(org, "resource", restricted, by="session")
    assert app.title[0].value == style.text(restricted)
    assert any("A **restricted** dataset" in _plain(m.value) for m in app.markdown)
    assert any("**all-staff** (a group reaching" in _plain(m.value) for m in app.markdown)
    audience = _table(app, "Granted to")
    assert set(audience["Who"]) == _reachable(org, "all-staff") and set(audience["Granted to"]) == {"all-staff"}
    assert audience["Through groups"].str.startswith("all-staff").all()
    readers = _table(app, "Reads")
    assert len(readers) > 0
    incidents = _table(app, "Incident")
    assert list(incidents["Ref"]) == [_ref(org, "fanout")]


def test_an_unknown_name_says_so_and_offers_the_picker(org: dict) -> None:
    for kind in ("principal", "resource"):
        app = _page(org, kind, HOSTILE)
        warning = app.warning[0].value
        assert f"No {kind} named {style.text(HOSTILE)} is" in warning  # as text: no bold, no link, no HTML
        assert app.text_input(key=f"{kind}_search") is not None
        assert not app.dataframe


def test_a_page_opened_without_a_name_offers_a_picker_that_opens_one(org: dict) -> None:
    app = _page(org, "principal")
    assert app.title[0].value == "Principal" and any("No principal is chosen" in i.value for i in app.info)
    app.text_input(key="principal_search").input(org["person"][:6]).run()
    assert org["person"] in app.selectbox(key="principal_pick").options
    app.selectbox(key="principal_pick").set_value(org["person"])
    app.button(key="principal_pick_open").click().run()
    assert not app.exception, app.exception
    assert app.title[0].value == style.text(org["person"])


def test_picking_an_incident_opens_it_in_the_incident_view(org: dict) -> None:
    app = _page(org, "principal", org["person"])
    app.selectbox(key="principal_incident").set_value(org["ids"]["export"])
    app.button(key="principal_incident_button").click().run()
    assert not app.exception, app.exception
    assert app.session_state["incident_id"] == org["ids"]["export"]
    assert app.title[0].value == style.text(f"bulk_export on {org['person']}")

    app = _page(org, "resource", org["restricted"])
    app.button(key="resource_incident_button").click().run()
    assert app.session_state["incident_id"] == org["ids"]["fanout"]
    assert app.title[0].value.startswith(style.text("permission_fanout on"))


def test_from_the_data_a_principal_touched_to_its_readers_and_back(org: dict) -> None:
    app = _page(org, "principal", org["person"])
    most_sensitive = _table(app, "Data")["Data"].iloc[0]
    app.selectbox(key="principal_data").set_value(most_sensitive)
    app.button(key="principal_data_button").click().run()
    assert not app.exception, app.exception
    assert app.title[0].value == style.text(most_sensitive)
    app.switch_page("views/resource.py")  # AppTest runs its own page next, whatever the script switched to
    readers = list(_table(app.run(), "Reads")["Who"])
    app.selectbox(key="resource_reader").set_value(readers[-1])
    app.button(key="resource_reader_button").click().run()
    assert not app.exception, app.exception
    assert app.title[0].value == style.text(readers[-1])


def _ref(org: dict, name: str) -> str:
    """The short reference of one of the organisation's incidents."""
    return get_incident(org["client"], org["ids"][name])["ref"]
