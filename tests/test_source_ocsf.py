"""The OCSF source: the shared OCSF samples, exact rows, schema drift and every file shape.

The samples live in ``../shared/datasets`` (their licence forbids copying them into the
repository); the tests read them from there.
"""

from __future__ import annotations

import copy
import gzip
import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client
from test_cli import run

from features.ingest import ingest_file, sniff_source
from features.sources.ocsf import SOURCE

SAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "real-audit-logs" / "ocsf-examples"
OCSF = sorted(SAMPLES.glob("*.ocsf"))
needs_samples = pytest.mark.skipif(not OCSF, reason="../shared/datasets is not beside the checkout")


def _rows(client: Client, where: str = "1") -> list[dict]:
    result = client.query(f"SELECT * EXCEPT ingested_at FROM access_log WHERE {where} ORDER BY event_time, event_id")
    return [dict(zip(result.column_names, row)) for row in result.result_rows]


def _contract(row: dict) -> dict:
    """The row without its attributes (checked on their own)."""
    return {k: v for k, v in row.items() if k != "attributes"}


@needs_samples
def test_every_shared_ocsf_sample_is_loaded_or_rejected_with_a_reason(client: Client) -> None:
    ids = set()
    for path in OCSF:
        summary = ingest_file(client, path, source=SOURCE)
        assert summary.rows == 1, (path.name, summary)  # each sample is one pretty-printed event
        uid = json.loads(path.read_text())["metadata"].get("uid")
        # The event id is metadata.uid as given: the samples copy one uid into events of two
        # classes, and the second is a duplicate of the first (a real producer's uids differ).
        duplicate = uid in ids
        ids.add(uid)
        assert (summary.loaded + summary.rejected, summary.duplicates) == (int(not duplicate), int(duplicate)), (
            path.name, summary)
        assert all(summary.reasons), summary.reasons
    assert int(client.query("SELECT count() FROM access_log").result_rows[0][0]) == len(OCSF) - 2
    assert not client.query("SELECT reason FROM rejected_rows").result_rows


@needs_samples
def test_a_group_addition_is_a_grant_to_the_added_user(client: Client) -> None:
    ingest_file(client, SAMPLES / "okta-systemlog-v1.3.0-group_management-3006.ocsf", source=SOURCE)
    [row] = _rows(client)
    assert _contract(row) == {
        "event_time": datetime(2024, 8, 13, 15, 58, 20),  # time 1723564700: seconds, not ms
        "event_id": "dc9fd3c0-598c-11ef-8478-2b7584bf8d5a",
        "principal": "john.doe@example.com", "principal_type": "human", "action": "grant",
        "resource": "TEST Group", "related": [], "grantee": "test_user@example.com", "bytes": 0, "rows": 0,
        "via": "console", "status": "ok", "source_ip": "10.0.0.1",
    }
    attributes = row["attributes"]
    assert {k: attributes[k] for k in ("source", "class_uid", "class_name", "activity_name", "product", "uid")} == {
        "source": "ocsf", "class_uid": "3006", "class_name": "Group Management", "activity_name": "Add User",
        "product": "Okta System Log", "uid": "dc9fd3c0-598c-11ef-8478-2b7584bf8d5a"}


@needs_samples
def test_a_git_push_is_a_write_to_the_repository(client: Client) -> None:
    ingest_file(client, SAMPLES / "github-audit-v1.3.0-api_activity-6003.ocsf", source=SOURCE)
    [row] = _rows(client)
    assert _contract(row) == {
        "event_time": datetime(2024, 10, 17, 14, 42, 46, 108000),  # time 1729176166108 ms
        "event_id": "m-111111111111==",
        "principal": "test_user@acme.com", "principal_type": "human", "action": "write",
        "resource": "acme/dynamite", "related": [], "grantee": "", "bytes": 0, "rows": 0,
        "via": "api", "status": "ok", "source_ip": "1.1.1.1",
    }
    assert row["attributes"]["api_operation"] == "git.push" and row["attributes"]["class_uid"] == "6003"


def _api_event(n: int, *, rc: bool = False, **extra) -> dict:
    """One S3 download as Security Lake writes it, in 1.x or 1.0.0-rc.2 numbering."""
    event = {
        "activity_id": 2, "activity_name": "Read", "time": 1_790_000_000_000 + n * 1000,
        "actor": {"user": {"type": "IAMUser", "name": "ann", "uid": "AIDA1"}, "session": {"uid": "s-1"}},
        "api": {"operation": "GetObject", "service": {"name": "s3.amazonaws.com"}},
        "resources": [{"uid": f"arn:aws:s3:::models/ckpt-{n}.pt", "type": "AWS::S3::Object"},
                      {"uid": "arn:aws:s3:::models", "type": "AWS::S3::Bucket"}],
        "src_endpoint": {"ip": "198.51.100.7"}, "http_request": {"user_agent": "aws-cli/2.15"},
        "status": "Success", "status_id": 1,
        "unmapped": {"additionalEventData.bytesTransferredOut": str(1000 + n)},
        "metadata": {"uid": f"ev-{n}", "version": "1.1.0", "product": {"name": "CloudTrail", "vendor_name": "AWS"}},
        "class_uid": 6003, "class_name": "API Activity", "category_uid": 6, "category_name": "Application Activity",
        "type_uid": 600302, **extra,
    }
    if rc:
        event.update(class_uid=3005, category_uid=3, category_name="Audit Activity", type_uid=300502)
        event["metadata"]["version"] = "1.0.0-rc.2"
    return event


