"""The action library: one registry of what a playbook step can do.

An action has typed parameters (a pydantic model) and four verbs: ``execute`` (the side
effect; returns what rollback needs), ``verify`` (did the side effect happen? ``None``
when it cannot tell), ``rollback`` (undo, for reversible actions) and ``describe`` (one
line for a plan). Engineers add an action by subclassing :class:`Action` and decorating
it with :func:`register`.

Platform actions (revoke a grant, quarantine a resource, pause a training run, suspend
an identity) act on the ``control_log`` table: an append-only log whose newest row per
``(kind, target)`` says whether a control is in force. The demo organisation honours it
and the console shows it. Against a user's real systems, the same action also calls the
webhook configured for it in :class:`Integrations` (signed JSON); if that call fails the
step fails. Evidence snapshots copy access-log rows into the append-only ``evidence``
table, which nothing ever updates or deletes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

import requests
import tenacity
from clickhouse_connect.driver.client import Client
from pydantic import BaseModel, ConfigDict, Field, field_validator

from detector.triage import evidence_selection
from features.redaction import redact_text
from features.times import from_epoch_ms, ms_param, to_epoch_ms
from playbooks.paging import Pager, PagingError

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        # Newest row per (kind, target) wins: in_force = 1 while the control holds.
        """CREATE TABLE IF NOT EXISTS control_log (
    kind LowCardinality(String), target String, in_force UInt8,
    incident_id UInt64, run_id String, step String, actor String, reason String,
    at DateTime64(3, 'UTC'), written UInt64
) ENGINE = MergeTree ORDER BY (kind, target, written)""",
        """CREATE TABLE IF NOT EXISTS evidence (
    snapshot_id String, incident_id UInt64, scope LowCardinality(String),
    event_time DateTime64(3, 'UTC'), event_id String, principal String, principal_type LowCardinality(String),
    action LowCardinality(String), resource String, related Array(String), grantee String,
    bytes UInt64, rows UInt64, via LowCardinality(String), status LowCardinality(String), source_ip String
) ENGINE = MergeTree ORDER BY (snapshot_id, event_time, event_id)""",
        """CREATE TABLE IF NOT EXISTS evidence_snapshots (
    snapshot_id String, incident_id UInt64, run_id String, step String, scope LowCardinality(String),
    rows UInt64, captured_at DateTime64(3, 'UTC'), captured_by String
) ENGINE = MergeTree ORDER BY (incident_id, snapshot_id)""",
    ]),
]



class ActionError(RuntimeError):
    """An action that could not do its work (the step fails with this message)."""


class StepTimeout(ActionError):
    """The step's time ran out while a call was in flight: its outcome is unknown."""


class Integrations(BaseModel):
    """How actions reach a user's real systems.

    Attributes
    ----------
    webhooks : dict
        Action name -> URL. A platform action with a URL here also POSTs its signed
        request there (e.g. ``revoke_grant`` -> the IAM team's endpoint).
    secret : str
        The HMAC-SHA256 key of ``X-Blastwall-Signature`` (empty: unsigned).
    timeout_seconds : float
        Per HTTP attempt.
    attempts : int
        HTTP attempts per call (connection errors, 5xx and 429 are retried with backoff).
    wait_seconds : float
        First backoff; doubles each attempt.
    """

    model_config = ConfigDict(extra="forbid")
    webhooks: dict[str, str] = Field(default_factory=dict)
    secret: str = ""
    timeout_seconds: float = Field(10.0, gt=0)
    attempts: int = Field(3, ge=1, le=10)
    wait_seconds: float = Field(0.5, ge=0)


@dataclass
class ActionContext:
    """Everything an action may use; the engine builds one per step."""

    client: Client
    incident: dict[str, Any]
    run_id: str
    step: str
    actor: str
    now: datetime
    pager: Pager | None = None
    integrations: Integrations = field(default_factory=Integrations)
    deadline: float | None = None  # time.monotonic() by which the step must be done

    def remaining(self) -> float | None:
        """Seconds left before the step's deadline (None: no deadline)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}/{self.step}"


class Action:
    """Base of every action; subclasses set ``name``, ``summary``, ``Params`` and the verbs."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    reversible: ClassVar[bool] = False

    def execute(self, ctx: ActionContext, params: BaseModel) -> dict[str, Any]:
        raise NotImplementedError

    def verify(self, ctx: ActionContext, params: BaseModel, result: dict[str, Any] | None) -> bool | None:
        """Whether the side effect of this step happened (``None``: cannot tell)."""
        return None

    def rollback(self, ctx: ActionContext, params: BaseModel, result: dict[str, Any]) -> dict[str, Any]:
        raise ActionError(f"{self.name} cannot be rolled back")

    def describe(self, params: BaseModel) -> str:
        return f"{self.name} {params.model_dump()}"


