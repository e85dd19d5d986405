"""The run ledger: one row per detect step started, finished or failed — the watermark and job health.

``detect_runs`` is append-only. A step writes ``started`` before it changes anything and
``done`` after everything it does is stored (incidents included); the **watermark** is
the end of the newest ``done`` step. A step that crashed leaves a ``started`` (and,
when the store could still be written, a ``failed`` row with the error); the next run
starts from the watermark again, so nothing is lost and, since alert ids are
deterministic, nothing is opened twice. The console's health view and
``blastwall run`` read their lag, rates and failures from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from features.times import bound_ms, ms_param

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE IF NOT EXISTS detect_runs (
    step_start DateTime64(3, 'UTC'), step_end DateTime64(3, 'UTC'), state LowCardinality(String),
    events UInt64, alerts UInt32, opened UInt32, seconds Float64, error String,
    at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree ORDER BY (step_end, at)""",
    ]),
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class StepRecord:
    """What one finished or failed step reports to the ledger."""

    step_start: datetime
    step_end: datetime
    state: str
    events: int = 0
    alerts: int = 0
    opened: int = 0
    seconds: float = 0.0
    error: str = ""


def record(client: Client, entry: StepRecord) -> None:
    """Append one ledger row."""
    client.command(
        "INSERT INTO detect_runs (step_start, step_end, state, events, alerts, opened, seconds, error) SELECT "
        + ms_param("lo") + ", " + ms_param("hi")
        + ", {state:String}, {events:UInt64}, {alerts:UInt32}, {opened:UInt32}, {seconds:Float64}, {error:String}",
        parameters={"lo": bound_ms(entry.step_start), "hi": bound_ms(entry.step_end), "state": entry.state,
                    "events": entry.events, "alerts": entry.alerts, "opened": entry.opened,
                    "seconds": entry.seconds, "error": entry.error})


def watermark(client: Client) -> datetime | None:
    """End of the newest completed step (everything before it is processed), or ``None``."""
    row = client.query("SELECT max(toUnixTimestamp64Milli(step_end)), count() FROM detect_runs"
                       " WHERE state = 'done'").result_rows[0]
    return _EPOCH + timedelta(milliseconds=int(row[0])) if row[1] else None


def health(client: Client, now: datetime | None = None) -> dict[str, object]:
    """Job health for the console and ``blastwall run``: last step, lag, rates, failures.

    Returns
    -------
    dict
        ``watermark`` (datetime or None), ``lag_seconds`` behind ``now`` (None before the
        first step), ``steps`` and ``failed`` counts over the last day of runs,
        ``events_per_second`` of the last 100 steps, ``last_error`` (text, '' if none).
    """
    now = now or datetime.now(UTC)
    mark = watermark(client)
    recent = client.query(
        "SELECT countIf(state = 'done'), countIf(state = 'failed'), sumIf(events, state = 'done'),"
        " sumIf(seconds, state = 'done') FROM (SELECT * FROM detect_runs ORDER BY at DESC LIMIT 200)"
    ).result_rows[0]
    last_error = client.query(
        "SELECT error FROM detect_runs WHERE state = 'failed' ORDER BY at DESC LIMIT 1").result_rows
    return {
        "watermark": mark,
        "lag_seconds": (now - mark).total_seconds() if mark else None,
        "steps": int(recent[0]),
        "failed": int(recent[1]),
        "events_per_second": float(recent[2]) / float(recent[3]) if recent[3] else 0.0,
        "last_error": last_error[0][0] if last_error else "",
    }


def reset_runs(client: Client) -> None:
    """Forget the ledger (with the history and baselines: a replay from the beginning)."""
    client.command("TRUNCATE TABLE IF EXISTS detect_runs")
