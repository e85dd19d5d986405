"""Google Cloud Audit Logs: Cloud Logging ``LogEntry`` objects whose ``protoPayload`` is an ``AuditLog``.

JSON Lines (a Cloud Logging sink to Cloud Storage), JSON arrays (``gcloud logging read
--format=json``), gzip too. Mapping (one LogEntry → one ``access_log`` row):

- **event_time**: ``timestamp`` (RFC 3339, nanoseconds kept to milliseconds; Panther's
  zoneless ``2022-05-05 14:00:48.814294000`` is UTC), else ``receiveTimestamp``.
- **event_id**: ``insertId``; an entry without one gets the contract's content id. Cloud
  Logging promises uniqueness only per project, timestamp and ``insertId``, but the ids it
  assigns are random enough that the entries of one sink never share one in practice, and
  the bare id is what other tools (and re-exports of the same entries) quote; the log is
  kept in ``log_name``.
- **principal**: ``authenticationInfo.principalEmail``, else ``principalSubject`` (its
  ``user:``/``serviceAccount:`` prefix dropped), else the first
  ``serviceAccountDelegationInfo`` caller. A federated identity
  (``principal://iam.googleapis.com/…/workloadIdentityPools|workforcePools/POOL/subject/NAME``)
  is NAME, its identity provider's name (the full subject stays in ``principal_subject``).
  **principal_type**: a principal matching the ``agent_pattern`` parameter is an
  ``agent``; ``*.gserviceaccount.com``, Kubernetes ``system:`` identities and workload
  identity pool subjects are ``service``; everyone else is ``human``.
- **action**: ``SetIamPolicy``/``setIamPermissions`` with a binding delta → ``grant``
  (``ADD``) or ``revoke`` (``REMOVE``). Vertex AI ``CreateCustomJob``,
  ``CreateTrainingPipeline``, ``CreateHyperparameterTuningJob`` and AI Platform
  ``CreateJob`` → ``train``. BigQuery completed jobs (v1 ``serviceData.jobCompletedEvent``,
  v2 ``metadata.jobChange`` in state ``DONE``): extract jobs and ``EXPORT DATA`` queries →
  ``export``; queries over 2+ referenced tables → ``join``, else ``query``; load and copy
  jobs → ``write``. BigQuery table reads (v2 ``metadata.tableDataRead``, v1
  ``serviceData.tableDataReadEvents``, ``tabledata.list``) → ``read``. Cloud Storage
  ``storage.objects.get`` → ``download``, ``storage.objects.create`` → ``write``. Workspace
  sign-ins shared with Cloud Logging (``login.googleapis.com``
  ``google.login.LoginService.login*``) → ``login``. Otherwise by the method's last word:
  ``delete``/``remove`` → ``delete``; ``get``/``list``/``aggregatedList``/``search``/
  ``lookup``/``read``/``access`` (also ``Get*``/``List*``/``AccessSecretVersion``) → ``read``;
  anything else → ``write`` (BigQuery job insertions and unfinished job changes included:
  the data they touch is in the job's completion record; a ``SetIamPolicy`` without a
  delta changes nothing visible and is a ``write`` too). BigQuery also writes a
  ``tableDataRead`` (reason ``JOB``) per table a job read, in the table's project: those
  are ``read`` rows beside the job's ``query``/``join`` row.
- **resource**: BigQuery names read ``project.dataset.table`` (``project.dataset``,
  ``project:job``); Cloud Storage objects ``gs://bucket/object``; a secret version is its
  secret (``projects/P/secrets/S``). For a job, its first referenced table (a query), its
  source table (an extract; an ``EXPORT DATA`` query's first table) or its destination table (a
  load or copy); for training, the created job or pipeline; else ``resourceName``, else
  ``service:method``.
- **related**: a join's other referenced tables; an export's destination URIs; a load's
  source URIs, a copy's source tables; training inputs (``gs://``/``bq://`` URIs in the
  worker pools' ``args`` and ``env``, AI Platform ``trainingInput.args``, the Vertex
  managed dataset; ``bq://project.dataset.table`` named ``project.dataset.table``, as the
  table is everywhere else); a v1 read event's other tables.
- **grantee** (``grant``/``revoke``): the first binding delta's member with its ``user:``,
  ``serviceAccount:`` or ``group:`` prefix dropped (a group is named by its e-mail
  address, as Cloud Identity names it: memberships must name it so too, or its audience is
  unknown and the grant looks external), a federated identity by its subject (a person,
  a service account or a workload is a principal);
  ``domain:``, ``deleted:``, ``principal://`` members and ``allUsers`` /
  ``allAuthenticatedUsers`` stay as written. Only one row per entry: the number of deltas
  is in ``binding_deltas`` and the others in ``other_bindings`` (``ACTION role member; …``).
- **bytes**/**rows**: BigQuery job statistics (``totalProcessedBytes``, extract
  ``totalInputBytes``, load ``totalOutputBytes``; ``outputRowCount`` /
  ``queryOutputRowCount``).
- **status**: ``status.code`` 7 (PERMISSION_DENIED) or 16 (UNAUTHENTICATED), an
  ``authorizationInfo`` entry with ``"granted": false``, a BigQuery job failing so, or a
  Workspace ``loginFailure`` → ``denied``; another non-zero code or a failed job → ``error``; else ``ok``.
- **source_ip**: ``requestMetadata.callerIp`` (``callerIP`` in Panther's copies) when it
  is an address (``private``, ``gce-internal-ip`` stay in ``caller_ip``). **via**:
  ``callerSuppliedUserAgent``: an AI assistant (``ai-assistant``, Copilot, Gemini, Duet
  AI) → ``ai_assistant``; Colab/Jupyter → ``notebook``; Airflow/Composer, Dagster,
  Prefect, Dataflow, dbt → ``pipeline``; a browser or ``GoogleCloudConsole`` →
  ``console``; SDKs, ``gcloud``, ``bq``, ``gsutil``, Terraform,
  ``kubectl`` → ``api``.
- **attributes** (whitelist): ``source``, ``log_name``, ``log_type``, ``service_name``,
  ``method_name``, ``insert_id``, ``resource_type``, ``project``, ``status_code``,
  ``status_message``, ``severity``, ``permission``, ``principal_subject``,
  ``delegated_by``, ``service_account_key``, ``caller_ip``, ``user_agent``,
  ``bq_event``, ``job_name``, ``job_type``, ``statement_type``, ``destination_uris``,
  ``binding_role``, ``binding_deltas``, ``other_bindings``, ``num_response_items``.

It cannot see group membership (only the member a binding names), what a query returned
beyond its row count, object sizes of Cloud Storage reads, data-access entries a project
never enabled, or callers Google redacts (cross-organisation data reads).
"""

