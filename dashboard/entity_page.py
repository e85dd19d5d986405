"""What the principal and resource pages share: tables as people read them, sentences, the picker.

Presentation only: the profiles come from :mod:`detector.entities`; here they become rows
with readable columns and lines of Markdown in which every name from the logs goes
through :func:`dashboard.style.text` (names from logs are hostile).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import links, style
from dashboard.state import read
from detector.entities import entity_names
from detector.incidents import incident_label

INCIDENT_PAGE = "views/incident.py"
#: What each kind of control does to its target, in words.
CONTROL_WORDS = {"identity": "identity suspended", "grant": "grant revoked", "resource": "quarantined",
                 "training_run": "training run paused"}
def now() -> datetime:
    """Now (UTC), for the pages' "when" columns."""
    return datetime.now(UTC)


def window_end() -> datetime:
    """Where the pages' windows end: now rounded up to the minute, so a page's reads keep one cache key."""
    return datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)


def _shown(table: pd.DataFrame, now: datetime, zone: tzinfo) -> pd.DataFrame:
    """A table as people read it, with the entity pages' labels."""
    # An entity page lists incidents by title: the column reads "Incident" there.
    return style.readable_table(table.rename(columns={"title": "Incident"}), now, zone)


def touched_table(touched: pd.DataFrame, now: datetime, zone: tzinfo) -> pd.DataFrame:
    """The data a principal touched, as people read it."""
    columns = ["resource", "sensitivity", "kind", "owner_team", "events", "reads", "denied", "bytes", "first_seen",
               "last_seen"]
    return _shown(touched[columns], now, zone)


def readers_table(readers: pd.DataFrame, now: datetime, zone: tzinfo) -> pd.DataFrame:
    """Who read a resource and when, as people read it."""
    return _shown(readers[["principal", "principal_type", "reads", "rows", "bytes", "first_read", "last_read"]],
                  now, zone)


def audience_table(audience: pd.DataFrame) -> pd.DataFrame:
    """Who can read a resource and through which groups (a grant to the principal itself: "directly")."""
    shown = audience[["principal", "principal_type", "team", "granted_to", "through"]].copy()
    shown["through"] = [chain or "directly" for chain in shown["through"]]
    return _shown(shown, datetime.now(UTC), UTC)


def groups_table(groups: pd.DataFrame) -> pd.DataFrame:
    """The groups that hold a principal (a direct membership: "directly")."""
    shown = groups[["group", "through"]].copy()
    shown["through"] = [chain or "directly" for chain in shown["through"]]
    return _shown(shown, datetime.now(UTC), UTC)


def incident_table(incidents: Sequence[dict[str, Any]], now: datetime, zone: tzinfo) -> pd.DataFrame:
    """Incidents as rows: severity, title, status, when detected."""
    rows = [{"ref": incident_label(i), "severity": i["severity"], "title": i["title"], "status": i["status"],
             "detected": style.when(i["detected_at"], now, zone)} for i in incidents]
    return _shown(pd.DataFrame(rows, columns=["ref", "severity", "title", "status", "detected"]), now, zone)


def incidents_caption(count: int, listed: int) -> str:
    """How many incidents name an entity, and which are listed when not all are."""
    said = f"{style.plural(count, 'incident names', 'incidents name')} it"
    return said + (f"; the newest {listed:,} are listed." if listed < count else ".")


def incident_choice(incident: dict[str, Any]) -> str:
    """One incident as a choice in a list (plain text: a selectbox shows no Markdown)."""
    return f"{incident_label(incident)} · {incident['severity']} · {incident['title']} · {incident['status']}"


def activity_chart(activity: pd.DataFrame) -> pd.DataFrame:
    """A principal's activity per day and its peers' median, indexed by day, for ``st.line_chart``."""
    chart = activity.set_index("day")[["events", "peer_median"]].rename(
        columns={"events": "This principal", "peer_median": "Peers' median"})
    if chart["Peers' median"].isna().all():
        chart = chart.drop(columns=["Peers' median"])
    chart.index = chart.index.tz_localize(None)
    return chart


def principal_summary(profile: Any) -> str:
    """A principal's catalogue row in words (Markdown, its names escaped)."""
    kind = profile.principal_type or "principal of unknown type"
    words = [f"A {style.text(kind)}"]
    words.append(f"in team **{style.text(profile.team)}**" if profile.team else "in no team")
    catalogue = profile.catalogue
    if catalogue is None:
        return " ".join(words) + ". It is not in the principals catalogue (seen in the logs or incidents only)."
    if catalogue.get("title"):
        words.append(f"({style.text(catalogue['title'])})")
    sentence = " ".join(words)
    if catalogue.get("manager"):
        sentence += f", managed by {style.text(catalogue['manager'])}"
    return sentence + "."


