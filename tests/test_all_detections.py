"""Every detector family and every built-in rule at once, as Elastic loops over all its rules.

A family is one module in ``detector/families``; this file holds what every one of them
must satisfy, so adding a family is that module, its own test and a playbook.
"""

from __future__ import annotations

import re

import pytest

from blastwall.simulation.attacks import FAMILIES as SCENARIOS
from detector.explain import Driver
from detector.families import FAMILIES, catch_all, known_detectors, technique_problems
from detector.rules import load_rules
from features.registry import BY_NAME, features_of
from playbooks.model import load_library

PLAYBOOKS = load_library()
TECHNIQUE = re.compile(r"^(AML\.T\d{4}(\.\d{3})?|T\d{4}(\.\d{3})?)$")
IDS = sorted(FAMILIES)


def test_the_registry_is_discovered_and_has_one_catch_all() -> None:
    assert len(FAMILIES) >= 9
    assert sum(f.catch_all for f in FAMILIES.values()) == 1 and catch_all().entity == "principal"
    assert set(FAMILIES) <= set(known_detectors())


@pytest.mark.parametrize("family_id", IDS)
def test_its_signals_are_features_of_its_entity(family_id: str) -> None:
    family = FAMILIES[family_id]
    entity = "principal" if family.entity in ("grant", "training_run") and family.signals else family.entity
    names = {feature.name for feature in features_of(entity)}  # type: ignore[arg-type]
    assert set(family.signals) <= names, set(family.signals) - names
    assert all(name in BY_NAME for name in family.signals)


@pytest.mark.parametrize("family_id", IDS)
def test_its_techniques_are_well_formed(family_id: str) -> None:
    assert technique_problems(FAMILIES[family_id]) == []


@pytest.mark.parametrize("family_id", IDS)
def test_a_family_that_alerts_on_signals_has_a_title_that_renders(family_id: str) -> None:
    family = FAMILIES[family_id]
    if family.entity != "principal" or not (family.alerts_on_signals and (family.signals or family.catch_all)):
        assert family.detect is not None, "a family neither alerting on signals nor with a stage of its own"
        return
    assert family.title is not None
    values = {feature.name: 0.0 for feature in features_of("principal")} | family.example
    lead = Driver("events", "events in the window", 900.0, 40.0, 1.0, 3.0)
    title = family.title("ann@corp.example", "human", values, lead)
    assert "ann@corp.example" in title and "{" not in title


@pytest.mark.parametrize("family_id", IDS)
def test_a_playbook_answers_it(family_id: str) -> None:
    triggered = {d for p in PLAYBOOKS.playbooks.values() for d in p.spec.triggers.detectors}
    assert family_id in triggered


@pytest.mark.parametrize("family_id", IDS)
def test_a_simulation_scenario_exercises_it_or_it_says_why_not(family_id: str) -> None:
    family = FAMILIES[family_id]
    assert set(family.scenarios) <= set(SCENARIOS)
    assert family.scenarios or family.no_scenario


def test_every_scenario_is_caught_by_some_family() -> None:
    caught = {s for f in FAMILIES.values() for s in f.scenarios}
    assert set(SCENARIOS) <= caught, set(SCENARIOS) - caught


RULES = load_rules()


def test_the_built_in_rules_load_without_problems_and_never_shadow_a_family() -> None:
    assert RULES.problems == [] and len(RULES.rules) >= 3
    assert not set(RULES.rules) & set(FAMILIES)


@pytest.mark.parametrize("rule_id", sorted(RULES.rules))
def test_a_rules_techniques_are_well_formed(rule_id: str) -> None:
    rule = RULES.rules[rule_id]
    assert all(TECHNIQUE.match(t) for t in rule.spec.techniques), rule.spec.techniques
