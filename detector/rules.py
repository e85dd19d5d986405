"""Detection rules as code: files engineers write, checked all at once, run in every step.

One rule per YAML file in :data:`LIBRARY` (the built-in rules) or a folder named in the
settings (``rules: [./our-rules]``); its id is the file name and it becomes the alert's
``detector``, so incidents, dedup, severity routing and playbooks treat it like a built-in
family. A rule is a read-only ClickHouse query over the contract tables (``access_log``,
``resources``, ``memberships``, ``principals``) for the window; every row it returns is
one finding::

    description: ...
    entity: grant                        # principal | resource | grant | training_run
    key: "{{ resource }} -> {{ grantee }}"   # the entity key (Jinja2 over the row's columns)
    dedup: "{{ resource }}"              # optional: findings with the same dedup key update one incident
    severity: SEV2                       # or {default: SEV3, cases: [{when: "...", severity: SEV1}]}
    title: "{{ principal }} granted {{ grantee }} access to {{ resource }}"
    techniques: [T1098]
    parameters: {approval_minutes: 60}   # the query reads them as {approval_minutes:UInt32}
    query: |
      SELECT ... FROM access_log
      WHERE event_time >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
        AND event_time < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC') ...
    tests:
      - name: ...
        window: {start: 2026-10-05T09:00:00Z, end: 2026-10-05T10:00:00Z}
        events: [{event_time: 2026-10-05T09:10:00Z, principal: ..., action: grant, resource: ...}]
        resources: [{resource: ..., sensitivity: restricted, updated_at: 2026-10-01T00:00:00Z}]
        expect: [{entity_key: "ds -> everyone", severity: SEV1}]   # or [] : no alert

The window bounds and the rule's parameters always travel as query parameters
(``{start_ms:Int64}``/``{end_ms:Int64}`` epoch milliseconds, or
``{start:DateTime64(3, 'UTC')}``/``{end:DateTime64(3, 'UTC')}``), never formatted into
the SQL. Columns the runner understands: ``principal``/``principals``,
``resource``/``resources``, ``first_seen``/``last_seen`` (or ``event_time``),
``score`` (0-1, default 1), ``grantee`` (with ``resource``: the grant a playbook revokes).
Every other scalar column is kept in the incident's explanation.

Read-only, three times over: the text must be one ``SELECT``/``WITH`` statement with no
write keyword, table function, ``INTO OUTFILE``, ``FORMAT`` or ``SETTINGS``
(:func:`read_only_problems`, at load); ``rule test`` parses it with ClickHouse's own
``EXPLAIN AST`` and refuses anything but one ``SelectWithUnionQuery``; and every run
carries the ``readonly=1`` setting.

Instead of ``query:``, a rule may give ``condition:`` (exactly one of the two): a small
boolean expression (:mod:`detector.condition`, an allow-list evaluator rather than a
template sandbox) over one row of the window's feature frame of ``entity``, e.g.
``bytes_exported > min_bytes and new_export_destinations > 0``. Every name must be a
registry feature of that entity or a declared parameter. It runs on the detect step's
:class:`~features.engine.FeatureSet` (never recomputed here: that would advance the
history); its templates see the entity's key columns and every feature, and its
explanation lists the features the condition names. Its inline tests run the real
feature step over the test's events, from an empty history (only the test's events
before the window make one).

Beside ``ID.yaml``, an optional ``ID.py`` (as a playbook's module) may define
``match(row) -> bool`` (rows it returns false for are dropped) and ``enrich(row) -> dict``
(extra columns for the templates and the explanation). One that does not import, or
defines neither, is a load problem with its file and line; an exception in either at run
time fails the rule (a ``pipeline_error`` incident), never the step.

:func:`load_rules` returns the valid rules and every problem of every file (file and
line); :func:`test_rules` adds the invariants and runs each file's inline tests against
a fresh embedded store; :func:`rule_alerts` runs the rules in the detect step, where a
rule that fails becomes a ``pipeline_error`` incident and never stops the step.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import tempfile
import traceback
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import jinja2
import yaml
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from detector.alerting import error_alert
from detector.condition import ConditionError, evaluate
from detector.condition import parse as parse_condition
from detector.families import Batch
from detector.families import known_detectors as family_detectors
from detector.incidents import Alert
from detector.severity import SEVERITIES, Severity, most_severe
from features.registry import BY_NAME, ENTITY_KEYS, features_of
from features.settings_file import FileProblem as Problem
from features.settings_file import (
    SettingsFileError,
    YamlDocument,
    in_checkout,
    read_yaml,
    validation_problems,
    yaml_files,
)
from features.settings_file import missing_folders as missing_folder_problems
from features.times import bound_ms, from_epoch_ms

if TYPE_CHECKING:
    from features.engine import FeatureSet

#: The rules that ship with blastwall.
LIBRARY = Path(__file__).resolve().parent / "rules"
#: The tables a rule is written against (the input contract).
CONTRACT_TABLES = ("access_log", "resources", "memberships", "principals")
#: Query parameters every rule gets: the window ``[start, end)``.
WINDOW_PARAMETERS = ("start", "end", "start_ms", "end_ms")
#: The setting every rule query runs with.
READ_ONLY = {"readonly": 1}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TECHNIQUE = re.compile(r"^(AML\.)?T\d{4}(\.\d{3})?$")
_PLACEHOLDER = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^{}]+?)\s*\}")
_WRITE_WORDS = ("INSERT", "ALTER", "DROP", "CREATE", "TRUNCATE", "DELETE", "UPDATE", "RENAME", "ATTACH",
                "DETACH", "OPTIMIZE", "REVOKE", "KILL", "EXCHANGE", "UNDROP", "BACKUP", "RESTORE")
_CLAUSES = (("INTO OUTFILE", r"\bINTO\s+OUTFILE\b"), ("FORMAT", r"\bFORMAT\b"), ("SETTINGS", r"\bSETTINGS\b"))
_TABLE_FUNCTION = re.compile(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.]*)\s*\(", re.IGNORECASE)
_TEST_TABLES = ("access_log", "event_ids", "rejected_rows", *CONTRACT_TABLES[1:])

# Sandboxed, strict: a rule may come from anyone who can write to a rule folder, and a
# value from a log line is only ever data to a template, never a template itself.
_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


class RuleError(ValueError):
    """A rule that fails on a row (a template or condition that does not evaluate)."""


# --- the file format -------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_template(text: str) -> str:
    try:
        _ENV.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"template {text!r} does not compile: {exc.message}") from None
    return text


def _check_condition(text: str) -> str:
    try:
        _ENV.compile_expression(text)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"condition {text!r} does not compile: {exc.message}") from None
    return text


class SeverityCase(_Strict):
    """``severity`` when ``when`` (a Jinja2 expression over the row and ``params``) holds."""

    when: str
    severity: Severity

    @field_validator("when")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return _check_condition(value)


class SeverityRule(_Strict):
    """Severity by condition: the first case that holds, else ``default``."""

    default: Severity
    cases: list[SeverityCase] = Field(default_factory=list)


class Window(_Strict):
    """A test's detection window ``[start, end)``."""

    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window times need a time zone (…Z)")
        if self.start >= self.end:
            raise ValueError("window start must be before its end")
        return self


