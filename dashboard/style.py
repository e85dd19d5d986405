"""How the console shows things (colours, labels, table rows): presentation only, no decisions."""

from __future__ import annotations

from typing import Any

import pandas as pd

SEVERITY_COLOURS = {"SEV1": "#d93025", "SEV2": "#f29900", "SEV3": "#1a73e8", "SEV4": "#80868b"}
SEVERITY_BADGE = {"SEV1": "red", "SEV2": "orange", "SEV3": "blue", "SEV4": "gray"}
SEVERITY_MEANING = {"SEV1": "page now", "SEV2": "page", "SEV3": "notify / ticket", "SEV4": "record"}


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
