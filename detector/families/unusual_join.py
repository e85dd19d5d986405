"""Unusual join: resources, or data categories, rarely or never joined — by anyone, or by this principal."""

from __future__ import annotations

from detector.explain import Driver
from detector.families import Family


def _title(key: str, group: str, v: dict[str, float], lead: Driver) -> str:
    return f"{key} joined rarely combined data ({int(v['join_sensitive_categories'])} sensitive categories)"


FAMILY = Family(
    id="unusual_join", entity="principal",
    description="a join of resources or data categories rarely or never joined, by anyone or by this principal",
    signals=("joins", "join_sensitive_categories", "join_pair_rarity_global", "join_pair_rarity_personal"),
    evidence_action="join",
    techniques=("T1213",),  # ATT&CK Data from Information Repositories
    title=_title, scenarios=("unusual_join",), example={"join_sensitive_categories": 3},
)
