"""Draw the organisation: people, service accounts, agents, groups and the catalogue.

The public entry point is :func:`build_organisation`; it returns an
:class:`Organisation` whose catalogue tables follow
``features.contract.arrow_schema`` and whose labels describe the injected
attacks. The traffic itself is generated lazily by
:func:`~blastwall.simulation.stream.iter_access_log`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pyarrow as pa

from features import contract

from . import attacks, scheduled
from .blueprint import (
    ALL_STAFF,
    CORE_RESOURCES,
    CORP_DOMAIN,
    DOMAIN_DEFAULTS,
    EXPORT_DESTINATIONS,
    EXTRA_TOPICS,
    FIRST_NAMES,
    JOIN_PAIRS,
    LAST_NAMES,
    MODEL_FAMILIES,
    SECRET_ENVS,
    SECRET_NAMES,
    SITE_INDEX,
    SITES,
    SUBGROUPS,
    TEAM_INDEX,
    TEAMS,
    ResourceTemplate,
    Team,
)
from .events import ACTION, ATTR, KIND, PTYPE, SENSITIVITY
from .labels import AttackLabel
from .model import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    AgentLoop,
    JobStep,
    OrgModel,
    PeoplePopulation,
    PrincipalRecord,
    ResourceRecord,
    ServiceJob,
    Vocab,
)
from .spec import OrgSpec
from .style import OrgStyle, style_of

#: Width of a person's working set.
WORKING_SET = 24
#: Service accounts in the order they are created (the first six always exist).
CORE_SERVICES = (
    ("svc-trainer-llm", "ml-platform"), ("svc-etl-nightly", "data-eng"), ("svc-feature-refresh", "data-eng"),
    ("svc-secrets-rotator", "sre"), ("svc-dq-checks", "data-eng"), ("svc-backup", "sre"),
    ("svc-embedder-support", "ml-platform"), ("svc-report-finance", "finance"), ("svc-trainer-code", "ml-platform"),
    ("svc-trainer-vision", "ml-platform"), ("svc-airflow-scheduler", "data-eng"),
    ("svc-ingest-clickstream", "data-eng"), ("svc-bi-refresh", "analytics"), ("svc-eval-harness", "ml-research"),
    ("svc-siem-forwarder", "security"),
)
#: Autonomous agents: name stem, team, period in minutes, UTC hours active, mean events per tick.
AUTONOMOUS_AGENTS = (
    ("agent-data-qa", "data-eng", 10, (0, 24), 2),
    ("agent-support-bot", "support", 3, (0, 24), 1),
    ("agent-sre-triage", "sre", 15, (0, 24), 2),
    ("agent-finance-recon", "finance", 20, (6, 22), 2),
    ("agent-research-scout", "ml-research", 30, (0, 24), 3),
)

_KIND_ACTIONS = {
    "dataset": {"read": 0.30, "query": 0.45, "join": 0.08, "export": 0.03, "download": 0.01, "write": 0.05,
                "delete": 0.002},
    "embedding": {"read": 0.45, "query": 0.45, "export": 0.01, "write": 0.04},
    "model": {"read": 0.87, "download": 0.10, "write": 0.03},
    "training_run": {"read": 1.0},
    "feature_table": {"read": 0.3, "query": 0.6, "write": 0.1},
    "secret": {"read": 1.0},
    "other": {"read": 1.0},
}
_TEAM_ACTION_BIAS = {
    "analytics": {"query": 1.3, "join": 2.0, "export": 2.0},
    "finance": {"export": 3.0, "join": 1.5},
    "data-eng": {"write": 3.0, "join": 1.5},
    "ml-research": {"read": 1.3},
    "hr": {"read": 1.5, "export": 1.2, "join": 0.5},
    "people-analytics": {"join": 1.5, "export": 0.7},
    "sales": {"read": 1.5, "query": 0.8, "join": 0.5, "export": 0.5},
    "support": {"read": 1.5, "query": 0.8, "join": 0.5, "export": 0.5},
    "exec": {"read": 2.0, "join": 0.2, "export": 0.3, "download": 0.0, "write": 0.2},
    "legal": {"read": 2.0, "join": 0.2, "export": 0.3, "write": 0.3},
    "sre": {"query": 1.3, "join": 0.5},
    "security": {"query": 1.3, "join": 0.5},
}
#: What agents acting for a person may do: look things up, never export or write.
_AGENT_ACTIONS = {"read": 0.4, "query": 0.5, "join": 0.1}


@dataclass
class Organisation:
    """A simulated organisation: its catalogue, its labels, and the model behind its traffic.

    Attributes
    ----------
    spec : OrgSpec
        What was simulated.
    principals, memberships, resources : pyarrow.Table
        Catalogue tables with the contract schemas.
    labels : list of AttackLabel
        The injected attack scenarios (empty when ``spec.attacks`` is false).
    model : OrgModel
        Codes and arrays the traffic generators read.
    """

    spec: OrgSpec
    principals: pa.Table
    memberships: pa.Table
    resources: pa.Table
    labels: list[AttackLabel]
    model: OrgModel

    @property
    def days(self) -> int:
        """Number of simulated days."""
        return self.spec.days

    @property
    def groups(self) -> dict[str, list[str]]:
        """Group → direct members (principals or groups)."""
        return self.model.groups

    @property
    def quarter_close_days(self) -> tuple[int, ...]:
        """Days (0-based) of the fiscal quarter close, when finance and analytics spike."""
        return tuple(sorted(self.model.close_days))

    def day_bounds(self, day: int) -> tuple[int, int]:
        """Start and end (exclusive) of ``day`` in epoch milliseconds."""
        start = self.model.day_start_ms(day)
        return start, start + DAY_MS


def build_organisation(spec: OrgSpec) -> Organisation:
    """Draw the organisation of ``spec`` and plan its scheduled events and attacks.

    Parameters
    ----------
    spec : OrgSpec
        Size, period and seed.

    Returns
    -------
    Organisation
        Deterministic for a given spec.
    """
    model = _build_model(spec)
    scheduled.plan_benign_events(model)
    labels = attacks.plan_attacks(model) if spec.attacks else []
    model.ptype = np.array([PTYPE[p.principal_type] for p in model.principals]
                           + [PTYPE["human"]] * (len(model.principal_vocab) - len(model.principals)), np.int8)
    return Organisation(spec=spec, principals=_principals_table(model), memberships=_memberships_table(model),
                        resources=_resources_table(model), labels=labels, model=model)


def as_organisation(spec_or_org: OrgSpec | Organisation) -> Organisation:
    """The organisation itself, or the one a spec describes (built now)."""
    return build_organisation(spec_or_org) if isinstance(spec_or_org, OrgSpec) else spec_or_org


# --------------------------------------------------------------------------- people


def _allocate(total: int, weights: np.ndarray, minimum: int) -> np.ndarray:
    """Split ``total`` by ``weights`` (largest remainder), at least ``minimum`` each."""
    spare = total - minimum * len(weights)
    share = spare * weights / weights.sum()
    counts = np.floor(share).astype(int)
    counts[np.argsort(-(share - counts), kind="stable")[: spare - counts.sum()]] += 1
    return counts + minimum


class _NameMaker:
    """Unique human-looking identity names."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._taken: set[str] = set()
        self._per_stem: dict[str, int] = {}

    def person(self) -> str:
        first = FIRST_NAMES[self._rng.integers(len(FIRST_NAMES))]
        last = LAST_NAMES[self._rng.integers(len(LAST_NAMES))]
        stem, n = f"{first}.{last}", 1
        name = f"{stem}@{CORP_DOMAIN}"
        while name in self._taken:
            n += 1
            name = f"{stem}{n}@{CORP_DOMAIN}"
        self._taken.add(name)
        return name

    def numbered(self, stem: str) -> str:
        """``stem-NN`` with a random free number; more digits once the stem gets crowded."""
        count = self._per_stem[stem] = self._per_stem.get(stem, 0) + 1
        digits = max(2, len(str(count * 4)))
        while True:
            name = f"{stem}-{self._rng.integers(1, 10**digits):0{digits}d}"
            if name not in self._taken:
                self._taken.add(name)
                return name


