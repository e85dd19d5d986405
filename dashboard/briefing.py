"""The incident page's four answers, in words: what happened, how bad, what was done, what next.

The console's views only lay these out; everything an analyst reads at the top of an
incident is decided here, from the store, and tested without Streamlit. Explanations use
the feature registry's words and units, each against its baseline; pages say what really
happened to them (a page step that "succeeded" may have reached nobody); containment says
what was revoked or suspended, when, and what it has denied since; a grant's window of
exposure says how long the data stayed readable through it and who read it meanwhile.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from clickhouse_connect.driver.client import Client

from dashboard import style
from detector.groups import membership_edges, reachable_members
from detector.incidents import grant_of
from detector.triage import READ_ACTIONS
from features.registry import BY_NAME
from features.times import from_epoch_ms, ms_param, to_epoch_ms

# --------------------------------------------------------------------------- why it scored


@dataclass(frozen=True)
class Reason:
    """One piece of evidence, in words.

    Attributes
    ----------
    feature : str
        The registry (or rule column) name, for people who want it.
    label : str
        The registry's words for it.
    value : str
        The value as people read it ("800", "41 GB", "yes").
    baseline : str
        What is normal, in the same unit ("" when no baseline applies).
    sentence : str
        The whole line: "people newly able to read the resource: 800 (3 could before)".
    number : float or None
        The value as a number (for a chart), ``None`` when it is not numeric.
    normal : float or None
        The baseline as a number, ``None`` when there is none.
    weight : float or None
        The feature's share of the anomaly (shown only when the weights differ: a policy
        decided by one event weighs nothing).
    """

    feature: str
    label: str
    value: str
    baseline: str
    sentence: str
    number: float | None = None
    normal: float | None = None
    weight: float | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(float(value)):
        return float(value)
    return None


_SENSITIVITY = {0: "public", 1: "internal", 2: "confidential", 3: "restricted"}


def _shown(value: Any, unit: str) -> str:
    """A value in its registry unit, as people read it."""
    number = _number(value)
    if number is None:
        return str(value)
    if unit == "bytes":
        return style.human_bytes(number)
    if unit == "flag":
        return "yes" if number else "no"
    if unit == "rank":
        return _SENSITIVITY.get(int(number), style.human_count(number))
    if unit == "share":
        return f"{number:.0%}"
    return style.human_count(number)


def reasons(explanation: Sequence[dict[str, Any]]) -> list[Reason]:
    """The features of an incident's explanation as sentences, each against its baseline.

    Parameters
    ----------
    explanation : sequence of dict
        The incident's ``explanation`` (``feature``/``value``/``baseline``/``weight``
        entries; rule and severity entries are skipped here).
    """
    found = []
    for item in explanation:
        if not isinstance(item, dict) or "feature" not in item:
            continue
        name = str(item["feature"])
        registered = BY_NAME.get(name)
        unit = registered.unit if registered else ""
        label = str(item.get("description") or (registered.description if registered else "")
                    or name.replace("_", " "))
        value = _shown(item.get("value"), unit)
        raw_baseline = item.get("baseline")
        normal = _number(raw_baseline) if raw_baseline not in ("", None) else None
        baseline = _shown(raw_baseline, unit) if normal is not None and unit not in ("flag", "rank") else ""
        if normal is not None and unit not in ("flag", "rank"):
            number = _number(item.get("value"))
            ratio = number / normal if number is not None and normal > 0 else 0.0
            times = f", {ratio:,.0f}× normal" if ratio >= 2 else ""
            sentence = f"{label}: {value}; normally {baseline}{times}"
        else:
            sentence = f"{label}: {value}"
        weight = _number(item.get("weight"))
        found.append(Reason(name, label, value, baseline, sentence, _number(item.get("value")), normal,
                            weight if weight else None))
    weights = {r.weight for r in found}
    if len(weights) <= 1:  # equal (or no) weights say nothing: not shown
        found = [Reason(r.feature, r.label, r.value, r.baseline, r.sentence, r.number, r.normal, None) for r in found]
    return found


def chart_rows(found: Iterable[Reason]) -> list[dict[str, Any]]:
    """Rows for a chart on a scale that shows every bar: each value as a multiple of its baseline.

    Only reasons with a positive baseline can be put on that scale; the others are read
    in the sentences.
    """
    return [{"evidence": r.label, "times normal": round(r.number / r.normal, 2)}
            for r in found if r.number is not None and r.normal]


# --------------------------------------------------------------------------- how bad

_POINT_WORDS = {
    "evidence": "the evidence", "policy": "a policy violation", "data": "the data's sensitivity",
    "blast_radius": "the blast radius", "actor": "an AI actor", "detector": "the detector",
    "nothing_taken": "nothing sizeable taken", "accumulated_risk": "risk accumulated by the principal",
}


def severity_points(explanation: Sequence[dict[str, Any]]) -> dict[str, int]:
    """The severity points recorded in an explanation (empty when none were)."""
    for item in explanation:
        if isinstance(item, dict) and isinstance(item.get("severity_points"), dict):
            return {str(k): int(v) for k, v in item["severity_points"].items()}
    return {}


def how_bad(incident: dict[str, Any]) -> str:
    """Severity, what it means, and the points as a sentence."""
    meaning = style.SEVERITY_MEANING.get(incident["severity"], "")
    points = severity_points(incident.get("explanation") or [])
    head = f"{incident['severity']} ({meaning})" if meaning else str(incident["severity"])
    if not points:
        return f"{head}."
    parts = [f"{'+' if v > 0 else '−'}{abs(v)} for {_POINT_WORDS.get(k, k.replace('_', ' '))}"
             for k, v in points.items() if v]
    total = sum(points.values())
    return f"{head}: {style.plural(total, 'point')} — " + ", ".join(parts) + "."


# --------------------------------------------------------------------------- what happened


def catalogue(client: Client, resources: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The catalogue rows of some resources (kind, sensitivity, owner, categories)."""
    if not resources:
        return {}
    result = client.query(
        "SELECT resource, kind, sensitivity, owner, categories FROM resources FINAL"
        " WHERE resource IN {r:Array(String)}", parameters={"r": list(resources)[:200]})
    return {row[0]: dict(zip(result.column_names, row)) for row in result.result_rows}


