"""The demand history the forecaster is given: what Prometheus holds at each moment.

A minute of demand becomes visible once it is over and the scrape lag has
passed, and never earlier: :meth:`MinuteHistory.seen` returns a prefix of the
per-minute series, so a policy cannot look ahead even by accident.
"""

import math

import numpy as np

from gpufinops.core.forecast import DemandSeries
from gpufinops.sim.traces import Trace

STEP = 60.0
"""The forecaster's model step; finer history would only be averaged onto it."""


class MinuteHistory:
    """Mean demand (requests/s) per minute on epoch-aligned bins ``[t, t + 60)``."""

    def __init__(self, trace: Trace, lag_seconds: float) -> None:
        self.lag = float(lag_seconds)
        first = math.ceil(trace.start / STEP) * STEP
        offset = int(first - trace.start)
        minutes = (trace.seconds - offset) // int(STEP)
        self.start = first
        if minutes <= 0:
            self.values = np.empty(0, dtype=np.float64)
        else:
            used = trace.work[offset : offset + minutes * int(STEP)]
            self.values = used.reshape(minutes, int(STEP)).mean(axis=1)

    def seen(self, now: float) -> DemandSeries | None:
        """The minutes complete and scraped by ``now`` (``None`` before the first)."""
        count = math.floor((now - self.lag - self.start) / STEP + 1e-9)
        count = min(count, self.values.shape[0])
        if count <= 0:
            return None
        return DemandSeries(self.start, STEP, self.values[:count])
