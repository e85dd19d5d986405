"""The slow, obviously-correct oracle of every feature in :mod:`features.registry`.

Each function below implements one feature (or a small group of features sharing
their inputs) straight from its ``definition``, over plain pandas/numpy/Python
objects. History H is recomputed from the raw events before ``start`` every time:
no incremental state, no ClickHouse, no numba. The engine (:mod:`features.engine`)
is tested equal to this module; it is not meant to be fast.

The layout of the output (the engine is held to it):

- one DataFrame per entity, key columns ``ENTITY_KEYS[entity]`` first, then the
  entity's features in ``features_of(entity)`` order, rows sorted by the keys;
- features with unit ``share`` or ``ratio`` are ``float64``, every other feature is
  ``int64``; byte sums are exact Python integer sums saturated at ``2**63 - 1``;
- ``event_time`` keys are ``datetime64[ms, UTC]``.

Readings of the registry's vocabulary (see each function):

- a *group* is a ``group`` value of an effective membership (newest row per
  (group, member) has ``removed = 0``); any other name is a person;
- empty strings in ``related`` are dropped when the events are read;
- the newest H grant/revoke of a (resource, grantee) is the largest
  ``(event_time, event_id)``;
- "an hour of week holding less than 1 % of the H events" is decided exactly, in
  fractions: ``count / n_history < Fraction("0.01")``;
- the window compares exact times (``start <= event_time < end``), sub-millisecond
  bounds included.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from features.registry import (
    BURST_WINDOW_MS,
    ENTITY_KEYS,
    MIN_HOURS_HISTORY,
    MIN_REGULARITY_EVENTS,
    READING_ACTIONS,
    SENSITIVE_CATEGORIES,
    SENSITIVE_SENSITIVITIES,
    SENSITIVITY_RANK,
    USUAL_HOUR_SHARE,
    Feature,
    features_of,
)

#: Byte sums saturate here (the largest int64).
BYTES_CAP = 2**63 - 1
_EPOCH = pd.Timestamp(0, tz="UTC")
_MS = pd.Timedelta(milliseconds=1)
#: :data:`USUAL_HOUR_SHARE` as the exact decimal it is written as (0.01 -> 1/100).
_USUAL_HOUR_SHARE = Fraction(str(USUAL_HOUR_SHARE))


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Event:
    """One access-log row, normalised (empty values filled, time in UTC milliseconds).

    Attributes
    ----------
    ms : int
        ``event_time`` as milliseconds since the Unix epoch (UTC).
    event_time : pandas.Timestamp
        ``event_time`` itself, tz-aware UTC.
    related : tuple of str
        The non-empty values of the ``related`` list, in input order.
    attributes : dict
        The ``attributes`` map.
    """

    ms: int
    event_time: pd.Timestamp
    event_id: str
    principal: str
    principal_type: str
    action: str
    resource: str
    related: tuple[str, ...]
    grantee: str
    bytes: int
    via: str
    status: str
    source_ip: str
    attributes: Mapping[str, str]


@dataclass(frozen=True)
class CatalogueEntry:
    """The newest ``resources`` row of one resource."""

    kind: str
    sensitivity: str
    categories: frozenset[str]
    sanitized: int


def _text(value: Any) -> str:
    """A string column value, with missing values as ``''``."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _uint(value: Any) -> int:
    """A UInt64 column value as an exact Python int, with missing values as 0."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return 0
    return int(value)


def _timestamp(value: Any) -> pd.Timestamp:
    """A datetime or Timestamp (naive means UTC) as a tz-aware UTC Timestamp."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _ms(value: Any) -> int:
    """Milliseconds since the Unix epoch (floored), exact."""
    return (_timestamp(value) - _EPOCH) // _MS


