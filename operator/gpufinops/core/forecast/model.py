"""The demand forecaster: fit hourly on history, forecast the lead-window peak every tick.

GPU pods take minutes to become ready, so scaling on the demand of *now*
is always late. The forecaster learns a quantile of demand at each step of
the lead window (one gradient-boosted model, the horizon being a feature)
and hands the scaler the largest of them, as Crane's EffectiveHPA does.
It only claims to be ready while it beats the seasonal-naive forecast,
first on a holdout and then on its own served forecasts.
"""

import math
from dataclasses import replace

import numpy as np

from gpufinops.core.forecast.baseline import (
    loss_ratio,
    pinball_loss,
    seasonal_naive_peak,
    window_max,
)
from gpufinops.core.forecast.features import (
    FeatureLayout,
    IntArray,
    build_features,
    choose_smoothing,
    from_target,
    grid,
    targets,
    to_target,
)
from gpufinops.core.forecast.online import RollingBacktest
from gpufinops.core.forecast.report import (
    INSUFFICIENT_HISTORY,
    MODEL_BEATS_BASELINE,
    NOT_FITTED,
    WORSE_THAN_SEASONAL_NAIVE,
    ForecastPoint,
    ForecastReport,
)
from gpufinops.core.forecast.series import DemandSeries, FloatArray
from gpufinops.core.forecast.settings import DAY, ForecastSettings
from gpufinops.core.forecast.trees import Forest

__all__ = ["DemandForecaster", "ForecastPoint", "ForecastReport", "ForecastSettings"]

MIN_BACKTEST_POINTS = 10
"""Fewer scored holdout forecasts than this say nothing about the model."""


def _hours(seconds: float) -> str:
    return f"{seconds / 3600.0:.1f} h"


