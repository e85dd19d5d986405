"""Organisation styles: many different companies from one blueprint.

:mod:`blueprint` describes one company. Detection must be judged over many, so a
*style* (an integer) perturbs that blueprint within realistic ranges: how big each
team is and what it works on, how sensitive data is spread, volumes and hours, the
share of agents and service accounts, how noisy the benign hard cases are, and who
the attackers are. :data:`CLASSIC` is the blueprint unperturbed (``OrgSpec.style is
None``); its values are the constants every earlier release hard-coded, so the
classic organisation is generated exactly as before.

A style is a function of its integer alone (:func:`draw_style`); the organisation
drawn from it still depends on the spec's seed (which people, which datasets).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .blueprint import EXTRA_TOPICS, SITES, TEAMS, Team

#: Families of the attack scenarios (kept here too so this module imports no planner).
ATTACK_FAMILIES = (
    "permission_fanout", "unusual_join", "embedding_export", "artifact_download", "unsanitised_training",
    "runaway_agent", "external_grant", "secrets_sweep", "low_and_slow",
)

#: Teams whose people may plausibly act in each scenario when a style is drawn (the classic
#: organisation uses the narrower tuples in :mod:`attacks`). Owners of the data at stake are
#: left out where the scenario is about someone *outside* the usual audience.
ATTACK_TEAM_POOLS: dict[str, tuple[str, ...]] = {
    "unusual_join": ("analytics", "ml-research", "data-eng", "ml-platform", "security", "finance", "sales", "support",
                     "exec"),
    "embedding_export": ("support", "ml-research", "ml-platform", "data-eng", "analytics", "sales", "sre"),
    "artifact_download": ("data-eng", "analytics", "ml-platform", "sre", "security", "finance", "sales", "support",
                          "hr"),
    "secrets_sweep": ("data-eng", "ml-platform", "analytics", "ml-research", "support", "sales", "finance",
                      "people-analytics"),
    "low_and_slow": ("hr", "finance", "legal", "people-analytics", "exec", "analytics", "security"),
}
#: Owners of the restricted data a fan-out or an external grant may expose.
EXPOSED_OWNERS = ("people-analytics", "hr", "finance", "legal", "exec")
#: Kinds of identity that may run a scenario besides a person, per family.
ATTACK_ACTOR_KINDS: dict[str, tuple[tuple[str, float], ...]] = {
    "permission_fanout": (("agent", 0.6), ("human", 0.4)),
    "unusual_join": (("human", 0.75), ("agent", 0.25)),
    "embedding_export": (("human", 0.6), ("agent", 0.2), ("service", 0.2)),
    "artifact_download": (("human", 0.8), ("service", 0.2)),
    "secrets_sweep": (("human", 0.6), ("agent", 0.2), ("service", 0.2)),
    "runaway_agent": (("autonomous", 0.7), ("assistant", 0.3)),
    "external_grant": (("human", 0.7), ("agent", 0.3)),
}
#: Variants real incidents show, per family (the first is the classic one).
ATTACK_VARIANTS: dict[str, tuple[tuple[str, float], ...]] = {
    "unusual_join": (("classic", 0.5), ("new_destination", 0.5)),
    "artifact_download": (("classic", 0.5), ("outsider_small", 0.5)),
    "low_and_slow": (("export", 0.5), ("read_other_teams", 0.5)),
}
#: Domains a team may pick up as a side interest (besides the ones it has).
_SIDE_DOMAINS = tuple(EXTRA_TOPICS) + ("models", "runs")


@dataclass(frozen=True)
class OrgStyle:
    """The shape of one simulated company.

    Attributes
    ----------
    style : int or None
        The integer it was drawn from; ``None`` for :data:`CLASSIC`.
    teams : tuple of Team
        The blueprint's teams (same names, same order) with the style's weights (share of
        people), ``events_per_day``, sites and interests (data domains).
    service_share, agent_share : float
        Share of the principals that are service accounts (classic 0.12; styles 0.06–0.18)
        and AI agents (classic 0.08; styles 0.03–0.15).
    workday_start_h, workday_len_h : float
        Mean local start (classic 9.0; 7.5–10.0) and length (classic 8.5; 7.5–9.5) of a
        working day, in hours.
    evening_share, weekend_share : float
        Share of people who also work late evenings (classic 0.10; 0.03–0.30) and at
        weekends (classic 0.12; 0.03–0.30).
    evening_level, weekend_level : float
        How much those people work then: evening intensity relative to a working hour
        (classic 0.15; 0.08–0.40) and a weekend day's volume relative to a working day
        (classic 0.20; 0.10–0.50).
    sensitivity_down, sensitivity_up : float
        Share of the extra datasets one level less (classic 0.20; 0.05–0.40) or more
        (classic 0; 0–0.30) sensitive than their domain's default.
    sensitive_category_share : float
        Share of the extra datasets that also carry a sensitive category such as ``pii``
        or ``health`` (classic 0; 0–0.30).
    new_joiner_share : float
        Share of people who join during the period (classic 0.03; 0.01–0.08).
    oncall_extra : int
        Platform and data engineers on call besides the SREs, per team (classic 2; 0–5).
    oncall_night_p : float
        Chance of a night on-call sweep (classic 0.40; 0.15–0.75).
    oncall_sweep : float
        Multiplier of the events of a sweep (classic 1; 0.5–2.5).
    close_spike : float
        Volume multiplier of the quarter-close teams at the close (classic 3; 1.5–5).
    grant_rate : float
        Multiplier of the daily benign grants (classic 1; 0.4–2.5).
    team_grant_share, all_staff_share : float
        Share of the benign grants that go to a team (classic 0.60) and to all-staff
        (classic 0.25; 0.10–0.45); the rest are revokes.
    first_readers : float
        Multiplier of the readers of a benign all-staff grant (classic 1; 0.5–3).
    backfills : int
        Benign night-time backfills (a pipeline re-reading a whole domain; classic 0; 0–4).
    attack_teams : dict
        Family → teams its actor is drawn from (empty for the classic teams).
    attack_actor : dict
        Family → kind of identity that runs it (``human``, ``agent``, ``service``…).
    attack_variant : dict
        Family → variant of the scenario (``classic`` or a named variant).
    exposed_owner : str
        Team whose restricted data the fan-out and the external grant expose (classic:
        people-analytics for the fan-out, rotating owners for the grant).
    """

    style: int | None
    teams: tuple[Team, ...]
    service_share: float = 0.12
    agent_share: float = 0.08
    workday_start_h: float = 9.0
    workday_len_h: float = 8.5
    evening_share: float = 0.10
    weekend_share: float = 0.12
    evening_level: float = 0.15
    weekend_level: float = 0.20
    sensitivity_down: float = 0.20
    sensitivity_up: float = 0.0
    sensitive_category_share: float = 0.0
    new_joiner_share: float = 0.03
    oncall_extra: int = 2
    oncall_night_p: float = 0.40
    oncall_sweep: float = 1.0
    close_spike: float = 3.0
    grant_rate: float = 1.0
    team_grant_share: float = 0.60
    all_staff_share: float = 0.25
    first_readers: float = 1.0
    backfills: int = 0
    attack_teams: dict[str, tuple[str, ...]] = field(default_factory=dict)
    attack_actor: dict[str, str] = field(default_factory=dict)
    attack_variant: dict[str, str] = field(default_factory=dict)
    exposed_owner: str = "people-analytics"

    @property
    def classic(self) -> bool:
        """Whether this is the unperturbed blueprint."""
        return self.style is None

    def summary(self) -> dict[str, Any]:
        """A few numbers that tell companies apart, for reports.

        Returns
        -------
        dict
            JSON-serialisable: the style, team-size spread, volume and hour settings,
            identity mix, hard-case noise and the attack variants.
        """
        weights = np.array([t.weight for t in self.teams])
        rates = np.array([t.events_per_day for t in self.teams])
        sites = {s for t in self.teams for s in t.sites}
        return {
            "style": self.style,
            "largest_team": self.teams[int(np.argmax(weights))].name,
            "team_weight_ratio": round(float(weights.max() / weights.min()), 2),
            "mean_events_per_day": round(float(rates.mean()), 1),
            "mean_domains_per_team": round(float(np.mean([len(t.interests) for t in self.teams])), 2),
            "sites": len(sites),
            "service_share": round(self.service_share, 3),
            "agent_share": round(self.agent_share, 3),
            "workday": [round(self.workday_start_h, 2), round(self.workday_len_h, 2)],
            "evening_share": round(self.evening_share, 3),
            "weekend_share": round(self.weekend_share, 3),
            "evening_level": round(self.evening_level, 3),
            "weekend_level": round(self.weekend_level, 3),
            "sensitivity_up": round(self.sensitivity_up, 3),
            "sensitivity_down": round(self.sensitivity_down, 3),
            "new_joiner_share": round(self.new_joiner_share, 3),
            "close_spike": round(self.close_spike, 2),
            "grant_rate": round(self.grant_rate, 2),
            "all_staff_share": round(self.all_staff_share, 3),
            "backfills": self.backfills,
            "attack_actor": dict(self.attack_actor),
            "attack_variant": dict(self.attack_variant),
        }


#: The blueprint as it is: the organisation of ``OrgSpec(style=None)``.
CLASSIC = OrgStyle(style=None, teams=TEAMS)


def draw_style(style: int) -> OrgStyle:
    """The company shape of ``style``, deterministic in the integer.

    Parameters
    ----------
    style : int
        Any non-negative integer; different integers give unrelated companies.

    Returns
    -------
    OrgStyle
        Every team of the blueprint is kept with at least the two people the
        attacks need (sizes vary about 9-fold between styles), perturbed within the
        ranges documented on :class:`OrgStyle`.
    """
    if style < 0:
        raise ValueError(f"style must be non-negative, got {style}")
    rng = np.random.default_rng([0x57E1E, style])
    all_staff = float(rng.uniform(0.10, 0.45))
    active_sites = _draw_sites(rng)
    company_volume = float(np.exp(rng.normal(0.0, 0.25)))
    teams = tuple(_perturb_team(t, rng, active_sites, company_volume) for t in TEAMS)
    attack_teams = {family: _subset(pool, rng, 3, min(6, len(pool))) for family, pool in ATTACK_TEAM_POOLS.items()}
    attack_actor = {family: _weighted(options, rng) for family, options in ATTACK_ACTOR_KINDS.items()}
    attack_variant = {family: _weighted(options, rng) for family, options in ATTACK_VARIANTS.items()}
    return OrgStyle(
        style=style,
        teams=teams,
        service_share=float(rng.uniform(0.06, 0.18)),
        agent_share=float(rng.uniform(0.03, 0.15)),
        workday_start_h=float(rng.uniform(7.5, 10.0)),
        workday_len_h=float(rng.uniform(7.5, 9.5)),
        evening_share=float(_log_uniform(rng, 0.03, 0.30)),
        weekend_share=float(_log_uniform(rng, 0.03, 0.30)),
        evening_level=float(_log_uniform(rng, 0.08, 0.40)),
        weekend_level=float(_log_uniform(rng, 0.10, 0.50)),
        sensitivity_down=float(rng.uniform(0.05, 0.40)),
        sensitivity_up=float(rng.uniform(0.0, 0.30)),
        sensitive_category_share=float(rng.uniform(0.0, 0.30)),
        new_joiner_share=float(_log_uniform(rng, 0.01, 0.08)),
        oncall_extra=int(rng.integers(0, 6)),
        oncall_night_p=float(rng.uniform(0.15, 0.75)),
        oncall_sweep=float(_log_uniform(rng, 0.5, 2.5)),
        close_spike=float(rng.uniform(1.5, 5.0)),
        grant_rate=float(_log_uniform(rng, 0.4, 2.5)),
        team_grant_share=0.8 * (1.0 - all_staff),  # the rest (a fifth) are revokes
        all_staff_share=all_staff,
        first_readers=float(_log_uniform(rng, 0.5, 3.0)),
        backfills=int(rng.integers(0, 5)),
        attack_teams=attack_teams,
        attack_actor=attack_actor,
        attack_variant=attack_variant,
        exposed_owner=EXPOSED_OWNERS[int(rng.integers(len(EXPOSED_OWNERS)))],
    )


def style_of(style: int | None) -> OrgStyle:
    """:data:`CLASSIC` for ``None``, else :func:`draw_style`."""
    return CLASSIC if style is None else draw_style(style)


# --------------------------------------------------------------------------- helpers


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Uniform on a log scale: multipliers and shares spread evenly over their decades."""
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _weighted(options: tuple[tuple[str, float], ...], rng: np.random.Generator) -> str:
    p = np.array([w for _, w in options])
    return options[int(rng.choice(len(options), p=p / p.sum()))][0]


