"""The scoring ensemble: PyOD detectors fitted on a baseline, combined, calibrated to 0–1.

:class:`EnsembleScorer` fits several complementary PyOD detectors on the trailing
baseline of one entity kind, combines their raw scores by a documented rule, and
calibrates the combined score to the percentile of the baseline it exceeds. The rule
and the default members were chosen on the ADBench datasets by
``benchmarks/adbench.py`` (results in ``benchmarks/results/adbench.json``).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pyod.models.base import BaseDetector
from pyod.models.copod import COPOD
from pyod.models.ecod import ECOD
from pyod.models.hbos import HBOS
from pyod.models.iforest import IForest
from pyod.models.knn import KNN
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

#: Detector names :class:`EnsembleScorer` knows, each a PyOD class.
DETECTORS: tuple[str, ...] = ("ecod", "iforest", "copod", "hbos", "knn")

#: Combination rules: ``<aggregate>_<standardisation>``; see :func:`combine_scores`.
COMBINATIONS: tuple[str, ...] = (
    "max_robust_z",
    "mean_robust_z",
    "max_z",
    "mean_z",
    "max_percentile",
    "mean_percentile",
)

# Standardised scores are capped so that means stay finite for absurdly far rows;
# 1e100 baseline spreads is far beyond anything that still needs ordering.
_Z_CAP = 1e100
_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution is 0.6745 sigma
_IQR_TO_SIGMA = 1.349  # IQR of a normal distribution is 1.349 sigma


def robust_scale(a: NDArray[np.float64], center: NDArray[np.float64]) -> NDArray[np.float64]:
    """Column-wise robust spread of ``a`` around ``center``, never 0, inf or NaN.

    MAD (as a normal sigma), else IQR (as sigma) when over half the values tie, else the
    standard deviation (sparse columns: mostly zeros, a few counts), else 1 (constant).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mad = np.median(np.abs(a - center), axis=0) * _MAD_TO_SIGMA
        q75, q25 = np.percentile(a, [75, 25], axis=0)
        iqr = (q75 - q25) / _IQR_TO_SIGMA
        std = a.std(axis=0)
    scale = np.where(mad > 0, mad, np.where(iqr > 0, iqr, np.where(std > 0, std, 1.0)))
    scale = np.where(np.isfinite(scale), scale, np.finfo(np.float64).max)
    # A spread below the float resolution of the center is rounding noise, not spread.
    floor = np.finfo(np.float64).eps * np.maximum(1.0, np.abs(center))
    return np.maximum(scale, floor)


def _midrank_percentile(values: NDArray[np.float64], reference_sorted: NDArray[np.float64]) -> NDArray[np.float64]:
    """Share of ``reference_sorted`` below each value, ties counted half (mid-rank ECDF).

    Ties count half so that a row identical to a constant baseline is "typical" (0.5),
    not "more anomalous than all of it" (1.0).
    """
    below = np.searchsorted(reference_sorted, values, side="left")
    at_or_below = np.searchsorted(reference_sorted, values, side="right")
    return (below + at_or_below) / (2.0 * reference_sorted.shape[0])


