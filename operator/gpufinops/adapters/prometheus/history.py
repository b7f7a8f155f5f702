"""An incremental cache of one demand query's history, for the forecaster.

Days of history at a one-minute step are thousands of points; fetching them
again every tick would load Prometheus for nothing. The cache fetches the whole
window once, then only the steps after the last one it fetched, plus a few
before it again: samples that arrive late (slow scrapes, remote write) land in
steps already read, and the re-read picks them up.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from gpufinops.core.forecast.series import DemandSeries

DAY = 86_400.0


class RangeSource(Protocol):
    """What runs range queries (``PrometheusClient``, or a recording wrapper in tests)."""

    def range(self, query: str, start: float, end: float, step: float) -> DemandSeries: ...


class DemandHistory:
    """The last ``history_days`` of ``query`` at ``step``, kept up to date incrementally.

    Samples sit on multiples of ``step`` since the epoch, so consecutive
    fetches line up and agree with ``DemandSeries.resample``. The caller
    passes the time: nothing here reads a clock.
    """

    def __init__(
        self,
        source: RangeSource,
        query: str,
        *,
        history_days: float,
        step: float = 60.0,
        overlap_steps: int = 2,
    ) -> None:
        if step <= 0:
            raise ValueError("step must be positive")
        if history_days <= 0:
            raise ValueError("history_days must be positive")
        if overlap_steps < 0:
            raise ValueError("overlap_steps must not be negative")
        self.source = source
        self.query = query
        self.step = float(step)
        self.overlap_steps = overlap_steps
        self.size = max(1, round(history_days * DAY / self.step))  # samples in the window
        self._series: DemandSeries | None = None

    @property
    def series(self) -> DemandSeries | None:
        """The history as of the last ``update``, or ``None`` before the first."""
        return self._series

    def reset(self) -> None:
        """Forget the cache: the next ``update`` fetches the whole window again."""
        self._series = None

    def update(self, now: float) -> DemandSeries:
        """The window ending at the last step at or before ``now``, fetching what is missing.

        A failed query raises ``MetricsError`` and leaves the cache as it was.
        """
        last = math.floor(now / self.step + 1e-9) * self.step
        first = last - (self.size - 1) * self.step
        cached = self._series
        if cached is None or not self._can_extend(cached, first, last):
            fresh = self.source.range(self.query, first, last, self.step)
        else:
            cached_last = cached.end - self.step
            tail_start = max(first, cached_last - self.overlap_steps * self.step)
            fresh = _merge(cached, self.source.range(self.query, tail_start, last, self.step))
        self._series = _window(fresh, first, self.size)
        return self._series

    def _can_extend(self, cached: DemandSeries, first: float, last: float) -> bool:
        """Whether ``cached`` covers the start of the window and only needs a tail."""
        eps = 1e-6 * self.step
        cached_last = cached.end - self.step
        return (
            len(cached) > 0
            and cached.start <= first + eps  # the head of the window is cached
            and cached_last >= first - eps  # and some of the window is
            and cached_last <= last + eps  # time did not go backwards
        )


def _merge(old: DemandSeries, new: DemandSeries) -> DemandSeries:
    """``old`` with ``new`` laid over it; a NaN in ``new`` does not erase a known value."""
    offset = round((new.start - old.start) / old.step)
    size = max(len(old), offset + len(new))
    out = np.full(size, np.nan, dtype=np.float64)
    out[: len(old)] = old.values
    np.copyto(out[offset : offset + len(new)], new.values, where=~np.isnan(new.values))
    return DemandSeries(old.start, old.step, out)


def _window(series: DemandSeries, first: float, size: int) -> DemandSeries:
    """The ``size`` samples of ``series`` from time ``first`` (NaN where it has none)."""
    offset = round((first - series.start) / series.step)
    out = np.full(size, np.nan, dtype=np.float64)
    lo, hi = max(0, offset), min(len(series), offset + size)
    if hi > lo:
        out[lo - offset : hi - offset] = series.values[lo:hi]
    return DemandSeries(first, series.step, out)
