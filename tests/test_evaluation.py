"""Detection curves (``blastwall eval --styles``): aggregation, goals, JSON, plot, and one real run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import run_cli as cli

from blastwall.curves import (
    check_goals,
    curve_cells,
    false_pages_per_intensity,
    false_pages_per_style,
    format_curves,
    plot_curves,
    summarise_curves,
    ttd_goal_minutes,
)
from blastwall.evaluation import CurveSettings, to_json
from blastwall.simulation import AttackLabel

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SLOW_GOAL = 2880.0  # a low-and-slow goal: two days after its first event
SETTINGS = {"styles": [0, 1, 2], "intensities": [1.0, 0.5], "principals": 100, "days": 8, "step_minutes": 15.0,
            "jobs": 2, "format": "contract", "benign": True}


def attack(family: str, *, caught: bool = True, at_goal: bool = True, ttd: float | None = 5.0,
           goal: float = 15.0) -> dict[str, Any]:
    """One attack as :func:`blastwall.evaluation.score_incidents` reports it."""
    return {"family": family, "caught": caught, "at_goal": at_goal, "ttd_minutes": ttd if at_goal else None,
            "ttd_goal_minutes": goal}


def run(style: int, intensity: float | None, attacks: list[dict[str, Any]], false_pages: int = 0) -> dict[str, Any]:
    """One replay's result: 100 principals over 4 detection days (400 principal-days)."""
    return {"style": style, "intensity": intensity, "benign": intensity is None, "principals": 100,
            "detection_days": 4.0, "false_pages": false_pages,
            "false_pages_per_1000_principal_days": 1000 * false_pages / 400, "attacks": attacks,
            "replay": {"seconds": 10.0 + style}}


def slow(**kwargs: Any) -> dict[str, Any]:
    return attack("low_and_slow", goal=SLOW_GOAL, **kwargs)


def three_styles() -> list[dict[str, Any]]:
    """Three styles at intensities 1 and 0.5, and a benign organisation per style (style 1 pages once)."""
    return [
        run(0, 1.0, [attack("secrets_sweep", ttd=4.0), slow(ttd=2000.0)]),
        run(1, 1.0, [attack("secrets_sweep", ttd=10.0), slow(ttd=3000.0)]),
        run(2, 1.0, [attack("secrets_sweep", ttd=20.0), slow(at_goal=False)]),
        run(0, 0.5, [attack("secrets_sweep", at_goal=False), slow(caught=False, at_goal=False)]),
        run(1, 0.5, [attack("secrets_sweep", ttd=30.0), slow(caught=False, at_goal=False)]),
        run(2, 0.5, [attack("secrets_sweep", caught=False, at_goal=False), slow(ttd=1000.0)]),
        run(0, None, []),
        run(1, None, [], false_pages=1),
        run(2, None, []),
    ]


# --------------------------------------------------------------------------- aggregation


def test_curve_cells_give_exact_shares_medians_and_misses() -> None:
    curves = curve_cells(three_styles())

    assert list(curves) == ["low_and_slow", "secrets_sweep"]
    assert list(curves["secrets_sweep"]) == ["1", "0.5"]
    assert curves["secrets_sweep"]["1"] == {
        "at_goal_share": 1.0, "caught_share": 1.0, "median_ttd_minutes": 10.0, "styles": 3, "at_goal_styles": 3,
        "caught_styles": 3, "missed_styles": [], "ttd_goal_minutes": 15.0, "ttd_within_goal": True}
    assert curves["secrets_sweep"]["0.5"] == {
        "at_goal_share": 1 / 3, "caught_share": 2 / 3, "median_ttd_minutes": 30.0, "styles": 3, "at_goal_styles": 1,
        "caught_styles": 2, "missed_styles": [0, 2], "ttd_goal_minutes": 15.0, "ttd_within_goal": False}
    slow_1 = curves["low_and_slow"]["1"]
    assert (slow_1["at_goal_share"], slow_1["caught_share"], slow_1["missed_styles"]) == (2 / 3, 1.0, [2])
    # Median of 2000 and 3000; each judged against its own goal: -880 and +120 minutes, median -380.
    assert slow_1["median_ttd_minutes"] == 2500.0 and slow_1["ttd_within_goal"] is True
    slow_half = curves["low_and_slow"]["0.5"]
    assert (slow_half["at_goal_share"], slow_half["caught_share"], slow_half["median_ttd_minutes"]) == (
        1 / 3, 1 / 3, 1000.0)


def test_a_style_counts_as_at_goal_only_when_every_attack_of_the_family_is() -> None:
    runs = [run(0, 1.0, [attack("unusual_join", ttd=3.0), attack("unusual_join", at_goal=False)]),
            run(1, 1.0, [attack("unusual_join", ttd=7.0), attack("unusual_join", ttd=9.0)])]

    cell = curve_cells(runs)["unusual_join"]["1"]

    assert (cell["at_goal_share"], cell["styles"], cell["missed_styles"]) == (0.5, 2, [0])
    assert cell["median_ttd_minutes"] == 7.0  # over the three attacks caught at goal


