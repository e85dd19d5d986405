"""How the console shows things (colours, labels, table rows): presentation only, no decisions."""

from __future__ import annotations

import re
import string
from typing import Any

import pandas as pd

# Every ASCII punctuation character can be backslash-escaped in Markdown (CommonMark), and
# escaping all of them disarms links, images, emphasis, HTML, Streamlit's ``:colour[...]``
# and ``:material/...:`` directives and ``$`` maths. Bare URLs, ``www.`` names and e-mail
# addresses are linked even so (GFM autolinks): a zero-width space breaks each trigger.
_ESCAPES = str.maketrans({char: "\\" + char for char in string.punctuation})
_AUTOLINK_TRIGGERS = re.compile(r"(?i)(\\:)(\\/\\/)|(www)(\\.)|()(\\@)")

SEVERITY_COLOURS = {"SEV1": "#d93025", "SEV2": "#f29900", "SEV3": "#1a73e8", "SEV4": "#80868b"}
SEVERITY_BADGE = {"SEV1": "red", "SEV2": "orange", "SEV3": "blue", "SEV4": "gray"}
SEVERITY_MEANING = {"SEV1": "page now", "SEV2": "page", "SEV3": "notify / ticket", "SEV4": "record"}


def text(value: Any) -> str:
    """A value from the data (a log line, a name, an error) as literal text in a Markdown element.

    Anyone who can write a log line controls principal, resource and grantee names; in a
    title, caption, alert or metric they must read as text, never become a link, an image
    (a tracking beacon) or formatting. Newlines become spaces: one element, one line.
    """
    escaped = " ".join(str(value).split()).translate(_ESCAPES)
    return _AUTOLINK_TRIGGERS.sub(lambda m: "\u200b".join(part for part in m.groups() if part is not None),
                                  escaped)


def queue_row(incident: dict[str, Any]) -> dict[str, Any]:
    """One incident as a queue row."""
    return {"severity": incident["severity"], "score": round(incident["score"], 3), "status": incident["status"],
            "detector": incident["detector"], "title": incident["title"],
            "principals": ", ".join(incident["principals"][:3]) + ("…" if len(incident["principals"]) > 3 else ""),
            "assignee": incident["assignee"] or "", "detected": incident["detected_at"], "id": str(incident["id"])}


def by_severity(table: pd.DataFrame) -> Any:
    """The table with its severity cells coloured."""
    def colour(value: str) -> str:
        return f"background-color: {SEVERITY_COLOURS.get(value, '')}; color: white; font-weight: 600"

    return table.style.map(colour, subset=["severity"])
