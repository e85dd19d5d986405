"""The organisation as AWS CloudTrail records (read back by ``features/sources/cloudtrail.py``).

How each contract row is written:

- people are IAM users; services and agents assume a role named after them (the source
  tells an agent by its name, as it would in a real account);
- data (datasets, embeddings, models, feature tables) are S3 objects in one bucket:
  ``read`` and ``query`` are ``SelectObjectContent``, ``join`` reads its first table,
  ``download`` is ``GetObject``, ``write`` ``PutObject``, ``delete`` ``DeleteObject``,
  ``export`` a ``CopyObject`` into the destination's bucket, ``grant`` a ``PutObjectAcl``
  with an ``x-amz-grant-read`` header, ``revoke`` a ``PutObjectAcl`` back to private;
- secrets are Secrets Manager secrets (``GetSecretValue``), training runs SageMaker
  training jobs (``CreateTrainingJob`` with the inputs as channels), sign-ins
  ``ConsoleLogin``;
- ``via`` travels in the user agent, ``status`` as an ``errorCode``.

CloudTrail has no joins, no query text and no row counts: a join comes back as a read of
one table, a query as a read, rows as 0, and a revoke without the grantee it removed.
"""

from __future__ import annotations

import zlib
from typing import Any

from . import LogFormat, iso_millis

ACCOUNT = "123456789012"
DATA_BUCKET = "corp-data"
_S3_KINDS = ("dataset", "embedding", "model", "feature_table", "other")
_AGENTS = {
    "console": "console.amazonaws.com", "api": "aws-cli/2.15.30 Python/3.11.8 Linux/6.1",
    "notebook": "Boto3/1.34.0 md/jupyter-notebook", "pipeline": "Boto3/1.34.0 exec-env/airflow",
    "ai_assistant": "Boto3/1.34.0 md/ai-assistant copilot", "": "",
}
_ERRORS = {"denied": ("AccessDenied", "Access Denied"), "error": ("InternalError", "We encountered an internal error")}


def resource_name(resource: str, kind: str) -> str:
    """Data are S3 objects of one bucket; secrets and training runs keep their names."""
    return f"s3://{DATA_BUCKET}/{resource}" if kind in _S3_KINDS else resource


def _identity(principal: str, principal_type: str) -> dict[str, Any]:
    if principal_type == "human":
        return {"type": "IAMUser", "principalId": f"AIDA{zlib.crc32(principal.encode()):012d}",
                "arn": f"arn:aws:iam::{ACCOUNT}:user/{principal}", "accountId": ACCOUNT, "userName": principal}
    return {"type": "AssumedRole", "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{principal}/session",
            "accountId": ACCOUNT, "sessionContext": {"sessionIssuer": {
                "type": "Role", "arn": f"arn:aws:iam::{ACCOUNT}:role/{principal}", "userName": principal}}}


def _s3_call(row: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The S3 event name, request parameters and additional data of an action on an object."""
    action, key, size = row["action"], row["resource"], row["bytes"]
    target = {"bucketName": DATA_BUCKET, "key": key}
    if action == "download":
        return "GetObject", target, {"bytesTransferredOut": size}
    if action == "write":
        return "PutObject", target, {"bytesTransferredIn": size}
    if action == "delete":
        return "DeleteObject", target, {}
    if action == "export":
        destination = dict(row["attributes"]).get("destination", "") or "s3://unknown-destination/"
        bucket, _, folder = destination.split("://", 1)[-1].partition("/")
        copy = {"bucketName": bucket, "key": f"{folder}{key.rsplit('/', 1)[-1]}",
                "x-amz-copy-source": f"{DATA_BUCKET}/{key}"}
        return "CopyObject", copy, {"bytesTransferredOut": size}
    if action == "grant":
        return "PutObjectAcl", {**target, "acl": "", "x-amz-grant-read": f'id="{row["grantee"]}"'}, {}
    if action == "revoke":
        return "PutObjectAcl", {**target, "x-amz-acl": "private"}, {}
    return "SelectObjectContent", target, {"bytesTransferredOut": size}  # read, query, join


def record(row: dict[str, Any], kinds: dict[str, str]) -> dict[str, Any]:
    """One contract row as one CloudTrail record."""
    kind = kinds.get(row["resource"], "other")
    action = row["action"]
    extra: dict[str, Any] = {}
    if action == "login":
        source, name, parameters = "signin.amazonaws.com", "ConsoleLogin", None
        extra["responseElements"] = {"ConsoleLogin": "Failure" if row["status"] == "denied" else "Success"}
    elif kind == "secret":
        source, name = "secretsmanager.amazonaws.com", "GetSecretValue" if action != "write" else "PutSecretValue"
        parameters = {"secretId": row["resource"]}
    elif kind == "training_run":
        source = "sagemaker.amazonaws.com"
        name = {"train": "CreateTrainingJob", "write": "UpdateTrainingJob", "delete": "DeleteTrainingJob"}.get(
            action, "DescribeTrainingJob")
        parameters = {"trainingJobName": row["resource"]}
        if action == "train":
            parameters["inputDataConfig"] = [
                {"channelName": f"ch{i}", "dataSource": {"s3DataSource": {
                    "s3Uri": resource_name(r, kinds.get(r, "dataset")), "s3DataType": "S3Prefix"}}}
                for i, r in enumerate(row["related"])]
    else:
        source = "s3.amazonaws.com"
        name, parameters, data = _s3_call(row)
        extra["additionalEventData"] = data
    if kind in ("secret", "training_run") and action != "login":
        extra["additionalEventData"] = {("bytesTransferredIn" if action in ("write", "train") else
                                         "bytesTransferredOut"): row["bytes"]}
    error = _ERRORS.get(row["status"])
    if error and not (action == "login" and row["status"] == "denied"):
        extra["errorCode"], extra["errorMessage"] = error
    return {
        "eventVersion": "1.09", "userIdentity": _identity(row["principal"], row["principal_type"]),
        "eventTime": iso_millis(row["event_time"]), "eventSource": source, "eventName": name,
        "awsRegion": "eu-west-1", "sourceIPAddress": row["source_ip"], "userAgent": _AGENTS.get(row["via"], ""),
        "requestParameters": parameters, "responseElements": None, **extra,
        "requestID": row["event_id"], "eventID": row["event_id"], "readOnly": action not in (
            "write", "delete", "grant", "revoke", "train", "export"),
        "eventType": "AwsConsoleSignIn" if action == "login" else "AwsApiCall",
        "managementEvent": source != "s3.amazonaws.com", "recipientAccountId": ACCOUNT,
        "eventCategory": "Data" if source == "s3.amazonaws.com" else "Management",
    }


def carried(row: dict[str, Any]) -> tuple[str, ...]:
    """What comes back unchanged: everything but joins' and queries' actions, related, rows, attributes."""
    columns = ["event_time", "event_id", "principal", "principal_type", "source_ip", "status", "via"]
    if row["action"] not in ("join", "query"):
        columns.append("action")
    if row["action"] != "revoke":
        columns.append("grantee")
    if row["action"] != "login":
        columns.append("resource")
    if row["action"] not in ("login", "delete"):
        columns.append("bytes")
    if row["action"] == "train":
        columns.append("related")
    return tuple(columns)


FORMAT = LogFormat(name="cloudtrail", record=record, resource_name=resource_name, carried=carried)
