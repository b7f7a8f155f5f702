"""Rolling backtest: score forecasts once their lead window has happened.

The holdout at fit time says how the model did on yesterday; traffic can
change character afterwards (a launch, an outage, a new client). Scoring
every served forecast against what then arrived, next to the seasonal-naive
forecast made at the same moment, lets the forecaster withdraw itself as
soon as it stops earning its keep, and come back when it does again.
"""

from collections import deque
from dataclasses import dataclass

import numpy as np

from gpufinops.core.forecast.baseline import loss_ratio
from gpufinops.core.forecast.series import DemandSeries


@dataclass(frozen=True)
class _Pending:
    origin: float
    """Start of the first bin of the lead window (end of the data used)."""
    peak: float
    naive: float


@dataclass(frozen=True)
class _Score:
    at: float
    model_loss: float
    naive_loss: float


class RollingBacktest:
    """Pinball losses of matured peak forecasts over a sliding time window."""

    def __init__(self, quantile: float, lead_steps: int, step: float, window_seconds: float):
        self._quantile = quantile
        self._lead_steps = lead_steps
        self._step = step
        self._window = window_seconds
        self._pending: dict[int, _Pending] = {}
        self._scores: deque[_Score] = deque()
        self._model_sum = 0.0
        self._naive_sum = 0.0

    def _key(self, origin: float) -> int:
        return round(origin / self._step)

    def has(self, origin: float) -> bool:
        return self._key(origin) in self._pending

    def remember(self, origin: float, peak: float, naive: float) -> None:
        """Keep the first forecast per origin: later ticks on the same data add nothing.

        ``naive`` may be NaN (no data a season back); such a forecast is
        remembered, so it is not recomputed every tick, but never scored.
        """
        if not self.has(origin):
            self._pending[self._key(origin)] = _Pending(origin, peak, naive)

    def score(self, series: DemandSeries, now: float) -> None:
        """Score every pending forecast whose lead window ``series`` now covers."""
        horizon = self._lead_steps * self._step
        for key, item in list(self._pending.items()):
            if item.origin + horizon > series.end + 1e-6 * self._step:
                if item.origin + horizon < now - self._window:
                    del self._pending[key]  # its data never arrived
                continue
            del self._pending[key]
            first = round((item.origin - series.start) / self._step)
            if first < 0 or np.isnan(item.naive):
                continue
            window = series.values[first : first + self._lead_steps]
            if window.size == 0 or bool(np.all(np.isnan(window))):
                continue
            actual = float(np.nanmax(window))
            model_loss = self._loss(actual, item.peak)
            naive_loss = self._loss(actual, item.naive)
            self._scores.append(_Score(item.origin + horizon, model_loss, naive_loss))
            self._model_sum += model_loss
            self._naive_sum += naive_loss
        self._expire(now)

    def _loss(self, actual: float, forecast: float) -> float:
        diff = actual - forecast
        return max(self._quantile * diff, (self._quantile - 1.0) * diff)

    def _expire(self, now: float) -> None:
        while self._scores and self._scores[0].at < now - self._window:
            old = self._scores.popleft()
            self._model_sum -= old.model_loss
            self._naive_sum -= old.naive_loss
        if not self._scores:
            self._model_sum = self._naive_sum = 0.0  # no drift from float sums

    @property
    def samples(self) -> int:
        return len(self._scores)

    @property
    def ratio(self) -> float | None:
        if not self._scores:
            return None
        return loss_ratio(max(self._model_sum, 0.0), max(self._naive_sum, 0.0))
