"""Entity pages: everything the store knows about one principal or one resource.

Read-only functions over the store for the console's principal and resource pages (as
Sentinel's and Elastic's entity pages): the catalogue row, the activity of the last days
(aggregated in ClickHouse: nothing reads raw events into memory), the incidents that
name the entity (filtered with ``has`` and a ``LIMIT`` in ClickHouse, so a store of
100,000 incidents answers at once) and the containment in force on it.

Readings:

* the *window* is the ``days`` UTC calendar days ending with ``now``'s, up to ``now``:
  ``[midnight of now - (days - 1) days, now)``. Activity, data touched and readers are
  counted in it;
* a principal's *peers* are the other members of its team in the principals catalogue
  who are people or agents: services run fixed jobs and are judged by their own
  detectors, as in :mod:`detector.observations`; a service, or a principal without a
  team, has no peers;
* a resource is *touched* by an event on it, or naming it among the event's related
  resources (a join's other tables, a training run's data); bytes and records count
  only the events on it directly (a join's bytes are the join's, not each table's);
* a resource's *readers* are principals with a reading action (``READ_ACTIONS``,
  status ok) on it, directly or as a related resource;
* who *can read* a resource: every principal reached through the grants in force on it,
  a grant being in force when the newest ok ``grant``/``revoke`` of its
  ``(resource, grantee)`` in the whole access log is a grant (as the features read
  grants); a group grantee reaches its members through nested groups
  (:mod:`detector.groups`);
* containment *on* a principal: its identity suspended, or a grant to it revoked; on a
  resource: the resource quarantined, a training run of that name paused, or a grant
  on it revoked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pandas as pd
from clickhouse_connect.driver.client import Client

from detector.groups import containing_groups, membership_edges, reachable_members
from detector.incidents import _public, _read_rows
from detector.triage import READ_ACTIONS
from features.contract import SENSITIVITIES
from features.history import history_end
from features.times import from_epoch_ms, ms_param, to_epoch_ms
from playbooks.actions import controls_in_force

#: Incidents shown on an entity page (newest first).
INCIDENT_LIMIT = 50
#: Rows of the data-touched, readers and audience tables.
TOUCHED_LIMIT = 200
READER_LIMIT = 200
AUDIENCE_LIMIT = 1000
#: Peer names kept for the page (all of them count).
PEER_NAMES_LIMIT = 100

TOUCHED_COLUMNS = ["resource", "kind", "sensitivity", "owner", "owner_team", "events", "reads", "denied", "bytes",
                   "rows", "first_seen", "last_seen"]
READER_COLUMNS = ["principal", "principal_type", "reads", "rows", "bytes", "first_read", "last_read"]

_WINDOW = f"event_time >= {ms_param('lo')} AND event_time < {ms_param('hi')}"
#: The resources an access-log row touches: its own, and its related ones.
_TOUCHED = "arrayJoin(arrayDistinct(arrayFilter(x -> x != '', arrayConcat([resource], related))))"


@dataclass(frozen=True)
class Window:
    """The days an entity page counts activity over: ``[since, until)``."""

    since: datetime
    until: datetime
    days: int

    @classmethod
    def ending(cls, now: datetime, days: int) -> Window:
        """The ``days`` UTC calendar days ending with ``now``'s, up to ``now``."""
        if days < 1:
            raise ValueError(f"days must be at least 1, got {days}")
        now = now.astimezone(UTC) if now.tzinfo is not None else now.replace(tzinfo=UTC)  # naive means UTC
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return cls(midnight - timedelta(days=days - 1), now, days)

    def params(self) -> dict[str, int]:
        """The window as the ``lo``/``hi`` query parameters of ``_WINDOW``."""
        return {"lo": to_epoch_ms(self.since), "hi": to_epoch_ms(self.until)}

    def day_list(self) -> list[pd.Timestamp]:
        """Each day of the window (midnight UTC), oldest first."""
        return [pd.Timestamp(self.since + timedelta(days=i)) for i in range(self.days)]


