"""Playbooks: the catalogue with runbooks, what containment is in force, and a dry run on any incident."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import style
from dashboard.state import library, options, read, responder, settings, store
from features.redaction import redact_text
from playbooks.actions import controls_in_force
from playbooks.engine import EngineError

st.title("Playbooks")
books = library(options().config)
for problem in books.problems:
    st.error(f"Invalid playbook file: {style.text(problem)}")

st.subheader("Response settings")
current = settings(options().config)
if current.unsigned_webhooks:
    st.warning(current.unsigned_webhooks[0].upper() + current.unsigned_webhooks[1:] + ".")
else:
    st.success("Webhooks are signed (HMAC-SHA256, X-Blastwall-Signature).")
webhooks = {action: redact_text(url) for action, url in current.integrations.webhooks.items()}
if webhooks:
    st.dataframe(pd.DataFrame([{"action": a, "calls": u} for a, u in webhooks.items()]), hide_index=True)
else:
    st.caption("No integration webhooks: containment acts on blastwall's control tables only.")

st.subheader("Containment in force")
controls = read(controls_in_force)
if controls:
    st.dataframe(pd.DataFrame(controls), hide_index=True, width="stretch")
else:
    st.write("Nothing is contained right now.")

st.subheader("Dry run")
left, right = st.columns(2)
chosen = left.selectbox("Playbook", list(books.playbooks), key="dry_playbook")
incident_id = right.text_input("Incident id", value=str(st.session_state.get("incident_id") or ""), key="dry_incident")
if st.button("Dry run", key="dry_run") and chosen:
    try:
        with store():
            planned, steps = responder().dry_run(chosen, int(incident_id))
    except (EngineError, ValueError) as error:
        st.error(style.text(error))
    else:
        if planned is None:
            st.info(f"{chosen} does not match incident {style.text(incident_id)}: nothing would run.")
        else:
            st.success(f"{len(steps)} steps would run at {planned.severity}; nothing was executed.")
            st.dataframe(pd.DataFrame([{"step": s.planned.name, "does": s.planned.description,
                                        "needs approval": s.planned.needs_approval,
                                        "reversible": s.planned.reversible, "already": s.state or ""}
                                       for s in steps]), hide_index=True, width="stretch")

st.subheader("Catalogue")
for playbook_id, playbook in books.playbooks.items():
    spec = playbook.spec
    with st.expander(f"{playbook_id} · {', '.join(spec.triggers.detectors)} ≥ {spec.triggers.min_severity}"):
        st.write(spec.description)
        if spec.triggers.when:
            st.caption("when " + " and ".join(f"`{c}`" for c in spec.triggers.when))
        st.dataframe(pd.DataFrame([{"step": s.name, "action": s.action, "approval": str(s.requires_approval),
                                    "on failure": s.on_failure, "when": s.when or ""} for s in spec.steps]),
                     hide_index=True, width="stretch")
        st.markdown("**Runbook**\n\n" + "\n".join(f"{n}. {line}" for n, line in enumerate(spec.runbook, 1)))
