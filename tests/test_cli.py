"""The command line as a user meets it: summaries, one-line errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders import open_initialised
from builders import run_cli as run

from blastwall.store import close_store

GOOD = {"event_time": "2026-10-05T09:00:00Z", "principal": "ann", "action": "read", "resource": "ds.a"}


def test_init_then_init_again(capsys, monkeypatch, store_dsn: str) -> None:
    code, out, _ = run(capsys, monkeypatch, "--dsn", store_dsn, "init")
    assert code == 0 and "applied features.contract v1" in out
    code, out, _ = run(capsys, monkeypatch, "--dsn", store_dsn, "init")
    assert (code, out.strip()) == (0, "schema is current")


def test_ingest_prints_a_summary_with_reasons(capsys, monkeypatch, store_dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    rows = [{**GOOD, "event_id": "a"}, {**GOOD, "event_id": "b"}, {**GOOD, "action": "steal"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    code, out, err = run(capsys, monkeypatch, "--dsn", store_dsn, "ingest", str(path))

    assert (code, err) == (0, "")
    assert f"{path}: loaded 2, duplicates 0, rejected 1" in out
    assert "rejected 1: unknown action" in out
    code, out, _ = run(capsys, monkeypatch, "--dsn", store_dsn, "ingest", str(path))
    assert f"{path}: loaded 0, duplicates 2, rejected 1" in out


def test_environment_variable_selects_the_store(capsys, monkeypatch, store_dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(GOOD) + "\n")
    monkeypatch.setenv("BLASTWALL_DSN", store_dsn)
    code, out, _ = run(capsys, monkeypatch, "ingest", str(path))
    assert code == 0 and "loaded 1" in out
    assert (Path(store_dsn.removeprefix("chdb://")) / ".blastwall.lock").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "{missing}"], "{missing}: no such file"),
        (["ingest", "--table", "secrets", "{good}"], "Invalid value for '--table'"),
        (["ingest", "{odd}"], "unknown format"),
        (["ingest"], "Missing argument"),
        (["frobnicate"], "No such command"),
        (["detect", "--since", "x", "--until", "2026-10-06T00:00:00Z"], "is not an ISO-8601 time"),
        (["detect", "--since", "2026-10-06T00:00:00Z", "--until", "2026-10-06T00:00:00Z"], "is not before --until"),
        (["detect", "--until", "2026-10-06T00:00:00Z", "--step", "5 fortnights"], "is not a duration (30s, 5m"),
        (["detect", "--until", "2026-10-06T00:00:00Z", "--step", "0m"], "is not a positive duration"),
        (["detect", "--until", "2026-10-06T00:00:00Z"], "nothing processed yet: give a start (--since)"),
        (["eval", "--seeds", "one,two"], "--seeds must be comma-separated integers"),
        (["playbook", "dry-run", "nope", "--incident", "1"], "playbook 'nope' does not exist"),
        (["playbook", "new", "Bad-Id", "--dir", "{missing}"], "is not a valid playbook id"),
        (["approve", "1.restricted_fanout", "revoke_grant"], "no playbook run '1.restricted_fanout'"),
        (["deny", "1.x", "step"], "Missing option '--reason'"),
        (["rollback", "5"], "no incident 5"),
        (["rollback", "INC-5"], "no incident INC-5 in this store (it holds no incidents)"),
        (["rollback", "5.3"], "'5.3' is not an incident reference (like INC-12, or a numeric incident id)"),
        (["playbook", "run", "embedding_export", "--incident", "INC-1"], "no incident INC-1 in this store"),
        (["approve", "INC-7.embedding_export", "revoke_grant"], "no incident INC-7 in this store"),
        (["--config", "{missing}", "respond"], "{missing}: no such file"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(capsys, monkeypatch, store_dsn: str, tmp_path: Path,
                                               args: list[str], message: str) -> None:
    close_store(open_initialised(Path(store_dsn.removeprefix("chdb://"))))  # the reading commands need one
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(GOOD) + "\n")
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    paths = {"missing": str(tmp_path / "missing.jsonl"), "good": str(good), "odd": str(odd)}
    argv = ["--dsn", store_dsn, *(a.format(**paths) for a in args)]

    code, out, err = run(capsys, monkeypatch, *argv)

    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("blastwall: ") and message.format(**paths) in lines[0], err


def test_a_bad_dsn_is_one_line(capsys, monkeypatch) -> None:
    code, _, err = run(capsys, monkeypatch, "--dsn", "postgres://db/x", "init")
    assert code == 2 and err.strip() == (
        "blastwall: unknown DSN scheme in 'postgres://db/x': use chdb:///path or clickhouse://user:pass@host:8123/db"
    )


def test_an_unreachable_server_is_one_line(capsys, monkeypatch) -> None:
    code, _, err = run(capsys, monkeypatch, "--dsn", "clickhouse://u:secret@127.0.0.1:9/db", "init")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("blastwall: cannot reach ClickHouse at clickhouse://u:***@127.0.0.1:9/db")


def test_demo_seeds_once_and_reseeds_on_request(capsys, monkeypatch, store_dsn: str) -> None:
    from dataclasses import dataclass
    from datetime import timedelta

    from blastwall.jobs import LiveSettings

    @dataclass
    class CoarseLive(LiveSettings):
        step: timedelta = timedelta(days=1)

    # The demo replays its seeded days before the console opens, in the live loop's steps: in
    # 5-minute steps that takes minutes per seeding (test_demo_opens_on_the_incidents_of_its_history
    # does it once); seeding is what this test is about.
    monkeypatch.setattr("blastwall.jobs.LiveSettings", CoarseLive)
    args = ["--dsn", store_dsn, "demo", "--principals", "60", "--days", "6", "--no-console"]
    code, out, err = run(capsys, monkeypatch, *args)
    assert (code, err) == (0, "")
    assert "seeded " in out and "9 labelled attacks" in out and "processed " in out
    code, out, _ = run(capsys, monkeypatch, *args)
    assert code == 0 and "already holds" in out
    code, out, _ = run(capsys, monkeypatch, *args, "--reseed")
    assert code == 0 and "seeded " in out and "processed " in out


@pytest.mark.slow  # the seeded days replayed in the live loop's 5-minute steps: about 1,500 steps
def test_demo_opens_on_the_incidents_of_its_history(capsys, monkeypatch, store_dsn: str) -> None:
    from datetime import UTC, datetime

    from blastwall.jobs import LiveSettings
    from blastwall.simulation.live import demo_start
    from blastwall.store import close_store, open_store
    from detector import runs
    from detector.incidents import list_incidents
    from detector.replay import align

    def state() -> tuple:
        client = open_store(store_dsn)
        try:
            return runs.watermark(client), list_incidents(client), runs.health(client)
        finally:
            close_store(client)

    live = LiveSettings()
    args = ["--dsn", store_dsn, "demo", "--principals", "40", "--days", "5", "--no-console"]
    before = datetime.now(UTC)
    code, out, err = run(capsys, monkeypatch, *args)
    after = datetime.now(UTC)

    assert (code, err) == (0, "")
    assert "seeded " in out and "detecting over the seeded history" in out and "processed " in out
    mark, incidents, health = state()
    # Detected up to the live loop's current step, in its steps: the console's jobs go on from there.
    assert align(before - live.lateness, live.step) <= mark <= align(after - live.lateness, live.step)
    assert datetime.now(UTC) - mark < live.step + live.lateness + (after - before)
    assert health["failed"] == 0 and health["last_error"] == ""
    # The console opens on the seeded history's incidents (the labelled attacks).
    history = (demo_start(before, 5), demo_start(before, 0))
    seeded = [i for i in incidents if history[0] < i["detected_at"] <= history[1]]
    assert len(seeded) >= 3 and any(i["severity"] == "SEV1" for i in seeded), incidents

    code, out, err = run(capsys, monkeypatch, *args)  # again: it resumes, it redoes nothing

    assert (code, err) == (0, "") and "already holds" in out
    again, later, _ = state()
    assert again >= mark and sorted(i["id"] for i in later) == sorted(i["id"] for i in incidents)


def test_demo_rejects_a_too_small_organisation(capsys, monkeypatch, store_dsn: str) -> None:
    code, _, err = run(capsys, monkeypatch, "--dsn", store_dsn, "demo", "--principals", "5", "--no-console")
    assert code == 2 and "Invalid value for '--principals'" in err


def test_generate_writes_files_that_ingest_cleanly(capsys, monkeypatch, store_dsn: str, tmp_path: Path) -> None:
    out_dir = tmp_path / "org"
    code, out, _ = run(capsys, monkeypatch, "generate", str(out_dir), "--format", "csv", "--gzip",
                       "--principals", "50", "--days", "5")
    assert code == 0 and f"wrote {out_dir}" in out
    for table in ("resources", "memberships", "principals", "access_log"):
        code, out, err = run(capsys, monkeypatch, "--dsn", store_dsn, "ingest", "--table", table,
                             str(out_dir / f"{table}.csv.gz"))
        assert code == 0 and ", rejected 0 " in out, (table, out, err)
    assert json.loads((out_dir / "labels.json").read_text())


def test_incidents_lists_what_the_store_holds(capsys, monkeypatch, store_dsn: str) -> None:
    from datetime import UTC, datetime

    from builders import alert

    from blastwall.schema import init_schema
    from blastwall.store import close_store, open_store
    from detector.incidents import record_alert

    assert run(capsys, monkeypatch, "--dsn", store_dsn, "init")[0] == 0
    code, out, _ = run(capsys, monkeypatch, "--dsn", store_dsn, "incidents", "--json")
    assert (code, json.loads(out)) == (0, [])
    when = datetime(2026, 10, 8, 11, 42, tzinfo=UTC)
    client = open_store(store_dsn)
    try:
        init_schema(client)
        for key, severity, score in (("a1", "SEV3", 0.97), ("a2", "SEV1", 0.999)):
            record_alert(client, alert(
                "permission_fanout", key, severity, at=when, entity="grant", title=f"grant {key}", score=score,
                principals=("agent-7",), resources=("ds.telemetry",), last_seen=when, detected_at=when,
                explanation=[{"feature": "audience_gain", "value": 900, "baseline": 3, "weight": 1.0}]))
    finally:
        close_store(client)

    code, out, _ = run(capsys, monkeypatch, "--dsn", store_dsn, "incidents", "--json")
    listed = json.loads(out)
    assert code == 0 and [i["severity"] for i in listed] == ["SEV1", "SEV3"]
    required = {"id", "detector", "title", "severity", "status", "score", "principals", "resources", "first_seen",
                "last_seen", "detected_at", "explanation", "techniques", "playbook_runs"}
    assert required <= set(listed[0]) and listed[0]["first_seen"] == "2026-10-08T11:42:00.000Z"
    assert [(i["ref"], i["title"]) for i in listed] == [("INC-2", "grant a2"), ("INC-1", "grant a1")]
    code, out, _ = run(capsys, monkeypatch, "--dsn", store_dsn, "incidents")
    # People see the reference first; the long id only in --json.
    assert code == 0 and out.splitlines()[1].startswith("INC-2  SEV1  open ")
    assert str(listed[0]["id"]) not in out
    code, out, _ = run(capsys, monkeypatch, "--dsn", store_dsn, "incidents", "--min-severity", "SEV2")
    assert code == 0 and "grant a2" in out and "grant a1" not in out
    code, _, err = run(capsys, monkeypatch, "--dsn", store_dsn, "incidents", "--status", "burning")
    assert code == 2 and "Invalid value for '--status'" in err


def test_detect_replays_a_range_once(capsys, monkeypatch, store_dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    rows = [{**GOOD, "event_id": f"e{i}", "event_time": f"2026-10-05T{i:02d}:10:00Z"} for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run(capsys, monkeypatch, "--dsn", store_dsn, "ingest", str(path))[0] == 0
    args = ["--dsn", store_dsn, "detect", "--since", "2026-10-05T00:00:00Z", "--until", "2026-10-05T12:00:00Z",
            "--step", "1h"]

    code, out, err = run(capsys, monkeypatch, *args)

    assert (code, err) == (0, "")
    assert out.startswith("processed 12 steps [2026-10-05T00:00:00+00:00, 2026-10-05T12:00:00+00:00): 12 events")
    code, out, _ = run(capsys, monkeypatch, *args)
    assert (code, out.strip()) == (0, "nothing to do: 12 steps of this range were already processed")
    code, out, _ = run(capsys, monkeypatch, *args[:-4], "--until", "2026-10-05T14:00:00Z", "--step", "1h")
    assert code == 0 and out.startswith("processed 2 steps [2026-10-05T12:00:00+00:00")


@pytest.mark.slow  # a whole evaluation: a seed replayed, then the ensemble benchmark
def test_eval_reports_every_family_and_the_goals(capsys, monkeypatch) -> None:
    code, out, err = run(capsys, monkeypatch, "eval", "--seeds", "5", "--principals", "40", "--days", "5",
                         "--step", "6h", "--jobs", "1")
    assert code == 0, err
    for family in ("permission_fanout", "unusual_join", "embedding_export", "artifact_download",
                   "unsanitised_training", "runaway_agent", "external_grant", "secrets_sweep", "low_and_slow"):
        assert f"\n{family} " in out
    assert "false pages" in out and "\ngoals: every_family_at_goal_on_every_seed " in out


@pytest.mark.slow  # a whole evaluation through a real log format's writer and source
def test_eval_through_cloudtrail_catches_what_cloudtrail_can_show(capsys, monkeypatch) -> None:
    code, out, err = run(capsys, monkeypatch, "eval", "--seeds", "5", "--principals", "40", "--days", "5",
                         "--step", "6h", "--jobs", "1", "--format", "cloudtrail", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["settings"]["format"] == "cloudtrail"
    families = report["families"]
    assert len(families) == 9
    # A grant of sensitive data to everyone is a grant in any format.
    assert families["permission_fanout"]["caught"] == 1


# ------------------------------------------------------------------ reading a store that does not exist


@pytest.fixture
def data_home(monkeypatch, tmp_path: Path) -> Path:
    """The user data directory in this test's own folder (platformdirs reads XDG_DATA_HOME), no BLASTWALL_DSN."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.delenv("BLASTWALL_DSN", raising=False)
    return home / ".local" / "share" / "blastwall"


