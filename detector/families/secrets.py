"""Secrets sweep: many distinct secrets read (often with denials) by one identity."""

from __future__ import annotations

from detector.explain import Driver
from detector.families import Family


def _title(key: str, group: str, v: dict[str, float], lead: Driver) -> str:
    return f"{key} read {int(v['distinct_secrets'])} distinct secrets ({int(v['failed_actions'])} denied or failed)"


FAMILY = Family(
    id="secrets", entity="principal",
    description="many distinct secrets read by one identity, far above its normal",
    signals=("distinct_secrets",),
    techniques=("T1552",),  # ATT&CK Unsecured Credentials
    title=_title, scenarios=("secrets_sweep",), example={"distinct_secrets": 40, "failed_actions": 12},
)
