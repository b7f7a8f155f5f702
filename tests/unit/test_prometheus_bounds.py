"""Answers are bounded while read, errors say little, and custom queries share fairly.

A loopback HTTP server plays a Prometheus that answers too much, or fails with
an execution error listing other series' labels; the client must refuse the
first after a bounded read and keep the second's body out of the reason.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from tests.support.http_server import BackgroundServer

from gpufinops.adapters.prometheus.client import (
    AnswerBounds,
    AnswerTooLarge,
    MetricsError,
    PrometheusClient,
)
from gpufinops.adapters.prometheus.pool import QueryPool


@contextmanager
def answering(status: int, body: Callable[[], Iterator[bytes]]) -> Iterator[str]:
    """A server answering every GET with ``body`` (chunked)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            try:
                for chunk in body():
                    self.wfile.write(chunk)
            except OSError:
                pass  # the client hung up: what a bounded read does

        def log_message(self, format: str, *args: object) -> None:
            pass

    with BackgroundServer(Handler) as server:
        yield server.url


def many_series(count: int) -> Iterator[bytes]:
    yield b'{"status":"success","data":{"resultType":"vector","result":['
    for i in range(count):
        sep = b"," if i else b""
        yield sep + b'{"metric":{"pod":"p%d","metric":"x"},"value":[1,"1"]}' % i
    yield b"]}}"


def test_a_match_everything_answer_is_refused_after_a_few_series() -> None:
    with answering(200, lambda: many_series(100_000)) as url:
        client = PrometheusClient(url)
        with pytest.raises(AnswerTooLarge, match="more than one series") as caught:
            client.instant('{__name__=~".+"}')
        assert caught.value.query == '{__name__=~".+"}'


def test_a_label_named_metric_is_not_counted_as_a_series() -> None:
    with answering(200, lambda: many_series(1)) as url:
        assert PrometheusClient(url).instant("x") == 1.0


def test_an_answer_over_the_byte_limit_is_refused_naming_the_key() -> None:
    def huge() -> Iterator[bytes]:
        yield b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"'
        for _ in range(4096):
            yield b"x" * 1024  # one series with a 4 MiB label value
        yield b'"},"value":[1,"1"]}]}}'

    with answering(200, huge) as url:
        client = PrometheusClient(url, bounds=AnswerBounds(series=2, bytes=64 * 1024))
        with pytest.raises(AnswerTooLarge, match=r"64 KiB \(prometheus.limits.maxResponseBytes\)"):
            client.instant("x")


def test_an_execution_error_keeps_other_series_out_of_the_reason() -> None:
    body = {
        "status": "error",
        "errorType": "execution",
        "error": 'found duplicate series for the match group {namespace="other-team", '
        'secret_label="s3cr3t"}',
    }
    with (
        answering(422, lambda: iter([json.dumps(body).encode()])) as url,
        pytest.raises(MetricsError) as caught,
    ):
        PrometheusClient(url).instant("a / on() b")
    assert "s3cr3t" not in caught.value.reason and "other-team" not in caught.value.reason
    assert caught.value.reason == "Prometheus rejected the query (HTTP 422, execution)"


def test_a_parse_error_of_the_query_itself_is_shown() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unexpected"}
    with (
        answering(400, lambda: iter([json.dumps(body).encode()])) as url,
        pytest.raises(MetricsError, match="bad_data: 1:5: parse error"),
    ):
        PrometheusClient(url).instant("sum(")


def test_the_timeout_goes_to_prometheus_and_the_series_limit_too() -> None:
    seen: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            from urllib.parse import parse_qs, urlsplit

            seen.update(parse_qs(urlsplit(self.path).query))
            answer = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with BackgroundServer(Handler) as server:
        assert PrometheusClient(server.url, timeout=7).instant("up") is None
    assert seen["timeout"] == ["7s"] and seen["limit"] == ["2"]


def test_one_namespace_holds_its_share_of_the_pool_and_others_go_on() -> None:
    pool = QueryPool(workers=4, per_namespace=1)
    release = threading.Event()
    started: list[str] = []

    def slow(name: str) -> Callable[[], str]:
        def call() -> str:
            started.append(name)
            release.wait(10)
            return name

        return call

    async def scenario() -> tuple[list[str], str]:
        hung = [asyncio.ensure_future(pool.run("slow", slow(f"slow-{i}"))) for i in range(6)]
        while not started:
            await asyncio.sleep(0)
        # The slow namespace holds one thread, the rest of its calls wait their turn.
        other = await asyncio.wait_for(pool.run("other", lambda: "other"), timeout=5)
        queued, running = pool.in_use("slow"), len(started)
        release.set()
        done = await asyncio.gather(*hung)
        return [*done, str(queued), str(running)], other

    try:
        results, other = asyncio.run(scenario())
    finally:
        release.set()
        pool.shutdown()
    assert other == "other"
    assert results[-2] == "6"  # all six were running or waiting when the other tenant went
    assert results[-1] == "1"  # but only one of them held a thread
    assert started[0] == "slow-0" and len(started) == 6
    assert pool.in_use("slow") == 0  # nothing left behind for a namespace that is idle
