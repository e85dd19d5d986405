"""Resource: what it is, who can read it and through which groups, who read it and when, its incidents
and the containment in force on it."""

from __future__ import annotations

import streamlit as st

from dashboard import entity_page as page
from dashboard import style
from dashboard.state import viewer_zone
from detector.entities import resource_profile

name, profile = page.requested_profile("resource", resource_profile, "an incident or a principal's page")
now, zone = page.now(), viewer_zone()

st.title(style.text(name))
st.markdown(page.resource_summary(profile.catalogue))
left, middle, right = st.columns(3)
left.metric("able to read (through grants)", style.human_count(profile.audience_size))
middle.metric("read it", style.human_count(profile.reader_count),
              help=f"principals over the last {profile.window.days} days")
right.metric("incidents", style.human_count(profile.incident_count))

st.subheader("Who can read it")
if len(profile.grants):
    st.caption("The grants in force on it (recorded in the access log), and everyone they reach through groups.")
    st.markdown("\n".join(page.grant_lines(profile.grants, now, zone)))
    st.dataframe(page.audience_table(profile.audience), hide_index=True, width="stretch")
    if profile.audience_size > len(profile.audience):
        st.caption(f"The first {len(profile.audience):,} of {profile.audience_size:,} are listed.")
    page.entity_picker("principal", list(profile.audience["principal"]), "Open the page of someone who can read it",
                       "resource_member")
else:
    st.caption("No grant on it is in force in the access log: only those its platform lets in by default can read it.")

st.subheader("Who read it")
if len(profile.readers):
    st.caption(f"{style.plural(profile.reader_count, 'principal')} read it over the last {profile.window.days} days; "
               "the latest first.")
    st.dataframe(page.readers_table(profile.readers, now, zone), hide_index=True, width="stretch")
    page.entity_picker("principal", list(profile.readers["principal"]), "Open a reader's page", "resource_reader")
else:
    st.caption(f"Nobody read it over the last {profile.window.days} days.")

page.incidents_and_containment(profile.incidents, profile.incident_count, profile.containment, name,
                               now, zone, "resource_incident")
