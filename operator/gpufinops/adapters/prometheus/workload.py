"""A workload's signal source: its queries, a shared client and its history cache.

With a ``SignalBatcher`` (as the operator runs), the preset's instant queries
are answered from batches shared by every workload; without one, each is sent
on its own. Either way ``read_observation`` turns them into the same
``Observation``. The demand history stays per workload: it is cached, and only
its tail is fetched, once per history step.
"""

from __future__ import annotations

import logging
import math

from gpufinops.adapters.prometheus.batch import InstantSource, SignalBatcher
from gpufinops.adapters.prometheus.client import MetricsError, PrometheusClient
from gpufinops.adapters.prometheus.history import DemandHistory
from gpufinops.adapters.prometheus.presets import (
    SignalQueries,
    queries_for,
    service_pods_regex,
)
from gpufinops.adapters.prometheus.signals import read_observation
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.core.forecast.series import DemandSeries
from gpufinops.core.scaling.observation import Observation

log = logging.getLogger(__name__)

HISTORY_STEP_SECONDS = 60.0
"""The forecaster's model step: history is fetched at this resolution."""

HISTORY_RETRY_SECONDS = (60.0, 3600.0)
"""A failed history read is retried after the first, doubling up to the second: the
window is days long, and re-sending it every step would load a Prometheus that is
already failing it."""


class WorkloadSignals:
    """Signals of one Inference AIWorkload, read from Prometheus."""

    def __init__(
        self,
        client: PrometheusClient,
        namespace: str,
        spec: AIWorkloadSpec,
        batcher: SignalBatcher | None = None,
    ) -> None:
        assert spec.inference is not None
        inference = spec.inference
        self.client = client
        ref = inference.target_ref
        # The spot children's pods are the service's too (``spec.inference.spot``).
        spot_pools = inference.spot.pools if inference.spot is not None else []
        pods = service_pods_regex(ref.kind, ref.name, spot_pools) if spot_pools else None
        self.queries: SignalQueries = queries_for(
            inference.metrics, namespace, ref.name, kind=ref.kind, pods=pods
        )
        self.custom = inference.metrics.queue_query is not None or (
            inference.metrics.demand_query is not None
        )
        """Whether the tenant's own PromQL is read (run in the custom query pool)."""
        self.instant: InstantSource = (
            batcher.source(
                inference.metrics, namespace, ref.name, self.queries, client, ref.kind, pods
            )
            if batcher is not None
            else client
        )
        demand = self.queries.arrival_rate
        self.history = (
            DemandHistory(
                client,
                demand,
                history_days=float(inference.forecast.history_days),
                step=HISTORY_STEP_SECONDS,
            )
            if demand is not None
            else None
        )
        self._history_step: int | None = None
        self._history_retry: tuple[float, float] | None = None
        """After a failure: when to try again, and the wait that led there."""

    def observe(self) -> Observation:
        return read_observation(self.instant, self.queries)

    def demand_history(self, now: float) -> DemandSeries | None:
        """The demand history for the forecaster; None when it cannot be read now.

        The window only moves once per history step (a minute), so ticks within
        the step reuse the last answer: a range query per workload per step, not
        per tick. Samples arriving late are still re-read by the next step's
        overlap.
        """
        if self.history is None:
            return None
        step = math.floor(now / HISTORY_STEP_SECONDS + 1e-9)
        if step == self._history_step and self.history.series is not None:
            return self.history.series
        if self._history_retry is not None and now < self._history_retry[0]:
            return self.history.series
        try:
            series = self.history.update(now)
        except MetricsError as exc:
            first, most = HISTORY_RETRY_SECONDS
            wait = first if self._history_retry is None else min(self._history_retry[1] * 2, most)
            self._history_retry = (now + wait, wait)
            log.debug("demand history not read (next try in %gs): %s", wait, exc.reason)
            return self.history.series
        self._history_retry = None
        self._history_step = step
        return series
