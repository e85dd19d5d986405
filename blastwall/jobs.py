"""Scheduled jobs (APScheduler 3.x): live detection from the watermark, and retention.

``detect`` runs every minute and processes every whole step that ended at least
``lateness`` ago, from the watermark (:func:`detector.replay.run_steps`): a crash or a
store outage leaves the watermark where it was and the next run catches up, and a
re-run opens nothing twice. Baselines are refitted inside the detect step when due (by
event time, so a replay and the live loop fit alike) and the feature history is compacted
at each day boundary by the same loop. After detecting, the same job hands new incidents
(and incidents whose severity rose) to the playbook engine, which pages by severity and
contains (:class:`playbooks.engine.Responder`). ``fast_path`` runs every few seconds
(:attr:`LiveSettings.tick`): certain detections (policy violations, ``realtime`` rules)
on what arrived since its last run, with the step's own incident ids, then the same
paging and containment (:meth:`DetectionJobs.tick`). ``escalate`` re-pages unacknowledged
incidents and delivers deferred or failed pages. ``retention`` drops baseline rows older
than twice the lookback. Jobs have stable ids, ``coalesce=True``, ``max_instances=1`` and a misfire
grace, and share one lock so they never use the store client at the same time (the
console hosts them in-process when the store is embedded). A failing job is logged,
recorded in the run ledger (``detect_runs``) and, through the detector, raised as a
visible ``pipeline_error`` incident; it never stops the scheduler.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.base import BaseScheduler
from clickhouse_connect.driver.client import Client

from detector import runs
from detector.baselines import ModelBook, drop_rows_before
from detector.detect import DetectConfig
from detector.fastpath import FastPath, FastPathResult, FastPathSettings
from detector.incidents import Alert, record_alert
from detector.replay import ReplaySummary, StepFailed, align, run_steps
from features.times import bound_ms
from playbooks.engine import Responder

log = logging.getLogger("blastwall.jobs")
#: The detect job runs this long after each whole multiple of its interval (writes of the
#: step's last second have landed).
DETECT_OFFSET = timedelta(seconds=3)


@dataclass
class LiveSettings:
    """Settings of the live loop.

    Attributes
    ----------
    step : timedelta
        Window per detect step (the baselines are per step length).
    lateness : timedelta
        How long after a step ends it is processed (late events still arrive).
    initial_backfill : timedelta
        With nothing processed yet, start this long before now (not before the first event).
    max_steps_per_run : int
        Steps one job run processes at most; the next run continues (catching up a backlog
        never blocks the scheduler for long).
    config : DetectConfig
    respond_max_age : timedelta
        Incidents detected longer ago than this (a backfill) are neither paged nor contained.
    tick : timedelta
        How often the fast path (:mod:`detector.fastpath`) checks new events for certain
        detections, between the steps.
    fast : FastPathSettings
    """

    step: timedelta = timedelta(minutes=5)
    lateness: timedelta = timedelta(minutes=2)
    initial_backfill: timedelta = timedelta(days=1)
    max_steps_per_run: int = 60
    config: DetectConfig = field(default_factory=DetectConfig)
    respond_max_age: timedelta = timedelta(hours=6)
    tick: timedelta = timedelta(seconds=5)
    fast: FastPathSettings = field(default_factory=FastPathSettings)


class DetectionJobs:
    """The job callables over one store client, with the state they keep between runs."""

    def __init__(self, client: Client, settings: LiveSettings | None = None,
                 responder: Responder | None = None) -> None:
        self.client = client
        self.settings = settings or LiveSettings()
        self.responder = responder
        self.lock = threading.Lock()
        self.book: ModelBook | None = None
        self.last: ReplaySummary | None = None
        self.last_error: str = ""
        self.fast = FastPath(self.settings.step, self.settings.config, self.settings.fast)
        self.last_fast: FastPathResult | None = None
        self.fast_error: str = ""

    def start_point(self, now: datetime) -> datetime | None:
        """Where live detection starts when nothing was processed yet (None: no events at all)."""
        first = self.client.query(
            "SELECT min(toUnixTimestamp64Milli(event_time)), count() FROM access_log").result_rows[0]
        if not first[1]:
            return None
        earliest = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(first[0]))
        return align(max(earliest, now - self.settings.initial_backfill), self.settings.step)

    def detect(self, now: datetime | None = None) -> ReplaySummary | None:
        """Process the whole steps that are due; never raises (failures are recorded and logged)."""
        now = now or datetime.now(UTC)
        with self.lock:
            try:
                if self.book is None:
                    self.book = ModelBook.load(self.client, self.settings.config.baseline)
                mark = runs.watermark(self.client)  # one look-up: it decides where to start
                since = None if mark else self.start_point(now)
                if since is None and mark is None:
                    return None  # nothing ingested yet
                until = align(now - self.settings.lateness, self.settings.step)
                self.last = run_steps(self.client, until, self.settings.step, since=since,
                                      config=self.settings.config, book=self.book,
                                      max_steps=self.settings.max_steps_per_run)
                self.last_error = ""
            except Exception as error:  # noqa: BLE001 - a job must never take the scheduler down
                self.book = None  # reload state from the store on the next run
                self.last_error = str(error)
                log.error("detect job failed: %s", error)
                self._raise_visible(error, now)
                self.last = None
            self._respond(now)  # also after a failure: incidents already open still get their response
            return self.last

    def tick(self, now: datetime | None = None) -> FastPathResult | None:
        """The fast path over what arrived since its last run, then paging and containment at once.

        Runs every :attr:`LiveSettings.tick`, after each pull, and after an ingest; never
        raises (a failure is logged and the next run checks the same events again).
        """
        with self.lock:
            now = now or datetime.now(UTC)  # once the lock is ours: a long detect run may have held it
            try:
                self.last_fast = self.fast.run(self.client, now)
            except Exception as error:  # noqa: BLE001 - e.g. the store is down: the cursor did not move
                log.error("fast path failed: %s", error)
                self.fast_error = str(error).strip().splitlines()[0][:300] if str(error).strip() else repr(error)
                self.last_fast = None
                return None
            self.fast_error = ""
            for error in self.last_fast.errors:
                log.error("fast path: %s", error)
            found = {o.incident_id for o in self.last_fast.outcomes if o.outcome == "opened" or o.severity_rose}
            if found:
                self._respond(now, only=found)
            return self.last_fast

    def _respond(self, now: datetime, only: set[int] | None = None) -> None:
        if self.responder is None:
            return
        try:
            summary = self.responder.respond(now, max_age=self.settings.respond_max_age, only=only)
            for error in summary.errors:
                log.error("respond: %s", error)
        except Exception as error:  # noqa: BLE001 - e.g. the store is down: the next run catches up
            log.error("respond failed: %s", error)

    def escalate(self, now: datetime | None = None) -> None:
        """Escalate unacknowledged incidents; deliver deferred and failed pages (never raises)."""
        if self.responder is None:
            return
        with self.lock:
            try:
                self.responder.pager.escalate(now or datetime.now(UTC))
            except Exception as error:  # noqa: BLE001
                log.error("escalate job failed: %s", error)

    def _raise_visible(self, error: Exception, now: datetime) -> None:
        """Open (or update) a pipeline_error incident, when the store can still be written."""
        stage = "step" if isinstance(error, StepFailed) else "job"
        hour = align(now, timedelta(hours=1))
        try:
            record_alert(self.client, Alert(
                alert_id=f"pipeline_error|job|detect|{bound_ms(hour)}", detector="pipeline_error", entity="job",
                entity_key="detect", title=f"the detect job is failing: {str(error)[:200]}", severity="SEV3",
                score=1.0, principals=(), resources=(), first_seen=now, last_seen=now, detected_at=now,
                explanation=[{"feature": "error", "value": str(error)[:2000], "baseline": "", "weight": 1.0,
                              "stage": stage}]))
        except Exception:  # noqa: BLE001 - the store is down: the log line is all we can do
            log.error("could not record the failure in the store either")

    def retention(self, now: datetime | None = None) -> None:
        """Drop baseline rows that no fit can use any more (older than twice the lookback)."""
        now = now or datetime.now(UTC)
        cutoff = now - 2 * self.settings.config.baseline.lookback
        with self.lock:
            try:
                drop_rows_before(self.client, cutoff)
            except Exception as error:  # noqa: BLE001
                log.error("retention job failed: %s", error)


def schedule(scheduler: BaseScheduler, jobs: DetectionJobs,
             detect_every: timedelta = timedelta(minutes=1)) -> BaseScheduler:
    """Add the jobs to a scheduler (stable ids; replaces jobs of the same id).

    ``detect_every`` is how often ``detect`` looks for due steps; the console runs it more
    often with fewer steps per run, so a backlog catches up without holding the store
    from the analysts for long.
    """
    common = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 120, "replace_existing": True}
    # Runs on whole multiples of detect_every (plus a few seconds), from the next one on, so a
    # step whose lateness ends on a minute is processed seconds after it is due, not up to a
    # minute later.
    scheduler.add_job(jobs.detect, "interval", seconds=detect_every.total_seconds(), id="detect",
                      start_date=align(datetime.now(UTC), detect_every) + DETECT_OFFSET, **common)
    scheduler.add_job(jobs.tick, "interval", seconds=jobs.settings.tick.total_seconds(), id="fast_path",
                      next_run_time=datetime.now(UTC), **common)
    scheduler.add_job(jobs.retention, "interval", hours=6, id="retention", **common)
    if jobs.responder is not None:
        scheduler.add_job(jobs.escalate, "interval", minutes=1, id="escalate", **common)
    return scheduler