def _strings(value: Any) -> tuple[str, ...]:
    """A list column as a tuple of str (missing -> empty)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ()
    return tuple(_text(item) for item in value)


def _related(value: Any) -> tuple[str, ...]:
    """The ``related`` resources: empty strings name no resource and are ignored everywhere."""
    return tuple(name for name in _strings(value) if name != "")


def _attributes(value: Any) -> dict[str, str]:
    """The ``attributes`` map as a dict; accepts a dict or Arrow's list of (key, value) pairs."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return {}
    if isinstance(value, Mapping):
        return {_text(k): _text(v) for k, v in value.items()}
    return {_text(k): _text(v) for k, v in value}


def _rows(frame: pd.DataFrame) -> Iterable[dict[str, Any]]:
    """The rows of a frame as dicts, in input order, values as Python objects."""
    columns = list(frame.columns)
    for values in zip(*(frame[c].tolist() for c in columns)):
        yield dict(zip(columns, values))


def _events(frame: pd.DataFrame) -> list[Event]:
    """Normalise the access log into :class:`Event` objects, in input order."""
    events = []
    for row in _rows(frame):
        events.append(Event(
            ms=_ms(row["event_time"]),
            event_time=_timestamp(row["event_time"]),
            event_id=_text(row.get("event_id")),
            principal=_text(row["principal"]),
            principal_type=_text(row.get("principal_type")),
            action=_text(row["action"]),
            resource=_text(row["resource"]),
            related=_related(row.get("related")),
            grantee=_text(row.get("grantee")),
            bytes=_uint(row.get("bytes")),
            via=_text(row.get("via")),
            status=_text(row.get("status")),
            source_ip=_text(row.get("source_ip")),
            attributes=_attributes(row.get("attributes")),
        ))
    return events


def _newest_rows(frame: pd.DataFrame, key: tuple[str, ...]) -> dict[tuple[str, ...], dict[str, Any]]:
    """The newest row per key by ``updated_at``; on a tie the later row in input order wins.

    A missing ``updated_at`` counts as older than any given one.
    """
    newest: dict[tuple[str, ...], tuple[int, dict[str, Any]]] = {}
    for row in _rows(frame):
        updated = row.get("updated_at")
        version = -(2**63) if updated is None or pd.isna(updated) else _ms(updated)
        k = tuple(_text(row[c]) for c in key)
        if k not in newest or version >= newest[k][0]:
            newest[k] = (version, row)
    return {k: row for k, (_, row) in newest.items()}


def catalogue(resources: pd.DataFrame) -> dict[str, CatalogueEntry]:
    """The catalogue: each resource's newest ``resources`` row.

    Parameters
    ----------
    resources : pandas.DataFrame
        Rows of the ``resources`` contract table.

    Returns
    -------
    dict
        Resource name to its :class:`CatalogueEntry`; uncatalogued resources are absent.
    """
    return {
        k[0]: CatalogueEntry(
            kind=_text(row["kind"]),
            sensitivity=_text(row["sensitivity"]),
            categories=frozenset(_strings(row.get("categories"))),
            sanitized=_uint(row.get("sanitized")),
        )
        for k, row in _newest_rows(resources, ("resource",)).items()
    }


def active_memberships(memberships: pd.DataFrame) -> dict[str, set[str]]:
    """Group to its direct members: newest row per (group, member), ``removed = 0`` only.

    The keys are exactly the *groups*: a name whose memberships were all removed is a person.
    """
    members: dict[str, set[str]] = defaultdict(set)
    for (group, member), row in _newest_rows(memberships, ("group", "member")).items():
        if _uint(row.get("removed")) == 0:
            members[group].add(member)
    return dict(members)


def teams(principals: pd.DataFrame) -> dict[str, str]:
    """Principal to team from its newest ``principals`` row."""
    return {k[0]: _text(row.get("team")) for k, row in _newest_rows(principals, ("principal",)).items()}


