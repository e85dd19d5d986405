"""OCSF (Open Cybersecurity Schema Framework) events, as Amazon Security Lake and others write them.

Files: JSON Lines, a JSON array, one (pretty-printed) JSON object per file, gzip too, and
Parquet with nested structs (Security Lake): each Parquet row becomes the record's JSON.

Classes, in 1.x numbering and in 1.0.0-rc.2 numbering (category 3 was then "Audit
Activity": 3001 Account Change, 3002 Authentication, 3003 Authorization, 3004 Entity
Management, 3005 API Activity, 3006 Access Activity; API Activity moved to 6003 and
3005/3006 became User Access Management/Group Management in 1.0.0; Datastore Activity
6005 came in 1.1.0). A record is read as rc-era when ``metadata.version`` starts with
``1.0.0-rc`` or ``category_name`` is ``Audit Activity``; a ``class_name`` of ``API
Activity`` on 3005 is believed whatever the version says.

Mapping (one OCSF event → one ``access_log`` row):

- **event_time**: ``time`` (epoch milliseconds; a value below 10^11 is read as seconds and
  one above 10^14 as micro- or nanoseconds, which some producers write), or an ISO text
  in ``time`` (Parquet timestamps), else ``time_dt``. **event_id**: ``metadata.uid`` as given
  (OCSF's id of the event instance, the raw log's own: CloudTrail's ``eventID`` in Security
  Lake, so one event read through two sources counts once). A producer that copies one uid
  into events of two classes (the OCSF example mappings do) has the second counted as a
  duplicate; an event without a uid gets the contract's content hash.
- **principal**: ``actor.user`` (``email_addr``, else ``name``, else ``uid``), else
  ``actor.invoked_by``, else ``actor.app_name``; for Authentication the ``user`` who
  authenticated comes first. **principal_type**: a principal matching the
  ``agent_pattern`` parameter, or a user whose ``type`` says agent or bot (``AI Agent``:
  OCSF has no agent ``type_id``), is an ``agent``; one named by ``invoked_by``/``app_name``,
  a user of type System/Service (``type_id`` 3/4) or an AWS service or role is a
  ``service``; User, Admin, Unknown and other user types are ``human``.
- **action**, by class and ``activity_id``:

  - API Activity: Create/Update → ``write``, Read → ``read``, Delete → ``delete``; S3
    ``GetObject`` → ``download``; IAM policy attachments, group additions, bucket
    policies/ACLs and grants (by ``api.operation``) → ``grant``, their removals →
    ``revoke``; an operation starting a training job (``CreateTrainingJob``, ``StartTraining``,
    ``train…``) → ``train``; Other/Unknown by the operation's words (export, download/clone,
    delete/remove, get/list/describe/read…) else ``write``.
  - Datastore Activity: Read/List/Decrypt → ``read`` (S3 ``GetObject`` → ``download``),
    Query → ``query`` (``join`` when ``query_info.query_string`` has a ``JOIN``),
    Update/Write/Create/Encrypt → ``write``, Delete → ``delete``,
    Connect → ``login``.
  - Account Change: Attach Policy → ``grant`` of the policy to the user, Detach Policy →
    ``revoke``, Delete → ``delete``, the rest (create, enable, lock, password, MFA…) →
    ``write`` on the account.
  - Group Management: Add User → ``grant`` (grantee the user, resource the group),
    Remove User → ``revoke``; Assign/Revoke Privileges → ``grant``/``revoke`` (grantee the
    group); Create → ``write``, Delete → ``delete``.
  - User Access Management (1.x 3005): Assign Privileges/Role → ``grant``, Revoke
    Privileges/Remove Role → ``revoke`` (grantee the user).
  - Authentication: ``login``; a Logoff is rejected with its reason (not an access).
  - Any other class is rejected as ``unsupported OCSF class <uid> (<name>)``.
- **resource**: ``resources[1].name|uid`` (else ``api.service.name:api.operation``), the
  datastore's ``database.table``/``table``/``database``/``databucket``, the group, the
  policy, the changed account, the authenticated service. **related**: the other
  ``resources`` (a training job's inputs); for Datastore Activity, which has no
  ``resources``, the tables its query text joins. **grantee**: as above.
- **status**: ``status_id`` 1 / ``Success`` → ``ok``; a Failure → ``denied``
  when ``status_detail``/``status_code`` says denied, unauthorised, forbidden, 401/403…,
  or for Authentication unless it says internal/server/unavailable/timeout/5xx, else
  ``error``; no status → ``ok``.
- **bytes**: ``traffic.bytes_out``, ``query_info.bytes`` (``bytes_out`` too),
  ``http_response.length`` or Security Lake CloudTrail's
  ``unmapped['additionalEventData.bytesTransferredOut']`` (reads, queries, joins, downloads,
  exports; the largest when several), the ``bytes_in``/request length/``bytesTransferredIn``
  counterparts for writes. **via**, by the user agent: an AI
  assistant/copilot → ``ai_assistant``, Jupyter/notebooks → ``notebook``, Airflow, Dagster,
  Prefect, Kubeflow… → ``pipeline``, a browser → ``console``; git, curl, SDKs, CLIs → ``api``.
  **source_ip**: ``src_endpoint.ip``.
- **attributes** (whitelist): ``source`` (``ocsf``), ``class_uid``, ``class_name``,
  ``category_name``, ``activity_id``, ``activity_name``, ``type_uid``, ``ocsf_version``,
  ``product``, ``vendor``, ``uid`` (``metadata.uid``), ``event_code``, ``api_operation``,
  ``api_service``, ``status``, ``status_code``, ``status_detail``, ``message``,
  ``user_agent``, ``session``, ``actor_type``, ``cloud_provider``, ``region``,
  ``account``, ``time_dt``.

It cannot see row counts (OCSF has no such field), a join's tables when no query text
names them, the bytes a training job read or a delete removed, or group nesting (Group
Management names one user and one group per event).
"""

