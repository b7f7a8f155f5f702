"""GPU utilisation of a workload's pods from NVIDIA's DCGM exporter.

dcgm-exporter (with its Kubernetes pod mapping on) labels ``DCGM_FI_DEV_GPU_UTIL``
with the ``namespace`` and ``pod`` holding each GPU. The peak over a window, not the
latest sample, is what tells idleness: one busy minute between two looks is activity.
"""

from gpufinops.adapters.prometheus.client import MetricsError, PrometheusClient
from gpufinops.adapters.prometheus.presets import pods_regex, quote

GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"


def utilization_query(namespace: str, kind: str, name: str, window_seconds: float) -> str:
    selector = f"namespace={quote(namespace)},pod=~{quote(pods_regex(kind, name))}"
    return f"max(max_over_time({GPU_UTIL}{{{selector}}}[{int(window_seconds)}s]))"


def peak_gpu_utilization(
    prometheus: PrometheusClient, namespace: str, kind: str, name: str, window_seconds: float
) -> float:
    """Highest utilisation (percent) of any GPU of the workload within the window.

    Raises MetricsError when the query fails or finds no series: no data is
    unknown, never idle.
    """
    query = utilization_query(namespace, kind, name, window_seconds)
    value = prometheus.instant(query)
    if value is None:
        raise MetricsError("no DCGM_FI_DEV_GPU_UTIL series for the pods", query=query)
    return value


def node_utilization_query(node_label: str, node: str, window_seconds: float) -> str:
    return f"max(max_over_time({GPU_UTIL}{{{node_label}={quote(node)}}}[{int(window_seconds)}s]))"


def node_peak_gpu_utilization(
    prometheus: PrometheusClient, node_label: str, node: str, window_seconds: float
) -> float:
    """Highest utilisation (percent) of any GPU of ``node`` within the window.

    Raises MetricsError when the query fails or finds no series (unknown, not idle).
    """
    query = node_utilization_query(node_label, node, window_seconds)
    value = prometheus.instant(query)
    if value is None:
        raise MetricsError(f"no {GPU_UTIL} series for node {node}", query=query)
    return value


def mean_utilization_query(namespace: str, kind: str, name: str, window: str) -> str:
    selector = f"namespace={quote(namespace)},pod=~{quote(pods_regex(kind, name))}"
    return f"avg(avg_over_time({GPU_UTIL}{{{selector}}}[{window}]))"


def mean_gpu_utilization(
    prometheus: PrometheusClient, namespace: str, kind: str, name: str, window: str
) -> float:
    """Mean utilisation (percent) over the window of every GPU of the workload's pods.

    Raises MetricsError when the query fails or finds no series.
    """
    query = mean_utilization_query(namespace, kind, name, window)
    value = prometheus.instant(query)
    if value is None:
        raise MetricsError(f"no {GPU_UTIL} series for the pods", query=query)
    return value
