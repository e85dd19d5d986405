"""The engine: runs matching playbooks on incidents, at most once per step, with approvals and rollback.

When an incident opens or its severity rises, :meth:`Responder.respond` pages the
on-call by severity and runs every matching playbook. A run is one per (incident,
playbook): ``run_id = "<incident>.<playbook>"``; a severity rise re-plans the same run,
so a step done once is never done again, and a gate that no longer applies opens.

At most once, even across crashes: before an action's side effect the step's
``started`` row (its idempotency key is ``run_id/step``) is written, its outcome after.
A step found ``started`` with no outcome (the process died) is settled by the action's
``verify``: done -> ``succeeded``; not done -> run it; cannot tell (a webhook) ->
``interrupted``, for a human, never repeated blindly.

Every step state is also an event in the incident's audit trail (who, what, when,
result). A failing step is recorded with its error, opens a visible ``playbook_error``
incident (paged by its severity) and never raises out of the engine: the scheduler
goes on.

Tables: ``playbook_runs`` (current state of each run, newest version wins),
``playbook_step_log`` (append-only step states) and ``playbook_triggers`` (which
(incident, severity) pairs were handled).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import tenacity
from clickhouse_connect.driver.client import Client

from detector.incidents import (
    Alert,
    IncidentError,
    get_incident,
    incident_label,
    record_alert,
    record_event,
    transition,
    unhandled_incidents,
)
from detector.severity import at_least
from features.redaction import redact_text
from features.times import from_epoch_ms, ms_param, to_epoch_ms
from playbooks.actions import (
    REGISTRY,
    ActionContext,
    ControlAction,
    Integrations,
    StepTimeout,
)
from playbooks.context import incident_context, render
from playbooks.model import (
    Library,
    Plan,
    PlanError,
    PlannedStep,
    Playbook,
    plan,
)
from playbooks.paging import Pager

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE IF NOT EXISTS playbook_runs (
    run_id String, incident_id UInt64, playbook String, severity LowCardinality(String),
    state LowCardinality(String), mode LowCardinality(String), started_by String, plan String, error String,
    created_at DateTime64(3, 'UTC'), updated_at DateTime64(3, 'UTC'), version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY run_id""",
        """CREATE TABLE IF NOT EXISTS playbook_step_log (
    run_id String, incident_id UInt64, playbook String, step String, position UInt16,
    action LowCardinality(String), state LowCardinality(String), attempt UInt16, actor String,
    at DateTime64(3, 'UTC'), params String, result String, error String, written UInt64
) ENGINE = MergeTree ORDER BY (run_id, written)""",
        """CREATE TABLE IF NOT EXISTS playbook_triggers (
    incident_id UInt64, severity LowCardinality(String), outcome LowCardinality(String), runs Array(String),
    at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree ORDER BY (incident_id, severity)""",
    ]),
]

#: Step states after which the step is never executed again.
TERMINAL = ("succeeded", "failed", "denied", "interrupted", "rolled_back", "rollback_failed")
#: Incident statuses on which nothing is contained any more.
CLOSED = ("resolved", "false_positive")
#: Detectors about blastwall itself: paged by severity, never contained.
_OWN_DETECTORS = ("pipeline_error", "playbook_error")




class EngineError(ValueError):
    """An engine request that cannot be done (no such run or step, a step not awaiting approval, …)."""


def run_id_for(incident_id: int, playbook: str) -> str:
    """The one run of a playbook on an incident: ``<incident>.<playbook>``."""
    return f"{incident_id}.{playbook}"


def incident_of_run(run_id: str) -> int | None:
    """The incident a run id is about (``None`` for text that is not a run id)."""
    head = str(run_id).split(".", 1)[0]
    return int(head) if head.isdigit() else None


@dataclass(frozen=True)
class StepRecord:
    """The newest state of one step of one run."""

    run_id: str
    step: str
    position: int
    action: str
    state: str
    attempt: int
    actor: str
    at: datetime
    params: dict[str, Any]
    result: dict[str, Any]
    error: str
    written: int = 0  # wall clock (ns) of the newest row


@dataclass
class RunReport:
    """A run after the engine advanced it."""

    run_id: str
    incident_id: int
    playbook: str
    state: str
    steps: list[StepRecord] = field(default_factory=list)
    error: str = ""


