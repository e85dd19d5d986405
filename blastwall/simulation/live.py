"""Live traffic of the demo organisation, honouring the containment the playbooks record.

The console hosts a job that calls :meth:`LiveTraffic.tick` every ~30 s: it appends to
``access_log`` the organisation's events of the time that just passed, plus one attack
scenario shortly after the start, so a visitor watches an attack arrive, page and get
contained. What the playbooks put in force in ``control_log`` (read through
:func:`playbooks.actions.controls_in_force`) shapes what is written from the
control's ``at`` on:

- a suspended identity (``identity``) emits no more events;
- reads, queries, joins, exports, downloads and training of a quarantined resource
  (``resource``; as the resource or among ``related``) come back ``denied`` with no
  bytes or rows;
- a paused training run (``training_run``) gets no more ``train`` events;
- after a revoked grant (``grant``, target ``"RESOURCE -> GRANTEE"``), the reads the
  attack's grant enabled (later reads of that resource by others than the granter)
  come back ``denied``.

Benign traffic is the organisation's own generated traffic of a *template day* of the
simulated period (same weekday when the period has one), shifted onto the target date
with ids that depend only on (template event, target date): re-ticking an interval
writes nothing new.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.times import from_epoch_ms, ms_param, to_epoch_ms
from playbooks.actions import controls_in_force

from ._random import hash64, permute32
from .attacks import SCENARIOS, _Planner
from .events import (
    ACTION,
    ATTACK_INDEX_BASE,
    PTYPE,
    STATUS,
    EventBuffer,
    EventChunk,
    concat,
    to_record_batch,
)
from .model import DAY_MS, OrgModel
from .organisation import Organisation, as_organisation
from .spec import OrgSpec
from .traffic import benign_day

#: Marks the ids of live rows (``f"{seed:x}-live-{YYYYMMDD}-{n:08x}"``); seeded ids never contain it.
LIVE_MARK = "-live-"
#: The default live attack: an AI assistant grants restricted employee telemetry to
#: all-staff and dozens of first-time readers follow (a deterministic SEV1 policy hit).
DEFAULT_ATTACK = "permission_fanout"
#: Actions that read data: what a quarantine denies (as ``playbooks.actions`` counts reads).
READ_ACTIONS = ("read", "query", "join", "export", "download", "train")
#: Attack rows per (attack start second, date): ids stay apart between restarts of the console.
_ATTACK_SLOTS = 16_384
_NEVER = np.iinfo(np.int64).max
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_SEEDED_ID = re.compile(r"^([0-9a-f]+)-(\d{3,})-[0-9a-f]{8}$")


@dataclass(frozen=True)
class TickSummary:
    """What one :meth:`LiveTraffic.tick` did.

    Attributes
    ----------
    start, end : datetime
        The interval ``(start, end]`` of event times covered.
    written : int
        Rows inserted into ``access_log``.
    denied : int
        Written rows that containment turned ``denied`` (quarantine, revoked grant).
    suppressed_by_suspension : int
        Events of suspended identities, not written.
    suppressed_by_pause : int
        ``train`` events of paused training runs, not written.
    attack_events : int
        Written rows of the live attack (denied ones included).
    duplicates : int
        Rows the store already held (an interval ticked again).
    seconds : float
        Wall time of the tick.
    """

    start: datetime
    end: datetime
    written: int = 0
    denied: int = 0
    suppressed_by_suspension: int = 0
    suppressed_by_pause: int = 0
    attack_events: int = 0
    duplicates: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class LiveAttack:
    """The attack a :class:`LiveTraffic` injects.

    Attributes
    ----------
    family : str
        Scenario family (a key of ``attacks.SCENARIOS``).
    description : str
        The scenario's story, as its label would tell it.
    principals, resources : tuple of str
        Its key actors and resources.
    grants : tuple of str
        ``"RESOURCE -> GRANTEE"`` of each grant it makes (what ``revoke_grant`` targets).
    start, end : datetime
        Event times of its first and last rows.
    events : int
        Rows it emits in total.
    event_ids : tuple of str
        Ids of its rows, in event-time order (like ``AttackLabel.event_ids``).
    """

    family: str
    description: str
    principals: tuple[str, ...]
    resources: tuple[str, ...]
    grants: tuple[str, ...]
    start: datetime
    end: datetime
    events: int
    event_ids: tuple[str, ...] = ()


@dataclass
class _Day:
    """One target date's benign events, shifted onto it and sorted by time, with their ids."""

    events: EventChunk
    ids: pa.StringArray
    template: int


