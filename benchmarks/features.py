"""Feature step speed and memory: the engine against the pandas reference and the ClickHouse scan floor.

For each generated organisation (default: ~10M and ~50M events) and each window (1 hour
and 1 day, the last of the period, history already advanced to its start), in one run:

- ``engine``: :func:`features.engine.extract` (median of 3), in a fresh process whose
  peak RSS (the embedded ClickHouse included) is reported;
- ``floor``: ClickHouse merely scanning the columns the engine reads, over the same
  window (``SELECT count(), sum(...)``; median of 3);
- ``reference``: :func:`features.reference.reference_features` on the same data
  (events up to the window's end already in a DataFrame; loading is not timed). It
  recomputes history from raw events, so it is skipped (and said so) above
  ``--reference-max-events``;
- ``numba cache``: the kernels' import-and-first-call time in two fresh processes
  (the second must load them from the cache, not compile).

Prints a table and saves ``benchmarks/results/features.json``. Goals (issue 3):
engine >= 20x faster than the reference, <= 3x the floor, peak RSS <= 2 GB.

Usage: ``python benchmarks/features.py [--sizes 1 10 50] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where its own name would
# shadow the `features` package it measures.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

RESULTS = Path(__file__).resolve().parent / "results"
EVENTS_PER_PRINCIPAL_DAY = 76  # what the generator produces on average (measured)
# Millions of events -> (principals, days) of the generated organisation.
SIZES = {1: (1000, 14), 10: (5000, 27), 50: (15000, 45)}
WINDOWS = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}

_FLOOR = """SELECT count(), sum(length(principal)), sum(length(resource)), sum(length(action)), sum(bytes),
       sum(length(related)), sum(length(grantee)), sum(length(status)), sum(length(via)), sum(length(source_ip)),
       sum(length(attributes['destination'])), sum(length(principal_type)), sum(length(event_id)),
       sum(toUnixTimestamp64Milli(event_time))
FROM access_log
WHERE event_time >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC')
  AND event_time < fromUnixTimestamp64Milli({hi:Int64}, 'UTC')"""


def _window(spec_start: datetime, days: int, width: timedelta) -> tuple[datetime, datetime]:
    """The last ``width`` of the period's last working day (a busy window, not a quiet night)."""
    last_day = spec_start + timedelta(days=days - 1)
    while last_day.weekday() >= 5:
        last_day -= timedelta(days=1)
    end = last_day + timedelta(hours=17) if width < timedelta(days=1) else last_day + timedelta(days=1)
    return end - width, end


# ------------------------------------------------------------------ child steps (fresh processes)

def _child_generate(store_dir: str, principals: int, days: int) -> dict:
    from blastwall.schema import init_schema
    from blastwall.simulation import OrgSpec, write_to_store
    from blastwall.store import store

    with store(f"chdb://{store_dir}") as client:
        init_schema(client)
        counts = write_to_store(client, OrgSpec(principals=principals, days=days, seed=3))
    return {"events": counts["access_log"], "seconds": counts["seconds"]}


