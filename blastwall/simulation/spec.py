"""The parameters of a simulated organisation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: Smallest organisation that still has two people per team and every kind of actor.
MIN_PRINCIPALS = 40
#: Fewest days that leave room for a benign warm-up and the multi-day attack.
MIN_DAYS_WITH_ATTACKS = 5


@dataclass(frozen=True)
class OrgSpec:
    """What to simulate.

    Parameters
    ----------
    principals : int
        Identities in the catalogue: about 80 % people, 12 % service accounts and
        8 % AI agents (at least 6 services and 4 agents).
    days : int
        Length of the simulated period, in days, from ``start``.
    seed : int
        Everything generated is a deterministic function of the spec.
    start : datetime
        Midnight UTC of the first day (the default is a Monday).
    attacks : bool
        Inject the labelled attack scenarios after the benign warm-up.
    style : int or None
        ``None``: the classic organisation (the one every earlier release generated). An
        integer draws the company's shape from it (:func:`blastwall.simulation.style.draw_style`):
        team sizes and domains, how sensitive data is spread, volumes and hours, the share
        of agents and services, and how noisy the benign hard cases are.
    intensity : float
        How blatant the injected attacks are: ``1.0`` nominal, down towards ``0.1`` (barely
        above normal). Scales what each attack does (how much, how many, how fast).
    """

    principals: int = 1000
    days: int = 14
    seed: int = 7
    start: datetime = datetime(2026, 10, 5, tzinfo=UTC)
    attacks: bool = True
    style: int | None = None
    intensity: float = 1.0

    def __post_init__(self) -> None:
        if self.principals < MIN_PRINCIPALS:
            raise ValueError(f"principals must be at least {MIN_PRINCIPALS}, got {self.principals}")
        min_days = MIN_DAYS_WITH_ATTACKS if self.attacks else 1
        if self.days < min_days:
            raise ValueError(f"days must be at least {min_days} (attacks={self.attacks}), got {self.days}")
        if self.style is not None and self.style < 0:
            raise ValueError(f"style must be a non-negative integer or None, got {self.style}")
        if not 0.0 < self.intensity <= 1.0:
            raise ValueError(f"intensity must be within (0, 1], got {self.intensity}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        if self.start.tzinfo is None or self.start.utcoffset() != timedelta(0):
            raise ValueError("start must be timezone-aware UTC")
        if (self.start.hour, self.start.minute, self.start.second, self.start.microsecond) != (0, 0, 0, 0):
            raise ValueError("start must be midnight UTC")

    @property
    def start_ms(self) -> int:
        """``start`` as milliseconds since the Unix epoch."""
        return int(self.start.timestamp() * 1000)

    @property
    def warmup_days(self) -> int:
        """Leading days with benign traffic only (about 40 % of the period)."""
        return max(2, -(-self.days * 2 // 5))
