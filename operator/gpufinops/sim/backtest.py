"""Rolling-origin backtest of the demand forecaster against the yardsticks users know.

At every origin each method sees only the demand before it and forecasts the
same target: by default the peak of the per-minute demand over the next
``horizon`` (what the autoscaler provisions for), or the value at the horizon.
Models are refitted every ``refit_seconds`` on the history so far; between
refits the forecaster serves from its fitted model as the operator does, and
Holt-Winters keeps its fitted parameters while its level, trend and seasonal
states follow each new observation.
"""

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gpufinops.core.forecast import DemandForecaster, DemandSeries, ForecastSettings
from gpufinops.core.forecast.series import FloatArray
from gpufinops.sim.history import STEP, MinuteHistory
from gpufinops.sim.threads import single_thread
from gpufinops.sim.traces import Trace

Target = Literal["peak", "value"]
METHODS = ("gpufinops", "seasonal_naive", "holt_winters")
DAY = 86400.0


@dataclass(frozen=True)
class Scores:
    smape: float
    """Symmetric MAPE in percent (0-200)."""
    mase: float
    """Mean absolute error over that of the in-sample seasonal-naive forecast."""

    def to_json(self) -> dict[str, float]:
        return {"smape": round(self.smape, 3), "mase": round(self.mase, 4)}


@dataclass(frozen=True)
class Backtest:
    trace: str
    horizon_seconds: float
    target: Target
    quantile: float
    origins: int
    refits: int
    first_origin: float
    scores: dict[str, Scores]
    cpu_seconds: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: self.scores[name].to_json() for name in METHODS}
        out.update(
            trace=self.trace,
            horizon_seconds=self.horizon_seconds,
            target=self.target,
            quantile=self.quantile,
            origins=self.origins,
            refits=self.refits,
            first_origin=self.first_origin,
            cpu_seconds={k: round(v, 2) for k, v in self.cpu_seconds.items()},
        )
        return out


def smape(actual: FloatArray, forecast: FloatArray) -> float:
    denominator = np.abs(actual) + np.abs(forecast)
    ratio = np.zeros_like(actual)
    np.divide(2.0 * np.abs(forecast - actual), denominator, out=ratio, where=denominator > 0)
    return float(100.0 * ratio.mean())


def mase(actual: FloatArray, forecast: FloatArray, scale: float) -> float:
    return float(np.mean(np.abs(forecast - actual)) / scale) if scale > 0 else math.inf


def targets(values: FloatArray, horizon: int, target: Target) -> FloatArray:
    """What is forecast from origin ``i`` (data ``values[:i]``): NaN past the end."""
    n = values.shape[0]
    out = np.full(n + 1, np.nan)
    if n < horizon:
        return out
    if target == "value":
        out[: n - horizon + 1] = values[horizon - 1 :]
    else:
        windows = np.lib.stride_tricks.sliding_window_view(values, horizon)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows stay NaN
            out[: n - horizon + 1] = np.nanmax(windows, axis=1)
    return out


