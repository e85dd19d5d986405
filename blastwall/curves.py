"""Detection curves: how detection holds up across company shapes and attack intensities.

``blastwall eval --styles N --intensities 1,0.5,0.25`` replays, for every style
``0 … N-1``, one organisation per intensity (attacks injected, ``seed = style``) and one
benign-only organisation of the same style (:mod:`blastwall.evaluation` runs them). This
module turns those runs into curves — pure functions over the run results, so they can
be tested on hand-built runs:

- per family and intensity: the share of styles whose attack of that family was caught
  at the family's goal severity, the share caught at all, and the median time to detect
  (of the attacks caught at goal);
- per style: false pages (SEV1/SEV2 incidents) per 1,000 principal-days on the benign-only
  organisation, where every page is false;
- the goals of issue 16 at intensity 1.0: every family at goal in at least 95 % of styles,
  median time to detect within 15 minutes (the low-and-slow insider: within a day of its
  third act), at most 0.5 false pages per 1,000 principal-days on every style.

A run result is what :func:`blastwall.evaluation.score_incidents` returns (plus
``replay``): ``style``, ``intensity`` (``None`` for a benign-only organisation),
``benign``, ``principals``, ``detection_days``, ``false_pages``,
``false_pages_per_1000_principal_days`` and ``attacks``, each attack with ``family``,
``caught``, ``at_goal``, ``ttd_minutes`` and ``ttd_goal_minutes``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from blastwall.simulation.labels import AttackLabel

#: Share of styles in which every family must be caught at its goal severity (at intensity 1.0).
MIN_AT_GOAL_SHARE = 0.95
#: Median time to detect, in minutes, of every family but the low-and-slow insider.
MAX_MEDIAN_TTD_MINUTES = 15.0
#: False pages per 1,000 principal-days allowed on each style's benign-only organisation.
MAX_FALSE_PAGES_PER_1000_PER_STYLE = 0.5
#: The intensity the goals are checked at.
GOAL_INTENSITY = 1.0
#: The family measured against its third act rather than its first event.
SLOW_FAMILY = "low_and_slow"
#: Which act of the slow insider starts its clock, and how long after it detection may come.
SLOW_ACT = 3
SLOW_GRACE = timedelta(days=1)
#: The slow insider's time-to-detect goal when its acts cannot be told from its labels.
SLOW_FALLBACK = timedelta(days=3)


def intensity_key(intensity: float) -> str:
    """The key of an intensity in the curves and the JSON (``1.0`` → ``"1"``, ``0.25`` → ``"0.25"``)."""
    return f"{intensity:g}"


# --------------------------------------------------------------------------- time-to-detect goals


def act_days(label: AttackLabel) -> list[int] | None:
    """The distinct days (indices from the organisation's start) on which an attack acted.

    The generator's event ids read ``{seed:x}-{day:03d}-{number:08x}``; ``None`` when an id
    does not (e.g. a log format that renamed them).
    """
    days = set()
    for event_id in label.event_ids:
        parts = event_id.rsplit("-", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        days.add(int(parts[1]))
    return sorted(days) or None


def ttd_goal_minutes(label: AttackLabel, org_start: datetime) -> float:
    """The longest time to detect, from the attack's first event, that meets the goal.

    Every family: :data:`MAX_MEDIAN_TTD_MINUTES`. The low-and-slow insider: a day after
    its third act, approximated as the start (midnight UTC) of the third distinct day of
    its events — of its last day when it acted on fewer than three. When its days cannot
    be read from its event ids, :data:`SLOW_FALLBACK` (3 days).

    Parameters
    ----------
    label : AttackLabel
        The injected attack.
    org_start : datetime
        Midnight UTC of the organisation's first day (``OrgSpec.start``).

    Returns
    -------
    float
        Minutes after ``label.start``.
    """
    if label.family != SLOW_FAMILY:
        return MAX_MEDIAN_TTD_MINUTES
    days = act_days(label)
    if days is None:
        return SLOW_FALLBACK.total_seconds() / 60
    act = org_start + timedelta(days=days[min(SLOW_ACT, len(days)) - 1])
    return (max(act - label.start, timedelta(0)) + SLOW_GRACE).total_seconds() / 60


# --------------------------------------------------------------------------- aggregation


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def curve_cells(runs: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per family and intensity, across styles: shares caught, at goal, and the median time to detect.

    A style counts as caught (at goal) for a family when every attack of that family in
    its organisation was caught (at the family's goal severity). The median time to
    detect is over the attacks caught at goal; ``ttd_within_goal`` says whether the
    median of each such attack's time to detect minus its goal
    (:func:`ttd_goal_minutes`) is at most zero — for a fixed goal, whether the median
    time to detect is within it.

    Parameters
    ----------
    runs : iterable of dict
        Run results; benign-only runs are skipped.

    Returns
    -------
    dict
        ``{family: {intensity_key: {"at_goal_share", "caught_share", "median_ttd_minutes",
        "styles", "at_goal_styles", "caught_styles", "missed_styles", "ttd_goal_minutes",
        "ttd_within_goal"}}}``, families sorted, intensities descending.
    """
    per_style: dict[str, dict[float, dict[Any, list[dict[str, Any]]]]] = {}
    for run in runs:
        if run["benign"]:
            continue
        for attack in run["attacks"]:
            per_style.setdefault(attack["family"], {}).setdefault(run["intensity"], {}) \
                .setdefault(run["style"], []).append(attack)
    curves: dict[str, dict[str, dict[str, Any]]] = {}
    for family in sorted(per_style):
        curves[family] = {}
        for intensity in sorted(per_style[family], reverse=True):
            styles = per_style[family][intensity]
            caught = [s for s, attacks in styles.items() if all(a["caught"] for a in attacks)]
            at_goal = [s for s, attacks in styles.items() if all(a["at_goal"] for a in attacks)]
            timely = [a for attacks in styles.values() for a in attacks
                      if a["at_goal"] and a["ttd_minutes"] is not None]
            lateness = _median([a["ttd_minutes"] - a["ttd_goal_minutes"] for a in timely])
            curves[family][intensity_key(intensity)] = {
                "at_goal_share": len(at_goal) / len(styles),
                "caught_share": len(caught) / len(styles),
                "median_ttd_minutes": _median([a["ttd_minutes"] for a in timely]),
                "styles": len(styles),
                "at_goal_styles": len(at_goal),
                "caught_styles": len(caught),
                "missed_styles": sorted(s for s in styles if s not in at_goal),
                "ttd_goal_minutes": _median([a["ttd_goal_minutes"] for attacks in styles.values() for a in attacks]),
                "ttd_within_goal": lateness is not None and lateness <= 0,
            }
    return curves


def false_pages_per_style(runs: Iterable[dict[str, Any]]) -> dict[str, float]:
    """False pages per 1,000 principal-days of each style's benign-only organisation(s).

    Every SEV1/SEV2 incident on a benign organisation is a false page. Styles sorted by number.
    """
    pages: dict[int, int] = {}
    principal_days: dict[int, float] = {}
    for run in runs:
        if run["benign"]:
            pages[run["style"]] = pages.get(run["style"], 0) + run["false_pages"]
            principal_days[run["style"]] = principal_days.get(run["style"], 0.0) + \
                run["principals"] * run["detection_days"]
    return {str(style): 1000 * pages[style] / principal_days[style] if principal_days[style] else 0.0
            for style in sorted(pages)}


def false_pages_per_intensity(runs: Iterable[dict[str, Any]]) -> dict[str, float]:
    """False pages per 1,000 principal-days on the attacked organisations, pooled over styles, per intensity.

    Here a false page is a SEV1/SEV2 incident matching no attack (the seed evaluation's
    matching); reported beside the goal, which is measured on the benign-only organisations.
    """
    pages: dict[float, int] = {}
    principal_days: dict[float, float] = {}
    for run in runs:
        if not run["benign"]:
            pages[run["intensity"]] = pages.get(run["intensity"], 0) + run["false_pages"]
            principal_days[run["intensity"]] = principal_days.get(run["intensity"], 0.0) + \
                run["principals"] * run["detection_days"]
    return {intensity_key(i): 1000 * pages[i] / principal_days[i] if principal_days[i] else 0.0
            for i in sorted(pages, reverse=True)}


def check_goals(curves: dict[str, dict[str, dict[str, Any]]], false_pages: dict[str, float],
                intensity: float = GOAL_INTENSITY) -> dict[str, Any]:
    """Whether the goals of issue 16 hold at ``intensity`` (see the module docstring).

    Returns
    -------
    dict
        The thresholds, per family its share at goal and median time to detect against
        its goal, and the three verdicts (``None`` when nothing was measured at
        ``intensity`` or no benign organisation was replayed) with ``all_met``.
    """
    key = intensity_key(intensity)
    families = {family: cells[key] for family, cells in curves.items() if key in cells}
    per_family = {
        family: {"at_goal_share": cell["at_goal_share"], "at_goal_met": cell["at_goal_share"] >= MIN_AT_GOAL_SHARE,
                 "median_ttd_minutes": cell["median_ttd_minutes"], "ttd_goal_minutes": cell["ttd_goal_minutes"],
                 "ttd_met": cell["ttd_within_goal"]}
        for family, cell in families.items()}
    at_goal = all(f["at_goal_met"] for f in per_family.values()) if per_family else None
    ttd = all(f["ttd_met"] for f in per_family.values()) if per_family else None
    pages = all(rate <= MAX_FALSE_PAGES_PER_1000_PER_STYLE for rate in false_pages.values()) if false_pages else None
    verdicts = [at_goal, ttd, pages]
    return {
        "intensity": intensity,
        "thresholds": {
            "min_at_goal_share": MIN_AT_GOAL_SHARE, "max_median_ttd_minutes": MAX_MEDIAN_TTD_MINUTES,
            SLOW_FAMILY: f"within {SLOW_GRACE.days} day of its third act (the start of the third day of its events; "
                         f"{SLOW_FALLBACK.days} days when its days cannot be read)",
            "max_false_pages_per_1000_principal_days": MAX_FALSE_PAGES_PER_1000_PER_STYLE,
        },
        "families": per_family,
        "every_family_at_goal_in_95pct_of_styles": at_goal,
        "median_ttd_within_goal": ttd,
        "false_pages_within_goal_every_style": pages,
        "all_met": None if None in verdicts else all(verdicts),
    }


def summarise_curves(runs: list[dict[str, Any]], settings: dict[str, Any],
                     timing: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole curve report.

    Keys, in order: ``settings``, ``curves`` (:func:`curve_cells`), ``false_pages_per_style``
    (:func:`false_pages_per_style`), ``false_pages_attacked_per_intensity``
    (:func:`false_pages_per_intensity`), ``goals`` (:func:`check_goals`), ``runs``, ``timing``.

    Parameters
    ----------
    runs : list of dict
        Every run result (attacked and benign-only).
    settings : dict
        What was replayed, as given (reported unchanged).
    timing : dict, optional
        Wall-clock figures; the replay seconds of the runs are added.
    """
    curves = curve_cells(runs)
    false_pages = false_pages_per_style(runs)
    seconds = [run["replay"]["seconds"] for run in runs if "replay" in run]
    return {
        "settings": settings,
        "curves": curves,
        "false_pages_per_style": false_pages,
        "false_pages_attacked_per_intensity": false_pages_per_intensity(runs),
        "goals": check_goals(curves, false_pages),
        "runs": runs,
        "timing": {**(timing or {}), "replays": len(runs), "replay_seconds_total": round(sum(seconds), 1),
                   "replay_seconds_median": _median(seconds)},
    }


# --------------------------------------------------------------------------- presentation


def format_minutes(minutes: float | None, digits: int = 0) -> str:
    """A time to detect for a table cell: ``4m`` (``4.2m`` with ``digits=1``), ``2.5h``, ``1.2d``; ``-`` for none."""
    if minutes is None:
        return "-"
    if minutes < 60:
        return f"{minutes:.{digits}f}m"
    if minutes < 24 * 60:
        return f"{minutes / 60:.1f}h"
    return f"{minutes / 1440:.1f}d"


def format_curves(report: dict[str, Any]) -> str:
    """The curves as text: families down, intensities across, cells ``share-at-goal median-TTD``."""
    s = report["settings"]
    keys = [intensity_key(i) for i in sorted(s["intensities"], reverse=True)]
    lines = [f"blastwall eval: {_span(s['styles'])} x intensities {', '.join(keys)} "
             f"(+ a benign-only organisation per style), {s['principals']} principals x {s['days']} days, "
             f"{s['step_minutes']:g}-minute steps, through {s['format']}", "",
             "share of styles caught at the family's goal severity, median time to detect at goal", "",
             f"{'family':22} " + " ".join(f"{'intensity ' + k:>15}" for k in keys)]
    for family, cells in report["curves"].items():
        row = []
        for key in keys:
            cell = cells.get(key)
            row.append(f"{cell['at_goal_share']:.0%} {format_minutes(cell['median_ttd_minutes'])}" if cell else "-")
        lines.append(f"{family:22} " + " ".join(f"{c:>15}" for c in row))
    pages = report["false_pages_per_style"]
    lines += ["", "false pages per 1,000 principal-days on each style's benign-only organisation:"]
    lines += [f"  {', '.join(f'{style}: {rate:.2f}' for style, rate in list(pages.items())[i:i + 10])}"
              for i in range(0, len(pages), 10)] or ["  (none replayed)"]
    attacked = report["false_pages_attacked_per_intensity"]
    if attacked:
        lines.append("on the attacked organisations (SEV1/SEV2 matching no attack): " + ", ".join(
            f"intensity {key}: {rate:.2f}" for key, rate in attacked.items()))
    goals = report["goals"]
    lines += ["", f"goals at intensity {intensity_key(goals['intensity'])}:"]
    for name in ("every_family_at_goal_in_95pct_of_styles", "median_ttd_within_goal",
                 "false_pages_within_goal_every_style"):
        verdict = goals[name]
        lines.append(f"  {name} {'not measured' if verdict is None else 'met' if verdict else 'MISSED'}")
    for family, f in goals["families"].items():
        misses = [what for what, ok in (("share at goal", f["at_goal_met"]), ("time to detect", f["ttd_met"]))
                  if not ok]
        if misses:
            lines.append(f"    {family}: {f['at_goal_share']:.0%} at goal, median TTD "
                         f"{format_minutes(f['median_ttd_minutes'], 1)} (goal {format_minutes(f['ttd_goal_minutes'])}) "
                         f"— {', '.join(misses)} MISSED")
    for style, rate in pages.items():
        if rate > MAX_FALSE_PAGES_PER_1000_PER_STYLE:
            lines.append(f"    style {style}: {rate:.2f} false pages per 1,000 principal-days")
    t = report["timing"]
    lines += ["", f"{t['replays']} replays in {t.get('wall_seconds', 0):.0f} s wall-clock with {s['jobs']} job(s) "
                  f"(median replay {t['replay_seconds_median'] or 0:.0f} s)"]
    return "\n".join(lines)


def _span(styles: list[int]) -> str:
    if len(styles) == 1:
        return f"style {styles[0]}"
    if styles and styles == list(range(styles[0], styles[-1] + 1)):
        return f"{len(styles)} styles {styles[0]}..{styles[-1]}"
    return f"{len(styles)} styles {styles}"


#: Marker per family line, in order.
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")


def plot_curves(report: dict[str, Any], path: Path) -> Path:
    """Write the curves as a PNG: share at goal against intensity per family, and false pages per style.

    Parameters
    ----------
    report : dict
        :func:`summarise_curves`' report.
    path : Path
        The PNG to write (its folder is created).

    Returns
    -------
    Path
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, width_ratios=(3, 2))
    families = list(report["curves"].items())
    for index, (family, cells) in enumerate(families):
        # Families often share a share exactly: nudge each line a little so none hides another.
        nudge = (index - (len(families) - 1) / 2) * 0.006
        points = sorted((float(key), cell["at_goal_share"] + nudge) for key, cell in cells.items())
        left.plot([x for x, _ in points], [y for _, y in points], marker=MARKERS[index % len(MARKERS)],
                  linestyle=("-", "--", ":")[index // 10 % 3], label=family)
    left.axhline(MIN_AT_GOAL_SHARE, color="grey", linestyle="--", linewidth=1, label=f"goal ({MIN_AT_GOAL_SHARE:.0%})")
    left.set_xscale("log")
    intensities = sorted(report["settings"]["intensities"])
    left.set_xticks(intensities, [intensity_key(i) for i in intensities])
    left.minorticks_off()
    left.invert_xaxis()  # from blatant to subtle
    left.set_ylim(-0.03, 1.03)
    left.set_xlabel("attack intensity")
    left.set_ylabel("share of styles caught at goal severity (lines nudged apart)")
    left.set_title("Detection by family")
    left.legend(fontsize="small", loc="lower left")
    pages = report["false_pages_per_style"]
    over = [rate > MAX_FALSE_PAGES_PER_1000_PER_STYLE for rate in pages.values()]
    right.bar(list(pages), list(pages.values()), color=["tab:red" if o else "tab:green" for o in over])
    right.axhline(MAX_FALSE_PAGES_PER_1000_PER_STYLE, color="grey", linestyle="--", linewidth=1, label="goal")
    right.set_xlabel("style")
    right.set_ylabel("false pages per 1,000 principal-days")
    right.set_title("False pages on benign-only organisations")
    right.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path
