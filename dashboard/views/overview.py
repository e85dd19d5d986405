"""Overview: incidents over time, detector health and quality, what ingest rejected."""

from __future__ import annotations

import streamlit as st

from dashboard import style
from dashboard.state import read
from detector.runs import health
from detector.triage import detector_quality, incidents_per_day
from features.ingest import ingest_status, recent_rejections

status = read(ingest_status)
st.title("Overview")
cols = st.columns(len(status.rows) + 1)
for col, (table, count) in zip(cols, status.rows.items()):
    col.metric(table.replace("_", " "), f"{count:,}")
cols[-1].metric("rejected rows", f"{sum(status.rejected.values()):,}")
if status.first_event is not None:
    st.caption(f"Events from {status.first_event:%Y-%m-%d %H:%M} to {status.last_event:%Y-%m-%d %H:%M} UTC")
else:
    st.info("No events yet: `blastwall ingest FILE…` or `blastwall demo`.")

st.subheader("Detector health")
state = read(health)
cols = st.columns(4)
cols[0].metric("last step ended", f"{state['watermark']:%d %b %H:%M}" if state["watermark"] else "never")
cols[1].metric("lag behind now", f"{state['lag_seconds'] / 60:,.0f} min" if state["lag_seconds"] is not None else "—")
cols[2].metric("events / s", f"{state['events_per_second']:,.0f}")
cols[3].metric("failed steps (recent)", f"{state['failed']:,}")
if state["last_error"]:
    st.error(f"Last failure: {style.text(state['last_error'])}")

st.subheader("Incidents per day")
per_day = read(incidents_per_day, 60)
if len(per_day):
    st.bar_chart(per_day, x="day", y="incidents", color="severity", stack=True)
else:
    st.write("No incidents in the last 60 days.")

st.subheader("Detectors: alert volume and verdicts")
st.dataframe(read(detector_quality), hide_index=True, width="stretch")

st.subheader("Rejected rows")
if status.rejected:
    st.bar_chart({reason: [count] for reason, count in status.rejected.items()}, horizontal=True)
    st.dataframe(read(recent_rejections), hide_index=True, width="stretch")
else:
    st.write("None: every ingested row was valid.")
