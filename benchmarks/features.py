"""Feature pass speed and memory: the batch pass against the ClickHouse scan floor, from 1M to 50M events.

For each organisation size (default ~1M, ~10M and ~50M events), in fresh processes, in one run:

- ``batch``: :func:`features.batch.extract_batch` over the whole period, in the batches
  :func:`detector.replay.run_batches` makes of it (:func:`detector.replay.batch_plan`:
  day boundaries, at most :data:`detector.replay.BATCH_EVENTS` events a batch) at 5-minute
  steps, from an empty history, folding it as often as ``run_batches`` does:
  total seconds over all batches (the compaction apart), per-event cost, peak RSS, and
  where the time goes (each query the pass sends, and the Python around them);
- ``floor``: ClickHouse merely scanning the columns the feature pass reads
  (``SELECT count(), sum(...)``) for the same events, batch by batch over the same
  batches with the window predicate the feature queries use (the ratio's denominator;
  median of 3); for comparison, the same with the window also stated on the sorting
  key (``keyed``: this ClickHouse prunes granules by it only then), and one query over
  the whole period;
- ``step loop``: :func:`features.engine.extract` over a sample of single 5-minute steps
  spread evenly over the period (history advanced, untimed, to the step before each, so
  the timed call folds one step into the history as a live step does): milliseconds per
  step and the per-event cost, for the batch-vs-step-loop ratio (the sample's seconds
  over its events: an estimate of a full step-loop replay's per-event cost);
- the **growth slope**: batch seconds fitted linearly against millions of events
  (seconds per million events), and the per-event cost at the largest size over the
  smallest (1.0: linear);
- unless ``--no-windows``: the earlier per-window figures (issue 3) — the engine over the
  period's last busy hour and last working day against the floor and, below
  ``--reference-max-events`` of history, the pandas reference;
- ``numba cache``: the kernels' import-and-first-call time in two fresh processes (the
  second must load them from the cache, not compile).

How the sizes are made: one base organisation is generated with
:func:`blastwall.simulation.write_to_store` (1,000 principals x 14 days, seed 3: ~1.06M
events) and replicated inside ClickHouse with ``INSERT ... SELECT``: ``P`` copies of the
organisation, copy ``i`` with every name suffixed ``.c<i>`` (principals, resources,
``related``, grantees, teams, groups, managers, owners: the catalogue tables are copied
alike), so each copy is an independent organisation with the base's per-principal
behaviour, and ``T`` copies of the period, each shifted by 14 days (whole weeks: weekdays
and working hours stay aligned; event ids suffixed too). ``P x T`` copies are chosen to
grow principals and days together as the generator's sizes did (~10M: 5 x 2 = 5,000
principals x 28 days; ~50M: 16 x 3 = 16,000 principals x 42 days). Then
``OPTIMIZE ... FINAL`` leaves merged parts, so background merges do not run during the
measurements. Below the base size the base itself is scaled down (fewer principals).
Generating 50M events directly took 242 s (15,000 principals x 45 days); replicating
takes a fraction of that.

Prints a table and saves ``benchmarks/results/features.json``. Goals (the batch-replay issue): the batch
feature pass within 3x of the scan floor at 1M, 10M and 50M events, its cost growing
linearly; (issue 3, windows) engine >= 20x faster than the reference, <= 3x the floor;
peak RSS <= 2 GB.

Usage: ``python benchmarks/features.py [--sizes 1M 10M 50M] [--samples 48] [--no-windows] [--keep DIR]``
(sizes are event counts: ``1M``, ``250k``, ``2000000``; a bare number below 1000 is millions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import code_version, peak_mb, say  # noqa: E402  (read while this file's folder is on sys.path)

# Run as a script, this file's folder comes first on sys.path, where its own name would
# shadow the `features` package it measures.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
EVENTS_PER_PRINCIPAL_DAY = 76  # what the generator produces on average (measured)
BASE_PRINCIPALS, BASE_DAYS, BASE_SEED = 1000, 14, 3  # the replicated organisation (~1.06M events)
STEP = timedelta(minutes=5)
WINDOWS = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
GOALS = {
    "batch replay": {
        "batch_vs_floor": "the batch feature pass within 3x of ClickHouse scanning the same columns for the same "
                          "events (the scan floor), at 1M, 10M and 50M events",
        "slope": "the cost's growth slope from 1M to 50M (seconds per million events, fitted linearly; per-event "
                 "cost at 50M over 1M)",
        "peak_rss_mb": "<= 2048",
    },
    "issue 3 (windows)": {"vs_reference": ">= 20", "vs_floor": "<= 3", "peak_rss_mb": "<= 2048"},
}

_FLOOR = """SELECT count(), sum(length(principal)), sum(length(resource)), sum(length(action)), sum(bytes),
       sum(length(related)), sum(length(grantee)), sum(length(status)), sum(length(via)), sum(length(source_ip)),
       sum(length(attributes['destination'])), sum(length(principal_type)), sum(length(event_id)),
       sum(toUnixTimestamp64Milli(event_time))
