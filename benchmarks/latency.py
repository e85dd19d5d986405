"""Live latency: from an attack's event to its incident, its page and its containment, under load.

Goals (issue 18), at 10k events/s of background traffic on this machine:

- certain detections (decided by one event and the catalogue: grants of sensitive data to
  a mass audience or outside, training on unsanitised data): event → page p95 <= 60 s and
  event → containment p95 <= 90 s;
- statistical families: event → incident p95 <= step + lateness + 30 s.

For each rate of background traffic (default 1k, 10k and 50k events/s), in a process of
its own (so peak RSS is per rate), from a copy of one prepared store:

1. **The store.** A generated organisation (default 300 principals x 5 days, history up to
   today's midnight) with its history detected by the batch path up to the live step, as
   ``blastwall demo`` does, so the baselines exist.
2. **The real live loop** for ``--minutes``: APScheduler with the settings' cadence
   (:class:`blastwall.jobs.DetectionJobs`: the fast path every ``live.tick``, detect
   every ``live.detect_every``, escalation), the built-in rules and playbooks, and paging
   delivered by apprise to an HTTP receiver on 127.0.0.1.
3. **Traffic**, written every second under the store lock, then checked by the fast path at
   once (as the console does after each write of its live traffic):
   - the organisation's own live traffic (:class:`blastwall.simulation.live.LiveTraffic`);
   - background filler up to the rate: reads of internal data by ``--filler`` service
     identities (``bench-svc-NNN``). The load is real (every event is stored, featurised
     and scored); the filler's alerts are suppressed, as a SOC silences known machine
     traffic, so its noise does not page;
   - the injected attacks: every simulated family but ``low_and_slow`` (it spans days),
     several draws each (other actors and data), each written by an attack-only
     ``LiveTraffic`` that honours containment. Certain families start every 100 s until a
     minute before the end (not a grant the history already holds: it exposes nobody);
     statistical ones in the first minutes, so their steps are processed within the run.
     The benchmark's analyst closes incidents a minute after they open, and the IAM system
     logs each revoke blastwall asked for, so a later grant of the same data is new again.
4. **Measured per attack**, in wall-clock seconds after its decisive event (a grant family's
   grant, the first ``train`` event, else the attack's first event): when its incident was
   opened or updated (instrumented at ``record_alert``), when the first page naming the
   incident reached the receiver, when the incident's first control was in force
   (``control_log``). An attack folded into an incident an earlier draw opened counts for
   the incident but not for page and containment (those belong to the earlier draw).

Prints a table and saves ``benchmarks/results/latency.json``: at its top level
``{"families": {NAME: {"certain", "incident_p95_s", "page_p95_s", "containment_p95_s"}}}``
at 10k events/s, with every rate's figures beside it.

Usage: ``python benchmarks/latency.py [--rates 1000,10000,50000] [--minutes 11] [--principals 300]``
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path, where `features.py` would
# shadow the `features` package: read _common from it, then drop it.
from _common import code_version, peak_mb, say  # noqa: E402  (benchmarks/ is the script's folder)

sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "tests"))  # the loopback HTTP receiver the tests use

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "latency.json"
CERTAIN = ("permission_fanout", "external_grant", "unsanitised_training")
NOT_MEASURED = {"low_and_slow": "its attack spans days of small reads; latency in minutes does not apply"}
GOALS = {
    "certain": "event -> page p95 <= 60 s and event -> containment p95 <= 90 s at 10k events/s",
    "statistical": "event -> incident p95 <= step + lateness + 30 s at 10k events/s",
}


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


# ---------------------------------------------------------------------------- the store


def prepare(folder: Path, principals: int, days: int, seed: int) -> dict:
    """The organisation and its detected history, in an embedded store at ``folder``."""
    from blastwall.config import Settings
    from blastwall.schema import init_schema
    from blastwall.simulation import OrgSpec, write_to_store
    from blastwall.simulation.live import demo_start
    from blastwall.store import close_store, open_store
    from detector.replay import align, run_batches

    started = time.perf_counter()
    client = open_store(f"chdb://{folder}")
    try:
        init_schema(client)
        spec = OrgSpec(principals=principals, days=days, seed=seed, start=demo_start(datetime.now(UTC), days))
        write_to_store(client, spec)
        live = Settings().live
        config, _ = Settings().detect_config()
        # Up to a step past now (the rates' runs start later; an empty gap is quick to catch up).
        first = client.query("SELECT min(event_time) FROM access_log").result_rows[0][0].replace(tzinfo=UTC)
        summary = run_batches(client, align(datetime.now(UTC) - live.lateness, live.step), live.step,
                              since=align(first, live.step), config=config)
        events = int(client.query("SELECT count() FROM access_log").result_rows[0][0])
    finally:
        close_store(client)
    return {"principals": principals, "days": days, "seed": seed, "history_events": events,
            "history_steps": summary.steps, "prepare_seconds": round(time.perf_counter() - started, 1)}


# ---------------------------------------------------------------------------- one rate


@dataclass
class Attack:
    family: str
    variant: int
    certain: bool
    traffic: object
    decisive: datetime
    principals: tuple[str, ...]
    resources: tuple[str, ...]
    detectors: tuple[str, ...]
    #: What its incident must name: the granted resource or the training run (certain
    #: families), else nothing more than the actors and data (statistical ones).
    targets: tuple[str, ...] = ()


@dataclass
class Recorded:
    """When (wall clock) ``record_alert`` applied an alert, and to which incident."""

    at: float
    alert: Any  # detector.incidents.Alert
    incident_id: int


@dataclass
class Load:
    writes: int = 0
    events: int = 0
    write_seconds: list[float] = field(default_factory=list)
    lag_seconds: list[float] = field(default_factory=list)
    fast_seconds: list[float] = field(default_factory=list)
    detect_runs: list[tuple[int, float]] = field(default_factory=list)


def _filler_table(schema: pa.Schema, names: list[str], resources: list[str], count: int, lo_ms: int, hi_ms: int,
                  serial: int, rng: np.random.Generator) -> pa.Table:
    """``count`` reads of internal data by the filler identities, at times within ``(lo_ms, hi_ms]``."""
    who = rng.integers(0, len(names), count)
    # Each identity keeps to its own few resources (a steady machine habit, not a sweep).
    what = (who * 7 + rng.integers(0, 4, count)) % len(resources)
    times = np.sort(rng.integers(lo_ms + 1, hi_ms + 1, count)).astype("datetime64[ms]")
    columns = {
        "event_time": pa.array(times, pa.timestamp("ms", tz="UTC")),
        "event_id": pa.array([f"bench-{serial}-{i}" for i in range(count)], pa.string()),
        "principal": pa.array(np.array(names, dtype=object)[who], pa.string()),
        "principal_type": pa.array(["service"] * count, pa.string()),
        "action": pa.array(["read"] * count, pa.string()),
        "resource": pa.array(np.array(resources, dtype=object)[what], pa.string()),
        "related": pa.array([[]] * count, pa.list_(pa.string())),
        "grantee": pa.array([""] * count, pa.string()),
        "bytes": pa.array(rng.integers(1_000, 200_000, count), pa.uint64()),
        "rows": pa.array(rng.integers(1, 2_000, count), pa.uint64()),
        "via": pa.array([""] * count, pa.string()),
        "status": pa.array(["ok"] * count, pa.string()),
        "source_ip": pa.array(["10.9.0.1"] * count, pa.string()),
        "attributes": pa.array([[]] * count, pa.map_(pa.string(), pa.string())),
    }
    table = pa.table({name: columns[name] for name in schema.names if name in columns})
    return table.cast(pa.schema([schema.field(name) for name in table.column_names]))


def _in_force(client, target: str) -> bool:
    """Whether the log says the grant ``"RESOURCE -> GRANTEE"`` is in force (granting it again exposes nobody)."""
    resource, grantee = target.rsplit(" -> ", 1)
    rows = client.query("SELECT argMax(action, event_time) FROM access_log WHERE resource = {r:String}"
                        " AND grantee = {g:String} AND action IN ('grant', 'revoke') AND status = 'ok'",
                        parameters={"r": resource, "g": grantee}).result_rows
    return bool(rows) and rows[0][0] == "grant"


def _attacks(client, spec, start: datetime, minutes: float, cadence) -> list[Attack]:
    """The attack-only writers: certain families every 100 s, statistical ones early in the run."""
    from blastwall.simulation.attacks import SCENARIOS, detectors_of_scenario
    from blastwall.simulation.live import LiveTraffic

    attacks: list[Attack] = []
    families = [f for f in SCENARIOS if f not in NOT_MEASURED]
    for index, family in enumerate(families):
        certain = family in CERTAIN
        # Certain ones need seconds (up to a minute before the end); statistical ones a step, its
        # lateness and a detect run (they start in the first minutes).
        slowest = (cadence.step + cadence.lateness + cadence.detect_every).total_seconds() + 60
        # 100 s apart: a family's later instances rotate over a few datasets, and one granted
        # again within its step would be that step's same alert.
        offsets = (list(range(20 + index, int(minutes * 60) - 60, 100)) if certain
                   else [o for o in (45 + index, 95 + index, 145 + index) if o + slowest < minutes * 60])
        for variant, offset in enumerate(offsets, start=1):
            traffic = LiveTraffic(client, spec, start, attack_after=timedelta(seconds=offset), attack=family,
                                  benign=False, attack_variant=variant)
            plan = traffic.attack_plan
            decisive = plan.start
            action = {"permission_fanout": "grant", "external_grant": "grant", "unsanitised_training": "train"}
            if family in action:
                table = traffic.planned(plan.start - timedelta(milliseconds=1), plan.end)
                rows = table.filter(pc.equal(table.column("action"), action[family]))
                if rows.num_rows:
                    decisive = rows.column("event_time")[0].as_py()
            if certain and decisive > start + timedelta(minutes=minutes) - timedelta(seconds=45):
                continue  # its decisive event would come too late in the run to be checked
            if any(_in_force(client, target) for target in plan.grants):
                continue  # the history already granted it (a seeded attack): nobody newly exposed
            targets = ({t.rsplit(" -> ", 1)[0] for t in plan.grants} if plan.grants
                       else {r for r in plan.resources if r.startswith("run.")} if family == "unsanitised_training"
                       else set())
            attacks.append(Attack(family, variant, certain, traffic, decisive, plan.principals, plan.resources,
                                  detectors_of_scenario(family), tuple(sorted(targets))))
    return attacks


def run_rate(folder: Path, rate: int, minutes: float, filler: int) -> dict:
    """The live loop at ``rate`` events/s for ``minutes``; the latencies of every attack."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from receiver import Receiver

    import detector.detect as detect_module
    import detector.fastpath as fastpath_module
    from blastwall.config import Settings
    from blastwall.jobs import DetectionJobs, schedule
    from blastwall.simulation.live import LiveTraffic, demo_spec
    from blastwall.store import close_store, open_store
    from detector.families import known_detectors
    from detector.incidents import IncidentError, record_alert, transition
    from detector.rules import load_rules
    from features.contract import arrow_schema
    from playbooks.engine import Responder
    from playbooks.model import load_library
    from playbooks.paging import Pager, RoutingConfig

    recorded: list[Recorded] = []

    def timed_record_alert(client, alert, *args, **kwargs):  # noqa: ANN001, ANN202 - instrumentation only
        outcome = record_alert(client, alert, *args, **kwargs)
        if outcome.outcome in ("opened", "updated") or (outcome.outcome == "duplicate" and alert.provisional):
            recorded.append(Recorded(time.time(), alert, outcome.incident_id))
        return outcome

    detect_module.record_alert = timed_record_alert  # the real function, timed
    fastpath_module.record_alert = timed_record_alert

    client = open_store(f"chdb://{folder}")
    settings = Settings()
    live = settings.live
    load = Load()
    with Receiver() as receiver:
        owners = [row[0] for row in client.query("SELECT DISTINCT owner FROM resources WHERE owner != ''").result_rows]
        routing = RoutingConfig.model_validate({
            "channels": {"oncall": f"json://{receiver.base}/page", "owners": f"json://{receiver.base}/owners"},
            "routes": {"SEV1": {"channels": ["oncall"]}, "SEV2": {"channels": ["oncall"]},
                       "SEV3": {"channels": ["oncall"]}},
            "contacts": {owner: "owners" for owner in owners}, "retry_wait_seconds": 0.2})
        rules = tuple(load_rules().rules.values())
        from detector.detect import DetectConfig

        jobs = DetectionJobs(client, live.live_settings(config=DetectConfig(rules=rules),
                                                        respond_max_age=settings.respond_max_age),
                             responder=Responder(client, load_library(), Pager(client, routing), retry_wait=0.2))
        original_detect = jobs.detect

        def timed_detect(now=None):  # noqa: ANN001, ANN202
            began = time.perf_counter()
            summary = original_detect(now)
            load.detect_runs.append((summary.steps if summary else 0, round(time.perf_counter() - began, 2)))
            return summary

        jobs.detect = timed_detect

        # The filler identities: catalogued, and their alerts suppressed (known machine traffic).
        names = [f"bench-svc-{i:03d}" for i in range(filler)]
        now = datetime.now(UTC)
        client.insert("principals", [[n, "service", "platform", "", "", now, now] for n in names],
                      column_names=["principal", "principal_type", "team", "title", "manager", "created_at",
                                    "updated_at"])
        detectors = sorted(set(known_detectors()) | {r.id for r in rules})
        client.insert("suppressions", [[d, n, now - timedelta(days=1), now + timedelta(days=1),
                                        "benchmark filler: known machine traffic", 0, "benchmark"]
                                       for d in detectors for n in names],
                      column_names=["detector", "entity_key", "since", "until", "reason", "incident_id",
                                    "created_by"])
        internal = [row[0] for row in client.query(
            "SELECT resource FROM resources FINAL WHERE sensitivity IN ('public', 'internal') AND kind = 'dataset'"
            " ORDER BY resource").result_rows]

        spec = demo_spec(client)
        start = datetime.now(UTC)
        organisation = LiveTraffic(client, spec, start, attack=None)
        attacks = _attacks(client, spec, start, minutes, live)
        schema = arrow_schema("access_log")
        say(f"  {rate:,} events/s: {len(attacks)} attacks over {minutes} min, {filler} filler identities")

        rng = np.random.default_rng(rate)
        stop = threading.Event()
        last_ms = int(start.timestamp() * 1000)
        serial = 0

        logged_revokes: set[tuple[int, str]] = set()

        def resolve_contained() -> None:
            """The analyst closes incidents a minute after they opened (their page and containment are
            in by then), so a later draw of a family opens an incident of its own."""
            with jobs.lock:
                # Your IAM system carried out each revoke blastwall asked for: it logs it, as it would.
                revoked = [(incident_id, target, at) for incident_id, target, at in client.query(
                    "SELECT incident_id, target, min(at) FROM control_log WHERE kind = 'grant' AND in_force = 1"
                    " GROUP BY incident_id, target").result_rows if (incident_id, target) not in logged_revokes]
                if revoked:
                    client.insert("access_log", [
                        [at, f"bench-revoke-{incident_id}", "iam-system", "service", "revoke",
                         target.rsplit(" -> ", 1)[0], target.rsplit(" -> ", 1)[1], "ok"]
                        for incident_id, target, at in revoked],
                        column_names=["event_time", "event_id", "principal", "principal_type", "action",
                                      "resource", "grantee", "status"])
                    logged_revokes.update((incident_id, target) for incident_id, target, _ in revoked)
                for (incident_id,) in client.query(
                        "SELECT id FROM incidents FINAL WHERE status NOT IN ('resolved', 'false_positive')"
                        " AND created_at < now64(3) - INTERVAL 60 SECOND AND created_at > {t:DateTime64(3)}",
                        parameters={"t": start}).result_rows:
                    try:
                        transition(client, int(incident_id), "resolve", "benchmark-analyst", reason="contained")
                    except IncidentError:
                        pass

        def write() -> None:
            nonlocal last_ms, serial
            while not stop.is_set():
                began = time.perf_counter()
                with jobs.lock:
                    moment = datetime.now(UTC)
                    hi_ms = int(moment.timestamp() * 1000)
                    written = organisation.tick(moment).written
                    for attack in attacks:  # only those under way (each tick reads the controls in force)
                        plan = attack.traffic.attack_plan
                        if plan.start <= moment and attack.traffic.last_tick <= plan.end:
                            written += attack.traffic.tick(moment).written
                    count = int(rate * (hi_ms - last_ms) / 1000)
                    if count:
                        serial += 1
                        client.insert_arrow("access_log", _filler_table(schema, names, internal, count, last_ms,
                                                                        hi_ms, serial, rng))
                    load.events += written + count
                    load.writes += 1
                    load.lag_seconds.append(round(time.time() - hi_ms / 1000, 3))
                    last_ms = hi_ms
                load.write_seconds.append(round(time.perf_counter() - began, 3))
                fast = time.perf_counter()
                jobs.tick()  # each write is an ingest batch: the fast path checks it at once
                load.fast_seconds.append(round(time.perf_counter() - fast, 3))
                if load.writes % 10 == 0:
                    resolve_contained()
                stop.wait(max(0.0, 1.0 - (time.perf_counter() - began)))

        scheduler = schedule(BackgroundScheduler(timezone="UTC", daemon=True), jobs, detect_every=live.detect_every)
        writer = threading.Thread(target=write, daemon=True)
        scheduler.start()
        writer.start()
        deadline = time.time() + minutes * 60
        while time.time() < deadline:
            time.sleep(5)
            say(f"    {int(deadline - time.time())} s left: {load.events:,} events written, "
                f"{len(recorded)} alerts recorded, {len(receiver.at('/page'))} pages")
        stop.set()
        writer.join(timeout=60)
        scheduler.shutdown(wait=True)
        pages = [(request.at, request.json.get("title", "")) for request in receiver.at("/page")]

    with jobs.lock:
        refs = dict(client.query("SELECT ref, id FROM incidents FINAL").result_rows)
        controls = {int(i): t.replace(tzinfo=UTC).timestamp() for i, t in client.query(
            "SELECT incident_id, min(at) FROM control_log WHERE in_force = 1 GROUP BY incident_id").result_rows}
        incidents = int(client.query("SELECT count() FROM incidents FINAL").result_rows[0][0])
    close_store(client)
    first_page: dict[int, float] = {}
    for at, title in sorted(pages):
        match = re.search(r"INC-(\d+)", title)
        if match and int(match.group(1)) in refs:
            first_page.setdefault(int(refs[int(match.group(1))]), at)
    opened_at: dict[int, float] = {}
    for record in recorded:
        opened_at.setdefault(record.incident_id, record.at)

    samples: list[dict] = []
    for attack in attacks:
        event = attack.decisive.timestamp()
        found = [r for r in recorded if r.at >= event and r.alert.detector in attack.detectors
                 and (set(r.alert.resources) >= set(attack.targets) if attack.targets
                      else set(r.alert.principals) & set(attack.principals)
                      or set(r.alert.resources) & set(attack.resources))]
        sample = {"family": attack.family, "variant": attack.variant, "certain": attack.certain,
                  "event_time": attack.decisive.isoformat()}
        if found:
            hit = min(found, key=lambda r: r.at)
            own = opened_at[hit.incident_id] >= event  # opened by this draw, not an earlier one
            sample["incident_s"] = round(hit.at - event, 1)
            sample["merged_into_earlier"] = not own
            if own and hit.incident_id in first_page:
                sample["page_s"] = round(first_page[hit.incident_id] - event, 1)
            if own and hit.incident_id in controls:
                sample["containment_s"] = round(controls[hit.incident_id] - event, 1)
        samples.append(sample)

    families: dict[str, dict] = {}
    for family in sorted({a.family for a in attacks}):
        mine = [s for s in samples if s["family"] == family]
        figures: dict[str, object] = {"certain": family in CERTAIN, "attacks": len(mine),
                                      "detected": sum("incident_s" in s for s in mine)}
        for key in ("incident", "page", "containment"):
            values = [s[f"{key}_s"] for s in mine if f"{key}_s" in s]
            figures[f"{key}_p50_s"] = _percentile(values, 50)
            figures[f"{key}_p95_s"] = _percentile(values, 95)
            figures[f"{key}_samples"] = len(values)
        families[family] = figures
    for family, why in NOT_MEASURED.items():
        families[family] = {"certain": False, "incident_p95_s": None, "page_p95_s": None, "containment_p95_s": None,
                            "not_measured": why}
    return {
        "rate_events_per_second": rate, "minutes": minutes, "filler_identities": filler,
        "events_written": load.events, "achieved_events_per_second": round(load.events / (minutes * 60)),
        "write_seconds_p50_p95": [_percentile(load.write_seconds, 50), _percentile(load.write_seconds, 95)],
        "write_lag_seconds_p95": _percentile(load.lag_seconds, 95),
        "fast_path_seconds_p50_p95": [_percentile(load.fast_seconds, 50), _percentile(load.fast_seconds, 95)],
        "detect_runs": [{"steps": s, "seconds": t} for s, t in load.detect_runs if s],
        "incidents": incidents, "pages": len(pages), "peak_rss_mb": round(peak_mb()),
        "families": families, "samples": samples,
    }


