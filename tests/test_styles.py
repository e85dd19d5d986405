"""Organisation styles and attack intensities: many different companies, attacks from blatant to subtle.

Every check runs the real generator on small organisations (120 principals, 8 days).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blastwall.simulation import Organisation, OrgSpec, build_organisation, iter_access_log
from blastwall.simulation.attacks import FAMILIES
from blastwall.simulation.blueprint import TEAMS
from blastwall.simulation.style import ATTACK_VARIANTS, CLASSIC, OrgStyle, draw_style

STYLES = tuple(range(10))
INTENSITIES = (1.0, 0.5, 0.1)
PRINCIPALS, DAYS, SEED = 120, 8, 5
#: Digest of OrgSpec(120, 8, seed=5) as generated before styles existed (the classic company).
CLASSIC_DIGEST = "7ec1d0394df45f686083a3d4963c212cfb3e05f94c0e41407f5821b6e0169c6b"


def _digest(org: Organisation) -> str:
    """A digest of the catalogue, the labels and the whole access log."""
    h = hashlib.sha256()

    def column(values: pa.Array | pa.ChunkedArray) -> None:
        if pa.types.is_timestamp(values.type):
            values = values.cast(pa.int64())
        h.update(json.dumps(values.to_pylist()).encode())

    for table in (org.principals, org.memberships, org.resources):
        for name in table.column_names:
            column(table.column(name))
    h.update(json.dumps([label.to_dict() for label in org.labels]).encode())
    for batch in iter_access_log(org):
        for name in ("event_id", "event_time", "principal", "action", "resource", "grantee", "bytes", "rows",
                     "via", "status", "source_ip"):
            column(batch.column(name))
    return h.hexdigest()


@dataclass
class Run:
    """One generated organisation and the log columns the checks need."""

    org: Organisation
    event_id: np.ndarray
    time: np.ndarray
    principal: np.ndarray   # principal codes
    action: np.ndarray
    resource: np.ndarray    # resource codes
    nbytes: np.ndarray
    family: np.ndarray      # attack family of the row, "" for benign rows

    @property
    def benign(self) -> np.ndarray:
        return self.family == ""


def _run(style: int | None, intensity: float) -> Run:
    org = build_organisation(OrgSpec(principals=PRINCIPALS, days=DAYS, seed=SEED, style=style, intensity=intensity))
    log = pa.Table.from_batches(list(iter_access_log(org)))
    model = org.model
    family_of = {e: label.family for label in org.labels for e in label.event_ids}
    event_id = np.array(log.column("event_id").to_pylist(), dtype=object)
    return Run(
        org=org, event_id=event_id, time=log.column("event_time").cast(pa.int64()).to_numpy(),
        principal=np.array([model.principal_vocab[p] for p in log.column("principal").to_pylist()]),
        action=np.array(log.column("action").to_pylist(), dtype=object),
        resource=np.array([model.resource_vocab[r] for r in log.column("resource").to_pylist()]),
        nbytes=log.column("bytes").to_numpy().astype(np.int64),
        family=np.array([family_of.get(e, "") for e in event_id], dtype=object))


@pytest.fixture(scope="module")
def runs() -> dict[tuple[int | None, float], Run]:
    return {(style, intensity): _run(style, intensity) for style in (None, *STYLES) for intensity in INTENSITIES}


# --------------------------------------------------------------------------- the style itself


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_draw_style_is_deterministic_and_stays_in_realistic_ranges(style: int) -> None:
    drawn = draw_style(style)
    assert drawn == draw_style(style) and drawn.style == style and not drawn.classic
    assert [t.name for t in drawn.teams] == [t.name for t in TEAMS]  # every team the attacks need is kept
    for base, team in zip(TEAMS, drawn.teams):
        assert 1 / 3 - 1e-9 <= team.weight / base.weight <= 3 + 1e-9
        assert 0.4 - 1e-9 <= team.events_per_day / base.events_per_day <= 2.5 + 1e-9
        assert max(base.interests, key=base.interests.get) in team.interests and "corp" in team.interests
        assert team.sites and all(w > 0 for w in team.sites.values())
    assert 0.06 <= drawn.service_share <= 0.18 and 0.03 <= drawn.agent_share <= 0.15
    assert 7.5 <= drawn.workday_start_h <= 10 and 7.5 <= drawn.workday_len_h <= 9.5
    assert 0.03 <= drawn.evening_share <= 0.3 and 0.03 <= drawn.weekend_share <= 0.3
    assert 0.01 <= drawn.new_joiner_share <= 0.08 and 0 <= drawn.backfills <= 4
    assert drawn.team_grant_share + drawn.all_staff_share < 1
    assert set(drawn.attack_variant) == set(ATTACK_VARIANTS)
    json.dumps(drawn.summary())


def test_the_classic_organisation_is_unchanged() -> None:
    org = build_organisation(OrgSpec(principals=PRINCIPALS, days=DAYS, seed=SEED))
    assert org.model.style is CLASSIC
    assert _digest(org) == CLASSIC_DIGEST


def test_same_style_and_seed_is_deterministic(runs: dict) -> None:
    first = _digest(runs[3, 1.0].org)
    assert _digest(build_organisation(OrgSpec(principals=PRINCIPALS, days=DAYS, seed=SEED, style=3))) == first
    assert first not in {_digest(runs[4, 1.0].org), CLASSIC_DIGEST}


def test_spec_rejects_bad_style_and_intensity() -> None:
    for bad in ({"style": -1}, {"intensity": 0.0}, {"intensity": 1.5}):
        with pytest.raises(ValueError):
            OrgSpec(**bad)


# --------------------------------------------------------------------------- different companies


@dataclass
class Shape:
    """What tells one generated company from another."""

    team_shares: dict[str, float]
    domains: dict[str, frozenset[str]]   # per team: domains worth >= 2 % of its people's events
    events_per_person_day: float
    agent_share: float
    off_hours: float                     # people's events before 07:00, after 20:00 local or at weekends
    benign_grants: int


def _shape(run: Run) -> Shape:
    model = run.org.model
    people = [i for i, p in enumerate(model.principals) if p.principal_type == "human"]
    teams = Counter(model.principals[i].team for i in people)
    is_person = np.zeros(len(model.principal_vocab), bool)
    is_person[people] = True
    mine = run.benign & is_person[run.principal]
    person = run.principal[mine]
    local_min = run.time[mine] // 60_000 + model.people.tz_min[person]
    local_day = local_min // 1440 - model.spec.start_ms // 86_400_000
    weekend = (model.spec.start.weekday() + local_day) % 7 >= 5
    hour = (local_min % 1440) / 60
    by_team: dict[str, Counter] = defaultdict(Counter)
    for p, r in zip(person, run.resource[mine]):
        by_team[model.principals[p].team][model.resources[r].domain] += 1
    domains = {t: frozenset(d for d, n in c.items() if n >= 0.02 * sum(c.values())) for t, c in by_team.items()}
    return Shape(
        team_shares={t: n / len(people) for t, n in teams.items()}, domains=domains,
        events_per_person_day=mine.sum() / (len(people) * model.spec.days),
        agent_share=sum(p.principal_type == "agent" for p in model.principals) / len(model.principals),
        off_hours=float(((hour < 7) | (hour >= 20) | weekend).mean()),
        benign_grants=int(((run.action == "grant") & run.benign).sum()))


def test_styles_are_different_companies_not_one_renamed(runs: dict) -> None:
    shapes = [_shape(runs[s, 1.0]) for s in STYLES]
    # Team sizes: every two styles differ by at least 5 % of the people (total variation).
    for a in range(len(shapes)):
        for b in range(a):
            tv = 0.5 * sum(abs(shapes[a].team_shares[t] - shapes[b].team_shares[t]) for t in shapes[a].team_shares)
            assert tv >= 0.05, (STYLES[a], STYLES[b], tv)
    # Domains: every team works on at least three different sets of data domains over ten styles.
    for team in TEAMS:
        assert len({s.domains.get(team.name) for s in shapes}) >= 3, team.name

    def spread(values: list[float]) -> float:
        return max(values) / min(values)

    assert spread([s.events_per_person_day for s in shapes]) >= 1.5
    assert max(s.agent_share for s in shapes) - min(s.agent_share for s in shapes) >= 0.04
    assert spread([s.off_hours for s in shapes]) >= 1.4
    assert spread([s.benign_grants for s in shapes]) >= 2.0


def test_attack_actors_and_variants_vary_with_style(runs: dict) -> None:
    actor_teams: set[str] = set()
    kinds: Counter = Counter()
    variants: dict[str, set[str]] = defaultdict(set)
    for style in STYLES:
        org = runs[style, 1.0].org
        model = org.model
        for label in org.labels:
            actor = model.principals[model.principal_vocab[label.principals[0]]]
            kinds[actor.principal_type] += 1
            if actor.principal_type == "human":
                actor_teams.add(actor.team)
        for family, variant in model.style.attack_variant.items():
            variants[family].add(variant)
    assert len(actor_teams) >= 8
    # Besides the trainer and the runaway agent, agents and service accounts run some scenarios.
    assert kinds["agent"] > len(STYLES) and kinds["service"] > len(STYLES)
    assert all(variants[f] == {v for v, _ in options} for f, options in ATTACK_VARIANTS.items())


# --------------------------------------------------------------------------- labels and intensity


@pytest.mark.parametrize("style", (None, *STYLES))
def test_labels_are_valid_for_every_style_and_intensity(runs: dict, style: int | None) -> None:
    for intensity in INTENSITIES:
        run = runs[style, intensity]
        model = run.org.model
        window = model.day_start_ms(model.spec.warmup_days), model.day_start_ms(model.spec.days)
        assert sorted(label.family for label in run.org.labels) == sorted(FAMILIES)
        where = {e: i for i, e in enumerate(run.event_id)}
        for label in run.org.labels:
            rows = np.array([where[e] for e in label.event_ids])
            assert len(rows) > 0
            times = run.time[rows]
            assert window[0] <= times.min() and times.max() < window[1], (style, intensity, label.family)
            assert times.min() == int(label.start.timestamp() * 1000)
            assert times.max() == int(label.end.timestamp() * 1000)
            assert label.principals and label.resources and label.description
            assert all(p in model.principal_vocab for p in label.principals)
            assert all(r in model.resource_vocab for r in label.resources)


def _totals(run: Run) -> dict[str, tuple[int, int]]:
    """Attack events and bytes per family."""
    return {f: (int((run.family == f).sum()), int(run.nbytes[run.family == f].sum())) for f in FAMILIES}


@pytest.mark.parametrize("style", (None, 0, 1, 2, 3, 4))
def test_lower_intensity_means_fewer_and_smaller_attack_events(runs: dict, style: int | None) -> None:
    totals = [_totals(runs[style, i]) for i in INTENSITIES]
    for family in FAMILIES:
        (n1, b1), (n5, b5), (n0, b0) = (t[family] for t in totals)
        assert n1 >= n5 >= n0 > 0, (family, n1, n5, n0)
        assert b1 >= b5 >= b0, (family, b1, b5, b0)
        assert n0 < n1 or b0 < b1, family
    # The documented anchors at 0.1: a few checkpoints and a handful of secrets.
    low = runs[style, 0.1]
    downloads = ((low.family == "artifact_download") & (low.action == "download")).sum()
    assert 2 <= downloads <= 4
    assert 4 <= (low.family == "secrets_sweep").sum() <= 8


@pytest.mark.parametrize("style", (None, 2, 7))
def test_intensity_keeps_the_actors_and_the_defining_events(runs: dict, style: int | None) -> None:
    nominal = {label.family: label for label in runs[style, 1.0].org.labels}
    for intensity in INTENSITIES[1:]:
        run = runs[style, intensity]
        for label in run.org.labels:
            assert label.principals == nominal[label.family].principals
        for family, action in (("external_grant", "grant"), ("permission_fanout", "grant"),
                               ("unsanitised_training", "train")):
            assert ((run.family == family) & (run.action == action)).sum() == 1


def test_summary_tells_styles_apart() -> None:
    summaries = [draw_style(s).summary() for s in STYLES]
    assert len({json.dumps(s, sort_keys=True) for s in summaries}) == len(STYLES)
    assert CLASSIC.summary()["style"] is None and isinstance(CLASSIC, OrgStyle)
