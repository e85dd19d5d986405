"""Ingest throughput: blastwall's validated ingest against ClickHouse's own JSON insert, one run.

Writes a generated organisation's access log as JSON Lines (plain and gzip), then times

- ``floor``: ClickHouse parsing the same file straight into a copy of ``access_log``
  (``INSERT … FORMAT JSONEachRow``: no validation, no rejected rows, no dedup);
- ``ingest``: ``blastwall ingest`` of the same file (validation, rejected rows, dedup);
- ``reingest``: the same file again (everything is a duplicate);
- ``ingest_gzip``: the gzip-compressed file into a fresh store.

Prints a table and saves ``benchmarks/results/ingest.json``. The goal (issue 2) is
>= 200,000 rows/s for ``ingest`` on a 2-core machine.

Usage: ``python benchmarks/ingest.py [--principals N] [--days D]``
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

from blastwall.schema import init_schema
from blastwall.simulation import OrgSpec, write_files
from blastwall.store import store
from features.ingest import ingest_file

RESULTS = Path(__file__).resolve().parent / "results"


def _rows(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--principals", type=int, default=2000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bw-bench-ingest-"))
    try:
        started = time.perf_counter()
        write_files(OrgSpec(principals=args.principals, days=args.days, seed=args.seed), work / "files", fmt="jsonl")
        generated = time.perf_counter() - started
        log = work / "files" / "access_log.jsonl"
        packed = work / "access_log.jsonl.gz"
        with log.open("rb") as source, gzip.open(packed, "wb", compresslevel=1) as target:
            shutil.copyfileobj(source, target, 1 << 24)
        rows = _rows(log)
        size_mb = log.stat().st_size / 1e6
        print(f"{rows:,} rows, {size_mb:,.0f} MB JSON Lines (generated in {generated:.1f}s)")

        figures: dict[str, dict[str, float]] = {}
        with store(f"chdb://{work / 'store'}") as client:
            init_schema(client)
            client.command("CREATE TABLE floor_copy AS access_log")
            begin = time.perf_counter()
            client.raw_insert("floor_copy", None, log.read_bytes(), fmt="JSONEachRow")
            figures["floor"] = {"seconds": time.perf_counter() - begin}

            summary = ingest_file(client, log)
            assert summary.loaded == rows, summary
            figures["ingest"] = {"seconds": summary.seconds}
            summary = ingest_file(client, log)
            assert summary.duplicates == rows, summary
            figures["reingest"] = {"seconds": summary.seconds}
        with store(f"chdb://{work / 'store-gzip'}") as client:
            init_schema(client)
            summary = ingest_file(client, packed)
            assert summary.loaded == rows, summary
            figures["ingest_gzip"] = {"seconds": summary.seconds}

        for figure in figures.values():
            figure["rows_per_second"] = rows / figure["seconds"]
            figure["vs_floor"] = figure["seconds"] / figures["floor"]["seconds"]
        report = {
            "benchmark": "ingest",
            "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
            "rows": rows,
            "megabytes": size_mb,
            "figures": figures,
            "goal_rows_per_second": 200_000,
            "goal_met": figures["ingest"]["rows_per_second"] >= 200_000,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        print(f"{'step':<12} {'seconds':>8} {'rows/s':>12} {'x floor':>8}")
        for name, figure in figures.items():
            print(f"{name:<12} {figure['seconds']:>8.2f} {figure['rows_per_second']:>12,.0f} {figure['vs_floor']:>8.2f}")
        print(f"peak RSS {report['peak_rss_mb']:,.0f} MB; goal >= 200,000 rows/s: {'met' if report['goal_met'] else 'MISSED'}")
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "ingest.json").write_text(json.dumps(report, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
