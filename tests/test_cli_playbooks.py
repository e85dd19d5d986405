"""The playbook commands as an engineer and an analyst use them: new, test, list, dry-run, run,
approve, deny, rollback, respond, and the playbook runs in ``incidents --json``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_cli import run

from blastwall.schema import init_schema
from blastwall.store import close_store, open_store
from detector.incidents import Alert, record_alert


def _incident(store_dsn: str, detector: str, key: str, severity: str, **extra) -> int:
    """Record one incident, detected a minute ago (live), and close the store for the CLI."""
    now = datetime.now(UTC)
    client = open_store(store_dsn)
    try:
        init_schema(client)
        fields = {"alert_id": f"{detector}|{key}|{severity}", "detector": detector, "entity": "principal",
                  "entity_key": key, "title": f"{detector} by {key}", "severity": severity, "score": 0.999,
                  "principals": (key,), "resources": ("emb.notes",), "first_seen": now - timedelta(minutes=30),
                  "last_seen": now - timedelta(minutes=20), "detected_at": now - timedelta(minutes=1)}
        client.insert("resources", [["emb.notes", "embedding", "confidential", ["pii"], "hr", 1]],
                      column_names=["resource", "kind", "sensitivity", "categories", "owner", "sanitized"])
        return record_alert(client, Alert(**(fields | extra))).incident_id
    finally:
        close_store(client)


def test_new_then_test_then_list(capsys, monkeypatch, tmp_path: Path) -> None:
    code, out, _ = run(capsys, monkeypatch, "playbook", "new", "rotate_keys", "--dir", str(tmp_path))
    assert code == 0 and (tmp_path / "rotate_keys.yaml").is_file()
    code, out, _ = run(capsys, monkeypatch, "playbook", "test", "rotate_keys", "--dir", str(tmp_path))
    assert code == 0 and out.strip().endswith("1 playbooks, 2 inline tests: all passed")
    code, out, _ = run(capsys, monkeypatch, "playbook", "test")
    assert code == 0 and "inline tests: all passed" in out
    code, out, _ = run(capsys, monkeypatch, "playbook", "list", "--dir", str(tmp_path))
    assert code == 0 and "rotate_keys" in out and "restricted_fanout" in out
    assert "snapshot_readers -> revoke_grant? -> notify_owner -> page" in out


def test_a_failing_playbook_test_exits_1_naming_file_and_line(capsys, monkeypatch, tmp_path: Path) -> None:
    run(capsys, monkeypatch, "playbook", "new", "rotate_keys", "--dir", str(tmp_path))
    path = tmp_path / "rotate_keys.yaml"
    path.write_text(path.read_text().replace("steps: [snapshot_evidence, suspend_identity]", "steps: [page]"))
    code, out, _ = run(capsys, monkeypatch, "playbook", "test", "rotate_keys", "--dir", str(tmp_path))
    assert code == 1
    failure = next(line for line in out.splitlines() if line.startswith("FAIL"))
    assert f"{path}:" in failure and "expects a step 'page' the playbook does not have" in failure


def test_dry_run_run_approve_rollback_and_json(capsys, monkeypatch, store_dsn: str) -> None:
    incident_id = _incident(store_dsn, "bulk_export", "bob", "SEV2")
    base = ("--dsn", store_dsn)

    code, out, _ = run(capsys, monkeypatch, *base, "playbook", "dry-run", "embedding_export", "--incident",
                       str(incident_id))
    assert code == 0, out
    assert "dry run of embedding_export on incident INC-1 (SEV2): 3 steps, nothing executed" in out
    code, same, _ = run(capsys, monkeypatch, *base, "playbook", "dry-run", "embedding_export", "--incident", "inc-1")
    assert (code, same) == (0, out)
    assert "3. suspend_identity: suspend bob  (needs approval, reversible)" in out
    code, out, _ = run(capsys, monkeypatch, *base, "playbook", "dry-run", "runaway_agent", "--incident",
                       str(incident_id))
    assert code == 0 and "does not match" in out

    code, out, _ = run(capsys, monkeypatch, *base, "respond")
    assert code == 0 and "1 incidents handled: 1 playbook runs" in out
    assert "  INC-1.embedding_export: awaiting_approval" in out
    run_id = f"{incident_id}.embedding_export"
    assert f"blastwall approve {run_id} suspend_identity" not in out  # respond lists runs only

    code, out, err = run(capsys, monkeypatch, *base, "incidents", "--json")
    runs = json.loads(out)[0]["playbook_runs"]
    assert [(r["playbook"], r["state"]) for r in runs] == [("embedding_export", "awaiting_approval")]
    assert [s["state"] for s in runs[0]["steps"]] == ["succeeded", "succeeded", "awaiting_approval"]

    code, out, _ = run(capsys, monkeypatch, *base, "approve", run_id, "snapshot_evidence")
    assert code == 2
    code, _, err = run(capsys, monkeypatch, *base, "approve", "INC-1.embedding_export", "snapshot_evidence")
    assert code == 2 and "INC-1.embedding_export" in err and str(incident_id) not in err  # named as typed
    code, out, _ = run(capsys, monkeypatch, *base, "approve", "INC-1.embedding_export", "suspend_identity",
                       "--reason", "checked")
    assert code == 0 and "run INC-1.embedding_export: succeeded" in out
    assert "suspend_identity     succeeded" in out

    code, out, _ = run(capsys, monkeypatch, *base, "incidents", "--json")
    assert json.loads(out)[0]["status"] == "contained"
    code, out, _ = run(capsys, monkeypatch, *base, "rollback", "INC-1")
    assert code == 0 and "rolled back 1 steps of incident INC-1" in out
    assert "  INC-1.embedding_export suspend_identity: " in out
    code, out, _ = run(capsys, monkeypatch, *base, "incidents", "--json")
    assert json.loads(out)[0]["status"] == "acknowledged"
    assert json.loads(out)[0]["playbook_runs"][0]["state"] == "rolled_back"


def test_deny_needs_a_reason_and_keeps_the_step_from_running(capsys, monkeypatch, store_dsn: str) -> None:
    incident_id = _incident(store_dsn, "bulk_export", "carol", "SEV3")
    base = ("--dsn", store_dsn)
    code, out, _ = run(capsys, monkeypatch, *base, "playbook", "run", "embedding_export", "--incident", "INC-1")
    assert code == 0 and "awaiting_approval" in out
    assert "approve with: blastwall approve INC-1.embedding_export suspend_identity" in out
    code, out, _ = run(capsys, monkeypatch, *base, "deny", f"{incident_id}.embedding_export", "suspend_identity",
                       "--reason", "sanctioned migration")
    assert code == 0 and "run INC-1.embedding_export: " in out and "suspend_identity     denied" in out


@pytest.mark.parametrize("broken", ["paging: {channels: {oncall: 'nosuchscheme://x'}}", "paging: [", "nope: 1"])
def test_a_bad_settings_file_is_one_line(capsys, monkeypatch, store_dsn: str, tmp_path: Path, broken: str) -> None:
    path = tmp_path / "blastwall.yaml"
    path.write_text(broken)
    code, _, err = run(capsys, monkeypatch, "--dsn", store_dsn, "--config", str(path), "respond")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"blastwall: {path}")
