"""Source ingest against native contract ingest of the same events, in one run.

The labelled organisation's access log is written as contract JSON Lines and, through
``blastwall.simulation.formats``, in every real format the generator writes (CloudTrail,
OCSF, GCP audit…), each as JSON Lines; CloudTrail also as gzipped ``{"Records": [...]}``
files of 10,000 records (how CloudTrail delivers them to S3). Each is ingested in a fresh
process into a fresh store, so each peak memory is its own.

Prints a table and saves ``benchmarks/results/sources.json``. Goal (issue 13): source
ingest >= 50% of native ingest's rows/s; peak memory bounded by the batch size.

Usage: ``python benchmarks/sources.py [--principals N] [--days D]``
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/features.py would shadow the features package for a script run from here.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_RATIO = 0.5
ENVELOPE_RECORDS = 10_000


def _write(folder: Path, principals: int, days: int) -> tuple[Path, dict[str, Path], list[Path], int]:
    """The same organisation as contract JSON Lines and in every real format the generator writes."""
    from blastwall.simulation import OrgSpec, build_organisation, write_files
    from blastwall.simulation.formats import discover, write_log_files

    org = build_organisation(OrgSpec(principals=principals, days=days, seed=5))
    rows = write_files(org, folder / "org", fmt="jsonl")["access_log"]
    formats = {}
    for name in discover():
        write_log_files(org, folder / name, name)
        formats[name] = folder / name / f"access_log.{name}.jsonl"
    # CloudTrail as it lands in S3: gzipped {"Records": [...]} files.
    envelopes: list[Path] = []
    batch: list[dict] = []
    with formats["cloudtrail"].open() as lines:
        for line in lines:
            batch.append(json.loads(line))
            if len(batch) == ENVELOPE_RECORDS:
                envelopes.append(_envelope(folder, len(envelopes), batch))
                batch = []
    if batch:
        envelopes.append(_envelope(folder, len(envelopes), batch))
    return folder / "org" / "access_log.jsonl", formats, envelopes, rows


def _envelope(folder: Path, number: int, records: list[dict]) -> Path:
    path = folder / "trail" / f"{number:05d}.json.gz"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
    return path


def _child(source: str, store: str, files: list[str]) -> None:
    from blastwall.schema import init_schema
    from blastwall.store import store as open_store
    from features.ingest import ingest_file

    with open_store(f"chdb://{store}") as client:
        init_schema(client)
        begin = time.perf_counter()
        loaded = rejected = 0
        for file in files:
            summary = ingest_file(client, file, source=None if source == "contract" else source)
            loaded += summary.loaded
            rejected += summary.rejected
        seconds = time.perf_counter() - begin
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "loaded": loaded, "rejected": rejected, "peak_rss_mb": peak}))


def _run(name: str, source: str, files: list[Path], folder: Path) -> dict:
    store = folder / f"store-{name}"
    out = subprocess.run([sys.executable, __file__, "--child", source, str(store), *map(str, files)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--principals", type=int, default=1000)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        contract, formats, envelopes, rows = _write(folder, args.principals, args.days)
        runs = {"contract": _run("contract", "contract", [contract], folder)}
        for name, path in formats.items():
            runs[f"{name}_jsonl"] = _run(name, name, [path], folder)
        runs["cloudtrail_records_gz"] = _run("records", "cloudtrail", envelopes, folder)
    native = rows / runs["contract"]["seconds"]
    report = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.machine(),
              "events": rows, "runs": {}, "goal_ratio": GOAL_RATIO}
    print(f"{rows:,} events ({args.principals} principals x {args.days} days)")
    print(f"{'run':24} {'rows/s':>10} {'vs native':>9} {'loaded':>9} {'rejected':>8} {'peak MB':>8}")
    for name, figures in runs.items():
        rate = rows / figures["seconds"]
        report["runs"][name] = {**figures, "rows_per_second": round(rate), "ratio_to_native": round(rate / native, 3)}
        print(f"{name:24} {rate:>10,.0f} {rate / native:>9.2f} {figures['loaded']:>9,} {figures['rejected']:>8,} "
              f"{figures['peak_rss_mb']:>8,.0f}")
    report["goal_holds"] = all(r["ratio_to_native"] >= GOAL_RATIO for r in report["runs"].values())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sources.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"goal (source >= {GOAL_RATIO:.0%} of native): {'met' if report['goal_holds'] else 'MISSED'}")


if __name__ == "__main__":
    main()