class ExpectedAlert(_Strict):
    """One alert a test expects (only the fields given are compared)."""

    entity_key: str
    severity: Severity | None = None
    title: str | None = None
    principals: list[str] | None = None
    resources: list[str] | None = None


class RuleTest(_Strict):
    """Contract rows in (and catalogue rows), the expected alerts out (``[]``: none)."""

    name: str
    window: Window
    events: list[dict[str, Any]] = Field(default_factory=list)
    resources: list[dict[str, Any]] = Field(default_factory=list)
    memberships: list[dict[str, Any]] = Field(default_factory=list)
    principals: list[dict[str, Any]] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    expect: list[ExpectedAlert]


class RuleSpec(_Strict):
    """The file's content."""

    id: str | None = None
    description: str = Field(min_length=1)
    entity: Literal["principal", "resource", "grant", "training_run"]
    key: str
    dedup: str | None = None
    group: str | None = None
    severity: Severity | SeverityRule
    title: str
    techniques: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    query: str | None = Field(None, min_length=1)
    condition: str | None = Field(None, min_length=1)
    #: A query rule's precondition: a SQL condition on ``access_log`` columns that some event
    #: of the window must meet for the query to find anything (``action = 'grant'``). Windows
    #: without such an event skip the query; replay checks a whole batch in one query.
    only_when: str | None = Field(None, min_length=1)
    #: Decided by the events so far and the catalogue, with no baseline: the fast path
    #: (:mod:`detector.fastpath`) runs the query every few seconds over the step so far, so
    #: an incident opens (and pages and contains) before the step ends. Query rules only.
    realtime: bool = False
    tests: list[RuleTest] = Field(default_factory=list)

    @field_validator("key", "dedup", "group", "title")
    @classmethod
    def _templates(cls, value: str | None) -> str | None:
        return value if value is None else _check_template(value)

    @model_validator(mode="after")
    def _realtime_needs_a_query(self) -> RuleSpec:
        if self.realtime and self.condition is not None:
            raise ValueError("realtime: true needs a query: a condition reads the step's features, "
                             "which exist only once the step is over")
        return self

    @field_validator("techniques")
    @classmethod
    def _techniques(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not _TECHNIQUE.match(v)]
        if bad:
            raise ValueError(f"not MITRE technique ids (T1098, AML.T0020): {', '.join(bad)}")
        return values


@dataclass
class Rule:
    """A loaded rule."""

    id: str
    path: Path
    spec: RuleSpec
    document: YamlDocument | None = None
    match_hook: Callable[[dict[str, Any]], Any] | None = None
    enrich_hook: Callable[[dict[str, Any]], Any] | None = None
    _condition: ast.Expression | None = field(default=None, repr=False)

    def line_of(self, *path: Any) -> int:
        """The line of a node of the file (the nearest enclosing node that has one)."""
        return self.document.line_of(path) if self.document is not None else 0

    @property
    def module_path(self) -> Path:
        """The optional Python module beside the file (``ID.py``)."""
        return self.path.with_suffix(".py")

    @property
    def condition_tree(self) -> ast.Expression:
        """The parsed ``condition:`` (checked at load).

        Raises
        ------
        RuleError
            The rule has no condition, or it does not parse.
        """
        if self._condition is None:
            if self.spec.condition is None:
                raise RuleError(f"rule {self.id} has no condition")
            try:
                self._condition = parse_condition(self.spec.condition)[0]
            except ConditionError as exc:
                raise RuleError(str(exc)) from None
        return self._condition


# --- read-only check --------------------------------------------------------------------


