"""ClickHouse's own ``system.query_log``: pulled from a watched server (:mod:`features.pull`), or
ingested from a JSON Lines export (``SELECT … FROM system.query_log FORMAT JSONEachRow``,
with ``SETTINGS session_timezone = 'UTC'`` so that times are UTC).

Only finished and failed queries count (``QueryFinish``, ``ExceptionBeforeStart``,
``ExceptionWhileProcessing``). Mapping (one query → one ``access_log`` row):

- **principal**: ``user``. **principal_type**: ``agent`` when the user matches the
  ``agent_pattern`` parameter, ``human`` when it matches ``human_pattern`` (default: an
  e-mail-like name), else ``service``.
- **action**: ``GRANT`` → ``grant``, ``REVOKE`` → ``revoke``, each with the **grantee** (the
  first of the ``TO``/``FROM`` list; all of them in ``attributes.grantees``) and as resource
  the ``ON`` target (``db.table``, ``db.*``, ``*.*``) or the granted role; an ``INSERT INTO
  FUNCTION s3/url/file/remote/…(…)`` or ``INTO OUTFILE`` → ``export`` of the tables it read
  (``attributes.destination``: the function and its first argument); other ``INSERT``s →
  ``write`` into their target (the tables read are ``related``); ``DROP``, ``TRUNCATE``,
  ``DELETE`` and ``ALTER … DELETE``/``DROP PARTITION`` → ``delete``; a ``SELECT`` over one
  table (or a table function reading a URL, file, bucket) → ``query``, over several →
  ``join`` with the others as ``related``; ``CREATE``/``ALTER``/``RENAME``/``BACKUP``/
  ``RESTORE`` → ``write``. Statements that touch no data (``SET``, ``USE``, ``SHOW``,
  ``SYSTEM``, ``EXPLAIN``, a ``SELECT`` of constants) and queries over system tables only
  (``system.*``, ``information_schema.*`` and the ``ignore_tables`` parameter: blastwall's
  own tables when the watched server is the store) are not access: the pull skips them, a
  file ingest rejects them as ``missing action``.
- **resource**: ``database.table`` as the log names it; when a query failed before it was
  analysed (``tables`` is empty) the table is read from the query text.
- **rows**/**bytes**: ``written_rows``/``written_bytes`` for writes and exports (else what was
  read), ``read_rows``/``read_bytes`` for the rest; ``result_rows``/``result_bytes`` in
  attributes.
- **status**: ``exception_code`` 0 → ``ok``; access errors (497 ACCESS_DENIED, 291
  DATABASE_ACCESS_DENIED, 164 READONLY, 516 AUTHENTICATION_FAILED, 195
  IP_ADDRESS_NOT_ALLOWED, 192 UNKNOWN_USER) → ``denied``; any other code → ``error``.
- **event_time**: ``event_time_microseconds``; **source_ip**: ``address`` (IPv4-mapped
  addresses as IPv4); **via**: from ``http_user_agent``/``client_name`` (Jupyter →
  ``notebook``, Airflow/dbt/Spark/… → ``pipeline``, assistants and agents → ``ai_assistant``,
  a browser → ``console``) else ``api`` for network interfaces, ``''`` for in-process.
- **event_id**: ``query_id:type:event time in µs`` — deterministic, so pulling (or
  ingesting) the same query again counts once, and a ``query_id`` reused later stays apart.
- **attributes** (whitelist): ``source``, ``query_id``, ``query_kind``, ``database``,
  ``exception_code``, ``exception`` (500 characters), ``query`` (1,000 characters),
  ``log_comment``, ``destination``, ``grantees``, ``result_rows``, ``result_bytes``,
  ``client``.

It cannot see what a query returned (only counts), who is behind a shared user, reads of
data outside ClickHouse, or queries of other cluster nodes (each node logs its own; the pull
reads initial queries of the one it is given).
"""

from __future__ import annotations

from typing import Any

from features.sources import Source, attributes, contract_row

NAME = "clickhouse-query-log"

