"""Explanations name the features that stand above the baseline, in the registry's words."""

from __future__ import annotations

import numpy as np
import pytest

from detector.ensemble import robust_scale
from detector.explain import Driver, explain_scaled

NAMES = ["events", "bytes_exported", "failed_actions", "source_ips"]


def baseline(rows: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.poisson(40, rows), rng.lognormal(18, 0.5, rows), rng.poisson(1, rows),
                            np.ones(rows)]).astype(float)


def explain(row: np.ndarray, population: np.ndarray, names: list[str], top: int = 3) -> list[Driver]:
    """The drivers of a row against a population, summarised as a fitted scorer keeps it."""
    center = np.median(population, axis=0)
    return explain_scaled(row, center, robust_scale(population, center), names, top=top)


def test_the_feature_far_above_baseline_leads_with_its_description_and_baseline() -> None:
    population = baseline()
    row = np.median(population, axis=0).copy()
    row[1] = population[:, 1].max() * 50  # an export far beyond anyone's
    row[2] = 6  # several failures: unusual, less so

    drivers = explain(row, population, NAMES)

    assert [d.feature for d in drivers] == ["bytes_exported", "failed_actions"]
    assert drivers[0].description == "bytes exported"
    assert drivers[0].value == row[1] and drivers[0].baseline == pytest.approx(np.median(population[:, 1]))
    assert drivers[0].weight > drivers[1].weight and sum(d.weight for d in drivers) == pytest.approx(1.0)
    assert set(drivers[0].as_dict()) == {"feature", "description", "value", "baseline", "weight"}


def test_less_than_usual_explains_nothing() -> None:
    population = baseline()
    assert explain(np.zeros(4), population, NAMES) == []


def test_constant_baseline_columns_do_not_divide_by_zero() -> None:
    population = baseline()
    row = np.median(population, axis=0).copy()
    row[3] = 7  # every baseline row has exactly one address
    drivers = explain(row, population, NAMES)
    assert [d.feature for d in drivers] == ["source_ips"] and np.isfinite(drivers[0].weight)


def test_top_limits_and_order_is_by_deviation() -> None:
    population = baseline()
    row = np.median(population, axis=0) + np.array([100, 1e12, 50, 20])
    assert len(explain(row, population, NAMES, top=2)) == 2


@pytest.mark.parametrize(("values", "center", "names"), [
    (np.ones(3), np.ones(4), NAMES), (np.ones(4), np.ones(4), NAMES[:3])])
def test_mismatched_shapes_are_refused(values: np.ndarray, center: np.ndarray, names: list[str]) -> None:
    with pytest.raises(ValueError, match="must agree"):
        explain_scaled(values, center, np.ones(4), names)
