"""A regularly sampled demand series: the one shape history travels in.

The Prometheus adapter produces it (range queries at a fixed step), the
forecaster learns from it, and the simulator builds it from trace files.
Missing samples are NaN, never zero, for the same reason as in Observation.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DemandSeries:
    """``values[i]`` is the demand (requests/s) at ``start + i * step`` (epoch seconds)."""

    start: float
    step: float
    values: FloatArray

    def __post_init__(self) -> None:
        if self.step <= 0:
            raise ValueError("step must be positive")
        if self.values.ndim != 1:
            raise ValueError("values must be one-dimensional")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def end(self) -> float:
        """Timestamp just past the last sample."""
        return self.start + len(self) * self.step

    def times(self) -> FloatArray:
        return self.start + self.step * np.arange(len(self), dtype=np.float64)

    def tail(self, seconds: float) -> "DemandSeries":
        """The last ``seconds`` of the series (at least one sample when non-empty)."""
        n = max(1, int(seconds // self.step)) if len(self) else 0
        n = min(n, len(self))
        return DemandSeries(self.end - n * self.step, self.step, self.values[len(self) - n :])

    def extend(self, other: "DemandSeries") -> "DemandSeries":
        """Append ``other`` (same step), overwriting overlap and NaN-filling any gap."""
        if other.step != self.step:
            raise ValueError("cannot join series with different steps")
        if len(other) == 0:
            return self
        if len(self) == 0:
            return other
        offset = round((other.start - self.start) / self.step)
        if offset < 0:
            raise ValueError("other starts before this series")
        size = max(len(self), offset + len(other))
        out = np.full(size, np.nan, dtype=np.float64)
        out[: len(self)] = self.values
        out[offset : offset + len(other)] = other.values
        return DemandSeries(self.start, self.step, out)

    def resample(self, step: float) -> "DemandSeries":
        """Average onto a coarser grid aligned to multiples of ``step`` since the epoch.

        Aligning to the epoch (not to ``start``) makes a long history and a short
        recent tail land on the same bins, so the model sees identical features
        at fit and at prediction time. Averaging keeps the unit (requests/s);
        NaN samples are left out of the mean and an all-NaN bin stays NaN.
        Only bins fully covered by this series are kept: a partial bin at
        either edge would read as a dip in demand.
        """
        if step == self.step:
            return self
        if step < self.step:
            raise ValueError(f"cannot resample a {self.step:g} s series to a finer {step:g} s step")
        if len(self) == 0:
            return DemandSeries(np.ceil(self.start / step) * step, step, self.values[:0])
        first = int(np.ceil(self.start / step - 1e-9))
        last = int(np.floor(self.end / step + 1e-9))
        if last <= first:
            return DemandSeries(first * step, step, np.empty(0, dtype=np.float64))
        bins = np.floor((self.times() + 1e-9 * self.step) / step).astype(np.int64) - first
        inside = (bins >= 0) & (bins < last - first)
        valid = inside & ~np.isnan(self.values)
        size = last - first
        sums = np.bincount(bins[valid], weights=self.values[valid], minlength=size)
        counts = np.bincount(bins[valid], minlength=size)
        out = np.full(size, np.nan, dtype=np.float64)
        np.divide(sums, counts, out=out, where=counts > 0)
        return DemandSeries(first * step, step, out)
