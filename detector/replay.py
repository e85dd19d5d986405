"""Steps from the watermark: the one loop behind ``blastwall detect`` (replay) and ``blastwall run`` (live).

:func:`run_steps` processes whole steps ``[t, t + step)`` from the watermark (or
``since``) while ``t + step <= until``. Each step is bracketed in the run ledger
(:mod:`detector.runs`): ``started`` before, ``done`` after all it recorded. A step
that raises leaves the watermark where it was and is reported as :class:`StepFailed`;
running again redoes that step (its stored baseline rows are removed first; its
alerts are idempotent), so an outage or a crash loses nothing and duplicates nothing.
Re-running a range that is already done does nothing. At every day boundary of event
time the feature history is compacted (one row per key), so steps stay as fast in the
fourth week as in the first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from detector import runs
from detector.baselines import ModelBook, forget_step, reset_baselines
from detector.detect import DetectConfig, StepResult, detect_step, organisation_size
from features.history import HistoryAheadError, compact_history, history_end, reset_history

#: How often (in event time) the loop folds the feature history (see features.history.compact_history).
COMPACT_EVERY = timedelta(days=1)


class StepFailed(Exception):
    """A step could not complete; the watermark stays at its start."""

    def __init__(self, start: datetime, end: datetime, error: BaseException) -> None:
        self.start, self.end, self.error = start, end, error
        super().__init__(f"step [{start.isoformat()}, {end.isoformat()}) failed: {type(error).__name__}: "
                         f"{str(error).strip().splitlines()[0][:300] if str(error).strip() else ''}")


@dataclass
class ReplaySummary:
    """What :func:`run_steps` did."""

    steps: int = 0
    skipped: int = 0
    events: int = 0
    alerts: int = 0
    opened: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    feature_seconds: float = 0.0
    first: datetime | None = None
    last: datetime | None = None

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def ms_per_step(self) -> float:
        return 1000 * self.seconds / self.steps if self.steps else 0.0

    @property
    def overhead_ms_per_step(self) -> float:
        """Milliseconds per step spent beyond the feature step (scoring, alerts, ledger)."""
        return 1000 * (self.seconds - self.feature_seconds) / self.steps if self.steps else 0.0


def align(moment: datetime, step: timedelta) -> datetime:
    """``moment`` rounded down to a whole number of steps since the epoch (stable step boundaries)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment.astimezone(UTC) - epoch) // step) * step


def reset_detection(client: Client) -> None:
    """Forget history, baselines and the run ledger so a replay starts afresh (incidents are kept)."""
    reset_history(client)
    reset_baselines(client)
    runs.reset_runs(client)


def run_steps(client: Client, until: datetime, step: timedelta, since: datetime | None = None,
              config: DetectConfig | None = None, book: ModelBook | None = None, max_steps: int | None = None,
              on_step: Callable[[StepResult], None] | None = None) -> ReplaySummary:
    """Process every whole step from the watermark (or ``since``) up to ``until``.

    Parameters
    ----------
    client : Client
    until : datetime
        No step ends after this.
    step : timedelta
        Step length (positive; at least a second).
    since : datetime, optional
        Where to start when nothing was processed yet, or later than the watermark (a gap
        is folded into the history without detection). Steps before the watermark are
        already done and skipped.
    config : DetectConfig, optional
    book : ModelBook, optional
        Loaded from the store when omitted.
    max_steps : int, optional
        Stop after this many steps (the live job's bound per run).
    on_step : callable, optional
        Called with each finished step's result (progress bars, the benchmark).

    Returns
    -------
    ReplaySummary

    Raises
    ------
    StepFailed
        A step raised; the watermark stays at its start and the failure is in the ledger.
    ValueError
        No starting point (nothing processed and no ``since``), or a bad step.
    HistoryAheadError
        The feature history is past the start without a matching ledger (reset to replay).
    """
    if step < timedelta(seconds=1):
        raise ValueError(f"step must be at least one second, got {step}")
    config = config or DetectConfig()
    mark = runs.watermark(client)
    if mark is None and since is None:
        raise ValueError("nothing processed yet: give a start (--since)")
    start = mark if since is None or (mark is not None and mark >= since) else since
    summary = ReplaySummary()
    if since is not None and mark is not None and since < mark:
        summary.skipped = max(0, (min(mark, until) - since) // step)
    ahead = history_end(client)
    if ahead is not None and ahead.replace(tzinfo=UTC) > start:
        raise HistoryAheadError(f"the feature history already covers events up to {ahead} but detection has "
                                f"processed only up to {mark or start}; reset to replay")
    book = book if book is not None else ModelBook.load(client, config.baseline)
    people = organisation_size(client)
    began = time.perf_counter()
    if runs.unfinished(client, start + step):  # only the first step can have crashed before
        forget_step(client, start + step)  # a crashed attempt stored some rows: start the step clean
    while start + step <= until and (max_steps is None or summary.steps < max_steps):
        end = start + step
        runs.record(client, runs.StepRecord(start, end, "started"))
        try:
            result = detect_step(client, start, end, book, config, people)
        except Exception as error:
            book.discard_pending()
            try:
                runs.record(client, runs.StepRecord(start, end, "failed", error=f"{type(error).__name__}: {error}"))
            except Exception:  # the store itself is down: the 'started' row already tells the story
                pass
            raise StepFailed(start, end, error) from error
        runs.record(client, runs.StepRecord(start, end, "done", result.events, len(result.alerts), result.opened,
                                            result.seconds, "; ".join(result.errors)))
        if align(end, COMPACT_EVERY) > align(start, COMPACT_EVERY):  # a day boundary: keep history small
            compact_history(client, end)
        summary.steps += 1
        summary.events += result.events
        summary.alerts += len(result.alerts)
        summary.opened += result.opened
        summary.errors.extend(result.errors)
        summary.feature_seconds += result.feature_seconds
        summary.first = summary.first or start
        summary.last = end
        if on_step is not None:
            on_step(result)
        start = end
    summary.seconds = time.perf_counter() - began
    return summary
