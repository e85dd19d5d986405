"""``blastwall eval``: replay labelled organisations and score the detector against the truth.

For each seed: generate the labelled organisation (:mod:`blastwall.simulation`) into a
fresh embedded store of its own, replay it step by step from its first day
(:func:`detector.replay.run_batches`, the batch path), then match the incidents with the injected attacks.

Matching
    An incident *matches* an attack when its evidence overlaps the attack in event time
    (``first_seen <= attack end + slack`` and ``last_seen >= attack start``), it was
    detected after the attack began, and it names
    one of the attack's actors, or — for a resource, grant or training-run incident —
    one of its resources.

Measured over the **detection period** (after the generator's benign warm-up, which
is also the detector's learning period):

- per attack: caught or not, the worst severity of its matching incidents, the
  detectors that fired, time to detect (``detected_at`` of its first matching incident
  minus the attack's first event time);
- precision: incidents matching an attack / all incidents opened;
- false pages: SEV1/SEV2 incidents matching no attack, per 1,000 principal-days;
- incidents per day.

The goals (issue 4) are checked on every seed: each family caught at SEV2 or worse
(the low-and-slow insider at SEV3), at most 1 false page per 1,000 principal-days,
median time to detect at most 15 minutes.

Curves (issue 16, ``eval --styles N``)
    :func:`evaluate_curves` replays, for every company style, one organisation per attack
    intensity and one benign-only organisation (:class:`CurveSettings`), each through
    :func:`evaluate_org` like a seed, and :mod:`blastwall.curves` turns the runs into
    detection curves, false pages per style and the goals of issue 16.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from blastwall.curves import MAX_MEDIAN_TTD_MINUTES, summarise_curves, ttd_goal_minutes
from blastwall.schema import init_schema
from blastwall.simulation import AttackLabel, OrgSpec, build_organisation, write_to_store
from blastwall.simulation.formats import write_log_files
from blastwall.store import close_store, open_store
from detector.detect import DetectConfig
from detector.incidents import list_incidents
from detector.replay import run_batches
from detector.rules import load_rules
from detector.severity import SEVERITIES, severity_rank
from features.ingest import ingest_file

#: The worst severity each family must reach to count as caught (low-and-slow is quieter by design).
GOAL_SEVERITY = {"low_and_slow": "SEV3"}
DEFAULT_GOAL_SEVERITY = "SEV2"
MAX_FALSE_PAGES_PER_1000 = 1.0
MATCH_SLACK = timedelta(hours=1)
#: The ADBench comparison is measured by ``benchmarks/adbench.py`` in a source checkout; an
#: installed package has no benchmarks, and says so instead of reading beside site-packages.
_CHECKOUT = Path(__file__).resolve().parent.parent
ADBENCH_SCRIPT = _CHECKOUT / "benchmarks" / "adbench.py"
ADBENCH_RESULTS = _CHECKOUT / "benchmarks" / "results" / "adbench.json"


def in_checkout() -> bool:
    """Whether this is blastwall's source tree (with its benchmarks), not an installed package."""
    return (_CHECKOUT / "pyproject.toml").is_file() and ADBENCH_SCRIPT.is_file()


@dataclass(frozen=True)
class EvalSettings:
    """What to replay.

    Attributes
    ----------
    seeds : tuple of int
    principals, days : int
        Organisation size per seed.
    step : timedelta
        Replay step.
    jobs : int
        Seeds replayed at once (each in its own process and store).
    log_format : str
        ``""``: the organisation goes into the store natively. A real log format
        (``cloudtrail``, ``ocsf``, ``gcp-audit``…): its access log is written in that format
        and ingested through its source, so the report measures detection through the adapter.
    """

    seeds: tuple[int, ...] = (1, 2, 3)
    principals: int = 300
    days: int = 14
    step: timedelta = timedelta(minutes=15)
    jobs: int = 1
    log_format: str = ""


