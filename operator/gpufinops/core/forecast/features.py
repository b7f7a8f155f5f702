"""Rows ``(origin i, horizon h) -> demand at i + h`` for a direct multi-horizon model.

One function builds the rows for training and for prediction, so the model
never sees features computed one way at fit and another way when serving.
Every feature reads only samples at or before the origin: what the operator
knows when it has to decide.

Values are divided by the current level and the model learns the *ratio* of
future to current demand (as a log, see :func:`to_target`). A quantile of
``y / level`` times ``level`` is the same quantile of ``y`` (the level is
known), and trees cannot extrapolate: learnt in ratios, a Saturday at half
the weekday traffic or a month of growth does not fall off the training range.

The level is simple exponential smoothing of the recent samples, with the
smoothing factor chosen at fit time on the history (:func:`choose_smoothing`):
traffic that is noisy minute to minute gets a slow level that averages the
noise out, traffic that moves in steps a fast one that is at the new step at
once, so the model does not have to learn persistence through its trees.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gpufinops.core.forecast.series import FloatArray
from gpufinops.core.forecast.settings import DAY, ForecastSettings

IntArray = npt.NDArray[np.int64]

EPOCH_WEEKDAY = 3
"""1970-01-01 was a Thursday (Monday = 0)."""


@dataclass(frozen=True)
class FeatureLayout:
    """Which features a fitted model uses; fixed at fit so serving matches it."""

    step: float
    season_steps: int
    week_steps: int | None
    """``None`` unless a season of rows has a week lag even after the holdout."""
    calendar_week: bool
    """Day-of-week features need two of each weekday, else they just name the day."""
    lag_steps: tuple[int, ...]
    rolling_steps: tuple[int, ...]
    level_steps: int
    seasonal_window: int
    utc_offset: float
    season_seconds: float
    level_floor: float
    """Smallest level divided by, so near-idle periods do not explode the ratios."""
    smoothing_steps: int = 1
    """Samples the current level reads (the last one included)."""
    smoothing_alpha: float = 1.0
    """Smoothing factor of the current level (1: the last sample)."""
    target_offset: float = 0.02
    """The model learns ``log(ratio + target_offset)`` (see :func:`to_target`)."""

    @classmethod
    def for_history(
        cls,
        settings: ForecastSettings,
        history_seconds: float,
        level_floor: float,
        smoothing_alpha: float,
    ) -> "FeatureLayout":
        week = settings.week_steps * settings.step_seconds
        season = settings.season_steps * settings.step_seconds
        return cls(
            step=settings.step_seconds,
            season_steps=settings.season_steps,
            week_steps=settings.week_steps if history_seconds >= week + 2 * season else None,
            calendar_week=history_seconds >= 2 * week,
            lag_steps=tuple(sorted(set(settings.lag_steps))),
            rolling_steps=settings.rolling_steps,
            level_steps=settings.level_steps,
            seasonal_window=settings.seasonal_window_steps,
            utc_offset=settings.utc_offset_seconds,
            season_seconds=settings.season_seconds,
            level_floor=level_floor,
            smoothing_steps=settings.smoothing_steps,
            smoothing_alpha=smoothing_alpha,
            target_offset=settings.target_offset,
        )

    @property
    def first_origin(self) -> int:
        """Earliest origin whose seasonal lag can exist: rows before it would
        teach the model a regime (no season) it never meets when serving."""
        return self.season_steps + self.seasonal_window

    @property
    def lookback_steps(self) -> int:
        """Samples before (and including) the origin that the features read."""
        longest = self.week_steps if self.week_steps is not None else self.season_steps
        recent = max(
            [
                self.level_steps,
                self.smoothing_steps,
                *self.rolling_steps,
                *(lag + 1 for lag in self.lag_steps),
            ]
        )
        return max(longest + self.seasonal_window + self.level_steps, recent)

    def names(self) -> list[str]:
        out = ["horizon", "tod_sin", "tod_cos"]
        if self.calendar_week:
            out += ["dow_sin", "dow_cos", "weekend"]
        out.append("log_level")
        out += [f"lag_{lag}" for lag in self.lag_steps]
        out += [f"mean_{w}" for w in self.rolling_steps]
        out += ["season_change", "season_value", "season_level"]
        if self.week_steps is not None:
            out += ["week_change", "week_value", "week_level"]
        return out


class _Windows:
    """Constant-time NaN-aware window means over one array (prefix sums)."""

    def __init__(self, values: FloatArray) -> None:
        valid = ~np.isnan(values)
        self._n = values.shape[0]
        self._sums = np.concatenate(([0.0], np.cumsum(np.where(valid, values, 0.0))))
        self._counts = np.concatenate(([0], np.cumsum(valid)))

    def mean(self, first: IntArray, last: IntArray) -> FloatArray:
        """Mean of ``values[first..last]`` (inclusive, clipped); NaN when empty."""
        lo = np.clip(first, 0, self._n)
        hi = np.clip(last + 1, 0, self._n)
        hi = np.maximum(hi, lo)
        total = self._sums[hi] - self._sums[lo]
        count = (self._counts[hi] - self._counts[lo]).astype(np.float64)
        out = np.full(total.shape, np.nan, dtype=np.float64)
        np.divide(total, count, out=out, where=count > 0)
        return out


def _recent_windows(values: FloatArray, origins: IntArray, steps: int) -> FloatArray:
    """``values[i - steps + 1 .. i]`` per origin ``i``, newest first; NaN outside."""
    idx = origins[:, None] - np.arange(steps, dtype=np.int64)[None, :]
    inside = (idx >= 0) & (idx < values.shape[0])
    out = np.full(idx.shape, np.nan, dtype=np.float64)
    out[inside] = values[idx[inside]]
    return out


def _smooth(windows: FloatArray, alphas: Sequence[float]) -> FloatArray:
    """Exponentially weighted mean of each row (newest first) for each factor,
    one column per factor, ignoring NaN samples; NaN when a row has none (or
    only ones of vanishing weight)."""
    ages = np.arange(windows.shape[1], dtype=np.float64)[:, None]
    weights = (1.0 - np.asarray(alphas, dtype=np.float64)[None, :]) ** ages
    valid = ~np.isnan(windows)
    total = np.where(valid, windows, 0.0) @ weights
    mass = valid.astype(np.float64) @ weights
    out = np.full(total.shape, np.nan, dtype=np.float64)
    np.divide(total, mass, out=out, where=mass > 1e-12)
    return out


def smoothed_level(values: FloatArray, origins: IntArray, steps: int, alpha: float) -> FloatArray:
    """Simple exponential smoothing of the last ``steps`` samples at each origin:
    ``alpha`` on the newest, ``alpha (1 - alpha)`` on the one before, and so on,
    renormalised over the samples present. Exact from any tail of the series
    that holds the window, so fitting and serving agree."""
    if origins.shape[0] <= values.shape[0] // 8:  # serving: a few rows
        return _smooth(_recent_windows(values, origins, steps), (alpha,))[:, 0]
    # fitting: every origin, one strided pass over the series
    padded = np.concatenate((np.full(steps - 1, np.nan), values))
    windows = np.lib.stride_tricks.sliding_window_view(padded, steps)[:, ::-1]
    level = _smooth(windows, (alpha,))[:, 0]
    inside = (origins >= 0) & (origins < values.shape[0])
    out = np.full(origins.shape, np.nan, dtype=np.float64)
    out[inside] = level[origins[inside]]
    return out


def choose_smoothing(values: FloatArray, settings: ForecastSettings) -> float:
    """The factor in ``settings.smoothing_alphas`` whose level, used as the
    forecast of every step of the longest horizon, has the least absolute
    error over ``values`` (ties go to the first, the slowest by default)."""
    alphas = settings.smoothing_alphas
    n = values.shape[0]
    horizons = settings.max_horizon_steps
    if len(alphas) == 1 or n <= horizons + 1:
        return alphas[0]
    origins = np.arange(n - 1, dtype=np.int64)
    levels = _smooth(_recent_windows(values, origins, settings.smoothing_steps), alphas)
    future = _recent_windows(values, origins + horizons, horizons)  # i + 1 .. i + horizons
    best, chosen = math.inf, alphas[0]
    for column, alpha in enumerate(alphas):
        errors = np.abs(future - levels[:, column, None])
        seen = ~np.isnan(errors)
        if not seen.any():
            continue
        error = float(errors[seen].mean())
        if error < best:
            best, chosen = error, alpha
    return chosen


def to_target(ratio: FloatArray, offset: float) -> FloatArray:
    """What the model learns from a ratio of demand to level (non-negative)."""
    out: FloatArray = np.log(np.maximum(ratio, 0.0) + offset)
    return out


def from_target(learnt: FloatArray, offset: float) -> FloatArray:
    """Inverse of :func:`to_target`, clipped at zero demand."""
    out: FloatArray = np.maximum(np.exp(learnt) - offset, 0.0)
    return out


def build_features(
    layout: FeatureLayout,
    values: FloatArray,
    start: float,
    origins: IntArray,
    horizons: IntArray,
) -> tuple[FloatArray, FloatArray]:
    """Feature matrix and level (divisor) for each ``(origins[k], horizons[k])`` row.

    ``values`` must be on ``layout.step`` starting at ``start``. The level is
    NaN when the origin's recent window holds no data: such rows cannot be
    forecast and the caller drops them.
    """
    win = _Windows(values)
    i = origins
    j = origins + horizons
    level = smoothed_level(values, i, layout.smoothing_steps, layout.smoothing_alpha)
    # Older samples alone are no basis for a forecast: the last level window must hold one.
    level[np.isnan(win.mean(i - layout.level_steps + 1, i))] = np.nan
    level = np.maximum(level, layout.level_floor)  # NaN stays NaN

    target_time = start + j.astype(np.float64) * layout.step + layout.utc_offset
    columns: list[FloatArray] = [horizons.astype(np.float64)]
    phase = 2.0 * np.pi * np.mod(target_time, layout.season_seconds) / layout.season_seconds
    columns += [np.sin(phase), np.cos(phase)]
    if layout.calendar_week:
        days = np.floor(target_time / DAY)
        weekday = np.mod(days + EPOCH_WEEKDAY, 7.0)
        week_phase = 2.0 * np.pi * (weekday + np.mod(target_time, DAY) / DAY) / 7.0
        columns += [np.sin(week_phase), np.cos(week_phase), (weekday >= 5).astype(np.float64)]
    columns.append(np.log1p(level))
    columns += [win.mean(i - lag, i - lag) / level for lag in layout.lag_steps]
    columns += [win.mean(i - w + 1, i) / level for w in layout.rolling_steps]
    periods = [layout.season_steps]
    if layout.week_steps is not None:
        periods.append(layout.week_steps)
    sw = layout.seasonal_window
    for period in periods:
        back = win.mean(j - period - sw, j - period + sw)
        back_level = win.mean(i - period - layout.level_steps + 1, i - period)
        back_level = np.maximum(back_level, layout.level_floor)
        columns += [back / back_level, back / level, back_level / level]
    return np.column_stack(columns), level


def targets(values: FloatArray, origins: IntArray, horizons: IntArray) -> FloatArray:
    """Demand at ``origin + horizon``; NaN where missing or past the end."""
    j = origins + horizons
    out = np.full(j.shape, np.nan, dtype=np.float64)
    inside = j < values.shape[0]
    out[inside] = values[j[inside]]
    return out


def grid(origins: IntArray, horizons: int) -> tuple[IntArray, IntArray]:
    """Every origin paired with every horizon ``1..horizons``, origin-major."""
    h = np.arange(1, horizons + 1, dtype=np.int64)
    return np.repeat(origins, horizons), np.tile(h, origins.shape[0])
