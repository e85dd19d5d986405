"""Entity risk: weak signals about one principal add up, with decay, to an incident.

As Splunk's risk-based alerting and Elastic's entity risk do, every weak signal about a
principal becomes a *risk event* worth some points:

==============================================================  ======
signal                                                          points
==============================================================  ======
a SEV4 alert about the principal (any family)                   1
a SEV3 alert about the principal (any family)                   2
an observation (:mod:`detector.observations`)                   its own, 1-3
==============================================================  ======

SEV1 and SEV2 alerts page by themselves and add nothing. A principal's *risk* at the end
of a step is the sum of its events' points over the last :attr:`RiskConfig.horizon`,
each halved every :attr:`RiskConfig.half_life`. When a step brings a principal new risk
events and its risk reaches :attr:`RiskConfig.ticket` (``SEV3``) or
:attr:`RiskConfig.page` (``SEV2``), an ``entity_risk`` alert lists every contributing
signal. It takes at least :attr:`RiskConfig.min_signals` distinct signals: one weak
signal alone never alerts, however many points it carries (the observations of one act
are one signal; so are one detector's alerts in a step), and a page (``SEV2``) takes
evidence of two kinds at least (one kind repeating itself is one story).

Risk events are stored in ``risk_events`` keyed by their deterministic id; a step run
again first removes what its earlier run stored (:func:`forget_step`), so it states only
its own findings. A step reads only the events of earlier steps (and its own, in memory),
so the step loop and the batch path see the same risk.

The alerts counted are those the stages raised, before incidents apply them: an alert
that a false-positive verdict then suppresses still adds its points (a known limitation).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from clickhouse_connect.driver.client import Client

from detector.alerting import alert_id, explanation
from detector.explain import Driver
from detector.families import Step
from detector.incidents import Alert
from detector.observations import KINDS, Observation, observations
from features.times import from_epoch_ms, ms_param, to_epoch_ms

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE IF NOT EXISTS risk_events (
    principal String, signal_id String, at DateTime64(3, 'UTC'), source LowCardinality(String),
    points Float64, text String, first_seen DateTime64(3, 'UTC'), last_seen DateTime64(3, 'UTC'),
    resources Array(String), act DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree ORDER BY (principal, signal_id)""",
    ]),
]

#: Points of a weak alert, by severity (stronger alerts page by themselves).
ALERT_POINTS = {"SEV4": 1.0, "SEV3": 2.0}
#: Detectors whose alerts are not about a principal's behaviour.
_NOT_RISK = ("entity_risk", "pipeline_error", "playbook_error")


@dataclass(frozen=True)
class RiskConfig:
    """When accumulated risk becomes an incident.

    Attributes
    ----------
    half_life : timedelta
        A risk event's points halve over this.
    horizon : timedelta
        Events older than this no longer count.
    ticket, page : float
        Risk for a ``SEV3`` and a ``SEV2`` incident.
    min_signals : int
        Distinct signals needed for any incident: one detector's alerts in one step are one
        signal, and so are the observations of one act (a first read of another team's data
        and the new combination of data it makes).
    signal_cap : float
        The most points one signal adds, however many events it holds.
    """

    half_life: timedelta = timedelta(days=3)
    horizon: timedelta = timedelta(days=7)
    ticket: float = 4.0
    page: float = 6.0
    min_signals: int = 2
    signal_cap: float = 4.0


@dataclass(frozen=True)
class RiskEvent:
    """One weak signal about one principal, worth some points at a moment (the end of its step).

    ``act_ms`` is the event that made an observation (0 for an alert): observations of one
    act in a step are one signal.
    """

    principal: str
    signal_id: str
    at_ms: int
    source: str
    points: float
    text: str
    first_ms: int
    last_ms: int
    resources: tuple[str, ...]
    act_ms: int = 0


def events_of_alerts(alerts: list[Alert], at_ms: int) -> list[RiskEvent]:
    """The risk events of a step's weak alerts about principals."""
    events = []
    for alert in alerts:
        points = ALERT_POINTS.get(alert.severity)
        if points is None or alert.entity != "principal" or alert.detector in _NOT_RISK:
            continue
        events.append(RiskEvent(alert.entity_key, alert.alert_id, at_ms, alert.detector, points,
                                f"{alert.severity} {alert.detector}: {alert.title}", to_epoch_ms(alert.first_seen),
                                to_epoch_ms(alert.last_seen), tuple(alert.resources)))
    return events


def events_of_observations(observations: list[Observation], at_ms: int) -> list[RiskEvent]:
    """The risk events of a step's observations."""
    return [RiskEvent(o.principal, f"{o.kind}|{o.principal}|{o.subject}|{o.act_ms}|{at_ms}", at_ms, o.kind,
                      float(o.points),
                      o.text, o.first_ms, o.last_ms, o.resources, o.act_ms) for o in observations]


def _signal_of(event: RiskEvent) -> tuple[str, int, int]:
    """The signal a risk event belongs to: one detector's alerts in a step, or the observations of one act.

    One act often makes several observations (a first read of another team's data is
    also a new combination of categories): they are one signal.
    """
    if event.source in KINDS:
        return ("observation", event.at_ms, event.act_ms)
    return (event.source, event.at_ms, 0)


