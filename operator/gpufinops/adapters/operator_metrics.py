"""The operator's own Prometheus metrics, labelled by namespace and workload."""

import contextlib

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LABELS = ("namespace", "workload")

DESIRED_REPLICAS = Gauge(
    "gpufinops_desired_replicas", "Replicas the autoscaler wants for the workload.", LABELS
)
FORECAST_DEMAND = Gauge(
    "gpufinops_forecast_demand",
    "Forecast peak demand over the lead window, requests per second.",
    LABELS,
)
FORECAST_ERROR = Gauge(
    "gpufinops_forecast_error",
    "Forecast backtest error relative to the seasonal-naive forecast (< 1 is better).",
    LABELS,
)
DECISION_SECONDS = Histogram(
    "gpufinops_decision_seconds",
    "Time to read signals and decide one autoscaling tick.",
    LABELS,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TICKS = Counter(
    "gpufinops_autoscaler_ticks_total",
    "Autoscaler ticks by outcome: decided, conflicting_autoscaler, target_not_found.",
    (*LABELS, "outcome"),
)
METRIC_FAILURES = Counter(
    "gpufinops_metric_read_failures_total",
    "Autoscaler ticks whose queue signal could not be read.",
    LABELS,
)


IDLE_GPU_SECONDS = Counter(
    "gpufinops_idle_gpu_seconds_total", "GPU-seconds on nodes with no GPU pod.", ("pool",)
)
IDLE_COST = Counter(
    "gpufinops_idle_cost_usd_total", "Cost of idle GPUs at the pool's price, USD.", ("pool",)
)
NODES_SHUT_DOWN = Counter("gpufinops_nodes_shut_down_total", "Idle GPU nodes shut down.", ("pool",))


def serve(address: str) -> None:
    """Expose /metrics on ``host:port`` (a background thread)."""
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")


def forget(namespace: str, workload: str) -> None:
    """Drop a deleted workload's series so dashboards do not show ghosts."""
    for metric in (DESIRED_REPLICAS, FORECAST_DEMAND, FORECAST_ERROR, DECISION_SECONDS):
        with contextlib.suppress(KeyError):
            metric.remove(namespace, workload)