def combine_scores(scores: ArrayLike, baseline: ArrayLike, rule: str) -> NDArray[np.float64]:
    """Combine per-detector raw scores into one, each standardised against its baseline.

    Parameters
    ----------
    scores : array-like, shape (n_rows, n_detectors)
        Raw outlier scores (higher = more anomalous) of the rows to combine.
    baseline : array-like, shape (n_baseline, n_detectors)
        The same detectors' raw scores on their training (baseline) rows.
    rule : str
        ``<aggregate>_<standardisation>``, one of :data:`COMBINATIONS`:

        - standardisation ``z``: ``(s - mean) / std`` of the detector's baseline scores;
        - ``robust_z``: ``(s - median) / robust spread`` (MAD as sigma, falling back to
          IQR, std, then 1), so that a heavy tail in the baseline scores does not shrink
          every other row's standardised score;
        - ``percentile``: the mid-rank share of the baseline scores below ``s`` (0–1;
          saturates at 1 beyond the baseline's maximum);
        - aggregate ``mean`` or ``max`` over the detectors.

    Returns
    -------
    ndarray, shape (n_rows,)
        Finite combined scores, higher = more anomalous.
    """
    scores = np.asarray(scores, dtype=np.float64)
    baseline = np.asarray(baseline, dtype=np.float64)
    aggregate, _, standardisation = rule.partition("_")
    if rule not in COMBINATIONS:
        raise ValueError(f"combination must be one of {COMBINATIONS}, got {rule!r}")
    if standardisation == "percentile":
        standard = np.column_stack(
            [_midrank_percentile(scores[:, i], np.sort(baseline[:, i])) for i in range(baseline.shape[1])]
        )
    else:
        if standardisation == "z":
            center = baseline.mean(axis=0)
            spread = baseline.std(axis=0)
            spread = np.where(spread > 0, spread, 1.0)
        else:
            center = np.median(baseline, axis=0)
            spread = robust_scale(baseline, center)
        with np.errstate(over="ignore", invalid="ignore"):
            standard = np.clip((scores - center) / spread, -_Z_CAP, _Z_CAP)
    return standard.max(axis=1) if aggregate == "max" else standard.mean(axis=1)


