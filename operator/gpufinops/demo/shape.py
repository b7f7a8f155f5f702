"""The daily shape of the demo's load: a real trace's day, time-compressed.

A day of traffic is what makes autoscaling visible (morning ramp, midday peak,
evening fall), but nobody watches a demo for a day. So one day of a real trace
from ``../shared/traces`` is compressed into ``day_seconds`` of wall time (600 s
by default: a day in 10 minutes, 144x faster). Each demo second is the mean
rate of the 144 trace seconds it stands for, so the bursts the trace has at that
scale survive while second-level noise averages out. The shape is normalised to
its peak, and each Deployment scales it to its own ``peak-rps``.

When the traces are absent a synthetic diurnal shape is used instead, and the
screen says so: a demo must start on any machine, but must never pass a made-up
curve off as a real one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpufinops.core.forecast.series import FloatArray
from gpufinops.sim.traces import Trace, TraceError, read_trace

DAY = 86_400
DEFAULT_DAY_SECONDS = 600.0


@dataclass(frozen=True)
class LoadShape:
    """A day's arrival rate relative to its peak, one value per compressed second."""

    name: str
    """Where the shape comes from, as shown on screen."""
    relative: FloatArray
    """Rate / peak rate in [0, 1], ``len == day_seconds`` samples over one day."""
    real: bool

    @property
    def day_seconds(self) -> int:
        return int(self.relative.shape[0])

    def at(self, elapsed: float, start_hour: float = 0.0) -> float:
        """Relative rate ``elapsed`` wall seconds into the demo, which began at
        ``start_hour`` of the trace day; days repeat. Linear between samples."""
        n = self.day_seconds
        position = (start_hour / 24.0 * n + elapsed) % n
        low = math.floor(position)
        frac = position - low
        a, b = float(self.relative[low]), float(self.relative[(low + 1) % n])
        return a + (b - a) * frac

    def hour_of_day(self, elapsed: float, start_hour: float = 0.0) -> float:
        """The trace-day hour (0-24) that ``elapsed`` wall seconds stand for."""
        return (start_hour + elapsed / self.day_seconds * 24.0) % 24.0


def compress_day(
    per_second: FloatArray, day: int, day_seconds: int, name: str = "trace"
) -> LoadShape:
    """Day ``day`` of a 1 s arrivals series, averaged into ``day_seconds`` buckets and
    normalised to its peak. Raises ValueError when the series does not hold that day."""
    if day_seconds < 2 or day_seconds > DAY:
        raise ValueError(f"day_seconds must be within 2..{DAY}, got {day_seconds}")
    begin, end = day * DAY, (day + 1) * DAY
    if day < 0 or per_second.shape[0] < end:
        have = per_second.shape[0] / DAY
        raise ValueError(f"{name} holds {have:.1f} days; day {day} is not in it")
    window = per_second[begin:end]
    edges = np.linspace(0, DAY, day_seconds + 1).round().astype(np.int64)
    sums = np.add.reduceat(window, edges[:-1])
    rates = sums / np.diff(edges)
    peak = float(rates.max())
    if peak <= 0:
        raise ValueError(f"{name} has no requests on day {day}")
    return LoadShape(name, rates / peak, real=True)


def synthetic_day(day_seconds: int) -> LoadShape:
    """A smooth working-day curve: a night trough at 35 % of the peak around 04:00,
    a morning ramp, a plateau with an afternoon peak near 15:00, an evening fall."""
    hours = np.arange(day_seconds) / day_seconds * 24.0
    wave = 0.5 - 0.5 * np.cos(2 * np.pi * (hours - 4.0) / 24.0)
    bump = np.exp(-(((hours - 15.0) / 2.5) ** 2))
    raw = 0.35 + 0.5 * wave + 0.15 * bump
    return LoadShape("synthetic diurnal shape", raw / raw.max(), real=False)


def load_shape(
    traces_dir: Path, file: str, day: int, day_seconds: int, cache: dict[str, Trace] | None = None
) -> tuple[LoadShape, str | None]:
    """Day ``day`` of ``traces_dir/file``, or the synthetic day and the reason why not."""
    path = traces_dir / file
    if not path.is_file():
        return synthetic_day(day_seconds), f"{path} not found"
    try:
        trace = cache.get(file) if cache is not None else None
        if trace is None:
            trace = read_trace(path)
            if cache is not None:
                cache[file] = trace
        shape = compress_day(trace.requests, day, day_seconds, name=path.stem)
    except (TraceError, ValueError) as exc:
        return synthetic_day(day_seconds), str(exc)
    return LoadShape(f"{path.stem} day {day}", shape.relative, real=True), None
