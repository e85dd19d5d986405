"""Weak signals judged against the organisation: peers, team domains, org-wide rarity.

Each kind of observation is one fact about one principal in one step that holds in any
organisation, whatever its teams, volumes or naming, because it compares the principal
with the organisation itself rather than with a threshold:

``out_of_domain``
    The first touch in the lookback (a read of it, or a join with it) of confidential or
    restricted data that no teammate touched, owned by a team (its *domain*: the owner's
    team in the principals catalogue, else the owner) whose data of that sensitivity or
    above few teammates touch (under :attr:`ObservationConfig.domain_share` of them): 2
    points for restricted data, 1 for confidential.
``rare_combination``
    Data categories of sensitive resources combined in one join (a category of one of its
    resources with a category of another) that no join in the organisation combined over
    the lookback; or combined by the principal in one day's session that nobody in the
    organisation combined in a day: 2 points, 3 when restricted data is among them.
``new_destination``
    Sensitive data exported to a destination (its host or bucket) that nobody in the
    organisation exported to over the lookback (3 points), or nobody in the exporter's
    team (2 points); one point more past :attr:`ObservationConfig.large_export_bytes`.
``out_of_role_artifacts``
    Model artifacts downloaded by someone none of whose teammates touched a model over
    the lookback: 2 points, 3 from :attr:`ObservationConfig.many_artifacts` in a step.

None of them alerts by itself: each is a few *risk points* (:mod:`detector.risk`)
that add up, with decay, per principal. They judge the organisation's behaviour up to
the start of the step's UTC day (the *lookback*: :attr:`ObservationConfig.lookback`
before it) and first occurrences from the lookback's start up to the step's end, and
nothing about a step depends on events after its end, so a step's observations are the
same whether it is computed alone (the step loop) or in a batch (whose day is its first
step's): each query runs once per batch (:meth:`detector.families.Batch.once`) and its
rows are sliced by step.

An organisation with less than :attr:`ObservationConfig.min_history` of access log
before the day has no "usual" yet: nothing is observed (everything would be new).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from detector.families import Step
from features.engine import READING_SQL
from features.times import ms_param

DAY_MS = 86_400_000
#: The kinds of observation, in the order the module docstring describes them.
KINDS = ("out_of_domain", "rare_combination", "new_destination", "out_of_role_artifacts")


@dataclass(frozen=True)
class ObservationConfig:
    """How the observations judge the organisation.

    Attributes
    ----------
    lookback : timedelta
        How far back before the step's day "usual" reaches.
    min_history : timedelta
        Access log needed before the day for anything to be observed.
    domain_share : float
        A domain is usual for a team when at least this share of its members touched its data.
    min_peers : int
        Teams with fewer other members than this have no peers to judge by.
    many_artifacts : int
        Distinct artifacts in one step that weigh one point more.
    large_export_bytes : int
        Bytes to a new destination in one step that weigh one point more.
    """

    lookback: timedelta = timedelta(days=28)
    min_history: timedelta = timedelta(days=3)
    domain_share: float = 0.1
    min_peers: int = 2
    many_artifacts: int = 10
    large_export_bytes: int = 10**9


@dataclass(frozen=True)
class Observation:
    """One weak signal about one principal in one step.

    Attributes
    ----------
    principal : str
    kind : str
        ``out_of_domain``, ``rare_combination``, ``new_destination`` or ``out_of_role_artifacts``.
    subject : str
        What it is about (the resource, the category pair, the destination); with
        ``principal``, ``kind`` and the step it names the observation.
    points : int
        Its weight in the principal's risk.
    text : str
        What happened, for the analyst.
    first_ms, last_ms : int
        Event times of its evidence (epoch ms).
    resources : tuple of str
    act_ms : int
        Time of the event that made it (a first read, the read completing a combination,
        the first export to the destination, the first download): observations of one
        act are one signal of risk.
    """

    principal: str
    kind: str
    subject: str
    points: int
    text: str
    first_ms: int
    last_ms: int
    resources: tuple[str, ...] = field(default=())
    act_ms: int = -1


#: Teams of the principals a team's peers are judged with: people and agents (services run fixed jobs,
#: judged by their own detectors); a principal missing from the catalogue has no team.
_PEOPLE = """people AS (SELECT principal, argMax(team, updated_at) AS team FROM principals
    GROUP BY principal HAVING argMax(principal_type, updated_at) != 'service'),
