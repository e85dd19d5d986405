"""Incident: the four answers first (what happened, how bad, what was done, what next), then the detail tabs."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from blastwall.access import AccessDenied
from dashboard import briefing, links, style
from dashboard.state import acting, library, options, read, viewer_zone
from detector.incidents import (
    FINAL_STATUSES,
    IncidentError,
    allowed_actions,
    get_incident,
    grant_of,
    incident_label,
    incident_timeline,
    resolve_incident,
)
from detector.triage import blast_radius, evidence_events
from playbooks.context import incident_context
from playbooks.engine import EngineError, runs_for_incidents

PAGE = 50
TABS = ["Why", "Evidence", "Blast radius", "Timeline", "Respond"]
now, zone = datetime.now(UTC), viewer_zone()

incident_id = st.query_params.get("id") or st.session_state.get("incident_id")  # a link's id wins
if not incident_id:
    st.title("Incident")
    st.info("No incident is open. Pick one in the Queue, or on a principal's or a resource's page.")
    st.page_link("views/queue.py", label="Go to the queue", icon=":material/inbox:")
    st.stop()
try:
    incident_id = read(resolve_incident, str(incident_id))  # INC-n (a link people share) or the id
except IncidentError as error:
    st.title("Incident")
    st.error(style.text(error))
    st.stop()
incident = read(get_incident, incident_id)
if incident is None:
    st.title("Incident")
    st.error(f"No incident {incident_id} in this store.")
    st.stop()
ref = incident_label(incident)


for typed in st.session_state.pop("clear_after_action", []):  # before the widgets exist again
    st.session_state[typed] = ""


def act(label: str, call: str, *args, clear: tuple[str, ...] = (), **kwargs) -> None:
    """Run one role-checked action as the signed-in user; say what happened (the tab stays where it was).

    ``clear`` names the text boxes whose text the action used up (emptied once it succeeded).
    """
    try:
        with acting() as actions:
            getattr(actions, call)(*args, **kwargs)
    except (AccessDenied, IncidentError, EngineError, ValueError) as error:
        st.session_state["flash"] = ("error", str(error))
    else:
        st.session_state["flash"] = ("success", f"{label}: done")
        st.session_state["clear_after_action"] = list(clear)
    st.rerun()


st.title(style.text(incident["title"]))
st.markdown(f":{style.SEVERITY_BADGE[incident['severity']]}-badge[{incident['severity']}] "
            f":violet-badge[{incident['status'].replace('_', ' ')}] :gray-badge[{ref}] "
            f":gray-badge[{incident['detector'].replace('_', ' ')}]")
kind, message = st.session_state.pop("flash", (None, None))
if kind:
    getattr(st, kind)(style.text(message))

runs = read(runs_for_incidents, [incident_id]).get(incident_id, [])
context = read(incident_context, incident_id)
books = library(options().config)
matching = books.matching(context) if context else []
ran = [books.playbooks[run["playbook"]] for run in runs if run["playbook"] in books.playbooks]
pages = read(briefing.page_outcomes, incident_id)
done = read(briefing.what_was_done, incident, pages, now, zone)
exposure = read(briefing.exposure_window, incident, now)  # None unless the incident is about a grant
if any(page.state == "unrouted" for page in pages):
    st.warning(f"Nobody was paged for {ref}: its {incident['severity']} page has no channel to go to. "
               "Configure `paging:` channels (apprise URLs) and routes in the settings file "
               "(`blastwall --config FILE`; see the README, \"Playbooks and paging\").")

# ---- the four answers
what, bad = st.columns(2)
with what.container(border=True):
    st.markdown("**What happened**")
    st.write(style.text(briefing.what_happened(incident, read(briefing.catalogue, incident["resources"]))))
    st.caption(f"Evidence {style.when(incident['first_seen'], now, zone)} to "
               f"{style.when(incident['last_seen'], now, zone)} · "
               f"detected {style.when(incident['detected_at'], now, zone)} · "
               f"techniques {style.text(', '.join(incident['techniques']) or '—')}")
    links.entity_links("principal", incident["principals"])
    links.entity_links("resource", incident["resources"])
with bad.container(border=True):
    st.markdown("**How bad it is**")
    st.write(style.text(briefing.how_bad(incident)))
    if exposure is not None:
        st.markdown(f"**Window of exposure:** {style.text(exposure.words(now, zone))}")
    st.caption(f"{style.plural(incident['alerts'], 'alert')} · score {incident['score']:.2f} · "
               f"assigned to {style.text(incident['assignee'] or 'nobody')}")
already, nxt = st.columns(2)
with already.container(border=True):
    st.markdown("**What was already done**")
    if done:
        st.markdown("\n".join(f"- {style.text(item.sentence)}" for item in done))
    else:
        st.write("Nothing yet: no playbook has acted on this incident and nobody has been paged.")
with nxt.container(border=True):
    st.markdown("**What to do next**")
    steps = briefing.what_next([*matching, *[p for p in ran if p not in matching]], runs, ref)
    closed = incident["status"] in FINAL_STATUSES  # the engine contains nothing on a closed incident
    if closed and steps.pending:
        st.caption(f"{style.plural(len(steps.pending), 'step')} still awaited a decision when the incident was "
                   f"{incident['status'].replace('_', ' ')}; nothing more runs on it.")
    for pending in [] if closed else steps.pending:
        if pending.state == "interrupted":
            st.warning(f"{style.text(pending.step)}: its outcome is unknown (the process stopped or timed out "
                       "during it). Check the system, then Approve if it took effect or Deny if it did not.")
        else:
            action = "" if pending.action == pending.step else f" ({style.text(pending.action)})"
            st.write(f"**{style.text(pending.playbook)}** waits for approval to "
                     f"**{style.text(pending.step.replace('_', ' '))}**{action}.")
        key = f"{pending.run_id}_{pending.step}"
        reason = st.text_input("Reason (optional)", key=f"reason_{key}")
        left, right = st.columns(2)
        if left.button(f"Approve {pending.step}", key=f"approve_{key}", type="primary"):
            act(f"approved {pending.step}", "approve", pending.run_id, pending.step, reason=reason)
        if right.button(f"Deny {pending.step}", key=f"deny_{key}"):
            act(f"denied {pending.step}", "deny", pending.run_id, pending.step, reason=reason)
    for playbook_id, runbook in steps.runbooks.items():
        st.markdown(f"Runbook of **{style.text(playbook_id)}**:\n\n"
                    + "\n".join(f"{n}. {style.text(line)}" for n, line in enumerate(runbook, 1)))
    if not steps.runbooks and not steps.pending:
        st.write("No playbook matches this incident: follow your team's runbook, and note what you did.")

# ---- lifecycle: only what the incident's status allows
allowed = allowed_actions(incident["status"])
buttons = [("acknowledge", "Acknowledge", "do_ack"), ("contain", "Mark contained", "do_contain"),
           ("resolve", "Resolve", "do_resolve")]
offered = [(action, text, key) for action, text, key in buttons if action in allowed]
if offered:
    for column, (action, text, key) in zip(st.columns(len(offered) + 2), offered):
        if column.button(text, key=key, type="primary" if action == "acknowledge" else "secondary"):
            act({"acknowledge": "acknowledged", "contain": "contained", "resolve": "resolved"}[action], action,
                incident_id)
else:
    st.caption(f"This incident is {incident['status'].replace('_', ' ')}: no further lifecycle step.")
with st.expander("Assign, note, false positive", expanded=False):
    left, right = st.columns(2)
    if "assign" in allowed:
        assignee = left.text_input("Assign to", key="do_assignee")
        if left.button("Assign", key="do_assign"):
            act("assigned", "assign", incident_id, assignee, clear=("do_assignee",))
    note = right.text_area("Note", key="do_note")
    if right.button("Add note", key="do_add_note"):
        act("noted", "note", incident_id, note, clear=("do_note",))
    if "false_positive" in allowed:
        reason = st.text_input("Why it is a false positive", key="do_fp_reason")
        if st.button("False positive", key="do_fp"):
            act("marked false positive", "false_positive", incident_id, reason)

why, evidence, radius, timeline, respond = st.tabs(TABS, key="incident_tab", on_change="rerun")

with why:
    found = briefing.reasons(incident["explanation"])
    if found:
        st.markdown("\n".join(f"- {style.text(reason.sentence)}"
                              + (f" (weight {reason.weight:.0%})" if reason.weight is not None else "")
                              for reason in found))
        ratios = briefing.chart_rows(found)
        if ratios:
            st.caption("Each value as a multiple of its baseline (1 = normal)")
            st.bar_chart(pd.DataFrame(ratios), x="evidence", y="times normal", horizontal=True)
    else:
        st.write("No feature explanation was recorded for this incident.")

with evidence:
    if evidence.open:
        page = st.number_input("Page", min_value=1, value=1, step=1, key="ev_page")
        events, total = read(evidence_events, incident, offset=(page - 1) * PAGE, limit=PAGE)
        st.caption(f"{style.plural(total, 'event')} · page {page} of {max(1, -(-total // PAGE))}")
        if len(events):
            st.dataframe(style.readable_table(events, now, zone), hide_index=True, width="stretch")
            chosen = st.selectbox("Drill down into an event", list(events["event_id"]), key="ev_pick")
            row = events[events["event_id"] == chosen].iloc[0]
            st.json({style.label(column): style.plain_value(value) for column, value in row.items()}, expanded=True)
        else:
            st.write("No events around this incident's evidence times: they may have expired (retention).")

with radius:
    if radius.open:
        blast = read(blast_radius, incident)
        first_time = int(blast.readers["first_time"].sum()) if len(blast.readers) else 0
        figures = {"Actually read": len(blast.readers), "First-time readers": first_time, "Records read": blast.records}
        if grant_of(incident) is not None:  # a grant widened the audience: how far
            figures = {"Able to read (through the grant)": blast.audience_size, **figures}
        for column, (label, figure) in zip(st.columns(len(figures)), figures.items()):
            column.metric(label, style.human_count(figure))
        if len(blast.audience):
            st.subheader("Who gained access, through which groups")
            st.dataframe(style.readable_table(blast.audience, now, zone), hide_index=True, width="stretch")
        st.subheader("Who read the data since")
        if len(blast.readers):
            st.dataframe(style.readable_table(blast.readers, now, zone), hide_index=True, width="stretch")
        else:
            st.write("Nobody has read it since.")

with timeline:
    if timeline.open:
        # Newest first (the analyst's own steps on top), with what each page really did.
        rows = pd.DataFrame(briefing.timeline_rows(read(incident_timeline, incident_id), pages, now, zone))
        st.dataframe(rows, hide_index=True, width="stretch", height=min(38 + 35 * len(rows), 2000),
                     column_config={"What": st.column_config.TextColumn(width="large")})

with respond:
    if respond.open:
        for run in runs:
            st.markdown(f"**{style.text(run['playbook'])}** · {run['state'].replace('_', ' ')}")
            st.dataframe(pd.DataFrame([{"Step": s["step"].replace("_", " "), "Action": s["action"],
                                        "State": briefing.pages_in_words(pages)
                                        if s["action"] == "page" and s["state"] == "succeeded"
                                        else s["state"].replace("_", " "), "Error": s["error"] or ""}
                                       for s in run["steps"]]), hide_index=True, width="stretch")
        if closed:
            st.caption(f"The incident is {incident['status'].replace('_', ' ')}: no playbook runs on it.")
        elif matching:
            chosen = st.selectbox("Run a playbook", [p.id for p in matching], key="do_playbook")
            if st.button("Run playbook", key="do_run"):
                act(f"ran {chosen}", "run_playbook", chosen, incident_id)
        else:
            st.caption("No playbook matches this incident.")
        if briefing.can_roll_back(runs) and st.button("Roll back containment", key="do_rollback"):
            act("rolled back", "rollback", incident_id)
