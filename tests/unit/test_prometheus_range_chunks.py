"""Range reads cut under Prometheus' points limit, and the operator's client joining them.

The simulator's replay of a service's history cuts its requests with the same
``range_chunks`` (tests/unit/test_sim_prometheus.py).
"""

import json
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from gpufinops.adapters.prometheus.client import (
    MAX_POINTS_PER_REQUEST,
    AnswerBounds,
    PrometheusClient,
    range_chunks,
)


def test_chunks_are_consecutive_and_within_the_limit() -> None:
    chunks = range_chunks(100.0, 100.0 + 60.0 * 24, 60.0, max_points=10)
    assert [(c.first, c.last) for c in chunks] == [(0, 9), (10, 19), (20, 24)]
    assert [c.points for c in chunks] == [10, 10, 5]
    assert chunks[0].start == 100.0 and chunks[-1].end == 100.0 + 60.0 * 24
    assert all(b.start == a.end + 60.0 for a, b in pairwise(chunks))


def test_a_single_point_and_an_end_off_the_grid() -> None:
    (only,) = range_chunks(5.0, 5.0, 15.0)
    assert (only.first, only.last, only.start, only.end) == (0, 0, 5.0, 5.0)
    (chunk,) = range_chunks(0.0, 44.0, 15.0)  # 44 is not on the grid: the last step is 30
    assert chunk.end == 30.0 and chunk.points == 3


def test_rounding_does_not_drop_the_last_step() -> None:
    (chunk,) = range_chunks(0.0, 0.3, 0.1)  # 0.3 / 0.1 is 2.9999999999999996
    assert chunk.points == 4


def test_the_default_is_prometheus_limit() -> None:
    chunks = range_chunks(0.0, 15.0 * 40_320, 15.0)
    assert max(c.points for c in chunks) == MAX_POINTS_PER_REQUEST
    assert sum(c.points for c in chunks) == 40_321


def test_requests_carry_exact_float_bounds() -> None:
    (chunk,) = range_chunks(1_700_000_000.25, 1_700_000_030.25, 7.5)
    assert chunk.params() == {"start": "1700000000.25", "end": "1700000030.25", "step": "7.5"}


@pytest.mark.parametrize(
    ("start", "end", "step", "message"),
    [
        (0.0, 10.0, 0.0, "step must be positive"),
        (0.0, 10.0, -1.0, "step must be positive"),
        (10.0, 0.0, 1.0, "end must not precede start"),
    ],
)
def test_bad_ranges(start: float, end: float, step: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        range_chunks(start, end, step)


class FakePrometheus:
    """Answers query_range for one series whose value at ``t`` is ``t / 10``, except at
    ``missing`` times; records each request's parameters."""

    def __init__(self, missing: frozenset[float] = frozenset()) -> None:
        self.missing = missing
        self.requests: list[dict[str, str]] = []

    def get(self, path: str, params: Any, bounds: AnswerBounds) -> tuple[int, bytes]:
        assert path == "/api/v1/query_range"
        self.requests.append(dict(params))
        start, end, step = (float(params[k]) for k in ("start", "end", "step"))
        times = np.arange(start, end + step / 2, step)
        values = [[t, str(t / 10)] for t in times if t not in self.missing]
        result = [{"metric": {}, "values": values}] if values else []
        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        return 200, json.dumps(body).encode()


def test_the_client_joins_its_chunks_into_one_series(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePrometheus(missing=frozenset({130.0}))
    client = PrometheusClient("http://prometheus.invalid", max_points=4)
    monkeypatch.setattr(client, "_get", fake.get)
    series = client.range("q", 100.0, 190.0, 10.0)
    assert [(r["start"], r["end"]) for r in fake.requests] == [
        ("100.0", "130.0"),
        ("140.0", "170.0"),
        ("180.0", "190.0"),
    ]
    assert series.start == 100.0 and series.step == 10.0
    expected = [t / 10 for t in np.arange(100.0, 191.0, 10.0)]
    expected[3] = np.nan  # no sample at 130: NaN, never zero
    np.testing.assert_array_equal(series.values, expected)


def test_the_client_refuses_a_bad_range_before_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePrometheus()
    client = PrometheusClient("http://prometheus.invalid")
    monkeypatch.setattr(client, "_get", fake.get)
    with pytest.raises(ValueError, match="end must not precede start"):
        client.range("q", 10.0, 0.0, 1.0)
    assert fake.requests == []
