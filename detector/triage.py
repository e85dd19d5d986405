"""What an analyst reads while triaging: the queue, an incident's evidence and blast radius, trends.

Read-only functions over the store for the console (and anyone else): the ranked queue
with its filters and counts, the evidence events of an incident page by page, who could
read the data and through which groups, who actually read it, and the daily volumes
the overview charts. The console caches their results briefly; they hold no state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from clickhouse_connect.driver.client import Client

from detector.groups import membership_edges, reachable_members
from detector.incidents import FINAL_STATUSES, STATUSES, _public, _read_rows, grant_of
from detector.severity import SEVERITIES
from features.registry import READING_ACTIONS
from features.times import ms_param, to_epoch_ms

#: Statuses an analyst still has to work on.
ACTIVE_STATUSES = ("open", "acknowledged", "contained")
#: Actions through which data reaches a principal (a training run consumes it too).
READ_ACTIONS = (*READING_ACTIONS, "train")
#: The events behind an incident: by its principals ``{p}``, or on its resources ``{r}``
#: directly or as joined/consumed resources (times bounded by the caller).
_EVIDENCE_WHERE = ("(principal IN {p:Array(String)} OR resource IN {r:Array(String)}"
                   " OR hasAny(related, {r:Array(String)}))")
#: Everyone who read the incident's resources ``{r}``.
_READERS_WHERE = "resource IN {r:Array(String)} AND action IN {reads:Array(String)}"


def evidence_selection(incident: dict[str, Any], columns: str, scope: str, since: datetime, until: datetime,
                       limit: int) -> tuple[str, dict[str, Any]]:
    """The query for the access-log rows behind an incident, for a caller that copies them.

    Parameters
    ----------
    incident : dict
        With ``principals`` and ``resources``.
    columns : str
        The select list (the caller's own parameters may appear in it).
    scope : {"events", "readers"}
        ``events``: what its principals did and what touched its resources; ``readers``:
        every read of its resources.
    since, until : datetime
        ``since <= event_time < until``.
    limit : int

    Returns
    -------
    (sql, parameters)
    """
    where = {"events": _EVIDENCE_WHERE, "readers": _READERS_WHERE}[scope]
    sql = (f"SELECT {columns} FROM access_log WHERE {where} AND event_time >= {ms_param('ev_lo')}"
           f" AND event_time < {ms_param('ev_hi')} ORDER BY event_time LIMIT {{ev_limit:UInt64}}")
    return sql, {"p": list(incident.get("principals", [])), "r": list(incident.get("resources", [])),
                 "reads": list(READ_ACTIONS), "ev_lo": to_epoch_ms(since), "ev_hi": to_epoch_ms(until),
                 "ev_limit": int(limit)}


@dataclass(frozen=True)
class QueueFilter:
    """The queue's filters; empty means any."""

    statuses: tuple[str, ...] = ACTIVE_STATUSES
    severities: tuple[str, ...] = ()
    detectors: tuple[str, ...] = ()
    assignee: str = ""
    team: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        """A WHERE clause over ``incidents FINAL`` and its parameters."""
        for status in self.statuses:
            if status not in STATUSES:
                raise ValueError(f"unknown status {status!r}")
        clauses = ["status IN {statuses:Array(String)}"]
        params: dict[str, Any] = {"statuses": list(self.statuses or STATUSES)}
        if self.severities:
            clauses.append("severity IN {severities:Array(String)}")
            params["severities"] = list(self.severities)
        if self.detectors:
            clauses.append("detector IN {detectors:Array(String)}")
            params["detectors"] = list(self.detectors)
        if self.assignee:
            clauses.append("assignee = {assignee:String}")
            params["assignee"] = self.assignee
        if self.team:
            clauses.append("hasAny(principals, (SELECT groupArray(principal) FROM principals FINAL"
                           " WHERE team = {team:String}))")
            params["team"] = self.team
        if self.since is not None:
            clauses.append("detected_at >= " + ms_param("since"))
            params["since"] = to_epoch_ms(self.since)
        if self.until is not None:
            clauses.append("detected_at < " + ms_param("until"))
            params["until"] = to_epoch_ms(self.until)
        return " AND ".join(clauses), params

    @property
    def default_statuses(self) -> bool:
        """The status filter is the queue's default (the statuses still to work on)."""
        return set(self.statuses) == set(ACTIVE_STATUSES)

    def chosen(self) -> list[str]:
        """The filters set beyond the default statuses, in words (``["severity SEV3", "assignee bob"]``).

        Names come from the data (assignees, teams): the caller shows them as text.
        """
        def either(words: tuple[str, ...]) -> str:
            words = tuple(w.replace("_", " ") for w in words)
            return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"

        words = []
        if not self.default_statuses:
            words.append(f"status {either(self.statuses)}" if self.statuses else "any status")
        if self.severities:
            words.append(f"severity {either(self.severities)}")
        if self.detectors:
            words.append(f"detector {either(self.detectors)}")
        if self.assignee:
            words.append(f"assignee {self.assignee}")
        if self.team:
            words.append(f"team {self.team}")
        if self.since is not None or self.until is not None:
            days = [f"{moment.day} {moment:%b %Y}" for moment in (self.since, self.until) if moment is not None]
            words.append("detected " + (f"from {days[0]} to {days[1]}" if len(days) == 2
                                        else ("since " if self.since else "until ") + days[0]))
        return words


def queue(client: Client, filters: QueueFilter = QueueFilter(), limit: int = 200) -> list[dict[str, Any]]:
    """Incidents matching the filters, most severe first, then by score as shown (two places), then newest."""
    where, params = filters.where()
    rows = _read_rows(client, where, {**params, "limit": int(limit)},
                      "ORDER BY severity ASC, round(score, 2) DESC, detected_at DESC, id LIMIT {limit:UInt32}")
    return [_public(r) for r in rows]


def queue_counts(client: Client, filters: QueueFilter = QueueFilter()) -> dict[str, int]:
    """How many incidents match the filters, per severity (every severity present, 0 if none)."""
    where, params = filters.where()
    rows = client.query(f"SELECT severity, count() FROM incidents FINAL WHERE {where} GROUP BY severity",
                        parameters=params).result_rows
    counts = {severity: 0 for severity in SEVERITIES}
    counts.update({severity: int(n) for severity, n in rows})
    return counts


def closed_counts(client: Client) -> dict[str, int]:
    """How many incidents are closed, per final status (``resolved``, ``false_positive``; 0 if none)."""
    rows = client.query("SELECT status, count() FROM incidents FINAL WHERE status IN {s:Array(String)}"
                        " GROUP BY status", parameters={"s": list(FINAL_STATUSES)}).result_rows
    counts = {status: 0 for status in FINAL_STATUSES}
    counts.update({status: int(n) for status, n in rows})
    return counts


def filter_choices(client: Client) -> dict[str, list[str]]:
    """Values the queue's filters can take: every known detector (and any other in the store),
    the assignees and teams present in the store."""
    from detector.families import known_detectors

    stored = {r[0] for r in client.query("SELECT DISTINCT detector FROM incidents").result_rows}
    detectors = sorted(stored | set(known_detectors()))
    assignees = [r[0] for r in client.query(
        "SELECT DISTINCT assignee FROM incidents FINAL WHERE assignee != '' ORDER BY 1").result_rows]
    teams = [r[0] for r in client.query(
        "SELECT DISTINCT team FROM principals FINAL WHERE team != '' ORDER BY 1").result_rows]
    return {"detectors": detectors, "assignees": assignees, "teams": teams}


def evidence_events(client: Client, incident: dict[str, Any], offset: int = 0, limit: int = 100,
                    margin: timedelta = timedelta(hours=1)) -> tuple[pd.DataFrame, int]:
    """One page of the events behind an incident, and how many there are.

    The evidence is every event by the incident's principals or on its resources
    (directly or as a joined/consumed resource) from ``margin`` before its first to
    ``margin`` after its last evidence time.
    """
    params = {"p": list(incident["principals"]), "r": list(incident["resources"]),
              "lo": to_epoch_ms(incident["first_seen"] - margin), "hi": to_epoch_ms(incident["last_seen"] + margin),
              "limit": int(limit), "offset": int(offset)}
    where = (_EVIDENCE_WHERE + " AND event_time >= " + ms_param("lo") + " AND event_time <= " + ms_param("hi"))
    total = int(client.query(f"SELECT count() FROM access_log WHERE {where}", parameters=params).result_rows[0][0])
    frame = client.query_df(
        "SELECT event_time, principal, principal_type, action, resource, related, grantee, bytes, rows, via, status,"
        f" source_ip, event_id FROM access_log WHERE {where} ORDER BY event_time, event_id"
        " LIMIT {limit:UInt32} OFFSET {offset:UInt64}", parameters=params)
    return frame, total


@dataclass
class BlastRadius:
    """Who could read the data, through which groups; who actually read it; how much."""

    audience: pd.DataFrame = field(default_factory=pd.DataFrame)  # member, principal_type, through (groups)
    audience_size: int = 0
    # principal, reads, rows, bytes, first_read, first_time
    readers: pd.DataFrame = field(default_factory=pd.DataFrame)
    records: int = 0


def blast_radius(client: Client, incident: dict[str, Any], limit: int = 1000) -> BlastRadius:
    """The blast radius of an incident.

    For a grant (:func:`detector.incidents.grant_of`) the audience is every
    principal reachable from the grantee through nested groups, with the chain of groups
    that brought each in. For every incident, readers are the principals who read its
    resources from its first evidence on, each marked first-time when they had never
    read that resource before.
    """
    radius = BlastRadius()
    grant = grant_of(incident)
    if grant is not None:
        members = _audience(client, grant["grantee"])
        radius.audience_size = len(members)
        kinds = dict(client.query("SELECT principal, argMax(principal_type, updated_at) FROM principals"
                                  " GROUP BY principal").result_rows) if members else {}
        radius.audience = pd.DataFrame(
            [{"member": m, "principal_type": kinds.get(m, ""), "through": " > ".join(path)}
             for m, path in members[:limit]],
            columns=["member", "principal_type", "through"])
    resources = [r for r in incident["resources"]]
    if resources:
        params = {"r": resources, "since": to_epoch_ms(incident["first_seen"]), "reads": list(READ_ACTIONS),
                  "limit": int(limit)}
        radius.readers = client.query_df(
            "SELECT principal, count() AS reads, sum(rows) AS rows, sum(bytes) AS bytes,"
            " min(event_time) AS first_read,"
            " principal NOT IN (SELECT principal FROM access_log WHERE resource IN {r:Array(String)}"
            "   AND action IN {reads:Array(String)} AND status = 'ok'"
            "   AND event_time < fromUnixTimestamp64Milli({since:Int64}, 'UTC')) AS first_time"
            " FROM access_log WHERE resource IN {r:Array(String)} AND action IN {reads:Array(String)}"
            " AND status = 'ok' AND event_time >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')"
            " GROUP BY principal ORDER BY first_time DESC, reads DESC LIMIT {limit:UInt32}", parameters=params)
        radius.records = int(radius.readers["rows"].sum()) if len(radius.readers) else 0
    return radius


def _audience(client: Client, grantee: str) -> list[tuple[str, list[str]]]:
    """Every non-group principal reachable from ``grantee``, with the group chain (breadth first)."""
    return reachable_members(membership_edges(client), grantee)


def incidents_per_day(client: Client, days: int = 30, now: datetime | None = None) -> pd.DataFrame:
    """Incidents detected per day and severity over the last ``days`` (by detection time)."""
    params: dict[str, Any] = {"days": int(days)}
    anchor = "now64(3)"
    if now is not None:
        anchor = ms_param("now")
        params["now"] = to_epoch_ms(now)
    return client.query_df(
        "SELECT toDate(detected_at) AS day, severity, count() AS incidents FROM incidents FINAL"
        f" WHERE detected_at >= {anchor} - toIntervalDay({{days:UInt32}})"
        " GROUP BY day, severity ORDER BY day, severity", parameters=params)


def detector_quality(client: Client) -> pd.DataFrame:
    """Per detector: alerts applied, incidents, false-positive verdicts and their share of verdicts."""
    return client.query_df(
        "SELECT i.detector AS detector, i.incidents AS incidents, i.false_positives AS false_positives,"
        " i.resolved AS resolved, a.alerts AS alerts, a.suppressed AS suppressed,"
        " if(i.false_positives + i.resolved > 0, i.false_positives / (i.false_positives + i.resolved), NULL)"
        "   AS false_positive_rate"
        " FROM (SELECT detector, count() AS incidents, countIf(status = 'false_positive') AS false_positives,"
        "       countIf(status = 'resolved') AS resolved FROM incidents FINAL GROUP BY detector) AS i"
        " LEFT JOIN (SELECT detector, count() AS alerts, countIf(outcome = 'suppressed') AS suppressed"
        "       FROM alerts_seen FINAL GROUP BY detector) AS a ON a.detector = i.detector"
        " ORDER BY i.incidents DESC")


__all__ = ["ACTIVE_STATUSES", "BlastRadius", "QueueFilter", "blast_radius", "closed_counts", "detector_quality",
           "evidence_events",
           "filter_choices", "incidents_per_day", "queue", "queue_counts"]