def what_happened(incident: dict[str, Any], rows: dict[str, dict[str, Any]]) -> str:
    """Who did what to which data, in one sentence (the title says the rest)."""
    actors = list(incident.get("principals") or [])
    who = ", ".join(actors[:3]) + (f" and {len(actors) - 3:,} more" if len(actors) > 3 else "") or "no principal"
    data = []
    for resource in list(incident.get("resources") or [])[:3]:
        row = rows.get(resource)
        data.append(f"{resource} ({row['sensitivity']} {row['kind']})" if row else f"{resource} (not catalogued)")
    more = len(incident.get("resources") or []) - len(data)
    touched = ", ".join(data) + (f" and {more:,} more" if more > 0 else "") if data else "no catalogued data"
    return f"By {who}, on {touched}."


# --------------------------------------------------------------------------- what was done

_PAGE_WORDS = {
    "sent": "delivered", "unrouted": "unrouted — no channel configured, nobody was paged",
    "deferred": "deferred to working hours", "failed": "failed, retrying", "cancelled": "cancelled",
    "sending": "being delivered",
}


@dataclass(frozen=True)
class PageOutcome:
    """What really happened to one page (or escalation) of an incident."""

    severity: str
    level: int
    channel: str
    state: str
    at: datetime
    due_at: datetime | None
    error: str

    def words(self, now: datetime, zone: tzinfo) -> str:
        """``"SEV1 page: delivered to oncall at 07:37 (3 min ago)"``."""
        what = "page" if self.level == 0 else f"escalation {self.level}"
        outcome = _PAGE_WORDS.get(self.state, self.state)
        target = f" to {self.channel}" if self.channel and self.state == "sent" else ""
        due = (f" (goes out {style.when(self.due_at, now, zone)})" if self.state == "deferred" and self.due_at
               else f" (next try {style.when(self.due_at, now, zone)})" if self.state == "failed" and self.due_at
               else "")
        why = f": {self.error}" if self.error and self.state in ("failed", "cancelled") else ""
        return f"{self.severity} {what}: {outcome}{target}{due}{why} · {style.when(self.at, now, zone)}"


def pages_in_words(pages: Sequence[PageOutcome]) -> str:
    """What a ``page`` step really did, for the tables that would otherwise say "succeeded"."""
    if not pages:
        return "no page was due"
    return "; ".join(f"{p.severity} {'page' if p.level == 0 else f'escalation {p.level}'}: "
                     f"{_PAGE_WORDS.get(p.state, p.state)}" for p in pages)


