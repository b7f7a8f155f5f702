"""The operator's own Prometheus metrics, labelled by namespace and workload."""

import contextlib
import platform

from prometheus_client import Counter, Gauge, Histogram, Info, start_http_server

from gpufinops import __version__

LABELS = ("namespace", "workload")

BUILD_INFO = Info("gpufinops_build", "The running operator's version and Python.")
"""Exported as ``gpufinops_build_info{version=..., python=...} 1``."""

DESIRED_REPLICAS = Gauge(
    "gpufinops_desired_replicas", "Replicas the autoscaler wants for the workload.", LABELS
)
FORECAST_DEMAND = Gauge(
    "gpufinops_forecast_demand",
    "Forecast peak demand over the lead window, requests per second.",
    LABELS,
)
QUEUE_DEPTH = Gauge(
    "gpufinops_queue_depth",
    "Requests waiting, as the autoscaler last read them for the workload (absent: unknown).",
    LABELS,
)
DEMAND = Gauge(
    "gpufinops_demand_requests_per_second",
    "Demand the autoscaler last read for the workload, requests per second.",
    LABELS,
)
CAPACITY_PER_REPLICA = Gauge(
    "gpufinops_capacity_per_replica",
    "Requests per second one replica serves, as learned (or set in capacityPerReplica).",
    LABELS,
)
FALLBACK_ACTIVE = Gauge(
    "gpufinops_fallback_active",
    "1 while the workload's replicas come from its fallback (signals failing), else 0.",
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
    "Autoscaler ticks by outcome: decided, conflicting_autoscaler, target_not_found, "
    "target_unavailable.",
    (*LABELS, "outcome"),
)
METRIC_FAILURES = Counter(
    "gpufinops_metric_read_failures_total",
    "Autoscaler ticks whose queue signal could not be read.",
    LABELS,
)