def resource_summary(catalogue: dict[str, Any] | None) -> str:
    """A resource's catalogue row in words (Markdown, its names escaped)."""
    if catalogue is None:
        return "Not in the resources catalogue: its kind, owner and sensitivity are unknown."
    kind = catalogue["kind"].replace("_", " ")
    sentence = f"A **{style.text(catalogue['sensitivity'])}** {style.text(kind)}"
    if catalogue["owner"]:
        sentence += f", owned by {style.text(catalogue['owner'])}"
        if catalogue["owner_team"] != catalogue["owner"]:
            sentence += f" (team {style.text(catalogue['owner_team'])})"
    else:
        sentence += " with no owner recorded"
    categories = ", ".join(catalogue["categories"])
    sentence += f". Categories: {style.text(categories)}." if categories else ". No categories recorded."
    if catalogue["sanitized"]:
        sentence += " Marked sanitized."
    return sentence


def grant_lines(grants: pd.DataFrame, now: datetime, zone: tzinfo) -> list[str]:
    """One Markdown line per grant in force: to whom, how many it reaches, by whom, when."""
    lines = []
    for grant in grants.itertuples():
        reach = (f"a group reaching {style.plural(int(grant.reaches), 'principal')}" if grant.is_group
                 else "the principal itself")
        lines.append(f"- **{style.text(grant.grantee)}** ({reach}), granted by {style.text(grant.granted_by)} "
                     f"{style.text(style.when(grant.granted_at, now, zone))}")
    return lines


def containment_lines(controls: Sequence[dict[str, Any]], now: datetime, zone: tzinfo) -> list[str]:
    """One Markdown line per control in force: what, on what, by whom, when, why."""
    return [f"- **{style.text(CONTROL_WORDS.get(c['kind'], c['kind']))}**: {style.text(c['target'])}, by "
            f"{style.text(c['actor'])} {style.text(style.when(c['at'], now, zone))} · {style.text(c['reason'])}"
            for c in controls]



def requested_profile(kind: links.Kind, profile_of: Callable[..., Any], elsewhere: str) -> tuple[str, Any]:
    """The entity a page was opened for and its profile; without one, the empty state, and the page stops.

    ``elsewhere`` names the other pages an entity of this kind can be opened from.
    """
    name = links.requested_entity(kind)
    if not name:
        st.title(kind.capitalize())
        st.info(f"No {kind} is chosen. Find one below, or open one from {elsewhere}.")
        picker(kind)
        st.stop()
    profile = read(profile_of, name, window_end())
    if profile is None:
        st.title(kind.capitalize())
        st.warning(f"No {kind} named {style.text(name)} is in the {kind}s catalogue, the access log or any "
                   "incident. Check the spelling (names are as the logs spell them), or find one below.")
        picker(kind)
        st.stop()
    return name, profile


def picker(kind: links.Kind) -> None:
    """Find an entity by name (or part of it) and open its page: the pages' empty state."""
    typed = st.text_input(f"Find a {kind} by name, or part of one", key=f"{kind}_search")
    matches = read(entity_names, kind, typed)
    options = matches or ([typed.strip()] if typed.strip() else [])
    if not options:
        st.caption(f"No catalogued {kind} matches; type the exact name as the logs spell it to open it anyway.")
        return
    chosen = st.selectbox(f"{kind.capitalize()}s that match", options, key=f"{kind}_pick")
    if st.button(f"Open this {kind}'s page", key=f"{kind}_pick_open", type="primary"):
        links.open_entity(kind, chosen)


def incident_picker(incidents: Sequence[dict[str, Any]], key: str) -> None:
    """Pick one of an entity's incidents and open it in the incident view."""
    choices = {int(i["id"]): incident_choice(i) for i in incidents}
    chosen = st.selectbox("Open an incident", list(choices), format_func=choices.get, key=key)
    if st.button("Open incident", key=f"{key}_button"):
        st.session_state["incident_id"] = int(chosen)
        st.switch_page(INCIDENT_PAGE)


def entity_picker(kind: links.Kind, names: Sequence[str], label: str, key: str) -> None:
    """Pick one of the names in a table and open its page."""
    chosen = st.selectbox(label, list(dict.fromkeys(names)), key=key)
    if st.button(f"Open this {kind}'s page", key=f"{key}_button"):
        links.open_entity(kind, chosen)


def incidents_and_containment(incidents: Sequence[dict[str, Any]], count: int, containment: Sequence[dict[str, Any]],
                              name: str, now: datetime, zone: tzinfo, key: str) -> None:
    """The two sections every entity page ends with: its incidents (one can be opened) and its containment."""
    st.subheader("Incidents")
    if incidents:
        st.caption(incidents_caption(count, len(incidents)))
        st.dataframe(incident_table(incidents, now, zone), hide_index=True, width="stretch")
        incident_picker(incidents, key)
    else:
        st.caption("No incident names it.")
    st.subheader("Containment")
    if containment:
        st.markdown("\n".join(containment_lines(containment, now, zone)))
    else:
        st.markdown(f"No containment is in force on {style.text(name)}.")
