"""The injected attack scenarios and their labels.

Each scenario function picks its actors and resources from the organisation,
emits ordinary-looking events through a :class:`_Planner` and describes itself.
Nothing in an attack row reveals it: its id comes from the same keyed
permutation as every benign id (see :func:`~blastwall.simulation._random.permute32`),
its attributes are the ones benign rows carry.

Attacks start after the benign warm-up (the first ~40 % of days), on working days
when the window has any, one scenario per day as far as the window allows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from features import contract
from features.times import from_epoch_ms

from ._random import event_id_key, permute32
from .blueprint import ALL_STAFF, EXTERNAL_DOMAINS, TEAM_INDEX, TEAMS
from .events import ACTION, ATTACK_INDEX_BASE, ATTR, KIND, SENSITIVITY, EventBuffer, format_event_id
from .labels import AttackLabel
from .model import DAY_MS, HOUR_MS, MINUTE_MS, OrgModel, ResourceRecord
from .scheduled import training_io
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


class _Planner:
    """Collects attack rows of every scenario, then numbers them per day."""

    def __init__(self, model: OrgModel) -> None:
        self.model = model
        self.rng = np.random.default_rng([model.spec.seed, 0xA77])
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


# --------------------------------------------------------------------------- scenarios


def _permission_fanout(p: _Planner, day: int, repeat: int) -> None:
    """An assistant grants restricted employee telemetry to all-staff; dozens read it within hours."""
    model = p.model
    dataset_name = TELEMETRY_DATASETS[repeat % len(TELEMETRY_DATASETS)]
    dataset = p.res(dataset_name)
    agent = next(i for i, r in enumerate(model.principals)
                 if r.principal_type == "agent" and r.on_behalf_of >= 0
                 and model.principals[r.on_behalf_of].team == "people-analytics")
    owner = model.principals[agent].on_behalf_of
    member = int(np.flatnonzero(model.people.member == agent)[0])
    s = p.new_scenario("permission_fanout", "SEV1")
    granted = p.work_time(owner, day, p.rng.uniform(0.15, 0.3))
    on_behalf = {ATTR["on_behalf_of"]: model.value_vocab.code(p.name(owner))}
    agent_ip = int(model.people.ip_main[member])
    p.emit(s, granted - 95_000, agent, "query", dataset, via="ai_assistant", ip=agent_ip, attributes=on_behalf,
           **p.volume(dataset, "query"))
    p.emit(s, granted, agent, "grant", dataset, grantee=model.grantee_vocab[ALL_STAFF], via="ai_assistant",
           ip=agent_ip, attributes={**on_behalf, ATTR["role"]: model.value_vocab.code("reader")})
    # The exposure: people who never touched the data open it within hours.
    outsiders = p.seasoned(tuple(t.name for t in TEAMS if t.name not in ("people-analytics", "hr")), granted)
    target = max(30, min(400, len(outsiders) * 3 // 10))
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
            via = ("console", "notebook", "ai_assistant")[p.rng.choice(3, p=[0.6, 0.25, 0.15])]
            p.emit(s, when + k * int(p.rng.integers(15_000, 400_000)), person, action, dataset, via=via,
                   ip=p.ip(person), **p.volume(dataset, action))
    p.describe(s, [p.name(agent), p.name(owner)], [dataset_name],
               f"{p.name(agent)} (AI assistant acting for {p.name(owner)}) granted restricted employee "
               f"telemetry {dataset_name} to {ALL_STAFF}; {readers} people read it for the first time "
               f"within hours.")


def _unusual_join(p: _Planner, day: int, repeat: int) -> None:
    """Chat, performance and telemetry data joined (never combined before), then exported."""
    actor = p.pick(p.seasoned(("analytics", "ml-research", "data-eng")))
    primary = p.res("ds.people.chat_logs")
    others = [p.res("ds.hr.performance_reviews"), p.res("ds.people.keystroke_telemetry")]
    s = p.new_scenario("unusual_join", "SEV2")
    t = p.work_time(actor, day, p.rng.uniform(0.3, 0.55))
    for k, r in enumerate([primary] + others):
        p.emit(s, t + k * int(p.rng.integers(60_000, 240_000)), actor, "query", r, via="notebook", ip=p.ip(actor),
               **p.volume(r, "query"))
    t += 15 * MINUTE_MS
    for k in range(int(p.rng.integers(2, 4))):
        vol = p.volume(primary, "join", 20.0)
        p.emit(s, t + k * int(p.rng.integers(120_000, 600_000)), actor, "join", primary, related=others,
               via="notebook", ip=p.ip(actor), **vol)
    t += 45 * MINUTE_MS
    nbytes = int(p.rng.uniform(3e9, 9e9))
    row_bytes = max(1, int(p.model.res_row_bytes[primary]))
    destination = int(p.model.people.dest[actor, 0])
    p.emit(s, t, actor, "export", primary, related=others, nbytes=nbytes, nrows=nbytes // row_bytes, via="notebook",
           ip=p.ip(actor), attributes={ATTR["destination"]: destination})
    joined = ["ds.people.chat_logs", "ds.hr.performance_reviews", "ds.people.keystroke_telemetry"]
    p.describe(s, [p.name(actor)], joined,
               f"{p.name(actor)} joined employee chat logs with performance reviews and keystroke telemetry "
               f"and exported {nbytes / 1e9:.1f} GB of the result to "
               f"{p.model.value_vocab.names[destination]}.")


def _embedding_export(p: _Planner, day: int, repeat: int) -> None:
    """Bulk export of an embedding store to a destination never used before."""
    actor = p.pick(p.seasoned(("support", "ml-research", "ml-platform")))
    store_name = ("emb.support.chat_embeddings", "emb.people.chat_embeddings")[repeat % 2]
    store = p.res(store_name)
    token = format(int(p.rng.integers(16**5, 16**6)), "x")
    destination_name = f"s3://xfer-{token}-share/{store_name.split('.')[-1]}/"
    destination = p.model.value_vocab.code(destination_name)
    s = p.new_scenario("embedding_export", "SEV2")
    t = p.work_time(actor, day, p.rng.uniform(0.55, 0.9))
    p.emit(s, t, actor, "read", store, via="api", ip=p.ip(actor, True), **p.volume(store, "read"))
    total = 0
    row_bytes = max(1, int(p.model.res_row_bytes[store]))
    for k in range(int(p.rng.integers(8, 21))):
        nbytes = int(p.rng.uniform(2e9, 6e9))
        total += nbytes
        p.emit(s, t + 2 * MINUTE_MS + k * int(p.rng.integers(90_000, 240_000)), actor, "export", store,
               nbytes=nbytes, nrows=nbytes // row_bytes, via="api", ip=p.ip(actor, True),
               attributes={ATTR["destination"]: destination})
    p.describe(s, [p.name(actor)], [store_name],
               f"{p.name(actor)} exported {total / 1e9:.0f} GB of {store_name} to a destination never used "
               f"before ({destination_name}).")


def _artifact_download(p: _Planner, day: int, repeat: int) -> None:
    """Night-time downloads of many checkpoints by someone who never downloads them."""
    model = p.model
    never = [i for i in p.seasoned(("data-eng", "analytics", "ml-platform", "sre"))
             if not any(r >= 0 and model.resources[r].kind == "model" for r in model.people.ws_res[i])]
    actor = p.pick(never or p.seasoned(("analytics",)))
    t = p.on_day(model.local_time_ms(actor, day, p.rng.uniform(1.0, 3.0)), day)
    available = [i for i, r in enumerate(model.resources) if r.kind == "model" and r.updated_ms < t]
    chosen = p.rng.choice(available, size=min(len(available), int(p.rng.integers(15, 41))), replace=False)
    s = p.new_scenario("artifact_download", "SEV2")
    p.emit(s, t - int(p.rng.integers(20_000, 120_000)), actor, "login", model.login_resource, via="console",
           ip=p.ip(actor, True))
    for ckpt in chosen:
        ckpt = int(ckpt)
        p.emit(s, t, actor, "download", ckpt, nbytes=int(model.res_size[ckpt]), via="api", ip=p.ip(actor, True))
        t += int(p.rng.integers(40_000, 240_000))
    total = sum(model.res_size[int(c)] for c in chosen)
    p.describe(s, [p.name(actor)], sorted(model.resources[int(c)].name for c in chosen),
               f"{p.name(actor)} ({model.principals[actor].team}), who never downloads model artifacts, "
               f"downloaded {len(chosen)} checkpoints ({total / 1e9:.0f} GB) in the middle of their night.")


def _unsanitised_training(p: _Planner, day: int, repeat: int) -> None:
    """A training run that consumes unsanitised, sensitive datasets."""
    model = p.model
    trainer = model.principal_vocab["svc-trainer-llm"]
    consumed_names = ("ds.people.chat_logs", "ds.people.keystroke_telemetry", "ds.research.human_feedback",
                      "ds.curated.instructions_v3")
    consumed = [p.res(n) for n in consumed_names]
    t = model.day_start_ms(day) + int(p.rng.uniform(13, 16) * HOUR_MS)
    date = (model.spec.start + timedelta(days=day)).date().isoformat()
    run_name = f"run.llm-7b.{date}-ft{repeat + 2}"
    categories = tuple(sorted({c for code in consumed for c in model.resources[code].categories}))
    run = model.add_resource(ResourceRecord(run_name, "training_run", "internal", categories, "svc-trainer-llm", 0,
                                            t + 3 * MINUTE_MS, "runs", "ml-platform", 0, 0))
    s = p.new_scenario("unsanitised_training", "SEV2")
    ip = model.ip_vocab[f"10.20.{trainer // 250}.{trainer % 250 + 1}"]
    rows, nbytes = training_io(model, consumed, p.rng)
    for k, code in enumerate(consumed):
        p.emit(s, t + k * 30_000, trainer, "read", code, nrows=rows[k], nbytes=nbytes[k], via="pipeline", ip=ip)
    p.emit(s, t + 3 * MINUTE_MS, trainer, "train", run, related=consumed, nrows=sum(rows), nbytes=sum(nbytes),
           via="pipeline", ip=ip, attributes={ATTR["framework"]: model.value_vocab.code("pytorch"),
                                              ATTR["gpus"]: model.value_vocab.code("64")})
    p.describe(s, ["svc-trainer-llm"], [run_name, *consumed_names],
               f"Training run {run_name} consumed unsanitised employee chat logs, keystroke telemetry and "
               f"raw human feedback.")


def _runaway_agent(p: _Planner, day: int, repeat: int) -> None:
    """An autonomous agent's rate, breadth and novelty jump, on a machine-regular clock."""
    model = p.model
    loops = [loop for loop in model.loops if loop.principal not in p.used]
    loop = loops[0] if loops else model.loops[0]
    agent = loop.principal
    p.used.add(agent)
    t0 = model.day_start_ms(day) + int(p.rng.uniform(8, 15) * HOUR_MS)
    duration = p.rng.uniform(2.0, 3.0) * HOUR_MS
    period = 1_200
    n = int(duration // period)
    times = t0 + np.arange(n) * period + np.rint(p.rng.normal(0, 3, n)).astype(np.int64)
    sweepable = np.array([i for i, r in enumerate(model.resources) if r.updated_ms < t0
                          and r.kind in ("dataset", "feature_table", "embedding", "model")], np.int64)
    order = p.rng.permutation(sweepable)
    s = p.new_scenario("runaway_agent", "SEV2")
    # Cycling read/query/read over everything it can list; models only show their card.
    resource = order[np.arange(n) % len(order)]
    is_model = model.res_kind[resource] == KIND["model"]
    cycle = np.array([ACTION["read"], ACTION["query"], ACTION["read"]])
    action = np.where(is_model, ACTION["read"], cycle[np.arange(n) % len(cycle)])
    foreign = model.res_team[resource] != TEAM_INDEX[model.principals[agent].team]
    sensitivity = model.res_sensitivity[resource]
    u = p.rng.random(n)
    denied = foreign & (((sensitivity == SENSITIVITY["restricted"]) & (u < 0.7))
                        | ((sensitivity == SENSITIVITY["confidential"]) & (u < 0.2)))
    rows, nbytes = volumes(model, resource, action, p.rng, 0.3)
    action_names = np.array(contract.ACTIONS)[action]
    for k in range(n):
        p.emit(s, int(times[k]), agent, str(action_names[k]), int(resource[k]), via="api",
               status="denied" if denied[k] else "ok", ip=loop.ip, nrows=0 if denied[k] else int(rows[k]),
               nbytes=0 if denied[k] else int(nbytes[k]))
    touched = {model.resources[int(r)].name for r in np.unique(resource)}
    p.describe(s, [p.name(agent)], sorted(touched),
               f"{p.name(agent)} issued {n} requests every {period / 1000:.1f} s over {len(touched)} "
               f"resources it had never used, for {duration / HOUR_MS:.1f} h.")


def _external_grant(p: _Planner, day: int, repeat: int) -> None:
    """Restricted data granted to a personal webmail account, which then reads it."""
    model = p.model
    options = ("ds.legal.contracts", "ds.finance.ledger", "ds.hr.compensation", "ds.finance.payroll",
               "ds.exec.board_pack")
    dataset_name = options[(repeat + int(p.rng.integers(len(options)))) % len(options)]
    dataset = p.res(dataset_name)
    owner_team = model.resources[dataset].team
    actor = p.pick(p.seasoned((owner_team,)) or p.seasoned(("finance", "legal")))
    first, last = p.name(actor).split("@")[0].split(".")[:2]
    domain = EXTERNAL_DOMAINS[int(p.rng.integers(len(EXTERNAL_DOMAINS)))]
    outsider_name = f"{first}.{last.rstrip('0123456789')}{int(p.rng.integers(70, 100))}@{domain}"
    outsider = model.add_external(outsider_name)
    outsider_ip = model.ip_vocab.code(f"203.0.113.{int(p.rng.integers(2, 250))}")
    s = p.new_scenario("external_grant", "SEV1")
    t = p.work_time(actor, day, p.rng.uniform(0.6, 0.9))
    p.emit(s, t - int(p.rng.integers(60_000, 600_000)), actor, "read", dataset, via="console", ip=p.ip(actor),
           **p.volume(dataset, "read"))
    p.emit(s, t, actor, "grant", dataset, grantee=model.grantee_vocab[outsider_name], via="console", ip=p.ip(actor),
           attributes={ATTR["role"]: model.value_vocab.code("reader")})
    when = t + int(p.rng.uniform(20, 180) * MINUTE_MS)
    for k in range(int(p.rng.integers(2, 6))):
        action = "read" if k % 2 == 0 else "download"
        p.emit(s, when, outsider, action, dataset, via="api", ip=outsider_ip, **p.volume(dataset, "export", 5.0))
        when += int(p.rng.integers(30_000, 900_000))
    p.describe(s, [p.name(actor)], [dataset_name],
               f"{p.name(actor)} granted restricted {dataset_name} to the outside account {outsider_name}, "
               f"which then read it from {model.ip_vocab.names[outsider_ip]}.")


def _secrets_sweep(p: _Planner, day: int, repeat: int) -> None:
    """One person reads dozens of secrets within minutes; many are denied."""
    model = p.model
    actor = p.pick(p.seasoned(("data-eng", "ml-platform", "analytics", "ml-research")))
    secrets = [i for i, r in enumerate(model.resources) if r.kind == "secret"]
    chosen = p.rng.choice(secrets, size=min(len(secrets), int(p.rng.integers(30, 81))), replace=False)
    s = p.new_scenario("secrets_sweep", "SEV2")
    t = p.work_time(actor, day, p.rng.uniform(0.2, 0.8))
    denied = 0
    for secret in chosen:
        secret = int(secret)
        refused = p.rng.random() < 0.35
        denied += refused
        vol = {"nrows": 0, "nbytes": 0} if refused else p.volume(secret, "read")
        p.emit(s, t, actor, "read", secret, via="api", status="denied" if refused else "ok", ip=p.ip(actor), **vol)
        t += int(p.rng.integers(4_000, 25_000))
    p.describe(s, [p.name(actor)], sorted(model.resources[int(c)].name for c in chosen),
               f"{p.name(actor)} read {len(chosen)} secrets within minutes; {denied} were denied.")


def _low_and_slow(p: _Planner, day: int, repeat: int, span: int = 5) -> None:
    """An insider takes a little more restricted data than usual, every day, for days."""
    model = p.model
    ws = model.people.ws_res

    def restricted_in_ws(person: int) -> list[int]:
        return [int(r) for r in ws[person] if r >= 0 and model.resources[r].sensitivity == "restricted"
                and model.resources[r].kind == "dataset"]

    candidates = [i for i in p.seasoned(("hr", "finance", "legal", "people-analytics")) if restricted_in_ws(i)]
    actor = p.pick(candidates or p.seasoned(("hr",)))
    targets = restricted_in_ws(actor) or [p.res("ds.hr.compensation")]
    s = p.new_scenario("low_and_slow", "SEV3")
    days = [d for d in range(day, model.spec.days) if not model.is_weekend(d)][:span] or [day]
    extra_reads = max(3, round(0.3 * float(model.people.base_rate[actor])))
    destination = int(model.people.dest[actor, 0])
    exported = 0
    for d in days:
        for _ in range(extra_reads):
            r = targets[int(p.rng.integers(len(targets)))]
            action = "read" if p.rng.random() < 0.5 else "query"
            p.emit(s, p.work_time(actor, d, p.rng.uniform(0.05, 0.95)), actor, action, r, via="console",
                   ip=p.ip(actor), **p.volume(r, action))
        for _ in range(int(p.rng.integers(1, 3))):
            r = targets[int(p.rng.integers(len(targets)))]
            vol = p.volume(r, "export", 2.0)
            exported += vol["nbytes"]
            p.emit(s, p.work_time(actor, d, p.rng.uniform(0.6, 0.98)), actor, "export", r, via="console",
                   ip=p.ip(actor), attributes={ATTR["destination"]: destination}, **vol)
    p.describe(s, [p.name(actor)], sorted({model.resources[r].name for r in targets}),
               f"{p.name(actor)} read and exported restricted data a little above their normal every working "
               f"day for {len(days)} days ({exported / 1e6:.0f} MB exported in total).")


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