from __future__ import annotations

from typing import Any

from features.sources import Source, attributes, contract_row, in_list, raw, text

# --------------------------------------------------------------------------- building blocks


def _number(*path: str | int) -> str:
    """A whole number at ``path`` whether written as a number or as a string (0 otherwise)."""
    return f"toInt64OrZero(replaceAll({raw(*path)}, '\"', ''))"


def _count(*path: str | int) -> str:
    """A byte count at ``path``, number or string (0 when missing or negative)."""
    return f"toUInt64OrZero(replaceAll({raw(*path)}, '\"', ''))"


def _first(*expressions: str) -> str:
    """The first non-empty of several string expressions (each written once, unlike ``first_of``)."""
    return f"coalesce({', '.join(f'nullIf({e}, {chr(39) * 2})' for e in expressions)}, '')"


def _identity(*path: str) -> str:
    """How a user object names the person: e-mail, else name, else uid."""
    return _first(text(*path, "email_addr"), text(*path, "name"), text(*path, "uid"))


def _words(expression: str, words: str) -> str:
    """``expression`` holds one of ``words`` (a regex alternation) as a whole word of an id."""
    return f"match({expression}, '(?i)(^|[^a-z])({words})')"


_CLS_TEXT = f"replaceAll({raw('class_uid')}, '\"', '')"
_CLS = _number("class_uid")
_CLASS_NAME = text("class_name")
_VERSION = text("metadata", "version")
_RC = f"(startsWith({_VERSION}, '1.0.0-rc') OR {text('category_name')} = 'Audit Activity')"
# Shared values are named once (ClickHouse aliases are visible in the whole SELECT) and
# referred to by name elsewhere, which keeps the statement a few kilobytes, not hundreds.
_KIND_EXPR = (
    "multiIf("
    f"{_CLS} = 6003 OR ({_CLS} = 3005 AND ({_RC} OR {_CLASS_NAME} = 'API Activity')), 'api',"
    f" {_CLS} = 6005, 'datastore',"
    f" {_CLS} = 3001, 'account',"
    f" {_CLS} = 3002, 'authentication',"
    f" {_CLS} = 3005, 'user_access',"
    f" {_CLS} = 3006 AND NOT {_RC} AND {_CLASS_NAME} != 'Access Activity', 'group',"
    " '')"
)
_KIND = "ocsf_kind"
_KIND_DEF = f"({_KIND_EXPR} AS {_KIND})"
_ACT = _number("activity_id")
_ACT_NAME = text("activity_name")
_OP = text("api", "operation")
_SERVICE = text("api", "service", "name")

# --------------------------------------------------------------------------- time