@dataclass
class PrincipalProfile:
    """What a principal's page shows.

    Attributes
    ----------
    name : str
    catalogue : dict or None
        Its ``principals`` row (``principal_type``, ``team``, ``title``, ``manager``,
        ``created_at``, ``updated_at``), ``None`` when it is not catalogued.
    principal_type, team : str
        From the catalogue; the type falls back to its newest event's, the team to ``''``.
    peers : list of str
        Its peers (module docstring), sorted, the first :data:`PEER_NAMES_LIMIT`.
    peer_count : int
        All of them.
    groups : DataFrame
        ``group``, ``through`` (the chain of groups from the one it is directly in, joined
        with `` > ``; empty for a direct membership): every group that holds it.
    activity : DataFrame
        ``day`` (midnight UTC, one row per day of the window), ``events`` (its own),
        ``peer_median`` (the median of its peers' events that day, days without events
        counting 0; NaN without peers).
    touched : DataFrame
        The data it touched in the window: ``resource``, ``kind``, ``sensitivity``,
        ``owner``, ``owner_team``, ``events``, ``reads``, ``denied``, ``bytes``,
        ``rows``, ``first_seen``, ``last_seen``; most sensitive first, then busiest.
    touched_count : int
        Resources touched in the window (the table keeps :data:`TOUCHED_LIMIT`).
    incidents : list of dict
        Incidents naming it (:func:`detector.incidents.get_incident`'s form), newest first.
    incident_count : int
        All of them.
    containment : list of dict
        Controls in force on it (:func:`playbooks.actions.controls_in_force`'s form).
    window : Window
    """

    name: str
    window: Window
    catalogue: dict[str, Any] | None = None
    principal_type: str = ""
    team: str = ""
    peers: list[str] = field(default_factory=list)
    peer_count: int = 0
    groups: pd.DataFrame = field(default_factory=pd.DataFrame)
    activity: pd.DataFrame = field(default_factory=pd.DataFrame)
    touched: pd.DataFrame = field(default_factory=pd.DataFrame)
    touched_count: int = 0
    incidents: list[dict[str, Any]] = field(default_factory=list)
    incident_count: int = 0
    containment: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ResourceProfile:
    """What a resource's page shows.

    Attributes
    ----------
    name : str
    catalogue : dict or None
        Its ``resources`` row (``kind``, ``sensitivity``, ``categories``, ``owner``,
        ``sanitized``, ``updated_at``) and ``owner_team`` (the owner's team, else the
        owner); ``None`` when it is not catalogued.
    grants : DataFrame
        The grants in force on it: ``grantee``, ``is_group``, ``granted_by``,
        ``granted_at``, ``reaches`` (principals the grant reaches); oldest first.
    audience : DataFrame
        Who can read it through those grants: ``principal``, ``principal_type``, ``team``,
        ``granted_to`` (the grantee that brings it in), ``through`` (the chain of groups
        from the grantee, joined with `` > ``; empty for a grant to the principal
        itself); the first :data:`AUDIENCE_LIMIT`, by grantee then chain then name.
    audience_size : int
        Every principal reached (each counted once).
    readers : DataFrame
        Who read it in the window: ``principal``, ``principal_type``, ``reads``,
        ``rows``, ``bytes``, ``first_read``, ``last_read``; latest reader first.
    reader_count : int
        All readers in the window (the table keeps :data:`READER_LIMIT`).
    incidents : list of dict
    incident_count : int
    containment : list of dict
    window : Window
    """

    name: str
    window: Window
    catalogue: dict[str, Any] | None = None
    grants: pd.DataFrame = field(default_factory=pd.DataFrame)
    audience: pd.DataFrame = field(default_factory=pd.DataFrame)
    audience_size: int = 0
    readers: pd.DataFrame = field(default_factory=pd.DataFrame)
    reader_count: int = 0
    incidents: list[dict[str, Any]] = field(default_factory=list)
    incident_count: int = 0
    containment: list[dict[str, Any]] = field(default_factory=list)


# --- principals ------------------------------------------------------------------------


