"""Benign traffic of one day, vectorised per population.

Four populations, each drawn with its own generator seeded by (seed, day, stream):

- people and the agents that act for them: Poisson counts per (person, UTC hour)
  from a working-hours profile in local time, then resources from a habitual
  working set (occasionally something new), actions that fit the resource kind;
- service accounts: cron-like jobs with millisecond jitter;
- autonomous agents: polling loops with a rough period;
- the night on-call sweep: a burst of reads by the on-call engineer.

Hand-placed benign events (training runs, grants and their readers) are planned
once by :mod:`scheduled` and joined here.
"""

from __future__ import annotations

import numpy as np

from ._random import day_rng, hash_normal, hash_uniform
from .blueprint import TEAM_INDEX
from .events import ACTION, ATTR, KIND, SENSITIVITY, STATUS, VIA, EventChunk, concat
from .model import DAY_MS, HOUR_MS, MINUTE_MS, OrgModel

# Independent random streams of a day.
STREAM_PEOPLE, STREAM_SERVICES, STREAM_AGENTS, STREAM_ONCALL = 1, 2, 3, 4

#: log of the share of a table an action touches (median), per action.
_LOG_FRACTION = np.full(len(ACTION), np.log(1e-3))
for _action, _fraction in {"read": 2.5e-3, "query": 1.5e-3, "join": 4e-3, "export": 6e-3, "download": 2e-2,
                           "write": 1e-3, "delete": 1e-4}.items():
    _LOG_FRACTION[ACTION[_action]] = np.log(_fraction)
#: Benign exports stay modest.
MAX_BENIGN_EXPORT_BYTES = 1.5e9
_SILENT = np.array([ACTION["login"], ACTION["grant"], ACTION["revoke"]])


