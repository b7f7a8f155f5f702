"""The demo's load shape: a trace day compressed into minutes, or a labelled stand-in."""

from pathlib import Path

import numpy as np
import pytest
from tests.support.traces import trace_path

from gpufinops.demo.shape import DAY, compress_day, load_shape, synthetic_day


def test_a_day_is_averaged_into_buckets_and_normalised_to_its_peak() -> None:
    # Two days at 1 s: day 1 is 1 req/s in its first half and 3 req/s in its second.
    per_second = np.concatenate([np.zeros(DAY), np.ones(DAY // 2), np.full(DAY // 2, 3.0)])
    shape = compress_day(per_second, day=1, day_seconds=600)
    assert shape.day_seconds == 600 and shape.real
    np.testing.assert_allclose(shape.relative[:300], 1 / 3)
    np.testing.assert_allclose(shape.relative[300:], 1.0)


def test_each_bucket_is_the_mean_of_the_trace_seconds_it_stands_for() -> None:
    per_second = np.zeros(DAY)
    per_second[:144] = 2.0  # the first 144 s: exactly the first of 600 buckets
    per_second[144:288] = 1.0
    shape = compress_day(per_second, day=0, day_seconds=600)
    assert shape.relative[0] == pytest.approx(1.0)
    assert shape.relative[1] == pytest.approx(0.5)
    assert shape.relative[2:].max() == 0.0


def test_position_interpolates_wraps_and_starts_at_the_chosen_hour() -> None:
    relative = np.array([0.0, 1.0, 0.5, 0.25])
    shape = compress_day(np.repeat(relative, DAY // 4), day=0, day_seconds=4)
    assert shape.at(0.5) == pytest.approx(0.5)  # halfway from 0 to 1
    assert shape.at(4.0) == pytest.approx(0.0)  # the next day
    assert shape.at(3.5) == pytest.approx(0.125)  # 0.25 towards the next day's 0
    assert shape.at(0.0, start_hour=12) == pytest.approx(0.5)
    assert shape.hour_of_day(1.0, start_hour=12) == pytest.approx(18.0)
    assert shape.hour_of_day(3.0, start_hour=12) == pytest.approx(6.0)


def test_a_day_outside_the_trace_or_without_requests_is_refused() -> None:
    with pytest.raises(ValueError, match="day 2 is not in it"):
        compress_day(np.ones(DAY * 2), day=2, day_seconds=600)
    with pytest.raises(ValueError, match="no requests"):
        compress_day(np.zeros(DAY), day=0, day_seconds=600)
    with pytest.raises(ValueError, match="day_seconds"):
        compress_day(np.ones(DAY), day=0, day_seconds=1)


def test_the_synthetic_day_has_a_night_trough_and_an_afternoon_peak() -> None:
    shape = synthetic_day(2400)
    assert not shape.real and "synthetic" in shape.name
    hourly = shape.relative.reshape(24, 100).mean(axis=1)
    assert int(np.argmin(hourly)) in (3, 4, 5)
    assert int(np.argmax(hourly)) in (14, 15, 16)
    assert 0.3 < hourly.min() < 0.5 and shape.relative.max() == pytest.approx(1.0)


def test_a_missing_trace_falls_back_to_the_synthetic_day_and_says_why(tmp_path: Path) -> None:
    shape, why = load_shape(tmp_path, "absent.csv", 0, 600)
    assert not shape.real and why is not None and "absent.csv not found" in why


def test_a_malformed_trace_falls_back_with_the_readers_message(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("nothing,here\n1,2\n")
    shape, why = load_shape(tmp_path, "bad.csv", 0, 600)
    assert not shape.real and why is not None and "bad.csv" in why


def test_a_small_trace_file_is_replayed(tmp_path: Path) -> None:
    rows = ["timestamp,requests"] + [f"{t},{1 + (t // 43200)}" for t in range(0, DAY, 600)]
    (tmp_path / "day.csv").write_text("\n".join(rows) + "\n")
    shape, why = load_shape(tmp_path, "day.csv", 0, 100)
    assert why is None and shape.real and shape.name == "day day 0"
    np.testing.assert_allclose(shape.relative[:50], 0.5)
    np.testing.assert_allclose(shape.relative[50:], 1.0)


def test_the_demo_trace_day_has_a_daily_shape() -> None:
    trace = trace_path("azure-2024-conversation-10s.csv")
    shape, why = load_shape(trace.parent, trace.name, 1, 600)
    assert why is None and shape.real
    hourly = shape.relative.reshape(24, 25).mean(axis=1)
    assert hourly[12:18].mean() > 1.3 * hourly[0:6].mean()  # busier afternoon than night
