"""Playbooks: the catalogue with runbooks, what containment is in force, and a dry run on an incident."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from dashboard import style
from dashboard.banners import paging_banner
from dashboard.state import library, options, read, responder, settings, store, viewer_zone
from detector.incidents import IncidentError, get_incident, incident_label, incident_refs, resolve_incident
from features.redaction import redact_text
from playbooks.actions import controls_in_force
from playbooks.context import incident_context
from playbooks.engine import EngineError

now, zone = datetime.now(UTC), viewer_zone()
st.title("Playbooks")
books = library(options().config)
for problem in books.problems:
    st.error(f"Invalid playbook file: {style.text(problem)}")

st.subheader("Response settings")
paging_banner()
current = settings(options().config)
if current.unsigned_webhooks:
    st.warning(current.unsigned_webhooks[0].upper() + current.unsigned_webhooks[1:] + ".")
else:
    st.success("Webhooks are signed (HMAC-SHA256, X-Blastwall-Signature).")
webhooks = {action: redact_text(url) for action, url in current.integrations.webhooks.items()}
if webhooks:
    st.dataframe(pd.DataFrame([{"Action": a, "Calls": u} for a, u in webhooks.items()]), hide_index=True)
else:
    st.caption("No integration webhooks: containment acts on blastwall's control tables only.")

st.subheader("Containment in force")
controls = read(controls_in_force)
if controls:
    refs = read(incident_refs, sorted({int(c["incident_id"]) for c in controls}))
    st.dataframe(style.controls_table(controls, refs, now, zone), hide_index=True, width="stretch")
else:
    st.write("Nothing is contained right now.")

st.subheader("Dry run")
st.caption("What a playbook would do on an incident, step by step; nothing is executed.")
last = st.session_state.get("incident_id")  # the incident last opened
last_incident = read(get_incident, int(last)) if str(last or "").isdigit() else None
typed = st.text_input("Incident", value=incident_label(last_incident) if last_incident else "",
                      placeholder="INC-12 (or an incident id)", key="dry_incident").strip()
incident = None
if typed:
    try:
        incident = read(get_incident, read(resolve_incident, typed))
    except IncidentError as error:
        st.error(style.text(error))
    else:
        if incident is None:
            st.error(f"No incident {style.text(typed)} in this store.")
if incident is not None:
    named = f"{incident_label(incident)} ({incident['severity']}, {incident['title']})"
    context = read(incident_context, incident["id"])
    matching = [p.id for p in books.matching(context)] if context else []
    every = st.toggle("Show every playbook", key="dry_every",
                      help="Also the playbooks whose triggers do not match this incident.")
    offered = matching + ([p for p in books.playbooks if p not in matching] if every else [])
    if matching:
        st.caption(style.text(f"{style.plural(len(matching), 'playbook matches', 'playbooks match')} {named}."))
    else:
        st.info(style.text(f"No playbook matches {named}: none would run on it. "
                           "Show every playbook to see what one would do anyway."))
    chosen = st.selectbox("Playbook", offered, key="dry_playbook") if offered else None
    if chosen and st.button("Dry run", key="dry_run"):
        try:
            with store():
                planned, steps = responder().dry_run(chosen, int(incident["id"]))
        except (EngineError, ValueError) as error:
            st.error(style.text(error))
        else:
            if planned is None:
                st.info(style.text(f"{chosen} does not match {named}: nothing would run."))
            else:
                st.success(style.text(f"{style.plural(len(steps), 'step')} would run at {planned.severity} on "
                                      f"{incident_label(incident)}; nothing was executed."))
                st.dataframe(pd.DataFrame([{"Step": s.planned.name, "Does": s.planned.description,
                                            "Needs approval": "yes" if s.planned.needs_approval else "no",
                                            "Reversible": "yes" if s.planned.reversible else "no",
                                            "Already": (s.state or "").replace("_", " ")}
                                           for s in steps]), hide_index=True, width="stretch")

st.subheader("Catalogue")
for playbook_id, playbook in books.playbooks.items():
    spec = playbook.spec
    with st.expander(f"{playbook_id} · {', '.join(spec.triggers.detectors)} ≥ {spec.triggers.min_severity}"):
        st.write(spec.description)
        if spec.triggers.when:
            st.caption("when " + " and ".join(f"`{c}`" for c in spec.triggers.when))
        st.dataframe(pd.DataFrame([{"Step": s.name, "Action": s.action, "Approval": str(s.requires_approval),
                                    "On failure": s.on_failure, "When": s.when or ""} for s in spec.steps]),
                     hide_index=True, width="stretch")
        st.markdown("**Runbook**\n\n" + "\n".join(f"{n}. {line}" for n, line in enumerate(spec.runbook, 1)))
