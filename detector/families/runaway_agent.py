"""Runaway agent: an agent or service identity whose rate, breadth and novelty jump; machine-regular timing.

Agents and services are bursty by nature (a pipeline's run, an assistant's task), so a
runaway must stand further past its normal ceiling than other families' signals.
"""

from __future__ import annotations

from detector.explain import Driver
from detector.families import Family


def _title(key: str, group: str, v: dict[str, float], lead: Driver) -> str:
    return (f"{group} {key}: {int(v['events'])} operations over {int(v['distinct_resources'])} resources, "
            f"up to {int(v['max_events_per_minute'])} a minute")


FAMILY = Family(
    id="runaway_agent", entity="principal",
    description="an agent or service identity whose rate, breadth and novelty jump",
    signals=("events", "distinct_resources", "max_events_per_minute", "timing_regularity", "new_resource_share",
             "failed_actions", "events_vs_team", "source_ips", "sensitive_reads", "bytes_read"),
    peer_groups=("agent", "service"), min_excess=2.0,
    title=_title, scenarios=("runaway_agent",),
    example={"events": 5200, "distinct_resources": 310, "max_events_per_minute": 240},
)