owners AS (SELECT principal, argMax(team, updated_at) AS team FROM principals GROUP BY principal)"""
_OWNED = """owned AS (
    SELECT r.resource AS resource, argMax(r.kind, r.updated_at) AS kind,
           argMax(r.sensitivity, r.updated_at) AS sensitivity, argMax(r.categories, r.updated_at) AS categories,
           argMax(r.owner, r.updated_at) AS owner
    FROM resources AS r GROUP BY r.resource)"""
#: The domain of a catalogue row ``c`` (joined with ``owners`` as ``o`` on its owner).
_DOMAIN = "if(o.team != '', o.team, c.owner)"
_SENSITIVE = "c.sensitivity IN ('confidential', 'restricted')"
#: The sensitivities at or above each sensitive one.
_AT_LEAST = {"confidential": ("confidential", "restricted"), "restricted": ("restricted",)}


def _span(lo: str, hi: str) -> str:
    """``[lo, hi)`` on ``event_time`` with the hour bounds of the sort key (see ``features.engine.WINDOW_SQL``)."""
    return (f"event_time >= {ms_param(lo)} AND event_time < {ms_param(hi)}"
            f" AND toStartOfHour(event_time) >= toStartOfHour({ms_param(lo)})"
            f" AND toStartOfHour(event_time) <= toStartOfHour({ms_param(hi)})")


# Principals' first touch in the lookback of sensitive data, inside the batch.
#: The resources an access-log row reads: its resource, and a join's related resources too.
_READ_RESOURCES = "arrayJoin(if(action = 'join', arrayConcat([resource], related), [resource]))"

_FIRST_TOUCHES = f"""WITH {_PEOPLE}, {_OWNED},
firsts AS (
    SELECT principal, {_READ_RESOURCES} AS resource, toUnixTimestamp64Milli(min(event_time)) AS first_ms
    FROM access_log WHERE {_span('since', 'hi')} AND action IN {READING_SQL} AND status = 'ok'
    GROUP BY principal, resource HAVING first_ms >= {{lo:Int64}} AND resource != '')
SELECT f.principal, f.resource, f.first_ms, c.sensitivity, p.team, {_DOMAIN} AS domain
FROM firsts AS f INNER JOIN owned AS c ON f.resource = c.resource
LEFT JOIN people AS p ON f.principal = p.principal LEFT JOIN owners AS o ON c.owner = o.principal
WHERE {_SENSITIVE} AND p.team != ''"""

# Per team: members who touched each of some resources, and each domain's data of each sensitivity, before the day.
_TEAM_TOUCHES = f"""WITH {_PEOPLE}, {_OWNED}
SELECT p.team AS team, l.resource AS resource, {_DOMAIN} AS domain, c.sensitivity AS sensitivity,
       groupUniqArray(l.principal) AS members
FROM (SELECT principal, {_READ_RESOURCES} AS resource FROM access_log
      WHERE {_span('since', 'day')} AND action IN {READING_SQL} AND status = 'ok') AS l
INNER JOIN people AS p ON l.principal = p.principal
LEFT JOIN owned AS c ON l.resource = c.resource LEFT JOIN owners AS o ON c.owner = o.principal
WHERE p.team IN {{teams:Array(String)}} AND l.resource != ''
GROUP BY GROUPING SETS ((team, resource), (team, domain, sensitivity))"""

_TEAM_SIZES = f"WITH {_PEOPLE} SELECT team, count() FROM people WHERE team != '' GROUP BY team"

# Categories of sensitive data each principal read per day (an event's related resources count too), when
# each was first read, and when first from restricted data (0: never).
_SESSION_CATEGORIES = f"""WITH {_OWNED}
SELECT e.principal AS principal, toDate(e.event_time) AS day, category,
       toUnixTimestamp64Milli(min(e.event_time)) AS first_ms,
       toUnixTimestamp64Milli(minIf(e.event_time, c.sensitivity = 'restricted')) AS restricted_ms,
       argMin(e.r, (e.event_time, e.r)) AS first_resource