def timeline_rows(events: Sequence[dict[str, Any]], pages: Sequence[PageOutcome], now: datetime,
                  zone: tzinfo) -> list[dict[str, str]]:
    """The audit trail and the page log as one table, newest first, in words.

    A ``page`` step's "succeeded" only means the step ran: its row says what happened to
    the page, and each page is a row of its own.
    """
    rows = []
    for order, event in enumerate(events):
        what = str(event["reason"])
        details = event.get("details") or {}
        page_step = event["action"] == "playbook_step" and details.get("action") == "page"
        if page_step and details.get("state") == "succeeded":
            what = f"{what.rsplit(':', 1)[0]}: ran — {pages_in_words(pages)}"
        elif event["action"] == "opened" and not what:
            what = f"opened at {details.get('severity', '?')} by {event.get('alert_id', '').split('|')[0] or 'hand'}"
        elif event["action"] == "updated" and not what:
            rose = details.get("severity_from") != details.get("severity_to")
            what = (f"a new alert raised it from {details.get('severity_from')} to {details.get('severity_to')}"
                    if rose else "a new alert added evidence")
        status = f"{event['from_status'] or '—'} → {event['to_status']}"
        rows.append((event["at"], order, {"When": style.when(event["at"], now, zone), "Who": event["actor"],
                                          "Did": str(event["action"]).replace("_", " "), "Status": status,
                                          "What": what}))
    for page in pages:
        rows.append((page.at, len(rows), {"When": style.when(page.at, now, zone), "Who": "blastwall", "Did": "page",
                                          "Status": "", "What": page.words(now, zone).rsplit(" · ", 1)[0]}))
    return [row for _, _, row in sorted(rows, key=lambda item: (item[0], item[1]), reverse=True)]


def page_outcomes(client: Client, incident_id: int) -> list[PageOutcome]:
    """The latest state of each page slot of an incident, in the order they were first written."""
    result = client.query(
        "SELECT severity, level, channel, argMax(state, seq), toUnixTimestamp64Milli(argMax(at, seq)),"
        " toUnixTimestamp64Milli(argMax(due_at, seq)), argMax(error, seq), min(seq) AS first"
        " FROM pages WHERE incident_id = {id:UInt64} GROUP BY severity, level, channel ORDER BY first",
        parameters={"id": incident_id})
    return [PageOutcome(sev, int(level), channel, state, from_epoch_ms(at), from_epoch_ms(due) if due else None,
                        error) for sev, level, channel, state, at, due, error, _ in result.result_rows]


@dataclass(frozen=True)
class Done:
    """One thing blastwall (or a person) already did about an incident, in words."""

    at: datetime
    sentence: str
    in_force: bool | None = None  # a control: still in force?


def _denied(client: Client, where: str, parameters: dict[str, Any], since: datetime, until: datetime | None) -> int:
    """Denied access-log rows matching ``where`` while a control held (``until`` None: still holds)."""
    bounds = " AND event_time >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')"
    if until is not None:
        bounds += " AND event_time <= fromUnixTimestamp64Milli({until:Int64}, 'UTC')"
    return int(client.query(
        f"SELECT count() FROM access_log WHERE status = 'denied' AND {where}{bounds}",
        parameters={**parameters, "since": to_epoch_ms(since),
                    "until": to_epoch_ms(until) if until is not None else 0}).result_rows[0][0])


def denied_by_control(client: Client, kind: str, target: str, since: datetime, until: datetime | None) -> int:
    """What a control has denied while it held: reads of a revoked grant's resource by those the
    grant reached, any action on a quarantined resource, any action of a suspended identity."""
    if kind == "grant" and " -> " in target:
        resource, grantee = target.rsplit(" -> ", 1)
        reached = [member for member, _ in reachable_members(membership_edges(client), grantee)]
        return _denied(client, "resource = {r:String} AND action IN {reads:Array(String)}"
                       " AND principal IN {who:Array(String)}",
                       {"r": resource, "reads": list(READ_ACTIONS), "who": reached}, since, until)
    if kind == "resource":
        return _denied(client, "(resource = {r:String} OR has(related, {r:String}))", {"r": target}, since, until)
    if kind == "identity":
        return _denied(client, "principal = {p:String}", {"p": target}, since, until)
    return 0