from __future__ import annotations

from typing import Any

from features.sources import Source, attributes, contract_row, first_of, in_list, raw, text, whole

AUDIT_LOG_TYPE = "type.googleapis.com/google.cloud.audit.AuditLog"

# Named parts: each is written once in the statement (``expr AS gcp_name``) and referred to
# by name, so the statement stays small and the payload is parsed out of the entry once.
_PARTS: dict[str, str] = {}


def _let(name: str, expression: str) -> str:
    """Name ``expression`` ``gcp_<name>`` in the statement; returns the name."""
    if name in _PARTS:
        raise ValueError(f"part {name!r} named twice")
    _PARTS[name] = expression
    return f"gcp_{name}"


def _readable(name: str) -> str:
    """BigQuery and Cloud Storage resource names in the form people write them.

    Only a BigQuery entry's ``projects/P/jobs/J`` is a BigQuery job (``P:J``); AI Platform
    names its jobs the same way.
    """
    return (
        f"multiIf(match({name}, '^projects/[^/]+/datasets/[^/]+/tables/[^/]+$'),"
        f" replaceRegexpOne({name}, '^projects/([^/]+)/datasets/([^/]+)/tables/(.+)$', '\\\\1.\\\\2.\\\\3'),"
        f" match({name}, '^projects/[^/]+/datasets/[^/]+$'),"
        f" replaceRegexpOne({name}, '^projects/([^/]+)/datasets/(.+)$', '\\\\1.\\\\2'),"
        f" match({name}, '^projects/[^/]+/jobs/[^/]+$') AND gcp_service = 'bigquery.googleapis.com',"
        f" replaceRegexpOne({name}, '^projects/([^/]+)/jobs/(.+)$', '\\\\1:\\\\2'),"
        f" match({name}, '^projects/_/buckets/[^/]+/objects/'),"
        f" replaceRegexpOne({name}, '^projects/_/buckets/([^/]+)/objects/(.*)$', 'gs://\\\\1/\\\\2'),"
        f" match({name}, '^projects/_/buckets/[^/]+$'), replaceRegexpOne({name}, '^projects/_/buckets/', 'gs://'),"
        f" match({name}, '^projects/[^/]+/secrets/[^/]+/versions/[^/]+$'),"
        f" replaceRegexpOne({name}, '/versions/[^/]+$', ''),"
        f" {name})"
    )


