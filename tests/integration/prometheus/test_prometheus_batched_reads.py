"""Batched signals against a real Prometheus: the same numbers as per-workload queries.

Both paths read the same exporter data. Pinned to one evaluation time, every
signal of every workload must agree to rounding (Prometheus sums in another
order); read live, as the operator does, the gauges agree exactly and rates
within what a few seconds between the two evaluations can move them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.exporter import Exporter
from tests.support.inference import inference_spec as spec
from tests.support.inference import model_pod as pod
from tests.support.promserver import PrometheusServer, wait_for

from gpufinops.adapters.prometheus import PrometheusClient, read_observation
from gpufinops.adapters.prometheus.batch import PrometheusVectors, Row, SignalBatcher
from gpufinops.adapters.prometheus.workload import WorkloadSignals
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.core.scaling.observation import Observation

pytestmark = pytest.mark.integration

SIGNALS = ("queue_depth", "running", "arrival_rate", "throughput", "kv_cache_usage")


class Pinned:
    """Both query paths evaluated at one instant, so their answers must be equal."""

    def __init__(self, client: PrometheusClient, at: float) -> None:
        self.client, self.at = client, at
        self.vectors = PrometheusVectors(client)

    def instant(self, query: str) -> float | None:
        return self.client.instant(query, at=self.at)

    def vector(self, query: str) -> list[Row]:
        return self.vectors.vector(query, at=self.at)


WORKLOADS: list[tuple[str, AIWorkloadSpec]] = [
    ("batch-a", spec("llm", modelName="m")),
    ("batch-a", spec("llm-1", modelName="m")),
    ("batch-a", spec("llm-1")),  # every model of its pods
    ("batch-b", spec("llm", modelName="m")),
    ("batch-b", spec("chat", server="tgi")),
    ("batch-b", spec("absent", modelName="m")),  # no series: unknown, never zero
    ("batch-b", spec("broken", modelName="m")),  # NaN: an error
]


@pytest.fixture(scope="module")
def fleet(exporter: Exporter, prometheus: PrometheusServer) -> Iterator[None]:
    def vllm(namespace: str, name: str, base: float, model: str = "m") -> None:
        labels = {"namespace": namespace, "pod": name, "model_name": model}
        exporter.set("vllm:num_requests_waiting", labels, base)
        exporter.set("vllm:num_requests_running", labels, base / 2)
        exporter.set_rate("vllm:request_success_total", labels, base / 4)
        exporter.set("vllm:kv_cache_usage_perc", labels, base / 100)

    vllm("batch-a", pod("llm"), 4)
    vllm("batch-a", pod("llm", "q8w9e"), 6)
    vllm("batch-a", pod("llm-1"), 10)
    vllm("batch-a", pod("llm-1"), 30, model="other")
    vllm("batch-a", pod("llm-1-large"), 100)  # another Deployment sharing the prefix
    vllm("batch-b", pod("llm"), 8)
    # An older vLLM pod exporting only the previous KV-cache name.
    old = {"namespace": "batch-b", "pod": pod("llm", "aaaaa"), "model_name": "m"}
    exporter.set("vllm:num_requests_waiting", old, 2)
    exporter.set("vllm:gpu_cache_usage_perc", old, 0.5)
    vllm("batch-b", pod("broken"), 1)
    exporter.set(
        "vllm:num_requests_waiting",
        {"namespace": "batch-b", "pod": pod("broken", "q8w9e"), "model_name": "m"},
        float("nan"),
    )
    tgi = {"namespace": "batch-b", "pod": pod("chat")}
    exporter.set("tgi_queue_size", tgi, 3)
    exporter.set("tgi_batch_current_size", tgi, 5)
    exporter.set_rate("tgi_request_count", tgi, 2.0)
    exporter.set_rate("tgi_request_success", tgi, 1.5)
    with PrometheusClient(prometheus.url, timeout=10) as client:
        waiting = 'count(vllm:num_requests_waiting{namespace=~"batch-.*"})'
        wait_for(client, waiting, lambda v: v == 9)
        rates = 'count(rate(vllm:request_success_total{namespace=~"batch-.*"}[1m]))'
        wait_for(client, rates, lambda v: v == 7)
        tgi_rates = 'count(rate(tgi_request_count{namespace="batch-b"}[1m]))'
        wait_for(client, tgi_rates, lambda v: v == 1)
    yield
    for namespace in ("batch-a", "batch-b"):
        exporter.remove_matching({"namespace": namespace})


def compare(direct: Observation, batched: Observation, rel: float, rates_rel: float) -> None:
    for name in SIGNALS:
        want, got = getattr(direct, name), getattr(batched, name)
        assert (want is None) == (got is None), name
        if want is not None:
            tolerance = rates_rel if name in ("arrival_rate", "throughput") else rel
            assert got == pytest.approx(want, rel=tolerance), name
    assert batched.error == direct.error


@pytest.mark.usefixtures("fleet")
def test_batched_equals_per_workload_at_one_instant(client: PrometheusClient) -> None:
    pinned = Pinned(client, at=float(client.instant("time()") or 0.0))
    batcher = SignalBatcher(pinned, ttl=60)
    signals = [WorkloadSignals(client, ns, s, batcher) for ns, s in WORKLOADS]
    for source in signals:
        direct = read_observation(pinned, source.queries)
        compare(direct, source.observe(), rel=1e-9, rates_rel=1e-9)
    # vLLM: queue, running, completions, KV cache; TGI: queue, running, arrivals, completions.
    assert batcher.queries == 8

    by_name = {(ns, s.inference.target_ref.name, s.inference.metrics.model_name): x  # type: ignore[union-attr]
               for (ns, s), x in zip(WORKLOADS, signals, strict=True)}  # fmt: skip
    observed = by_name[("batch-a", "llm", "m")].observe()
    assert observed.queue_depth == 10.0
    assert observed.kv_cache_usage == pytest.approx(0.05)
    assert by_name[("batch-a", "llm-1", "m")].observe().queue_depth == 10.0  # not llm-1-large
    assert by_name[("batch-a", "llm-1", None)].observe().queue_depth == 40.0
    old_and_new = by_name[("batch-b", "llm", "m")].observe()
    assert old_and_new.queue_depth == 10.0
    assert old_and_new.kv_cache_usage == pytest.approx((0.08 + 0.5) / 2)
    absent = by_name[("batch-b", "absent", "m")]
    assert absent.observe().error == f"query returned no series: {absent.queries.queue}"
    broken = by_name[("batch-b", "broken", "m")]
    assert broken.observe().error == f"query returned nan; query: {broken.queries.queue}"
    chat = by_name[("batch-b", "chat", None)].observe()
    # TGI's demand is its arrival counter (2/s), not completions (1.5/s); the series are
    # younger than the rate window, so only their ratio is known exactly.
    assert chat.arrival_rate is not None and chat.throughput is not None
    assert chat.arrival_rate / chat.throughput == pytest.approx(2.0 / 1.5, rel=0.1)


@pytest.mark.usefixtures("fleet")
def test_batched_live_reads_match_per_workload_reads(client: PrometheusClient) -> None:
    batcher = SignalBatcher(PrometheusVectors(client), ttl=7.5)
    signals = [WorkloadSignals(client, ns, s, batcher) for ns, s in WORKLOADS]
    for source in signals:
        batched = source.observe()
        direct = read_observation(client, source.queries)
        # Gauges are constant; counters grow steadily, their rates move by a scrape at most.
        compare(direct, batched, rel=1e-9, rates_rel=0.1)
    assert batcher.queries == 8


def test_unreachable_prometheus_fails_every_workload_of_the_batch(
    doomed_prometheus: PrometheusServer,
) -> None:
    with PrometheusClient(doomed_prometheus.url, timeout=2) as doomed:
        doomed_prometheus.kill()
        batcher = SignalBatcher(PrometheusVectors(doomed), ttl=7.5)
        signals = [WorkloadSignals(doomed, ns, s, batcher) for ns, s in WORKLOADS[:4]]
        for source in signals:
            observation = source.observe()
            assert not observation.available
            assert observation.error is not None
            assert observation.error.startswith(f"Prometheus unreachable at {doomed.url}")
        assert batcher.queries == 1  # the queue's batch; nothing else was tried
