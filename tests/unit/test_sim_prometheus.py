"""Prometheus history as a trace: durations, chunking under the point limit, conversion."""

from datetime import datetime
from typing import Any

import numpy as np
import pytest

from gpufinops.adapters.prometheus.client import MAX_POINTS_PER_REQUEST as MAX_POINTS
from gpufinops.adapters.prometheus.client import range_chunks
from gpufinops.sim.prometheus import fetch_range, parse_duration, prometheus_trace, sum_series
from gpufinops.sim.traces import TraceError


class FakeProm:
    """Answers range queries from a function of time, one or two series, and
    enforces Prometheus' points-per-series limit."""

    def __init__(self, rate: Any, series: int = 1, fail: bool = False) -> None:
        self.rate = rate
        self.series = series
        self.fail = fail
        self.calls: list[tuple[float, float, float]] = []

    def custom_query_range(
        self,
        query: str,
        start_time: datetime,
        end_time: datetime,
        step: str,
        params: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        if self.fail:
            raise Exception("HTTP Status Code 503 (b'unavailable')")
        assert params is not None
        start, end, every = float(params["start"]), float(params["end"]), float(params["step"])
        assert abs(start_time.timestamp() - start) < 1 and float(step) == every
        count = round((end - start) / every) + 1
        assert count <= MAX_POINTS, "Prometheus rejects more than 11,000 points per series"
        self.calls.append((start, end, every))
        times = start + every * np.arange(count)
        return [
            {
                "metric": {"pod": f"p{i}"},
                "values": [[t, str(self.rate(t) / self.series)] for t in times],
            }
            for i in range(self.series)
        ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 604800), ("12h", 43200), ("1h30m", 5400), ("90s", 90), ("2w", 1209600), ("600", 600)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["x", "7days", "-1", "1h 30m", "0s", "5q"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_chunks_cover_the_grid_once_under_the_limit() -> None:
    parts = [(c.start, c.end) for c in range_chunks(0.0, 15.0 * 25_000, 15.0, 10_000)]
    assert parts[0] == (0.0, 15.0 * 9_999)
    assert parts[1][0] == 15.0 * 10_000
    assert parts[-1][1] == 15.0 * 25_000
    assert len(parts) == 3
    points = sum(round((b - a) / 15.0) + 1 for a, b in parts)
    assert points == 25_001


def test_sum_series_adds_series_and_skips_non_numbers() -> None:
    result = [
        {"values": [[10, "1.5"], [25, "NaN"], [40, "2"]]},
        {"values": [[10, "0.5"], [25, "+Inf"], [40, "oops"]]},
    ]
    stamps, values = sum_series(result)
    np.testing.assert_array_equal(stamps, [10.0, 40.0])
    np.testing.assert_array_equal(values, [2.0, 2.0])


def test_a_week_at_15_s_is_fetched_in_chunks_and_becomes_a_trace() -> None:
    end = 1_699_999_995.0  # on the 15 s grid
    fake = FakeProm(lambda t: 4.0 + np.sin(t / 3600.0), series=2)
    trace = prometheus_trace("http://prom", "q", "7d", step=15.0, end=end, client=fake)
    assert len(fake.calls) == 4  # 40,321 points in chunks of at most 11,000
    assert fake.calls[0][0] == end - 7 * 86400
    for before, after in zip(fake.calls, fake.calls[1:], strict=False):
        assert after[0] == before[1] + 15.0
    assert trace.format == "rate"
    assert trace.seconds == 7 * 86400 + 15
    # each sample holds for its 15 s: requests per 15 s equal rate x 15
    assert trace.requests[:15].sum() == pytest.approx(15 * (4.0 + np.sin((end - 604800) / 3600)))
    assert trace.requests.sum() == pytest.approx(15 * sum(fake.rate(c) for c in
        end - 604800 + 15.0 * np.arange(40_321)), rel=1e-9)  # fmt: skip


def test_fetch_range_handles_a_single_point() -> None:
    fake = FakeProm(lambda t: 2.0)
    stamps, values = fetch_range(fake, "q", 100.0, 100.0, 15.0)
    assert stamps.tolist() == [100.0] and values.tolist() == [2.0]


def test_errors_and_empty_results_are_trace_errors() -> None:
    with pytest.raises(TraceError, match="query failed"):
        prometheus_trace("http://prom", "q", "1h", client=FakeProm(lambda t: 1.0, fail=True))

    class Empty(FakeProm):
        def custom_query_range(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
            return []

    with pytest.raises(TraceError, match="returned no samples"):
        prometheus_trace("http://prom", "q", "1h", client=Empty(lambda t: 0.0))
