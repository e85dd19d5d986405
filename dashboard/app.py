"""The SOC console: ``streamlit run dashboard/app.py -- --dsn DSN`` (``blastwall console`` does this)."""

from __future__ import annotations

import streamlit as st

from dashboard.state import dsn_from_argv

st.set_page_config(page_title="blastwall", layout="wide")
st.session_state.setdefault("dsn", dsn_from_argv())

page = st.navigation([st.Page("views/overview.py", title="Overview", icon=":material/monitoring:", default=True)])
page.run()
