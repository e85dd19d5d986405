"""Replay speed: a generated organisation detected by the batch path, and the step loop's live latency beside it.

In one run, on one generated organisation (default: 2,000 principals x 7 days at 5-minute
steps from its first day, so 2,016 steps), with the built-in rules as ``blastwall detect``
runs them, each part in a fresh process (its own peak RSS, the embedded ClickHouse
included):

- ``batch``: :func:`detector.replay.run_batches` over the whole period, as ``blastwall
  detect --since/--until`` runs it — events/s (goal of the batch-replay issue: >= 100,000; reach:
  1,000,000), ms per step, where the time goes (the batch feature pass, the per-step
  detection, the history compaction, the rest: ledger, plan, baselines' flush) and the
  statements that take it, alerts and incidents, peak RSS (goal: <= 2 GB);
- ``step loop``: :func:`detector.replay.run_steps` — the live path — over a sample of
  steps (default: the 4 busiest hours, 13:00-17:00 UTC of the period's last working day;
  a copy of the store is first brought there by ``run_batches``, untimed): ms per step
  (median, p95), its feature step and the per-step overhead beyond it (goal, issue 4:
  <= 100 ms), events/s; and the ratio of the batch path's events/s to it. Busy steps
  amortise a step's fixed cost over more events than the period's average step, so this
  ratio is on the low side of the whole-period one (``--full-step-loop`` measures that
  too, at ~0.4 s a step). The alerts the two paths raise in the sample are compared;
- the steps that refitted a baseline, counted apart (their fit time is amortised).

Prints the figures and saves ``benchmarks/results/replay.json``.

Usage: ``python benchmarks/replay.py [--principals 2000] [--days 7] [--step-minutes 5] [--seed 7]
[--loop-hours 4] [--loop-end ISO] [--full-step-loop] [--output replay.json]``
"""

from __future__ import annotations

import argparse
import importlib.util
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

# Run as a script, this file's folder comes first on sys.path, where `features.py` would
# shadow the `features` package.
from _common import code_version, peak_mb, say  # noqa: E402  (benchmarks/ is the script's folder)

HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]

RESULTS = HERE / "results"
OVERHEAD_GOAL_MS = 100.0
GOALS = {
    "events_per_second": "Replay of the 2,000-principal x 7-day organisation at 5-minute steps: >= 100,000 events/s "
                         "(reach: 1,000,000)",
    "peak_rss_mb": "<= 2048 (peak RSS of the process, the embedded ClickHouse included)",
    "overhead_ms_per_step": "<= 100 (issue 4: a live step's time beyond its feature step)",
}