FROM access_log
WHERE event_time >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC')
  AND event_time < fromUnixTimestamp64Milli({hi:Int64}, 'UTC')"""

# The same scan with the window also stated on the sorting key's first column: this ClickHouse
# (chdb 26.9) does not derive ``toStartOfHour(event_time)`` bounds from ``event_time`` ones, so
# without it a window reads ``event_time`` over its whole month partition (measured: 4,113 of
# 4,113 granules for a 5-minute window at 50M events; 12 with it).
_FLOOR_KEYED = _FLOOR + """
  AND toStartOfHour(event_time) >= toStartOfHour(fromUnixTimestamp64Milli({lo:Int64}, 'UTC'))
  AND toStartOfHour(event_time) <= toStartOfHour(fromUnixTimestamp64Milli({hi:Int64}, 'UTC'))"""

_LOG_COLUMNS = ("event_time, event_id, principal, principal_type, action, resource, related, grantee, bytes, rows, "
                "via, status, source_ip, attributes")


# ------------------------------------------------------------------ sizes

def parse_size(text: str) -> int:
    """``1M``, ``250k``, ``2000000`` -> events; a bare number below 1000 is millions (``50`` -> 50M)."""
    text = text.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    value = float(text[:-1] if scale > 1 else text)
    if scale == 1 and value < 1000:
        scale = 1_000_000
    events = int(value * scale)
    if events < 10_000:
        raise argparse.ArgumentTypeError(f"size {text!r}: at least 10k events")
    return events


def layout(events: int) -> dict:
    """How an organisation of about ``events`` events is made: base principals and days, copies of each."""
    base = BASE_PRINCIPALS * BASE_DAYS * EVENTS_PER_PRINCIPAL_DAY
    copies = events / base
    if copies < 1.5:
        principals = max(40, round(BASE_PRINCIPALS * events / base))
        return {"base_principals": principals, "base_days": BASE_DAYS, "principal_copies": 1, "period_copies": 1}
    period = max(1, round(copies ** 0.3))  # grow days with the principals, as the generator's sizes did
    return {"base_principals": BASE_PRINCIPALS, "base_days": BASE_DAYS,
            "principal_copies": max(1, round(copies / period)), "period_copies": period}


def label(events: int) -> str:
    return f"{events / 1e6:g}M" if events >= 1_000_000 else f"{events / 1e3:g}k"


def _start() -> datetime:
    from blastwall.simulation import OrgSpec

    return OrgSpec().start


def _window(spec_start: datetime, days: int, width: timedelta) -> tuple[datetime, datetime]:
    """The last ``width`` of the period's last working day (a busy window, not a quiet night)."""
    last_day = spec_start + timedelta(days=days - 1)
    while last_day.weekday() >= 5:
        last_day -= timedelta(days=1)
    end = last_day + timedelta(hours=17) if width < timedelta(days=1) else last_day + timedelta(days=1)
    return end - width, end


def epoch_ms(moment: datetime) -> int:
    from features.times import bound_ms

    return bound_ms(moment)





# ------------------------------------------------------------------ child steps (fresh processes)