@dataclass(frozen=True)
class CurveSettings:
    """What a curve run (``eval --styles``) replays.

    Attributes
    ----------
    styles : tuple of int
        Company styles (``OrgSpec.style``); each organisation's seed is its style.
    intensities : tuple of float
        Attack intensities in (0, 1]; each style is replayed once per intensity.
    principals, days : int
        Organisation size of every run.
    step : timedelta
        Replay step.
    jobs : int
        Replays at once (each in its own process and store).
    log_format : str
        As :attr:`EvalSettings.log_format`.
    benign : bool
        Also replay each style without attacks, to measure its false pages.

    Notes
    -----
    The defaults (150 principals x 9 days, 15-minute steps: a 4-day warm-up, then attacks
    on days 4-8, where the low-and-slow insider acts on three working days) replay in
    about 35-40 s each on one core; the time goes into the 864 steps more than into the
    events (40 principals take two thirds as long). Two jobs on two cores finish a replay
    about every 25-30 s, so 20 styles x 3 intensities + 20 benign organisations (80
    replays) take about 35-40 minutes.
    """

    styles: tuple[int, ...] = tuple(range(20))
    intensities: tuple[float, ...] = (1.0, 0.5, 0.25)
    principals: int = 150
    days: int = 9
    step: timedelta = timedelta(minutes=15)
    jobs: int = 2
    log_format: str = ""
    benign: bool = True

    def specs(self) -> list[OrgSpec]:
        """Every organisation to replay: per style, each intensity, then the benign-only one."""
        specs = []
        for style in self.styles:
            org = OrgSpec(principals=self.principals, days=self.days, seed=style, style=style)
            specs += [replace(org, intensity=intensity) for intensity in self.intensities]
            if self.benign:
                specs.append(replace(org, attacks=False))
        return specs

    def replay_settings(self) -> EvalSettings:
        """The replay half of these settings, as :func:`evaluate_org` takes it."""
        return EvalSettings(seeds=(), principals=self.principals, days=self.days, step=self.step, jobs=self.jobs,
                            log_format=self.log_format)

    def describe(self) -> dict[str, Any]:
        """These settings as the report shows them."""
        return {"styles": list(self.styles), "intensities": list(self.intensities), "principals": self.principals,
                "days": self.days, "step_minutes": self.step.total_seconds() / 60, "jobs": self.jobs,
                "format": self.log_format or "contract", "benign": self.benign}


def _matches(incident: dict[str, Any], label: AttackLabel) -> bool:
    if incident["first_seen"] > label.end + MATCH_SLACK or incident["last_seen"] < label.start:
        return False
    if incident["detected_at"] < label.start:
        return False  # opened before the attack began: about something else
    if set(incident["principals"]) & set(label.principals):
        return True
    return incident["entity"] in ("resource", "grant", "training_run") and bool(
        set(incident["resources"]) & set(label.resources))


def _points(incident: dict[str, Any]) -> dict[str, int]:
    return next((e["severity_points"] for e in incident["explanation"] if "severity_points" in e), {})


def score_incidents(incidents: list[dict[str, Any]], labels: list[AttackLabel], spec: OrgSpec) -> dict[str, Any]:
    """Compare one replay's incidents with its labels (see the module docstring)."""
    period_start = spec.start + timedelta(days=spec.warmup_days)
    period_end = spec.start + timedelta(days=spec.days)
    in_period = [i for i in incidents if i["detected_at"] >= period_start]
    matched_ids: set[int] = set()
    attacks = []
    for label in labels:
        found = [i for i in incidents if _matches(i, label)]
        matched_ids.update(i["id"] for i in found)
        goal = GOAL_SEVERITY.get(label.family, DEFAULT_GOAL_SEVERITY)
        worst = min((i["severity"] for i in found), key=severity_rank, default=None)
        at_goal = [i for i in found if severity_rank(i["severity"]) <= severity_rank(goal)]
        ttd = (min(i["detected_at"] for i in at_goal) - label.start).total_seconds() / 60 if at_goal else None
        attacks.append({
            "scenario": label.scenario_id, "family": label.family, "start": label.start,
            "caught": bool(found), "severity": worst, "goal": goal, "at_goal": bool(at_goal),
            "detectors": sorted({i["detector"] for i in found}), "ttd_minutes": ttd,
            "ttd_goal_minutes": ttd_goal_minutes(label, spec.start),
        })
    days = (period_end - period_start).total_seconds() / 86400
    false_pages = [i for i in in_period if i["id"] not in matched_ids and i["severity"] in ("SEV1", "SEV2")]
    principal_days = spec.principals * days
    return {
        "seed": spec.seed, "style": spec.style, "intensity": spec.intensity if spec.attacks else None,
        "benign": not spec.attacks, "principals": spec.principals, "days": spec.days, "detection_days": days,
        "attacks": attacks,
        "incidents": len(in_period),
        "incidents_by_severity": {s: sum(i["severity"] == s for i in in_period) for s in SEVERITIES},
        "true_incidents": sum(i["id"] in matched_ids for i in in_period),
        "precision": sum(i["id"] in matched_ids for i in in_period) / len(in_period) if in_period else 1.0,
        "false_pages": len(false_pages),
        "false_pages_per_1000_principal_days": 1000 * len(false_pages) / principal_days,
        "false_page_titles": [f"{i['severity']} {i['detector']}: {i['title']} {_points(i)}" for i in false_pages][:20],
        "incidents_per_day": len(in_period) / days if days else 0.0,
        "pipeline_errors": sum(i["detector"] == "pipeline_error" for i in incidents),
    }


