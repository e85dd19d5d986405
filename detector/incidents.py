"""Incidents: alerts deduplicated and grouped into incidents, their lifecycle and audit trail.

An :class:`Alert` (one detector, one entity, one window) is applied once by
:func:`record_alert`: it opens an incident, updates the open incident about the same
detector and entity within the dedup window, is dropped as a duplicate (its
``alert_id`` was already applied: replaying a window changes nothing), or is
suppressed by an earlier false-positive verdict. Alerts sharing a ``group_key`` (a
grant, then the exposure it caused) share the ``group_id`` of the first open incident
of the group.

Lifecycle (docs/DESIGN.md, "Incidents")::

    open -> acknowledged -> contained -> resolved
                            contained -> acknowledged (release: containment rolled back)
    any non-final ------------------------> false_positive (reason required; suppresses)

Tables (all state in ClickHouse):

* ``incidents``: current state, ``ReplacingMergeTree(updated_at)`` keyed by ``id``;
  read with ``FINAL``. ``updated_at`` is strictly increasing per incident so the
  newest write always wins.
* ``incident_events``: the append-only audit trail (who, when, what, why).
* ``alerts_seen``: every applied alert id and its outcome (idempotency, counts).
* ``suppressions``: ``(detector, entity_key)`` silenced over ``[since, until)``.

Each incident has two names: its ``id`` (a hash of the alert that opened it, the same in
every store that replays the same data) and its ``ref``, ``INC-n`` for people, numbered
1, 2, 3… in the order incidents open in this store (:func:`resolve_incident` reads either).

Every time travels as epoch milliseconds, so no time zone is interpreted on either side.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from clickhouse_connect.driver.client import Client

from detector.severity import SEVERITIES, Severity, severity_rank
from features.times import from_epoch_ms, ms_param, to_epoch_ms

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE IF NOT EXISTS incidents (
    id UInt64, detector LowCardinality(String), entity LowCardinality(String), entity_key String,
    title String, severity LowCardinality(String), status LowCardinality(String), score Float64,
    principals Array(String), resources Array(String),
    first_seen DateTime64(3, 'UTC'), last_seen DateTime64(3, 'UTC'), detected_at DateTime64(3, 'UTC'),
    explanation String, group_key String, group_id UInt64, assignee String,
    opened_by String, alerts UInt32,
    created_at DateTime64(3, 'UTC'), updated_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at) ORDER BY id""",
        # seq orders events of one incident as they were written, whatever their `at`.
        """CREATE TABLE IF NOT EXISTS incident_events (
    incident_id UInt64, seq UInt32, at DateTime64(3, 'UTC'), actor String,
    action LowCardinality(String), from_status LowCardinality(String), to_status LowCardinality(String),
    reason String, details String, alert_id String
) ENGINE = MergeTree ORDER BY (incident_id, seq)""",
        """CREATE TABLE IF NOT EXISTS alerts_seen (
    alert_id String, detector LowCardinality(String), entity_key String,
    outcome LowCardinality(String), incident_id UInt64, at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY alert_id""",
        """CREATE TABLE IF NOT EXISTS suppressions (
    detector LowCardinality(String), entity_key String, since DateTime64(3, 'UTC'),
    until DateTime64(3, 'UTC'), reason String, incident_id UInt64, created_by String,
    created_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree ORDER BY (detector, entity_key, until)""",
    ]),
    # A short reference for people (INC-n), numbered per store in the order incidents
    # opened. Existing incidents get theirs in a new version (updated_at + 1 ms, so it wins
    # under FINAL); only rows still without one are numbered, so running it again is harmless.
    (2, [
        "ALTER TABLE incidents ADD COLUMN IF NOT EXISTS ref UInt64 DEFAULT 0",
        # The aliases differ from the column names: ClickHouse would substitute them into WHERE.
        """INSERT INTO incidents (id, detector, entity, entity_key, title, severity, status, score, principals,
    resources, first_seen, last_seen, detected_at, explanation, group_key, group_id, assignee, opened_by, alerts,
    created_at, updated_at, ref)
SELECT id, detector, entity, entity_key, title, severity, status, score, principals, resources, first_seen,
    last_seen, detected_at, explanation, group_key, group_id, assignee, opened_by, alerts, created_at,
    updated_at + toIntervalMillisecond(1) AS next_version,
    (SELECT max(ref) FROM incidents) + row_number() OVER (ORDER BY created_at, id) AS next_ref
FROM incidents FINAL WHERE ref = 0""",
    ]),
]

