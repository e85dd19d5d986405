"""The organisation as Google Cloud Audit Log entries (read back by ``features/sources/gcp_audit.py``).

Each contract row becomes one Cloud Logging ``LogEntry`` with an ``AuditLog`` payload, as
a logging sink writes it; the row's ``event_id`` is the entry's ``insertId``.

- people sign in with their Google identity (``principalEmail``); services and agents are
  workloads federated through a workload identity pool (``principalSubject``
  ``principal://…/workloadIdentityPools/corp-workloads/subject/NAME``), which the source
  names by their subject, a service (an agent by its name);
- datasets, feature tables and embeddings are BigQuery tables ``corp-data.<kind>_<area>.<table>``
  (``ds.people.chat_logs`` → ``corp-data.ds_people.chat_logs``): ``read`` (and ``download``)
  is a ``tableDataRead``, ``query`` and ``join`` a finished query job whose
  ``referencedTables`` are the resource then the joined tables, ``export`` an extract job
  to the destination (as ``gs://``), ``write`` a load job (a media upload), ``delete``
  ``DeleteTable``, ``grant``/``revoke`` a ``SetIamPolicy`` with one binding delta (a person
  ``user:``, a group ``group:NAME@corp.example``);
- models and other blobs are Cloud Storage objects (``gs://corp-models/…``,
  ``gs://corp-artifacts/…``): ``storage.objects.get``, ``.create``, ``.delete``;
- secrets are Secret Manager secrets (``AccessSecretVersion``, ``AddSecretVersion``),
  training runs Vertex AI custom jobs (``CreateCustomJob`` with the inputs as ``bq://`` and
  ``gs://`` URIs in the container's args; ``GetCustomJob`` for a read);
- sign-ins are Google Workspace login events (``google.login.LoginService``), which reach
  Cloud Logging only when Workspace shares its logs with Google Cloud: GCP's own audit
  logs have no sign-in;
- ``via`` travels in the caller's user agent, ``status`` as the ``status`` code (and the
  job's ``errorResult``).

What GCP audit logs cannot carry: byte counts outside BigQuery jobs (table reads, Cloud
Storage objects, secrets, training), row counts outside query jobs, a Cloud Storage read
apart from a download (both are ``storage.objects.get``), a table "download" apart from a
read, a group's name without its domain, the resource of a sign-in, and the resource of
a training job that failed to be created (it never got a name).
"""

from __future__ import annotations

import hashlib
from typing import Any

from . import LogFormat, iso_millis

PROJECT = "corp-data"
PROJECT_NUMBER = "482913570146"
ORGANISATION = "organizations/731946208512"
DOMAIN = "corp.example"
LOCATION = "us-central1"
POOL = (f"principal://iam.googleapis.com/projects/{PROJECT_NUMBER}/locations/global/"
        "workloadIdentityPools/corp-workloads/subject/")
AUDIT = "type.googleapis.com/google.cloud.audit.AuditLog"
BQ_METADATA = "type.googleapis.com/google.cloud.audit.BigQueryAuditMetadata"
_TABLE_KINDS = ("dataset", "embedding", "feature_table")
_BUCKETS = {"model": "corp-models", "other": "corp-artifacts"}
_AGENTS = {
    "console": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/126.0.0.0 Safari/537.36,gzip(gfe)",
    "api": "google-cloud-sdk gcloud/480.0.0 command/gcloud.bq invocation-id/5c1f interactive/False "
           "python/3.11.8 term/ (Linux 6.1.0),gzip(gfe)",
    "notebook": "gl-python/3.10.12 grpc/1.64.1 gax/2.19.0 gccl/3.25.0 colab,gzip(gfe)",
    "pipeline": "gl-python/3.11.8 gccl/3.25.0 airflow/2.9.1,gzip(gfe)",
    "ai_assistant": "gl-python/3.11.8 gccl/3.25.0 ai-assistant/1.4 (copilot),gzip(gfe)",
}
_STATUS = {"denied": {"code": 7, "message": "PERMISSION_DENIED"}, "error": {"code": 13, "message": "INTERNAL"}}