def _one(client: Client, tmp_path: Path, event: dict, name: str = "one.json") -> dict:
    path = tmp_path / name
    path.write_text(json.dumps(event) + "\n")
    summary = ingest_file(client, path, source=SOURCE)
    assert (summary.loaded, summary.rejected) == (1, 0), summary.reasons
    return _rows(client, f"event_id = '{event['metadata']['uid']}'")[0]


def test_rc2_and_1x_numbering_give_the_same_row(client: Client, tmp_path: Path) -> None:
    modern = _one(client, tmp_path, _api_event(1), "modern.json")
    client.command("TRUNCATE TABLE access_log")
    client.command("TRUNCATE TABLE event_ids")
    old = _one(client, tmp_path, _api_event(1, rc=True), "old.json")
    differs = {"class_uid", "category_name", "type_uid", "ocsf_version"}
    assert _contract(old) == _contract(modern)
    assert {k: v for k, v in old["attributes"].items() if k not in differs} == \
        {k: v for k, v in modern["attributes"].items() if k not in differs}
    assert (modern["action"], modern["resource"], modern["related"], modern["bytes"], modern["via"]) == (
        "download", "arn:aws:s3:::models/ckpt-1.pt", ["arn:aws:s3:::models"], 1001, "api")
    assert (old["attributes"]["class_uid"], modern["attributes"]["class_uid"]) == ("3005", "6003")


def test_time_dt_stands_in_for_a_missing_time(client: Client, tmp_path: Path) -> None:
    event = _api_event(2)
    del event["time"]
    event["time_dt"] = "2026-10-05T09:00:00.250Z"
    assert _one(client, tmp_path, event)["event_time"] == datetime(2026, 10, 5, 9, 0, 0, 250000)


def test_missing_optional_fields_still_map(client: Client, tmp_path: Path) -> None:
    event = {"class_uid": 6003, "activity_id": 1, "time": 1_790_000_000_000,
             "actor": {"app_name": "nightly-etl"}, "api": {"operation": "CreateDataset"},
             "metadata": {"uid": "bare-1", "version": "1.3.0"}}
    row = _one(client, tmp_path, event)
    assert (row["principal"], row["principal_type"], row["action"], row["resource"], row["status"],
            row["source_ip"], row["via"]) == ("nightly-etl", "service", "write", "CreateDataset", "ok", "", "")


def test_classes_map_to_their_actions_and_unsupported_ones_are_rejected_with_why(client: Client,
                                                                                 tmp_path: Path) -> None:
    base = {"time": 1_790_000_000_000, "actor": {"user": {"name": "ann", "type_id": 1}},
            "metadata": {"version": "1.3.0"}}
    events = [
        {"class_uid": 6005, "activity_id": 4, "database": {"name": "hr"}, "table": {"name": "salaries"},
         "query_info": {"bytes": 5000}},
        {"class_uid": 3001, "activity_id": 7, "user": {"name": "bob"}, "policy": {"name": "AdminAccess"}},
        {"class_uid": 3006, "activity_id": 4, "group": {"name": "ml-readers"}, "user": {"name": "bob"}},
        {"class_uid": 3002, "activity_id": 1, "user": {"name": "carol"}, "status_id": 2,
         "service": {"name": "console"}},
        {"class_uid": 3002, "activity_id": 2, "user": {"name": "carol"}},
        {"class_uid": 4001, "class_name": "Network Activity", "activity_id": 1},
        {"class_uid": 3006, "category_name": "Audit Activity", "class_name": "Access Activity", "activity_id": 1},
        {"class_uid": 6003, "activity_id": 99, "api": {"operation": "AssumeRole"}, "status_id": 2,
         "status_detail": "AccessDenied"},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps({**copy.deepcopy(base), **e, "metadata": {"uid": f"m-{i}", "version": "1.3.0"}})
                            + "\n" for i, e in enumerate(events)))
    summary = ingest_file(client, path, source=SOURCE)
    assert (summary.loaded, summary.rejected) == (5, 3)
    got = {r["event_id"]: (r["principal"], r["action"], r["resource"], r["grantee"], r["bytes"], r["status"])
           for r in _rows(client)}
    assert got == {
        "m-0": ("ann", "query", "hr.salaries", "", 5000, "ok"),
        "m-1": ("ann", "grant", "AdminAccess", "bob", 0, "ok"),
        "m-2": ("ann", "revoke", "ml-readers", "bob", 0, "ok"),
        "m-3": ("carol", "login", "console", "", 0, "denied"),
        "m-7": ("ann", "write", "AssumeRole", "", 0, "denied"),
    }
    reasons = dict(client.query("SELECT line, reason FROM rejected_rows ORDER BY line").result_rows)
    assert reasons == {5: "OCSF Authentication Logoff: not an access",
                       6: "unsupported OCSF class 4001 (Network Activity)",
                       7: "unsupported OCSF class 3006 (Access Activity)"}


