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


def _fitted() -> tuple[HistGradientBoostingRegressor, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, 4))
    y = x[:, 0] - 0.5 * x[:, 1] ** 2 + rng.normal(size=400)
    x[rng.random(x.shape) < 0.1] = np.nan
    model = HistGradientBoostingRegressor(
        loss="quantile", quantile=0.9, max_iter=10, early_stopping=False, random_state=0
    ).fit(x, y)
    probe = rng.normal(size=(30, 4))
    probe[rng.random(probe.shape) < 0.2] = np.nan
    return model, probe


class OtherRelease:
    """A fitted regressor of a scikit-learn release that keeps its trees elsewhere: the
    same public ``predict``, other private attributes."""

    def __init__(self, model: HistGradientBoostingRegressor, **private: object) -> None:
        self._model = model
        self.__dict__.update(private)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._model.predict(x))


def test_without_the_private_trees_the_public_predict_answers_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, probe = _fitted()
    flattened = Forest.from_sklearn(model)
    assert flattened.fallback is None
    moved = OtherRelease(model, _baseline_prediction=model._baseline_prediction)
    kept = Forest.from_sklearn(moved)
    assert kept.fallback is moved
    np.testing.assert_allclose(kept.predict(probe), flattened.predict(probe), rtol=0, atol=1e-9)

    # The fitted model itself, with the attribute taken away after its predictions.
    expected = model.predict(probe)
    monkeypatch.delattr(model, "_predictors")
    monkeypatch.setattr(model, "predict", lambda x: expected)
    assert Forest.from_sklearn(model).predict(probe).tolist() == expected.tolist()


def test_a_changed_node_layout_or_a_missing_baseline_falls_back() -> None:
    model, probe = _fitted()
    renamed = np.zeros(3, dtype=[("val", "f8"), ("is_leaf", "u1")])
    changed = OtherRelease(
        model,
        _predictors=[[SimpleNamespace(nodes=renamed)]],
        _baseline_prediction=model._baseline_prediction,
    )
    without_baseline = OtherRelease(model, _predictors=model._predictors)
    for release in (changed, without_baseline):
        forest = Forest.from_sklearn(release)
        assert forest.fallback is release
        np.testing.assert_array_equal(forest.predict(probe), model.predict(probe))