STATUSES = ("open", "acknowledged", "contained", "resolved", "false_positive")
FINAL_STATUSES = ("resolved", "false_positive")
ACTIONS = ("acknowledge", "assign", "note", "contain", "release", "resolve", "false_positive")
#: Which statuses each status-changing action may start from, and where it leads.
_MOVES: dict[str, tuple[tuple[str, ...], str]] = {
    "acknowledge": (("open",), "acknowledged"),
    "contain": (("open", "acknowledged"), "contained"),
    # Containment lifted (a playbook's rollback): back in an analyst's hands.
    "release": (("contained",), "acknowledged"),
    "resolve": (("open", "acknowledged", "contained"), "resolved"),
    "false_positive": (("open", "acknowledged", "contained"), "false_positive"),
}
SYSTEM_ACTOR = "blastwall"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: ``INC-12``, ``inc-12``, ``INC 12``: the short reference as people type it.
_REF_PATTERN = re.compile(r"INC\s*-?\s*(\d{1,19})", re.IGNORECASE)


def allowed_actions(status: str) -> tuple[str, ...]:
    """The lifecycle actions a person may take on an incident in ``status`` (what the console offers).

    ``release`` is left out: it is containment being rolled back, which the playbooks do.
    """
    moves = tuple(a for a, (sources, _) in _MOVES.items() if status in sources and a != "release")
    return moves + (("assign", "note") if status not in FINAL_STATUSES else ("note",))


class IncidentError(Exception):
    """An incident operation that cannot be done (unknown incident, illegal transition, …)."""


@dataclass(frozen=True)
class Alert:
    """One detector's finding about one entity in one window.

    Attributes
    ----------
    alert_id : str
        Deterministic (detector + entity key + window end), so a replay yields the same id.
    detector : str
        Detector family (``permission_fanout``, ``bulk_export``, …).
    entity : str
        Entity kind (``principal``, ``grant``, ``resource``, ``training_run``).
    entity_key : str
        The entity's key, e.g. a principal name.
    title : str
        One line for an analyst.
    severity : Severity
        ``SEV1``…``SEV4``.
    score : float
        In [0, 1].
    principals, resources : tuple of str
        Who and what is involved.
    first_seen, last_seen : datetime
        Event times of the evidence (timezone-aware, or naive UTC).
    detected_at : datetime
        When it was detected (in replay: the end of the step).
    explanation : list of dict
        ``{feature, value, baseline, weight}`` for the features that drove it.
    group_key : str, optional
        Alerts sharing it join one incident group (e.g. the granted resource).
    provisional : bool
        Raised by the fast path before its step is over (:mod:`detector.fastpath`): the
        step loop's alert of the same id later folds into the incident it opened
        (enriches it) instead of being skipped as a duplicate.
    """

    alert_id: str
    detector: str
    entity: str
    entity_key: str
    title: str
    severity: Severity
    score: float
    principals: tuple[str, ...]
    resources: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    detected_at: datetime
    explanation: list[dict[str, Any]] = field(default_factory=list)
    group_key: str | None = None
    provisional: bool = False

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score must be within [0, 1], got {self.score}")
        if not self.alert_id:
            raise ValueError("alert_id must not be empty")