FROM (SELECT principal, event_time, arrayJoin(arrayConcat([resource], related)) AS r FROM access_log
      WHERE {{where}} AND action IN {READING_SQL} AND status = 'ok') AS e
INNER JOIN owned AS c ON e.r = c.resource ARRAY JOIN c.categories AS category
WHERE {_SENSITIVE}
GROUP BY principal, day, category"""

# Category pairs combined by someone in one day before the step's day.
_COMBINED_PAIRS = f"""SELECT DISTINCT tupleElement(pair, 1), tupleElement(pair, 2) FROM (
    SELECT arrayJoin(arrayFlatten(arrayMap(x -> arrayMap(y -> (x, y), arrayFilter(y -> y > x, cats)), cats))) AS pair
    FROM (SELECT principal, day, groupUniqArray(category) AS cats
          FROM ({_SESSION_CATEGORIES.replace('{where}', _span('since', 'day'))}) GROUP BY principal, day))"""

# One row per join event and sensitive resource it combines, with the resource's categories.
_JOIN_RESOURCES = f"""jr AS (
    SELECT e.principal AS principal, e.event_time AS event_time, e.k AS k, e.r AS r, c.categories AS cats,
           c.sensitivity = 'restricted' AS restricted
    FROM (SELECT principal, event_time, (principal, event_time, resource, event_id) AS k,
                 arrayJoin(arrayDistinct(arrayConcat([resource], related))) AS r
          FROM access_log WHERE {{where}} AND action = 'join' AND status = 'ok') AS e
    INNER JOIN owned AS c ON e.r = c.resource WHERE {_SENSITIVE} AND notEmpty(c.categories))"""

# Category pairs some join combined, one category from each of two of its resources, before the step's day.
_JOINED_PAIRS = f"""WITH {_OWNED}, {_JOIN_RESOURCES.replace('{where}', _span('since', 'day'))}
SELECT DISTINCT least(a, b), greatest(a, b)
FROM jr AS l INNER JOIN jr AS m ON l.k = m.k AND l.r < m.r ARRAY JOIN l.cats AS a ARRAY JOIN m.cats AS b
WHERE a != b"""

# The batch's joins of sensitive resources with categories.
_BATCH_JOINS = f"""WITH {_OWNED}, {_JOIN_RESOURCES.replace('{where}', _span('lo', 'hi'))}
SELECT principal, toUnixTimestamp64Milli(event_time), k, r, cats, restricted FROM jr
ORDER BY principal, event_time, r"""

_DESTINATION = "extract(attributes['destination'], '^[A-Za-z0-9+.-]+://([^/?#]+)')"
# Exports of sensitive data inside the batch, with when the organisation, and the exporter's team, first
# exported to the same destination in the lookback.
_NEW_DESTINATIONS = f"""WITH {_OWNED}, {_PEOPLE},
dest AS (SELECT if({_DESTINATION} != '', {_DESTINATION}, attributes['destination']) AS destination,
                l.principal AS principal, l.resource AS resource, l.event_time AS event_time, l.bytes AS bytes,
                p.team AS team
         FROM access_log AS l LEFT JOIN people AS p ON l.principal = p.principal
         WHERE {_span('since', 'hi').replace('event_time', 'l.event_time')} AND l.action = 'export'
           AND l.status = 'ok' AND l.attributes['destination'] != ''),
org AS (SELECT destination, min(event_time) AS first FROM dest GROUP BY destination
        HAVING first >= {ms_param('lo')}),
team AS (SELECT team, destination, min(event_time) AS first FROM dest WHERE team != '' GROUP BY team, destination
         HAVING first >= {ms_param('lo')})
SELECT d.principal, d.destination, toUnixTimestamp64Milli(d.event_time), d.bytes, d.resource,
       toUnixTimestamp64Milli(o.first), toUnixTimestamp64Milli(t.first)
