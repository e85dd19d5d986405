"""The organisation as OCSF 1.3 events (read back by ``features/sources/ocsf.py``).

How each contract row is written, as a data platform's own OCSF producer would:

- the actor is ``actor.user``: people with their e-mail (type ``User``), services as
  ``Service Account`` and agents as ``AI Agent`` users (``type_id`` 99, Other: OCSF has no
  agent type), so the principal type travels in the user type, not only in the name;
- tables (datasets, feature tables, embedding stores) and every query, join or export are
  **Datastore Activity** (6005) on ``database``/``table`` (the name split at its last dot):
  ``read`` Read, ``query`` Query, ``join`` a Query whose ``query_info.query_string`` joins
  the other tables, ``export`` and ``download`` Other (``activity_name`` Export/Download),
  ``write`` Write, ``delete`` Delete; bytes read in ``query_info.bytes`` (queries) or
  ``http_response.length``, bytes written in ``http_request.length``;
- models, secrets, training runs and other resources are **API Activity** (6003) with the
  resource (then a training job's inputs) in ``resources``: Read, Update, Delete, Other
  (``Download…``/``Export…``), and ``train`` a Create ``CreateTrainingJob``;
- a ``grant``/``revoke`` to a person (an e-mail) is **User Access Management** (3005)
  Assign/Revoke Privileges with the ``user``; to anyone else (a group) **Group
  Management** (3006) Assign/Revoke Privileges with the ``group``; the role in
  ``privileges``, the resource in ``resource``;
- ``login`` is **Authentication** (3002) Logon of ``user`` to ``service``;
- ``via`` travels in ``http_request.user_agent``; ``status`` in ``status_id`` with a
  ``status_detail``/``status_code`` telling a denial from an error.

OCSF has no row counts, the Datastore Activity class names one table (a join's other
tables come back from its query text) and no field holds what a training job read or a
delete removed: rows, a training run's and a delete's bytes do not come back.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

from . import LogFormat, iso_millis

VERSION = "1.3.0"
PRODUCT = {"name": "Data Platform Audit", "vendor_name": "corp.example", "version": "4.2"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TABULAR = ("dataset", "feature_table", "embedding")
_AGENTS = {
    "console": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
               "Version/17.5 Safari/605.1.15",
    "api": "python-requests/2.32.3",
    "notebook": "python-requests/2.32.3 jupyter-notebook/7.2.1",
    "pipeline": "apache-airflow/2.9.2 python-requests/2.32.3",
    "ai_assistant": "ai-assistant/1.4 (copilot) python-httpx/0.27.0",
}
_FAILURES = {"denied": ("Access denied", "403"), "error": ("Internal server error", "500")}
_DATASTORE = {"read": (1, "Read"), "query": (4, "Query"), "join": (4, "Query"), "write": (5, "Write"),
              "delete": (7, "Delete"), "export": (99, "Export"), "download": (99, "Download")}
_API = {"read": (2, "Read", "Get"), "query": (2, "Read", "Query"), "write": (3, "Update", "Put"),
        "delete": (4, "Delete", "Delete"), "download": (99, "Other", "Download"),
        "export": (99, "Other", "Export"), "train": (1, "Create", "CreateTrainingJob")}
_NOUNS = {"model": "ModelArtifact", "secret": "SecretValue", "training_run": "TrainingJob"}


def resource_name(resource: str, kind: str) -> str:
    """The source keeps the names: ``database.table`` gives the name back whole."""
    return resource


def _uid(text: str, prefix: str) -> str:
    return f"{prefix}{zlib.crc32(text.encode()):010d}"


def _user(principal: str, principal_type: str) -> dict[str, Any]:
    """A user object as the producer writes it, its type saying person, service or agent."""
    if principal_type == "human":
        return {"name": principal.split("@", 1)[0], "email_addr": principal, "uid": _uid(principal, "00u"),
                "type": "User", "type_id": 1}
    kind = "AI Agent" if principal_type == "agent" else "Service Account"
    return {"name": principal, "uid": _uid(principal, "sa-"), "type": kind, "type_id": 99}


def _split(resource: str) -> dict[str, Any]:
    """``database`` and ``table`` objects naming ``resource`` (split at its last dot)."""
    database, _, table = resource.rpartition(".")
    out: dict[str, Any] = {"table": {"name": table}}
    if database:
        out["database"] = {"name": database, "type": "Other", "type_id": 99}
    return out


def _datastore(row: dict[str, Any]) -> dict[str, Any]:
    action, resource, size = row["action"], row["resource"], row["bytes"]
    activity_id, activity_name = _DATASTORE.get(action, (1, "Read"))
    event: dict[str, Any] = {"class_uid": 6005, "class_name": "Datastore Activity", "category_uid": 6,
                             "category_name": "Application Activity", "activity_id": activity_id,
                             "activity_name": activity_name, **_split(resource),
                             "type_id": 3, "type": "Table"}
    joined = "".join(f" JOIN `{other}` t{i} USING (id)" for i, other in enumerate(row["related"], 1))
    if action in ("query", "join", "export") or joined:
        event["query_info"] = {"query_string": f"SELECT * FROM `{resource}` t0{joined}",
                               "uid": _uid(row["event_id"], "q-")}
    if action in ("query", "join", "export"):
        event["query_info"]["bytes"] = size
    elif action in ("read", "download"):
        event["http_response"] = {"code": 200, "length": size}
    elif action == "write":
        event["http_request_length"] = size
    if action == "export":
        destination = dict(row["attributes"]).get("destination", "")
        if destination:
            event["unmapped"] = {"destination": destination}
    return event


def _api(row: dict[str, Any], kind: str) -> dict[str, Any]:
    action, resource, size = row["action"], row["resource"], row["bytes"]
    activity_id, activity_name, verb = _API.get(action, (99, "Other", "Run"))
    operation = verb if action == "train" else f"{verb}{_NOUNS.get(kind, 'Resource')}"
    event: dict[str, Any] = {
        "class_uid": 6003, "class_name": "API Activity", "category_uid": 6, "category_name": "Application Activity",
        "activity_id": activity_id, "activity_name": activity_name,
        "api": {"operation": operation, "service": {"name": "ml-platform" if kind != "secret" else "secrets"},
                "request": {"uid": _uid(row["event_id"], "req-")}},
        "resources": [{"name": resource, "type": kind}]
        + [{"name": other, "type": "dataset"} for other in row["related"]],
    }
    if action in ("read", "query", "download", "export"):
        event["http_response"] = {"code": 200, "length": size}
    elif action == "write":
        event["http_request_length"] = size
    return event


def _privileges(row: dict[str, Any], kind: str) -> dict[str, Any]:
    revoke = row["action"] == "revoke"
    grantee = row["grantee"]
    common = {"activity_id": 2 if revoke else 1, "activity_name": "Revoke Privileges" if revoke else
              "Assign Privileges", "privileges": [dict(row["attributes"]).get("role", "reader")],
              "resource": {"name": row["resource"], "type": kind}}
    if "@" in grantee:
        return {"class_uid": 3005, "class_name": "User Access Management", "category_uid": 3,
                "category_name": "Identity & Access Management", **common,
                "user": {"name": grantee.split("@", 1)[0], "email_addr": grantee, "type": "User", "type_id": 1}}
    return {"class_uid": 3006, "class_name": "Group Management", "category_uid": 3,
            "category_name": "Identity & Access Management", **common, "group": {"name": grantee}}


def record(row: dict[str, Any], kinds: dict[str, str]) -> dict[str, Any]:
    """One contract row as one OCSF event."""
    kind = kinds.get(row["resource"], "other")
    action = row["action"]
    user = _user(row["principal"], row["principal_type"])
    if action == "login":
        event: dict[str, Any] = {
            "class_uid": 3002, "class_name": "Authentication", "category_uid": 3,
            "category_name": "Identity & Access Management", "activity_id": 1, "activity_name": "Logon",
            "user": user, "service": {"name": row["resource"]}, "auth_protocol": "SAML", "auth_protocol_id": 5}
    elif action in ("grant", "revoke"):
        event = {**_privileges(row, kind), "actor": {"user": user}}
    elif kind in _TABULAR or action in ("query", "join", "export"):
        event = {**_datastore(row), "actor": {"user": user}}
    else:
        event = {**_api(row, kind), "actor": {"user": user}}
    request_length = event.pop("http_request_length", None)
    http_request: dict[str, Any] = {}
    if row["via"] in _AGENTS:
        http_request["user_agent"] = _AGENTS[row["via"]]
    if request_length is not None:
        http_request["length"] = request_length
    if http_request:
        event["http_request"] = http_request
    if row["source_ip"]:
        event["src_endpoint"] = {"ip": row["source_ip"]}
    failure = _FAILURES.get(row["status"])
    if failure:
        event.update(status="Failure", status_id=2, status_detail=failure[0], status_code=failure[1])
    else:
        event.update(status="Success", status_id=1)
    event.update(
        time=(row["event_time"] - _EPOCH) // timedelta(milliseconds=1), time_dt=iso_millis(row["event_time"]),
        type_uid=event["class_uid"] * 100 + event["activity_id"], severity_id=1, severity="Informational",
        metadata={"uid": row["event_id"], "version": VERSION, "product": PRODUCT, "profiles": ["datetime"]},
    )
    return event


def carried(row: dict[str, Any]) -> tuple[str, ...]:
    """What comes back unchanged: everything but rows, attributes, and the bytes of trains and deletes."""
    columns = ["event_time", "event_id", "principal", "principal_type", "action", "resource", "related", "grantee",
               "via", "status", "source_ip"]
    if row["action"] not in ("train", "delete"):
        columns.append("bytes")
    return tuple(columns)


FORMAT = LogFormat(name="ocsf", record=record, resource_name=resource_name, carried=carried)