def _steps(client: Client, incident_id: int) -> list[dict[str, Any]]:
    """The last record of each playbook step of an incident, in order."""
    result = client.query(
        "SELECT run_id, step, argMax(action, written) AS action, argMax(state, written) AS state,"
        " argMax(params, written) AS params, argMax(result, written) AS result,"
        " toUnixTimestamp64Milli(argMax(at, written)) AS at_ms, min(written) AS first"
        " FROM playbook_step_log WHERE incident_id = {id:UInt64} GROUP BY run_id, step ORDER BY first",
        parameters={"id": incident_id})
    return [dict(zip(result.column_names, row)) for row in result.result_rows]


def what_was_done(client: Client, incident: dict[str, Any], pages: Sequence[PageOutcome], now: datetime,
                  zone: tzinfo) -> list[Done]:
    """Each containment step, notification and page of an incident in plain words, oldest first.

    ``pages`` is :func:`page_outcomes` of the incident (the page reads it once for several uses).
    """
    incident_id = int(incident["id"])
    done: list[Done] = []
    controls = client.query(
        "SELECT kind, target, argMax(in_force, written) AS force, toUnixTimestamp64Milli(minIf(at, in_force = 1)),"
        " toUnixTimestamp64Milli(argMax(at, written)) FROM control_log WHERE incident_id = {id:UInt64}"
        " GROUP BY kind, target ORDER BY min(written)", parameters={"id": incident_id}).result_rows
    for kind, target, force, first_ms, last_ms in controls:
        started, last = from_epoch_ms(first_ms), from_epoch_ms(last_ms)
        done.append(Done(started, _control_sentence(client, kind, target, bool(force), started, last, now, zone),
                         bool(force)))
    for step in _steps(client, incident_id):
        if step["state"] != "succeeded" or step["action"] not in ("snapshot_evidence", "notify", "webhook"):
            continue
        result = json.loads(step["result"] or "{}")
        at = from_epoch_ms(step["at_ms"])
        when = style.when(at, now, zone)
        if step["action"] == "snapshot_evidence":
            readers = len(result.get("readers") or [])
            done.append(Done(at, f"kept the evidence: {style.plural(int(result.get('rows', 0)), 'event')} of "
                                 f"{style.plural(readers, 'reader')} copied at {when}"))
        elif step["action"] == "notify":
            if result.get("delivered"):
                done.append(Done(at, f"notified {', '.join(result['delivered'])} at {when}"))
            missing = result.get("owners_without_contact") or []
            if missing or result.get("unrouted"):
                whom = f"the owner {', '.join(missing)}" if missing else "the owner"
                done.append(Done(at, f"could not notify {whom}: no contact channel is configured ({when})"))
        else:
            done.append(Done(at, f"called the {step['step']} webhook (status {result.get('status', '?')}) at {when}"))
    for page in pages:
        done.append(Done(page.at, page.words(now, zone)))
    done.sort(key=lambda item: item.at)
    return done


def _control_sentence(client: Client, kind: str, target: str, in_force: bool, started: datetime, last: datetime,
                      now: datetime, zone: tzinfo) -> str:
    if kind == "grant" and " -> " in target:
        resource, grantee = target.rsplit(" -> ", 1)
        head, what = f"revoked the grant of {resource} to {grantee}", "read"
    elif kind == "identity":
        head, what = f"suspended {target}", "action"
    elif kind == "resource":
        head, what = f"quarantined {target}", "access"
    elif kind == "training_run":
        head, what = f"paused the training run {target}", ""
    else:
        head, what = f"applied {kind} control on {target}", ""
    sentence = f"{head} at {style.when(started, now, zone)}"
    if what:
        denied = denied_by_control(client, kind, target, started, None if in_force else last)
        sentence += f"; {style.plural(denied, f'{what} denied', f'{what}s denied')} since"
    if not in_force:
        sentence += f" — rolled back {style.when(last, now, zone)}"
    return sentence


# --------------------------------------------------------------------------- window of exposure

#: How many of the window's readers are named (the most reads first).
TOP_READERS = 3