def _blank(text: str) -> str:
    """The SQL with comments, string literals and quoted names blanked (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if text.startswith("--", i) or ch == "#":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif ch in "'\"`":
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(ch + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + ch)
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def read_only_problems(sql: str) -> list[tuple[int, str]]:
    """Why a query is not one read-only ``SELECT``: ``(line within the query, message)`` each.

    Strict on purpose: comments and literals are set aside, then the text must be a
    single ``SELECT``/``WITH`` statement, with no write keyword, no table function
    (``file(…)``, ``url(…)``, ``remote(…)``…), no ``INTO OUTFILE``, ``FORMAT`` or
    ``SETTINGS``. The embedded engine runs every statement of a multi-statement text,
    so this check comes before anything is sent to it.
    """
    code = _blank(sql)
    problems: list[tuple[int, str]] = []

    def line(pos: int) -> int:
        return code.count("\n", 0, pos)

    body = code.rstrip()
    if body.endswith(";"):
        body = body[:-1]
    first = re.search(r"\S+", body)
    if first is None:
        return [(0, "the query is empty")]
    if first.group(0).upper().split("(")[0] not in ("SELECT", "WITH"):
        problems.append((line(first.start()), f"a rule query is one SELECT (or WITH … SELECT), not {first.group(0)!r}"))
    if ";" in body:
        problems.append((line(body.index(";")), "one statement only: ';' is not allowed inside the query"))
    for word in _WRITE_WORDS:
        for match in re.finditer(rf"\b{word}\b", body, re.IGNORECASE):
            problems.append((line(match.start()), f"{word} is not allowed: a rule query only reads"))
    for label, pattern in _CLAUSES:
        for match in re.finditer(pattern, body, re.IGNORECASE):
            problems.append((line(match.start()), f"{label} is not allowed in a rule query"))
    for match in _TABLE_FUNCTION.finditer(body):
        problems.append((line(match.start()), f"table function {match.group(1)}(…) is not allowed: read the "
                                              f"contract tables ({', '.join(CONTRACT_TABLES)})"))
    return sorted(set(problems))


def placeholders(sql: str) -> dict[str, str]:
    """The query parameters a query names, ``{name: type}`` (comments and literals ignored)."""
    code = _blank(sql)
    return {m.group(1): m.group(2) for m in _PLACEHOLDER.finditer(code)}


# --- loading ----------------------------------------------------------------------------


def _query_line(document: YamlDocument) -> int:
    """The file line of the query's first line (a block scalar starts after ``query: |``)."""
    root = document.root
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "query" and isinstance(value, yaml.ScalarNode):
                return value.start_mark.line + (2 if value.style in ("|", ">") else 1)
    return document.line_of(("query",))


def load_rule(path: Path) -> tuple[Rule | None, list[Problem]]:
    """Read and validate one file; every problem is returned, none raised."""
    try:
        document = read_yaml(path)
    except SettingsFileError as exc:
        return None, exc.problems
    data = document.data
    if not isinstance(data, dict):
        return None, [Problem(path, 1, "a rule is a YAML mapping (description, entity, key, query, tests, ...)")]
    rule = Rule(path.stem, path, RuleSpec.model_construct(), document)
    problems = _semantic_problems(rule, data)
    severity = data.get("severity")
    if isinstance(severity, str) and severity not in SEVERITIES:  # reported plainly above, not as a union error
        data = {**data, "severity": "SEV4"}
    try:
        rule.spec = RuleSpec.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(document, exc) + problems
    problems += _load_hooks(rule)  # reported with the file's own problems: one pass shows them all
    return (None if problems else rule), sorted(problems, key=lambda p: (str(p.file), p.line))


def _semantic_problems(rule: Rule, data: dict[str, Any]) -> list[Problem]:
    """What the schema cannot see: the id, the query (read-only, parameters), the invariants."""
    problems: list[Problem] = []

    def problem(message: str, *path: Any, line: int | None = None) -> None:
        problems.append(Problem(rule.path, rule.line_of(*path) if line is None else line, message))

    if not _NAME.match(rule.id):
        problem(f"the file name {rule.id!r} is not a valid id (lower_snake_case)")
    if data.get("id") is not None and data.get("id") != rule.id:
        problem(f"id {data.get('id')!r} differs from the file name {rule.id!r}", "id")
    if rule.id in family_detectors():
        problem(f"id {rule.id!r} is a built-in detector; name the rule otherwise")
    severity = data.get("severity")
    if isinstance(severity, str) and severity not in SEVERITIES:
        problem(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}", "severity")
    query = data.get("query")
    declared = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
    if "query" in data and "condition" in data:
        problem("give either `query:` or `condition:`, not both (a rule is one SQL query or one condition "
                "over a feature row)", "condition")
    elif "query" not in data and "condition" not in data:
        problem("a rule needs a `query:` (read-only SQL) or a `condition:` (over the entity's features)")
    only_when = data.get("only_when")
    if only_when is not None and "query" not in data:
        problem("`only_when:` is a query rule's precondition; a condition rule has no query to skip", "only_when")
    elif isinstance(only_when, str):
        for _, message in read_only_problems(f"SELECT 1 FROM access_log WHERE ({only_when})"):
            problem(f"only_when: {message}", "only_when")
    condition = data.get("condition")
    if isinstance(condition, str) and "query" not in data:
        problems.extend(_condition_problems(rule, condition, data.get("entity"), declared))
    if isinstance(query, str) and rule.document is not None:
        first = _query_line(rule.document)
        for offset, message in read_only_problems(query):
            problem(message, line=first + offset)
        named = placeholders(query)
        code = _blank(query)
        for match in _PLACEHOLDER.finditer(code):
            name = match.group(1)
            if name not in WINDOW_PARAMETERS and name not in declared:
                problem(f"the query names parameter {name!r}, which `parameters:` does not declare (window "
                        f"parameters: {', '.join(WINDOW_PARAMETERS)})", line=first + code.count("\n", 0, match.start()))
        for name in declared:
            if name in WINDOW_PARAMETERS:
                problem(f"parameter {name!r} is the window's; name yours otherwise", "parameters", name)
            elif name not in named:
                problem(f"parameter {name!r} is not used by the query", "parameters", name)
        if not ({"start", "start_ms"} & set(named) and {"end", "end_ms"} & set(named)):
            problem("the query must bound the window: use {start_ms:Int64} and {end_ms:Int64} "
                    "(or {start:DateTime64(3, 'UTC')} and {end:DateTime64(3, 'UTC')})", "query")
    tests = data.get("tests") if isinstance(data.get("tests"), list) else []
    expectations = [t.get("expect") for t in tests if isinstance(t, dict)]
    if not any(isinstance(e, list) and e for e in expectations):
        problem("needs at least one positive test (events that must alert)", "tests")
    if not any(isinstance(e, list) and not e for e in expectations):
        problem("needs at least one negative test (events that must not alert: expect: [])", "tests")
    for index, test in enumerate(tests):
        if isinstance(test, dict) and isinstance(test.get("parameters"), dict):
            for name in test["parameters"]:
                if name not in declared:
                    problem(f"test {test.get('name')!r} sets parameter {name!r}, which the rule does not declare",
                            "tests", index, "parameters", name)
    return problems