FROM dest AS d INNER JOIN owned AS c ON d.resource = c.resource
LEFT JOIN org AS o ON d.destination = o.destination
LEFT JOIN team AS t ON d.team = t.team AND d.destination = t.destination
WHERE d.event_time >= {ms_param('lo')} AND {_SENSITIVE}
  AND (o.first >= {ms_param('lo')} OR t.first >= {ms_param('lo')})"""

# Model downloads inside the batch, and whether anyone of the downloader's team touched a model before the day.
_ARTIFACT_DOWNLOADS = f"""WITH {_PEOPLE}, {_OWNED}
SELECT l.principal, toUnixTimestamp64Milli(l.event_time), l.resource, p.team
FROM access_log AS l INNER JOIN owned AS c ON l.resource = c.resource
INNER JOIN people AS p ON l.principal = p.principal
WHERE {_span('lo', 'hi').replace('event_time', 'l.event_time')} AND l.action = 'download' AND l.status = 'ok'
  AND c.kind = 'model' AND p.team != ''"""

_MODEL_TEAMS = f"""WITH {_PEOPLE}, {_OWNED}
SELECT p.team, groupUniqArray(l.principal) FROM access_log AS l
INNER JOIN owned AS c ON l.resource = c.resource INNER JOIN people AS p ON l.principal = p.principal
WHERE {_span('since', 'day').replace('event_time', 'l.event_time')} AND l.status = 'ok' AND c.kind = 'model'
  AND p.team IN {{teams:Array(String)}}
GROUP BY p.team"""

#: Whether the access log reaches back to ``ready`` (min_history before the day).
_HISTORY_START = f"SELECT count() > 0 FROM access_log WHERE {_span('since', 'ready')}"


def observations(step: Step, config: ObservationConfig | None = None) -> list[Observation]:
    """This step's observations (see the module docstring), in a stable order."""
    config = config or ObservationConfig()
    batch = step.batch
    found = batch.once("observations", lambda: _batch_observations(step, config))
    return found.get(batch.index(step.params["lo"]), [])


def _batch_observations(step: Step, config: ObservationConfig) -> dict[int, list[Observation]]:
    """Every observation of the batch's steps, by step index."""
    batch, client = step.batch, step.client
    day = batch.lo - batch.lo % DAY_MS
    lookback_ms = int(config.lookback / timedelta(milliseconds=1))
    params: dict[str, Any] = {"lo": batch.lo, "hi": batch.hi, "step_ms": batch.step_ms, "day": day,
                              "since": day - lookback_ms,
                              "ready": day - int(config.min_history / timedelta(milliseconds=1))}
    if not client.query(_HISTORY_START, parameters=params).result_rows[0][0]:
        return {}  # too little history before the day: everything would look new
    found: list[tuple[int, Observation]] = []
    sizes = _team_sizes(client)
    found += _out_of_domain(client, params, config, sizes)
    found += _rare_combinations(client, params)
    found += _new_destinations(client, params, config)
    found += _out_of_role_artifacts(client, params, config, sizes)
    by_step: dict[int, list[Observation]] = {}
    for at, observation in sorted(found, key=lambda item: (item[0], item[1].principal, item[1].kind,
                                                            item[1].subject)):
        by_step.setdefault(_step_of(at, params), []).append(replace(observation, act_ms=at))
    return by_step


def _team_sizes(client: Any) -> dict[str, int]:
    return {team: int(n) for team, n in client.query(_TEAM_SIZES).result_rows}


