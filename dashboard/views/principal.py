"""Principal: who it is, its peers and groups, its activity against its peers', the data it touched,
its incidents and the containment in force on it."""

from __future__ import annotations

import streamlit as st

from dashboard import entity_page as page
from dashboard import links, style
from dashboard.state import viewer_zone
from detector.entities import principal_profile

name, profile = page.requested_profile("principal", principal_profile, "an incident or a resource's page")
now, zone = page.now(), viewer_zone()

st.title(style.text(name))
st.markdown(page.principal_summary(profile))
left, middle, right = st.columns(3)
left.metric("incidents", style.human_count(profile.incident_count))
middle.metric("data touched", style.human_count(profile.touched_count),
              help=f"resources over the last {profile.window.days} days")
right.metric("peers", style.human_count(profile.peer_count))

st.subheader("Peers")
if profile.peer_count:
    st.caption(f"{style.plural(profile.peer_count, 'peer')}: the people and agents of team "
               f"{style.text(profile.team)}.")
    links.entity_links("principal", profile.peers)
else:
    st.caption("No peers to compare with: services, and principals without a team, have none.")
if len(profile.groups):
    with st.expander(f"Member of {style.plural(len(profile.groups), 'group')}"):
        st.dataframe(page.groups_table(profile.groups), hide_index=True, width="stretch")

st.subheader("Activity")
st.caption(f"Events per day over the last {profile.window.days} days (UTC days), against the median of its peers.")
st.line_chart(page.activity_chart(profile.activity))

st.subheader("Data touched")
if len(profile.touched):
    st.caption(f"{style.plural(profile.touched_count, 'resource')} over the last {profile.window.days} days, "
               "most sensitive first.")
    st.dataframe(page.touched_table(profile.touched, now, zone), hide_index=True, width="stretch")
    page.entity_picker("resource", list(profile.touched["resource"]), "Open a resource's page", "principal_data")
else:
    st.caption(f"It touched no data over the last {profile.window.days} days.")

page.incidents_and_containment(profile.incidents, profile.incident_count, profile.containment, name,
                               now, zone, "principal_incident")