@dataclass
class RespondSummary:
    """What one :meth:`Responder.respond` did."""

    incidents: int = 0
    runs: list[RunReport] = field(default_factory=list)
    pages: int = 0
    too_old: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DryRunStep:
    """One step of a dry run: the plan, and what the store says already happened to it."""

    planned: PlannedStep
    state: str  # "" when never run


class Responder:
    """Runs playbooks and paging over one store.

    Parameters
    ----------
    client : Client
    library : Library
        The playbooks to run (see :func:`playbooks.model.load_library`).
    pager : Pager, optional
        Paging; the default has no routes (pages are recorded as unrouted).
    integrations : Integrations, optional
        Webhooks of the user's real systems and the HMAC secret.
    retry_wait : float
        First backoff between a step's attempts (seconds; doubles each time).
    """

    def __init__(self, client: Client, library: Library, pager: Pager | None = None,
                 integrations: Integrations | None = None, retry_wait: float = 1.0) -> None:
        self.client = client
        self.library = library
        self.pager = pager or Pager(client)
        self.integrations = integrations or Integrations()
        self.retry_wait = retry_wait

    # --- the scheduled entry point -------------------------------------------------------

    def respond(self, now: datetime, max_age: timedelta = timedelta(hours=6), limit: int = 200,
                only: Collection[int] | None = None) -> RespondSummary:
        """Handle every incident opened, or risen in severity, since it was last handled.

        An incident detected more than ``max_age`` before ``now`` (a backfill of old data)
        is recorded as ``too_old``: no page, no containment for history. ``only``: just
        these incidents (those the fast path just opened).
        """
        summary = RespondSummary()
        self.recover(now)
        self._library_problems(now)
        for incident_id, severity, detected_at in unhandled_incidents(self.client, "playbook_triggers", limit, only):
            summary.incidents += 1
            if now - detected_at > max_age:
                self._trigger(int(incident_id), severity, "too_old", [], now)
                summary.too_old += 1
                continue
            try:
                self._respond_one(int(incident_id), now, summary)
            except Exception as exc:  # noqa: BLE001 - one incident's trouble never stops the others
                summary.errors.append(f"incident {incident_id}: {type(exc).__name__}: {exc}")
                self._trigger(int(incident_id), severity, "error", [], now)
        return summary

    def _respond_one(self, incident_id: int, now: datetime, summary: RespondSummary) -> None:
        context = incident_context(self.client, incident_id)
        if context is None:
            return
        summary.pages += sum(r.state == "sent" for r in self.pager.page(context, now))
        runs: list[str] = []
        if context["detector"] not in _OWN_DETECTORS:
            for playbook in self.library.playbooks.values():
                try:
                    report = self._start(playbook, context, now, actor=f"playbook:{playbook.id}", mode="live")
                except Exception as exc:  # noqa: BLE001 - one playbook's trouble never skips the others
                    error = _describe(exc)
                    summary.errors.append(f"incident {incident_label(context)}, playbook {playbook.id}: {error}")
                    self._visible_failure(context, run_id_for(incident_id, playbook.id), "(run)", error, now)
                    continue
                if report is not None:
                    runs.append(report.run_id)
                    summary.runs.append(report)
        self._trigger(incident_id, context["severity"], "ran" if runs else "no_playbook", runs, now)

    def _trigger(self, incident_id: int, severity: str, outcome: str, runs: list[str], now: datetime) -> None:
        self.client.command(
            "INSERT INTO playbook_triggers (incident_id, severity, outcome, runs, at) SELECT {i:UInt64},"
            " {s:String}, {o:String}, {r:Array(String)}, " + ms_param("at"),
            parameters={"i": incident_id, "s": severity, "o": outcome, "r": runs, "at": to_epoch_ms(now)})

    # --- runs ----------------------------------------------------------------------------

    def run(self, playbook_id: str, incident_id: int, now: datetime, actor: str) -> RunReport:
        """Run (or continue) one playbook on one incident by hand.

        Raises
        ------
        EngineError
            No such playbook or incident, or the playbook does not match the incident.
        """
        playbook = self._playbook(playbook_id)
        context = self._context(incident_id)
        report = self._start(playbook, context, now, actor=actor, mode="manual")
        if report is None:
            raise EngineError(f"playbook {playbook_id} does not match incident {incident_label(context)} "
                              f"({context['detector']}, {context['severity']})")
        return report

    def dry_run(self, playbook_id: str, incident_id: int) -> tuple[Plan | None, list[DryRunStep]]:
        """The plan for an incident, with each step's state so far; writes nothing."""
        playbook = self._playbook(playbook_id)
        context = self._context(incident_id)
        try:
            planned = plan(playbook, context)
        except PlanError as exc:
            raise EngineError(str(exc)) from None
        if planned is None:
            return None, []
        states = self.step_states(run_id_for(incident_id, playbook_id))
        return planned, [DryRunStep(step, states[step.name].state if step.name in states else "")
                         for step in planned.steps]

    def _start(self, playbook: Playbook, context: dict[str, Any], now: datetime, actor: str,
               mode: str) -> RunReport | None:
        """Plan and advance a playbook's run on an incident (None: the playbook does not match)."""
        run_id = run_id_for(int(context["id"]), playbook.id)
        try:
            planned = plan(playbook, context)
        except PlanError as exc:
            self._write_run(run_id, context, playbook.id, "failed", mode, actor, None, str(exc), now)
            self._visible_failure(context, run_id, "(plan)", str(exc), now)
            return RunReport(run_id, int(context["id"]), playbook.id, "failed", error=str(exc))
        if planned is None:
            return None
        return self._advance(playbook, context, planned, now, actor, mode)

    def _advance(self, playbook: Playbook, context: dict[str, Any], planned: Plan, now: datetime, actor: str,
                 mode: str) -> RunReport:
        run_id = run_id_for(planned.incident_id, playbook.id)
        existing = self._run_row(run_id)
        if existing is not None and existing["state"] in ("rolled_back", "rollback_failed"):
            return self.report(run_id)  # undone on purpose: never resumed by a later trigger
        if context["status"] in CLOSED:
            raise EngineError(f"incident {incident_label(context)} is {context['status']}: no containment runs on it")
        if existing is None:  # recorded before any step runs, so a crash mid-step is found on restart
            self._write_run(run_id, context, playbook.id, "running", mode, actor, planned, "", now)
            existing = self._run_row(run_id)
        states = self.step_states(run_id)
        state = "succeeded"
        for position, step in enumerate(planned.steps):
            current = states.get(step.name)
            status = current.state if current else ""
            if status in ("started", "rollback_started"):
                state = "running"  # in progress (or its process died: recover() settles it first)
                break
            if status == "interrupted":
                # Its outcome is unknown: a human checks the real system and answers
                # (approve: it took effect; deny: it did not), and the answer moves the run on.
                state = "awaiting_decision"
                break
            if status in TERMINAL:
                if status == "failed" and step.on_failure != "continue":
                    state = "failed"
                    break
                continue
            if step.needs_approval and status != "approved":
                if status != "awaiting_approval":
                    self._log(run_id, context, playbook.id, step, position, "awaiting_approval", 0, actor, now)
                state = "awaiting_approval"
                break
            ok = self._execute(run_id, context, playbook.id, step, position, actor, now)
            if not ok and step.on_failure == "stop":
                state = "failed"
                break
            if not ok and step.on_failure == "rollback":
                self._write_run(run_id, context, playbook.id, "failed", mode, actor, planned, "", now)
                self.rollback_run(run_id, actor, now)
                state = "rolled_back"
                break
        self._write_run(run_id, context, playbook.id, state, existing["mode"], existing["started_by"], planned, "",
                        now)
        if state == "succeeded":
            self._mark_contained(run_id, context, playbook.id, now)
        return self.report(run_id)

    def _mark_contained(self, run_id: str, context: dict[str, Any], playbook: str, now: datetime) -> None:
        """A run whose containment steps took effect moves its incident to ``contained``."""
        contained = [s for s in self.step_states(run_id).values()
                     if s.state == "succeeded" and isinstance(REGISTRY.get(s.action), ControlAction)]
        incident = get_incident(self.client, int(context["id"]))
        if contained and incident and incident["status"] in ("open", "acknowledged"):
            transition(self.client, int(context["id"]), "contain", actor=f"playbook:{playbook}",
                       reason=f"{run_id}: " + "; ".join(f"{s.step} ({s.action})" for s in contained), at=now)

    def _execute(self, run_id: str, context: dict[str, Any], playbook: str, step: PlannedStep, position: int,
                 actor: str, now: datetime) -> bool:
        """Execute one step with its retries and timeout; True when it succeeded."""
        action = REGISTRY[step.action]
        params = action.Params.model_validate(step.params)
        ctx = self._action_context(context, run_id, step.name, actor, now)
        # One deadline for all attempts; actions run in this thread and stop at it (a thread
        # left running past a timeout would act on the store outside its lock).
        ctx.deadline = time.monotonic() + step.timeout.total_seconds()
        timed_out = False
        retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(step.retries + 1),
                                     wait=tenacity.wait_exponential(multiplier=self.retry_wait, max=60),
                                     retry=tenacity.retry_if_exception(lambda exc: not isinstance(exc, StepTimeout)),
                                     reraise=True)
        attempt_number = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempt_number = attempt.retry_state.attempt_number
                    # Persisted before the side effect: a crash from here on is seen on restart.
                    self._log(run_id, context, playbook, step, position, "started", attempt_number, actor, now)
                    try:
                        result = action.execute(ctx, params)
                    except StepTimeout:
                        # The call may have landed: another attempt could do it twice.
                        timed_out = True
                        raise
                    except Exception as exc:
                        if attempt_number <= step.retries:
                            self._log(run_id, context, playbook, step, position, "attempt_failed", attempt_number,
                                      actor, now, error=_describe(exc))
                        raise
        except Exception as exc:  # noqa: BLE001 - recorded, made visible, never raised
            error = _describe(exc)
            outcome = "interrupted" if timed_out else "failed"
            self._log(run_id, context, playbook, step, position, outcome, attempt_number, actor, now, error=error)
            self._visible_failure(context, run_id, step.name, error, now)
            return False
        self._log(run_id, context, playbook, step, position, "succeeded", attempt_number, actor, now, result=result)
        return True

    def _action_context(self, context: dict[str, Any], run_id: str, step: str, actor: str,
                        now: datetime) -> ActionContext:
        return ActionContext(self.client, context, run_id, step, actor, now, self.pager, self.integrations)

    # --- approvals -----------------------------------------------------------------------

    def approve(self, run_id: str, step: str, actor: str, now: datetime, reason: str = "") -> RunReport:
        """Approve a step awaiting approval and continue the run (the step executes now).

        For an ``interrupted`` step (its outcome unknown after a crash or a timeout) approving
        is the human's answer "it took effect": the step counts as succeeded, never re-run.
        """
        playbook, context, planned, position = self._gated(run_id, step, approving=True)
        if self.step_states(run_id)[step].state == "interrupted":
            self._log(run_id, context, playbook.id, planned, position, "succeeded", 0, actor, now,
                      result={"confirmed_by": actor, "reason": reason})
        else:
            self._log(run_id, context, playbook.id, planned, position, "approved", 0, actor, now, error=reason)
        run = self._run_row(run_id) or {}
        # The approver carries the run on: the control rows name who let them happen.
        return self._advance(playbook, context, self._plan(playbook, context), now, actor,
                             run.get("mode", "manual"))

    def deny(self, run_id: str, step: str, actor: str, now: datetime, reason: str) -> RunReport:
        """Deny a step awaiting approval (never executed); the run continues with the next step.

        For an ``interrupted`` step denying is the answer "it did not take effect, and it is
        not to be tried again": the run goes on without it.
        """
        if not reason.strip():
            raise EngineError("a denial needs a reason")
        playbook, context, planned, position = self._gated(run_id, step, approving=False)
        self._log(run_id, context, playbook.id, planned, position, "denied", 0, actor, now, error=reason)
        run = self._run_row(run_id) or {}
        if context["status"] in CLOSED:
            return self.report(run_id)
        return self._advance(playbook, context, self._plan(playbook, context), now, actor,
                             run.get("mode", "manual"))

    def _gated(self, run_id: str, step: str, approving: bool) -> tuple[Playbook, dict[str, Any], PlannedStep, int]:
        run = self._run_row(run_id)
        if run is None:
            raise EngineError(f"no playbook run {run_id!r}")
        if run["state"] in ("rolled_back", "rollback_failed"):
            raise EngineError(f"run {run_id} was rolled back; nothing in it runs any more")
        current = self.step_states(run_id).get(step)
        if current is None or current.state not in ("awaiting_approval", "interrupted"):
            state = current.state if current else "not reached"
            raise EngineError(f"step {step!r} of run {run_id} is not awaiting approval or a decision (it is {state})")
        playbook = self._playbook(run["playbook"])
        context = self._context(int(run["incident_id"]))
        if approving and context["status"] in CLOSED:
            raise EngineError(f"incident {incident_label(context)} is {context['status']}: nothing is contained on it"
                              " any more")
        planned = self._plan(playbook, context)
        for position, candidate in enumerate(planned.steps):
            if candidate.name == step:
                return playbook, context, candidate, position
        raise EngineError(f"step {step!r} is no longer in the plan of {run_id}")

    def _plan(self, playbook: Playbook, context: dict[str, Any]) -> Plan:
        try:
            planned = plan(playbook, context)
        except PlanError as exc:
            raise EngineError(str(exc)) from None
        if planned is None:
            raise EngineError(f"playbook {playbook.id} no longer matches incident {incident_label(context)}")
        return planned

    # --- rollback ------------------------------------------------------------------------

    def rollback_run(self, run_id: str, actor: str, now: datetime) -> list[StepRecord]:
        """Undo the run's succeeded reversible steps, newest first; returns the steps rolled back."""
        run = self._run_row(run_id)
        if run is None:
            raise EngineError(f"no playbook run {run_id!r}")
        context = self._context(int(run["incident_id"]))
        playbook = self.library.playbooks.get(run["playbook"])
        done = sorted((s for s in self.step_states(run_id).values() if s.state == "succeeded"),
                      key=lambda s: -s.position)
        undone = []
        failed = False
        for record in done:
            spec = playbook.step(record.step) if playbook and _has_step(playbook, record.step) else None
            if spec is not None and spec.rollback is False:
                continue
            custom = spec.rollback if spec is not None and spec.rollback else None
            action = REGISTRY[custom.action] if custom else REGISTRY.get(record.action)
            if action is None or (not custom and not action.reversible):
                continue
            planned = PlannedStep(record.step, record.action, record.params, False, "", timedelta(seconds=60), 0,
                                  "continue", True)
            # Its own idempotency key: a receiver that drops repeats must not drop the undo.
            ctx = self._action_context(context, run_id, f"{record.step}/rollback", actor, now)
            self._log(run_id, context, run["playbook"], planned, record.position, "rollback_started", 0, actor, now)
            try:
                if custom:
                    extra = playbook.parameters_hook(context) if playbook and playbook.parameters_hook else {}
                    params = action.Params.model_validate(render(custom.with_, context, extra))
                    result = action.execute(ctx, params)
                else:
                    result = action.rollback(ctx, action.Params.model_validate(record.params), record.result)
            except Exception as exc:  # noqa: BLE001
                failed = True
                self._log(run_id, context, run["playbook"], planned, record.position, "rollback_failed", 0, actor,
                          now, error=_describe(exc))
                self._visible_failure(context, run_id, f"{record.step} (rollback)", _describe(exc), now)
                continue
            self._log(run_id, context, run["playbook"], planned, record.position, "rolled_back", 0, actor, now,
                      result=result)
            undone.append(self.step_states(run_id)[record.step])
        self._write_run(run_id, context, run["playbook"], "rollback_failed" if failed else "rolled_back", run["mode"],
                        run["started_by"], None, "", now)
        return undone

    def rollback_incident(self, incident_id: int, actor: str, now: datetime) -> list[StepRecord]:
        """Roll back every run on an incident; a contained incident goes back to acknowledged."""
        context = self._context(incident_id)
        run_ids = [r[0] for r in self.client.query(
            "SELECT run_id FROM playbook_runs FINAL WHERE incident_id = {i:UInt64} AND state != 'rolled_back'"
            " ORDER BY created_at DESC", parameters={"i": incident_id}).result_rows]
        if not run_ids:
            raise EngineError(f"incident {incident_label(context)} has no playbook run to roll back")
        undone = [record for run_id in run_ids for record in self.rollback_run(run_id, actor, now)]
        if context["status"] == "contained":
            transition(self.client, incident_id, "release", actor=actor,
                       reason=f"containment rolled back: {len(undone)} steps undone", at=now)
        return undone

    # --- recovery ------------------------------------------------------------------------

    def recover(self, now: datetime, grace: timedelta = timedelta(seconds=60),
                clock: Callable[[], int] = time.time_ns) -> list[StepRecord]:
        """Settle steps left ``started`` by a process that died.

        A step counts as abandoned once its ``started`` row is older than the step's
        timeout plus ``grace`` by the wall clock (``clock``: nanoseconds; event time cannot
        tell, a replay's ``now`` stands still). One step's trouble never stops the others.
        """
        rows = self._step_rows("run_id IN (SELECT run_id FROM playbook_step_log GROUP BY run_id, step"
                               " HAVING argMax(state, written) IN ('started', 'rollback_started'))", {})
        settled = []
        for record in rows:
            if record.state not in ("started", "rollback_started"):
                continue
            run = self._run_row(record.run_id)
            playbook = self.library.playbooks.get(run["playbook"]) if run else None
            timeout = playbook.step(record.step).timeout if playbook and _has_step(playbook, record.step) \
                else timedelta(seconds=60)
            if run is None or clock() - record.written < (timeout + grace) // timedelta(microseconds=1) * 1000:
                continue  # may still be running in another process
            context = incident_context(self.client, int(run["incident_id"]))
            if context is None:
                continue
            try:
                self._settle(record, run, playbook, context, timeout, now)
            except Exception as exc:  # noqa: BLE001 - e.g. its action's parameters changed since
                planned = PlannedStep(record.step, record.action, record.params, False, "", timeout, 0, "stop", False)
                error = f"could not settle the step after a restart: {_describe(exc)}; check by hand"
                self._log(record.run_id, context, run["playbook"], planned, record.position, "interrupted",
                          record.attempt, "blastwall", now, error=error)
                self._visible_failure(context, record.run_id, record.step, error, now)
            settled.append(self.step_states(record.run_id)[record.step])
            if playbook is not None:  # on to the next step, or to wait visibly for a human's answer
                try:
                    self._advance(playbook, context, self._plan(playbook, context), now, run["started_by"],
                                  run["mode"])
                except EngineError:
                    pass  # the playbook or the incident changed meanwhile; the run stays as settled
        return settled

    def _settle(self, record: StepRecord, run: dict[str, Any], playbook: Playbook | None, context: dict[str, Any],
                timeout: timedelta, now: datetime) -> bool | None:
        """Decide an abandoned step by its action's ``verify``; returns the verdict."""
        action = REGISTRY.get(record.action)
        planned = PlannedStep(record.step, record.action, record.params, False, "", timeout, 0, "stop", False)
        if record.state == "rollback_started":
            self._log(record.run_id, context, run["playbook"], planned, record.position, "rollback_failed",
                      record.attempt, "blastwall", now,
                      error="the process stopped during the rollback; check the control by hand")
            return None
        ctx = self._action_context(context, record.run_id, record.step, "blastwall", now)
        verdict = action.verify(ctx, action.Params.model_validate(record.params), None) if action else None
        if verdict:
            self._log(record.run_id, context, run["playbook"], planned, record.position, "succeeded",
                      record.attempt, "blastwall", now, result={"recovered": True})
        elif verdict is False:
            # Verified not done: clearing the mark lets the next advance run it (once).
            self._log(record.run_id, context, run["playbook"], planned, record.position, "reset",
                      record.attempt, "blastwall", now, error="the process stopped before the side effect")
        else:
            error = "the process stopped during this step and its outcome cannot be verified; check by hand"
            self._log(record.run_id, context, run["playbook"], planned, record.position, "interrupted",
                      record.attempt, "blastwall", now, error=error)
            self._visible_failure(context, record.run_id, record.step, error, now)
        return verdict

    # --- reading -------------------------------------------------------------------------

    def step_states(self, run_id: str) -> dict[str, StepRecord]:
        """The newest state of each step of a run."""
        return {r.step: r for r in self._step_rows("run_id = {r:String}", {"r": run_id})}

    def _step_rows(self, where: str, parameters: dict[str, Any]) -> list[StepRecord]:
        result = self.client.query(
            "SELECT run_id, step, argMax(position, written), argMax(action, written), argMax(state, written),"
            " argMax(attempt, written), argMax(actor, written), toUnixTimestamp64Milli(argMax(at, written)),"
            " argMax(params, written), argMax(result, written), argMax(error, written), max(written)"
            f" FROM playbook_step_log WHERE {where} GROUP BY run_id, step", parameters=parameters)
        return sorted((StepRecord(run, step, int(position), action, state, int(attempt), actor, from_epoch_ms(at_ms),
                                  json.loads(params or "{}"), json.loads(result or "{}"), error, int(written))
                       for run, step, position, action, state, attempt, actor, at_ms, params, result, error, written
                       in result.result_rows), key=lambda r: (r.run_id, r.position))

    def report(self, run_id: str) -> RunReport:
        run = self._run_row(run_id)
        if run is None:
            raise EngineError(f"no playbook run {run_id!r}")
        steps = sorted(self.step_states(run_id).values(), key=lambda s: s.position)
        return RunReport(run_id, int(run["incident_id"]), run["playbook"], run["state"], steps, run["error"])

    def _run_row(self, run_id: str) -> dict[str, Any] | None:
        result = self.client.query("SELECT * FROM playbook_runs FINAL WHERE run_id = {r:String}",
                                   parameters={"r": run_id})
        return dict(zip(result.column_names, result.result_rows[0])) if result.result_rows else None

    def _playbook(self, playbook_id: str) -> Playbook:
        playbook = self.library.playbooks.get(playbook_id)
        if playbook is None:
            broken = [str(p) for p in self.library.problems if p.file.stem == playbook_id]
            raise EngineError(f"playbook {playbook_id!r} " + (f"is invalid: {broken[0]}" if broken else
                              f"does not exist; known: {', '.join(sorted(self.library.playbooks)) or 'none'}"))
        return playbook

    def _context(self, incident_id: int) -> dict[str, Any]:
        context = incident_context(self.client, incident_id)
        if context is None:
            raise EngineError(f"no incident {incident_id}")
        return context

    # --- writing -------------------------------------------------------------------------

    def _write_run(self, run_id: str, context: dict[str, Any], playbook: str, state: str, mode: str, actor: str,
                   planned: Plan | None, error: str, now: datetime) -> None:
        existing = self._run_row(run_id)
        plan_text = json.dumps([s.__dict__ for s in planned.steps], default=str) if planned else (
            existing["plan"] if existing else "[]")
        created = to_epoch_ms(existing["created_at"]) if existing else to_epoch_ms(now)
        self.client.command(
            "INSERT INTO playbook_runs (run_id, incident_id, playbook, severity, state, mode, started_by, plan,"
            " error, created_at, updated_at, version) SELECT {run:String}, {i:UInt64}, {p:String}, {sev:String},"
            " {state:String}, {mode:String}, {actor:String}, {plan:String}, {error:String}, " + ms_param("created")
            + ", " + ms_param("updated") + ", {version:UInt64}",
            parameters={"run": run_id, "i": int(context["id"]), "p": playbook, "sev": context["severity"],
                        "state": state, "mode": mode, "actor": actor, "plan": plan_text, "error": redact_text(error),
                        "created": created, "updated": to_epoch_ms(now), "version": time.time_ns()})

    def _log(self, run_id: str, context: dict[str, Any], playbook: str, step: PlannedStep, position: int, state: str,
             attempt: int, actor: str, now: datetime, result: dict[str, Any] | None = None, error: str = "") -> None:
        """Append a step state, and the same fact to the incident's audit trail (credentials redacted)."""
        error = redact_text(error)
        result_text = redact_text(json.dumps(result or {}, default=str, sort_keys=True))
        result = json.loads(result_text)
        self.client.command(
            "INSERT INTO playbook_step_log (run_id, incident_id, playbook, step, position, action, state, attempt,"
            " actor, at, params, result, error, written) SELECT {run:String}, {i:UInt64}, {p:String}, {s:String},"
            " {pos:UInt16}, {a:String}, {state:String}, {attempt:UInt16}, {actor:String}, " + ms_param("at")
            + ", {params:String}, {result:String}, {error:String}, {written:UInt64}",
            parameters={"run": run_id, "i": int(context["id"]), "p": playbook, "s": step.name, "pos": position,
                        "a": step.action, "state": state, "attempt": attempt, "actor": actor, "at": to_epoch_ms(now),
                        "params": redact_text(json.dumps(step.params, default=str, sort_keys=True)),
                        "result": result_text, "error": error,
                        "written": time.time_ns()})
        try:
            record_event(self.client, int(context["id"]), actor, "playbook_step",
                         reason=f"{playbook}.{step.name}: {state}" + (f": {error}" if error else ""),
                         details={"run_id": run_id, "step": step.name, "action": step.action, "state": state,
                                  "attempt": attempt, "result": result or {}}, at=now)
        except IncidentError:
            pass  # the incident is gone (a test store); the step log still holds it

    def _visible_failure(self, context: dict[str, Any], run_id: str, step: str, error: str, now: datetime) -> None:
        """A failed step opens a playbook_error incident at the incident's severity (SEV3 at least) and pages."""
        severity = context["severity"] if at_least(context["severity"], "SEV3") else "SEV3"
        error = redact_text(error)  # this title is shown to every viewer and paged
        digest = hashlib.blake2b(f"{run_id}/{step}".encode(), digest_size=6).hexdigest()
        outcome = record_alert(self.client, Alert(
            alert_id=f"playbook_error|{run_id}|{step}|{digest}", detector="playbook_error", entity="playbook_run",
            entity_key=f"{run_id}/{step}", title=f"containment step {step} of {run_id} failed on incident "
                                                  f"{incident_label(context)}: {error[:200]}",
            severity=severity, score=1.0, principals=tuple(context.get("principals", ())),
            resources=tuple(context.get("resources", ())), first_seen=now, last_seen=now, detected_at=now,
            explanation=[{"feature": "error", "value": error[:2000], "baseline": "", "weight": 1.0,
                          "incident_id": context["id"], "run_id": run_id, "step": step}],
            group_key=context.get("group_key") or f"incident:{context['id']}"))
        error_incident = get_incident(self.client, outcome.incident_id)
        if error_incident is not None and outcome.outcome == "opened":
            try:
                self.pager.page(error_incident, now, reason="a containment step failed")
            except Exception:  # noqa: BLE001 - paging trouble is recorded by the pager itself
                pass

    def _library_problems(self, now: datetime) -> None:
        """Broken playbook files are a visible incident (once per distinct set of problems)."""
        if not self.library.problems:
            return
        text = "\n".join(str(p) for p in self.library.problems)
        digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        record_alert(self.client, Alert(
            alert_id=f"playbook_error|library|{digest}", detector="playbook_error", entity="playbook_library",
            entity_key="library", title=f"{len(self.library.problems)} problems in playbook files: "
                                        f"{self.library.problems[0]}"[:300],
            severity="SEV3", score=1.0, principals=(), resources=(), first_seen=now, last_seen=now, detected_at=now,
            explanation=[{"feature": "problems", "value": text[:4000], "baseline": "", "weight": 1.0}]))


