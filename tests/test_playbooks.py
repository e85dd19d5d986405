"""Playbook files: the built-in library's inline tests and invariants, validation, planning, templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.families import FAMILIES, known_detectors
from playbooks.actions import REGISTRY
from playbooks.context import TemplateError, context_from_mapping, render
from playbooks.model import (
    LIBRARY,
    check_invariants,
    load_library,
    load_playbook,
    plan,
    run_inline_tests,
    scaffold,
    test_library,
)

BUILT_IN = load_library()


def test_the_library_loads_without_problems() -> None:
    assert BUILT_IN.problems == []
    assert len(BUILT_IN.playbooks) >= 10


@pytest.mark.parametrize("playbook_id", sorted(BUILT_IN.playbooks))
def test_built_in_playbook_inline_tests_and_invariants(playbook_id: str) -> None:
    playbook = BUILT_IN.playbooks[playbook_id]
    assert check_invariants(playbook) == []
    assert run_inline_tests(playbook) == []
    assert playbook.id == playbook.path.stem


def test_every_detector_family_has_a_playbook() -> None:
    covered = {d for p in BUILT_IN.playbooks.values() for d in p.spec.triggers.detectors}
    assert set(FAMILIES) <= covered
    assert set(FAMILIES) <= set(known_detectors())


def test_every_action_a_built_in_uses_exists_and_some_use_each_platform_control() -> None:
    used = {s.action for p in BUILT_IN.playbooks.values() for s in p.spec.steps}
    assert used <= set(REGISTRY)
    assert {"revoke_grant", "quarantine_resource", "pause_training_run", "suspend_identity",
            "snapshot_evidence", "notify", "page"} <= used


def test_playbook_test_reports_every_problem_of_every_file_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(
        "id: not_broken\n"                                   # 1: id differs from the file name
        "description: x\n"
        "triggers:\n"
        "  detectors: [bulk_export]\n"
        "  min_severity: SEV9\n"                             # 5: bad severity
        "steps:\n"
        "  - name: a\n"
        "    action: nuke_everything\n"                      # 8: unknown action
        "  - name: b\n"
        "    action: revoke_grant\n"
        "    with: {resource: '{{ incident.x ', colour: red}\n"  # 11: bad template, unknown + missing param
        "    timeout: forever\n"                             # 12: bad duration
        "  - name: b\n"                                      # 13: duplicate step name
        "    action: page\n"
        "runbook: []\n", encoding="utf-8")
    (tmp_path / "bad_yaml.yaml").write_text("description: [\n", encoding="utf-8")
    (tmp_path / "no_tests.yaml").write_text(
        "description: fine but untested\ntriggers: {detectors: [secrets]}\nsteps: [{name: s, action: page}]\n",
        encoding="utf-8")
    report = test_library([tmp_path])
    found = {(p.file.name, p.line, p.message.split(":")[0]) for p in report.problems}
    lines = {(p.file.name, p.line) for p in report.problems}
    assert {("broken.yaml", 1), ("broken.yaml", 5), ("broken.yaml", 8), ("broken.yaml", 11), ("broken.yaml", 12),
            ("broken.yaml", 13), ("bad_yaml.yaml", 2)} <= lines, found
    messages = " | ".join(str(p) for p in report.problems)
    for expected in ("differs from the file name", "min_severity", "unknown action 'nuke_everything'",
                     "no parameter 'colour'", "needs the parameter 'grantee'", "does not compile",
                     "is not a duration", "used twice", "not valid YAML",
                     "needs at least one positive test", "needs at least one negative test", "needs a runbook"):
        assert expected in messages, expected
    assert not report.ok
    assert "no_tests" in report.checked


def test_a_failing_inline_test_is_reported_at_its_line(tmp_path: Path) -> None:
    text = (LIBRARY / "runaway_agent.yaml").read_text(encoding="utf-8")
    wrong = text.replace("steps: [suspend_agent, snapshot_evidence, page]", "steps: [snapshot_evidence, page]")
    assert wrong != text
    (tmp_path / "runaway_agent.yaml").write_text(wrong, encoding="utf-8")
    playbook, problems = load_playbook(tmp_path / "runaway_agent.yaml")
    assert playbook is not None and problems == []
    failures = run_inline_tests(playbook)
    assert len(failures) == 1
    assert "expected steps ['snapshot_evidence', 'page'], planned ['suspend_agent'," in failures[0].message
    assert failures[0].line == playbook.line_of("tests", 0)


def test_a_negative_test_that_matches_fails(tmp_path: Path) -> None:
    text = (LIBRARY / "runaway_agent.yaml").read_text(encoding="utf-8")
    (tmp_path / "runaway_agent.yaml").write_text(text.replace("principal_types: {alice: human}",
                                                              "principal_types: {alice: agent}"), encoding="utf-8")
    playbook, _ = load_playbook(tmp_path / "runaway_agent.yaml")
    assert playbook is not None
    failures = run_inline_tests(playbook)
    assert [f.message.split(":")[0] for f in failures] == ["test 'a person is never suspended by this playbook'"]
    assert "expected no match" in failures[0].message


def test_scaffold_passes_as_written_and_refuses_bad_ids(tmp_path: Path) -> None:
    target = scaffold("quarantine_salaries", tmp_path / "quarantine_salaries.yaml")
    report = test_library([tmp_path], only="quarantine_salaries")
    assert report.ok, [str(p) for p in report.problems]
    assert report.checked == ["quarantine_salaries"] and report.tests == 2
    with pytest.raises(ValueError, match="already exists"):
        scaffold("quarantine_salaries", target)
    with pytest.raises(ValueError, match="lower_snake_case"):
        scaffold("Bad-Name", tmp_path / "x.yaml")


def test_approval_rules_follow_severity() -> None:
    embedding = BUILT_IN.playbooks["embedding_export"]
    base = {"detector": "bulk_export", "principals": ["bob"], "resources": ["emb.a"],
            "catalogue": {"emb.a": {"kind": "embedding"}}}
    gates = {}
    for severity in ("SEV1", "SEV2", "SEV3"):
        planned = plan(embedding, context_from_mapping({**base, "severity": severity}))
        assert planned is not None
        gates[severity] = [s.name for s in planned.steps if s.needs_approval]
    assert gates == {"SEV1": [], "SEV2": ["suspend_identity"], "SEV3": ["suspend_identity"]}
    assert plan(embedding, context_from_mapping({**base, "severity": "SEV4"})) is None


def test_python_module_beside_a_playbook_adds_a_condition_and_parameters(tmp_path: Path) -> None:
    scaffold("custom", tmp_path / "custom.yaml")
    text = (tmp_path / "custom.yaml").read_text(encoding="utf-8").replace(
        'with: {principals: "{{ incident.principal }}"}', 'with: {principals: "{{ extra.who }}"}')
    (tmp_path / "custom.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "custom.py").write_text(
        "def match(incident):\n    return not incident['principal'].startswith('svc.')\n\n"
        "def parameters(incident):\n    return {'who': [incident['principal'], incident['principal'] + '.token']}\n",
        encoding="utf-8")
    library = load_library([tmp_path])
    assert library.problems == []
    playbook = library.playbooks["custom"]
    incident = {"detector": "bulk_export", "severity": "SEV1", "resources": ["ds.s"],
                "catalogue": {"ds.s": {"sensitivity": "restricted"}}}
    planned = plan(playbook, context_from_mapping({**incident, "principals": ["alice"]}))
    assert planned is not None
    assert planned.steps[1].params == {"principals": ["alice", "alice.token"]}
    assert plan(playbook, context_from_mapping({**incident, "principals": ["svc.etl"]})) is None


def test_a_module_that_fails_to_import_is_a_problem(tmp_path: Path) -> None:
    scaffold("custom", tmp_path / "custom.yaml")
    (tmp_path / "custom.py").write_text("import no_such_module_anywhere\n", encoding="utf-8")
    library = load_library([tmp_path])
    assert "custom" not in library.playbooks
    assert any("cannot import" in p.message and p.file.name == "custom.py" for p in library.problems)


def test_templates_keep_types_and_undefined_names_fail() -> None:
    incident = context_from_mapping({"detector": "unsanitised_training", "entity": "training_run",
                                     "entity_key": "run.1", "resources": ["run.1", "ds.a", "ds.b"],
                                     "catalogue": {"ds.a": {"sanitized": 0}, "ds.b": {"sanitized": 1}}})
    assert render("{{ incident.unsanitised_inputs }}", incident) == ["ds.a"]
    assert render("run {{ incident.training_run }} on {{ incident.resources | length }}", incident) == "run run.1 on 3"
    assert render({"a": ["{{ incident.id }}", 2]}, incident) == {"a": [1, 2]}
    assert render("{{ incident.id }}: {{ incident.training_run }}", incident) == "1: run.1"  # text, two expressions
    with pytest.raises(TemplateError, match="nope"):
        render("{{ [incident.nope] }}", incident)  # undefined inside a value is still undefined
    with pytest.raises(TemplateError, match="no_such_field"):
        render("{{ incident.no_such_field }}", incident)


def test_grant_incidents_expose_the_grant() -> None:
    incident = context_from_mapping({"detector": "permission_fanout", "entity": "grant",
                                     "entity_key": "ds.x -> team -> sub", "explanation": [
                                         {"feature": "audience_gain", "value": 900}, {"rule": "grant.mass_audience"}]})
    assert incident["grant"] == {"resource": "ds.x", "grantee": "team -> sub"}
    assert incident["rule"] == "grant.mass_audience"
    assert incident["features"] == {"audience_gain": 900}


def test_the_readme_example_playbook_passes(tmp_path: Path) -> None:
    readme = (LIBRARY.parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("```yaml\n", readme.index("## Write a playbook")) + len("```yaml\n")
    (tmp_path / "quarantine_salaries.yaml").write_text(readme[start:readme.index("```", start)], encoding="utf-8")
    report = test_library([tmp_path], only="quarantine_salaries")
    assert report.ok, [str(p) for p in report.problems]
    assert report.tests == 2