def _bench_features():
    """``benchmarks/features.py`` as a module (its statement profiler), under a name that shadows nothing."""
    spec = importlib.util.spec_from_file_location("_bench_features", HERE / "features.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module





def _config():
    """Detection settings as the CLI builds them: the defaults with the built-in rules."""
    from dataclasses import replace

    from detector.detect import DetectConfig
    from detector.rules import load_rules

    library = load_rules()
    return replace(DetectConfig(), rules=tuple(library.rules.values())), library


def _spec(principals: int, days: int, seed: int):
    from blastwall.simulation import OrgSpec

    return OrgSpec(principals=principals, days=days, seed=seed)


def _timed(parts: dict[str, float], name: str, function):
    def run(*args, **kwargs):
        began = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            parts[name] = parts.get(name, 0.0) + time.perf_counter() - began
    return run


def _time_stages(parts: dict[str, float]) -> None:
    """Time the stages of a step's detection (:func:`detector.detect.detect_features`) into ``parts``.

    The engine looks these up in its module (and the families' hooks in ``FAMILIES``) at
    each call, so wrapping them here times them without touching the engine.
    """
    import dataclasses

    import detector.detect as detect
    from detector.families import FAMILIES

    for name, label in (("_principal_alerts", "stage principals (baselines, scoring)"),
                        ("rule_alerts", "stage rules"), ("record_alert", "recording alerts (incidents)")):
        setattr(detect, name, _timed(parts, label, getattr(detect, name)))
    for key, family in list(FAMILIES.items()):
        if family.detect is not None:
            FAMILIES[key] = dataclasses.replace(family, detect=_timed(parts, f"stage {family.id}", family.detect))


# ------------------------------------------------------------------ child steps (fresh processes)

def _child_generate(store_dir: str, principals: int, days: int, seed: int) -> dict:
    from blastwall.schema import init_schema
    from blastwall.simulation import write_to_store
    from blastwall.store import store

    with store(f"chdb://{store_dir}") as client:
        init_schema(client)
        generated = write_to_store(client, _spec(principals, days, seed))
    return {"events": generated["access_log"], "seconds": generated["seconds"], "peak_rss_mb": peak_mb()}


def _child_batch(store_dir: str, principals: int, days: int, seed: int, step_minutes: float,
                 sample: list[str]) -> dict:
    import detector.replay as replay
    from blastwall.store import store
    from detector.baselines import ModelBook
    from detector.detect import StepResult

    spec, step = _spec(principals, days, seed), timedelta(minutes=step_minutes)
    config, library = _config()
    parts = {"extract_batch": 0.0, "detect_features": 0.0, "compact_history": 0.0}
    for name in list(parts):  # run_batches looks these up in its module at each call
        setattr(replay, name, _timed(parts, name, getattr(replay, name)))
    stages: dict[str, float] = {}
    _time_stages(stages)
    sample_lo, sample_hi = (datetime.fromisoformat(moment) for moment in sample)
    with store(f"chdb://{store_dir}") as client:
        book = ModelBook.load(client, config.baseline)
        profile = _bench_features()._Profile(client)
        idle = peak_mb()
        steps: list[tuple[float, int]] = []
        in_sample = {"steps": 0, "events": 0, "alerts": 0, "detectors": {}}
        plan: dict[str, int] = {}

        def progress(result: StepResult) -> None:
            steps.append((result.seconds, book.fits))
            if sample_lo <= result.start and result.end <= sample_hi:
                in_sample["steps"] += 1
                in_sample["events"] += result.events
                in_sample["alerts"] += len(result.alerts)
                for alert in result.alerts:
                    in_sample["detectors"][alert.detector] = in_sample["detectors"].get(alert.detector, 0) + 1
            if len(steps) % 288 == 0:
                say(f"    {len(steps):,}/{plan.get('steps', 0):,} steps")

        began = time.perf_counter()
        summary = replay.run_batches(client, spec.start + timedelta(days=days), step, since=spec.start,
                                     config=config, book=book, on_step=progress,
                                     on_plan=lambda n, events: plan.update(steps=n, events=events))
        wall = time.perf_counter() - began
        batches = int(client.query("SELECT count() FROM detect_runs WHERE state = 'done'").result_rows[0][0])
        incidents = int(client.query("SELECT uniqExact(id) FROM incidents").result_rows[0][0])
    refits = sum(1 for i, (_, fits) in enumerate(steps) if fits != (steps[i - 1][1] if i else 0))
    rest = wall - sum(parts.values())
    return {"wall_seconds_run_batches": wall, "steps": summary.steps, "batches": batches, "events": summary.events,
            "events_per_second": summary.events / wall, "ms_per_step": 1000 * wall / summary.steps,
            "seconds": {"features (extract_batch)": parts["extract_batch"],
                        "detection (detect_features, per step)": parts["detect_features"],
                        "history compaction": parts["compact_history"],
                        "rest (plan, ledger, baselines' flush)": rest},
            "detection_seconds_by_stage": dict(sorted(stages.items(), key=lambda item: -item[1])),
            "refits": refits, "alerts": summary.alerts, "incidents_opened": summary.opened, "incidents": incidents,
            "stage_errors": len(summary.errors), "errors_sample": summary.errors[:5],
            "rules": sorted(library.rules), "rule_problems": [str(p) for p in library.problems],
            "sample_window": in_sample, "statements": profile.top(30),
            "idle_rss_mb": idle, "peak_rss_mb": peak_mb()}


def _child_loop(store_dir: str, principals: int, days: int, seed: int, step_minutes: float,
                sample: list[str]) -> dict:
    from blastwall.store import store
    from detector.baselines import ModelBook
    from detector.detect import StepResult
    from detector.replay import run_batches, run_steps

    spec, step = _spec(principals, days, seed), timedelta(minutes=step_minutes)
    config, _ = _config()
    lo, hi = (datetime.fromisoformat(moment) for moment in sample)
    with store(f"chdb://{store_dir}") as client:
        book = ModelBook.load(client, config.baseline)
        began = time.perf_counter()
        if lo > spec.start:  # untimed: bring the store to the sample's start as a replay would leave it
            run_batches(client, lo, step, since=spec.start, config=config, book=book)
        warm = time.perf_counter() - began
        warm_rss = peak_mb()
        steps: list[tuple[float, float, int, int, int]] = []  # seconds, feature seconds, fits, events, alerts
        detectors: dict[str, int] = {}

        def progress(result: StepResult) -> None:
            steps.append((result.seconds, result.feature_seconds, book.fits, result.events, len(result.alerts)))
            for alert in result.alerts:
                detectors[alert.detector] = detectors.get(alert.detector, 0) + 1

        fits = book.fits
        stages: dict[str, float] = {}
        _time_stages(stages)
        began = time.perf_counter()
        summary = run_steps(client, hi, step, config=config, book=book, on_step=progress)
        wall = time.perf_counter() - began
    fitting = {i for i in range(len(steps)) if steps[i][2] != (steps[i - 1][2] if i else fits)}
    plain = [steps[i] for i in range(len(steps)) if i not in fitting]
    overheads = [1000 * (total - feature) for total, feature, *_ in plain] or [float("nan")]
    totals = sorted(1000 * total for total, *_ in steps)
    return {"window": sample, "steps": summary.steps, "events": summary.events, "wall_seconds": wall,
            "events_per_second": summary.events / wall, "events_per_step": summary.events / summary.steps,
            "ms_per_step": 1000 * wall / summary.steps, "ms_per_step_median": statistics.median(totals),
            "ms_per_step_p95": totals[min(len(totals) - 1, int(0.95 * len(totals)))],
            "ms_per_step_max": totals[-1],
            "feature_ms_per_step": 1000 * summary.feature_seconds / summary.steps,
            "overhead_ms_per_step_mean": summary.overhead_ms_per_step,
            "overhead_ms_per_step_median_without_refits": statistics.median(overheads),
            "refit_steps": len(fitting),
            "refit_step_ms_mean": statistics.mean(1000 * steps[i][0] for i in fitting) if fitting else 0.0,
            "detection_ms_per_step_by_stage": {k: 1000 * v / summary.steps
                                               for k, v in sorted(stages.items(), key=lambda item: -item[1])},
            "alerts": summary.alerts, "detectors": detectors, "incidents_opened": summary.opened,
            "warm_up_seconds_untimed": warm, "warm_up_peak_rss_mb": warm_rss, "peak_rss_mb": peak_mb()}


def _child_full_loop(store_dir: str, principals: int, days: int, seed: int, step_minutes: float) -> dict:
    from blastwall.store import store
    from detector.replay import run_steps

    spec, step = _spec(principals, days, seed), timedelta(minutes=step_minutes)
    config, _ = _config()
    with store(f"chdb://{store_dir}") as client:
        count = [0]

        def progress(_result) -> None:
            count[0] += 1
            if count[0] % 288 == 0:
                say(f"    step loop: {count[0]:,} steps")

        began = time.perf_counter()
        summary = run_steps(client, spec.start + timedelta(days=days), step, since=spec.start, config=config,
                            on_step=progress)
        wall = time.perf_counter() - began
    return {"steps": summary.steps, "events": summary.events, "wall_seconds": wall,
            "events_per_second": summary.events / wall, "ms_per_step": 1000 * wall / summary.steps,
            "feature_ms_per_step": 1000 * summary.feature_seconds / summary.steps,
            "overhead_ms_per_step_mean": summary.overhead_ms_per_step,
            "alerts": summary.alerts, "incidents_opened": summary.opened, "peak_rss_mb": peak_mb()}


CHILDREN = {"generate": _child_generate, "batch": _child_batch, "loop": _child_loop, "full_loop": _child_full_loop}


def _run(step: str, *args: object) -> dict:
    """One child step in a fresh process (its progress goes to stderr as it runs); its JSON answer."""
    began = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, "--child", step, json.dumps(args, default=str)],
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    if result.returncode != 0:
        raise SystemExit(f"benchmark step {step!r} failed (exit {result.returncode}; its error is above)")
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    answer["process_wall_seconds"] = round(time.perf_counter() - began, 1)
    return answer