# ---------------------------------------------------------------------------- the run


def _table(results: list[dict]) -> str:
    lines = [f"{'family':<22} {'certain':<8} " + " ".join(f"{r['rate_events_per_second']:>6,}/s: inc p50/p95"
                                                         f"  page p95  cont p95" for r in results)]
    families = sorted({f for r in results for f in r["families"]})
    for family in families:
        cells = []
        for r in results:
            f = r["families"].get(family, {})
            def fmt(v):  # noqa: ANN001, ANN202
                return "-" if v is None else f"{v:.0f}"
            cells.append(f"{fmt(f.get('incident_p50_s')):>14}/{fmt(f.get('incident_p95_s')):<6} "
                         f"{fmt(f.get('page_p95_s')):>8} {fmt(f.get('containment_p95_s')):>9}")
        certain = results[0]["families"].get(family, {}).get("certain")
        lines.append(f"{family:<22} {'yes' if certain else 'no':<8} " + " ".join(cells))
    lines.append("peak RSS (MB): " + ", ".join(f"{r['rate_events_per_second']:,}/s {r['peak_rss_mb']:,}"
                                               for r in results))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,10000,50000")
    parser.add_argument("--minutes", type=float, default=11.0)
    parser.add_argument("--principals", type=int, default=300)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--filler", type=int, default=200, help="Background service identities.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:  # one rate, in its own process, on a store of its own
        organisation = prepare(args.store, args.principals, args.days, args.seed)
        say(f"  {organisation}")
        result = run_rate(args.store, args.worker, args.minutes, args.filler)
        print(json.dumps({**result, "organisation": organisation}, default=str))
        return

    from blastwall.config import Settings

    rates = [int(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="blastwall-latency-") as scratch:
        results = []
        for rate in rates:
            say(f"{rate:,} events/s: preparing {args.principals} principals x {args.days} days, detecting their "
                f"history, then the live loop for {args.minutes} min ...")
            done = subprocess.run([sys.executable, __file__, "--worker", str(rate),
                                   "--store", str(Path(scratch) / f"rate-{rate}"), "--minutes", str(args.minutes),
                                   "--filler", str(args.filler), "--principals", str(args.principals),
                                   "--days", str(args.days), "--seed", str(args.seed)],
                                  stdout=subprocess.PIPE, text=True, check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            shutil.rmtree(Path(scratch) / f"rate-{rate}", ignore_errors=True)
    organisation = results[0].pop("organisation")
    for result in results[1:]:
        result.pop("organisation", None)
    live = Settings().live
    headline = next((r for r in results if r["rate_events_per_second"] == 10_000), results[-1])
    report = {
        "benchmark": "live latency: event -> incident, -> page received, -> containment in effect",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": _cpus()},
        "code": code_version(),
        "goals": GOALS,
        "cadence": {"step_s": live.step.total_seconds(), "lateness_s": live.lateness.total_seconds(),
                    "tick_s": live.tick.total_seconds(), "detect_every_s": live.detect_every.total_seconds(),
                    "statistical_goal_s": (live.step + live.lateness).total_seconds() + 30},
        "organisation": organisation,
        "headline_rate_events_per_second": headline["rate_events_per_second"],
        "families": {name: {k: figures.get(k) for k in ("certain", "incident_p95_s", "page_p95_s",
                                                         "containment_p95_s")}
                     | {k: v for k, v in figures.items() if k not in ("certain", "incident_p95_s", "page_p95_s",
                                                                       "containment_p95_s")}
                     for name, figures in headline["families"].items()},
        "rates": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(_table(results))
    print(f"saved {args.out}")


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
