"""Batched instant signals against a fake Prometheus that answers both query shapes.

The fake evaluates the few PromQL shapes the presets and the batches use
(``sum``/``avg`` of selectors, ``rate`` taken as the stored value, ``or``,
``sum by``) over series the test sets, so the per-workload answer and the
batched one come from the same data. The real engine is compared in
``tests/integration/prometheus/test_prometheus_batch.py``.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import re
import threading
import time

import numpy as np
import pytest
from tests.support.inference import inference_spec as spec
from tests.support.inference import model_pod as pod

from gpufinops.adapters.prometheus.batch import (
    BatchKey,
    Row,
    SignalBatcher,
    plan_for,
)
from gpufinops.adapters.prometheus.client import MetricsError, PrometheusUnavailable
from gpufinops.adapters.prometheus.presets import PRESETS, queries_for
from gpufinops.adapters.prometheus.signals import read_observation
from gpufinops.adapters.prometheus.workload import WorkloadSignals
from gpufinops.api.inference import InferenceMetrics, MetricsServer
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.core.forecast.series import DemandSeries
from gpufinops.core.scaling.observation import Observation

_SELECTOR = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?')
_MATCHER = re.compile(r'([a-zA-Z_]\w*)(=~|=)"((?:[^"\\]|\\.)*)"')
_SUM_BY = re.compile(r"sum by \(([^)]*)\) \((.*)\)")

VLLM_GAUGES = ("vllm:num_requests_waiting", "vllm:num_requests_running")
VLLM_COMPLETIONS = "vllm:request_success_total"


class FakePrometheus:
    """Series set by the test; ``instant`` for per-workload queries, ``vector`` for batches."""

    def __init__(self) -> None:
        self.series: list[tuple[str, dict[str, str], float]] = []
        self.instant_queries: list[str] = []
        self.vector_queries: list[str] = []
        self.fail: MetricsError | None = None
        self.delay = 0.0
        self._lock = threading.Lock()

    def add(self, metric: str, value: float, **labels: str) -> None:
        self.series.append((metric, dict(labels), value))

    def _select(self, text: str) -> list[tuple[dict[str, str], float]]:
        text = text.strip()
        if text.startswith("rate("):  # the fake stores a counter's rate as its value
            text = text[len("rate(") : text.rindex("[")]
        found = _SELECTOR.fullmatch(text)
        assert found is not None, text
        name, braces = found.group(1), found.group(2) or ""
        matchers = [
            (label, op, json.loads(f'"{raw}"')) for label, op, raw in _MATCHER.findall(braces)
        ]
        rows = []
        for metric, labels, value in self.series:
            if metric != name:
                continue
            if all(
                (labels.get(label, "") == want)
                if op == "="
                else re.fullmatch(want, labels.get(label, "")) is not None
                for label, op, want in matchers
            ):
                rows.append(({"__name__": metric, **labels}, value))
        return rows

    def _union(self, text: str) -> list[tuple[dict[str, str], float]]:
        """``a or b``: b's series only where a has none with the same labels (name ignored)."""
        seen: set[tuple[tuple[str, str], ...]] = set()
        out = []
        for part in text.split(" or "):
            for labels, value in self._select(part):
                key = tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))
                if key not in seen:
                    seen.add(key)
                    out.append((labels, value))
        return out

    def instant(self, query: str) -> float | None:
        with self._lock:
            self.instant_queries.append(query)
        for func in ("sum", "avg"):
            if query.startswith(f"{func}(") and query.endswith(")"):
                values = [value for _, value in self._union(query[len(func) + 1 : -1])]
                break
        else:
            raise AssertionError(f"unexpected instant query {query}")
        if not values:
            return None
        value = sum(values) / (len(values) if func == "avg" else 1)
        if not math.isfinite(value):
            raise MetricsError(f"query returned {value!r}", query=query)
        return value

    def vector(self, query: str) -> list[Row]:
        with self._lock:
            self.vector_queries.append(query)
        if self.delay:
            time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        grouped = _SUM_BY.fullmatch(query)
        if grouped is None:
            return [(labels, value) for labels, value in self._union(query)]
        groups = grouped.group(1).split(",")
        sums: dict[tuple[str, ...], float] = {}
        for labels, value in self._union(grouped.group(2)):
            key = tuple(labels.get(g, "") for g in groups)
            sums[key] = sums.get(key, 0.0) + value
        return [
            ({g: v for g, v in zip(groups, key, strict=True) if v}, total)
            for key, total in sums.items()
        ]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def vllm_pod(fake: FakePrometheus, namespace: str, name: str, base: float, **extra: str) -> None:
    labels = {"namespace": namespace, "pod": name, "model_name": "m", **extra}
    fake.add("vllm:num_requests_waiting", base, **labels)
    fake.add("vllm:num_requests_running", base / 2, **labels)
    fake.add(VLLM_COMPLETIONS, base / 10, **labels)
    fake.add("vllm:kv_cache_usage_perc", min(base / 100, 1.0), **labels)