@pytest.mark.parametrize("shape", ["jsonl", "array", "object", "jsonl.gz", "parquet"])
def test_every_file_shape_loads_the_same_rows(client: Client, tmp_path: Path, shape: str) -> None:
    events = [_api_event(n) for n in range(3)] if shape != "object" else [_api_event(0)]
    path = tmp_path / f"lake.{shape}"
    if shape == "parquet":
        # Nested structs, lists and a map, as Security Lake writes them.
        unmapped = pa.array([list(e.pop("unmapped").items()) for e in events], pa.map_(pa.string(), pa.string()))
        table = pa.Table.from_pylist(events).append_column("unmapped", unmapped)
        pq.write_table(table, path)
    elif shape == "array":
        path.write_text(json.dumps(events, indent=2))
    elif shape == "object":
        path.write_text(json.dumps(events[0], indent=4))
    else:
        body = "".join(json.dumps(e) + "\n" for e in events).encode()
        path.write_bytes(gzip.compress(body) if shape.endswith(".gz") else body)

    summary = ingest_file(client, path, source=SOURCE, batch_rows=2)

    assert (summary.loaded, summary.rejected) == (len(events), 0), summary.reasons
    assert [(r["event_id"], r["principal"], r["action"], r["resource"], r["bytes"]) for r in _rows(client)] == [
        (f"ev-{n}", "ann", "download", f"arn:aws:s3:::models/ckpt-{n}.pt", 1000 + n) for n in range(len(events))]
    assert sniff_source(path) is not None and sniff_source(path).name == "ocsf"


def test_a_pretty_printed_object_in_a_bad_jsonl_stays_line_by_line(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    path.write_text('{"class_uid": 6003, "metadata": {"uid": "x"\n' + json.dumps(_api_event(1)) + "\n")
    summary = ingest_file(client, path, source=SOURCE)
    assert (summary.loaded, summary.rejected, summary.reasons) == (1, 1, {"malformed JSON": 1})


def test_ingest_source_auto_picks_ocsf(capsys, monkeypatch, store_dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "event.ocsf"
    path.write_text(json.dumps(_api_event(1), indent=2))
    code, out, err = run(capsys, monkeypatch, "--dsn", store_dsn, "ingest", "--source", "auto", str(path))
    assert code == 0, err
    assert f"{path}: ocsf" in out and "loaded 1," in out


def test_joins_trainings_agent_users_and_failed_logons_map_as_a_producer_writes_them(client: Client,
                                                                                      tmp_path: Path) -> None:
    base = {"time": 1_790_000_000_000, "metadata": {"version": "1.3.0"}}
    agent = {"user": {"name": "helper-7", "type": "AI Agent", "type_id": 99}}
    events = [
        {"class_uid": 6005, "activity_id": 4, "actor": agent, "database": {"name": "hr"}, "table": {"name": "staff"},
         "query_info": {"query_string": "SELECT * FROM hr.staff s JOIN `hr.salaries` p USING (id)", "bytes": 70},
         "http_request": {"user_agent": "python-requests/2.32 jupyter-notebook/7.2"}},
        {"class_uid": 6003, "activity_id": 1, "actor": {"user": {"name": "svc-train", "type": "Service Account"}},
         "api": {"operation": "CreateTrainingJob"},
         "resources": [{"name": "run-1"}, {"name": "ds.a"}, {"name": "ds.b"}],
         "http_request": {"user_agent": "apache-airflow/2.9 python-requests/2.32"}},
        {"class_uid": 3002, "activity_id": 1, "user": {"name": "carol"}, "status_id": 2,
         "status_detail": "Internal server error", "service": {"name": "sso"}},
    ]
    path = tmp_path / "more.jsonl"
    path.write_text("".join(json.dumps({**base, **e, "metadata": {"uid": f"x-{i}", "version": "1.3.0"}}) + "\n"
                            for i, e in enumerate(events)))
    summary = ingest_file(client, path, source=SOURCE)
    assert (summary.loaded, summary.rejected) == (3, 0), summary.reasons
    got = {r["event_id"]: (r["principal_type"], r["action"], r["resource"], r["related"], r["bytes"], r["via"],
                           r["status"]) for r in _rows(client)}
    assert got == {
        "x-0": ("agent", "join", "hr.staff", ["hr.salaries"], 70, "notebook", "ok"),
        "x-1": ("service", "train", "run-1", ["ds.a", "ds.b"], 0, "pipeline", "ok"),
        "x-2": ("human", "login", "sso", [], 0, "", "error"),
    }