READING = [["incidents"], ["playbook", "dry-run", "embedding_export", "--incident", "INC-1"],
           ["playbook", "run", "embedding_export", "--incident", "1"], ["approve", "INC-1.embedding_export", "x"],
           ["deny", "1.embedding_export", "x", "--reason", "no"], ["rollback", "INC-1"], ["respond"], ["console"]]


@pytest.mark.parametrize("args", READING, ids=lambda args: " ".join(args[:2]))
def test_reading_commands_name_the_stores_there_are_and_create_none(capsys, monkeypatch, data_home: Path,
                                                                   args: list[str]) -> None:
    from blastwall.schema import init_schema
    from blastwall.store import demo_dsn, open_store

    demo = open_store(demo_dsn())
    try:
        init_schema(demo)
    finally:
        close_store(demo)

    code, out, err = run(capsys, monkeypatch, *args)

    assert (code, out) == (2, "")
    assert err == (f"blastwall: no store at {data_home / 'store'}; stores in {data_home}: "
                   f"chdb://{data_home / 'demo'} (the demo's). Use --dsn chdb://{data_home / 'demo'} or "
                   "$BLASTWALL_DSN, or create one with blastwall init.\n")
    assert not (data_home / "store").exists()


def test_a_missing_store_named_by_dsn_is_refused_too(capsys, monkeypatch, data_home: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()  # a folder, but no store in it

    for folder in (tmp_path / "nowhere", empty):
        code, _, err = run(capsys, monkeypatch, "--dsn", f"chdb://{folder}", "incidents")
        assert code == 2 and err == (f"blastwall: no store at {folder}, and none in {data_home}. Create one with "
                                     "blastwall init (or blastwall demo), or name yours with --dsn or "
                                     "$BLASTWALL_DSN.\n")
    assert not (tmp_path / "nowhere").exists() and list(empty.iterdir()) == []
    # A command that writes creates it; then it is read.
    assert run(capsys, monkeypatch, "--dsn", f"chdb://{empty}", "init")[0] == 0
    assert run(capsys, monkeypatch, "--dsn", f"chdb://{empty}", "incidents")[1].strip() == "no incidents"