def principal_profile(client: Client, name: str, now: datetime, days: int = 14) -> PrincipalProfile | None:
    """Everything the store knows about one principal (see :class:`PrincipalProfile`).

    Parameters
    ----------
    client : Client
        The store.
    name : str
        The principal, exactly as logged.
    now : datetime
        The end of the window (timezone-aware, or naive UTC).
    days : int
        Calendar days of activity to count, today's included.

    Returns
    -------
    PrincipalProfile or None
        ``None`` when the name is in none of the catalogue, the access log and the
        incidents.
    """
    window = Window.ending(now, days)
    profile = PrincipalProfile(name=name, window=window)
    profile.catalogue = _principal_row(client, name)
    profile.incidents, profile.incident_count = _incidents(client, "principals", name)
    own = _daily_events(client, "principal = {name:String}", {"name": name}, window)
    if profile.catalogue is None and not profile.incident_count and not own and not _logged(
            client, "principal = {name:String}", name):
        return None
    if profile.catalogue is not None:
        profile.principal_type, profile.team = profile.catalogue["principal_type"], profile.catalogue["team"]
    else:
        profile.principal_type = _logged_type(client, name)
    peers = _peers(client, name, profile.principal_type, profile.team)
    profile.peers, profile.peer_count = peers[:PEER_NAMES_LIMIT], len(peers)
    profile.activity = _activity(client, own, peers, window)
    profile.groups = pd.DataFrame(
        [{"group": group, "through": " > ".join(chain[:-1])}
         for group, chain in containing_groups(membership_edges(client), name)], columns=["group", "through"])
    profile.touched, profile.touched_count = _touched(client, name, window)
    profile.containment = [c for c in controls_in_force(client)
                           if (c["kind"] == "identity" and c["target"] == name)
                           or (c["kind"] == "grant" and str(c["target"]).endswith(f" -> {name}"))]
    return profile


def _principal_row(client: Client, name: str) -> dict[str, Any] | None:
    result = client.query(
        "SELECT principal, principal_type, team, title, manager, toUnixTimestamp64Milli(created_at) AS created_ms,"
        " toUnixTimestamp64Milli(updated_at) AS updated_ms FROM principals FINAL WHERE principal = {name:String}",
        parameters={"name": name})
    if not result.result_rows:
        return None
    row = dict(zip(result.column_names, result.result_rows[0]))
    row["created_at"], row["updated_at"] = from_epoch_ms(row.pop("created_ms")), from_epoch_ms(row.pop("updated_ms"))
    return row


def _logged_type(client: Client, name: str) -> str:
    """The principal type of its newest event (for a principal missing from the catalogue)."""
    rows = client.query("SELECT argMax(principal_type, event_time) FROM access_log WHERE principal = {name:String}",
                        parameters={"name": name}).result_rows
    return str(rows[0][0]) if rows else ""


def _peers(client: Client, name: str, principal_type: str, team: str) -> list[str]:
    """Its team's people and agents but itself, sorted; none for a service or without a team."""
    if principal_type == "service" or not team:
        return []
    return [r[0] for r in client.query(
        "SELECT principal FROM principals FINAL WHERE team = {team:String} AND principal_type != 'service'"
        " AND principal != {name:String} ORDER BY principal", parameters={"team": team, "name": name}).result_rows]


def _daily_events(client: Client, where: str, params: dict[str, Any], window: Window) -> dict[pd.Timestamp, int]:
    """Events per UTC day in the window of the access-log rows matching ``where``."""
    rows = client.query(
        f"SELECT toUnixTimestamp(toDateTime(toDate(event_time), 'UTC')) AS day, count() FROM access_log"
        f" WHERE {where} AND {_WINDOW} GROUP BY day", parameters={**params, **window.params()}).result_rows
    return {pd.Timestamp(int(day), unit="s", tz="UTC"): int(n) for day, n in rows}


def _activity(client: Client, own: dict[pd.Timestamp, int], peers: list[str], window: Window) -> pd.DataFrame:
    """Its events per day against its peers' median (days a peer was idle count 0 for it)."""
    medians: dict[pd.Timestamp, float] = {}
    if peers:
        rows = client.query(
            "SELECT toUnixTimestamp(toDateTime(day, 'UTC')),"
            " arrayReduce('quantileExactInclusive(0.5)',"
            "   arrayConcat(groupArray(n), arrayWithConstant({peer_count:UInt64} - count(), toUInt64(0))))"
            " FROM (SELECT principal, toDate(event_time) AS day, count() AS n FROM access_log"
            f"       WHERE principal IN {{peers:Array(String)}} AND {_WINDOW} GROUP BY principal, day)"
            " GROUP BY day", parameters={"peers": peers, "peer_count": len(peers), **window.params()}).result_rows
        medians = {pd.Timestamp(int(day), unit="s", tz="UTC"): float(m) for day, m in rows}
    days = window.day_list()
    return pd.DataFrame({
        "day": days,
        "events": [own.get(day, 0) for day in days],
        "peer_median": [medians.get(day, 0.0) if peers else float("nan") for day in days],
    })


