"""AWS CloudTrail: ``{"Records": [...]}`` files (gzip too), bare JSON arrays, JSON Lines.

Mapping (one CloudTrail record → one ``access_log`` row):

- **principal**: ``userIdentity`` — an IAM user's ``userName``; an assumed role's session
  when it names a person (``…/alice@corp``), else the role; an AWS service's ``invokedBy``;
  ``root@ACCOUNT`` for the root user. **principal_type**: IAM, SSO, SAML and Identity
  Center users and the root user are ``human``; roles and AWS services are ``service``; a
  principal matching the ``agent_pattern`` parameter is an ``agent``.
- **action**: S3 ``GetObject`` → ``download``, ``PutObject`` → ``write``, ``CopyObject``
  into another bucket → ``export`` (of the copy's *source*, the data that left; the
  destination's folder goes to ``attributes['destination']``, where the export detectors
  look for new destinations); IAM policy attachments, group additions, bucket policies
  and ACLs (an ``x-amz-grant-read`` header names its grantee; ``x-amz-acl: private`` is a
  ``revoke``), snapshot/image/DB-snapshot sharing and Lambda permissions → ``grant``
  (their detachments and removals → ``revoke``) with the **grantee** (the user, role or
  group, the account shared with, ``allUsers`` for a public policy or ACL); Secrets Manager and
  SSM parameter reads → ``read``; SageMaker training and Bedrock customisation jobs →
  ``train`` with their input data as **related**; Bedrock model calls → ``query``;
  sign-ins → ``login``; ``Delete*``/``Terminate*`` → ``delete``; other read-only calls →
  ``read``; everything else → ``write``.
- **status**: no ``errorCode`` → ``ok``; access-denied codes (and a failed console
  sign-in) → ``denied``; any other code → ``error``.
- **bytes**: ``additionalEventData.bytesTransferredOut`` (reads, downloads, exports) or
  ``bytesTransferredIn`` (writes). **via**: ``ai_assistant``, ``notebook`` or ``pipeline``
  when the user agent names one (Copilot, Amazon Q, Jupyter, Airflow, Glue…), else the
  console, or ``api`` for SDKs and the CLI.
- **attributes** (whitelist): ``source``, ``event_source``, ``event_name``, ``event_type``,
  ``event_category``, ``aws_region``, ``account``, ``identity_type``, ``arn``,
  ``access_key``, ``request_id``, ``error_code``, ``error_message``, ``user_agent``,
  ``read_only``, ``destination``.
- Times: ``eventTime``, else ``@timestamp`` (older exports).

It cannot see joins (CloudTrail records single API calls), rows (only bytes), reads of
data inside databases, or what a training job did with its input beyond naming it.
"""

from __future__ import annotations

from typing import Any

from features.sources import Source, attributes, contract_row, first_of, in_list, raw, text

_ES, _EN = text("eventSource"), text("eventName")
_TYPE = text("userIdentity", "type")
_ARN = text("userIdentity", "arn")
_ARN_TAIL = f"arrayElement(splitByChar('/', {_ARN}), -1)"
_ROLE = first_of(text("userIdentity", "sessionContext", "sessionIssuer", "userName"),
                 f"arrayElement(splitByChar('/', {_ARN}), 2)")

_NAMED = first_of(text("userIdentity", "userName"), _ARN_TAIL, text("userIdentity", "onBehalfOf", "userId"),
                  text("additionalEventData", "UserName"), text("userIdentity", "principalId"),
                  text("userIdentity", "invokedBy"))
_PRINCIPAL = (
    f"multiIf({_TYPE} = 'Root', concat('root@', {text('userIdentity', 'accountId')}),"
    f" {_TYPE} = 'AWSService', {text('userIdentity', 'invokedBy')},"
    f" {_TYPE} = 'AssumedRole', if(position({_ARN_TAIL}, '@') > 0, {_ARN_TAIL}, {_ROLE}), {_NAMED})"
)
_HUMAN_TYPES = ("IAMUser", "Root", "SAMLUser", "WebIdentityUser", "IdentityCenterUser", "FederatedUser")
_PRINCIPAL_TYPE = (
    f"multiIf(match({_PRINCIPAL}, {{agent_pattern:String}}), 'agent',"
    f" {in_list(_TYPE, _HUMAN_TYPES)}, 'human',"
    f" {_TYPE} = 'AssumedRole' AND (startsWith({_ROLE}, 'AWSReservedSSO_') OR position({_ARN_TAIL}, '@') > 0),"
    " 'human', 'service')"
)