_TIME_RAW = f"replaceAll({raw('time')}, '\"', '')"
_TIME_NUM = f"toFloat64OrZero({_TIME_RAW})"
_IS_NUMBER = f"match({_TIME_RAW}, '^[0-9]+([.][0-9]*)?([eE][+]?[0-9]+)?$')"
# Seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude.
_MS = (f"multiIf({_TIME_NUM} < 1e11, {_TIME_NUM} * 1000, {_TIME_NUM} < 1e14, {_TIME_NUM},"
       f" {_TIME_NUM} < 1e17, {_TIME_NUM} / 1000, {_TIME_NUM} / 1e6)")
_EVENT_TIME = (
    f"multiIf(NOT {_IS_NUMBER}, if({_TIME_RAW} NOT IN ('', 'null'), {_TIME_RAW}, {text('time_dt')}),"
    f" {_TIME_NUM} <= 0, {text('time_dt')},"
    # Past 2199: the number as it came, for the contract checks to reject it.
    f" {_MS} >= 7258118400000, {_TIME_RAW},"
    f" concat(toString(fromUnixTimestamp64Milli(toInt64({_MS}), 'UTC')), 'Z'))"
)

# --------------------------------------------------------------------------- who

_ACTOR = _first(_identity("actor", "user"), text("actor", "invoked_by"), text("actor", "app_name"))
_PRINCIPAL_EXPR = f"if({_KIND} = 'authentication', {_first(_identity('user'), _ACTOR)}, {_ACTOR})"
_PRINCIPAL = "ocsf_principal"
_WHO = f"if({_KIND} = 'authentication' AND {_identity('user')} != '', 'user', 'actor')"
_USER_TYPE = f"lower(if({_WHO} = 'user', {text('user', 'type')}, {text('actor', 'user', 'type')}))"
_USER_TYPE_ID = f"if({_WHO} = 'user', {_number('user', 'type_id')}, {_number('actor', 'user', 'type_id')})"
_NAMED_USER = f"if({_WHO} = 'user', {_identity('user')}, {_identity('actor', 'user')})"
_SERVICE_TYPES = ("system", "service", "awsservice", "assumedrole", "role", "serviceaccount", "service account",
                  "application")
_PRINCIPAL_TYPE = (
    f"multiIf(match({_PRINCIPAL}, {{agent_pattern:String}}) OR {_words(_USER_TYPE, 'agent|bot')}, 'agent',"
    f" {_NAMED_USER} = '', 'service',"  # invoked_by / app_name: a service acting
    f" ({_USER_TYPE_ID} IN (3, 4) OR {in_list(_USER_TYPE, _SERVICE_TYPES)}) AND position({_PRINCIPAL}, '@') = 0,"
    " 'service', 'human')"
)

# --------------------------------------------------------------------------- what

_GRANTS = ("AttachUserPolicy", "AttachRolePolicy", "AttachGroupPolicy", "PutUserPolicy", "PutRolePolicy",
           "PutGroupPolicy", "AddUserToGroup", "PutBucketPolicy", "PutBucketAcl", "PutObjectAcl", "CreateGrant",
           "AddPermission", "PutResourcePolicy")
_REVOKES = ("DetachUserPolicy", "DetachRolePolicy", "DetachGroupPolicy", "DeleteUserPolicy", "DeleteRolePolicy",
            "DeleteGroupPolicy", "RemoveUserFromGroup", "DeleteBucketPolicy", "RevokeGrant", "RemovePermission",
            "DeleteResourcePolicy")
