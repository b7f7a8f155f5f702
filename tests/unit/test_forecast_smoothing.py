"""The forecaster's level: exponential smoothing chosen on the history, and the log target."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gpufinops.core.forecast import DemandForecaster, DemandSeries, ForecastSettings
from gpufinops.core.forecast.baseline import pinball_loss
from gpufinops.core.forecast.features import (
    choose_smoothing,
    from_target,
    smoothed_level,
    to_target,
)

DAY = 86400.0
START = 1704067200.0  # 2024-01-01T00:00:00Z
ALPHAS = ForecastSettings().smoothing_alphas

demand_values = arrays(
    np.float64,
    st.integers(1, 80),
    elements=st.one_of(st.floats(0.0, 1e4), st.just(np.nan)),
)


def brute_level(values: np.ndarray, origin: int, steps: int, alpha: float) -> float:
    """The definition, one sample at a time."""
    total = mass = 0.0
    for k in range(steps):
        i = origin - k
        if i < 0 or np.isnan(values[i]):
            continue
        weight = (1.0 - alpha) ** k
        total += weight * values[i]
        mass += weight
    return total / mass if mass > 1e-12 else float("nan")


@settings(max_examples=60, deadline=None)
@given(values=demand_values, steps=st.integers(1, 20), alpha=st.sampled_from((*ALPHAS, 1.0)))
def test_smoothed_level_is_the_weighted_mean_of_the_window(
    values: np.ndarray, steps: int, alpha: float
) -> None:
    origins = np.arange(values.shape[0], dtype=np.int64)
    level = smoothed_level(values, origins, steps, alpha)
    expected = [brute_level(values, int(i), steps, alpha) for i in origins]
    np.testing.assert_allclose(level, expected, rtol=1e-9, atol=1e-9)


def test_smoothed_level_reads_only_the_past_and_needs_a_sample() -> None:
    values = np.array([10.0, 20.0, np.nan, 40.0, np.nan, np.nan, np.nan])
    at = np.array([0, 1, 2, 3, 6], dtype=np.int64)
    fast = smoothed_level(values, at, 3, 1.0)  # alpha 1: the newest sample only
    np.testing.assert_array_equal(fast[:2], [10.0, 20.0])
    assert np.isnan(fast[2]) and fast[3] == 40.0 and np.isnan(fast[4])
    slow = smoothed_level(values, at, 3, 0.5)
    assert slow[2] == pytest.approx((0.5 * 20.0 + 0.25 * 10.0) / 0.75)  # the hole is skipped
    assert np.isnan(slow[4])  # nothing in the last three samples
    # the future never matters: changing later samples leaves earlier levels alone
    changed = values.copy()
    changed[4:] = 1e6
    np.testing.assert_array_equal(smoothed_level(changed, at[:4], 3, 0.5), slow[:4])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), alpha=st.sampled_from(ALPHAS))
def test_level_from_a_tail_equals_level_from_the_whole_series(seed: int, alpha: float) -> None:
    """Fitting sees the whole history, serving a tail: the level must agree."""
    rng = np.random.default_rng(seed)
    values = rng.gamma(2.0, 50.0, size=500)
    values[rng.random(500) < 0.1] = np.nan
    steps = 60
    whole = smoothed_level(values, np.array([499], dtype=np.int64), steps, alpha)
    tail = values[-steps:]
    served = smoothed_level(tail, np.array([steps - 1], dtype=np.int64), steps, alpha)
    np.testing.assert_allclose(served, whole, rtol=1e-12)


def staircase(days: float, seed: int, bin_steps: int = 10, jump: float = 0.15) -> np.ndarray:
    """Per-minute demand that holds each 10-minute bin's rate: a daily cycle
    times a random walk, as when requests are counted per bin and spread."""
    rng = np.random.default_rng(seed)
    bins = int(days * DAY / 60.0) // bin_steps
    hour = (np.arange(bins) * bin_steps / 60.0) % 24.0
    daily = 600.0 - 300.0 * np.cos(2.0 * np.pi * (hour - 3.0) / 24.0)
    walk = np.exp(np.cumsum(jump * rng.standard_normal(bins)) * 0.3)
    walk /= np.exp(np.log(walk).mean())
    return np.repeat(daily * walk * np.exp(jump * rng.standard_normal(bins)), bin_steps)


def test_choose_smoothing_follows_steps_and_averages_noise() -> None:
    s = ForecastSettings()
    assert choose_smoothing(staircase(3, seed=1), s) == max(s.smoothing_alphas)
    rng = np.random.default_rng(2)
    noisy = 100.0 * (1.0 + 0.2 * rng.standard_normal(3 * 1440))
    assert choose_smoothing(noisy, s) == min(s.smoothing_alphas)
    assert choose_smoothing(noisy[:3], s) == s.smoothing_alphas[0]  # too short to judge
    only = ForecastSettings(smoothing_alphas=(0.4,))
    assert choose_smoothing(noisy, only) == 0.4


@given(
    ratio=arrays(np.float64, st.integers(1, 50), elements=st.floats(0.0, 1e3)),
    offset=st.floats(1e-3, 1.0),
)
def test_target_map_is_monotone_and_round_trips(ratio: np.ndarray, offset: float) -> None:
    learnt = to_target(ratio, offset)
    assert np.all(np.isfinite(learnt))  # zero demand included
    np.testing.assert_allclose(from_target(learnt, offset), ratio, rtol=1e-9, atol=1e-9)
    order = np.argsort(ratio, kind="stable")
    assert np.all(np.diff(learnt[order]) >= 0.0)
    assert np.all(from_target(np.array([-50.0]), offset) == 0.0)  # never negative


def test_settings_reject_bad_smoothing() -> None:
    with pytest.raises(ValueError):
        ForecastSettings(smoothing_alphas=())
    with pytest.raises(ValueError):
        ForecastSettings(smoothing_alphas=(0.0, 0.5))
    with pytest.raises(ValueError):
        ForecastSettings(target_offset=0.0)


def walk_forward_loss(forecaster: DemandForecaster, demand: DemandSeries, first: int) -> float:
    s = forecaster.settings
    values = demand.values
    model, actual = [], []
    for end in range(first, len(values) - s.lead_steps, 3):
        recent = DemandSeries(demand.start, demand.step, values[:end])
        point = forecaster.peak(recent.tail(forecaster.lookback_seconds), recent.end)
        assert point is not None
        model.append(point.peak)
        actual.append(values[end : end + s.lead_steps].max())
    return pinball_loss(np.asarray(actual), np.asarray(model), s.quantile)


def test_a_fast_level_is_chosen_for_steps_and_forecasts_them_better() -> None:
    """On demand that moves in steps the fit picks the fastest level, and its
    lead-window peaks beat those of the same model on a slow level."""
    demand = DemandSeries(START, 60.0, staircase(4, seed=3))
    history = DemandSeries(START, 60.0, demand.values[: int(3 * DAY / 60.0)])
    chosen = DemandForecaster(ForecastSettings())
    report = chosen.fit(history, history.end)
    assert report.ready, report.message
    assert chosen._layout is not None
    assert chosen._layout.smoothing_alpha == max(ALPHAS)
    slow = DemandForecaster(ForecastSettings(smoothing_alphas=(min(ALPHAS),)))
    assert slow.fit(history, history.end).ready
    first = len(history)
    assert walk_forward_loss(chosen, demand, first) < 0.9 * walk_forward_loss(slow, demand, first)