def evaluate_seed(seed: int, settings: EvalSettings) -> dict[str, Any]:
    """Generate, replay and score one seed's (classic) organisation in a store of its own."""
    return evaluate_org(OrgSpec(principals=settings.principals, days=settings.days, seed=seed), settings)


def evaluate_org(spec: OrgSpec, settings: EvalSettings) -> dict[str, Any]:
    """Generate, replay and score one organisation in a store of its own.

    Parameters
    ----------
    spec : OrgSpec
        The organisation (its size, seed, style, intensity, with or without attacks).
    settings : EvalSettings
        The replay step and the log format; its seeds and size are not read.

    Returns
    -------
    dict
        :func:`score_incidents`' result with ``replay`` (steps, events, seconds).
    """
    org = build_organisation(spec)
    labels = org.labels
    with tempfile.TemporaryDirectory(prefix="blastwall-eval-") as directory:
        client = open_store(f"chdb://{directory}/store", holder="blastwall eval")
        try:
            init_schema(client)
            if settings.log_format:
                labels = _load_through_source(client, org, settings.log_format, Path(directory) / "files")
            else:
                write_to_store(client, org)
            started = time.perf_counter()
            # The built-in families and the built-in rules, as `blastwall detect` runs them.
            config = replace(DetectConfig(), rules=tuple(load_rules().rules.values()))
            summary = run_batches(client, spec.start + timedelta(days=spec.days), settings.step, since=spec.start,
                                  config=config)
            replay_seconds = time.perf_counter() - started
            incidents = list_incidents(client, limit=1_000_000)
        finally:
            close_store(client)
    result = score_incidents(incidents, labels, spec)
    result["replay"] = {"steps": summary.steps, "events": summary.events, "seconds": round(replay_seconds, 1),
                        "events_per_second": round(summary.events_per_second),
                        "ms_per_step": round(summary.ms_per_step, 1)}
    return result


def _load_through_source(client: Any, org: Any, log_format: str, folder: Path) -> list[AttackLabel]:
    """Write ``org`` in ``log_format`` and ingest it as a user would; the labels under the format's names.

    The catalogue goes in as contract files (the formats carry no catalogue), the access
    log through the source. A row the source rejects is an error of the adapter: it fails
    the evaluation rather than quietly shrinking the attack it belonged to.
    """
    counts = write_log_files(org, folder, log_format)
    for table in ("resources", "memberships", "principals"):
        ingest_file(client, folder / f"{table}.jsonl", table)
    summary = ingest_file(client, folder / f"access_log.{log_format}.jsonl", source=log_format)
    if summary.rejected or summary.loaded != counts["access_log"]:
        raise RuntimeError(f"{log_format}: {counts['access_log']:,} records written, {summary.loaded:,} loaded, "
                           f"{summary.rejected:,} rejected ({summary.reasons})")
    labels = json.loads((folder / "labels.json").read_text())
    return [AttackLabel.from_dict(label) for label in labels]