def test_false_pages_are_counted_on_benign_organisations_only() -> None:
    runs = three_styles()
    runs[0]["false_pages"] = 5  # an attacked organisation's pages are not a style's false-page rate

    assert false_pages_per_style(runs) == {"0": 0.0, "1": 2.5, "2": 0.0}
    assert false_pages_per_intensity(runs) == {"1": 1000 * 5 / 1200, "0.5": 0.0}  # pooled over 3 x 400


def test_goals_at_intensity_one() -> None:
    goals = check_goals(curve_cells(three_styles()), false_pages_per_style(three_styles()))

    assert goals["intensity"] == 1.0
    assert goals["every_family_at_goal_in_95pct_of_styles"] is False  # low_and_slow: 2 of 3 styles
    assert goals["median_ttd_within_goal"] is True
    assert goals["false_pages_within_goal_every_style"] is False  # style 1: 2.5 per 1,000 principal-days
    assert goals["all_met"] is False
    assert goals["families"]["secrets_sweep"] == {"at_goal_share": 1.0, "at_goal_met": True,
                                                  "median_ttd_minutes": 10.0, "ttd_goal_minutes": 15.0,
                                                  "ttd_met": True}
    assert goals["families"]["low_and_slow"]["at_goal_met"] is False


def test_goals_met_and_goals_not_measured() -> None:
    runs = [run(s, 1.0, [attack("secrets_sweep", ttd=12.0 + s), slow(ttd=100.0)]) for s in range(3)]
    runs += [run(s, None, []) for s in range(3)]
    goals = check_goals(curve_cells(runs), false_pages_per_style(runs))
    assert (goals["every_family_at_goal_in_95pct_of_styles"], goals["median_ttd_within_goal"],
            goals["false_pages_within_goal_every_style"], goals["all_met"]) == (True, True, True, True)

    late = [run(s, 1.0, [attack("secrets_sweep", ttd=16.0)]) for s in range(3)]
    assert check_goals(curve_cells(late), {"0": 0.0})["median_ttd_within_goal"] is False

    unmeasured = check_goals(curve_cells([run(0, 0.5, [attack("secrets_sweep")])]), {})
    assert unmeasured["families"] == {}
    assert (unmeasured["every_family_at_goal_in_95pct_of_styles"], unmeasured["false_pages_within_goal_every_style"],
            unmeasured["all_met"]) == (None, None, None)


# --------------------------------------------------------------------------- time-to-detect goals


def label(family: str, start: datetime, event_ids: list[str]) -> AttackLabel:
    return AttackLabel(scenario_id=f"sc01-{family}", family=family, detector_families=(), principals=("ann",),
                       resources=("ds.a",), start=start, end=start + timedelta(days=5), expected_min_severity="SEV3",
                       description="", event_ids=tuple(event_ids))


def test_low_and_slow_must_be_caught_within_a_day_of_its_third_act() -> None:
    org_start = datetime(2026, 10, 5, tzinfo=UTC)
    start = org_start + timedelta(days=4, hours=10)
    ids = ["7-004-0000000a", "7-004-0000000b", "7-007-0000000c", "7-008-0000000d", "7-009-0000000e"]

    # Third act: day 8 (midnight) = 3 days 14 hours after the first event, plus a day.
    assert ttd_goal_minutes(label("low_and_slow", start, ids), org_start) == (3 * 24 + 14 + 24) * 60
    # Two acts only: the last one counts.
    assert ttd_goal_minutes(label("low_and_slow", start, ids[:3]), org_start) == (2 * 24 + 14 + 24) * 60
    # One act on the first day: a day after the first event.
    assert ttd_goal_minutes(label("low_and_slow", start, ids[:1]), org_start) == 24 * 60
    # Ids that do not carry their day: three days.
    assert ttd_goal_minutes(label("low_and_slow", start, ["evt-a", "evt-b"]), org_start) == 3 * 24 * 60
    assert ttd_goal_minutes(label("secrets_sweep", start, ids), org_start) == 15.0


# --------------------------------------------------------------------------- report, JSON, plot