@dataclass(frozen=True)
class RecordOutcome:
    """What :func:`record_alert` did with one alert.

    Attributes
    ----------
    outcome : str
        ``opened``, ``updated``, ``duplicate`` or ``suppressed``.
    incident_id : int
        The incident opened or updated (for ``duplicate``: the one it was applied to; for
        ``suppressed``: the false-positive incident whose verdict suppressed it).
    severity_rose : bool
        An update raised the incident's severity (paging pages again only then).
    group_id : int
        The incident's group (0 when suppressed).
    """

    outcome: Literal["opened", "updated", "duplicate", "suppressed"]
    incident_id: int
    severity_rose: bool = False
    group_id: int = 0


def incident_id_for(alert_id: str) -> int:
    """The incident id an alert opens: a stable 63-bit hash, so replays agree (and fits Int64)."""
    digest = hashlib.blake2b(alert_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 63) - 1)


def format_ref(ref: int) -> str:
    """An incident's short reference as people see it: ``INC-12``."""
    return f"INC-{int(ref)}"


def incident_label(incident: dict[str, Any]) -> str:
    """How a message names an incident: its reference, or its id when it has none (an inline test's)."""
    return incident.get("ref") or str(incident["id"])


def resolve_incident(client: Client, text: str) -> int:
    """The incident id a person typed: ``INC-12`` (any case, spaces trimmed) or a numeric id.

    A reference is looked up in this store; a numeric id is returned as it is (whoever uses
    it says so when no such incident exists, as for any id).

    Raises
    ------
    IncidentError
        Neither form, or no incident has that reference here (one line naming the newest).
    """
    given = str(text).strip()
    if given.isascii() and given.isdigit() and int(given) < 2**64:
        return int(given)
    match = _REF_PATTERN.fullmatch(given)
    if match is None:
        raise IncidentError(f"{given!r} is not an incident reference (like INC-12, or a numeric incident id)")
    ref = int(match.group(1))
    rows = client.query(
        "SELECT id FROM incidents FINAL WHERE ref = {ref:UInt64} ORDER BY id LIMIT 2", parameters={"ref": ref}
    ).result_rows
    if len(rows) > 1:  # two writers against one server took the same number: never guess which
        raise IncidentError(f"{format_ref(ref)} names two incidents ({rows[0][0]} and {rows[1][0]});"
                            " use the numeric id")
    if rows:
        return int(rows[0][0])
    newest = int(client.query("SELECT max(ref) FROM incidents").result_rows[0][0])
    hint = f"the newest is {format_ref(newest)}" if newest else "it holds no incidents"
    raise IncidentError(f"no incident {format_ref(ref)} in this store ({hint})")


def incident_refs(client: Client, incident_ids: list[int]) -> dict[int, str]:
    """The references of these incidents (``{id: "INC-12"}``); ids not found (or without one) are left out."""
    if not incident_ids:
        return {}
    rows = client.query("SELECT id, ref FROM incidents FINAL WHERE id IN {ids:Array(UInt64)} AND ref > 0",
                        parameters={"ids": [int(i) for i in incident_ids]}).result_rows
    return {int(i): format_ref(r) for i, r in rows}


def _row_label(row: dict[str, Any]) -> str:
    """:func:`incident_label` of a stored row (its ``ref`` still a number)."""
    return format_ref(row["ref"]) if row["ref"] else str(row["id"])


def _now_ms() -> int:
    return to_epoch_ms(datetime.now(UTC))


_INCIDENT_COLUMNS = (
    "id", "detector", "entity", "entity_key", "title", "severity", "status", "score", "principals",
    "resources", "first_seen", "last_seen", "detected_at", "explanation", "group_key", "group_id",
    "assignee", "opened_by", "alerts", "created_at", "updated_at", "ref",
)
_INCIDENT_TYPES = {
    "id": "UInt64", "detector": "String", "entity": "String", "entity_key": "String", "title": "String",
    "severity": "String", "status": "String", "score": "Float64", "principals": "Array(String)",
    "resources": "Array(String)", "explanation": "String", "group_key": "String", "group_id": "UInt64",
    "assignee": "String", "opened_by": "String", "alerts": "UInt32", "ref": "UInt64",
}
_TIME_COLUMNS = ("first_seen", "last_seen", "detected_at", "created_at", "updated_at")
_SELECT_INCIDENT = ", ".join(
    # Aliases differ from the column names: ClickHouse would substitute an alias named like
    # a column into WHERE/ORDER BY too.
    f"toUnixTimestamp64Milli({c}) AS {c}_ms" if c in _TIME_COLUMNS else c for c in _INCIDENT_COLUMNS
)