def _out_of_domain(client: Any, params: dict[str, Any], config: ObservationConfig, sizes: dict[str, int]
                   ) -> list[tuple[int, Observation]]:
    touches = client.query(_FIRST_TOUCHES, parameters=params).result_rows
    if not touches:
        return []
    teams = sorted({row[4] for row in touches})
    by_resource: dict[tuple[str, str], set[str]] = {}
    by_domain: dict[tuple[str, str, str], set[str]] = {}
    for team, resource, domain, sensitivity, members in client.query(
            _TEAM_TOUCHES, parameters={**params, "teams": teams}).result_rows:
        # GROUPING SETS leave the other keys at their defaults ('').
        if resource:
            by_resource[(team, resource)] = set(members)
        else:
            by_domain[(team, domain, sensitivity)] = set(members)
    found = []
    for principal, resource, first_ms, sensitivity, team, domain in touches:
        peers = sizes.get(team, 0) - 1
        if peers < config.min_peers or domain == team or by_resource.get((team, resource), set()) - {principal}:
            continue  # no peers to judge by, its own team's data, or data a teammate uses
        # The team's usual domains at this sensitivity or above (working with a team's internal
        # data does not make its restricted data usual), judged by the others: the principal's
        # own earlier reads do not make a domain the team's.
        levels = _AT_LEAST[sensitivity]
        users = set().union(*(by_domain.get((team, domain, level), set()) for level in levels)) - {principal}
        share = len(users) / peers
        if share >= config.domain_share:
            continue  # a domain the team works in, at this sensitivity
        points = 2 if sensitivity == "restricted" else 1
        found.append((int(first_ms), Observation(
            principal, "out_of_domain", resource, points,
            f"first read of {sensitivity} {resource} ({domain}'s data), which no one in {team} uses "
            f"({share:.0%} of the team touch {domain}'s {' or '.join(levels)} data)", int(first_ms), int(first_ms),
            (resource,))))
    return found


def _rare_combinations(client: Any, params: dict[str, Any]) -> list[tuple[int, Observation]]:
    today = client.query(_SESSION_CATEGORIES.replace("{where}", _span("day", "hi")), parameters=params).result_rows
    per_principal: dict[str, list[tuple[int, str]]] = {}
    restricted_at: dict[tuple[str, str], int] = {}
    source_of: dict[tuple[str, str], str] = {}  # the resource that first brought a category today
    for principal, _, category, first_ms, restricted_ms, resource in today:
        per_principal.setdefault(principal, []).append((int(first_ms), category))
        restricted_at[(principal, category)] = int(restricted_ms)
        source_of[(principal, category)] = resource
    found = _rare_joins(client, params)
    joined_acts = {(o.principal, at) for at, o in found}
    candidates = {p: sorted(c) for p, c in per_principal.items() if len(c) > 1}
    if not candidates:
        return found
    combined = {(a, b) for a, b in client.query(_COMBINED_PAIRS, parameters=params).result_rows}
    pairs: dict[tuple[int, str], list[tuple[int, int, str, bool, str, str]]] = {}
    for principal, categories in sorted(candidates.items()):
        for i, (t_a, a) in enumerate(categories):
            for t_b, b in categories[:i]:
                at = max(t_a, t_b)  # completed when its second category was first read today
                if at < params["lo"] or (min(a, b), max(a, b)) in combined or (principal, at) in joined_acts:
                    continue  # before the batch, combined before, or completed by a join observed as one
                # Restricted only if read from restricted data by then (later reads are later steps' news).
                restricted = any(0 < restricted_at[(principal, c)] <= at for c in (a, b))
                pairs.setdefault((_step_of(at, params), principal), []).append(
                    (min(t_a, t_b), at, f"{min(a, b)}+{max(a, b)}", restricted, source_of[(principal, a)],
                     source_of[(principal, b)]))
    for (_, principal), combos in sorted(pairs.items()):
        names = sorted({c[2] for c in combos})
        first, last = min(c[0] for c in combos), max(c[1] for c in combos)
        found.append((last, Observation(
            principal, "rare_combination", ", ".join(names), 2 + any(c[3] for c in combos),
            f"combined {' and '.join(n.replace('+', ' with ') for n in names[:3])} data, which no one in the "
            "organisation combined in a day before", first, last,
            tuple(sorted({r for c in combos for r in c[4:]})))))
    return found