def fleet(fake: FakePrometheus, count: int) -> list[tuple[str, AIWorkloadSpec]]:
    """``count`` vLLM workloads over three namespaces, one or two pods each.

    Names ``llm-1``, ``llm-10``, ``llm-100`` share prefixes, so a workload's rows
    must be told apart by the whole pod pattern, not the prefix alone.
    """
    workloads = []
    for i in range(count):
        namespace, name = f"team-{i % 3}", f"llm-{i}"
        vllm_pod(fake, namespace, pod(name), float(i + 1))
        if i % 2:
            vllm_pod(fake, namespace, pod(name, "q8w9e"), float(2 * i + 1))
        workloads.append((namespace, spec(name, modelName="m")))
    return workloads


def both(
    fake: FakePrometheus, batcher: SignalBatcher, namespace: str, workload: AIWorkloadSpec
) -> tuple[Observation, Observation]:
    """The workload's observation per workload (direct queries) and batched."""
    direct = read_observation(fake, WorkloadSignals(fake, namespace, workload).queries)  # type: ignore[arg-type]
    batched = WorkloadSignals(fake, namespace, workload, batcher).observe()  # type: ignore[arg-type]
    return direct, batched


def assert_same(direct: Observation, batched: Observation) -> None:
    for field in ("queue_depth", "running", "arrival_rate", "throughput", "kv_cache_usage"):
        want, got = getattr(direct, field), getattr(batched, field)
        assert (want is None) == (got is None), field
        if want is not None:
            assert got == pytest.approx(want, rel=1e-12), field
    assert batched.error == direct.error


def test_n_workloads_cost_one_query_per_metric_per_refresh() -> None:
    fake, clock = FakePrometheus(), Clock()
    batcher = SignalBatcher(fake, ttl=7.5, clock=clock)  # type: ignore[arg-type]
    workloads = fleet(fake, 60)
    signals = [WorkloadSignals(fake, ns, s, batcher) for ns, s in workloads]  # type: ignore[arg-type]

    for source in signals:
        assert source.observe().available
    # queue, running, completions (throughput and demand), KV cache: four metrics.
    assert len(fake.vector_queries) == 4
    assert fake.instant_queries == []
    assert batcher.queries == 4

    clock.now += 7.0  # still fresh: no query at all
    for source in signals:
        source.observe()
    assert len(fake.vector_queries) == 4

    clock.now += 1.0  # expired: the first workload refreshes, the others reuse it
    for source in signals:
        source.observe()
    assert len(fake.vector_queries) == 8
    assert sorted(fake.vector_queries[:4]) == sorted(fake.vector_queries[4:])

    # The same round without batching: five instant queries per workload.
    for namespace, workload in workloads:
        WorkloadSignals(fake, namespace, workload).observe()  # type: ignore[arg-type]
    assert len(fake.instant_queries) == 60 * 5