def _write_incident(client: Client, row: dict[str, Any]) -> None:
    """Insert one version of an incident (times in epoch ms); the newest ``updated_at`` wins."""
    values = ", ".join(
        ms_param(c) if c in _TIME_COLUMNS else f"{{{c}:{_INCIDENT_TYPES[c]}}}" for c in _INCIDENT_COLUMNS
    )
    client.command(
        f"INSERT INTO incidents ({', '.join(_INCIDENT_COLUMNS)}) SELECT {values}",
        parameters={c: row[c] for c in _INCIDENT_COLUMNS},
    )


def _read_rows(client: Client, where: str, parameters: dict[str, Any], tail: str = "") -> list[dict[str, Any]]:
    """Current incident rows (raw: times in epoch ms) matching a WHERE clause."""
    result = client.query(
        f"SELECT {_SELECT_INCIDENT} FROM incidents FINAL WHERE {where} {tail}", parameters=parameters
    )
    names = [n.removesuffix("_ms") for n in result.column_names]
    return [dict(zip(names, r)) for r in result.result_rows]


def _raw_incident(client: Client, incident_id: int) -> dict[str, Any] | None:
    rows = _read_rows(client, "id = {id:UInt64}", {"id": incident_id})
    return rows[0] if rows else None


def _append_event(
    client: Client, incident_id: int, at_ms: int, actor: str, action: str, from_status: str,
    to_status: str, reason: str = "", details: dict[str, Any] | None = None, alert_id: str = "",
) -> None:
    # One writer per store (the embedded lock / the scheduler's max_instances=1), so
    # count()+1 is a safe sequence number.
    seq = client.query(
        "SELECT count() FROM incident_events WHERE incident_id = {id:UInt64}", parameters={"id": incident_id}
    ).result_rows[0][0] + 1
    client.command(
        "INSERT INTO incident_events (incident_id, seq, at, actor, action, from_status, to_status, reason,"
        " details, alert_id) SELECT {id:UInt64}, {seq:UInt32}, " + ms_param("at") + ", {actor:String},"
        " {action:String}, {from_status:String}, {to_status:String}, {reason:String}, {details:String},"
        " {alert_id:String}",
        parameters={"id": incident_id, "seq": seq, "at": at_ms, "actor": actor, "action": action,
                    "from_status": from_status, "to_status": to_status, "reason": reason,
                    "details": json.dumps(details or {}, default=str, sort_keys=True), "alert_id": alert_id},
    )


def _mark_seen(client: Client, alert: Alert, outcome: str, incident_id: int) -> None:
    client.command(
        "INSERT INTO alerts_seen (alert_id, detector, entity_key, outcome, incident_id)"
        " SELECT {alert_id:String}, {detector:String}, {entity_key:String}, {outcome:String}, {id:UInt64}",
        parameters={"alert_id": alert.alert_id, "detector": alert.detector, "entity_key": alert.entity_key,
                    "outcome": outcome, "id": incident_id},
    )


def _next_version(previous_ms: int | None) -> int:
    """A new ``updated_at``: now, but always after the previous version (same-millisecond writes)."""
    now = _now_ms()
    return now if previous_ms is None else max(now, previous_ms + 1)


