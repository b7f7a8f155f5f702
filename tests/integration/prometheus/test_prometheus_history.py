"""DemandHistory over a real Prometheus: the whole window once, then only tails."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from tests.support.promserver import DAY, DEMAND_QUERY, GAUGE_STEP, HISTORY_END, HOUR, demand_at

from gpufinops.adapters.prometheus import DemandHistory, PrometheusClient
from gpufinops.core.forecast.series import DemandSeries

pytestmark = pytest.mark.integration

STEP = float(GAUGE_STEP)


@dataclass
class Recorder:
    """A range source that records each request before passing it on."""

    inner: PrometheusClient
    calls: list[tuple[float, float, float]] = field(default_factory=list)

    def range(self, query: str, start: float, end: float, step: float) -> DemandSeries:
        self.calls.append((start, end, step))
        return self.inner.range(query, start, end, step)

    def points(self, index: int) -> int:
        start, end, step = self.calls[index]
        return round((end - start) / step) + 1


def expected(series: DemandSeries) -> list[float]:
    return [demand_at(t) for t in series.times()]


def test_first_update_fetches_the_window_later_ones_only_the_tail(
    client: PrometheusClient,
) -> None:
    source = Recorder(client)
    history = DemandHistory(source, DEMAND_QUERY, history_days=2, step=STEP)
    now = HISTORY_END - 3 * HOUR + 17  # a tick between two steps

    first = history.update(now)
    assert len(source.calls) == 1
    last = math.floor(now / STEP) * STEP
    assert source.calls[0] == (last - (2 * DAY - STEP), last, STEP)
    assert len(first) == 2 * DAY // GAUGE_STEP
    assert first.end == last + STEP
    assert first.values.tolist() == expected(first)  # the backfilled days, exactly

    # Half an hour later: 30 new steps, plus 2 fetched again for late samples.
    second = history.update(now + 30 * 60)
    assert len(source.calls) == 2
    assert source.calls[1] == (last - 2 * STEP, last + 30 * STEP, STEP)
    assert source.points(1) == 33
    assert len(second) == len(first)
    assert second.start == first.start + 30 * STEP
    assert second.values.tolist() == expected(second)

    # A tick within the same step re-reads just the overlap.
    history.update(now + 30 * 60 + 20)
    assert len(source.calls) == 3
    assert source.points(2) == 3

    # The merged cache equals a fresh read of the same window.
    fresh = client.range(DEMAND_QUERY, second.start, second.end - STEP, STEP)
    assert history.series is not None
    assert history.series.values.tolist() == fresh.values.tolist()


def test_steps_after_the_data_end_are_nan(client: PrometheusClient) -> None:
    history = DemandHistory(client, DEMAND_QUERY, history_days=1, step=STEP)
    history.update(HISTORY_END - HOUR)
    series = history.update(HISTORY_END + HOUR)
    times = series.times()
    stale = times > HISTORY_END + 300  # past Prometheus' 5-minute lookback
    assert np.isnan(series.values[stale]).all()
    held = [demand_at(min(t, HISTORY_END)) for t in times[~stale]]  # last sample, held
    assert series.values[~stale].tolist() == held


def test_a_long_pause_fetches_the_window_again(client: PrometheusClient) -> None:
    source = Recorder(client)
    history = DemandHistory(source, DEMAND_QUERY, history_days=0.5, step=STEP)
    history.update(HISTORY_END - 2 * DAY)
    history.update(HISTORY_END)  # the cache no longer overlaps the window
    assert source.points(1) == round(0.5 * DAY / STEP)


@dataclass
class Scripted:
    """A range source answering from a table of known values (NaN where missing)."""

    known: dict[float, float]
    calls: list[tuple[float, float]] = field(default_factory=list)

    def range(self, query: str, start: float, end: float, step: float) -> DemandSeries:
        self.calls.append((start, end))
        times = start + step * np.arange(round((end - start) / step) + 1)
        values = np.array([self.known.get(float(t), np.nan) for t in times])
        return DemandSeries(start, step, values)


def test_late_samples_are_absorbed_and_never_erased() -> None:
    source = Scripted({t: 1.0 for t in range(0, 600, 60)})
    history = DemandHistory(source, "q", history_days=1, step=60)
    assert np.isnan(history.update(600).values[-1])  # 600 not scraped yet

    source.known[600.0] = 5.0  # arrives late
    del source.known[540.0]  # a value once read must not be erased by a later gap
    series = history.update(660)
    assert source.calls[-1] == (480, 660)
    assert series.values[-3:].tolist()[:2] == [1.0, 5.0]
    assert np.isnan(series.values[-1])


def test_time_going_backwards_fetches_the_window_again() -> None:
    source = Scripted({})
    history = DemandHistory(source, "q", history_days=1, step=60)
    history.update(10 * DAY)
    history.update(9 * DAY)
    assert source.calls[-1] == (8 * DAY + 60, 9 * DAY)
