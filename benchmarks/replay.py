"""Replay speed: a generated organisation detected step by step, as ``blastwall detect`` does it.

In one run, on one generated organisation (default: 2,000 principals x 7 days, replayed
in 5-minute steps from its first day, so 2,016 steps):

- ``replay``: :func:`detector.replay.run_steps` over the whole period — events/s and
  milliseconds per step;
- ``feature step``: the part of each step spent in :func:`features.engine.extract`,
  measured inside the same steps: the baseline the detector's own cost is measured
  against. The **per-step overhead** is a step's time beyond its feature step
  (scoring, baselines, context queries, incidents, the run ledger); goal (issue 4):
  <= 100 ms;
- the steps that refitted a baseline, counted apart (their fit time is amortised);
- peak RSS of the process (the embedded ClickHouse included).

Prints the figures and saves ``benchmarks/results/replay.json``.

Usage: ``python benchmarks/replay.py [--principals 2000] [--days 7] [--step-minutes 5] [--seed 7]
[--output replay.json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where `features.py` would
# shadow the `features` package.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from blastwall.schema import init_schema  # noqa: E402
from blastwall.simulation import OrgSpec, write_to_store  # noqa: E402
from blastwall.store import close_store, open_store  # noqa: E402
from detector.baselines import ModelBook  # noqa: E402
from detector.detect import StepResult  # noqa: E402
from detector.replay import run_steps  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OVERHEAD_GOAL_MS = 100.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--principals", type=int, default=2000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--step-minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", default="replay.json", help="File name under benchmarks/results/.")
    args = parser.parse_args(argv)
    spec = OrgSpec(principals=args.principals, days=args.days, seed=args.seed)
    step = timedelta(minutes=args.step_minutes)
    with tempfile.TemporaryDirectory(prefix="blastwall-replay-") as directory:
        client = open_store(f"chdb://{directory}/store", holder="benchmarks/replay.py")
        try:
            init_schema(client)
            generated = write_to_store(client, spec)
            print(f"generated {generated['access_log']:,} events ({args.principals:,} principals x {args.days} days) "
                  f"in {generated['seconds']:.1f}s", flush=True)
            book = ModelBook.load(client)
            steps: list[tuple[float, float, int]] = []  # (step seconds, feature seconds, fits so far)

            def progress(result: StepResult) -> None:
                steps.append((result.seconds, result.feature_seconds, book.fits))
                if len(steps) % 288 == 0:
                    print(f"  {len(steps):,} steps, {statistics.median(s for s, _, _ in steps) * 1000:.0f} ms "
                          f"median", flush=True)

            started = time.perf_counter()
            summary = run_steps(client, spec.start + timedelta(days=spec.days), step, since=spec.start, book=book,
                                on_step=progress)
            wall = time.perf_counter() - started
        finally:
            close_store(client)
    fitting = {i for i in range(len(steps)) if steps[i][2] != (steps[i - 1][2] if i else 0)}
    plain = [steps[i] for i in range(len(steps)) if i not in fitting]
    overheads = [1000 * (total - feature) for total, feature, _ in plain]
    report = {
        "benchmark": "replay: run_steps over a generated organisation",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "organisation": {"principals": args.principals, "days": args.days, "seed": args.seed,
                         "events": generated["access_log"]},
        "step_minutes": args.step_minutes,
        "steps": summary.steps,
        "wall_seconds": round(wall, 1),
        "events_per_second": round(summary.events / wall),
        "ms_per_step": round(1000 * wall / summary.steps, 1),
        "feature_ms_per_step": round(1000 * summary.feature_seconds / summary.steps, 1),
        "overhead_ms_per_step_mean": round(summary.overhead_ms_per_step, 1),
        "overhead_ms_per_step_median_without_refits": round(statistics.median(overheads), 1),
        "overhead_ms_per_step_p95_without_refits": round(statistics.quantiles(overheads, n=20)[-1], 1),
        "refit_steps": len(fitting),
        "refit_step_ms_mean": round(statistics.mean(1000 * steps[i][0] for i in fitting), 1) if fitting else 0.0,
        "alerts": summary.alerts,
        "incidents_opened": summary.opened,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    report["overhead_goal_met"] = report["overhead_ms_per_step_mean"] <= OVERHEAD_GOAL_MS
    print(json.dumps(report, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