def test_batch_query_selects_the_namespaces_and_groups_by_the_preset_labels() -> None:
    fake = FakePrometheus()
    batcher = SignalBatcher(fake, ttl=5)  # type: ignore[arg-type]
    signals = [WorkloadSignals(fake, ns, s, batcher) for ns, s in fleet(fake, 3)]  # type: ignore[arg-type]
    for source in signals:
        source.observe()
    namespaces = '{namespace=~"team-0|team-1|team-2"}'
    assert set(fake.vector_queries) == {
        f"sum by (namespace,pod,model_name) (vllm:num_requests_waiting{namespaces})",
        f"sum by (namespace,pod,model_name) (vllm:num_requests_running{namespaces})",
        f"sum by (namespace,pod,model_name) (rate(vllm:request_success_total{namespaces}[1m]))",
        f"vllm:kv_cache_usage_perc{namespaces} or vllm:gpu_cache_usage_perc{namespaces}",
    }


def test_values_equal_the_per_workload_queries() -> None:
    fake = FakePrometheus()
    workloads = fleet(fake, 40)
    # Decoys the pod pattern must exclude: another Deployment's pods, another model.
    vllm_pod(fake, "team-1", pod("llm-1-large"), 1000.0)
    vllm_pod(fake, "team-1", pod("llm-1"), 500.0, model_name="other")
    vllm_pod(fake, "team-2", "llm-2-abc", 700.0)  # no template hash: not a Deployment pod
    # An older pod exporting the previous KV-cache name; one exporting both names.
    fake.add("vllm:gpu_cache_usage_perc", 0.25, namespace="team-0", pod=pod("llm-0", "aaaaa"))
    fake.add("vllm:gpu_cache_usage_perc", 0.9, namespace="team-0", pod=pod("llm-0"), model_name="m")
    # A workload without a model name reads every model of its pods.
    workloads.append(("team-1", spec("llm-1")))
    batcher = SignalBatcher(fake, ttl=5)  # type: ignore[arg-type]
    for namespace, workload in workloads:
        direct, batched = both(fake, batcher, namespace, workload)
        assert direct.available
        assert_same(direct, batched)
    first = both(fake, batcher, "team-1", spec("llm-1", modelName="m"))[1]
    assert first.queue_depth == 2.0 + 3.0  # llm-1's two pods, nothing of llm-1-large
    assert both(fake, batcher, "team-1", spec("llm-1"))[1].queue_depth == 505.0


@pytest.mark.parametrize("server", [MetricsServer.TRITON, MetricsServer.TGI, MetricsServer.SGLANG])
def test_other_engines_match_too(server: MetricsServer) -> None:
    preset = PRESETS[server]
    fake = FakePrometheus()
    workloads = []
    for i in range(6):
        name = f"srv-{i}"
        labels = {"namespace": "ns", "pod": pod(name)}
        if preset.labels.model is not None:
            labels[preset.labels.model] = "m"
        for metric in (preset.queue, preset.running, preset.completions, preset.arrivals):
            if metric is not None:
                fake.add(metric, float(i + 1), **labels)
        for metric in preset.kv_cache:
            fake.add(metric, 0.1 * (i + 1), **labels)
        workloads.append(spec(name, server=server.value, modelName="m"))
    batcher = SignalBatcher(fake, ttl=5)  # type: ignore[arg-type]
    for workload in workloads:
        direct, batched = both(fake, batcher, "ns", workload)
        assert direct.available
        assert_same(direct, batched)
    assert len(fake.vector_queries) == len({q for q in fake.vector_queries})