class _FrozenECDF:
    """ECOD/COPOD scores of new rows against a fixed baseline, each row on its own.

    PyOD's ``ECOD``/``COPOD.decision_function`` re-estimates the per-feature ECDFs on
    the baseline plus the *whole* batch being scored, so a row's score depends on the
    other rows of its batch (a burst of similar anomalous rows makes each look less
    unusual). Here each row is scored as PyOD would score it alone: the ECDF and the
    skewness are taken over the ``n`` baseline values plus that row's value, computed in
    closed form from the sorted baseline and its central moments.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        The baseline the detector was fitted on.
    """

    def __init__(self, X: NDArray[np.float64]) -> None:
        self.n = X.shape[0]
        self.sorted = np.sort(X, axis=0)
        self.mean = X.mean(axis=0)
        dev = X - self.mean
        self.c2 = (dev**2).sum(axis=0)
        self.c3 = (dev**3).sum(axis=0)

    def tails(self, X: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Left/right tail scores ``-log ECDF`` and the skewness-chosen tail per cell."""
        n, n1 = self.n, self.n + 1
        at_or_below = np.empty(X.shape)
        at_or_above = np.empty(X.shape)
        for j in range(X.shape[1]):
            at_or_below[:, j] = np.searchsorted(self.sorted[:, j], X[:, j], side="right")
            at_or_above[:, j] = n - np.searchsorted(self.sorted[:, j], X[:, j], side="left")
        # "+ 1": the row itself is among the n + 1 values, as in PyOD's concatenation.
        u_left = -np.log((at_or_below + 1.0) / n1)
        u_right = -np.log((at_or_above + 1.0) / n1)

        # Skewness sign of baseline + row, from moments about the baseline mean.
        with np.errstate(over="ignore", invalid="ignore"):
            d = X - self.mean
            delta = d / n1  # shift of the mean when the row joins
            own = d * (n / n1)  # the row's deviation from the new mean
            s2 = self.c2 + n * delta**2 + own**2
            s3 = self.c3 - 3.0 * delta * self.c2 - n * delta**3 + own**3
            # scipy.stats.skew calls a spread below float resolution zero (skew 0).
            zero = s2 / n1 <= (np.finfo(np.float64).resolution * (self.mean + delta)) ** 2
            sign = np.where(np.isfinite(s3), np.sign(s3), np.sign(d))  # overflow: the row dominates
        sign = np.where(zero, 0.0, sign)
        # PyOD: U_skew = U_l * -sign(skew - 1) + U_r * sign(skew + 1)
        u_skew = u_left * -np.sign(sign - 1.0) + u_right * np.sign(sign + 1.0)
        return u_left, u_right, u_skew

    def ecod(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """ECOD score: per feature the largest of both tails and the skewed tail, summed."""
        u_left, u_right, u_skew = self.tails(X)
        return np.maximum(np.maximum(u_left, u_right), u_skew).sum(axis=1)

    def copod(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """COPOD score: per feature the skewed tail or the mean of both tails, summed."""
        u_left, u_right, u_skew = self.tails(X)
        return np.maximum(u_skew, (u_left + u_right) / 2.0).sum(axis=1)


class EnsembleScorer(BaseEstimator):
    """Complementary PyOD detectors on a baseline, combined and calibrated to 0–1.

    Each member is a PyOD detector with its defaults, fitted on the baseline rows after
    a per-feature robust scaling (``(x - median) / robust spread``, spread = MAD as
    sigma, else IQR, std, 1). ECOD, COPOD, HBOS and IForest are invariant to that
    scaling (it only keeps large offsets such as ``1e17`` from breaking HBOS's
    histograms); KNN needs it so that one large-unit feature (bytes) does not drown
    the others (counts).

    **Combination rule** (default ``"max_robust_z"``): each detector's raw score is
    standardised against that detector's own scores on the baseline,
    ``z = (s - median) / robust spread``, and the combined score is the **largest**
    ``z`` over the detectors: a row is as anomalous as the detector that finds it most
    unusual, in units of that detector's normal spread. It was chosen over the mean of
    z-scores, the mean/max of robust z-scores and the mean/max of baseline percentiles
    because it had the best mean ROC-AUC on the ADBench datasets (see
    ``benchmarks/results/adbench.json``); other rules stay available via
    ``combination`` (see :func:`combine_scores`).

    **Default members**: ECOD, IForest, COPOD, HBOS and KNN. ECOD, COPOD and HBOS all
    score features independently and IForest isolates along single features; on ADBench
    no combination rule over those four beat IForest alone. KNN (distance to the 5th
    nearest baseline row) sees joint and local structure the others miss, and adding
    it puts the ensemble above every single detector.

    **Calibration**: :meth:`calibrated_score` is the share of the baseline's combined
    scores below the row's (mid-rank empirical CDF): 0.99 means "more anomalous than
    99% of the baseline". With ``n`` baseline rows its resolution is ``1 / n``.

    Scores of new rows are computed for each row on its own (they do not depend on
    the other rows of the batch); PyOD's ECOD/COPOD would re-fit their ECDFs on the
    batch, so those two are scored through an equivalent per-row path.

    The class does not mix in :class:`sklearn.base.OutlierMixin`: that mixin promises a
    ``predict`` of +1/-1 while PyOD's convention is 0/1, and blastwall decides by the
    calibrated score and its severity thresholds, not by a binary label.

    Parameters
    ----------
    detectors : sequence of str, default ("ecod", "iforest", "copod", "hbos", "knn")
        Members, each one of :data:`DETECTORS`, no repeats.
    combination : str, default "max_robust_z"
        One of :data:`COMBINATIONS`.
    random_state : int, RandomState instance or None, default None
        Seed of the randomised members (IForest). An int is passed to IForest as is,
        so the member equals ``pyod.models.iforest.IForest(random_state=that int)``.
    n_neighbors : int, default 5
        KNN's k (PyOD's default), lowered to ``n_baseline - 1`` on smaller baselines.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of str
        Feature names, when ``fit`` got a DataFrame with string column names.
    n_samples_fit_ : int
        Number of baseline rows.
    feature_center_ : ndarray, shape (n_features,)
        Per-feature baseline median.
    feature_scale_ : ndarray, shape (n_features,)
        Per-feature robust spread of the baseline (never 0).
    detector_names_ : tuple of str
        Members in column order of ``detector_train_scores_``.
    detectors_ : dict of str to pyod.models.base.BaseDetector
        The fitted PyOD detectors, by name.
    detector_train_scores_ : ndarray, shape (n_samples_fit_, n_detectors)
        Each member's raw score of each baseline row (PyOD's ``decision_scores_``).
    combination_ : str
        The rule used for ``train_scores_`` and for scoring.
    train_scores_ : ndarray, shape (n_samples_fit_,)
        Combined scores of the baseline rows: the reference of the calibration.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> scorer = EnsembleScorer(random_state=0).fit(rng.normal(size=(500, 4)))
    >>> scorer.calibrated_score(np.array([[0.0, 0.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]])).round(2)
    array([0., 1.])
    """

    def __init__(
        self,
        detectors: Sequence[str] = ("ecod", "iforest", "copod", "hbos", "knn"),
        combination: str = "max_robust_z",
        random_state: int | np.random.RandomState | None = None,
        n_neighbors: int = 5,
    ) -> None:
        self.detectors = detectors
        self.combination = combination
        self.random_state = random_state
        self.n_neighbors = n_neighbors

    # -- fitting -------------------------------------------------------------------------

    def _validate_params(self) -> tuple[tuple[str, ...], int | None]:
        """Check the constructor parameters; return the member names and IForest's seed."""
        detectors = self.detectors
        if isinstance(detectors, str) or not isinstance(detectors, Sequence):
            raise ValueError(f"detectors must be a sequence of names from {DETECTORS}, got {detectors!r}")
        names = tuple(detectors)
        if not names:
            raise ValueError("detectors must name at least one detector")
        unknown = [name for name in names if name not in DETECTORS]
        if unknown:
            raise ValueError(f"unknown detector(s) {unknown}; known: {DETECTORS}")
        if len(set(names)) != len(names):
            raise ValueError(f"detectors must not repeat a name, got {names}")
        if self.combination not in COMBINATIONS:
            raise ValueError(f"combination must be one of {COMBINATIONS}, got {self.combination!r}")
        if (
            not isinstance(self.n_neighbors, numbers.Integral)
            or isinstance(self.n_neighbors, bool)
            or self.n_neighbors < 1
        ):
            raise ValueError(f"n_neighbors must be an integer >= 1, got {self.n_neighbors!r}")
        if self.random_state is None or isinstance(self.random_state, numbers.Integral):
            seed = self.random_state
        else:
            try:
                rng = check_random_state(self.random_state)
            except ValueError as exc:
                message = f"random_state must be None, an int or a RandomState, got {self.random_state!r}"
                raise ValueError(message) from exc
            seed = int(rng.randint(np.iinfo(np.int32).max))
        return names, seed

    def _make(self, name: str, n_samples: int, seed: int | None) -> BaseDetector:
        """A fresh PyOD detector with its defaults (KNN's k bounded by the baseline)."""
        if name == "ecod":
            return ECOD()
        if name == "copod":
            return COPOD()
        if name == "hbos":
            return HBOS()
        if name == "iforest":
            return IForest(random_state=seed)
        return KNN(n_neighbors=min(self.n_neighbors, n_samples - 1))

    def fit(self, X: ArrayLike, y: Any = None) -> EnsembleScorer:
        """Fit every member on the baseline ``X`` and calibrate on its combined scores.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            Baseline rows: finite, 2-D, at least 2 rows and 1 feature.
        y : ignored
            Present for scikit-learn API consistency.

        Returns
        -------
        self : EnsembleScorer

        Raises
        ------
        ValueError
            On an invalid parameter, or ``X`` not finite, not 2-D, or with fewer than
            2 rows.
        """
        names, seed = self._validate_params()
        X = validate_data(self, X, reset=True, dtype=np.float64, ensure_all_finite=True, ensure_min_samples=2)
        self.n_samples_fit_ = X.shape[0]
        self.feature_center_ = np.median(X, axis=0)
        self.feature_scale_ = robust_scale(X, self.feature_center_)
        Z = self._scale(X)

        detectors: dict[str, BaseDetector] = {}
        train = np.empty((X.shape[0], len(names)))
        with warnings.catch_warnings():
            # scipy's skew (inside ECOD/COPOD) warns on constant columns; PyOD maps their NaN to 0.
            warnings.filterwarnings("ignore", message="Precision loss occurred in moment calculation")
            for i, name in enumerate(names):
                detector = self._make(name, X.shape[0], seed).fit(Z)
                detectors[name] = detector
                train[:, i] = _checked(detector.decision_scores_, name)
        self.detector_names_ = names
        self.detectors_ = detectors
        self.detector_train_scores_ = train
        # ECOD and COPOD share one per-row scorer over the same scaled baseline.
        self._ecdf_ = _FrozenECDF(Z) if {"ecod", "copod"} & set(names) else None
        self.combination_ = self.combination
        self.train_scores_ = combine_scores(train, train, self.combination_)
        self._train_sorted_ = np.sort(self.train_scores_)
        return self

    # -- scoring -------------------------------------------------------------------------

    def _scale(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        with np.errstate(over="ignore"):
            Z = (X - self.feature_center_) / self.feature_scale_
        # Finite input can overflow after scaling only if absurdly far; keep it finite.
        return np.clip(Z, -np.finfo(np.float64).max, np.finfo(np.float64).max)

    def _raw_scores(self, X: ArrayLike) -> NDArray[np.float64]:
        """Each member's raw score of each row, shape (n_rows, n_detectors)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite=True)
        Z = self._scale(X)
        raw = np.empty((X.shape[0], len(self.detector_names_)))
        for i, name in enumerate(self.detector_names_):
            if name == "ecod":
                scores = self._ecdf_.ecod(Z)
            elif name == "copod":
                scores = self._ecdf_.copod(Z)
            else:
                with np.errstate(over="ignore", invalid="ignore"):
                    scores = self.detectors_[name].decision_function(Z)
            raw[:, i] = _checked(scores, name)
        return raw

    def decision_function(self, X: ArrayLike) -> NDArray[np.float64]:
        """Combined raw outlierness of each row (higher = more anomalous).

        Parameters
        ----------
        X : array-like, shape (n_rows, n_features_in_)

        Returns
        -------
        ndarray, shape (n_rows,)
            Finite; on the scale of ``train_scores_`` (see the class docstring's rule).
        """
        return combine_scores(self._raw_scores(X), self.detector_train_scores_, self.combination_)

    def calibrated_score(self, X: ArrayLike) -> NDArray[np.float64]:
        """Percentile of each row's combined score among the baseline's, in [0, 1].

        Parameters
        ----------
        X : array-like, shape (n_rows, n_features_in_)

        Returns
        -------
        ndarray, shape (n_rows,)
            Share of baseline rows whose combined score is below the row's (ties count
            half): 0.99 means "more anomalous than 99% of the baseline".
        """
        return self.percentile(self.decision_function(X))

    def percentile(self, combined: ArrayLike) -> NDArray[np.float64]:
        """Calibrate combined scores (from :meth:`decision_function`) to baseline percentiles in [0, 1]."""
        check_is_fitted(self)
        return _midrank_percentile(np.asarray(combined, dtype=np.float64), self._train_sorted_)

    def detector_scores(self, X: ArrayLike) -> dict[str, NDArray[np.float64]]:
        """Each member's own calibrated score: its raw score's percentile in its baseline.

        Parameters
        ----------
        X : array-like, shape (n_rows, n_features_in_)

        Returns
        -------
        dict of str to ndarray, shape (n_rows,)
            By detector name, values in [0, 1]; says which detectors found a row unusual.
        """
        raw = self._raw_scores(X)
        return {
            name: _midrank_percentile(raw[:, i], np.sort(self.detector_train_scores_[:, i]))
            for i, name in enumerate(self.detector_names_)
        }


def _checked(scores: ArrayLike, name: str) -> NDArray[np.float64]:
    """A member's scores as finite floats: overflow to +-inf is clipped, NaN is an error."""
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        # A member failing on finite input must be seen, never silently averaged away.
        raise RuntimeError(f"detector {name!r} returned NaN scores for finite input")
    return np.clip(scores, -np.finfo(np.float64).max, np.finfo(np.float64).max)
