"""The demand history the forecaster is given: what Prometheus holds at each moment.

A minute of demand becomes visible once it is over and the scrape lag has
passed, and never earlier: :meth:`MinuteHistory.seen` returns a prefix of the
per-minute series, so a policy cannot look ahead even by accident.
"""

import math

import numpy as np

from gpufinops.core.forecast import DemandSeries
from gpufinops.sim.service import View
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

    def seen_at(self, view: View) -> DemandSeries | None:
        return self.seen(view.now)

    def seen(self, now: float) -> DemandSeries | None:
        """The minutes complete and scraped by ``now`` (``None`` before the first)."""
        count = math.floor((now - self.lag - self.start) / STEP + 1e-9)
        count = min(count, self.values.shape[0])
        if count <= 0:
            return None
        return DemandSeries(self.start, STEP, self.values[:count])


class CompletionHistory:
    """Requests served (completions/s) per minute, on the same epoch-aligned minutes:
    the history a forecaster built on the engine's success counter sees. It depends on
    the replicas the policy ran, so it is read from the simulation as it goes, never
    from the trace: minutes served by the last second scraped, and no later ones."""

    def __init__(self, trace: Trace) -> None:
        first = math.ceil(trace.start / STEP) * STEP
        self.start = first
        self.offset = int(first - trace.start)
        self.minutes = max(0, (trace.seconds - self.offset) // int(STEP))

    def seen_at(self, view: View) -> DemandSeries | None:
        if view.served is None:
            raise ValueError("the simulation gave no served work: completions are unknown")
        step = int(STEP)
        count = min((view.scraped - self.offset) // step, self.minutes)
        if count <= 0:
            return None
        edges = self.offset + step * np.arange(count + 1)
        values = np.diff(view.served[edges]) / STEP
        return DemandSeries(self.start, STEP, values)
