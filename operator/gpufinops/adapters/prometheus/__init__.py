"""Reading the autoscaler's signals and the forecaster's history from Prometheus.

- ``presets``: the PromQL of each serving engine, scoped to one workload;
- ``client``: instant and range queries with typed errors;
- ``signals``: one tick's ``Observation``;
- ``history``: an incremental cache of the demand history.
"""

from gpufinops.adapters.prometheus.client import (
    MAX_POINTS_PER_REQUEST,
    MetricsError,
    PrometheusClient,
    PrometheusUnavailable,
)
from gpufinops.adapters.prometheus.history import DemandHistory
from gpufinops.adapters.prometheus.presets import (
    PRESETS,
    Preset,
    Scope,
    ScopeLabels,
    SignalQueries,
    build_queries,
    queries_for,
)
from gpufinops.adapters.prometheus.signals import read_observation

__all__ = [
    "MAX_POINTS_PER_REQUEST",
    "PRESETS",
    "DemandHistory",
    "MetricsError",
    "Preset",
    "PrometheusClient",
    "PrometheusUnavailable",
    "Scope",
    "ScopeLabels",
    "SignalQueries",
    "build_queries",
    "queries_for",
    "read_observation",
]
