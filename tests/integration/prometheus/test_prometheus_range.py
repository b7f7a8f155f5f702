"""Range queries over backfilled history, chunked under Prometheus' points limit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from prometheus_api_client.exceptions import PrometheusApiClientException
from tests.support.promserver import (
    DAY,
    DEMAND_QUERY,
    GAUGE_STEP,
    HISTORY_END,
    HISTORY_START,
    HOUR,
    completions_rate_at,
    demand_at,
)

from gpufinops.adapters.prometheus import (
    MAX_POINTS_PER_REQUEST,
    MetricsError,
    PrometheusClient,
    Scope,
    build_queries,
)
from gpufinops.api.inference import MetricsServer

pytestmark = pytest.mark.integration


def expected_demand(times: np.ndarray[Any, np.dtype[np.float64]]) -> list[float]:
    """The backfilled value Prometheus holds at each time: the last sample at or before it."""
    return [demand_at(t // GAUGE_STEP * GAUGE_STEP) for t in times]


def record_ranges(
    client: PrometheusClient, monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, str]]:
    """Record the parameters of every query_range request the client sends."""
    calls: list[dict[str, str]] = []
    original = client._get

    def recording(path: str, params: Any, bounds: Any) -> Any:
        if path.endswith("/query_range"):
            calls.append(dict(params))
        return original(path, params, bounds)

    monkeypatch.setattr(client, "_get", recording)
    return calls


def points(params: dict[str, str]) -> int:
    """Samples Prometheus evaluates for one request."""
    return int((float(params["end"]) - float(params["start"])) // float(params["step"])) + 1


def test_backfilled_days_are_read_back_exactly(client: PrometheusClient) -> None:
    series = client.range(DEMAND_QUERY, HISTORY_START, HISTORY_END, GAUGE_STEP)
    assert len(series) == 3 * DAY // GAUGE_STEP + 1
    assert series.start == HISTORY_START
    assert series.values.tolist() == expected_demand(series.times())


def test_steps_without_data_are_nan_not_zero(client: PrometheusClient) -> None:
    # Prometheus looks back 5 minutes for a sample; past that the steps are empty.
    series = client.range(DEMAND_QUERY, HISTORY_END - 600, HISTORY_END + 3600, GAUGE_STEP)
    times = series.times()
    assert np.isfinite(series.values[times <= HISTORY_END + 300]).all()
    assert np.isnan(series.values[times > HISTORY_END + 300]).all()
    empty = client.range('sum(absent_metric{namespace="history"})', HISTORY_START, HISTORY_END, 60)
    assert np.isnan(empty.values).all()


def test_long_range_at_small_step_is_chunked(
    client: PrometheusClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    start, end, step = HISTORY_START + HOUR, HISTORY_END, 10.0
    total = int((end - start) // step) + 1
    assert total > 2 * MAX_POINTS_PER_REQUEST

    # Prometheus refuses the range in one request...
    with pytest.raises(PrometheusApiClientException, match="11,000 points"):
        client.connection.custom_query_range(
            DEMAND_QUERY,
            start_time=datetime.fromtimestamp(start, UTC),
            end_time=datetime.fromtimestamp(end, UTC),
            step=str(step),
            params={"start": str(start), "end": str(end)},
        )

    # ...so the client splits it, each request within the limit, and joins the chunks.
    calls = record_ranges(client, monkeypatch)
    series = client.range(DEMAND_QUERY, start, end, step)
    assert len(calls) == -(-total // MAX_POINTS_PER_REQUEST)
    assert all(points(c) <= MAX_POINTS_PER_REQUEST for c in calls)
    assert sum(points(c) for c in calls) == total
    assert float(calls[0]["start"]) == start
    assert float(calls[-1]["end"]) == end
    assert len(series) == total
    assert series.values.tolist() == expected_demand(series.times())


def test_chunk_size_is_configurable(client: PrometheusClient) -> None:
    small = PrometheusClient(client.url, max_points=7)
    start, end = HISTORY_END - 100 * GAUGE_STEP, HISTORY_END
    chunked = small.range(DEMAND_QUERY, start, end, GAUGE_STEP)
    whole = client.range(DEMAND_QUERY, start, end, GAUGE_STEP)
    assert chunked.values.tolist() == whole.values.tolist()


def test_vllm_demand_preset_over_backfilled_counters(client: PrometheusClient) -> None:
    queries = build_queries(MetricsServer.VLLM, Scope("history", "llm", model_name="m"))
    assert queries.arrival_rate is not None
    # Every 5 minutes, 2 to 60 minutes into each hour: the 1m window stays in one hour.
    start = HISTORY_END - 6 * HOUR + 120
    series = client.range(queries.arrival_rate, start, HISTORY_END - HOUR, 300)
    assert not np.isnan(series.values).any()
    expected = [completions_rate_at(t) for t in series.times()]
    assert series.values == pytest.approx(expected, rel=1e-9)


def test_several_series_are_an_error(client: PrometheusClient) -> None:
    with pytest.raises(MetricsError, match="2 series"):
        client.range("vector(1) or label_replace(vector(2), 'a', 'b', '', '')", 0, 120, 60)