def _subset(pool: tuple[str, ...], rng: np.random.Generator, lo: int, hi: int) -> tuple[str, ...]:
    size = int(rng.integers(lo, hi + 1))
    return tuple(pool[i] for i in sorted(rng.choice(len(pool), size=size, replace=False)))


def _draw_sites(rng: np.random.Generator) -> tuple[str, ...]:
    """The offices a company has: from two time zones to all six."""
    n = int(rng.integers(2, len(SITES) + 1))
    return tuple(SITES[i].name for i in sorted(rng.permutation(len(SITES))[:n]))


def _perturb_team(team: Team, rng: np.random.Generator, active_sites: tuple[str, ...],
                  company_volume: float) -> Team:
    """One team of a style: size, volume, sites and data domains redrawn around the blueprint."""
    # Sizes: some teams 3x bigger or smaller than in the blueprint.
    weight = team.weight * float(np.clip(np.exp(rng.normal(0.0, 0.6)), 1 / 3, 3.0))
    events = team.events_per_day * float(np.clip(company_volume * np.exp(rng.normal(0.0, 0.45)), 0.4, 2.5))
    # Sites: only the company's offices; a team may also gain a small presence in another.
    sites = {s: w * float(np.exp(rng.normal(0.0, 0.5))) for s, w in team.sites.items() if s in active_sites}
    if not sites:
        picks = rng.choice(len(active_sites), size=min(2, len(active_sites)), replace=False)
        sites = {active_sites[int(i)]: float(rng.uniform(0.3, 1.0)) for i in picks}
    others = [s for s in active_sites if s not in sites]
    if others and rng.random() < 0.3:
        sites[others[int(rng.integers(len(others)))]] = 0.2 * sum(sites.values())
    # Domains: keep the team's main domain (it owns that data) and corp; drop, reweight, add.
    main = max(team.interests, key=lambda d: team.interests[d])
    interests = {}
    for domain, w in team.interests.items():
        if domain in (main, "corp") or rng.random() >= 0.25:
            interests[domain] = w * float(np.exp(rng.normal(0.0, 0.4)))
    side = [d for d in _SIDE_DOMAINS if d not in interests]
    for i in rng.choice(len(side), size=int(rng.choice(3, p=[0.3, 0.4, 0.3])), replace=False):
        interests[side[int(i)]] = float(rng.uniform(0.3, 1.0))
    quarter_close = team.quarter_close or (team.name in ("sales", "exec") and rng.random() < 0.4)
    return replace(team, weight=weight, events_per_day=events, sites=sites, interests=interests,
                   quarter_close=quarter_close)
