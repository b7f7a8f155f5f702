"""A tenant's custom PromQL reads only its own namespace's series.

``confine`` adds the namespace matcher to every vector selector; each result is
checked here with the PromQL parser on its own (not with ``confine``'s own
check): it parses, it has as many selectors as the original, and every one of
them carries ``namespace="<ns>"`` — whatever else the selector says. Queries
are drawn from a small PromQL grammar with the constructs that could hide a
selector from a tokenizer: strings holding braces and quotes, comments, label
lists of ``by``/``on``/``group_left``, subqueries, offsets and ``@``.
"""

from __future__ import annotations

from typing import Any

import promql_parser as promql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufinops.config.model import LabelSelector, OperatorConfig, QueryConfinement
from gpufinops.core.promql import QueryRefused, confine
from gpufinops.core.tenancy import NamespaceView, confined_queries
from gpufinops.core.validation import check_spec

FAST = settings(
    derandomize=True, max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def selectors(query: str) -> list[Any]:
    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql.VectorSelector):
            found.append(node)

    promql.walk(promql.parse(query), pre_visit=visit)
    return found


def assert_confined(original: str, confined: str, namespace: str) -> None:
    before, after = selectors(original), selectors(confined)
    assert len(after) == len(before)
    for selector in after:
        assert selector.matchers.or_matchers == []
        matchers = selector.matchers.matchers
        held = [(m.name, m.value) for m in matchers if str(m.op) == "MatchOp.Equal"]
        assert ("namespace", namespace) in held, confined


HOSTILE = [
    '{__name__=~".+"}',
    'vllm:num_requests_waiting{namespace=~".*"}',
    'sum(vllm:num_requests_waiting{namespace="other-team"})',
    'sum by (namespace, pod) (rate({__name__=~"vllm:.*"}[5m]))',
    "up",
    'sum(up) # a comment {namespace="x"}\n + count(kube_pod_info)',
    'label_replace(up, "namespace", "mine", "", "")',
    'sum(rate(x{a="}"}[5m] offset 1h)) / on() group_left sum(y)',
    "max_over_time(sum(foo)[1h:5m] offset 5m)",
    "count(foo @ start())",
    'foo{a="b",}',
    "absent(nothing_here) * 0",
    "topk(1, scalar(sum(a)) * b)",
    'histogram_quantile(0.99, sum by (le) (rate(h_bucket{job="x"}[5m])))',
    'count_values("value", foo) / ignoring(value) group_right(x) bar',
    "-foo > bool 3 unless on(pod) baz",
    '{"utf8.metric"}',
]


@pytest.mark.parametrize("query", HOSTILE)
def test_every_selector_of_a_hostile_query_is_confined(query: str) -> None:
    confined = confine(query, "namespace", "team-a")
    assert_confined(query, confined, "team-a")


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("sum(", "not valid PromQL"),
        ("info(up)", "info() is not allowed"),
        ('foo{a="1" or b="2"}', "could not confine"),
        ('foo{a="x', "not valid PromQL"),
    ],
)
def test_what_cannot_be_confined_is_refused(query: str, why: str) -> None:
    with pytest.raises(QueryRefused, match=why.replace("(", r"\(").replace(")", r"\)")):
        confine(query, "namespace", "team-a")


@FAST
@given(namespace=st.text(min_size=1, max_size=40))
def test_any_namespace_value_is_held_exactly(namespace: str) -> None:
    query = 'sum(rate(vllm:x{namespace=~".+"}[1m]))'
    assert_confined(query, confine(query, "namespace", namespace), namespace)


# A small PromQL grammar --------------------------------------------------------------

names = st.sampled_from(["up", "foo", "vllm:num_requests_waiting", "a_b:c", "by_x", "on_y"])
labels = st.sampled_from(["job", "pod", "namespace", "le", "model_name"])
tricky = st.sampled_from(["}", "{", '"', "\\", "'", "`", "#", "x,y", "a=~b", "[5m]", " or "])
values = st.lists(
    st.one_of(st.sampled_from(["llm", ".+", "", "0"]), tricky), min_size=1, max_size=3
).map("".join)


def string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def selector(draw: st.DrawFn) -> str:
    parts = [
        f"{draw(labels)}{draw(st.sampled_from(['=', '!=', '=~', '!~']))}{string(draw(values))}"
        for _ in range(draw(st.integers(0, 2)))
    ]
    name = draw(st.one_of(st.none(), names))
    if name is None:
        parts.insert(0, f"__name__=~{string(draw(values))}")
        return "{" + ",".join(parts) + "}"
    braces = "{" + ",".join(parts) + "}" if parts or draw(st.booleans()) else ""
    return name + braces