_GRANTS = ("AttachUserPolicy", "AttachRolePolicy", "AttachGroupPolicy", "PutUserPolicy", "PutRolePolicy",
           "PutGroupPolicy", "AddUserToGroup", "PutBucketPolicy", "PutBucketAcl", "PutObjectAcl",
           "UpdateAssumeRolePolicy", "AddPermission", "AddPermission20150331", "AddPermission20150331v2",
           "CreateGrant", "PutResourcePolicy")
_REVOKES = ("DetachUserPolicy", "DetachRolePolicy", "DetachGroupPolicy", "DeleteUserPolicy", "DeleteRolePolicy",
            "DeleteGroupPolicy", "RemoveUserFromGroup", "DeleteBucketPolicy", "RemovePermission",
            "RemovePermission20150331", "RemovePermission20150331v2", "RevokeGrant", "DeleteResourcePolicy")
_SHARES = ("ModifySnapshotAttribute", "ModifyImageAttribute", "ModifyDBSnapshotAttribute",
           "ModifyDBClusterSnapshotAttribute")
_SECRET_READS = ("GetSecretValue", "BatchGetSecretValue", "GetParameter", "GetParameters", "GetParametersByPath")
_LOGINS = ("ConsoleLogin", "UserAuthentication", "GetSigninToken", "AssumeRoleWithSAML",
           "AssumeRoleWithWebIdentity")
_MODEL_CALLS = ("InvokeModel", "InvokeModelWithResponseStream", "Converse", "ConverseStream")
_TRAINING = ("CreateTrainingJob", "CreateHyperParameterTuningJob", "CreateModelCustomizationJob",
             "CreateCustomJob")

_PARAMS = raw("requestParameters")
_BUCKET = text("requestParameters", "bucketName")
_KEY = text("requestParameters", "key")
_COPY_SOURCE = f"splitByChar('?', {text('requestParameters', 'x-amz-copy-source')})[1]"
_ADDS = f"(position({_PARAMS}, '\"add\"') > 0 OR position({_PARAMS}, 'valuesToAdd') > 0)"

_ACTION = (
    "multiIf("
    f"{_ES} = 's3.amazonaws.com' AND {_EN} = 'GetObject', 'download',"
    f" {_ES} = 's3.amazonaws.com' AND {_EN} = 'CopyObject'"
    f" AND splitByChar('/', {_COPY_SOURCE})[1] NOT IN ('', {_BUCKET}), 'export',"
    f" {_ES} = 's3.amazonaws.com' AND {in_list(_EN, ('PutObject', 'CopyObject', 'CompleteMultipartUpload'))},"
    " 'write',"
    f" {in_list(_EN, ('PutObjectAcl', 'PutBucketAcl'))} AND {text('requestParameters', 'x-amz-acl')} = 'private',"
    " 'revoke',"
    f" {in_list(_EN, _GRANTS)}, 'grant',"
    f" {in_list(_EN, _REVOKES)}, 'revoke',"
    f" {in_list(_EN, _SHARES)}, if({_ADDS}, 'grant', 'revoke'),"
    f" {in_list(_EN, _LOGINS)}, 'login',"
    f" {in_list(_EN, _TRAINING)}, 'train',"
    f" {in_list(_EN, _MODEL_CALLS)}, 'query',"
    f" {in_list(_EN, _SECRET_READS)}, 'read',"
    f" match({_EN}, '^(Delete|Terminate|ScheduleKeyDeletion|Remove)'), 'delete',"
    f" {raw('readOnly')} = 'true' OR match({_EN}, '^(Get|List|Describe|Head|Lookup|Search|Select|BatchGet)'),"
    " 'read',"
    " 'write')"
)

