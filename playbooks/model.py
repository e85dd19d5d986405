"""Playbook files: the format, discovery, validation with file and line, planning, inline tests.

One playbook per YAML file; its id is the file name. A Python module of the same name
beside it may define ``match(incident) -> bool`` (an extra trigger condition) and
``parameters(incident) -> dict`` (values the templates see as ``extra``). See the
README, "Write a playbook", and any file in ``playbooks/library/``::

    description: ...
    triggers: {detectors: [permission_fanout], min_severity: SEV2, when: ["incident.rule == 'grant.external'"]}
    steps:
      - name: revoke
        action: revoke_grant
        with: {resource: "{{ incident.grant.resource }}", grantee: "{{ incident.grant.grantee }}"}
        requires_approval: below SEV1     # or true / false / "from SEV2"
        timeout: 30s
        retries: 2
        on_failure: stop                  # or continue / rollback
    runbook: ["Confirm the grant ...", "..."]
    tests:
      - name: ...
        incident: {detector: permission_fanout, severity: SEV1, entity: grant, entity_key: "ds -> everyone"}
        expect: {steps: [revoke], approvals: []}

:func:`load_library` reads a folder and returns the valid playbooks together with
every problem of every file (:class:`Problem`: file, line, message), so one run shows
them all. :func:`check_invariants` adds the rules every playbook must keep; the
``playbook test`` command runs both and every inline test.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from detector.severity import severity_rank
from features.durations import parse_duration
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
from playbooks.actions import REGISTRY
from playbooks.context import (
    TemplateError,
    compile_check,
    context_from_mapping,
    evaluate_condition,
    render,
)

#: The playbooks that ship with blastwall.
LIBRARY = Path(__file__).resolve().parent / "library"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_APPROVAL = re.compile(r"^(below|from) (SEV[1-4])$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Triggers(_Strict):
    """When a playbook runs: any of the detectors, at least this severity, every condition true."""

    detectors: list[str] = Field(min_length=1)
    min_severity: Literal["SEV1", "SEV2", "SEV3", "SEV4"] = "SEV4"
    when: list[str] = Field(default_factory=list)

    @field_validator("when")
    @classmethod
    def _compiles(cls, conditions: list[str]) -> list[str]:
        for condition in conditions:
            compile_check("{{ " + condition + " }}")
        return conditions


class RollbackSpec(_Strict):
    """A step's own undo, when the action's built-in rollback is not the right one."""

    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


class StepSpec(_Strict):
    """One ordered step."""

    name: str
    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    when: str | None = None
    requires_approval: bool | str = False
    timeout: timedelta = timedelta(seconds=60)
    retries: int = Field(0, ge=0, le=10)
    on_failure: Literal["stop", "continue", "rollback"] = "stop"
    rollback: RollbackSpec | Literal[False] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError("a step name is lower_snake_case (letters, digits, _)")
        return name

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @field_validator("requires_approval")
    @classmethod
    def _approval(cls, value: bool | str) -> bool | str:
        if isinstance(value, str) and not _APPROVAL.match(value):
            raise ValueError("requires_approval is true, false, 'below SEVn' or 'from SEVn'")
        return value

    @field_validator("when")
    @classmethod
    def _compiles(cls, condition: str | None) -> str | None:
        if condition:
            compile_check("{{ " + condition + " }}")
        return condition

    def needs_approval(self, severity: str) -> bool:
        """Whether this step waits for a human at this incident severity."""
        if isinstance(self.requires_approval, bool):
            return self.requires_approval
        side, level = _APPROVAL.match(self.requires_approval).groups()  # type: ignore[union-attr]
        if side == "below":  # less severe than the level (SEV1 most severe)
            return severity_rank(severity) > severity_rank(level)
        return severity_rank(severity) <= severity_rank(level)


class Expectation(_Strict):
    """What an inline test expects: no match, or the planned steps (names, in order)."""

    match: bool = True
    steps: list[str] | None = None
    approvals: list[str] | None = None
    with_: dict[str, dict[str, Any]] = Field(default_factory=dict, alias="with")

    @model_validator(mode="after")
    def _consistent(self) -> Expectation:
        if self.match and self.steps is None:
            raise ValueError("a positive test lists the expected steps (expect.steps)")
        return self


class InlineTest(_Strict):
    """An incident in, the planned steps out."""

    name: str
    incident: dict[str, Any]
    expect: Expectation


class PlaybookSpec(_Strict):
    """The file's content."""

    id: str | None = None
    description: str = Field(min_length=1)
    triggers: Triggers
    steps: list[StepSpec] = Field(min_length=1)
    runbook: list[str] = Field(default_factory=list)
    tests: list[InlineTest] = Field(default_factory=list)