class HoltWinters:
    """Additive Holt-Winters with a damped trend: parameters fitted by statsmodels,
    states then updated per observation with the same recursions (statsmodels'
    own ``_predict`` form), since refitting per origin would cost seconds each."""

    def __init__(self, season: int) -> None:
        self.season = season
        self.ready = False

    def fit(self, history: FloatArray) -> None:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        y = np.asarray(history, dtype=np.float64)
        y = np.where(np.isnan(y), np.nanmean(y), y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = ExponentialSmoothing(
                y,
                trend="add",
                damped_trend=True,
                seasonal="add",
                seasonal_periods=self.season,
                initialization_method="heuristic",
            ).fit()
        p = result.params
        self.alpha = float(p["smoothing_level"])
        self.beta = float(p["smoothing_trend"])
        self.gamma = float(p["smoothing_seasonal"])
        self.phi = float(p["damping_trend"])
        self.level = float(p["initial_level"])
        self.trend = float(p["initial_trend"])
        self.seasonal = [float(s) for s in p["initial_seasons"]]
        self.ready = True
        for value in y:
            self.update(float(value))

    def update(self, value: float) -> None:
        """One observation (NaN: the one-step forecast stands in for it)."""
        season = self.seasonal[-self.season]
        damped = self.phi * self.trend
        if math.isnan(value):
            value = self.level + damped + season
        level = self.alpha * (value - season) + (1 - self.alpha) * (self.level + damped)
        self.trend = self.beta * (level - self.level) + (1 - self.beta) * damped
        self.seasonal.append(self.gamma * (value - self.level - damped) + (1 - self.gamma) * season)
        if len(self.seasonal) > 4 * self.season:
            del self.seasonal[: -self.season]
        self.level = level

    def forecast(self, steps: int) -> FloatArray:
        h = np.arange(1, steps + 1)
        damping = np.cumsum(self.phi**h)
        seasons = np.array([self.seasonal[-self.season + (k - 1) % self.season] for k in h])
        path: FloatArray = np.maximum(self.level + damping * self.trend + seasons, 0.0)
        return path


def backtest(
    trace: Trace,
    horizon_seconds: float = 900.0,
    *,
    quantile: float = 0.9,
    refit_seconds: float = DAY,
    stride_seconds: float = STEP,
    target: Target = "peak",
    progress: Callable[[float], None] | None = None,
) -> Backtest:
    """Score the three methods on every origin from when all can forecast."""
    with single_thread():
        return _backtest(trace, horizon_seconds, quantile, refit_seconds, stride_seconds, target,
                         progress)  # fmt: skip


def _backtest(
    trace: Trace,
    horizon_seconds: float,
    quantile: float,
    refit_seconds: float,
    stride_seconds: float,
    target: Target,
    progress: Callable[[float], None] | None,
) -> Backtest:
    history = MinuteHistory(trace, 0.0)
    values, start = history.values, history.start
    n = values.shape[0]
    horizon = max(1, math.ceil(horizon_seconds / STEP - 1e-9))
    settings = ForecastSettings(lead_time_seconds=horizon * STEP, quantile=quantile)
    season = settings.season_steps
    needed = max(
        math.ceil(settings.required_history_seconds / STEP),
        2 * season + 10,  # Holt-Winters' heuristic start needs two full seasons
    )
    if needed + horizon > n:
        raise ValueError(
            f"{trace.name}: {n * STEP / DAY:.2f} days of demand; a backtest at "
            f"{horizon * STEP:g} s needs {(needed + horizon) * STEP / DAY:.2f} days "
            "(two daily seasons before the first origin)"
        )
    stride = max(1, round(stride_seconds / STEP))
    refit = max(1, round(refit_seconds / STEP))
    actual_all = targets(values, horizon, target)
    origins = np.arange(needed, n - horizon + 1, stride)

    cpu = dict.fromkeys(METHODS, 0.0)
    forecaster: DemandForecaster | None = None
    hw = HoltWinters(season)
    hw_seen = 0
    last_fit = -refit
    refits = 0
    rows: list[tuple[float, float, float, float]] = []
    window = round(settings.history_days * DAY / STEP)
    for k, origin in enumerate(origins):
        i = int(origin)
        series = DemandSeries(start, STEP, values[:i])
        if i - last_fit >= refit:
            last_fit, refits = i, refits + 1
            began = time.process_time()
            forecaster = DemandForecaster(settings)
            forecaster.fit(series, series.end)
            cpu["gpufinops"] += time.process_time() - began
            began = time.process_time()
            hw.fit(values[max(0, i - window) : i])
            hw_seen = i
            cpu["holt_winters"] += time.process_time() - began
        began = time.process_time()
        for value in values[hw_seen:i]:
            hw.update(float(value))
        hw_seen = i
        hw_path = hw.forecast(horizon)
        cpu["holt_winters"] += time.process_time() - began
        assert forecaster is not None
        began = time.process_time()
        path = forecaster.forecast_path(series.tail(forecaster.lookback_seconds), series.end)
        cpu["gpufinops"] += time.process_time() - began
        naive = values[i - season : i - season + horizon]
        if path is None or path.shape[0] < horizon or np.all(np.isnan(naive)):
            continue
        rows.append(
            (
                float(actual_all[i]),
                _reduce(path[:horizon], target),
                _reduce(naive, target),
                _reduce(hw_path, target),
            )
        )
        if progress is not None and k % 50 == 0:
            progress(k / len(origins))
    table = np.array(rows, dtype=np.float64).reshape(-1, 4)
    table = table[~np.isnan(table).any(axis=1)]
    if table.shape[0] == 0:
        raise ValueError(f"{trace.name}: no origin where every method could forecast")
    # MASE scale: in-sample error of the seasonal-naive forecast of the same target.
    inside = np.arange(season, needed - horizon + 1)
    scale = float(np.nanmean(np.abs(actual_all[inside] - actual_all[inside - season])))
    a = table[:, 0]
    scores = {
        name: Scores(smape(a, table[:, j]), mase(a, table[:, j], scale))
        for j, name in enumerate(METHODS, start=1)
    }
    return Backtest(
        trace.name,
        horizon * STEP,
        target,
        quantile,
        int(table.shape[0]),
        refits,
        start + float(origins[0]) * STEP,
        scores,
        cpu,
    )


def _reduce(path: FloatArray, target: Target) -> float:
    if target == "value":
        return float(path[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmax(path))