class DemandForecaster:
    """Stateful wrapper around one fitted model and its rolling scorecard.

    Pure: time comes in as ``now`` and the only randomness is seeded, so a
    simulation replays exactly. Not thread-safe; one instance per workload.
    """

    def __init__(self, settings: ForecastSettings | None = None) -> None:
        self.settings = settings or ForecastSettings()
        self._model: Forest | None = None
        self._layout: FeatureLayout | None = None
        self._cached: tuple[DemandSeries, FloatArray | None] | None = None
        self._fit_report = ForecastReport(
            ready=False, reason=NOT_FITTED, message="the forecaster has not been fitted yet"
        )
        self._online = self._new_scorecard()

    def _new_scorecard(self) -> RollingBacktest:
        s = self.settings
        return RollingBacktest(s.quantile, s.lead_steps, s.step_seconds, s.online_window_seconds)

    # ----------------------------------------------------------------- state

    @property
    def report(self) -> ForecastReport:
        """The holdout verdict until enough served forecasts have been scored,
        then the rolling verdict: recent evidence outranks yesterday's."""
        fit = self._fit_report
        ratio = self._online.ratio
        samples = self._online.samples
        if self._model is None:
            return fit
        base = replace(fit, online_ratio=ratio, online_samples=samples)
        if ratio is None or samples < self.settings.online_samples_needed:
            return base
        window = _hours(self.settings.online_window_seconds)
        if ratio < self.settings.max_backtest_ratio:
            return replace(
                base,
                ready=True,
                reason=MODEL_BEATS_BASELINE,
                message=f"over the last {window} the model's pinball loss is {ratio:.2f}x "
                f"that of the seasonal-naive forecast ({samples} forecasts scored)",
            )
        return replace(
            base,
            ready=False,
            reason=WORSE_THAN_SEASONAL_NAIVE,
            message=f"over the last {window} the model's pinball loss is {ratio:.2f}x "
            f"that of the seasonal-naive forecast ({samples} forecasts scored); "
            "scale on observed demand until it recovers",
        )

    @property
    def lookback_seconds(self) -> float:
        """How much recent data :meth:`peak` and :meth:`observe` should be given."""
        if self._layout is None:
            return self.settings.lookback_seconds
        steps = self._layout.lookback_steps + self.settings.max_horizon_steps
        return steps * self.settings.step_seconds

    def needs_refit(self, now: float) -> bool:
        """A fitted model is refitted every ``refit_interval_seconds``; without
        one (too little history) a fit is retried every ``retry_interval_seconds``."""
        fitted_at = self._fit_report.fitted_at
        if fitted_at is None:
            return True
        s = self.settings
        interval = s.refit_interval_seconds if self._model is not None else s.retry_interval_seconds
        return now - fitted_at >= interval

    # ------------------------------------------------------------------- fit

    def fit(self, history: DemandSeries, now: float) -> ForecastReport:
        """Learn from the last ``history_days`` of ``history`` (any step at or
        below the model step; a coarser one raises ValueError).

        Backtests on the last day (or fraction) first, then refits on all of it,
        so the verdict is about data the scored model never saw. A failed fit
        drops the previous model: the history given is the truth.
        """
        s = self.settings
        series = history.tail(s.history_days * DAY).resample(s.step_seconds)
        values, start = _trim(series)
        history_seconds = values.shape[0] * s.step_seconds
        self._model, self._layout, self._cached = None, None, None
        needed = s.required_history_seconds
        if history_seconds < needed:
            return self._set(
                INSUFFICIENT_HISTORY,
                f"only {_hours(history_seconds)} of demand history; the forecaster needs "
                f"{_hours(needed)} (a season of {_hours(s.season_seconds)} for the "
                "seasonal lag, plus training and holdout data)",
                history_seconds,
                now,
            )
        coverage = float(np.mean(~np.isnan(values)))
        if coverage < s.min_coverage:
            return self._set(
                INSUFFICIENT_HISTORY,
                f"only {coverage:.0%} of the {_hours(history_seconds)} of demand history "
                f"has samples; the forecaster needs {s.min_coverage:.0%}",
                history_seconds,
                now,
            )
        floor = max(1e-6, 0.05 * float(np.nanmean(values)))
        n = values.shape[0]
        holdout = s.holdout_seconds
        if history_seconds < s.holdout_min_seasons * s.season_seconds:
            holdout = s.holdout_fraction * history_seconds
        cut = n - max(1, round(holdout / s.step_seconds))
        # The holdout verdict is about data the trial never saw, its level's
        # smoothing included; the served model chooses it on all the history.
        trial_layout = FeatureLayout.for_history(
            s, history_seconds, floor, choose_smoothing(values[: max(cut, 0)], s)
        )
        origins, horizons = grid(
            np.arange(trial_layout.first_origin, n - 1, dtype=np.int64), s.max_horizon_steps
        )
        y = targets(values, origins, horizons)
        x, level = build_features(trial_layout, values, start, origins, horizons)
        train = ~np.isnan(y) & ~np.isnan(level) & (origins + horizons < cut)
        losses = None
        if int(train.sum()) >= 2 * s.min_samples_leaf:
            trial = self._train(x[train], y[train] / level[train], trial_layout)
            losses = self._holdout_losses(trial, trial_layout, values, start, cut)
        if losses is None:
            return self._set(
                INSUFFICIENT_HISTORY,
                f"{_hours(history_seconds)} of demand history leave too few samples with "
                "a value one season earlier to train and backtest on",
                history_seconds,
                now,
            )
        model_loss, naive_loss = losses
        ratio = loss_ratio(model_loss, naive_loss)
        layout = replace(trial_layout, smoothing_alpha=choose_smoothing(values, s))
        if layout != trial_layout:
            x, level = build_features(layout, values, start, origins, horizons)
        usable = ~np.isnan(y) & ~np.isnan(level)
        self._model = self._train(x[usable], y[usable] / level[usable], layout)
        self._layout = layout
        verdict = (
            f"on the last {_hours((n - cut) * s.step_seconds)} the model's pinball loss at "
            f"q={s.quantile:g} is {model_loss:.3g} vs {naive_loss:.3g} for the seasonal-naive "
            f"forecast (ratio {ratio:.2f})"
        )
        if ratio < s.max_backtest_ratio:
            return self._set(MODEL_BEATS_BASELINE, verdict, history_seconds, now, ratio, True)
        return self._set(
            WORSE_THAN_SEASONAL_NAIVE,
            verdict + "; scale on observed demand instead",
            history_seconds,
            now,
            ratio,
        )

    def _holdout_losses(
        self, trial: Forest, layout: FeatureLayout, values: FloatArray, start: float, cut: int
    ) -> tuple[float, float] | None:
        """Pinball losses of the model and of seasonal naive on the lead-window
        peaks after ``cut``, walking forward as in production; None if too few."""
        s = self.settings
        n = values.shape[0]
        scored = np.arange(max(cut - 1, layout.first_origin), n - s.lead_steps, dtype=np.int64)
        if scored.shape[0] < MIN_BACKTEST_POINTS:
            return None
        predicted = np.max(_paths(trial, layout, values, start, scored, s.lead_steps), axis=1)
        actual = window_max(values, scored, s.lead_steps)
        naive = seasonal_naive_peak(values, scored, s.lead_steps, layout.season_steps)
        ok = ~np.isnan(actual) & ~np.isnan(naive) & ~np.isnan(predicted)
        if int(ok.sum()) < MIN_BACKTEST_POINTS:
            return None
        return (
            pinball_loss(actual[ok], predicted[ok], s.quantile),
            pinball_loss(actual[ok], naive[ok], s.quantile),
        )

    def _train(self, x: FloatArray, ratio: FloatArray, layout: FeatureLayout) -> Forest:
        """Fit a fresh regressor to the ratios of demand to level (as
        :func:`to_target` maps them), flattened for serving. A column with no
        value at all (a lag whose data was missing throughout) is zeroed:
        scikit-learn cannot bin it, and a constant column is never split on,
        so serving values do not matter."""
        # Imported here: scikit-learn takes about a second to load, and most
        # importers of this package (adapters, CLI) only need DemandSeries.
        from sklearn.ensemble import HistGradientBoostingRegressor

        empty = np.all(np.isnan(x), axis=0)
        if empty.any():
            x = x.copy()
            x[:, empty] = 0.0
        s = self.settings
        model = HistGradientBoostingRegressor(
            loss="quantile",
            quantile=s.quantile,
            max_iter=s.max_iter,
            learning_rate=s.learning_rate,
            max_leaf_nodes=s.max_leaf_nodes,
            min_samples_leaf=s.min_samples_leaf,
            l2_regularization=s.l2_regularization,
            early_stopping=False,
            random_state=s.random_state,
        )
        return Forest.from_sklearn(model.fit(x, to_target(ratio, layout.target_offset)))

    def _set(
        self,
        reason: str,
        message: str,
        history_seconds: float,
        now: float,
        ratio: float | None = None,
        ready: bool = False,
    ) -> ForecastReport:
        self._fit_report = ForecastReport(
            ready=ready,
            reason=reason,
            message=message,
            backtest_ratio=ratio,
            history_seconds=history_seconds,
            fitted_at=float(now),
        )
        return self.report

    # --------------------------------------------------------------- serving

    def peak(self, recent: DemandSeries, now: float) -> ForecastPoint | None:
        """Demand to provision for over ``(now, now + lead]``; None when not ready,
        or when ``recent`` cannot support a forecast (see :meth:`forecast_path`)."""
        if not self.report.ready:
            return None
        window = self._window(recent, now)
        if window is None:
            return None
        series, horizons = window
        path = self._full_path(series)
        if path is None:
            return None
        reach = series.end + horizons * self.settings.step_seconds - now
        return ForecastPoint(peak=float(np.max(path[:horizons])), horizon_seconds=reach, at=now)

    def forecast_path(self, recent: DemandSeries, now: float) -> FloatArray | None:
        """Quantile forecast for each step from the end of ``recent`` to past
        ``now + lead``, whether or not the model is ready (for diagnostics).

        None when not fitted, when ``recent`` is empty or has no sample in its
        last level window, or when it is too stale for the horizons the model
        learnt (``max_staleness_seconds``).
        """
        window = self._window(recent, now)
        return None if window is None else self._path(*window)

    def observe(self, recent: DemandSeries, now: float) -> ForecastReport:
        """Score matured forecasts against what arrived and remember the one
        for the newest data, even while not ready, so a recovery can be seen.

        Call it every tick with the same ``recent`` as :meth:`peak`.
        """
        if self._model is None or self._layout is None:
            return self.report
        series = self._prepare(recent)
        if series is None:
            return self.report
        self._online.score(series, now)
        s = self.settings
        if not self._online.has(series.end):
            path = self._full_path(series)
            if path is not None:
                last = np.array([len(series) - 1], dtype=np.int64)
                naive = seasonal_naive_peak(
                    series.values, last, s.lead_steps, self._layout.season_steps
                )
                peak = float(np.max(path[: s.lead_steps]))
                self._online.remember(series.end, peak, float(naive[0]))
        return self.report

    def _prepare(self, recent: DemandSeries) -> DemandSeries | None:
        """Only the tail the features read, on the model step."""
        if self._model is None:
            return None
        s = self.settings
        needed = self.lookback_seconds + s.step_seconds + recent.step
        series = recent.tail(needed).resample(s.step_seconds)
        return series if len(series) else None

    def _window(self, recent: DemandSeries, now: float) -> tuple[DemandSeries, int] | None:
        """The series and how many steps past its end reach ``now + lead``."""
        series = self._prepare(recent)
        if series is None:
            return None
        s = self.settings
        reach = math.ceil((now + s.lead_time_seconds - series.end) / s.step_seconds - 1e-9)
        horizons = max(1, reach)
        return None if horizons > s.max_horizon_steps else (series, horizons)

    def _full_path(self, series: DemandSeries) -> FloatArray | None:
        """:meth:`_path` to the longest horizon the model learnt, computed once
        per series: every tick between two scrapes asks about the same data, and
        a row's forecast does not depend on how many horizons are asked for."""
        cached = self._cached
        if cached is not None:
            seen, path = cached
            if (
                seen.start == series.start
                and seen.step == series.step
                and np.array_equal(seen.values, series.values, equal_nan=True)
            ):
                return path
        path = self._path(series, self.settings.max_horizon_steps)
        self._cached = (DemandSeries(series.start, series.step, series.values.copy()), path)
        return path

    def _path(self, series: DemandSeries, horizons: int) -> FloatArray | None:
        assert self._model is not None and self._layout is not None
        last = np.array([len(series) - 1], dtype=np.int64)
        table = _paths(self._model, self._layout, series.values, series.start, last, horizons)
        return None if np.isnan(table[0, 0]) else table[0]


def _paths(
    model: Forest,
    layout: FeatureLayout,
    values: FloatArray,
    start: float,
    origins: IntArray,
    horizons: int,
) -> FloatArray:
    """Non-negative quantile forecasts, one row per origin, one column per
    horizon ``1..horizons``; a row is NaN when its origin has no recent level."""
    o, h = grid(origins, horizons)
    x, level = build_features(layout, values, start, o, h)
    out = np.full(o.shape, np.nan, dtype=np.float64)
    ok = ~np.isnan(level)
    if ok.any():
        out[ok] = from_target(model.predict(x[ok]), layout.target_offset) * level[ok]
    return out.reshape(origins.shape[0], horizons)


def _trim(series: DemandSeries) -> tuple[FloatArray, float]:
    """Drop leading and trailing gaps: they are not history, just absence of it."""
    valid = ~np.isnan(series.values)
    if not valid.any():
        return series.values[:0], series.start
    first = int(np.argmax(valid))
    last = len(series) - int(np.argmax(valid[::-1]))
    return series.values[first:last], series.start + first * series.step