def _table_v1(expression: str) -> str:
    """A v1 ``TableName`` object (``projectId``, ``datasetId``, ``tableId``) as ``project.dataset.table``."""
    parts = ", '.', ".join(f"JSONExtractString({expression}, '{k}')" for k in ("projectId", "datasetId", "tableId"))
    return f"if(JSONExtractString({expression}, 'tableId') = '', '', concat({parts}))"


def _arrays(expression: str, *paths: tuple[str, ...]) -> str:
    """The JSON arrays at several paths of ``expression``, one after the other (raw elements)."""
    return "arrayConcat(" + ", ".join(
        f"JSONExtractArrayRaw({expression}, {', '.join(repr(k) for k in path)})" for path in paths) + ")"


_P = _let("p", raw("protoPayload"))
_SERVICE = _let("service", text("serviceName", rec=_P))
_METHOD = _let("method", text("methodName", rec=_P))
_RESOURCE_NAME = text("resourceName", rec=_P)
_LAST_WORD = f"arrayElement(splitByChar('.', {_METHOD}), -1)"
_LOG_NAME = _let("log_name", text("logName"))
_INSERT_ID = _let("insert_id", text("insertId"))

# --- principal ---------------------------------------------------------------------------

_AUTH = _let("auth", raw("authenticationInfo", rec=_P))
_SUBJECT = text("principalSubject", rec=_AUTH)
# Workload and workforce identity federation name a principal
# ``principal://iam.googleapis.com/…/(workloadIdentityPools|workforcePools)/POOL/subject/NAME``:
# the principal is NAME, the identity provider's own name for it (the pool stays in
# ``principal_subject``); a workload pool's principals are workloads, i.e. services.
_FEDERATED = "'^principal://iam\\\\.googleapis\\\\.com/.*/(workloadIdentityPools|workforcePools)/[^/]+/subject/'"
_WORKLOAD = "'^principal://iam\\\\.googleapis\\\\.com/.*/workloadIdentityPools/[^/]+/subject/'"
_DELEGATED_BY = _let("delegated_by", first_of(
    text("serviceAccountDelegationInfo", 1, "firstPartyPrincipal", "principalEmail", rec=_AUTH),
    text("serviceAccountDelegationInfo", 1, "principalSubject", rec=_AUTH)))
_PRINCIPAL = _let("principal", first_of(
    text("principalEmail", rec=_AUTH),
    f"replaceRegexpOne(replaceRegexpOne({_SUBJECT}, {_FEDERATED}, ''), '^(user|serviceAccount):', '')",
    _DELEGATED_BY))
_PRINCIPAL_TYPE = (
    f"multiIf(match({_PRINCIPAL}, {{agent_pattern:String}}), 'agent',"
    f" endsWith({_PRINCIPAL}, '.gserviceaccount.com') OR startsWith({_PRINCIPAL}, 'system:')"
    f" OR ({text('principalEmail', rec=_AUTH)} = '' AND match({_SUBJECT}, {_WORKLOAD})), 'service', 'human')"
)

