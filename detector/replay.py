"""Steps from the watermark: the step loop behind ``blastwall run`` (live) and the batch path behind replay.

:func:`run_steps` (the step loop) processes whole steps ``[t, t + step)`` from the watermark (or
``since``) while ``t + step <= until``. Each step is bracketed in the run ledger
(:mod:`detector.runs`): ``started`` before, ``done`` after all it recorded. A step
that raises leaves the watermark where it was and is reported as :class:`StepFailed`;
running again redoes that step (its stored baseline rows are removed first; its
alerts are idempotent), so an outage or a crash loses nothing and duplicates nothing.
Re-running a range that is already done does nothing. At every day boundary of event
time the feature history is compacted (one row per key), so steps stay as fast in the
fourth week as in the first.

:func:`run_batches` (the batch path, behind ``blastwall detect --since/--until``, ``eval``
and the demo's replay) gives the same incidents from many steps at a time: a batch —
the steps up to the next day boundary, split so none holds more than ``max_events``
events — has its features computed in one pass (:func:`features.batch.extract_batch`),
then each of its steps is scored and recorded in order exactly as the step loop would.
The ledger brackets whole batches; a batch that crashed is redone whole, after the
baseline rows and scorers it stored are removed, so nothing is counted twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from detector import runs
from detector.baselines import ModelBook, forget_after, reset_baselines
from detector.detect import DetectConfig, StepResult, detect_features, detect_step, organisation_size
from detector.families import Batch
from features.batch import extract_batch, step_events
from features.history import HistoryAheadError, compact_history, history_end, reset_history
from features.times import bound_ms

#: How often (in event time) the loop folds the feature history (see features.history.compact_history).
COMPACT_EVERY = timedelta(days=1)
#: Most events in one batch of the batch path (memory follows it, not the organisation's size).
BATCH_EVENTS = 1_000_000
#: How often the batch path folds the history. Less often than the step loop: a batch already
#: adds one row per key (not one per step), its history is read once per batch, and a fold
#: rewrites every row — daily it cost a third of a backfill's feature time.
BATCH_COMPACT_EVERY = timedelta(days=7)


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


def _starting_point(client: Client, until: datetime, step: timedelta,
                    since: datetime | None) -> tuple[datetime, ReplaySummary]:
    """Where processing resumes (the watermark, or ``since``), with the steps already done counted as skipped."""
    if step < timedelta(seconds=1):
        raise ValueError(f"step must be at least one second, got {step}")
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
    return start, summary


def _resume(client: Client, until: datetime, step: timedelta, since: datetime | None, config: DetectConfig,
            book: ModelBook | None) -> tuple[datetime, ReplaySummary, ModelBook, int]:
    """Where to start, the scorers and the organisation's size, after removing what a crash left.

    A crashed step or batch may have stored baseline rows (and a batch, scorers) past the
    watermark: they are removed before anything is loaded, so the redo starts clean.
    """
    start, summary = _starting_point(client, until, step, since)
    forget_after(client, start)
    book = book if book is not None else ModelBook.load(client, config.baseline)
    return start, summary, book, organisation_size(client)


def _failed(client: Client, book: ModelBook, start: datetime, end: datetime, error: Exception) -> StepFailed:
    """Record a step or batch that raised (when the store still takes it) and say so; nothing queued is kept."""
    book.discard_pending()
    try:
        runs.record(client, runs.StepRecord(start, end, "failed", error=f"{type(error).__name__}: {error}"))
    except Exception:  # the store itself is down: the 'started' row already tells the story
        pass
    return StepFailed(start, end, error)


def _count(summary: ReplaySummary, result: StepResult) -> None:
    summary.steps += 1
    summary.events += result.events
    summary.alerts += len(result.alerts)
    summary.opened += result.opened
    summary.errors.extend(result.errors)
    summary.feature_seconds += result.feature_seconds
    summary.first = summary.first or result.start
    summary.last = result.end


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
    config = config or DetectConfig()
    start, summary, book, people = _resume(client, until, step, since, config, book)
    began = time.perf_counter()
    while start + step <= until and (max_steps is None or summary.steps < max_steps):
        end = start + step
        runs.record(client, runs.StepRecord(start, end, "started"))
        try:
            result = detect_step(client, start, end, book, config, people)
        except Exception as error:
            raise _failed(client, book, start, end, error) from error
        runs.record(client, runs.StepRecord(start, end, "done", result.events, len(result.alerts), result.opened,
                                            result.seconds, "; ".join(result.errors)))
        if align(end, COMPACT_EVERY) > align(start, COMPACT_EVERY):  # a day boundary: keep history small
            compact_history(client, end)
        _count(summary, result)
        if on_step is not None:
            on_step(result)
        start = end
    summary.seconds = time.perf_counter() - began
    return summary


def batch_plan(start: datetime, until: datetime, step: timedelta, events: Sequence[int],
               max_events: int = BATCH_EVENTS) -> list[tuple[datetime, int]]:
    """The batches of the steps from ``start`` up to ``until``: ``(start, steps)`` each.

    A batch ends at a day boundary (scorers are refitted on day-old data anyway, and the
    history is compacted there) and holds at most ``max_events`` events — a dense day is
    split — but always at least one step.

    Parameters
    ----------
    events : sequence of int
        Events per step, from ``start`` (see :func:`features.batch.step_events`).
    """
    plan: list[tuple[datetime, int]] = []
    total = (until - start) // step
    i = 0
    while i < total:
        moment = start + i * step
        day_end = align(moment, COMPACT_EVERY) + COMPACT_EVERY
        limit = min(total - i, max(1, -((moment - day_end) // step)))
        n, held = 0, 0
        while n < limit and (n == 0 or held + events[i + n] <= max_events):
            held += events[i + n]
            n += 1
        plan.append((moment, n))
        i += n
    return plan


def run_batches(client: Client, until: datetime, step: timedelta, since: datetime | None = None,
                config: DetectConfig | None = None, book: ModelBook | None = None,
                max_events: int = BATCH_EVENTS, on_step: Callable[[StepResult], None] | None = None,
                on_plan: Callable[[int, int], None] | None = None) -> ReplaySummary:
    """Process every whole step from the watermark (or ``since``) up to ``until``, a batch at a time.

    The same steps, scores and incidents as :func:`run_steps` (its oracle), much faster
    over long ranges: each batch's features come from one pass. Parameters, return value
    and errors are those of :func:`run_steps`, plus:

    Parameters
    ----------
    max_events : int
        Most events per batch (bounds memory).
    on_plan : callable, optional
        Called once before the first batch with the number of steps and of events ahead
        (a progress bar's totals).

    Raises
    ------
    StepFailed
        A batch raised: its ``start`` and ``end`` are the batch's; the watermark stays at
        its start and the next run redoes it whole.
    """
    config = config or DetectConfig()
    start, summary, book, people = _resume(client, until, step, since, config, book)
    began = time.perf_counter()
    events = step_events(client, start, until, step) if start + step <= until else []
    plan = batch_plan(start, until, step, events, max_events)
    if on_plan is not None:
        on_plan(sum(n for _, n in plan), int(sum(events)))
    for batch_start, steps in plan:
        batch_end = batch_start + steps * step
        runs.record(client, runs.StepRecord(batch_start, batch_end, "started"))
        results: list[StepResult] = []
        try:
            began_features = time.perf_counter()
            windows = extract_batch(client, batch_start, steps, step)
            per_step = (time.perf_counter() - began_features) / steps
            lo, hi = bound_ms(batch_start), bound_ms(batch_end)
            batch = Batch(lo, hi, (hi - lo) // steps, windows)
            for features in windows:
                results.append(detect_features(client, features, book, config, people, feature_seconds=per_step,
                                               batch=batch))
            book.flush(client)
        except Exception as error:
            raise _failed(client, book, batch_start, batch_end, error) from error
        runs.record(client, runs.StepRecord(
            batch_start, batch_end, "done", sum(r.events for r in results), sum(len(r.alerts) for r in results),
            sum(r.opened for r in results), sum(r.seconds for r in results),
            "; ".join(e for r in results for e in r.errors)))
        if align(batch_end, BATCH_COMPACT_EVERY) > align(batch_start, BATCH_COMPACT_EVERY):
            compact_history(client, batch_end)
        for result in results:
            _count(summary, result)
            if on_step is not None:
                on_step(result)
    summary.seconds = time.perf_counter() - began
    return summary
