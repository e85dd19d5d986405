"""The live jobs: APScheduler wiring, catching up from the watermark, failures made visible."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from builders import ingest_rows, iso
from clickhouse_connect.driver.client import Client

from blastwall.jobs import DetectionJobs, LiveSettings, schedule
from detector import runs
from detector.incidents import list_incidents

START = datetime(2026, 10, 5, tzinfo=UTC)


def _events(client: Client, tmp_path, hours: int = 3) -> None:
    ingest_rows(client, tmp_path, "access_log", [
        {"event_time": iso(START + timedelta(minutes=7 * i)), "event_id": f"e{i}", "principal": "ann",
         "action": "read", "resource": "ds.a"} for i in range(hours * 60 // 7)])


def test_jobs_have_stable_ids_and_never_pile_up(client: Client) -> None:
    scheduler = schedule(BackgroundScheduler(timezone="UTC"), DetectionJobs(client))
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"detect", "fast_path", "retention"}
    for job in jobs.values():
        assert job.coalesce is True and job.max_instances == 1 and job.misfire_grace_time == 120
    assert jobs["fast_path"].trigger.interval == timedelta(seconds=5)  # the settings' live.tick


def test_the_detect_job_catches_up_in_whole_steps_behind_lateness(client: Client, tmp_path) -> None:
    _events(client, tmp_path)
    jobs = DetectionJobs(client, LiveSettings(step=timedelta(minutes=30), lateness=timedelta(minutes=2)))

    first = jobs.detect(now=START + timedelta(hours=1, minutes=1))  # 10:01 after start: 12:01 - 2 min lateness

    assert first is not None and first.steps == 1 and runs.watermark(client) == START + timedelta(minutes=30)
    second = jobs.detect(now=START + timedelta(hours=2, minutes=5))
    assert second is not None and second.steps == 3 and runs.watermark(client) == START + timedelta(hours=2)
    assert jobs.detect(now=START + timedelta(hours=2, minutes=5)).steps == 0  # nothing new is due


def test_a_failing_job_is_recorded_visible_and_caught_up_later(client: Client, tmp_path) -> None:
    _events(client, tmp_path)
    jobs = DetectionJobs(client, LiveSettings(step=timedelta(minutes=30), lateness=timedelta(0)))
    assert jobs.detect(now=START + timedelta(hours=1)).steps == 2
    client.command("RENAME TABLE history_principal_resources TO history_principal_resources_away")

    assert jobs.detect(now=START + timedelta(hours=2)) is None  # it did not raise

    assert "history_principal_resources" in jobs.last_error
    assert runs.watermark(client) == START + timedelta(hours=1)
    [incident] = [i for i in list_incidents(client) if i["detector"] == "pipeline_error"]
    assert incident["severity"] == "SEV3" and "the detect job is failing" in incident["title"]
    client.command("RENAME TABLE history_principal_resources_away TO history_principal_resources")
    assert jobs.detect(now=START + timedelta(hours=2)).steps == 2
    assert runs.watermark(client) == START + timedelta(hours=2)