def _has_step(playbook: Playbook, name: str) -> bool:
    return any(step.name == name for step in playbook.spec.steps)


def _describe(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")[:2000]


def runs_for_incidents(client: Client, incident_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each incident's playbook runs and their step states (``incidents --json``, the console)."""
    if not incident_ids:
        return {}
    runs = client.query(
        "SELECT run_id, incident_id, playbook, state FROM playbook_runs FINAL WHERE incident_id IN {i:Array(UInt64)}"
        " ORDER BY created_at", parameters={"i": incident_ids})
    steps = client.query(
        "SELECT run_id, step, argMax(position, written) AS position, argMax(action, written),"
        " argMax(state, written), argMax(error, written) FROM playbook_step_log"
        " WHERE incident_id IN {i:Array(UInt64)} GROUP BY run_id, step ORDER BY run_id, position",
        parameters={"i": incident_ids})
    by_run: dict[str, list[dict[str, Any]]] = {}
    for run_id, step, _position, action, state, error in steps.result_rows:
        by_run.setdefault(run_id, []).append({"step": step, "action": action, "state": state, "error": error})
    found: dict[int, list[dict[str, Any]]] = {}
    for run_id, incident_id, playbook, state in runs.result_rows:
        found.setdefault(int(incident_id), []).append(
            {"run_id": run_id, "playbook": playbook, "state": state, "steps": by_run.get(run_id, [])})
    return found
