"""Benign events placed by hand when the organisation is built.

They create catalogue entries (training runs, checkpoints) or involve several
people (a grant, then its first readers), so they are planned once for the whole
period and attached to their days; the per-day generators only join them.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from ._random import hash_uniform
from .blueprint import ALL_STAFF, MODEL_FAMILIES
from .events import ACTION, ATTR, KIND, EventBuffer
from .model import DAY_MS, HOUR_MS, MINUTE_MS, OrgModel, ResourceRecord
from .traffic import volumes


class DayBuffers:
    """One :class:`EventBuffer` per UTC day; events outside the period are dropped."""

    def __init__(self, model: OrgModel) -> None:
        self.model = model
        self.buffers: dict[int, EventBuffer] = {}

    def add(self, time_ms: int, *args: object, **kwargs: object) -> bool:
        """Add an event to the buffer of its day; False when outside the period."""
        day = self.model.day_of(time_ms)
        if not 0 <= day < self.model.spec.days:
            return False
        self.buffers.setdefault(day, EventBuffer()).add(time_ms, *args, **kwargs)
        return True


def plan_benign_events(model: OrgModel) -> None:
    """Plan training runs, grants, onboarding (and a styled company's backfills) and attach them to their days."""
    rng = np.random.default_rng([model.spec.seed, 0x5C4])
    days = DayBuffers(model)
    _training_runs(model, days, rng)
    _grants(model, days, rng)
    _onboarding(model, days, rng)
    if model.style.backfills:
        # Their own stream, so that the classic organisation's draws stay as they were.
        _backfills(model, days, np.random.default_rng([model.spec.seed, model.spec.style, 0xBAC]))
    for day, buffer in sorted(days.buffers.items()):
        model.add_planned(day, buffer.to_chunk())


def training_io(model: OrgModel, corpora: list[int], rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Rows and bytes a training run reads from each corpus (a large share of it)."""
    rows = [int(model.res_rows[c] * rng.uniform(0.2, 1.0)) + 1 for c in corpora]
    return rows, [int(r * model.res_row_bytes[c]) for r, c in zip(rows, corpora)]


def _training_runs(model: OrgModel, days: DayBuffers, rng: np.random.Generator) -> None:
    """Nightly training runs: read the corpora, ``train`` a new run, write a checkpoint."""
    res = model.resource_vocab
    principals = model.principal_vocab
    ckpt_counter = {f: sum(1 for r in model.resources if r.name.startswith(f"model.{f}.")) for f in MODEL_FAMILIES}
    gpus = model.value_vocab.code("64")
    framework = model.value_vocab.code("pytorch")
    for day in range(model.spec.days):
        date = (model.spec.start + timedelta(days=day)).date().isoformat()
        for f_idx, (family, (size_gb, team, corpora_names, trainer_name)) in enumerate(MODEL_FAMILIES.items()):
            if trainer_name not in principals:
                trainer_name = "svc-trainer-llm"
            chance = 0.85 if family == "llm-7b" else 0.5
            if hash_uniform(model.spec.seed, f_idx, day, 31)[()] >= chance:
                continue
            trainer = principals[trainer_name]
            ip = machine_ip(model, trainer)
            t = model.day_start_ms(day) + HOUR_MS + f_idx * 40 * MINUTE_MS + int(rng.integers(0, 10 * MINUTE_MS))
            corpora = [res[c] for c in corpora_names]
            rows, nbytes = training_io(model, corpora, rng)
            for k, c in enumerate(corpora):
                days.add(t + k * 30_000, trainer, "read", c, nrows=rows[k], nbytes=nbytes[k], via="pipeline", ip=ip)
            train_time = t + len(corpora) * 30_000 + 60_000
            categories = tuple(sorted({c for code in corpora for c in model.resources[code].categories}))
            run = model.add_resource(ResourceRecord(
                f"run.{family}.{date}", "training_run", "internal", categories, trainer_name, 1, train_time, "runs",
                team, 0, 0))
            days.add(train_time, trainer, "train", run, related=corpora, nrows=sum(rows), nbytes=sum(nbytes),
                     via="pipeline", ip=ip, attributes={ATTR["framework"]: framework, ATTR["gpus"]: gpus})
            write_time = train_time + int(rng.uniform(3, 8) * HOUR_MS)
            size = int(size_gb * 1e9 * rng.uniform(0.97, 1.03))
            if model.day_of(write_time) >= model.spec.days:
                continue  # the checkpoint lands after the period: not catalogued yet
            ckpt_counter[family] += 1
            ckpt_categories = ("source_code",) if family.startswith("code") else ()
            ckpt = model.add_resource(ResourceRecord(
                f"model.{family}.ckpt-{ckpt_counter[family]:04d}", "model", "confidential", ckpt_categories,
                trainer_name, 1, write_time, "models", team, 0, 0, size))
            days.add(write_time, trainer, "write", ckpt, nbytes=size, via="pipeline", ip=ip)


def machine_ip(model: OrgModel, principal: int) -> int:
    prefix = 20 if model.principals[principal].principal_type == "service" else 30
    return model.ip_vocab[f"10.{prefix}.{principal // 250}.{principal % 250 + 1}"]


def _humans_by_team(model: OrgModel) -> dict[str, list[int]]:
    by_team: dict[str, list[int]] = {}
    for i, p in enumerate(model.principals):
        if p.principal_type == "human":
            by_team.setdefault(p.team, []).append(i)
    return by_team


def _grants(model: OrgModel, days: DayBuffers, rng: np.random.Generator) -> None:
    """Team grants, all-staff grants of non-sensitive data (and their first readers), revokes."""
    style = model.style
    teams = style.teams
    by_team = _humans_by_team(model)
    managers = {t: ids[0] for t, ids in by_team.items()}
    stewards = [model.principal_vocab[m] for m in model.groups.get("data-stewards", [])]
    humans = [i for ids in by_team.values() for i in ids]
    n_humans = len(humans)
    reader_role = model.value_vocab.code("reader")
    writer_role = model.value_vocab.code("writer")
    shareable = {t.name: [i for i, r in enumerate(model.resources)
                          if r.team == t.name and r.kind in ("dataset", "feature_table", "embedding")
                          and r.sensitivity in ("public", "internal", "confidential")
                          and r.updated_ms <= model.spec.start_ms] for t in teams}
    open_data = {t: [i for i in ids if model.resources[i].sensitivity in ("public", "internal")]
                 for t, ids in shareable.items()}
    interested = {t.name: [u.name for u in teams if any(d in u.interests for d in
                                                        {model.resources[i].domain for i in shareable[t.name]})]
                  for t in teams}
    team_cut = style.team_grant_share
    all_staff_cut = style.team_grant_share + style.all_staff_share
    given: list[tuple[int, int, int]] = []  # (grantor, resource, grantee) still in force
    for day in range(model.spec.days):
        weekend = model.is_weekend(day)
        # Mondays open with the weekly data release: a steward shares something with everyone.
        weekly_release = (model.spec.start.weekday() + day) % 7 == 0
        n_grants = rng.poisson(max(1.5, n_humans / 100) * style.grant_rate * (0.1 if weekend else 1.0))
        for g in range(n_grants + weekly_release):
            kind = 0.7 if weekly_release and g == 0 else rng.random()
            if kind < team_cut:
                team = teams[rng.integers(len(teams))].name
                if not shareable[team]:
                    continue
                grantor = managers[team]
                resource = int(rng.choice(shareable[team]))
                target = interested[team][rng.integers(len(interested[team]))]
                grantee = model.grantee_vocab[f"team-{target}"]
                assisted = model.resources[resource].sensitivity != "confidential" and rng.random() < 0.2
                when = model.working_time_ms(grantor, day, rng.uniform(0.1, 0.9))
                role = writer_role if target == team and rng.random() < 0.3 else reader_role
                if days.add(when, grantor, "grant", resource, grantee=grantee, via="ai_assistant" if assisted else
                            "console", ip=int(model.people.ip_main[grantor]), attributes={ATTR["role"]: role}):
                    given.append((grantor, resource, grantee))
            elif kind < all_staff_cut and stewards:
                grantor = stewards[rng.integers(len(stewards))]
                team = model.principals[grantor].team
                pool = open_data[team] or open_data["hr"]
                if not pool:
                    continue
                resource = int(rng.choice(pool))
                when = model.working_time_ms(grantor, day, rng.uniform(0.1, 0.7))
                via = "ai_assistant" if rng.random() < 0.3 else "console"
                if days.add(when, grantor, "grant", resource, grantee=model.grantee_vocab[ALL_STAFF], via=via,
                            ip=int(model.people.ip_main[grantor]), attributes={ATTR["role"]: reader_role}):
                    count = max(1, int(rng.integers(5, 26) * style.first_readers))
                    _first_readers(model, days, rng, resource, when, humans, count)
            elif given:
                grantor, resource, grantee = given.pop(int(rng.integers(len(given))))
                when = model.working_time_ms(grantor, day, rng.uniform(0.1, 0.9))
                days.add(when, grantor, "revoke", resource, grantee=grantee, via="console",
                         ip=int(model.people.ip_main[grantor]))


def _first_readers(model: OrgModel, days: DayBuffers, rng: np.random.Generator, resource: int, granted_ms: int,
                   humans: list[int], count: int) -> None:
    """People who look at a freshly shared, non-sensitive dataset over the next two days."""
    readers = rng.choice(humans, size=min(count, len(humans)), replace=False)
    first_day = model.day_of(granted_ms)
    for person in readers:
        person = int(person)
        for local_day in range(first_day, first_day + 3):
            when = model.working_time_ms(person, local_day, rng.uniform(0.05, 0.95))
            if when > granted_ms + 10 * MINUTE_MS and when > model.people.created_ms[person] \
                    and not model.is_weekend(local_day):
                break
        else:
            continue
        for k in range(int(rng.integers(1, 4))):
            action = "read" if rng.random() < 0.5 else "query"
            rows, nbytes = volumes(model, np.array([resource]), np.array([ACTION[action]]), rng)
            days.add(when + k * int(rng.integers(20_000, 600_000)), person, action, resource, nrows=int(rows[0]),
                     nbytes=int(nbytes[0]), via="console" if rng.random() < 0.7 else "notebook",
                     ip=int(model.people.ip_main[person]))


def _onboarding(model: OrgModel, days: DayBuffers, rng: np.random.Generator) -> None:
    """On a new joiner's first day their manager grants them a few team datasets."""
    by_team = _humans_by_team(model)
    reader_role = model.value_vocab.code("reader")
    for person, rec in enumerate(model.principals):
        if rec.principal_type != "human" or rec.created_ms <= model.spec.start_ms:
            continue
        manager = by_team[rec.team][0]
        candidates = [int(r) for r in model.people.ws_res[person] if r >= 0
                      and model.resources[r].team == rec.team
                      and model.resources[r].kind in ("dataset", "feature_table", "embedding")
                      and model.resources[r].sensitivity in ("internal", "confidential")]
        for k, resource in enumerate(candidates[: int(rng.integers(1, 4))]):
            when = rec.created_ms + int(rng.uniform(0.3, 3.0) * HOUR_MS) + k * 90_000
            days.add(when, manager, "grant", resource, grantee=model.grantee_vocab[rec.name], via="console",
                     ip=int(model.people.ip_main[manager]), attributes={ATTR["role"]: reader_role})



def _backfills(model: OrgModel, days: DayBuffers, rng: np.random.Generator) -> None:
    """A pipeline re-reads a whole domain at night after a fix upstream (benign, but broad and heavy).

    A hard case for breadth and volume detectors: a service touches dozens of datasets
    it reads rarely, in large shares, within an hour or two.
    """
    services = [i for i, p in enumerate(model.principals) if p.principal_type == "service"
                and model.principals[i].team == "data-eng"]
    if not services:
        return
    by_domain: dict[str, list[int]] = {}
    for i, r in enumerate(model.resources):
        if r.updated_ms <= model.spec.start_ms and r.kind in ("dataset", "feature_table") \
                and r.sensitivity != "restricted":
            by_domain.setdefault(r.domain, []).append(i)
    domains = sorted(d for d, ids in by_domain.items() if len(ids) >= 3)
    for _ in range(model.style.backfills):
        service = int(services[rng.integers(len(services))])
        ip = machine_ip(model, service)
        job = model.value_vocab.code(f"{model.principals[service].name}/backfill")
        pool = by_domain[domains[int(rng.integers(len(domains)))]]
        day = int(rng.integers(0, model.spec.days))
        t = model.day_start_ms(day) + int(rng.uniform(0.5, 4.0) * HOUR_MS)
        span = rng.uniform(0.5, 2.0) * HOUR_MS
        for resource in rng.permutation(pool):
            resource = int(resource)
            action = "read" if model.res_kind[resource] == KIND["dataset"] else "query"
            rows, nbytes = volumes(model, np.array([resource]), np.array([ACTION[action]]), rng, 50.0)
            for k in range(int(rng.integers(1, 4))):
                when = t + int(rng.uniform(0, span)) + k * 20_000
                if when < model.day_start_ms(day) + DAY_MS:
                    days.add(when, service, action, resource, nrows=int(rows[0]), nbytes=int(nbytes[0]),
                             via="pipeline", ip=ip, attributes={ATTR["job"]: job})