_NAMES = f"concat({_OP}, ' ', {_ACT_NAME})"
# Other/Unknown activities, by the words of the operation and activity name ('' when none says).
_BY_NAME = (
    f"multiIf({_words(_NAMES, 'export')}, 'export',"
    f" {_words(_NAMES, 'download|clone')}, 'download',"
    f" {_words(_NAMES, 'delete|remove|destroy|purge')}, 'delete',"
    f" {_words(_NAMES, 'get|list|describe|read|head|search|fetch|view|lookup|select')}, 'read',"
    f" {_words(_NAMES, 'query')}, 'query', '')"
)
_S3_GET = f"{_OP} = 'GetObject'"
# A training job started (SageMaker CreateTrainingJob, a platform's StartTraining, train_model…).
_TRAIN = f"match({_OP}, '^(Create|Start|Submit|Run)[A-Za-z]*Training|(?i)(^|[^a-z])train(ing)?([^a-z]|$)')"
_API_ACTION = (
    f"multiIf({_S3_GET}, 'download', {in_list(_OP, _GRANTS)}, 'grant', {in_list(_OP, _REVOKES)}, 'revoke',"
    f" {_TRAIN}, 'train',"
    f" {_ACT} IN (1, 3), 'write', {_ACT} = 2, 'read', {_ACT} = 4, 'delete',"
    f" {_BY_NAME} != '', {_BY_NAME}, 'write')"
)
_QUERY_TEXT = text("query_info", "query_string")
# The tables a query's text joins (``JOIN name``, backticks and brackets dropped).
_JOINED = (f"arrayFilter(x -> x != '', arrayMap(x -> trim(BOTH '`[]' FROM x),"
           f" extractAll({_QUERY_TEXT}, '(?i)(?:^|[^a-z0-9_])join\\\\s+([^\\\\s(),;]+)')))")
_DATASTORE_ACTION = (
    f"multiIf({_S3_GET}, 'download', {_ACT} IN (1, 8, 10), 'read',"
    f" {_ACT} = 4, if(notEmpty({_JOINED}), 'join', 'query'),"
    f" {_ACT} IN (2, 5, 6, 9), 'write', {_ACT} = 7, 'delete', {_ACT} = 3, 'login',"
    f" {_BY_NAME} != '', {_BY_NAME}, 'read')"
)
_ACCOUNT_ACTION = (
    f"multiIf({_ACT} = 7, 'grant', {_ACT} = 8, 'revoke', {_ACT} = 6, 'delete',"
    f" {_ACT} = 0 OR {_ACT} = 99, multiIf({_words(_ACT_NAME, 'attach')}, 'grant', {_words(_ACT_NAME, 'detach')},"
    f" 'revoke', {_words(_ACT_NAME, 'delete')}, 'delete', 'write'), 'write')"
)
_GROUP_ACTION = (
    f"multiIf({_ACT} IN (1, 3), 'grant', {_ACT} IN (2, 4), 'revoke', {_ACT} = 5, 'delete', {_ACT} = 6, 'write',"
    f" {_words(_ACT_NAME, 'add|assign')}, 'grant', {_words(_ACT_NAME, 'remove|revoke')}, 'revoke',"
    f" {_words(_ACT_NAME, 'delete')}, 'delete', 'write')"
)
_USER_ACCESS_ACTION = (
    f"multiIf({_ACT} IN (1, 3), 'grant', {_ACT} IN (2, 4), 'revoke',"
    f" {_words(_ACT_NAME, 'remove|revoke')}, 'revoke', 'grant')"
)
_ACTION_EXPR = (
    f"multiIf({_KIND_DEF} = 'api', {_API_ACTION}, {_KIND} = 'datastore', {_DATASTORE_ACTION},"
    f" {_KIND} = 'account', {_ACCOUNT_ACTION}, {_KIND} = 'group', {_GROUP_ACTION},"
    f" {_KIND} = 'user_access', {_USER_ACCESS_ACTION}, {_KIND} = 'authentication', 'login', '')"
)
_ACTION = "ocsf_action"
# Group membership (Add/Remove User), as opposed to privileges given to the group.
_MEMBERSHIP = f"({_ACT} IN (3, 4) OR {_words(_ACT_NAME, 'user')})"

# --------------------------------------------------------------------------- on what

_FIRST_RESOURCE = _first(text("resources", 1, "name"), text("resources", 1, "uid"))
_OPERATION = f"if({_OP} != '', if({_SERVICE} != '', concat({_SERVICE}, ':', {_OP}), {_OP}), '')"
_TABLE = _first(text("table", "name"), text("table", "uid"))
_DATABASE = _first(text("database", "name"), text("database", "uid"))
_GROUP = _first(text("group", "name"), text("group", "uid"))
_POLICY = _first(text("policy", "name"), text("policy", "uid"), text("policies", 1, "name"),
                   text("policies", 1, "uid"))
_PRIVILEGED = _first(text("resource", "name"), text("resource", "uid"), _FIRST_RESOURCE,
                       text("privileges", 1), text("iam_role", "name"))