# --- IAM binding deltas ------------------------------------------------------------------

# v1 services put the delta in serviceData; newer ones (BigQuery v2 among them) in metadata.
_DELTAS = _let("deltas", _arrays(_P, ("serviceData", "policyDelta", "bindingDeltas"),
                                 ("metadata", "policyDelta", "bindingDeltas"),
                                 ("metadata", "datasetChange", "bindingDeltas"),
                                 ("metadata", "tableChange", "bindingDeltas")))
_DELTA = f"arrayElement({_DELTAS}, 1)"
_SETS_POLICY = _let("sets_policy",
                    f"match({_METHOD}, '(?i)setiampolic|setiampermissions') AND length({_DELTAS}) > 0")
_OTHER_BINDINGS = (
    "arrayStringConcat(arrayMap(d -> concat(JSONExtractString(d, 'action'), ' ', JSONExtractString(d, 'role'), ' ',"
    f" JSONExtractString(d, 'member')), arraySlice({_DELTAS}, 2)), '; ')"
)

# --- BigQuery ----------------------------------------------------------------------------

_JOB1 = _let("job1", raw("serviceData", "jobCompletedEvent", "job", rec=_P))  # v1: only ever a finished job
_CHANGE = _let("change", raw("metadata", "jobChange", rec=_P))
_JOB2 = _let("job2", f"if({text('after', rec=_CHANGE)} = 'DONE' OR {text('job', 'jobStatus', 'jobState', rec=_CHANGE)}"
                     f" = 'DONE', {raw('job', rec=_CHANGE)}, '')")
_CONFIG1 = _let("config1", raw("jobConfiguration", rec=_JOB1))
_CONFIG2 = _let("config2", raw("jobConfig", rec=_JOB2))
_STATEMENT = _let("statement", first_of(text("query", "statementType", rec=_CONFIG1),
                                        text("queryConfig", "statementType", rec=_CONFIG2)))
_TYPE2 = text("type", rec=_CONFIG2)
_JOB_KIND = _let("job_kind", (
    f"multiIf({_JOB1} = '' AND {_JOB2} = '', '',"
    f" {raw('extract', rec=_CONFIG1)} != '' OR {raw('extractConfig', rec=_CONFIG2)} != '' OR {_TYPE2} = 'EXPORT'"
    f" OR {_STATEMENT} = 'EXPORT_DATA', 'export',"
    f" {raw('load', rec=_CONFIG1)} != '' OR {raw('tableCopy', rec=_CONFIG1)} != ''"
    f" OR {raw('loadConfig', rec=_CONFIG2)} != '' OR {raw('tableCopyConfig', rec=_CONFIG2)} != ''"
    f" OR {_TYPE2} IN ('IMPORT', 'COPY'), 'write', 'query')"
))
_TABLES = _let("tables", (
    f"arrayConcat(arrayMap(t -> {_table_v1('t')}, JSONExtractArrayRaw({_JOB1}, 'jobStatistics', 'referencedTables')),"
    f" arrayMap(t -> {_readable('t')},"
    f" JSONExtract({_JOB2}, 'jobStats', 'queryStats', 'referencedTables', 'Array(String)')))"
))
_SOURCE_TABLE = first_of(_table_v1(raw("extract", "sourceTable", rec=_CONFIG1)),
                         _readable(text("extractConfig", "sourceTable", rec=_CONFIG2)),
                         _readable(text("extractConfig", "sourceModel", rec=_CONFIG2)))
_DESTINATION_TABLE = _let("destination_table", first_of(
    _table_v1(raw("query", "destinationTable", rec=_CONFIG1)), _table_v1(raw("load", "destinationTable", rec=_CONFIG1)),
    _table_v1(raw("tableCopy", "destinationTable", rec=_CONFIG1)),
    _readable(text("queryConfig", "destinationTable", rec=_CONFIG2)),
    _readable(text("loadConfig", "destinationTable", rec=_CONFIG2)),
    _readable(text("tableCopyConfig", "destinationTable", rec=_CONFIG2))))
