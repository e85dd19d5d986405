"""The fast path: certain detections as events arrive, before their step is over.

Some findings need no baseline, only the event and the catalogue: a grant of sensitive
data to an outside account or a mass audience, a training run on unsanitised or
uncatalogued data (:mod:`detector.policy`), and the detection rules marked
``realtime: true`` (:mod:`detector.rules`). Waiting for the step to end (and its
lateness) before acting on them leaves sensitive data readable for minutes. The fast path
checks what was ingested since its last run, every few seconds (the live loop's tick),
after each pull and after each ``blastwall ingest``:

1. New events are found by ``ingested_at`` (with a small overlap, for inserts that became
   visible late) among events of the last :attr:`FastPathSettings.horizon` (older events
   are left to the step loop).
2. They are judged in the step they belong to, exactly as the step loop will judge that
   step: a grant's audience before is the grant state at the step's start
   (:func:`features.engine.grant_features`), a training run is aggregated over the step
   so far, a realtime rule's query reads the step so far.
3. The alerts carry the step's deterministic ids (the step's end in the id) and are
   recorded as *provisional*: the incident they open is the one the step loop would open;
   at the step's end the step loop's alert of the same id enriches it (folds its complete
   evidence in) and never opens a second one. Re-checking the same events finds the same
   ids: nothing is recorded twice.

The caller (:class:`blastwall.jobs.DetectionJobs`) then hands new incidents to the
playbook engine at once, so paging and containment follow within the same run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from detector import runs
from detector.alerting import error_alert
from detector.detect import DetectConfig, organisation_size
from detector.families import Batch, Step
from detector.incidents import Alert, RecordOutcome, record_alert
from detector.policy import violation_alerts
from detector.rules import READ_ONLY, Rule, alerts_of_rule
from features.engine import WINDOW_SQL, FeatureSet, grant_features, training_run_features
from features.times import from_epoch_ms, ms_param, to_epoch_ms


@dataclass(frozen=True)
class FastPathSettings:
    """How the fast path looks for new events.

    Attributes
    ----------
    horizon : timedelta
        Only events at most this old are checked (a backfill of old data is the step loop's).
    overlap : timedelta
        Each run re-reads what was ingested this long before its previous run's start, so
        an insert that became visible after that run is still seen (ids make it harmless).
    """

    horizon: timedelta = timedelta(minutes=30)
    overlap: timedelta = timedelta(seconds=15)


@dataclass
class FastPathResult:
    """What one fast-path run did."""

    events: int = 0
    alerts: list[Alert] = field(default_factory=list)
    outcomes: list[RecordOutcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def opened(self) -> int:
        return sum(outcome.outcome == "opened" for outcome in self.outcomes)


# Per step of the new events (steps on the step loop's grid: ``offset`` is its origin modulo
# the step): how many grants, training events, and events in all.
_NEW_EVENTS = f"""SELECT intDiv(toUnixTimestamp64Milli(event_time) - {{offset:Int64}}, {{step_ms:Int64}})
        * {{step_ms:Int64}} + {{offset:Int64}} AS step_lo,
    min(toUnixTimestamp64Milli(event_time)) AS first_ms, max(toUnixTimestamp64Milli(event_time)) AS last_ms,
    countIf(action = 'grant') AS grants, countIf(action = 'train') AS trains, count() AS events
FROM access_log
WHERE {WINDOW_SQL} AND ingested_at >= {ms_param('since')}
GROUP BY step_lo ORDER BY step_lo"""


class FastPath:
    """The fast path over one store, with the ingestion cursor it keeps between runs.

    Parameters
    ----------
    step : timedelta
        The step loop's step: alerts take the ids of the step their events belong to.
    config : DetectConfig
        Policy thresholds, the rules (those marked ``realtime`` run here), dedup window.
    settings : FastPathSettings, optional
    since : datetime, optional
        Check events ingested from this moment on (default: everything within the horizon).
    """

    def __init__(self, step: timedelta, config: DetectConfig | None = None,
                 settings: FastPathSettings | None = None, since: datetime | None = None) -> None:
        self.step = step
        self.config = config or DetectConfig()
        self.settings = settings or FastPathSettings()
        self.cursor = since

    @property
    def realtime_rules(self) -> list[Rule]:
        return [rule for rule in self.config.rules if rule.spec.realtime]

    def run(self, client: Client, now: datetime | None = None) -> FastPathResult:
        """Check what was ingested since the last run; record the alerts; advance the cursor.

        Raises
        ------
        clickhouse_connect.driver.exceptions.ClickHouseError
            The store failed: the cursor did not move, the next run checks the same events.
        """
        started = time.perf_counter()
        now = (now or datetime.now(UTC)).astimezone(UTC)
        # The store's clock stamps ingested_at: the next run starts where this one looked.
        checked_at = from_epoch_ms(int(client.query("SELECT toUnixTimestamp64Milli(now64(3))").result_rows[0][0]))
        since = self.cursor - self.settings.overlap if self.cursor is not None else datetime(1970, 1, 1, tzinfo=UTC)
        result = FastPathResult()
        step_ms = int(self.step / timedelta(milliseconds=1))
        # The step loop's grid: it continues from its watermark (an unaligned --since moves it).
        mark = runs.watermark(client)
        offset = to_epoch_ms(mark) % step_ms if mark is not None else 0
        lo = now - self.settings.horizon
        steps = client.query(_NEW_EVENTS, parameters={
            "step_ms": step_ms, "offset": offset, "lo": to_epoch_ms(lo),
            "hi": to_epoch_ms(max(now, checked_at) + self.step), "since": to_epoch_ms(since)}).result_rows
        people = organisation_size(client) if steps else 0  # read every run, as the step loop does
        for step_lo, first_ms, last_ms, grants, trains, events in steps:
            result.events += int(events)
            start = from_epoch_ms(int(step_lo))
            end = start + self.step
            seen_until = min(end, from_epoch_ms(int(last_ms) + 1))  # the step so far
            result.alerts += self._step_alerts(client, start, end, seen_until, int(first_ms), int(grants),
                                               int(trains), since, people, result)
        for alert in sorted(result.alerts, key=lambda a: (a.first_seen, a.alert_id)):
            result.outcomes.append(record_alert(client, replace(alert, detected_at=now, provisional=True),
                                                self.config.dedup_window))
        self.cursor = checked_at
        result.seconds = time.perf_counter() - started
        return result

    def _step_alerts(self, client: Client, start: datetime, end: datetime, seen_until: datetime, first_ms: int,
                     grants: int, trains: int, since: datetime, people: int, result: FastPathResult
                     ) -> list[Alert]:
        """The certain alerts of one step's new events, with the step's ids."""
        step_params = {"lo": to_epoch_ms(start), "hi": to_epoch_ms(seen_until)}
        frames = {"grant": grant_features(client, {"lo": first_ms, "hi": step_params["hi"]},
                                          state_ms=step_params["lo"])[0] if grants else None,
                  "training_run": training_run_features(client, step_params) if trains else None}
        alerts: list[Alert] = []
        features = FeatureSet(start, end, {k: v for k, v in frames.items() if v is not None})
        step = Step(client, None, features, step_params, self.config, people,
                    Batch(step_params["lo"], to_epoch_ms(end), to_epoch_ms(end) - step_params["lo"]))
        for entity, frame in frames.items():
            if frame is None or frame.empty:
                continue
            try:
                alerts += violation_alerts(step, entity)
            except ClickHouseError:
                raise
            except Exception as error:  # noqa: BLE001 - a bug in one check must be seen, not stop the others
                result.errors.append(f"fast path {entity}: {type(error).__name__}: {error}")
                alerts.append(error_alert(f"fast path {entity}", error, end))
        for rule in self.realtime_rules:
            if not self._rule_has_new_events(client, rule, start, seen_until, since):
                continue
            try:
                alerts += alerts_of_rule(client, rule, start, end, until=seen_until)
            except ClickHouseError:
                raise
            except Exception as error:  # noqa: BLE001 - a broken rule is a pipeline_error, as in the step
                result.errors.append(f"rule {rule.id}: {type(error).__name__}: {error}")
                alerts.append(error_alert(f"rule {rule.id}", error, end))
        return alerts

    @staticmethod
    def _rule_has_new_events(client: Client, rule: Rule, start: datetime, until: datetime, since: datetime) -> bool:
        """Whether the step so far has a new event the rule could find something in (its ``only_when``)."""
        condition = f" AND ({rule.spec.only_when})" if rule.spec.only_when else ""
        return bool(client.query(
            f"SELECT count() > 0 FROM access_log WHERE {WINDOW_SQL} AND ingested_at >= {ms_param('since')}{condition}",
            parameters={"lo": to_epoch_ms(start), "hi": to_epoch_ms(until), "since": to_epoch_ms(since)},
            settings=READ_ONLY).result_rows[0][0])

