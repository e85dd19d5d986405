"""Who may do what in the console: sign-in, roles, and role-checked console actions.

The Streamlit console holds no logic: it signs a person in here (a local account or an
OIDC identity), keeps the resulting :class:`User` in the session, and performs every
action through :class:`ConsoleActions`, which checks the user's role on the server
before delegating to the domain packages — and records refused attempts in the
incident's audit trail.

Roles, least to most powerful (each can do everything the ones before it can):

=========== ===========================================================================
role        may
=========== ===========================================================================
viewer      ``view``: read everything (queue, incidents, evidence, playbooks, status)
analyst     ``acknowledge``, ``assign``, ``note``, ``contain``, ``resolve``,
            ``false_positive`` (the incident lifecycle)
responder   ``approve``, ``deny`` (gated playbook steps), ``run_playbook``, ``rollback``
admin       everything, including ``manage_accounts``
=========== ===========================================================================

The accounts file (YAML; written by ``blastwall account add``, mode 0600)::

    accounts:
      - user: alice
        name: Alice Example
        role: analyst
        password_hash: "$argon2id$v=19$m=65536,t=3,p=4$..."
    oidc:                       # optional: people signed in through an identity provider
      default_role: viewer      # unmapped e-mails; null refuses them (no oidc section: refused)
      roles:
        alice@corp.example: responder

Passwords are only ever stored as argon2id hashes (argon2-cffi); the plaintext is
never written, logged or put into an error message.
"""

from __future__ import annotations

import functools
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import platformdirs
import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from detector.incidents import IncidentError, record_event, transition
from features.settings_file import FileProblem, SettingsFileError, describe_error, read_yaml, validation_problems
from playbooks.engine import incident_of_run

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from playbooks.engine import Responder, RunReport, StepRecord

Role = Literal["viewer", "analyst", "responder", "admin"]
#: The roles, least to most powerful.
ROLES: tuple[str, ...] = get_args(Role)

#: Console action -> the least role that may do it. A role may do what every role before
#: it in :data:`ROLES` may; anything not listed here is refused (fail closed).
PERMISSIONS: dict[str, str] = {
    # viewer: read-only
    "view": "viewer",
    # analyst: the incident lifecycle (detector.incidents.transition)
    "acknowledge": "analyst",
    "assign": "analyst",
    "note": "analyst",
    "contain": "analyst",
    "resolve": "analyst",
    "false_positive": "analyst",
    # responder: containment itself (playbooks.engine.Responder)
    "approve": "responder",
    "deny": "responder",
    "run_playbook": "responder",
    "rollback": "responder",
    # admin: the accounts themselves (for a console page that edits them)
    "manage_accounts": "admin",
}

DENIED_ACTION = "denied_action"


class AccessDenied(PermissionError):
    """A user's role does not allow a console action (or an identity gets no role at all).

    Attributes
    ----------
    user : User or None
        Who tried (``None`` when no user could be made, e.g. an unmapped OIDC identity).
    action : str
        What they tried.
    required : str
        The least role that may do it.
    """

    def __init__(self, message: str, user: User | None = None, action: str = "", required: str = "") -> None:
        super().__init__(message)
        self.user = user
        self.action = action
        self.required = required