_EARLIER = f"""SELECT principal, signal_id, toUnixTimestamp64Milli(at), source, points, text,
       toUnixTimestamp64Milli(first_seen), toUnixTimestamp64Milli(last_seen), resources,
       toUnixTimestamp64Milli(act)
FROM risk_events FINAL
WHERE principal IN {{keys:Array(String)}} AND at > {ms_param('since')} AND at < {ms_param('at')}"""


def store(client: Client, events: list[RiskEvent]) -> None:
    """Write risk events (the same id again replaces the row: a step run twice writes it once)."""
    if not events:
        return
    client.insert("risk_events", [
        [e.principal, e.signal_id, from_epoch_ms(e.at_ms), e.source, e.points, e.text, from_epoch_ms(e.first_ms),
         from_epoch_ms(e.last_ms), list(e.resources), from_epoch_ms(e.act_ms)] for e in events],
        column_names=["principal", "signal_id", "at", "source", "points", "text", "first_seen", "last_seen",
                      "resources", "act"])


def entity_risk_alerts(step: Step) -> list[Alert]:
    """The ``entity_risk`` family's stage: this step's observations and weak alerts, added to each principal's risk.

    It runs after every other stage (rules included), whose alerts are in ``step.alerts``.
    """
    at = step.params["hi"]
    forget_step(step.client, at)
    new = events_of_observations(observations(step, step.config.observations), at) + events_of_alerts(step.alerts, at)
    return risk_alerts(step, new, step.config.risk)


def forget_step(client: Client, at_ms: int) -> None:
    """Remove what an earlier run of the step ending at ``at_ms`` stored (a rerun states its own findings)."""
    params, where = {"at": at_ms}, f"at = {ms_param('at')}"
    if client.query(f"SELECT count() FROM risk_events WHERE {where}", parameters=params).result_rows[0][0]:
        client.command(f"DELETE FROM risk_events WHERE {where}", parameters=params)


def risk_alerts(step: Step, new: list[RiskEvent], config: RiskConfig | None = None) -> list[Alert]:
    """Store this step's risk events; alert on each principal they bring to a risky total.

    Parameters
    ----------
    step : Step
        The step (its end is the moment risk is judged).
    new : list of RiskEvent
        This step's risk events.
    config : RiskConfig, optional
    """
    config = config or RiskConfig()
    if not new:
        return []
    at = step.params["hi"]
    horizon_ms = int(config.horizon / timedelta(milliseconds=1))
    half_life_ms = config.half_life / timedelta(milliseconds=1)
    keys = sorted({e.principal for e in new})
    earlier = [RiskEvent(p, s, int(t), src, float(pts), text, int(f), int(last), tuple(res), int(act))
               for p, s, t, src, pts, text, f, last, res, act in step.client.query(
                   _EARLIER, parameters={"keys": keys, "since": at - horizon_ms, "at": at}).result_rows]
    store(step.client, new)
    by_principal: dict[str, dict[str, RiskEvent]] = {}
    for event in earlier + new:
        by_principal.setdefault(event.principal, {})[event.signal_id] = event
    alerts = []
    for principal in keys:
        events = sorted(by_principal[principal].values(), key=lambda e: (e.at_ms, e.signal_id))
        signals: dict[tuple[str, int, int], float] = {}
        for e in events:
            signals[_signal_of(e)] = signals.get(_signal_of(e), 0.0) + e.points
        total = round(sum(min(points, config.signal_cap) * 0.5 ** ((at - at_ms) / half_life_ms)
                          for (_, at_ms, _), points in signals.items()), 6)
        if len(signals) < config.min_signals or total < config.ticket:
            continue
        weights = [e.points * 0.5 ** ((at - e.at_ms) / half_life_ms) for e in events]
        # A page takes two kinds of evidence: one kind repeating itself is one story.
        level = "SEV2" if total >= config.page and len({e.source for e in events}) >= 2 else "SEV3"
        drivers = [Driver(e.source, e.text, e.points, 0.0, w / sum(weights), w)
                   for e, w in sorted(zip(events, weights), key=lambda item: (-item[1], item[0].signal_id))]
        resources = tuple(dict.fromkeys(r for e in reversed(events) for r in e.resources))[:20]
        span = _span_words(at - events[0].at_ms)
        alerts.append(Alert(
            alert_id=alert_id("entity_risk", "principal", principal, from_epoch_ms(at)), detector="entity_risk",
            entity="principal", entity_key=principal,
            title=f"{principal}: {len(signals)} weak signals {span} add up to risk {total:.1f}",
            severity=level, score=min(1.0, total / (2 * config.page)), principals=(principal,), resources=resources,
            first_seen=from_epoch_ms(min(e.first_ms for e in events)),
            last_seen=from_epoch_ms(max(e.last_ms for e in events)), detected_at=from_epoch_ms(at),
            explanation=explanation(drivers, {"accumulated_risk": int(total)})))
    return alerts


def _span_words(span_ms: int) -> str:
    """How long the signals took, in words: ``"within 40 min"``, ``"over 5 h"``, ``"over 2.5 days"``."""
    minutes = max(span_ms, 0) / 60_000
    if minutes < 60:
        return f"within {max(1, round(minutes))} min"
    if minutes < 48 * 60:
        return f"over {minutes / 60:.0f} h"
    return f"over {minutes / 1440:.1f} days"
