"""Queue: the incidents to work on, most severe first, refreshing itself."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pandas as pd
import streamlit as st

from dashboard import style
from dashboard.state import read
from detector.incidents import STATUSES
from detector.runs import health
from detector.severity import SEVERITIES
from detector.triage import (
    ACTIVE_STATUSES,
    QueueFilter,
    filter_choices,
    queue,
    queue_counts,
)

st.title("Queue")
choices = read(filter_choices)
with st.expander("Filters", expanded=False):
    left, middle, right = st.columns(3)
    severities = left.multiselect("Severity", SEVERITIES, key="q_severity")
    statuses = left.multiselect("Status", STATUSES, default=list(ACTIVE_STATUSES), key="q_status")
    detectors = middle.multiselect("Detector", choices["detectors"], key="q_detector")
    team = middle.selectbox("Team", ["", *choices["teams"]], key="q_team")
    assignee = right.selectbox("Assignee", ["", *choices["assignees"]], key="q_assignee")
    period = right.date_input("Detected between", value=(), key="q_period")

since = until = None
if isinstance(period, tuple) and len(period) == 2:
    since = datetime.combine(period[0], time.min, tzinfo=UTC)
    until = datetime.combine(period[1], time.max, tzinfo=UTC)
filters = QueueFilter(statuses=tuple(statuses), severities=tuple(severities), detectors=tuple(detectors),
                      assignee=assignee or "", team=team or "", since=since, until=until)


@st.fragment(run_every="15s")
def ranked() -> None:
    """Counts and the ranked table; re-run every 15 s so new incidents appear by themselves."""
    counts = read(queue_counts, filters)
    for column, severity in zip(st.columns(len(SEVERITIES) + 1), SEVERITIES):
        column.metric(severity, f"{counts[severity]:,}", help=style.SEVERITY_MEANING[severity])
    st.caption(f"{sum(counts.values()):,} incidents match · updated {datetime.now(UTC):%H:%M:%S} UTC")
    found = read(queue, filters, limit=200)
    if not found:
        st.info("Nothing to work on with these filters.")
        progress = read(health)
        if progress["watermark"] is None:
            st.caption("Detection has not processed a step yet; it starts as soon as events are due.")
        else:
            st.caption(f"Detection has processed events up to {progress['watermark']:%Y-%m-%d %H:%M} UTC "
                       f"({progress['lag_seconds'] / 60:,.0f} min behind now).")
        return
    table = pd.DataFrame([style.queue_row(incident) for incident in found])
    shown = st.session_state.pop("q_shown", None)  # the ids of the table the analyst clicked in
    st.session_state["q_shown"] = [int(i) for i in table["id"]]
    picked = st.dataframe(style.by_severity(table), hide_index=True, width="stretch",
                          on_select="rerun", selection_mode="single-row", key="q_table")
    rows = picked.selection.rows if picked is not None and hasattr(picked, "selection") else []
    options = {incident["id"]: f"{incident['severity']} · {incident['title'][:90]}" for incident in found}
    chosen = st.selectbox("Open an incident", list(options), format_func=options.get, key="q_open",
                          index=rows[0] if rows else 0)
    if st.button("Open", type="primary", key="q_open_button") or rows:
        # A click is a position in the table as it was shown, which a refresh may have reordered.
        st.session_state["incident_id"] = (shown or st.session_state["q_shown"])[rows[0]] if rows else int(chosen)
        st.session_state.pop("q_table", None)  # coming back must not re-open it
        st.switch_page("views/incident.py")


ranked()
