"""PromQL presets: queries per serving engine, scoping, escaping and overrides."""

import re

import pytest

from gpufinops.adapters.prometheus.presets import (
    PRESETS,
    Scope,
    ScopeLabels,
    build_queries,
    deployment_pods_regex,
    queries_for,
    quote,
    quote_regex,
)
from gpufinops.api.inference import InferenceMetrics, MetricsServer

SCOPE = Scope(namespace="ns", deployment="llm", model_name="m")
SEL = '{namespace="ns",pod=~"llm-[a-z0-9]{1,10}-[a-z0-9]{5}",model_name="m"}'


def test_vllm_queries() -> None:
    q = build_queries(MetricsServer.VLLM, SCOPE)
    assert q.queue == f"sum(vllm:num_requests_waiting{SEL})"
    assert q.running == f"sum(vllm:num_requests_running{SEL})"
    assert q.throughput == f"sum(rate(vllm:request_success_total{SEL}[1m]))"
    # vLLM counts requests when they finish: demand defaults to the completion rate.
    assert q.arrival_rate == q.throughput
    assert q.kv_cache_usage == (
        f"avg(vllm:kv_cache_usage_perc{SEL} or vllm:gpu_cache_usage_perc{SEL})"
    )
    assert q.prompt_tokens_rate == f"sum(rate(vllm:prompt_tokens_total{SEL}[1m]))"
    assert q.generation_tokens_rate == f"sum(rate(vllm:generation_tokens_total{SEL}[1m]))"


def test_triton_queries_use_its_model_label() -> None:
    q = build_queries(MetricsServer.TRITON, SCOPE)
    sel = '{namespace="ns",pod=~"llm-[a-z0-9]{1,10}-[a-z0-9]{5}",model="m"}'
    assert q.queue == f"sum(nv_inference_pending_request_count{sel})"
    assert q.throughput == f"sum(rate(nv_inference_request_success{sel}[1m]))"
    assert q.arrival_rate == q.throughput
    assert q.running is None
    assert q.kv_cache_usage is None
    assert q.prompt_tokens_rate is None


def test_tgi_counts_arrivals_and_has_no_model_label() -> None:
    q = build_queries(MetricsServer.TGI, SCOPE)
    sel = '{namespace="ns",pod=~"llm-[a-z0-9]{1,10}-[a-z0-9]{5}"}'
    assert q.queue == f"sum(tgi_queue_size{sel})"
    assert q.running == f"sum(tgi_batch_current_size{sel})"
    assert q.arrival_rate == f"sum(rate(tgi_request_count{sel}[1m]))"
    assert q.throughput == f"sum(rate(tgi_request_success{sel}[1m]))"
    assert q.generation_tokens_rate == f"sum(rate(tgi_request_generated_tokens_sum{sel}[1m]))"


def test_sglang_queries() -> None:
    q = build_queries(MetricsServer.SGLANG, SCOPE)
    assert q.queue == f"sum(sglang:num_queue_reqs{SEL})"
    assert q.running == f"sum(sglang:num_running_reqs{SEL})"
    assert q.kv_cache_usage == f"avg(sglang:token_usage{SEL})"
    assert q.throughput == f"sum(rate(sglang:e2e_request_latency_seconds_count{SEL}[1m]))"


@pytest.mark.parametrize("server", list(PRESETS))
def test_every_preset_is_scoped_to_the_workload(server: MetricsServer) -> None:
    q = build_queries(server, Scope(namespace="team-a", deployment="chat"))
    for query in (q.queue, q.running, q.arrival_rate, q.throughput, q.kv_cache_usage):
        if query is not None:
            assert 'namespace="team-a"' in query
            assert 'pod=~"chat-' in query


def test_no_model_name_selects_every_model() -> None:
    q = build_queries(MetricsServer.VLLM, Scope(namespace="ns", deployment="llm"))
    assert "model_name" not in q.queue


def test_label_names_are_configurable() -> None:
    labels = ScopeLabels(namespace="kubernetes_namespace", pod="kubernetes_pod_name", model=None)
    q = build_queries(MetricsServer.VLLM, SCOPE, labels=labels)
    assert q.queue == (
        'sum(vllm:num_requests_waiting{kubernetes_namespace="ns",'
        'kubernetes_pod_name=~"llm-[a-z0-9]{1,10}-[a-z0-9]{5}"})'
    )
    no_scope = ScopeLabels(namespace=None, pod=None, model=None)
    assert build_queries(MetricsServer.VLLM, SCOPE, labels=no_scope).queue == (
        "sum(vllm:num_requests_waiting)"
    )


@pytest.mark.parametrize("name", ["", "1abc", "pod-name", 'a"b', "a b"])
def test_invalid_label_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="label name"):
        ScopeLabels(pod=name)


def test_explicit_pod_regex_overrides_the_deployment() -> None:
    scope = Scope(namespace="ns", deployment="llm", pods="llm-0|llm-1")
    assert 'pod=~"llm-0|llm-1"' in build_queries(MetricsServer.VLLM, scope).queue