class AccountsError(ValueError):
    """An accounts file that cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class User:
    """A signed-in person.

    Attributes
    ----------
    user : str
        The account name (a local user, or the e-mail of an OIDC identity); the actor in
        the audit trail.
    name : str
        Display name (may be empty).
    role : str
        One of :data:`ROLES`.
    """

    user: str
    name: str
    role: str

    def __post_init__(self) -> None:
        # A typo'd role must not silently become "no role" or "any role".
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; expected one of {', '.join(ROLES)}")


def allowed(user: User, action: str) -> bool:
    """Whether ``user`` may do ``action`` (for views that hide what a role cannot do).

    Parameters
    ----------
    user : User
    action : str
        A key of :data:`PERMISSIONS`; an unknown action is never allowed.

    Returns
    -------
    bool
    """
    required = PERMISSIONS.get(action)
    return required is not None and ROLES.index(user.role) >= ROLES.index(required)


def authorise(user: User, action: str) -> None:
    """Refuse ``action`` unless ``user``'s role allows it.

    Parameters
    ----------
    user : User
    action : str
        A key of :data:`PERMISSIONS`.

    Raises
    ------
    AccessDenied
        The role is below the action's minimum ("alice (viewer) may not approve: it needs
        responder").
    ValueError
        ``action`` is not a console action (a programming error; refused either way).
    """
    required = PERMISSIONS.get(action)
    if required is None:
        raise ValueError(f"unknown console action {action!r}; expected one of {', '.join(PERMISSIONS)}")
    if ROLES.index(user.role) < ROLES.index(required):
        raise AccessDenied(f"{user.user} ({user.role}) may not {action}: it needs {required}", user, action,
                           required)


# --- passwords -------------------------------------------------------------------------

#: Verifies any argon2 hash (the cost parameters travel inside the hash).
_VERIFIER = PasswordHasher()


def hash_password(plain: str, hasher: PasswordHasher | None = None) -> str:
    """An argon2id hash of a password (salted: two calls give different hashes).

    Parameters
    ----------
    plain : str
        The password; never stored or logged.
    hasher : PasswordHasher, optional
        Cost parameters; the default is argon2-cffi's (RFC 9106 low-memory profile).
        Tests pass a cheap one.

    Returns
    -------
    str
        ``$argon2id$v=19$m=…,t=…,p=…$salt$hash``.

    Raises
    ------
    ValueError
        An empty password.
    """
    if not plain:
        raise ValueError("a password must not be empty")
    return (hasher or PasswordHasher()).hash(plain)


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random secret, verified for unknown users so they cost as much as known ones."""
    return PasswordHasher().hash(secrets.token_urlsafe(16))


# --- the accounts file -----------------------------------------------------------------


class Account(BaseModel):
    """One local account of the accounts file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str = Field(min_length=1, max_length=200, pattern=r"^\S+$")
    name: str = ""
    role: Role
    password_hash: str

    @field_validator("password_hash")
    @classmethod
    def _argon2(cls, value: str) -> str:
        # The value is never echoed: a plaintext pasted here by mistake must not reach a log.
        if not value.startswith("$argon2"):
            raise ValueError("not an argon2 hash (set passwords with `blastwall account add`)")
        return value

    def to_user(self) -> User:
        """The signed-in :class:`User` of this account."""
        return User(self.user, self.name, self.role)


class OidcSettings(BaseModel):
    """Roles of people signed in through an OIDC identity provider, by e-mail."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Role of an e-mail not in ``roles``; ``None`` refuses such identities.
    default_role: Role | None = "viewer"
    roles: dict[str, Role] = Field(default_factory=dict)

    @field_validator("roles")
    @classmethod
    def _lower_case(cls, value: dict[str, Role]) -> dict[str, Role]:
        # Identity providers differ in the case they send; e-mail matching ignores it.
        lowered: dict[str, Role] = {}
        for email, role in value.items():
            key = email.strip().lower()
            if key in lowered:
                raise ValueError(f"{email!r} is listed more than once (e-mails are matched ignoring case)")
            lowered[key] = role
        return lowered


def _duplicate_users(items: list[Any]) -> list[str]:
    """Users named by more than one entry, as problems (for the model and for raw file data)."""
    seen: dict[str, int] = {}
    problems = []
    for index, item in enumerate(items):
        user = item.get("user") if isinstance(item, dict) else getattr(item, "user", None)
        if not isinstance(user, str):
            continue
        if user in seen:
            problems.append(f"user {user!r} is defined twice (accounts[{seen[user]}] and accounts[{index}])")
        else:
            seen[user] = index
    return problems


class SignInThrottle:
    """Back-off on failed local sign-ins, per account and per client address.

    After ``free`` failures in a row for an account (or from an address), each further
    attempt must wait ``base * 2**(extra failures)`` seconds, at most ``ceiling``; an
    attempt made too early is refused without checking the password, so a guessing loop
    costs the console no argon2 work. A success clears the account's and the address's
    count. It is a back-off, never a lock-out: the owner of a guessed account can always
    sign in after the wait. One throttle per console process (all sessions share it).
    """

    def __init__(self, free: int = 5, base: float = 1.0, ceiling: float = 900.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free, self.base, self.ceiling, self.clock = free, base, ceiling, clock
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}
        self._lock = threading.Lock()

    def wait(self, user: str, address: str) -> float:
        """Seconds before ``user`` from ``address`` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            return max(0.0, *(self._until(key) - now for key in self._keys(user, address)))

    def record(self, user: str, address: str, ok: bool) -> None:
        """Count an attempt's outcome."""
        now = self.clock()
        with self._lock:
            for key in self._keys(user, address):
                if ok:
                    self._failures.pop(key, None)
                else:
                    count, _ = self._failures.get(key, (0, now))
                    self._failures[key] = (count + 1, now)

    def _until(self, key: tuple[str, str]) -> float:
        count, last = self._failures.get(key, (0, 0.0))
        if count < self.free:
            return 0.0
        return last + min(self.ceiling, self.base * 2 ** (count - self.free))

    @staticmethod
    def _keys(user: str, address: str) -> list[tuple[str, str]]:
        return [("user", user.strip().lower())] + ([("address", address)] if address else [])