_DESTINATION_URIS = _let("destination_uris", (
    f"arrayConcat(JSONExtract({_CONFIG1}, 'extract', 'destinationUris', 'Array(String)'),"
    f" JSONExtract({_CONFIG2}, 'extractConfig', 'destinationUris', 'Array(String)'))"))
_LOAD_SOURCES = (
    f"arrayConcat(JSONExtract({_CONFIG1}, 'load', 'sourceUris', 'Array(String)'),"
    f" JSONExtract({_CONFIG2}, 'loadConfig', 'sourceUris', 'Array(String)'),"
    f" arrayMap(t -> {_table_v1('t')}, JSONExtractArrayRaw({_CONFIG1}, 'tableCopy', 'sourceTables')),"
    f" arrayMap(t -> {_readable('t')}, JSONExtract({_CONFIG2}, 'tableCopyConfig', 'sourceTables', 'Array(String)')))"
)
_METADATA = _let("metadata", raw("metadata", rec=_P))
_JOB_ID1 = text("jobName", "jobId", rec=_JOB1)
_JOB_NAME = _let("job_name", first_of(
    f"if({_JOB_ID1} = '', '', concat({text('jobName', 'projectId', rec=_JOB1)}, ':', {_JOB_ID1}))",
    _readable(first_of(text("jobChange", "job", "jobName", rec=_METADATA),
                       text("jobInsertion", "job", "jobName", rec=_METADATA),
                       text("tableDataRead", "jobName", rec=_METADATA)))))
_READ_EVENTS = _let("read_events", f"arrayMap(e -> {_table_v1(raw('tableName', rec='e'))},"
                                   f" JSONExtractArrayRaw({_P}, 'serviceData', 'tableDataReadEvents'))")
_TABLE_READ = (f"{raw('tableDataRead', rec=_METADATA)} != '' OR length({_READ_EVENTS}) > 0"
               f" OR {in_list(f'lower({_METHOD})', ('tabledata.list', 'tabledataservice.list'))}"
               f" OR {_METHOD} = 'google.cloud.bigquery.v2.TableDataService.List'")
_BQ_EVENT = first_of(
    f"if({_JOB1} != '', 'jobCompletedEvent', '')",
    f"if(length({_READ_EVENTS}) > 0, 'tableDataReadEvents', '')",
    # v2 metadata holds one event: its key (beside @type) names it.
    f"arrayElement(arrayFilter(k -> k NOT IN ('@type', 'firstPartyAppMetadata'), JSONExtractKeys({_METADATA})), 1)")

_JOB_ERROR = _let("job_error", first_of(raw("jobStatus", "error", rec=_JOB1),
                                        raw("jobStatus", "errorResult", rec=_JOB2)))
_JOB_ERROR_CODE = whole("code", rec=_JOB_ERROR)

# --- training ----------------------------------------------------------------------------

_TRAINING = (f"({_SERVICE} = 'aiplatform.googleapis.com'"
             f" AND match({_METHOD}, '(CreateCustomJob|CreateTrainingPipeline|CreateHyperparameterTuningJob)$'))"
             f" OR ({_SERVICE} = 'ml.googleapis.com' AND match({_METHOD}, 'CreateJob$'))")
_REQUEST = _let("request", raw("request", rec=_P))
# Worker pools of a custom job, a custom training pipeline and a tuning job's trials;
# some services log their request with proto field names, hence both spellings.
_POOLS = _arrays(_REQUEST, ("customJob", "jobSpec", "workerPoolSpecs"), ("custom_job", "job_spec", "worker_pool_specs"),
                 ("trainingPipeline", "trainingTaskInputs", "workerPoolSpecs"),
                 ("training_pipeline", "training_task_inputs", "worker_pool_specs"),
                 ("hyperparameterTuningJob", "trialJobSpec", "workerPoolSpecs"))
