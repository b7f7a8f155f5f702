"""Instant queries and Observations read from a real Prometheus scraping a test exporter."""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tests.support.exporter import Exporter
from tests.support.promserver import PrometheusServer, WaitFor

from gpufinops.adapters.prometheus import (
    MetricsError,
    PrometheusClient,
    PrometheusUnavailable,
    Scope,
    build_queries,
    read_observation,
)
from gpufinops.api.inference import MetricsServer

pytestmark = pytest.mark.integration

POD_A = "llm-7d9f8c6b5-x2x4z"
POD_B = "llm-7d9f8c6b5-q8w9e"
OTHER_DEPLOYMENT_POD = "llm-large-6c8b9d7f4-z9z9z"


def labels(namespace: str, pod: str, model: str = "m") -> dict[str, str]:
    return {"namespace": namespace, "pod": pod, "model_name": model}


def test_queue_is_read_back_exactly(
    exporter: Exporter, client: PrometheusClient, wait_for: WaitFor
) -> None:
    exporter.set("vllm:num_requests_waiting", labels("exact", POD_A), 12)
    query = f'vllm:num_requests_waiting{{namespace="exact",pod="{POD_A}",model_name="m"}}'
    assert wait_for(client, query, lambda v: v is not None) == 12.0


def test_preset_sums_only_the_workloads_series(
    exporter: Exporter, client: PrometheusClient, wait_for: WaitFor
) -> None:
    waiting = "vllm:num_requests_waiting"
    exporter.set(waiting, labels("scoped", POD_A), 12)
    exporter.set(waiting, labels("scoped", POD_B), 3)
    exporter.set(waiting, labels("scoped", OTHER_DEPLOYMENT_POD), 100)  # llm-large's pod
    exporter.set(waiting, labels("scoped", POD_A, model="other"), 50)
    exporter.set(waiting, labels("elsewhere", POD_A), 70)
    everything = 'sum(vllm:num_requests_waiting{namespace=~"scoped|elsewhere"})'
    wait_for(client, everything, lambda v: v == 235)
    queries = build_queries(MetricsServer.VLLM, Scope("scoped", "llm", model_name="m"))
    assert client.instant(queries.queue) == 15.0


def test_escaped_values_select_the_right_series(
    exporter: Exporter, client: PrometheusClient, wait_for: WaitFor
) -> None:
    model = 'org/we"ird\\model\nv2'
    waiting = "vllm:num_requests_waiting"
    exporter.set(waiting, labels("escaping", "llm.v2-5f6d7c8b9-abcde", model), 7)
    exporter.set(waiting, labels("escaping", "llmXv2-5f6d7c8b9-abcde", model), 9)  # regex dot
    wait_for(client, 'count(vllm:num_requests_waiting{namespace="escaping"})', lambda v: v == 2)
    queries = build_queries(MetricsServer.VLLM, Scope("escaping", "llm.v2", model_name=model))
    assert client.instant(queries.queue) == 7.0


def test_observation_reads_every_signal(
    exporter: Exporter, client: PrometheusClient, wait_for: WaitFor
) -> None:
    exporter.set("vllm:num_requests_waiting", labels("full", POD_A), 4)
    exporter.set("vllm:num_requests_running", labels("full", POD_A), 8)
    exporter.set("vllm:num_requests_running", labels("full", POD_B), 2)
    # A newer pod exports the new KV-cache name, an older one the old name.
    exporter.set("vllm:kv_cache_usage_perc", labels("full", POD_A), 0.5)
    exporter.set("vllm:gpu_cache_usage_perc", labels("full", POD_B), 0.3)
    exporter.set_rate("vllm:request_success_total", labels("full", POD_A), 6.0)
    # A rate needs a full window of samples: a short one keeps the test short.
    scope = Scope("full", "llm", model_name="m")
    queries = build_queries(MetricsServer.VLLM, scope, rate_window="5s")
    assert queries.throughput is not None
    wait_for(client, queries.throughput, lambda v: v is not None and abs(v - 6.0) < 0.6)

    observation = read_observation(client, queries)
    assert observation.error is None
    assert observation.queue_depth == 4.0
    assert observation.running == 10.0
    assert observation.kv_cache_usage == pytest.approx(0.4)
    assert observation.throughput == pytest.approx(6.0, rel=0.1)
    assert observation.arrival_rate == pytest.approx(6.0, rel=0.1)


ENGINES = {
    # server: (labels of its series, {metric: value}, {counter: per second}, expected)
    MetricsServer.TRITON: (
        {"namespace": "triton", "pod": POD_A, "model": "m"},
        {"nv_inference_pending_request_count": 7},
        {"nv_inference_request_success": 3.0},
        {"queue_depth": 7.0, "running": None, "kv_cache_usage": None, "throughput": 3.0},
    ),
    MetricsServer.TGI: (
        {"namespace": "tgi", "pod": POD_A},
        {"tgi_queue_size": 5, "tgi_batch_current_size": 9},
        {"tgi_request_success": 2.0, "tgi_request_count": 4.0},
        {"queue_depth": 5.0, "running": 9.0, "kv_cache_usage": None, "arrival_rate": 4.0},
    ),
    MetricsServer.SGLANG: (
        {"namespace": "sglang", "pod": POD_A, "model_name": "m"},
        {"sglang:num_queue_reqs": 6, "sglang:num_running_reqs": 11, "sglang:token_usage": 0.7},
        {"sglang:e2e_request_latency_seconds_count": 5.0},
        {"queue_depth": 6.0, "running": 11.0, "kv_cache_usage": 0.7, "throughput": 5.0},
    ),
}