#: The query_log types that are access events (a query that started is not yet one).
TYPES = ("QueryFinish", "ExceptionBeforeStart", "ExceptionWhileProcessing")
#: Error codes that mean "not allowed" rather than "went wrong".
DENIED_CODES = (497, 291, 164, 516, 195, 192)
#: Tables that are never data access.
SYSTEM_TABLES = r"^(system|information_schema|INFORMATION_SCHEMA|_table_function)\."
#: How much of the query text is carried (parsing) and kept (the ``query`` attribute).
QUERY_CHARS, QUERY_ATTRIBUTE_CHARS = 4000, 1000

# The fields of a query_log row a record carries, as the pull selects them (JSONEachRow).
RECORD_FIELDS = {
    "type": "toString(type)",
    "query_id": "query_id",
    "event_time_microseconds": "toString(toTimeZone(event_time_microseconds, 'UTC'))",
    "user": "user",
    "query_kind": "toString(query_kind)",
    "current_database": "current_database",
    "tables": "CAST(tables, 'Array(String)')",
    "query": f"substring(query, 1, {QUERY_CHARS})",
    "read_rows": "read_rows", "read_bytes": "read_bytes",
    "written_rows": "written_rows", "written_bytes": "written_bytes",
    "result_rows": "result_rows", "result_bytes": "result_bytes",
    "exception_code": "exception_code",
    "exception": "substring(exception, 1, 500)",
    "address": "toString(address)",
    "interface": "toString(interface)",
    "http_user_agent": "http_user_agent",
    "client_name": "client_name",
    "log_comment": "log_comment",
}


class _Fields:
    """How the mapping reads a field: from a record's JSON (``rec``) or a typed query_log row."""

    def __init__(self, typed: bool):
        self.typed = typed

    def s(self, name: str) -> str:
        return f"toString({name})" if self.typed else f"JSONExtractString(rec, '{name}')"

    def a(self, name: str) -> str:
        # From the raw text, so the ingest's single parse of each record covers it too.
        return (f"CAST({name}, 'Array(String)')" if self.typed
                else f"JSONExtract(JSONExtractRaw(rec, '{name}'), 'Array(String)')")

    def u(self, name: str) -> str:
        return f"toUInt64({name})" if self.typed else f"JSONExtractUInt(rec, '{name}')"

    def i(self, name: str) -> str:
        return f"toInt64({name})" if self.typed else f"JSONExtractInt(rec, '{name}')"


_IDENT = r"(?:`[^`]+`|\"[^\"]+\"|[\w$]+)"
_NAME = rf"({_IDENT}(?:\.{_IDENT})?)"
# Leading whitespace and comments, so that the statement's first word can be anchored.
_LEAD = r"(?s)^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*"
_EXTERNAL = ("s3", "s3Cluster", "url", "urlCluster", "file", "fileCluster", "remote", "remoteSecure", "hdfs",
             "hdfsCluster", "azureBlobStorage", "azureBlobStorageCluster", "gcs", "cosn", "oss", "mysql",
             "postgresql", "mongodb", "redis", "sqlite", "jdbc", "odbc", "iceberg", "icebergS3", "deltaLake",
             "hudi", "clusterAllReplicas", "cluster")