_USER = _first(_identity("user"), _identity("users", 1))
_DATASTORE_RESOURCE = _first(
    f"if({_DATABASE} != '' AND {_TABLE} != '', concat({_DATABASE}, '.', {_TABLE}), '')",
    _TABLE, _DATABASE, text("databucket", "name"), text("databucket", "uid"), _FIRST_RESOURCE, _OPERATION)
_LOGGED_INTO = _first(text("service", "name"), text("dst_endpoint", "svc_name"), text("dst_endpoint", "hostname"),
                        text("metadata", "product", "name"))
_RESOURCE = (
    f"multiIf({_KIND} = 'api', {_first(_FIRST_RESOURCE, _OPERATION, text('dst_endpoint', 'svc_name'))},"
    f" {_KIND} = 'datastore', {_DATASTORE_RESOURCE},"
    f" {_KIND} = 'account', if({_ACTION} IN ('grant', 'revoke'), {_first(_POLICY, _USER)}, {_USER}),"
    f" {_KIND} = 'group', if({_MEMBERSHIP}, {_GROUP}, {_first(_PRIVILEGED, _GROUP)}),"
    f" {_KIND} = 'user_access', {_first(_PRIVILEGED, _USER)},"
    f" {_KIND} = 'authentication', {_LOGGED_INTO}, '')"
)
_RESOURCES_AFTER_FIRST = (
    "arrayFilter(x -> x != '', arraySlice(arrayMap(r -> if(JSONExtractString(r, 'name') != '',"
    f" JSONExtractString(r, 'name'), JSONExtractString(r, 'uid')), JSONExtractArrayRaw({raw('resources')})), 2))"
)
_RELATED = (f"if({_KIND} = 'datastore' AND empty({_RESOURCES_AFTER_FIRST}), {_JOINED},"
            f" {_RESOURCES_AFTER_FIRST})")
_REQUEST_GRANTEE = _first(text("unmapped", "requestParameters.userName"),
                            text("unmapped", "requestParameters.roleName"),
                            text("unmapped", "requestParameters.groupName"), _USER)
_GRANTEE = (
    f"multiIf({_ACTION} NOT IN ('grant', 'revoke'), '',"
    f" {_KIND} = 'group', if({_MEMBERSHIP}, {_USER}, {_GROUP}),"
    f" {_KIND} = 'api', {_REQUEST_GRANTEE}, {_USER})"
)

# --------------------------------------------------------------------------- how it went

_STATUS_ID = _number("status_id")
_LOWER_STATUS = f"lower({text('status')})"
_DETAIL = f"concat({text('status_detail')}, ' ', {text('status_code')})"
_DENIED = ("(?i)(denied|unauthori[sz]ed|forbidden|not[ _]?authori[sz]ed|permission|not allowed|insufficient"
           "|(^|[^0-9])40[13]([^0-9]|$))")
_ERRORED = "(?i)(internal|server|service|unavailable|timed?[ _]?out|(^|[^0-9])5[0-9][0-9]([^0-9]|$))"
_STATUS = (
    f"multiIf({_STATUS_ID} = 1 OR {_LOWER_STATUS} = 'success', 'ok',"
    f" {_STATUS_ID} = 2 OR {_LOWER_STATUS} IN ('failure', 'failed', 'fail'),"
    f" multiIf(match({_DETAIL}, '{_DENIED}'), 'denied', {_KIND} = 'authentication' AND NOT match({_DETAIL},"
    f" '{_ERRORED}'), 'denied', 'error'), 'ok')"
)
_READS = f"{_ACTION} IN ('read', 'query', 'join', 'download', 'export')"
# The largest count the record carries, out for reads and in for writes.
_BYTES = (
    f"if({_READS}, greatest({_count('traffic', 'bytes_out')}, {_count('query_info', 'bytes')},"
    f" {_count('query_info', 'bytes_out')},"
    f" {_count('http_response', 'length')}, {_count('unmapped', 'additionalEventData.bytesTransferredOut')}),"
    f" greatest({_count('traffic', 'bytes_in')}, {_count('http_request', 'length')},"
    f" {_count('unmapped', 'additionalEventData.bytesTransferredIn')}))"
)
_AGENT = text("http_request", "user_agent")
_VIA = (
    f"multiIf(match({_AGENT}, '(?i)ai[-_ ]?assistant|copilot|amazon-q|bedrock-agent'), 'ai_assistant',"
    f" match({_AGENT}, '(?i)jupyter|notebook|sagemaker-studio|colab'), 'notebook',"
    f" match({_AGENT}, '(?i)airflow|dagster|prefect|kubeflow|argo-workflows|pipeline'), 'pipeline',"
    f" match({_AGENT}, '(?i)^mozilla/'), 'console',"
    f" match({_AGENT}, '(?i)(^git/|curl/|python|boto|aws-cli|aws-sdk|terraform|okta-sdk|go-http|^java/|okhttp"
    "|postman|[.]amazonaws[.]com)'), 'api', '')"
)

