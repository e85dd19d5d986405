"""Permission fan-out: a grant whose effective audience jumps, above all on sensitive data.

Grants are judged as grants — by policy, on the audience they open (nested groups
expanded), to an outside account, and by whom and through what the change was made —
never as one person's volume: the principal features ``grants`` and
``largest_grant_audience`` only name this family (a catch-all outlier led by them is
left to it).
"""

from __future__ import annotations

from detector.families import Family, Step
from detector.incidents import Alert
from detector.policy import violation_alerts


def grant_alerts(step: Step) -> list[Alert]:
    """Grants of confidential or restricted data to an outside account or a mass audience."""
    return violation_alerts(step, "grant")


FAMILY = Family(
    id="permission_fanout", entity="grant",
    description="a grant whose effective audience (nested groups expanded) jumps on sensitive data, "
                "or that reaches an outside account",
    signals=("grants", "largest_grant_audience"), alerts_on_signals=False,
    techniques=("T1098",),  # ATT&CK Account Manipulation
    detect=grant_alerts, scenarios=("permission_fanout", "external_grant"),
)