_SHARED_WITH = first_of(
    text("requestParameters", "createVolumePermission", "add", "items", 1, "userId"),
    text("requestParameters", "createVolumePermission", "add", "items", 1, "group"),
    text("requestParameters", "launchPermission", "add", "items", 1, "userId"),
    text("requestParameters", "launchPermission", "add", "items", 1, "group"),
    text("requestParameters", "valuesToAdd", 1),
    text("requestParameters", "createVolumePermission", "remove", "items", 1, "userId"),
    text("requestParameters", "launchPermission", "remove", "items", 1, "userId"),
    text("requestParameters", "valuesToRemove", 1))
_PUBLIC_POLICY = (f"match({_PARAMS}, '\"(Principal|AWS)\"\\\\s*:\\\\s*(\\\\[\\\\s*)?\"\\\\*\"')"
                  f" OR position({_PARAMS}, 'AllUsers') > 0"
                  f" OR {text('requestParameters', 'x-amz-acl')} LIKE 'public-%'")
# S3 ACL grant headers: id="…", emailAddress="…" or uri="…/AllUsers" (the first grantee).
_ACL_HEADER = first_of(*(text("requestParameters", h) for h in
                         ("x-amz-grant-read", "x-amz-grant-full-control", "x-amz-grant-read-acp")))
_ACL_GRANTEE = f"extract({_ACL_HEADER}, '(?:id|emailAddress)=\\\\s*\"?([^\",]+)')"
_GRANTED_TO = first_of(_ACL_GRANTEE,text("requestParameters", "userName"), text("requestParameters", "roleName"),
                       text("requestParameters", "groupName"), text("requestParameters", "principal"),
                       text("requestParameters", "granteePrincipal"))
_GRANTEE = (
    f"multiIf({_ACTION} NOT IN ('grant', 'revoke'), '',"
    f" {in_list(_EN, _SHARES)}, if(lower({_SHARED_WITH}) = 'all', 'allUsers', {_SHARED_WITH}),"
    f" {_PUBLIC_POLICY} OR {_GRANTED_TO} = '*', 'allUsers', {_GRANTED_TO})"
)

_OBJECT = f"concat('s3://', {_BUCKET}, if({_KEY} != '', concat('/', {_KEY}), ''))"
# An export is about the data that left: the copy's source; where it went is its destination
# (the destination's folder, so files copied into one place count as one destination).
_DESTINATION = (f"if({_ACTION} = 'export', concat('s3://', {_BUCKET}, '/',"
                f" arrayStringConcat(arrayPopBack(splitByChar('/', {_KEY})), '/'),"
                f" if(position({_KEY}, '/') > 0, '/', '')), '')")
_RESOURCE = first_of(
    f"if({_ACTION} = 'export', concat('s3://', {_COPY_SOURCE}), '')",
    f"if({_BUCKET} != '', {_OBJECT}, '')",
    f"if({in_list(_EN, ('AddUserToGroup', 'RemoveUserFromGroup'))}, {text('requestParameters', 'groupName')}, '')",
    text("requestParameters", "policyArn"),
    text("requestParameters", "secretId"),
    text("requestParameters", "secretIdList", 1),
    text("requestParameters", "name"),
    text("requestParameters", "names", 1),
    text("requestParameters", "modelId"),
    text("requestParameters", "trainingJobName"),
    text("requestParameters", "jobName"),
    text("requestParameters", "snapshotId"),
    text("requestParameters", "imageId"),
    text("requestParameters", "dBSnapshotIdentifier"),
    text("requestParameters", "dBClusterSnapshotIdentifier"),
    text("requestParameters", "functionName"),
    text("requestParameters", "roleArn"),
    text("requestParameters", "policyName"),
    text("resources", 1, "ARN"),
    f"if({_EN} != '', concat({_ES}, ':', {_EN}), '')",
)