_SPECS = ("containerSpec", "pythonPackageSpec", "container_spec", "python_package_spec")
_POOL_TEXTS = (
    "arrayFlatten(arrayMap(w -> arrayConcat("
    + ", ".join(f"JSONExtract(w, '{spec}', 'args', 'Array(String)')" for spec in _SPECS)
    + f", arrayMap(e -> JSONExtractString(e, 'value'), {_arrays('w', *((spec, 'env') for spec in _SPECS))})), "
    + _POOLS + "))"
)
_TRAIN_TEXTS = (f"arrayConcat({_POOL_TEXTS}, JSONExtract({_REQUEST}, 'job', 'trainingInput', 'args', 'Array(String)'),"
                f" JSONExtract({_REQUEST}, 'job', 'training_input', 'args', 'Array(String)'))")
_MANAGED_DATASET = _let("managed_dataset", first_of(
    text("trainingPipeline", "inputDataConfig", "datasetId", rec=_REQUEST),
    text("training_pipeline", "input_data_config", "dataset_id", rec=_REQUEST)))
_PARENT = _let("parent", text("parent", rec=_REQUEST))
_TRAIN_INPUTS = (
    f"arrayConcat(arrayMap(u -> replaceRegexpOne(u, '^bq://', ''),"
    f" arrayFlatten(arrayMap(a -> extractAll(a, '(?:gs|bq)://[^\\\\s,;\\'\"]+'), {_TRAIN_TEXTS}))),"
    f" [if({_MANAGED_DATASET} = '', '', if({_PARENT} = '', {_MANAGED_DATASET},"
    f" concat({_PARENT}, '/datasets/', {_MANAGED_DATASET})))])"
)
_TRAIN_JOB_ID = _let("train_job_id", first_of(text("job", "jobId", rec=_REQUEST), text("job", "job_id", rec=_REQUEST)))
_TRAIN_RESOURCE = first_of(text("response", "name", rec=_P),
                           f"if({_TRAIN_JOB_ID} = '', '', concat({_PARENT}, '/jobs/', {_TRAIN_JOB_ID}))",
                           _RESOURCE_NAME)

# --- action, resource, related -----------------------------------------------------------

_GENERIC = (
    f"multiIf(match({_LAST_WORD}, '(?i)^(delete|remove|destroy|purge)'), 'delete',"
    f" match({_LAST_WORD}, '(?i)^(get|list|aggregatedlist|batchget|search|lookup|read|access)'), 'read', 'write')"
)
_ACTION = _let("action", (
    f"multiIf({_SETS_POLICY}, if(upper(JSONExtractString({_DELTA}, 'action')) = 'REMOVE', 'revoke', 'grant'),"
    f" {_TRAINING}, 'train',"
    f" {_JOB_KIND} = 'query', if(length({_TABLES}) >= 2, 'join', 'query'),"
    f" {_JOB_KIND} != '', {_JOB_KIND},"
    f" {_SERVICE} = 'bigquery.googleapis.com' AND ({_TABLE_READ}), 'read',"
    f" {_METHOD} = 'storage.objects.get', 'download',"
    f" {_METHOD} = 'storage.objects.create', 'write',"
    f" {_SERVICE} = 'login.googleapis.com' AND match({_METHOD}, '(?i)login(success|failure|challenge|verification)$'),"
    " 'login',"
    f" {_GENERIC})"
))
_NAMED = first_of(_readable(_RESOURCE_NAME), f"if({_METHOD} = '', '', concat({_SERVICE}, ':', {_METHOD}))")
_RESOURCE = _let("resource", (
    f"multiIf({_ACTION} = 'train', {_readable(_TRAIN_RESOURCE)},"
    f" {_JOB_KIND} = 'export', {first_of(_SOURCE_TABLE, f'arrayElement({_TABLES}, 1)', _JOB_NAME)},"
    f" {_JOB_KIND} = 'write', {first_of(_DESTINATION_TABLE, _JOB_NAME)},"
    f" {_JOB_KIND} = 'query', {first_of(f'arrayElement({_TABLES}, 1)', _DESTINATION_TABLE, _JOB_NAME)},"
    f" length({_READ_EVENTS}) > 0, arrayElement({_READ_EVENTS}, 1), {_NAMED})"
))
_RELATED = (
    f"arrayFilter(x -> x != '' AND x != {_RESOURCE}, multiIf("
    f"{_ACTION} = 'train', {_TRAIN_INPUTS},"
    f" {_JOB_KIND} = 'export', {_DESTINATION_URIS},"
    f" {_JOB_KIND} = 'write', {_LOAD_SOURCES},"
    f" {_JOB_KIND} = 'query', {_TABLES},"
    f" {_READ_EVENTS}))"
)
_GRANTEE = (f"if({_ACTION} IN ('grant', 'revoke'),"
            f" replaceRegexpOne(replaceRegexpOne(JSONExtractString({_DELTA}, 'member'), {_FEDERATED}, ''),"
            " '^(user|serviceAccount|group):', ''), '')")

