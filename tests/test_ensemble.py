"""The scoring contract of EnsembleScorer, for each member alone and for the ensemble.

Synthetic Gaussian data for the contract and edge cases; a few small real ADBench
datasets for ranking quality; PyOD itself as the oracle of the per-row ECOD/COPOD path.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from pyod.models.copod import COPOD
from pyod.models.ecod import ECOD
from pyod.models.hbos import HBOS
from pyod.models.iforest import IForest
from pyod.models.knn import KNN
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from detector.ensemble import COMBINATIONS, DETECTORS, EnsembleScorer, _FrozenECDF, combine_scores

ADBENCH = Path(__file__).resolve().parents[1].parent / "shared/datasets/adbench-classical"

# Every member alone (the "scoring contract for each detector class"), then the ensemble.
CONFIGS = [(name,) for name in DETECTORS] + [DETECTORS]
CONFIG_IDS = [*DETECTORS, "ensemble"]


@pytest.fixture(autouse=True)
def _quiet_scipy_skew():
    # scipy's skew inside PyOD's ECOD/COPOD warns on constant columns (PyOD maps the NaN to 0).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Precision loss occurred in moment calculation")
        yield


def gaussian(n: int = 300, d: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def assert_unit_scores(scores: np.ndarray, n: int) -> None:
    assert scores.shape == (n,)
    assert np.isfinite(scores).all()
    assert ((scores >= 0.0) & (scores <= 1.0)).all()


# -- scikit-learn / PyOD conventions ------------------------------------------------------


@parametrize_with_checks([EnsembleScorer(random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("detectors", CONFIGS, ids=CONFIG_IDS)
def test_fit_returns_self_with_fitted_attributes(detectors):
    X = gaussian()
    scorer = EnsembleScorer(detectors=detectors, random_state=0)
    assert not [k for k in vars(scorer) if k.endswith("_")]  # the constructor only stores
    assert scorer.fit(X) is scorer
    assert scorer.n_features_in_ == 4
    assert scorer.n_samples_fit_ == 300
    assert scorer.detector_names_ == tuple(detectors)
    assert set(scorer.detectors_) == set(detectors)
    assert scorer.detector_train_scores_.shape == (300, len(detectors))
    assert scorer.train_scores_.shape == (300,)
    assert scorer.combination_ == "max_robust_z"
    public = {k for k in vars(scorer) if not k.startswith("_")}
    assert public - {"detectors", "combination", "random_state", "n_neighbors"} == {
        k for k in public if k.endswith("_")
    }


@pytest.mark.parametrize("method", ["decision_function", "calibrated_score", "detector_scores"])
def test_scoring_before_fit_raises_not_fitted(method):
    with pytest.raises(NotFittedError):
        getattr(EnsembleScorer(), method)(gaussian(5))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"detectors": ()}, "at least one"),
        ({"detectors": "ecod"}, "sequence of names"),
        ({"detectors": ("ecod", "lof")}, "unknown detector"),
        ({"detectors": ("ecod", "ecod")}, "repeat"),
        ({"combination": "median_z"}, "combination must be one of"),
        ({"n_neighbors": 0}, "n_neighbors"),
        ({"n_neighbors": 2.5}, "n_neighbors"),
        ({"random_state": "seed"}, "random_state"),
    ],
)
def test_bad_parameters_raise_in_fit_not_in_constructor(params, message):
    scorer = EnsembleScorer(**params)  # storing is all the constructor does
    with pytest.raises(ValueError, match=message):
        scorer.fit(gaussian())


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), "NaN"),
        (np.array([[0.0, 1.0], [np.inf, 2.0], [1.0, 1.0]]), "infinity"),
        (np.arange(10.0), "2D"),
        (np.zeros((3, 2, 2)), "dim"),
        (np.array([[1.0, 2.0]]), "minimum of 2"),
        (np.zeros((5, 0)), "0 feature"),
    ],
    ids=["nan", "inf", "1-d", "3-d", "one-row", "no-features"],
)
def test_bad_input_raises_value_error_in_fit(X, message):
    with pytest.raises(ValueError, match=message):
        EnsembleScorer().fit(X)


def test_bad_input_raises_value_error_in_scoring():
    scorer = EnsembleScorer(random_state=0).fit(gaussian())
    with pytest.raises(ValueError, match="features"):
        scorer.calibrated_score(gaussian(5, d=3))
    with pytest.raises(ValueError, match="NaN"):
        scorer.calibrated_score(np.full((1, 4), np.nan))


def test_clone_gives_an_unfitted_copy_with_the_same_parameters():
    scorer = EnsembleScorer(detectors=("ecod", "knn"), combination="mean_z", random_state=3, n_neighbors=7)
    scorer.fit(gaussian())
    copy = clone(scorer)
    assert copy.get_params() == scorer.get_params()
    with pytest.raises(NotFittedError):
        copy.decision_function(gaussian(3))


# -- what the scores mean -------------------------------------------------------------------


@pytest.mark.parametrize("detectors", CONFIGS, ids=CONFIG_IDS)
def test_calibrated_scores_are_in_unit_interval(detectors):
    scorer = EnsembleScorer(detectors=detectors, random_state=0).fit(gaussian())
    new = np.vstack([gaussian(50, seed=1), np.full((1, 4), 40.0), np.full((1, 4), -40.0)])
    assert_unit_scores(scorer.calibrated_score(new), 52)
    assert np.isfinite(scorer.decision_function(new)).all()
    per_detector = scorer.detector_scores(new)
    assert list(per_detector) == list(detectors)
    for scores in per_detector.values():
        assert_unit_scores(scores, 52)


@pytest.mark.parametrize("detectors", CONFIGS, ids=CONFIG_IDS)
def test_injected_outlier_scores_above_every_inlier(detectors):
    X = gaussian(400, d=5, seed=2)
    X[17] = [6.0, -6.0, 6.0, -6.0, 6.0]  # far out on every feature, inside the baseline itself
    scorer = EnsembleScorer(detectors=detectors, random_state=0).fit(X)
    train = scorer.train_scores_
    assert train[17] > np.delete(train, 17).max()
    # The same point as a new row: more anomalous than the whole baseline but itself.
    new = np.vstack([gaussian(100, d=5, seed=3), X[17]])
    calibrated = scorer.calibrated_score(new)
    assert calibrated[-1] > calibrated[:-1].max()
    assert calibrated[-1] >= 1.0 - 1.0 / 400


@pytest.mark.parametrize("rule", COMBINATIONS)
def test_every_combination_rule_ranks_the_outlier_first(rule):
    X = gaussian(300, seed=4)
    scorer = EnsembleScorer(combination=rule, random_state=0).fit(X)
    new = np.vstack([gaussian(50, seed=5), np.full((1, 4), 8.0)])
    scores = scorer.calibrated_score(new)
    assert_unit_scores(scores, 51)
    assert scores[-1] == scores.max() and scores[-1] > np.sort(scores)[-2]


def test_unknown_rule_in_combine_scores_raises():
    with pytest.raises(ValueError, match="combination"):
        combine_scores(np.zeros((2, 2)), np.zeros((3, 2)), "median_z")


def test_calibration_is_a_baseline_percentile():
    # Fresh rows from the baseline's own distribution: about 10% should score above 0.9
    # and about 1% above 0.99, if 0.9 really means "more anomalous than 90% of the baseline".
    scorer = EnsembleScorer(random_state=0).fit(gaussian(3000, seed=6))
    scores = scorer.calibrated_score(gaussian(3000, seed=7))
    assert 0.06 < np.mean(scores > 0.9) < 0.14
    assert np.mean(scores > 0.99) < 0.03
    assert 0.4 < np.median(scores) < 0.6
    # On the baseline itself the calibrated scores are its ranks: uniform by construction.
    baseline = scorer.calibrated_score(gaussian(3000, seed=6))
    assert 0.45 < baseline.mean() < 0.55


def test_deterministic_given_random_state():
    X, new = gaussian(seed=8), gaussian(40, seed=9)
    first = EnsembleScorer(random_state=11).fit(X)
    second = EnsembleScorer(random_state=11).fit(X)
    np.testing.assert_array_equal(first.train_scores_, second.train_scores_)
    np.testing.assert_array_equal(first.calibrated_score(new), second.calibrated_score(new))
    rs = EnsembleScorer(random_state=np.random.RandomState(5)).fit(X)
    again = EnsembleScorer(random_state=np.random.RandomState(5)).fit(X)
    np.testing.assert_array_equal(rs.decision_function(new), again.decision_function(new))
    # The seed reaches IForest: a different one changes its scores.
    other = EnsembleScorer(detectors=("iforest",), random_state=12).fit(X)
    alone = EnsembleScorer(detectors=("iforest",), random_state=11).fit(X)
    assert not np.array_equal(other.train_scores_, alone.train_scores_)


def test_a_rows_score_does_not_depend_on_its_batch():
    scorer = EnsembleScorer(random_state=0).fit(gaussian(seed=10))
    # A burst of identical anomalous rows must not make each other look normal.
    batch = np.vstack([gaussian(30, seed=11), np.tile([5.0, 5.0, -5.0, 5.0], (200, 1))])
    together = scorer.decision_function(batch)
    alone = np.array([scorer.decision_function(row[None, :])[0] for row in batch[[0, 1, 29, 30, 229]]])
    np.testing.assert_allclose(together[[0, 1, 29, 30, 229]], alone, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("pyod_class", "method"), [(ECOD, "ecod"), (COPOD, "copod")])
def test_per_row_ecdf_scores_equal_pyod_scoring_that_row_alone(pyod_class, method):
    rng = np.random.default_rng(12)
    X = np.column_stack([rng.gamma(2.0, size=300), -rng.gamma(2.0, size=300), rng.normal(size=300)])
    new = np.vstack([rng.normal(size=(25, 3)), [[40.0, 1.0, 0.0]], [[-3.0, -40.0, 9.0]], X[:3]])
    fitted = pyod_class().fit(X)
    oracle = np.array([fitted.decision_function(row[None, :])[0] for row in new])
    np.testing.assert_allclose(getattr(_FrozenECDF(X), method)(new), oracle, rtol=1e-10, atol=1e-10)


def test_members_equal_their_pyod_detectors_on_the_baseline():
    X = gaussian(200, seed=13)
    scorer = EnsembleScorer(random_state=0).fit(X)
    Z = (X - scorer.feature_center_) / scorer.feature_scale_  # members see the scaled baseline
    expected = {
        "ecod": ECOD().fit(Z),
        "iforest": IForest(random_state=0).fit(Z),
        "copod": COPOD().fit(Z),
        "hbos": HBOS().fit(Z),
        "knn": KNN().fit(Z),
    }
    for i, name in enumerate(scorer.detector_names_):
        np.testing.assert_allclose(scorer.detector_train_scores_[:, i], expected[name].decision_scores_)


def test_feature_names_are_kept_from_a_dataframe():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(gaussian(), columns=["reads", "bytes", "joins", "grants"])
    scorer = EnsembleScorer(random_state=0).fit(frame)
    assert list(scorer.feature_names_in_) == ["reads", "bytes", "joins", "grants"]
    assert_unit_scores(scorer.calibrated_score(frame.head(5)), 5)


# -- edge cases: none may crash or give NaN ------------------------------------------------


@pytest.mark.parametrize("detectors", CONFIGS, ids=CONFIG_IDS)
def test_constant_feature(detectors):
    X = gaussian(100, seed=14)
    X[:, 1] = 3.0
    scorer = EnsembleScorer(detectors=detectors, random_state=0).fit(X)
    new = np.vstack([gaussian(10, seed=15), X[:1]])
    new[:, 1] = 3.0
    new[0, 1] = 50.0  # the constant breaks
    assert_unit_scores(scorer.calibrated_score(new), 11)
    assert np.isfinite(scorer.train_scores_).all()


def test_constant_feature_with_large_offset():
    # np.histogram cannot make 10 bins around 1e17 (HBOS fails on it raw); scaling first avoids that.
    X = gaussian(100, seed=16)
    X[:, 2] = 1e17
    scorer = EnsembleScorer(random_state=0).fit(X)
    assert_unit_scores(scorer.calibrated_score(X[:10]), 10)


@pytest.mark.parametrize("detectors", CONFIGS, ids=CONFIG_IDS)
def test_single_feature(detectors):
    X = gaussian(200, d=1, seed=17)
    scorer = EnsembleScorer(detectors=detectors, random_state=0).fit(X)
    scores = scorer.calibrated_score(np.array([[0.0], [0.5], [12.0]]))
    assert_unit_scores(scores, 3)
    assert scores[2] > scores[0]


@pytest.mark.parametrize("n", [2, 5])
@pytest.mark.parametrize("detectors", CONFIGS, ids=CONFIG_IDS)
def test_tiny_baseline(detectors, n):
    X = gaussian(n, seed=18)
    scorer = EnsembleScorer(detectors=detectors, random_state=0).fit(X)
    assert scorer.detectors_.get("knn") is None or scorer.detectors_["knn"].n_neighbors == min(5, n - 1)
    new = np.vstack([X, gaussian(3, seed=19), np.full((1, 4), 30.0)])
    scores = scorer.calibrated_score(new)
    assert_unit_scores(scores, n + 4)
    assert scores[-1] == scores.max()


@pytest.mark.parametrize("detectors", CONFIGS, ids=CONFIG_IDS)
def test_all_identical_rows(detectors):
    X = np.tile([1.0, -2.0, 1e6], (50, 1))
    scorer = EnsembleScorer(detectors=detectors, random_state=0).fit(X)
    scores = scorer.calibrated_score(np.array([[1.0, -2.0, 1e6], [1.0, -2.0, 2e6]]))
    assert_unit_scores(scores, 2)
    assert scores[0] == 0.5  # identical to the whole baseline: ties count half, typical
    assert scores[1] >= scores[0]


@pytest.mark.parametrize("scale", [1e6, 1e12, 1e300])
@pytest.mark.parametrize("detectors", CONFIGS, ids=CONFIG_IDS)
def test_rows_far_outside_the_baseline(detectors, scale):
    scorer = EnsembleScorer(detectors=detectors, random_state=0).fit(gaussian(seed=20))
    new = np.vstack([gaussian(5, seed=21), np.full((1, 4), scale), np.full((1, 4), -scale), [[scale, 0, 0, 0]]])
    assert np.isfinite(scorer.decision_function(new)).all()
    scores = scorer.calibrated_score(new)
    assert_unit_scores(scores, 8)
    assert (scores[5:7] >= scores[:5].max()).all()
    if "knn" in detectors:
        # Far out on one feature only: ECOD/COPOD/HBOS cap a feature's contribution (ECDF
        # tail, lowest bin) and IForest does not extrapolate beyond its baseline's range,
        # so alone they may rank it below inliers; the distance to the baseline sees it.
        assert scores[7] >= scores[:5].max()


# -- real data ---------------------------------------------------------------------------------

SMALL_ADBENCH = ["42_WBC", "29_Pima", "14_glass"]


@pytest.mark.skipif(not ADBENCH.is_dir(), reason=f"ADBench datasets not found at {ADBENCH}")
@pytest.mark.parametrize("dataset", SMALL_ADBENCH)
def test_ensemble_ranks_real_outliers_at_least_as_well_as_the_average_detector(dataset):
    with np.load(ADBENCH / f"{dataset}.npz", allow_pickle=False) as d:
        X, y = d["X"].astype(np.float64), d["y"].astype(int)
    singles = [
        ECOD().fit(X),
        IForest(random_state=0).fit(X),
        COPOD().fit(X),
        HBOS().fit(X),
        KNN().fit(X),
    ]
    mean_single = np.mean([roc_auc_score(y, m.decision_scores_) for m in singles])
    ensemble = roc_auc_score(y, EnsembleScorer(random_state=0).fit(X).train_scores_)
    # Fixed seed, so the margin is exact; it is small on WBC (all detectors ~0.99).
    assert ensemble >= mean_single - 1e-3, (dataset, ensemble, mean_single)