PROMETHEUS_QUERIES = Counter(
    "gpufinops_prometheus_queries_total",
    "HTTP queries sent to Prometheus, by kind: signals_batch (one preset metric for every "
    "workload), instant (one value, e.g. a custom query), range (demand history, per "
    "chunk), cost_batch (the cost loop's token and GPU utilisation reads for every workload).",
    ("kind",),
)
PROMETHEUS_REFUSED = Counter(
    "gpufinops_prometheus_answers_refused_total",
    "Prometheus answers refused while being read because they passed a bound "
    "(prometheus.limits: series or bytes), by query kind.",
    ("kind",),
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
    BUILD_INFO.info({"version": __version__, "python": platform.python_version()})
    start_http_server(int(port), addr=host or "0.0.0.0")


def forget(namespace: str, workload: str) -> None:
    """Drop a deleted workload's series so dashboards do not show ghosts."""
    for metric in (
        DESIRED_REPLICAS, FORECAST_DEMAND, FORECAST_ERROR, DECISION_SECONDS, QUEUE_DEPTH, DEMAND,
        CAPACITY_PER_REPLICA, FALLBACK_ACTIVE,
    ):  # fmt: skip
        with contextlib.suppress(KeyError):
            metric.remove(namespace, workload)


# Spend (handlers.cost). Label values come from AIWorkload specs and the pool
# config, so series are bounded by workloads x capacity types.
COST_LABELS = ("namespace", "workload", "team", "project", "model", "environment", "cost_center")
COST_TOTAL = Counter(
    "gpufinops_cost_usd_total",
    "GPU spend of the workload since the operator started, USD (use increase()).",
    (*COST_LABELS, "capacity_type"),
)
SPEND_ANOMALIES = Counter(
    "gpufinops_spend_anomalies_total",
    "Spend anomalies raised (an hour spent more than the same hour of past days allows), "
    "by scope: workload, team or model.",
    ("scope",),
)
ENERGY_TOTAL = Counter(
    "gpufinops_energy_kwh_total",
    "Energy of the workload's GPUs since the operator started, kWh (pools with gpuPowerWatts; "
    "times cost.pue).",
    (*COST_LABELS, "capacity_type"),
)
CARBON_TOTAL = Counter(
    "gpufinops_carbon_kgco2e_total",
    "Emissions of that energy at the pools' grid intensity, kgCO2e (location-based).",
    (*COST_LABELS, "capacity_type"),
)
HOURLY_COST = Gauge(
    "gpufinops_hourly_cost_usd",
    "Current GPU spend rate of the workload, USD per hour.",
    (*COST_LABELS, "capacity_type"),
)
BUDGET_USED_RATIO = Gauge(
    "gpufinops_budget_used_ratio",
    "Spend divided by the budget of the tightest period (1 means exceeded).",
    COST_LABELS,
)
GROUP_BUDGET_USED_RATIO = Gauge(
    "gpufinops_group_budget_used_ratio",
    "Spend of a team's or a namespace's AIWorkloads over its budget's tightest period "
    "(budgets.teams / budgets.namespaces of the config; 1 means exceeded).",
    ("scope", "group"),
)
UNALLOCATED_COST = Counter(
    "gpufinops_unallocated_gpu_cost_usd_total",
    "Cost of GPUs on pool nodes that no pod holds (the __idle__ owner), USD.",
    ("pool", "capacity_type"),
)
COST_PER_MILLION_TOKENS = Gauge(
    "gpufinops_cost_per_million_tokens_usd",
    "Current spend rate over the token rate (prompt + generated), USD per million tokens; "
    "basis allocation (all GPU cost of the workload) or usage (weighted by GPU utilisation).",
    ("namespace", "workload", "model", "basis"),
)
TOKEN_COST_BASES = ("allocation", "usage")
UNIT_LABELS = ("namespace", "workload", "model", "basis")
COST_PER_MILLION_INPUT_TOKENS = Gauge(
    "gpufinops_cost_per_million_input_tokens_usd",
    "Current spend rate per million prompt (input) tokens, USD, the GPU cost shared between "
    "input and output tokens at cost.outputTokenWeight (every preset with token counters).",
    UNIT_LABELS,
)
COST_PER_MILLION_OUTPUT_TOKENS = Gauge(
    "gpufinops_cost_per_million_output_tokens_usd",
    "Current spend rate per million generated (output) tokens, USD, the GPU cost shared "
    "between input and output tokens at cost.outputTokenWeight.",
    UNIT_LABELS,
)
COST_PER_REQUEST = Gauge(
    "gpufinops_cost_per_request_usd",
    "Current spend rate over the rate of requests served, USD per request.",
    UNIT_LABELS,
)
UNIT_COSTS = (COST_PER_MILLION_TOKENS, COST_PER_MILLION_INPUT_TOKENS,
              COST_PER_MILLION_OUTPUT_TOKENS, COST_PER_REQUEST)  # fmt: skip
ALERT_DELIVERY_FAILURES = Counter(
    "gpufinops_alert_delivery_failures_total",
    "Budget alerts that could not be delivered to Alertmanager or the webhook.",
)
ALERT_QUEUE_DEPTH = Gauge(
    "gpufinops_alert_queue_depth",
    "Budget alerts waiting in the delivery queue (Events already posted).",
)
ALERT_QUEUE_DROPPED = Counter(
    "gpufinops_alert_queue_dropped_total",
    "Budget alerts dropped undelivered because the delivery queue was full.",
)


def forget_cost(labels: tuple[str, ...], capacity_types: tuple[str, ...]) -> None:
    """Drop one workload's spend series (deleted, or its costAllocation changed)."""
    for ct in capacity_types:
        for metric in (COST_TOTAL, HOURLY_COST, ENERGY_TOTAL, CARBON_TOTAL):
            with contextlib.suppress(KeyError):
                metric.remove(*labels, ct)
    with contextlib.suppress(KeyError):
        BUDGET_USED_RATIO.remove(*labels)
    for basis in TOKEN_COST_BASES:
        for unit in UNIT_COSTS:
            with contextlib.suppress(KeyError):
                unit.remove(labels[0], labels[1], labels[4], basis)
