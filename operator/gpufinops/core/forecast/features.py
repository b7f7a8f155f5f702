"""Rows ``(origin i, horizon h) -> demand at i + h`` for a direct multi-horizon model.

One function builds the rows for training and for prediction, so the model
never sees features computed one way at fit and another way when serving.
Every feature reads only samples at or before the origin: what the operator
knows when it has to decide.

Values are divided by the current level (mean of the last few minutes) and
the model learns the *ratio* of future to current demand. A quantile of
``y / level`` times ``level`` is the same quantile of ``y`` (the level is
known), and trees cannot extrapolate: learnt in ratios, a Saturday at half
the weekday traffic or a month of growth does not fall off the training range.
"""

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

    @classmethod
    def for_history(
        cls, settings: ForecastSettings, history_seconds: float, level_floor: float
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
        recent = max([self.level_steps, *self.rolling_steps, *(lag + 1 for lag in self.lag_steps)])
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
    level = win.mean(i - layout.level_steps + 1, i)
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
