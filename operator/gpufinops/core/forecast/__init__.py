"""Demand forecasting for predictive scaling (pure: data in, forecast out)."""

from gpufinops.core.forecast.model import DemandForecaster
from gpufinops.core.forecast.report import ForecastPoint, ForecastReport
from gpufinops.core.forecast.series import DemandSeries
from gpufinops.core.forecast.settings import ForecastSettings

__all__ = [
    "DemandForecaster",
    "DemandSeries",
    "ForecastPoint",
    "ForecastReport",
    "ForecastSettings",
]
