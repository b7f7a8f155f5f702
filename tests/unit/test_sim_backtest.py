"""Forecast backtest: the error measures, the Holt-Winters recursion, a short run."""

import warnings

import numpy as np
import pytest

from gpufinops.sim.backtest import HoltWinters, backtest, mase, smape, targets
from gpufinops.sim.traces import Trace


def test_smape_and_mase_by_hand() -> None:
    a = np.array([10.0, 20.0, 0.0])
    f = np.array([12.0, 20.0, 0.0])
    # 2*2/22, 0, and 0/0 counted as a perfect forecast
    assert smape(a, f) == pytest.approx(100 * (4 / 22) / 3)
    assert mase(a, f, scale=2.0) == pytest.approx((2 / 3) / 2.0)


def test_targets_are_the_next_peak_or_value() -> None:
    v = np.array([1.0, 5.0, 2.0, 3.0])
    np.testing.assert_array_equal(targets(v, 2, "peak")[:3], [5.0, 5.0, 3.0])
    np.testing.assert_array_equal(targets(v, 2, "value")[:3], [5.0, 2.0, 3.0])
    assert np.isnan(targets(v, 2, "peak")[3])


def test_holt_winters_states_follow_statsmodels() -> None:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    rng = np.random.default_rng(0)
    m = 24
    t = np.arange(24 * 12)
    y = 50 + 0.05 * t + 10 * np.sin(2 * np.pi * t / m) + rng.normal(0, 1, t.size)
    hw = HoltWinters(m)
    hw.fit(y[:200])
    for value in y[200:]:
        hw.update(float(value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = ExponentialSmoothing(
            y[:200], trend="add", damped_trend=True, seasonal="add", seasonal_periods=m,
            initialization_method="heuristic",
        ).fit()  # fmt: skip
        p = fitted.params
        full = ExponentialSmoothing(
            y, trend="add", damped_trend=True, seasonal="add", seasonal_periods=m,
            initialization_method="known", initial_level=p["initial_level"],
            initial_trend=p["initial_trend"], initial_seasonal=p["initial_seasons"],
        ).fit(
            smoothing_level=p["smoothing_level"], smoothing_trend=p["smoothing_trend"],
            smoothing_seasonal=p["smoothing_seasonal"], damping_trend=p["damping_trend"],
            optimized=False,
        )  # fmt: skip
    # (statsmodels forecasts a whole season ahead from the season before the last
    # update; within a season both agree)
    np.testing.assert_allclose(hw.forecast(m - 1), np.maximum(full.forecast(m - 1), 0), rtol=1e-9)


def test_backtest_on_three_days_of_daily_traffic() -> None:
    rng = np.random.default_rng(1)
    seconds = np.arange(3 * 86400 + 3600)
    minutes = seconds // 60
    noise = rng.normal(0, 1.0, size=minutes[-1] + 1)[minutes]
    rate = np.maximum(20 + 10 * np.sin(2 * np.pi * seconds / 86400) + noise, 0)
    trace = Trace("daily", 0.0, rate, rate.copy(), "binned", 60.0)
    result = backtest(trace, 900, stride_seconds=900, refit_seconds=86400)
    out = result.to_json()
    for name in ("gpufinops", "seasonal_naive", "holt_winters"):
        assert set(out[name]) == {"smape", "mase"}
        assert 0 <= out[name]["smape"] < 50
    assert result.origins > 50 and result.refits >= 1
    assert result.first_origin >= 2 * 86400


def test_backtest_refuses_traces_too_short() -> None:
    rate = np.ones(86400)
    trace = Trace("day", 0.0, rate, rate.copy(), "binned", 60.0)
    with pytest.raises(ValueError, match="needs"):
        backtest(trace, 900)