@pytest.mark.parametrize("server", list(ENGINES), ids=lambda s: s.value)
def test_each_engine_preset_reads_its_engines_real_metric_names(
    server: MetricsServer, exporter: Exporter, client: PrometheusClient, wait_for: WaitFor
) -> None:
    series, gauges, counters, expected = ENGINES[server]
    for metric, value in gauges.items():
        exporter.set(metric, series, value)
    for metric, rate in counters.items():
        exporter.set_rate(metric, series, rate)
    queries = build_queries(
        server, Scope(series["namespace"], "llm", model_name="m"), rate_window="5s"
    )
    rated = queries.arrival_rate if "arrival_rate" in expected else queries.throughput
    assert rated is not None
    want = expected.get("arrival_rate", expected.get("throughput"))
    assert want is not None
    wait_for(client, rated, lambda v: v is not None and abs(v - want) < 0.15 * want)
    observation = read_observation(client, queries)
    assert observation.error is None
    for field, value in expected.items():
        got = getattr(observation, field)
        if value is None:
            assert got is None, field
        else:
            assert got == pytest.approx(value, rel=0.15), field


def test_missing_series_is_unknown_with_the_reason_not_zero(client: PrometheusClient) -> None:
    queries = build_queries(MetricsServer.VLLM, Scope("nowhere", "llm", model_name="absent"))
    assert client.instant(queries.queue) is None
    observation = read_observation(client, queries)
    assert observation.queue_depth is None
    assert not observation.available
    assert observation.error == f"query returned no series: {queries.queue}"
    assert observation.running is None
    assert observation.throughput is None


@pytest.mark.parametrize(("value", "shown"), [(math.nan, "nan"), (math.inf, "inf")])
def test_nan_and_inf_are_errors(
    exporter: Exporter, client: PrometheusClient, wait_for: WaitFor, value: float, shown: str
) -> None:
    namespace = f"bad-{shown}"
    exporter.set("vllm:num_requests_waiting", labels(namespace, POD_A), value)
    wait_for(client, f'count(vllm:num_requests_waiting{{namespace="{namespace}"}})', bool)
    queries = build_queries(MetricsServer.VLLM, Scope(namespace, "llm"))
    with pytest.raises(MetricsError, match=shown):
        client.instant(queries.queue)
    observation = read_observation(client, queries)
    assert observation.queue_depth is None
    assert observation.error is not None and shown in observation.error


def test_several_series_are_an_error(
    exporter: Exporter, client: PrometheusClient, wait_for: WaitFor
) -> None:
    exporter.set("vllm:num_requests_waiting", labels("multi", POD_A), 1)
    exporter.set("vllm:num_requests_waiting", labels("multi", POD_B), 2)
    query = 'vllm:num_requests_waiting{namespace="multi"}'
    wait_for(client, f"count({query})", lambda v: v == 2)
    with pytest.raises(MetricsError, match="2 series"):
        client.instant(query)


def test_invalid_query_is_rejected_with_prometheus_reason(client: PrometheusClient) -> None:
    with pytest.raises(MetricsError) as caught:
        client.instant("sum(")
    assert not isinstance(caught.value, PrometheusUnavailable)
    assert "rejected the query (HTTP 400)" in caught.value.reason
    assert "parse error" in caught.value.reason


def test_scalar_results_are_read(client: PrometheusClient) -> None:
    assert client.instant("scalar(vector(2.5))") == 2.5


def test_stopped_prometheus_is_unreachable(doomed_prometheus: PrometheusServer) -> None:
    client = PrometheusClient(doomed_prometheus.url, timeout=5)
    assert client.instant("vector(1)") == 1.0
    doomed_prometheus.kill()

    with pytest.raises(PrometheusUnavailable, match="unreachable") as caught:
        client.instant("vector(1)")
    assert "Connection refused" in caught.value.reason

    queries = build_queries(MetricsServer.VLLM, Scope("ns", "llm"))
    started = time.monotonic()
    observation = read_observation(client, queries)
    assert observation.queue_depth is None
    assert observation.error is not None and "Prometheus unreachable" in observation.error
    assert (observation.running, observation.throughput) == (None, None)
    assert time.monotonic() - started < 5  # no waiting on each of the other signals


# Failures a healthy Prometheus does not produce on demand: a server that never
# answers, a proxy's error page and a body that is not the API's JSON.


@contextlib.contextmanager
def serving(status: int, body: bytes) -> Iterator[str]:
    """A loopback HTTP server answering every GET with ``status`` and ``body``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_silent_server_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts connections, never answers
        client = PrometheusClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)
        with pytest.raises(PrometheusUnavailable, match=r"did not answer within 0\.5s"):
            client.instant("vector(1)")


def test_a_proxy_error_is_unavailable() -> None:
    with serving(502, b"<html>Bad Gateway</html>") as url:
        client = PrometheusClient(url, retries=0)
        with pytest.raises(PrometheusUnavailable, match="HTTP 502"):
            client.instant("vector(1)")


def test_a_body_that_is_not_the_api_json_is_an_error() -> None:
    with serving(200, b"<html>login</html>") as url:
        with pytest.raises(MetricsError, match="unreadable answer") as caught:
            PrometheusClient(url).instant("vector(1)")
        assert not isinstance(caught.value, PrometheusUnavailable)
