"""The ``gcp-audit`` source: real Cloud Audit Log samples, exact rows, BigQuery v1/v2, IAM, training.

The real samples live in ``../shared/datasets`` (their licences forbid copying them into
the repository); the tests read them from there and skip when they are absent.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from clickhouse_connect.driver.client import Client

from features.ingest import ingest_file
from features.sources import discover, recognise

REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "real-audit-logs"
ELASTIC = REAL / "gcp-audit-elastic" / "test-audit.log"
PANTHER = sorted((REAL / "panther-rule-tests").glob("gcp_*.yml"))
needs_datasets = pytest.mark.skipif(not ELASTIC.is_file() or not PANTHER,
                                    reason="../shared/datasets is not beside the checkout")

AUDIT = "type.googleapis.com/google.cloud.audit.AuditLog"
COLUMNS = ("principal", "principal_type", "action", "resource", "related", "grantee", "bytes", "rows", "via",
           "status", "source_ip")


def _rows(client: Client, where: str = "1") -> list[dict[str, Any]]:
    result = client.query(f"SELECT * EXCEPT ingested_at FROM access_log WHERE {where} ORDER BY event_time, event_id")
    return [dict(zip(result.column_names, row)) for row in result.result_rows]


def _core(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in COLUMNS}


def _write(tmp_path: Path, records: list[dict[str, Any]], name: str = "audit.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _panther_events() -> list[dict[str, Any]]:
    return [test["Log"] for path in PANTHER for test in yaml.safe_load(path.read_text(encoding="utf-8"))["Tests"]]


def _entry(n: int, payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A LogEntry around ``payload`` (an AuditLog), as a Cloud Logging sink writes it."""
    base = {"@type": AUDIT, "authenticationInfo": {"principalEmail": "ann@corp.example"},
            "requestMetadata": {"callerIp": "10.1.2.3", "callerSuppliedUserAgent": "gl-python/3.11 gccl/3.25.0"}}
    return {"insertId": f"id-{n}", "logName": "projects/acme/logs/cloudaudit.googleapis.com%2Fdata_access",
            "timestamp": f"2026-10-05T09:{n:02d}:00.123456789Z", "severity": "INFO",
            "resource": {"type": "bigquery_project", "labels": {"project_id": "acme"}},
            "protoPayload": {**base, **payload}, **extra}


# --- BigQuery v1 (AuditData in serviceData) and v2 (BigQueryAuditMetadata in metadata) ----


def _v1_table(table: str) -> dict[str, str]:
    project, dataset, name = table.split(".")
    return {"projectId": project, "datasetId": dataset, "tableId": name}


def _v1_job(n: int, configuration: dict[str, Any], statistics: dict[str, Any]) -> dict[str, Any]:
    job = {"jobName": {"projectId": "acme", "jobId": f"job_{n}", "location": "US"},
           "jobConfiguration": configuration, "jobStatus": {"state": "DONE"},
           "jobStatistics": {"createTime": "2026-10-05T09:00:00Z", **statistics}}
    return _entry(n, {"serviceName": "bigquery.googleapis.com", "methodName": "jobservice.jobcompleted",
                      "resourceName": f"projects/acme/jobs/job_{n}", "status": {},
                      "serviceData": {"@type": "type.googleapis.com/google.cloud.bigquery.logging.v1.AuditData",
                                      "jobCompletedEvent": {"eventName": "query_job_completed", "job": job}}})