def _condition_problems(rule: Rule, condition: str, entity: Any, declared: dict[str, Any]) -> list[Problem]:
    """A condition's own problems: the language, and every name a feature of the entity or a parameter."""
    line = rule.line_of("condition")
    try:
        _, names = parse_condition(condition)
    except ConditionError as exc:
        return [Problem(rule.path, line, str(exc))]
    problems = []
    features = [f.name for f in features_of(entity)] if isinstance(entity, str) and entity in ENTITY_KEYS else []
    for name in names:
        if name in declared or name in features:
            continue
        if name in BY_NAME:
            where = f"a {BY_NAME[name].entity} feature, not a {entity} one"
        else:
            where = "neither a registry feature nor a declared parameter"
        problems.append(Problem(rule.path, line, f"the condition names {name!r}: {where} ({entity} features: "
                                                 f"{', '.join(features) or 'none'})"))
    for name in declared:
        if name in features:
            problems.append(Problem(rule.path, rule.line_of("parameters", name),
                                    f"parameter {name!r} is a feature of {entity}; name it otherwise"))
        elif name in WINDOW_PARAMETERS:
            problems.append(Problem(rule.path, rule.line_of("parameters", name),
                                    f"parameter {name!r} is the window's; name yours otherwise"))
        elif name not in names:
            problems.append(Problem(rule.path, rule.line_of("parameters", name),
                                    f"parameter {name!r} is not used by the condition"))
    return problems


def _hook_line(exc: BaseException, module_path: Path) -> int:
    """The line of ``module_path`` an import failure points at (1 when none does)."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return exc.lineno
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
             if Path(frame.filename) == module_path and frame.lineno]
    return lines[-1] if lines else 1


def _load_hooks(rule: Rule) -> list[Problem]:
    """Import ``ID.py`` beside the rule, if there is one: ``match(row)`` and/or ``enrich(row)``.

    As a playbook's module (:func:`playbooks.model._load_hooks`): it runs at load, with
    the rights of blastwall, so a rule folder is code and must be writable only by those
    trusted to write detections.
    """
    module_path = rule.module_path
    if not module_path.is_file():
        return []
    try:
        spec = importlib.util.spec_from_file_location(f"blastwall_rule_{rule.id}", module_path)
        module: ModuleType = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as exc:  # noqa: BLE001 - any import failure is the rule's problem
        return [Problem(module_path, _hook_line(exc, module_path), f"cannot import: {type(exc).__name__}: {exc}")]
    hooks = {name: getattr(module, name, None) for name in ("match", "enrich")}
    if all(hook is None for hook in hooks.values()):
        return [Problem(module_path, 1, "defines neither match(row) -> bool nor enrich(row) -> dict")]
    problems = [Problem(module_path, getattr(getattr(hook, "__code__", None), "co_firstlineno", 1),
                        f"{name} must be a function of the row") for name, hook in hooks.items()
                if hook is not None and not callable(hook)]
    if not problems:
        rule.match_hook, rule.enrich_hook = hooks["match"], hooks["enrich"]
    return problems


def discover(folders: Iterable[Path]) -> list[Path]:
    """Every rule file of the folders, sorted by id; missing folders skipped."""
    return yaml_files(folders)


def missing_folders(folders: Iterable[Path]) -> list[Problem]:
    """A problem for each folder that is not there (the built-in one missing: a broken install)."""
    return missing_folder_problems(folders, LIBRARY, "rule")


def in_source_tree() -> bool:
    """Whether the built-in rules are a developer's checkout, not an install."""
    return in_checkout(LIBRARY)


@dataclass
class RuleLibrary:
    """The valid rules of some folders, and every problem found in them."""

    rules: dict[str, Rule]
    problems: list[Problem]


def load_rules(folders: Iterable[Path] = (LIBRARY,)) -> RuleLibrary:
    """Load every rule of the folders; an id defined twice (or a missing folder) is a problem."""
    folders = list(folders)
    rules: dict[str, Rule] = {}
    problems: list[Problem] = missing_folders(folders)
    for path in discover(folders):
        if path.stem in rules:
            problems.append(Problem(path, 0, f"id {path.stem!r} is already defined by {rules[path.stem].path}"))
            continue
        rule, found = load_rule(path)
        problems.extend(found)
        if rule is not None:
            rules[rule.id] = rule
    return RuleLibrary(rules, problems)


