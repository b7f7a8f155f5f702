"""The flattened forest predicts exactly what scikit-learn's regressor does."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import HistGradientBoostingRegressor

from gpufinops.core.forecast.trees import Forest


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    missing=st.floats(0.0, 0.3),
    leaves=st.integers(2, 31),
    quantile=st.floats(0.1, 0.95),
)
def test_forest_matches_sklearn(seed: int, missing: float, leaves: int, quantile: float) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 6))
    y = 2.0 * x[:, 0] + x[:, 1] ** 2 + rng.normal(size=600)
    x[rng.random(x.shape) < missing] = np.nan  # missing values learn a side
    model = HistGradientBoostingRegressor(
        loss="quantile",
        quantile=quantile,
        max_iter=15,
        max_leaf_nodes=leaves,
        min_samples_leaf=5,
        early_stopping=False,
        random_state=0,
    ).fit(x, y)
    forest = Forest.from_sklearn(model)
    probe = rng.normal(size=(50, 6))
    probe[rng.random(probe.shape) < 0.2] = np.nan
    for rows in (x, probe, probe[:1]):
        np.testing.assert_allclose(forest.predict(rows), model.predict(rows), rtol=0, atol=1e-9)


def test_forest_rejects_multi_output_models() -> None:
    fake = SimpleNamespace(_predictors=[[object(), object()]])
    with pytest.raises(ValueError, match="single-output"):
        Forest.from_sklearn(fake)