@dataclass(frozen=True)
class ExposureWindow:
    """How long a grant left its data readable, and what was read through it meanwhile.

    Attributes
    ----------
    resource, grantee : str
        The grant: ``resource`` granted to ``grantee`` (a group or a principal).
    granter : str
        Who granted it (the grant event's principal).
    granted_at : datetime
        When (the grant event's time, UTC).
    revoked_at : datetime or None
        When it stopped: a containment control on the grant or a revoke event, whichever
        came first; ``None`` while it holds.
    reads : int
        Successful reads of the resource in the window by those the grant reached (the
        granter's own reads excluded).
    readers : int
        How many principals made them.
    rows, bytes : int
        Records and bytes they read.
    top_readers : list of (str, int)
        The first readers by reads (most first, then by name), at most :data:`TOP_READERS`.
    """

    resource: str
    grantee: str
    granter: str
    granted_at: datetime
    revoked_at: datetime | None
    reads: int
    readers: int
    rows: int
    bytes: int
    top_readers: list[tuple[str, int]] = field(default_factory=list)

    def length(self, now: datetime) -> timedelta:
        """Grant to revoke, or grant to ``now`` while the window is still open."""
        return (self.revoked_at or now) - self.granted_at

    def words(self, now: datetime, zone: tzinfo) -> str:
        """The window in one sentence (the caller labels it "Window of exposure").

        ``"2 min 14 s — granted by ana at 07:31:12 UTC, revoked at 07:33:26 UTC; 18 reads by
        11 people in between (3.2 MB, 900 records); most by bo (5), cy (3), dee (2)."``
        """
        span = style.duration(self.length(now))
        granted = f"granted by {self.granter} at {_clock_seconds(self.granted_at, now, zone)}"
        if self.revoked_at is None:
            head, during = f"still open, {span} so far — {granted}, not revoked yet", "so far"
        else:
            head, during = f"{span} — {granted}, revoked at {_clock_seconds(self.revoked_at, now, zone)}", "in between"
        if not self.reads:
            return f"{head}; nobody the grant reached read it {during}."
        sentence = (f"{head}; {style.plural(self.reads, 'read')} by {style.plural(self.readers, 'person', 'people')}"
                    f" {during} ({style.human_bytes(self.bytes)}, {style.plural(self.rows, 'record')})")
        most = ", ".join(f"{who} ({style.human_count(n)})" for who, n in self.top_readers)
        return f"{sentence}; most by {most}." if most else f"{sentence}."


def _clock_seconds(moment: datetime, now: datetime, zone: tzinfo) -> str:
    """:func:`dashboard.style.clock` to the second (``"07:31:12 UTC"``): a window can be minutes long."""
    local = moment.astimezone(zone)
    return style.clock(moment, now, zone).replace(f"{local:%H:%M}", f"{local:%H:%M:%S}", 1)