def effective_audience(grantee: str, groups: Mapping[str, set[str]]) -> frozenset[str]:
    """The principals reachable from ``grantee`` through nested groups.

    Parameters
    ----------
    grantee : str
        A principal or a group.
    groups : mapping
        :func:`active_memberships`.

    Returns
    -------
    frozenset of str
        ``{grantee}`` when it is not a group; otherwise every member reachable through
        groups (cycles included) that is not itself a group.
    """
    if grantee not in groups:
        return frozenset({grantee})
    seen_groups = {grantee}
    to_visit = [grantee]
    people: set[str] = set()
    while to_visit:
        for member in groups[to_visit.pop()]:
            if member in groups:
                if member not in seen_groups:
                    seen_groups.add(member)
                    to_visit.append(member)
            else:
                people.add(member)
    return frozenset(people)


def hour_of_week(stamp: datetime) -> int:
    """``(ISO weekday - 1) * 24 + hour`` in UTC, 0..167 (naive means UTC)."""
    utc = _timestamp(stamp)
    return (utc.isoweekday() - 1) * 24 + utc.hour


def _is_sensitive_resource(entry: CatalogueEntry | None) -> bool:
    return entry is not None and entry.sensitivity in SENSITIVE_SENSITIVITIES


def _sensitive_categories(entry: CatalogueEntry | None) -> set[str]:
    return set() if entry is None else set(entry.categories) & set(SENSITIVE_CATEGORIES)


def _kind(entry: CatalogueEntry | None) -> str:
    return "" if entry is None else entry.kind


def _rank(entry: CatalogueEntry | None) -> int:
    """``SENSITIVITY_RANK`` of the catalogue sensitivity; 1 for an uncatalogued resource."""
    return 1 if entry is None else SENSITIVITY_RANK[entry.sensitivity]


def _bytes_sum(values: Iterable[int]) -> int:
    """The exact sum of ``bytes`` values, saturated at ``2**63 - 1``."""
    return min(sum(values), BYTES_CAP)


# ----------------------------------------------------------- principal: aggregates


def counts_and_sums(window: list[Event], cat: Mapping[str, CatalogueEntry]) -> dict[str, Any]:
    """The plain aggregates of one principal's W events.

    ``events, distinct_resources, sensitive_reads, bytes_read, bytes_exported,
    bytes_downloaded, exports, embedding_export_bytes, joins, grants,
    artifact_downloads, distinct_secrets, failed_actions, source_ips,
    ai_assistant_actions``.
    """
    reading = [e for e in window if e.action in READING_ACTIONS]
    exports = [e for e in window if e.action == "export"]
    return {
        "events": len(window),
        "distinct_resources": len({e.resource for e in window}),
        "sensitive_reads": sum(1 for e in reading if _is_sensitive_resource(cat.get(e.resource))),
        "bytes_read": _bytes_sum(e.bytes for e in window if e.action in ("read", "query", "join")),
        "bytes_exported": _bytes_sum(e.bytes for e in exports),
        "bytes_downloaded": _bytes_sum(e.bytes for e in window if e.action == "download"),
        "exports": len(exports),
        "embedding_export_bytes": _bytes_sum(e.bytes for e in exports if _kind(cat.get(e.resource)) == "embedding"),
        "joins": sum(1 for e in window if e.action == "join"),
        "grants": sum(1 for e in window if e.action == "grant"),
        "artifact_downloads": sum(
            1 for e in window if e.action == "download" and _kind(cat.get(e.resource)) == "model"),
        "distinct_secrets": len({e.resource for e in reading if _kind(cat.get(e.resource)) == "secret"}),
        "failed_actions": sum(1 for e in window if e.status in ("denied", "error")),
        "source_ips": len({e.source_ip for e in window if e.source_ip != ""}),
        "ai_assistant_actions": sum(1 for e in window if e.via == "ai_assistant"),
    }


def join_sensitive_categories(window: list[Event], cat: Mapping[str, CatalogueEntry]) -> int:
    """Max over W join events of the distinct sensitive categories of ``resource`` and ``related``; 0 without joins."""
    best = 0
    for e in window:
        if e.action == "join":
            found: set[str] = set()
            for name in (e.resource, *e.related):
                found |= _sensitive_categories(cat.get(name))
            best = max(best, len(found))
    return best