_BYTES = (
    f"multiIf({_JOB_KIND} IN ('query', 'export'), greatest({whole('jobStatistics', 'totalProcessedBytes', rec=_JOB1)},"
    f" {whole('jobStats', 'queryStats', 'totalProcessedBytes', rec=_JOB2)},"
    f" {whole('jobStats', 'extractStats', 'totalInputBytes', rec=_JOB2)}),"
    f" {_JOB_KIND} = 'write', greatest({whole('jobStatistics', 'totalLoadOutputBytes', rec=_JOB1)},"
    f" {whole('jobStats', 'loadStats', 'totalOutputBytes', rec=_JOB2)}), 0)"
)
_ROWS = (f"greatest({whole('jobStatistics', 'queryOutputRowCount', rec=_JOB1)},"
         f" {whole('jobStats', 'queryStats', 'outputRowCount', rec=_JOB2)})")

# --- status, address, channel ------------------------------------------------------------

_CODE = _let("code", whole("status", "code", rec=_P))
_NOT_GRANTED = (f"arrayExists(a -> JSONExtractRaw(a, 'granted') = 'false',"
                f" JSONExtractArrayRaw({_P}, 'authorizationInfo'))")
_STATUS = (
    f"multiIf({_CODE} IN (7, 16) OR {_NOT_GRANTED} OR {_JOB_ERROR_CODE} IN (7, 16)"
    f" OR ({_SERVICE} = 'login.googleapis.com' AND match({_METHOD}, '(?i)loginfailure$')), 'denied',"
    f" {_CODE} != 0 OR {_JOB_ERROR} NOT IN ('', '{{}}'), 'error', 'ok')"
)
_CALLER_IP = _let("caller_ip", first_of(text("requestMetadata", "callerIp", rec=_P),
                                        text("requestMetadata", "callerIP", rec=_P)))
_SOURCE_IP = _let("source_ip", f"if(isIPv4String({_CALLER_IP}) OR isIPv6String({_CALLER_IP}), {_CALLER_IP}, '')")
_AGENT = _let("agent", text("requestMetadata", "callerSuppliedUserAgent", rec=_P))
_VIA = (
    f"multiIf(match({_AGENT}, '(?i)ai[-_ ]?assistant|copilot|gemini|duet-?ai'), 'ai_assistant',"
    f" match({_AGENT}, '(?i)colab|jupyter|ipython'), 'notebook',"
    f" match({_AGENT}, '(?i)airflow|composer|dagster|prefect|dataflow|dbt/|pipeline'), 'pipeline',"
    f" match({_AGENT}, '^Mozilla/|(?i:cloudconsole)'), 'console',"
    f" match({_AGENT}, '(?i)gcloud|google-cloud-sdk|google-api-|apitools|gl-(python|java|go|node)|grpc|bq/|gsutil"
    f"|terraform|kubectl|google-cloud-'), 'api', '')"
)
_EVENT_ID = _INSERT_ID

