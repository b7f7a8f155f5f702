"""Demand forecaster on real production traces, walked forward like the operator would.

The traces live outside the repository (``../shared/traces`` from its root,
see the README there); the tests skip when they are absent, saying which file is
missing (``tests.support.traces``). What only a trace exercised here, the forecaster
with a week lag, also runs on a synthetic series, traces or not.
"""

import csv
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from tests.support.traces import trace_path

from gpufinops.core.forecast import DemandForecaster, DemandSeries, ForecastSettings
from gpufinops.core.forecast.baseline import pinball_loss

DAY = 86400.0


def load_binned(name: str) -> DemandSeries:
    """A ``timestamp,requests`` trace as requests/s; ISO-8601 or numeric timestamps."""
    path = trace_path(name)
    times: list[float] = []
    counts: list[float] = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            raw = row["timestamp"]
            try:
                stamp = float(raw)
            except ValueError:
                stamp = datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
            times.append(stamp)
            counts.append(float(row["requests"]))
    gaps = np.diff(times)
    step = float(np.median(gaps))
    assert np.allclose(gaps, step), f"{name} is not evenly binned"
    return DemandSeries(times[0], step, np.asarray(counts, dtype=np.float64) / step)


def walk_forward(
    demand: DemandSeries, settings: ForecastSettings, train_days: float, eval_days: float
) -> tuple[DemandForecaster, float, float, int]:
    """Fit on the first ``train_days``, then at every step of the next
    ``eval_days`` forecast the lead-window peak from the data so far and score
    it, and the value one day earlier, against the actual lead-window peak."""
    step = settings.step_seconds
    values = demand.values
    train_end = int(train_days * DAY / step)
    stop = min(len(values), train_end + int(eval_days * DAY / step))
    forecaster = DemandForecaster(settings)
    history = DemandSeries(demand.start, step, values[:train_end])
    report = forecaster.fit(history, history.end)
    assert report.ready, report.message
    lead, season = settings.lead_steps, settings.season_steps
    model, naive, actual = [], [], []
    for end in range(train_end, stop - lead + 1):
        recent = DemandSeries(demand.start, step, values[:end]).tail(forecaster.lookback_seconds)
        forecaster.observe(recent, recent.end)
        path = forecaster.forecast_path(recent, recent.end)
        assert path is not None
        assert len(path) == lead and (path >= 0).all()
        model.append(float(path.max()))
        naive.append(float(np.nanmax(values[end - season : end - season + lead])))
        actual.append(float(np.nanmax(values[end : end + lead])))
    a, q = np.asarray(actual), settings.quantile
    return (
        forecaster,
        pinball_loss(a, np.asarray(model), q),
        pinball_loss(a, np.asarray(naive), q),
        len(a),
    )


def show(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n  {text}")


def test_azure_2024_conversation_beats_seasonal_naive(capsys: pytest.CaptureFixture[str]) -> None:
    settings = ForecastSettings()  # 60 s step, 180 s lead, q = 0.9
    demand = load_binned("azure-2024-conversation-10s.csv").resample(settings.step_seconds)
    started = time.perf_counter()
    forecaster, model, naive, count = walk_forward(demand, settings, 5, 2)
    show(
        capsys,
        f"azure-2024-conversation, days 6-7, {count} forecasts: pinball@0.9 model {model:.3f} "
        f"vs seasonal naive {naive:.3f} req/s (ratio {model / naive:.3f}); holdout ratio "
        f"{forecaster.report.backtest_ratio:.3f}, rolling ratio "
        f"{forecaster.report.online_ratio:.3f} ({time.perf_counter() - started:.1f} s)",
    )
    assert model < naive
    assert forecaster.report.ready, forecaster.report.message


@pytest.mark.parametrize("train_days", [5, 12])
def test_servegen_language_beats_seasonal_naive(
    capsys: pytest.CaptureFixture[str], train_days: int
) -> None:
    settings = ForecastSettings(step_seconds=600.0, history_days=14)  # 12 days: week lags
    demand = load_binned("servegen-language-m-small-600s.csv")
    started = time.perf_counter()
    forecaster, model, naive, count = walk_forward(demand, settings, train_days, 2)
    show(
        capsys,
        f"servegen-language-m-small, days {train_days + 1}-{train_days + 2}, {count} forecasts: "
        f"pinball@0.9 model {model:.1f} vs seasonal naive {naive:.1f} req/s "
        f"(ratio {model / naive:.3f}); holdout ratio {forecaster.report.backtest_ratio:.3f} "
        f"({time.perf_counter() - started:.1f} s)",
    )
    assert model < naive


def test_a_synthetic_week_with_weekends_beats_seasonal_naive_with_a_week_lag() -> None:
    """The servegen test above is the only one on twelve days of history, where the model
    adds its week-lag features; this series (quiet weekends, a level of its own each day,
    noise) takes that path without the trace files. The walk-forward covers the weekend,
    which yesterday's value alone cannot foresee."""
    settings = ForecastSettings(step_seconds=600.0, history_days=14)
    monday = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    times = monday + np.arange(int(14 * DAY / settings.step_seconds)) * settings.step_seconds
    rng = np.random.default_rng(3)
    day = ((times - monday) // DAY).astype(np.int64)
    level = rng.uniform(0.8, 1.2, size=14)[day] * np.where(day % 7 >= 5, 0.4, 1.0)
    daily = 40 + 30 * np.sin(2 * np.pi * ((times % DAY) / DAY - 0.25))
    values = daily * level * rng.lognormal(0.0, 0.1, size=times.shape[0])
    forecaster, model, naive, count = walk_forward(
        DemandSeries(monday, settings.step_seconds, values), settings, 12, 2
    )
    assert forecaster.lookback_seconds >= 7 * DAY  # the fitted model reads a week back
    assert count == 2 * DAY / settings.step_seconds - settings.lead_steps + 1
    assert model < 0.5 * naive