REGISTRY: dict[str, Action] = {}


def register(cls: type[Action]) -> type[Action]:
    """Class decorator: add an action to the registry under its ``name``."""
    if cls.name in REGISTRY:
        raise ValueError(f"action {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls()
    return cls


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- signed webhooks ---------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of ``"<timestamp>.<body>"`` (the timestamp stops replays)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class _Retryable(Exception):
    pass


def post_signed(url: str, payload: dict[str, Any], integrations: Integrations, idempotency_key: str,
                deadline: float | None = None) -> int:
    """POST JSON, signed, with retries and backoff; returns the final HTTP status.

    The ``Idempotency-Key`` header lets a receiver drop a repeat of the same step. With a
    ``deadline`` (``time.monotonic()``), no attempt outlives it: the call runs in the
    caller's thread, so a step never leaves work behind it.

    Raises
    ------
    StepTimeout
        The deadline passed with the outcome unknown (a request timed out, or no time was
        left for another attempt).
    ActionError
        Still failing after every attempt, or a 4xx answer (not retried).
    """
    body = json.dumps(payload, default=str, sort_keys=True).encode()
    shown = redact_text(url)  # what messages say: never the URL's credentials

    def attempt() -> int:
        timeout = integrations.timeout_seconds
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StepTimeout(f"{shown}: the step's time ran out (the outcome is unknown)")
            timeout = min(timeout, left)
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key,
                   "X-Blastwall-Timestamp": timestamp}
        if integrations.secret:
            headers["X-Blastwall-Signature"] = sign(integrations.secret, timestamp, body)
        try:
            answer = requests.post(url, data=body, headers=headers, timeout=timeout)
        except requests.Timeout as exc:
            if deadline is not None and deadline - time.monotonic() <= 0:
                raise StepTimeout(f"{shown}: timed out with the step's time (the outcome is unknown)") from None
            raise _Retryable(redact_text(f"{shown}: {type(exc).__name__}: {exc}")) from None
        except requests.RequestException as exc:
            raise _Retryable(redact_text(f"{shown}: {type(exc).__name__}: {exc}")) from None
        if answer.status_code >= 500 or answer.status_code == 429:
            raise _Retryable(f"{shown} answered {answer.status_code}")
        if answer.status_code >= 400:
            raise ActionError(f"{shown} refused the request: HTTP {answer.status_code}")
        return answer.status_code

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(integrations.attempts),
        wait=tenacity.wait_exponential(multiplier=integrations.wait_seconds, max=30),
        retry=tenacity.retry_if_exception_type(_Retryable), reraise=True)
    try:
        return retrying(attempt)
    except _Retryable as exc:
        raise ActionError(f"{exc} (after {integrations.attempts} attempts)") from None


# --- platform controls -------------------------------------------------------------