def _touched(client: Client, name: str, window: Window) -> tuple[pd.DataFrame, int]:
    """The resources it touched in the window, aggregated in ClickHouse; and how many."""
    params = {"name": name, "reads": list(READ_ACTIONS), "sensitivities": list(SENSITIVITIES),
              "limit": TOUCHED_LIMIT, **window.params()}
    touched = (f"SELECT {_TOUCHED} AS touched, resource, action, status, bytes, rows, event_time FROM access_log"
               f" WHERE principal = {{name:String}} AND {_WINDOW}")
    frame = _query_frame(
        client, "SELECT t.touched AS resource, c.kind AS kind, c.sensitivity AS sensitivity, c.owner AS owner,"
        " if(o.team != '', o.team, c.owner) AS owner_team, t.events AS events, t.reads AS reads,"
        " t.denied AS denied, t.bytes AS bytes, t.rows AS rows, t.first_seen AS first_seen, t.last_seen AS last_seen"
        " FROM (SELECT touched, count() AS events,"
        "       countIf(action IN {reads:Array(String)} AND status = 'ok') AS reads,"
        "       countIf(status = 'denied') AS denied, sumIf(bytes, touched = resource) AS bytes,"
        "       sumIf(rows, touched = resource) AS rows, min(event_time) AS first_seen, max(event_time) AS last_seen"
        f"      FROM ({touched}) GROUP BY touched) AS t"
        " LEFT JOIN (SELECT resource, kind, sensitivity, owner FROM resources FINAL) AS c ON t.touched = c.resource"
        " LEFT JOIN (SELECT principal, team FROM principals FINAL) AS o ON c.owner = o.principal"
        f" ORDER BY indexOf({{sensitivities:Array(String)}}, c.sensitivity) DESC, events DESC, resource"
        " LIMIT {limit:UInt32}", params, TOUCHED_COLUMNS, ("first_seen", "last_seen"))
    count = int(client.query(f"SELECT uniqExact(touched) FROM ({touched})", parameters=params).result_rows[0][0])
    return frame, count


# --- resources -------------------------------------------------------------------------


def resource_profile(client: Client, name: str, now: datetime, days: int = 14) -> ResourceProfile | None:
    """Everything the store knows about one resource (see :class:`ResourceProfile`).

    Parameters
    ----------
    client : Client
        The store.
    name : str
        The resource, exactly as logged.
    now : datetime
        The end of the window (timezone-aware, or naive UTC).
    days : int
        Calendar days of reads to count, today's included.

    Returns
    -------
    ResourceProfile or None
        ``None`` when the name is in none of the catalogue, the access log (as a
        resource or a related one) and the incidents.
    """
    window = Window.ending(now, days)
    profile = ResourceProfile(name=name, window=window)
    profile.catalogue = _resource_row(client, name)
    profile.incidents, profile.incident_count = _incidents(client, "resources", name)
    profile.grants = _grants_in_force(client, name)
    profile.readers, profile.reader_count = _readers(client, name, window)
    if (profile.catalogue is None and not profile.incident_count and profile.grants.empty
            and not profile.reader_count
            and not _logged(client, "(resource = {name:String} OR has(related, {name:String}))", name)):
        return None
    profile.audience, profile.audience_size, reaches = _audience(client, list(profile.grants["grantee"]))
    profile.grants["is_group"] = [grantee in reaches and reaches[grantee][1] for grantee in profile.grants["grantee"]]
    profile.grants["reaches"] = [reaches[grantee][0] for grantee in profile.grants["grantee"]]
    profile.containment = [c for c in controls_in_force(client)
                           if (c["kind"] in ("resource", "training_run") and c["target"] == name)
                           or (c["kind"] == "grant" and str(c["target"]).startswith(f"{name} -> "))]
    return profile