def exposure_window(client: Client, incident: dict[str, Any], now: datetime) -> ExposureWindow | None:
    """The window of exposure of a grant incident: from the grant to its revoke (or ``now``).

    Parameters
    ----------
    client : Client
        The store.
    incident : dict
        The incident (:func:`detector.incidents.get_incident`); its grant is read with
        :func:`detector.incidents.grant_of`.
    now : datetime
        The end of a window still open.

    Returns
    -------
    ExposureWindow or None
        ``None`` when the incident is not about a grant, or the grant event is not in the
        access log. The grant is the newest successful ``grant`` of the resource to the
        grantee at or before the incident's last evidence; it ends at the first containment
        control on it (``control_log``, kind ``grant``, target ``RESOURCE -> GRANTEE``, put in
        force after the grant) or the first successful ``revoke`` of it after the grant,
        whichever is first. The reads counted are successful read actions of the resource in
        ``[grant, end)`` by the principals the grantee reaches through nested groups (now),
        the granter excepted.
    """
    grant = grant_of(incident)
    if grant is None:
        return None
    resource, grantee = grant["resource"], grant["grantee"]
    # Hour bounds on the log's sorting key (toStartOfHour(event_time)): each read scans its hours only.
    def hours(lo: str, hi: str | None = None) -> str:
        upper = f" AND toStartOfHour(event_time) <= toStartOfHour({ms_param(hi)})" if hi else ""
        return f" AND toStartOfHour(event_time) >= toStartOfHour({ms_param(lo)}){upper}"

    # The grant is at most a dedup window (a day) before the incident's first evidence.
    params: dict[str, Any] = {"r": resource, "g": grantee, "last": to_epoch_ms(incident["last_seen"]),
                              "since": to_epoch_ms(incident["first_seen"] - timedelta(days=1))}
    found = client.query(
        "SELECT toUnixTimestamp64Milli(event_time), principal FROM access_log WHERE action = 'grant'"
        " AND status = 'ok' AND resource = {r:String} AND grantee = {g:String}"
        f" AND event_time <= {ms_param('last')}{hours('since', 'last')}"
        " ORDER BY event_time DESC, event_id DESC LIMIT 1",
        parameters=params).result_rows
    if not found:
        return None
    granted_ms, granter = int(found[0][0]), str(found[0][1])
    params.update(granted=granted_ms, target=f"{resource} -> {grantee}")
    by_control, by_event = client.query(
        "SELECT (SELECT minOrNull(toUnixTimestamp64Milli(at)) FROM control_log WHERE kind = 'grant'"
        f"  AND target = {{target:String}} AND in_force = 1 AND at > {ms_param('granted')}),"
        " (SELECT minOrNull(toUnixTimestamp64Milli(event_time)) FROM access_log WHERE action = 'revoke'"
        "  AND status = 'ok' AND resource = {r:String} AND grantee = {g:String}"
        f"  AND event_time > {ms_param('granted')}{hours('granted')})",
        parameters=params).result_rows[0]
    ends = [int(ms) for ms in (by_control, by_event) if ms is not None]
    revoked_ms = min(ends) if ends else None
    reached = [member for member, _ in reachable_members(membership_edges(client), grantee)]
    params.update(reads=list(READ_ACTIONS), who=reached, granter=granter, top=TOP_READERS,
                  end=revoked_ms if revoked_ms is not None else to_epoch_ms(now))
    reads, readers, rows, size, top = client.query(
        "SELECT sum(n), count(), sum(r), sum(b),"
        " arraySlice(arraySort(x -> (-toInt64(x.2), x.1), groupArray((principal, n))), 1, {top:UInt32})"
        " FROM (SELECT principal, count() AS n, sum(rows) AS r, sum(bytes) AS b FROM access_log"
        "  WHERE resource = {r:String} AND action IN {reads:Array(String)} AND status = 'ok'"
        "  AND principal IN {who:Array(String)} AND principal != {granter:String}"
        f"  AND event_time >= {ms_param('granted')} AND event_time < {ms_param('end')}{hours('granted', 'end')}"
        " GROUP BY principal)",
        parameters=params).result_rows[0]
    return ExposureWindow(resource, grantee, granter, from_epoch_ms(granted_ms),
                          from_epoch_ms(revoked_ms) if revoked_ms is not None else None, int(reads), int(readers),
                          int(rows), int(size), [(str(who), int(n)) for who, n in top])


# --------------------------------------------------------------------------- what next


@dataclass(frozen=True)
class Pending:
    """A playbook step waiting for a person: its run, step and what it would do."""

    run_id: str
    playbook: str
    step: str
    action: str
    state: str


@dataclass(frozen=True)
class NextSteps:
    """What to do next: the matching playbooks' runbooks and the steps waiting for approval."""

    runbooks: dict[str, list[str]] = field(default_factory=dict)
    pending: list[Pending] = field(default_factory=list)


def can_roll_back(runs: Iterable[dict[str, Any]]) -> bool:
    """Whether a rollback would undo anything: some run of the incident is not rolled back yet."""
    return any(run["state"] not in ("rolled_back", "rollback_failed") for run in runs)


def what_next(matching: Iterable[Any], runs: Iterable[dict[str, Any]], ref: str = "INCIDENT") -> NextSteps:
    """Runbooks of the matching playbooks (and of those that ran), and every step awaiting a decision.

    A runbook's ``INCIDENT`` and ``RUN`` placeholders become this incident's reference and its
    run of that playbook, so a command can be copied as it is.
    """
    runs = list(runs)
    books = {p.id: [re.sub(r"\bRUN\b", f"{ref}.{p.id}", re.sub(r"\bINCIDENT\b", ref, line))
                    for line in p.spec.runbook] for p in matching}
    pending = [Pending(run["run_id"], run["playbook"], step["step"], step["action"], step["state"])
               for run in runs for step in run["steps"] if step["state"] in ("awaiting_approval", "interrupted")]
    return NextSteps(books, pending)
