"""Links to the entity pages: every principal and resource name in the console opens its page.

A link keeps the session (Streamlit navigates inside the app), so the analyst stays signed in;
the name travels in the page's query parameters, so a page can also be bookmarked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import streamlit as st

from dashboard import style

PRINCIPAL_PAGE = "views/principal.py"
RESOURCE_PAGE = "views/resource.py"
_PAGES = {"principal": PRINCIPAL_PAGE, "resource": RESOURCE_PAGE}
_ICONS = {"principal": ":material/person:", "resource": ":material/database:"}

Kind = Literal["principal", "resource"]


def entity_link(kind: Kind, name: str, container: Any = st, label: str | None = None) -> None:
    """One link to a principal's or a resource's page (the name shown as text, never as Markdown)."""
    container.page_link(_PAGES[kind], label=style.text(label or name), icon=_ICONS[kind],
                        query_params={"name": name})


def entity_links(kind: Kind, names: Sequence[str], container: Any = st, limit: int = 6) -> None:
    """Links to several entities in a row that wraps (the first ``limit``; how many more, in words)."""
    shown = list(names)[:limit]
    if not shown:
        return
    row = container.container(horizontal=True, wrap=True, gap="small")
    for name in shown:
        entity_link(kind, name, row)
    if len(names) > limit:
        row.caption(f"and {len(names) - limit:,} more")


def open_entity(kind: Kind, name: str) -> None:
    """Go to an entity's page now (from a table row the analyst picked)."""
    st.session_state[f"{kind}_name"] = name
    st.switch_page(_PAGES[kind])


def requested_entity(kind: Kind) -> str:
    """The entity an entity page was opened for: its query parameter, else the one picked in this session."""
    name = st.query_params.get("name") or st.session_state.get(f"{kind}_name") or ""
    return str(name)