def volumes(model: OrgModel, resource: np.ndarray, action: np.ndarray, rng: np.random.Generator,
            scale: float | np.ndarray = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Plausible (rows, bytes) of benign events.

    Parameters
    ----------
    model : OrgModel
        Resource sizes.
    resource, action : numpy.ndarray
        Codes per event.
    rng : numpy.random.Generator
        Source of the spread.
    scale : float or numpy.ndarray
        Multiplier of the share of the table touched.

    Returns
    -------
    rows, nbytes : numpy.ndarray
        ``uint64`` per event.
    """
    n = len(resource)
    total = model.res_rows[resource]
    row_bytes = model.res_row_bytes[resource]
    kind = model.res_kind[resource]
    share = np.exp(_LOG_FRACTION[action] + rng.normal(0.0, 1.2, n)) * scale
    rows = np.clip(np.rint(total * share), 1, np.maximum(total, 1))
    export = action == ACTION["export"]
    rows = np.where(export, np.minimum(rows, np.maximum(1, MAX_BENIGN_EXPORT_BYTES / np.maximum(row_bytes, 1))), rows)
    nbytes = rows * row_bytes * rng.uniform(0.8, 1.2, n)
    is_model = kind == KIND["model"]
    download_model = is_model & (action == ACTION["download"])
    nbytes = np.where(download_model, model.res_size[resource], nbytes)
    # Reading a model or a run shows its metadata card, not the weights.
    card = (is_model & ~download_model) | (kind == KIND["training_run"]) | (kind == KIND["other"])
    nbytes = np.where(card, np.exp(rng.normal(np.log(2e5), 1.0, n)), nbytes)
    rows = np.where(is_model | (kind == KIND["other"]), 0, np.where(kind == KIND["training_run"], 100, rows))
    silent = np.isin(action, _SILENT)
    rows = np.where(silent, 0, rows)
    nbytes = np.where(silent, 0, nbytes)
    return rows.astype(np.uint64), np.rint(nbytes).astype(np.uint64)


def _pick_rows(cum: np.ndarray, row: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per event, the first column of ``cum[row]`` (cumulative weights) exceeding ``u``.

    Rows are offset by 2 so one ``searchsorted`` over the flattened table serves
    every event, whatever its row.
    """
    n_rows, width = cum.shape
    flat = (cum + 2.0 * np.arange(n_rows)[:, None]).ravel()
    col = np.searchsorted(flat, u + 2.0 * row, side="right") - row * width
    return np.minimum(col, width - 1)


def _working_profile(local_h: np.ndarray, start_h: np.ndarray, len_h: np.ndarray, evening: np.ndarray) -> np.ndarray:
    """Relative activity at local hour ``local_h`` (arrays broadcast)."""
    end_h = start_h + len_h
    core = (local_h >= start_h) & (local_h < end_h)
    ramp = ((local_h >= start_h - 1.0) & (local_h < start_h)) | ((local_h >= end_h) & (local_h < end_h + 1.5))
    lunch = np.abs(local_h - (start_h + len_h / 2.0)) < 0.5
    late = (local_h >= 20.0) & (local_h < 23.5)
    return core * 1.0 + ramp * 0.25 - lunch * 0.45 + late * evening * 2.0 + 0.004


def people_events(model: OrgModel, day: int) -> EventChunk:
    """Events of people and of the agents that act for them on ``day``."""
    rng = day_rng(model.spec.seed, day, STREAM_PEOPLE)
    pop = model.people
    seed = model.spec.seed
    n_members = len(pop.member)
    d0 = model.day_start_ms(day)

    # Intensity per (member, UTC hour), evaluated in each member's local time.
    local_min = np.arange(24)[None, :] * 60 + 30 + pop.tz_min[:, None]
    local_day = day + np.floor_divide(local_min, 1440)
    local_h = (local_min % 1440) / 60.0
    weekend = (model.spec.start.weekday() + local_day) % 7 >= 5
    shape = (pop.start_h[:, None], pop.len_h[:, None], pop.evening[:, None])
    profile = _working_profile(local_h, *shape)
    norm = _working_profile(np.arange(24)[None, :] + 0.5, *shape).sum(axis=1, keepdims=True)
    key = pop.day_key[:, None]
    # Leave days, busy days and weekends hash on (person, local date) so that both
    # UTC days a local day straddles agree.
    absent = hash_uniform(seed, key, local_day, 11) < 0.05
    variety = np.exp(0.35 * hash_normal(seed, key, local_day, 12) - 0.06)
    weekend_level = np.where(pop.weekend_worker[:, None], model.style.weekend_level, 0.015)
    factor = np.where(weekend, weekend_level, np.where(absent, 0.01, 1.0))
    closing = np.isin(local_day, list(model.close_days)) & pop.quarter_close[:, None]
    factor = factor * variety * np.where(closing, model.style.close_spike, 1.0)
    # New joiners ramp up over their first days.
    first_day = (pop.created_ms - model.spec.start_ms) // DAY_MS
    onboarding = (local_day - first_day[:, None]) < 3
    factor = factor * np.where(onboarding & (pop.created_ms[:, None] > model.spec.start_ms), 0.6, 1.0)
    lam = pop.base_rate[:, None] * profile / norm * factor
    hour_end = d0 + (np.arange(24)[None, :] + 1) * HOUR_MS
    lam = np.where(hour_end <= pop.created_ms[:, None], 0.0, lam)
    counts = rng.poisson(lam).ravel()

    cell = np.repeat(np.arange(n_members * 24), counts)
    m = cell // 24
    hour = cell % 24
    n = len(cell)
    # Work comes in sessions: each event follows one of two anchors of its hour.
    anchors = rng.random((n_members * 24, 2)) * HOUR_MS
    offset = (anchors[cell, rng.integers(0, 2, n)] + rng.exponential(5 * MINUTE_MS, n)) % HOUR_MS
    time = d0 + hour * HOUR_MS + offset.astype(np.int64)
    keep = time >= pop.created_ms[m]
    m, time = m[keep], time[keep]
    n = len(m)

    # Resources: habitual working set, sometimes something new from the team's pool.
    novel = rng.random(n) < pop.novelty[m]
    habitual = pop.ws_res[m, _pick_rows(pop.ws_cum, m, rng.random(n))]
    pool = pop.pool[m]
    explored = model.pool_flat[model.pool_start[pool] + (rng.random(n) * model.pool_len[pool]).astype(np.int64)]
    resource = np.where(novel, explored, habitual).astype(np.int32)

    kind = model.res_kind[resource].astype(np.int64)
    n_kinds = model.action_cdf.shape[1]
    action = _pick_rows(model.action_cdf.reshape(-1, model.action_cdf.shape[2]), pop.profile[m] * n_kinds + kind,
                        rng.random(n))
    # Joins need a usual partner; without one the event is a plain query.
    n_partners = (model.join_partners >= 0).sum(axis=1)[resource]
    action = np.where((action == ACTION["join"]) & (n_partners == 0), ACTION["query"], action)
    join_rows = np.flatnonzero(action == ACTION["join"])
    column = (rng.random(len(join_rows)) * n_partners[join_rows]).astype(np.int64)
    partner = model.join_partners[resource[join_rows], column]

    via = _pick_rows(pop.via_cdf, m, rng.random(n))
    rows, nbytes = volumes(model, resource, action, rng)
    rows[join_rows] += volumes(model, partner, action[join_rows], rng)[0]

    # Denials mostly hit exploration of other teams' sensitive data.
    foreign_sensitive = (model.res_sensitivity[resource] >= SENSITIVITY["confidential"]) & \
                        (model.res_team[resource] != pop.team[m])
    p_denied = 0.002 + novel * (0.03 + 0.25 * foreign_sensitive)
    r = rng.random(n)
    status = np.where(r < p_denied, STATUS["denied"], np.where(r < p_denied + 0.002, STATUS["error"], STATUS["ok"]))
    failed = status != STATUS["ok"]
    rows[failed] = 0
    nbytes[failed] = 0

    ip = np.where(rng.random(n) < 0.2, pop.ip_alt[m], pop.ip_main[m])
    export = action == ACTION["export"]
    dest = pop.dest[m, (rng.random(n) < 0.15).astype(np.int64)]
    key0 = np.where(export, ATTR["destination"], pop.attr_key[m])
    val0 = np.where(export, dest, pop.attr_val[m])
    events = EventChunk.build(time, pop.member[m], action, resource, nbytes=nbytes, nrows=rows, via=via,
                              status=status, ip=ip, key0=key0, val0=val0, rel_row=join_rows,
                              rel=partner[:, None])

    # One login per active person and UTC day, shortly before their first event.
    first = np.full(n_members, np.iinfo(np.int64).max)
    np.minimum.at(first, m, time)
    who = np.flatnonzero((first < np.iinfo(np.int64).max) & pop.logs_in)
    # Never before midnight (the previous day is already written) nor before the account exists.
    earliest = np.maximum(d0, pop.created_ms[who])
    lead = np.minimum(rng.integers(1_000, 90_000, len(who)), (first[who] - earliest) * rng.random(len(who)))
    login_time = first[who] - lead.astype(np.int64)
    login_status = np.where(rng.random(len(who)) < 0.01, STATUS["denied"], STATUS["ok"])
    logins = EventChunk.build(login_time, pop.member[who], ACTION["login"], model.login_resource, via=VIA["console"],
                              status=login_status, ip=pop.ip_main[who])
    return concat([logins, events])


def service_events(model: OrgModel, day: int) -> EventChunk:
    """Runs of the service accounts' scheduled jobs on ``day``."""
    rng = day_rng(model.spec.seed, day, STREAM_SERVICES)
    d0 = model.day_start_ms(day)
    d1 = d0 + DAY_MS
    weekday = (model.spec.start.weekday() + day) % 7
    chunks = []
    for job in model.jobs:
        if job.weekdays_only and weekday >= 5:
            continue
        first = -(-(d0 - job.phase_ms) // job.every_ms)
        last = -(-(d1 - job.phase_ms) // job.every_ms)
        run = np.arange(first, last, dtype=np.int64)
        start = job.phase_ms + run * job.every_ms
        hour = (start - d0) // HOUR_MS
        in_hours = (hour >= job.hours_utc[0]) & (hour < job.hours_utc[1])
        # A rare run is skipped (deploys, maintenance windows).
        ran = in_hours & (rng.random(len(run)) > 0.003)
        run, start = run[ran], start[ran]
        start = start + np.rint(rng.normal(0.0, job.jitter_ms, len(run))).astype(np.int64)
        n_steps = len(job.steps)
        gaps = np.cumsum([s.gap_ms for s in job.steps]) - job.steps[0].gap_ms
        time = start[:, None] + gaps[None, :] + rng.integers(0, 250, (len(run), n_steps))
        resource = np.stack([np.array(s.resources, np.int32)[run % len(s.resources)] for s in job.steps], axis=1)
        action = np.broadcast_to(np.array([ACTION[s.action] for s in job.steps], np.int8), time.shape)
        noise = rng.normal(1.0, 0.08, time.shape).clip(0.5, 1.5)
        rows = np.rint(np.array([s.rows for s in job.steps])[None, :] * noise)
        nbytes = np.rint(np.array([s.nbytes for s in job.steps])[None, :] * noise)
        failed = rng.random(time.shape) < job.error_rate
        destination = np.broadcast_to(np.array([s.destination for s in job.steps]), time.shape)
        status = np.where(failed, STATUS["error"], STATUS["ok"])
        inside = ((time >= d0) & (time < d1)).ravel()

        def flat(a: np.ndarray, inside: np.ndarray = inside) -> np.ndarray:
            return np.asarray(a).ravel()[inside]

        has_dest = flat(destination) >= 0
        chunks.append(EventChunk.build(
            flat(time), job.principal, flat(action), flat(resource),
            nbytes=np.where(flat(failed), 0, flat(nbytes)).astype(np.uint64),
            nrows=np.where(flat(failed), 0, flat(rows)).astype(np.uint64), via=VIA["pipeline"], status=flat(status),
            ip=job.ip, key0=ATTR["job"], val0=job.job_value, key1=np.where(has_dest, ATTR["destination"], -1),
            val1=np.where(has_dest, flat(destination), 0)))
    return concat(chunks)


def agent_loop_events(model: OrgModel, day: int) -> EventChunk:
    """Polling of the autonomous agents on ``day``."""
    rng = day_rng(model.spec.seed, day, STREAM_AGENTS)
    d0 = model.day_start_ms(day)
    chunks = []
    for loop in model.loops:
        phase = int(hash_uniform(model.spec.seed, loop.principal, 21) * loop.every_ms)
        first = -(-(d0 - phase) // loop.every_ms)
        last = -(-(d0 + DAY_MS - phase) // loop.every_ms)
        tick = phase + np.arange(first, last, dtype=np.int64) * loop.every_ms
        tick = tick + np.rint(rng.normal(0.0, loop.jitter * loop.every_ms, len(tick))).astype(np.int64)
        hour = (tick - d0) // HOUR_MS
        tick = tick[(hour >= loop.hours_utc[0]) & (hour < loop.hours_utc[1])]
        per_tick = 1 + rng.poisson(loop.burst - 1, len(tick))
        time = np.repeat(tick, per_tick) + rng.integers(0, 20_000, per_tick.sum())
        time = time[(time >= d0) & (time < d0 + DAY_MS)]
        n = len(time)
        resource = loop.resources[rng.choice(len(loop.resources), size=n, p=loop.weights)]
        look_up = np.where(rng.random(n) < 0.5, ACTION["read"], ACTION["query"])
        action = np.where(model.res_kind[resource] == KIND["dataset"], look_up, ACTION["read"])
        rows, nbytes = volumes(model, resource, action, rng, 0.3)
        status = np.where(rng.random(n) < 0.002, STATUS["error"], STATUS["ok"])
        chunks.append(EventChunk.build(time, loop.principal, action, resource, nbytes=nbytes, nrows=rows,
                                       via=VIA["api"], status=status, ip=loop.ip))
    return concat(chunks)


def oncall_events(model: OrgModel, day: int) -> EventChunk:
    """On some nights the on-call engineer sweeps dashboards and logs in a burst."""
    rng = day_rng(model.spec.seed, day, STREAM_ONCALL)
    if len(model.oncall) == 0 or rng.random() >= model.style.oncall_night_p:
        return EventChunk.empty()
    d0 = model.day_start_ms(day)
    person = int(model.oncall[(day // 7 + model.spec.seed) % len(model.oncall)])
    pop = model.people
    tz = int(pop.tz_min[person])
    local_start_min = rng.uniform(30, 270)  # between 00:30 and 04:30 local time
    duration = int(rng.uniform(20, 60) * MINUTE_MS)
    t0 = d0 + int(((local_start_min - tz) % 1440) * MINUTE_MS)
    t0 = max(min(t0, d0 + DAY_MS - duration - MINUTE_MS), d0 + MINUTE_MS, int(pop.created_ms[person]) + MINUTE_MS)
    n = max(5, int(rng.integers(30, 150) * model.style.oncall_sweep))
    time = np.sort(t0 + rng.integers(0, duration, n))
    sre = TEAM_INDEX["sre"]
    pool = model.pool_flat[model.pool_start[sre]: model.pool_start[sre] + model.pool_len[sre]]
    is_secret = model.res_kind[pool] == KIND["secret"]
    ops, secrets = pool[~is_secret], pool[is_secret]
    resource = ops[rng.integers(0, len(ops), n)]
    if len(secrets):
        # A few credentials checks are part of a normal incident.
        resource = np.where(rng.random(n) < 0.03, secrets[rng.integers(0, len(secrets), n)], resource)
    look_up = np.where(rng.random(n) < 0.45, ACTION["read"], ACTION["query"])
    action = np.where(model.res_kind[resource] == KIND["dataset"], look_up, ACTION["read"])
    rows, nbytes = volumes(model, resource, action, rng)
    via = np.where(rng.random(n) < 0.6, VIA["console"], VIA["api"])
    ip = int(pop.ip_alt[person])  # from home, over the VPN
    sweep = EventChunk.build(time, person, action, resource, nbytes=nbytes, nrows=rows, via=via, ip=ip)
    login = EventChunk.build(np.array([t0 - int(rng.integers(5_000, 60_000))]), person, ACTION["login"],
                             model.login_resource, via=VIA["console"], ip=ip)
    return concat([login, sweep])


def benign_day(model: OrgModel, day: int) -> EventChunk:
    """All benign events of ``day``, unsorted, in a deterministic order."""
    return concat(model.planned_benign.get(day, []) + [
        people_events(model, day), service_events(model, day), agent_loop_events(model, day),
        oncall_events(model, day),
    ])