def record_alert(client: Client, alert: Alert, dedup_window: timedelta = timedelta(hours=24)) -> RecordOutcome:
    """Apply one alert: open, update, skip as duplicate, or suppress.

    Parameters
    ----------
    client : Client
        The store.
    alert : Alert
        The alert; its ``alert_id`` makes this idempotent.
    dedup_window : timedelta
        An open incident with the same detector and entity key whose ``last_seen`` is at
        most this long before the alert's ``first_seen`` is updated instead of a new one
        being opened.

    Returns
    -------
    RecordOutcome
    """
    seen = client.query(
        "SELECT outcome, incident_id FROM alerts_seen FINAL WHERE alert_id = {a:String}",
        parameters={"a": alert.alert_id},
    ).result_rows
    if seen:
        outcome, incident_id = seen[0][0], int(seen[0][1])
        if outcome == "provisional" and not alert.provisional:
            # The fast path opened it before the step was over; the step's own alert completes it.
            row = _raw_incident(client, incident_id)
            if row is not None and row["status"] not in FINAL_STATUSES:
                return _update(client, row, alert, to_epoch_ms(alert.first_seen), to_epoch_ms(alert.last_seen),
                               completes=True)
            _mark_seen(client, alert, "duplicate", incident_id)
        return RecordOutcome("duplicate", incident_id)
    # A crash between writing the incident and alerts_seen: the event is there, so the
    # alert was applied; finish the bookkeeping rather than apply it twice.
    applied = client.query(
        "SELECT incident_id FROM incident_events WHERE alert_id = {a:String} LIMIT 1",
        parameters={"a": alert.alert_id},
    ).result_rows
    if applied:
        _mark_seen(client, alert, "duplicate", int(applied[0][0]))
        return RecordOutcome("duplicate", int(applied[0][0]))

    first_ms, last_ms = to_epoch_ms(alert.first_seen), to_epoch_ms(alert.last_seen)
    detected_ms = to_epoch_ms(alert.detected_at)
    suppression = client.query(
        "SELECT incident_id FROM suppressions WHERE detector = {d:String} AND entity_key = {k:String}"
        " AND since <= " + ms_param("t") + " AND until > " + ms_param("t") + " ORDER BY until DESC LIMIT 1",
        parameters={"d": alert.detector, "k": alert.entity_key, "t": first_ms},
    ).result_rows
    if suppression:
        _mark_seen(client, alert, "suppressed", int(suppression[0][0]))
        return RecordOutcome("suppressed", int(suppression[0][0]))

    window_ms = dedup_window // timedelta(milliseconds=1)
    existing = _read_rows(
        client,
        "detector = {d:String} AND entity_key = {k:String} AND status NOT IN ('resolved', 'false_positive')"
        " AND toUnixTimestamp64Milli(last_seen) >= {lo:Int64}"
        " AND toUnixTimestamp64Milli(first_seen) <= {hi:Int64}",
        {"d": alert.detector, "k": alert.entity_key, "lo": first_ms - window_ms, "hi": last_ms + window_ms},
        "ORDER BY last_seen DESC LIMIT 1",
    )
    if existing:
        return _update(client, existing[0], alert, first_ms, last_ms)

    incident_id = incident_id_for(alert.alert_id)
    group_id = incident_id
    if alert.group_key:
        group = _read_rows(
            client, "group_key = {g:String} AND status NOT IN ('resolved', 'false_positive')",
            {"g": alert.group_key}, "ORDER BY created_at, id LIMIT 1",
        )
        if group:
            group_id = int(group[0]["group_id"])
    # One writer per store (as for the events' seq), so max + 1 is the next reference.
    ref = int(client.query("SELECT max(ref) FROM incidents").result_rows[0][0]) + 1
    now = _now_ms()
    row = {
        "id": incident_id, "detector": alert.detector, "entity": alert.entity, "entity_key": alert.entity_key,
        "title": alert.title, "severity": alert.severity, "status": "open", "score": float(alert.score),
        "principals": sorted(set(alert.principals)), "resources": sorted(set(alert.resources)),
        "first_seen": first_ms, "last_seen": last_ms, "detected_at": detected_ms,
        "explanation": json.dumps(alert.explanation, default=str), "group_key": alert.group_key or "",
        "group_id": group_id, "assignee": "", "opened_by": alert.alert_id, "alerts": 1,
        "created_at": now, "updated_at": now, "ref": ref,
    }
    _write_incident(client, row)
    _append_event(client, incident_id, detected_ms, SYSTEM_ACTOR, "opened", "", "open",
                  details={"severity": alert.severity, "score": alert.score, "group_id": group_id},
                  alert_id=alert.alert_id)
    _mark_seen(client, alert, "provisional" if alert.provisional else "opened", incident_id)
    return RecordOutcome("opened", incident_id, False, group_id)