class Accounts(BaseModel):
    """The accounts file: local accounts and the OIDC role mapping."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accounts: list[Account] = Field(default_factory=list)
    oidc: OidcSettings | None = None

    @model_validator(mode="after")
    def _unique_users(self) -> Accounts:
        problems = _duplicate_users(list(self.accounts))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def get(self, user: str) -> Account | None:
        """The account named ``user``, or ``None``."""
        return next((account for account in self.accounts if account.user == user), None)

    def users(self) -> list[User]:
        """Every local account as a :class:`User` (no hashes), in file order."""
        return [account.to_user() for account in self.accounts]

    def authenticate(self, user: str, password: str) -> User | None:
        """The user whose password this is, or ``None``; never raises for bad credentials.

        An unknown user still costs one argon2 verification (against a dummy hash), so
        the time taken does not tell which user names exist.

        Parameters
        ----------
        user : str
        password : str

        Returns
        -------
        User or None
        """
        account = self.get(user) if isinstance(user, str) else None
        stored = account.password_hash if account is not None else _dummy_hash()
        try:
            _VERIFIER.verify(stored, password if isinstance(password, str) else "")
        except (VerificationError, InvalidHashError):
            return None
        return account.to_user() if account is not None else None

    def sign_in(self, user: str, password: str, address: str, throttle: SignInThrottle) -> User:
        """:meth:`authenticate` behind the back-off of ``throttle``.

        Raises
        ------
        AccessDenied
            Wrong user or password, or too many failures: wait (the message says how long).
        """
        wait = throttle.wait(user, address)
        if wait > 0:
            raise AccessDenied(f"too many failed sign-ins for this account or address: try again in {wait:.0f} s")
        found = self.authenticate(user, password)
        throttle.record(user, address, ok=found is not None)
        if found is None:
            raise AccessDenied("wrong user or password")
        return found

    def for_oidc(self, email: str, name: str = "") -> User:
        """The :class:`User` of an identity signed in through OIDC.

        Parameters
        ----------
        email : str
            The identity provider's e-mail claim (the user name in the audit trail).
        name : str
            Display name.

        Returns
        -------
        User
            With the role mapped for this e-mail (ignoring case), else ``default_role``.

        Raises
        ------
        AccessDenied
            No e-mail was sent, or the e-mail is not mapped and ``default_role`` is null.
        """
        # No oidc section: nobody gets in through the identity provider by default
        # (turning on Google sign-in must not let every Google account read evidence).
        oidc = self.oidc or OidcSettings(default_role=None)
        key = (email or "").strip().lower()
        role = oidc.roles.get(key, oidc.default_role) if key else None
        if not key:
            raise AccessDenied("the identity provider sent no e-mail address, so no role can be given",
                               action="view")
        if role is None:
            # There is no role below viewer: such an identity gets no session at all.
            raise AccessDenied(f"{key} has no console role (not listed under oidc.roles, and no default_role)",
                               action="view")
        return User(key, name or key, role)


def default_accounts_path() -> Path:
    """The accounts file: ``$BLASTWALL_ACCOUNTS``, else ``accounts.yaml`` in the user config directory."""
    from blastwall.environment import environment

    configured = environment().accounts
    if configured is not None:
        return configured.expanduser()
    return Path(platformdirs.user_config_dir("blastwall")) / "accounts.yaml"


def _where(loc: tuple[Any, ...], raw: Any) -> str:
    """``accounts[1] (bob).role`` from a pydantic error location."""
    parts: list[str] = []
    for position, key in enumerate(loc):
        if isinstance(key, int):
            text = f"[{key}]"
            if position == 1 and loc[0] == "accounts":
                item = raw.get("accounts")[key] if isinstance(raw.get("accounts"), list) else None
                if isinstance(item, dict) and isinstance(item.get("user"), str):
                    text += f" ({item['user']})"
            parts.append(text)
        else:
            parts.append(("." if parts else "") + str(key))
    return "".join(parts)


def _describe(error: dict[str, Any]) -> str | None:
    """Roles are the only literals here, so the value can be echoed with the choices."""
    if error["type"] == "literal_error":
        return f"{str(error.get('input'))[:40]!r} is not a role ({', '.join(ROLES)})"
    return None


def load_accounts(path: str | os.PathLike[str]) -> Accounts:
    """Read and validate an accounts file.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    Accounts
        An empty file gives no accounts (an OIDC-only set-up may hold just ``oidc``).

    Raises
    ------
    AccountsError
        One line naming the file and every problem: missing or unreadable, not YAML,
        unknown fields, missing or unknown roles, duplicate users, a non-argon2 hash.
    """
    path = Path(path)
    if not path.exists():
        raise AccountsError(f"{path}: no such accounts file (create one with `blastwall account add`)")
    try:
        document = read_yaml(path)
    except SettingsFileError as exc:
        raise AccountsError(str(exc)) from None
    raw = {} if document.data is None else document.data
    if not isinstance(raw, dict):
        raise AccountsError(f"{path}:1: expected a mapping with 'accounts' (and optionally 'oidc'),"
                            f" not a {type(raw).__name__}")
    try:
        return Accounts.model_validate(raw)
    except ValidationError as exc:
        problems = validation_problems(document, exc, label=lambda loc: _where(loc, raw), describe=_describe)
        # Duplicates are checked after the fields; report them with the field problems too.
        if isinstance(raw.get("accounts"), list):
            known = {p.message for p in problems}
            problems += [FileProblem(path, document.line_of(("accounts",)), message)
                         for message in _duplicate_users(raw["accounts"]) if message not in known]
        raise AccountsError(str(SettingsFileError(problems))) from None


def write_accounts(path: str | os.PathLike[str], accounts: Accounts) -> None:
    """Write an accounts file atomically, readable by its owner only (mode 0600).

    Parameters
    ----------
    path : path-like
        Created with its parent directories if missing; replaced otherwise.
    accounts : Accounts
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not exclude_none: an explicit ``default_role: null`` (refuse unmapped identities) must
    # survive the round trip instead of reverting to the viewer default.
    data = accounts.model_dump(mode="json", exclude={"oidc"} if accounts.oidc is None else set())
    body = ("# blastwall console accounts: change them with `blastwall account add`\n"
            + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    # mkstemp creates the file 0600, so the hashes are never readable by others, even briefly;
    # the rename makes a crash leave the old file or the new one, never half of one.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def add_account(path: str | os.PathLike[str], user: str, role: str, password: str, name: str = "",
                hasher: PasswordHasher | None = None) -> User:
    """Add an account to an accounts file, or replace an existing user's role and password.

    Parameters
    ----------
    path : path-like
        Created (mode 0600) if missing. An existing file that does not validate is left
        alone (:class:`AccountsError`), never overwritten.
    user : str
        Account name (no whitespace).
    role : str
        One of :data:`ROLES`.
    password : str
        Hashed with :func:`hash_password`; never stored.
    name : str
        Display name; empty keeps an existing account's name.
    hasher : PasswordHasher, optional
        Cost parameters (tests pass cheap ones).

    Returns
    -------
    User

    Raises
    ------
    AccountsError
        Unknown role, bad user name, empty password, or an unusable existing file.
    """
    path = Path(path)
    if role not in ROLES:
        raise AccountsError(f"{path}: {role!r} is not a role ({', '.join(ROLES)})")
    if not password:
        raise AccountsError(f"{path}: a password is required for {user!r}")
    current = load_accounts(path) if path.exists() else Accounts()
    previous = current.get(user)
    try:
        account = Account(user=user, name=name or (previous.name if previous else ""), role=role,
                          password_hash=hash_password(password, hasher))
    except ValidationError as exc:
        raise AccountsError(f"{path}: " + "; ".join(f"{_where(tuple(e['loc']), {})}: "
                                                     f"{_describe(e) or describe_error(e)}" for e in exc.errors())
                            ) from None
    if previous is None:
        kept = [*current.accounts, account]
    else:
        kept = [account if a.user == user else a for a in current.accounts]
    write_accounts(path, Accounts(accounts=kept, oidc=current.oidc))
    return account.to_user()


