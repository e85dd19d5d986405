"""Queue: the incidents to work on, most severe first, refreshing itself."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pandas as pd
import streamlit as st

from dashboard import style
from dashboard.banners import detection_banner, paging_banner
from dashboard.state import read, viewer_zone
from detector.incidents import STATUSES
from detector.severity import SEVERITIES
from detector.triage import (
    ACTIVE_STATUSES,
    QueueFilter,
    closed_counts,
    filter_choices,
    queue,
    queue_counts,
)

FILTER_KEYS = ("q_severity", "q_status", "q_detector", "q_team", "q_assignee", "q_period")

st.title("Queue")
paging_banner()
choices = read(filter_choices)
with st.expander("Filters", expanded=False):
    left, middle, right = st.columns(3)
    severities = left.multiselect("Severity", SEVERITIES, key="q_severity")
    statuses = left.multiselect("Status", STATUSES, default=list(ACTIVE_STATUSES), key="q_status",
                                format_func=lambda status: status.replace("_", " "))
    detectors = middle.multiselect("Detector", choices["detectors"], key="q_detector")
    team = middle.selectbox("Team", ["", *choices["teams"]], key="q_team")
    assignee = right.selectbox("Assignee", ["", *choices["assignees"]], key="q_assignee")
    period = right.date_input("Detected between", value=(), key="q_period")

since = until = None
if isinstance(period, tuple) and len(period) == 2:
    zone = viewer_zone()  # the days the analyst picked are days where they are
    since = datetime.combine(period[0], time.min, tzinfo=zone)
    until = datetime.combine(period[1], time.max, tzinfo=zone)
filters = QueueFilter(statuses=tuple(statuses), severities=tuple(severities), detectors=tuple(detectors),
                      assignee=assignee or "", team=team or "", since=since, until=until)


@st.fragment(run_every="15s")
def ranked() -> None:
    """Counts and the ranked table; re-run every 15 s so new incidents appear by themselves."""
    now, zone = datetime.now(UTC), viewer_zone()
    detection_banner()
    counts = read(queue_counts, filters)
    for column, severity in zip(st.columns(len(SEVERITIES) + 1), SEVERITIES):
        column.metric(severity, f"{counts[severity]:,}", help=style.SEVERITY_MEANING[severity])
    st.caption(f"{style.matching(sum(counts.values()))} · updated {now.astimezone(zone):%H:%M:%S %Z}")
    found = read(queue, filters, limit=200)
    if not found:
        chosen = filters.chosen()
        st.info(style.text(style.nothing_matches(chosen, ACTIVE_STATUSES, filters.default_statuses,
                                                 read(closed_counts))))
        if chosen and st.button("Clear filters", key="q_clear"):
            for key in FILTER_KEYS:
                st.session_state.pop(key, None)
            st.rerun()
        return
    table = pd.DataFrame([style.incident_row(incident, now, zone) for incident in found])
    shown = st.session_state.pop("q_shown", None)  # the ids of the table the analyst clicked in
    st.session_state["q_shown"] = [int(incident["id"]) for incident in found]
    picked = st.dataframe(style.by_severity(table, style.label("severity")), hide_index=True, width="stretch",
                          column_config={style.label("title"): st.column_config.TextColumn(width="large")},
                          on_select="rerun", selection_mode="single-row", key="q_table")
    rows = picked.selection.rows if picked is not None and hasattr(picked, "selection") else []
    options = {incident["id"]: style.incident_option(incident) for incident in found}
    chosen = st.selectbox("Open an incident", list(options), format_func=options.get, key="q_open",
                          index=rows[0] if rows else 0)
    if st.button("Open", type="primary", key="q_open_button") or rows:
        # A click is a position in the table as it was shown, which a refresh may have reordered.
        st.session_state["incident_id"] = (shown or st.session_state["q_shown"])[rows[0]] if rows else int(chosen)
        st.session_state.pop("q_table", None)  # coming back must not re-open it
        st.switch_page("views/incident.py")


ranked()
