"""The injected attack scenarios and their labels.

Each scenario function picks its actors and resources from the organisation,
emits ordinary-looking events through a :class:`_Planner` and describes itself.
Nothing in an attack row reveals it: its id comes from the same keyed
permutation as every benign id (see :func:`~blastwall.simulation._random.permute32`),
its attributes are the ones benign rows carry.

Attacks start after the benign warm-up (the first ~40 % of days), on working days
when the window has any, one scenario per day as far as the window allows.

``spec.intensity`` (1.0 nominal, towards 0.1 barely above normal) scales what each
scenario does, how many and how much, but keeps the event that defines it. A styled
company (``spec.style``) draws its actors from wider sets of teams, sometimes agents
or service accounts, and picks variants real incidents show (see
:mod:`~blastwall.simulation.style`); the classic company is planned exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from features import contract
from features.times import from_epoch_ms

from ._random import event_id_key, permute32
from .blueprint import (
    ALL_STAFF,
    CORE_RESOURCES,
    EXPORT_DESTINATIONS,
    EXTERNAL_DOMAINS,
    JOIN_PAIRS,
    MODEL_FAMILIES,
    TEAM_INDEX,
    TEAMS,
)
from .events import ACTION, ATTACK_INDEX_BASE, ATTR, KIND, SENSITIVITY, EventBuffer, format_event_id
from .labels import AttackLabel
from .model import DAY_MS, HOUR_MS, MINUTE_MS, OrgModel, ResourceRecord
from .scheduled import machine_ip, training_io
from .style import EXPOSED_OWNERS
from .traffic import volumes

#: Families in the order their scenarios are planned.
FAMILIES = (
    "permission_fanout", "unusual_join", "embedding_export", "artifact_download", "unsanitised_training",
    "runaway_agent", "external_grant", "secrets_sweep", "low_and_slow",
)


def detectors_of_scenario(scenario: str) -> tuple[str, ...]:
    """The detector families whose registry entry says they catch ``scenario``."""
    from detector.families import FAMILIES

    return tuple(f.id for f in FAMILIES.values() if scenario in f.scenarios)


TELEMETRY_DATASETS = ("ds.people.keystroke_telemetry", "ds.people.chat_logs", "ds.people.productivity_metrics")


@dataclass
class _Scenario:
    family: str
    detector_families: tuple[str, ...]
    severity: str
    description: str = ""
    principals: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Actor:
    """Who runs a scenario: a person, an agent acting for one, a service account or an autonomous agent."""

    code: int          # principal code
    kind: str          # "human", "agent" (acts for a person), "service" or "autonomous"
    member: int = -1   # row of OrgModel.people (people and the agents acting for them)
    owner: int = -1    # the person an agent acts for


class _Planner:
    """Collects attack rows of every scenario, then numbers them per day.

    Intensity (``spec.intensity``) only truncates and scales: every scenario makes
    the random draws of its nominal (intensity 1) version and emits a prefix of
    them. So the random stream, the actors and the resources are the same at every
    intensity (paired comparisons), and amounts shrink monotonically.
    """

    def __init__(self, model: OrgModel) -> None:
        self.model = model
        self.rng = np.random.default_rng([model.spec.seed, 0xA77])
        self.style = model.style
        self.intensity = float(model.spec.intensity)
        # A styled company's extra choices come from their own stream (the classic draws stay put).
        self.style_rng = None if self.style.classic else np.random.default_rng(
            [model.spec.seed, model.spec.style, 0xA77])
        self.scenarios: list[_Scenario] = []
        self.rows: list[tuple[int, int, int, tuple, dict]] = []  # (time, scenario, seq, args, kwargs)
        self.used: set[int] = set()
        self.first_ms = model.day_start_ms(model.spec.warmup_days)
        self.end_ms = model.day_start_ms(model.spec.days)

    # ---- helpers
    def emit(self, scenario: int, time_ms: int, principal: int, action: str, resource: int, **kwargs: object) -> bool:
        """Record one attack row; rows outside the attack window are not emitted."""
        time_ms = int(time_ms)
        if not self.first_ms <= time_ms < self.end_ms:
            return False
        self.rows.append((time_ms, scenario, len(self.rows), (principal, action, resource), kwargs))
        return True

    def describe(self, scenario: int, principals: list[str], resources: list[str], description: str) -> None:
        """Fill in what the scenario's label says: its key principals, resources and story."""
        label = self.scenarios[scenario]
        label.principals, label.resources, label.description = principals, resources, description

    def volume(self, resource: int, action: str, scale: float = 1.0) -> dict[str, int]:
        rows, nbytes = volumes(self.model, np.array([resource]), np.array([ACTION[action]]), self.rng, scale)
        return {"nrows": int(rows[0]), "nbytes": int(nbytes[0])}

    def scaled(self, nominal: int, minimum: int = 1) -> int:
        """How many of ``nominal`` things the attack does at its intensity (at least ``minimum``)."""
        if self.intensity >= 1.0:
            return nominal
        return min(nominal, max(minimum, round(nominal * self.intensity)))

    def on_day(self, time_ms: int, day: int) -> int:
        """Shift a time by whole days so that it falls on UTC ``day``."""
        return time_ms - (self.model.day_of(time_ms) - day) * DAY_MS

    def work_time(self, person: int, day: int, fraction: float) -> int:
        """A time in the person's working hours that falls on UTC ``day``."""
        return self.on_day(self.model.working_time_ms(person, day, fraction), day)

    def seasoned(self, teams: tuple[str, ...] | None = None, before_ms: int | None = None) -> list[int]:
        """People not yet used by a scenario, created before ``before_ms`` (default: the start)."""
        cutoff = self.model.spec.start_ms if before_ms is None else before_ms
        return [i for i, p in enumerate(self.model.principals)
                if p.principal_type == "human" and p.created_ms < cutoff and i not in self.used
                and (teams is None or p.team in teams)]

    def pick(self, candidates: list[int]) -> int:
        choice = int(candidates[self.rng.integers(len(candidates))])
        self.used.add(choice)
        return choice

    def name(self, principal: int) -> str:
        return self.model.principal_vocab.names[principal]

    def res(self, name: str) -> int:
        return self.model.resource_vocab[name]

    def ip(self, person: int, alternate: bool = False) -> int:
        return int((self.model.people.ip_alt if alternate else self.model.people.ip_main)[person])

    def new_scenario(self, family: str, severity: str) -> int:
        """A scenario of ``family``; the detectors expected to catch it are those whose
        registry entry names it (:data:`detector.families.FAMILIES`, one vocabulary)."""
        self.scenarios.append(_Scenario(family, detectors_of_scenario(family), severity))
        return len(self.scenarios) - 1

    # ---- actors of a styled company
    def teams(self, family: str, classic: tuple[str, ...]) -> tuple[str, ...]:
        """Teams the actor of ``family`` comes from: the classic ones, or the style's wider draw."""
        return classic if self.style.classic else self.style.attack_teams.get(family, classic)

    def assistants(self, teams: tuple[str, ...] | None = None) -> list[int]:
        """Unused agents that act for a seasoned person (of ``teams``)."""
        model = self.model
        return [i for i, r in enumerate(model.principals)
                if r.principal_type == "agent" and r.on_behalf_of >= 0 and i not in self.used
                and model.principals[r.on_behalf_of].created_ms < model.spec.start_ms
                and (teams is None or model.principals[r.on_behalf_of].team in teams)]

    def actor(self, family: str, teams: tuple[str, ...], humans: list[int] | None = None) -> _Actor:
        """The identity that runs a scenario of ``family``.

        A person of ``teams`` (or from ``humans``) unless the style makes it an agent
        acting for someone of those teams or a service account; the classic company
        always uses a person, drawn exactly as before.
        """
        kind = self.style.attack_actor.get(family, "human")
        model = self.model
        if kind == "agent" and self.style_rng is not None:
            candidates = self.assistants(teams) or self.assistants()
            if candidates:
                return self.agent_actor(self.pick(candidates))
        if kind == "service" and self.style_rng is not None:
            candidates = [i for i, r in enumerate(model.principals) if r.principal_type == "service"
                          and i not in self.used and not r.name.startswith("svc-trainer-")]
            if candidates:
                return _Actor(self.pick(candidates), "service")
        people = humans if humans is not None else self.seasoned(teams)
        code = self.pick(people or self.seasoned())
        return _Actor(code, "human", member=code)

    def agent_actor(self, code: int) -> _Actor:
        """An agent (acting for a person, or autonomous) as an actor."""
        owner = self.model.principals[code].on_behalf_of
        if owner < 0:
            return _Actor(code, "autonomous")
        return _Actor(code, "agent", member=int(np.flatnonzero(self.model.people.member == code)[0]), owner=owner)

    def at(self, actor: _Actor, day: int, fraction: float) -> int:
        """A time ``fraction`` through the actor's working day (machines: 08:00–18:00 UTC) on ``day``."""
        if actor.member >= 0:
            return self.work_time(actor.member, day, fraction)
        return self.model.day_start_ms(day) + int((8.0 + 10.0 * fraction) * HOUR_MS)

    def actor_ip(self, actor: _Actor, alternate: bool = False) -> int:
        if actor.member >= 0:
            return self.ip(actor.member, alternate)
        return machine_ip(self.model, actor.code)

    def actor_via(self, actor: _Actor, human_via: str) -> str:
        return {"human": human_via, "agent": "ai_assistant"}.get(actor.kind, "api")

    def actor_attributes(self, actor: _Actor, **extra: int) -> dict[int, int]:
        """Attributes benign rows of this actor carry (an agent names its person), plus ``extra``."""
        out = {ATTR[k]: v for k, v in extra.items()}
        if actor.owner >= 0:
            out[ATTR["on_behalf_of"]] = self.model.value_vocab.code(self.name(actor.owner))
        return out

    def actor_names(self, actor: _Actor) -> list[str]:
        return [self.name(actor.code)] + ([self.name(actor.owner)] if actor.owner >= 0 else [])

    def actor_text(self, actor: _Actor) -> str:
        """How the description names the actor."""
        if actor.kind == "agent":
            return f"{self.name(actor.code)} (AI assistant acting for {self.name(actor.owner)})"
        if actor.kind == "service":
            return f"service account {self.name(actor.code)}"
        return self.name(actor.code)

    def destination(self, actor: _Actor) -> int:
        """The actor's habitual export destination (an agent: its person's)."""
        person = actor.owner if actor.owner >= 0 else actor.member
        if person >= 0:
            return int(self.model.people.dest[person, 0])
        return self.model.value_vocab.code(EXPORT_DESTINATIONS[self.model.principals[actor.code].team][0])

    def new_destination(self, stem: str) -> tuple[int, str]:
        """A destination nobody used before (value code and name)."""
        token = format(int(self.rng.integers(16**5, 16**6)), "x")
        name = f"s3://xfer-{token}-share/{stem}/"
        return self.model.value_vocab.code(name), name

    def existing(self, *, kinds: tuple[str, ...], sensitivities: tuple[str, ...]) -> list[int]:
        """Resources of ``kinds`` and ``sensitivities`` that exist before the period."""
        start = self.model.spec.start_ms
        return [i for i, r in enumerate(self.model.resources) if r.kind in kinds and r.sensitivity in sensitivities
                and r.updated_ms <= start]