RECORD_SQL = contract_row({
    "event_time": _EVENT_TIME,
    # As given: OCSF's id of the event instance, the raw log's own (CloudTrail's eventID in
    # Security Lake), so one event read through two sources counts once.
    "event_id": text("metadata", "uid"),
    "principal": f"({_PRINCIPAL_EXPR} AS {_PRINCIPAL})",
    "principal_type": _PRINCIPAL_TYPE,
    "action": f"({_ACTION_EXPR} AS {_ACTION})",
    "resource": _RESOURCE,
    "related": _RELATED,
    "grantee": _GRANTEE,
    "bytes": _BYTES,
    "via": _VIA,
    "status": _STATUS,
    "source_ip": text("src_endpoint", "ip"),
    "attributes": attributes({
        "source": "'ocsf'", "class_uid": _CLS_TEXT, "class_name": _CLASS_NAME,
        "category_name": text("category_name"), "activity_id": f"replaceAll({raw('activity_id')}, '\"', '')",
        "activity_name": _ACT_NAME, "type_uid": f"replaceAll({raw('type_uid')}, '\"', '')",
        "ocsf_version": _VERSION, "product": text("metadata", "product", "name"),
        "vendor": text("metadata", "product", "vendor_name"), "uid": text("metadata", "uid"),
        "event_code": text("metadata", "event_code"), "api_operation": _OP, "api_service": _SERVICE,
        "status": text("status"), "status_code": text("status_code"),
        "status_detail": f"substring({text('status_detail')}, 1, 500)",
        "message": f"substring({text('message')}, 1, 500)", "user_agent": f"substring({_AGENT}, 1, 300)",
        "session": text("actor", "session", "uid"), "actor_type": text("actor", "user", "type"),
        "cloud_provider": text("cloud", "provider"), "region": text("cloud", "region"),
        "account": text("cloud", "account", "uid"), "time_dt": text("time_dt"),
    }),
})

# Records the mapping cannot place, with the reason the rejection keeps.
# Self-contained (the same alias for the same expression), so it does not rely on RECORD_SQL.
REJECT_SQL = (
    f"multiIf({_KIND_DEF} = '', concat('unsupported OCSF class ', if({_CLS_TEXT} = '', '(no class_uid)', {_CLS_TEXT}),"
    f" if({_CLASS_NAME} != '', concat(' (', {_CLASS_NAME}, ')'), '')),"
    f" {_KIND} = 'authentication' AND {_ACT} = 2, 'OCSF Authentication Logoff: not an access', '')"
)


def _recognise(record: dict[str, Any]) -> bool:
    return "class_uid" in record and isinstance(record.get("metadata"), dict)


SOURCE = Source(
    name="ocsf",
    description="OCSF events (Amazon Security Lake and others): JSON Lines, JSON arrays or objects, Parquet, "
                "gzip too; 1.0.0-rc.2 and 1.x",
    sees="grants and revokes with grantees from Group Management, Account Change (policy attachments) and "
         "User Access Management (permission fan-out, exposure), datastore reads, queries and S3 downloads with "
         "bytes (bulk export, artifact download), API calls, logins and failed attempts, agent and service "
         "identities (runaway agent)",
    cannot_see="row counts (no OCSF field), joins without query text, the bytes a training job read, group "
               "nesting (one user and one group per event), other OCSF classes (rejected with their class)",
    recognise=_recognise,
    record_sql=RECORD_SQL,
    reject_sql=REJECT_SQL,
    parameters={"agent_pattern": "(?i)(^|[^a-z])(agent|bot|copilot|assistant)([^a-z]|$)"},
)
