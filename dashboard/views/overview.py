"""Overview: incidents over time, detector health and quality, what ingest rejected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from dashboard import style
from dashboard.state import read, viewer_zone
from detector.runs import health
from detector.triage import detector_quality, incidents_per_day
from features.ingest import ingest_status, recent_rejections

now, zone = datetime.now(UTC), viewer_zone()
status = read(ingest_status)
st.title("Overview")
cols = st.columns(len(status.rows) + 1)
for col, (table, count) in zip(cols, status.rows.items()):
    col.metric(style.table_label(table), f"{count:,}")
cols[-1].metric("Rejected rows", f"{sum(status.rejected.values()):,}")
if status.first_event is not None:
    st.caption(f"Events from {style.clock(status.first_event, now, zone)} "
               f"to {style.when(status.last_event, now, zone)}")
else:
    st.info("No events yet: `blastwall ingest FILE…` or `blastwall demo`.")

st.subheader("Detector health")
state = read(health)
cols = st.columns(4)
cols[0].metric("Last step ended", style.when(state["watermark"], now, zone) if state["watermark"] else "never")
lag = state["lag_seconds"]
cols[1].metric("Behind now", style.duration(timedelta(seconds=int(lag) // 60 * 60)) if lag is not None else "—")
cols[2].metric("Events per second", style.human_count(round(state["events_per_second"])))
cols[3].metric("Failed steps (recent)", f"{state['failed']:,}")
if state["last_error"]:
    st.error(f"Last failure: {style.text(state['last_error'])}")

st.subheader("Incidents per day")
per_day = read(incidents_per_day, 60)
if len(per_day):
    st.bar_chart(per_day, x="day", y="incidents", color="severity", stack=True, x_label="Day", y_label="Incidents")
else:
    st.write("No incidents in the last 60 days.")

st.subheader("Detectors: alert volume and verdicts")
quality = read(detector_quality)
if len(quality):
    st.dataframe(style.quality_table(quality, now, zone), hide_index=True, width="stretch")
    st.caption("False-positive share: false positives among the incidents closed with a verdict "
               "(resolved or false positive).")
else:
    st.write("No detector has opened an incident yet, so there is no alert volume or verdict to show. "
             "Incidents appear once detection has run over ingested events (`blastwall run`; the console runs "
             "it itself for an embedded store).")

st.subheader("Rejected rows")
rejections = read(recent_rejections) if status.rejected else []
if rejections:
    st.bar_chart({reason: [count] for reason, count in status.rejected.items()}, horizontal=True)
    st.dataframe(style.readable_table(pd.DataFrame(rejections), now, zone), hide_index=True, width="stretch")
else:
    st.write("None: every ingested row was valid.")