@st.composite
def expression(draw: st.DrawFn, depth: int = 0) -> str:
    if depth >= 3:
        return draw(selector())
    kind = draw(
        st.sampled_from(
            ["selector", "rate", "agg", "binary", "number", "paren", "subquery", "func", "at"]
        )
    )
    inner = expression(depth + 1)
    if kind == "selector":
        return draw(selector())
    if kind == "rate":
        offset = draw(st.sampled_from(["", " offset 5m", " offset -1h"]))
        return f"rate({draw(selector())}[5m]{offset})"
    if kind == "agg":
        op = draw(st.sampled_from(["sum", "max", "count", "avg"]))
        grouping = draw(st.sampled_from(["", " by (pod)", " without (le, job)"]))
        if draw(st.booleans()):
            return f"{op}{grouping} ({draw(inner)})"
        return f"{op}({draw(inner)}){grouping}"
    if kind == "binary":
        op = draw(st.sampled_from(["+", "/", " and ", " unless ", " > bool "]))
        match = draw(st.sampled_from(["", " on(pod) ", " ignoring(job) "]))
        if match and op.strip() not in ("and", "unless"):
            match += draw(st.sampled_from(["", "group_left ", "group_right(job) "]))
        comment = draw(st.sampled_from(["", f" # {draw(values)}\n"]))
        return f"{draw(inner)}{comment}{op}{match}{draw(inner)}"
    if kind == "number":
        return f"{draw(inner)} * {draw(st.sampled_from(['2', '0.5', '1e3', 'Inf']))}"
    if kind == "paren":
        return f"({draw(inner)})"
    if kind == "subquery":
        return f"max_over_time(({draw(inner)})[30m:1m])"
    if kind == "func":
        return f'label_replace({draw(inner)}, "dst", {string(draw(values))}, "src", "(.*)")'
    return f"{draw(selector())} @ 1700000000"


@FAST
@given(query=expression())
def test_generated_queries_are_confined_or_refused(query: str) -> None:
    try:
        promql.parse(query)
    except Exception:
        return  # the grammar draws some invalid PromQL (label_replace of a scalar...)
    try:
        confined = confine(query, "namespace", "team-a")
    except QueryRefused:
        return  # refused is safe; a confined query below must hold the matcher everywhere
    assert_confined(query, confined, "team-a")


# The tenancy rule on specs ---------------------------------------------------------------


def inference_spec(queue: str, demand: str | None = None) -> dict[str, Any]:
    metrics: dict[str, Any] = {"server": "custom", "queueQuery": queue}
    if demand is not None:
        metrics["demandQuery"] = demand
    return {
        "type": "Inference",
        "costAllocation": {"team": "ml"},
        "inference": {"targetRef": {"name": "llm"}, "maxReplicas": 3, "metrics": metrics},
    }


def test_the_spec_check_returns_confined_queries() -> None:
    check = check_spec(
        inference_spec("sum(q)", "sum(rate(r[1m]))"), OperatorConfig(), NamespaceView("team-a")
    )
    assert check.spec is not None and check.spec.inference is not None
    metrics = check.spec.inference.metrics
    assert metrics.queue_query == 'sum(q{namespace="team-a"})'
    assert metrics.demand_query == 'sum(rate(r{namespace="team-a"}[1m]))'


def test_a_refused_query_is_a_spec_problem_naming_the_field() -> None:
    check = check_spec(inference_spec("info(up)"), OperatorConfig(), NamespaceView("team-a"))
    assert check.spec is None
    assert [p.path for p in check.problems] == ["spec.inference.metrics.queueQuery"]


def test_trusted_namespaces_and_an_unconfined_config_run_queries_as_written() -> None:
    trusting = OperatorConfig.model_validate(
        {
            "prometheus": {
                "customQueries": {
                    "trustedNamespaceSelector": {"matchLabels": {"example.com/platform": "true"}}
                }
            }
        }
    )
    spec = check_spec(inference_spec("sum(q)"), trusting, NamespaceView("team-a")).spec
    assert spec is not None and spec.inference is not None
    assert spec.inference.metrics.queue_query == 'sum(q{namespace="team-a"})'  # not labelled
    platform = NamespaceView("infra", {"example.com/platform": "true"})
    spec = check_spec(inference_spec("sum(q)"), trusting, platform).spec
    assert spec is not None and spec.inference is not None
    assert spec.inference.metrics.queue_query == "sum(q)"

    open_config = OperatorConfig()
    open_config.prometheus.custom_queries.confinement = QueryConfinement.NONE
    from gpufinops.api.spec import AIWorkloadSpec

    raw = AIWorkloadSpec.model_validate(inference_spec("sum(q)"))
    same, problems = confined_queries(raw, NamespaceView("team-a"), open_config)
    assert same is raw and problems == []


def test_another_namespace_label_can_be_configured() -> None:
    config = OperatorConfig()
    config.prometheus.custom_queries.namespace_label = "kubernetes_namespace"
    config.prometheus.custom_queries.trusted_namespace_selector = LabelSelector()
    # An empty selector matches every namespace: all trusted.
    spec = check_spec(inference_spec("sum(q)"), config, NamespaceView("team-a")).spec
    assert spec is not None and spec.inference is not None
    assert spec.inference.metrics.queue_query == "sum(q)"
    config.prometheus.custom_queries.trusted_namespace_selector = None
    spec = check_spec(inference_spec("sum(q)"), config, NamespaceView("team-a")).spec
    assert spec is not None and spec.inference is not None
    assert spec.inference.metrics.queue_query == 'sum(q{kubernetes_namespace="team-a"})'