# --------------------------------------------------------------------------- scenarios


def _permission_fanout(p: _Planner, day: int, repeat: int) -> None:
    """Restricted data granted to all-staff (classically by an AI assistant); dozens read it within hours.

    Intensity scales the number of first readers (about 30–400 at 1.0, a handful at 0.1).
    """
    model = p.model
    owner_team = "people-analytics"
    if p.style_rng is None:
        dataset_name = TELEMETRY_DATASETS[repeat % len(TELEMETRY_DATASETS)]
        grantor = p.agent_actor(next(i for i, r in enumerate(model.principals)
                                     if r.principal_type == "agent" and r.on_behalf_of >= 0
                                     and model.principals[r.on_behalf_of].team == "people-analytics"))
    else:
        owner_team = p.style.exposed_owner
        options = sorted(model.resources[i].name for i in p.existing(kinds=("dataset", "embedding"),
                                                                     sensitivities=("restricted",))
                         if model.resources[i].team == owner_team) or list(TELEMETRY_DATASETS)
        dataset_name = options[(repeat + int(p.style_rng.integers(len(options)))) % len(options)]
        owner_team = model.resources[p.res(dataset_name)].team
        assistants = p.assistants((owner_team,)) if p.style.attack_actor.get("permission_fanout") == "agent" else []
        if assistants:
            grantor = p.agent_actor(p.pick(assistants))
        else:  # the data owner shares it with everyone by mistake
            code = p.pick(p.seasoned((owner_team,)) or p.seasoned())
            grantor = _Actor(code, "human", member=code)
    dataset = p.res(dataset_name)
    owner = grantor.owner if grantor.owner >= 0 else grantor.code
    p.used.add(grantor.code)
    s = p.new_scenario("permission_fanout", "SEV1")
    granted = p.work_time(owner, day, p.rng.uniform(0.15, 0.3))
    attributes = p.actor_attributes(grantor)
    grantor_ip = p.actor_ip(grantor)
    via = p.actor_via(grantor, "console")
    p.emit(s, granted - 95_000, grantor.code, "query", dataset, via=via, ip=grantor_ip, attributes=attributes,
           **p.volume(dataset, "query"))
    p.emit(s, granted, grantor.code, "grant", dataset, grantee=model.grantee_vocab[ALL_STAFF], via=via,
           ip=grantor_ip, attributes={**attributes, ATTR["role"]: model.value_vocab.code("reader")})
    # The exposure: people who never touched the data open it within hours.
    excluded = ("people-analytics", "hr") if owner_team == "people-analytics" else (owner_team,)
    outsiders = p.seasoned(tuple(t.name for t in TEAMS if t.name not in excluded), granted)
    target = max(30, min(400, len(outsiders) * 3 // 10))
    wanted = p.scaled(target, 3)
    readers = 0
    for person in p.rng.permutation(outsiders):
        if readers >= target:
            break
        person = int(person)
        delay = min(p.rng.exponential(100 * MINUTE_MS), 9 * HOUR_MS)
        when = granted + 2 * MINUTE_MS + int(delay)
        local_hour = ((when // MINUTE_MS + int(model.people.tz_min[person])) % 1440) / 60
        if not 7.5 <= local_hour <= 21.0:
            continue  # asleep: they will not be among the first readers
        readers += 1
        for k in range(int(p.rng.integers(1, 4))):
            action = "read" if k == 0 or p.rng.random() < 0.5 else "query"
            reader_via = ("console", "notebook", "ai_assistant")[p.rng.choice(3, p=[0.6, 0.25, 0.15])]
            gap, vol = int(p.rng.integers(15_000, 400_000)), p.volume(dataset, action)
            if readers <= wanted:  # lower intensity: only the first few of the nominal readers
                p.emit(s, when + k * gap, person, action, dataset, via=reader_via, ip=p.ip(person), **vol)
    readers = min(readers, wanted)
    what = "employee telemetry" if owner_team == "people-analytics" else f"{owner_team} data"
    p.describe(s, p.actor_names(grantor), [dataset_name],
               f"{p.actor_text(grantor)} granted restricted {what} {dataset_name} to {ALL_STAFF}; "
               f"{readers} people read it for the first time within hours.")


def _join_inputs(p: _Planner) -> tuple[list[str], str]:
    """Three sensitive datasets of three different owners that nobody joins (a styled company's join)."""
    assert p.style_rng is not None
    model = p.model
    usual = {frozenset(pair) for pair in JOIN_PAIRS}
    pool = [i for i in p.existing(kinds=("dataset",), sensitivities=("confidential", "restricted"))
            if model.resources[i].categories and i < len(CORE_RESOURCES)]
    chosen: list[int] = []
    for i in p.style_rng.permutation(pool):
        r = model.resources[int(i)]
        if all(model.resources[c].team != r.team and frozenset((model.resources[c].name, r.name)) not in usual
               for c in chosen):
            chosen.append(int(i))
        if len(chosen) == 3:
            break
    names = [model.resources[c].name for c in chosen]
    categories = sorted({c for i in chosen for c in model.resources[i].categories})
    return names, ", ".join(categories)


def _unusual_join(p: _Planner, day: int, repeat: int) -> None:
    """Sensitive datasets never combined before joined, then exported.

    Classic: chat, performance and telemetry data. Intensity scales the joins and the
    exported bytes (3–9 GB at 1.0, 0.3–0.9 GB at 0.1). Variant ``new_destination``:
    the export goes somewhere nobody used before.
    """
    actor = p.actor("unusual_join", p.teams("unusual_join", ("analytics", "ml-research", "data-eng")))
    if p.style_rng is None:
        joined = ["ds.people.chat_logs", "ds.hr.performance_reviews", "ds.people.keystroke_telemetry"]
        story = "employee chat logs with performance reviews and keystroke telemetry"
    else:
        joined, categories = _join_inputs(p)
        story = f"{joined[0]} with {' and '.join(joined[1:])} ({categories})"
    primary, *others = [p.res(n) for n in joined]
    via, ip = p.actor_via(actor, "notebook"), p.actor_ip(actor)
    attributes = p.actor_attributes(actor)
    s = p.new_scenario("unusual_join", "SEV2")
    t = p.at(actor, day, p.rng.uniform(0.3, 0.55))
    for k, r in enumerate([primary] + others):
        p.emit(s, t + k * int(p.rng.integers(60_000, 240_000)), actor.code, "query", r, via=via, ip=ip,
               attributes=attributes, **p.volume(r, "query"))
    t += 15 * MINUTE_MS
    n_joins = int(p.rng.integers(2, 4))
    for k in range(n_joins):
        vol = p.volume(primary, "join", 20.0 * p.intensity)
        gap = int(p.rng.integers(120_000, 600_000))
        if k < p.scaled(n_joins):
            p.emit(s, t + k * gap, actor.code, "join", primary, related=others, via=via, ip=ip,
                   attributes=attributes, **vol)
    t += 45 * MINUTE_MS
    nbytes = int(p.rng.uniform(3e9, 9e9) * p.intensity)
    row_bytes = max(1, int(p.model.res_row_bytes[primary]))
    if p.style.attack_variant.get("unusual_join") == "new_destination":
        destination, _ = p.new_destination("joined")
    else:
        destination = p.destination(actor)
    p.emit(s, t, actor.code, "export", primary, related=others, nbytes=nbytes, nrows=nbytes // row_bytes, via=via,
           ip=ip, attributes={**attributes, ATTR["destination"]: destination})
    p.describe(s, p.actor_names(actor), joined,
               f"{p.actor_text(actor)} joined {story} and exported {nbytes / 1e9:.1f} GB of the result to "
               f"{p.model.value_vocab.names[destination]}.")


def _embedding_export(p: _Planner, day: int, repeat: int) -> None:
    """Bulk export of an embedding store to a destination never used before.

    Intensity scales the number of exports (8–20 at 1.0, 1–2 at 0.1) and their size.
    """
    actor = p.actor("embedding_export", p.teams("embedding_export", ("support", "ml-research", "ml-platform")))
    if p.style_rng is None:
        store_name = ("emb.support.chat_embeddings", "emb.people.chat_embeddings")[repeat % 2]
    else:
        stores = sorted(p.model.resources[i].name for i in p.existing(kinds=("embedding",),
                                                                      sensitivities=("confidential", "restricted")))
        store_name = stores[(repeat + int(p.style_rng.integers(len(stores)))) % len(stores)]
    store = p.res(store_name)
    destination, destination_name = p.new_destination(store_name.split(".")[-1])
    via, ip = p.actor_via(actor, "api"), p.actor_ip(actor, True)
    s = p.new_scenario("embedding_export", "SEV2")
    t = p.at(actor, day, p.rng.uniform(0.55, 0.9))
    p.emit(s, t, actor.code, "read", store, via=via, ip=ip, attributes=p.actor_attributes(actor),
           **p.volume(store, "read"))
    total = 0
    row_bytes = max(1, int(p.model.res_row_bytes[store]))
    n_exports = int(p.rng.integers(8, 21))
    for k in range(n_exports):
        nbytes = int(p.rng.uniform(2e9, 6e9) * p.intensity)
        gap = int(p.rng.integers(90_000, 240_000))
        if k < p.scaled(n_exports):
            total += nbytes
            p.emit(s, t + 2 * MINUTE_MS + k * gap, actor.code, "export", store, nbytes=nbytes,
                   nrows=nbytes // row_bytes, via=via, ip=ip,
                   attributes=p.actor_attributes(actor, destination=destination))
    p.describe(s, p.actor_names(actor), [store_name],
               f"{p.actor_text(actor)} exported {total / 1e9:.0f} GB of {store_name} to a destination never used "
               f"before ({destination_name}).")


#: Checkpoints below this size are the "small" ones an outsider variant takes.
_SMALL_CHECKPOINT_BYTES = 7e9


def _artifact_download(p: _Planner, day: int, repeat: int) -> None:
    """Night-time downloads of many checkpoints by someone who never downloads them.

    Intensity scales the number of checkpoints (15–40 at 1.0, 2–4 at 0.1). Variant
    ``outsider_small``: someone of a team that never touches models takes only the
    smaller checkpoints.
    """
    model = p.model
    variant = p.style.attack_variant.get("artifact_download", "classic")
    teams = p.teams("artifact_download", ("data-eng", "analytics", "ml-platform", "sre"))
    if variant == "outsider_small":
        teams = tuple(t.name for t in p.style.teams if "models" not in t.interests and t.name in teams) or teams
    never = [i for i in p.seasoned(teams)
             if not any(r >= 0 and model.resources[r].kind == "model" for r in model.people.ws_res[i])]
    actor = p.actor("artifact_download", teams, never or p.seasoned(("analytics",)))
    if actor.member >= 0:
        t = p.on_day(model.local_time_ms(actor.member, day, p.rng.uniform(1.0, 3.0)), day)
    else:  # a service token used at night (UTC)
        t = model.day_start_ms(day) + int(p.rng.uniform(1.0, 3.0) * HOUR_MS)
    available = [i for i, r in enumerate(model.resources) if r.kind == "model" and r.updated_ms < t
                 and (variant != "outsider_small" or model.res_size[i] < _SMALL_CHECKPOINT_BYTES)]
    nominal = p.rng.choice(available, size=min(len(available), int(p.rng.integers(15, 41))), replace=False)
    chosen = nominal[: p.scaled(len(nominal), 2)]
    ip = p.actor_ip(actor, True)
    s = p.new_scenario("artifact_download", "SEV2")
    login_lead = int(p.rng.integers(20_000, 120_000))
    if actor.kind == "human":
        p.emit(s, t - login_lead, actor.code, "login", model.login_resource, via="console", ip=ip)
    for k, ckpt in enumerate(nominal):
        ckpt = int(ckpt)
        if k < len(chosen):
            p.emit(s, t, actor.code, "download", ckpt, nbytes=int(model.res_size[ckpt]), via="api", ip=ip)
        t += int(p.rng.integers(40_000, 240_000))
    total = sum(model.res_size[int(c)] for c in chosen)
    p.describe(s, p.actor_names(actor), sorted(model.resources[int(c)].name for c in chosen),
               f"{p.actor_text(actor)} ({model.principals[actor.code].team}), who never downloads model artifacts, "
               f"downloaded {len(chosen)} checkpoints ({total / 1e9:.0f} GB) in the middle of their night.")


def _unsanitised_training(p: _Planner, day: int, repeat: int) -> None:
    """A training run that consumes unsanitised, sensitive datasets.

    The run is the event that defines it, at every intensity; intensity scales how
    many unsanitised inputs it reads (three at 1.0, one at 0.1).
    """
    model = p.model
    trainer_name, family = "svc-trainer-llm", "llm-7b"
    if p.style_rng is None:
        unsanitised = ("ds.people.chat_logs", "ds.people.keystroke_telemetry", "ds.research.human_feedback")
        clean = "ds.curated.instructions_v3"
    else:
        trainers = sorted({f: tr for f, (_, _, _, tr) in MODEL_FAMILIES.items() if tr in model.principal_vocab}.items())
        family, trainer_name = trainers[int(p.style_rng.integers(len(trainers)))]
        pool = sorted(model.resources[i].name for i in p.existing(kinds=("dataset",),
                                                                  sensitivities=("confidential", "restricted"))
                      if not model.resources[i].sanitized and model.resources[i].categories)
        unsanitised = tuple(pool[int(i)] for i in p.style_rng.choice(len(pool), size=3, replace=False))
        corpora = MODEL_FAMILIES[family][2]
        clean = corpora[int(p.style_rng.integers(len(corpora)))]
    nominal_names = (*unsanitised, clean)
    trainer = model.principal_vocab[trainer_name]
    nominal = [p.res(n) for n in nominal_names]
    t = model.day_start_ms(day) + int(p.rng.uniform(13, 16) * HOUR_MS)
    date = (model.spec.start + timedelta(days=day)).date().isoformat()
    run_name = f"run.{family}.{date}-ft{repeat + 2}"
    keep = list(range(p.scaled(len(unsanitised)))) + [len(unsanitised)]  # fewer unsanitised inputs, same corpus
    consumed = [nominal[k] for k in keep]
    consumed_names = [nominal_names[k] for k in keep]
    categories = tuple(sorted({c for code in consumed for c in model.resources[code].categories}))
    run = model.add_resource(ResourceRecord(run_name, "training_run", "internal", categories, trainer_name, 0,
                                            t + 3 * MINUTE_MS, "runs", "ml-platform", 0, 0))
    s = p.new_scenario("unsanitised_training", "SEV2")
    ip = machine_ip(model, trainer)
    nominal_rows, nominal_bytes = training_io(model, nominal, p.rng)
    rows, nbytes = [nominal_rows[k] for k in keep], [nominal_bytes[k] for k in keep]
    for k, code in enumerate(consumed):
        p.emit(s, t + k * 30_000, trainer, "read", code, nrows=rows[k], nbytes=nbytes[k], via="pipeline", ip=ip)
    p.emit(s, t + 3 * MINUTE_MS, trainer, "train", run, related=consumed, nrows=sum(rows), nbytes=sum(nbytes),
           via="pipeline", ip=ip, attributes={ATTR["framework"]: model.value_vocab.code("pytorch"),
                                              ATTR["gpus"]: model.value_vocab.code("64")})
    if p.style_rng is None and len(keep) == len(nominal):
        story = "unsanitised employee chat logs, keystroke telemetry and raw human feedback"
    else:
        story = "unsanitised " + ", ".join(consumed_names[:-1])
    p.describe(s, [trainer_name], [run_name, *consumed_names], f"Training run {run_name} consumed {story}.")


def _runaway_agent(p: _Planner, day: int, repeat: int) -> None:
    """An agent's rate, breadth and novelty jump, on a machine-regular clock.

    Intensity scales the rate (a request every 1.2 s at 1.0, every 2 min at 0.1) and
    the duration (2–3 h at 1.0, under 1 h at 0.1).
    """
    model = p.model
    loops = [loop for loop in model.loops if loop.principal not in p.used]
    loop = loops[0] if loops else model.loops[0]
    actor = p.agent_actor(loop.principal)
    if p.style_rng is not None:
        assistants = p.assistants() if p.style.attack_actor.get("runaway_agent") == "assistant" else []
        if assistants:
            actor = p.agent_actor(assistants[int(p.style_rng.integers(len(assistants)))])
        elif loops:
            actor = p.agent_actor(loops[int(p.style_rng.integers(len(loops)))].principal)
    agent = actor.code
    p.used.add(agent)
    ip = p.actor_ip(actor)
    t0 = model.day_start_ms(day) + int(p.rng.uniform(8, 15) * HOUR_MS)
    nominal_duration = p.rng.uniform(2.0, 3.0) * HOUR_MS
    nominal_period = 1_200
    n_nominal = int(nominal_duration // nominal_period)
    jitter = np.rint(p.rng.normal(0, 3, n_nominal)).astype(np.int64)
    sweepable = np.array([i for i, r in enumerate(model.resources) if r.updated_ms < t0
                          and r.kind in ("dataset", "feature_table", "embedding", "model")], np.int64)
    order = p.rng.permutation(sweepable)
    s = p.new_scenario("runaway_agent", "SEV2")
    # Cycling read/query/read over everything it can list; models only show their card.
    resource = order[np.arange(n_nominal) % len(order)]
    is_model = model.res_kind[resource] == KIND["model"]
    cycle = np.array([ACTION["read"], ACTION["query"], ACTION["read"]])
    action = np.where(is_model, ACTION["read"], cycle[np.arange(n_nominal) % len(cycle)])
    foreign = model.res_team[resource] != TEAM_INDEX[model.principals[agent].team]
    sensitivity = model.res_sensitivity[resource]
    u = p.rng.random(n_nominal)
    denied = foreign & (((sensitivity == SENSITIVITY["restricted"]) & (u < 0.7))
                        | ((sensitivity == SENSITIVITY["confidential"]) & (u < 0.2)))
    rows, nbytes = volumes(model, resource, action, p.rng, 0.3)
    # Lower intensity: slower and shorter, i.e. the first n of the nominal requests on a slower clock.
    intensity = p.intensity
    period = nominal_period / intensity**2
    duration = nominal_duration * (0.3 + 0.7 * intensity)
    n = min(n_nominal, max(3, int(duration // period)))
    times = t0 + np.rint(np.arange(n) * period).astype(np.int64) + jitter[:n]
    action_names = np.array(contract.ACTIONS)[action]
    via = p.actor_via(actor, "api")
    attributes = p.actor_attributes(actor)
    for k in range(n):
        p.emit(s, int(times[k]), agent, str(action_names[k]), int(resource[k]), via=via,
               status="denied" if denied[k] else "ok", ip=ip, nrows=0 if denied[k] else int(rows[k]),
               nbytes=0 if denied[k] else int(nbytes[k]), attributes=attributes)
    touched = {model.resources[int(r)].name for r in np.unique(resource[:n])}
    p.describe(s, p.actor_names(actor), sorted(touched),
               f"{p.actor_text(actor)} issued {n} requests every {period / 1000:.1f} s over {len(touched)} "
               f"resources it had never used, for {duration / HOUR_MS:.1f} h.")


def _external_grant(p: _Planner, day: int, repeat: int) -> None:
    """Restricted data granted to a personal webmail account, which then reads it.

    The grant is the event that defines it, at every intensity; intensity scales how
    much the outsider reads (2–5 reads of a large share at 1.0, one small read at 0.1).
    """
    model = p.model
    options = ("ds.legal.contracts", "ds.finance.ledger", "ds.hr.compensation", "ds.finance.payroll",
               "ds.exec.board_pack")
    if p.style_rng is not None:
        options = tuple(sorted(model.resources[i].name for i in p.existing(kinds=("dataset",),
                                                                           sensitivities=("restricted",))
                               if model.resources[i].team in EXPOSED_OWNERS)) or options
    dataset_name = options[(repeat + int(p.rng.integers(len(options)))) % len(options)]
    dataset = p.res(dataset_name)
    owner_team = model.resources[dataset].team
    actor = p.actor("external_grant", (owner_team,), p.seasoned((owner_team,)) or p.seasoned(("finance", "legal")))
    person = actor.owner if actor.owner >= 0 else actor.code
    first, last = p.name(person).split("@")[0].split(".")[:2]
    domain = EXTERNAL_DOMAINS[int(p.rng.integers(len(EXTERNAL_DOMAINS)))]
    outsider_name = f"{first}.{last.rstrip('0123456789')}{int(p.rng.integers(70, 100))}@{domain}"
    outsider = model.add_external(outsider_name)
    outsider_ip = model.ip_vocab.code(f"203.0.113.{int(p.rng.integers(2, 250))}")
    s = p.new_scenario("external_grant", "SEV1")
    t = p.work_time(person, day, p.rng.uniform(0.6, 0.9))
    via, ip, attributes = p.actor_via(actor, "console"), p.actor_ip(actor), p.actor_attributes(actor)
    p.emit(s, t - int(p.rng.integers(60_000, 600_000)), actor.code, "read", dataset, via=via, ip=ip,
           attributes=attributes, **p.volume(dataset, "read"))
    p.emit(s, t, actor.code, "grant", dataset, grantee=model.grantee_vocab[outsider_name], via=via, ip=ip,
           attributes={**attributes, ATTR["role"]: model.value_vocab.code("reader")})
    when = t + int(p.rng.uniform(20, 180) * MINUTE_MS)
    n_reads = int(p.rng.integers(2, 6))
    for k in range(n_reads):
        action = "read" if k % 2 == 0 else "download"
        vol = p.volume(dataset, "export", 5.0 * p.intensity)
        if k < p.scaled(n_reads):
            p.emit(s, when, outsider, action, dataset, via="api", ip=outsider_ip, **vol)
        when += int(p.rng.integers(30_000, 900_000))
    p.describe(s, p.actor_names(actor), [dataset_name],
               f"{p.actor_text(actor)} granted restricted {dataset_name} to the outside account {outsider_name}, "
               f"which then read it from {model.ip_vocab.names[outsider_ip]}.")


def _secrets_sweep(p: _Planner, day: int, repeat: int) -> None:
    """One identity reads dozens of secrets within minutes; many are denied.

    Intensity scales the number of secrets (30–80 at 1.0, 4–8 at 0.1) and slows the pace.
    """
    model = p.model
    actor = p.actor("secrets_sweep", p.teams("secrets_sweep", ("data-eng", "ml-platform", "analytics",
                                                                "ml-research")))
    secrets = [i for i, r in enumerate(model.resources) if r.kind == "secret"]
    chosen = p.rng.choice(secrets, size=min(len(secrets), int(p.rng.integers(30, 81))), replace=False)
    wanted = p.scaled(len(chosen), 4)
    s = p.new_scenario("secrets_sweep", "SEV2")
    t = p.at(actor, day, p.rng.uniform(0.2, 0.8))
    via, ip, attributes = p.actor_via(actor, "api"), p.actor_ip(actor), p.actor_attributes(actor)
    pace = 1.0 if p.intensity >= 1.0 else p.intensity**-0.5
    denied = 0
    for k, secret in enumerate(chosen):
        secret = int(secret)
        refused = p.rng.random() < 0.35
        vol = {"nrows": 0, "nbytes": 0} if refused else p.volume(secret, "read")
        gap = int(p.rng.integers(4_000, 25_000) * pace)
        if k < wanted:
            denied += refused
            p.emit(s, t, actor.code, "read", secret, via=via, status="denied" if refused else "ok", ip=ip,
                   attributes=attributes, **vol)
        t += gap
    chosen = chosen[:wanted]
    p.describe(s, p.actor_names(actor), sorted(model.resources[int(c)].name for c in chosen),
               f"{p.actor_text(actor)} read {len(chosen)} secrets within minutes; {denied} were denied.")


def _low_and_slow(p: _Planner, day: int, repeat: int, span: int = 5) -> None:
    """An insider takes a little more restricted data than usual, every day, for days.

    Intensity scales the extra reads a day (about 30 % of their normal volume at 1.0,
    3 % at 0.1) and the exports. Variant ``read_other_teams``: the insider reads (and
    does not export) a different restricted dataset owned by another team each day,
    in small volumes.
    """
    model = p.model
    ws = model.people.ws_res

    def restricted_in_ws(person: int) -> list[int]:
        return [int(r) for r in ws[person] if r >= 0 and model.resources[r].sensitivity == "restricted"
                and model.resources[r].kind == "dataset"]

    if p.style.attack_variant.get("low_and_slow") == "read_other_teams":
        _low_and_slow_reads(p, day, span)
        return
    teams = p.teams("low_and_slow", ("hr", "finance", "legal", "people-analytics"))
    candidates = [i for i in p.seasoned(teams) if restricted_in_ws(i)]
    if not candidates and p.style_rng is not None:
        candidates = [i for i in p.seasoned(("hr", "finance", "legal", "people-analytics")) if restricted_in_ws(i)]
    actor = p.pick(candidates or p.seasoned(("hr",)))
    targets = restricted_in_ws(actor) or [p.res("ds.hr.compensation")]
    s = p.new_scenario("low_and_slow", "SEV3")
    days = [d for d in range(day, model.spec.days) if not model.is_weekend(d)][:span] or [day]
    extra_reads = max(3, round(0.3 * float(model.people.base_rate[actor])))
    destination = int(model.people.dest[actor, 0])
    exported = 0
    for d in days:
        for k in range(extra_reads):
            r = targets[int(p.rng.integers(len(targets)))]
            action = "read" if p.rng.random() < 0.5 else "query"
            when, vol = p.work_time(actor, d, p.rng.uniform(0.05, 0.95)), p.volume(r, action)
            if k < p.scaled(extra_reads):
                p.emit(s, when, actor, action, r, via="console", ip=p.ip(actor), **vol)
        n_exports = int(p.rng.integers(1, 3))
        for k in range(n_exports):
            r = targets[int(p.rng.integers(len(targets)))]
            vol = p.volume(r, "export", 2.0 * p.intensity)
            when = p.work_time(actor, d, p.rng.uniform(0.6, 0.98))
            if k < p.scaled(n_exports):
                exported += vol["nbytes"]
                p.emit(s, when, actor, "export", r, via="console", ip=p.ip(actor),
                       attributes={ATTR["destination"]: destination}, **vol)
    p.describe(s, [p.name(actor)], sorted({model.resources[r].name for r in targets}),
               f"{p.name(actor)} read and exported restricted data a little above their normal every working "
               f"day for {len(days)} days ({exported / 1e6:.0f} MB exported in total).")


def _low_and_slow_reads(p: _Planner, day: int, span: int) -> None:
    """The reading insider: each working day, small reads of another team's restricted dataset."""
    assert p.style_rng is not None
    model = p.model
    actor = p.pick(p.seasoned(p.teams("low_and_slow", ())) or p.seasoned())
    team = model.principals[actor].team
    foreign = [i for i in p.existing(kinds=("dataset",), sensitivities=("restricted",))
               if model.resources[i].team != team]
    days = [d for d in range(day, model.spec.days) if not model.is_weekend(d)][:span] or [day]
    order = [int(i) for i in p.style_rng.permutation(foreign)]
    targets = [order[k % len(order)] for k in range(len(days))]  # a different dataset each day
    s = p.new_scenario("low_and_slow", "SEV3")
    reads = max(2, round(0.15 * float(model.people.base_rate[actor])))
    read_bytes = 0
    for d, r in zip(days, targets):
        for k in range(reads):
            action = "read" if p.rng.random() < 0.6 else "query"
            when, vol = p.work_time(actor, d, p.rng.uniform(0.05, 0.95)), p.volume(r, action, 0.5 * p.intensity)
            if k < p.scaled(reads):
                read_bytes += vol["nbytes"]
                p.emit(s, when, actor, action, r, via="console", ip=p.ip(actor), **vol)
    p.describe(s, [p.name(actor)], sorted({model.resources[r].name for r in targets}),
               f"{p.name(actor)} ({team}) read another team's restricted dataset in small amounts every working "
               f"day for {len(days)} days, a different one each day ({read_bytes / 1e6:.0f} MB in total).")


SCENARIOS: dict[str, Callable[[_Planner, int, int], None]] = {
    "permission_fanout": _permission_fanout, "unusual_join": _unusual_join, "embedding_export": _embedding_export,
    "artifact_download": _artifact_download, "unsanitised_training": _unsanitised_training,
    "runaway_agent": _runaway_agent, "external_grant": _external_grant, "secrets_sweep": _secrets_sweep,
    "low_and_slow": _low_and_slow,
}


# --------------------------------------------------------------------------- planning


def plan_attacks(model: OrgModel) -> list[AttackLabel]:
    """Plan every scenario, attach its rows to their days and return the labels.

    One instance of each family per two weeks of attack window (at least one).
    """
    p = _Planner(model)
    spec = model.spec
    window = list(range(spec.warmup_days, spec.days))
    workdays = [d for d in window if not model.is_weekend(d)] or window
    repeats = 1 + len(window) // 14
    for repeat in range(repeats):
        # The slow insider needs several days: start at the beginning of its share of the window.
        share = workdays[repeat * len(workdays) // repeats:(repeat + 1) * len(workdays) // repeats] or workdays
        _low_and_slow(p, share[0], repeat)
        others = [f for f in FAMILIES if f != "low_and_slow"]
        order = [others[i] for i in p.rng.permutation(len(others))]
        for k, family in enumerate(order):
            SCENARIOS[family](p, share[k * len(share) // len(order)], repeat)
    return _finish(p)


def _finish(p: _Planner) -> list[AttackLabel]:
    """Number the attack rows per day, build the day chunks and the labels."""
    model = p.model
    seed = model.spec.seed
    ids: dict[int, list[tuple[int, str]]] = {s: [] for s in range(len(p.scenarios))}
    by_day: dict[int, list] = {}
    for row in p.rows:
        by_day.setdefault(model.day_of(row[0]), []).append(row)
    for day, rows in sorted(by_day.items()):
        rows.sort(key=lambda r: (r[0], r[1], r[2]))
        numbers = permute32(ATTACK_INDEX_BASE + np.arange(len(rows)), event_id_key(seed, day))
        buffer = EventBuffer()
        for (time_ms, scenario, _, args, kwargs), number in zip(rows, numbers):
            buffer.add(time_ms, *args, **kwargs)
            ids[scenario].append((time_ms, format_event_id(seed, day, int(number))))
        model.planned_attack[day] = buffer.to_chunk()
    labels = []
    for s, sc in enumerate(p.scenarios):
        events = sorted(ids[s])
        if not events:  # a family silently missing from an evaluation would be worse than failing
            raise RuntimeError(f"attack scenario {sc.family} produced no events inside the attack window")
        labels.append(AttackLabel(
            scenario_id=f"sc{s + 1:02d}-{sc.family}", family=sc.family, detector_families=sc.detector_families,
            principals=tuple(sc.principals), resources=tuple(sc.resources),
            start=from_epoch_ms(events[0][0]), end=from_epoch_ms(events[-1][0]), expected_min_severity=sc.severity,
            description=sc.description, event_ids=tuple(e for _, e in events)))
    return labels


