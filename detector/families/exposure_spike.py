"""Exposure spike: many first-time readers of a sensitive resource, soon after a grant."""

from __future__ import annotations

from detector.alerting import RESOURCE_CONTEXT, alert_id, context, explanation
from detector.families import Family, Step
from detector.incidents import Alert
from detector.severity import SeverityInputs, severity, severity_points
from features.times import from_epoch_ms


def exposure_alerts(step: Step) -> list[Alert]:
    """Resources read in the window, scored by the ensemble (peer group ``all``): a sensitive
    resource with many first-time readers and a high score is an exposure spike, grouped
    with the grant that caused it (group key: the resource)."""
    from detector.detect import score_entity, scoring_space, step_rows  # the engine imports the families

    client, book, features, params, config = step.client, step.book, step.features, step.params, step.config
    keys, groups, X = step_rows(features, "resource", step.batch)
    if X.shape[0] == 0:
        return []
    candidates = score_entity(client, book, "resource", features.start, features.end, groups,
                               scoring_space(X), X, keys, config, step.batch)
    exposed = [c for c in candidates if c.values["resource_sensitivity_rank"] >= 2
               and c.values["first_time_readers"] >= config.exposure_min_readers]
    found = context(client, RESOURCE_CONTEXT, [c.key for c in exposed], params)
    alerts = []
    for candidate in exposed:
        ctx, v = found.get(candidate.key), candidate.values
        if ctx is None:
            continue
        inputs = SeverityInputs(
            detector="exposure_spike", score=candidate.score, sensitivity_rank=int(v["resource_sensitivity_rank"]),
            sensitive_categories=int(ctx["categories"]), people_exposed=int(v["first_time_readers"]),
            records_exposed=int(ctx["rows_read"]))
        points = severity_points(inputs)
        alerts.append(Alert(
            alert_id=alert_id("exposure_spike", "resource", candidate.key, features.end), detector="exposure_spike",
            entity="resource", entity_key=candidate.key,
            title=f"{int(v['first_time_readers'])} people read {candidate.key} for the first time",
            severity=severity(inputs), score=round(candidate.score, 6), principals=tuple(ctx["readers"]),
            resources=(candidate.key,), first_seen=from_epoch_ms(ctx["first_ms"]),
            last_seen=from_epoch_ms(ctx["last_ms"]),
            detected_at=features.end, explanation=explanation(candidate.drivers, points),
            group_key=f"resource:{candidate.key}"))
    return alerts


FAMILY = Family(
    id="exposure_spike", entity="resource",
    description="many first-time readers of a confidential or restricted resource, soon after a grant",
    signals=("first_time_readers",), peer_groups=(), techniques=("T1530",),  # ATT&CK Data from Cloud Storage
    detect=exposure_alerts, scenarios=("permission_fanout",),
)