def _resource_row(client: Client, name: str) -> dict[str, Any] | None:
    result = client.query(
        "SELECT c.resource AS resource, c.kind AS kind, c.sensitivity AS sensitivity, c.categories AS categories,"
        " c.owner AS owner, if(o.team != '', o.team, c.owner) AS owner_team, c.sanitized AS sanitized,"
        " toUnixTimestamp64Milli(c.updated_at) AS updated_ms"
        " FROM (SELECT * FROM resources FINAL WHERE resource = {name:String}) AS c"
        " LEFT JOIN (SELECT principal, team FROM principals FINAL) AS o ON c.owner = o.principal",
        parameters={"name": name})
    if not result.result_rows:
        return None
    row = dict(zip(result.column_names, result.result_rows[0]))
    row["categories"] = list(row["categories"])
    row["sanitized"] = bool(row["sanitized"])
    row["updated_at"] = from_epoch_ms(row.pop("updated_ms"))
    return row


def _grants_in_force(client: Client, name: str) -> pd.DataFrame:
    """Grantees whose newest ok grant/revoke on the resource is a grant, oldest grant first.

    The state up to the history's end comes from ``history_grant_state`` (sorted by resource:
    no scan of the log); only the events since are read from the log, within their hours.
    A store whose history was never built (nothing detected yet) is read from the whole log.
    """
    end = history_end(client)
    log_where = ("resource = {name:String} AND action IN ('grant', 'revoke') AND status = 'ok' AND grantee != ''"
                 + (" AND event_time > fromUnixTimestamp64Milli({end:Int64}, 'UTC')" if end is not None else ""))
    params = {"name": name, "end": to_epoch_ms(end) if end is not None else 0}
    history = ("SELECT grantee, action, event_time, event_id FROM history_grant_state WHERE resource = {name:String}"
               " UNION ALL " if end is not None else "")
    latest = client.query(
        "SELECT grantee, argMax(action, (event_time, event_id)) AS last, max(event_time) AS at,"
        " argMax(event_id, (event_time, event_id)) AS id FROM ("
        f"{history}SELECT grantee, action, event_time, event_id FROM access_log WHERE {log_where})"
        " GROUP BY grantee HAVING last = 'grant'", parameters=params).result_rows
    if not latest:
        return pd.DataFrame(columns=["grantee", "granted_by", "granted_at"])
    # Who granted: the grant events themselves, found by their times (the log's sort key).
    granted_by = dict(client.query(
        "SELECT event_id, any(principal) FROM access_log WHERE event_time IN {times:Array(DateTime64(3, 'UTC'))}"
        " AND event_id IN {ids:Array(String)} GROUP BY event_id",
        parameters={"times": [at for _, _, at, _ in latest], "ids": [i for _, _, _, i in latest]}).result_rows)
    frame = pd.DataFrame([(grantee, granted_by.get(event_id, ""), at) for grantee, _, at, event_id in latest],
                         columns=["grantee", "granted_by", "granted_at"])
    frame["granted_at"] = pd.to_datetime(frame["granted_at"]).dt.as_unit("ms")
    frame["granted_at"] = (frame["granted_at"].dt.tz_localize("UTC") if frame["granted_at"].dt.tz is None
                           else frame["granted_at"].dt.tz_convert("UTC"))
    return frame.sort_values(["granted_at", "grantee"], kind="stable").reset_index(drop=True)


def _audience(client: Client, grantees: list[str]) -> tuple[pd.DataFrame, int, dict[str, tuple[int, bool]]]:
    """Who the grantees reach (each principal once, by its shortest chain), how many, and per grantee
    (principals it reaches, whether it is a group)."""
    columns = ["principal", "principal_type", "team", "granted_to", "through"]
    if not grantees:
        return pd.DataFrame(columns=columns), 0, {}
    edges = membership_edges(client)
    best: dict[str, tuple[int, int, str, list[str]]] = {}  # principal -> (chain length, grant order, grantee, chain)
    reaches: dict[str, tuple[int, bool]] = {}
    for order, grantee in enumerate(grantees):
        members = reachable_members(edges, grantee)
        reaches[grantee] = (len(members), grantee in edges)
        for member, chain in members:
            rank = (len(chain), order)
            if member not in best or rank < best[member][:2]:
                best[member] = (*rank, grantee, chain if grantee in edges else [])
    listed = sorted(best.items(), key=lambda item: (item[1][1], item[1][0], " > ".join(item[1][3]), item[0]))
    listed = listed[:AUDIENCE_LIMIT]
    kinds = {p: (t, team) for p, t, team in client.query(
        "SELECT principal, principal_type, team FROM principals FINAL WHERE principal IN {names:Array(String)}",
        parameters={"names": [member for member, _ in listed]}).result_rows}
    frame = pd.DataFrame(
        [{"principal": member, "principal_type": kinds.get(member, ("", ""))[0],
          "team": kinds.get(member, ("", ""))[1], "granted_to": grantee, "through": " > ".join(chain)}
         for member, (_, _, grantee, chain) in listed], columns=columns)
    return frame, len(best), reaches