@dataclass
class Playbook:
    """A loaded playbook."""

    id: str
    path: Path
    spec: PlaybookSpec
    document: YamlDocument | None = None
    match_hook: Callable[[dict[str, Any]], bool] | None = None
    parameters_hook: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def line_of(self, *path: Any) -> int:
        """The line of a node of the file (the nearest enclosing node that has one)."""
        return self.document.line_of(path) if self.document is not None else 0

    def step(self, name: str) -> StepSpec:
        for step in self.spec.steps:
            if step.name == name:
                return step
        raise KeyError(name)


@dataclass(frozen=True)
class PlannedStep:
    """One step as it would run for one incident."""

    name: str
    action: str
    params: dict[str, Any]
    needs_approval: bool
    description: str
    timeout: timedelta
    retries: int
    on_failure: str
    reversible: bool


@dataclass(frozen=True)
class Plan:
    """What a playbook would do for one incident (empty steps: it matched, all steps skipped)."""

    playbook: str
    incident_id: int
    severity: str
    steps: list[PlannedStep]


class PlanError(ValueError):
    """A playbook that matched but could not plan (a template failed, parameters invalid)."""


# --- loading ---------------------------------------------------------------------------


def _load_hooks(path: Path, problems: list[Problem]) -> tuple[Callable | None, Callable | None]:
    module_path = path.with_suffix(".py")
    if not module_path.is_file():
        return None, None
    try:
        spec = importlib.util.spec_from_file_location(f"blastwall_playbook_{path.stem}", module_path)
        module: ModuleType = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as exc:  # noqa: BLE001 - any import failure is the playbook's problem
        problems.append(Problem(module_path, getattr(exc, "lineno", 0) or 0, f"cannot import: {exc}"))
        return None, None
    hooks = getattr(module, "match", None), getattr(module, "parameters", None)
    for name, hook in zip(("match", "parameters"), hooks):
        if hook is not None and not callable(hook):
            problems.append(Problem(module_path, 0, f"{name} must be a function of the incident"))
            return None, None
    return hooks


def load_playbook(path: Path) -> tuple[Playbook | None, list[Problem]]:
    """Read and validate one file; every problem is returned, none raised."""
    try:
        document = read_yaml(path)
    except SettingsFileError as exc:
        return None, exc.problems
    data = document.data
    if not isinstance(data, dict):
        return None, [Problem(path, 1, "a playbook is a YAML mapping (description, triggers, steps, ...)")]
    playbook = Playbook(path.stem, path, PlaybookSpec.model_construct(), document)
    # The schema and the semantic checks both run on the raw data, so one pass reports
    # every problem of the file, not the first kind found.
    problems = _semantic_problems(playbook, data)
    try:
        playbook.spec = PlaybookSpec.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(document, exc) + problems
    if not problems:
        playbook.match_hook, playbook.parameters_hook = _load_hooks(path, problems)
    return (None if problems else playbook), sorted(problems, key=lambda p: p.line)


