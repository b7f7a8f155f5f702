"""The cost loop's Prometheus reads: one query per pass for every workload, the same values
as the per-workload queries, and every query counted by kind."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from tests.unit.test_prometheus_batch import Clock, spec

from gpufinops.adapters import operator_metrics as metrics
from gpufinops.adapters.prometheus.batch import PrometheusVectors, Row, Selector
from gpufinops.adapters.prometheus.client import MetricsError, PrometheusClient
from gpufinops.adapters.prometheus.presets import ScopeLabels
from gpufinops.adapters.prometheus.shared import SharedVector
from gpufinops.config.model import OperatorConfig
from gpufinops.core.cost.unit_economics import ServedRates
from gpufinops.handlers import cost

POD_LABELS = ScopeLabels(model=None)


class Vectors:
    """Rows a test sets, and the queries asked."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.queries: list[str] = []
        self.fail: MetricsError | None = None

    def vector(self, query: str) -> list[Row]:
        self.queries.append(query)
        if self.fail is not None:
            raise self.fail
        return self.rows


def row(namespace: str, pod: str, value: float) -> Row:
    return {"namespace": namespace, "pod": pod}, value


def test_one_query_answers_every_workload_until_the_ttl_passes() -> None:
    source = Vectors([row("a", "llm-7d9f8c6b5-x2x4z", 2.0), row("b", "llm-7d9f8c6b5-abcde", 5.0)])
    clock = Clock()
    shared = SharedVector(source, "q", POD_LABELS, ttl=30.0, clock=clock)
    assert shared.values(Selector("a", "llm", None)) == [2.0]
    assert shared.values(Selector("b", "llm", None)) == [5.0]
    assert shared.values(Selector("c", "llm", None)) == []
    assert source.queries == ["q"]
    clock.now += 30.0
    shared.values(Selector("a", "llm", None))
    assert source.queries == ["q", "q"]


def test_rows_are_matched_with_the_deployments_pod_pattern() -> None:
    source = Vectors(
        [
            row("a", "llm-7d9f8c6b5-x2x4z", 1.0),
            row("a", "llm-7d9f8c6b5-abcde", 2.0),
            row("a", "llm-big-7d9f8c6b5-x2x4z", 40.0),  # another Deployment's pod
        ]
    )
    shared = SharedVector(source, "q", POD_LABELS, ttl=30.0)
    assert sorted(shared.values(Selector("a", "llm", None))) == [1.0, 2.0]
    assert shared.values(Selector("a", "llm-big", None)) == [40.0]


def test_a_failed_query_fails_every_read_of_the_period_with_its_reason() -> None:
    source = Vectors([])
    source.fail = MetricsError("Prometheus answered HTTP 500: boom", query="q")
    shared = SharedVector(source, "q", POD_LABELS, ttl=30.0)
    for namespace in ("a", "b"):
        with pytest.raises(MetricsError, match="boom"):
            shared.values(Selector(namespace, "llm", None))
    assert len(source.queries) == 1


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl"):
        SharedVector(Vectors([]), "q", POD_LABELS, ttl=0)


class FakeVectors(Vectors):
    """Answers the two cost queries with their own rows."""

    def __init__(self, by_query: dict[str, list[Row]]) -> None:
        super().__init__([])
        self.by_query = by_query

    def vector(self, query: str) -> list[Row]:
        self.queries.append(query)
        return self.by_query[query]


