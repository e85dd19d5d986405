"""Severity: one documented function of detector, score, data, blast radius and actor.

``SEV1`` page now, ``SEV2`` page, ``SEV3`` notify/ticket, ``SEV4`` record (docs/DESIGN.md).
The function adds points, each for one reason an analyst can read back:

=====================  ==========================================================  ======
factor                 condition                                                   points
=====================  ==========================================================  ======
evidence               policy violation (deterministic)                             3
                       policy notice                                                0
                       anomaly score >= 0.99999 / >= 0.999 / >= 0.99                3 / 2 / 1
data                   restricted / confidential                                    2 / 1
                       any sensitive category (telemetry, chat, pii, …)             1
blast radius           people newly able to read >= 100 / >= 10                     2 / 1
                       records exposed >= 10,000,000 / >= 1,000,000                 2 / 1
                       bytes taken (exports, downloads) >= 50 GB / >= 10 GB        2 / 1
                       distinct items taken (artifacts) >= 20 / >= 8                2 / 1
                       data leaves the organisation (outside grantee/destination)  2
actor                  an AI agent, or a change made via an AI assistant            1
detector               unsanitised_training (trained in: cannot be un-learned)      1
                       behaviour_outlier (the catch-all: least specific)            -1
nothing taken          an alert whose harm is what was taken (exports, downloads,   down to 4
                       the catch-all) with no blast radius at all
=====================  ==========================================================  ======

Blast radius counts the largest of its people, records, bytes and items points (plus
leaving the organisation): what was taken, in whichever unit it is counted — two dozen
small checkpoints are as grave as one huge one. Total >= 7: SEV1; >= 5: SEV2; >= 3: SEV3; else SEV4.

The score bands sit in the far tail on purpose: a detector family's score extrapolates
past its baseline's 99.9th percentile (:func:`detector.detect.tail_score`), so 0.999 is
"at the edge of normal" and 0.99999 "a hundred times beyond it". A score alone therefore
never pages: paging takes strong evidence *and* sensitive data, a wide blast radius or
an AI actor. And where the harm is what was taken, taking nothing sizeable never pages:
an unusual export of a few hundred megabytes of confidential data is a ticket (``SEV3``),
a page once it is gigabytes, millions of rows, many artifacts or leaves the organisation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["SEV1", "SEV2", "SEV3", "SEV4"]
SEVERITIES: tuple[Severity, ...] = ("SEV1", "SEV2", "SEV3", "SEV4")
_THRESHOLDS: tuple[tuple[int, Severity], ...] = ((7, "SEV1"), (5, "SEV2"), (3, "SEV3"))


def severity_rank(level: str) -> int:
    """0 for ``SEV1`` (the most severe) … 3 for ``SEV4``: the one ordering of severities.

    Raises
    ------
    ValueError
        For anything that is not a severity (never silently ranked first or last).
    """
    try:
        return SEVERITIES.index(level)  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"unknown severity {level!r}; expected one of {', '.join(SEVERITIES)}") from None


def at_least(level: str, minimum: str) -> bool:
    """Whether ``level`` is ``minimum`` or more severe (``at_least("SEV1", "SEV2")`` is true)."""
    return severity_rank(level) <= severity_rank(minimum)


def most_severe(levels: Iterable[str]) -> Severity:
    """The most severe of some severities."""
    return SEVERITIES[min(severity_rank(level) for level in levels)]


@dataclass(frozen=True)
class SeverityInputs:
    """What severity depends on, for one alert.

    Attributes
    ----------
    detector : str
        The detector family (``permission_fanout``, ``bulk_export``, …).
    score : float
        Calibrated anomaly score in [0, 1] (a baseline percentile); ignored for policy findings.
    policy : str or None
        ``violation`` or ``notice`` for a policy finding, ``None`` for an anomaly.
    sensitivity_rank : int
        0 public, 1 internal, 2 confidential, 3 restricted (the most sensitive resource involved).
    sensitive_categories : int
        How many sensitive data categories are involved.
    people_exposed : int
        People newly able to read the data (audience gain, first-time readers).
    records_exposed : int
        Rows exported, downloaded or made readable.
    bytes_exposed : int
        Bytes taken out (exports; downloads of artifacts, whose size is in bytes rather than rows).
    items_taken : int
        Distinct items taken out (model artifacts downloaded), whatever their size.
    leaves_organisation : bool
        An outside grantee or a destination outside the company.
    actor_is_agent : bool
        The actor is an AI agent, or acted via an AI assistant.
    harm_is_amount : bool
        The alert's harm is what was taken (exports, downloads, the catch-all): with no
        blast radius at all it is at most ``SEV3``.
    """

    detector: str
    score: float = 0.0
    policy: str | None = None
    sensitivity_rank: int = 1
    sensitive_categories: int = 0
    people_exposed: int = 0
    records_exposed: int = 0
    bytes_exposed: int = 0
    items_taken: int = 0
    leaves_organisation: bool = False
    actor_is_agent: bool = False
    harm_is_amount: bool = False


#: The most points an alert can add up to when its harm is an amount and nothing sizeable was taken.
_NOTHING_TAKEN_CAP = 4


def severity_points(alert: SeverityInputs) -> dict[str, int]:
    """The points of each factor (see the module table), for explanations and tests."""
    if not 0.0 <= alert.score <= 1.0:
        raise ValueError(f"score must be within [0, 1], got {alert.score}")
    if alert.policy not in (None, "violation", "notice"):
        raise ValueError(f"policy must be 'violation', 'notice' or None, got {alert.policy!r}")
    if alert.policy is not None:
        evidence = 3 if alert.policy == "violation" else 0
    else:
        evidence = 3 if alert.score >= 0.99999 else 2 if alert.score >= 0.999 else 1 if alert.score >= 0.99 else 0
    data = {3: 2, 2: 1}.get(alert.sensitivity_rank, 0) + (1 if alert.sensitive_categories > 0 else 0)
    people = 2 if alert.people_exposed >= 100 else 1 if alert.people_exposed >= 10 else 0
    records = 2 if alert.records_exposed >= 10_000_000 else 1 if alert.records_exposed >= 1_000_000 else 0
    taken = 2 if alert.bytes_exposed >= 50 * 10**9 else 1 if alert.bytes_exposed >= 10 * 10**9 else 0
    items = 2 if alert.items_taken >= 20 else 1 if alert.items_taken >= 8 else 0
    radius = max(people, records, taken, items) + (2 if alert.leaves_organisation else 0)
    detector = {"unsanitised_training": 1, "behaviour_outlier": -1}.get(alert.detector, 0)
    points = {"evidence": evidence, "data": data, "blast_radius": radius, "actor": int(alert.actor_is_agent),
              "detector": detector}
    if alert.harm_is_amount and radius == 0:
        points["nothing_taken"] = min(0, _NOTHING_TAKEN_CAP - sum(points.values()))
    return points


def severity(alert: SeverityInputs) -> Severity:
    """``SEV1``…``SEV4`` for one alert: the sum of :func:`severity_points` against the thresholds."""
    total = sum(severity_points(alert).values())
    for minimum, level in _THRESHOLDS:
        if total >= minimum:
            return level
    return "SEV4"
