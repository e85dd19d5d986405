"""The feature registry: every feature's name, entity, description, unit and exact definition.

The ``definition`` of a feature is its specification: the engine
(:mod:`features.engine`) and the plain-pandas reference (:mod:`features.reference`)
both implement it, and the tests hold them equal. ``description`` is the one line an
analyst reads next to the value in an incident's explanation.

Vocabulary used by the definitions
----------------------------------
- *window* W: events with ``start <= event_time < end``; *history* H: events with
  ``event_time < start`` (kept incrementally in the history tables, never rescanned).
- *catalogue*: for each resource its newest ``resources`` row (by ``updated_at``; which of
  several rows with the same newest ``updated_at`` wins is unspecified — likewise for
  memberships and principals);
  an uncatalogued resource has kind ``''``, sensitivity ``''``, no categories and is
  not counted as sanitised or unsanitised.
- *reading actions*: ``read, query, join, export, download``.
- *sensitive resource*: sensitivity ``confidential`` or ``restricted``.
- *sensitive categories*: :data:`SENSITIVE_CATEGORIES`.
- *effective audience* of a grantee g: the number of distinct principals reachable
  from g through ``memberships`` (newest row per (group, member), ``removed = 0``),
  where a principal is a member that is not itself a group; a grantee that is not a
  group is an audience of 1 (itself). Cycles are allowed and harmless.
- *hour of week*: ``(ISO weekday - 1) * 24 + hour`` in UTC, 0..167.
- *groups* are the names that are a ``group`` of at least one effective membership
  (newest row, ``removed = 0``); a name whose memberships were all removed is a person.
- empty strings in ``related`` are ignored everywhere (they name no resource).
- byte sums saturate at ``2**63 - 1`` (int64), whatever the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Entity = Literal["principal", "grant", "resource", "training_run"]
#: Every entity kind, in the order feature sets list them.
ENTITIES: tuple[Entity, ...] = ("principal", "grant", "resource", "training_run")
Implementation = Literal["sql", "history", "kernel", "peer"]

READING_ACTIONS = ("read", "query", "join", "export", "download")
SENSITIVE_SENSITIVITIES = ("confidential", "restricted")
SENSITIVE_CATEGORIES = (
    "employee_telemetry", "keystrokes", "chat", "performance", "pii", "health", "credentials", "financial", "customer",
)
SENSITIVITY_RANK = {"public": 0, "internal": 1, "confidential": 2, "restricted": 3}
#: Fewer history events than this and a principal has no usual hours yet (cold start).
MIN_HOURS_HISTORY = 50
#: An hour of week holding less than this share of a principal's history is unusual for them.
USUAL_HOUR_SHARE = 0.01
#: Fewer events than this and timing regularity is 0 (too little to call machine-like).
MIN_REGULARITY_EVENTS = 5
BURST_WINDOW_MS = 60_000


@dataclass(frozen=True)
class Feature:
    """One feature of one entity.

    Parameters
    ----------
    name : str
        Column name in the feature matrix; stable.
    entity : str
        ``principal``, ``grant``, ``resource`` or ``training_run``.
    description : str
        One line for analysts, shown beside the value in explanations.
    unit : str
        ``events``, ``bytes``, ``count``, ``share`` (0-1), ``ratio``, ``principals``, ``rank``, ``flag``.
    implementation : str
        ``sql`` (aggregate pushed down over the window), ``history`` (SQL against the
        history tables), ``kernel`` (numba over arrays) or ``peer`` (numpy over the matrix).
    definition : str
        The exact specification, implemented by the engine and the reference alike.
    """

    name: str
    entity: Entity
    description: str
    unit: str
    implementation: Implementation
    definition: str


FEATURES: tuple[Feature, ...] = (
    # ---- principal: aggregates pushed down to ClickHouse
    Feature("events", "principal", "events in the window", "events", "sql",
            "count of W events of the principal"),
    Feature("distinct_resources", "principal", "distinct resources touched", "count", "sql",
            "number of distinct `resource` values of the principal's W events"),
    Feature("sensitive_reads", "principal", "reads of confidential or restricted data", "events", "sql",
            "count of W events with a reading action on a sensitive resource"),
    Feature("bytes_read", "principal", "bytes read", "bytes", "sql",
            "sum of `bytes` of W events with action read, query or join"),
    Feature("bytes_exported", "principal", "bytes exported", "bytes", "sql",
            "sum of `bytes` of W events with action export"),
    Feature("bytes_downloaded", "principal", "bytes downloaded", "bytes", "sql",
            "sum of `bytes` of W events with action download"),
    Feature("exports", "principal", "export operations", "events", "sql",
            "count of W events with action export"),
    Feature("embedding_export_bytes", "principal", "bytes exported from embedding stores", "bytes", "sql",
            "sum of `bytes` of W export events on resources of kind embedding"),
    Feature("joins", "principal", "join operations", "events", "sql",
            "count of W events with action join"),
    Feature("grants", "principal", "grants made", "events", "sql",
            "count of W events with action grant"),
    Feature("artifact_downloads", "principal", "model artifact downloads", "events", "sql",
            "count of W download events on resources of kind model"),
    Feature("distinct_secrets", "principal", "distinct secrets read", "count", "sql",
            "number of distinct resources of kind secret in W events with a reading action"),
    Feature("failed_actions", "principal", "denied or failed operations", "events", "sql",
            "count of W events with status denied or error"),
    Feature("source_ips", "principal", "distinct source addresses", "count", "sql",
            "number of distinct non-empty `source_ip` values of W events"),
    Feature("ai_assistant_actions", "principal", "operations made via an AI assistant", "events", "sql",
            "count of W events with via = ai_assistant"),
    Feature("join_sensitive_categories", "principal", "most sensitive data categories combined in one join",
            "count", "sql",
            "max over W join events of the number of distinct sensitive categories among the catalogue "
            "categories of `resource` and of every `related` resource; 0 without joins"),
    # ---- principal: against history state
    Feature("new_resource_share", "principal", "share of resources never touched before", "share", "history",
            "(distinct W resources of the principal not in any of its H events) / distinct_resources"),
    Feature("new_export_destinations", "principal", "export destinations never used before", "count", "history",
            "number of distinct non-empty attributes['destination'] of the principal's W export events "
            "that appear in none of its H export events"),
    Feature("join_pair_rarity_global", "principal", "rarity of the rarest pair of resources joined (everyone)",
            "share", "history",
            "for each W join event, the unordered pairs of distinct values in {resource} U related; "
            "c = the minimum over those pairs of the number of H join events (any principal) containing "
            "the pair; value 1 / (1 + c); 0 when the principal's W joins have no pair"),
    Feature("join_pair_rarity_personal", "principal", "rarity of the rarest pair of resources joined (by them)",
            "share", "history",
            "as join_pair_rarity_global, counting only the principal's own H join events"),
    # ---- principal: numba kernels over the window's event times
    Feature("max_events_per_minute", "principal", "most events in any 60 seconds", "events", "kernel",
            "max over the principal's W events e of the number of its W events with "
            "e.time <= time < e.time + 60 s"),
    Feature("timing_regularity", "principal", "machine-like regularity of the intervals between events",
            "share", "kernel",
            "with the principal's W event times sorted and d the gaps between consecutive events in ms: "
            "0 with fewer than 5 events; 1 if mean(d) = 0; else max(0, 1 - std(d) / mean(d)) "
            "(population standard deviation)"),
    Feature("off_hours_share", "principal", "share of activity outside the principal's usual hours", "share",
            "kernel",
            "0 when the principal has fewer than 50 H events; else the share of its W events whose hour of "
            "week holds less than 1% of its H events"),
    Feature("largest_grant_audience", "principal", "largest effective audience of a grant made", "principals",
            "kernel",
            "max over the principal's W grant events of the effective audience of the grantee; 0 without grants"),
    # ---- principal: peer context over the matrix
    Feature("events_vs_team", "principal", "events relative to the team's median", "ratio", "peer",
            "events / median(events) over the W principals of the same peer group (team from the principals "
            "catalogue; principals without a team form one group)"),
    Feature("bytes_exported_vs_team", "principal", "bytes exported relative to the team's median", "ratio", "peer",
            "(bytes_exported + 1) / (median(bytes_exported) + 1) over the same peer group"),
    # ---- grant: one row per W grant event (key: event_id)
    Feature("audience_before", "grant", "people who could already read the resource", "principals", "kernel",
            "size of the union of the effective audiences of the grantees whose newest H grant/revoke event "
            "with status ok on this resource is a grant"),
    Feature("audience_after", "grant", "people who can read the resource after this grant", "principals", "kernel",
            "size of the union of audience_before's principals and the effective audience of this grantee"),
    Feature("audience_gain", "grant", "people newly able to read the resource", "principals", "kernel",
            "audience_after - audience_before"),
    Feature("sensitivity_rank", "grant", "sensitivity of the resource (0 public .. 3 restricted)", "rank", "sql",
            "public 0, internal 1, confidential 2, restricted 3; 1 for an uncatalogued resource"),
    Feature("sensitive_categories", "grant", "sensitive data categories of the resource", "count", "sql",
            "number of distinct sensitive categories of the resource"),
    Feature("grantee_external", "grant", "grantee is outside the organisation", "flag", "sql",
            "1 if the grantee is neither in the principals catalogue nor a group, else 0"),
    Feature("initiator_is_agent", "grant", "granted by an AI agent", "flag", "sql",
            "1 if the event's principal_type is agent, else 0"),
    Feature("via_ai_assistant", "grant", "granted through an AI assistant", "flag", "sql",
            "1 if the event's via is ai_assistant, else 0"),
    # ---- resource: one row per resource read in W
    Feature("readers", "resource", "distinct readers in the window", "principals", "sql",
            "number of distinct principals with a reading action on the resource in W"),
    Feature("first_time_readers", "resource", "readers who never touched the resource before", "principals",
            "history",
            "number of those readers who have no H event (any action) on the resource"),
    Feature("resource_sensitivity_rank", "resource", "sensitivity of the resource (0 public .. 3 restricted)",
            "rank", "sql", "as sensitivity_rank"),
    # ---- training run: one row per resource of W train events
    Feature("inputs", "training_run", "datasets the run consumed", "count", "sql",
            "number of distinct `related` resources over the run's W train events"),
    Feature("unsanitised_inputs", "training_run", "inputs that did not pass sanitisation", "count", "sql",
            "number of those inputs that are catalogued with sanitized = 0"),
    Feature("sensitive_inputs", "training_run", "inputs with sensitive data", "count", "sql",
            "number of those inputs that are sensitive resources or have a sensitive category"),
    Feature("uncatalogued_inputs", "training_run", "inputs missing from the catalogue", "count", "sql",
            "number of those inputs with no catalogue row"),
)

BY_NAME: dict[str, Feature] = {feature.name: feature for feature in FEATURES}


def features_of(entity: Entity) -> tuple[Feature, ...]:
    """The features of one entity, in registry order (the matrix's column order)."""
    return tuple(feature for feature in FEATURES if feature.entity == entity)


ENTITY_KEYS: dict[str, tuple[str, ...]] = {
    "principal": ("principal",),
    "grant": ("event_id", "principal", "resource", "grantee", "event_time"),
    "resource": ("resource",),
    "training_run": ("resource",),
}