_ROW = contract_row({
    "event_time": first_of(text("timestamp"), text("receiveTimestamp")),
    "event_id": _EVENT_ID,
    "principal": _PRINCIPAL,
    "principal_type": _PRINCIPAL_TYPE,
    "action": _ACTION,
    "resource": _RESOURCE,
    "related": _RELATED,
    "grantee": _GRANTEE,
    "bytes": _BYTES,
    "rows": _ROWS,
    "via": _VIA,
    "status": _STATUS,
    "source_ip": _SOURCE_IP,
    "attributes": attributes({
        "source": "'gcp-audit'", "log_name": _LOG_NAME,
        "log_type": f"extract({_LOG_NAME}, 'cloudaudit\\\\.googleapis\\\\.com%2F(.+)$')",
        "service_name": _SERVICE, "method_name": _METHOD, "insert_id": _INSERT_ID,
        "resource_type": text("resource", "type"),
        "project": first_of(text("resource", "labels", "project_id"), f"extract({_LOG_NAME}, '^projects/([^/]+)/')"),
        "status_code": f"if({raw('status', 'code', rec=_P)} = '', '', toString({_CODE}))",
        "status_message": f"substring({text('status', 'message', rec=_P)}, 1, 500)",
        "severity": text("severity"), "permission": text("authorizationInfo", 1, "permission", rec=_P),
        "principal_subject": _SUBJECT, "delegated_by": _DELEGATED_BY,
        "service_account_key": text("serviceAccountKeyName", rec=_AUTH),
        "caller_ip": f"if({_SOURCE_IP} = '', {_CALLER_IP}, '')",
        "user_agent": f"substring({_AGENT}, 1, 300)",
        "bq_event": f"if({_SERVICE} = 'bigquery.googleapis.com', {_BQ_EVENT}, '')",
        "job_name": _JOB_NAME, "job_type": _JOB_KIND, "statement_type": _STATEMENT,
        "destination_uris": f"substring(arrayStringConcat({_DESTINATION_URIS}, ','), 1, 1000)",
        "binding_role": f"if({_SETS_POLICY}, JSONExtractString({_DELTA}, 'role'), '')",
        "binding_deltas": f"if({_SETS_POLICY}, toString(length({_DELTAS})), '')",
        "other_bindings": f"if({_SETS_POLICY}, substring({_OTHER_BINDINGS}, 1, 1000), '')",
        "num_response_items": text("numResponseItems", rec=_P),
    }),
})
# The named parts are written once, in a tuple the row does not depend on otherwise.
RECORD_SQL = f"if(isNull(tuple({', '.join(f'{e} AS gcp_{n}' for n, e in _PARTS.items())})), '', {_ROW})"


def _recognise(record: dict[str, Any]) -> bool:
    payload = record.get("protoPayload")
    if not isinstance(payload, dict):
        return False
    # Panther's normalised copies spell the key ``at_sign_type``.
    return AUDIT_LOG_TYPE in (payload.get("@type"), payload.get("at_sign_type"))


SOURCE = Source(
    name="gcp-audit",
    description="Google Cloud Audit Logs (Cloud Logging LogEntry with an AuditLog protoPayload): "
                "JSON Lines or JSON arrays, gzip too",
    sees="IAM policy grants and revokes with grantees and groups (permission fan-out, exposure), BigQuery "
         "table reads, queries and joins with their tables, bytes and rows, extract jobs with destinations "
         "(bulk export), Cloud Storage object reads (artifact download), Vertex AI / AI Platform training with "
         "its input URIs (unsanitised training), service-account and agent identities, denied calls",
    cannot_see="group membership (only the member a binding names), Cloud Storage object sizes, what a "
               "query returned beyond its row count, training inputs not written as URIs in the job's args, "
               "data-access entries a project never enabled, callers Google redacts",
    recognise=_recognise,
    record_sql=RECORD_SQL,
    parameters={"agent_pattern": "(?i)(^|[^a-z])(agent|bot|copilot|assistant)([^a-z]|$)"},
)
