"""Detection rules as code: the built-in rules' inline tests, invariants with file:line, the detect step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from builders import event_row, ingest_rows, iso, resource_row
from test_cli import run

from blastwall.config import load_settings
from blastwall.rule_tests import run_rule_tests
from blastwall.store import scratch_store
from detector.detect import DetectConfig, detect_step
from detector.incidents import list_incidents
from detector.rules import LIBRARY, known_detectors, load_rules, read_only_problems, rule_alerts, test_rules
from playbooks.context import incident_context
from playbooks.model import LIBRARY as PLAYBOOKS
from playbooks.model import load_library, plan
from playbooks.model import test_library as test_playbooks

BUILT_IN = sorted(p.stem for p in LIBRARY.glob("*.yaml"))
START = datetime(2026, 10, 5, 9, tzinfo=UTC)
HOUR = timedelta(hours=1)

GOOD_RULE = """\
description: A human exports restricted data.
entity: principal
key: "{{ principal }}"
severity: SEV3
title: "{{ principal }} exported {{ resource }}"
techniques: [T1567]
parameters: {min_rows: 10}
query: |
  SELECT principal, resource, min(event_time) AS first_seen, max(event_time) AS last_seen
  FROM access_log
  WHERE event_time >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
    AND event_time < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
    AND action = 'export' AND rows >= {min_rows:UInt64}
  GROUP BY principal, resource
tests:
  - name: a large export alerts
    window: {start: 2026-10-05T09:00:00Z, end: 2026-10-05T10:00:00Z}
    events: [{event_time: 2026-10-05T09:10:00Z, principal: ann, action: export, resource: ds.a, rows: 50}]
    expect: [{entity_key: ann, severity: SEV3, resources: [ds.a]}]
  - name: a small one does not
    window: {start: 2026-10-05T09:00:00Z, end: 2026-10-05T10:00:00Z}
    events: [{event_time: 2026-10-05T09:10:00Z, principal: ann, action: export, resource: ds.a, rows: 5}]
    expect: []