def test_long_deployment_names_are_matched_like_the_regex() -> None:
    fake = FakePrometheus()
    names = ["a" * 47, "a" * 47 + "b", "b" * 60, "b" * 60 + "c"]
    for i, name in enumerate(names):
        # Beyond 58 characters Kubernetes cuts the name before the random suffix.
        generated = name[:58] + f"z{i}zzz" if len(name) >= 58 else f"{name}-7d9f8c6b5-x{i}x4z"
        vllm_pod(fake, "long", generated, float(10 * (i + 1)))
    batcher = SignalBatcher(fake, ttl=5)  # type: ignore[arg-type]
    for name in names:
        direct, batched = both(fake, batcher, "long", spec(name))
        assert_same(direct, batched)


def test_missing_workload_is_unknown_with_the_reason_never_zero() -> None:
    fake = FakePrometheus()
    workloads = fleet(fake, 3)
    batcher = SignalBatcher(fake, ttl=5)  # type: ignore[arg-type]
    for namespace, workload in workloads:
        WorkloadSignals(fake, namespace, workload, batcher).observe()  # type: ignore[arg-type]
    absent = WorkloadSignals(fake, "team-0", spec("gone", modelName="m"), batcher)  # type: ignore[arg-type]
    observation = absent.observe()
    assert observation.queue_depth is None
    assert not observation.available
    assert observation.error == f"query returned no series: {absent.queries.queue}"
    assert observation.running is None and observation.throughput is None
    assert_same(read_observation(fake, absent.queries), observation)  # type: ignore[arg-type]


def test_a_new_namespace_refreshes_the_batch_before_its_expiry() -> None:
    fake, clock = FakePrometheus(), Clock()
    vllm_pod(fake, "old", pod("llm"), 3.0)
    vllm_pod(fake, "new", pod("llm"), 4.0)
    batcher = SignalBatcher(fake, ttl=60, clock=clock)  # type: ignore[arg-type]
    old = WorkloadSignals(fake, "old", spec("llm"), batcher)  # type: ignore[arg-type]
    assert old.observe().queue_depth == 3.0
    before = len(fake.vector_queries)
    # Not covered by the cached answer: it would read as "no series" if reused.
    assert WorkloadSignals(fake, "new", spec("llm"), batcher).observe().queue_depth == 4.0  # type: ignore[arg-type]
    assert len(fake.vector_queries) > before
    assert '{namespace=~"new|old"}' in fake.vector_queries[-1]


def test_deleted_workloads_leave_the_batch_query() -> None:
    fake = FakePrometheus()
    vllm_pod(fake, "stays", pod("llm"), 1.0)
    vllm_pod(fake, "goes", pod("llm"), 1.0)
    batcher = SignalBatcher(fake, ttl=0.01)  # type: ignore[arg-type]
    keep = WorkloadSignals(fake, "stays", spec("llm"), batcher)  # type: ignore[arg-type]
    gone = WorkloadSignals(fake, "goes", spec("llm"), batcher)  # type: ignore[arg-type]
    gone.observe()
    assert "goes" in fake.vector_queries[-1]
    del gone
    gc.collect()
    time.sleep(0.02)
    keep.observe()
    assert 'namespace="stays"' in fake.vector_queries[-1]


@pytest.mark.parametrize(("value", "shown"), [(math.nan, "nan"), (math.inf, "inf")])
def test_nan_and_inf_are_errors_for_that_workload_only(value: float, shown: str) -> None:
    fake = FakePrometheus()
    vllm_pod(fake, "ns", pod("good"), 4.0)
    vllm_pod(fake, "ns", pod("bad"), 4.0)
    fake.add("vllm:num_requests_waiting", value, namespace="ns", pod=pod("bad", "q8w9e"))
    batcher = SignalBatcher(fake, ttl=5)  # type: ignore[arg-type]
    bad = WorkloadSignals(fake, "ns", spec("bad"), batcher)  # type: ignore[arg-type]
    with pytest.raises(MetricsError, match=shown):
        bad.instant.instant(bad.queries.queue)
    direct, batched = both(fake, batcher, "ns", spec("bad"))
    assert batched.queue_depth is None
    assert batched.error == f"query returned {shown}; query: {bad.queries.queue}"
    assert_same(direct, batched)
    assert WorkloadSignals(fake, "ns", spec("good"), batcher).observe().queue_depth == 4.0  # type: ignore[arg-type]