@dataclass
class _Interval:
    """Events of one interval before containment, sorted by time."""

    events: EventChunk
    ids: pa.StringArray
    attack: np.ndarray   # bool per row
    grant: np.ndarray    # per row: index into LiveTraffic._grant_targets of the grant that enabled it, -1 none


def demo_start(now: datetime, days: int) -> datetime:
    """The ``OrgSpec.start`` that makes a ``days``-long history end at ``now``'s UTC midnight.

    Live traffic then continues the seeded history without a gap or an overlap.

    Parameters
    ----------
    now : datetime
        Timezone-aware.
    days : int
        Length of the seeded period.

    Returns
    -------
    datetime
        Midnight UTC, ``days`` days before ``now``'s date.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=days)


def demo_spec(client: Any) -> OrgSpec:
    """Recover the spec of the organisation seeded into a store by ``blastwall demo``.

    Size from the ``principals`` catalogue; seed, start and length from the seeded
    (not live) rows of ``access_log``; attacks from ``scenario_labels``.

    Parameters
    ----------
    client : clickhouse_connect.driver.Client
        The demo store.

    Returns
    -------
    OrgSpec

    Raises
    ------
    ValueError
        When the store holds no simulated organisation.
    """
    principals = int(client.query("SELECT uniqExact(principal) FROM principals").result_rows[0][0])
    first_ms, last_ms, rows, some_id = client.query(
        "SELECT toUnixTimestamp64Milli(min(event_time)), toUnixTimestamp64Milli(max(event_time)), count(),"
        " any(event_id) FROM access_log WHERE position(event_id, {live:String}) = 0",
        parameters={"live": LIVE_MARK}).result_rows[0]
    match = _SEEDED_ID.match(str(some_id or ""))
    if not rows or not principals or match is None:
        raise ValueError("the store holds no simulated organisation (seed one with `blastwall demo`)")
    seed = int(match.group(1), 16)
    start = from_epoch_ms(int(first_ms) // DAY_MS * DAY_MS)
    days = (int(last_ms) // DAY_MS) - (int(first_ms) // DAY_MS) + 1
    attacks = False
    if int(client.command("EXISTS TABLE scenario_labels")):
        attacks = int(client.query("SELECT count() FROM scenario_labels WHERE seed = {s:UInt64}",
                                   parameters={"s": seed}).result_rows[0][0]) > 0
    return OrgSpec(principals=principals, days=days, seed=seed, start=start, attacks=attacks)


class LiveTraffic:
    """Appends the organisation's events as time passes, and honours containment.

    Parameters
    ----------
    client : clickhouse_connect.driver.Client
        An initialised store holding the organisation's catalogue (and ``control_log``).
    spec : OrgSpec or Organisation
        The organisation (a spec is built here; building a 1,000-principal one takes ~0.5 s).
    started : datetime
        Timezone-aware; the first tick writes events after it.
    attack_after : timedelta
        The attack's first event is at ``started + attack_after``.
    attack : str or None
        Scenario family of ``attacks.SCENARIOS`` to inject, or None for benign traffic only.
    benign : bool
        Write the organisation's benign traffic too (False: the attack alone, so several
        instances can each inject one attack beside one benign writer, as the latency
        benchmark does).
    attack_variant : int
        A later instance of the scenario (other actors and data: the fan-out's next dataset,
        another training run); 0 is the demo's.

    Attributes
    ----------
    last_tick : datetime
        End of the newest interval written; advanced only after a successful write, so a
        tick after a failure catches the missed interval up.
    last_summary : TickSummary or None
        What the newest successful tick did.
    attack_plan : LiveAttack or None
        The injected attack.

    Examples
    --------
    >>> traffic = LiveTraffic(client, OrgSpec(), started=datetime.now(timezone.utc))  # doctest: +SKIP
    >>> traffic.tick(datetime.now(timezone.utc)).written  # doctest: +SKIP
    """

    def __init__(self, client: Any, spec: OrgSpec | Organisation, started: datetime,
                 attack_after: timedelta = timedelta(minutes=3), attack: str | None = DEFAULT_ATTACK,
                 benign: bool = True, attack_variant: int = 0) -> None:
        if started.tzinfo is None:
            raise ValueError("started must be timezone-aware")
        if attack_after < timedelta(0):
            raise ValueError("attack_after must not be negative")
        if attack is not None and attack not in SCENARIOS:
            raise ValueError(f"unknown attack {attack!r}; one of {', '.join(sorted(SCENARIOS))}")
        self.client = client
        self.organisation = as_organisation(spec)
        self.spec = self.organisation.spec
        self.model: OrgModel = self.organisation.model
        self.started = started.astimezone(UTC)
        self.last_tick = self.started
        self.last_summary: TickSummary | None = None
        self._days: OrderedDict[date, _Day] = OrderedDict()
        self._grant_targets: list[str] = []
        self._new_resources: pa.Table | None = None
        self.attack_plan: LiveAttack | None = None
        self.benign = benign
        self.attack_variant = attack_variant
        self._attack = EventChunk.empty()
        self._attack_ids = pa.array([], pa.string())
        self._attack_grant = np.zeros(0, np.int64)
        if attack is not None:
            self._plan_attack(attack, to_epoch_ms(self.started + attack_after))
        self._vocab = self.model.vocabularies()

    # ------------------------------------------------------------------ public

    def tick(self, now: datetime) -> TickSummary:
        """Write every event with ``last_tick < event_time <= now``, containment applied.

        Parameters
        ----------
        now : datetime
            Timezone-aware end of the interval. Not after ``last_tick``: nothing to do.

        Returns
        -------
        TickSummary

        Raises
        ------
        Exception
            Whatever the store raises; ``last_tick`` then stays, and the next tick covers
            the missed interval too.
        """
        clock = time.perf_counter()
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        start, end = self.last_tick, now.astimezone(UTC)
        lo, hi = to_epoch_ms(start), to_epoch_ms(end)
        if hi <= lo:
            return TickSummary(start, start)
        interval = self._interval(lo, hi)
        summary, batch = self._contain(interval, lo, hi)
        if batch.num_rows and self._new_resources is not None and summary.attack_events:
            # The attack created catalogue entries (a training run): catalogue them with its first rows.
            self.client.insert_arrow("resources", self._new_resources)
            self._new_resources = None
        if batch.num_rows:
            self.client.insert_arrow("access_log", pa.Table.from_batches([batch]))
        summary = TickSummary(start, end, summary.written, summary.denied, summary.suppressed_by_suspension,
                              summary.suppressed_by_pause, summary.attack_events, summary.duplicates,
                              round(time.perf_counter() - clock, 4))
        self.last_tick = end
        self.last_summary = summary
        return summary

    def planned(self, start: datetime, end: datetime) -> pa.Table:
        """The organisation's events with ``start < event_time <= end``, before containment.

        Nothing is written; this is what a tick over the interval would start from.

        Parameters
        ----------
        start, end : datetime
            Timezone-aware bounds.

        Returns
        -------
        pyarrow.Table
            With the ``access_log`` contract schema, sorted by event time.
        """
        interval = self._interval(to_epoch_ms(start), to_epoch_ms(end))
        return pa.Table.from_batches([to_record_batch(interval.events, interval.ids, self._vocab)])

    def template_day(self, target: date) -> int:
        """The day of the simulated period whose benign traffic ``target`` repeats.

        The same weekday (not a quarter close) when the period has one, rotating over the
        period's weeks; else the same kind of day (working day or weekend); else any.

        Parameters
        ----------
        target : date
            UTC date of the live events.

        Returns
        -------
        int
            0-based day of the period.
        """
        spec = self.spec
        weekday = [(spec.start.weekday() + d) % 7 for d in range(spec.days)]
        wanted = target.weekday()
        for pool in ([d for d in range(spec.days) if weekday[d] == wanted and d not in self.model.close_days],
                     [d for d in range(spec.days) if weekday[d] == wanted],
                     [d for d in range(spec.days) if (weekday[d] >= 5) == (wanted >= 5)],
                     list(range(spec.days))):
            if pool:
                return pool[(target.toordinal() // 7) % len(pool)]
        raise AssertionError("a period has at least one day")  # pragma: no cover - OrgSpec enforces it

    # ------------------------------------------------------------------ events

    def _day(self, target: date) -> _Day:
        """Benign events of ``target`` (cached: a tick touches one date, rarely two)."""
        found = self._days.get(target)
        if found is not None:
            self._days.move_to_end(target)
            return found
        template = self.template_day(target)
        events = benign_day(self.model, template)
        # Numbered in generation order (deterministic), like the seeded ids, then sorted by time.
        numbers = permute32(np.arange(len(events), dtype=np.int64), _id_key(self.spec.seed, target))
        order = np.argsort(events.time, kind="stable")
        events = events.take(order)
        events.time = events.time + (to_epoch_ms(_midnight(target)) - self.model.day_start_ms(template))
        day = _Day(events, _format_ids(_id_prefix(self.spec.seed, target), numbers[order]), template)
        self._days[target] = day
        while len(self._days) > 3:
            self._days.popitem(last=False)
        return day

    def _interval(self, lo: int, hi: int) -> _Interval:
        """Benign and attack events with ``lo < time <= hi`` (epoch ms), sorted by time."""
        chunks, ids, attack, grant = [], [], [], []
        if hi > lo:
            first, last = from_epoch_ms(lo + 1).date(), from_epoch_ms(hi).date()
            for k in range((last - first).days + 1) if self.benign else ():
                day = self._day(first + timedelta(days=k))
                a, b = np.searchsorted(day.events.time, [lo, hi], side="right")
                if b > a:
                    chunks.append(day.events.slice(int(a), int(b)))
                    ids.append(day.ids.slice(int(a), int(b - a)))
                    attack.append(np.zeros(b - a, bool))
                    grant.append(np.full(b - a, -1, np.int64))
            a, b = np.searchsorted(self._attack.time, [lo, hi], side="right")
            if b > a:
                chunks.append(self._attack.slice(int(a), int(b)))
                ids.append(self._attack_ids.slice(int(a), int(b - a)))
                attack.append(np.ones(b - a, bool))
                grant.append(self._attack_grant[a:b])
        if not chunks:
            return _Interval(EventChunk.empty(), pa.array([], pa.string()), np.zeros(0, bool), np.zeros(0, np.int64))
        events = concat(chunks)
        # take() copies: containment edits these rows, never the cached days.
        order = np.argsort(events.time, kind="stable")
        return _Interval(events.take(order), pa.concat_arrays(ids).take(pa.array(order)),
                         np.concatenate(attack)[order], np.concatenate(grant)[order])

    # ------------------------------------------------------------------ containment

    def _contain(self, interval: _Interval, lo: int, hi: int) -> tuple[TickSummary, pa.RecordBatch]:
        """Apply the controls in force, drop rows already stored; the batch to insert."""
        events = interval.events
        since: dict[str, dict[str, int]] = {"identity": {}, "resource": {}, "training_run": {}, "grant": {}}
        for control in controls_in_force(self.client):
            if control["kind"] in since:
                since[control["kind"]][control["target"]] = to_epoch_ms(control["at"])
        t = events.time
        suspended = t >= _since_by_code(since["identity"], self.model.principal_vocab, events.principal)
        paused = (events.action == ACTION["train"]) & \
            (t >= _since_by_code(since["training_run"], self.model.resource_vocab, events.resource))
        reads = np.isin(events.action, [ACTION[a] for a in READ_ACTIONS])
        quarantine_at = _since_table(since["resource"], self.model.resource_vocab)
        quarantined = reads & (t >= quarantine_at[events.resource])
        if len(events.rel_row) and since["resource"]:
            # A join or a training run also reads its related resources.
            padded = np.append(quarantine_at, _NEVER)
            partners = np.where(events.rel >= 0, events.rel, len(quarantine_at))
            rows = events.rel_row[(padded[partners] <= t[events.rel_row][:, None]).any(axis=1)]
            quarantined[rows] = reads[rows]
        revoked_at = np.array([since["grant"].get(g, _NEVER) for g in self._grant_targets] + [_NEVER], np.int64)
        revoked = t >= revoked_at[interval.grant]  # -1 picks the trailing "never"
        dropped = suspended | paused
        denied = (quarantined | revoked) & ~dropped & (events.status != STATUS["denied"])
        events.status[denied] = STATUS["denied"]
        events.nbytes[denied] = 0
        events.nrows[denied] = 0
        keep = np.flatnonzero(~dropped)
        batch = to_record_batch(events.take(keep), interval.ids.take(pa.array(keep)), self._vocab)
        stored = self._stored_ids(lo, hi) if batch.num_rows else pa.array([], pa.string())
        new = pc.invert(pc.is_in(batch.column("event_id"), value_set=stored)).to_numpy(zero_copy_only=False)
        batch = batch.filter(pa.array(new))
        summary = TickSummary(
            from_epoch_ms(lo), from_epoch_ms(hi), written=batch.num_rows, denied=int(denied[keep][new].sum()),
            suppressed_by_suspension=int(suspended.sum()), suppressed_by_pause=int((paused & ~suspended).sum()),
            attack_events=int(interval.attack[keep][new].sum()), duplicates=int((~new).sum()))
        return summary, batch

    def _stored_ids(self, lo: int, hi: int) -> pa.Array:
        """Ids of live rows the store already holds in ``(lo, hi]`` (a tick repeated)."""
        result = self.client.query_arrow(
            f"SELECT event_id FROM access_log WHERE event_time > {ms_param('lo')}"
            f" AND event_time <= {ms_param('hi')}"
            " AND startsWith(event_id, {prefix:String})",
            parameters={"lo": lo, "hi": hi, "prefix": f"{self.spec.seed:x}{LIVE_MARK}"})
        column = result.column("event_id").combine_chunks()
        return column.cast(pa.string()) if column.type != pa.string() else column

    # ------------------------------------------------------------------ the attack

    def _plan_attack(self, family: str, at_ms: int) -> None:
        """Plan one scenario as the seeded attacks are planned, then move it to ``at_ms``."""
        model, spec = self.model, self.spec
        sizes = _vocab_sizes(model)
        planner = _Planner(model)
        # Its own random stream, and the next instance of the family (another dataset for
        # the fan-out), so the live attack does not replay a seeded one.
        repeat = (1 + (spec.days - spec.warmup_days) // 14 if spec.attacks else 0) + self.attack_variant
        planner.rng = np.random.default_rng([spec.seed, 0x11FE, repeat])
        planner.first_ms, planner.end_ms = model.day_start_ms(0), model.day_start_ms(spec.days + 31)
        workdays = [d for d in range(spec.days) if not model.is_weekend(d)] or list(range(spec.days))
        n_resources = len(model.resources)
        SCENARIOS[family](planner, workdays[-1], repeat)
        if not planner.rows:
            raise RuntimeError(f"attack scenario {family} produced no events")
        _refresh_vocabularies(model, sizes)
        rows = sorted(planner.rows, key=lambda r: (r[0], r[1], r[2]))
        shift = at_ms - rows[0][0]
        buffer = EventBuffer()
        for time_ms, _, _, args, kwargs in rows:
            buffer.add(time_ms + shift, *args, **kwargs)
        chunk = buffer.to_chunk()
        self._attack = chunk
        self._attack_ids = self._attack_event_ids(chunk.time, at_ms)
        self._attack_grant = self._grant_dependencies(chunk)
        if len(model.resources) > n_resources:
            from .organisation import _resources_table

            self._new_resources = _resources_table(model).slice(n_resources)
        scenario = planner.scenarios[-1]
        self.attack_plan = LiveAttack(
            family=family, description=scenario.description, principals=tuple(scenario.principals),
            resources=tuple(scenario.resources), grants=tuple(self._grant_targets),
            start=from_epoch_ms(int(chunk.time[0])), end=from_epoch_ms(int(chunk.time[-1])), events=len(chunk),
            event_ids=tuple(self._attack_ids.to_pylist()))

    def _attack_event_ids(self, times: np.ndarray, at_ms: int) -> pa.StringArray:
        """Ids in the same keyed permutation as the benign rows of each date (attack slots above 2**31)."""
        second = (at_ms // 1000) % 86_400
        dates = (times // DAY_MS).astype(np.int64)
        out: list[pa.StringArray] = []
        for day_number in np.unique(dates):
            rows = np.flatnonzero(dates == day_number)
            if len(rows) > _ATTACK_SLOTS:
                raise RuntimeError(f"the attack emits {len(rows)} rows on one day; at most {_ATTACK_SLOTS}")
            target = from_epoch_ms(int(day_number) * DAY_MS).date()
            index = ATTACK_INDEX_BASE + second * _ATTACK_SLOTS + np.arange(len(rows), dtype=np.int64)
            out.append(_format_ids(_id_prefix(self.spec.seed, target), permute32(index, _id_key(self.spec.seed,
                                                                                                   target))))
        return pa.concat_arrays(out) if out else pa.array([], pa.string())

    def _grant_dependencies(self, chunk: EventChunk) -> np.ndarray:
        """Per attack row, the grant (index into ``_grant_targets``) that enabled it, or -1.

        A grant enables the later reads of its resource by anyone but the granter.
        """
        model = self.model
        dependency = np.full(len(chunk), -1, np.int64)
        reads = np.isin(chunk.action, [ACTION[a] for a in READ_ACTIONS])
        for g in np.flatnonzero(chunk.action == ACTION["grant"]):
            target = (f"{model.resource_vocab.names[chunk.resource[g]]} -> "
                      f"{model.grantee_vocab.names[chunk.grantee[g]]}")
            if target not in self._grant_targets:
                self._grant_targets.append(target)
            enabled = reads & (chunk.resource == chunk.resource[g]) & (chunk.principal != chunk.principal[g]) \
                & (np.arange(len(chunk)) > g)
            dependency[enabled] = self._grant_targets.index(target)
        return dependency


# ---------------------------------------------------------------------- helpers


def _midnight(target: date) -> datetime:
    """Midnight UTC of a date."""
    return datetime(target.year, target.month, target.day, tzinfo=UTC)


def _id_prefix(seed: int, target: date) -> str:
    """What every live id of ``target`` starts with (seed and date; never a seeded id's shape)."""
    return f"{seed:x}{LIVE_MARK}{target:%Y%m%d}-"


def _id_key(seed: int, target: date) -> int:
    """Key of the id permutation of one target date (apart from the seeded days' keys)."""
    return int(hash64(seed, target.toordinal(), 0x11FE)[()])


def _format_ids(prefix: str, numbers: np.ndarray) -> pa.StringArray:
    """``prefix + f"{n:08x}"`` for every ``n``, without a Python loop."""
    head = np.frombuffer(prefix.encode(), np.uint8)
    n, width = len(numbers), len(head) + 8
    chars = np.empty((n, width), np.uint8)
    chars[:, : len(head)] = head
    shifts = np.arange(28, -4, -4, dtype=np.uint64)
    digits = (np.asarray(numbers, np.uint64)[:, None] >> shifts[None, :]) & np.uint64(0xF)
    chars[:, len(head):] = _HEX[digits.astype(np.intp)]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.reshape(-1)))