"""


def test_at_least_three_built_in_rules_and_their_ids_are_known_detectors() -> None:
    assert len(BUILT_IN) >= 3
    assert set(BUILT_IN) <= set(known_detectors())
    assert load_rules().problems == []


@pytest.mark.parametrize("rule_id", BUILT_IN)
def test_built_in_rule_inline_tests_pass(rule_id: str) -> None:
    report = test_rules([LIBRARY], scratch_store, only=rule_id)
    assert report.checked == [rule_id] and report.tests >= 2
    assert report.problems == [], "\n".join(map(str, report.problems))


def test_a_broken_folder_reports_every_problem_with_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "bad_yaml.yaml").write_text("description: x\nentity: [unclosed\n")
    (folder / "many_problems.yaml").write_text(
        GOOD_RULE.replace("description: A human", "id: other_name\ncolour: red\ndescription: A human")
        .replace("severity: SEV3\n", "severity: SEV9\n")
        .replace("AND rows >= {min_rows:UInt64}", "AND rows >= {max_rows:UInt64}")
        .replace("  - name: a small one does not", "  - name: a small one does not\n    parameters: {nope: 1}"))
    (folder / "writes.yaml").write_text(GOOD_RULE.replace(
        "  SELECT principal, resource,",
        "  INSERT INTO access_log SELECT * FROM access_log;\n  SELECT principal, resource,"))
    (folder / "alters.yaml").write_text(GOOD_RULE.replace(
        "  SELECT principal, resource,", "  ALTER TABLE access_log DELETE WHERE 1;\n  SELECT principal, resource,"))
    (folder / "drops.yaml").write_text(GOOD_RULE.replace("GROUP BY principal, resource",
                                                         "GROUP BY principal, resource; DROP TABLE access_log"))
    (folder / "no_negative.yaml").write_text(GOOD_RULE.split("  - name: a small one does not")[0])
    (folder / "no_positive.yaml").write_text(GOOD_RULE.replace(
        "    expect: [{entity_key: ann, severity: SEV3, resources: [ds.a]}]", "    expect: []"))
    (folder / "Bad-Name.yaml").write_text(GOOD_RULE)
    library = load_rules([folder])
    text = [str(p) for p in library.problems]

    def has(file: str, line: int, words: str) -> None:
        assert any(t.startswith(f"{folder / file}:{line}: ") and words in t for t in text), (file, line, words, text)

    has("bad_yaml.yaml", 3, "not valid YAML")
    has("many_problems.yaml", 1, "id 'other_name' differs from the file name 'many_problems'")
    has("many_problems.yaml", 2, "colour: unknown field")
    has("many_problems.yaml", 6, "severity 'SEV9' is not one of SEV1, SEV2, SEV3, SEV4")
    has("many_problems.yaml", 15, "parameter 'max_rows', which `parameters:` does not declare")
    has("many_problems.yaml", 9, "parameter 'min_rows' is not used by the query")
    has("many_problems.yaml", 23, "sets parameter 'nope'")
    has("writes.yaml", 9, "a rule query is one SELECT")
    has("writes.yaml", 9, "INSERT is not allowed")
    has("writes.yaml", 9, "one statement only")
    has("alters.yaml", 9, "ALTER is not allowed")
    has("alters.yaml", 9, "DELETE is not allowed")
    has("drops.yaml", 14, "DROP is not allowed")
    has("no_negative.yaml", 15, "needs at least one negative test")
    has("no_positive.yaml", 15, "needs at least one positive test")
    has("Bad-Name.yaml", 1, "not a valid id")
    assert library.rules == {}


def test_read_only_check_sees_through_comments_and_literals() -> None:
    assert read_only_problems("SELECT 'DROP TABLE x; INSERT' AS s -- ALTER\nFROM access_log") == []
    assert [m for _, m in read_only_problems("SELECT * FROM file('/etc/passwd', 'LineAsString')")] == [
        "table function file(…) is not allowed: read the contract tables (access_log, resources, memberships, "
        "principals)"]
    assert any("INTO OUTFILE" in m for _, m in read_only_problems("SELECT 1 INTO OUTFILE '/tmp/x'"))
    assert any("SETTINGS" in m for _, m in read_only_problems("SELECT 1 SETTINGS readonly = 0"))


def test_clickhouse_parse_refuses_a_table_function_the_text_check_missed(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    # a table function after a comma join: not "FROM name(" so the text check lets it by
    (folder / "sneaky.yaml").write_text(GOOD_RULE.replace(
        "  FROM access_log\n", "  FROM access_log, numbers(1) AS n\n"))
    report = test_rules([folder], scratch_store)
    assert [p.message for p in report.problems] == ["table function numbers is not allowed"]


def _settings_with_rules(tmp_path: Path, body: str, name: str = "big_export") -> Path:
    folder = tmp_path / "elsewhere" / "our-rules"
    folder.mkdir(parents=True)
    (folder / f"{name}.yaml").write_text(body)
    config = tmp_path / "elsewhere" / "blastwall.yaml"
    config.write_text("rules: [./our-rules]\n")
    return config


def _export(at: datetime, rows: int = 50, who: str = "ann") -> dict:
    return {**event_row(at, who, "export", "ds.a", rows=rows), "event_time": iso(at)}


def test_a_rule_from_a_settings_folder_opens_one_incident_deduplicated_across_steps(client, tmp_path: Path) -> None:
    settings = load_settings(_settings_with_rules(tmp_path, GOOD_RULE))
    assert settings.rules[0] == tmp_path / "elsewhere" / "our-rules"
    config, problems = settings.detect_config()
    assert problems == [] and "big_export" in [r.id for r in config.rules]
    assert set(BUILT_IN) <= {r.id for r in config.rules}
    ingest_rows(client, tmp_path, "access_log", [_export(START + timedelta(minutes=10)),
                                                 _export(START + HOUR + timedelta(minutes=10))])
    first = detect_step(client, START, START + HOUR, config=config)
    second = detect_step(client, START + HOUR, START + 2 * HOUR, config=config)
    assert [o.outcome for a, o in zip(first.alerts, first.outcomes) if a.detector == "big_export"] == ["opened"]
    assert [o.outcome for a, o in zip(second.alerts, second.outcomes) if a.detector == "big_export"] == ["updated"]
    found = [i for i in list_incidents(client) if i["detector"] == "big_export"]
    assert len(found) == 1
    incident = found[0]
    assert (incident["entity_key"], incident["alerts"], incident["severity"]) == ("ann", 2, "SEV3")
    assert incident["resources"] == ["ds.a"] and incident["title"] == "ann exported ds.a"
    rule_item = next(item for item in incident["explanation"] if "rule" in item)
    assert rule_item["rule"] == "big_export" and rule_item["techniques"] == ["T1567"]


def test_a_rule_that_fails_at_run_time_opens_a_pipeline_error_and_the_step_completes(client, tmp_path: Path) -> None:
    good = load_rules([_settings_with_rules(tmp_path, GOOD_RULE).parent / "our-rules"]).rules["big_export"]
    broken_folder = tmp_path / "broken"
    broken_folder.mkdir()
    (broken_folder / "no_such_column.yaml").write_text(GOOD_RULE.replace("AND action = 'export'",
                                                                         "AND no_such_column = 'export'"))
    broken = load_rules([broken_folder]).rules["no_such_column"]  # valid as text; fails in ClickHouse
    ingest_rows(client, tmp_path, "access_log", [_export(START + timedelta(minutes=10))])
    result = detect_step(client, START, START + HOUR, config=DetectConfig(rules=(broken, good)))
    detectors = sorted(a.detector for a in result.alerts)
    assert detectors == ["big_export", "pipeline_error"]
    assert len(result.errors) == 1 and result.errors[0].startswith("rule no_such_column: ")  # `detect` shows it
    incidents = {i["detector"]: i for i in list_incidents(client)}
    error = incidents["pipeline_error"]
    assert error["entity_key"] == "rule no_such_column" and "no_such_column" in error["title"]
    assert incidents["big_export"]["status"] == "open"


def test_rule_alerts_keep_going_past_a_broken_rule(client, tmp_path: Path) -> None:
    broken_folder = tmp_path / "broken"
    broken_folder.mkdir()
    (broken_folder / "bad_title.yaml").write_text(GOOD_RULE.replace('"{{ principal }} exported {{ resource }}"',
                                                                    '"{{ principal }} {{ no_such_name }}"'))
    ingest_rows(client, tmp_path, "access_log", [_export(START + timedelta(minutes=10))])
    alerts = rule_alerts(client, START, START + HOUR, load_rules([broken_folder]).rules.values())
    assert [(a.detector, a.entity_key) for a in alerts] == [("pipeline_error", "rule bad_title")]


def test_the_grant_rule_incident_triggers_its_playbook(client, tmp_path: Path) -> None:
    rules = tuple(load_rules().rules.values())
    ingest_rows(client, tmp_path, "resources", [{**resource_row("ds.employee_telemetry", sensitivity="restricted"),
                                                 "updated_at": iso(START - 4 * HOUR)}])
    grant = {**event_row(START + timedelta(minutes=20), "bob", "grant", "ds.employee_telemetry",
                         grantee="everyone", via="ai_assistant", event_id="g1"),
             "event_time": iso(START + timedelta(minutes=20))}
    ingest_rows(client, tmp_path, "access_log", [grant])
    detect_step(client, START, START + HOUR, config=DetectConfig(rules=rules))
    incident = next(i for i in list_incidents(client) if i["detector"] == "ai_grant_without_approval")
    assert (incident["entity"], incident["entity_key"], incident["severity"]) == (
        "grant", "ds.employee_telemetry -> everyone", "SEV1")
    context = incident_context(client, incident["id"])
    assert context["rule"] == "ai_grant_without_approval"
    library = load_library([PLAYBOOKS])
    assert [p.id for p in library.matching(context)] == ["ai_grant_without_approval"]
    planned = plan(library.playbooks["ai_grant_without_approval"], context)
    assert [s.name for s in planned.steps] == ["snapshot_evidence", "revoke_grant", "page"]
    assert planned.steps[1].params == {"resource": "ds.employee_telemetry", "grantee": "everyone"}
    assert not planned.steps[1].needs_approval


def test_the_playbook_library_passes_with_rule_detectors() -> None:
    report = test_playbooks([PLAYBOOKS], only="ai_grant_without_approval")
    assert report.ok, "\n".join(map(str, report.problems))


def test_rule_tests_run_in_a_child_process_while_a_store_is_open(client) -> None:
    report = run_rule_tests([LIBRARY], only="service_secret_new_ip")
    assert report.checked == ["service_secret_new_ip"] and report.ok


def test_cli_rule_list_new_and_test(capsys, monkeypatch, tmp_path: Path) -> None:
    folder = tmp_path / "our-rules"
    code, out, _ = run(capsys, monkeypatch, "rule", "list")
    assert code == 0 and all(rid in out for rid in BUILT_IN)
    code, out, err = run(capsys, monkeypatch, "rule", "new", "off_hours_export", "--dir", str(folder))
    assert code == 0 and (folder / "off_hours_export.yaml").is_file(), err
    assert "blastwall rule test off_hours_export --dir" in out
    code, out, _ = run(capsys, monkeypatch, "rule", "test", "off_hours_export", "--dir", str(folder))
    assert code == 0 and "1 rules, 2 inline tests: all passed" in out
    code, _, err = run(capsys, monkeypatch, "rule", "new", "off_hours_export", "--dir", str(folder))
    assert code == 2 and "already exists" in err
    (folder / "off_hours_export.yaml").write_text(
        (folder / "off_hours_export.yaml").read_text().replace("expect: [{entity_key: alice, severity: SEV2}]",
                                                               "expect: [{entity_key: alice, severity: SEV1}]"))
    code, out, _ = run(capsys, monkeypatch, "rule", "test", "--dir", str(folder))
    assert code == 1 and "off_hours_export.yaml:" in out and "expected severity 'SEV1', got 'SEV2'" in out
    code, out, err = run(capsys, monkeypatch, "rule", "list", "--dir", str(tmp_path / "missing"))
    assert code == 1 and "no such rule folder" in err


def test_a_missing_built_in_folder_is_an_error(tmp_path: Path, monkeypatch) -> None:
    import detector.rules as rules

    monkeypatch.setattr(rules, "LIBRARY", tmp_path / "gone")
    assert "built-in rule library is missing" in str(rules.load_rules([tmp_path / "gone"]).problems[0])


# --- condition rules and the rule's Python module -----------------------------------------

CONDITION_RULE = """\
description: A principal exports a lot to a destination it never used.
entity: principal
key: "{{ principal }}"
severity: SEV2
title: "{{ principal }} exported {{ bytes_exported }} bytes to {{ new_export_destinations }} new destinations"
techniques: [T1567]
parameters: {min_bytes: 1000000}
condition: "bytes_exported > min_bytes and new_export_destinations > 0"
tests:
  - name: a big export to a new place alerts
    window: {start: 2026-10-05T09:00:00Z, end: 2026-10-05T10:00:00Z}
    events:
      - {event_time: 2026-10-05T09:10:00Z, principal: ann, action: export, resource: ds.a, bytes: 5000000,
         attributes: {destination: "s3://elsewhere"}}
    expect: [{entity_key: ann, severity: SEV2, principals: [ann]}]
  - name: the same destination as the day before is not new
    window: {start: 2026-10-05T09:00:00Z, end: 2026-10-05T10:00:00Z}
    events:
      - {event_time: 2026-10-04T09:10:00Z, principal: ann, action: export, resource: ds.a, bytes: 10,
         attributes: {destination: "s3://elsewhere"}}
      - {event_time: 2026-10-05T09:10:00Z, principal: ann, action: export, resource: ds.a, bytes: 5000000,
         attributes: {destination: "s3://elsewhere"}}
    expect: []