def _update(client: Client, row: dict[str, Any], alert: Alert, first_ms: int, last_ms: int,
            completes: bool = False) -> RecordOutcome:
    """Fold an alert into an open incident: severity/score/last_seen max, principals/resources union.

    ``completes``: the alert is the whole step's version of the fast path's provisional one
    that opened the incident, so its title and evidence replace the partial ones at an equal score.
    """
    old_severity = row["severity"]
    rose = severity_rank(alert.severity) < severity_rank(old_severity)
    new = dict(row)
    new["severity"] = alert.severity if rose else old_severity
    if alert.score > row["score"] or (completes and alert.score >= row["score"]):
        # The higher-scoring alert explains the incident best.
        new["score"] = float(alert.score)
        new["explanation"] = json.dumps(alert.explanation, default=str)
        new["title"] = alert.title
    new["principals"] = sorted(set(row["principals"]) | set(alert.principals))
    new["resources"] = sorted(set(row["resources"]) | set(alert.resources))
    new["first_seen"] = min(int(row["first_seen"]), first_ms)
    new["last_seen"] = max(int(row["last_seen"]), last_ms)
    new["alerts"] = int(row["alerts"]) + 1
    new["updated_at"] = _next_version(int(row["updated_at"]))
    _write_incident(client, new)
    _append_event(client, int(row["id"]), to_epoch_ms(alert.detected_at), SYSTEM_ACTOR, "updated", row["status"],
                  row["status"],
                  details={"severity_from": old_severity, "severity_to": new["severity"], "score": alert.score},
                  alert_id=alert.alert_id)
    _mark_seen(client, alert, "provisional" if alert.provisional else "updated", int(row["id"]))
    return RecordOutcome("updated", int(row["id"]), rose, int(row["group_id"]))


def transition(
    client: Client, incident_id: int, action: str, actor: str, reason: str = "",
    assignee: str | None = None, at: datetime | None = None, suppress_for: timedelta = timedelta(days=7),
) -> dict[str, Any]:
    """Apply one lifecycle action to an incident and record it in the audit trail.

    Parameters
    ----------
    client : Client
    incident_id : int
    action : str
        ``acknowledge``, ``assign``, ``note``, ``contain``, ``resolve`` or ``false_positive``.
    actor : str
        Who did it (a person or ``blastwall``/a playbook).
    reason : str
        Why; required for ``false_positive`` and ``note`` (the note text).
    assignee : str, optional
        Required for ``assign``.
    at : datetime, optional
        When (default now).
    suppress_for : timedelta
        For ``false_positive``: how long after ``at`` that detector + entity key stays
        suppressed. The suppression starts at the incident's ``first_seen`` (the verdict
        covers the evidence the analyst saw).

    Returns
    -------
    dict
        The incident after the action (as :func:`get_incident`).

    Raises
    ------
    IncidentError
        Unknown incident or action, illegal transition, missing reason or assignee.
    """
    if action not in ACTIONS:
        raise IncidentError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    if not actor:
        raise IncidentError("an actor is required (who did it)")
    row = _raw_incident(client, incident_id)
    if row is None:
        raise IncidentError(f"no incident {incident_id}")
    status = row["status"]
    at_ms = to_epoch_ms(at) if at is not None else _now_ms()
    new = dict(row)
    details: dict[str, Any] = {}
    if action in _MOVES:
        sources, target = _MOVES[action]
        if status not in sources:
            raise IncidentError(f"cannot {action} incident {_row_label(row)}: it is {status}"
                                f" (allowed from {', '.join(sources)})")
        if action == "false_positive" and not reason.strip():
            raise IncidentError("a false-positive verdict needs a reason")
        new["status"] = target
    elif action == "assign":
        if status in FINAL_STATUSES:
            raise IncidentError(f"cannot assign incident {_row_label(row)}: it is {status}")
        if not assignee:
            raise IncidentError("assign needs an assignee")
        new["assignee"] = assignee
        details = {"assignee": assignee, "previous": row["assignee"]}
    elif action == "note" and not reason.strip():
        raise IncidentError("a note needs text (reason)")

    new["updated_at"] = _next_version(int(row["updated_at"]))
    _write_incident(client, new)
    if action == "false_positive":
        until_ms = at_ms + suppress_for // timedelta(milliseconds=1)
        client.command(
            "INSERT INTO suppressions (detector, entity_key, since, until, reason, incident_id, created_by)"
            " SELECT {d:String}, {k:String}, " + ms_param("since") + ", " + ms_param("until")
            + ", {reason:String}, {id:UInt64}, {actor:String}",
            parameters={"d": row["detector"], "k": row["entity_key"], "since": min(int(row["first_seen"]), at_ms),
                        "until": until_ms, "reason": reason, "id": incident_id, "actor": actor},
        )
        details = {"suppressed_until": from_epoch_ms(until_ms).isoformat()}
    _append_event(client, incident_id, at_ms, actor, action, status, new["status"], reason, details)
    result = get_incident(client, incident_id)
    assert result is not None
    return result


