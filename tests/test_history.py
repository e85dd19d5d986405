"""History state: advancing is idempotent, a crashed advance is undone, replays must reset."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import resource_row as res
from test_feature_engine import BASE, DAY_MS, ENTITIES, Log, assert_same_frame, ev, load, numbered, reference

from features.engine import extract
from features.history import HistoryAheadError, advance_history, history_end, reset_history

HOUR_MS = 3_600_000


def log_over_three_days() -> Log:
    events = []
    for day in range(3):
        for hour in (9, 11, 14):
            events.append(ev(day * DAY_MS + hour * HOUR_MS, "ann", "read", f"ds.{hour}"))
            events.append(ev(day * DAY_MS + hour * HOUR_MS + 5, "bob", "join", "ds.9", related=[f"ds.{hour}"]))
        events.append(ev(day * DAY_MS + 15 * HOUR_MS, "ann", "export", "ds.9",
                         attributes={"destination": f"s3://d{day}"}))
    return Log(numbered(events), [res("ds.9", sensitivity="restricted")])


def history_events(client) -> int:
    return int(client.query("SELECT sum(events) FROM history_principal_resources").result_rows[0][0] or 0)


def test_advancing_twice_to_the_same_end_changes_nothing(client) -> None:
    log = log_over_three_days()
    load(client, log)
    t1, _, _ = log.bounds
    assert advance_history(client, t1) is True
    before = history_events(client)
    assert advance_history(client, t1) is False
    assert history_events(client) == before == sum(1 for e in log.events if e["event_time"] < t1)
    assert history_end(client).replace(tzinfo=t1.tzinfo) == t1


def test_a_crashed_advance_is_undone_before_it_is_redone(client) -> None:
    log = log_over_three_days()
    load(client, log)
    t1, t2, t3 = log.bounds
    advance_history(client, t1)
    # An advance to t2 that died after its first insert: its intent row and part of its rows.
    client.insert("history_progress", [[t2, "started"]], column_names=["history_end", "state"])
    client.command(
        "INSERT INTO history_principal_resources (principal, resource, events, first_seen, last_seen, step_end) "
        "SELECT principal, resource, count(), min(event_time), "
        "max(event_time), {t2:DateTime64(3, 'UTC')} FROM access_log "
        "WHERE event_time >= {t1:DateTime64(3, 'UTC')} AND event_time < {t2:DateTime64(3, 'UTC')} "
        "GROUP BY principal, resource",
        parameters={"t1": t1.replace(tzinfo=None), "t2": t2.replace(tzinfo=None)},
    )
    assert history_end(client).replace(tzinfo=t1.tzinfo) == t1  # not recorded as done

    features = extract(client, t2, t3)  # advances to t2 again, after removing the partial rows

    assert history_events(client) == sum(1 for e in log.events if e["event_time"] < t2)
    want = reference(log, t2, t3)
    for entity in ENTITIES:
        assert_same_frame(entity, features.frame(entity), want[entity], "after recovery")


def test_an_earlier_window_needs_a_reset(client) -> None:
    log = log_over_three_days()
    load(client, log)
    t1, t2, t3 = log.bounds
    extract(client, t2, t3)
    with pytest.raises(HistoryAheadError, match="reset it to replay"):
        extract(client, t1, t2)
    reset_history(client)
    features = extract(client, t1, t2)
    assert_same_frame("principal", features.frame("principal"), reference(log, t1, t2)["principal"], "replay")


def test_window_bounds_must_be_timezone_aware_and_ordered(client) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        extract(client, BASE.replace(tzinfo=None), BASE + timedelta(hours=1))
    with pytest.raises(ValueError, match="empty window"):
        extract(client, BASE, BASE)