def test_a_failed_batch_fails_every_workload_with_the_reason() -> None:
    fake = FakePrometheus()
    workloads = fleet(fake, 5)
    fake.fail = MetricsError("Prometheus rejected the query (HTTP 400): bad_data: boom")
    batcher = SignalBatcher(fake, ttl=5)  # type: ignore[arg-type]
    signals = [WorkloadSignals(fake, ns, s, batcher) for ns, s in workloads]  # type: ignore[arg-type]
    for source in signals:
        observation = source.observe()
        assert observation.queue_depth is None
        assert observation.error == (
            "Prometheus rejected the query (HTTP 400): bad_data: boom "
            f"(one query for 5 workloads); query: {source.queries.queue}"
        )
    # Each metric's batch failed once and the failure is cached like an answer.
    assert len(fake.vector_queries) == 4


def test_unreachable_prometheus_is_asked_once_per_refresh_not_per_workload() -> None:
    fake, clock = FakePrometheus(), Clock()
    workloads = fleet(fake, 20)
    fake.fail = PrometheusUnavailable("Prometheus unreachable at http://p:9090: [Errno 111]")
    batcher = SignalBatcher(fake, ttl=5, clock=clock)  # type: ignore[arg-type]
    signals = [WorkloadSignals(fake, ns, s, batcher) for ns, s in workloads]  # type: ignore[arg-type]
    for source in signals:
        observation = source.observe()
        assert observation == Observation(
            error="Prometheus unreachable at http://p:9090: [Errno 111] "
            "(one query for 20 workloads)"
        )
    assert len(fake.vector_queries) == 1  # the queue's batch; the rest were skipped
    fake.fail = None
    clock.now += 5
    assert signals[0].observe().available


def test_user_queries_stay_per_workload() -> None:
    fake = FakePrometheus()
    vllm_pod(fake, "ns", pod("llm"), 6.0)
    fake.add("gateway_rps", 42.0, namespace="ns")
    batcher = SignalBatcher(fake, ttl=5)  # type: ignore[arg-type]
    custom = spec(
        "llm", server="custom", queueQuery='sum(vllm:num_requests_waiting{namespace="ns"})'
    )
    observation = WorkloadSignals(fake, "ns", custom, batcher).observe()  # type: ignore[arg-type]
    assert observation.queue_depth == 6.0
    assert fake.vector_queries == []
    demand = spec("llm", demandQuery='sum(gateway_rps{namespace="ns"})')
    observation = WorkloadSignals(fake, "ns", demand, batcher).observe()  # type: ignore[arg-type]
    assert observation.arrival_rate == 42.0
    assert observation.throughput == pytest.approx(0.6)
    assert fake.instant_queries == [
        'sum(vllm:num_requests_waiting{namespace="ns"})',
        'sum(gateway_rps{namespace="ns"})',
    ]


def test_plan_batches_only_the_presets_own_queries() -> None:
    metrics = InferenceMetrics(server=MetricsServer.VLLM, model_name="m", queue_query="q")
    queries = queries_for(metrics, "ns", "llm")
    plan = plan_for(metrics, "ns", "llm", queries)
    assert "q" not in plan
    assert set(plan) == {queries.running, queries.throughput, queries.kv_cache_usage}
    assert plan[queries.throughput] == BatchKey(  # type: ignore[index]
        "rate", (VLLM_COMPLETIONS,), PRESETS[MetricsServer.VLLM].labels
    )
    custom = InferenceMetrics(server=MetricsServer.CUSTOM, queue_query="q")
    assert plan_for(custom, "ns", "llm", queries_for(custom, "ns", "llm")) == {}