def _family(kind: str) -> str:
    if kind in _TABLE_KINDS:
        return "table"
    return kind if kind in ("secret", "training_run") else "object"


def _table(resource: str) -> tuple[str, str]:
    """The BigQuery dataset and table of a contract name (``ds.people.chat_logs``)."""
    parts = resource.split(".")
    if len(parts) < 2:
        return "misc", resource
    return "_".join(parts[:-1]).replace("-", "_"), parts[-1]


def _job_number(resource: str) -> int:
    return int.from_bytes(hashlib.blake2b(resource.encode(), digest_size=8).digest(), "big") % 10**18


def _native(resource: str, kind: str) -> str:
    """The resource's name in an audit entry's ``resourceName``."""
    family = _family(kind)
    if family == "table":
        dataset, table = _table(resource)
        return f"projects/{PROJECT}/datasets/{dataset}/tables/{table}"
    if family == "secret":
        return f"projects/{PROJECT_NUMBER}/secrets/{resource.removeprefix('secret.').replace('.', '_')}"
    if family == "training_run":
        return f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/customJobs/{_job_number(resource)}"
    return f"projects/_/buckets/{_BUCKETS.get(kind, 'corp-artifacts')}/objects/{resource}"


def resource_name(resource: str, kind: str) -> str:
    """Tables read ``project.dataset.table``, objects ``gs://bucket/object``; secrets and jobs their name."""
    family = _family(kind)
    if family == "table":
        return f"{PROJECT}.{'.'.join(_table(resource))}"
    if family == "object":
        return f"gs://{_BUCKETS.get(kind, 'corp-artifacts')}/{resource}"
    return _native(resource, kind)


def _uri(resource: str, kind: str) -> str:
    """A training input as a job's args name it."""
    name = resource_name(resource, kind)
    return f"bq://{name}" if _family(kind) == "table" else name


def _authentication(principal: str, principal_type: str) -> dict[str, Any]:
    if principal_type == "human" or "@" in principal:
        return {"principalEmail": principal}
    return {"principalSubject": POOL + principal}


def group_name(group: str) -> str:
    """Google groups are named by their e-mail address (memberships name them so too)."""
    return group if "@" in group else f"{group}@{DOMAIN}"


def _member(grantee: str) -> str:
    return f"user:{grantee}" if "@" in grantee else f"group:{group_name(grantee)}"


