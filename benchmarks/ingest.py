"""Ingest throughput and memory: blastwall's validated ingest against ClickHouse's own JSON insert.

Writes a generated organisation's access log as JSON Lines (plain, gzip, and the same
log twice over as a file of double size), then, each in a fresh process so its peak
memory is its own:

- ``floor``: ClickHouse parsing the file straight into a copy of ``access_log``
  (``INSERT … FORMAT JSONEachRow``: no validation, no rejected rows, no dedup);
- ``ingest``: ``blastwall ingest`` of the file (validation, rejected rows, dedup);
- ``reingest``: the same file again into the same store (everything is a duplicate);
- ``ingest_gzip``: the gzip-compressed file;
- ``ingest_double``: a file twice the size — peak memory must not grow with it.

Prints a table and saves ``benchmarks/results/ingest.json``. Goal (issue 2):
``ingest`` >= 200,000 rows/s on a 2-core machine, memory bounded by the batch size.

Usage: ``python benchmarks/ingest.py [--principals N] [--days D]``
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_ROWS_PER_SECOND = 200_000


def _child(step: str, path: str, store_dir: str) -> None:
    """Run one step in this (fresh) process and print its figures as JSON."""
    from blastwall.schema import init_schema
    from blastwall.store import store
    from features.ingest import ingest_file

    with store(f"chdb://{store_dir}") as client:
        init_schema(client)
        if step == "floor":
            client.command("CREATE TABLE IF NOT EXISTS floor_copy AS access_log")
            begin = time.perf_counter()
            with open(path, "rb") as handle:  # in blocks, so the floor is not charged for holding the file
                for block in iter(lambda: handle.read(256 << 20), b""):
                    cut = block.rfind(b"\n") + 1
                    rest = block[cut:]
                    client.raw_insert("floor_copy", None, block[:cut], fmt="JSONEachRow")
                    if rest:
                        handle.seek(-len(rest), os.SEEK_CUR)
            seconds = time.perf_counter() - begin
            rows = int(client.query("SELECT count() FROM floor_copy").result_rows[0][0])
            figures = {"seconds": seconds, "rows": rows}
        else:
            summary = ingest_file(client, path)
            figures = {"seconds": summary.seconds, "rows": summary.rows, "loaded": summary.loaded,
                       "duplicates": summary.duplicates, "rejected": summary.rejected}
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))


def _run(step: str, path: Path, store_dir: Path) -> dict[str, float]:
    result = subprocess.run([sys.executable, __file__, "--child", step, str(path), str(store_dir)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--principals", type=int, default=2000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--child", nargs=3, metavar=("STEP", "FILE", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return

    from blastwall.simulation import OrgSpec, write_files

    work = Path(tempfile.mkdtemp(prefix="bw-bench-ingest-"))
    try:
        started = time.perf_counter()
        write_files(OrgSpec(principals=args.principals, days=args.days, seed=args.seed), work / "files", fmt="jsonl")
        generated = time.perf_counter() - started
        log = work / "files" / "access_log.jsonl"
        packed = work / "access_log.jsonl.gz"
        double = work / "access_log_double.jsonl"
        with log.open("rb") as source, gzip.open(packed, "wb", compresslevel=1) as target:
            shutil.copyfileobj(source, target, 1 << 24)
        with double.open("wb") as target:
            for suffix in ("a", "b"):  # the same events under other ids: twice the rows, all new
                with log.open("rb") as source:
                    for block in iter(lambda: source.read(1 << 24), b""):
                        target.write(block.replace(b'"event_id":"', f'"event_id":"{suffix}'.encode()))
        size_mb = log.stat().st_size / 1e6
        print(f"{args.principals:,} principals x {args.days} days: {size_mb:,.0f} MB JSON Lines "
              f"(generated in {generated:.1f}s)")

        figures = {
            "floor": _run("floor", log, work / "floor"),
            "ingest": _run("ingest", log, work / "main"),
            "reingest": _run("ingest", log, work / "main"),
            "ingest_gzip": _run("ingest", packed, work / "gzip"),
            "ingest_double": _run("ingest", double, work / "double"),
        }
        rows = figures["ingest"]["rows"]
        assert figures["ingest"]["loaded"] == rows == figures["floor"]["rows"], figures
        assert figures["reingest"]["duplicates"] == rows and figures["ingest_double"]["loaded"] == 2 * rows, figures
        for figure in figures.values():
            figure["rows_per_second"] = figure["rows"] / figure["seconds"]
            figure["seconds_per_row_vs_floor"] = figure["rows_per_second"] and (
                figures["floor"]["rows_per_second"] / figure["rows_per_second"])
        report = {
            "benchmark": "ingest",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "rows": rows,
            "megabytes": size_mb,
            "figures": figures,
            "goal_rows_per_second": GOAL_ROWS_PER_SECOND,
            "goal_met": figures["ingest"]["rows_per_second"] >= GOAL_ROWS_PER_SECOND,
            "memory_growth_for_double_file": figures["ingest_double"]["peak_rss_mb"] / figures["ingest"]["peak_rss_mb"],
        }
        print(f"{'step':<14} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'x floor':>8} {'peak MB':>8}")
        for name, figure in figures.items():
            print(f"{name:<14} {figure['rows']:>10,} {figure['seconds']:>8.2f} {figure['rows_per_second']:>10,.0f} "
                  f"{figure['seconds_per_row_vs_floor']:>8.2f} {figure['peak_rss_mb']:>8,.0f}")
        print(f"goal >= {GOAL_ROWS_PER_SECOND:,} rows/s: {'met' if report['goal_met'] else 'MISSED'}; "
              f"peak memory for a file twice as large: x{report['memory_growth_for_double_file']:.2f}")
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "ingest.json").write_text(json.dumps(report, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