def test_rate_window_is_configurable_and_validated() -> None:
    q = build_queries(MetricsServer.VLLM, SCOPE, rate_window="5m")
    assert q.throughput is not None and q.throughput.endswith("[5m]))")
    with pytest.raises(ValueError, match="duration"):
        build_queries(MetricsServer.VLLM, SCOPE, rate_window="5 minutes")


# Escaping


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", '"plain"'),
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("line\nbreak\ttab\rcr", r'"line\nbreak\ttab\rcr"'),
        ("bell\x07", r'"bell\x07"'),
        ("meta-llama/Llama-3.1-8B-Instruct", '"meta-llama/Llama-3.1-8B-Instruct"'),
        ("ünïcode ✓", '"ünïcode ✓"'),
    ],
)
def test_quote_escapes_label_values(value: str, literal: str) -> None:
    assert quote(value) == literal


def test_model_name_is_escaped_in_queries() -> None:
    scope = Scope(namespace="ns", deployment="llm", model_name='a"b\\c')
    assert r'model_name="a\"b\\c"' in build_queries(MetricsServer.VLLM, scope).queue


def test_quote_regex_escapes_re2_metacharacters() -> None:
    assert quote_regex("a.b+c*d?e(f)g|h[i]j{k}l^m$n\\o-p") == (
        r"a\.b\+c\*d\?e\(f\)g\|h\[i\]j\{k\}l\^m\$n\\o-p"
    )
    for text in ("llm.v2", "x+y", "a(b)", "q?"):
        assert re.fullmatch(quote_regex(text), text)


def test_dots_in_the_deployment_are_literal_in_the_pod_regex() -> None:
    scope = Scope(namespace="ns", deployment="llm.v2")
    query = build_queries(MetricsServer.VLLM, scope).queue
    # Regex-escaped, then string-escaped: the backslash doubles in the literal.
    assert r'pod=~"llm\\.v2-[a-z0-9]{1,10}-[a-z0-9]{5}"' in query


# Which pods a Deployment's regex selects


@pytest.mark.parametrize(
    ("deployment", "pod", "selected"),
    [
        ("llm", "llm-7d9f8c6b5-x2x4z", True),
        ("llm", "llm-b5c7-q8w9e", True),
        ("llm", "llm-large-7d9f8c6b5-x2x4z", False),  # another Deployment's pod
        ("llm", "llm-7d9f8c6b5", False),
        ("llm", "xllm-7d9f8c6b5-x2x4z", False),
        ("llm.v2", "llm.v2-7d9f8c6b5-x2x4z", True),
        ("llm.v2", "llmXv2-7d9f8c6b5-x2x4z", False),
        ("a" * 50, "a" * 50 + "-7d9f8c6-x2x4z", True),
        ("a" * 60, "a" * 58 + "x2x4z", True),  # name cut to 58 before the random part
        ("a" * 60, "a" * 58 + "x2x4zz", False),
    ],
)
def test_pod_regex(deployment: str, pod: str, selected: bool) -> None:
    # PromQL regexes are fully anchored, like fullmatch.
    assert bool(re.fullmatch(deployment_pods_regex(deployment), pod)) is selected


# Custom queries and overrides


def test_custom_queries_pass_through_verbatim() -> None:
    queue = 'sum(my_gateway_waiting{route="chat"})'
    demand = 'sum(rate(my_gateway_requests_total{route="chat"}[2m]))'
    q = build_queries(MetricsServer.CUSTOM, SCOPE, queue_query=queue, demand_query=demand)
    assert q.queue == queue
    assert q.arrival_rate == demand
    assert (q.running, q.throughput, q.kv_cache_usage) == (None, None, None)


def test_custom_without_queue_query_is_rejected() -> None:
    with pytest.raises(ValueError, match="queue query"):
        build_queries(MetricsServer.CUSTOM, SCOPE)


def test_user_queries_override_a_preset() -> None:
    q = build_queries(MetricsServer.VLLM, SCOPE, queue_query="sum(q)", demand_query="sum(d)")
    assert q.queue == "sum(q)"
    assert q.arrival_rate == "sum(d)"
    # The other signals keep the preset.
    assert q.throughput == f"sum(rate(vllm:request_success_total{SEL}[1m]))"


def test_queries_for_an_inference_metrics_section() -> None:
    metrics = InferenceMetrics.model_validate(
        {"server": "vllm", "modelName": "m", "demandQuery": "sum(rate(gw_total[1m]))"}
    )
    q = queries_for(metrics, "ns", "llm")
    assert q.queue == f"sum(vllm:num_requests_waiting{SEL})"
    assert q.arrival_rate == "sum(rate(gw_total[1m]))"
    custom = InferenceMetrics.model_validate({"server": "custom", "queueQuery": "sum(x)"})
    assert queries_for(custom, "ns", "llm").queue == "sum(x)"