def _rare_joins(client: Any, params: dict[str, Any]) -> list[tuple[int, Observation]]:
    """Joins inside the batch combining categories (one from each of two resources) no join combined before the day."""
    rows = client.query(_BATCH_JOINS, parameters=params).result_rows
    joins: dict[tuple[str, int, Any], list[tuple[str, list[str], bool]]] = {}
    for principal, at, key, resource, categories, restricted in rows:
        joins.setdefault((principal, int(at), key), []).append((resource, list(categories), bool(restricted)))
    joins = {key: parts for key, parts in joins.items() if len(parts) > 1}
    if not joins:
        return []
    combined = {(a, b) for a, b in client.query(_JOINED_PAIRS, parameters=params).result_rows}
    found = []
    for (principal, at, _), parts in sorted(joins.items(), key=lambda item: item[0][:2]):
        new = sorted({(min(a, b), max(a, b)) for i, (_, cats_a, _) in enumerate(parts) for _, cats_b, _ in parts[i + 1:]
                      for a in cats_a for b in cats_b if a != b} - combined)
        if not new:
            continue
        names = [f"{a}+{b}" for a, b in new]
        found.append((at, Observation(
            principal, "rare_combination", ", ".join(names), 2 + any(r for _, _, r in parts),
            f"joined {' and '.join(f'{a} with {b}' for a, b in new[:3])} data, which no join in the organisation "
            "combined before", at, at, tuple(sorted(r for r, _, _ in parts)))))
    return found


def _new_destinations(client: Any, params: dict[str, Any], config: ObservationConfig
                      ) -> list[tuple[int, Observation]]:
    grouped: dict[tuple[int, str, str, str], list[tuple[int, int, str]]] = {}
    for principal, destination, at, nbytes, resource, org_first, team_first in client.query(
            _NEW_DESTINATIONS, parameters=params).result_rows:
        step = _step_of(int(at), params)
        # New in this step: first used in it (in the step loop, earlier steps are the past).
        if step == _step_of(int(org_first), params):
            scope = "organisation"
        elif step == _step_of(int(team_first), params):
            scope = "team"
        else:
            continue
        grouped.setdefault((step, principal, destination, scope), []).append((int(at), int(nbytes), resource))
    found = []
    for (_, principal, destination, scope), events in sorted(grouped.items()):
        nbytes = sum(e[1] for e in events)
        first, last = min(e[0] for e in events), max(e[0] for e in events)
        where = "no one in the organisation" if scope == "organisation" else "no one in their team"
        found.append((first, Observation(
            principal, "new_destination", destination,
            (3 if scope == "organisation" else 2) + (nbytes >= config.large_export_bytes),
            f"exported {nbytes / 1e6:,.0f} MB of sensitive data to {destination}, where {where} exported before",
            first, last, tuple(sorted({e[2] for e in events})))))
    return found


def _out_of_role_artifacts(client: Any, params: dict[str, Any], config: ObservationConfig, sizes: dict[str, int]
                           ) -> list[tuple[int, Observation]]:
    rows = client.query(_ARTIFACT_DOWNLOADS, parameters=params).result_rows
    if not rows:
        return []
    teams = sorted({row[3] for row in rows})
    model_users = {team: set(users) for team, users in
                   client.query(_MODEL_TEAMS, parameters={**params, "teams": teams}).result_rows}
    grouped: dict[tuple[int, str, str], list[tuple[int, str]]] = {}
    for principal, at, resource, team in rows:
        if sizes.get(team, 0) - 1 < config.min_peers or model_users.get(team, set()) - {principal}:
            continue  # no peers to judge by, or a team that works with models
        grouped.setdefault((_step_of(int(at), params), principal, team), []).append((int(at), resource))
    found = []
    for (_, principal, team), events in sorted(grouped.items()):
        artifacts = sorted({e[1] for e in events})
        first, last = min(e[0] for e in events), max(e[0] for e in events)
        found.append((first, Observation(
            principal, "out_of_role_artifacts", f"{len(artifacts)} artifacts",
            2 + (len(artifacts) >= config.many_artifacts),
            f"downloaded {len(artifacts)} model artifacts; no one else in {team} touched a model before",
            first, last, tuple(artifacts[:20]))))
    return found


def _step_of(at: int, params: dict[str, Any]) -> int:
    """The index in the batch of the step holding ``at``."""
    return (at - params["lo"]) // params["step_ms"]
