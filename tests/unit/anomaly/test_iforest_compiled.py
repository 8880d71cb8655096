"""The compiled Isolation Forest scores exactly like scikit-learn's, row by row and in batches."""

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from families.transaction_anomaly.iforest_compiled import average_path_length, compile_forest


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2_000, 6))
    X[:, 3] = rng.integers(-1, 5, len(X))  # an ordinal-coded column with many ties
    Y = rng.normal(scale=3.0, size=(500, 6))
    Y[:, 3] = rng.integers(-2, 7, len(Y))
    return X, Y


@pytest.mark.parametrize("max_features", [1.0, 0.5])
@pytest.mark.parametrize("max_samples", [256, 37])
def test_compiled_scores_equal_sklearn_score_samples(data, max_features, max_samples):
    X, Y = data
    forest = IsolationForest(n_estimators=60, max_samples=max_samples, max_features=max_features,
                             random_state=4).fit(X)
    compiled = compile_forest(forest)
    expected = forest.score_samples(Y)
    np.testing.assert_allclose(compiled.score_samples(Y), expected, rtol=0, atol=1e-9)
    single = np.array([compiled.anomaly_score_one(y) for y in Y])
    np.testing.assert_allclose(single, -expected, rtol=0, atol=1e-9)
    # the training points themselves (values exactly on split thresholds' neighbourhoods)
    np.testing.assert_allclose(compiled.score_samples(X), forest.score_samples(X), rtol=0, atol=1e-9)


def test_anomaly_scores_lie_in_zero_one_and_outliers_score_higher(data):
    X, _ = data
    compiled = compile_forest(IsolationForest(n_estimators=50, random_state=1).fit(X))
    s = compiled.anomaly_score(np.vstack([X[:100], np.full((1, 6), 40.0)]))
    assert ((s > 0) & (s <= 1)).all()
    assert s[-1] > s[:100].max()


def test_the_path_length_correction_matches_its_closed_form():
    np.testing.assert_allclose(average_path_length(np.array([1, 2, 3, 256])),
                               [0.0, 1.0, 2 * (np.log(2) + np.euler_gamma) - 4 / 3,
                                2 * (np.log(255) + np.euler_gamma) - 2 * 255 / 256])


def test_an_unfitted_forest_or_a_wrong_width_is_refused(data):
    with pytest.raises(ValueError, match="not fitted"):
        compile_forest(IsolationForest())
    compiled = compile_forest(IsolationForest(n_estimators=5, random_state=1).fit(data[0]))
    with pytest.raises(ValueError, match="6 columns"):
        compiled.score_samples(np.zeros((2, 5)))


def test_a_single_row_scores_in_well_under_a_millisecond(data):
    import time

    X, Y = data
    compiled = compile_forest(IsolationForest(n_estimators=200, random_state=1).fit(X))
    t = time.perf_counter()
    for y in Y:
        compiled.anomaly_score_one(y)
    assert (time.perf_counter() - t) / len(Y) < 1e-3