def record_event(client: Client, incident_id: int, actor: str, action: str, reason: str = "",
                 details: dict[str, Any] | None = None, at: datetime | None = None) -> None:
    """Append an event that changes no status (a playbook step, a page) to an incident's audit trail.

    Raises
    ------
    IncidentError
        No such incident.
    """
    row = _raw_incident(client, incident_id)
    if row is None:
        raise IncidentError(f"no incident {incident_id}")
    _append_event(client, incident_id, to_epoch_ms(at) if at is not None else _now_ms(), actor, action, row["status"],
                  row["status"], reason, details)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """An incident as the CLI/console show it (docs/DESIGN.md ``incidents --json`` fields)."""
    from detector.families import techniques  # the families' modules import this one

    out = {
        # None only for a row written without one (by hand): every incident recorded here has one.
        "id": int(row["id"]), "ref": format_ref(row["ref"]) if row["ref"] else None,
        "detector": row["detector"], "title": row["title"], "severity": row["severity"],
        "status": row["status"], "score": float(row["score"]), "principals": list(row["principals"]),
        "resources": list(row["resources"]),
        "first_seen": from_epoch_ms(row["first_seen"]), "last_seen": from_epoch_ms(row["last_seen"]),
        "detected_at": from_epoch_ms(row["detected_at"]), "explanation": json.loads(row["explanation"] or "[]"),
        "techniques": techniques(row["detector"]), "playbook_runs": [],
        "entity": row["entity"], "entity_key": row["entity_key"], "group_key": row["group_key"],
        "group_id": int(row["group_id"]), "assignee": row["assignee"] or None, "alerts": int(row["alerts"]),
        "created_at": from_epoch_ms(row["created_at"]), "updated_at": from_epoch_ms(row["updated_at"]),
    }
    if not out["techniques"]:  # a rule's incident: its techniques travel in its explanation
        out["techniques"] = next((list(e["techniques"]) for e in out["explanation"]
                                  if isinstance(e, dict) and "rule" in e and e.get("techniques")), [])
    return out


def get_incident(client: Client, incident_id: int) -> dict[str, Any] | None:
    """One incident's current state, or ``None``."""
    row = _raw_incident(client, incident_id)
    return None if row is None else _public(row)


