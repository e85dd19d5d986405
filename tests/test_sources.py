"""Real log formats through their sources: the shared real samples, exact rows, file shapes.

The real samples live in ``../shared/datasets`` (their licences forbid copying them into
the repository); the tests read them from there.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from test_cli import run

from features.ingest import ingest_file
from features.sources import discover, recognise

DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
CLOUDTRAIL = sorted((DATASETS / "real-audit-logs" / "cloudtrail-elastic").glob("*.log"))
STRATUS = sorted((DATASETS / "stratus-red-team-cloudtrail").glob("*.json"))
needs_datasets = pytest.mark.skipif(not CLOUDTRAIL or not STRATUS,
                                    reason="../shared/datasets is not beside the checkout")


def _records(path: Path) -> int:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return len(json.loads(text))
    if text.lstrip().startswith('{"Records"'):
        return len(json.loads(text)["Records"])
    return sum(1 for line in text.splitlines() if line.strip())


def _rows(client: Client, where: str = "1") -> list[dict]:
    result = client.query(f"SELECT * EXCEPT ingested_at FROM access_log WHERE {where} ORDER BY event_id")
    return [dict(zip(result.column_names, row)) for row in result.result_rows]


def test_the_sources_are_discovered_and_recognise_their_records() -> None:
    found = discover()
    assert "cloudtrail" in found
    cloudtrail = {"eventVersion": "1.09", "eventSource": "s3.amazonaws.com", "eventName": "GetObject",
                  "userIdentity": {"type": "IAMUser"}}
    assert recognise(cloudtrail) is found["cloudtrail"]
    assert recognise({"event_time": "2026-10-05T09:00:00Z", "principal": "ann"}) is None


@needs_datasets
def test_every_real_cloudtrail_record_is_loaded_or_rejected_with_a_reason(client: Client) -> None:
    tried = loaded = rejected = 0
    for path in CLOUDTRAIL + STRATUS:
        summary = ingest_file(client, path, source="cloudtrail")
        expected = _records(path)
        assert summary.rows == expected, (path.name, summary)
        tried += expected
        loaded += summary.loaded + summary.duplicates
        rejected += summary.rejected
    reasons = dict(client.query("SELECT reason, count() FROM rejected_rows GROUP BY reason").result_rows)
    assert all(reasons), reasons
    assert sum(reasons.values()) == rejected
    assert loaded >= 0.95 * tried, (loaded, rejected, reasons)  # the rest: records with no time or no caller


@needs_datasets
def test_a_cross_account_copy_and_a_shared_snapshot_map_exactly(client: Client) -> None:
    ingest_file(client, CLOUDTRAIL[0].parent / "test-copy-object-json.log", source="cloudtrail")
    row = _rows(client, "event_id = '0c06e2ff-5e88-44e6-a081-57871bbe770b'")[0]
    assert {k: row[k] for k in ("principal", "principal_type", "action", "resource", "grantee", "bytes", "via",
                                "status", "source_ip")} == {
        "principal": "test@elastic.co", "principal_type": "human", "action": "write",
        "resource": "s3://elastic-cspm-cloudtrail-test-bucket/test-copy-object/README-copy.md", "grantee": "",
        "bytes": 0, "via": "api", "status": "ok", "source_ip": "216.160.83.56"}
    assert row["event_time"].isoformat().startswith("2024-10-08T12:24:16")
    assert row["attributes"]["event_name"] == "CopyObject" and row["attributes"]["source"] == "cloudtrail"
    assert row["attributes"]["identity_type"] == "IAMUser"

    stratus = DATASETS / "stratus-red-team-cloudtrail" / "aws.exfiltration.ec2-share-ebs-snapshot.json"
    ingest_file(client, stratus, source="cloudtrail")
    shares = _rows(client, "attributes['event_name'] = 'ModifySnapshotAttribute'")
    assert [(r["action"], r["resource"], r["grantee"]) for r in shares] == [
        ("grant", "snap-041993b54a9b3af6f", "098797384747")]


@needs_datasets
def test_a_secret_read_by_an_assumed_role_is_a_service_reading_a_secret(client: Client) -> None:
    stratus = DATASETS / "stratus-red-team-cloudtrail" / "aws.credential-access.secretsmanager-retrieve-secrets.json"
    ingest_file(client, stratus, source="cloudtrail")
    reads = _rows(client, "attributes['event_name'] = 'GetSecretValue'")
    assert reads and all(r["action"] == "read" and r["resource"].startswith("arn:aws:secretsmanager:")
                         for r in reads)


def _cloudtrail_record(n: int, **extra) -> dict:
    return {"eventVersion": "1.09", "eventID": f"ev-{n}", "eventTime": f"2026-10-05T09:{n:02d}:00Z",
            "eventSource": "s3.amazonaws.com", "eventName": "GetObject",
            "userIdentity": {"type": "IAMUser", "userName": "ann", "arn": "arn:aws:iam::1:user/ann"},
            "requestParameters": {"bucketName": "models", "key": f"ckpt-{n}.pt"},
            "additionalEventData": {"bytesTransferredOut": 1000 + n}, **extra}


@pytest.mark.parametrize("shape", ["envelope", "array", "jsonl", "envelope.gz"])
def test_every_cloudtrail_file_shape_loads_the_same_rows(client: Client, tmp_path: Path, shape: str) -> None:
    records = [_cloudtrail_record(n) for n in range(5)]
    records.append({"eventVersion": "1.0", "eventSource": "s3.amazonaws.com", "eventName": "GetObject"})  # no time
    if shape == "jsonl":
        body = "".join(json.dumps(r) + "\n" for r in records)
    elif shape == "array":
        body = json.dumps(records, indent=2)
    else:
        body = json.dumps({"Records": records})
    path = tmp_path / f"trail.{'json.gz' if shape.endswith('.gz') else 'json'}"
    path.write_bytes(gzip.compress(body.encode()) if shape.endswith(".gz") else body.encode())

    summary = ingest_file(client, path, source="cloudtrail")

    assert (summary.loaded, summary.rejected) == (5, 1)
    assert [(r["principal"], r["action"], r["resource"], r["bytes"]) for r in _rows(client)] == [
        ("ann", "download", f"s3://models/ckpt-{n}.pt", 1000 + n) for n in range(5)]
    rejection = client.query("SELECT line, reason FROM rejected_rows").result_rows
    assert rejection == [(6, "missing event_time")]  # the 6th record, with its reason


def test_older_records_with_timestamp_instead_of_event_time_load(client: Client, tmp_path: Path) -> None:
    record = _cloudtrail_record(1)
    record["@timestamp"] = record.pop("eventTime")
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(record) + "\n")
    assert ingest_file(client, path, source="cloudtrail").loaded == 1


def test_ingest_source_auto_says_what_it_chose(capsys, monkeypatch, store_dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "trail.json"
    path.write_text(json.dumps({"Records": [_cloudtrail_record(1)]}))
    code, out, err = run(capsys, monkeypatch, "--dsn", store_dsn, "ingest", "--source", "auto", str(path))
    assert code == 0, err
    assert f"{path}: cloudtrail" in out and "loaded 1," in out
    contract = tmp_path / "contract.jsonl"
    contract.write_text(json.dumps({"event_time": "2026-10-05T09:00:00Z", "principal": "ann", "action": "read",
                                    "resource": "ds.a"}) + "\n")
    code, out, err = run(capsys, monkeypatch, "--dsn", store_dsn, "ingest", "--source", "auto", str(contract))
    assert code == 0 and f"{contract}: contract" in out and "loaded 1," in out
    code, out, err = run(capsys, monkeypatch, "--dsn", store_dsn, "ingest", "--source", "nope", str(contract))
    assert code == 2 and "unknown source 'nope'" in err


def test_blastwall_sources_lists_what_each_sees(capsys, monkeypatch) -> None:
    code, out, _ = run(capsys, monkeypatch, "sources")
    assert code == 0
    named = [line.split(":", 1)[0] for line in out.splitlines() if not line.startswith(" ")]
    assert named == sorted(discover()) and {"cloudtrail", "ocsf", "gcp-audit", "clickhouse-query-log"} <= set(named)
    assert out.count("  cannot see: ") == len(named) and "cannot see: joins" in out


def test_a_document_that_is_not_valid_json_is_one_rejection(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"Records": [' + json.dumps(_cloudtrail_record(1)) + ", {oops")
    summary = ingest_file(client, path, source="cloudtrail")
    assert (summary.loaded, summary.rejected, summary.reasons) == (0, 1, {"malformed JSON": 1})


PANTHER = DATASETS / "real-audit-logs" / "panther-rule-tests"


@pytest.mark.skipif(not PANTHER.is_dir(), reason="../shared/datasets is not beside the checkout")
def test_every_panther_cloudtrail_test_event_is_loaded_or_rejected_with_a_reason(client: Client,
                                                                                 tmp_path: Path) -> None:
    import yaml

    events = [test["Log"] for path in sorted(PANTHER.glob("aws_*.yml"))
              for test in yaml.safe_load(path.read_text(encoding="utf-8")).get("Tests", [])]
    assert len(events) >= 10
    path = tmp_path / "panther.jsonl"
    path.write_text("".join(json.dumps(event, default=str) + "\n" for event in events), encoding="utf-8")
    summary = ingest_file(client, path, source="cloudtrail")
    assert summary.rows == len(events) and summary.rejected == sum(summary.reasons.values())
    assert all(summary.reasons)
    assert summary.loaded + summary.duplicates >= len(events) - 2, summary.reasons
    copies = _rows(client, "attributes['event_name'] = 'CopyObject' AND action = 'export'")
    assert copies and all(r["attributes"]["destination"].startswith("s3://") for r in copies)