def _semantic_problems(playbook: Playbook, data: dict[str, Any]) -> list[Problem]:
    """What the schema cannot see: the id, step names, actions and their parameters, templates."""
    problems: list[Problem] = []

    def problem(message: str, *path: Any) -> None:
        problems.append(Problem(playbook.path, playbook.line_of(*path), message))

    if not _NAME.match(playbook.id):
        problem(f"the file name {playbook.id!r} is not a valid id (lower_snake_case)")
    if data.get("id") is not None and data.get("id") != playbook.id:
        problem(f"id {data.get('id')!r} differs from the file name {playbook.id!r}", "id")
    steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    seen: set[str] = set()
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        where = ("steps", index)
        name = step.get("name")
        if name in seen:
            problem(f"step name {name!r} is used twice", *where, "name")
        seen.add(name)
        checks = [("action", step.get("action"), step.get("with") or {}, where, ("action",))]
        rollback = step.get("rollback")
        if isinstance(rollback, dict):
            checks.append(("rollback action", rollback.get("action"), rollback.get("with") or {},
                           where + ("rollback",), ("action",)))
        for label, action_name, params, base, at in checks:
            action = REGISTRY.get(action_name) if isinstance(action_name, str) else None
            if action is None:
                problem(f"unknown {label} {action_name!r}; known: {', '.join(sorted(REGISTRY))}", *base, *at)
                continue
            if not isinstance(params, dict):
                continue
            fields = action.Params.model_fields
            for key in params:
                if key not in fields:
                    problem(f"{action_name} has no parameter {key!r}; it takes {', '.join(fields) or 'none'}",
                            *base, "with", key)
            for key, info in fields.items():
                if info.is_required() and key not in params:
                    problem(f"{action_name} needs the parameter {key!r}", *base, "with")
            for key, value in params.items():
                try:
                    _compile_all(value)
                except TemplateError as exc:
                    problem(str(exc), *base, "with", key)
    tests = data.get("tests") if isinstance(data.get("tests"), list) else []
    for index, test in enumerate(tests):
        expect = test.get("expect") if isinstance(test, dict) else None
        if not isinstance(expect, dict):
            continue
        named = list(expect.get("steps") or []) + list(expect.get("approvals") or []) + list(expect.get("with") or {})
        for name in named:
            if name not in seen:
                problem(f"test {test.get('name')!r} expects a step {name!r} the playbook does not have",
                        "tests", index, "expect")
    return problems


def _compile_all(value: Any) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _compile_all(item)
    elif isinstance(value, list):
        for item in value:
            _compile_all(item)
    elif isinstance(value, str) and "{{" in value:
        compile_check(value)


def discover(folders: Iterable[Path]) -> list[Path]:
    """Every playbook file of the folders, sorted by id; missing folders skipped."""
    return yaml_files(folders)


def missing_folders(folders: Iterable[Path]) -> list[Problem]:
    """A problem for each folder that is not there (the built-in one missing: a broken install)."""
    return missing_folder_problems(folders, LIBRARY, "playbook")


def in_source_tree() -> bool:
    """Whether the built-in playbooks are a developer's checkout, not an install."""
    return in_checkout(LIBRARY)


@dataclass
class Library:
    """The valid playbooks of some folders, and every problem found in them."""

    playbooks: dict[str, Playbook]
    problems: list[Problem]

    def matching(self, incident: dict[str, Any]) -> list[Playbook]:
        return [p for p in self.playbooks.values() if matches(p, incident)]


def load_library(folders: Iterable[Path] = (LIBRARY,)) -> Library:
    """Load every playbook of the folders; a later folder's id clashing with an earlier one is a problem."""
    folders = list(folders)
    playbooks: dict[str, Playbook] = {}
    problems: list[Problem] = missing_folders(folders)
    for path in discover(folders):
        if path.stem in playbooks:
            problems.append(Problem(path, 0, f"id {path.stem!r} is already defined by {playbooks[path.stem].path}"))
            continue
        playbook, found = load_playbook(path)
        problems.extend(found)
        if playbook is not None:
            playbooks[playbook.id] = playbook
    return Library(playbooks, problems)


# --- matching and planning -----------------------------------------------------------


def matches(playbook: Playbook, incident: dict[str, Any]) -> bool:
    """Whether the playbook's triggers hold for the incident (raises TemplateError on a broken condition)."""
    triggers = playbook.spec.triggers
    if incident["detector"] not in triggers.detectors and "*" not in triggers.detectors:
        return False
    if severity_rank(incident["severity"]) > severity_rank(triggers.min_severity):
        return False
    if not all(evaluate_condition(condition, incident) for condition in triggers.when):
        return False
    return bool(playbook.match_hook(incident)) if playbook.match_hook else True


