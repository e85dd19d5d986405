"""Explanations: the few features that made an entity score high, each against its baseline.

An analyst reads "bytes exported: 41 GB, normally 120 MB (weight 0.62)". For each
feature the deviation of the entity's value from the baseline population is measured
robustly — ``(value - median) / spread`` with the spread of
:func:`detector.ensemble.robust_scale`, the scale the scoring ensemble uses — and only deviations *above* the baseline count: less
activity than usual does not explain an alert. Weights are the shares of the total
positive deviation, so they sum to 1 over the features listed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from detector.ensemble import robust_scale
from features.registry import BY_NAME


@dataclass(frozen=True)
class Driver:
    """One feature's part in an alert.

    Attributes
    ----------
    feature : str
        Registry name of the feature.
    description : str
        The registry's line for analysts.
    value : float
        The entity's value.
    baseline : float
        What is normal: the median of the baseline population.
    weight : float
        This feature's share of the alert's positive deviation (0-1).
    """

    feature: str
    description: str
    value: float
    baseline: float
    weight: float

    def as_dict(self) -> dict[str, object]:
        """The ``{feature, value, baseline, weight}`` shape of an incident's explanation."""
        return {"feature": self.feature, "description": self.description, "value": self.value,
                "baseline": self.baseline, "weight": round(self.weight, 4)}


def explain(row: ArrayLike, baseline: ArrayLike, feature_names: list[str], top: int = 3,
            min_deviation: float = 1.0) -> list[Driver]:
    """The features that drove one entity's score, largest first.

    Parameters
    ----------
    row : array-like, shape (n_features,)
        The entity's feature values.
    baseline : array-like, shape (n_samples, n_features)
        The population it is compared with (its own history or its peers).
    feature_names : list of str
        Column names (registry names; unknown names are described by their name).
    top : int
        At most this many drivers.
    min_deviation : float
        Ignore features less than this many spreads above the baseline median.

    Returns
    -------
    list of Driver
        Empty when nothing stands above the baseline.
    """
    values = np.asarray(row, dtype=np.float64).reshape(-1)
    population = np.asarray(baseline, dtype=np.float64)
    if population.ndim != 2 or population.shape[1] != values.shape[0] or len(feature_names) != values.shape[0]:
        raise ValueError(f"row has {values.shape[0]} features, baseline shape {population.shape}, "
                         f"{len(feature_names)} names: they must agree")
    if population.shape[0] == 0:
        raise ValueError("the baseline has no rows")
    center = np.median(population, axis=0)
    deviation = np.maximum((values - center) / robust_scale(population, center), 0.0)
    deviation[~np.isfinite(deviation)] = 0.0
    chosen = [i for i in np.argsort(-deviation, kind="stable")[:top] if deviation[i] >= min_deviation]
    total = float(deviation[chosen].sum())
    return [Driver(feature_names[i], BY_NAME[feature_names[i]].description if feature_names[i] in BY_NAME
                   else feature_names[i], float(values[i]), float(center[i]), float(deviation[i]) / total)
            for i in chosen]
