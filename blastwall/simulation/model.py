"""The in-memory model of an organisation that the traffic generators read.

:func:`~blastwall.simulation.organisation.build_organisation` fills an
:class:`OrgModel` once; generating a day then only reads it, so days can be
generated in any order, any number of times, with identical results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .events import EventChunk, Vocabularies
from .spec import OrgSpec
from .style import CLASSIC, OrgStyle

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000


class Vocab:
    """Strings numbered in first-seen order; the codes events carry."""

    def __init__(self, initial: tuple[str, ...] = ()) -> None:
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        for name in initial:
            self.code(name)

    def code(self, name: str) -> int:
        """The code of ``name``, numbering it if new."""
        found = self._index.get(name)
        if found is None:
            found = self._index[name] = len(self.names)
            self.names.append(name)
        return found

    def __getitem__(self, name: str) -> int:
        return self._index[name]

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class PrincipalRecord:
    """One identity of the catalogue."""

    name: str
    principal_type: str
    team: str
    title: str
    manager: str
    created_ms: int
    site: int = 0
    on_behalf_of: int = -1  # agents acting for a person: that person's code


@dataclass
class ResourceRecord:
    """One resource of the catalogue, with the sizes the traffic needs."""

    name: str
    kind: str
    sensitivity: str
    categories: tuple[str, ...]
    owner: str
    sanitized: int
    updated_ms: int
    domain: str
    team: str
    rows_total: int
    row_bytes: int
    size_bytes: int = 0  # model artifacts: the file size


@dataclass
class PeoplePopulation:
    """People, and agents that act for a person, as arrays aligned on ``member``.

    Their event intensity follows a working-hours profile in local time.
    """

    member: np.ndarray        # principal codes
    day_key: np.ndarray       # whose leave/busy days apply (the person an agent serves)
    profile: np.ndarray       # row of OrgModel.action_cdf
    team: np.ndarray
    tz_min: np.ndarray        # UTC offset in minutes
    start_h: np.ndarray       # local start of the working day, hours
    len_h: np.ndarray         # length of the working day, hours
    evening: np.ndarray       # share of the day's work done late in the evening
    weekend_worker: np.ndarray
    base_rate: np.ndarray     # events on a typical working day
    created_ms: np.ndarray
    via_cdf: np.ndarray       # (members, len(VIA))
    novelty: np.ndarray       # probability an event touches a resource outside the working set
    ws_res: np.ndarray        # (members, W) working-set resources, -1 padded
    ws_cum: np.ndarray        # (members, W) cumulative choice weights
    pool: np.ndarray          # (members,) row of OrgModel.pool_start / pool_len
    dest: np.ndarray          # (members, 2) value codes of habitual export destinations
    ip_main: np.ndarray
    ip_alt: np.ndarray
    attr_key: np.ndarray      # attribute every event carries (-1: none)
    attr_val: np.ndarray
    logs_in: np.ndarray       # people log in; agents do not
    quarter_close: np.ndarray


@dataclass(frozen=True)
class JobStep:
    """One step of a scheduled job: an action on one resource of a rotation."""

    action: str
    resources: tuple[int, ...]  # run k uses resources[k % len]
    rows: int
    nbytes: int
    gap_ms: int                 # delay after the previous step
    related: tuple[int, ...] = ()
    destination: int = -1       # value code, exports only


@dataclass(frozen=True)
class ServiceJob:
    """A machine-regular job of a service account (cron-like)."""

    principal: int
    every_ms: int               # period; DAY_MS for daily jobs
    phase_ms: int               # offset of run 0 from the Unix epoch modulo the period
    jitter_ms: float            # standard deviation of the start time
    steps: tuple[JobStep, ...]
    job_value: int              # value code of attributes['job']
    ip: int
    weekdays_only: bool = False
    hours_utc: tuple[int, int] = (0, 24)
    error_rate: float = 0.002


@dataclass(frozen=True)
class AgentLoop:
    """An autonomous agent polling its working set on a rough period."""

    principal: int
    every_ms: int
    jitter: float               # relative standard deviation of the tick times
    resources: np.ndarray
    weights: np.ndarray
    ip: int
    hours_utc: tuple[int, int] = (0, 24)
    burst: int = 2              # mean events per tick


@dataclass
class OrgModel:
    """Everything the generators need, in codes and arrays."""

    spec: OrgSpec
    principals: list[PrincipalRecord]
    resources: list[ResourceRecord]
    groups: dict[str, list[str]]
    principal_vocab: Vocab
    resource_vocab: Vocab
    grantee_vocab: Vocab
    ip_vocab: Vocab
    value_vocab: Vocab
    ptype: np.ndarray                       # per principal code (catalogue and outside accounts)
    action_cdf: np.ndarray                  # (profiles, kinds, actions)
    pool_flat: np.ndarray                   # resources people may explore, by pool
    pool_start: np.ndarray
    pool_len: np.ndarray
    join_partners: np.ndarray               # (resources, J) usual join partners, -1 padded
    res_kind: np.ndarray
    res_sensitivity: np.ndarray
    res_team: np.ndarray
    res_rows: np.ndarray
    res_row_bytes: np.ndarray
    res_size: np.ndarray
    people: PeoplePopulation
    jobs: list[ServiceJob]
    loops: list[AgentLoop]
    oncall: np.ndarray                      # principal codes, rotation order
    close_days: frozenset[int]
    login_resource: int
    style: OrgStyle = CLASSIC                # the company's shape (teams, hours, hard-case noise)
    planned_benign: dict[int, list[EventChunk]] = field(default_factory=dict)
    planned_attack: dict[int, EventChunk] = field(default_factory=dict)
    _vocabularies: Vocabularies | None = None

    def day_start_ms(self, day: int) -> int:
        """Midnight UTC of ``day`` (0-based) in epoch milliseconds."""
        return self.spec.start_ms + day * DAY_MS

    def day_of(self, time_ms: int) -> int:
        """The 0-based UTC day of an epoch-millisecond time."""
        return (time_ms - self.spec.start_ms) // DAY_MS

    def local_time_ms(self, person: int, local_day: int, local_hour: float) -> int:
        """Epoch milliseconds of ``local_hour`` on a person's local ``local_day`` (0-based)."""
        offset_min = int(self.people.tz_min[person])
        return self.spec.start_ms + local_day * DAY_MS + int(local_hour * HOUR_MS) - offset_min * MINUTE_MS

    def working_time_ms(self, person: int, local_day: int, fraction: float) -> int:
        """A time ``fraction`` (0–1) of the way through a person's working day."""
        hour = float(self.people.start_h[person] + fraction * self.people.len_h[person])
        return self.local_time_ms(person, local_day, hour)

    def is_weekend(self, local_day: int) -> bool:
        """Whether the 0-based ``local_day`` is a Saturday or Sunday."""
        return (self.spec.start.weekday() + local_day) % 7 >= 5

    def vocabularies(self) -> Vocabularies:
        """Arrow arrays of every vocabulary (built once the model is complete)."""
        if self._vocabularies is None:
            import pyarrow as pa

            from features import contract

            type_names = np.array(contract.PRINCIPAL_TYPES, dtype=object)
            self._vocabularies = Vocabularies(
                principal=pa.array(self.principal_vocab.names, pa.string()),
                principal_type=pa.array(type_names[self.ptype].tolist(), pa.string()),
                resource=pa.array(self.resource_vocab.names, pa.string()),
                grantee=pa.array(self.grantee_vocab.names, pa.string()),
                ip=pa.array(self.ip_vocab.names, pa.string()),
                value=pa.array(self.value_vocab.names, pa.string()),
            )
        return self._vocabularies

    def add_planned(self, day: int, chunk: EventChunk) -> None:
        """Attach hand-placed benign events to ``day``."""
        self.planned_benign.setdefault(day, []).append(chunk)

    def add_resource(self, record: ResourceRecord) -> int:
        """Catalogue a resource created during the period (a training run, a checkpoint).

        Returns
        -------
        int
            Its resource code.
        """
        from .blueprint import TEAM_INDEX
        from .events import KIND, SENSITIVITY

        code = self.resource_vocab.code(record.name)
        if code != len(self.resources):
            raise ValueError(f"resource {record.name!r} is already catalogued")
        self.resources.append(record)
        self.res_kind = np.append(self.res_kind, np.int8(KIND[record.kind]))
        self.res_sensitivity = np.append(self.res_sensitivity, np.int8(SENSITIVITY[record.sensitivity]))
        self.res_team = np.append(self.res_team, np.int16(TEAM_INDEX[record.team]))
        self.res_rows = np.append(self.res_rows, float(record.rows_total))
        self.res_row_bytes = np.append(self.res_row_bytes, float(record.row_bytes))
        self.res_size = np.append(self.res_size, float(record.size_bytes))
        self.join_partners = np.vstack([self.join_partners, np.full((1, self.join_partners.shape[1]), -1, np.int32)])
        return code

    def add_external(self, name: str) -> int:
        """Register an account outside the organisation (a grantee that may act).

        Returns
        -------
        int
            Its principal code (beyond the catalogue's principals).
        """
        self.grantee_vocab.code(name)
        return self.principal_vocab.code(name)
