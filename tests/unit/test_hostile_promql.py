"""PromQL built from user-controlled values parses as intended.

Namespaces, Deployment and model names end up inside label matchers. Each is
quoted with Go string escapes (``quote``) and, in regex matchers, escaped with
RE2 metacharacter escapes (``quote_regex``). The tests read the generated
selectors back with a small PromQL lexer and check that every matcher holds
exactly the value it was built from, whatever the input: quotes, backslashes,
newlines, ``"}``, ``=~``, any Unicode. User-written queries (``queueQuery``,
``demandQuery``) are data: used verbatim, never spliced into other queries.
"""

import json
import re
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufinops.adapters.prometheus.client import MetricsError, PrometheusClient
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
from gpufinops.adapters.prometheus.utilization import (
    node_utilization_query,
    pods_regex,
    utilization_query,
)
from gpufinops.api.inference import InferenceMetrics, MetricsServer
from gpufinops.config.model import ConfigError, parse_config

FAST = settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

NASTY = ['"}', '"} or vector(1) #', "=~", "\\", '\\"', "\n", "\r\n", "\t", "\x00", "\x7f"]
NASTY += ["\u2028", "é", "🚀", "{}", "a.*", "$1", "`", "'", "\\x41", "\\u0041", '"', ""]
values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(NASTY),
    st.lists(st.sampled_from(NASTY), max_size=6).map("".join),
)

# ---------------------------------------------------------------- a PromQL selector reader

_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OPERATOR = re.compile(r"=~|!~|!=|=")


def go_string(text: str, at: int) -> tuple[str, int]:
    """The double-quoted Go string literal starting at ``text[at]``, unescaped, and the
    index after it. Raises ValueError where Prometheus' lexer would reject it."""
    if text[at] != '"':
        raise ValueError(f"expected a string at {at}")
    out: list[str] = []
    i = at + 1
    while True:
        if i >= len(text):
            raise ValueError("unterminated string")
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\n":
            raise ValueError("newline inside a string")
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        kind = text[i + 1]
        if kind in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[kind])
            i += 2
        elif kind in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[kind]
            digits = text[i + 2 : i + 2 + width]
            if not re.fullmatch(f"[0-9a-fA-F]{{{width}}}", digits):
                raise ValueError(f"bad \\{kind} escape")
            out.append(chr(int(digits, 16)))
            i += 2 + width
        elif kind in "01234567":
            digits = text[i + 1 : i + 4]
            if not re.fullmatch("[0-7]{3}", digits):
                raise ValueError("bad octal escape")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise ValueError(f"unknown escape \\{kind}")


def matchers(text: str, at: int) -> tuple[list[tuple[str, str, str]], int]:
    """The label matchers of the ``{...}`` starting at ``text[at]``, and the index after."""
    if text[at] != "{":
        raise ValueError(f"expected '{{' at {at}")
    out: list[tuple[str, str, str]] = []
    i = at + 1
    while True:
        while text[i] in " ,":
            i += 1
        if text[i] == "}":
            return out, i + 1
        name = _LABEL.match(text, i)
        assert name is not None, text[i:]
        op = _OPERATOR.match(text, name.end())
        assert op is not None, text[name.end() :]
        value, i = go_string(text, op.end())
        out.append((name.group(), op.group(), value))


def selector_of(query: str, metric: str) -> tuple[list[tuple[str, str, str]], str, str]:
    """The matchers following ``metric`` in ``query``, with the text before and after."""
    start = query.index(metric + "{") + len(metric)
    found, end = matchers(query, start)
    return found, query[:start], query[end:]


# ---------------------------------------------------------------- quoting


@FAST
@given(value=values)
def test_quote_round_trips_under_go_string_rules(value: str) -> None:
    literal = quote(value)
    assert "\n" not in literal  # one line, whatever the value
    unquoted, end = go_string(literal + ")", 0)
    assert (unquoted, end) == (value, len(literal))


@FAST
@given(value=values, tail=st.text(min_size=1, max_size=3))
def test_quote_regex_matches_exactly_the_value(value: str, tail: str) -> None:
    pattern = quote_regex(value)
    assert re.fullmatch(pattern, value, flags=re.DOTALL)
    assert not re.fullmatch(pattern, value + tail, flags=re.DOTALL)
    assert re.fullmatch(pattern, value[:-1], flags=re.DOTALL) is None or value == ""


@FAST
@given(namespace=values, deployment=values, model=st.none() | values)
def test_scope_matchers_hold_the_values_they_were_built_from(
    namespace: str, deployment: str, model: str | None
) -> None:
    scope = Scope(namespace=namespace, deployment=deployment, model_name=model)
    found, _, rest = selector_of("up" + scope.matchers(ScopeLabels()) + ")", "up")
    expected = [
        ("namespace", "=", namespace),
        ("pod", "=~", deployment_pods_regex(deployment)),
    ]
    if model is not None:
        expected.append(("model_name", "=", model))
    assert found == expected
    assert rest == ")"


@FAST
@given(
    server=st.sampled_from([s for s in MetricsServer if s != MetricsServer.CUSTOM]),
    namespace=values,
    model=st.none() | values,
)
def test_every_preset_query_keeps_its_selector_closed(
    server: MetricsServer, namespace: str, model: str | None
) -> None:
    scope = Scope(namespace=namespace, deployment="llama", model_name=model)
    queries = build_queries(server, scope)
    preset = PRESETS[server]
    found, before, after = selector_of(queries.queue, preset.queue)
    assert before == f"sum({preset.queue}" and after == ")"
    assert ("namespace", "=", namespace) in found
    if model is not None and preset.labels.model is not None:
        assert (preset.labels.model, "=", model) in found
    for field in fields(queries):
        query = getattr(queries, field.name)
        if query is None:
            continue
        # Every selector in every query reads back to the same matchers.
        i = 0
        while (start := query.find("{", i)) != -1:
            here, i = matchers(query, start)
            assert here == found