# -------------------------------------------------------------- principal: history


def new_resource_share(window: list[Event], history: list[Event]) -> float:
    """(distinct W resources absent from the principal's H events) / distinct W resources."""
    touched = {e.resource for e in window}
    before = {e.resource for e in history}
    return len(touched - before) / len(touched)


def _destination(e: Event) -> str:
    return e.attributes.get("destination", "")


def new_export_destinations(window: list[Event], history: list[Event]) -> int:
    """Distinct non-empty W export destinations used by none of the principal's H exports."""
    used = {_destination(e) for e in history if e.action == "export"}
    now = {_destination(e) for e in window if e.action == "export"} - {""}
    return len(now - used)


def join_pairs(e: Event) -> set[tuple[str, str]]:
    """The unordered pairs (as sorted tuples) of distinct values in ``{resource} U related``."""
    return set(combinations(sorted({e.resource, *e.related}), 2))


def join_pair_rarity(window: list[Event], history_joins: list[Event]) -> float:
    """``1 / (1 + c)`` with c the fewest ``history_joins`` containing any pair of a W join; 0 without pairs.

    Parameters
    ----------
    window : list of Event
        The principal's W events.
    history_joins : list of Event
        The H join events to count in (everyone's for the global feature, the
        principal's own for the personal one).
    """
    pairs = set().union(*(join_pairs(e) for e in window if e.action == "join"))
    if not pairs:
        return 0.0
    history_sets = [{h.resource, *h.related} for h in history_joins]
    c = min(sum(1 for s in history_sets if a in s and b in s) for a, b in pairs)
    return 1.0 / (1.0 + c)


# --------------------------------------------------------- principal: event times


def max_events_per_minute(window: list[Event]) -> int:
    """Max over W events e of the W events with ``e.time <= time < e.time + 60 s``."""
    times = np.sort(np.array([e.ms for e in window], dtype=np.int64))
    ends = np.searchsorted(times, times + BURST_WINDOW_MS, side="left")
    starts = np.searchsorted(times, times, side="left")
    return int((ends - starts).max())


def timing_regularity(window: list[Event]) -> float:
    """``max(0, 1 - std(d) / mean(d))`` of the ms gaps d; 0 below 5 events, 1 when mean(d) = 0."""
    if len(window) < MIN_REGULARITY_EVENTS:
        return 0.0
    d = np.diff(np.sort(np.array([e.ms for e in window], dtype=np.int64))).astype(np.float64)
    mean = np.mean(d)
    if mean == 0:
        return 1.0
    return float(max(0.0, 1.0 - np.std(d) / mean))


def off_hours_share(window: list[Event], history: list[Event]) -> float:
    """Share of W events in an hour of week holding < 1 % of the principal's H events; 0 below 50 H events."""
    if len(history) < MIN_HOURS_HISTORY:
        return 0.0
    per_hour = Counter(hour_of_week(e.event_time) for e in history)
    unusual = sum(
        1 for e in window if Fraction(per_hour[hour_of_week(e.event_time)], len(history)) < _USUAL_HOUR_SHARE)
    return unusual / len(window)


def largest_grant_audience(window: list[Event], groups: Mapping[str, set[str]]) -> int:
    """Max effective audience of the grantees of the principal's W grants; 0 without grants."""
    return max((len(effective_audience(e.grantee, groups)) for e in window if e.action == "grant"), default=0)


# --------------------------------------------------------------- principal: peers


