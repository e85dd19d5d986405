"""The SOC console: ``streamlit run dashboard/app.py -- --dsn DSN`` (``blastwall console`` does this).

Sign-in first (OIDC through ``st.login`` when ``[auth]`` is configured in Streamlit's
secrets, else the local accounts file), then ``st.navigation`` over the views. For an
embedded store the console also hosts the scheduled jobs (and, for the demo, the
organisation's live traffic).
"""

from __future__ import annotations

import streamlit as st

from dashboard import login
from dashboard.state import hosted_jobs, options

st.set_page_config(page_title="blastwall", page_icon=":material/shield:", layout="wide")
opts = options()
if opts.scheduler:
    hosted_jobs(opts.dsn, opts.config, opts.demo)

user = login.signed_in_user()
if user is None:
    login.remember_destination()
    login.form()
    st.stop()

login.sidebar(user)
pages = [
    st.Page("views/queue.py", title="Queue", icon=":material/inbox:", default=True),
    st.Page("views/incident.py", title="Incident", icon=":material/crisis_alert:"),
    st.Page("views/overview.py", title="Overview", icon=":material/monitoring:"),
    st.Page("views/playbooks.py", title="Playbooks", icon=":material/menu_book:"),
    st.Page("views/principal.py", title="Principal", icon=":material/person:", url_path="principal"),
    st.Page("views/resource.py", title="Resource", icon=":material/database:", url_path="resource"),
]
navigation = st.navigation(pages)
login.go_to_destination(pages)
navigation.run()