def test_concurrent_ticks_share_one_in_flight_refresh() -> None:
    fake = FakePrometheus()
    workloads = fleet(fake, 30)
    fake.delay = 0.05
    batcher = SignalBatcher(fake, ttl=30)  # type: ignore[arg-type]
    signals = [WorkloadSignals(fake, ns, s, batcher) for ns, s in workloads]  # type: ignore[arg-type]
    results: dict[int, Observation] = {}
    start = threading.Barrier(len(signals))

    def tick(i: int) -> None:
        start.wait()
        results[i] = signals[i].observe()

    threads = [threading.Thread(target=tick, args=(i,)) for i in range(len(signals))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == len(signals)
    assert all(observation.available for observation in results.values())
    assert len(fake.vector_queries) == 4


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl"):
        SignalBatcher(FakePrometheus(), ttl=0)  # type: ignore[arg-type]


class CountingRange:
    """A range source that counts its calls and answers a constant demand."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    def range(self, query: str, start: float, end: float, step: float) -> DemandSeries:
        self.calls += 1
        if self.fail:
            raise MetricsError("Prometheus answered HTTP 503: busy")
        count = round((end - start) / step) + 1
        return DemandSeries(start, step, np.full(count, 5.0))


def test_demand_history_is_fetched_once_per_step_not_per_tick() -> None:
    source = CountingRange()
    signals = WorkloadSignals(source, "ns", spec("llm"))  # type: ignore[arg-type]
    assert signals.history is not None
    signals.history.source = source
    minute = 60.0 * 1_000_000
    first = signals.demand_history(minute + 1)
    assert first is not None and source.calls == 1
    for offset in (16, 31, 46):  # the ticks of the same minute
        assert signals.demand_history(minute + offset) is first
    assert source.calls == 1
    source.fail = True
    assert signals.demand_history(minute + 61) is first  # failed: the last known history
    assert source.calls == 2
    source.fail = False
    later = signals.demand_history(minute + 121)  # retried a minute after the failure
    assert source.calls == 3
    assert later is not None and later.start == first.start + 120.0


def test_a_failing_history_query_backs_off_exponentially() -> None:
    source = CountingRange()
    signals = WorkloadSignals(source, "ns", spec("llm"))  # type: ignore[arg-type]
    assert signals.history is not None
    signals.history.source = source
    source.fail = True
    now = 60.0 * 1_000_000
    tries: list[float] = []
    for tick in range(int(4 * 3600 / 15)):  # four hours of 15 s ticks
        before = source.calls
        assert signals.demand_history(now + 15 * tick) is None
        if source.calls > before:
            tries.append(15 * tick)
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    # 1, 2, 4, ... minutes (each rounded up to a tick), then at most an hour apart
    assert gaps[:6] == [60, 120, 240, 480, 960, 1920]
    assert all(gap == 3600 for gap in gaps[6:])
    source.fail = False
    assert signals.demand_history(now + 15 * 4 * 3600 / 15 + 3600) is not None  # recovers


def test_too_many_namespaces_read_every_namespace_instead() -> None:
    fake = FakePrometheus()
    names = [f"namespace-with-a-long-name-{i:04d}" for i in range(150)]  # > 4000 characters
    for namespace in names:
        vllm_pod(fake, namespace, pod("llm"), 2.0)
    vllm_pod(fake, "not-ours", pod("llm"), 9.0)
    batcher = SignalBatcher(fake, ttl=5)  # type: ignore[arg-type]
    signals = [WorkloadSignals(fake, ns, spec("llm"), batcher) for ns in names]  # type: ignore[arg-type]
    assert all(source.observe().queue_depth == 2.0 for source in signals)
    assert "sum by (namespace,pod,model_name) (vllm:num_requests_waiting)" in fake.vector_queries
    assert len(fake.vector_queries) == 4