def _ms_of(day: date) -> int:
    return int((day - date(1970, 1, 1)).days) * DAY_MS


def _draw_people(spec: OrgSpec, rng: np.random.Generator, names: _NameMaker,
                 style: OrgStyle) -> tuple[list[PrincipalRecord], dict]:
    """People by team, with managers, sites and start dates; returns records and per-person traits."""
    n_services = max(6, round(style.service_share * spec.principals))
    n_agents = max(4, round(style.agent_share * spec.principals))
    n_humans = spec.principals - n_services - n_agents
    per_team = _allocate(n_humans, np.array([t.weight for t in style.teams]), 2)
    start_ms = spec.start_ms
    records: list[PrincipalRecord] = []
    for team, count in zip(style.teams, per_team):
        sites = list(team.sites)
        site_p = np.array([team.sites[s] for s in sites])
        for i in range(count):
            site = SITE_INDEX[sites[rng.choice(len(sites), p=site_p / site_p.sum())]]
            if i == 0:
                title = team.manager_title
            elif team.name == "exec":  # one of each executive role before repeating
                title = team.titles[(i - 1) % len(team.titles)]
            else:
                title = team.titles[rng.integers(len(team.titles))]
            tenure_days = int(rng.integers(20, 2500))
            records.append(PrincipalRecord(names.person(), "human", team.name, title, "",
                                           start_ms - tenure_days * DAY_MS + int(rng.integers(8, 18)) * HOUR_MS, site))
    # Reporting lines: members → team manager → a VP of the exec team → the CEO.
    first_of_team = {}
    for idx, rec in enumerate(records):
        first_of_team.setdefault(rec.team, idx)
    ceo = first_of_team["exec"]
    vps = [i for i, r in enumerate(records) if r.team == "exec" and i != ceo]
    for idx, rec in enumerate(records):
        manager_idx = first_of_team[rec.team]
        if idx == ceo:
            continue
        if idx == manager_idx or rec.team == "exec":
            dept = TEAMS[TEAM_INDEX[rec.team]].path[0]
            manager_idx = vps[_stable_hash(dept) % len(vps)] if vps and rec.team != "exec" else ceo
        rec.manager = records[manager_idx].name
    # New joiners start mid-period on a working day, at about 09:00 local time.
    managers = set(first_of_team.values())
    eligible = [i for i in range(len(records)) if i not in managers]
    n_new = min(len(eligible), max(2, round(style.new_joiner_share * n_humans)))
    workdays = [d for d in range(1, spec.days) if (spec.start + timedelta(days=d)).weekday() < 5] or [spec.days - 1]
    for idx in sorted(rng.choice(eligible, size=n_new, replace=False)):
        day = workdays[rng.integers(len(workdays))]
        offset = SITES[records[idx].site].utc_offset_min
        local_nine = (9 * 60 - offset) * MINUTE_MS + int(rng.integers(0, 90)) * MINUTE_MS
        records[idx].created_ms = start_ms + day * DAY_MS + local_nine
    traits = {"n_services": n_services, "n_agents": n_agents, "team_first": first_of_team,
              "new_joiners": np.array([i for i, r in enumerate(records) if r.created_ms > start_ms], np.int64)}
    return records, traits


def _stable_hash(text: str) -> int:
    """A small hash stable across processes (Python's hash() of a str is salted)."""
    return sum(text.encode())