def evaluate(settings: EvalSettings) -> dict[str, Any]:
    """Every seed, then the summary across seeds and the goals."""
    if settings.jobs > 1 and len(settings.seeds) > 1:
        with ProcessPoolExecutor(max_workers=settings.jobs, mp_context=get_context("spawn")) as pool:
            seeds = list(pool.map(evaluate_seed, settings.seeds, [settings] * len(settings.seeds)))
    else:
        seeds = [evaluate_seed(seed, settings) for seed in settings.seeds]
    return summarise(seeds, settings)


def evaluate_curves(settings: CurveSettings,
                    progress: Callable[[int, int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Replay every organisation of a curve run and summarise it (:func:`blastwall.curves.summarise_curves`).

    Parameters
    ----------
    settings : CurveSettings
        What to replay.
    progress : callable, optional
        Called as ``progress(done, total, run)`` after each replay, in completion order.

    Returns
    -------
    dict
        ``settings``, ``curves``, ``false_pages_per_style``, ``false_pages_attacked_per_intensity``,
        ``goals``, ``runs`` (in the order of :meth:`CurveSettings.specs`) and ``timing``.
        A replay that fails stops the run (the replays not yet started are cancelled).
    """
    specs = settings.specs()
    replay = settings.replay_settings()
    runs: list[dict[str, Any] | None] = [None] * len(specs)
    started = time.perf_counter()
    if settings.jobs > 1 and len(specs) > 1:
        with ProcessPoolExecutor(max_workers=min(settings.jobs, len(specs)), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(evaluate_org, spec, replay): index for index, spec in enumerate(specs)}
            try:
                for done, future in enumerate(as_completed(futures), 1):
                    runs[futures[future]] = run = future.result()
                    if progress:
                        progress(done, len(specs), run)
            except BaseException:  # a replay failed (or Ctrl-C): do not start the rest
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    else:
        for index, spec in enumerate(specs):
            runs[index] = run = evaluate_org(spec, replay)
            if progress:
                progress(index + 1, len(specs), run)
    wall = round(time.perf_counter() - started, 1)
    return summarise_curves([run for run in runs if run is not None], settings.describe(), {"wall_seconds": wall})


def summarise(seeds: list[dict[str, Any]], settings: EvalSettings) -> dict[str, Any]:
    """Per family across seeds, pooled rates, and whether each goal holds."""
    families: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        for attack in seed["attacks"]:
            entry = families.setdefault(attack["family"], {
                "seeds": 0, "caught": 0, "at_goal": 0, "goal": attack["goal"], "severities": [], "ttd_minutes": [],
                "detectors": set()})
            entry["seeds"] += 1
            entry["caught"] += attack["caught"]
            entry["at_goal"] += attack["at_goal"]
            entry["severities"].append(attack["severity"] or "-")
            if attack["ttd_minutes"] is not None:
                entry["ttd_minutes"].append(attack["ttd_minutes"])
            entry["detectors"].update(attack["detectors"])
    for entry in families.values():
        entry["detectors"] = sorted(entry["detectors"])
        entry["median_ttd_minutes"] = statistics.median(entry["ttd_minutes"]) if entry["ttd_minutes"] else None
    ttds = [a["ttd_minutes"] for s in seeds for a in s["attacks"] if a["ttd_minutes"] is not None]
    principal_days = sum(s["principals"] * s["detection_days"] for s in seeds)
    incidents = sum(s["incidents"] for s in seeds)
    false_pages = sum(s["false_pages"] for s in seeds)
    summary = {
        "settings": {"seeds": list(settings.seeds), "principals": settings.principals, "days": settings.days,
                     "step_minutes": settings.step.total_seconds() / 60, "format": settings.log_format or "contract"},
        "families": families,
        "precision": sum(s["true_incidents"] for s in seeds) / incidents if incidents else 1.0,
        "false_pages": false_pages,
        "false_pages_per_1000_principal_days": 1000 * false_pages / principal_days if principal_days else 0.0,
        "median_ttd_minutes": statistics.median(ttds) if ttds else None,
        "incidents_per_day": incidents / sum(s["detection_days"] for s in seeds) if seeds else 0.0,
        "seeds": seeds,
    }
    summary["goals"] = {
        "every_family_at_goal_on_every_seed": all(e["at_goal"] == e["seeds"] for e in families.values()),
        "false_pages_per_1000_principal_days": summary["false_pages_per_1000_principal_days"]
        <= MAX_FALSE_PAGES_PER_1000,
        "median_ttd_minutes": summary["median_ttd_minutes"] is not None
        and summary["median_ttd_minutes"] <= MAX_MEDIAN_TTD_MINUTES,
    }
    summary["adbench"] = adbench_summary() if in_checkout() else None
    return summary


def adbench_summary(path: Path = ADBENCH_RESULTS) -> dict[str, Any] | None:
    """The ensemble beside each single PyOD detector on ADBench, from ``benchmarks/adbench.py``'s last run."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return {"created": data["created"], "means": data["means"], "best_single": data["best_single"],
            "goal_holds": data["goal_holds"], "margin": data["margin"],
            "per_dataset": {row["dataset"]: row["auc"] for row in data["datasets"]}}


def format_report(report: dict[str, Any]) -> str:
    """The evaluation as text for a terminal."""
    s = report["settings"]
    lines = [f"blastwall eval: {len(s['seeds'])} seeds {s['seeds']}, {s['principals']} principals x {s['days']} days, "
             f"{s['step_minutes']:g}-minute steps, through {s.get('format', 'contract')}", "",
             f"{'family':22} {'caught':>7} {'at goal':>8}  {'goal':4}  {'severity per seed':22} {'median TTD':>10}  "
             "detectors"]
    for family, e in sorted(report["families"].items()):
        ttd = f"{e['median_ttd_minutes']:.1f} min" if e["median_ttd_minutes"] is not None else "-"
        lines.append(f"{family:22} {e['caught']:>3}/{e['seeds']:<3} {e['at_goal']:>4}/{e['seeds']:<3}  {e['goal']:4}  "
                     f"{' '.join(e['severities']):22} {ttd:>10}  {', '.join(e['detectors'])}")
    ttd = report["median_ttd_minutes"]
    lines += ["",
              f"precision {report['precision']:.2f}; false pages {report['false_pages']} = "
              f"{report['false_pages_per_1000_principal_days']:.2f} per 1,000 principal-days; "
              f"median time to detect {ttd:.1f} min; {report['incidents_per_day']:.1f} incidents/day"
              if ttd is not None else "no attack detected",
              ]
    for seed in report["seeds"]:
        r = seed["replay"]
        lines.append(f"  seed {seed['seed']}: {seed['incidents']} incidents {seed['incidents_by_severity']}, "
                     f"{seed['false_pages']} false pages, replay {r['steps']} steps, {r['events']:,} events in "
                     f"{r['seconds']} s ({r['events_per_second']:,} events/s, {r['ms_per_step']} ms/step)")
        for title in seed["false_page_titles"][:5]:
            lines.append(f"    false page: {title[:140]}")
    goals = report["goals"]
    lines += ["", "goals: " + "; ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in goals.items())]
    adbench = report.get("adbench")
    if adbench:
        names = list(adbench["means"])
        lines += ["", f"ADBench ROC-AUC ({len(adbench['per_dataset'])} datasets; benchmarks/adbench.py of "
                      f"{adbench['created'][:10]})", f"{'dataset':22} " + " ".join(f"{n:>9}" for n in names)]
        for dataset, auc in adbench["per_dataset"].items():
            lines.append(f"{dataset:22} " + " ".join(f"{auc[n]:>9.4f}" for n in names))
        lines.append(f"{'mean':22} " + " ".join(f"{adbench['means'][n]:>9.4f}" for n in names))
        lines.append(f"ensemble vs the best single detector ({adbench['best_single']}): {adbench['margin']:+.4f} "
                     f"({'met' if adbench['goal_holds'] else 'MISSED'})")
    else:
        lines.append("ADBench: no results yet (python benchmarks/adbench.py)" if in_checkout() else
                     "ADBench: not part of an installed package (run benchmarks/adbench.py in a source checkout)")
    return "\n".join(lines)


def to_json(report: dict[str, Any]) -> str:
    """The report as JSON (times ISO-8601 with Z)."""
    def default(value: object) -> object:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if isinstance(value, set):
            return sorted(value)
        return str(value)
    return json.dumps(report, default=default, indent=2)
