"""The yardstick: pinball loss and the seasonal-naive peak a model must beat.

A learnt model earns its keep only if it forecasts the lead-window peak
better than "whatever happened at this time yesterday". Both are scored the
way the operator uses them: the peak over the lead window, not each step.
"""

import numpy as np

from gpufinops.core.forecast.features import IntArray
from gpufinops.core.forecast.series import FloatArray


def pinball_loss(actual: FloatArray, forecast: FloatArray, quantile: float) -> float:
    """Mean quantile loss: under-forecasts cost ``quantile``, over-forecasts
    ``1 - quantile`` per unit, so it rewards a calibrated upper quantile."""
    diff = actual - forecast
    return float(np.mean(np.maximum(quantile * diff, (quantile - 1.0) * diff)))


def loss_ratio(model_loss: float, naive_loss: float) -> float:
    """Model loss relative to the baseline; 1.0 when both are perfect (a tie)."""
    if naive_loss <= 1e-12:
        return 1.0 if model_loss <= 1e-12 else float("inf")
    return model_loss / naive_loss


def window_max(values: FloatArray, origins: IntArray, horizons: int, shift: int = 0) -> FloatArray:
    """Max of ``values[i + 1 - shift .. i + horizons - shift]`` per origin ``i``.

    NaN samples are ignored; NaN when the whole window is missing or out of range.
    """
    offsets = np.arange(1, horizons + 1, dtype=np.int64) - shift
    idx = origins[:, None] + offsets[None, :]
    inside = (idx >= 0) & (idx < values.shape[0])
    window = np.full(idx.shape, np.nan, dtype=np.float64)
    window[inside] = values[idx[inside]]
    present = ~np.all(np.isnan(window), axis=1)
    out = np.full(origins.shape, np.nan, dtype=np.float64)
    out[present] = np.nanmax(window[present], axis=1)
    return out


def seasonal_naive_peak(
    values: FloatArray, origins: IntArray, horizons: int, season_steps: int
) -> FloatArray:
    """The lead-window peak one season earlier: the forecast to beat."""
    return window_max(values, origins, horizons, shift=season_steps)