@FAST
@given(namespace=values, name=values, node=values)
def test_utilization_queries_keep_user_values_inside_their_strings(
    namespace: str, name: str, node: str
) -> None:
    for kind in ("Deployment", "StatefulSet", "Job"):
        query = utilization_query(namespace, kind, name, 300)
        found, before, after = selector_of(query, "DCGM_FI_DEV_GPU_UTIL")
        assert found == [("namespace", "=", namespace), ("pod", "=~", pods_regex(kind, name))]
        assert before == "max(max_over_time(DCGM_FI_DEV_GPU_UTIL" and after == "[300s]))"
    found, _, after = selector_of(
        node_utilization_query("Hostname", node, 60), "DCGM_FI_DEV_GPU_UTIL"
    )
    assert found == [("Hostname", "=", node)] and after == "[60s]))"


def test_the_pod_regex_of_a_hostile_name_matches_only_that_deployments_pods() -> None:
    name = 'a.b"}|c'
    pattern = deployment_pods_regex(name)
    assert re.fullmatch(pattern, f"{name}-7d4f9c8b6-x2k9p")
    assert not re.fullmatch(pattern, "aXb-7d4f9c8b6-x2k9p")  # '.' is not a wildcard
    assert not re.fullmatch(pattern, "c-7d4f9c8b6-x2k9p")  # '|' is not an alternative


def test_a_node_label_that_is_not_a_label_name_is_refused_in_the_config() -> None:
    for label in ('Hostname"} or vector(100) #', "host name", "1st", "é"):
        with pytest.raises(ConfigError, match="gpuUtilizationNodeLabel"):
            parse_config({"idleShutdown": {"gpuUtilizationNodeLabel": label}})
    config = parse_config({"idleShutdown": {"gpuUtilizationNodeLabel": "kubernetes_node"}})
    assert config.idle_shutdown.gpu_utilization_node_label == "kubernetes_node"


# ---------------------------------------------------------------- custom queries are data


@FAST
@given(
    server=st.sampled_from(list(MetricsServer)),
    queue=values.filter(lambda q: q.strip() != ""),
    demand=st.none() | values.filter(lambda q: q.strip() != ""),
)
def test_user_queries_are_used_verbatim_and_nowhere_else(
    server: MetricsServer, queue: str, demand: str | None
) -> None:
    marked_queue, marked_demand = "USERQ:" + queue, None if demand is None else "USERD:" + demand
    metrics = InferenceMetrics.model_validate(
        {"server": server, "queueQuery": marked_queue, "demandQuery": marked_demand}
    )
    queries = queries_for(metrics, "ns", "llama")
    assert queries.queue == marked_queue
    if marked_demand is not None:
        assert queries.arrival_rate == marked_demand
    for field in fields(queries):
        query = getattr(queries, field.name)
        if field.name not in ("queue", "arrival_rate") and query is not None:
            assert "USERQ:" not in query and "USERD:" not in query


class FakeProm:
    """Stands in for the HTTP GET: records the queries, answers ``result``."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.queries: list[str] = []

    def get(self, path: str, params: Any, bounds: Any) -> tuple[int, bytes]:
        self.queries.append(params["query"])
        body = {"status": "success", "data": {"resultType": "vector", "result": self.result}}
        return 200, json.dumps(body).encode()


def _client(result: Any) -> tuple[PrometheusClient, FakeProm]:
    client = PrometheusClient("http://prometheus.invalid:9090")
    fake = FakeProm(result)
    client._get = fake.get  # type: ignore[method-assign]
    return client, fake


@FAST
@given(query=values)
def test_the_client_sends_a_query_exactly_as_given(query: str) -> None:
    client, fake = _client([{"metric": {}, "value": [0, "1.5"]}])
    assert client.instant(query) == 1.5
    assert fake.queries == [query]


@pytest.mark.parametrize("count", [2, 3, 5000])
def test_a_query_returning_many_series_is_refused_with_the_count(count: int) -> None:
    series = [{"metric": {"pod": f"p{i}"}, "value": [0, "1"]} for i in range(count)]
    client, _ = _client(series)
    with pytest.raises(MetricsError, match=f"returned {count} series") as caught:
        client.instant('vllm:num_requests_waiting{namespace="a"}')
    assert "sum" in caught.value.reason
    assert caught.value.query == 'vllm:num_requests_waiting{namespace="a"}'


@pytest.mark.parametrize(
    "answer",
    [
        "not a list",
        [{"metric": {}}],
        [{"metric": {}, "value": [0]}],
        [{"metric": {}, "value": [0, "NaN"]}],
        [{"metric": {}, "value": [0, "+Inf"]}],
        [{"metric": {}, "value": [0, "abc"]}],
        [0, "NaN"],
        [None],
    ],
)
def test_malformed_or_non_finite_answers_are_metrics_errors(answer: Any) -> None:
    client, _ = _client(answer)
    with pytest.raises(MetricsError):
        client.instant("q")


def test_no_series_is_unknown_not_zero() -> None:
    client, _ = _client([])
    assert client.instant("q") is None