def peer_ratios(rows: list[dict[str, Any]], team_of: Mapping[str, str]) -> None:
    """Add ``events_vs_team`` and ``bytes_exported_vs_team`` to each principal row, in place.

    The peer group is the team from the principals catalogue (``''`` for an
    uncatalogued or team-less principal); medians are numpy medians over the W
    principals of the group.
    """
    by_team: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_team[team_of.get(row["principal"], "")].append(row)
    for members in by_team.values():
        events_median = np.median(np.array([r["events"] for r in members], dtype=np.float64))
        exported_median = np.median(np.array([r["bytes_exported"] for r in members], dtype=np.float64))
        for row in members:
            row["events_vs_team"] = float(row["events"] / events_median)
            row["bytes_exported_vs_team"] = float((float(row["bytes_exported"]) + 1.0) / (exported_median + 1.0))


def principal_rows(window: list[Event], history: list[Event], cat: Mapping[str, CatalogueEntry],
                   groups: Mapping[str, set[str]], team_of: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per principal with a W event: every principal feature."""
    window_of: dict[str, list[Event]] = defaultdict(list)
    history_of: dict[str, list[Event]] = defaultdict(list)
    for e in window:
        window_of[e.principal].append(e)
    for e in history:
        history_of[e.principal].append(e)
    all_history_joins = [e for e in history if e.action == "join"]
    rows = []
    for principal in sorted(window_of):
        mine, before = window_of[principal], history_of[principal]
        row: dict[str, Any] = {"principal": principal}
        row.update(counts_and_sums(mine, cat))
        row["join_sensitive_categories"] = join_sensitive_categories(mine, cat)
        row["new_resource_share"] = new_resource_share(mine, before)
        row["new_export_destinations"] = new_export_destinations(mine, before)
        row["join_pair_rarity_global"] = join_pair_rarity(mine, all_history_joins)
        row["join_pair_rarity_personal"] = join_pair_rarity(mine, [e for e in before if e.action == "join"])
        row["max_events_per_minute"] = max_events_per_minute(mine)
        row["timing_regularity"] = timing_regularity(mine)
        row["off_hours_share"] = off_hours_share(mine, before)
        row["largest_grant_audience"] = largest_grant_audience(mine, groups)
        rows.append(row)
    peer_ratios(rows, team_of)
    return rows


# ------------------------------------------------------------------------- grants


def granted_before(history: list[Event], resource: str) -> list[str]:
    """Grantees whose newest H grant/revoke with status ok on ``resource`` is a grant.

    Newest means the largest ``(event_time, event_id)``.
    """
    newest: dict[str, Event] = {}
    for e in history:
        if e.resource == resource and e.action in ("grant", "revoke") and e.status == "ok":
            current = newest.get(e.grantee)
            if current is None or (e.ms, e.event_id) > (current.ms, current.event_id):
                newest[e.grantee] = e
    return [grantee for grantee, e in newest.items() if e.action == "grant"]


def grant_rows(window: list[Event], history: list[Event], cat: Mapping[str, CatalogueEntry],
               groups: Mapping[str, set[str]], team_of: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per W grant event (any status): the audience and context features."""
    rows = []
    for e in window:
        if e.action != "grant":
            continue
        before: set[str] = set()
        for grantee in granted_before(history, e.resource):
            before |= effective_audience(grantee, groups)
        after = before | effective_audience(e.grantee, groups)
        entry = cat.get(e.resource)
        rows.append({
            "event_id": e.event_id, "principal": e.principal, "resource": e.resource, "grantee": e.grantee,
            "event_time": e.event_time,
            "audience_before": len(before),
            "audience_after": len(after),
            "audience_gain": len(after) - len(before),
            "sensitivity_rank": _rank(entry),
            "sensitive_categories": len(_sensitive_categories(entry)),
            "grantee_external": int(e.grantee not in team_of and e.grantee not in groups),
            "initiator_is_agent": int(e.principal_type == "agent"),
            "via_ai_assistant": int(e.via == "ai_assistant"),
        })
    rows.sort(key=lambda r: tuple(r[k] for k in ENTITY_KEYS["grant"]))
    return rows


# ---------------------------------------------------------------------- resources


def resource_rows(window: list[Event], history: list[Event], cat: Mapping[str, CatalogueEntry]) -> list[dict[str, Any]]:
    """One row per resource with a reading action in W: readers, first-time readers, rank."""
    readers_of: dict[str, set[str]] = defaultdict(set)
    for e in window:
        if e.action in READING_ACTIONS:
            readers_of[e.resource].add(e.principal)
    touched_before = {(e.resource, e.principal) for e in history}
    return [
        {
            "resource": resource,
            "readers": len(readers),
            "first_time_readers": sum(1 for p in readers if (resource, p) not in touched_before),
            "resource_sensitivity_rank": _rank(cat.get(resource)),
        }
        for resource, readers in sorted(readers_of.items())
    ]


# ------------------------------------------------------------------ training runs


def training_run_rows(window: list[Event], cat: Mapping[str, CatalogueEntry]) -> list[dict[str, Any]]:
    """One row per resource of W train events: its distinct ``related`` inputs, classified."""
    inputs_of: dict[str, set[str]] = defaultdict(set)
    for e in window:
        if e.action == "train":
            inputs_of[e.resource].update(e.related)
    rows = []
    for run, inputs in sorted(inputs_of.items()):
        entries = [cat.get(name) for name in inputs]
        rows.append({
            "resource": run,
            "inputs": len(inputs),
            "unsanitised_inputs": sum(1 for x in entries if x is not None and x.sanitized == 0),
            "sensitive_inputs": sum(1 for x in entries if _is_sensitive_resource(x) or _sensitive_categories(x)),
            "uncatalogued_inputs": sum(1 for x in entries if x is None),
        })
    return rows


# ------------------------------------------------------------------------- output


def feature_dtype(feature: Feature) -> str:
    """The column dtype of a feature: float64 for shares and ratios, else int64."""
    if feature.unit in ("share", "ratio"):
        return "float64"
    return "int64"


def _frame(entity: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows (already sorted by the keys) as the entity's frame, with the layout's dtypes."""
    columns: dict[str, pd.Series] = {}
    for key in ENTITY_KEYS[entity]:
        values = [row[key] for row in rows]
        if key == "event_time":
            columns[key] = pd.Series(pd.to_datetime(values, utc=True), dtype="datetime64[ms, UTC]")
        else:
            columns[key] = pd.Series(values, dtype=str)
    for feature in features_of(entity):  # type: ignore[arg-type]
        columns[feature.name] = pd.Series([row[feature.name] for row in rows], dtype=feature_dtype(feature))
    return pd.DataFrame(columns).reset_index(drop=True)


def reference_features(events: pd.DataFrame, resources: pd.DataFrame, memberships: pd.DataFrame,
                       principals: pd.DataFrame, start: datetime, end: datetime) -> dict[str, pd.DataFrame]:
    """Every feature of every entity for the window ``[start, end)``, history from the raw events.

    Parameters
    ----------
    events : pandas.DataFrame
        ``access_log`` rows (all of them: H is every event before ``start``).
    resources, memberships, principals : pandas.DataFrame
        The catalogue tables, all versions (the newest per key is taken here).
    start, end : datetime
        The window ``start <= event_time < end``, tz-aware (naive means UTC).

    Returns
    -------
    dict of str to pandas.DataFrame
        ``principal``, ``grant``, ``resource`` and ``training_run`` frames: key columns
        first, then the features in registry order, rows sorted by the keys.
    """
    start, end = _timestamp(start), _timestamp(end)
    all_events = _events(events)
    window = [e for e in all_events if start <= e.event_time < end]
    history = [e for e in all_events if e.event_time < start]
    cat = catalogue(resources)
    groups = active_memberships(memberships)
    team_of = teams(principals)
    return {
        "principal": _frame("principal", principal_rows(window, history, cat, groups, team_of)),
        "grant": _frame("grant", grant_rows(window, history, cat, groups, team_of)),
        "resource": _frame("resource", resource_rows(window, history, cat)),
        "training_run": _frame("training_run", training_run_rows(window, cat)),
    }