def test_what_n_workloads_served_costs_one_query_per_signal_per_pass() -> None:
    config = OperatorConfig()
    inputs = [row(f"ns-{i}", f"llm-{i}-7d9f8c6b5-x2x4z", float(i)) for i in range(50)]
    inputs.append(row("ns-3", "llm-3-7d9f8c6b5-abcde", 0.5))  # a second replica adds up
    outputs = [row(f"ns-{i}", f"llm-{i}-7d9f8c6b5-x2x4z", 2.0 * i) for i in range(50)]
    source = FakeVectors({
        cost.INPUT_TOKENS_BY_POD: inputs, cost.OUTPUT_TOKENS_BY_POD: outputs,
        cost.REQUESTS_BY_POD: [row("ns-1", "llm-1-7d9f8c6b5-x2x4z", 0.25)],
    })  # fmt: skip
    read = cost._token_rate(config, source)
    served = [read(f"ns-{i}", spec(f"llm-{i}", server="vllm")) for i in range(50)]
    assert served[1] == ServedRates(1.0, 2.0, 0.25)
    assert served[3] == ServedRates(3.5, 6.0, None)  # no request counter seen: unknown
    assert read("ns-1", spec("missing", server="vllm")) is None  # no series: unknown, never zero
    # Every engine's counters: TGI's and SGLang's names are in the same queries.
    assert read("ns-2", spec("llm-2", server="tgi")) == ServedRates(2.0, 4.0, None)
    assert len(source.queries) == 3
    for query, names in (
        (cost.INPUT_TOKENS_BY_POD, ("vllm:prompt_tokens_total", "tgi_request_input_length_sum",
                                    "sglang:prompt_tokens_total")),
        (cost.REQUESTS_BY_POD, ("vllm:request_success_total", "nv_inference_request_success",
                                "tgi_request_success")),
    ):  # fmt: skip
        assert all(n in query for n in names), query


def test_the_mean_gpu_utilisation_is_over_every_gpu_of_the_pods() -> None:
    config = OperatorConfig()
    gpus = [
        row("ml", "llm-7d9f8c6b5-x2x4z", 20.0),
        row("ml", "llm-7d9f8c6b5-x2x4z", 40.0),  # the same pod's second GPU
        row("ml", "llm-7d9f8c6b5-abcde", 90.0),
        row("ml", "other-7d9f8c6b5-abcde", 0.0),
    ]
    source = FakeVectors({cost.UTILIZATION_BY_GPU: gpus})
    read = cost._mean_utilization(config, source)
    assert read("ml", "Deployment", "llm") == pytest.approx(50.0)
    assert read("ml", "Deployment", "absent") is None
    assert len(source.queries) == 1


def test_a_nan_token_rate_is_unknown_and_a_failure_is_none() -> None:
    config = OperatorConfig()
    nan = [row("ml", "llm-7d9f8c6b5-x2x4z", math.nan)]
    source = FakeVectors({cost.INPUT_TOKENS_BY_POD: nan, cost.OUTPUT_TOKENS_BY_POD: nan,
                          cost.REQUESTS_BY_POD: nan})  # fmt: skip
    assert cost._token_rate(config, source)("ml", spec("llm", server="vllm")) is None
    failing = Vectors([])
    failing.fail = MetricsError("unreachable", query=cost.INPUT_TOKENS_BY_POD)
    assert cost._token_rate(config, failing)("ml", spec("llm", server="vllm")) is None


def _counted(kind: str) -> float:
    return metrics.PROMETHEUS_QUERIES.labels(kind)._value.get()


def test_queries_are_counted_by_kind() -> None:
    client = PrometheusClient("http://127.0.0.1:9")

    def answer(path: str, params: Any, bounds: Any) -> tuple[int, bytes]:
        result = [{"metric": {"namespace": "ml"}, "value": [0, "1"]}]
        return 200, json.dumps({"status": "success", "data": {"result": result}}).encode()

    client._get = answer  # type: ignore[method-assign]
    before = {kind: _counted(kind) for kind in ("instant", "cost_batch", "signals_batch")}
    client.instant("up")
    PrometheusVectors(client, kind="cost_batch").vector("up")
    PrometheusVectors(client).vector("up")
    assert _counted("instant") == before["instant"] + 1
    assert _counted("cost_batch") == before["cost_batch"] + 1
    assert _counted("signals_batch") == before["signals_batch"] + 1