# ------------------------------------------------------------------ main

def _sample_window(start: datetime, days: int, hours: float, end: str | None,
                   step: timedelta) -> tuple[datetime, datetime]:
    """``hours`` ending at ``end``, or at 17:00 UTC of the period's last working day; whole steps."""
    if end:
        hi = datetime.fromisoformat(end)
        hi = hi if hi.tzinfo else hi.replace(tzinfo=UTC)
    else:
        day = start + timedelta(days=days - 1)
        while day.weekday() >= 5 and day > start:
            day -= timedelta(days=1)
        hi = day + timedelta(hours=17)
    hi = min(hi, start + timedelta(days=days))
    lo = max(start, hi - timedelta(hours=hours))
    return lo, lo + ((hi - lo) // step) * step


def _round(value):
    if isinstance(value, float):
        return round(value, 3 if abs(value) < 10 else 1)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--principals", type=int, default=2000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--step-minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--loop-hours", type=float, default=4.0,
                        help="hours of steps the step loop runs (0: skip it)")
    parser.add_argument("--loop-end", help="end of the step loop's sample (ISO; default: 17:00 UTC of the "
                                           "period's last working day)")
    parser.add_argument("--full-step-loop", action="store_true",
                        help="also run the step loop over the whole period (slow: ~0.4 s a step)")
    parser.add_argument("--output", default="replay.json", help="File name under benchmarks/results/.")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        step, *rest = args.child
        print(json.dumps(CHILDREN[step](*(json.loads(rest[0]) if rest else []))))
        return 0

    started, code = time.perf_counter(), code_version()  # the code the children import, at their start
    spec = _spec(args.principals, args.days, args.seed)
    step = timedelta(minutes=args.step_minutes)
    lo, hi = _sample_window(spec.start, args.days, args.loop_hours, args.loop_end, step)
    sample = [lo.isoformat(), hi.isoformat()]
    org = (args.principals, args.days, args.seed)
    loop = full = None
    with tempfile.TemporaryDirectory(prefix="blastwall-replay-") as directory:
        stores = Path(directory)
        generated = _run("generate", stores / "batch", *org)
        print(f"generated {generated['events']:,} events ({args.principals:,} principals x {args.days} days) "
              f"in {generated['seconds']:.1f}s", flush=True)
        copies = (["loop"] if args.loop_hours > 0 and hi > lo else []) + (["full"] if args.full_step_loop else [])
        for name in copies:  # the same generated store for every part (closed: a plain copy is a clean one)
            shutil.copytree(stores / "batch", stores / name, symlinks=True)
        print("batch path: run_batches over the whole period ...", flush=True)
        batch = _run("batch", stores / "batch", *org, args.step_minutes, sample)
        print(f"  {batch['events']:,} events in {batch['wall_seconds_run_batches']:.1f}s: "
              f"{batch['events_per_second']:,.0f} events/s, peak RSS {batch['peak_rss_mb']:,.0f} MB", flush=True)
        if "loop" in copies:
            print(f"step loop: run_steps over [{sample[0]}, {sample[1]}) ...", flush=True)
            loop = _run("loop", stores / "loop", *org, args.step_minutes, sample)
            print(f"  {loop['steps']} steps, {loop['ms_per_step_median']:.0f} ms median, "
                  f"{loop['events_per_second']:,.0f} events/s", flush=True)
        if "full" in copies:
            print("step loop: run_steps over the whole period ...", flush=True)
            full = _run("full_loop", stores / "full", *org, args.step_minutes)
    report = {
        "benchmark": "replay: run_batches over a generated organisation, the step loop's live latency beside it",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "code": code,
        "goals": GOALS,
        "organisation": {"principals": args.principals, "days": args.days, "seed": args.seed,
                         "events": generated["events"], "generate_seconds": generated["seconds"]},
        "step_minutes": args.step_minutes,
        "rules": batch["rules"],
        "batch": batch,
        "events_per_second": round(batch["events_per_second"]),
        "peak_rss_mb": round(batch["peak_rss_mb"]),
    }
    if loop is not None:
        report["step_loop_sample"] = loop
        report["batch_vs_step_loop_events_per_second"] = batch["events_per_second"] / loop["events_per_second"]
        report["sample_alerts"] = {"batch": batch["sample_window"]["alerts"], "step_loop": loop["alerts"],
                                   "batch_detectors": batch["sample_window"]["detectors"],
                                   "step_loop_detectors": loop["detectors"]}
    if full is not None:
        report["step_loop_full_period"] = full
        report["batch_vs_full_step_loop_events_per_second"] = batch["events_per_second"] / full["events_per_second"]
    report["goal_met"] = {
        "events_per_second_100k": batch["events_per_second"] >= 100_000,
        "events_per_second_reach_1m": batch["events_per_second"] >= 1_000_000,
        "peak_rss_2gb": batch["peak_rss_mb"] <= 2048,
        **({"overhead_100ms": loop["overhead_ms_per_step_mean"] <= OVERHEAD_GOAL_MS} if loop else {}),
    }
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    report = _round(report)
    print(json.dumps({k: v for k, v in report.items() if k not in ("batch", "rules")}, indent=2))
    timing = report["batch"]
    print("batch path, where the time goes (s): " + ", ".join(f"{k} {v}" for k, v in timing["seconds"].items()))
    print("batch path, detection by stage (s): " + ", ".join(
        f"{k} {v}" for k, v in timing["detection_seconds_by_stage"].items()))
    print("batch path, top statements (s, calls):")
    for row in batch["statements"][:15]:
        print(f"  {row['seconds']:>8.1f} {row['calls']:>6}  {row['statement']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
