"""Ingest: every format, dedup on re-ingest, every rejection reason, batch boundaries."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.contract import arrow_schema
from features.ingest import IngestError, ingest_file, ingest_status, recent_rejections

EVENTS: list[dict[str, Any]] = [
    {"event_time": "2026-10-05T09:00:00Z", "event_id": "e1", "principal": "ann@corp.example", "principal_type": "human",
     "action": "join", "resource": "ds.hr.reviews", "related": ["ds.chat.logs", "ds.telemetry.keys"], "grantee": "",
     "bytes": 18446744073709551615, "rows": 12, "via": "notebook", "status": "ok", "source_ip": "10.0.0.1",
     "attributes": {"destination": "s3://x", "ticket": "T-1"}},
    {"event_time": "2026-10-05T11:30:00.250+02:00", "event_id": "e2", "principal": "agent-7", "principal_type": "agent",
     "action": "grant", "resource": "ds.telemetry.keys", "related": [], "grantee": "all-staff", "bytes": 0, "rows": 0,
     "via": "ai_assistant", "status": "ok", "source_ip": "", "attributes": {}},
    # Only the required fields: defaults fill the rest, an id is derived from the content.
    {"event_time": "2026-10-05T12:00:00Z", "principal": "svc-etl", "action": "read", "resource": "ds.sales.orders"},
    {"event_time": "2026-10-05T12:00:01Z", "event_id": "e4", "principal": "名前@corp.example", "action": "export",
     "resource": "emb.support.chat", "bytes": "5000", "status": "denied"},
]


def write_jsonl(path: Path, rows: list[Any], *, compress: bool = False) -> Path:
    text = "".join((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n" for row in rows)
    if compress:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    names = ["event_time", "event_id", "principal", "principal_type", "action", "resource", "related", "grantee",
             "bytes", "rows", "via", "status", "source_ip", "attributes"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
                             for k, v in row.items()})
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    schema = arrow_schema("access_log")
    columns: dict[str, list[Any]] = {field.name: [] for field in schema}
    for row in rows:
        for field in schema:
            value = row.get(field.name)
            if field.name == "event_time":
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            elif field.name in ("bytes", "rows") and value is not None:
                value = int(value)
            elif field.name == "attributes" and value is not None:
                value = list(value.items())
            columns[field.name].append(value)
    pq.write_table(pa.table(columns, schema=schema), path)
    return path


def stored_events(client) -> dict[str, dict[str, Any]]:
    result = client.query("SELECT * EXCEPT ingested_at FROM access_log ORDER BY event_time")
    return {row[1]: dict(zip(result.column_names, row)) for row in result.result_rows}


def assert_events_round_trip(client) -> None:
    events = stored_events(client)
    assert len(events) == 4
    first = events["e1"]
    assert first["related"] == ["ds.chat.logs", "ds.telemetry.keys"]
    assert first["attributes"] == {"destination": "s3://x", "ticket": "T-1"}
    assert first["bytes"] == 2**64 - 1
    assert first["via"] == "notebook"
    # An offset time is stored in UTC.
    assert events["e2"]["event_time"].replace(tzinfo=UTC) == datetime(2026, 10, 5, 9, 30, 0, 250000, tzinfo=UTC)
    derived = [e for e in events.values() if e["principal"] == "svc-etl"][0]
    assert derived["event_id"].startswith("h:") and derived["status"] == "ok" and derived["bytes"] == 0
    assert events["e4"]["principal"] == "名前@corp.example" and events["e4"]["bytes"] == 5000
    assert events["e4"]["status"] == "denied"


@pytest.mark.parametrize(
    ("name", "writer"),
    [
        ("events.jsonl", lambda p, rows: write_jsonl(p, rows)),
        ("events.jsonl.gz", lambda p, rows: write_jsonl(p, rows, compress=True)),
        ("events.csv", write_csv),
        ("events.parquet", write_parquet),
    ],
)
def test_each_format_loads_the_contract_and_reingest_adds_nothing(client, tmp_path: Path, name: str, writer) -> None:
    path = writer(tmp_path / name, EVENTS)

    first = ingest_file(client, path)
    assert (first.loaded, first.duplicates, first.rejected) == (4, 0, 0)
    assert_events_round_trip(client)

    again = ingest_file(client, path)
    assert (again.loaded, again.duplicates, again.rejected) == (0, 4, 0)
    assert len(stored_events(client)) == 4


def test_gzip_csv_loads_too(client, tmp_path: Path) -> None:
    plain = write_csv(tmp_path / "events.csv", EVENTS)
    packed = tmp_path / "events.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert ingest_file(client, packed).loaded == 4


def test_same_id_twice_in_one_file_counts_once(client, tmp_path: Path) -> None:
    rows = [EVENTS[0], EVENTS[1], EVENTS[0]]
    summary = ingest_file(client, write_jsonl(tmp_path / "dup.jsonl", rows))
    assert (summary.loaded, summary.duplicates) == (2, 1)


def test_a_different_format_of_the_same_events_is_a_duplicate(client, tmp_path: Path) -> None:
    ingest_file(client, write_jsonl(tmp_path / "a.jsonl", EVENTS))
    summary = ingest_file(client, write_csv(tmp_path / "a.csv", EVENTS))
    assert (summary.loaded, summary.duplicates) == (0, 4)


GOOD = {"event_time": "2026-10-05T09:00:00Z", "principal": "p", "action": "read", "resource": "r"}

REJECTIONS: list[tuple[Any, str]] = [
    ("{not json", "malformed JSON"),
    ('["a list"]', "not a JSON object"),
    ({**GOOD, "event_time": None}, "missing event_time"),
    ({k: v for k, v in GOOD.items() if k != "principal"}, "missing principal"),
    ({**GOOD, "action": ""}, "missing action"),
    ({**GOOD, "resource": "  "}, "missing resource"),
    ({**GOOD, "event_time": "yesterday"}, "unparsable event_time (want ISO-8601)"),
    ({**GOOD, "event_time": "2026-13-45T99:00:00Z"}, "unparsable event_time (want ISO-8601)"),
    ({**GOOD, "event_time": 1759654800}, "unparsable event_time (want ISO-8601)"),
    ({**GOOD, "bytes": -5}, "negative bytes"),
    ({**GOOD, "rows": "-1"}, "negative rows"),
    ({**GOOD, "bytes": "lots"}, "bytes is not a whole number in range"),
    ({**GOOD, "bytes": 2**64}, "bytes is not a whole number in range"),
    ({**GOOD, "action": "steal"}, "unknown action"),
    ({**GOOD, "principal_type": "robot"}, "unknown principal_type"),
    ({**GOOD, "via": "carrier_pigeon"}, "unknown via"),
    ({**GOOD, "status": "maybe"}, "unknown status"),
    ({**GOOD, "related": "ds.a"}, "related must be a list"),
    ({**GOOD, "attributes": ["k", "v"]}, "attributes must be an object"),
]


def test_every_rejection_reason_is_kept_with_file_line_and_raw_text(client, tmp_path: Path) -> None:
    rows: list[Any] = []
    expected: dict[int, str] = {}
    for index, (bad, reason) in enumerate(REJECTIONS):
        rows.append({**GOOD, "event_id": f"good-{index}"})
        rows.append(bad)
        expected[len(rows)] = reason  # 1-based line of the bad row
    path = write_jsonl(tmp_path / "mixed.jsonl", rows)

    summary = ingest_file(client, path)

    assert summary.loaded == len(REJECTIONS)
    assert summary.rejected == len(REJECTIONS)
    kept = {r["line"]: r for r in recent_rejections(client, limit=1000)}
    assert {line: r["reason"] for line, r in kept.items()} == expected
    for line, record in kept.items():
        assert record["file"] == str(path) and record["table"] == "access_log"
        assert record["raw"] == path.read_text(encoding="utf-8").splitlines()[line - 1]
    assert ingest_status(client).rejected == {
        reason: sum(1 for _, r in REJECTIONS if r == reason) for _, reason in REJECTIONS
    }


def test_blank_lines_are_skipped_and_line_numbers_survive_small_batches(client, tmp_path: Path) -> None:
    rows: list[Any] = []
    for index in range(300):
        rows.append({**GOOD, "event_id": f"id-{index}"} if index % 7 else "   ")
        if index % 50 == 49:
            rows.append("{broken")
    rows.append({**GOOD, "event_id": "long", "attributes": {"blob": "x" * 5000}})  # longer than a batch
    path = write_jsonl(tmp_path / "many.jsonl", rows)

    summary = ingest_file(client, path, batch_bytes=1024)

    good = sum(1 for r in rows if isinstance(r, dict))
    assert (summary.loaded, summary.rejected) == (good, 6)
    broken_lines = [i + 1 for i, r in enumerate(rows) if r == "{broken"]
    assert sorted(r["line"] for r in recent_rejections(client)) == broken_lines


def test_duplicates_across_batches_of_one_file_count_once(client, tmp_path: Path) -> None:
    rows = [{**GOOD, "event_id": f"id-{i % 40}"} for i in range(120)]
    summary = ingest_file(client, write_jsonl(tmp_path / "repeat.jsonl", rows), batch_bytes=512)
    assert (summary.loaded, summary.duplicates) == (40, 80)


def test_last_line_without_newline_and_empty_file(client, tmp_path: Path) -> None:
    path = tmp_path / "tail.jsonl"
    path.write_text(json.dumps({**GOOD, "event_id": "a"}) + "\n" + json.dumps({**GOOD, "event_id": "b"}))
    assert ingest_file(client, path).loaded == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert ingest_file(client, empty).rows == 0


def test_ragged_csv_row_is_rejected_and_the_rest_loads(client, tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text(
        "event_time,principal,action,resource\n"
        "2026-10-05T09:00:00Z,ann,read,ds.a\n"
        "2026-10-05T09:00:01Z,ann,read\n"
        '2026-10-05T09:00:02Z,"bob\nsmith",read,ds.b\n'  # a quoted newline spans two lines
        "2026-10-05T09:00:03Z,cy,read,ds.c\n"
    )
    summary = ingest_file(client, path)
    assert (summary.loaded, summary.rejected) == (3, 1)
    assert [(r["line"], r["reason"]) for r in recent_rejections(client)] == [(3, "wrong number of CSV cells")]
    assert "bob\nsmith" in {e["principal"] for e in stored_events(client).values()}


def test_unreadable_inputs_raise_one_clear_error(client, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="unknown table"):
        ingest_file(client, write_jsonl(tmp_path / "a.jsonl", EVENTS), table="secrets")
    with pytest.raises(IngestError, match="no such file"):
        ingest_file(client, tmp_path / "missing.jsonl")
    (tmp_path / "a.xlsx").write_text("cells")
    with pytest.raises(IngestError, match="unknown format"):
        ingest_file(client, tmp_path / "a.xlsx")
    broken_gzip = tmp_path / "broken.jsonl.gz"
    lines = "".join(json.dumps({**GOOD, "event_id": f"id-{i}"}) + "\n" for i in range(2000))
    broken_gzip.write_bytes(gzip.compress(lines.encode())[:2000])  # cut off mid-stream
    # The whole lines before the break load; the break is reported, not raised.
    broken = ingest_file(client, broken_gzip)
    assert broken.broken.startswith("truncated gzip stream") and 0 < broken.loaded < 2000
    not_parquet = tmp_path / "fake.parquet"
    not_parquet.write_text("hello")
    with pytest.raises(IngestError, match="Parquet"):
        ingest_file(client, not_parquet)


def test_catalogue_tables_validate_enums_and_keep_versions(client, tmp_path: Path) -> None:
    resources = [
        {"resource": "ds.hr.reviews", "kind": "dataset", "sensitivity": "restricted",
         "categories": ["performance", "pii"], "owner": "hr", "sanitized": 0, "updated_at": "2026-10-01T00:00:00Z"},
        {"resource": "emb.chat", "kind": "embedding", "sensitivity": "confidential", "categories": ["chat"],
         "sanitized": True},
        {"resource": "x", "kind": "spreadsheet", "sensitivity": "public"},
        {"resource": "y", "kind": "dataset", "sensitivity": "top-secret"},
    ]
    path = write_jsonl(tmp_path / "resources.jsonl", resources)
    summary = ingest_file(client, path, table="resources")
    assert (summary.loaded, summary.rejected) == (2, 2)
    assert summary.reasons == {"unknown kind": 1, "unknown sensitivity": 1}
    stored = dict(client.query("SELECT resource, sanitized FROM resources").result_rows)
    assert stored == {"ds.hr.reviews": 0, "emb.chat": 1}

    assert ingest_file(client, path, table="resources").duplicates == 2
    changed = [{**resources[0], "sensitivity": "internal", "updated_at": "2026-10-02T00:00:00Z"}]
    assert ingest_file(client, write_jsonl(tmp_path / "r2.jsonl", changed), table="resources").loaded == 1
    newest = client.query("SELECT argMax(sensitivity, updated_at) FROM resources WHERE resource = 'ds.hr.reviews'")
    assert newest.result_rows[0][0] == "internal"


def test_memberships_and_principals_load(client, tmp_path: Path) -> None:
    memberships = [{"group": "all-staff", "member": "eng"}, {"group": "eng", "member": "ann"}, {"group": "eng"}]
    principals = [{"principal": "ann", "principal_type": "human", "team": "eng", "created_at": "2026-09-01T00:00:00Z"},
                  {"principal": "bot", "principal_type": "toaster"}]
    m = ingest_file(client, write_jsonl(tmp_path / "m.jsonl", memberships), table="memberships")
    p = ingest_file(client, write_csv_generic(tmp_path / "p.csv", principals), table="principals")
    assert (m.loaded, m.rejected, m.reasons) == (2, 1, {"missing member": 1})
    assert (p.loaded, p.rejected, p.reasons) == (1, 1, {"unknown principal_type": 1})


def write_csv_generic(path: Path, rows: list[dict[str, Any]]) -> Path:
    names = sorted({key for row in rows for key in row})
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    return path
