"""The basics every package shares, each defined once: durations, severities, times, file problems."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from detector.severity import SEVERITIES, at_least, most_severe, severity_rank
from features.durations import parse_duration
from features.settings_file import SettingsFileError, load_model
from features.times import bound_ms, from_epoch_ms, ms_param, to_epoch_ms
from playbooks.model import LIBRARY, load_library, test_library


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("90sec", 90), ("5m", 300), ("5min", 300), ("5 minutes", 300), ("1.5h", 5400), ("1h", 3600),
    ("2d", 172800), ("1D", 86400), (45, 45), (timedelta(minutes=2), 120)])
def test_durations_read_the_same_everywhere(text: object, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["5 fortnights", "m5", "", "5", "-5m", "0s", 0, True, "1e3s"])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_a_playbook_timeout_and_a_cli_step_accept_the_same_units(tmp_path: Path) -> None:
    """`--step 5min` worked while `timeout: 5min` failed: one parser now reads both."""
    from blastwall.cli import _Duration

    assert _Duration().convert("5min", None, None) == timedelta(minutes=5)
    from playbooks.model import scaffold

    folder = tmp_path / "books"
    folder.mkdir()
    path = scaffold("five_minutes", folder / "five_minutes.yaml")
    path.write_text(path.read_text().replace("timeout: 30s", "timeout: 5min"))
    library = load_library([folder])
    assert not library.problems, library.problems
    assert library.playbooks["five_minutes"].spec.steps[1].timeout == timedelta(minutes=5)


def test_severity_rank_orders_and_refuses_unknown_levels() -> None:
    assert [severity_rank(level) for level in SEVERITIES] == [0, 1, 2, 3]
    assert at_least("SEV1", "SEV2") and at_least("SEV2", "SEV2") and not at_least("SEV3", "SEV2")
    assert most_severe(["SEV3", "SEV1", "SEV4"]) == "SEV1"
    for unknown in ("SEV5", "sev1", "", "critical"):
        with pytest.raises(ValueError, match="unknown severity"):
            severity_rank(unknown)


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_epoch_milliseconds_round_trip_and_bounds_round_up(moment: datetime) -> None:
    floor, ceiling = to_epoch_ms(moment), bound_ms(moment)
    assert from_epoch_ms(floor) <= moment < from_epoch_ms(floor) + timedelta(milliseconds=1)
    assert ceiling == floor + (0 if moment.microsecond % 1000 == 0 else 1)
    assert to_epoch_ms(moment.replace(tzinfo=None)) == floor  # naive means UTC
    assert to_epoch_ms(moment.astimezone(timezone(timedelta(hours=5, minutes=30)))) == floor


def test_ms_param_is_the_store_conversion_and_refuses_non_names(client) -> None:
    assert client.query(f"SELECT toUnixTimestamp64Milli({ms_param('t')})",
                        parameters={"t": 1_790_000_000_123}).result_rows[0][0] == 1_790_000_000_123
    with pytest.raises(ValueError):
        ms_param("t}, 'UTC'); DROP TABLE x; --")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    count: int = 0
    items: list[int] = []


def test_a_settings_file_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("count: many\nitems:\n  - 1\n  - two\nsurprise: 1\n")
    with pytest.raises(SettingsFileError) as caught:
        load_model(path, _Settings, expected="name")
    assert str(caught.value).splitlines() == [
        f"{path}:1: name: missing", f"{path}:1: count: input should be a valid integer, unable to parse string "
        "as an integer", f"{path}:4: items[1]: input should be a valid integer, unable to parse string as an "
        "integer", f"{path}:5: surprise: unknown field"]
    path.write_text("name: [unclosed\n")
    with pytest.raises(SettingsFileError, match=r"s\.yaml:2: not valid YAML"):
        load_model(path, _Settings, expected="name")
    path.write_text("- a list\n")
    with pytest.raises(SettingsFileError, match=r"s\.yaml:1: expected a mapping with name, not a list"):
        load_model(path, _Settings, expected="name")
    path.write_bytes(b"name: \xff\n")
    with pytest.raises(SettingsFileError, match="not UTF-8"):
        load_model(path, _Settings, expected="name")
    with pytest.raises(SettingsFileError, match="no such file"):
        load_model(tmp_path / "missing.yaml", _Settings, expected="name")
    path.write_text("")
    with pytest.raises(SettingsFileError, match="name: missing"):
        load_model(path, _Settings, expected="name")


def test_a_missing_playbook_folder_is_a_problem_never_an_empty_library(tmp_path: Path) -> None:
    gone = tmp_path / "not-there"
    library = load_library([LIBRARY, gone])
    assert library.playbooks and [str(p) for p in library.problems] == [f"{gone}: no such playbook folder"]
    report = test_library([gone])
    assert not report.ok and report.checked == []


def test_a_missing_built_in_library_says_the_installation_is_broken(tmp_path: Path, monkeypatch) -> None:
    import playbooks.model as model

    monkeypatch.setattr(model, "LIBRARY", tmp_path / "library")
    library = model.load_library([model.LIBRARY])
    assert not library.playbooks
    assert "the built-in playbook library is missing" in str(library.problems[0])