# --------------------------------------------------------------------------- catalogue


def _domain(name: str) -> str:
    head, rest = name.split(".", 1)
    if head in ("ds", "emb", "ft"):
        return rest.split(".", 1)[0]
    return {"model": "models", "run": "runs", "secret": "secrets", "app": "corp"}[head]


def _sizes(kind: str, rng: np.random.Generator) -> tuple[int, int]:
    """(rows, bytes per row) of a new resource."""
    if kind == "dataset":
        rows = np.clip(np.exp(rng.normal(np.log(5e6), 1.8)), 2e3, 5e9)
        return int(rows), int(np.clip(np.exp(rng.normal(np.log(350), 0.7)), 40, 20000))
    if kind == "embedding":
        return int(np.clip(np.exp(rng.normal(np.log(2e6), 1.2)), 1e4, 2e8)), int(rng.choice([3072, 6144]))
    if kind == "feature_table":
        return int(np.clip(np.exp(rng.normal(np.log(1e6), 1.2)), 1e3, 1e9)), 160
    if kind == "secret":
        return 1, int(rng.integers(200, 3000))
    return 0, 0


def _draw_catalogue(spec: OrgSpec, rng: np.random.Generator, people: list[PrincipalRecord],
                    team_first: dict[str, int], style: OrgStyle,
                    style_rng: np.random.Generator | None) -> list[ResourceRecord]:
    """Named resources, checkpoints, past runs, secrets and size-scaled extras.

    ``style_rng`` (``None`` for the classic organisation) draws what only a style
    changes, so the classic draws stay exactly as they were.
    """
    start_ms = spec.start_ms
    owner_of = {team: people[idx].name for team, idx in team_first.items()}

    def past(max_days: int) -> int:
        return start_ms - int(rng.integers(1, max_days)) * DAY_MS - int(rng.integers(0, DAY_MS))

    def record(t: ResourceTemplate, updated_ms: int | None = None) -> ResourceRecord:
        rows, row_bytes = _sizes(t.kind, rng)
        return ResourceRecord(t.name, t.kind, t.sensitivity, t.categories, owner_of[t.owner_team], t.sanitized,
                              past(400) if updated_ms is None else updated_ms, _domain(t.name), t.owner_team, rows,
                              row_bytes)

    resources = [record(t) for t in CORE_RESOURCES]
    # Checkpoints: a history per model family, newest last.
    n_ckpt = max(6, round(spec.principals / 40))
    for family, (size_gb, team, _, _) in MODEL_FAMILIES.items():
        categories = ("source_code",) if family.startswith("code") else ()
        for i in range(n_ckpt):
            rec = record(ResourceTemplate(f"model.{family}.ckpt-{i + 1:04d}", "model", "confidential", categories, 1,
                                          team), start_ms - (n_ckpt - i) * int(rng.integers(1, 3)) * DAY_MS)
            rec.size_bytes = int(size_gb * 1e9 * rng.uniform(0.97, 1.03))
            resources.append(rec)
    # Past training runs (visible in the catalogue, no traffic of their own).
    for family, (_, team, corpora, _) in MODEL_FAMILIES.items():
        for back in (21, 14, 7):
            day = (spec.start - timedelta(days=back)).date()
            cats = tuple(sorted({c for r in CORE_RESOURCES if r.name in corpora for c in r.categories}))
            resources.append(record(ResourceTemplate(f"run.{family}.{day.isoformat()}", "training_run", "internal",
                                                     cats, 1, team), _ms_of(day) + 2 * HOUR_MS))
    # Secrets: owned by SRE (prod/staging) and security (dev/ci).
    n_secrets = max(40, round(spec.principals / 12))
    for i in range(n_secrets):
        env = SECRET_ENVS[i % len(SECRET_ENVS)]
        base = SECRET_NAMES[(i // len(SECRET_ENVS)) % len(SECRET_NAMES)]
        round_no = i // (len(SECRET_ENVS) * len(SECRET_NAMES))
        name = f"secret.{env}.{base}" + (f"-{round_no + 1}" if round_no else "")
        owner = "sre" if env in ("prod", "staging") else "security"
        resources.append(record(ResourceTemplate(name, "secret", "restricted", ("credentials",), 0, owner)))
    # Extra datasets so the catalogue scales with the organisation (≈1.3 per principal).
    n_extra = max(0, round(1.3 * spec.principals) - len(resources))
    domains = list(EXTRA_TOPICS)
    demand = np.array([sum(t.interests.get(d, 0) for t in style.teams) + 0.5 for d in domains])
    counters: dict[str, int] = {}
    for _ in range(n_extra):
        domain = domains[rng.choice(len(domains), p=demand / demand.sum())]
        topic = EXTRA_TOPICS[domain][rng.integers(len(EXTRA_TOPICS[domain]))]
        counters[f"{domain}.{topic}"] = n = counters.get(f"{domain}.{topic}", 0) + 1
        sensitivity, categories, owner = DOMAIN_DEFAULTS[domain]
        if rng.random() < style.sensitivity_down and sensitivity not in ("public", "restricted"):
            sensitivity = contract.SENSITIVITIES[contract.SENSITIVITIES.index(sensitivity) - 1]
        elif style_rng is not None:
            sensitivity, categories = _restyle_sensitivity(sensitivity, categories, style, style_rng)
        kinds = (("ds", "dataset"),) * 4 + (("ft", "feature_table"), ("emb", "embedding"))
        prefix, kind = kinds[rng.integers(len(kinds))]
        resources.append(record(ResourceTemplate(f"{prefix}.{domain}.{topic}_{n:02d}", kind, sensitivity, categories,
                                                 int(rng.random() < 0.3), owner)))
    return resources


#: Categories a style may add to an extra dataset (how widely sensitive data is spread).
_SENSITIVE_CATEGORIES = ("pii", "customer", "financial", "health", "chat", "employee_telemetry")


def _restyle_sensitivity(sensitivity: str, categories: tuple[str, ...], style: OrgStyle,
                         rng: np.random.Generator) -> tuple[str, tuple[str, ...]]:
    """An extra dataset of a styled company: maybe one level more sensitive, maybe a sensitive category more."""
    if rng.random() < style.sensitivity_up and sensitivity != "restricted":
        sensitivity = contract.SENSITIVITIES[contract.SENSITIVITIES.index(sensitivity) + 1]
    if rng.random() < style.sensitive_category_share:
        extra = _SENSITIVE_CATEGORIES[int(rng.integers(len(_SENSITIVE_CATEGORIES)))]
        categories = tuple(sorted(set(categories) | {extra}))
    return sensitivity, categories


# --------------------------------------------------------------------------- groups


def _draw_groups(people: list[PrincipalRecord], team_first: dict[str, int], services: list[str], agents: list[str],
                 new_joiners: set[int], rng: np.random.Generator,
                 oncall_extra: int = 2) -> tuple[dict[str, list[str]], list[int]]:
    """Team, division and department groups under ``all-staff``, plus cross-cutting groups.

    Returns the groups and the on-call rotation (person indices).
    """
    groups: dict[str, list[str]] = {}

    def add(group: str, member: str) -> None:
        members = groups.setdefault(group, [])
        if member not in members:
            members.append(member)

    for team in TEAMS:
        chain = (ALL_STAFF,) + team.path + (f"team-{team.name}",)
        for parent, child in zip(chain, chain[1:]):
            add(parent, child)
    for rec in people:
        add(f"team-{rec.team}", rec.name)
    assert all(f"team-{t}" in groups[d] for d, teams in SUBGROUPS.items() for t in teams)

    by_team: dict[str, list[int]] = {}
    for idx, rec in enumerate(people):
        by_team.setdefault(rec.team, []).append(idx)
    seasoned = {t: [i for i in ids if i not in new_joiners] for t, ids in by_team.items()}
    # On call: every SRE plus a few platform and data engineers.
    oncall = list(seasoned["sre"])
    for team in ("ml-platform", "data-eng"):
        pool = seasoned[team][1:]
        oncall += [int(i) for i in rng.choice(pool, size=min(oncall_extra, len(pool)), replace=False)]
    oncall = [int(i) for i in rng.permutation(oncall)]
    for idx in oncall:
        add("oncall", people[idx].name)
    add("ml-readers", "div-ml")
    add("ml-readers", "team-data-eng")
    for idx in rng.choice(seasoned["analytics"], size=min(3, len(seasoned["analytics"])), replace=False):
        add("ml-readers", people[int(idx)].name)
    for team in ("data-eng", "analytics", "hr", "people-analytics", "finance"):
        add("data-stewards", people[team_first[team]].name)
    for idx in team_first.values():
        add("managers", people[idx].name)
    add("security-admins", "team-security")
    add("security-admins", people[team_first["sre"]].name)
    add("finance-close", "team-finance")
    for idx in seasoned["analytics"][1:3]:
        add("finance-close", people[idx].name)
    for name in services:
        add("service-accounts", name)
    for name in agents:
        add("ai-agents", name)
    return groups, oncall


# --------------------------------------------------------------------------- behaviour


def _action_cdf(profiles: list[dict[str, float] | None]) -> np.ndarray:
    """(profiles, kinds, actions) cumulative action probabilities per resource kind."""
    cdf = np.zeros((len(profiles), len(contract.RESOURCE_KINDS), len(contract.ACTIONS)))
    for p, bias in enumerate(profiles):
        for kind, weights in _KIND_ACTIONS.items():
            w = np.zeros(len(contract.ACTIONS))
            for action, weight in weights.items():
                if bias is None:  # an agent: only look-ups
                    weight = _AGENT_ACTIONS.get(action, 0.0) if kind in ("dataset", "embedding", "feature_table") \
                        else (1.0 if action == "read" else 0.0)
                else:
                    weight *= bias.get(action, 1.0)
                w[ACTION[action]] = weight
            cdf[p, KIND[kind]] = np.cumsum(w / w.sum())
    cdf[..., -1] = 1.0
    return cdf


def _via_cdf(shares: dict[str, float]) -> np.ndarray:
    w = np.array([shares.get(v, 0.0) for v in contract.VIA])
    return np.cumsum(w / w.sum())


def _allowed(team: Team, res: ResourceRecord) -> bool:
    """Resources a member of ``team`` routinely uses or may explore."""
    if res.kind == "training_run" or res.domain == "runs":
        return "runs" in team.interests
    if res.kind == "secret":
        return team.name in ("sre", "security")
    if res.kind == "model":
        return "models" in team.interests
    if res.sensitivity == "restricted" and res.team != team.name:
        return False
    return res.domain in team.interests or (res.domain == "corp" and res.sensitivity in ("public", "internal"))


def _build_model(spec: OrgSpec) -> OrgModel:
    rng = np.random.default_rng([spec.seed, 0x0C6])
    style = style_of(spec.style)
    teams = style.teams
    # Draws only a style makes come from their own stream: the classic ones stay put.
    style_rng = None if style.classic else np.random.default_rng([spec.seed, spec.style, 0x0C6])
    names = _NameMaker(rng)
    people, traits = _draw_people(spec, rng, names, style)
    team_first: dict[str, int] = traits["team_first"]
    new_joiners = set(int(i) for i in traits["new_joiners"])
    n_people = len(people)

    resources = _draw_catalogue(spec, rng, people, team_first, style, style_rng)
    resource_vocab = Vocab(tuple(r.name for r in resources))
    login_resource = resource_vocab["app.sso"]

    # Service accounts and agents become principals after the people.
    service_defs = list(CORE_SERVICES[: traits["n_services"]])
    extra_domains = [d for d in EXTRA_TOPICS if d not in ("corp", "exec", "legal", "people")]
    while len(service_defs) < traits["n_services"]:
        domain = extra_domains[rng.integers(len(extra_domains))]
        service_defs.append((names.numbered(f"svc-etl-{domain}"), DOMAIN_DEFAULTS[domain][2]))
    principals = list(people)
    for name, team in service_defs:
        principals.append(PrincipalRecord(name, "service", team, "service account", people[team_first[team]].name,
                                          spec.start_ms - int(rng.integers(60, 1500)) * DAY_MS))
    n_agents = traits["n_agents"]
    n_assistants = (n_agents + 1) // 2
    seasoned = [i for i in range(n_people) if i not in new_joiners]
    people_analysts = [i for i in seasoned if people[i].team == "people-analytics"]
    researchers = [i for i in seasoned if people[i].team == "ml-research"]
    for k in range(n_agents):
        if k < n_assistants:
            # The first copilot works for a people analyst: the owner of the telemetry data.
            if k == 0:
                owner = people_analysts[0]
                stem = "agent-copilot"
            elif k % 3 == 2 and researchers:
                owner = int(rng.choice(researchers))
                stem = "agent-research-assistant"
            else:
                owner = int(rng.choice(seasoned))
                stem = "agent-copilot"
            rec = PrincipalRecord(names.numbered(stem), "agent", people[owner].team, "AI agent", people[owner].name,
                                  spec.start_ms - int(rng.integers(10, 300)) * DAY_MS, people[owner].site, owner)
        else:
            stem, team, *_ = AUTONOMOUS_AGENTS[(k - n_assistants) % len(AUTONOMOUS_AGENTS)]
            rec = PrincipalRecord(names.numbered(stem), "agent", team, "AI agent", people[team_first[team]].name,
                                  spec.start_ms - int(rng.integers(10, 300)) * DAY_MS)
        principals.append(rec)
    services = [i for i, p in enumerate(principals) if p.principal_type == "service"]
    agents = [i for i, p in enumerate(principals) if p.principal_type == "agent"]
    principal_vocab = Vocab(tuple(p.name for p in principals))

    groups, oncall = _draw_groups(people, team_first, [principals[i].name for i in services],
                                  [principals[i].name for i in agents], new_joiners, rng, style.oncall_extra)
    grantee_vocab = Vocab(("",) + tuple(groups) + tuple(principal_vocab.names))
    ip_vocab = Vocab(("",))
    value_vocab = Vocab(("",))

    # ---- resource arrays
    res_kind = np.array([KIND[r.kind] for r in resources], np.int8)
    res_sensitivity = np.array([SENSITIVITY[r.sensitivity] for r in resources], np.int8)
    res_team = np.array([TEAM_INDEX[r.team] for r in resources], np.int16)
    res_rows = np.array([r.rows_total for r in resources], np.float64)
    res_row_bytes = np.array([r.row_bytes for r in resources], np.float64)
    res_size = np.array([r.size_bytes for r in resources], np.float64)
    existing = np.array([r.updated_ms <= spec.start_ms for r in resources])

    partners: dict[int, list[int]] = {}
    for a, b in JOIN_PAIRS:
        partners.setdefault(resource_vocab[a], []).append(resource_vocab[b])
        partners.setdefault(resource_vocab[b], []).append(resource_vocab[a])
    core_by_domain: dict[str, list[int]] = {}
    for t in CORE_RESOURCES:
        if t.kind == "dataset" and resource_vocab[t.name] in partners:
            core_by_domain.setdefault(_domain(t.name), []).append(resource_vocab[t.name])
    for i, r in enumerate(resources[len(CORE_RESOURCES):], start=len(CORE_RESOURCES)):
        if r.kind == "dataset" and core_by_domain.get(r.domain):
            other = int(rng.choice(core_by_domain[r.domain]))
            if r.sensitivity != "restricted" and resources[other].sensitivity != "restricted":
                partners.setdefault(i, []).append(other)
                partners.setdefault(other, []).append(i)
    width = max(len(v) for v in partners.values())
    join_partners = np.full((len(resources), width), -1, np.int32)
    for i, ps in partners.items():
        join_partners[i, : len(ps)] = ps

    # ---- exploration pools per team (resources that exist before the period)
    pool_lists = []
    for team in teams:
        pool_lists.append(np.array([i for i, r in enumerate(resources) if existing[i] and _allowed(team, r)], np.int32))
    pool_flat = np.concatenate(pool_lists)
    pool_len = np.array([len(p) for p in pool_lists], np.int64)
    pool_start = np.concatenate([[0], np.cumsum(pool_len)[:-1]]).astype(np.int64)

    # ---- people: traits, working sets, habits
    team_idx = np.array([TEAM_INDEX[p.team] for p in people], np.int64)
    tz = np.array([SITES[p.site].utc_offset_min for p in people], np.int64)
    start, length = style.workday_start_h, style.workday_len_h
    start_h = np.clip(rng.normal(start, 0.8, n_people), start - 2.0, start + 2.0)
    len_h = np.clip(rng.normal(length, 0.6, n_people), length - 1.5, length + 1.5)
    evening = np.where(rng.random(n_people) < style.evening_share, style.evening_level, 0.03)
    weekend_worker = rng.random(n_people) < style.weekend_share
    base_rate = np.array([teams[t].events_per_day for t in team_idx]) * np.exp(rng.normal(0.0, 0.45, n_people))
    created = np.array([p.created_ms for p in people], np.int64)
    ws_res = np.full((n_people, WORKING_SET), -1, np.int32)
    ws_cum = np.ones((n_people, WORKING_SET))
    # Teams favour their own data, then their interests.
    pool_weights = []
    for team, pool in zip(teams, pool_lists):
        w = np.array([team.interests.get(resources[r].domain, 0.3) * (2.0 if resources[r].team == team.name else 1.0)
                      for r in pool])
        pool_weights.append(w / w.sum())
    for i, t in enumerate(team_idx):
        pool = pool_lists[t]
        size = min(len(pool), int(rng.integers(6, WORKING_SET - 4)))
        chosen = rng.choice(pool, size=size, replace=False, p=pool_weights[t])
        weights = np.exp(rng.normal(0, 0.3, size)) / np.arange(1, size + 1)
        ws_res[i, :size] = chosen
        ws_cum[i, :size] = np.cumsum(weights / weights.sum())
        ws_cum[i, size - 1:] = 1.0  # rounding must never let a draw fall past the last resource
    novelty = np.where(np.isin(np.arange(n_people), list(new_joiners)), 0.12, 0.03)
    dest = np.zeros((n_people, 2), np.int32)
    for i, p in enumerate(people):
        options = EXPORT_DESTINATIONS[p.team]
        dest[i, 0] = value_vocab.code(options[rng.integers(len(options))])
        dest[i, 1] = value_vocab.code(options[rng.integers(len(options))])
    ip_main = np.array([ip_vocab.code(f"10.{SITES[p.site].subnet}.{rng.integers(0, 256)}.{rng.integers(1, 255)}")
                        for p in people], np.int32)
    ip_alt = np.array([ip_vocab.code(f"100.64.{rng.integers(0, 256)}.{rng.integers(1, 255)}") for p in people],
                      np.int32)
    for i in services:
        ip_vocab.code(f"10.20.{i // 250}.{i % 250 + 1}")
    for i in agents:
        ip_vocab.code(f"10.30.{i // 250}.{i % 250 + 1}")
    machine_ip = {i: ip_vocab[f"10.{20 if principals[i].principal_type == 'service' else 30}.{i // 250}.{i % 250 + 1}"]
                  for i in services + agents}

    agent_profile = len(teams)
    action_cdf = _action_cdf([_TEAM_ACTION_BIAS.get(t.name, {}) for t in teams] + [None])
    via_by_team = np.stack([_via_cdf(t.via) for t in teams])
    assistant_via = _via_cdf({"ai_assistant": 0.7, "api": 0.3})

    # Agents acting for a person follow that person's day, on part of their working set.
    assistants = [i for i in agents if principals[i].on_behalf_of >= 0]
    owners = np.array([principals[i].on_behalf_of for i in assistants], np.int64)
    a_ws = np.full((len(assistants), WORKING_SET), -1, np.int32)
    a_cum = np.ones((len(assistants), WORKING_SET))
    for k, o in enumerate(owners):
        keep = [r for r in ws_res[o] if r >= 0 and resources[r].kind != "model"][:8] or [int(ws_res[o, 0])]
        a_ws[k, : len(keep)] = keep
        a_cum[k, : len(keep)] = np.cumsum(np.full(len(keep), 1.0 / len(keep)))
        a_cum[k, len(keep) - 1:] = 1.0
    on_behalf_codes = np.array([value_vocab.code(people[o].name) for o in owners], np.int32)
    member = np.concatenate([np.arange(n_people), assistants]).astype(np.int32)
    people_pop = PeoplePopulation(
        member=member,
        day_key=np.concatenate([np.arange(n_people), owners]).astype(np.int64),
        profile=np.concatenate([team_idx, np.full(len(assistants), agent_profile)]),
        team=np.concatenate([team_idx, team_idx[owners]]),
        tz_min=np.concatenate([tz, tz[owners]]),
        start_h=np.concatenate([start_h, start_h[owners]]),
        len_h=np.concatenate([len_h, len_h[owners]]),
        evening=np.concatenate([evening, evening[owners] * 0.5]),
        weekend_worker=np.concatenate([weekend_worker, weekend_worker[owners]]),
        base_rate=np.concatenate([base_rate, base_rate[owners] * rng.uniform(0.3, 1.2, len(assistants))]),
        created_ms=np.concatenate([created, np.maximum(created[owners],
                                                       [principals[i].created_ms for i in assistants])]),
        via_cdf=np.concatenate([via_by_team[team_idx], np.tile(assistant_via, (len(assistants), 1))]),
        novelty=np.concatenate([novelty, np.full(len(assistants), 0.01)]),
        ws_res=np.concatenate([ws_res, a_ws]),
        ws_cum=np.concatenate([ws_cum, a_cum]),
        pool=np.concatenate([team_idx, team_idx[owners]]),
        dest=np.concatenate([dest, np.zeros((len(assistants), 2), np.int32)]),
        ip_main=np.concatenate([ip_main, [machine_ip[i] for i in assistants]]).astype(np.int32),
        ip_alt=np.concatenate([ip_alt, [machine_ip[i] for i in assistants]]).astype(np.int32),
        attr_key=np.concatenate([np.full(n_people, -1),
                                 np.full(len(assistants), ATTR["on_behalf_of"])]).astype(np.int8),
        attr_val=np.concatenate([np.zeros(n_people, np.int32), on_behalf_codes]).astype(np.int32),
        logs_in=np.concatenate([np.ones(n_people, bool), np.zeros(len(assistants), bool)]),
        quarter_close=np.array([teams[t].quarter_close for t in np.concatenate([team_idx, team_idx[owners]])]),
    )

    model = OrgModel(
        spec=spec, principals=principals, resources=resources, groups=groups, principal_vocab=principal_vocab,
        resource_vocab=resource_vocab, grantee_vocab=grantee_vocab, ip_vocab=ip_vocab, value_vocab=value_vocab,
        ptype=np.zeros(0, np.int8), action_cdf=action_cdf, pool_flat=pool_flat, pool_start=pool_start,
        pool_len=pool_len, join_partners=join_partners, res_kind=res_kind, res_sensitivity=res_sensitivity,
        res_team=res_team, res_rows=res_rows, res_row_bytes=res_row_bytes, res_size=res_size, people=people_pop,
        jobs=[], loops=[], oncall=np.array(oncall, np.int32), close_days=_close_days(spec),
        login_resource=login_resource, style=style,
    )
    model.jobs = _service_jobs(model, services, machine_ip, rng)
    model.loops = _agent_loops(model, [i for i in agents if principals[i].on_behalf_of < 0], machine_ip, pool_lists,
                               rng)
    return model


# --------------------------------------------------------------------------- machines


def _service_jobs(model: OrgModel, services: list[int], machine_ip: dict[int, int],
                  rng: np.random.Generator) -> list[ServiceJob]:
    """The cron-like jobs of every service account."""
    res = model.resource_vocab
    resources = model.resources
    by_domain: dict[str, list[int]] = {}
    for i, r in enumerate(resources):
        if r.updated_ms <= model.spec.start_ms and r.kind in ("dataset", "feature_table", "embedding"):
            by_domain.setdefault(r.domain, []).append(i)
    datasets = [i for i, r in enumerate(resources) if r.kind == "dataset" and r.updated_ms <= model.spec.start_ms]
    secrets = [i for i, r in enumerate(resources) if r.kind == "secret"]
    latest_ckpts = [i for i, r in enumerate(resources) if r.name.startswith("model.llm-7b.")][-3:]

    def step(action: str, names: tuple[str, ...] | list[int], gap_s: float = 2.0, fraction: float = 0.01,
             destination: str | None = None) -> JobStep:
        codes = tuple(res[n] if isinstance(n, str) else int(n) for n in names)
        rows = int(np.mean([model.res_rows[c] for c in codes]) * fraction) + 1
        nbytes = int(rows * np.mean([model.res_row_bytes[c] for c in codes]))
        return JobStep(action, codes, rows, nbytes, int(gap_s * 1000),
                       destination=-1 if destination is None else model.value_vocab.code(destination))

    def every(minutes: float) -> tuple[int, int]:
        period = int(minutes * MINUTE_MS)
        return period, int(rng.integers(0, period // 1000)) * 1000

    def daily(hour: int) -> tuple[int, int]:
        return DAY_MS, hour * HOUR_MS + int(rng.integers(0, 20)) * MINUTE_MS

    jobs = []
    for code in services:
        p = model.principals[code]
        name = p.name
        plans: list[tuple[tuple[int, int], tuple[JobStep, ...], dict]] = []
        if name.startswith("svc-trainer-"):
            plans.append((every(60), (step("read", ["ds.platform.job_metadata"], fraction=0.0001),
                                      step("write", ["ds.platform.gpu_usage"], fraction=0.00001)), {}))
        elif name == "svc-etl-nightly":
            raw = by_domain.get("raw", [])[:8]
            curated = by_domain.get("curated", [])
            plans.append((daily(2), tuple(step("read", [r], 45) for r in raw)
                          + (step("write", curated, 60, 0.02), step("write", curated[1:] + curated[:1], 30, 0.02)),
                          {}))
        elif name == "svc-feature-refresh":
            plans.append((every(5), (step("query", ["ds.raw.app_events"], fraction=0.0005),
                                     step("write", ["ft.analytics.user_features"], 4, 0.0005)), {}))
        elif name == "svc-secrets-rotator":
            plans.append((every(60), (step("read", secrets, 1), step("write", secrets, 3)), {}))
        elif name == "svc-dq-checks":
            pool = by_domain.get("curated", []) + by_domain.get("raw", []) + by_domain.get("analytics", [])
            plans.append((every(15), tuple(step("query", pool[j::3], 5, 0.001) for j in range(3)), {}))
        elif name == "svc-backup":
            width = min(40, len(datasets))
            plans.append((daily(3), tuple(step("read", datasets[j::width], 20, 1.0) for j in range(width)), {}))
        elif name == "svc-embedder-support":
            plans.append((every(30), (step("read", ["ds.support.tickets"], fraction=0.0002),
                                      step("write", ["emb.support.kb_embeddings"], 30, 0.0002)), {}))
            plans.append((daily(1), (step("read", ["ds.curated.support_dialogs_sanitized"], fraction=0.05),
                                     step("write", ["emb.support.chat_embeddings"], 600, 0.02)), {}))
        elif name == "svc-report-finance":
            plans.append((daily(6), (step("query", ["ds.finance.revenue_daily"], fraction=0.01),
                                     step("query", ["ds.sales.pipeline"], 8, 0.01),
                                     step("export", ["ds.finance.revenue_daily"], 20, 0.01,
                                          "gs://corp-finance-reports/daily/")), {"weekdays_only": True}))
        elif name == "svc-airflow-scheduler":
            plans.append((every(5), (step("read", ["ds.platform.job_metadata"], fraction=0.0001),
                                     step("write", ["ds.platform.job_metadata"], 1, 0.00001)), {}))
        elif name == "svc-ingest-clickstream":
            plans.append((every(10), (step("write", ["ds.raw.clickstream"], fraction=0.0002),
                                      step("write", ["ds.raw.app_events"], 2, 0.0002)), {}))
        elif name == "svc-bi-refresh":
            pool = by_domain.get("analytics", [])
            plans.append((every(15), (step("query", pool[0::2], fraction=0.002), step("query", pool[1::2], 6, 0.002)),
                          {"weekdays_only": True, "hours_utc": (6, 20)}))
        elif name == "svc-eval-harness":
            plans.append((every(60), (step("read", ["ds.research.eval_benchmarks"], fraction=0.05),
                                      step("read", latest_ckpts, 10)), {}))
        elif name == "svc-siem-forwarder":
            plans.append((every(5), (step("read", ["ds.security.auth_logs"], fraction=0.00005),
                                     step("export", ["ds.security.auth_logs"], 3, 0.00005,
                                          "https://siem.corp.example/ingest")), {}))
        else:  # svc-etl-<domain>-NN
            domain = name.split("-")[2]
            pool = by_domain.get(domain) or by_domain["curated"]
            picks = [int(x) for x in rng.choice(pool, size=min(3, len(pool)), replace=False)]
            steps = tuple(step("read", [r], 3, 0.002) for r in picks[:-1]) + (step("write", picks[-1:], 5, 0.001),)
            plans.append((every(float(rng.choice([15, 30, 60]))), steps, {}))
        for (period, phase), steps, options in plans:
            # Scheduler-style job ids: "svc-etl-nightly/daily@02:07", "svc-feature-refresh/every-5m".
            if period == DAY_MS:
                schedule = f"daily@{phase // HOUR_MS:02d}:{phase % HOUR_MS // MINUTE_MS:02d}"
            else:
                schedule = f"every-{period // MINUTE_MS}m"
            jobs.append(ServiceJob(principal=code, every_ms=period, phase_ms=phase,
                                   jitter_ms=float(rng.uniform(50, 800)), steps=steps,
                                   job_value=model.value_vocab.code(f"{name}/{schedule}"), ip=machine_ip[code],
                                   **options))
    return jobs


def _agent_loops(model: OrgModel, autonomous: list[int], machine_ip: dict[int, int], pool_lists: list[np.ndarray],
                 rng: np.random.Generator) -> list[AgentLoop]:
    """Polling loops of the agents that act on their own."""
    loops = []
    for code in autonomous:
        p = model.principals[code]
        stem = p.name.rsplit("-", 1)[0]
        _, team, minutes, hours, burst = next(a for a in AUTONOMOUS_AGENTS if a[0] == stem)
        pool = pool_lists[TEAM_INDEX[team]]
        pool = np.array([r for r in pool if model.resources[r].kind != "secret"], np.int32)
        size = min(len(pool), int(rng.integers(6, 20)))
        chosen = rng.choice(pool, size=size, replace=False)
        weights = 1.0 / np.arange(1, size + 1)
        loops.append(AgentLoop(code, int(minutes * MINUTE_MS), 0.2, chosen.astype(np.int32), weights / weights.sum(),
                               machine_ip[code], hours, burst))
    return loops


def _close_days(spec: OrgSpec) -> frozenset[int]:
    """Working days of a fiscal quarter close inside the period.

    The last three working days of a calendar quarter and the first two of the
    next. When the period contains no quarter end, the simulated company's
    fiscal quarter closes on the three working days before ~70 % of the period,
    so every replay contains the reporting spike.
    """
    days = [spec.start.date() + timedelta(days=d) for d in range(spec.days)]
    workdays = [d for d in range(spec.days) if days[d].weekday() < 5]
    close: set[int] = set()
    for d in workdays:
        day = days[d]
        quarter_end = date(day.year + (day.month > 9), (((day.month - 1) // 3 + 1) * 3) % 12 + 1, 1) - timedelta(days=1)
        previous_end = date(day.year, ((day.month - 1) // 3) * 3 + 1, 1) - timedelta(days=1)
        before = sum(1 for k in range(1, (quarter_end - day).days + 1) if (day + timedelta(k)).weekday() < 5)
        after = sum(1 for k in range(0, (day - previous_end).days) if (day - timedelta(k)).weekday() < 5)
        if before <= 2 or after <= 2:
            close.add(d)
    if not close:
        target = int(spec.days * 0.7)
        close = set([d for d in workdays if d <= target][-3:])
    return frozenset(close)


# --------------------------------------------------------------------------- tables


def _ts(ms: list[int]) -> pa.Array:
    return pa.array(ms, type=pa.timestamp("ms", tz="UTC"))


def _principals_table(model: OrgModel) -> pa.Table:
    p = model.principals
    return pa.Table.from_arrays([
        pa.array([r.name for r in p]), pa.array([r.principal_type for r in p]), pa.array([r.team for r in p]),
        pa.array([r.title for r in p]), pa.array([r.manager for r in p]), _ts([r.created_ms for r in p]),
        _ts([r.created_ms for r in p]),
    ], schema=contract.arrow_schema("principals"))


def _memberships_table(model: OrgModel) -> pa.Table:
    created = {r.name: r.created_ms for r in model.principals}
    long_ago = model.spec.start_ms - 400 * DAY_MS
    rows = [(g, m, created.get(m, long_ago)) for g, members in model.groups.items() for m in members]
    return pa.Table.from_arrays([
        pa.array([r[0] for r in rows]), pa.array([r[1] for r in rows]), pa.array([0] * len(rows), pa.uint8()),
        _ts([r[2] for r in rows]),
    ], schema=contract.arrow_schema("memberships"))


def _resources_table(model: OrgModel) -> pa.Table:
    r = model.resources
    return pa.Table.from_arrays([
        pa.array([x.name for x in r]), pa.array([x.kind for x in r]), pa.array([x.sensitivity for x in r]),
        pa.array([list(x.categories) for x in r], pa.list_(pa.string())), pa.array([x.owner for x in r]),
        pa.array([x.sanitized for x in r], pa.uint8()), _ts([x.updated_ms for x in r]),
    ], schema=contract.arrow_schema("resources"))