"""


def _big_export(at: datetime, who: str = "ann", destination: str = "s3://elsewhere") -> dict:
    return {**event_row(at, who, "export", "ds.a", bytes=5_000_000, attributes={"destination": destination}),
            "event_time": iso(at)}


def _rule_folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "our-rules"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_a_condition_rule_loads_passes_its_tests_and_fires_on_the_real_feature_step(client, tmp_path: Path) -> None:
    folder = _rule_folder(tmp_path, {"new_place_export.yaml": CONDITION_RULE})
    library = load_rules([folder])
    assert library.problems == [] and library.rules["new_place_export"].spec.query is None
    ingest_rows(client, tmp_path, "access_log", [_big_export(START + timedelta(minutes=10)),
                                                 _big_export(START + timedelta(minutes=20), who="bo") | {
                                                     "bytes": 10}])
    result = detect_step(client, START, START + HOUR, config=DetectConfig(rules=tuple(library.rules.values())))
    assert [a.entity_key for a in result.alerts if a.detector == "new_place_export"] == ["ann"]
    incident = next(i for i in list_incidents(client) if i["detector"] == "new_place_export")
    assert incident["title"] == "ann exported 5000000 bytes to 1 new destinations"
    assert incident["severity"] == "SEV2" and incident["principals"] == ["ann"]
    values = {item["feature"]: item["value"] for item in incident["explanation"] if "feature" in item}
    assert values == {"bytes_exported": 5_000_000, "new_export_destinations": 1}
    meta = next(item for item in incident["explanation"] if "rule" in item)
    assert meta["condition"] == "bytes_exported > min_bytes and new_export_destinations > 0"


def test_condition_rule_inline_tests_run_the_feature_step(tmp_path: Path) -> None:
    folder = _rule_folder(tmp_path, {"new_place_export.yaml": CONDITION_RULE})
    assert test_rules([folder], scratch_store).problems == []
    # The negative test relies on the history built from its earlier event: drop it and the test fails.
    (folder / "new_place_export.yaml").write_text(CONDITION_RULE.replace(
        "      - {event_time: 2026-10-04T09:10:00Z, principal: ann, action: export, resource: ds.a, bytes: 10,\n"
        "         attributes: {destination: \"s3://elsewhere\"}}\n", ""))
    report = test_rules([folder], scratch_store)
    assert [p.message for p in report.problems] == [
        "test 'the same destination as the day before is not new': expected alerts on nothing, got ['ann']"]


def test_condition_rule_problems_are_reported_with_file_and_line(tmp_path: Path) -> None:
    folder = _rule_folder(tmp_path, {
        "unknown_feature.yaml": CONDITION_RULE.replace("new_export_destinations > 0", "new_places > 0"),
        "wrong_entity.yaml": CONDITION_RULE.replace("new_export_destinations > 0", "audience_gain > 0"),
        "calls.yaml": CONDITION_RULE.replace("bytes_exported > min_bytes", "bytes_exported.__class__ > min_bytes"),
        "both.yaml": GOOD_RULE.replace("query: |", 'condition: "events > 1"\nquery: |'),
        "neither.yaml": CONDITION_RULE.replace(
            'condition: "bytes_exported > min_bytes and new_export_destinations > 0"\n', ""),
    })
    library = load_rules([folder])
    text = [str(p) for p in library.problems]

    def has(file: str, line: int, words: str) -> None:
        assert any(t.startswith(f"{folder / file}:{line}: ") and words in t for t in text), (file, line, words, text)

    has("unknown_feature.yaml", 8, "the condition names 'new_places': neither a registry feature nor a declared "
                                   "parameter")
    has("wrong_entity.yaml", 8, "'audience_gain': a grant feature, not a principal one")
    has("calls.yaml", 8, "attribute is not allowed in a condition")
    has("both.yaml", 8, "give either `query:` or `condition:`, not both")
    has("neither.yaml", 1, "a rule needs a `query:` (read-only SQL) or a `condition:`")
    assert library.rules == {}


def test_a_condition_rule_without_features_is_skipped_with_an_error_alert(client, tmp_path: Path) -> None:
    rule = load_rules([_rule_folder(tmp_path, {"new_place_export.yaml": CONDITION_RULE})]).rules.values()
    ingest_rows(client, tmp_path, "access_log", [_big_export(START + timedelta(minutes=10))])
    alerts = rule_alerts(client, START, START + HOUR, rule)
    assert [(a.detector, a.entity_key) for a in alerts] == [("pipeline_error", "rule new_place_export")]
    assert "needs the step's feature set" in alerts[0].title


MATCH_PY = """\
def match(row):
    return row["principal"] != "bo"