def plan(playbook: Playbook, incident: dict[str, Any]) -> Plan | None:
    """The steps the playbook would run for the incident (``None`` when it does not match).

    Raises
    ------
    PlanError
        A template or parameter that fails for this incident (naming the step).
    """
    try:
        if not matches(playbook, incident):
            return None
        extra = playbook.parameters_hook(incident) if playbook.parameters_hook else {}
    except TemplateError as exc:
        raise PlanError(f"{playbook.id}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the playbook's own Python
        raise PlanError(f"{playbook.id}: its module failed: {type(exc).__name__}: {exc}") from None
    steps = []
    for step in playbook.spec.steps:
        try:
            if step.when and not evaluate_condition(step.when, incident):
                continue
            params = render(step.with_, incident, extra)
            action = REGISTRY[step.action]
            typed = action.Params.model_validate(params)
            dumped = typed.model_dump(mode="json")
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise PlanError(f"{playbook.id}, step {step.name}: {detail}") from None
        except Exception as exc:  # noqa: BLE001 - a template, or a value no action parameter can hold
            raise PlanError(f"{playbook.id}, step {step.name}: {exc}") from None
        reversible = step.rollback is not False and (action.reversible or isinstance(step.rollback, RollbackSpec))
        steps.append(PlannedStep(
            name=step.name, action=step.action, params=dumped,
            needs_approval=step.needs_approval(incident["severity"]), description=action.describe(typed),
            timeout=step.timeout, retries=step.retries, on_failure=step.on_failure, reversible=reversible))
    return Plan(playbook.id, int(incident["id"]), incident["severity"], steps)


# --- inline tests and invariants -------------------------------------------------------


def run_inline_tests(playbook: Playbook) -> list[Problem]:
    """Every inline test of the playbook; a failing test is a problem at its line."""
    problems = []
    for index, test in enumerate(playbook.spec.tests):
        line = playbook.line_of("tests", index)

        def fail(message: str, line: int = line, test: InlineTest = test) -> None:
            problems.append(Problem(playbook.path, line, f"test {test.name!r}: {message}"))

        try:
            incident = context_from_mapping(test.incident)
            planned = plan(playbook, incident)
        except (ValueError, PlanError) as exc:
            fail(str(exc))
            continue
        expect = test.expect
        if not expect.match:
            if planned is not None:
                fail(f"expected no match, but it plans {[s.name for s in planned.steps]}")
            continue
        if planned is None:
            fail("expected a match, but the triggers do not hold")
            continue
        names = [s.name for s in planned.steps]
        if expect.steps is not None and names != expect.steps:
            fail(f"expected steps {expect.steps}, planned {names}")
        gated = [s.name for s in planned.steps if s.needs_approval]
        if expect.approvals is not None and gated != expect.approvals:
            fail(f"expected approval gates on {expect.approvals}, planned {gated}")
        by_name = {s.name: s for s in planned.steps}
        for name, wanted in expect.with_.items():
            got = by_name.get(name)
            if got is None:
                fail(f"expected parameters of step {name!r}, which is not planned")
                continue
            for key, value in wanted.items():
                if got.params.get(key) != value:
                    fail(f"step {name}: expected {key} = {value!r}, planned {got.params.get(key)!r}")
    return problems


def check_invariants(playbook: Playbook, detectors: Iterable[str] | None = None) -> list[Problem]:
    """The rules every playbook keeps: a positive and a negative test, a runbook, known detectors.

    ``detectors``: the known ones (default: the families and the built-in rules; the
    shell adds the rules of the settings' folders).
    """
    from detector.rules import known_detectors

    known = sorted(detectors) if detectors is not None else known_detectors()
    problems = []

    def problem(message: str, *path: Any) -> None:
        problems.append(Problem(playbook.path, playbook.line_of(*path), message))

    tests = playbook.spec.tests
    if not any(t.expect.match for t in tests):
        problem("needs at least one positive test (an incident it must act on)", "tests")
    if not any(not t.expect.match for t in tests):
        problem("needs at least one negative test (an incident it must leave alone)", "tests")
    if not [step for step in playbook.spec.runbook if step.strip()]:
        problem("needs a runbook: the numbered steps a human follows", "runbook")
    for index, detector in enumerate(playbook.spec.triggers.detectors):
        if detector != "*" and detector not in known:
            problem(f"unknown detector {detector!r}; known: {', '.join(known)}",
                    "triggers", "detectors", index)
    return problems


@dataclass
class TestReport:
    """The outcome of ``playbook test``."""

    checked: list[str]
    tests: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def test_library(folders: Iterable[Path] = (LIBRARY,), only: str | None = None,
                 detectors: Iterable[str] | None = None) -> TestReport:
    """Load, validate, check invariants and run inline tests of every playbook (or one)."""
    from detector.rules import known_detectors

    library = load_library(folders)
    # Once for the whole library: the default reads the built-in rule files.
    detectors = list(detectors) if detectors is not None else known_detectors()
    problems = [p for p in library.problems if only is None or p.file.stem == only]
    if only is not None and only not in library.playbooks and not problems:
        problems.append(Problem(Path(only), 0, "no such playbook"))
    checked, tests = [], 0
    for playbook in library.playbooks.values():
        if only is not None and playbook.id != only:
            continue
        checked.append(playbook.id)
        tests += len(playbook.spec.tests)
        problems += check_invariants(playbook, detectors) + run_inline_tests(playbook)
    return TestReport(checked, tests, problems)


test_library.__test__ = False  # type: ignore[attr-defined] - not a pytest test
TestReport.__test__ = False  # type: ignore[attr-defined]


_SCAFFOLD = """\
description: >
  What this playbook contains, and why. (Say which incidents it is for.)
triggers:
  detectors: [bulk_export]          # any of: {detectors}
  min_severity: SEV2                # this severity or worse
  when:                             # Jinja2 conditions over `incident`; all must hold
    - "'restricted' in incident.catalogue.values() | map(attribute='sensitivity') | list"
steps:
  - name: snapshot_evidence         # keep the evidence before anything changes
    action: snapshot_evidence
  - name: suspend_identity
    action: suspend_identity        # actions: {actions}
    with: {{principals: "{{{{ incident.principal }}}}"}}
    requires_approval: below SEV1   # true, false, "below SEVn" or "from SEVn"
    timeout: 30s
    retries: 2
    on_failure: stop                # stop, continue or rollback
runbook:
  - The first thing a human checks.
  - What to do if it is real; what to do if it is not (blastwall rollback INCIDENT, mark false positive).
tests:
  - name: a restricted export is contained
    incident:
      detector: bulk_export
      severity: SEV1
      principals: [alice]
      resources: [ds.salaries]
      catalogue: {{ds.salaries: {{sensitivity: restricted}}}}
    expect:
      steps: [snapshot_evidence, suspend_identity]
      approvals: []
      with: {{suspend_identity: {{principals: [alice]}}}}
  - name: an internal export is left alone
    incident:
      detector: bulk_export
      severity: SEV1
      principals: [alice]
      resources: [ds.wiki]
      catalogue: {{ds.wiki: {{sensitivity: internal}}}}
    expect: {{match: false}}
"""


def scaffold(playbook_id: str, target: Path) -> Path:
    """Write a new playbook that passes ``playbook test`` as it is, for an engineer to edit.

    Raises
    ------
    ValueError
        The id is not lower_snake_case, or the file exists.
    """
    from detector.rules import known_detectors

    if not _NAME.match(playbook_id):
        raise ValueError(f"{playbook_id!r} is not a valid playbook id (lower_snake_case: letters, digits, _)")
    if target.exists():
        raise ValueError(f"{target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_SCAFFOLD.format(detectors=", ".join(sorted(known_detectors())),
                                       actions=", ".join(sorted(REGISTRY))), encoding="utf-8")
    return target