def epoch_ms(moment: datetime) -> int:
    from features.times import bound_ms

    return bound_ms(moment)


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
            "rows": shapes, "window_events": window_events,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child_floor(store_dir: str, start: str, end: str) -> dict:
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
    return {"seconds": time.perf_counter() - begin, "load_seconds": load,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


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


CHILDREN = {"generate": _child_generate, "engine": _child_engine, "floor": _child_floor,
            "reference": _child_reference, "numba": _child_numba}


def _run(step: str, *args: object, env: dict[str, str] | None = None) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", step, *map(str, args)],
                            capture_output=True, text=True, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50], choices=sorted(SIZES),
                        help="organisation sizes in millions of events")
    parser.add_argument("--reference-max-events", type=int, default=3_000_000,
                        help="skip the pandas reference above this many events of history")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the generated stores in this directory")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, *rest = args.child
        converted = [int(r) if r.isdigit() else r for r in rest]
        print(json.dumps(CHILDREN[step](*converted)))
        return

    from blastwall.simulation import OrgSpec

    work = args.keep or Path(tempfile.mkdtemp(prefix="bw-bench-features-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"benchmark": "features", "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                    "goals": {"vs_reference": ">= 20", "vs_floor": "<= 3", "peak_rss_mb": "<= 2048"},
                    "organisations": []}
    with tempfile.TemporaryDirectory() as cache:  # an empty cache: the first process compiles, the second loads
        report["numba"] = [_run("numba", env={"NUMBA_CACHE_DIR": cache}) for _ in range(2)]
    try:
        for size in args.sizes:
            principals, days = SIZES[size]
            store_dir = work / f"org-{size}m"
            generated = {"reused": True}
            if not (store_dir / ".generated").exists():
                shutil.rmtree(store_dir, ignore_errors=True)
                generated = _run("generate", store_dir, principals, days)
                (store_dir / ".generated").write_text(json.dumps(generated))
            else:
                generated = json.loads((store_dir / ".generated").read_text())
            organisation = {"millions": size, "principals": principals, "days": days, **generated, "windows": {}}
            print(f"organisation ~{size}M: {principals:,} principals x {days} days, "
                  f"{generated.get('events', 0):,} events",
                  flush=True)
            spec_start = OrgSpec().start
            for label, width in WINDOWS.items():
                start, end = _window(spec_start, days, width)
                engine = _run("engine", store_dir, start.isoformat(), end.isoformat())
                floor = _run("floor", store_dir, start.isoformat(), end.isoformat())
                history_events = generated.get("events", 0) * ((end - spec_start) / timedelta(days=days))
                if history_events <= args.reference_max_events:
                    reference = _run("reference", store_dir, start.isoformat(), end.isoformat())
                else:
                    reference = {"skipped": f"~{history_events / 1e6:.0f}M events of history exceed "
                                            f"--reference-max-events={args.reference_max_events:,}"}
                figures = {"window": [start.isoformat(), end.isoformat()], "engine": engine, "floor": floor,
                           "reference": reference}
                if "seconds" in engine and "seconds" in floor:
                    figures["engine_vs_floor"] = engine["seconds"] / floor["seconds"]
                if "seconds" in engine and "seconds" in reference:
                    figures["reference_vs_engine"] = reference["seconds"] / engine["seconds"]
                organisation["windows"][label] = figures
                print(f"  {label}: {json.dumps({k: v for k, v in figures.items() if k != 'window'})}", flush=True)
            report["organisations"].append(organisation)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\n{'org':>5} {'window':>6} {'events':>10} {'engine s':>9} {'floor s':>8} {'x floor':>8} "
          f"{'ref s':>8} {'ref/eng':>8} {'peak MB':>8}")
    for organisation in report["organisations"]:
        for label, figures in organisation["windows"].items():
            engine, floor, reference = figures["engine"], figures["floor"], figures["reference"]
            print(f"{organisation['millions']:>4}M {label:>6} {engine.get('window_events', 0):>10,} "
                  f"{engine.get('seconds', float('nan')):>9.3f} {floor.get('seconds', float('nan')):>8.3f} "
                  f"{figures.get('engine_vs_floor', float('nan')):>8.1f} "
                  f"{reference.get('seconds', float('nan')):>8.1f} "
                  f"{figures.get('reference_vs_engine', float('nan')):>8.1f} "
                  f"{engine.get('peak_rss_mb', float('nan')):>8,.0f}")
    first, second = report["numba"]
    print(f"numba kernels, import + first call: {first.get('seconds', 0):.2f}s then {second.get('seconds', 0):.2f}s "
          f"(second process: {second.get('cache_hits', 0)} cache hits, {second.get('cache_misses', 0)} misses)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "features.json").write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