def _since_table(targets: dict[str, int], vocab: Any) -> np.ndarray:
    """Per code of ``vocab``, when its control took effect (epoch ms; never when none)."""
    table = np.full(len(vocab), _NEVER, np.int64)
    for name, at in targets.items():
        if name in vocab:
            table[vocab[name]] = at
    return table


def _since_by_code(targets: dict[str, int], vocab: Any, codes: np.ndarray) -> np.ndarray:
    """Per event, when the control on its code took effect (never when none)."""
    if not targets:
        return np.full(len(codes), _NEVER, np.int64)
    return _since_table(targets, vocab)[codes]


def _vocab_sizes(model: OrgModel) -> tuple[int, ...]:
    """Sizes of the vocabularies events index into."""
    return (len(model.principal_vocab), len(model.resource_vocab), len(model.grantee_vocab), len(model.ip_vocab),
            len(model.value_vocab))


def _refresh_vocabularies(model: OrgModel, before: tuple[int, ...]) -> None:
    """Planning may name new strings (an outside account): rebuild the cached Arrow vocabularies."""
    if _vocab_sizes(model) == before:
        return
    missing = len(model.principal_vocab) - len(model.ptype)
    if missing > 0:
        model.ptype = np.append(model.ptype, np.full(missing, PTYPE["human"], np.int8))
    model._vocabularies = None