def list_incidents(
    client: Client, status: str | None = None, min_severity: str | None = None, limit: int = 1000,
) -> list[dict[str, Any]]:
    """Incidents, most severe first, then by score (highest first).

    Parameters
    ----------
    status : str, optional
        Only this status.
    min_severity : str, optional
        Only this severity or worse (``SEV2`` keeps SEV1 and SEV2).
    limit : int
    """
    if status is not None and status not in STATUSES:
        raise IncidentError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    if min_severity is not None and min_severity not in SEVERITIES:
        raise IncidentError(f"unknown severity {min_severity!r}; expected one of {', '.join(SEVERITIES)}")
    allowed = list(SEVERITIES[: severity_rank(min_severity) + 1]) if min_severity else list(SEVERITIES)
    where, params = "severity IN {sev:Array(String)}", {"sev": allowed, "limit": int(limit)}
    if status is not None:
        where += " AND status = {status:String}"
        params["status"] = status
    # 'SEV1' < 'SEV2' < … as strings, so ascending severity is most severe first.
    rows = _read_rows(client, where, params, "ORDER BY severity ASC, score DESC, id LIMIT {limit:UInt32}")
    return [_public(r) for r in rows]


def grant_of(incident: dict[str, Any]) -> dict[str, str] | None:
    """The ``{resource, grantee}`` a grant incident is about, or ``None`` for other incidents.

    Read from the structured pair the detector stores with the rule; an incident stored
    before it did is read from its resource, which prefixes its key (``RESOURCE -> GRANTEE``),
    so a name that itself contains `` -> `` still splits the right way. Only an incident
    that names no resource at all (written by hand) is split at its first arrow.
    """
    if incident.get("entity") != "grant":
        return None
    for item in incident.get("explanation") or []:
        pair = item.get("grant") if isinstance(item, dict) else None
        if isinstance(pair, dict) and {"resource", "grantee"} <= set(pair):
            return {"resource": str(pair["resource"]), "grantee": str(pair["grantee"])}
    key = str(incident.get("entity_key", ""))
    resources = incident.get("resources") or []
    for resource in resources:
        if key.startswith(f"{resource} -> "):
            return {"resource": resource, "grantee": key[len(resource) + 4:]}
    if not resources and " -> " in key:  # a hand-written incident (a playbook's inline test) names no resource
        resource, grantee = key.split(" -> ", 1)
        return {"resource": resource, "grantee": grantee}
    return None


def unhandled_incidents(client: Client, ledger: str, limit: int = 200, only: Collection[int] | None = None
                        ) -> list[tuple[int, str, datetime]]:
    """Active incidents whose current severity is not yet in a caller's ledger table, most severe first.

    Parameters
    ----------
    client : Client
    ledger : str
        A table of the caller's with ``incident_id`` and ``severity`` columns (the playbook
        engine's ``playbook_triggers``): what it has already handled.
    limit : int
    only : collection of int, optional
        Only these incidents (e.g. those a run just opened).

    Returns
    -------
    list of (incident id, severity, detected_at)
    """
    if not ledger.isidentifier():
        raise ValueError(f"{ledger!r} is not a table name")
    among = " AND id IN {only:Array(UInt64)}" if only is not None else ""
    rows = client.query(
        "SELECT id, severity, toUnixTimestamp64Milli(detected_at) FROM incidents FINAL"
        " WHERE status NOT IN {final:Array(String)} AND (id, severity) NOT IN"
        f" (SELECT incident_id, severity FROM {ledger}){among} ORDER BY severity, detected_at LIMIT {{limit:UInt32}}",
        parameters={"limit": limit, "final": list(FINAL_STATUSES),
                    "only": sorted(int(i) for i in only or ())}).result_rows
    return [(int(i), str(s), from_epoch_ms(ms)) for i, s, ms in rows]


def incident_timeline(client: Client, incident_id: int) -> list[dict[str, Any]]:
    """The audit trail of one incident, in the order it was written."""
    result = client.query(
        "SELECT seq, toUnixTimestamp64Milli(at) AS at_ms, actor, action, from_status, to_status, reason, details,"
        " alert_id FROM incident_events WHERE incident_id = {id:UInt64} ORDER BY seq",
        parameters={"id": incident_id},
    )
    events = []
    for r in result.result_rows:
        event = dict(zip(result.column_names, r))
        event["at"] = from_epoch_ms(event.pop("at_ms"))
        event["details"] = json.loads(event["details"] or "{}")
        events.append(event)
    return events