def _q(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _unquote(expression: str) -> str:
    return f"replaceRegexpAll({expression}, '[`\"]', '')"


def _qualified(name: str, database: str) -> str:
    """``db.table`` for a name that may lack its database."""
    bare = _unquote(name)
    return f"if({bare} = '' OR position({bare}, '.') > 0, {bare}, concat({database}, '.', {bare}))"


# Regular expressions (RE2) over the statement with its leading comments removed.
_RE_EXPORT_FN = r"(?is)^INSERT\s+INTO\s+(?:TABLE\s+)?FUNCTION\s+(\w+)"
_RE_EXPORT_ARG = r"(?is)^INSERT\s+INTO\s+(?:TABLE\s+)?FUNCTION\s+\w+\s*\(\s*'([^']*)'"
_RE_OUTFILE = r"(?is)\sINTO\s+OUTFILE\s+'([^']*)'"
_RE_READ_FN = r"(?is)\b(?:FROM|JOIN)\s+((?:" + "|".join(_EXTERNAL) + r")\s*\(\s*'[^']*')"
_RE_FN_NAME, _RE_FN_ARG = r"^(\w+)", r"'([^']*)'"
_RE_TEXT_TABLE = (r"(?is)\b(?:FROM|JOIN|INTO|TABLE|VIEW|DICTIONARY)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?"
                  + _NAME)
_RE_INSERT_TARGET = r"(?is)^INSERT\s+INTO\s+(?:TABLE\s+)?" + _NAME
_RE_ACCESS_OBJECT = r"(?is)^(?:CREATE|ALTER|DROP)\s+(?:USER|ROLE)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?" + _NAME
_RE_ALTER_DELETE = (r"(?is)^ALTER\s+TABLE\s+\S+\s+(?:ON\s+CLUSTER\s+\S+\s+)?"
                    r"(?:DELETE\s+WHERE|DROP\s+(?:PARTITION|PART)\b)")
_RE_GRANTEES = r"(?is)\s(?:TO|FROM)\s+(.+?)(?:\s+WITH\s+.*|\s+EXCEPT\s+.*)?\s*;?\s*$"
_RE_ON_TARGET = r"(?is)\sON\s+((?:[\w`\"*$]+)(?:\.[\w`\"*$]+)?)\s+(?:TO|FROM)\s"
_RE_ROLE = r"(?is)^(?:GRANT|REVOKE)\s+(?:ON\s+CLUSTER\s+\S+\s+)?(?:ADMIN\s+OPTION\s+FOR\s+)?(.+?)\s+(?:TO|FROM)\s"


def _bind(values: dict[str, str], body: str) -> str:
    """``body`` with each name bound to its value, each value computed once.

    A ClickHouse lambda over one-element arrays: the mapping names its intermediate values
    instead of repeating their SQL (the statement would otherwise grow past the engine's
    query size, since every use of a value repeats its whole definition).
    """
    names = ", ".join(values)
    return f"arrayMap(({names}) -> {body}, {', '.join(f'[{v}]' for v in values.values())})[1]"


def _mapping(f: _Fields, body: str) -> str:
    """``body`` (SQL over the ``q_*`` names below) with the query's intermediate values bound."""
    stmt = f"replaceRegexpOne({f.s('query')}, {_q(_LEAD)}, '')"
    system, ignore = _q(SYSTEM_TABLES), "{ignore_tables:String}"

    def extract(pattern: str) -> str:
        return f"extract(q_stmt, {_q(pattern)})"

    def ignored(name: str) -> str:
        return f"(match({name}, {system}) OR match({name}, {ignore}))"

    layer2 = {
        "q_logged": f"arrayFilter(t -> NOT {ignored('t')}, q_tables)",
        # A query refused before analysis logs no tables: the first one its text names.
        "q_text": _qualified(extract(_RE_TEXT_TABLE), "q_db"),
        "q_export_fn": extract(_RE_EXPORT_FN),
        "q_export_arg": extract(_RE_EXPORT_ARG),
        "q_outfile": extract(_RE_OUTFILE),
        "q_read_fn": extract(_RE_READ_FN),
        "q_insert": _qualified(extract(_RE_INSERT_TARGET), "q_db"),
        "q_object": _unquote(extract(_RE_ACCESS_OBJECT)),
        "q_on": extract(_RE_ON_TARGET),
        "q_role": _unquote(f"trimBoth(splitByChar(',', {extract(_RE_ROLE)})[1])"),
        "q_grantees": (f"arrayFilter(x -> x != '', arrayMap(x -> {_unquote('trimBoth(x)')}, "
                       f"splitByChar(',', {extract(_RE_GRANTEES)})))"),
    }
    text_tables = (f"if(q_text = '' OR upper(q_text) LIKE '%.FUNCTION' OR {ignored('q_text')}, [], [q_text])")
    read_resource = (f"if(q_read_fn = '', [], [concat(extract(q_read_fn, {_q(_RE_FN_NAME)}), ':',"
                     f" extract(q_read_fn, {_q(_RE_FN_ARG)}))])")
    layer3 = {
        "q_dest": ("multiIf(q_export_fn != '', if(q_export_arg != '', concat(q_export_fn, ':', q_export_arg),"
                   " q_export_fn), q_outfile != '', concat('outfile:', q_outfile), '')"),
        "q_read": f"arrayConcat(if(empty(q_tables), {text_tables}, q_logged), {read_resource})",
        "q_target": "if(q_export_fn != '', '', q_insert)",
        "q_granted": f"if(q_on != '', {_qualified('q_on', 'q_db')}, q_role)",
    }
    action = (
        "multiIf("
        "q_kind = 'Grant', 'grant', q_kind = 'Revoke', 'revoke', q_dest != '', 'export', q_kind = 'Insert', 'write',"
        f" q_kind IN ('Drop', 'Delete') OR (q_kind = 'Alter' AND match(q_stmt, {_q(_RE_ALTER_DELETE)})), 'delete',"
        " q_kind = 'Select', if(length(q_read) > 1, 'join', 'query'),"
        " q_kind IN ('Create', 'Alter', 'Rename', 'Backup', 'Restore', 'Undrop'), 'write', '')"
    )
    # Statements that name no data are not access (a SELECT of constants, reads of system tables).
    relevant = (f"q_action != '' AND (q_action IN ('grant', 'revoke', 'export') OR notEmpty(q_read)"
                f" OR q_object != '' OR (q_kind = 'Insert' AND q_target != '' AND NOT {ignored('q_target')}))")
    layer5 = {"q_relevant": relevant}
    return _bind(
        {"q_stmt": stmt, "q_kind": f.s("query_kind"), "q_db": f.s("current_database"), "q_tables": f.a("tables")},
        _bind(layer2, _bind(layer3, _bind({"q_action": action}, _bind(layer5, body)))))


#: The condition (over a typed ``system.query_log`` row) that a query is an access event;
#: the pull applies it on the watched server, so only access leaves it. Needs the
#: ``ignore_tables`` query parameter.
RELEVANT_SQL = _mapping(_Fields(typed=True), "q_relevant")

_F = _Fields(typed=False)
_USER = _F.s("user")
_CODE = _F.i("exception_code")
_TIME_TEXT = _F.s("event_time_microseconds")
# A time without a zone is UTC (the pull converts it; exports should set session_timezone).
_TIME = f"if(match({_TIME_TEXT}, '(Z|[+-][0-9]{{2}}:?[0-9]{{2}})$'), {_TIME_TEXT}, concat({_TIME_TEXT}, 'Z'))"
_MICROS = f"toString(toUnixTimestamp64Micro(parseDateTime64BestEffortOrZero({_TIME}, 6, 'UTC')))"
_AGENT = f"concat({_F.s('http_user_agent')}, ' ', {_F.s('client_name')})"
_INTERFACE = _F.s("interface")
_VIA = (
    f"multiIf(match({_AGENT}, '(?i)jupyter|ipykernel|notebook|colab|databricks'), 'notebook',"
    f" match({_AGENT}, '(?i)airflow|dagster|prefect|dbt|spark|flink|kafka|luigi|argo|kubeflow|mlflow'), 'pipeline',"
    f" match({_AGENT}, '(?i)copilot|assistant|agent|llm|mcp|langchain|openai|anthropic|claude|gpt'), 'ai_assistant',"
    f" {_INTERFACE} = 'HTTP' AND match({_AGENT}, '(?i)mozilla'), 'console',"
    f" {_INTERFACE} NOT IN ('', 'Local'), 'api', '')"
)
_WRITES = f"q_action IN ('write', 'export') AND ({_F.u('written_rows')} > 0 OR {_F.u('written_bytes')} > 0)"
_RESOURCE = (
    "multiIf(q_action IN ('grant', 'revoke'), q_granted,"
    " q_action = 'export', if(notEmpty(q_read), q_read[1], q_dest),"
    " q_action = 'write' AND q_kind = 'Insert', q_target,"
    " notEmpty(q_read), q_read[1], q_object != '', q_object, concat('clickhouse:', lower(q_kind)))"
)
_RELATED = ("multiIf(q_action = 'write' AND q_kind = 'Insert', arrayFilter(t -> t != q_target, q_read),"
            " q_action IN ('grant', 'revoke'), [], arraySlice(q_read, 2))")

RECORD_SQL = _mapping(_F, contract_row({
    "event_time": _TIME,
    "event_id": f"concat({_F.s('query_id')}, ':', {_F.s('type')}, ':', {_MICROS})",
    "principal": _USER,
    "principal_type": (f"multiIf(match({_USER}, {{agent_pattern:String}}), 'agent',"
                       f" match({_USER}, {{human_pattern:String}}), 'human', 'service')"),
    # A record that is not access gets no action, so the contract parser rejects it.
    "action": "if(q_relevant, q_action, '')",
    "resource": _RESOURCE,
    "related": _RELATED,
    "grantee": "if(q_action IN ('grant', 'revoke') AND notEmpty(q_grantees), q_grantees[1], '')",
    "bytes": f"if({_WRITES}, {_F.u('written_bytes')}, {_F.u('read_bytes')})",
    "rows": f"if({_WRITES}, {_F.u('written_rows')}, {_F.u('read_rows')})",
    "via": _VIA,
    "status": f"multiIf({_CODE} = 0, 'ok', {_CODE} IN ({', '.join(map(str, DENIED_CODES))}), 'denied', 'error')",
    "source_ip": f"replaceRegexpOne({_F.s('address')}, '^(::ffff:([0-9.]+)|::)$', '\\\\2')",
    "attributes": attributes({
        "source": _q(NAME), "query_id": _F.s("query_id"), "query_kind": "q_kind", "database": "q_db",
        "exception_code": f"if({_CODE} = 0, '', toString({_CODE}))",
        "exception": f"substring({_F.s('exception')}, 1, 500)",
        "query": f"substring({_F.s('query')}, 1, {QUERY_ATTRIBUTE_CHARS})",
        "log_comment": _F.s("log_comment"),
        "destination": "q_dest",
        "grantees": "if(length(q_grantees) > 1, arrayStringConcat(q_grantees, ','), '')",
        "result_rows": f"if({_F.u('result_rows')} = 0, '', toString({_F.u('result_rows')}))",
        "result_bytes": f"if({_F.u('result_bytes')} = 0, '', toString({_F.u('result_bytes')}))",
        "client": _F.s("client_name"),
    }),
}))

#: Defaults of the parameters ``RECORD_SQL`` and ``RELEVANT_SQL`` use.
PARAMETERS = {
    "agent_pattern": "(?i)(^|[^a-z])(agent|bot|copilot|assistant)([^a-z]|$)",
    "human_pattern": r"^[^@\s]+@[^@\s]+$",
    # Never matches: tables to ignore beside the system ones (the pull adds blastwall's own).
    "ignore_tables": "$^",
}


def _recognise(record: dict[str, Any]) -> bool:
    return "query_id" in record and "query_kind" in record and "type" in record


SOURCE = Source(
    name=NAME,
    description="ClickHouse system.query_log: pulled from a server (blastwall pull), or JSONEachRow exports",
    sees="reads, joins across tables (unusual join), exports through INSERT INTO FUNCTION s3/url/file/remote "
         "(bulk export), GRANT/REVOKE with grantees (permission fan-out, exposure), writes, deletes, denied "
         "queries, row and byte counts, service and agent users (runaway agent)",
    cannot_see="what a query returned, who is behind a shared user, data read outside ClickHouse, training "
               "runs, the sensitivity of tables (the catalogue is yours), queries of other cluster nodes, "
               "role memberships changed outside SQL",
    recognise=_recognise,
    record_sql=RECORD_SQL,
    parameters=dict(PARAMETERS),
    pulled_by="blastwall pull --source clickhouse-query-log [--from DSN], or the settings' "
              "sources.clickhouse_query_log (a scheduled job)",
)
