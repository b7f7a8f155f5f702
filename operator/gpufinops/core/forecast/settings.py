"""Knobs of the demand forecaster, with the history they imply."""

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpufinops.api.inference import Forecast

DAY = 86400.0
WEEK = 7 * DAY


@dataclass(frozen=True)
class ForecastSettings:
    """How far ahead, how cautiously and from how much history to forecast."""

    quantile: float = 0.9
    """Provision for this quantile of demand: over-forecasting costs GPUs,
    under-forecasting costs latency, and the latter is the expensive one."""
    lead_time_seconds: float = 180.0
    """How long a new GPU pod takes to become ready: capacity ordered now
    only helps from then on, so the forecast must cover that window."""
    step_seconds: float = 60.0
    """Model resolution; a finer input series is averaged onto it."""
    season_seconds: float = DAY
    """The dominant cycle of inference traffic (people sleep)."""
    week_seconds: float = WEEK
    history_days: float = 7.0
    """Most history :meth:`DemandForecaster.fit` learns from (older is ignored),
    which bounds the hourly refit cost. Week-lag features need more than 9 days
    and day-of-week features 14: raise it when Prometheus keeps that much."""
    min_history_seconds: float | None = None
    """Below this the model is not trusted; ``None`` derives it from the season,
    the lookback of the lags and ``min_train_seconds`` (see :attr:`required_history_seconds`)."""
    min_train_seconds: float = 6 * 3600.0
    """Training span needed on top of one season (whose rows lack a seasonal lag)."""
    refit_interval_seconds: float = 6 * 3600.0
    """How long a fitted model serves before a fresh one is fitted. Its
    features are ratios to the current level, so it follows the level at once
    and only learns shapes from the history; a day-old model forecasts as well
    (docs/benchmarks.md). A fresh model also starts a fresh rolling scorecard,
    which needs ``online_min_samples`` scored forecasts (an hour at the default
    step) before it can withdraw a model that stopped beating seasonal naive:
    the interval must leave it hours to act."""
    retry_interval_seconds: float = 3600.0
    """Refit interval while there is no model (too little history): such a fit
    only counts the history, so retrying soon costs nothing and the first model
    is not kept waiting for ``refit_interval_seconds``."""
    max_staleness_seconds: float = 60.0
    """How old the newest sample may be at prediction time (scrape and query
    delay); the model learns that many extra horizons to still cover the window."""
    lag_steps: tuple[int, ...] = (0, 1, 2, 4)
    rolling_seconds: tuple[float, ...] = (300.0, 900.0, 3600.0)
    level_seconds: float = 900.0
    """Window of the level one season (and one week) earlier, against which
    the seasonal features compare the demand then; a forecast also needs a
    sample in the last such window."""
    smoothing_seconds: float = 3600.0
    """Window of the current level that targets and features are divided by,
    so one tree serves quiet nights and busy afternoons alike: an exponentially
    weighted mean of the samples in it (simple exponential smoothing, truncated)."""
    smoothing_alphas: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
    """Smoothing factors the level may use; each fit takes the one whose level
    best forecasts the next ``max_horizon_steps`` samples of its history
    (least absolute error). Smooth noisy traffic wants a slow level, traffic
    that moves in steps a fast one."""
    target_offset: float = 0.02
    """The model learns ``log(demand / level + offset)``: a quantile survives the
    monotone map, ratios far from 1 (a restart after an outage) weigh as
    log-ratios instead of outvoting the rest, and zero demand stays finite."""
    seasonal_window_steps: int = 1
    """Half width of the window averaged around the value one season earlier
    (a single sample is noisy at fine steps)."""
    holdout_seconds: float = DAY
    holdout_fraction: float = 0.2
    """Holdout when the history is shorter than ``holdout_min_seasons`` seasons."""
    holdout_min_seasons: float = 5.0
    max_backtest_ratio: float = 1.0
    """Ready only when model loss / seasonal-naive loss is below this."""
    online_window_seconds: float = 6 * 3600.0
    online_min_samples: int = 60
    """Scored forecasts needed before the rolling backtest overrides the holdout
    one (capped at half of what the window can hold, for coarse steps)."""
    utc_offset_seconds: float = 0.0
    """Shift to local time of the users, so hours and weekends line up with them."""
    min_coverage: float = 0.5
    """Fraction of the history that must be present (not NaN) to fit at all."""
    max_iter: int = 50
    learning_rate: float = 0.2
    max_leaf_nodes: int = 15
    """Boosting size. Half the trees at twice the rate, of half the leaves,
    fit three times faster than 100 x 31 at 0.1 with the same holdout loss on
    the multi-day traces (docs/benchmarks.md); quantile loss spends most of a
    fit computing one percentile per leaf per tree."""
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    random_state: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.quantile < 1.0:
            raise ValueError("quantile must be in (0, 1)")
        if self.step_seconds <= 0 or self.lead_time_seconds <= 0:
            raise ValueError("step_seconds and lead_time_seconds must be positive")
        if self.season_seconds < 4 * self.step_seconds:
            raise ValueError("season_seconds must span at least four steps")
        needed = self.max_horizon_steps + self.seasonal_window_steps
        if self.season_steps <= needed:
            raise ValueError("season too short for the lead window: lags would see the future")
        if any(lag < 0 for lag in self.lag_steps):
            raise ValueError("lag_steps must be non-negative")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError("holdout_fraction must be in (0, 1)")
        if not self.smoothing_alphas or any(not 0.0 < a <= 1.0 for a in self.smoothing_alphas):
            raise ValueError("smoothing_alphas must be non-empty and in (0, 1]")
        if self.target_offset <= 0:
            raise ValueError("target_offset must be positive")

    @classmethod
    def from_spec(cls, forecast: "Forecast") -> "ForecastSettings":
        """The settings an AIWorkload's ``inference.forecast`` asks for: what the
        operator runs and the simulator replays, derived in this one place."""
        return cls(
            quantile=forecast.quantile,
            lead_time_seconds=max(float(forecast.lead_time_seconds), 1.0),
            history_days=float(forecast.history_days),
        )

    @property
    def lead_steps(self) -> int:
        """Target bins in the lead window seen from the end of fresh data."""
        return max(1, math.ceil(self.lead_time_seconds / self.step_seconds - 1e-9))

    @property
    def max_horizon_steps(self) -> int:
        return self.lead_steps + math.ceil(self.max_staleness_seconds / self.step_seconds - 1e-9)

    @property
    def online_samples_needed(self) -> int:
        capacity = int(self.online_window_seconds / self.step_seconds)
        return max(1, min(self.online_min_samples, capacity // 2))

    @property
    def season_steps(self) -> int:
        return max(1, round(self.season_seconds / self.step_seconds))

    @property
    def week_steps(self) -> int:
        return max(1, round(self.week_seconds / self.step_seconds))

    @property
    def level_steps(self) -> int:
        return max(1, round(self.level_seconds / self.step_seconds))

    @property
    def smoothing_steps(self) -> int:
        return max(1, round(self.smoothing_seconds / self.step_seconds))

    @property
    def rolling_steps(self) -> tuple[int, ...]:
        steps = {max(1, round(s / self.step_seconds)) for s in self.rolling_seconds}
        return tuple(sorted(steps))

    @property
    def recent_lookback_steps(self) -> int:
        """Samples before the origin that the non-seasonal features read."""
        return max(
            [
                self.level_steps,
                self.smoothing_steps,
                *self.rolling_steps,
                *(lag + 1 for lag in self.lag_steps),
            ]
        )

    @property
    def lookback_seconds(self) -> float:
        """How much recent data :meth:`DemandForecaster.peak` needs for every
        feature to be present: one week (or season) plus the recent lags."""
        longest = max(self.week_steps, self.season_steps) + self.recent_lookback_steps
        return (longest + self.max_horizon_steps) * self.step_seconds

    @property
    def required_history_seconds(self) -> float:
        """History needed so that, after the holdout is set aside, the model
        still trains on ``min_train_seconds`` of rows that have a seasonal lag."""
        if self.min_history_seconds is not None:
            return self.min_history_seconds
        season = self.season_steps * self.step_seconds
        recent = self.recent_lookback_steps * self.step_seconds
        return (season + recent + self.min_train_seconds) / (1.0 - self.holdout_fraction)