def _readers(client: Client, name: str, window: Window) -> tuple[pd.DataFrame, int]:
    """Who read it in the window (aggregated in ClickHouse), latest first; and how many."""
    where = ("(resource = {name:String} OR has(related, {name:String})) AND action IN {reads:Array(String)}"
             f" AND status = 'ok' AND {_WINDOW}")
    params = {"name": name, "reads": list(READ_ACTIONS), "limit": READER_LIMIT, **window.params()}
    frame = _query_frame(
        client, "SELECT principal, argMax(principal_type, event_time) AS principal_type, count() AS reads,"
        " sumIf(rows, resource = {name:String}) AS rows, sumIf(bytes, resource = {name:String}) AS bytes,"
        f" min(event_time) AS first_read, max(event_time) AS last_read FROM access_log WHERE {where}"
        " GROUP BY principal ORDER BY last_read DESC, principal LIMIT {limit:UInt32}", params,
        READER_COLUMNS, ("first_read", "last_read"))
    count = int(client.query(f"SELECT uniqExact(principal) FROM access_log WHERE {where}",
                             parameters=params).result_rows[0][0])
    return frame, count


# --- shared ----------------------------------------------------------------------------


def _incidents(client: Client, column: Literal["principals", "resources"], name: str,
               limit: int = INCIDENT_LIMIT) -> tuple[list[dict[str, Any]], int]:
    """The incidents whose ``column`` holds ``name``, newest first (the first ``limit``), and how many."""
    where = f"has({column}, {{name:String}})"
    rows = _read_rows(client, where, {"name": name, "limit": int(limit)},
                      "ORDER BY detected_at DESC, id DESC LIMIT {limit:UInt32}")
    count = int(client.query(f"SELECT count() FROM incidents FINAL WHERE {where}",
                             parameters={"name": name}).result_rows[0][0])
    return [_public(r) for r in rows], count


def _logged(client: Client, where: str, name: str) -> bool:
    """Whether any access-log row, at any time, matches ``where`` (stops at the first)."""
    return bool(client.query(f"SELECT 1 FROM access_log WHERE {where} LIMIT 1",
                             parameters={"name": name}).result_rows)


def _query_frame(client: Client, sql: str, parameters: dict[str, Any], columns: list[str],
                 times: tuple[str, ...] = ()) -> pd.DataFrame:
    """A query's rows as a frame of ``columns`` (its select list, in order: a query without rows
    names none), its ``times`` UTC-aware (the store returns naive UTC)."""
    frame = pd.DataFrame(client.query(sql, parameters=parameters).result_rows, columns=columns)
    for column in times:
        frame[column] = pd.to_datetime(frame[column]).dt.as_unit("ms")
        frame[column] = (frame[column].dt.tz_localize("UTC") if frame[column].dt.tz is None
                         else frame[column].dt.tz_convert("UTC"))
    return frame


def entity_names(client: Client, kind: Literal["principal", "resource"], text: str = "",
                 limit: int = 50) -> list[str]:
    """Catalogued principals or resources whose name contains ``text`` (any case), sorted; the first ``limit``.

    For the entity pages' picker: an empty ``text`` lists the first names.
    """
    table, column = {"principal": ("principals", "principal"), "resource": ("resources", "resource")}[kind]
    return [r[0] for r in client.query(
        f"SELECT {column} FROM {table} FINAL WHERE positionCaseInsensitiveUTF8({column}, {{text:String}}) > 0"
        f" ORDER BY {column} LIMIT {{limit:UInt32}}", parameters={"text": text.strip(), "limit": int(limit)}
    ).result_rows]


__all__ = ["AUDIENCE_LIMIT", "INCIDENT_LIMIT", "READER_LIMIT", "TOUCHED_LIMIT", "PrincipalProfile",
           "ResourceProfile", "Window", "entity_names", "principal_profile", "resource_profile"]
