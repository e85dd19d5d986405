"""Explanations: the few features that made an entity score high, each against its baseline.

An analyst reads "bytes exported: 41 GB, normally 120 MB (weight 0.62)". For each
feature the deviation of the entity's value from the baseline population is measured
robustly — ``(value - median) / spread`` with the spread of
:func:`detector.ensemble.robust_scale`, the scale the scoring ensemble uses — and only
deviations *above* the baseline count: less activity than usual does not explain an alert.
Weights are the shares of the total positive deviation, so they sum to 1 over the features
listed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

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
    deviation : float
        How many baseline spreads the value stands above the baseline median.
    """

    feature: str
    description: str
    value: float
    baseline: float
    weight: float
    deviation: float = 0.0

    def as_dict(self) -> dict[str, object]:
        """The ``{feature, value, baseline, weight}`` shape of an incident's explanation."""
        return {"feature": self.feature, "description": self.description, "value": self.value,
                "baseline": self.baseline, "weight": round(self.weight, 4)}


def explain_scaled(values: ArrayLike, center: ArrayLike, scale: ArrayLike, feature_names: list[str], top: int = 3,
                   min_deviation: float = 1.0, shown_values: ArrayLike | None = None,
                   shown_baseline: ArrayLike | None = None) -> list[Driver]:
    """The features that drove one row's score, largest first, against a baseline summarised
    by its per-feature median and robust spread.

    A fitted scorer keeps the baseline's median and robust spread
    (:attr:`detector.ensemble.EnsembleScorer.feature_center_`, ``feature_scale_``) rather than its
    rows. ``values``, ``center`` and ``scale`` are in the scorer's space
    (e.g. after ``log1p``); ``shown_values``/``shown_baseline`` are what the analyst reads
    (the raw value and the baseline median back in raw units), defaulting to the same.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    center = np.asarray(center, dtype=np.float64).reshape(-1)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    if not (values.shape == center.shape == scale.shape) or len(feature_names) != values.shape[0]:
        raise ValueError(f"values {values.shape}, center {center.shape}, scale {scale.shape} and "
                         f"{len(feature_names)} names must agree")
    shown = values if shown_values is None else np.asarray(shown_values, dtype=np.float64).reshape(-1)
    normal = center if shown_baseline is None else np.asarray(shown_baseline, dtype=np.float64).reshape(-1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        deviation = np.maximum((values - center) / scale, 0.0)
    deviation[~np.isfinite(deviation)] = 0.0
    chosen = [i for i in np.argsort(-deviation, kind="stable")[:top] if deviation[i] >= min_deviation]
    total = float(deviation[chosen].sum())
    return [Driver(feature_names[i], BY_NAME[feature_names[i]].description if feature_names[i] in BY_NAME
                   else feature_names[i], float(shown[i]), float(normal[i]), float(deviation[i]) / total,
                   float(deviation[i]))
            for i in chosen]
