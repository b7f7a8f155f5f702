"""A workload's signal source: its queries, a shared client and its history cache."""

from __future__ import annotations

import logging

from gpufinops.adapters.prometheus.client import MetricsError, PrometheusClient
from gpufinops.adapters.prometheus.history import DemandHistory
from gpufinops.adapters.prometheus.presets import SignalQueries, queries_for
from gpufinops.adapters.prometheus.signals import read_observation
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.core.forecast.series import DemandSeries
from gpufinops.core.scaling.observation import Observation

log = logging.getLogger(__name__)

HISTORY_STEP_SECONDS = 60.0
"""The forecaster's model step: history is fetched at this resolution."""


class WorkloadSignals:
    """Signals of one Inference AIWorkload, read from Prometheus."""

    def __init__(self, client: PrometheusClient, namespace: str, spec: AIWorkloadSpec) -> None:
        assert spec.inference is not None
        inference = spec.inference
        self.client = client
        self.queries: SignalQueries = queries_for(
            inference.metrics, namespace, inference.target_ref.name
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

    def observe(self) -> Observation:
        return read_observation(self.client, self.queries)

    def demand_history(self, now: float) -> DemandSeries | None:
        """The demand history for the forecaster; None when it cannot be read now."""
        if self.history is None:
            return None
        try:
            return self.history.update(now)
        except MetricsError as exc:
            log.debug("demand history not read: %s", exc.reason)
            return self.history.series
