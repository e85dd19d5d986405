"""Overview: what the store holds and what ingest rejected."""

import streamlit as st

from dashboard.state import store_client
from features.ingest import ingest_status, recent_rejections

client = store_client(st.session_state["dsn"])
status = ingest_status(client)

st.title("Overview")
cols = st.columns(len(status.rows) + 1)
for col, (table, count) in zip(cols, status.rows.items()):
    col.metric(table.replace("_", " "), f"{count:,}")
cols[-1].metric("rejected rows", f"{sum(status.rejected.values()):,}")
if status.first_event is not None:
    st.caption(f"Events from {status.first_event:%Y-%m-%d %H:%M} to {status.last_event:%Y-%m-%d %H:%M} UTC")
else:
    st.info("No events yet: `blastwall ingest FILE…` or `blastwall demo`.")

st.subheader("Rejected rows")
if status.rejected:
    st.bar_chart({reason: [count] for reason, count in status.rejected.items()}, horizontal=True)
    st.dataframe(recent_rejections(client), hide_index=True, use_container_width=True)
else:
    st.write("None: every ingested row was valid.")