def _job(row: dict[str, Any], config: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    name = f"projects/{PROJECT}/jobs/bquxjob_{row['event_id'].replace('-', '_')}"
    status: dict[str, Any] = {"jobState": "DONE"}
    if row["status"] in _STATUS:
        status["errorResult"] = _STATUS[row["status"]]
    return {"jobChange": {"before": "RUNNING", "after": "DONE", "job": {
        "jobName": name, "jobConfig": config, "jobStatus": status,
        "jobStats": {"createTime": iso_millis(row["event_time"]), **stats}}}}


def _table_call(row: dict[str, Any], kinds: dict[str, str]) -> tuple[str, str, dict[str, Any], str]:
    """Method, resourceName, extra payload and log of an action on a BigQuery table."""
    action, native = row["action"], _native(row["resource"], kinds.get(row["resource"], "dataset"))
    job_method = "google.cloud.bigquery.v2.JobService.InsertJob"
    if action in ("query", "join"):
        tables = [native] + [_native(r, kinds.get(r, "dataset")) for r in row["related"]]
        metadata = _job(row, {"type": "QUERY", "queryConfig": {
            "query": "SELECT …", "statementType": "SELECT", "priority": "QUERY_INTERACTIVE"}},
            {"queryStats": {"totalProcessedBytes": str(row["bytes"]), "totalBilledBytes": str(row["bytes"]),
                            "outputRowCount": str(row["rows"]), "referencedTables": tables}})
        return job_method, metadata["jobChange"]["job"]["jobName"], {"metadata": metadata}, "data_access"
    if action == "export":
        destination = dict(row["attributes"]).get("destination", "") or f"gs://{PROJECT}-exports/"
        scheme, _, rest = destination.partition("://")
        folder = rest or scheme
        uri = f"gs://{folder}{'' if folder.endswith('/') else '/'}{_table(row['resource'])[1]}-*.avro"
        metadata = _job(row, {"type": "EXPORT", "extractConfig": {
            "destinationUris": [uri], "sourceTable": native}},
            {"extractStats": {"totalInputBytes": str(row["bytes"])}})
        return job_method, metadata["jobChange"]["job"]["jobName"], {"metadata": metadata}, "data_access"
    if action == "write":
        metadata = _job(row, {"type": "IMPORT", "loadConfig": {
            "destinationTable": native, "writeDisposition": "WRITE_APPEND"}},
            {"loadStats": {"totalOutputBytes": str(row["bytes"])}})
        return job_method, metadata["jobChange"]["job"]["jobName"], {"metadata": metadata}, "data_access"
    if action == "delete":
        return ("google.cloud.bigquery.v2.TableService.DeleteTable", native,
                {"metadata": {"tableDeletion": {"reason": "TABLE_DELETE_REQUEST"}}}, "activity")
    if action in ("grant", "revoke"):
        return _set_iam_policy(row, "google.iam.v1.IAMPolicy.SetIamPolicy", native)
    extra: dict[str, Any] = {}  # read, download and anything else: the table's rows listed
    if row["status"] == "ok":
        extra["metadata"] = {"tableDataRead": {"reason": "TABLEDATA_LIST_REQUEST", "fields": ["*"]}}
    return "google.cloud.bigquery.v2.TableDataService.List", native, extra, "data_access"


def _set_iam_policy(row: dict[str, Any], method: str, native: str) -> tuple[str, str, dict[str, Any], str]:
    role = {"reader": "roles/bigquery.dataViewer"}.get(dict(row["attributes"]).get("role", "reader"),
                                                       "roles/bigquery.dataEditor")
    delta = {"action": "ADD" if row["action"] == "grant" else "REMOVE", "role": role, "member": _member(row["grantee"])}
    return method, native, {"serviceData": {"@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
                                            "policyDelta": {"bindingDeltas": [delta]}}}, "activity"


def _call(row: dict[str, Any], kinds: dict[str, str]) -> tuple[str, str, str, dict[str, Any], str]:
    """Service, method, resourceName, extra payload and log of one row."""
    action, kind = row["action"], kinds.get(row["resource"], "other")
    family = _family(kind)
    native = _native(row["resource"], kind)
    if family == "table":
        method, name, extra, log = _table_call(row, kinds)
        if "metadata" in extra:
            extra["metadata"] = {"@type": BQ_METADATA, **extra["metadata"]}
        return "bigquery.googleapis.com", method, name, extra, log
    if family == "secret":
        prefix = "google.cloud.secretmanager.v1.SecretManagerService."
        if action == "write":
            return "secretmanager.googleapis.com", prefix + "AddSecretVersion", native, {}, "activity"
        if action == "delete":
            return "secretmanager.googleapis.com", prefix + "DeleteSecret", native, {}, "activity"
        if action in ("grant", "revoke"):
            return ("secretmanager.googleapis.com",
                    *_set_iam_policy(row, "google.iam.v1.IAMPolicy.SetIamPolicy", native))
        return "secretmanager.googleapis.com", prefix + "AccessSecretVersion", f"{native}/versions/latest", {}, \
            "data_access"
    if family == "training_run":
        prefix = "google.cloud.aiplatform.v1.JobService."
        if action == "train":
            parent = f"projects/{PROJECT}/locations/{LOCATION}"
            spec = {"machineSpec": {"machineType": "a2-highgpu-8g", "acceleratorType": "NVIDIA_TESLA_A100",
                                    "acceleratorCount": 8}, "replicaCount": "1",
                    "containerSpec": {"imageUri": f"{LOCATION}-docker.pkg.dev/{PROJECT}/train/trainer:latest",
                                      "args": [f"--data={_uri(r, kinds.get(r, 'dataset'))}" for r in row["related"]]}}
            extra: dict[str, Any] = {"request": {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.CreateCustomJobRequest", "parent": parent,
                "customJob": {"displayName": row["resource"], "jobSpec": {"workerPoolSpecs": [spec]}}}}
            if row["status"] == "ok":
                extra["response"] = {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.CustomJob",
                                     "name": native, "displayName": row["resource"], "state": "JOB_STATE_PENDING"}
            return "aiplatform.googleapis.com", prefix + "CreateCustomJob", parent, extra, "activity"
        method = {"write": "CancelCustomJob", "delete": "DeleteCustomJob"}.get(action, "GetCustomJob")
        return "aiplatform.googleapis.com", prefix + method, native, {}, "data_access" if method == "GetCustomJob" \
            else "activity"
    method = {"write": "storage.objects.create", "delete": "storage.objects.delete"}.get(action, "storage.objects.get")
    if action in ("grant", "revoke"):
        return ("storage.googleapis.com", *_set_iam_policy(row, "storage.setIamPermissions", native))
    return "storage.googleapis.com", method, native, {}, "data_access"


def _monitored_resource(service: str, method: str, name: str) -> dict[str, Any]:
    if service == "bigquery.googleapis.com":
        dataset = name.split("/datasets/")[1].split("/")[0] if "/datasets/" in name else ""
        return {"type": "bigquery_dataset" if dataset else "bigquery_project",
                "labels": {"project_id": PROJECT, **({"dataset_id": dataset} if dataset else {})}}
    if service == "storage.googleapis.com":
        return {"type": "gcs_bucket", "labels": {"project_id": PROJECT, "bucket_name": name.split("/")[3],
                                                 "location": LOCATION}}
    return {"type": "audited_resource", "labels": {"project_id": PROJECT, "service": service, "method": method}}


def record(row: dict[str, Any], kinds: dict[str, str]) -> dict[str, Any]:
    """One contract row as one Cloud Logging ``LogEntry``."""
    metadata: dict[str, Any] = {"requestAttributes": {"time": iso_millis(row["event_time"]), "auth": {}},
                                "destinationAttributes": {}}
    if row["source_ip"]:
        metadata["callerIp"] = row["source_ip"]
    if _AGENTS.get(row["via"]):
        metadata["callerSuppliedUserAgent"] = _AGENTS[row["via"]]
    payload: dict[str, Any] = {"@type": AUDIT, "authenticationInfo": _authentication(row["principal"],
                                                                                     row["principal_type"]),
                               "requestMetadata": metadata}
    if row["action"] == "login":
        failed = row["status"] != "ok"
        method = f"google.login.LoginService.login{'Failure' if failed else 'Success'}"
        payload.update(serviceName="login.googleapis.com", methodName=method, metadata={
            "@type": "type.googleapis.com/ccc_hosted_reporting.ActivityProto",
            "activityId": {"uniqQualifier": row["event_id"], "timeUsec": str(int(row["event_time"].timestamp() * 1e6))},
            "event": [{"eventType": "login", "eventName": "login_failure" if failed else "login_success",
                       "parameter": [{"name": "login_type", "value": "google_password", "type": "TYPE_STRING"}]}]})
        log_name, severity = f"{ORGANISATION}/logs/cloudaudit.googleapis.com%2Fdata_access", "NOTICE"
        resource = {"type": "audited_resource", "labels": {"service": "login.googleapis.com", "method": method}}
    else:
        service, method, name, extra, log = _call(row, kinds)
        payload.update(serviceName=service, methodName=method, resourceName=name, **extra)
        error = _STATUS.get(row["status"])
        payload["status"] = error or {}
        payload["authorizationInfo"] = [{"resource": name, "granted": row["status"] != "denied",
                                         "permission": _permission(service, method)}]
        log_name = f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2F{log}"
        severity = {"denied": "ERROR", "error": "ERROR"}.get(row["status"], "INFO")
        resource = _monitored_resource(service, method, name)
    return {
        "protoPayload": payload, "insertId": row["event_id"], "resource": resource,
        "timestamp": iso_millis(row["event_time"]), "severity": severity, "logName": log_name,
        "receiveTimestamp": iso_millis(row["event_time"]),
    }


_PERMISSIONS = {
    "InsertJob": "bigquery.jobs.create", "List": "bigquery.tables.getData", "DeleteTable": "bigquery.tables.delete",
    "AccessSecretVersion": "secretmanager.versions.access", "AddSecretVersion": "secretmanager.versions.add",
    "DeleteSecret": "secretmanager.secrets.delete", "CreateCustomJob": "aiplatform.customJobs.create",
    "GetCustomJob": "aiplatform.customJobs.get", "CancelCustomJob": "aiplatform.customJobs.cancel",
    "DeleteCustomJob": "aiplatform.customJobs.delete", "get": "storage.objects.get",
    "create": "storage.objects.create", "delete": "storage.objects.delete",
}


def _permission(service: str, method: str) -> str:
    short = method.rsplit(".", 1)[-1]
    if short in ("SetIamPolicy", "setIamPermissions"):
        return {"bigquery.googleapis.com": "bigquery.tables.setIamPolicy",
                "secretmanager.googleapis.com": "secretmanager.secrets.setIamPolicy"}.get(
            service, "storage.objects.setIamPolicy")
    return _PERMISSIONS.get(short, "")


def carried(row: dict[str, Any]) -> tuple[str, ...]:
    """What comes back unchanged (see the module's docstring for what does not).

    ``carried`` sees no catalogue, so a resource's family is told by the generator's
    name prefix (``ds.``, ``emb.``, ``ft.`` tables; ``secret.``; ``run.``; else an object).
    """
    action, status = row["action"], row["status"]
    columns = ["event_time", "event_id", "principal", "principal_type", "source_ip", "via"]
    if action == "login":
        columns.append("action")
        if status != "error":
            columns.append("status")
        return tuple(columns)
    columns.append("status")
    family = _resource_family(row)
    columns.append("grantee")  # a group under its e-mail name (group_name)
    if family == "table":
        if action == "join" and row["related"] or action == "query" and not row["related"] or action in (
                "read", "export", "write", "delete", "grant", "revoke"):
            columns.append("action")
        if action != "export":
            columns.append("related")
        columns.append("resource")
        if action in ("query", "join", "export", "write"):
            columns.append("bytes")
        if action in ("query", "join"):
            columns.append("rows")
        return tuple(columns)
    if family == "secret":
        columns += ["resource", "related"]
        if action in ("read", "write", "delete", "grant", "revoke"):
            columns.append("action")
        return tuple(columns)
    if family == "training_run":
        columns.append("related")
        if action != "train" or status == "ok":  # a job never created has no name
            columns.append("resource")
        if action in ("train", "read", "write", "delete"):
            columns.append("action")
        return tuple(columns)
    columns += ["resource", "related"]
    if action in ("download", "write", "delete", "grant", "revoke"):
        columns.append("action")
    return tuple(columns)


def _resource_family(row: dict[str, Any]) -> str:
    """The family of a row's resource from its name alone (``carried`` sees no catalogue)."""
    name = row["resource"]
    prefix = name.split(".", 1)[0]
    return {"ds": "table", "emb": "table", "ft": "table", "secret": "secret", "run": "training_run"}.get(
        prefix, "object")


FORMAT = LogFormat(name="gcp-audit", record=record, resource_name=resource_name, carried=carried,
                   group_name=group_name)
