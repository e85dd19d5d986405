"""Console sign-in, roles and role-checked actions, on a real store and real account files."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import platformdirs
import pytest
from argon2 import PasswordHasher
from builders import T0, alert, ingest_rows, iso
from click.testing import CliRunner
from clickhouse_connect.driver.client import Client
from test_cli import run

from blastwall import cli as cli_module
from blastwall.access import (
    PERMISSIONS,
    ROLES,
    AccessDenied,
    Accounts,
    AccountsError,
    ConsoleActions,
    User,
    add_account,
    allowed,
    authorise,
    default_accounts_path,
    hash_password,
    load_accounts,
    write_accounts,
)
from detector.incidents import (
    IncidentError,
    get_incident,
    incident_timeline,
    record_alert,
)
from playbooks.actions import controls_in_force
from playbooks.engine import Responder
from playbooks.model import load_library
from playbooks.paging import Pager

#: argon2 at the lowest cost, so the file stays fast; production uses argon2-cffi's defaults.
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
NOW = T0 + timedelta(minutes=20)

_ANALYST = {"view", "acknowledge", "assign", "note", "contain", "resolve", "false_positive"}
_RESPONDER = _ANALYST | {"approve", "deny", "run_playbook", "rollback"}
#: The permission table as the brief states it, written out independently of the code.
EXPECTED = {
    "viewer": {"view"},
    "analyst": _ANALYST,
    "responder": _RESPONDER,
    "admin": _RESPONDER | {"manage_accounts"},
}
MINIMUM = {"view": "viewer", **dict.fromkeys(_ANALYST - {"view"}, "analyst"),
           **dict.fromkeys(_RESPONDER - _ANALYST, "responder"), "manage_accounts": "admin"}


def person(role: str, name: str | None = None) -> User:
    return User(name or f"{role}-1", role.title(), role)


# --- roles -----------------------------------------------------------------------------


def test_roles_and_table() -> None:
    assert ROLES == ("viewer", "analyst", "responder", "admin")
    assert PERMISSIONS == MINIMUM
    assert cli_module._ROLES == ROLES  # the CLI spells them out to start fast


@pytest.mark.parametrize("action", sorted(MINIMUM))
@pytest.mark.parametrize("role", ROLES)
def test_permission_table(role: str, action: str) -> None:
    user = person(role, "alice")
    if action in EXPECTED[role]:
        authorise(user, action)
        assert allowed(user, action)
    else:
        with pytest.raises(AccessDenied) as denied:
            authorise(user, action)
        assert str(denied.value) == f"alice ({role}) may not {action}: it needs {MINIMUM[action]}"
        assert isinstance(denied.value, PermissionError)
        assert (denied.value.action, denied.value.required) == (action, MINIMUM[action])
        assert not allowed(user, action)


def test_unknown_actions_and_roles_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown console action 'drop_tables'"):
        authorise(person("admin"), "drop_tables")
    assert not allowed(person("admin"), "drop_tables")
    with pytest.raises(ValueError, match="unknown role 'root'"):
        User("mallory", "", "root")


# --- role-checked actions on a real store ---------------------------------------------


@pytest.fixture
def gated(client: Client, tmp_path: Path) -> dict:
    """An embedding export at SEV2: its ``embedding_export`` run waits for approval to suspend bob."""
    stamp = "2026-10-01T00:00:00Z"
    ingest_rows(client, tmp_path, "resources", [
        {"resource": "emb.hr_notes", "kind": "embedding", "sensitivity": "confidential", "categories": ["pii"],
         "owner": "hr", "sanitized": 1, "updated_at": stamp}])
    ingest_rows(client, tmp_path, "principals", [
        {"principal": "bob", "principal_type": "human", "team": "x", "updated_at": stamp}])
    ingest_rows(client, tmp_path, "access_log", [
        {"event_time": iso(T0 + timedelta(minutes=i)), "event_id": f"x{i}",
         "principal": "bob", "action": "export", "resource": "emb.hr_notes", "bytes": 10**9} for i in range(4)])
    incident_id = record_alert(client, alert("bulk_export", "bob", "SEV2", resources=("emb.hr_notes",))).incident_id
    responder = Responder(client, load_library(), Pager(client), retry_wait=0.01)
    run = responder.respond(NOW).runs[0]
    assert (run.playbook, run.state) == ("embedding_export", "awaiting_approval")
    return {"client": client, "incident": incident_id, "run": run.run_id, "responder": responder}


def _step_state(gated: dict) -> str:
    return gated["responder"].step_states(gated["run"])["suspend_identity"].state


def _as(gated: dict, role: str) -> ConsoleActions:
    return ConsoleActions(gated["client"], person(role), gated["responder"])


def test_a_denied_approval_is_recorded_and_executes_nothing(gated: dict) -> None:
    for role in ("viewer", "analyst"):  # one store for both: each attempt adds its own event
        with pytest.raises(AccessDenied, match=rf"^{role}-1 \({role}\) may not approve: it needs responder$"):
            _as(gated, role).approve(gated["run"], "suspend_identity", reason="looks bad")

        assert _step_state(gated) == "awaiting_approval"
        assert controls_in_force(gated["client"]) == []
        last = incident_timeline(gated["client"], gated["incident"])[-1]
        assert (last["actor"], last["action"]) == (f"{role}-1", "denied_action")
        assert "may not approve" in last["reason"]
        assert last["details"] == {"action": "approve", "role": role, "required": "responder",
                                   "run_id": gated["run"], "step": "suspend_identity"}
        assert last["from_status"] == last["to_status"] == "open"


def test_a_responder_approves_then_rolls_back(gated: dict) -> None:
    client, incident = gated["client"], gated["incident"]
    report = _as(gated, "responder").approve(gated["run"], "suspend_identity", reason="no sanctioned export")

    assert report.state == "succeeded" and _step_state(gated) == "succeeded"
    assert [c["target"] for c in controls_in_force(client, "identity")] == ["bob"]
    assert get_incident(client, incident)["status"] == "contained"
    approvals = [e for e in incident_timeline(client, incident)
                 if e["action"] == "playbook_step" and e["details"]["state"] == "approved"]
    assert [e["actor"] for e in approvals] == ["responder-1"]

    with pytest.raises(AccessDenied, match="may not rollback: it needs responder"):
        _as(gated, "analyst").rollback(incident)
    assert [c["target"] for c in controls_in_force(client, "identity")] == ["bob"]
    assert incident_timeline(client, incident)[-1]["action"] == "denied_action"

    undone = _as(gated, "responder").rollback(incident)
    assert [r.step for r in undone] == ["suspend_identity"]
    assert controls_in_force(client) == []
    assert get_incident(client, incident)["status"] == "acknowledged"
    assert incident_timeline(client, incident)[-1]["actor"] == "responder-1"


def test_deny_and_run_playbook(gated: dict) -> None:
    client, incident = gated["client"], gated["incident"]
    with pytest.raises(AccessDenied, match="may not run_playbook"):
        _as(gated, "analyst").run_playbook("embedding_export", incident)
    assert incident_timeline(client, incident)[-1]["details"]["playbook"] == "embedding_export"
    with pytest.raises(AccessDenied, match="may not deny"):
        _as(gated, "analyst").deny(gated["run"], "suspend_identity", reason="sanctioned")
    assert _step_state(gated) == "awaiting_approval"

    report = _as(gated, "responder").deny(gated["run"], "suspend_identity", reason="sanctioned migration")
    assert {s.step: s.state for s in report.steps}["suspend_identity"] == "denied"
    again = _as(gated, "admin").run_playbook("embedding_export", incident)
    assert again.run_id == gated["run"]  # the same run, continued: nothing executes twice
    assert controls_in_force(client) == []


def test_the_incident_lifecycle_needs_an_analyst(client: Client) -> None:
    responder = Responder(client, load_library(), Pager(client))
    first = record_alert(client, alert("behaviour_outlier", "svc-a", "SEV4")).incident_id
    second = record_alert(client, alert("behaviour_outlier", "svc-b", "SEV4")).incident_id
    viewer = ConsoleActions(client, person("viewer"), responder)
    analyst = ConsoleActions(client, person("analyst"), responder)

    with pytest.raises(AccessDenied, match=r"viewer-1 \(viewer\) may not acknowledge: it needs analyst"):
        viewer.acknowledge(first)
    assert get_incident(client, first)["status"] == "open"
    assert incident_timeline(client, first)[-1]["action"] == "denied_action"

    assert analyst.acknowledge(first, reason="looking")["status"] == "acknowledged"
    assert analyst.assign(first, "bob")["assignee"] == "bob"
    analyst.note(first, "a scheduled job")
    assert analyst.contain(first)["status"] == "contained"
    assert analyst.resolve(first, reason="done")["status"] == "resolved"
    trail = incident_timeline(client, first)
    assert [(e["actor"], e["action"]) for e in trail[-5:]] == [
        ("analyst-1", a) for a in ("acknowledge", "assign", "note", "contain", "resolve")]
    assert trail[-3]["reason"] == "a scheduled job"
    with pytest.raises(IncidentError, match="cannot resolve"):  # domain errors pass through unchanged
        analyst.resolve(first)
    with pytest.raises(IncidentError, match="needs a reason"):
        analyst.false_positive(second, "")
    assert analyst.false_positive(second, "known noisy job")["status"] == "false_positive"

    # Nothing to attach the attempt to: still refused, not an IncidentError.
    with pytest.raises(AccessDenied):
        viewer.resolve(123456789)
    with pytest.raises(AccessDenied):
        viewer.approve("not-a-run", "step")


# --- passwords and the accounts file ---------------------------------------------------


def test_hashes_are_salted_argon2id_never_the_plaintext() -> None:
    hashed = hash_password("correct horse", CHEAP)
    assert hashed != "correct horse" and "correct horse" not in hashed
    assert hashed.startswith("$argon2id$") and hashed != hash_password("correct horse", CHEAP)
    assert "m=65536,t=3,p=4" in hash_password("x")  # argon2-cffi's default cost unless told otherwise
    with pytest.raises(ValueError, match="must not be empty"):
        hash_password("")


def test_authenticate(tmp_path: Path) -> None:
    path = tmp_path / "accounts.yaml"
    add_account(path, "alice", "analyst", "alice-pw", name="Alice Example", hasher=CHEAP)
    accounts = load_accounts(path)
    assert accounts.authenticate("alice", "alice-pw") == User("alice", "Alice Example", "analyst")
    assert accounts.authenticate("alice", "wrong") is None
    assert accounts.authenticate("alice", "") is None
    assert accounts.authenticate("alice", None) is None  # type: ignore[arg-type]
    assert accounts.authenticate("nobody", "alice-pw") is None  # verified against a dummy hash
    assert accounts.authenticate("", "") is None


def test_file_round_trip_mode_and_replacement(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "accounts.yaml"  # the folder does not exist yet
    add_account(path, "alice", "analyst", "plain-secret-1", name="Alice Example", hasher=CHEAP)
    add_account(path, "bob", "viewer", "plain-secret-2", hasher=CHEAP)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert "plain-secret" not in text and text.count("$argon2id$") == 2

    replaced = add_account(path, "alice", "responder", "plain-secret-3", hasher=CHEAP)
    assert replaced == User("alice", "Alice Example", "responder")  # the name is kept
    accounts = load_accounts(path)
    assert accounts.users() == [User("alice", "Alice Example", "responder"), User("bob", "", "viewer")]
    assert accounts.authenticate("alice", "plain-secret-1") is None
    assert accounts.authenticate("alice", "plain-secret-3") is not None

    with_oidc = Accounts(accounts=accounts.accounts, oidc={"default_role": None, "roles": {"A@X.example": "admin"}})
    other = tmp_path / "copy.yaml"
    write_accounts(other, with_oidc)
    assert load_accounts(other) == with_oidc
    assert stat.S_IMODE(os.stat(other).st_mode) == 0o600
    add_account(other, "carol", "admin", "pw", hasher=CHEAP)
    assert load_accounts(other).oidc == with_oidc.oidc  # adding an account keeps the OIDC mapping
    assert [p.name for p in other.parent.iterdir() if p.name.endswith(".tmp")] == []


_HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


@pytest.mark.parametrize(("content", "problems"), [
    (f"accounts:\n  - user: alice\n    password_hash: '{_HASH}'\n", ["accounts[0] (alice).role: missing"]),
    (f"accounts:\n  - user: alice\n    role: root\n    password_hash: '{_HASH}'\n",
     ["accounts[0] (alice).role: 'root' is not a role (viewer, analyst, responder, admin)"]),
    ("accounts: [\n  {user: alice\n", [":3: not valid YAML"]),
    ("- alice\n- bob\n", ["expected a mapping with 'accounts'"]),
    ("accounts:\n  - user: alice\n    role: admin\n    password_hash: hunter2\n",
     ["accounts[0] (alice).password_hash: not an argon2 hash"]),
    (f"accounts:\n  - user: a\n    role: admin\n    password_hash: '{_HASH}'\n    passwd: x\noidc:\n  default: admin\n",
     ["accounts[0] (a).passwd: unknown field", "oidc.default: unknown field"]),
    # Every problem at once, duplicates included.
    ((f"accounts:\n  - user: a\n    role: admin\n    password_hash: '{_HASH}'\n  - user: a\n    role: boss\n"
      f"    password_hash: '{_HASH}'\n  - name: nobody\n    role: viewer\n    password_hash: '{_HASH}'\n"),
     ["accounts[1] (a).role: 'boss' is not a role", "accounts[2].user: missing",
      "user 'a' is defined twice (accounts[0] and accounts[1])"]),
])
def test_bad_files_name_the_file_and_every_problem(tmp_path: Path, content: str, problems: list[str]) -> None:
    path = tmp_path / "accounts.yaml"
    path.write_text(content)
    with pytest.raises(AccountsError) as error:
        load_accounts(path)
    message = str(error.value)
    assert all(line.startswith(f"{path}:") for line in message.splitlines())  # file:line: problem
    for problem in problems:
        assert problem in message
    assert "hunter2" not in message  # a pasted plaintext is never echoed


def test_missing_empty_and_refused_files(tmp_path: Path) -> None:
    with pytest.raises(AccountsError, match="no such accounts file"):
        load_accounts(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_accounts(empty) == Accounts()

    broken = tmp_path / "broken.yaml"
    broken.write_text("accounts: [\n")
    with pytest.raises(AccountsError, match="not valid YAML"):
        add_account(broken, "alice", "admin", "pw", hasher=CHEAP)
    assert broken.read_text() == "accounts: [\n"  # never overwritten
    for user, role, password, problem in [("alice", "root", "pw", "'root' is not a role"),
                                          ("alice", "admin", "", "a password is required"),
                                          ("al ice", "admin", "pw", "user: string should match")]:
        with pytest.raises(AccountsError, match=problem):
            add_account(tmp_path / "new.yaml", user, role, password, hasher=CHEAP)


def test_oidc_roles() -> None:
    accounts = Accounts(oidc={"default_role": "viewer", "roles": {"Alice@Corp.example": "responder"}})
    assert accounts.for_oidc("alice@corp.example", "Alice") == User("alice@corp.example", "Alice", "responder")
    assert accounts.for_oidc("ALICE@corp.example ", "") == User("alice@corp.example", "alice@corp.example",
                                                                "responder")
    assert accounts.for_oidc("eve@corp.example", "Eve").role == "viewer"
    with pytest.raises(AccessDenied, match="no console role"):  # no oidc section: nobody by default
        Accounts().for_oidc("eve@corp.example", "Eve")
    with pytest.raises(AccessDenied, match="no e-mail"):
        accounts.for_oidc("", "Nobody")
    strict = Accounts(oidc={"default_role": None, "roles": {"alice@corp.example": "admin"}})
    assert strict.for_oidc("alice@corp.example", "").role == "admin"
    with pytest.raises(AccessDenied, match="eve@corp.example has no console role"):
        strict.for_oidc("eve@corp.example", "Eve")


def test_default_accounts_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BLASTWALL_ACCOUNTS", raising=False)
    assert default_accounts_path() == Path(platformdirs.user_config_dir("blastwall")) / "accounts.yaml"
    monkeypatch.setenv("BLASTWALL_ACCOUNTS", str(tmp_path / "team.yaml"))
    assert default_accounts_path() == tmp_path / "team.yaml"


# --- the command line ------------------------------------------------------------------


def test_cli_account_add_and_list(capsys, monkeypatch, tmp_path: Path) -> None:
    path = tmp_path / "accounts.yaml"
    monkeypatch.setenv("BLASTWALL_PASSWORD", "cli-secret-1")
    code, out, err = run(capsys, monkeypatch, "account", "add", "alice", "--role", "analyst",
                         "--name", "Alice Example", "--file", str(path))
    assert (code, err, out.strip()) == (0, "", f"added alice (analyst) in {path}")
    monkeypatch.setenv("BLASTWALL_PASSWORD", "cli-secret-2")
    code, out, _ = run(capsys, monkeypatch, "account", "add", "alice", "--role", "responder", "--file", str(path))
    assert (code, out.strip()) == (0, f"updated alice ({'responder'}) in {path}")
    assert "cli-secret" not in path.read_text()
    accounts = load_accounts(path)
    assert accounts.authenticate("alice", "cli-secret-2") == User("alice", "Alice Example", "responder")

    # The default file comes from $BLASTWALL_ACCOUNTS.
    monkeypatch.setenv("BLASTWALL_ACCOUNTS", str(path))
    code, out, err = run(capsys, monkeypatch, "account", "list")
    assert (code, err) == (0, "")
    assert out.splitlines() == ["USER   ROLE       NAME", "alice  responder  Alice Example"]
    assert "$argon2" not in out


@pytest.mark.parametrize(("args", "message"), [
    (["account", "add", "bob", "--role", "root"], "Invalid value for '--role'"),
    (["account", "list", "--file", "{dir}/missing.yaml"], "{dir}/missing.yaml: no such accounts file"),
    (["account", "add", "bob", "--role", "viewer", "--file", "{dir}/bad.yaml"], "{dir}/bad.yaml:2: not valid YAML"),
])
def test_cli_account_errors_are_one_line(capsys, monkeypatch, tmp_path: Path, args: list[str],
                                         message: str) -> None:
    (tmp_path / "bad.yaml").write_text("accounts: [\n")
    monkeypatch.setenv("BLASTWALL_PASSWORD", "pw")
    code, out, err = run(capsys, monkeypatch, *[a.format(dir=tmp_path) for a in args])
    assert code == 2 and out == ""
    assert err.startswith("blastwall: ") and message.format(dir=tmp_path) in err and err.count("\n") == 1


def test_cli_asks_for_the_password_twice_without_echo(tmp_path: Path) -> None:
    path = tmp_path / "accounts.yaml"
    result = CliRunner().invoke(cli_module.cli, ["account", "add", "dora", "--role", "viewer", "--file", str(path)],
                                input="typed-secret\ntyped-secret\n", env={"BLASTWALL_PASSWORD": ""})
    assert result.exit_code == 0, result.output
    assert "typed-secret" not in result.output and "Repeat for confirmation" in result.output
    assert load_accounts(path).authenticate("dora", "typed-secret") == User("dora", "", "viewer")