# --- role-checked console actions ------------------------------------------------------


class ConsoleActions:
    """What a signed-in user can do from the console, each checked against their role.

    Every method first authorises (a refused attempt about an incident is appended to
    that incident's audit trail as ``denied_action`` before :class:`AccessDenied` is
    raised), then delegates with ``actor=user.user`` and returns what the domain
    function returns; domain errors (:class:`detector.incidents.IncidentError`,
    :class:`playbooks.engine.EngineError`) propagate unchanged.

    Parameters
    ----------
    client : Client
        The store.
    user : User
        The signed-in user.
    responder : playbooks.engine.Responder
        The playbook engine over the same store.
    """

    def __init__(self, client: Client, user: User, responder: Responder) -> None:
        self.client = client
        self.user = user
        self.responder = responder

    def _authorise(self, action: str, incident_id: int | None, **details: Any) -> None:
        try:
            authorise(self.user, action)
        except AccessDenied as denied:
            if incident_id is not None:
                try:
                    record_event(self.client, incident_id, self.user.user, DENIED_ACTION, reason=str(denied),
                                 details={"action": action, "role": self.user.role, "required": denied.required,
                                          **details})
                except IncidentError:
                    pass  # no such incident: nothing to attach the attempt to; still refused
            raise

    def _transition(self, incident_id: int, action: str, reason: str = "",
                    assignee: str | None = None) -> dict[str, Any]:
        self._authorise(action, incident_id)
        return transition(self.client, incident_id, action, actor=self.user.user, reason=reason, assignee=assignee)

    # --- analyst: the incident lifecycle -------------------------------------------------

    def acknowledge(self, incident_id: int, reason: str = "") -> dict[str, Any]:
        """Acknowledge an open incident; returns the incident after it."""
        return self._transition(incident_id, "acknowledge", reason)

    def assign(self, incident_id: int, assignee: str) -> dict[str, Any]:
        """Assign an incident to someone; returns the incident after it."""
        return self._transition(incident_id, "assign", assignee=assignee)

    def note(self, incident_id: int, text: str) -> dict[str, Any]:
        """Add a note to an incident's audit trail; returns the incident."""
        return self._transition(incident_id, "note", text)

    def contain(self, incident_id: int, reason: str = "") -> dict[str, Any]:
        """Mark an incident contained by hand; returns the incident after it."""
        return self._transition(incident_id, "contain", reason)

    def resolve(self, incident_id: int, reason: str = "") -> dict[str, Any]:
        """Resolve an incident; returns the incident after it."""
        return self._transition(incident_id, "resolve", reason)

    def false_positive(self, incident_id: int, reason: str) -> dict[str, Any]:
        """Judge an incident a false positive (reason required; suppresses the pattern)."""
        return self._transition(incident_id, "false_positive", reason)

    # --- responder: containment ----------------------------------------------------------

    def approve(self, run_id: str, step: str, reason: str = "") -> RunReport:
        """Approve a step awaiting approval; it executes now. Returns the run after it."""
        self._authorise("approve", incident_of_run(run_id), run_id=run_id, step=step)
        return self.responder.approve(run_id, step, self.user.user, datetime.now(UTC), reason=reason)

    def deny(self, run_id: str, step: str, reason: str) -> RunReport:
        """Deny a step awaiting approval (it never runs; the run goes on). Returns the run."""
        self._authorise("deny", incident_of_run(run_id), run_id=run_id, step=step)
        return self.responder.deny(run_id, step, self.user.user, datetime.now(UTC), reason=reason)

    def run_playbook(self, playbook_id: str, incident_id: int) -> RunReport:
        """Run (or continue) a playbook on an incident by hand. Returns the run."""
        self._authorise("run_playbook", incident_id, playbook=playbook_id)
        return self.responder.run(playbook_id, incident_id, datetime.now(UTC), self.user.user)

    def rollback(self, incident_id: int) -> list[StepRecord]:
        """Undo every reversible step on an incident (a contained one goes back to acknowledged)."""
        self._authorise("rollback", incident_id)
        return self.responder.rollback_incident(incident_id, self.user.user, datetime.now(UTC))
