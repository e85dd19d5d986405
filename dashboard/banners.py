"""Lines any view can show at its top: paging that reaches nobody, detection that is behind.

Each reads through :func:`dashboard.state.read` (cached briefly) and says nothing when all is well.
"""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from dashboard import style
from dashboard.state import options, read, settings, viewer_zone
from detector.runs import health
from playbooks.paging import paging_configured, unrouted_pages


def paging_banner() -> None:
    """A warning when no paging channel has a URL: who would have been paged, and how to configure it."""
    if paging_configured(settings(options().config).paging):
        return
    st.warning(style.paging_note(read(unrouted_pages)), icon=":material/notifications_off:")


def detection_banner() -> None:
    """An info line when detection has never run or is catching up (incidents may still appear)."""
    note = style.detection_note(read(health), datetime.now(UTC), viewer_zone())
    if note:
        st.info(note, icon=":material/hourglass_top:")