def _v2_job(n: int, config: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    job = {"jobName": f"projects/acme/jobs/job_{n}", "jobConfig": config,
           "jobStatus": {"jobState": "DONE"}, "jobStats": {"createTime": "2026-10-05T09:00:00Z", **stats}}
    return _entry(n, {"serviceName": "bigquery.googleapis.com",
                      "methodName": "google.cloud.bigquery.v2.JobService.InsertJob",
                      "resourceName": f"projects/acme/jobs/job_{n}", "status": {},
                      "metadata": {"@type": "type.googleapis.com/google.cloud.audit.BigQueryAuditMetadata",
                                   "jobChange": {"before": "RUNNING", "after": "DONE", "job": job}}})


JOINED = ["acme.hr.salaries", "acme.chat.messages", "acme.telemetry.keystrokes"]


def _v1_join(n: int) -> dict[str, Any]:
    return _v1_job(n, {"query": {"query": "SELECT …", "statementType": "SELECT"}},
                   {"totalProcessedBytes": "734003200", "queryOutputRowCount": "5120",
                    "referencedTables": [_v1_table(t) for t in JOINED]})


def _v2_join(n: int) -> dict[str, Any]:
    tables = [f"projects/{t.split('.')[0]}/datasets/{t.split('.')[1]}/tables/{t.split('.')[2]}" for t in JOINED]
    return _v2_job(n, {"type": "QUERY", "queryConfig": {"query": "SELECT …", "statementType": "SELECT"}},
                   {"queryStats": {"totalProcessedBytes": "734003200", "outputRowCount": "5120",
                                   "referencedTables": tables}})


JOIN_ROW = {"principal": "ann@corp.example", "principal_type": "human", "action": "join",
            "resource": "acme.hr.salaries", "related": ["acme.chat.messages", "acme.telemetry.keystrokes"],
            "grantee": "", "bytes": 734003200, "rows": 5120, "via": "api", "status": "ok", "source_ip": "10.1.2.3"}


def _v1_extract(n: int) -> dict[str, Any]:
    return _v1_job(n, {"extract": {"destinationUris": ["gs://outside-bucket/dump-*.csv"],
                                   "sourceTable": _v1_table("acme.hr.salaries")}}, {})


def _v2_extract(n: int) -> dict[str, Any]:
    return _v2_job(n, {"type": "EXPORT", "extractConfig": {"destinationUris": ["gs://outside-bucket/dump-*.csv"],
                                                           "sourceTable": "projects/acme/datasets/hr/tables/salaries"}},
                   {"extractStats": {"totalInputBytes": "1048576"}})


def _v2_table_read(n: int) -> dict[str, Any]:
    return _entry(n, {"serviceName": "bigquery.googleapis.com",
                      "methodName": "google.cloud.bigquery.v2.TableDataService.List",
                      "resourceName": "projects/acme/datasets/hr/tables/salaries", "status": {},
                      "metadata": {"@type": "type.googleapis.com/google.cloud.audit.BigQueryAuditMetadata",
                                   "tableDataRead": {"fields": ["name", "salary"],
                                                     "reason": "TABLEDATA_LIST_REQUEST"}}})


def _v1_table_read(n: int) -> dict[str, Any]:
    return _entry(n, {"serviceName": "bigquery.googleapis.com", "methodName": "tabledata.list",
                      "resourceName": "projects/acme/datasets/hr/tables/salaries", "status": {},
                      "serviceData": {"@type": "type.googleapis.com/google.cloud.bigquery.logging.v1.AuditData",
                                      "tableDataListRequest": {"maxResults": 100}}})


def _set_iam_policy(n: int, *deltas: tuple[str, str, str]) -> dict[str, Any]:
    return _entry(n, {"serviceName": "bigquery.googleapis.com", "methodName": "google.iam.v1.IAMPolicy.SetIamPolicy",
                      "resourceName": "projects/acme/datasets/hr/tables/salaries", "status": {},
                      "requestMetadata": {"callerIp": "203.0.113.9",
                                          "callerSuppliedUserAgent": "Mozilla/5.0 (X11) Chrome/120.0,gzip(gfe)"},
                      "serviceData": {"@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
                                      "policyDelta": {"bindingDeltas": [
                                          {"action": a, "role": r, "member": m} for a, r, m in deltas]}}},
                  logName="projects/acme/logs/cloudaudit.googleapis.com%2Factivity")


def _vertex_training(n: int) -> dict[str, Any]:
    spec = {"machineSpec": {"machineType": "n1-standard-8"}, "replicaCount": "1",
            "containerSpec": {"imageUri": "us-docker.pkg.dev/acme/train:1",
                              "args": ["--train=gs://acme-data/chat/2026-09/*.jsonl", "--epochs=3",
                                       "--eval", "bq://acme.hr.salaries"],
                              "env": [{"name": "EXTRA", "value": "gs://acme-data/telemetry/keys.parquet"}]}}
    return _entry(n, {"serviceName": "aiplatform.googleapis.com",
                      "methodName": "google.cloud.aiplatform.v1.JobService.CreateCustomJob",
                      "resourceName": "projects/acme/locations/us-central1",
                      "authenticationInfo": {"principalEmail": "trainer@acme.iam.gserviceaccount.com"},
                      "request": {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.CreateCustomJobRequest",
                                  "parent": "projects/acme/locations/us-central1",
                                  "customJob": {"displayName": "tune-chat",
                                                "jobSpec": {"workerPoolSpecs": [spec],
                                                            "baseOutputDirectory": {
                                                                "outputUriPrefix": "gs://acme-models/out"}}}},
                      "response": {"name": "projects/123/locations/us-central1/customJobs/456",
                                   "@type": "type.googleapis.com/google.cloud.aiplatform.v1.CustomJob"}},
                  logName="projects/acme/logs/cloudaudit.googleapis.com%2Factivity")


# --- the real samples --------------------------------------------------------------------


def test_the_source_is_discovered_and_recognises_audit_log_entries() -> None:
    source = discover()["gcp-audit"]
    assert recognise(_v2_join(1)) is source
    assert recognise({"protoPayload": {"at_sign_type": AUDIT}}) is source  # Panther's normalised copies
    assert recognise({"protoPayload": {"@type": "type.googleapis.com/google.appengine.logging.v1.RequestLog"}}) is None
    assert recognise({"protoPayload": "text"}) is None
    assert source.parameters["agent_pattern"]


@needs_datasets
def test_every_real_record_is_loaded_or_rejected_with_a_reason(client: Client, tmp_path: Path) -> None:
    elastic = ingest_file(client, ELASTIC, source="gcp-audit")
    lines = sum(1 for line in ELASTIC.read_text(encoding="utf-8").splitlines() if line.strip())
    assert (elastic.rows, elastic.loaded, elastic.rejected) == (lines, lines, 0), elastic

    events = _panther_events()
    panther = ingest_file(client, _write(tmp_path, events, "panther.jsonl"), source="gcp-audit")
    assert panther.rows == len(events)
    # The two deployment-manager events carry no authenticationInfo at all: nobody to name.
    assert (panther.loaded, panther.rejected, panther.reasons) == (len(events) - 2, 2, {"missing principal": 2})
    stored = dict(client.query("SELECT reason, count() FROM rejected_rows GROUP BY reason").result_rows)
    assert stored == {"missing principal": 2}
    assert client.query("SELECT countIf(attributes['source'] != 'gcp-audit') FROM access_log").result_rows == [(0,)]


@needs_datasets
def test_two_real_records_map_exactly(client: Client, tmp_path: Path) -> None:
    ingest_file(client, ELASTIC, source="gcp-audit")
    denied = _rows(client, "attributes['insert_id'] = '-h6onuze1h7dg'")[0]
    assert _core(denied) == {
        "principal": "xxx@xxx.xxx", "principal_type": "human", "action": "read",
        "resource": "projects/elastic-beats/global/machineTypes", "related": [], "grantee": "", "bytes": 0,
        "rows": 0, "via": "console", "status": "denied", "source_ip": "192.168.1.1"}  # granted: false
    assert denied["event_id"] == "-h6onuze1h7dg"  # the insertId; its log is in log_name
    assert denied["event_time"].isoformat().startswith("2019-12-19T00:45:51.228")
    assert denied["attributes"] == {
        "source": "gcp-audit", "log_name": "projects/elastic-beats/logs/cloudaudit.googleapis.com%2Fdata_access",
        "log_type": "data_access", "service_name": "compute.googleapis.com",
        "method_name": "beta.compute.machineTypes.aggregatedList", "insert_id": "-h6onuze1h7dg",
        "resource_type": "api", "project": "elastic-beats", "severity": "INFO",
        "permission": "compute.machineTypes.list",
        "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:71.0) Gecko/20100101 Firefox/71.0,"
                      "gzip(gfe),gzip(gfe)",
        "num_response_items": "71"}

    backdoor = next(e for e in _panther_events() if e.get("insertId") == "-lmjke7dbt7y")
    ingest_file(client, _write(tmp_path, [backdoor]), source="gcp-audit")
    grant = _rows(client, "attributes['insert_id'] = '-lmjke7dbt7y'")[0]
    assert _core(grant) == {
        "principal": "terraform@platform.iam.gserviceaccount.com", "principal_type": "service", "action": "grant",
        "resource": "organizations/888888888888", "related": [], "grantee": "backdoor@example.com", "bytes": 0,
        "rows": 0, "via": "api", "status": "ok", "source_ip": "100.100.100.100"}
    # Panther writes the time zoneless, in UTC, to the nanosecond.
    assert grant["event_time"].isoformat().startswith("2022-05-05T14:00:48.814")
    assert {k: grant["attributes"].get(k) for k in ("binding_role", "binding_deltas", "method_name", "log_type")} == {
        "binding_role": "roles/owner", "binding_deltas": "1", "method_name": "SetIamPolicy", "log_type": "activity"}


# --- synthetic records -------------------------------------------------------------------


def test_bigquery_v1_and_v2_records_give_the_same_rows(client: Client, tmp_path: Path) -> None:
    ingest_file(client, _write(tmp_path, [_v1_join(1), _v2_join(2), _v1_extract(3), _v2_extract(4),
                                          _v1_table_read(5), _v2_table_read(6)]), source="gcp-audit")
    rows = _rows(client)
    assert [r["action"] for r in rows] == ["join", "join", "export", "export", "read", "read"]
    assert _core(rows[0]) == JOIN_ROW
    assert _core(rows[1]) == JOIN_ROW  # drift: the same job, written as BigQueryAuditMetadata
    export = {"action": "export", "resource": "acme.hr.salaries", "related": ["gs://outside-bucket/dump-*.csv"]}
    assert {k: rows[2][k] for k in export} == export
    assert {k: rows[3][k] for k in export} == export
    assert rows[3]["bytes"] == 1048576 and rows[2]["bytes"] == 0  # v1 extract jobs carry no byte count
    assert rows[2]["attributes"]["destination_uris"] == "gs://outside-bucket/dump-*.csv"
    assert _core(rows[4]) == _core(rows[5]) == {**JOIN_ROW, "action": "read", "related": [], "bytes": 0, "rows": 0}
    assert [r["attributes"].get("bq_event") for r in rows] == [
        "jobCompletedEvent", "jobChange", "jobCompletedEvent", "jobChange", None, "tableDataRead"]
    assert [r["attributes"].get("job_name") for r in rows[:2]] == ["acme:job_1", "acme:job_2"]


def test_a_single_table_query_is_a_query_and_an_unfinished_job_is_not_a_data_access(
        client: Client, tmp_path: Path) -> None:
    one = _v2_job(1, {"type": "QUERY", "queryConfig": {"query": "SELECT 1"}},
                  {"queryStats": {"referencedTables": ["projects/acme/datasets/hr/tables/salaries"],
                                  "totalProcessedBytes": 10}})
    running = copy.deepcopy(_v2_join(2))
    running["protoPayload"]["metadata"]["jobChange"].update(before="PENDING", after="RUNNING")
    running["protoPayload"]["metadata"]["jobChange"]["job"]["jobStatus"]["jobState"] = "RUNNING"
    ingest_file(client, _write(tmp_path, [one, running]), source="gcp-audit")
    query, started = _rows(client)
    assert (query["action"], query["resource"], query["related"], query["bytes"]) == (
        "query", "acme.hr.salaries", [], 10)
    # Its tables and statistics arrive with the job's completion record; this one only started it.
    assert (started["action"], started["resource"], started["bytes"]) == ("write", "acme:job_2", 0)


def test_set_iam_policy_adds_and_removes_are_grants_and_revokes(client: Client, tmp_path: Path) -> None:
    records = [_set_iam_policy(1, ("ADD", "roles/bigquery.dataViewer", "group:all-staff@corp.example")),
               _set_iam_policy(2, ("REMOVE", "roles/bigquery.dataViewer", "group:all-staff@corp.example")),
               _set_iam_policy(3, ("ADD", "roles/bigquery.dataViewer", "allUsers"),
                               ("ADD", "roles/bigquery.dataEditor", "user:bob@corp.example"),
                               ("REMOVE", "roles/owner", "serviceAccount:old@acme.iam.gserviceaccount.com"))]
    ingest_file(client, _write(tmp_path, records), source="gcp-audit")
    grant, revoke, public = _rows(client)
    assert _core(grant) == {
        "principal": "ann@corp.example", "principal_type": "human", "action": "grant",
        "resource": "acme.hr.salaries", "related": [], "grantee": "all-staff@corp.example", "bytes": 0,
        "rows": 0, "via": "console", "status": "ok", "source_ip": "203.0.113.9"}
    assert (revoke["action"], revoke["grantee"]) == ("revoke", "all-staff@corp.example")
    # One row per entry: the first delta, the rest counted and listed.
    assert (public["action"], public["grantee"]) == ("grant", "allUsers")
    assert public["attributes"]["binding_deltas"] == "3"
    assert public["attributes"]["other_bindings"] == (
        "ADD roles/bigquery.dataEditor user:bob@corp.example; "
        "REMOVE roles/owner serviceAccount:old@acme.iam.gserviceaccount.com")


def test_a_vertex_training_job_is_train_with_its_inputs(client: Client, tmp_path: Path) -> None:
    ml_engine = _entry(2, {"serviceName": "ml.googleapis.com", "methodName": "google.cloud.ml.v1.JobService.CreateJob",
                           "resourceName": "projects/acme/jobs/legacy_7",
                           "authenticationInfo": {"principalEmail": "fine-tune-agent@acme.iam.gserviceaccount.com"},
                           "request": {"parent": "projects/acme", "job": {"jobId": "legacy_7", "trainingInput": {
                               "packageUris": ["gs://acme-code/trainer.tar.gz"],
                               "args": ["--data", "gs://acme-data/hr/salaries.csv"]}}}})
    ingest_file(client, _write(tmp_path, [_vertex_training(1), ml_engine]), source="gcp-audit")
    vertex, legacy = _rows(client)
    assert _core(vertex) == {
        "principal": "trainer@acme.iam.gserviceaccount.com", "principal_type": "service", "action": "train",
        "resource": "projects/123/locations/us-central1/customJobs/456",
        # A bq:// input is named as BigQuery names its table everywhere else.
        "related": ["gs://acme-data/chat/2026-09/*.jsonl", "acme.hr.salaries",
                    "gs://acme-data/telemetry/keys.parquet"],
        "grantee": "", "bytes": 0, "rows": 0, "via": "api", "status": "ok", "source_ip": "10.1.2.3"}
    # The code package and the output directory are not inputs; the agent pattern names the agent.
    assert (legacy["action"], legacy["principal_type"], legacy["resource"], legacy["related"]) == (
        "train", "agent", "projects/acme/jobs/legacy_7", ["gs://acme-data/hr/salaries.csv"])


def test_storage_reads_writes_deletes_and_failures(client: Client, tmp_path: Path) -> None:
    def storage(n: int, method: str, **payload: Any) -> dict[str, Any]:
        return _entry(n, {"serviceName": "storage.googleapis.com", "methodName": method,
                          "resourceName": "projects/_/buckets/acme-models/objects/ckpt/step-9.pt", **payload})

    records = [storage(1, "storage.objects.get"), storage(2, "storage.objects.create"),
               storage(3, "storage.objects.delete"), storage(4, "storage.objects.list"),
               storage(5, "storage.objects.get", status={"code": 7, "message": "PERMISSION_DENIED"}),
               storage(6, "storage.objects.get", status={"code": 16}),
               storage(7, "storage.objects.get", status={"code": 5, "message": "NOT_FOUND"}),
               storage(8, "storage.objects.get", authorizationInfo=[{"permission": "storage.objects.get",
                                                                     "granted": False}])]
    ingest_file(client, _write(tmp_path, records), source="gcp-audit")
    rows = _rows(client)
    assert [(r["action"], r["status"]) for r in rows] == [
        ("download", "ok"), ("write", "ok"), ("delete", "ok"), ("read", "ok"),
        ("download", "denied"), ("download", "denied"), ("download", "error"), ("download", "denied")]
    assert {r["resource"] for r in rows} == {"gs://acme-models/ckpt/step-9.pt"}
    assert rows[6]["attributes"]["status_code"] == "5" and rows[6]["attributes"]["status_message"] == "NOT_FOUND"


def test_nanosecond_times_and_missing_optional_fields(client: Client, tmp_path: Path) -> None:
    bare = {"timestamp": "2026-10-05T09:30:00.987654321Z",
            "protoPayload": {"@type": AUDIT, "methodName": "GetSecret", "serviceName": "secretmanager.googleapis.com",
                             "authenticationInfo": {"principalSubject": "user:eve@corp.example"}}}
    delegated = {"insertId": "d1", "timestamp": "2026-10-05T09:31:00Z",
                 "protoPayload": {"@type": AUDIT, "methodName": "ListBuckets", "serviceName": "storage.googleapis.com",
                                  "authenticationInfo": {"serviceAccountDelegationInfo": [
                                      {"firstPartyPrincipal": {"principalEmail": "svc@acme.iam.gserviceaccount.com"}}]},
                                  "requestMetadata": {"callerIp": "private"}}}
    no_time = {"insertId": "t0", "protoPayload": {"@type": AUDIT, "authenticationInfo": {"principalEmail": "a@b.c"},
                                                  "methodName": "x.get"}}
    summary = ingest_file(client, _write(tmp_path, [bare, delegated, no_time, "not an object"]), source="gcp-audit")
    assert (summary.loaded, summary.rejected) == (2, 2)
    assert summary.reasons == {"missing event_time": 1, "not a JSON object": 1}
    secret, buckets = _rows(client)
    assert secret["event_time"].isoformat().startswith("2026-10-05T09:30:00.987000")  # to the millisecond
    assert _core(secret) == {
        "principal": "eve@corp.example", "principal_type": "human", "action": "read",
        "resource": "secretmanager.googleapis.com:GetSecret", "related": [], "grantee": "", "bytes": 0, "rows": 0,
        "via": "", "status": "ok", "source_ip": ""}
    assert secret["event_id"].startswith("h:")  # no insertId: the contract's content id
    assert (buckets["principal"], buckets["principal_type"], buckets["source_ip"], buckets["event_id"]) == (
        "svc@acme.iam.gserviceaccount.com", "service", "", "d1")
    assert buckets["attributes"]["caller_ip"] == "private"


def test_a_gzipped_json_array_loads_and_reingesting_counts_once(client: Client, tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "entries.json.gz"
    path.write_bytes(gzip.compress(json.dumps([_v1_join(1), _v2_extract(2)], indent=1).encode()))
    assert ingest_file(client, path, source="gcp-audit").loaded == 2
    again = ingest_file(client, path, source="gcp-audit")
    assert (again.loaded, again.duplicates) == (0, 2)


def test_federated_identities_secrets_logins_and_channels(client: Client, tmp_path: Path) -> None:
    pool = "principal://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci/subject/"
    workforce = "principal://iam.googleapis.com/locations/global/workforcePools/okta/subject/"
    records = [
        _entry(1, {"serviceName": "secretmanager.googleapis.com",
                   "methodName": "google.cloud.secretmanager.v1.SecretManagerService.AccessSecretVersion",
                   "resourceName": "projects/123/secrets/db-password/versions/7",
                   "authenticationInfo": {"principalSubject": pool + "etl-runner"},
                   "requestMetadata": {"callerIp": "10.0.0.9",
                                       "callerSuppliedUserAgent": "gl-python/3.11 gccl/3.25.0 airflow/2.9.1"}}),
        _entry(2, {"serviceName": "storage.googleapis.com", "methodName": "storage.objects.get",
                   "resourceName": "projects/_/buckets/acme-models/objects/ckpt/step-9.pt",
                   "authenticationInfo": {"principalSubject": pool + "support-agent"},
                   "requestMetadata": {"callerSuppliedUserAgent": "gl-python/3.11 ai-assistant/1.4 (copilot)"}}),
        _entry(3, {"serviceName": "login.googleapis.com", "methodName": "google.login.LoginService.loginFailure",
                   "authenticationInfo": {"principalSubject": workforce + "ann@corp.example"}}),
        _set_iam_policy(4, ("ADD", "roles/bigquery.dataViewer", pool + "etl-runner")),
    ]
    ingest_file(client, _write(tmp_path, records), source="gcp-audit")
    secret, model, login, grant = _rows(client)
    assert (secret["principal"], secret["principal_type"], secret["action"], secret["resource"], secret["via"]) == (
        "etl-runner", "service", "read", "projects/123/secrets/db-password", "pipeline")
    assert secret["attributes"]["principal_subject"] == pool + "etl-runner"
    assert (model["principal"], model["principal_type"], model["via"]) == ("support-agent", "agent", "ai_assistant")
    assert (login["principal"], login["principal_type"], login["action"], login["status"]) == (
        "ann@corp.example", "human", "login", "denied")
    assert grant["grantee"] == "etl-runner"