def enrich(row):
    return {"team": "finance" if row["principal"] == "ann" else "other"}
"""


def test_a_rule_module_filters_and_enriches_rows(client, tmp_path: Path) -> None:
    folder = _rule_folder(tmp_path, {
        "big_export.yaml": GOOD_RULE.replace('"{{ principal }} exported {{ resource }}"',
                                             '"{{ principal }} ({{ team }}) exported {{ resource }}"'),
        "big_export.py": MATCH_PY,
        "new_place_export.yaml": CONDITION_RULE,
        "new_place_export.py": MATCH_PY})
    library = load_rules([folder])
    assert library.problems == []
    ingest_rows(client, tmp_path, "access_log", [_export(START + timedelta(minutes=10)),
                                                 _export(START + timedelta(minutes=11), who="bo"),
                                                 _big_export(START + timedelta(minutes=12)),
                                                 _big_export(START + timedelta(minutes=13), who="bo")])
    result = detect_step(client, START, START + HOUR, config=DetectConfig(rules=tuple(library.rules.values())))
    found = sorted((a.detector, a.entity_key, a.title) for a in result.alerts
                   if a.detector in ("big_export", "new_place_export"))
    assert found == [("big_export", "ann", "ann (finance) exported ds.a"),
                     ("new_place_export", "ann", "ann exported 5000000 bytes to 1 new destinations")]
    explained = next(a for a in result.alerts if a.detector == "new_place_export").explanation
    assert {"feature": "team", "description": "", "value": "finance", "baseline": "", "weight": 0.0} in explained


def test_a_rule_module_that_raises_opens_a_pipeline_error_and_the_step_completes(client, tmp_path: Path) -> None:
    folder = _rule_folder(tmp_path, {
        "big_export.yaml": GOOD_RULE,
        "new_place_export.yaml": CONDITION_RULE,
        "new_place_export.py": "def match(row):\n    raise KeyError('no_such_column')\n"})
    library = load_rules([folder])
    assert library.problems == []
    ingest_rows(client, tmp_path, "access_log", [_export(START + timedelta(minutes=10)),
                                                 _big_export(START + timedelta(minutes=12))])
    result = detect_step(client, START, START + HOUR, config=DetectConfig(rules=tuple(library.rules.values())))
    assert sorted(a.detector for a in result.alerts if a.detector in ("big_export", "new_place_export",
                                                                      "pipeline_error")) == [
        "big_export", "pipeline_error"]
    error = next(i for i in list_incidents(client) if i["detector"] == "pipeline_error")
    assert error["entity_key"] == "rule new_place_export"
    assert "new_place_export.py: match() raised KeyError" in error["title"]


def test_a_rule_module_that_does_not_import_is_a_load_problem_with_its_file_and_line(tmp_path: Path) -> None:
    folder = _rule_folder(tmp_path, {
        "syntax.yaml": GOOD_RULE, "syntax.py": "def match(row):\n    return (\n",
        "raises.yaml": GOOD_RULE, "raises.py": "import os\n\nVALUE = 1 / 0\n\ndef match(row):\n    return True\n",
        "empty.yaml": GOOD_RULE, "empty.py": "LIMIT = 3\n",
        "fine.yaml": GOOD_RULE, "fine.py": "def enrich(row):\n    return {}\n"})
    library = load_rules([folder])
    text = [str(p) for p in library.problems]
    assert any(t.startswith(f"{folder / 'syntax.py'}:") and "cannot import: SyntaxError" in t for t in text), text
    assert f"{folder / 'raises.py'}:3: cannot import: ZeroDivisionError: division by zero" in text
    assert f"{folder / 'empty.py'}:1: defines neither match(row) -> bool nor enrich(row) -> dict" in text
    assert sorted(library.rules) == ["fine"]


def test_the_built_in_condition_rule_is_a_condition() -> None:
    rule = load_rules().rules["denied_sensitive_probing"]
    assert rule.spec.condition and rule.spec.query is None
    assert any(not t.expect for t in rule.spec.tests) and any(t.expect for t in rule.spec.tests)


def test_only_when_skips_windows_without_a_qualifying_event(client, tmp_path: Path) -> None:
    loose = GOOD_RULE.replace("query: |", "only_when: \"action = 'export'\"\nquery: |")
    strict = GOOD_RULE.replace("query: |", "only_when: \"action = 'grant'\"\nquery: |")
    ingest_rows(client, tmp_path, "access_log", [_export(START + timedelta(minutes=10))])
    for text, expected in ((loose, ["ann"]), (strict, [])):
        rule = load_rules([_rule_folder(tmp_path, {"big_export.yaml": text})]).rules["big_export"]
        assert [a.entity_key for a in rule_alerts(client, START, START + HOUR, [rule])] == expected


def test_an_only_when_stricter_than_its_query_fails_the_inline_tests(tmp_path: Path) -> None:
    loose = GOOD_RULE.replace("query: |", "only_when: \"action = 'export'\"\nquery: |")
    folder = _rule_folder(tmp_path, {"big_export.yaml": loose})
    assert test_rules([folder], scratch_store).problems == []
    # A precondition stricter than the query skips the very window its positive test needs: the test says so.
    (folder / "big_export.yaml").write_text(GOOD_RULE.replace("query: |", "only_when: \"action = 'grant'\"\nquery: |"))
    report = test_rules([folder], scratch_store)
    assert [p.message for p in report.problems] == [
        "test 'a large export alerts': expected alerts on ['ann'], got none"]


def test_only_when_needs_a_query_and_reads_only(tmp_path: Path) -> None:
    on_condition = CONDITION_RULE.replace("condition:", "only_when: \"action = 'export'\"\ncondition:")
    writing = GOOD_RULE.replace("query: |", "only_when: \"1 IN (SELECT 1) ; DROP TABLE access_log\"\nquery: |")
    folder = _rule_folder(tmp_path, {"new_place_export.yaml": on_condition, "big_export.yaml": writing})
    messages = [p.message for p in load_rules([folder]).problems]
    assert any("only_when" in m and "condition rule" in m for m in messages), messages
    assert any(m.startswith("only_when:") for m in messages), messages