def _child_generate(store_dir: str, base_principals: int, base_days: int, principal_copies: int,
                    period_copies: int) -> dict:
    from blastwall.schema import init_schema
    from blastwall.simulation import OrgSpec, write_to_store
    from blastwall.store import store

    spec = OrgSpec(principals=base_principals, days=base_days, seed=BASE_SEED)
    with store(f"chdb://{store_dir}") as client:
        init_schema(client)
        counts = write_to_store(client, spec)
        generated = counts["seconds"]
        began = time.perf_counter()
        if principal_copies > 1:
            _copy_catalogue(client, principal_copies)
        base_end = {"hi": epoch_ms(spec.start + timedelta(days=base_days))}
        for i in range(principal_copies):
            first = 1 if i == 0 else 0  # copy 0 of the first period is the base itself
            if first >= period_copies:
                continue
            def rename(column: str, i: int = i) -> str:
                return column if i == 0 else f"concat({column}, '.c{i}')"

            client.command(f"""INSERT INTO access_log ({_LOG_COLUMNS})
SELECT event_time + toIntervalDay(t * {base_days}), concat(event_id, '.c{i}t', toString(t)), {rename('principal')},
       principal_type, action, {rename('resource')}, arrayMap(x -> if(x = '', x, {rename('x')}), related),
       if(grantee = '', grantee, {rename('grantee')}), bytes, rows, via, status, source_ip, attributes
FROM access_log ARRAY JOIN range({first}, {period_copies}) AS t
WHERE event_time < fromUnixTimestamp64Milli({{hi:Int64}}, 'UTC') AND position(event_id, '.c') = 0""",
                           parameters=base_end)
            say(f"    copy {i + 1}/{principal_copies} inserted ({time.perf_counter() - began:.0f}s)")
        replicated = time.perf_counter() - began
        began = time.perf_counter()
        for table in ("access_log", "event_ids", "principals", "memberships", "resources"):
            client.command(f"OPTIMIZE TABLE {table} FINAL")
        optimised = time.perf_counter() - began
        events = int(client.query("SELECT count() FROM access_log").result_rows[0][0])
        principals = int(client.query("SELECT uniqExact(principal) FROM principals").result_rows[0][0])
    return {"events": events, "principals": principals, "days": base_days * period_copies,
            "base_events": counts["access_log"], "generate_seconds": generated,
            "replicate_seconds": round(replicated, 1), "optimise_seconds": round(optimised, 1)}


def _copy_catalogue(client, copies: int) -> None:
    """Copies 1..copies-1 of the principals, memberships and resources, names suffixed ``.c<i>``."""
    copy = f"ARRAY JOIN range(1, {copies}) AS i"

    def suffixed(column: str) -> str:
        return f"if({column} = '', {column}, concat({column}, '.c', toString(i)))"

    client.command(f"""INSERT INTO principals (principal, principal_type, team, title, manager, created_at, updated_at)
SELECT {suffixed('principal')}, principal_type, {suffixed('team')}, title, {suffixed('manager')}, created_at,
       updated_at FROM principals {copy}""")
    client.command(f"""INSERT INTO memberships (`group`, member, removed, updated_at)
SELECT {suffixed('`group`')}, {suffixed('member')}, removed, updated_at FROM memberships {copy}""")
    client.command(f"""INSERT INTO resources (resource, kind, sensitivity, categories, owner, sanitized, updated_at)
SELECT {suffixed('resource')}, kind, sensitivity, categories, {suffixed('owner')}, sanitized, updated_at
FROM resources {copy}""")


def _plan(client, start: datetime, days: int) -> list[tuple[datetime, int]]:
    from detector.replay import BATCH_EVENTS, batch_plan
    from features.batch import step_events

    until = start + timedelta(days=days)
    return batch_plan(start, until, STEP, step_events(client, start, until, STEP), BATCH_EVENTS)