def test_the_json_has_a_stable_shape() -> None:
    report = summarise_curves(three_styles(), SETTINGS, {"wall_seconds": 30.0})

    data = json.loads(to_json(report))

    assert list(data) == ["settings", "curves", "false_pages_per_style", "false_pages_attacked_per_intensity",
                          "goals", "runs", "timing"]
    assert data["settings"] == SETTINGS
    for family in ("low_and_slow", "secrets_sweep"):
        assert list(data["curves"][family]) == ["1", "0.5"]
        for cell in data["curves"][family].values():
            assert {"at_goal_share", "caught_share", "median_ttd_minutes", "styles"} <= set(cell)
    assert data["false_pages_per_style"] == {"0": 0.0, "1": 2.5, "2": 0.0}
    assert data["false_pages_attacked_per_intensity"] == {"1": 0.0, "0.5": 0.0}
    assert {"intensity", "thresholds", "families", "every_family_at_goal_in_95pct_of_styles",
            "median_ttd_within_goal", "false_pages_within_goal_every_style", "all_met"} <= set(data["goals"])
    assert len(data["runs"]) == 9
    assert data["timing"] == {"wall_seconds": 30.0, "replays": 9, "replay_seconds_total": 99.0,
                              "replay_seconds_median": 11.0}


def test_the_table_has_families_down_and_intensities_across() -> None:
    text = format_curves(summarise_curves(three_styles(), SETTINGS, {"wall_seconds": 30.0}))
    lines = text.splitlines()

    header = next(line for line in lines if line.startswith("family"))
    assert header.split() == ["family", "intensity", "1", "intensity", "0.5"]
    assert next(line for line in lines if line.startswith("secrets_sweep")).split() == [
        "secrets_sweep", "100%", "10m", "33%", "30m"]
    assert next(line for line in lines if line.startswith("low_and_slow")).split() == [
        "low_and_slow", "67%", "1.7d", "33%", "16.7h"]
    assert "  0: 0.00, 1: 2.50, 2: 0.00" in lines
    assert "  every_family_at_goal_in_95pct_of_styles MISSED" in lines
    assert "  median_ttd_within_goal met" in lines
    assert "    style 1: 2.50 false pages per 1,000 principal-days" in lines


def test_the_plot_is_a_real_png(tmp_path: Path) -> None:
    from matplotlib.image import imread

    path = plot_curves(summarise_curves(three_styles(), SETTINGS), tmp_path / "out" / "curves.png")

    assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 10_000
    height, width, _ = imread(path).shape
    assert (width, height) == (1200, 500)


# --------------------------------------------------------------------------- running


def test_curve_settings_replay_every_style_at_every_intensity_and_benign() -> None:
    specs = CurveSettings(styles=(3, 4), intensities=(1.0, 0.5), principals=40, days=5).specs()

    assert [(s.style, s.seed, s.attacks, s.intensity) for s in specs] == [
        (3, 3, True, 1.0), (3, 3, True, 0.5), (3, 3, False, 1.0),
        (4, 4, True, 1.0), (4, 4, True, 0.5), (4, 4, False, 1.0)]
    assert {(s.principals, s.days) for s in specs} == {(40, 5)}




@pytest.mark.parametrize(("args", "message"), [
    (["--styles", "2", "--intensities", "1,1.5"], "--intensities must be comma-separated numbers in (0, 1]"),
    (["--styles", "2", "--intensities", "high"], "--intensities must be comma-separated numbers in (0, 1]"),
    (["--styles", "2", "--seeds", "4"], "--seeds and --styles cannot be combined"),
    (["--plot", "curves.png"], "--plot needs --styles"),
    (["--intensities", "0.5"], "--intensities needs --styles"),
    (["--styles", "0"], "Invalid value for '--styles'"),
])
def test_bad_curve_arguments_are_one_line_and_exit_2(capsys, monkeypatch, args: list[str], message: str) -> None:
    code, out, err = cli(capsys, monkeypatch, "eval", *args)

    assert (code, out) == (2, "")
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("blastwall: ") and message in lines[0], err


@pytest.mark.slow  # two small organisations generated and replayed (~15 s)
def test_eval_styles_end_to_end(capsys, monkeypatch, tmp_path: Path) -> None:
    plot = tmp_path / "curves.png"
    code, out, err = cli(capsys, monkeypatch, "eval", "--styles", "1", "--intensities", "1", "--principals", "40",
                         "--days", "5", "--step", "6h", "--jobs", "1", "--json", "--plot", str(plot))

    assert code == 0, err
    assert "[1/2] style 0, intensity 1: " in err and "[2/2] style 0, benign: " in err
    report = json.loads(out)
    assert report["settings"]["styles"] == [0] and report["settings"]["intensities"] == [1.0]
    assert len(report["curves"]) == 9 and all(list(cells) == ["1"] for cells in report["curves"].values())
    assert all(cells["1"]["styles"] == 1 for cells in report["curves"].values())
    assert list(report["false_pages_per_style"]) == ["0"]
    assert [(r["style"], r["intensity"], r["benign"]) for r in report["runs"]] == [(0, 1.0, False), (0, None, True)]
    assert report["runs"][1]["attacks"] == []
    assert set(report["goals"]["families"]) == set(report["curves"])
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
