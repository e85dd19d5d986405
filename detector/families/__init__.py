"""Detector families: one module each, discovered from this folder, read through one registry.

A family module defines ``FAMILY``, a :class:`Family`: its id (the ``detector`` of its
incidents), the entity its alerts are about, the registry features that are its signal,
the action whose data its severity weighs, its MITRE ATT&CK/ATLAS techniques, how its
title reads, what it adds to severity, the simulation scenarios that exercise it, and —
for a family that is not "a signal past its normal ceiling" — a ``detect`` hook that the
engine (:mod:`detector.detect`) runs as a stage of its own.

Everything that needs to know the families reads :data:`FAMILIES` (or
:func:`known_detectors`): the engine, incident techniques, playbook validation, the
evaluation and the simulation's labels, the console's detector filter and the tests.
Adding a family is this one file, its test and a playbook.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detector.explain import Driver
    from detector.incidents import Alert

#: Peer groups of principals (``principals.principal_type``).
PRINCIPAL_GROUPS = ("human", "service", "agent")
#: Detectors that are not families: blastwall's own failures, visible as incidents.
SYSTEM_DETECTORS = ("pipeline_error", "playbook_error")
_TECHNIQUE = re.compile(r"^(AML\.T\d{4}(\.\d{3})?|T\d{4}(\.\d{3})?)$")


@dataclass(frozen=True)
class Family:
    """One detector family.

    Attributes
    ----------
    id : str
        The ``detector`` of its incidents (stable: outside tools read it).
    entity : str
        What its alerts are about: ``principal``, ``resource``, ``grant`` or ``training_run``.
    description : str
        One line for people (the console, ``blastwall eval``).
    signals : tuple of str
        Registry features (:mod:`features.registry`) that are its evidence: a driver
        among them names this family.
    peer_groups : tuple of str
        The principals' peer groups its signals apply to.
    alerts_on_signals : bool
        Whether a signal far past its normal ceiling alerts by itself (False: the signal
        only names the family, which is judged elsewhere, e.g. grants by policy).
    catch_all : bool
        The ensemble over the whole feature vector (at most one family).
    min_excess : float or None
        A higher bar (log units past the normal ceiling) than the engine's default.
    evidence_action : str
        The action whose data (sensitivity, categories) its severity weighs.
    techniques : tuple of str
        MITRE ATLAS (``AML.T…``) and ATT&CK (``T…``) ids; empty when none is certain.
    title : callable or None
        ``title(key, group, values, lead_driver) -> str`` for a signal alert.
    severity_extra : callable or None
        ``severity_extra(values) -> dict`` of further :class:`detector.severity.SeverityInputs`.
    detect : callable or None
        ``detect(step) -> list[Alert]``, a stage of its own (:class:`Step`).
    runs_last : bool
        Its stage runs after every other stage, rules included, and reads their alerts
        (:attr:`Step.alerts`): a family that judges the other families' findings.
    scenarios : tuple of str
        Simulation scenarios (``blastwall.simulation.attacks``) it must catch.
    no_scenario : str
        Why it has none, when it has none.
    example : dict
        Feature values its title renders on (the tests render every title).
    """

    id: str
    entity: str
    description: str
    signals: tuple[str, ...] = ()
    peer_groups: tuple[str, ...] = PRINCIPAL_GROUPS
    alerts_on_signals: bool = True
    catch_all: bool = False
    min_excess: float | None = None
    evidence_action: str = "read"
    techniques: tuple[str, ...] = ()
    title: Callable[[str, str, dict[str, float], Driver], str] | None = None
    severity_extra: Callable[[dict[str, float]], dict[str, Any]] | None = None
    detect: Callable[[Step], list[Alert]] | None = None
    runs_last: bool = False
    scenarios: tuple[str, ...] = ()
    no_scenario: str = ""
    example: dict[str, float] = field(default_factory=dict)


@dataclass
class Step:
    """What a family's ``detect`` hook works with, for one window.

    Attributes
    ----------
    client : Client
    book : ModelBook
        The peer-group scorers.
    features : FeatureSet
        The window's feature matrices.
    params : dict
        ``lo``/``hi``: the window bounds in epoch milliseconds (query parameters).
    config : DetectConfig
    people : int
        Organisation size (people in the principals catalogue).
    batch : Batch
        The batch of steps this one belongs to (in the step loop, the step alone): a hook
        can compute a fact once for all of a batch's steps (:meth:`Batch.once`).
    alerts : list of Alert
        The alerts of the stages that ran before this one in the step.
    """

    client: Any
    book: Any
    features: Any
    params: dict[str, int]
    config: Any
    people: int
    batch: Batch
    alerts: list[Alert] = field(default_factory=list)


@dataclass
class Batch:
    """Consecutive steps processed together, and what hooks computed once for all of them.

    Attributes
    ----------
    lo, hi : int
        The batch's bounds, epoch milliseconds.
    step_ms : int
        Its steps' length, milliseconds.
    windows : list of FeatureSet
        Each step's features, in order (empty when the batch is one step of the step loop).
    """

    lo: int
    hi: int
    step_ms: int
    windows: list[Any] = field(default_factory=list)
    _facts: dict[str, Any] = field(default_factory=dict)

    def index(self, step_lo: int) -> int:
        """The position in the batch of the step starting at ``step_lo`` (epoch ms)."""
        return (step_lo - self.lo) // self.step_ms

    def once(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, run once per batch and kept under ``name`` for its other steps."""
        if name not in self._facts:
            self._facts[name] = compute()
        return self._facts[name]


def format_bytes(n: float) -> str:
    """Bytes for a title (``1.5 GB``)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def discover() -> dict[str, Family]:
    """Every family of this folder, by id (a missing folder is an error, never "no families")."""
    found: dict[str, Family] = {}
    for module in pkgutil.iter_modules(__path__):
        family = getattr(importlib.import_module(f"{__name__}.{module.name}"), "FAMILY", None)
        if isinstance(family, Family):
            if family.id in found:
                raise RuntimeError(f"two detector families are named {family.id!r}")
            found[family.id] = family
    if not found:
        raise RuntimeError("no detector families found in detector/families: the installation is incomplete")
    return dict(sorted(found.items()))



def family_of_feature(name: str, group: str) -> Family | None:
    """The family a principal feature names for a peer group (``None``: no family's signal)."""
    for family in FAMILIES.values():
        if name in family.signals and group in family.peer_groups:
            return family
    return None


def catch_all() -> Family:
    """The ensemble's catch-all family."""
    return next(family for family in FAMILIES.values() if family.catch_all)


def techniques(detector: str) -> list[str]:
    """The technique ids of a detector (none for blastwall's own or unknown detectors)."""
    family = FAMILIES.get(detector)
    return list(family.techniques) if family else []


def known_detectors() -> tuple[str, ...]:
    """Every detector id an incident can carry: the families and blastwall's own."""
    return (*FAMILIES, *SYSTEM_DETECTORS)


def technique_problems(family: Family) -> list[str]:
    """Malformed technique ids of a family (the invariant test reports them)."""
    return [t for t in family.techniques if not _TECHNIQUE.match(t)]


#: Every family, by id (after the helpers above, which the family modules import).
FAMILIES: dict[str, Family] = discover()
