"""Incident: why it scored high, the evidence, the blast radius, the timeline, and what to do."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from blastwall.access import AccessDenied
from dashboard import style
from dashboard.state import acting, library, options, read
from detector.incidents import IncidentError, get_incident, incident_timeline
from detector.triage import blast_radius, evidence_events
from playbooks.context import incident_context
from playbooks.engine import EngineError, runs_for_incidents

PAGE = 50
incident_id = st.session_state.get("incident_id") or st.query_params.get("id")
if not incident_id:
    st.title("Incident")
    st.info("Pick an incident in the queue.")
    st.stop()
try:
    incident_id = int(incident_id)
except ValueError:
    st.title("Incident")
    st.error(f"{style.text(repr(incident_id))} is not an incident id.")
    st.stop()
incident = read(get_incident, incident_id)
if incident is None:
    st.title("Incident")
    st.error(f"No incident {incident_id}.")
    st.stop()


def act(label: str, call, *args, **kwargs) -> None:
    """Run one role-checked action as the signed-in user; say what happened."""
    try:
        with acting() as actions:
            getattr(actions, call)(*args, **kwargs)
    except (AccessDenied, IncidentError, EngineError, ValueError) as error:
        st.session_state["flash"] = ("error", str(error))
    else:
        st.session_state["flash"] = ("success", f"{label}: done")
    st.rerun()


st.title(style.text(incident["title"]))
st.markdown(f":{style.SEVERITY_BADGE[incident['severity']]}-badge[{incident['severity']}] "
            f":violet-badge[{incident['status']}] :gray-badge[{incident['detector']}]")
kind, message = st.session_state.pop("flash", (None, None))
if kind:
    getattr(st, kind)(style.text(message))
cols = st.columns(4)
cols[0].metric("status", incident["status"])
cols[1].metric("score", f"{incident['score']:.3f}")
cols[2].metric("assignee", style.text(incident["assignee"] or "—"))
cols[3].metric("alerts", incident["alerts"])
st.caption(f"#{incident['id']} · evidence {incident['first_seen']:%Y-%m-%d %H:%M} – {incident['last_seen']:%H:%M} UTC"
           f" · detected {incident['detected_at']:%Y-%m-%d %H:%M} UTC · techniques "
           f"{', '.join(incident['techniques']) or '—'} · principals {style.text(', '.join(incident['principals']))}"
           f" · resources {style.text(', '.join(incident['resources']))}")

why, evidence, radius, timeline, respond = st.tabs(["Why", "Evidence", "Blast radius", "Timeline", "Respond"])

with why:
    features = pd.DataFrame([e for e in incident["explanation"] if "feature" in e])
    if len(features):
        numeric = features[pd.to_numeric(features["value"], errors="coerce").notna()].copy()
        if len(numeric):
            numeric["value"] = pd.to_numeric(numeric["value"])
            numeric["baseline"] = pd.to_numeric(numeric["baseline"], errors="coerce").fillna(0)
            st.bar_chart(numeric.set_index("feature")[["value", "baseline"]], horizontal=True, stack=False)
        st.dataframe(features, hide_index=True, width="stretch")
    else:
        st.write("No feature explanation was recorded for this incident.")
    points = [e for e in incident["explanation"] if "severity_points" in e]
    if points:
        st.caption(f"severity points: {points[0]['severity_points']}")

with evidence:
    page = st.number_input("Page", min_value=1, value=1, step=1, key="ev_page")
    events, total = read(evidence_events, incident, offset=(page - 1) * PAGE, limit=PAGE)
    st.caption(f"{total:,} events · page {page} of {max(1, -(-total // PAGE))}")
    st.dataframe(events, hide_index=True, width="stretch")
    if len(events):
        chosen = st.selectbox("Drill down into an event", list(events["event_id"]), key="ev_pick")
        st.json(events[events["event_id"] == chosen].iloc[0].to_dict(), expanded=True)

with radius:
    found = read(blast_radius, incident)
    cols = st.columns(4)
    cols[0].metric("able to read (through the grant)", f"{found.audience_size:,}")
    first_time = int(found.readers["first_time"].sum()) if len(found.readers) else 0
    cols[1].metric("actually read", f"{len(found.readers):,}")
    cols[2].metric("first-time readers", f"{first_time:,}")
    cols[3].metric("records read", f"{found.records:,}")
    if len(found.audience):
        st.subheader("Who gained access, through which groups")
        st.dataframe(found.audience, hide_index=True, width="stretch")
    st.subheader("Who read the data since")
    st.dataframe(found.readers, hide_index=True, width="stretch")

with timeline:
    events = read(incident_timeline, incident_id)
    st.dataframe(pd.DataFrame([{"at": e["at"], "actor": e["actor"], "action": e["action"],
                                "status": f"{e['from_status']} → {e['to_status']}", "what": e["reason"]}
                               for e in events]), hide_index=True, width="stretch")

with respond:
    st.subheader("Lifecycle")
    left, right = st.columns(2)
    if left.button("Acknowledge", key="do_ack"):
        act("acknowledged", "acknowledge", incident_id)
    if left.button("Mark contained", key="do_contain"):
        act("contained", "contain", incident_id)
    if left.button("Resolve", key="do_resolve"):
        act("resolved", "resolve", incident_id)
    assignee = right.text_input("Assign to", key="do_assignee")
    if right.button("Assign", key="do_assign"):
        act("assigned", "assign", incident_id, assignee)
    note = right.text_area("Note", key="do_note")
    if right.button("Add note", key="do_add_note"):
        act("noted", "note", incident_id, note)
    reason = st.text_input("Why it is a false positive", key="do_fp_reason")
    if st.button("False positive", key="do_fp"):
        act("marked false positive", "false_positive", incident_id, reason)

    st.subheader("Playbooks")
    runs = read(runs_for_incidents, [incident_id]).get(incident_id, [])
    for run in runs:
        st.markdown(f"**{run['playbook']}** · {run['state']} · `{run['run_id']}`")
        st.dataframe(pd.DataFrame(run["steps"]), hide_index=True, width="stretch")
        for step in [s for s in run["steps"] if s["state"] in ("awaiting_approval", "interrupted")]:
            if step["state"] == "interrupted":
                st.warning(f"{step['step']}: its outcome is unknown (the process stopped or timed out during it). "
                           "Check the system, then Approve if it took effect or Deny if it did not.")
            c1, c2, c3 = st.columns([1, 1, 3])
            why_not = c3.text_input("Reason", key=f"reason_{run['run_id']}_{step['step']}")
            if c1.button(f"Approve {step['step']}", key=f"approve_{run['run_id']}_{step['step']}"):
                act(f"approved {step['step']}", "approve", run["run_id"], step["step"], reason=why_not)
            if c2.button(f"Deny {step['step']}", key=f"deny_{run['run_id']}_{step['step']}"):
                act(f"denied {step['step']}", "deny", run["run_id"], step["step"], reason=why_not)
    context = read(incident_context, incident_id)
    matching = [p.id for p in library(options().config).matching(context)] if context else []
    if matching:
        chosen = st.selectbox("Run a playbook", matching, key="do_playbook")
        if st.button("Run playbook", key="do_run"):
            act(f"ran {chosen}", "run_playbook", chosen, incident_id)
    else:
        st.caption("No playbook matches this incident.")
    if runs and st.button("Roll back containment", key="do_rollback"):
        act("rolled back", "rollback", incident_id)
