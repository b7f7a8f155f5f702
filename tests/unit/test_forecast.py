"""Demand forecaster on synthetic demand whose future is known."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gpufinops.core.forecast import (
    DemandForecaster,
    DemandSeries,
    ForecastSettings,
)
from gpufinops.core.forecast.baseline import loss_ratio, pinball_loss, window_max
from gpufinops.core.forecast.report import (
    INSUFFICIENT_HISTORY,
    MODEL_BEATS_BASELINE,
    NOT_FITTED,
    WORSE_THAN_SEASONAL_NAIVE,
)

DAY = 86400.0
START = 1704067200.0  # 2024-01-01T00:00:00Z, a Monday
FloatPair = tuple[np.ndarray, np.ndarray]
MINUTE = ForecastSettings()  # the defaults: 60 s step, 180 s lead, daily season
COARSE = ForecastSettings(
    step_seconds=300.0,
    lead_time_seconds=900.0,
    max_staleness_seconds=300.0,
    online_window_seconds=3 * 3600.0,
    online_min_samples=24,
)
# A half-hour season so that property tests fit in milliseconds.
TINY = ForecastSettings(
    season_seconds=1800.0,
    rolling_seconds=(300.0,),
    level_seconds=300.0,
    min_train_seconds=1800.0,
    max_iter=20,
    min_samples_leaf=10,
)


def sinusoid(days: float, step: float, seed: int = 0, noise: float = 0.05) -> DemandSeries:
    """Daily cycle between 20 and 100 requests/s, peak mid-afternoon."""
    rng = np.random.default_rng(seed)
    t = START + step * np.arange(int(days * DAY / step))
    phase = 2 * np.pi * ((t - START) % DAY) / DAY
    clean = 60.0 - 40.0 * np.cos(phase - 2 * np.pi * 3 / 24)
    return DemandSeries(START, step, clean * (1.0 + noise * rng.standard_normal(t.shape)))


def ramp_demand(days: float, step: float, seed: int = 0) -> tuple[DemandSeries, FloatPair]:
    """Quiet nights at 10 requests/s, a steep 08:00 ramp to 60 and a slow evening decline."""
    rng = np.random.default_rng(seed)
    t = START + step * np.arange(int(days * DAY / step))
    hour = ((t - START) % DAY) / 3600.0
    up = np.clip((hour - 8.0) / 0.05, 0.0, 1.0)  # 3 minutes from 10 to 60
    down = np.clip((hour - 18.0) / 4.0, 0.0, 1.0)
    clean = 10.0 + 50.0 * up * (1.0 - down)
    noisy = clean * (1.0 + 0.03 * rng.standard_normal(t.shape))
    return DemandSeries(START, step, noisy), (t, clean)


def head(series: DemandSeries, seconds: float) -> DemandSeries:
    return DemandSeries(series.start, series.step, series.values[: int(seconds / series.step)])


@pytest.fixture(scope="module")
def minute_model() -> tuple[DemandForecaster, DemandSeries]:
    demand = sinusoid(4, 60.0)
    history = head(demand, 3 * DAY)
    forecaster = DemandForecaster(MINUTE)
    forecaster.fit(history, history.end)
    return forecaster, demand


@pytest.fixture(scope="module")
def ramp_model() -> tuple[DemandForecaster, DemandSeries, FloatPair]:
    demand, truth = ramp_demand(4, 60.0)
    history = head(demand, 3 * DAY)
    forecaster = DemandForecaster(MINUTE)
    forecaster.fit(history, history.end)
    return forecaster, demand, truth


def test_sinusoid_is_ready_and_beats_seasonal_naive(
    minute_model: tuple[DemandForecaster, DemandSeries],
) -> None:
    forecaster, _ = minute_model
    report = forecaster.report
    assert report.ready, report.message
    assert report.reason == MODEL_BEATS_BASELINE
    assert report.backtest_ratio is not None and report.backtest_ratio < 1.0
    assert report.history_seconds == 3 * DAY
    assert report.fitted_at == START + 3 * DAY
    assert "seasonal-naive" in report.message


def test_walk_forward_beats_seasonal_naive_on_unseen_day(
    minute_model: tuple[DemandForecaster, DemandSeries],
) -> None:
    forecaster, demand = minute_model
    lead = MINUTE.lead_steps
    season = MINUTE.season_steps
    values = demand.values
    model, naive, actual = [], [], []
    for end in range(int(3 * DAY / 60), len(values) - lead, 7):
        recent = head(demand, end * 60.0).tail(forecaster.lookback_seconds)
        point = forecaster.peak(recent, recent.end)
        assert point is not None
        model.append(point.peak)
        naive.append(values[end - season : end - season + lead].max())
        actual.append(values[end : end + lead].max())
    a = np.asarray(actual)
    q = MINUTE.quantile
    assert pinball_loss(a, np.asarray(model), q) < pinball_loss(a, np.asarray(naive), q)


def test_peak_is_the_max_of_the_path_and_covers_the_lead_time(
    minute_model: tuple[DemandForecaster, DemandSeries],
) -> None:
    forecaster, demand = minute_model
    recent = head(demand, 3.5 * DAY).tail(forecaster.lookback_seconds)
    now = recent.end + 20.0  # newest sample is 20 s old
    point = forecaster.peak(recent, now)
    path = forecaster.forecast_path(recent, now)
    assert point is not None and path is not None
    assert point.at == now
    assert point.horizon_seconds >= MINUTE.lead_time_seconds
    assert point.peak == pytest.approx(float(path.max()))
    assert point.peak >= path[-1]  # the forecast at the lead time
    assert len(path) == math.ceil((20.0 + MINUTE.lead_time_seconds) / 60.0)


def test_peak_rises_before_the_daily_ramp(
    ramp_model: tuple[DemandForecaster, DemandSeries, FloatPair],
) -> None:
    forecaster, demand, (t, clean) = ramp_model
    assert forecaster.report.ready, forecaster.report.message
    ramp_at = START + 3 * DAY + 8 * 3600.0  # 08:00 on the unseen day
    for lead_in in (60.0, 30.0):
        now = ramp_at - lead_in
        recent = head(demand, now - START).tail(forecaster.lookback_seconds)
        current = float(recent.values[-1])
        point = forecaster.peak(recent, now)
        assert point is not None
        # the truth: the ramp starts inside the lead window
        window = (t >= now) & (t < now + MINUTE.lead_time_seconds)
        assert clean[window].max() > 1.5 * clean[t < now][-1]
        assert point.peak > 1.3 * current, (lead_in, point.peak, current)


def test_peak_follows_the_quiet_night_down(
    ramp_model: tuple[DemandForecaster, DemandSeries, FloatPair],
) -> None:
    """No phantom ramp: at 03:00 the forecast stays near the night level."""
    forecaster, demand, _ = ramp_model
    now = START + 3 * DAY + 3 * 3600.0
    recent = head(demand, now - START).tail(forecaster.lookback_seconds)
    point = forecaster.peak(recent, now)
    assert point is not None
    assert 9.0 < point.peak < 15.0


def test_not_fitted_is_not_ready() -> None:
    forecaster = DemandForecaster()
    assert forecaster.report.reason == NOT_FITTED
    assert not forecaster.report.ready
    recent = sinusoid(1, 60.0)
    assert forecaster.peak(recent, recent.end) is None
    assert forecaster.forecast_path(recent, recent.end) is None
    assert forecaster.observe(recent, recent.end).reason == NOT_FITTED
    assert forecaster.needs_refit(0.0)


def test_insufficient_history_says_what_is_there_and_what_is_needed() -> None:
    history = sinusoid(20 / 24, 60.0)
    forecaster = DemandForecaster()
    report = forecaster.fit(history, history.end)
    assert not report.ready
    assert report.reason == INSUFFICIENT_HISTORY
    assert report.history_seconds == pytest.approx(20 * 3600.0)
    assert "20.0 h" in report.message
    needed = MINUTE.required_history_seconds / 3600.0
    assert f"{needed:.1f} h" in report.message
    assert forecaster.peak(history, history.end) is None


def test_mostly_missing_history_is_insufficient() -> None:
    history = sinusoid(3, 60.0)
    values = history.values.copy()
    values[::3] = np.nan
    values[1::3] = np.nan
    report = DemandForecaster().fit(DemandSeries(history.start, 60.0, values), history.end)
    assert report.reason == INSUFFICIENT_HISTORY
    assert "33%" in report.message


def test_refit_after_losing_history_drops_the_model(
    minute_model: tuple[DemandForecaster, DemandSeries],
) -> None:
    _, demand = minute_model
    forecaster = DemandForecaster(COARSE)
    coarse = demand.resample(300.0)
    assert forecaster.fit(head(coarse, 3 * DAY), START + 3 * DAY).ready
    assert not forecaster.needs_refit(START + 3 * DAY + 60.0)
    assert forecaster.needs_refit(START + 3 * DAY + COARSE.refit_interval_seconds)
    report = forecaster.fit(head(coarse, 0.5 * DAY), START + 3 * DAY + 3600.0)
    assert report.reason == INSUFFICIENT_HISTORY
    assert forecaster.forecast_path(coarse, coarse.end) is None


def test_without_a_model_a_fit_is_retried_sooner() -> None:
    short = sinusoid(20 / 24, 60.0)
    forecaster = DemandForecaster()
    assert forecaster.fit(short, short.end).reason == INSUFFICIENT_HISTORY
    assert MINUTE.retry_interval_seconds < MINUTE.refit_interval_seconds
    assert not forecaster.needs_refit(short.end + MINUTE.retry_interval_seconds - 1.0)
    assert forecaster.needs_refit(short.end + MINUTE.retry_interval_seconds)
    fitted = sinusoid(3, 60.0)
    assert forecaster.fit(fitted, fitted.end).ready
    assert not forecaster.needs_refit(fitted.end + MINUTE.retry_interval_seconds)
    assert forecaster.needs_refit(fitted.end + MINUTE.refit_interval_seconds)


def test_served_forecasts_follow_the_data_not_a_stale_copy(
    minute_model: tuple[DemandForecaster, DemandSeries],
) -> None:
    """Forecasts are computed once per series, and again when any value changes
    (a late scrape revising a minute), whatever the tick asks for."""
    forecaster, demand = minute_model
    recent = head(demand, 3.5 * DAY).tail(forecaster.lookback_seconds)
    first = forecaster.peak(recent, recent.end)
    again = forecaster.peak(recent, recent.end + 30.0)
    assert first is not None and again is not None
    uncached = forecaster.forecast_path(recent, recent.end)
    assert uncached is not None and first.peak == pytest.approx(float(uncached.max()))
    revised = recent.values.copy()
    revised[-5:] *= 3.0  # same length and end, different data
    changed = DemandSeries(recent.start, recent.step, revised)
    bigger = forecaster.peak(changed, changed.end)
    assert bigger is not None and bigger.peak > 1.5 * first.peak
    path = forecaster.forecast_path(changed, changed.end)
    assert path is not None and bigger.peak == pytest.approx(float(path.max()))


def test_nan_holes_are_tolerated() -> None:
    demand = sinusoid(4, 300.0, seed=3)
    values = demand.values.copy()
    rng = np.random.default_rng(7)
    values[rng.random(values.shape) < 0.1] = np.nan  # scattered scrape failures
    values[400:430] = np.nan  # a 2.5 h outage
    holed = DemandSeries(demand.start, demand.step, values)
    forecaster = DemandForecaster(COARSE)
    report = forecaster.fit(head(holed, 3 * DAY), START + 3 * DAY)
    assert report.ready, report.message
    recent = head(holed, 3.4 * DAY)
    tail = recent.values.copy()
    tail[-2:] = np.nan  # the newest two samples are missing
    gappy = DemandSeries(recent.start, recent.step, tail)
    point = forecaster.peak(gappy, gappy.end)
    assert point is not None and math.isfinite(point.peak) and point.peak > 0
    tail[-10:] = np.nan  # nothing in the level window: no basis for a forecast
    blind = DemandSeries(recent.start, recent.step, tail)
    assert forecaster.peak(blind, blind.end) is None


def test_stale_data_gives_no_forecast(
    minute_model: tuple[DemandForecaster, DemandSeries],
) -> None:
    forecaster, demand = minute_model
    recent = head(demand, 3.5 * DAY)
    assert forecaster.peak(recent, recent.end + MINUTE.max_staleness_seconds) is not None
    assert forecaster.peak(recent, recent.end + 10 * 60.0) is None


def test_finer_series_is_averaged_to_the_model_step() -> None:
    coarse = sinusoid(3, 300.0, seed=5)
    fine = DemandSeries(coarse.start, 60.0, np.repeat(coarse.values, 5))
    a, b = DemandForecaster(COARSE), DemandForecaster(COARSE)
    a.fit(coarse, coarse.end)
    b.fit(fine, fine.end)
    assert a.report.backtest_ratio == pytest.approx(b.report.backtest_ratio)
    recent_fine = DemandSeries(coarse.start, 60.0, np.repeat(coarse.values, 5))
    path_a = a.forecast_path(coarse, coarse.end)
    path_b = b.forecast_path(recent_fine, recent_fine.end)
    assert path_a is not None and path_b is not None
    np.testing.assert_allclose(path_a, path_b, rtol=1e-9)


def test_coarser_series_is_rejected() -> None:
    with pytest.raises(ValueError, match="finer"):
        DemandForecaster().fit(sinusoid(3, 300.0), START + 3 * DAY)


def test_two_fits_give_identical_predictions() -> None:
    demand = sinusoid(4, 300.0, seed=11)
    history = head(demand, 3 * DAY)
    recent = head(demand, 3.3 * DAY)
    paths = []
    for _ in range(2):
        forecaster = DemandForecaster(COARSE)
        forecaster.fit(history, history.end)
        path = forecaster.forecast_path(recent, recent.end)
        assert path is not None
        paths.append(path)
    np.testing.assert_array_equal(paths[0], paths[1])


def test_never_forecasts_negative_demand() -> None:
    """Near-idle service: Poisson arrivals around 0.01 requests/s, mostly zero bins."""
    rng = np.random.default_rng(2)
    n = int(4 * DAY / 300.0)
    rate = 0.01 * (1 + np.sin(2 * np.pi * np.arange(n) / 288))
    demand = DemandSeries(START, 300.0, rng.poisson(rate * 300.0) / 300.0)
    forecaster = DemandForecaster(COARSE)
    forecaster.fit(head(demand, 3 * DAY), START + 3 * DAY)
    assert np.mean(demand.values == 0) > 0.2
    for end in range(int(3 * DAY / 300), n, 5):
        path = forecaster.forecast_path(head(demand, end * 300.0), START + end * 300.0)
        assert path is not None
        assert (path >= 0).all()


def _walk(forecaster: DemandForecaster, demand: DemandSeries, first: int, last: int) -> None:
    for end in range(first, last):
        recent = head(demand, end * demand.step).tail(forecaster.lookback_seconds)
        forecaster.observe(recent, recent.end)


def test_rolling_backtest_withdraws_and_recovers() -> None:
    """Fit on a noisy cycle, then (1) a day that repeats yesterday exactly, where
    seasonal naive is perfect, and (2) a day at twice yesterday's level, where
    it is badly wrong."""
    step = COARSE.step_seconds
    per_day = int(DAY / step)
    noisy = sinusoid(5, step, seed=4, noise=0.25).values
    values = np.concatenate([noisy, noisy[-per_day:], 2.0 * noisy[-per_day:]])
    demand = DemandSeries(START, step, values)
    forecaster = DemandForecaster(COARSE)
    assert forecaster.fit(head(demand, 4 * DAY), START + 4 * DAY).ready

    _walk(forecaster, demand, 4 * per_day, 6 * per_day)  # through the copied day
    report = forecaster.report
    assert not report.ready
    assert report.reason == WORSE_THAN_SEASONAL_NAIVE
    assert report.online_ratio is not None and report.online_ratio > 1.0
    assert report.online_samples >= COARSE.online_samples_needed
    assert report.backtest_ratio is not None and report.backtest_ratio < 1.0  # the fit verdict
    recent = head(demand, 6 * DAY)
    assert forecaster.peak(recent, recent.end) is None
    assert forecaster.forecast_path(recent, recent.end) is not None  # still shadowing

    _walk(forecaster, demand, 6 * per_day, 6 * per_day + per_day // 4)  # 6 h of doubled demand
    report = forecaster.report
    assert report.ready, report.message
    assert report.reason == MODEL_BEATS_BASELINE
    assert report.online_ratio is not None and report.online_ratio < 1.0


# ------------------------------------------------------------------ series


def test_resample_averages_aligned_complete_bins() -> None:
    values = np.array([1.0, 2.0, np.nan, 4.0, 5.0, 6.0, np.nan, np.nan, 7.0])
    series = DemandSeries(30.0, 10.0, values)  # 30 s .. 120 s
    out = series.resample(30.0)
    assert out.start == 30.0 and out.step == 30.0
    np.testing.assert_allclose(out.values, [1.5, 5.0, 7.0])
    partial = DemandSeries(35.0, 10.0, values).resample(30.0)  # 35 .. 125: bins 60, 90
    assert partial.start == 60.0
    np.testing.assert_allclose(partial.values, [5.0, 7.0])
    gap = DemandSeries(0.0, 10.0, np.full(6, np.nan)).resample(30.0)
    assert np.isnan(gap.values).all() and len(gap) == 2
    assert series.resample(10.0) is series


@given(
    offset=st.integers(0, 5),
    data=arrays(
        np.float64,
        st.integers(0, 200),
        elements=st.one_of(st.floats(0, 1e4), st.just(np.nan)),
    ),
)
def test_resample_bins_hold_the_mean_of_their_samples(offset: int, data: np.ndarray) -> None:
    series = DemandSeries(1000.0 + 10.0 * offset, 10.0, data)
    out = series.resample(60.0)
    assert out.start % 60.0 == 0.0
    if len(out):
        assert out.start >= series.start and out.end <= series.end
    for k, value in enumerate(out.values):
        lo = round((out.start + 60.0 * k - series.start) / 10.0)
        chunk = data[lo : lo + 6]
        assert chunk.shape == (6,)
        if np.isnan(chunk).all():
            assert np.isnan(value)
        else:
            assert value == pytest.approx(float(np.nanmean(chunk)))


# --------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    seconds=st.floats(0.0, 1.0),
    data=st.data(),
)
def test_short_history_is_never_ready(seconds: float, data: st.DataObject) -> None:
    step = TINY.step_seconds
    n = int(seconds * TINY.required_history_seconds / step)
    values = data.draw(
        arrays(np.float64, n, elements=st.one_of(st.floats(0, 1e6), st.just(np.nan)))
    )
    history = DemandSeries(START, step, values)
    forecaster = DemandForecaster(TINY)
    report = forecaster.fit(history, history.end)
    assert not report.ready
    assert report.reason == INSUFFICIENT_HISTORY
    assert forecaster.peak(history, history.end) is None


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    level=st.floats(0.0, 1e4),
    amplitude=st.floats(0.0, 1.0),
    noise=st.floats(0.0, 1.0),
    missing=st.floats(0.0, 0.4),
    seed=st.integers(0, 2**32 - 1),
    stale=st.floats(-30.0, 60.0),
)
def test_forecasts_are_non_negative_and_peak_is_the_path_max(
    level: float, amplitude: float, noise: float, missing: float, seed: int, stale: float
) -> None:
    rng = np.random.default_rng(seed)
    step = TINY.step_seconds
    n = int(1.5 * TINY.required_history_seconds / step)
    phase = 2 * np.pi * np.arange(n) * step / TINY.season_seconds
    values = level * (1 + amplitude * np.sin(phase)) * np.exp(noise * rng.standard_normal(n))
    values[rng.random(n) < missing] = np.nan
    values[-1] = level  # the level window is never empty
    demand = DemandSeries(START, step, values)
    forecaster = DemandForecaster(TINY)
    fit_at = int(0.8 * n)
    report = forecaster.fit(DemandSeries(START, step, values[:fit_at]), START + fit_at * step)
    now = demand.end + stale
    path = forecaster.forecast_path(demand, now)
    if report.reason == INSUFFICIENT_HISTORY:  # too many holes drawn
        assert path is None and forecaster.peak(demand, now) is None
        return
    assert path is not None
    assert np.isfinite(path).all() and (path >= 0).all()
    point = forecaster.peak(demand, now)
    if forecaster.report.ready:
        assert point is not None
        assert point.peak == pytest.approx(float(path.max()))
        assert all(point.peak >= p for p in path)
        assert point.horizon_seconds >= TINY.lead_time_seconds
    else:
        assert point is None


@given(
    actual=arrays(np.float64, 20, elements=st.floats(0, 1e3)),
    forecast=arrays(np.float64, 20, elements=st.floats(0, 1e3)),
    q=st.floats(0.01, 0.99),
)
def test_pinball_loss_is_zero_only_when_exact(
    actual: np.ndarray, forecast: np.ndarray, q: float
) -> None:
    loss = pinball_loss(actual, forecast, q)
    assert loss >= 0
    assert pinball_loss(actual, actual, q) == 0
    assert (loss == 0) == bool(np.all(actual == forecast)) or loss < 1e-300
    assert loss_ratio(0.0, 0.0) == 1.0


def test_window_max_ignores_missing_and_out_of_range() -> None:
    values = np.array([1.0, np.nan, 3.0, np.nan, np.nan])
    origins = np.array([0, 2, 3, 4], dtype=np.int64)
    out = window_max(values, origins, 2)
    np.testing.assert_array_equal(out[:1], [3.0])
    assert np.isnan(out[1:]).all()