class _Profile:
    """Wall time per statement the client runs, keyed by the name the feature modules give its SQL.

    Other statements are keyed by the project function that sent them and the table they
    name (``detector/rules.py:alerts_of_rule FROM resources``).
    """

    def __init__(self, client) -> None:
        import features.batch
        import features.engine

        self.names = {}
        for module in (features.batch, features.engine):
            for name, value in vars(module).items():
                if isinstance(value, str) and "SELECT" in value:
                    self.names.setdefault(value, f"{module.__name__.split('.')[-1]}.{name}")
        self.phase = ""  # prefixed to the keys (the compaction's statements look like the advance's)
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        for method in ("query", "query_arrow", "query_df", "command"):
            setattr(client, method, self._timed(getattr(client, method)))
        client.insert = self._timed(client.insert, "INSERT INTO ")  # its first argument is the table
        original = client.query_arrow_stream
        profile = self

        class _Stream:  # the principal pass streams: time it from open to close (kernels included)
            def __init__(self, sql, **kwargs):
                self.key, self.inner = profile._key(sql) + " (streamed, kernels included)", original(sql, **kwargs)

            def __enter__(self):
                self.began = time.perf_counter()
                return self.inner.__enter__()

            def __exit__(self, *exc):
                profile._add(self.key, time.perf_counter() - self.began)
                return self.inner.__exit__(*exc)

        client.query_arrow_stream = _Stream

    def _key(self, sql) -> str:
        return self.phase + self._name(sql)

    def _name(self, sql) -> str:
        if sql in self.names:
            return self.names[sql]
        line = " ".join(str(sql).split())
        for marker in ("INSERT INTO ", "DELETE FROM ", "TRUNCATE TABLE ", "FROM "):
            if marker in line:
                rest = line[line.index(marker) + len(marker):].split()
                line = (marker + (rest[0] if rest else "")).split("(")[0].strip()
                break
        return f"{_caller()} {line[:60]}".strip()

    def total(self) -> float:
        return sum(self.seconds.values())

    def _add(self, key: str, seconds: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
        self.calls[key] = self.calls.get(key, 0) + 1

    def _timed(self, method, prefix: str = ""):
        def run(sql, *args, **kwargs):
            began = time.perf_counter()
            try:
                return method(sql, *args, **kwargs)
            finally:
                self._add(self._key(f"{prefix}{sql}" if prefix else sql), time.perf_counter() - began)
        return run

    def top(self, n: int = 25) -> list[dict]:
        ranked = sorted(self.seconds.items(), key=lambda item: -item[1])[:n]
        return [{"statement": k, "seconds": round(v, 2), "calls": self.calls[k]} for k, v in ranked]


def _caller() -> str:
    """``path:function`` of the innermost project frame outside the benchmarks and the stores' plumbing."""
    root = str(HERE.parent) + os.sep
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(root) and not name.startswith(str(HERE)) and f"{os.sep}.venv{os.sep}" not in name \
                and not name.endswith(f"blastwall{os.sep}store.py"):
            return f"{name[len(root):]}:{frame.f_code.co_name}"
        frame = frame.f_back
    return ""


def _child_batch(store_dir: str, days: int) -> dict:
    import detector.replay as replay
    from blastwall.store import store
    from features.batch import extract_batch
    from features.history import compact_history, reset_history

    align = replay.align
    every = getattr(replay, "BATCH_COMPACT_EVERY", replay.COMPACT_EVERY)  # how often run_batches folds history
    start = _start()
    with store(f"chdb://{store_dir}") as client:
        reset_history(client)
        idle_mb = peak_mb()
        began = time.perf_counter()
        plan = _plan(client, start, days)
        plan_seconds = time.perf_counter() - began
        profile = _Profile(client)
        batch_seconds, compact_seconds, sql_seconds, per_batch, events, rows = 0.0, 0.0, 0.0, [], 0, 0
        for number, (batch_start, steps) in enumerate(plan, 1):
            before = profile.total()
            began = time.perf_counter()
            windows = extract_batch(client, batch_start, steps, STEP)
            seconds = time.perf_counter() - began
            batch_seconds += seconds
            sql_seconds += profile.total() - before
            n = sum(int(w.frame("principal")["events"].sum()) for w in windows if len(w.frame("principal")))
            rows += sum(len(frame) for w in windows for frame in w.frames.values())
            events += n
            per_batch.append((seconds, n, steps))
            del windows
            batch_end = batch_start + steps * STEP
            if align(batch_end, every) > align(batch_start, every):
                began, profile.phase = time.perf_counter(), "compaction: "
                compact_history(client, batch_end)
                compact_seconds, profile.phase = compact_seconds + time.perf_counter() - began, ""
            if number % 10 == 0:
                say(f"    batch {number}/{len(plan)}: {batch_seconds:.0f}s, {events:,} events so far")
    slowest = max(per_batch)
    return {"seconds": batch_seconds, "events": events, "batches": len(plan),
            "steps": sum(steps for _, steps in plan), "feature_rows": rows,
            "us_per_event": 1e6 * batch_seconds / events if events else None,
            "events_per_second": events / batch_seconds if batch_seconds else None,
            "batch_seconds_median": statistics.median(s for s, _, _ in per_batch),
            "batch_seconds_max": slowest[0], "slowest_batch_events": slowest[1],
            "batch_events_max": max(n for _, n, _ in per_batch),
            "plan_seconds": plan_seconds, "compaction_seconds": compact_seconds,
            "compaction_every_days": every / timedelta(days=1),
            "statements": profile.top(40), "statement_seconds_in_batches": sql_seconds,
            "outside_statements_seconds_in_batches": batch_seconds - sql_seconds,
            "idle_rss_mb": idle_mb, "peak_rss_mb": peak_mb()}


def _child_floor(store_dir: str, days: int) -> dict:
    from blastwall.store import store

    start = _start()
    with store(f"chdb://{store_dir}") as client:
        plan = _plan(client, start, days)
        ranges = [{"lo": epoch_ms(s), "hi": epoch_ms(s + n * STEP)} for s, n in plan]
        whole = {"lo": epoch_ms(start), "hi": epoch_ms(start + timedelta(days=days))}
        client.query(_FLOOR, parameters=whole)  # warm the page cache as the batch pass found it
        passes, keyed, singles = [], [], []
        for _ in range(3):
            began = time.perf_counter()
            for params in ranges:
                client.query(_FLOOR, parameters=params)
            passes.append(time.perf_counter() - began)
            began = time.perf_counter()
            for params in ranges:
                client.query(_FLOOR_KEYED, parameters=params, settings={"use_query_condition_cache": 0})
            keyed.append(time.perf_counter() - began)
            began = time.perf_counter()
            rows = client.query(_FLOOR, parameters=whole).result_rows[0][0]
            singles.append(time.perf_counter() - began)
    return {"seconds": statistics.median(passes), "runs": passes, "batches": len(ranges),
            "keyed_seconds": statistics.median(keyed), "keyed_runs": keyed,
            "whole_period_seconds": statistics.median(singles), "whole_period_runs": singles, "events": int(rows)}


def _child_steps(store_dir: str, days: int, samples: int) -> dict:
    from blastwall.store import store
    from detector.replay import COMPACT_EVERY, align
    from features.engine import extract
    from features.history import advance_history, compact_history, reset_history

    start = _start()
    total = (timedelta(days=days) // STEP)
    picks = sorted({max(1, int((k + 0.5) * total / samples)) for k in range(samples)})
    timings, counts = [], []
    with store(f"chdb://{store_dir}") as client:
        reset_history(client)
        profile = _Profile(client)
        for index in picks:
            lo = start + index * STEP
            profile.phase = "untimed: "
            advance_history(client, lo - STEP)  # untimed: the history as the step before left it
            compact_history(client, align(lo - STEP, COMPACT_EVERY))  # as the loop's daily compaction left it
            profile.phase = ""
            began = time.perf_counter()
            features = extract(client, lo, lo + STEP)  # folds the one step before into the history, as live
            timings.append(time.perf_counter() - began)
            frame = features.frame("principal")
            counts.append(int(frame["events"].sum()) if len(frame) else 0)
    seconds, events = sum(timings), sum(counts)
    return {"samples": len(picks), "ms_per_step_median": 1000 * statistics.median(timings),
            "ms_per_step_mean": 1000 * seconds / len(timings), "ms_per_step_max": 1000 * max(timings),
            "events_per_step_mean": events / len(counts), "us_per_event": 1e6 * seconds / events if events else None,
            "events_per_second": events / seconds if seconds else None,
            "full_replay_seconds_estimate": seconds / len(timings) * total, "steps_in_period": total,
            "statements": [row for row in profile.top(40) if not row["statement"].startswith("untimed")][:15],
            "peak_rss_mb": peak_mb()}


def _child_engine(store_dir: str, start: str, end: str) -> dict:
    from blastwall.store import store
    from features.engine import extract
    from features.history import advance_history, history_end, reset_history

    lo, hi = datetime.fromisoformat(start), datetime.fromisoformat(end)
    with store(f"chdb://{store_dir}") as client:
        begin = time.perf_counter()
        reached = history_end(client)
        if reached is not None and reached.replace(tzinfo=UTC) > lo:
            reset_history(client)  # an earlier window left it ahead of this one: rebuild
        advance_history(client, lo)
        catch_up = time.perf_counter() - begin
        timings, shapes = [], {}
        for _ in range(3):
            begin = time.perf_counter()
            features = extract(client, lo, hi)
            timings.append(time.perf_counter() - begin)
            shapes = {entity: len(frame) for entity, frame in features.frames.items()}
        window_events = int(client.query(
            "SELECT count() FROM access_log WHERE event_time >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') "
            "AND event_time < fromUnixTimestamp64Milli({hi:Int64}, 'UTC')",
            parameters={"lo": epoch_ms(lo), "hi": epoch_ms(hi)}).result_rows[0][0])
    return {"seconds": statistics.median(timings), "runs": timings, "history_catch_up_seconds": catch_up,
            "rows": shapes, "window_events": window_events, "peak_rss_mb": peak_mb()}


def _child_window_floor(store_dir: str, start: str, end: str) -> dict:
    from blastwall.store import store

    params = {"lo": epoch_ms(datetime.fromisoformat(start)), "hi": epoch_ms(datetime.fromisoformat(end))}
    with store(f"chdb://{store_dir}") as client:
        timings = []
        for _ in range(3):
            begin = time.perf_counter()
            client.query(_FLOOR, parameters=params)
            timings.append(time.perf_counter() - begin)
    return {"seconds": statistics.median(timings), "runs": timings}


def _child_reference(store_dir: str, start: str, end: str) -> dict:
    import pandas as pd

    from blastwall.store import store
    from features.reference import reference_features

    lo, hi = datetime.fromisoformat(start), datetime.fromisoformat(end)
    with store(f"chdb://{store_dir}") as client:
        begin = time.perf_counter()
        events = client.query_df(
            "SELECT * EXCEPT ingested_at FROM access_log"
            " WHERE event_time < fromUnixTimestamp64Milli({hi:Int64}, 'UTC')",
            parameters={"hi": epoch_ms(hi)})
        tables = {name: client.query_df(f"SELECT * FROM {name}") for name in ("resources", "memberships", "principals")}
        load = time.perf_counter() - begin
    events["event_time"] = pd.to_datetime(events["event_time"], utc=True)
    begin = time.perf_counter()
    reference_features(events, tables["resources"], tables["memberships"], tables["principals"], lo, hi)
    return {"seconds": time.perf_counter() - begin, "load_seconds": load, "peak_rss_mb": peak_mb()}


def _child_numba() -> dict:
    import numpy as np

    begin = time.perf_counter()
    from features import _kernels

    offsets, values = np.array([0, 3], dtype=np.int64), np.array([1, 2, 3], dtype=np.int64)
    _kernels.max_events_in_span(offsets, values, 60_000)
    _kernels.timing_regularity(offsets, values, 5)
    seconds = time.perf_counter() - begin
    kernels = [_kernels.max_events_in_span, _kernels.timing_regularity, _kernels.segment_histograms,
               _kernels.off_hours_share, _kernels._mark_reachable, _kernels.grant_audiences]
    return {"seconds": seconds,
            "cache_hits": sum(len(k.stats.cache_hits) for k in kernels),
            "cache_misses": sum(len(k.stats.cache_misses) for k in kernels)}


CHILDREN = {"generate": _child_generate, "batch": _child_batch, "floor": _child_floor, "steps": _child_steps,
            "engine": _child_engine, "window_floor": _child_window_floor, "reference": _child_reference,
            "numba": _child_numba}


def _run(step: str, *args: object, env: dict[str, str] | None = None) -> dict:
    """One child step in a fresh process (its progress goes to stderr as it runs); its JSON answer."""
    began = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, "--child", step, json.dumps(args, default=str)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        return {"error": f"child {step} exited with {result.returncode} (its error is above)"}
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    answer["wall_seconds"] = round(time.perf_counter() - began, 1)
    return answer


# ------------------------------------------------------------------ main

def _fit(points: list[tuple[float, float]]) -> dict:
    """Least-squares line ``seconds = intercept + slope * millions`` and the per-event cost ratio last/first."""
    if len(points) < 2:
        return {}
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
    (x0, y0), (x1, y1) = min(points), max(points)
    return {"seconds_per_million_events": slope, "intercept_seconds": my - slope * mx,
            "us_per_event_smallest": y0 / x0, "us_per_event_largest": y1 / x1,
            "per_event_cost_largest_over_smallest": (y1 / x1) / (y0 / x0),
            "sizes_millions": [round(x0, 2), round(x1, 2)]}


def _windows(organisation: dict, store_dir: Path, reference_max: int) -> None:
    spec_start = _start()
    days = organisation["days"]
    for name, width in WINDOWS.items():
        start, end = _window(spec_start, days, width)
        engine = _run("engine", store_dir, start.isoformat(), end.isoformat())
        floor = _run("window_floor", store_dir, start.isoformat(), end.isoformat())
        history_events = organisation.get("events", 0) * ((end - spec_start) / timedelta(days=days))
        if history_events <= reference_max:
            reference = _run("reference", store_dir, start.isoformat(), end.isoformat())
        else:
            reference = {"skipped": f"~{history_events / 1e6:.0f}M events of history exceed "
                                    f"--reference-max-events={reference_max:,}"}
        figures = {"window": [start.isoformat(), end.isoformat()], "engine": engine, "floor": floor,
                   "reference": reference}
        if "seconds" in engine and "seconds" in floor:
            figures["engine_vs_floor"] = engine["seconds"] / floor["seconds"]
        if "seconds" in engine and "seconds" in reference:
            figures["reference_vs_engine"] = reference["seconds"] / engine["seconds"]
        organisation["windows"][name] = figures
        print(f"  window {name}: engine {engine.get('seconds', float('nan')):.3f}s, "
              f"{figures.get('engine_vs_floor', float('nan')):.1f}x floor, "
              f"reference/engine {figures.get('reference_vs_engine', float('nan')):.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[1_000_000, 10_000_000, 50_000_000],
                        help="organisation sizes in events (1M, 10M, 50M, 250k, 2000000; below 1000: millions)")
    parser.add_argument("--samples", type=int, default=48, help="single steps in the step-loop sample")
    parser.add_argument("--no-windows", action="store_true",
                        help="skip the per-window engine/floor/reference figures (issue 3)")
    parser.add_argument("--reference-max-events", type=int, default=3_000_000,
                        help="skip the pandas reference above this many events of history")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the generated stores in this directory")
    parser.add_argument("--output", default="features.json", help="file name under benchmarks/results/")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, *rest = args.child
        print(json.dumps(CHILDREN[step](*(json.loads(rest[0]) if rest else []))))
        return

    started = time.perf_counter()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bw-bench-features-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"benchmark": "features: the batch feature pass against the scan floor, 1M to 50M events",
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "python": platform.python_version()},
                    "code": code_version(), "goals": GOALS, "step_minutes": STEP / timedelta(minutes=1),
                    "how_sizes_are_made": (
                        f"a generated base organisation ({BASE_PRINCIPALS:,} principals x {BASE_DAYS} days, seed "
                        f"{BASE_SEED}) replicated in ClickHouse: principal copies with every name suffixed '.c<i>' "
                        f"(catalogue tables too), period copies shifted by {BASE_DAYS} days; then OPTIMIZE FINAL"),
                    "organisations": []}
    with tempfile.TemporaryDirectory() as cache:  # an empty cache: the first process compiles, the second loads
        report["numba"] = [_run("numba", env={"NUMBA_CACHE_DIR": cache}) for _ in range(2)]
    try:
        for target in args.sizes:
            shape = layout(target)
            name = (f"org-{shape['base_principals']}x{shape['base_days']}"
                    f"-{shape['principal_copies']}x{shape['period_copies']}")
            store_dir = work / name
            marker = store_dir / ".generated"
            if marker.exists():
                generated = {**json.loads(marker.read_text()), "reused": True}
            else:
                shutil.rmtree(store_dir, ignore_errors=True)
                print(f"making ~{label(target)}: {shape}", flush=True)
                generated = _run("generate", store_dir, *shape.values())
                if "error" in generated:
                    raise SystemExit(f"generation failed: {generated['error']}")
                marker.write_text(json.dumps(generated))
            organisation = {"target": label(target), **shape, **generated, "windows": {}}
            days = organisation["days"]
            print(f"organisation ~{label(target)}: {organisation['principals']:,} principals x {days} days, "
                  f"{organisation['events']:,} events", flush=True)
            batch = _run("batch", store_dir, days)
            floor = _run("floor", store_dir, days)
            steps = _run("steps", store_dir, days, args.samples)
            organisation.update(batch=batch, floor=floor, step_loop=steps)
            if "seconds" in batch and "seconds" in floor:
                organisation["batch_vs_floor"] = batch["seconds"] / floor["seconds"]
                organisation["batch_vs_whole_period_scan"] = batch["seconds"] / floor["whole_period_seconds"]
            if batch.get("us_per_event") and steps.get("us_per_event"):
                organisation["step_loop_vs_batch_per_event"] = steps["us_per_event"] / batch["us_per_event"]
            print(f"  batch {batch.get('seconds', float('nan')):.1f}s over {batch.get('batches', 0)} batches "
                  f"({batch.get('events_per_second', 0) or 0:,.0f} events/s, peak {batch.get('peak_rss_mb', 0):,.0f} "
                  f"MB), floor {floor.get('seconds', float('nan')):.2f}s -> "
                  f"{organisation.get('batch_vs_floor', float('nan')):.1f}x; step loop "
                  f"{steps.get('ms_per_step_median', float('nan')):.0f} ms/step median, "
                  f"{organisation.get('step_loop_vs_batch_per_event', float('nan')):.1f}x the batch per event",
                  flush=True)
            if not args.no_windows:
                _windows(organisation, store_dir, args.reference_max_events)
            report["organisations"].append(organisation)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    points = [(o["events"] / 1e6, o["batch"]["seconds"]) for o in report["organisations"] if "seconds" in o["batch"]]
    report["slope"] = {"batch": _fit(points),
                       "floor": _fit([(o["events"] / 1e6, o["floor"]["seconds"]) for o in report["organisations"]
                                      if "seconds" in o["floor"]])}
    report["goal_met"] = {
        "batch_within_3x_floor": all(o.get("batch_vs_floor", float("inf")) <= 3 for o in report["organisations"]),
        "peak_rss_within_2gb": all(o["batch"].get("peak_rss_mb", float("inf")) <= 2048
                                   for o in report["organisations"]),
    }
    report["wall_seconds"] = round(time.perf_counter() - started, 1)

    print(f"\n{'org':>6} {'events':>11} {'batches':>7} {'batch s':>8} {'ev/s':>10} {'floor s':>8} {'x floor':>7} "
          f"{'x scan':>7} {'us/ev':>6} {'step ms':>8} {'step us/ev':>10} {'loop/batch':>10} {'peak MB':>8}")
    for o in report["organisations"]:
        b, f, s = o["batch"], o["floor"], o["step_loop"]
        print(f"{o['target']:>6} {o['events']:>11,} {b.get('batches', 0):>7} {b.get('seconds', float('nan')):>8.1f} "
              f"{b.get('events_per_second') or 0:>10,.0f} {f.get('seconds', float('nan')):>8.2f} "
              f"{o.get('batch_vs_floor', float('nan')):>7.1f} "
              f"{o.get('batch_vs_whole_period_scan', float('nan')):>7.1f} "
              f"{b.get('us_per_event') or float('nan'):>6.1f} {s.get('ms_per_step_median', float('nan')):>8.0f} "
              f"{s.get('us_per_event') or float('nan'):>10.1f} "
              f"{o.get('step_loop_vs_batch_per_event', float('nan')):>10.1f} "
              f"{b.get('peak_rss_mb', float('nan')):>8,.0f}")
    fit = report["slope"]["batch"]
    if fit:
        print(f"batch cost: {fit['seconds_per_million_events']:.2f} s per million events (fitted over "
              f"{fit['sizes_millions'][0]}M..{fit['sizes_millions'][1]}M); per-event cost at the largest / smallest "
              f"size: {fit['per_event_cost_largest_over_smallest']:.2f}")
    for o in report["organisations"]:
        b = o["batch"]
        if "seconds" not in b:
            continue
        print(f"where the batch pass's time goes at {o['target']}: {b['statement_seconds_in_batches']:.1f}s in "
              f"statements, {b['outside_statements_seconds_in_batches']:.1f}s outside them (of {b['seconds']:.1f}s); "
              f"history compaction (every {b['compaction_every_days']:g} days) apart: {b['compaction_seconds']:.1f}s. "
              f"Top statements (seconds, calls):")
        for row in [r for r in b["statements"] if not r["statement"].startswith("compaction")][:12]:
            print(f"  {row['seconds']:>8.1f} {row['calls']:>6}  {row['statement']}")
    first, second = report["numba"]
    print(f"numba kernels, import + first call: {first.get('seconds', 0):.2f}s then {second.get('seconds', 0):.2f}s "
          f"(second process: {second.get('cache_hits', 0)} cache hits, {second.get('cache_misses', 0)} misses)")
    print(f"wall time: {report['wall_seconds']:.0f}s")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.output).write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