# Training inputs (SageMaker channels, Bedrock customisation data); other secrets of a batch read.
_RELATED = (
    "arrayFilter(x -> x != '', arrayConcat("
    f"arrayMap(c -> JSONExtractString(c, 'dataSource', 's3DataSource', 's3Uri'),"
    f" JSONExtractArrayRaw({raw('requestParameters', 'inputDataConfig')})),"
    f" [{text('requestParameters', 'trainingDataConfig', 's3Uri')},"
    f" {text('requestParameters', 'validationDataConfig', 'validators', 1, 's3Uri')}],"
    f" arraySlice(JSONExtract({raw('requestParameters', 'secretIdList')}, 'Array(String)'), 2)))"
)

_ERROR = text("errorCode")
_STATUS = (
    f"multiIf({text('responseElements', 'ConsoleLogin')} = 'Failure', 'denied', {_ERROR} = '', 'ok',"
    f" match({_ERROR}, '(?i)(AccessDenied|Unauthorized|Forbidden|NotAuthorized)'), 'denied', 'error')"
)
_BYTES = (
    f"if({_ACTION} IN ('download', 'export', 'read', 'query'),"
    " JSONExtractUInt(rec, 'additionalEventData', 'bytesTransferredOut'),"
    " JSONExtractUInt(rec, 'additionalEventData', 'bytesTransferredIn'))"
)
_AGENT = text("userAgent")
# The user agent also tells the assistants, notebooks and pipelines that call through an SDK.
_VIA = (
    f"multiIf(match({_AGENT}, '(?i)ai[-_ ]?assistant|copilot|amazon-q|bedrock-agent|codewhisperer'),"
    " 'ai_assistant',"
    f" match({_AGENT}, '(?i)jupyter|notebook|sagemaker-studio|colab'), 'notebook',"
    f" match({_AGENT}, '(?i)airflow|dagster|prefect|step-?functions|glue|emr|pipeline'), 'pipeline',"
    f" {raw('sessionCredentialFromConsole')} = 'true' OR match({_AGENT}, '(?i)console|signin\\\\.amazonaws'),"
    f" 'console', match({_AGENT}, '(?i)aws-cli|boto|aws-sdk|terraform|aws-internal'), 'api', '')"
)

RECORD_SQL = contract_row({
    "event_time": first_of(text("eventTime"), text("@timestamp")),
    "event_id": text("eventID"),
    "principal": _PRINCIPAL,
    "principal_type": _PRINCIPAL_TYPE,
    "action": _ACTION,
    "resource": _RESOURCE,
    "related": _RELATED,
    "grantee": _GRANTEE,
    "bytes": _BYTES,
    "via": _VIA,
    "status": _STATUS,
    "source_ip": text("sourceIPAddress"),
    "attributes": attributes({
        "source": "'cloudtrail'", "event_source": _ES, "event_name": _EN, "event_type": text("eventType"),
        "event_category": text("eventCategory"), "aws_region": text("awsRegion"),
        "account": first_of(text("recipientAccountId"), text("userIdentity", "accountId")),
        "identity_type": _TYPE, "arn": _ARN, "access_key": text("userIdentity", "accessKeyId"),
        "request_id": text("requestID"), "error_code": _ERROR,
        "error_message": f"substring({text('errorMessage')}, 1, 500)",
        "user_agent": f"substring({_AGENT}, 1, 300)", "read_only": raw("readOnly"), "destination": _DESTINATION,
    }),
})


def _recognise(record: dict[str, Any]) -> bool:
    return "eventSource" in record and "eventName" in record and ("userIdentity" in record or "eventID" in record)


SOURCE = Source(
    name="cloudtrail",
    description="AWS CloudTrail: {\"Records\": [...]} files, JSON arrays or JSON Lines, gzip too",
    sees="grants and revokes with grantees (permission fan-out, exposure), S3 downloads and cross-bucket copies "
         "(bulk export, artifact download), secret reads, SageMaker/Bedrock training with its inputs "
         "(unsanitised training), agent and service identities (runaway agent), failed calls",
    cannot_see="joins (single API calls), row counts, reads inside databases, group nesting beyond "
               "AddUserToGroup, what a training job did with its input",
    recognise=_recognise,
    record_sql=RECORD_SQL,
    envelope="Records",
    parameters={"agent_pattern": "(?i)(^|[^a-z])(agent|bot|copilot|assistant)([^a-z]|$)"},
)
