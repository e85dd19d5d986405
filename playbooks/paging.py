"""Paging by severity through apprise: routing, one page per incident, working hours, escalation.

docs/DESIGN.md ("Playbooks"): SEV1 pages at once, SEV2 at once in working hours…, one page per
incident (again only if its severity rises), escalation while nobody acknowledges, through
a maintained notification library rather than hand-written clients. Delivery is
`apprise <https://github.com/caronc/apprise>`_: a channel is a name for one or more apprise
URLs (``json://host:port/path``, ``slack://…``, ``pagerduty://…``, ``mailto://…``).

The ``paging:`` section of the response settings (:mod:`blastwall.config`)::

    timezone: Europe/Berlin
    working_hours: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "18:00"}
    channels:
      oncall: pagerduty://integration-key@api-key
      secops: [slack://T1/B2/C3, mailto://user:pass@example.com]
    routes:
      SEV1: {channels: [oncall, secops]}
      SEV2: {channels: [oncall], when: working_hours}
    escalation:
      - {after: 15m, channels: [secops]}
    contacts: {data-platform: secops}
    link: "http://localhost:8501/incident?id={id}"

Every page is a row of the append-only ``pages`` table. A *slot* is one
``(incident, severity, level, channel)``; its state is that of its newest row (highest
``seq``): ``sent``, ``failed`` (retried by :meth:`Pager.escalate` with backoff),
``deferred`` (outside working hours; delivered at ``due_at``), ``unrouted`` (nowhere to send
it: recorded so nothing is lost silently) or ``cancelled`` (the incident was acknowledged,
closed or its page superseded by a higher severity before delivery). Level 0 is the page
itself, levels 1..n the escalation steps.

Every time is passed in (``now``) and travels as epoch milliseconds, so tests control
the clock and no time zone is interpreted by the store.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from time import time_ns
from typing import Any, Literal
from zoneinfo import ZoneInfo

import apprise
from clickhouse_connect.driver.client import Client
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_exponential

from detector.incidents import FINAL_STATUSES, get_incident, incident_label
from detector.severity import severity_rank
from features.durations import parse_duration
from features.redaction import redact_text
from features.settings_file import several_problems
from features.times import from_epoch_ms, ms_param, to_epoch_ms

MIGRATIONS: list[tuple[int, list[str]]] = [
    (2, [
        # Wall-clock nanoseconds of the write: a `sending` row older than the delivery
        # timeout is a delivery interrupted by a crash (event time cannot tell in a replay).
        "ALTER TABLE pages ADD COLUMN IF NOT EXISTS written UInt64 DEFAULT 0",
    ]),
    (1, [
        # Append-only: a slot's state is its newest row. seq (per incident, increasing) orders
        # rows as written, whatever their `at` (tests and replays move the clock freely).
        # due_at is epoch 0 when there is nothing due.
        """CREATE TABLE IF NOT EXISTS pages (
    incident_id UInt64, seq UInt32, severity LowCardinality(String), level UInt8,
    channel LowCardinality(String), state LowCardinality(String), reason String,
    at DateTime64(3, 'UTC'), due_at DateTime64(3, 'UTC'), attempts UInt16, error String
) ENGINE = MergeTree ORDER BY (incident_id, seq)""",
    ]),
]

STATES = ("sending", "sent", "failed", "deferred", "unrouted", "cancelled")
#: A delivery still `sending` after this long (by the wall clock) was interrupted by a crash.
INTERRUPTED_AFTER = timedelta(minutes=2)
#: apprise schemes of plain HTTP receivers, which see our idempotency key as a header.
_KEYED_SCHEMES = ("json", "jsons", "xml", "xmls", "form", "forms")
#: Delivery rounds (each one up to ``retry_attempts`` tries) before a failed page is given up.
MAX_ROUNDS = 10
#: Backoff between rounds of a failed page: 1, 2, 4 … minutes, at most an hour, so a
#: long outage of the paging service is still caught up once it recovers.
_FIRST_BACKOFF, _MAX_BACKOFF = timedelta(minutes=1), timedelta(hours=1)
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LISTED = 5  # principals/resources shown in a message; the link has the rest

log = logging.getLogger(__name__)


class PagingError(RuntimeError):
    """A notification that could not be sent anywhere (unknown channel, every delivery failed)."""


# --------------------------------------------------------------------------- configuration


def _clock(value: str) -> time:
    if not re.fullmatch(r"\d{2}:\d{2}", value):
        raise ValueError(f"expected HH:MM, got {value!r}")
    return time.fromisoformat(value)


class WorkingHours(BaseModel):
    """When ``when: working_hours`` routes deliver (local time of ``RoutingConfig.timezone``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"], min_length=1)
    start: str = "09:00"
    end: str = "18:00"

    @field_validator("start", "end")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        _clock(value)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> WorkingHours:
        if _clock(self.start) >= _clock(self.end):
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self

    def contains(self, local: datetime) -> bool:
        """Whether a local time falls in working hours."""
        return (_DAYS[local.weekday()] in self.days
                and _clock(self.start) <= local.time().replace(tzinfo=None) < _clock(self.end))

    def next_start(self, local: datetime) -> datetime:
        """The first start of working hours after a local (aware) time."""
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            start = datetime.combine(day, _clock(self.start), tzinfo=local.tzinfo)
            if start > local and _DAYS[day.weekday()] in self.days:
                return start
        raise AssertionError("days is never empty, so a start falls within a week")


class Route(BaseModel):
    """Where one severity pages, and whether only in working hours."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: list[str] = Field(default_factory=list)
    when: Literal["always", "working_hours"] = "always"


class EscalationLevel(BaseModel):
    """Page ``channels`` when an incident is still unacknowledged ``after`` its first page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after: timedelta
    channels: list[str]

    @field_validator("after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value)

    @field_validator("after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive (e.g. 30s, 15m, 1h, 1d)")
        return value


def _references(field: str, value: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Every channel name a routes/escalation/contacts value refers to, with where it is."""
    if field == "routes":
        return [((sev, "channels", i), name) for sev, route in value.items() for i, name in enumerate(route.channels)]
    if field == "escalation":
        return [((n, "channels", i), name) for n, level in enumerate(value) for i, name in enumerate(level.channels)]
    return [((owner,), name) for owner, name in value.items()]


class RoutingConfig(BaseModel):
    """The paging configuration: channels (apprise URLs), routes by severity, escalation.

    Attributes
    ----------
    timezone : str
        IANA zone of the working hours.
    working_hours : WorkingHours
    channels : dict
        Channel name to one apprise URL or a list of them (an empty list: nowhere, so
        pages to it are recorded ``unrouted``).
    routes : dict
        Severity to :class:`Route`; a severity without a route is not paged.
    escalation : list of EscalationLevel
        Ascending ``after``.
    contacts : dict
        Resource owner / team to channel name (for a "notify the data owner" action).
    link : str
        Console link template with ``{id}``.
    retry_attempts, retry_wait_seconds :
        Tries of one delivery within one call, and the first wait between them (doubling).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"
    working_hours: WorkingHours = Field(default_factory=WorkingHours)
    channels: dict[str, str | list[str]] = Field(default_factory=dict)
    routes: dict[Literal["SEV1", "SEV2", "SEV3", "SEV4"], Route] = Field(default_factory=dict)
    escalation: list[EscalationLevel] = Field(default_factory=list)
    contacts: dict[str, str] = Field(default_factory=dict)
    link: str = ""
    retry_attempts: int = Field(default=3, ge=1, le=20)
    retry_wait_seconds: float = Field(default=0.5, ge=0)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError, … for malformed keys
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)") from None
        return value

    @field_validator("channels")
    @classmethod
    def _apprise_urls(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        bad = []
        for name, urls in value.items():
            for i, url in enumerate([urls] if isinstance(urls, str) else urls):
                if not apprise.Apprise().add(url):
                    # Only the scheme: the rest of an apprise URL is often a secret.
                    scheme = url.split("://", 1)[0] + "://…" if "://" in url else "no scheme"
                    loc = (name,) if isinstance(urls, str) else (name, i)
                    bad.append((loc, f"apprise does not accept this URL ({scheme})"))
        if bad:
            raise several_problems(bad)
        return value

    # Field validators (not a model validator) so that unknown channel names are reported
    # together with every other problem: they see `channels` once it validated.
    @field_validator("routes", "escalation", "contacts")
    @classmethod
    def _known_channels(cls, value: Any, info: ValidationInfo) -> Any:
        channels = info.data.get("channels")
        if channels is None:  # channels itself is invalid and reported on its own
            return value
        known = ", ".join(sorted(channels)) or "none defined"
        unknown = [(loc, f"unknown channel {name!r} (channels: {known})")
                   for loc, name in _references(str(info.field_name), value) if name not in channels]
        if unknown:
            raise several_problems(unknown)
        return value

    @field_validator("escalation")
    @classmethod
    def _ascending(cls, value: list[EscalationLevel]) -> list[EscalationLevel]:
        for i in range(1, len(value)):
            if value[i].after <= value[i - 1].after:
                raise several_problems([((i, "after"), "escalation levels must have strictly ascending `after`")])
        return value

    @field_validator("link")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            value.format(id=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"link template may only use {{id}}: {exc}") from None
        return value

    def urls(self, channel: str) -> list[str]:
        """The apprise URLs of a channel (empty for an unknown channel or one without URLs)."""
        urls = self.channels.get(channel, [])
        return [urls] if isinstance(urls, str) else list(urls)

    def local(self, now: datetime) -> datetime:
        return _aware(now).astimezone(ZoneInfo(self.timezone))

    def in_working_hours(self, now: datetime) -> bool:
        return self.working_hours.contains(self.local(now))

    def next_working_start(self, now: datetime) -> datetime:
        """The next start of working hours after ``now``, in UTC."""
        return self.working_hours.next_start(self.local(now)).astimezone(UTC)


def default_routing() -> RoutingConfig:
    """Routes without channels: SEV1–SEV3 pages are recorded ``unrouted`` (visible, never lost)."""
    return RoutingConfig(routes={"SEV1": Route(), "SEV2": Route(), "SEV3": Route(when="working_hours")})


def paging_configured(config: RoutingConfig) -> bool:
    """Some channel has a URL: a page can reach someone (else every page is recorded ``unrouted``)."""
    return any(config.urls(channel) for channel in config.channels)


@dataclass(frozen=True)
class Unrouted:
    """The incidents whose page reached nobody (its slot's newest state ``unrouted``).

    Attributes
    ----------
    incidents : int
        How many incidents (each counted once, at the highest severity it was paged for).
    by_severity : dict
        Severity to incidents, most severe first (only severities with some).
    channels : list of str
        The channels those pages were routed to (none: their routes named no channel).
    """

    incidents: int = 0
    by_severity: dict[str, int] = field(default_factory=dict)
    channels: list[str] = field(default_factory=list)


def unrouted_pages(client: Client) -> Unrouted:
    """Who would have been paged: the incidents whose page (level 0) was recorded ``unrouted``."""
    rows = client.query(
        "SELECT highest, count() AS incidents, groupUniqArrayArray(named) FROM ("
        "  SELECT incident_id, min(severity) AS highest, groupUniqArrayIf(channel, channel != '') AS named FROM ("
        "    SELECT incident_id, severity, channel, argMax(state, seq) AS last_state FROM pages WHERE level = 0"
        "    GROUP BY incident_id, severity, channel)"
        "  WHERE last_state = 'unrouted' GROUP BY incident_id)"
        " GROUP BY highest ORDER BY highest").result_rows
    return Unrouted(sum(int(r[1]) for r in rows), {str(r[0]): int(r[1]) for r in rows},
                    sorted({str(c) for r in rows for c in r[2]}))


# --------------------------------------------------------------------------- paging


@dataclass(frozen=True)
class PageRecord:
    """One row of an incident's page log.

    Attributes
    ----------
    incident_id : int
    severity : str
        The severity the page was for.
    level : int
        0 for the page, 1..n for escalation levels.
    channel : str
        Channel name ("" when the route names none).
    state : str
        ``sent``, ``failed``, ``deferred``, ``unrouted`` or ``cancelled``.
    at : datetime
        When this state was recorded.
    error : str
        Why delivery failed (or partly failed), or why nothing was sent.
    due_at : datetime or None
        When a deferred page is delivered or a failed one retried.
    attempts : int
        Delivery rounds so far for this slot.
    reason : str
        Why it was paged (or cancelled).
    """

    incident_id: int
    severity: str
    level: int
    channel: str
    state: str
    at: datetime
    error: str = ""
    due_at: datetime | None = None
    attempts: int = 0
    reason: str = ""


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _ms(moment: datetime | None) -> int:
    return 0 if moment is None else to_epoch_ms(moment)


def _notify_type(severity: str) -> apprise.NotifyType:
    if severity in ("SEV1", "SEV2"):
        return apprise.NotifyType.FAILURE
    return apprise.NotifyType.WARNING if severity == "SEV3" else apprise.NotifyType.INFO


def _listing(items: Any) -> str:
    items = [str(i) if len(str(i)) <= 80 else str(i)[:79] + "…" for i in (items or [])]
    more = f" (+{len(items) - _LISTED} more)" if len(items) > _LISTED else ""
    return (", ".join(items[:_LISTED]) or "-") + more


class Pager:
    """Pages incidents by severity and escalates them; all state in the ``pages`` table.

    Parameters
    ----------
    client : Client
        The store (its schema initialised).
    config : RoutingConfig, optional
        Defaults to :func:`default_routing` (everything recorded ``unrouted``).
    max_rounds : int
        Delivery rounds of a failed page before it is given up (left ``failed``).
    interrupted_after : timedelta
        A delivery still ``sending`` this long after it began (wall clock) was interrupted.
    """

    def __init__(self, client: Client, config: RoutingConfig | None = None, max_rounds: int = MAX_ROUNDS,
                 interrupted_after: timedelta = INTERRUPTED_AFTER) -> None:
        self.client = client
        self.config = config if config is not None else default_routing()
        self.max_rounds = max_rounds
        self.interrupted_after = interrupted_after

    # ---- public API

    def page(self, incident: dict[str, Any], now: datetime, reason: str = "") -> list[PageRecord]:
        """Page the on-call for an incident by its severity.

        One page per (incident, severity): a second call does nothing unless the severity
        is now higher than every severity already paged for it; then it pages again, and
        pending (deferred or failed) pages of the lower severities are cancelled as
        superseded. Resolved and false-positive incidents are not paged.

        Parameters
        ----------
        incident : dict
            As :func:`detector.incidents.get_incident` returns it.
        now : datetime
            The current time (recorded as ``at``).
        reason : str
            Why it is paged (kept in the log).

        Returns
        -------
        list of PageRecord
            What was recorded now; empty when the severity has no route or was paged.
        """
        now = _aware(now)
        incident_id, severity = int(incident["id"]), str(incident["severity"])
        route = self.config.routes.get(severity)  # type: ignore[call-overload]
        if route is None or incident.get("status", "open") in FINAL_STATUSES:
            return []
        paged = [r[0] for r in self.client.query(
            "SELECT DISTINCT severity FROM pages WHERE incident_id = {id:UInt64} AND level = 0",
            parameters={"id": incident_id},
        ).result_rows]
        if any(severity_rank(s) <= severity_rank(severity) for s in paged):
            return []
        written = [self._write(PageRecord(incident_id, slot[1], 0, slot[3], "cancelled", now,
                                          reason=f"superseded by {severity}", attempts=tries))
                   for slot, tries in self._pending(incident_id, level=0)]
        if not route.channels:
            return written + [self._write(PageRecord(incident_id, severity, 0, "", "unrouted", now,
                                                     error=f"the {severity} route names no channel", reason=reason))]
        if route.when == "working_hours" and not self.config.in_working_hours(now):
            due = self.config.next_working_start(now)
            return written + [self._write(PageRecord(incident_id, severity, 0, channel, "deferred", now,
                                                     due_at=due, reason=reason or "outside working hours"))
                              for channel in route.channels]
        title, body = self._message(incident, severity, 0, reason)
        return written + [self._send(incident_id, severity, 0, channel, title, body, now, reason, attempts=0)
                          for channel in route.channels]

    def notify(self, channels: list[str], title: str, body: str, now: datetime,
               severity: str | None = None) -> list[dict[str, Any]]:
        """Send an ad-hoc message (no dedup, not logged per incident), e.g. for a notify action.

        Parameters
        ----------
        channels : list of str
            Channel names.
        title, body : str
        now : datetime
        severity : str, optional
            Picks the apprise notification type (default info).

        Returns
        -------
        list of dict
            Per channel: ``channel``, ``state`` (``sent``/``failed``/``unrouted``), ``error``,
            ``attempts``, ``at``.

        Raises
        ------
        PagingError
            No channels, an unknown channel (before anything is sent), or nothing was delivered.
        """
        now = _aware(now)
        if not channels:
            raise PagingError("no channels to notify")
        unknown = [c for c in channels if c not in self.config.channels]
        if unknown:
            raise PagingError(f"unknown channel(s) {', '.join(map(repr, unknown))}; defined: "
                              f"{', '.join(sorted(self.config.channels)) or 'none'}")
        results = []
        for channel in channels:
            if not self.config.urls(channel):
                results.append({"channel": channel, "state": "unrouted", "error": "channel has no URL",
                                "attempts": 0, "at": now})
                continue
            error, tries = self._deliver(channel, title, body, _notify_type(severity or "SEV4"))
            state = "failed" if error and error.startswith("failed") else "sent"
            results.append({"channel": channel, "state": state, "error": error, "attempts": tries, "at": now})
        if not any(r["state"] == "sent" for r in results):
            raise PagingError("nothing delivered: " + "; ".join(f"{r['channel']}: {r['error']}" for r in results))
        return results

    def escalate(self, now: datetime) -> list[PageRecord]:
        """The every-minute pass: due deferred pages, failed retries, escalation levels.

        0. Deliveries interrupted by a crash (still ``sending`` after :data:`INTERRUPTED_AFTER`)
           are delivered again with the same idempotency key, whatever the incident's status
           (it may have been paged): the page is recorded with reason :data:`REDELIVERED`.
        1. Deferred pages whose ``due_at <= now`` are delivered, or cancelled if the incident
           is no longer open (acknowledged, contained, resolved, false positive).
        2. Failed pages whose retry is due are delivered again (with the same cancellation),
           at most ``max_rounds`` rounds in all, backing off 1, 2, 4 … minutes.
        3. An incident still ``open`` at ``now >= t + level.after`` is paged on the level's
           channels, once per level, where ``t`` is its first level-0 page that was due
           (sent, failed or unrouted: a page that never arrived is exactly when to escalate).

        Returns
        -------
        list of PageRecord
            Everything recorded by this pass.
        """
        now = _aware(now)
        written: list[PageRecord] = []
        incidents: dict[int, dict[str, Any] | None] = {}

        def current(incident_id: int) -> dict[str, Any] | None:
            if incident_id not in incidents:
                incidents[incident_id] = get_incident(self.client, incident_id)
            return incidents[incident_id]

        for (incident_id, severity, level, channel), tries in self._interrupted():
            incident = current(incident_id)
            if incident is None:
                continue
            # Re-delivered with the same idempotency key: a channel that honours it drops the
            # repeat; one that cannot may show the page twice (the documented exception).
            title, body = self._message(incident, severity, level, "")
            written.append(self._send(incident_id, severity, level, channel, title, body, now,
                                      reason=REDELIVERED, attempts=tries))
        for (incident_id, severity, level, channel, state), tries in self._due(now):
            incident = current(incident_id)
            if incident is None or incident["status"] != "open":
                status = "gone" if incident is None else incident["status"]
                written.append(self._write(PageRecord(incident_id, severity, level, channel, "cancelled", now,
                                                      reason=f"incident {status}", attempts=tries)))
                continue
            title, body = self._message(incident, severity, level, "")
            written.append(self._send(incident_id, severity, level, channel, title, body, now,
                                      reason="deferred page due" if state == "deferred" else "retry",
                                      attempts=tries))
        if self.config.escalation:
            written.extend(self._escalation_pass(now, current))
        return written

    def pages(self, incident_id: int) -> list[PageRecord]:
        """The page log of one incident, in the order it was written."""
        result = self.client.query(
            "SELECT severity, level, channel, state, toUnixTimestamp64Milli(at) AS at_ms, error,"
            " toUnixTimestamp64Milli(due_at) AS due_ms, attempts, reason"
            " FROM pages WHERE incident_id = {id:UInt64} ORDER BY seq",
            parameters={"id": incident_id},
        )
        records = [PageRecord(incident_id, sev, int(level), channel, state, from_epoch_ms(at_ms), error,
                              from_epoch_ms(due_ms) if due_ms else None, int(tries), reason)
                   for sev, level, channel, state, at_ms, error, due_ms, tries, reason in result.result_rows]
        # A `sending` row followed by its outcome says nothing more; one left last is a
        # delivery in progress or interrupted, and is shown.
        last_of = {(r.severity, r.level, r.channel): i for i, r in enumerate(records)}
        return [r for i, r in enumerate(records)
                if r.state != "sending" or last_of[(r.severity, r.level, r.channel)] == i]

    # ---- internals

    def _escalation_pass(self, now: datetime, current: Any) -> list[PageRecord]:
        """Step 3 of :meth:`escalate`."""
        levels = len(self.config.escalation)
        rows = self.client.query(
            "SELECT incident_id, minIf(toUnixTimestamp64Milli(at), level = 0"
            " AND state IN ('sent', 'failed', 'unrouted')) AS first_ms, groupUniqArrayIf(level, level > 0) AS done"
            " FROM pages GROUP BY incident_id HAVING first_ms > 0 AND length(done) < {levels:UInt8}",
            parameters={"levels": levels},
        ).result_rows
        written = []
        for incident_id, first_ms, done in rows:
            incident = current(int(incident_id))
            if incident is None or incident["status"] != "open":
                continue
            severity = str(incident["severity"])
            for number, step in enumerate(self.config.escalation, start=1):
                if number in done or _aware(now) < from_epoch_ms(first_ms) + step.after:
                    continue
                why = f"unacknowledged {_span(step.after)} after the first page"
                title, body = self._message(incident, severity, number, why)
                for channel in step.channels:
                    if self.config.urls(channel):
                        written.append(self._send(int(incident_id), severity, number, channel, title, body, now,
                                                  reason=why, attempts=0))
                    else:
                        written.append(self._write(PageRecord(int(incident_id), severity, number, channel,
                                                              "unrouted", now, error="channel has no URL", reason=why)))
        return written

    def _latest(self, where: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Newest state per slot: ``(incident, severity, level, channel, state, due_ms, attempts)``."""
        # Aliases differ from column names: ClickHouse would substitute them into argMax(...) too.
        return self.client.query(
            "SELECT incident_id, severity, level, channel, argMax(state, seq) AS last_state,"
            " argMax(toUnixTimestamp64Milli(due_at), seq) AS due_ms, argMax(attempts, seq) AS tries,"
            " argMax(written, seq) AS last_written"
            f" FROM pages GROUP BY incident_id, severity, level, channel HAVING {where}"
            " ORDER BY incident_id, level, severity, channel",
            parameters=parameters,
        ).result_rows

    def _pending(self, incident_id: int, level: int) -> list[tuple[tuple[Any, ...], int]]:
        rows = self._latest("incident_id = {id:UInt64} AND level = {level:UInt8}"
                            " AND last_state IN ('deferred', 'failed')", {"id": incident_id, "level": level})
        return [(row[:4], int(row[6])) for row in rows]

    def _interrupted(self) -> list[tuple[tuple[Any, ...], int]]:
        cutoff = time_ns() - int(self.interrupted_after.total_seconds() * 1e9)
        rows = self._latest("last_state = 'sending' AND last_written < {cutoff:UInt64}", {"cutoff": cutoff})
        return [((int(r[0]), r[1], int(r[2]), r[3]), int(r[6])) for r in rows]

    def _due(self, now: datetime) -> list[tuple[tuple[Any, ...], int]]:
        rows = self._latest("last_state IN ('deferred', 'failed') AND due_ms > 0 AND due_ms <= {now:Int64}",
                            {"now": _ms(now)})
        return [((int(r[0]), r[1], int(r[2]), r[3], r[4]), int(r[6])) for r in rows]

    def _send(self, incident_id: int, severity: str, level: int, channel: str, title: str, body: str,
              now: datetime, reason: str, attempts: int) -> PageRecord:
        """Deliver one slot now and record ``sent`` or ``failed`` (with its next retry)."""
        if not self.config.urls(channel):
            return self._write(PageRecord(incident_id, severity, level, channel, "unrouted", now,
                                          error="channel has no URL" if channel in self.config.channels
                                          else "channel no longer configured", reason=reason, attempts=attempts))
        # The attempt is recorded before the delivery, so a crash during it is never taken for
        # "not paged yet" (which would page again with a new message): see escalate(), step 0.
        self._write(PageRecord(incident_id, severity, level, channel, "sending", now, attempts=attempts,
                               reason=reason))
        key = page_key(incident_id, severity, level, channel)
        error, _ = self._deliver(channel, title, body, _notify_type(severity), key=key)
        rounds = attempts + 1
        if error and error.startswith("failed"):
            due = (_aware(now) + min(_FIRST_BACKOFF * 2 ** (rounds - 1), _MAX_BACKOFF)
                   if rounds < self.max_rounds else None)
            if due is None:
                error += f" (gave up after {rounds} rounds)"
            return self._write(PageRecord(incident_id, severity, level, channel, "failed", now, error=error,
                                          due_at=due, attempts=rounds, reason=reason))
        return self._write(PageRecord(incident_id, severity, level, channel, "sent", now, error=error,
                                      attempts=rounds, reason=reason))

    def _deliver(self, channel: str, title: str, body: str, notify_type: apprise.NotifyType,
                 key: str = "") -> tuple[str, int]:
        """Send to every URL of a channel, retrying the failing ones (tenacity).

        ``key`` (the page's idempotency key) reaches the channels that can carry it.

        Returns
        -------
        error : str
            ``""`` when all delivered; ``"partly delivered: …"`` when some did (the channel
            counts as paged: someone got it, and a retry would page them twice);
            ``"failed: …"`` when none did.
        tries : int
        """
        urls = [with_idempotency_key(url, key) for url in self.config.urls(channel)] if key \
            else self.config.urls(channel)
        errors: dict[int, str] = {}
        pending = list(range(len(urls)))
        tries = 0

        def attempt() -> list[int]:
            nonlocal tries
            tries += 1
            still = []
            for i in pending:
                ok, error = _send_one(urls[i], title, body, notify_type)
                if ok:
                    errors.pop(i, None)
                else:
                    errors[i] = error
                    still.append(i)
            pending[:] = still
            return still

        wait = self.config.retry_wait_seconds
        Retrying(
            stop=stop_after_attempt(self.config.retry_attempts),
            wait=wait_exponential(multiplier=wait, min=wait, max=max(wait, 30.0)),
            retry=retry_if_result(bool),             # retry while some URL is still failing
            retry_error_callback=lambda state: None,  # give up quietly: the caller records it
        )(attempt)
        if not errors:
            return "", tries
        schemes = [url.split("://", 1)[0] for url in urls]
        detail = "; ".join(f"{schemes[i]}#{i}: {msg}" for i, msg in sorted(errors.items()))
        prefix = "failed" if len(errors) == len(urls) else "partly delivered"
        return f"{prefix} after {tries} tries: {detail}", tries

    def _message(self, incident: dict[str, Any], severity: str, level: int, reason: str) -> tuple[str, str]:
        """Title and body of a page (escalation levels say so in the title)."""
        incident_id = int(incident["id"])
        title = f"[{severity}] blastwall {incident_label(incident)}: {incident.get('title', '')}"
        if level:
            title += f" (escalation {level})"
        lines = [
            f"Detector: {incident.get('detector', '?')}",
            f"Severity: {severity} (score {float(incident.get('score', 0.0)):.5g})",
            f"Status: {incident.get('status', '?')}",
            f"Principals: {_listing(incident.get('principals'))}",
            f"Resources: {_listing(incident.get('resources'))}",
        ]
        if incident.get("first_seen"):
            lines.append(f"First seen: {incident['first_seen']}")
        if reason:
            lines.append(f"Why paged: {reason}")
        if self.config.link:
            lines.append(self.config.link.format(id=incident_id))
        return title, "\n".join(lines)

    def _write(self, record: PageRecord) -> PageRecord:
        # One writer per store (the embedded lock / the scheduler's max_instances=1), so
        # max(seq)+1 is a safe sequence number, as for incident_events.
        seq = self.client.query(
            "SELECT max(seq) FROM pages WHERE incident_id = {id:UInt64}", parameters={"id": record.incident_id}
        ).result_rows[0][0] + 1
        self.client.command(
            "INSERT INTO pages (incident_id, seq, severity, level, channel, state, reason, at, due_at, attempts, error,"
            " written) SELECT {id:UInt64}, {seq:UInt32}, {severity:String}, {level:UInt8}, {channel:String},"
            " {state:String}, {reason:String}, " + ms_param("at") + ", " + ms_param("due")
            + ", {attempts:UInt16}, {error:String}, {written:UInt64}",
            parameters={"id": record.incident_id, "seq": seq, "severity": record.severity, "level": record.level,
                        "channel": record.channel, "state": record.state, "reason": record.reason,
                        "at": _ms(record.at), "due": _ms(record.due_at), "attempts": record.attempts,
                        "error": redact_text(record.error), "written": time_ns()},
        )
        if record.state in ("failed", "unrouted"):
            log.warning("page %s for incident %s on %r: %s", record.state, record.incident_id, record.channel,
                        redact_text(record.error))
        return record


#: The reason of a page delivered again after a crash interrupted its delivery.
REDELIVERED = "re-delivered: a crash interrupted the first delivery (a channel without idempotency may show it twice)"


def page_key(incident_id: int, severity: str, level: int, channel: str) -> str:
    """The idempotency key of one page slot: the same on every delivery attempt of it."""
    return f"blastwall-{incident_id}-{severity}-{level}-{channel}"


def with_idempotency_key(url: str, key: str) -> str:
    """``url`` with ``key`` as an ``Idempotency-Key`` header where the channel can carry one.

    apprise's plain HTTP channels (``json://``, ``xml://``, ``form://``) send ``+Header=value``
    URL arguments as headers; other services have no such field through apprise, so their
    URLs are left as they are (a re-delivery after a crash may reach them twice).
    """
    if url.split("://", 1)[0].lower() not in _KEYED_SCHEMES:
        return url
    return f"{url}{'&' if '?' in url else '?'}+Idempotency-Key={key}"


def _send_one(url: str, title: str, body: str, notify_type: apprise.NotifyType) -> tuple[bool, str]:
    """One apprise delivery; apprise reports a failure only as False plus a log line, so keep that line."""
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return False, "apprise does not accept this URL"
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        try:
            ok = bool(plugin.notify(body=body, title=title, notify_type=notify_type))
        except Exception as exc:  # noqa: BLE001 - a plugin bug must be a recorded failure, not a lost page
            return False, f"{type(exc).__name__}: {exc}"
    lines = [line for line in captured.getvalue().splitlines() if line.strip()]
    return ok, "" if ok else (lines[-1] if lines else "delivery failed")


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