def control_state(client: Client, kind: str, targets: list[str],
                  excluding: tuple[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The newest control row per target (targets never controlled are absent).

    ``excluding`` ``(run_id, step)`` leaves out that step's own rows: the state before it
    acted, even when a retry of it already wrote one.
    """
    run, step = excluding or ("", "")
    result = client.query(
        "SELECT target, argMax(in_force, written), argMax(run_id, written), argMax(step, written)"
        " FROM control_log WHERE kind = {k:String} AND target IN {t:Array(String)}"
        " AND NOT (run_id = {run:String} AND step = {step:String} AND {run:String} != '') GROUP BY target",
        parameters={"k": kind, "t": targets, "run": run, "step": step})
    return {target: {"in_force": int(force), "run_id": run, "step": step}
            for target, force, run, step in result.result_rows}


def controls_in_force(client: Client, kind: str | None = None) -> list[dict[str, Any]]:
    """Every control in force now (what the console shows and the demo honours)."""
    where = "WHERE kind = {k:String}" if kind else ""
    result = client.query(
        "SELECT kind, target, argMax(incident_id, written) AS incident_id, argMax(run_id, written) AS run_id,"
        " argMax(actor, written) AS actor, argMax(reason, written) AS reason,"
        " toUnixTimestamp64Milli(argMax(at, written)) AS at_ms, argMax(in_force, written) AS force"
        f" FROM control_log {where} GROUP BY kind, target HAVING force = 1 ORDER BY kind, target",
        parameters={"k": kind or ""})
    rows = []
    for row in result.result_rows:
        entry = dict(zip(result.column_names, row))
        entry["at"] = from_epoch_ms(entry.pop("at_ms"))
        entry.pop("force")
        rows.append(entry)
    return rows


def write_control(client: Client, kind: str, target: str, in_force: bool, *, incident_id: int, run_id: str,
                  step: str, actor: str, reason: str, at: datetime) -> None:
    """Append one control row (``written`` orders rows; it is unique per write)."""
    client.command(
        "INSERT INTO control_log (kind, target, in_force, incident_id, run_id, step, actor, reason, at, written)"
        " SELECT {kind:String}, {target:String}, {force:UInt8}, {incident:UInt64}, {run:String}, {step:String},"
        " {actor:String}, {reason:String}, " + ms_param("at") + ", {written:UInt64}",
        parameters={"kind": kind, "target": target, "force": int(in_force), "incident": incident_id, "run": run_id,
                    "step": step, "actor": actor, "reason": reason, "at": to_epoch_ms(at), "written": time.time_ns()})


class ControlAction(Action):
    """A platform control over one or more targets of one kind; reversible."""

    kind: ClassVar[str]
    verb: ClassVar[str]
    reversible = True

    def targets(self, params: Any) -> list[str]:
        raise NotImplementedError

    def execute(self, ctx: ActionContext, params: BaseModel) -> dict[str, Any]:
        targets = self.targets(params)
        if not targets or not all(targets):
            raise ActionError(f"{self.name}: nothing to act on (empty target)")
        before = control_state(ctx.client, self.kind, targets, excluding=(ctx.run_id, ctx.step))
        previous = {target: before.get(target, {}).get("in_force", 0) for target in targets}
        for target in targets:
            write_control(ctx.client, self.kind, target, True, incident_id=int(ctx.incident["id"]),
                          run_id=ctx.run_id, step=ctx.step, actor=ctx.actor,
                          reason=f"{self.verb} by {ctx.run_id}: {ctx.incident.get('title', '')}"[:500], at=ctx.now)
        url = ctx.integrations.webhooks.get(self.name)
        if url:
            try:
                post_signed(url, _request_body(self.name, "execute", ctx, params), ctx.integrations,
                            ctx.idempotency_key, ctx.deadline)
            except ActionError:
                # Your system did not take it: the control table must not claim it holds.
                for target in targets:
                    write_control(ctx.client, self.kind, target, bool(previous[target]),
                                  incident_id=int(ctx.incident["id"]), run_id=ctx.run_id, step=ctx.step,
                                  actor=ctx.actor, reason=f"{self.verb} failed at {url}", at=ctx.now)
                raise
        return {"targets": targets, "previous": previous, "webhook": bool(url)}

    def verify(self, ctx: ActionContext, params: BaseModel, result: dict[str, Any] | None) -> bool | None:
        if ctx.integrations.webhooks.get(self.name):
            return None  # whether your system took it, only your system knows
        targets = self.targets(params)
        state = control_state(ctx.client, self.kind, targets)
        ours = [state.get(t, {}) for t in targets]
        return all(s.get("in_force") == 1 and s.get("run_id") == ctx.run_id and s.get("step") == ctx.step
                   for s in ours)

    def rollback(self, ctx: ActionContext, params: BaseModel, result: dict[str, Any]) -> dict[str, Any]:
        targets = list(result.get("targets") or self.targets(params))
        state = control_state(ctx.client, self.kind, targets)
        restored, left = [], []
        for target in targets:
            if state.get(target, {}).get("run_id") != ctx.run_id:
                left.append(target)  # changed by someone else since: theirs to undo, not ours
                continue
            previous = bool(result.get("previous", {}).get(target, 0))
            write_control(ctx.client, self.kind, target, previous, incident_id=int(ctx.incident["id"]),
                          run_id=ctx.run_id, step=ctx.step, actor=ctx.actor,
                          reason=f"rollback of {self.verb} by {ctx.run_id}", at=ctx.now)
            restored.append(target)
        url = ctx.integrations.webhooks.get(self.name)
        if url and restored:
            post_signed(url, _request_body(self.name, "rollback", ctx, params), ctx.integrations,
                        ctx.idempotency_key + "/rollback")
        return {"restored": restored, "left_alone": left}

    def describe(self, params: BaseModel) -> str:
        return f"{self.verb} {', '.join(self.targets(params))}"


def _request_body(action: str, verb: str, ctx: ActionContext, params: BaseModel) -> dict[str, Any]:
    return {"action": action, "verb": verb, "params": params.model_dump(), "run_id": ctx.run_id, "step": ctx.step,
            "idempotency_key": ctx.idempotency_key, "actor": ctx.actor, "at": ctx.now.isoformat(),
            "incident": {k: ctx.incident.get(k) for k in ("id", "detector", "severity", "title", "principals",
                                                            "resources")}}


@register
class RevokeGrant(ControlAction):
    name = "revoke_grant"
    summary = "Revoke a grant (rollback restores the previous access)."
    kind, verb = "grant", "revoke grant"

    class Params(_Params):
        resource: str
        grantee: str

    def targets(self, params: Any) -> list[str]:
        return [f"{params.resource} -> {params.grantee}"]


@register
class QuarantineResource(ControlAction):
    name = "quarantine_resource"
    summary = "Quarantine resources: nobody reads them until released."
    kind, verb = "resource", "quarantine"

    class Params(_Params):
        resources: list[str]
        _coerce = field_validator("resources", mode="before")(classmethod(lambda cls, v: _as_list(v)))

    def targets(self, params: Any) -> list[str]:
        return list(params.resources)


@register
class PauseTrainingRun(ControlAction):
    name = "pause_training_run"
    summary = "Pause a training run."
    kind, verb = "training_run", "pause"

    class Params(_Params):
        run: str

    def targets(self, params: Any) -> list[str]:
        return [params.run]


@register
class SuspendIdentity(ControlAction):
    name = "suspend_identity"
    summary = "Suspend identities (people, service accounts, AI agents)."
    kind, verb = "identity", "suspend"

    class Params(_Params):
        principals: list[str]
        _coerce = field_validator("principals", mode="before")(classmethod(lambda cls, v: _as_list(v)))

    def targets(self, params: Any) -> list[str]:
        return list(params.principals)


# --- evidence, notification, paging, webhooks ----------------------------------------


_EVIDENCE_COLUMNS = ("event_time, event_id, principal, principal_type, action, resource, related, grantee, bytes,"
                     " rows, via, status, source_ip")


@register
class SnapshotEvidence(Action):
    name = "snapshot_evidence"
    summary = "Copy the incident's evidence rows into the immutable evidence table."

    class Params(_Params):
        scope: Literal["events", "readers"] = "events"
        margin_minutes: int = Field(60, ge=0, le=7 * 24 * 60)
        limit: int = Field(100_000, ge=1, le=10_000_000)

    def _snapshot_id(self, ctx: ActionContext) -> str:
        return ctx.idempotency_key

    def execute(self, ctx: ActionContext, params: BaseModel) -> dict[str, Any]:
        assert isinstance(params, SnapshotEvidence.Params)
        snapshot = self._snapshot_id(ctx)
        incident = ctx.incident
        written = self._rows(ctx, snapshot)
        if written == 0:  # not copied yet (a crash after the copy leaves rows: count them instead)
            margin = timedelta(minutes=params.margin_minutes)
            # Readers: everyone who read the data since the evidence began, up to now.
            until = ctx.now if params.scope == "readers" else incident["last_seen"] + margin
            selection, selected = evidence_selection(
                incident, f"{{s:String}}, {{i:UInt64}}, {{scope:String}}, {_EVIDENCE_COLUMNS}", params.scope,
                incident["first_seen"] - margin, until, params.limit)
            ctx.client.command(
                f"INSERT INTO evidence (snapshot_id, incident_id, scope, {_EVIDENCE_COLUMNS}) {selection}",
                parameters={"s": snapshot, "i": int(incident["id"]), "scope": params.scope, **selected})
            written = self._rows(ctx, snapshot)
        ctx.client.command(
            "INSERT INTO evidence_snapshots (snapshot_id, incident_id, run_id, step, scope, rows, captured_at,"
            " captured_by) SELECT {s:String}, {i:UInt64}, {run:String}, {step:String}, {scope:String},"
            " {rows:UInt64}, " + ms_param("at") + ", {actor:String}",
            parameters={"s": snapshot, "i": int(incident["id"]), "run": ctx.run_id, "step": ctx.step,
                        "scope": params.scope, "rows": written, "at": to_epoch_ms(ctx.now), "actor": ctx.actor})
        readers = []
        if params.scope == "readers":
            readers = [r[0] for r in ctx.client.query(
                "SELECT DISTINCT principal FROM evidence WHERE snapshot_id = {s:String} ORDER BY principal"
                " LIMIT 1000", parameters={"s": snapshot}).result_rows]
        return {"snapshot_id": snapshot, "rows": written, "readers": readers}

    def _rows(self, ctx: ActionContext, snapshot: str) -> int:
        return int(ctx.client.query("SELECT count() FROM evidence WHERE snapshot_id = {s:String}",
                                    parameters={"s": snapshot}).result_rows[0][0])

    def verify(self, ctx: ActionContext, params: BaseModel, result: dict[str, Any] | None) -> bool | None:
        found = ctx.client.query("SELECT count() FROM evidence_snapshots WHERE snapshot_id = {s:String}",
                                 parameters={"s": self._snapshot_id(ctx)}).result_rows[0][0]
        return bool(found)

    def describe(self, params: BaseModel) -> str:
        assert isinstance(params, SnapshotEvidence.Params)
        what = "everyone who read the data" if params.scope == "readers" else "the incident's events"
        return f"snapshot {what} (±{params.margin_minutes} min) into the evidence table"


@register
class Notify(Action):
    name = "notify"
    summary = "Send a message to named channels and/or the owners of resources (no paging)."

    class Params(_Params):
        channels: list[str] = Field(default_factory=list)
        owner_of: list[str] = Field(default_factory=list)
        title: str = ""
        message: str = ""
        _coerce = field_validator("channels", "owner_of", mode="before")(classmethod(lambda cls, v: _as_list(v)))

    def _channels(self, ctx: ActionContext, params: Any) -> tuple[list[str], list[str]]:
        """The channels to use, and the owners with no contact channel."""
        config = ctx.pager.config if ctx.pager else None
        contacts = config.contacts if config else {}
        catalogue = ctx.incident.get("catalogue", {})
        owners = sorted({catalogue.get(r, {}).get("owner", "") or "" for r in params.owner_of} - {""})
        channels = list(params.channels) + [contacts[o] for o in owners if o in contacts]
        return sorted(set(channels)), [o for o in owners if o not in contacts]

    def execute(self, ctx: ActionContext, params: BaseModel) -> dict[str, Any]:
        channels, unreachable = self._channels(ctx, params)
        title = params.title or f"[{ctx.incident['severity']}] blastwall #{ctx.incident['id']}: {ctx.incident['title']}"
        if ctx.pager is None or not ctx.pager.config.channels:
            # Nothing is configured to deliver to: say so in the result rather than fail the
            # playbook on a fresh install (the console shows the step as unrouted).
            return {"delivered": [], "unrouted": channels or ["(no channels configured)"],
                    "owners_without_contact": unreachable}
        if not channels:
            raise ActionError(f"no channel to notify: owners without a contact: {', '.join(unreachable) or 'none'}")
        try:
            ctx.pager.notify(channels, title, params.message or title, ctx.now)
        except PagingError as exc:
            raise ActionError(str(exc)) from None
        return {"delivered": channels, "owners_without_contact": unreachable}

    def describe(self, params: BaseModel) -> str:
        assert isinstance(params, Notify.Params)
        to = list(params.channels) + [f"owner of {r}" for r in params.owner_of]
        return f"notify {', '.join(to) or 'nobody'}"


@register
class Page(Action):
    name = "page"
    summary = "Page the on-call by the incident's severity (once per incident; again if severity rises)."

    class Params(_Params):
        reason: str = ""

    def execute(self, ctx: ActionContext, params: BaseModel) -> dict[str, Any]:
        if ctx.pager is None:
            raise ActionError("no pager configured")
        records = ctx.pager.page(ctx.incident, ctx.now, reason=params.reason)
        failed = [r for r in records if r.state == "failed"]
        if records and len(failed) == len(records):
            raise ActionError(f"paging failed: {failed[0].error}")
        return {"pages": [{"channel": r.channel, "state": r.state} for r in records]}

    def verify(self, ctx: ActionContext, params: BaseModel, result: dict[str, Any] | None) -> bool | None:
        # Paging is deduplicated per (incident, severity) by the pager itself: re-running is safe.
        return False

    def describe(self, params: BaseModel) -> str:
        return "page the on-call by severity" + (f" ({params.reason})" if params.reason else "")


@register
class Webhook(Action):
    name = "webhook"
    summary = "POST signed JSON to a URL (HMAC-SHA256, retries with backoff, an Idempotency-Key)."

    class Params(_Params):
        url: str
        payload: dict[str, Any] = Field(default_factory=dict)

        @field_validator("url")
        @classmethod
        def _http(cls, value: str) -> str:
            if not value.startswith(("http://", "https://")):
                raise ValueError("url must start with http:// or https://")
            return value

    def execute(self, ctx: ActionContext, params: BaseModel) -> dict[str, Any]:
        assert isinstance(params, Webhook.Params)
        body = {"incident_id": ctx.incident["id"], "run_id": ctx.run_id, "step": ctx.step, **params.payload}
        status = post_signed(params.url, body, ctx.integrations, ctx.idempotency_key, ctx.deadline)
        return {"status": status}

    def describe(self, params: BaseModel) -> str:
        return f"POST signed JSON to {params.url}"
