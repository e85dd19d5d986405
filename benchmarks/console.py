"""Console render time with many stored incidents (goal: queue, incident and entity views < 1 s).

In one run, in one embedded store:

- a generated organisation (default 300 principals x 5 days) gives the views real
  events, catalogue and memberships to read;
- ``baseline``: the queue, incident, principal and resource views rendered with 1,000 stored
  incidents (the principal and the resource are the first of their catalogues, each named
  by one incident in 200);
- ``loaded``: the same views after the store holds ``--incidents`` (default 100,000)
  incidents, written in one ``INSERT … SELECT`` over ``numbers()``;

Each view is rendered by Streamlit's ``AppTest`` (the real script, server side; no browser),
``--repeat`` times after one warm-up, with the console's 5-second read cache emptied before
each (so every render queries the store); the figure is the median wall time of a render. The
ratio loaded/baseline shows how the views scale with the store. Prints the figures and
saves ``benchmarks/results/console.json``.

Usage: ``python benchmarks/console.py [--incidents 100000] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from streamlit.testing.v1 import AppTest

from blastwall.access import User
from blastwall.schema import init_schema
from blastwall.simulation import OrgSpec, write_to_store
from blastwall.store import close_store, open_store
from dashboard import style
from dashboard.state import ConsoleOptions, forget_reads, store_client

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboard" / "app.py")
RESULTS = ROOT / "benchmarks" / "results" / "console.json"
DETECTORS = ("bulk_export", "unusual_join", "artifact_download", "behaviour_outlier", "runaway_agent", "secrets")


def add_incidents(client, count: int, offset: int, now: datetime) -> None:
    """``count`` incidents with ids from ``offset``: spread over 30 days, severities and detectors."""
    principals = [r[0] for r in client.query("SELECT principal FROM principals FINAL LIMIT 200").result_rows]
    resources = [r[0] for r in client.query("SELECT resource FROM resources FINAL LIMIT 200").result_rows]
    client.command(
        "INSERT INTO incidents SELECT number + {offset:UInt64} AS id,"
        " {detectors:Array(String)}[number % length({detectors:Array(String)}) + 1] AS detector, 'principal',"
        " {principals:Array(String)}[number % length({principals:Array(String)}) + 1] AS entity_key,"
        " concat('synthetic incident ', toString(number)),"
        " ['SEV1', 'SEV2', 'SEV3', 'SEV4'][(number * 7) % 4 + 1],"
        " ['open', 'acknowledged', 'resolved'][number % 3 + 1],"
        " (number % 1000) / 1000, [entity_key],"
        " [{resources:Array(String)}[number % length({resources:Array(String)}) + 1]],"
        " fromUnixTimestamp64Milli({now:Int64} - toInt64(number % 2592000) * 1000 - 3600000, 'UTC'),"
        " fromUnixTimestamp64Milli({now:Int64} - toInt64(number % 2592000) * 1000 - 1800000, 'UTC'),"
        " fromUnixTimestamp64Milli({now:Int64} - toInt64(number % 2592000) * 1000, 'UTC'),"
        " '[{\"feature\": \"export_bytes\", \"value\": 9000000000, \"baseline\": 1000000, \"weight\": 1.0}]',"
        " '', number + {offset:UInt64}, '', 'benchmark', 1, now64(3), now64(3),"
        " (SELECT max(ref) FROM incidents) + number + 1"  # ref: INC-n continues the store's numbering
        " FROM numbers({count:UInt64})",
        parameters={"offset": offset, "count": count, "detectors": list(DETECTORS), "principals": principals,
                    "resources": resources, "now": int(now.timestamp() * 1000)})


def render(dsn: str, page: str | None, state: dict[str, object], expected: str, repeat: int) -> float:
    """Median seconds of one render of a view (after a warm-up render).

    ``state`` is what the analyst's session holds (the incident or principal picked);
    ``expected`` starts the title the view must show, so an error page is never timed.
    """
    app = AppTest.from_file(APP, default_timeout=120)
    app.session_state["options"] = ConsoleOptions(dsn, None, None, False, False)
    app.session_state["user"] = User("bench", "Benchmark", "viewer")
    for key, value in state.items():
        app.session_state[key] = value
    app.run()
    if page:
        app.switch_page(page)
    times = []
    for _ in range(repeat + 1):
        forget_reads()  # every render queries the store, as the first analyst after the 5 s cache does
        start = time.perf_counter()
        app.run()
        times.append(time.perf_counter() - start)
        if app.exception:
            raise RuntimeError(f"{page or 'queue'} failed: {app.exception}")
    # What was rendered is the real view, not an empty or error page.
    title = app.title[0].value
    if not title.startswith(expected) or (page is None and len(app.dataframe[0].value) != 200):
        raise RuntimeError(f"{page or 'queue'} rendered {title!r}, not the view under test")
    return statistics.median(times[1:])


def measure(dsn: str, top: int, principal: str, resource: str, repeat: int) -> dict[str, float]:
    """The queue, the incident (its four answers and first tab), and a principal's and a resource's page."""
    return {"queue_s": render(dsn, None, {}, "Queue", repeat),
            "incident_s": render(dsn, "views/incident.py", {"incident_id": top}, "synthetic incident", repeat),
            "principal_s": render(dsn, "views/principal.py", {"principal_name": principal},
                                  style.text(principal), repeat),
            "resource_s": render(dsn, "views/resource.py", {"resource_name": resource}, style.text(resource), repeat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--principals", type=int, default=300)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        dsn = f"chdb://{folder}/store"
        client = open_store(dsn)
        init_schema(client)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        write_to_store(client, OrgSpec(principals=args.principals, days=args.days,
                                       start=midnight - timedelta(days=args.days)))
        add_incidents(client, args.baseline, 1, now)
        principal = client.query("SELECT principal FROM principals FINAL LIMIT 1").result_rows[0][0]
        resource = client.query("SELECT resource FROM resources FINAL LIMIT 1").result_rows[0][0]
        baseline = measure(dsn, 1, principal, resource, args.repeat)
        started = time.perf_counter()
        add_incidents(client, args.incidents - args.baseline, args.baseline + 1, now)
        loading = time.perf_counter() - started
        stored = int(client.query("SELECT count() FROM incidents FINAL").result_rows[0][0])
        loaded = measure(dsn, 1, principal, resource, args.repeat)
        store_client.clear()
        close_store(client)
    result = {
        "incidents": stored, "baseline_incidents": args.baseline, "repeat": args.repeat,
        "baseline": baseline, "loaded": loaded, "insert_seconds": round(loading, 2),
        "ratio": {view: loaded[view] / baseline[view] for view in baseline},
        "goal_s": 1.0, "met": all(value < 1.0 for value in loaded.values()),
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
    }
    for view in baseline:
        print(f"{view[:-2]:9} {args.baseline:>7,} incidents: {baseline[view] * 1000:7.0f} ms   "
              f"{stored:>7,} incidents: {loaded[view] * 1000:7.0f} ms   ratio {result['ratio'][view]:.2f}")
    print(f"goal: each view < 1 s with {stored:,} incidents: {'met' if result['met'] else 'NOT met'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
