"""The demo exporter's text: the series set, with their names, labels and values as set,
in an order that does not depend on when each was set."""

import urllib.request
from collections.abc import Iterator

import pytest

from gpufinops.demo.exposition import Exporter, escape_label_value, format_value


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    with Exporter() as running:
        yield running


def _samples(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_series_are_written_by_name_then_labels_with_their_values(exporter: Exporter) -> None:
    exporter.set("vllm:num_requests_waiting", {"pod": "p1", "namespace": "n"}, 1)
    exporter.set("vllm:num_requests_waiting", {"pod": "p0", "namespace": "n"}, 2.5)
    exporter.set("vllm:request_success_total", {"pod": "p1"}, 3, kind="counter")
    exporter.set("gpu_util", {}, float("nan"))
    exporter.set("big", {}, float("inf"))
    exporter.set("rate", {"b": "2", "a": "1"}, lambda: 42.0)
    assert _samples(exporter.render()) == [
        "big +Inf",
        "gpu_util NaN",
        'rate{a="1",b="2"} 42.0',
        'vllm:num_requests_waiting{namespace="n",pod="p0"} 2.5',
        'vllm:num_requests_waiting{namespace="n",pod="p1"} 1.0',
        'vllm:request_success_total{pod="p1"} 3.0',
    ]
    assert exporter.scrapes == 1


def test_types_are_declared_once_per_metric(exporter: Exporter) -> None:
    for pod in ("a", "b"):
        exporter.set("vllm:request_success_total", {"pod": pod}, 1, kind="counter")
        exporter.set("queue", {"pod": pod}, 1)
        exporter.set("raw", {"pod": pod}, 1, kind="untyped")
    types = [line for line in exporter.render().splitlines() if line.startswith("# TYPE")]
    assert types == [
        "# TYPE queue gauge",
        "# TYPE raw untyped",
        "# TYPE vllm:request_success_total counter",
    ]


def test_a_counter_not_named_total_keeps_its_name(exporter: Exporter) -> None:
    exporter.set("tgi_request_count", {"pod": "t"}, 7, kind="counter")
    text = exporter.render()
    assert _samples(text) == ['tgi_request_count{pod="t"} 7.0']
    assert "tgi_request_count_total" not in text


def test_label_values_are_escaped(exporter: Exporter) -> None:
    value = 'say "hi"\\\nbye'
    exporter.set("m", {"l": value}, 1)
    assert _samples(exporter.render()) == [f'm{{l="{escape_label_value(value)}"}} 1.0']
    assert escape_label_value(value) == 'say \\"hi\\"\\\\\\nbye'


def test_values_are_written_as_prometheus_reads_them() -> None:
    assert [format_value(v) for v in (1, 0.5, float("-inf"), float("nan"))] == [
        "1.0",
        "0.5",
        "-Inf",
        "NaN",
    ]


def test_a_rate_grows_between_scrapes_and_is_served_over_http() -> None:
    with Exporter() as exporter:
        exporter.set_rate("vllm:request_success_total", {"pod": "a"}, 1000.0)
        url = f"http://{exporter.target}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            first = float(_samples(response.read().decode())[0].split()[-1])
        second = float(_samples(exporter.render())[0].split()[-1])
    assert 0 <= first < second
    assert exporter.scrapes == 2


def test_no_series_is_an_empty_page(exporter: Exporter) -> None:
    assert _samples(exporter.render()) == []