def known_detectors(folders: Iterable[Path] = (LIBRARY,)) -> list[str]:
    """Every detector an incident can name: the built-in families and the rules of the folders.

    Playbook validation reads this, so a playbook may trigger on a rule's id.
    """
    return sorted(set(family_detectors()) | set(load_rules(folders).rules))


# --- running ----------------------------------------------------------------------------


def _parameters(rule: Rule, start: datetime, end: datetime, overrides: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    return {**rule.spec.parameters, **(overrides or {}),
            "start": start.astimezone(UTC), "end": end.astimezone(UTC),
            "start_ms": bound_ms(start), "end_ms": bound_ms(end)}


def _moment(value: Any, default: datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and value > 0:
        return from_epoch_ms(int(value))
    return default


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return _moment(value, value).isoformat().replace("+00:00", "Z")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _render(rule: Rule, template: str, names: dict[str, Any]) -> str:
    try:
        return _ENV.from_string(template).render(**names)
    except Exception as exc:  # noqa: BLE001 - any template failure is the rule's
        raise RuleError(f"template {template!r} failed: {exc}") from None


def _severity(rule: Rule, names: dict[str, Any]) -> Severity:
    spec = rule.spec.severity
    if isinstance(spec, str):
        return spec
    for case in spec.cases:
        try:
            if _ENV.compile_expression(case.when, undefined_to_none=False)(**names):
                return case.severity
        except Exception as exc:  # noqa: BLE001
            raise RuleError(f"severity condition {case.when!r} failed: {exc}") from None
    return spec.default


def _run_query(client: Client, rule: Rule, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    sql = (rule.spec.query or "").rstrip().removesuffix(";")
    result = client.query(sql, parameters=parameters, settings=READ_ONLY)
    return [dict(zip(result.column_names, row)) for row in result.result_rows]


def _native(value: Any) -> Any:
    """A frame cell as a plain Python value (numpy scalars unboxed, timestamps as datetime)."""
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, list | tuple | dict):
        return value.item()
    return value


def _condition_rows(rule: Rule, features: FeatureSet | None, start: datetime, end: datetime,
                    params: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of the entity's feature frame for which the rule's condition holds."""
    if features is None:
        raise RuleError(f"rule {rule.id} is a condition over the {rule.spec.entity} features and needs the step's "
                        f"feature set; it was run without one (pass features=…), so it was skipped")
    if (bound_ms(features.start), bound_ms(features.end)) != (bound_ms(start), bound_ms(end)):
        raise RuleError(f"the feature set is of [{features.start}, {features.end}), not of the window "
                        f"[{start}, {end})")
    tree = rule.condition_tree
    keys = ENTITY_KEYS[rule.spec.entity]
    frame = features.frame(rule.spec.entity)
    # The condition reads only the names it uses (checked at load): evaluate on those, and
    # build the whole row only for the rows that hold.
    used = [name for name in parse_condition(rule.spec.condition or "")[1] if name in frame.columns]
    lists = {name: frame[name].tolist() for name in used}
    rows = []
    for i in range(len(frame)):
        row = {name: _native(values[i]) for name, values in lists.items()}
        try:
            holds = evaluate(tree, {**params, **row})
        except ConditionError as exc:
            where = ", ".join(f"{k}={_native(frame[k].iat[i])}" for k in keys)
            raise RuleError(f"condition {rule.spec.condition!r} failed on {where}: {exc}") from None
        if holds:
            rows.append({str(k): _native(v) for k, v in frame.iloc[i].items()})
    return rows


def _hooked(rule: Rule, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows ``match(row)`` keeps, each with the columns ``enrich(row)`` adds (the rule's ``ID.py``)."""
    if rule.match_hook is None and rule.enrich_hook is None:
        return rows
    kept = []
    for row in rows:
        for name, hook in (("match", rule.match_hook), ("enrich", rule.enrich_hook)):
            if hook is None:
                continue
            try:
                result = hook(dict(row))
            except Exception as exc:  # noqa: BLE001 - the module's failure is the rule's
                raise RuleError(f"{rule.module_path.name}: {name}() raised {type(exc).__name__}: {exc}") from exc
            if name == "match" and not result:
                break
            if name == "enrich":
                if not isinstance(result, dict):
                    raise RuleError(f"{rule.module_path.name}: enrich() returned {type(result).__name__}, "
                                    f"not a dict of extra columns")
                row = {**row, **{str(k): v for k, v in result.items()}}
        else:
            kept.append(row)
    return kept


def _explanation(rule: Rule, row: dict[str, Any], extra: Iterable[str]) -> list[dict[str, Any]]:
    """The findings' values: a query rule's scalar columns; a condition rule's named features (and extra columns)."""
    skip = ("principals", "resources", "first_seen", "last_seen", "event_time", "score")
    values = {k: _plain(v) for k, v in row.items() if not isinstance(v, dict)}
    if rule.spec.condition is None:
        return [{"feature": k, "value": v, "baseline": "", "weight": 0.0} for k, v in values.items() if k not in skip]
    used = [n for n in parse_condition(rule.spec.condition)[1] if n in BY_NAME and n in values]
    names = used + [k for k in extra if k in values and k not in used and k not in skip]
    return [{"feature": k, "description": BY_NAME[k].description if k in BY_NAME else "", "value": values[k],
             "baseline": "", "weight": 0.0} for k in names]


def _only_when_steps(client: Client, rule: Rule, batch: Batch) -> set[int]:
    """The steps of ``batch`` with an event meeting the rule's ``only_when`` (one query per batch)."""
    def steps() -> set[int]:
        rows = client.query(
            "SELECT DISTINCT intDiv(toUnixTimestamp64Milli(event_time) - {lo:Int64}, {step_ms:Int64})"
            f" FROM access_log WHERE event_time >= fromUnixTimestamp64Milli({{lo:Int64}}, 'UTC')"
            f" AND event_time < fromUnixTimestamp64Milli({{hi:Int64}}, 'UTC') AND ({rule.spec.only_when})",
            parameters={"lo": batch.lo, "hi": batch.hi, "step_ms": batch.step_ms}, settings=READ_ONLY).result_rows
        return {int(row[0]) for row in rows}

    return batch.once(f"rule {rule.id} only_when", steps)


def alerts_of_rule(client: Client, rule: Rule, start: datetime, end: datetime,
                   overrides: dict[str, Any] | None = None, features: FeatureSet | None = None,
                   batch: Batch | None = None, until: datetime | None = None) -> list[Alert]:
    """One rule's alerts for ``[start, end)``; rows with the same dedup key make one alert.

    Parameters
    ----------
    client : Client
        The store (a query rule reads it, read-only).
    rule : Rule
        A loaded rule.
    start, end : datetime
        The window.
    overrides : dict, optional
        Parameter values in place of the rule's (an inline test's ``parameters``).
    features : FeatureSet, optional
        The window's feature set; a condition rule needs it (it is never computed here:
        that would advance the history).
    batch : Batch, optional
        The batch of steps the window belongs to: a rule's ``only_when`` is checked for
        all of its steps at once. Without, ``only_when`` is checked for the window alone.
    until : datetime, optional
        The step is not over: its events so far end here (the fast path). The query reads
        ``[start, until)`` while the alerts keep the step's ids, so the step loop finds the
        same ones at the step's end.

    Raises
    ------
    ClickHouseError
        The query failed.
    RuleError
        A template, severity condition, rule condition or the rule's module failed on a
        row, or a condition rule was given no feature set.
    """
    parameters = _parameters(rule, start, min(until, end) if until is not None else end, overrides)
    params = {k: v for k, v in parameters.items() if k not in WINDOW_PARAMETERS}
    if rule.spec.condition is not None:
        found = _condition_rows(rule, features, start, end, params)
        default_first: datetime = start
    else:
        if rule.spec.only_when is not None and until is None:  # the fast path checks only_when itself
            batch = batch or Batch(bound_ms(start), bound_ms(end), bound_ms(end) - bound_ms(start))
            run = batch.index(bound_ms(start)) in _only_when_steps(client, rule, batch)
        else:
            run = True
        found = _run_query(client, rule, parameters) if run else []
        default_first = parameters["end"]
    merged: dict[str, Alert] = {}
    for row in _hooked(rule, found):
        extra = [k for k in row if k not in ENTITY_KEYS[rule.spec.entity] and k not in BY_NAME]  # enrich()'s
        names = {**row, "params": params, "rule": rule.id}
        key = _render(rule, rule.spec.key, names)
        dedup = _render(rule, rule.spec.dedup, names) if rule.spec.dedup else key
        principals = [str(p) for p in row.get("principals") or []] or (
            [str(row["principal"])] if row.get("principal") else [])
        resources = [str(r) for r in row.get("resources") or []] or (
            [str(row["resource"])] if row.get("resource") else [])
        at = row.get("event_time")
        first = _moment(row.get("first_seen", at), default_first)
        last = _moment(row.get("last_seen", at), end if at is None and rule.spec.condition else first)
        score = min(max(float(row.get("score", 1.0) or 0.0), 0.0), 1.0)
        explanation = _explanation(rule, row, extra)
        meta: dict[str, Any] = {"rule": rule.id, "techniques": list(rule.spec.techniques), "entity_key": key}
        if rule.spec.condition is not None:
            meta["condition"] = rule.spec.condition
        if rule.spec.entity == "grant" and row.get("resource") and row.get("grantee"):
            meta["grant"] = {"resource": str(row["resource"]), "grantee": str(row["grantee"])}
        explanation.append(meta)
        alert = Alert(
            alert_id=f"{rule.id}|{rule.spec.entity}|{dedup}|{bound_ms(end)}", detector=rule.id,
            entity=rule.spec.entity, entity_key=dedup, title=_render(rule, rule.spec.title, names)[:500],
            severity=_severity(rule, names), score=score, principals=tuple(principals), resources=tuple(resources),
            first_seen=first, last_seen=last, detected_at=end, explanation=explanation,
            group_key=_render(rule, rule.spec.group, names) if rule.spec.group else None)
        before = merged.get(dedup)
        if before is not None:
            alert = Alert(**{**before.__dict__,
                             "severity": most_severe([before.severity, alert.severity]),
                             "score": max(before.score, alert.score),
                             "principals": tuple(dict.fromkeys(before.principals + alert.principals)),
                             "resources": tuple(dict.fromkeys(before.resources + alert.resources)),
                             "first_seen": min(before.first_seen, alert.first_seen),
                             "last_seen": max(before.last_seen, alert.last_seen)})
        merged[dedup] = alert
    return list(merged.values())


def rule_alerts(client: Client, start: datetime, end: datetime, rules: Iterable[Rule],
                features: FeatureSet | None = None, batch: Batch | None = None) -> list[Alert]:
    """Every rule's alerts for ``[start, end)`` (the detect step's ``rules`` stage).

    A rule that fails (its query errors, a template does not evaluate, its ``ID.py``
    raises) becomes a ``pipeline_error`` alert naming the rule, and the others still run.
    Only the store being unreachable propagates, so the step is retried rather than
    half-recorded.

    Parameters
    ----------
    client : Client
        The store.
    start, end : datetime
        The window.
    rules : iterable of Rule
        The rules to run.
    features : FeatureSet, optional
        The window's features (the detect step passes its own). Condition rules need
        them: without, each is skipped with a ``pipeline_error`` alert saying so — never
        computed here, which would advance the history.
    batch : Batch, optional
        The batch of steps the window belongs to (see :func:`alerts_of_rule`).
    """
    alerts: list[Alert] = []
    for rule in rules:
        try:
            alerts.extend(alerts_of_rule(client, rule, start, end, features=features, batch=batch))
        except OperationalError:
            raise
        except Exception as error:  # noqa: BLE001 - a broken rule must be seen, not stop the step
            alerts.append(error_alert(f"rule {rule.id}", error, end))
    return alerts


# --- inline tests and invariants ---------------------------------------------------------


def ast_problems(client: Client, rule: Rule) -> list[Problem]:
    """ClickHouse's own parse of the query: one SELECT, no table function (after :func:`read_only_problems`).

    A condition rule has no query: nothing to parse.
    """
    if rule.spec.query is None:
        return []
    line = rule.line_of("query")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        tree = [row[0] for row in client.query("EXPLAIN AST " + rule.spec.query.rstrip().removesuffix(";"),
                                               parameters=_parameters(rule, start, start),
                                               settings=READ_ONLY).result_rows]
    except ClickHouseError as exc:
        return [Problem(rule.path, line, f"the query does not parse: {str(exc).strip().splitlines()[0][:300]}")]
    problems = []
    if not tree or not tree[0].startswith("SelectWithUnionQuery"):
        problems.append(Problem(rule.path, line, f"the query is not a SELECT (ClickHouse parses it as "
                                                 f"{tree[0].split()[0] if tree else 'nothing'})"))
    for before, node in zip(tree, tree[1:]):
        if before.strip().startswith("TableExpression") and node.strip().startswith("Function "):
            problems.append(Problem(rule.path, line, f"table function {node.split()[1]} is not allowed"))
    return problems


def _rows_file(folder: Path, table: str, rows: list[dict[str, Any]]) -> Path:
    path = folder / f"{table}.jsonl"
    path.write_text("".join(json.dumps({k: _plain(v) for k, v in row.items()}) + "\n" for row in rows),
                    encoding="utf-8")
    return path


def _load_test_rows(client: Client, folder: Path, test: RuleTest) -> list[str]:
    """Empty the contract tables, ingest the test's rows; the reasons of rejected rows."""
    from features.ingest import ingest_file

    for table in _TEST_TABLES:
        client.command(f"TRUNCATE TABLE IF EXISTS {table}")
    reasons: list[str] = []
    before = test.window.start - timedelta(days=30)  # catalogue rows default to long before the window
    defaults = {"resources": {"kind": "dataset", "sensitivity": "internal", "categories": [], "owner": "",
                              "sanitized": 1, "updated_at": before},
                "memberships": {"removed": 0, "updated_at": before},
                "principals": {"principal_type": "human", "team": "", "title": "", "manager": "",
                               "created_at": before, "updated_at": before},
                "access_log": {"principal_type": "human"}}
    for table, rows in (("resources", test.resources), ("memberships", test.memberships),
                        ("principals", test.principals), ("access_log", test.events)):
        if not rows:
            continue
        rows = [{**defaults[table], **row} for row in rows]
        summary = ingest_file(client, _rows_file(folder, table, rows), table)
        if summary.rejected:
            found = client.query("SELECT line, reason FROM rejected_rows WHERE file LIKE {f:String} ORDER BY line",
                                 parameters={"f": f"%{table}.jsonl"}).result_rows
            reasons += [f"{table} row {line}: {reason}" for line, reason in found] or [f"{table}: rows rejected"]
    return reasons


def _test_features(client: Client, rule: Rule, test: RuleTest) -> FeatureSet | None:
    """A condition rule's test: the real feature step over the test's window (history from its earlier events)."""
    if rule.spec.condition is None:
        return None
    from features.engine import extract
    from features.history import reset_history

    reset_history(client)  # each test starts from no history; its events before the window become it
    return extract(client, test.window.start, test.window.end)


def run_inline_tests(client: Client, rule: Rule, folder: Path) -> list[Problem]:
    """Every inline test of the rule on ``client`` (a scratch store); a failing test is a problem at its line."""
    problems = []
    for index, test in enumerate(rule.spec.tests):
        line = rule.line_of("tests", index)

        def fail(message: str, line: int = line, test: RuleTest = test) -> None:
            problems.append(Problem(rule.path, line, f"test {test.name!r}: {message}"))

        rejected = _load_test_rows(client, folder, test)
        if rejected:
            fail("rows rejected by the contract: " + "; ".join(rejected[:5]))
            continue
        try:
            features = _test_features(client, rule, test)
            alerts = alerts_of_rule(client, rule, test.window.start, test.window.end, test.parameters, features)
        except ClickHouseError as exc:
            fail(f"the query failed: {str(exc).strip().splitlines()[0][:300]}")
            continue
        except RuleError as exc:
            fail(str(exc))
            continue
        got = {a.entity_key: a for a in alerts}
        wanted = {e.entity_key: e for e in test.expect}
        if set(got) != set(wanted):
            fail(f"expected alerts on {sorted(wanted) or 'nothing'}, got {sorted(got) or 'none'}")
            continue
        for key, expected in wanted.items():
            alert = got[key]
            for name in ("severity", "title"):
                value = getattr(expected, name)
                if value is not None and getattr(alert, name) != value:
                    fail(f"{key}: expected {name} {value!r}, got {getattr(alert, name)!r}")
            for name in ("principals", "resources"):
                value = getattr(expected, name)
                if value is not None and sorted(getattr(alert, name)) != sorted(value):
                    fail(f"{key}: expected {name} {sorted(value)}, got {sorted(getattr(alert, name))}")
    return problems


@dataclass
class RuleTestReport:
    """The outcome of ``rule test``."""

    checked: list[str]
    tests: int
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> str:
        return json.dumps({"checked": self.checked, "tests": self.tests,
                           "problems": [[str(p.file), p.line, p.message] for p in self.problems]})

    @classmethod
    def from_json(cls, text: str) -> RuleTestReport:
        data = json.loads(text)
        return cls(data["checked"], data["tests"], [Problem(Path(f), line, m) for f, line, m in data["problems"]])


#: Opens a fresh, initialised embedded store in a directory and closes it after (the shell's).
ScratchStore = Callable[[Path], AbstractContextManager[Client]]


def test_rules(folders: Iterable[Path], scratch: ScratchStore, only: str | None = None) -> RuleTestReport:
    """Load and validate every rule (or one), parse each query with ClickHouse, run the inline tests.

    Parameters
    ----------
    folders : iterable of Path
        The built-in library first, then the settings' folders.
    scratch : callable
        ``scratch(directory)`` is a context manager giving a fresh initialised store in
        ``directory``; one is opened per rule file and closed before the next (chdb holds
        one embedded store per process, so the caller must have none open).
    only : str, optional
        A rule id.
    """
    library = load_rules(folders)
    problems = [p for p in library.problems if only is None or Path(p.file).stem == only]
    if only is not None and only not in library.rules and not problems:
        problems.append(Problem(Path(only), 0, "no such rule"))
    checked, tests = [], 0
    for rule in library.rules.values():
        if only is not None and rule.id != only:
            continue
        checked.append(rule.id)
        tests += len(rule.spec.tests)
        with tempfile.TemporaryDirectory(prefix=f"blastwall-rule-{rule.id}-") as tmp:
            with scratch(Path(tmp) / "store") as client:
                found = ast_problems(client, rule)
                problems += found or run_inline_tests(client, rule, Path(tmp))
    return RuleTestReport(checked, tests, sorted(problems, key=lambda p: (str(p.file), p.line)))


test_rules.__test__ = False  # type: ignore[attr-defined] - not a pytest test
RuleTestReport.__test__ = False  # type: ignore[attr-defined]
RuleTest.__test__ = False  # type: ignore[attr-defined]


_SCAFFOLD = """\
description: >
  What this rule finds, and why it matters. (Say what a true positive looks like.)
entity: principal                 # principal, resource, grant or training_run
key: "{{{{ principal }}}}"            # the entity key: Jinja2 over the query's columns
severity:                         # a fixed SEVn, or by condition (the first case that holds)
  default: SEV3
  cases:
    - {{when: "sensitivity == 'restricted'", severity: SEV2}}
title: "{{{{ principal }}}} exported {{{{ resource }}}} ({{{{ sensitivity }}}}) off hours"
techniques: [T1567]               # MITRE ATT&CK / ATLAS ids
parameters:                       # the query reads them as {{name:Type}}; never format values into SQL
  first_hour: 7
  last_hour: 19
query: |
  WITH cat AS (SELECT resource, argMax(sensitivity, updated_at) AS sensitivity FROM resources GROUP BY resource)
  SELECT a.principal AS principal, a.resource AS resource, c.sensitivity AS sensitivity,
         min(a.event_time) AS first_seen, max(a.event_time) AS last_seen
  FROM access_log AS a INNER JOIN cat AS c ON a.resource = c.resource
  WHERE a.event_time >= fromUnixTimestamp64Milli({{start_ms:Int64}}, 'UTC')
    AND a.event_time < fromUnixTimestamp64Milli({{end_ms:Int64}}, 'UTC')
    AND a.action = 'export' AND c.sensitivity IN ('confidential', 'restricted')
    AND (toHour(a.event_time) < {{first_hour:UInt8}} OR toHour(a.event_time) >= {{last_hour:UInt8}})
  GROUP BY a.principal, a.resource, c.sensitivity
tests:
  - name: a restricted export at 2am alerts
    window: {{start: 2026-10-05T00:00:00Z, end: 2026-10-05T06:00:00Z}}
    resources: [{{resource: ds.salaries, sensitivity: restricted}}]
    events: [{{event_time: 2026-10-05T02:00:00Z, principal: alice, action: export, resource: ds.salaries}}]
    expect: [{{entity_key: alice, severity: SEV2}}]
  - name: the same export in working hours does not
    window: {{start: 2026-10-05T09:00:00Z, end: 2026-10-05T12:00:00Z}}
    resources: [{{resource: ds.salaries, sensitivity: restricted}}]
    events: [{{event_time: 2026-10-05T10:00:00Z, principal: alice, action: export, resource: ds.salaries}}]
    expect: []
"""


def scaffold(rule_id: str, target: Path) -> Path:
    """Write a new rule that passes ``rule test`` as it is, for an engineer to edit.

    Raises
    ------
    ValueError
        The id is not lower_snake_case, names a built-in family, or the file exists.
    """
    if not _NAME.match(rule_id):
        raise ValueError(f"{rule_id!r} is not a valid rule id (lower_snake_case: letters, digits, _)")
    if rule_id in family_detectors():
        raise ValueError(f"{rule_id!r} is a built-in detector; name the rule otherwise")
    if target.exists():
        raise ValueError(f"{target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_SCAFFOLD.format(), encoding="utf-8")
    return target
